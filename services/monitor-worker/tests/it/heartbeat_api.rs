//! Heartbeat checks through `sentinel up`, pinged with curl as a cron job would: the ping URL shown
//! once (never again, stored only as a hash), `/start` and the end paired by `?rid=`, a POST body
//! kept as the log, `/fail` and exit codes, a new token retiring the old URL, each bad field a 422;
//! and a check that stops being pinged raising `heartbeat_missed` by itself within seconds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::ingest::curl;

async fn firing_rules(api: &sentinel_testkit::product::Api) -> Vec<String> {
    let (_, alerts) = api.get("/api/v1/monitoring/alerts?state=firing").await;
    alerts["items"].as_array().expect("items").iter().map(|a| a["rule"].as_str().expect("rule").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_ping_their_heartbeat_and_a_silent_one_is_missed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_sentinel, api) = sentinel_testkit::product::start(tmp.path(), &[]).await;

    for (body, field) in [
        (json!({"name": "x", "period_seconds": 60, "cron": "0 3 * * *"}), "cron"),
        (json!({"name": "x"}), "period_seconds"),
        (json!({"name": "x", "period_seconds": 60, "timezone": "Europe/Berlin"}), "timezone"),
        (json!({"name": "x", "cron": "0 3 * * *", "timezone": "Mars/Olympus"}), "timezone"),
        (json!({"name": "x", "cron": "0 3 31 2 *"}), "cron"),
        (
            json!({"name": "x", "period_seconds": 60, "min_runtime_seconds": 600, "max_runtime_seconds": 60}),
            "min_runtime_seconds",
        ),
        (json!({"name": "  ", "period_seconds": 60}), "name"),
    ] {
        let (status, problem) = api.post("/api/v1/monitoring/heartbeats", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }

    // A job expected every 10 s, 2 s of grace, runs of at most 30 s.
    let (status, created) = api
        .post(
            "/api/v1/monitoring/heartbeats",
            json!({"name": "db backup", "period_seconds": 10, "grace_seconds": 2, "max_runtime_seconds": 30}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let url = created["ping_url"].as_str().expect("ping url").to_owned();
    let token = url.rsplit('/').next().expect("token").to_owned();
    assert_eq!(created["status"], "new");
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, read) = api.get(&format!("/api/v1/monitoring/heartbeats/{id}")).await;
    assert!(read.get("ping_url").is_none() && !read.to_string().contains(&token), "the token is shown once: {read}");

    // A run: start, then its end with the run's output as the body.
    let (status, _, headers) = curl(&[&format!("{url}/start?rid=run-1")]);
    assert_eq!(status, 200);
    assert!(headers.contains("x-heartbeat-status: running"), "{headers}");
    let (status, _, headers) =
        curl(&["-X", "POST", "--data-binary", "dumped 3 databases\n", &format!("{url}?rid=run-1")]);
    assert_eq!(status, 200);
    assert!(headers.contains("x-heartbeat-status: up"), "{headers}");
    let (_, pings) = api.get(&format!("/api/v1/monitoring/heartbeats/{id}/pings")).await;
    let newest = &pings["items"][0];
    assert_eq!((newest["kind"].as_str(), newest["run_id"].as_str()), (Some("success"), Some("run-1")), "{pings}");
    assert_eq!(newest["body"], "dumped 3 databases\n");
    assert!(newest["duration_ms"].as_i64().is_some(), "paired with its start: {newest}");

    // A failure by exit code opens an alert; a good exit code resolves it.
    assert_eq!(curl(&[&format!("{url}/3")]).0, 200);
    assert_eq!(firing_rules(&api).await, ["heartbeat_failed"]);
    assert_eq!(curl(&[&format!("{url}/0")]).0, 200);
    assert!(firing_rules(&api).await.is_empty());
    assert_eq!(curl(&[&format!("{url}/fail")]).0, 200);
    assert_eq!(firing_rules(&api).await, ["heartbeat_failed"]);
    assert_eq!(curl(&[&url]).0, 200);

    // Bad pings: an exit code out of range, a bad run id, an unknown token.
    let (status, problem, _) = curl(&[&format!("{url}/300")]);
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("signal")), "{problem}");
    let (status, problem, _) = curl(&[&format!("{url}?rid=has%20space")]);
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("rid")), "{problem}");
    let base = url.trim_end_matches(&token);
    assert_eq!(curl(&[&format!("{base}{}", "a".repeat(64))]).0, 404);
    assert_eq!(curl(&[&format!("{base}not-a-token")]).0, 404);

    // Silence: 10 s after the last run plus 2 s of grace, the dispatch sweep (every 5 s) raises it.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if firing_rules(&api).await == ["heartbeat_missed"] {
            break;
        }
        assert!(Instant::now() < deadline, "no missed alert: {:?}", firing_rules(&api).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, down) = api.get(&format!("/api/v1/monitoring/heartbeats/{id}")).await;
    assert_eq!((down["status"].as_str(), down["problem"].as_str()), (Some("down"), Some("missed")), "{down}");

    // A new token: the old URL stops working, the new one brings the check back up.
    let (status, renewed) = api.post(&format!("/api/v1/monitoring/heartbeats/{id}/token"), Value::Null).await;
    assert_eq!(status, 200, "{renewed}");
    let new_url = renewed["ping_url"].as_str().expect("new url").to_owned();
    assert_eq!(curl(&[&url]).0, 404);
    assert_eq!(curl(&[&new_url]).0, 200);
    assert!(firing_rules(&api).await.is_empty());

    // Listed, then deleted: its URL is gone.
    let (_, list) = api.get("/api/v1/monitoring/heartbeats").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(api.send(reqwest::Method::DELETE, &format!("/api/v1/monitoring/heartbeats/{id}"), None).await.0, 204);
    assert_eq!(curl(&[&new_url]).0, 404);
}
