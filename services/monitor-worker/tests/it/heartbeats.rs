//! Heartbeat checks in the store on PostgreSQL and SQLite alike, with the clock in the test's hands:
//! a cron check across Berlin's autumn change missed at its deadline (an alert, once), resolved by
//! its next good run, a failed run and a too-short run raising theirs; an unexpected run in the
//! repeated hour recorded as such; concurrent pings all applied; the pings kept; a paused check
//! silent. The HTTP side (ping URLs, tokens, the API) is in `heartbeat_api.rs`.

use chrono::{DateTime, Duration, Utc};
use sentinel_jobs::db::monitoring::{AlertFilter, MonitoringStore, PINGS_KEPT, PingInput};
use sentinel_jobs::domain::monitoring::heartbeats::{HeartbeatSpec, PingKind, Problem};
use serde_json::json;
use uuid::Uuid;

use crate::store::stores;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn ping(kind: PingKind, rid: Option<&str>) -> PingInput {
    PingInput { kind, run_id: rid.map(str::to_owned), body: Some("backup done\n".into()), remote_addr: None }
}

async fn firing(store: &MonitoringStore, org: Uuid) -> Vec<String> {
    let filter = AlertFilter { firing: Some(true), ..Default::default() };
    store.alerts(org, &filter, None, 100).await.expect("alerts").into_iter().map(|a| a.rule).collect()
}

#[tokio::test]
async fn heartbeat_checks_alert_on_missed_failed_and_short_runs_and_flag_unexpected_ones() {
    for (_db, conn, org) in stores().await {
        let store = conn.monitoring();
        let spec: HeartbeatSpec = serde_json::from_value(json!({
            "name": "nightly backup", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
            "grace_seconds": 600, "min_runtime_seconds": 30
        }))
        .expect("spec");
        let token = format!("{:064x}", Uuid::new_v4().as_u128());
        // The test drives the clock: created on Saturday, the check awaits Sunday's 02:30 in Berlin.
        let check =
            store.create_heartbeat(org, spec, &token, "user:alice", at("2026-10-24T12:00:00Z")).await.expect("create");
        let id = check.id;
        assert_eq!(check.tracker.expected_at, Some(at("2026-10-25T00:30:00Z")));

        // Sunday 25 October: 02:30 happens twice (00:30Z in summer time, 01:30Z in winter time).
        let r =
            store.ping(&token, &ping(PingKind::Start, Some("r1")), at("2026-10-25T00:30:01Z")).await.expect("start");
        assert_eq!(r.map(|r| (r.status, r.unexpected)), Some(("running", false)));
        let r =
            store.ping(&token, &ping(PingKind::Success, Some("r1")), at("2026-10-25T00:31:00Z")).await.expect("end");
        assert_eq!(r.map(|r| (r.status, r.unexpected)), Some(("up", false)));
        // Run again in the repeated hour: an unexpected run, no alert.
        store.ping(&token, &ping(PingKind::Start, None), at("2026-10-25T01:30:02Z")).await.expect("start");
        let r = store.ping(&token, &ping(PingKind::Success, None), at("2026-10-25T01:31:00Z")).await.expect("end");
        assert_eq!(r.map(|r| r.unexpected), Some(true));
        assert_eq!(store.sweep_heartbeats(at("2026-10-25T01:45:00Z")).await.expect("sweep").changed, 0);
        assert!(firing(&store, org).await.is_empty());

        // Monday: nothing at 02:30 CET (01:30Z); missed once its grace is over, alerted once.
        assert_eq!(store.sweep_heartbeats(at("2026-10-26T01:39:00Z")).await.expect("sweep").changed, 0);
        assert_eq!(store.sweep_heartbeats(at("2026-10-26T01:41:00Z")).await.expect("sweep").changed, 1);
        assert_eq!(store.sweep_heartbeats(at("2026-10-26T01:42:00Z")).await.expect("again").changed, 0);
        assert_eq!(firing(&store, org).await, ["heartbeat_missed"]);
        let down = store.heartbeat(org, id).await.expect("get").expect("check");
        assert_eq!(down.tracker.problem, Some(Problem::Missed));
        assert_eq!(down.tracker.expected_at, Some(at("2026-10-27T01:30:00Z")));

        // Tuesday: a run that fails keeps it down (the alert says why now).
        store.ping(&token, &ping(PingKind::Start, None), at("2026-10-27T01:30:00Z")).await.expect("start");
        store.ping(&token, &ping(PingKind::Exit(2), None), at("2026-10-27T01:35:00Z")).await.expect("fail");
        assert_eq!(firing(&store, org).await, ["heartbeat_failed"]);
        // Wednesday: a good run resolves it, and the incident with it.
        store.ping(&token, &ping(PingKind::Start, None), at("2026-10-28T01:30:00Z")).await.expect("start");
        store.ping(&token, &ping(PingKind::Success, None), at("2026-10-28T01:33:00Z")).await.expect("ok");
        assert!(firing(&store, org).await.is_empty());
        // Thursday: a 5 s run of a job that takes minutes is a warning.
        store.ping(&token, &ping(PingKind::Start, None), at("2026-10-29T01:30:00Z")).await.expect("start");
        store.ping(&token, &ping(PingKind::Success, None), at("2026-10-29T01:30:05Z")).await.expect("short");
        assert_eq!(firing(&store, org).await, ["heartbeat_too_short"]);
        let alert = store.alerts(org, &AlertFilter::default(), None, 1).await.expect("alerts").remove(0);
        assert_eq!(alert.severity.as_str(), "warning");

        // The log: every ping, newest first, with the run's length on the ends it paired.
        let log = store.heartbeat_pings(id, None, 3).await.expect("pings");
        assert_eq!((log[0].kind.as_str(), log[0].duration_ms), ("success", Some(5000)));
        assert_eq!(log[0].body.as_deref(), Some("backup done\n"));
        let unexpected: Vec<bool> =
            store.heartbeat_pings(id, None, 100).await.expect("all").iter().map(|p| p.unexpected).collect();
        assert_eq!(unexpected.iter().filter(|u| **u).count(), 2, "the repeated hour's start and end");

        // Paused: pings are recorded, nothing is raised, and its alert resolves.
        let mut paused = store.heartbeat(org, id).await.expect("get").expect("check");
        let mut spec = paused.spec.clone();
        spec.is_active = false;
        paused = store.update_heartbeat(&paused, spec, "user:bob").await.expect("pause");
        assert!(firing(&store, org).await.is_empty());
        assert_eq!(paused.tracker.problem, None);
        store.ping(&token, &ping(PingKind::Fail, None), at("2026-10-30T01:35:00Z")).await.expect("fail");
        assert_eq!(store.sweep_heartbeats(at("2026-11-05T00:00:00Z")).await.expect("sweep").changed, 0);
        assert!(firing(&store, org).await.is_empty());
        assert!(
            store
                .ping("0".repeat(64).as_str(), &ping(PingKind::Success, None), Utc::now())
                .await
                .expect("unknown")
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pings_are_all_applied_and_the_log_is_bounded() {
    for (_db, conn, org) in stores().await {
        let store = conn.monitoring();
        let spec: HeartbeatSpec =
            serde_json::from_value(json!({"name": "busy", "period_seconds": 60, "grace_seconds": 30})).expect("spec");
        let token = format!("{:064x}", Uuid::new_v4().as_u128());
        let now = Utc::now();
        let check = store.create_heartbeat(org, spec, &token, "test", now).await.expect("create");
        let pings: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    store.ping(&token, &ping(PingKind::Success, None), now + Duration::milliseconds(i)).await
                })
            })
            .collect();
        for p in pings {
            assert!(p.await.expect("task").expect("ping").is_some());
        }
        assert_eq!(store.heartbeat_pings(check.id, None, 1000).await.expect("pings").len(), 20, "none lost");
        for i in 0..(PINGS_KEPT + 5) {
            store
                .ping(&token, &ping(PingKind::Success, None), now + Duration::seconds(1 + i as i64))
                .await
                .expect("ping");
        }
        assert_eq!(store.heartbeat_pings(check.id, None, 1000).await.expect("pings").len() as u64, PINGS_KEPT);
        let after = store.heartbeat(org, check.id).await.expect("get").expect("check");
        assert_eq!(
            after.tracker.last_ping_at.map(|t| t.timestamp()),
            Some((now + Duration::seconds(PINGS_KEPT as i64 + 5)).timestamp())
        );
    }
}
