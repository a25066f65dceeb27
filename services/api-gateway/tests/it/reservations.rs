//! Reservations: concurrent callers never share a server (PostgreSQL and SQLite), release, expiry by
//! TTL, and a held server refusing deletion.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_on_postgres, spawn_app_with_scheduler_and};

async fn add_servers(app: &TestApp, token: &str, n: usize, env: &str) {
    let mut csv = String::from("provider_ref,ip,labels\n");
    for i in 0..n {
        csv.push_str(&format!("{env}-{i},10.1.{}.{},env={env}\n", i / 250, i % 250 + 1));
    }
    let (status, report) = app.send_raw("/api/v1/servers/import", token, "text/csv", csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
}

/// 50 concurrent reservations for 10 matching servers: exactly 10 distinct successes.
async fn fifty_callers_ten_servers(app: TestApp) {
    let admin = app.admin().await;
    add_servers(&app, &admin, 10, "prod").await;
    add_servers(&app, &admin, 5, "dev").await;
    let app = std::sync::Arc::new(app);
    let calls = (0..50).map(|i| {
        let app = app.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            app.call(
                Method::POST,
                "/api/v1/servers/reserve",
                Some(&admin),
                Some(json!({"labels": {"env": "prod"}, "purpose": format!("deploy {i}")})),
            )
            .await
        })
    });
    let results = futures::future::join_all(calls).await;
    let mut servers = HashSet::new();
    let mut refused = 0;
    for r in results {
        let (status, body) = r.expect("task");
        match status {
            StatusCode::CREATED => {
                assert!(body["server"]["provider_ref"].as_str().unwrap_or("").starts_with("prod-"), "{body}");
                assert_eq!(body["server"]["status"], "reserved");
                assert!(
                    servers.insert(body["server"]["id"].as_str().expect("id").to_owned()),
                    "reserved twice: {body}"
                );
            }
            StatusCode::CONFLICT => {
                assert!(body["detail"].as_str().unwrap_or("").contains("env=prod"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((servers.len(), refused), (10, 40));
    let (_, page) = app.call(Method::GET, "/api/v1/servers?status=reserved", Some(&admin), None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(10));
    let (_, page) = app.call(Method::GET, "/api/v1/servers?status=available", Some(&admin), None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5), "the dev servers are untouched");
}

#[tokio::test]
async fn concurrent_reservations_never_share_a_server_on_sqlite() {
    fifty_callers_ten_servers(spawn_app().await).await;
}

#[tokio::test]
async fn concurrent_reservations_never_share_a_server_on_postgres() {
    fifty_callers_ten_servers(spawn_app_on_postgres().await).await;
}

#[tokio::test]
async fn reservations_are_released_expire_and_hold_the_server() {
    let app = spawn_app_with_scheduler_and(&[("scheduler.reservation_expiry_interval_secs", "1")]).await;
    let admin = app.admin().await;
    let viewer = app.user_with_role(&admin, sentinel_jobs::domain::Role::Viewer).await;
    add_servers(&app, &admin, 1, "prod").await;
    let reserve = |ttl: u64| json!({"labels": {"env": "prod"}, "purpose": "blue/green deploy", "ttl_seconds": ttl});

    let (status, r) = app.call(Method::POST, "/api/v1/servers/reserve", Some(&admin), Some(reserve(600))).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["ip"], "10.1.0.1");
    let id = r["server"]["id"].as_str().expect("id").to_owned();
    let lease = r["lease_id"].as_str().expect("lease").to_owned();
    assert_eq!(r["server"]["lease"]["purpose"], "blue/green deploy");
    let path = format!("/api/v1/servers/{id}");

    // Held: no second reservation, no deletion, and a viewer cannot release it.
    let (status, _) = app.call(Method::POST, "/api/v1/servers/reserve", Some(&admin), Some(reserve(600))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, problem) = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(app.call(Method::POST, &format!("{path}/release"), Some(&viewer), None).await.0, StatusCode::FORBIDDEN);
    let wrong = uuid::Uuid::now_v7();
    let (status, _) = app.call(Method::POST, &format!("{path}/release?lease_id={wrong}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "another reservation's id");

    let (status, released) =
        app.call(Method::POST, &format!("{path}/release?lease_id={lease}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["status"], "available");
    assert!(released["lease"].is_null());
    let (status, _) = app.call(Method::POST, &format!("{path}/release"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "not reserved any more");

    // A reservation whose TTL runs out goes back by itself (the built-in expiry sweep).
    let (status, _) = app.call(Method::POST, "/api/v1/servers/reserve", Some(&admin), Some(reserve(1))).await;
    assert_eq!(status, StatusCode::CREATED);
    let back = sentinel_testkit::eventually(Duration::from_secs(10), || async {
        let (_, server) = app.call(Method::GET, &path, Some(&admin), None).await;
        (server["status"] == "available").then_some(server)
    })
    .await;
    assert!(back.is_some(), "the expired reservation was never ended");

    // Reserved, then marked configured after the deployment: the reservation ends with it.
    let (status, _) = app.call(Method::POST, "/api/v1/servers/reserve", Some(&admin), Some(reserve(600))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, configured) =
        app.call(Method::PATCH, &path, Some(&admin), Some(json!({"status": "configured"}))).await;
    assert_eq!(status, StatusCode::OK, "{configured}");
    assert!(configured["lease"].is_null(), "{configured}");

    let (_, history) = app.call(Method::GET, &format!("{path}/history"), Some(&admin), None).await;
    let actions: Vec<&str> =
        history["items"].as_array().expect("items").iter().filter_map(|h| h["action"].as_str()).collect();
    assert_eq!(actions, ["status", "reserve", "expire", "reserve", "release", "reserve", "import_create"]);
    assert_eq!(history["items"][2]["actor"], "system");

    for (body, field) in [
        (json!({"purpose": ""}), "purpose"),
        (json!({"purpose": "x", "ttl_seconds": 0}), "ttl_seconds"),
        (json!({"purpose": "x", "selector": "env=="}), "selector"),
    ] {
        let (status, problem) = app.call(Method::POST, "/api/v1/servers/reserve", Some(&admin), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
}
