//! Recovery objectives on `/metrics` through `sentinel up`: a plan whose backups stopped (here: one
//! that never runs) shows its RPO breached, while a plan backed up within its RPO does not. The
//! figures come from the journal through the scheduler, not from the backup worker, so they keep
//! showing when no worker backs anything up.

use std::time::{Duration, Instant};

use sentinel_testkit::procs::get_text;
use serde_json::json;

use crate::jobs::{disk, pg_target, product};
use crate::pipeline::{drop_pg, pg_source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_past_its_rpo_shows_the_breach_on_metrics() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let source = pg_source(work.path(), 100).await;
    let (sentinel, api) = product(tmp.path()).await;
    let target = api.create("/api/v1/backups/targets", pg_target("app", &source, "postgres")).await;
    let dest = disk(&api, &store).await;
    let plan = |name: &str, rpo: u32, enabled: bool| json!({"name": name, "target_id": target, "destination_ids": [dest], "cron": "* * * * *", "rpo_minutes": rpo, "rto_minutes": 5, "enabled": enabled});
    // Disabled, so it never runs: its promise is broken a minute after it was made.
    let stopped = api.create("/api/v1/backups/plans", plan("stopped", 1, false)).await;
    // Backed up now, well within its ten minutes.
    let kept = api.create("/api/v1/backups/plans", plan("kept", 10, false)).await;
    let run = api.job(&format!("/api/v1/backups/plans/{kept}/run"), json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");

    let value = |text: &str, name: &str, plan: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("plan=\"{plan}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = get_text(&sentinel.url("/metrics")).await;
        if value(&text, "sentinel_backup_rpo_breached", &stopped) == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "no RPO breach shown for the stopped plan:\n{text}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(value(&text, "sentinel_backup_rpo_seconds", &stopped), Some(60.0), "{text}");
    assert_eq!(value(&text, "sentinel_backup_rto_seconds", &stopped), Some(300.0), "{text}");
    assert!(value(&text, "sentinel_backup_newest_good_age_seconds", &stopped).is_some_and(|a| a > 60.0), "{text}");
    assert_eq!(value(&text, "sentinel_backup_rpo_breached", &kept), Some(0.0), "backed up within its RPO: {text}");
    assert!(value(&text, "sentinel_backup_newest_good_age_seconds", &kept).is_some_and(|a| a < 600.0), "{text}");
    // The breach is also an alert on the plan; the plan kept within its RPO has none.
    let (_, alerts) = api.get("/api/v1/monitoring/alerts?state=firing").await;
    let rules = |plan: &str| -> Vec<String> {
        alerts["items"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|a| a["source_id"] == json!(plan))
            .map(|a| a["rule"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(rules(&stopped), ["backup_rpo_breached"], "{alerts}");
    assert!(rules(&kept).is_empty(), "{alerts}");
    drop_pg(work.path(), &[&source]).await;
}
