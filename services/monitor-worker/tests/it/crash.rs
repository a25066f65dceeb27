//! SIGKILL during the checks: the deadlines the killed worker held are run once they come free
//! (late, but run), no deadline gets two results, and every deadline stays on its target's grid.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sentinel_testkit::product::{self, Api};
use serde_json::json;

use crate::servers;

async fn deadlines(api: &Api, id: &str) -> Vec<DateTime<Utc>> {
    let (status, page) = api.get(&format!("/api/v1/monitoring/targets/{id}/results?limit=1000")).await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["due_at"].as_str().expect("due").parse().expect("time"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_deadline_and_counts_none_twice() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (http, _) = servers::http().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = sentinel_testkit::free_port();
    let env = [("SENTINEL_SCHEDULER__HTTP_CHECK_DISPATCH_INTERVAL_SECS", "1")];
    let mut sentinel = product::up(tmp.path(), port, &env);
    let api = product::ready(&mut sentinel, tmp.path()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = json!({"name": format!("t{i}"), "url": format!("http://127.0.0.1:{http}/slow?{i}"), "check_interval_seconds": 5});
        ids.push(api.create("/api/v1/monitoring/targets", body).await);
    }
    // Running: every target checked at least twice.
    let ready = sentinel_testkit::eventually(Duration::from_secs(60), || {
        let (api, ids) = (&api, &ids);
        async move {
            for id in ids {
                if deadlines(api, id).await.len() < 2 {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(ready.is_some(), "targets were not checked");
    // The deadline each target waits for now (claimed already: the horizon is two sweeps ahead).
    let mut pending: HashMap<String, DateTime<Utc>> = HashMap::new();
    for id in &ids {
        let (_, t) = api.get(&format!("/api/v1/monitoring/targets/{id}")).await;
        pending.insert(id.clone(), t["state"]["next_check_at"].as_str().expect("next").parse().expect("time"));
    }
    sentinel.signal("-KILL");
    assert!(sentinel.wait_exit(Duration::from_secs(10)).is_some(), "sentinel did not die");
    let mut sentinel = product::up(tmp.path(), port, &env);
    let api = product::ready(&mut sentinel, tmp.path()).await;
    // Every deadline the dead worker held is run after all, once its lease ends.
    let done = sentinel_testkit::eventually(Duration::from_secs(90), || {
        let (api, pending) = (&api, &pending);
        async move {
            for (id, due) in pending {
                if !deadlines(api, id).await.contains(due) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(done.is_some(), "a deadline held by the killed worker was never checked");
    for id in &ids {
        let dues = deadlines(&api, id).await;
        let unique: BTreeSet<_> = dues.iter().collect();
        assert_eq!(unique.len(), dues.len(), "a deadline counted twice: {dues:?}");
        // All on the target's grid: whole intervals apart, whatever the crash did.
        let first = *unique.iter().next().expect("results");
        assert!(dues.iter().all(|d| (*d - *first).num_milliseconds() % 5000 == 0), "{dues:?}");
        let (_, t) = api.get(&format!("/api/v1/monitoring/targets/{id}")).await;
        let next: DateTime<Utc> = t["state"]["next_check_at"].as_str().expect("next").parse().expect("time");
        assert!(next > pending[id], "the schedule moved on after the crash: {t}");
    }
}
