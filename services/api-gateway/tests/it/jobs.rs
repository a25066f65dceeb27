//! The tasks API: validation and problem documents, deduplication, listing, cancel, retry, dead letters.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn invalid_requests_get_problem_documents_naming_each_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&admin),
            Some(json!({ "kind": "demo.sleep", "payload": { "seconds": "soon" }, "priority": "urgent", "max_attempts": 0, "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "https://sentinel.dev/problems/validation");
    assert_eq!(fields(&problem), ["payload.seconds", "priority", "delay_seconds", "max_attempts"]);

    let (status, problem) =
        app.call(Method::POST, "/api/v1/jobs", Some(&admin), Some(json!({ "kind": "no.such.kind" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["kind"]);

    // Unknown fields are refused rather than silently ignored.
    let (status, problem) = app
        .call(Method::POST, "/api/v1/jobs", Some(&admin), Some(json!({ "kind": "demo.sleep", "payloda": {} })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["errors"][0]["reason"].as_str().unwrap_or("").contains("payloda"), "{problem}");

    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(format!("{}/api/v1/jobs", app.base))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = raw("{not json", "application/json").await.expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = raw("kind=demo.sleep", "application/x-www-form-urlencoded").await.expect("send");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = Box::leak(
        format!("{{\"kind\":\"demo.sleep\",\"payload\":{{\"x\":\"{}\"}}}}", "a".repeat(8192)).into_boxed_str(),
    );
    let res = raw(big, "application/json").await.expect("send");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (status, problem) = app.call(Method::GET, "/api/v1/nothing-here", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
    let (status, _) = app.call(Method::GET, "/api/v1/jobs/not-a-uuid", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = app.call(Method::GET, "/api/v1/jobs?state=bogus&limit=0", Some(&admin), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["state", "limit"]);
}

#[tokio::test]
async fn a_deduplication_key_returns_the_unfinished_job() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let body = json!({ "kind": "demo.sleep", "payload": { "seconds": 1 }, "dedup_key": "nightly" });
    let first = app.enqueue(&admin, body.clone()).await;
    let (status, second) = app.call(Method::POST, "/api/v1/jobs", Some(&admin), Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["id"], first["id"]);
    app.wait_state(&admin, first["id"].as_str().expect("id"), "succeeded").await;
    let third = app.enqueue(&admin, body).await;
    assert_ne!(third["id"], first["id"], "a finished job no longer holds its key");
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_a_cursor() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            app.enqueue(&admin, json!({ "kind": "demo.sleep", "payload": { "seconds": 0 }, "delay_seconds": 3600 }))
                .await["id"]
                .clone(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?state=queued&kind=demo.sleep&limit=2&cursor={c}"),
            None => "/api/v1/jobs?state=queued&kind=demo.sleep&limit=2".to_owned(),
        };
        let (status, page) = app.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["items"].as_array().expect("items").iter().map(|j| j["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every job once, newest first");
    let (_, none) = app.call(Method::GET, "/api/v1/jobs?state=succeeded", Some(&admin), None).await;
    assert_eq!(none["items"], json!([]));
    let (_, counts) = app.call(Method::GET, "/api/v1/jobs/counts", Some(&admin), None).await;
    assert_eq!(counts["by_state"]["queued"], 5);
    assert_eq!(counts["by_kind"]["demo.sleep"]["queued"], 5);
}

#[tokio::test]
async fn cancel_retry_and_dead_letters() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Cancel a running job: 202, then cancelled; cancelling again conflicts.
    let long = app.enqueue(&admin, json!({ "kind": "demo.sleep", "payload": { "seconds": 60 } })).await;
    let id = long["id"].as_str().expect("id").to_owned();
    app.wait_state(&admin, &id, "running").await;
    let (status, _) = app.call(Method::POST, &format!("/api/v1/jobs/{id}/cancel"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.wait_state(&admin, &id, "cancelled").await;
    let (status, problem) = app.call(Method::POST, &format!("/api/v1/jobs/{id}/cancel"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["conflicting_id"], json!(id));

    // A job that fails for good lands in the dead letters; requeue runs it again; discard removes it.
    let failing = app.enqueue(&admin, json!({ "kind": "fault.fail", "payload": {}, "max_attempts": 1 })).await;
    let fid = failing["id"].as_str().expect("id").to_owned();
    app.wait_state(&admin, &fid, "failed").await;
    let (_, dead) = app.call(Method::GET, "/api/v1/dead-letters", Some(&admin), None).await;
    let entry =
        dead.as_array().expect("list").iter().find(|d| d["job_id"] == json!(fid)).expect("dead-lettered").clone();
    assert_eq!(entry["reason"], "handler_error");
    let other = app.other_org_admin().await;
    let (_, theirs) = app.call(Method::GET, "/api/v1/dead-letters", Some(&other), None).await;
    assert_eq!(theirs, json!([]));
    let requeue = format!(
        "/api/v1/dead-letters/{}/{}/requeue",
        entry["queue"].as_str().expect("q"),
        entry["entry_id"].as_str().expect("e")
    );
    let (status, problem) = app.call(Method::POST, &requeue, Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, job) = app.call(Method::POST, &requeue, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let again = app.wait_state(&admin, &fid, "failed").await;
    assert_eq!(again["attempt"], 2);

    // Retry a cancelled job through the job route; retrying a running one conflicts.
    let (status, job) = app.call(Method::POST, &format!("/api/v1/jobs/{id}/retry"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    app.wait_state(&admin, &id, "running").await;
    let (status, _) = app.call(Method::POST, &format!("/api/v1/jobs/{id}/retry"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (_, dead) = app.call(Method::GET, "/api/v1/dead-letters", Some(&admin), None).await;
    let entry = dead.as_array().expect("list").iter().find(|d| d["job_id"] == json!(fid)).expect("dead again").clone();
    let discard = format!(
        "/api/v1/dead-letters/{}/{}",
        entry["queue"].as_str().expect("q"),
        entry["entry_id"].as_str().expect("e")
    );
    let (status, _) = app.call(Method::DELETE, &discard, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, dead) = app.call(Method::GET, "/api/v1/dead-letters", Some(&admin), None).await;
    assert!(dead.as_array().expect("list").iter().all(|d| d["job_id"] != json!(fid)));

    // The job's log and events are readable.
    let (status, events) = app.call(Method::GET, &format!("/api/v1/jobs/{fid}/events"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(events.as_array().expect("events").iter().any(|e| e["type"] == "requeued"));
    let (status, log) = app.call(Method::GET, &format!("/api/v1/jobs/{id}/log"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        log.as_array().expect("lines").iter().any(|l| l["line"].as_str().unwrap_or("").contains("sleeping")),
        "{log}"
    );
}

#[tokio::test]
async fn a_batch_enqueues_all_or_nothing_and_names_each_bad_item() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let job = |seconds: Value| json!({ "kind": "demo.sleep", "payload": { "seconds": seconds } });

    // Two bad items among good ones: 422 naming each, and nothing is created.
    let bad = json!({ "jobs": [job(json!(0)), job(json!("soon")), { "kind": "no.such.kind" }, job(json!(1))] });
    let (status, problem) = app.call(Method::POST, "/api/v1/jobs/batch", Some(&admin), Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["jobs[1].payload.seconds", "jobs[2].kind"]);
    let (_, counts) = app.call(Method::GET, "/api/v1/jobs/counts", Some(&admin), None).await;
    assert_eq!(counts["by_state"]["queued"], 0, "nothing was created: {counts}");

    // A good batch: 201, ids in request order; a repeated dedup_key resolves to the first item's job.
    let mut items: Vec<Value> = (0..250).map(|_| job(json!(0))).collect();
    items.push(json!({ "kind": "demo.sleep", "payload": { "seconds": 0 }, "dedup_key": "nightly" }));
    items.push(json!({ "kind": "demo.sleep", "payload": { "seconds": 0 }, "dedup_key": "nightly" }));
    let (status, body) =
        app.call(Method::POST, "/api/v1/jobs/batch", Some(&admin), Some(json!({ "jobs": items }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jobs = body["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 252);
    assert_eq!(body["created"], 251);
    assert_eq!(jobs[250]["id"], jobs[251]["id"], "the second item with the key got the first one's job");
    assert_eq!((jobs[250]["created"].as_bool(), jobs[251]["created"].as_bool()), (Some(true), Some(false)));
    let first = jobs[0]["id"].as_str().expect("id");
    let (status, one) = app.call(Method::GET, &format!("/api/v1/jobs/{first}"), Some(&admin), None).await;
    assert_eq!((status, one["kind"].as_str()), (StatusCode::OK, Some("demo.sleep")));

    // Bounds: empty and oversized batches are refused with the field named.
    let (status, problem) =
        app.call(Method::POST, "/api/v1/jobs/batch", Some(&admin), Some(json!({ "jobs": [] }))).await;
    assert_eq!((status, fields(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["jobs".to_owned()]));
    let too_many: Vec<Value> = (0..10_001).map(|_| job(json!(0))).collect();
    let (status, problem) =
        app.call(Method::POST, "/api/v1/jobs/batch", Some(&admin), Some(json!({ "jobs": too_many }))).await;
    assert_eq!((status, fields(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["jobs".to_owned()]));

    // Viewers may not enqueue.
    let viewer = app.user_with_role(&admin, sentinel_jobs::domain::Role::Viewer).await;
    let (status, _) =
        app.call(Method::POST, "/api/v1/jobs/batch", Some(&viewer), Some(json!({ "jobs": [job(json!(0))] }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
