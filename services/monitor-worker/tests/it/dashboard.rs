//! The dashboard summary through the product: targets up, down (with its alert) and paused, a
//! machine heard from, an open incident, a plan whose last backup failed and that failed job.

use std::time::Duration;

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_targets_machines_incidents_backups_and_jobs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (http, _) = crate::servers::http().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_sentinel, api) =
        sentinel_testkit::product::start(tmp.path(), &[("SENTINEL_SCHEDULER__HTTP_CHECK_DISPATCH_INTERVAL_SECS", "1")])
            .await;
    let settings = json!({"notification_email": null, "heartbeat_threshold_minutes": 5, "consecutive_failures_threshold": 1,
                          "consecutive_successes_threshold": 1, "alert_grouping_enabled": true});
    let (status, _) = api.send(reqwest::Method::PUT, "/api/v1/monitoring/settings", Some(settings)).await;
    assert_eq!(status, 200);
    for (name, path, active) in [("up", "/ok", true), ("down", "/fail", true), ("paused", "/ok?paused", false)] {
        let body = json!({"name": name, "url": format!("http://127.0.0.1:{http}{path}"), "check_interval_seconds": 1, "is_active": active});
        api.create("/api/v1/monitoring/targets", body).await;
    }
    let batch = json!({"machine": {"hostname": "db-01"}, "metrics": [{"name": "load", "type": "numeric", "value": 1.5}],
                       "sent_at": chrono::Utc::now()});
    let (status, _) = api.post("/api/v1/monitoring/metrics", batch).await;
    assert_eq!(status, 202);
    // A plan whose backup fails: its SQLite file does not exist.
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).expect("store");
    let target = api
        .create(
            "/api/v1/backups/targets",
            json!({"name": "gone", "engine": "sqlite", "path": tmp.path().join("missing.db")}),
        )
        .await;
    let dest = api
        .create("/api/v1/backups/destinations", json!({"name": "disk", "config": {"kind": "local", "path": store}}))
        .await;
    let plan = api
        .create("/api/v1/backups/plans", json!({"name": "nightly", "target_id": target, "destination_ids": [dest]}))
        .await;
    let job = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");

    let summary = sentinel_testkit::eventually(Duration::from_secs(30), || {
        let api = &api;
        async move {
            let (status, d) = api.get("/api/v1/monitoring/dashboard").await;
            assert_eq!(status, 200, "{d}");
            let t = &d["targets"];
            (t["up"] == 1 && t["down"] == 1 && t["firing"] == 1).then_some(d)
        }
    })
    .await
    .expect("both active targets checked, the failing one alerting");
    assert_eq!(summary["targets"]["paused"], 1, "{summary}");
    assert_eq!(summary["targets"]["pending"], 0);
    // The failing target's incident, and the failed backup's: a failed backup is an alert too.
    assert_eq!(summary["incidents"]["open"]["critical"], 2, "{summary}");
    assert_eq!(summary["machines"], json!({"total": 1, "silent": 0}));
    assert_eq!(summary["backups"]["plans"], 1);
    let failing: &Vec<Value> = summary["backups"]["failing"].as_array().expect("failing");
    assert_eq!((failing.len(), failing[0]["plan_name"].as_str()), (1, Some("nightly")), "{summary}");
    assert!(summary["jobs"]["failed_last_hour"].as_u64().expect("failed") >= 1, "{summary}");
}
