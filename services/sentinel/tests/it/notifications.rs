//! Notifications delivered once per key across a crash and an outage of the receiver, with real
//! processes: two monitor-worker replicas share the outbox; one is SIGKILLed in the middle of a
//! burst while the receiver is slow; then the receiver refuses everything for two minutes while the
//! alerts resolve; then it recovers. Every transition arrives, under one key per channel, each
//! group's firing before its resolved.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use sentinel_testkit::TEST_TOKEN;
use sentinel_testkit::receivers::HttpReceiver;
use serde_json::{Value, json};

use crate::distributed::Cluster;
use crate::procs::{client, wait_ready};

/// Heartbeat checks that fail together (each its own incident and notification group).
const CHECKS: usize = 30;

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method, url).bearer_auth(TEST_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_every_transition_once_through_a_kill_and_a_two_minute_refusal() {
    let cluster = Cluster::new(&[]).await;
    cluster.migrate();
    let notify = [
        ("SENTINEL_MONITOR__NOTIFY_EVALUATE_MS", "200"),
        ("SENTINEL_MONITOR__NOTIFY_LEASE_SECS", "5"),
        ("SENTINEL_MONITOR__NOTIFY_MAX_BACKOFF_SECS", "10"),
    ];
    let mut gateway = cluster.start("api-gateway", &[("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN)]);
    let mut doomed = cluster.start("monitor-worker", &notify);
    let mut survivor = cluster.start("monitor-worker", &notify);
    for p in [&mut gateway, &mut doomed, &mut survivor] {
        wait_ready(p, "/ready", Duration::from_secs(30)).await;
    }
    let api = |path: &str| gateway.url(path);
    let receiver = HttpReceiver::start().await;
    let (status, channel) = call(
        reqwest::Method::POST,
        api("/api/v1/monitoring/channels"),
        Some(json!({"name": "hook", "kind": "webhook", "url": format!("{}/hook", receiver.base)})),
    )
    .await;
    assert_eq!(status, 201, "{channel}");
    let policy = json!({"group_wait_seconds": 0, "group_interval_seconds": 1, "repeat_interval_seconds": 86400});
    let (status, saved) = call(reqwest::Method::PUT, api("/api/v1/monitoring/notification-policy"), Some(policy)).await;
    assert_eq!(status, 200, "{saved}");
    let mut pings = Vec::new();
    for i in 0..CHECKS {
        let (status, check) = call(
            reqwest::Method::POST,
            api("/api/v1/monitoring/heartbeats"),
            Some(json!({"name": format!("job {i}"), "period_seconds": 3600})),
        )
        .await;
        assert_eq!(status, 201, "{check}");
        pings.push(check["ping_url"].as_str().expect("ping url").to_owned());
    }

    // The burst: every job fails at once; the receiver is slow, so sends are in flight at the kill.
    receiver.delay(300);
    for url in &pings {
        assert!(client().get(format!("{url}/fail")).send().await.expect("ping").status().is_success());
    }
    until("the first deliveries", Duration::from_secs(30), || receiver.accepted("/hook").len() >= 5).await;
    doomed.signal("-KILL");
    let _ = doomed.wait_exit(Duration::from_secs(10));

    // The receiver refuses everything for two minutes, during which every job recovers.
    receiver.delay(0);
    receiver.answer(503);
    for url in &pings {
        assert!(client().get(url.clone()).send().await.expect("ping").status().is_success());
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    receiver.answer(200);

    // Every transition arrives: one firing and one resolved per check.
    let keys = |r: &HttpReceiver| -> HashSet<String> {
        r.accepted("/hook").iter().filter_map(|x| x.header("idempotency-key").map(str::to_owned)).collect()
    };
    until("every transition", Duration::from_secs(90), || keys(&receiver).len() >= 2 * CHECKS).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted = receiver.accepted("/hook");
    let distinct = keys(&receiver);
    assert_eq!(distinct.len(), 2 * CHECKS, "one key per transition and channel");
    // Per group: sequence 1 is the firing and 2 the resolved, the firing accepted first.
    let mut groups: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for r in &accepted {
        let body = r.json();
        let group = body["group"]["id"].as_str().expect("group").to_owned();
        let seq = body["sequence"].as_u64().expect("sequence");
        assert_eq!(r.header("idempotency-key"), body["idempotency_key"].as_str());
        groups.entry(group).or_default().push((seq, body["status"].as_str().unwrap_or("").to_owned()));
    }
    assert_eq!(groups.len(), CHECKS);
    for (group, seen) in &groups {
        let first_resolved = seen.iter().position(|(s, _)| *s == 2).expect("resolved");
        assert!(seen[..first_resolved].iter().any(|(s, st)| *s == 1 && st == "firing"), "{group}: {seen:?}");
        assert!(seen.iter().all(|(s, st)| (*s == 1) == (st == "firing")), "{group}: {seen:?}");
    }
    // A send cut by the kill may reach the receiver twice, under the same key (that is what the key
    // is for); anything else would be a second notification.
    let resent = accepted.len() - distinct.len();
    assert!(resent <= 64, "{resent} resends");
    // The log agrees: everything delivered, nothing given up.
    let (_, log) = call(reqwest::Method::GET, api("/api/v1/monitoring/notifications?limit=1000"), None).await;
    let items = log["items"].as_array().expect("items");
    assert_eq!(items.len(), 2 * CHECKS, "{log}");
    assert!(items.iter().all(|n| n["state"] == "delivered"), "{log}");
}
