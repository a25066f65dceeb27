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
