//! Schedules through the API with the scheduler running in-process (the embedded mode): validation,
//! preview, firing history, and edits that take effect within 2 s without a restart.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, schedule_body, spawn_app, spawn_app_with_scheduler, spawn_app_with_scheduler_and};

/// How long an API change may take to reach the scheduler (the bound).
const EFFECTIVE_WITHIN: Duration = Duration::from_secs(2);

async fn firings(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let (status, page) =
        app.call(Method::GET, &format!("/api/v1/schedules/{id}/firings?limit=1000"), Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

async fn wait_firings(app: &TestApp, token: &str, id: &str, at_least: usize, within: Duration) -> Vec<Value> {
    sentinel_testkit::eventually(within, || async {
        let f = firings(app, token, id).await;
        (f.len() >= at_least).then_some(f)
    })
    .await
    .unwrap_or_else(|| panic!("schedule {id} did not fire {at_least} times within {within:?}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).expect("RFC 3339 time").with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_tick_once_and_records_what_happened() {
    let app = spawn_app_with_scheduler().await;
    let admin = app.admin().await;
    let (status, created) =
        app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(schedule_body("tick", 1))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["enabled"], true);
    assert!(created["next_fire_at"].is_string());

    let fired = wait_firings(&app, &admin, &id, 3, Duration::from_secs(10)).await;
    // Newest first, one row per tick, ticks one second apart, each with its own job.
    let ticks: Vec<DateTime<Utc>> = fired.iter().map(|f| time(&f["tick_at"])).collect();
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[0] - pair[1]).num_milliseconds(),
            1000,
            "consecutive ticks, none doubled or missed: {ticks:?}"
        );
    }
    let jobs: std::collections::HashSet<&str> = fired.iter().map(|f| f["job_id"].as_str().expect("job")).collect();
    assert_eq!(jobs.len(), fired.len());
    for f in &fired {
        assert_eq!(f["outcome"], "fired");
        assert!(time(&f["fired_at"]) >= time(&f["tick_at"]));
    }
    // "When did it last run and what happened" is one call: the job's outcome comes with the firing.
    let oldest = fired.last().expect("one").clone();
    let job = app.wait_state(&admin, oldest["job_id"].as_str().expect("job"), "succeeded").await;
    assert_eq!(job["requested_by"], format!("schedule:{id}"));
    let again = firings(&app, &admin, &id).await;
    let row = again.iter().find(|f| f["id"] == oldest["id"]).expect("still listed");
    assert_eq!(row["job_state"], "succeeded");
    let (_, schedule) = app.call(Method::GET, &format!("/api/v1/schedules/{id}"), Some(&admin), None).await;
    assert!(schedule["last_fired_at"].is_string() && schedule["last_job_id"].is_string(), "{schedule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_edit_disable_and_delete_take_effect_within_two_seconds() {
    let app = spawn_app_with_scheduler().await;
    let admin = app.admin().await;
    // Created: the first tick (≤ 1 s away) fires within the bound.
    let body =
        json!({ "name": "every second", "cron": "* * * * * *", "kind": "demo.sleep", "payload": { "seconds": 0 } });
    let (status, created) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    wait_firings(&app, &admin, &id, 1, EFFECTIVE_WITHIN + Duration::from_secs(1)).await;

    // Disabled: nothing fires once the bound has passed.
    let (status, paused) = app
        .call(Method::PATCH, &format!("/api/v1/schedules/{id}"), Some(&admin), Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["enabled"], false);
    assert!(paused["next_fire_at"].is_null());
    let disabled_at = Utc::now();
    tokio::time::sleep(EFFECTIVE_WITHIN).await;
    let settled = firings(&app, &admin, &id).await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = firings(&app, &admin, &id).await;
    assert_eq!(after.len(), settled, "a disabled schedule stays quiet");
    assert!(
        after.iter().all(|f| time(&f["fired_at"]) <= disabled_at + chrono::Duration::from_std(EFFECTIVE_WITHIN).expect("bound")),
        "no firing later than 2 s after the disable"
    );

    // Edited and re-enabled: the next firing runs the new payload, within the bound.
    let (status, edited) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            Some(&admin),
            Some(json!({"enabled": true, "payload": {"seconds": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["version"], 3);
    let resumed = wait_firings(&app, &admin, &id, settled + 1, EFFECTIVE_WITHIN + Duration::from_secs(1)).await;
    let (_, job) = app
        .call(Method::GET, &format!("/api/v1/jobs/{}", resumed[0]["job_id"].as_str().expect("job")), Some(&admin), None)
        .await;
    assert_eq!(job["payload"], json!({"seconds": 1}), "the edit is what runs");

    // Deleted: gone from the API, and no job is created for it any more.
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/schedules/{id}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::GET, &format!("/api/v1/schedules/{id}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    tokio::time::sleep(EFFECTIVE_WITHIN).await;
    let count = |jobs: Value| jobs["items"].as_array().map_or(0, Vec::len);
    let path = format!("/api/v1/jobs?requested_by=schedule:{id}&limit=1000");
    let (_, before) = app.call(Method::GET, &path, Some(&admin), None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, later) = app.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(count(later), count(before), "a deleted schedule enqueues nothing");
}

#[tokio::test]
async fn invalid_schedules_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let cases = [
        (json!({"name": "a", "cron": "*/5 * * *", "kind": "demo.sleep", "payload": {"seconds": 0}}), "cron"),
        (json!({"name": "a", "cron": "99 * * * *", "kind": "demo.sleep", "payload": {"seconds": 0}}), "cron"),
        (
            json!({"name": "a", "cron": "0 9 * * *", "timezone": "Europe/Atlantis", "kind": "demo.sleep", "payload": {"seconds": 0}}),
            "timezone",
        ),
        (json!({"name": "a", "interval_secs": 10, "kind": "no.such.kind"}), "kind"),
        (json!({"name": "a", "interval_secs": 10, "kind": "system.retention"}), "kind"),
        (json!({"name": "a", "interval_secs": 0, "kind": "demo.sleep", "payload": {"seconds": 0}}), "interval_secs"),
        (
            json!({"name": "a", "cron": "* * * * *", "interval_secs": 10, "kind": "demo.sleep", "payload": {"seconds": 0}}),
            "interval_secs",
        ),
        (
            json!({"name": "a", "interval_secs": 10, "kind": "demo.sleep", "payload": {"seconds": -1}}),
            "payload.seconds",
        ),
        (
            json!({"name": "a", "interval_secs": 10, "kind": "demo.sleep", "payload": {"seconds": 0}, "misfire_policy": "later"}),
            "misfire_policy",
        ),
        (
            json!({"name": "a", "interval_secs": 10, "kind": "demo.sleep", "payload": {"seconds": 0}, "end_at": "2001-01-01T00:00:00Z"}),
            "end_at",
        ),
        (json!({"name": "", "interval_secs": 10, "kind": "demo.sleep", "payload": {"seconds": 0}}), "name"),
        (
            json!({"name": "a", "interval_secs": 10, "kind": "demo.sleep", "payload": {"seconds": 0}, "colour": "red"}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        let fields: Vec<&str> =
            problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{body}: expected {field} in {problem}");
    }
    let (status, _) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(schedule_body("twice", 10))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) =
        app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(schedule_body("twice", 10))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, problem) = app.call(Method::GET, "/api/v1/schedules/not-a-uuid", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, problem) =
        app.call(Method::POST, "/api/v1/jobs", Some(&admin), Some(json!({"kind": "system.retention"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "system work is not enqueued by callers: {problem}");
}

#[tokio::test]
async fn preview_returns_the_next_fire_times_in_the_zone() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // 02:30 does not exist in New York on 2026-03-08: that day's run moves to 03:30 EDT.
    let (status, preview) = app
        .call(
            Method::POST,
            "/api/v1/schedules/preview",
            Some(&admin),
            Some(json!({"cron": "30 2 * * *", "timezone": "America/New_York", "after": "2026-03-07T12:00:00Z", "count": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["fire_times"], json!(["2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]));
    assert_eq!(preview["local_times"][1], "2026-03-09T02:30:00-04:00");
    let (status, problem) = app
        .call(Method::POST, "/api/v1/schedules/preview", Some(&admin), Some(json!({"cron": "0 9 * * *", "count": 0})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    let body = json!({"name": "weekdays", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "kind": "demo.sleep", "payload": {"seconds": 0}});
    let (_, created) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(body)).await;
    let id = created["id"].as_str().expect("id");
    let (status, preview) =
        app.call(Method::GET, &format!("/api/v1/schedules/{id}/preview?count=5"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let times: Vec<DateTime<Utc>> = preview["fire_times"].as_array().expect("times").iter().map(time).collect();
    assert_eq!(times.len(), 5);
    assert_eq!(times[0], time(&created["next_fire_at"]));
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    for local in preview["local_times"].as_array().expect("local") {
        let local = DateTime::parse_from_rfc3339(local.as_str().expect("str")).expect("time");
        assert_eq!(local.format("%H:%M").to_string(), "09:00", "nine o'clock Paris time, summer or winter");
        assert!(!matches!(local.format("%a").to_string().as_str(), "Sat" | "Sun"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_stops_at_its_end_date() {
    let app = spawn_app_with_scheduler().await;
    let admin = app.admin().await;
    let end = Utc::now() + chrono::Duration::milliseconds(2_500);
    let mut body = schedule_body("short-lived", 1);
    body["end_at"] = json!(end.to_rfc3339());
    let (status, created) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fired = firings(&app, &admin, &id).await;
    assert!(!fired.is_empty() && fired.len() <= 3, "{fired:?}");
    assert!(fired.iter().all(|f| time(&f["tick_at"]) <= end), "no tick after the end date: {fired:?}");
    let (_, schedule) = app.call(Method::GET, &format!("/api/v1/schedules/{id}"), Some(&admin), None).await;
    assert!(schedule["next_fire_at"].is_null(), "ended: {schedule}");
    let (_, preview) = app.call(Method::GET, &format!("/api/v1/schedules/{id}/preview"), Some(&admin), None).await;
    assert_eq!(preview["fire_times"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_periodic_work_fires_and_runs() {
    // Retention every second, so the test sees it fire and its job succeed.
    let app = spawn_app_with_scheduler_and(&[("scheduler.retention_interval_secs", "1")]).await;
    let store = app.spine.db().schedules();
    let retention = sentinel_testkit::eventually(Duration::from_secs(10), || async {
        store.list_system().await.ok()?.into_iter().find(|s| s.owner.as_deref() == Some("builtin:retention"))
    })
    .await
    .expect("the built-in retention schedule exists");
    assert_eq!(retention.interval_secs, Some(1));
    let job = sentinel_testkit::eventually(Duration::from_secs(15), || async {
        for f in store.firings(retention.id, None, 20).await.ok()? {
            let job = app.spine.store().get(f.job_id?).await.ok()??;
            if job.state == sentinel_jobs::domain::JobState::Succeeded {
                return Some(job);
            }
        }
        None
    })
    .await
    .expect("a retention job ran to success");
    assert!(job.result.as_ref().is_some_and(|r| r.get("deleted_jobs").is_some()), "{:?}", job.result);
    // System schedules belong to no organization: callers do not see them.
    let admin = app.admin().await;
    let (_, page) = app.call(Method::GET, "/api/v1/schedules", Some(&admin), None).await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn edits_keep_the_pending_tick_unless_the_trigger_changes() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let end = Utc::now() + chrono::Duration::milliseconds(1_500);
    let mut body = schedule_body("keeps its tick", 60);
    body["end_at"] = json!(end.to_rfc3339());
    let (_, created) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(body)).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/schedules/{id}");

    let (status, renamed) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["next_fire_at"], created["next_fire_at"], "a rename does not move the pending tick");

    // Once the end date has passed, the schedule can still be renamed or paused (its end date is kept).
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (status, paused) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"enabled": false}))).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    let (status, problem) =
        app.call(Method::PATCH, &path, Some(&admin), Some(json!({"end_at": "2001-01-01T00:00:00Z"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a new end date in the past is refused: {problem}");

    let (status, moved) = app
        .call(Method::PATCH, &path, Some(&admin), Some(json!({"enabled": true, "interval_secs": 30, "end_at": null})))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert!(moved["end_at"].is_null());
    let next = time(&moved["next_fire_at"]);
    assert!(
        next > Utc::now() && next <= Utc::now() + chrono::Duration::seconds(30),
        "a new interval starts now: {moved}"
    );
}

#[tokio::test]
async fn a_disabled_schedules_preview_still_checks_the_count() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut body = schedule_body("paused", 60);
    body["enabled"] = json!(false);
    let (status, created) = app.call(Method::POST, "/api/v1/schedules", Some(&admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/api/v1/schedules/{}/preview", created["id"].as_str().expect("id"));
    let (status, preview) = app.call(Method::GET, &format!("{path}?count=3"), Some(&admin), None).await;
    assert_eq!((status, preview["fire_times"].clone()), (StatusCode::OK, json!([])), "{preview}");
    let (status, problem) = app.call(Method::GET, &format!("{path}?count=0"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "count");
}
