//! Server-Sent Events: live job events in order, and resume with Last-Event-ID.

use std::time::Duration;

use reqwest::Method;
use sentinel_testkit::SseReader;
use serde_json::json;

use crate::helpers::spawn_app;

async fn open(app: &crate::helpers::TestApp, path: &str, token: &str, last: Option<&str>) -> SseReader {
    let mut req = app.client.get(format!("{}{path}", app.base)).bearer_auth(token);
    if let Some(l) = last {
        req = req.header("Last-Event-ID", l);
    }
    let res = req.send().await.expect("stream");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    SseReader::new(res)
}

#[tokio::test]
async fn a_job_stream_delivers_every_event_in_order_and_resumes() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let job = app.enqueue(&admin, json!({ "kind": "demo.sleep", "payload": { "seconds": 2 } })).await;
    let id = job["id"].as_str().expect("id");
    let mut stream = open(&app, &format!("/api/v1/jobs/{id}/stream"), &admin, None).await;
    let mut names = Vec::new();
    let mut seqs = Vec::new();
    while let Some(ev) = stream.next(Duration::from_secs(10)).await {
        seqs.push(ev.id.as_deref().and_then(|i| i.parse::<i64>().ok()).expect("id"));
        names.push(ev.event.clone().expect("event name"));
        assert_eq!(ev.data["job_id"], json!(id));
        if ev.event.as_deref() == Some("finished") {
            break;
        }
    }
    assert_eq!(names, ["queued", "started", "log", "progress", "progress", "finished"]);
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);

    // Resume after event 3: exactly the rest, once.
    let mut resumed = open(&app, &format!("/api/v1/jobs/{id}/stream"), &admin, Some("3")).await;
    let mut rest = Vec::new();
    while let Some(ev) = resumed.next(Duration::from_millis(800)).await {
        rest.push(ev.id.expect("id"));
    }
    assert_eq!(rest, ["4", "5", "6"]);

    let (status, _) = app.call(Method::GET, &format!("/api/v1/jobs/{id}/stream?after=x"), Some(&admin), None).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_organization_stream_carries_only_the_callers_jobs() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let other = app.other_org_admin().await;
    let mut mine = open(&app, "/api/v1/events/stream", &admin, None).await;
    let mut theirs = open(&app, "/api/v1/events/stream", &other, None).await;
    let job = app.enqueue(&admin, json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } })).await;
    let mut last_id = 0;
    loop {
        let ev = mine.next(Duration::from_secs(10)).await.expect("event");
        assert_eq!(ev.data["job_id"], job["id"]);
        let id: i64 = ev.id.as_deref().and_then(|i| i.parse().ok()).expect("id");
        assert!(id > last_id, "ids increase");
        last_id = id;
        if ev.event.as_deref() == Some("finished") {
            break;
        }
    }
    assert!(theirs.next(Duration::from_millis(500)).await.is_none(), "another organization saw our events");
    // Resuming from the start replays the same events from the log.
    let mut replay = open(&app, "/api/v1/events/stream", &admin, Some("0")).await;
    let mut ids = Vec::new();
    while let Some(ev) = replay.next(Duration::from_millis(800)).await {
        ids.push(ev.id.expect("id").parse::<i64>().expect("int"));
    }
    assert_eq!(ids.last().copied(), Some(last_id));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}
