//! The inventory's servers over HTTP: create, filters and pages, edits along the status lifecycle,
//! history, delete, organization isolation, and the CSV import in every mode.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, server) = app.call(Method::POST, "/api/v1/servers", Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    server
}

async fn list(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let (status, page) = app.call(Method::GET, &format!("/api/v1/servers?{query}"), Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    page["items"].as_array().expect("items").iter().map(|s| s["provider_ref"].as_str().unwrap_or("").into()).collect()
}

async fn import(app: &TestApp, token: &str, query: &str, csv: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    app.send_raw(&format!("/api/v1/servers/import{query}"), token, "text/csv", csv).await
}

#[tokio::test]
async fn servers_are_created_filtered_paged_edited_and_deleted() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let web = create(
        &app,
        &admin,
        json!({"provider_ref": "i-web1", "ip": "10.0.0.1", "region": "eu-west", "labels": {"env": "prod", "role": "web"}}),
    )
    .await;
    assert_eq!(web["status"], "available");
    assert_eq!(web["name"], "i-web1");
    assert_eq!(web["ssh_port"], 22);
    create(&app, &admin, json!({"provider_ref": "i-db1", "ip": "2001:0db8::0001", "name": "Database One", "labels": {"env": "prod", "role": "db"}})).await;
    create(
        &app,
        &admin,
        json!({"provider_ref": "i-dev1", "ip": "10.0.1.1", "region": "us-east", "labels": {"env": "dev"}}),
    )
    .await;

    assert_eq!(list(&app, &admin, "").await, ["i-web1", "i-db1", "i-dev1"]);
    assert_eq!(list(&app, &admin, "selector=env=prod,role=web").await, ["i-web1"]);
    assert_eq!(list(&app, &admin, "selector=env!=prod").await, ["i-dev1"]);
    assert_eq!(list(&app, &admin, "selector=!role").await, ["i-dev1"]);
    assert_eq!(list(&app, &admin, "region=eu-west").await, ["i-web1"]);
    assert_eq!(list(&app, &admin, "q=database").await, ["i-db1"], "name, case-insensitive");
    assert_eq!(list(&app, &admin, "q=2001:db8::1").await, ["i-db1"], "the canonical address");
    assert_eq!(list(&app, &admin, "q=%25").await, Vec::<String>::new(), "LIKE wildcards are literal");
    assert_eq!(list(&app, &admin, "status=available&selector=env=prod").await, ["i-web1", "i-db1"]);

    let (_, first) = app.call(Method::GET, "/api/v1/servers?limit=2", Some(&admin), None).await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    assert_eq!(list(&app, &admin, &format!("limit=2&cursor={cursor}")).await, ["i-dev1"]);

    for (query, field) in [
        ("status=lost", "status"),
        ("selector=env=pr%20od", "selector"),
        ("region=eu%20west", "region"),
        ("limit=0", "limit"),
        ("cursor=nope", "cursor"),
    ] {
        let (status, problem) = app.call(Method::GET, &format!("/api/v1/servers?{query}"), Some(&admin), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }

    // Bad fields are each named; a taken provider_ref is a 409.
    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(&admin),
            Some(json!({"provider_ref": "x", "ip": "10.0.0.300", "ssh_port": 0, "labels": {"a,b": "c"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["ip", "ssh_port", "labels"]);
    let (status, problem) = app
        .call(Method::POST, "/api/v1/servers", Some(&admin), Some(json!({"provider_ref": "i-web1", "ip": "10.9.9.9"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // Edits: fields, then the status along the lifecycle.
    let id = web["id"].as_str().expect("id");
    let path = format!("/api/v1/servers/{id}");
    let (status, edited) =
        app.call(Method::PATCH, &path, Some(&admin), Some(json!({"notes": "rack 4", "ssh_user": "deploy"}))).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["version"], 2);
    let (status, retired) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"status": "retired"}))).await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    let (status, problem) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"status": "configured"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap_or("").contains("current status is retired"), "{problem}");
    let (status, problem) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"status": "reserved"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "status");

    // Every action is in the history, newest first, with who did it and what changed.
    let (status, history) = app.call(Method::GET, &format!("{path}/history"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let actions: Vec<&str> =
        history["items"].as_array().expect("items").iter().filter_map(|h| h["action"].as_str()).collect();
    assert_eq!(actions, ["status", "edit", "create"]);
    assert_eq!(history["items"][0]["before"], json!({"status": "available"}));
    assert_eq!(history["items"][0]["after"], json!({"status": "retired"}));
    assert!(history["items"][0]["actor"].as_str().unwrap_or("").starts_with("user:"), "{history}");

    // Another organization sees none of it.
    let other = app.other_org_admin().await;
    assert_eq!(app.call(Method::GET, &path, Some(&other), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::DELETE, &path, Some(&other), None).await.0, StatusCode::NOT_FOUND);
    assert!(list(&app, &other, "").await.is_empty());

    assert_eq!(app.call(Method::DELETE, &path, Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.call(Method::GET, &path, Some(&admin), None).await.0, StatusCode::NOT_FOUND);
}

const EXPORT: &str = "provider_ref,ip,region,labels,ssh_port,name\n\
    ovh-1,51.68.0.1,gra,env=prod;role=web,22,web-1\n\
    ovh-2,51.68.0.2,gra,env=prod;role=db,2222,db-1\n\
    ovh-3,51.68.0.3,sbg,env=dev,,\n";

#[tokio::test]
async fn importing_a_provider_export_again_duplicates_nothing() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (status, report) = import(&app, &admin, "", EXPORT).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["created"].as_u64(), report["updated"].as_u64(), report["unchanged"].as_u64()),
        (Some(3), Some(0), Some(0))
    );
    assert_eq!(list(&app, &admin, "selector=role=db").await, ["ovh-2"]);
    let (_, page) = app.call(Method::GET, "/api/v1/servers?q=ovh-3", Some(&admin), None).await;
    assert_eq!(page["items"][0]["name"], "ovh-3", "an empty name cell is the provider_ref");

    let (status, report) = import(&app, &admin, "", EXPORT).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["created"].as_u64(), report["unchanged"].as_u64()), (Some(0), Some(3)));

    // The provider moved one server: a dry run shows the diff and writes nothing; the import applies it.
    let moved = EXPORT.replace("51.68.0.2,gra", "51.68.9.2,rbx");
    let (status, report) = import(&app, &admin, "?dry_run=true", moved.clone()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["updated"], 1);
    assert_eq!(report["changes"][0]["before"], json!({"ip": "51.68.0.2", "region": "gra"}));
    assert_eq!(report["changes"][0]["after"], json!({"ip": "51.68.9.2", "region": "rbx"}));
    assert_eq!(list(&app, &admin, "region=rbx").await, Vec::<String>::new(), "a dry run writes nothing");
    let (_, report) = import(&app, &admin, "", moved).await;
    assert_eq!((report["updated"].as_u64(), report["unchanged"].as_u64()), (Some(1), Some(2)));
    assert_eq!(list(&app, &admin, "region=rbx").await, ["ovh-2"]);
    assert_eq!(list(&app, &admin, "").await.len(), 3);
    let id = report["changes"][0]["server_id"].as_str().expect("id");
    let (_, history) = app.call(Method::GET, &format!("/api/v1/servers/{id}/history"), Some(&admin), None).await;
    let actions: Vec<&str> =
        history["items"].as_array().expect("items").iter().filter_map(|h| h["action"].as_str()).collect();
    assert_eq!(actions, ["import_update", "import_create"]);

    // A console upload (multipart) is the same import.
    let boundary = "sentinelBoundary42";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"export.csv\"\r\nContent-Type: text/csv\r\n\r\n{EXPORT}ovh-4,51.68.0.4,gra,,,\r\n--{boundary}--\r\n"
    );
    let (status, report) = app
        .send_raw("/api/v1/servers/import", &admin, &format!("multipart/form-data; boundary={boundary}"), multipart)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 1, "{report}");
}

#[tokio::test]
async fn one_bad_row_refuses_the_file_unless_partial() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let csv = "provider_ref,ip,ssh_port\np-1,10.0.0.1,22\np-2,10.0.0.999,22\np-3,10.0.0.3,99999\np-1,10.0.0.4,22\np-5,10.0.0.5,22\n";
    let (status, problem) = import(&app, &admin, "", csv).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let rows: Vec<(u64, &str)> = problem["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["row"].as_u64().unwrap_or(0), r["column"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(rows, [(3, "ip"), (4, "ssh_port"), (5, "provider_ref")], "{problem}");
    assert!(list(&app, &admin, "").await.is_empty(), "all or nothing");

    let (status, dry) = import(&app, &admin, "?mode=partial&dry_run=true", csv).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!((dry["created"].as_u64(), dry["failed"].as_u64()), (Some(2), Some(3)));
    assert!(list(&app, &admin, "").await.is_empty());
    let (status, report) = import(&app, &admin, "?mode=partial", csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["error_count"], 3);
    assert_eq!(list(&app, &admin, "").await, ["p-1", "p-5"]);

    // File-level and encoding errors, and oversized input: clear 4xx, never a 500.
    for (body, says) in [
        (b"provider_ref,ip,colour\np,10.0.0.1,red\n".to_vec(), "unknown column"),
        (b"".to_vec(), "empty"),
        (b"provider_ref,ip\np-9,\xff\xfe\n".to_vec(), "UTF-8"),
        (format!("provider_ref,ip\np-9,10.0.0.9{}\n", ",x".repeat(498)).into_bytes(), "500 fields"),
    ] {
        let (status, problem) = import(&app, &admin, "", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{says}: {problem}");
        assert!(problem["rows"][0]["reason"].as_str().unwrap_or("").contains(says), "{says}: {problem}");
    }
    let (status, problem) = import(&app, &admin, "", vec![b'a'; 33 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let (status, _) = app.send_raw("/api/v1/servers/import", &admin, "application/json", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, problem) = import(&app, &admin, "?mode=partial", "provider_ref,colour\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a bad header refuses even a partial import: {problem}");
    let (status, problem) = import(&app, &admin, "?mode=some", csv).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}
