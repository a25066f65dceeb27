//! The monitoring store on PostgreSQL and SQLite alike: deadlines claimed once under a lease and
//! claimed again once it ends; a deadline's result recorded once however often it is sent; targets
//! moved to their next absolute deadline; and the rollups, whose uptime equals what the raw results
//! say before and after the raw results are trimmed.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sentinel_jobs::db::Database;
use sentinel_jobs::db::monitoring::{CheckResult, MonitoringStore, UptimeWindow};
use sentinel_jobs::domain::monitoring::{CheckStatus, ErrorClass, TargetSpec};
use serde_json::json;
use uuid::Uuid;

pub(crate) async fn stores() -> Vec<(sentinel_testkit::TestDb, Database, Uuid)> {
    let mut out = Vec::new();
    for db in
        [sentinel_testkit::TestDb::postgres().await.expect("pg"), sentinel_testkit::TestDb::sqlite().expect("sqlite")]
    {
        let conn = Database::connect(&db.url, 4).await.expect("connect");
        conn.migrate().await.expect("migrate");
        let org = conn.access().create_org(&format!("org-{}", Uuid::new_v4().simple())).await.expect("org").id;
        out.push((db, conn, org));
    }
    out
}

pub(crate) fn spec(url: &str, interval: u32) -> TargetSpec {
    serde_json::from_value(json!({"name": url, "url": url, "check_interval_seconds": interval, "timeout_seconds": 2}))
        .expect("spec")
}

pub(crate) fn result(target: Uuid, org: Uuid, due: DateTime<Utc>, up: bool, ms: f64) -> CheckResult {
    CheckResult {
        target_id: target,
        org_id: org,
        due_at: due,
        started_at: due,
        response_ms: ms,
        status: if up { CheckStatus::Up } else { CheckStatus::Down },
        status_code: up.then_some(200),
        error_class: (!up).then_some(ErrorClass::Status),
        message: None,
        cert_expires_at: None,
        manual: false,
    }
}

#[tokio::test]
async fn deadlines_are_claimed_once_and_recorded_once() {
    for (_db, conn, org) in stores().await {
        let store: MonitoringStore = conn.monitoring();
        let t = store
            .create_target(org, spec("http://127.0.0.1:9/a", 5), "test", Default::default())
            .await
            .expect("create");
        let due = t.next_due_at;
        assert!(due > Utc::now() && due <= Utc::now() + Duration::seconds(5), "{due}");
        let horizon = due + Duration::seconds(1);
        let first = store.claim_due("one", horizon, Duration::seconds(1), 100).await.expect("claim");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].due_at, due);
        // The lease holds: a second worker finds nothing.
        assert!(store.claim_due("two", horizon, Duration::seconds(1), 100).await.expect("claim").is_empty());
        // The same deadline reported twice (a re-run after a crash) is counted once.
        let r = result(t.id, org, due, false, 12.0);
        let outcomes = store.record_results(&[r.clone(), r.clone()]).await.expect("record").outcomes;
        assert_eq!(outcomes.iter().filter(|o| o.recorded).count(), 1, "{outcomes:?}");
        assert!(!store.record_results(&[r]).await.expect("again").outcomes[0].recorded);
        let after = store.target(org, t.id).await.expect("get").expect("target");
        assert_eq!(after.state.consecutive_failures, 1, "counted once");
        assert_eq!(after.state.last_status, Some(CheckStatus::Down));
        // The next deadline is the previous plus the interval, whatever the time of recording.
        assert_eq!(after.next_due_at, due + Duration::seconds(5));
        // A manual check is stored but moves nothing.
        let mut manual = result(t.id, org, Utc::now(), true, 3.0);
        manual.manual = true;
        store.record_results(&[manual]).await.expect("manual");
        let after = store.target(org, t.id).await.expect("get").expect("target");
        assert_eq!(after.next_due_at, due + Duration::seconds(5));
        assert_eq!((after.state.consecutive_failures, after.state.consecutive_successes), (0, 1));
        // A lease that ran out (its worker died) is claimed again, for the same deadline.
        let next = after.next_due_at;
        let held = store.claim_due("dead", next + Duration::seconds(1), -Duration::seconds(60), 10).await.expect("c");
        assert_eq!(held.len(), 1);
        let again = store.claim_due("alive", next + Duration::seconds(1), Duration::seconds(1), 10).await.expect("c");
        assert_eq!(again.iter().map(|c| c.due_at).collect::<Vec<_>>(), [next]);
        // Released leases are claimable at once.
        store.release_claims("alive", &[t.id]).await.expect("release");
        assert_eq!(
            store.claim_due("third", next + Duration::seconds(1), Duration::seconds(1), 10).await.expect("c").len(),
            1
        );
        // Paused targets are never claimed.
        let mut paused = spec("http://127.0.0.1:9/paused", 5);
        paused.is_active = false;
        store.create_target(org, paused, "test", Default::default()).await.expect("paused");
        assert!(
            store
                .claim_due("x", Utc::now() + Duration::seconds(30), Duration::seconds(1), 10)
                .await
                .expect("c")
                .iter()
                .all(|c| c.target_id == t.id)
        );
    }
}

#[tokio::test]
async fn rollups_keep_uptime_exact_after_raw_results_are_trimmed() {
    for (_db, conn, org) in stores().await {
        let store = conn.monitoring();
        let t = store
            .create_target(org, spec("http://127.0.0.1:9/r", 300), "test", Default::default())
            .await
            .expect("create");
        let now = Utc::now();
        // Three days of results every 5 minutes: down one check in four, slower when down.
        let start = (now - Duration::days(3)).duration_trunc(Duration::hours(1)).expect("trunc");
        let mut results = Vec::new();
        let mut due = start;
        let mut i = 0u32;
        while due < now - Duration::minutes(1) {
            let up = !i.is_multiple_of(4);
            results.push(result(t.id, org, due, up, if up { 40.0 } else { 900.0 }));
            due += Duration::minutes(5);
            i += 1;
        }
        for chunk in results.chunks(200) {
            store.record_results(chunk).await.expect("record");
        }
        let exact = |from: DateTime<Utc>| {
            let r: Vec<&CheckResult> = results.iter().filter(|r| r.due_at >= from).collect();
            (r.len() as u64, r.iter().filter(|r| r.status == CheckStatus::Up).count() as u64)
        };
        let before = store.uptime(t.id, now).await.expect("uptime");
        // Nothing rolled up yet: 24 h from the raw results alone, exactly.
        let day = before.iter().find(|u| u.window == UptimeWindow::Day).expect("24h");
        assert_eq!((day.checks, day.up), exact(now - Duration::hours(24)));
        // Roll up (settled hours only) and keep raw results for 6 hours.
        // A sweep rolls up at most 48 hours: catching up on three days takes two.
        let first = store.roll_up(now, Duration::minutes(5), Duration::hours(6)).await.expect("roll up");
        let second = store.roll_up(now, Duration::minutes(5), Duration::hours(6)).await.expect("roll up");
        assert_eq!(first.hours, 48, "{first:?}");
        assert!(
            second.hours >= 23 && first.days + second.days >= 2 && first.raw_deleted + second.raw_deleted > 0,
            "{second:?}"
        );
        let again = store.roll_up(now, Duration::minutes(5), Duration::hours(6)).await.expect("again");
        assert_eq!((again.hours, again.raw_deleted), (0, 0), "{again:?}");
        let after = store.uptime(t.id, now).await.expect("uptime");
        // Windows are read at hour resolution: the hour the window starts in counts whole.
        for u in &after {
            let from = match u.window {
                UptimeWindow::Day => now - Duration::hours(24),
                _ => start,
            };
            let from = from.duration_trunc(Duration::hours(1)).expect("trunc").max(start);
            assert_eq!((u.checks, u.up), exact(from), "{:?}", u.window);
            let pct = u.uptime_percent.expect("percent");
            assert!((pct - 75.0).abs() < 1.0, "{:?}: {pct}", u.window);
            // A quarter of the checks took 900 ms: p50 is the 40 ms bucket, p99 the 1000 ms one.
            assert_eq!((u.p50_ms, u.p99_ms), (Some(50), Some(1000)), "{:?}", u.window);
        }
        let raw_left = store.results(t.id, None, None, 10_000).await.expect("raw");
        assert!(raw_left.iter().all(|r| r.due_at >= now - Duration::hours(7)), "raw results past their window remain");
        assert!(!raw_left.is_empty());
    }
}

#[tokio::test]
async fn ingest_keeps_the_newest_value_and_counts_a_replay_once() {
    use sentinel_jobs::domain::monitoring::metrics::RawBatch;
    for (_db, conn, org) in stores().await {
        let store = conn.monitoring();
        let batch = |at: &str, v: f64| {
            serde_json::from_value::<RawBatch>(json!({"machine": {"hostname": "web-01"}, "sent_at": at,
                "metrics": [{"name": "load", "type": "numeric", "value": v}]}))
            .expect("shape")
            .check(Utc::now())
            .expect("valid")
        };
        let first = store.ingest(org, Some("a"), &batch("2026-01-01T00:02:00Z", 2.0)).await.expect("ingest");
        assert!(!first.replayed);
        assert!(store.ingest(org, Some("a"), &batch("2026-01-01T00:02:00Z", 2.0)).await.expect("replay").replayed);
        // A late batch adds its sample but leaves the newer latest value.
        store.ingest(org, Some("b"), &batch("2026-01-01T00:01:00Z", 1.0)).await.expect("late");
        let metric = store.metrics(org, None, Some("load"), None, 10).await.expect("metrics").remove(0);
        assert_eq!(metric.last_value, Some(json!(2.0)));
        let from = "2026-01-01T00:00:00Z".parse().expect("time");
        let points = store.series(&metric, from, from + Duration::hours(1), 100).await.expect("series");
        assert_eq!(points.len(), 2, "{points:?}");
        store.ingest(org, None, &batch("2026-01-01T00:03:00Z", 3.0)).await.expect("newer");
        let metric = store.metrics(org, None, Some("load"), None, 10).await.expect("metrics").remove(0);
        assert_eq!(metric.last_value, Some(json!(3.0)));
    }
}
