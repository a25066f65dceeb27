//! The OpenAPI document: served, complete, browsable offline, and identical to the committed copy.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[tokio::test]
async fn the_document_is_served_and_matches_the_committed_copy() {
    let generated = api_gateway::openapi::document_json();
    if std::env::var_os("SENTINEL_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: run `SENTINEL_UPDATE_OPENAPI=1 cargo test -p api-gateway openapi` and commit it"
    );

    let app = spawn_app().await;
    let res = app.client.get(format!("{}/api/v1/openapi.json", app.base)).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    let doc: serde_json::Value = res.json().await.expect("json");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for p in ["/api/v1/jobs", "/api/v1/jobs/{id}", "/api/v1/auth/login", "/api/v1/events/stream", "/tasks/enqueue"] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert!(schemes.contains_key("bearer") && schemes.contains_key("api_key") && schemes.contains_key("session"));
}

#[tokio::test]
async fn the_docs_ui_is_served_without_internet() {
    let app = spawn_app().await;
    let res = app.client.get(format!("{}/docs/", app.base)).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.expect("html");
    assert!(html.to_lowercase().contains("swagger"), "{html}");
    for cdn in ["unpkg.com", "jsdelivr", "cdnjs"] {
        assert!(!html.contains(cdn), "the docs page loads from a CDN: {cdn}");
    }
    let js = app.client.get(format!("{}/docs/swagger-ui-bundle.js", app.base)).send().await.expect("get");
    assert_eq!(js.status(), StatusCode::OK, "the UI's script is served by the gateway itself");
}

#[tokio::test]
async fn cors_allows_only_the_configured_console_origin() {
    let app = crate::helpers::spawn_app_with(&[("http.cors_allowed_origins", "https://console.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/jobs", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let ok = preflight("https://console.example.com").await.expect("preflight");
    assert_eq!(
        ok.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://console.example.com")
    );
    assert_eq!(ok.headers().get("access-control-allow-credentials").and_then(|v| v.to_str().ok()), Some("true"));
    let evil = preflight("https://evil.example.com").await.expect("preflight");
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_method_a_known_path_lacks_answers_405_with_allow() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for (method, path, allow) in [
        ("TRACE", "/api/v1/jobs", "GET, POST"),
        ("PUT", "/api/v1/jobs/counts", "GET"),
        ("DELETE", "/api/v1/jobs/0190a8c4-0000-7000-8000-000000000000", "GET"),
        ("GET", "/api/v1/schedules/preview", "POST"),
        ("TRACE", "/api/v1/schedules/0190a8c4-0000-7000-8000-000000000000", "GET, PUT, DELETE, PATCH"),
        ("PATCH", "/tasks/counts", "GET"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let res = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
        assert_eq!(
            res.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{method} {path}"
        );
        let problem: serde_json::Value = res.json().await.expect("json");
        assert_eq!(problem["type"], "https://sentinel.dev/problems/method-not-allowed", "{method} {path}");
        assert_eq!(problem["status"], 405);
    }
    let unknown = app.client.get(format!("{}/api/v1/nothing-here", app.base)).bearer_auth(&admin).send().await;
    assert_eq!(unknown.expect("send").status(), StatusCode::NOT_FOUND, "unknown paths stay 404");
}

#[tokio::test]
async fn the_document_states_the_limits_and_enums_the_handlers_enforce() {
    let doc = serde_json::to_value(api_gateway::openapi::document()).expect("json");
    let params = doc["paths"]["/api/v1/jobs"]["get"]["parameters"].as_array().expect("parameters").clone();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).map(|p| p["schema"].clone()).expect(name);
    assert_eq!((param("limit")["minimum"].clone(), param("limit")["maximum"].clone()), (1.into(), 1000.into()));
    assert_eq!(param("limit")["default"], 100);
    let states: Vec<&str> = sentinel_jobs::domain::JobState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(param("state")["enum"], serde_json::json!(states));
    assert_eq!(param("cursor")["format"], "uuid");

    // And the server takes what the document allows: an integer may be written `2.0`.
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (status, job) = app
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(&admin),
            Some(serde_json::json!({ "kind": "demo.sleep", "payload": { "seconds": 0.0 }, "max_attempts": 2.0 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!((job["max_attempts"].clone(), job["payload"]["seconds"].clone()), (2.into(), 0.into()));
    let (status, problem) = app.call(reqwest::Method::GET, "/api/v1/jobs?state=", Some(&admin), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an empty state is not a state: {problem}");
    assert_eq!(problem["errors"][0]["field"], "state");
}
