//! Configs with versions and secret values, and SSH keys: sealed at rest, never returned, handed only
//! to the run that uses them, and a key in use refusing deletion.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

/// A private key made by the real `ssh-keygen`, and its fingerprint as `ssh-keygen -l` prints it.
pub fn ssh_keygen(passphrase: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("id");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", "ops@example", "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(status.success());
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(path.with_extension("pub"))
        .output()
        .expect("-l");
    let fingerprint = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("fingerprint").to_owned();
    (std::fs::read_to_string(&path).expect("key"), fingerprint)
}

/// Every stored ciphertext of the test database, as text.
async fn sealed_rows(app: &TestApp) -> String {
    let rows = app.spine.db().secrets().list(None, 1000).await.expect("secrets");
    rows.iter().map(|r| r.sealed.as_str()).collect::<Vec<_>>().join("\n")
}

async fn org_of(app: &TestApp, token: &str) -> Uuid {
    let (_, me) = app.call(Method::GET, "/api/v1/me", Some(token), None).await;
    me["organization_id"].as_str().expect("org").parse().expect("uuid")
}

#[tokio::test]
async fn configs_are_versioned_and_their_secrets_never_come_back() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let body = json!({
        "name": "web-stack",
        "description": "nginx + app",
        "path": "group_vars/web.yml",
        "payload": {"nginx_port": 8080, "db": {"user": "app", "password": {"secret": "hunter2-very-secret"}}},
    });
    let (status, created) = app.call(Method::POST, "/api/v1/configs", Some(&admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["payload"]["db"]["password"], json!({"secret": true}));
    assert_eq!(created["secrets"], json!(["payload.db.password"]));
    assert!(!created.to_string().contains("hunter2"));
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/configs/{id}");
    let (_, got) = app.call(Method::GET, &path, Some(&admin), None).await;
    assert!(!got.to_string().contains("hunter2"), "{got}");
    assert!(!sealed_rows(&app).await.contains("hunter2"), "sealed at rest");

    // A round trip of what GET shows keeps the secret; the version goes up; the old one stays readable.
    let mut edit = got.clone();
    edit["payload"]["nginx_port"] = json!(8443);
    let update = json!({"name": "web-stack", "payload": edit["payload"], "path": "group_vars/web.yml"});
    let (status, v2) = app.call(Method::PUT, &path, Some(&admin), Some(update)).await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!((v2["version"].as_i64(), v2["payload"]["nginx_port"].as_i64()), (Some(2), Some(8443)));
    let (_, v1) = app.call(Method::GET, &format!("{path}/versions/1"), Some(&admin), None).await;
    assert_eq!(v1["payload"]["nginx_port"], 8080, "{v1}");
    let (_, versions) = app.call(Method::GET, &format!("{path}/versions"), Some(&admin), None).await;
    let numbers: Vec<i64> =
        versions["items"].as_array().expect("items").iter().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(app.call(Method::GET, &format!("{path}/versions/9"), Some(&admin), None).await.0, StatusCode::NOT_FOUND);

    // Only a run, through the vault, sees the values: each version exactly as it was.
    let vault = app.spine.vault().expect("vault");
    let org = org_of(&app, &admin).await;
    let run =
        vault.resolve_config(app.spine.db(), org, id.parse().expect("uuid"), 2).await.expect("resolve").expect("v2");
    assert_eq!(run["db"]["password"], "hunter2-very-secret");
    assert_eq!(run["nginx_port"], 8443);

    // Errors: keeping a secret that is not there, a reserved key, a taken name, a bad path.
    for (payload, field) in [
        (json!({"token": {"secret": true}}), "payload.token"),
        (json!({"x": {"$secret": "forged"}}), "payload.x.$secret"),
        (json!({"x": {"secret": 42}}), "payload.x"),
    ] {
        let (status, problem) =
            app.call(Method::PUT, &path, Some(&admin), Some(json!({"name": "web-stack", "payload": payload}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, _) = app.call(Method::POST, "/api/v1/configs", Some(&admin), Some(json!({"name": "web-stack"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, problem) =
        app.call(Method::POST, "/api/v1/configs", Some(&admin), Some(json!({"name": "p", "path": ""}))).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("path")));

    // Another organization sees nothing; deleting removes the versions and the sealed secrets.
    let other = app.other_org_admin().await;
    assert_eq!(app.call(Method::GET, &path, Some(&other), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::DELETE, &path, Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert!(sealed_rows(&app).await.is_empty(), "the config's secrets are gone with it");
}

async fn upload(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, "/api/v1/provisioning/ssh-keys", Some(token), Some(body)).await
}

#[tokio::test]
async fn ssh_keys_are_sealed_shown_by_fingerprint_and_held_while_used() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (private, fingerprint) = ssh_keygen("open sesame");
    let (status, problem) = upload(&app, &admin, json!({"name": "deploy", "private_key": private})).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("passphrase"))
    );
    let (status, problem) =
        upload(&app, &admin, json!({"name": "deploy", "private_key": private, "passphrase": "wrong"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, key) = upload(
        &app,
        &admin,
        json!({"name": "deploy", "private_key": private, "passphrase": "open sesame", "default": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["fingerprint"], fingerprint);
    assert_eq!(key["key_type"], "ssh-ed25519");
    assert_eq!(key["default"], true);
    assert!(key["public_key"].as_str().unwrap_or("").starts_with("ssh-ed25519 AAAA"));
    assert!(!key.to_string().contains("PRIVATE"), "{key}");
    let (status, problem) = upload(&app, &admin, json!({"name": "x", "private_key": key["public_key"]})).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("private_key"))
    );

    // At rest it is sealed; through the vault it is the same key, without its passphrase.
    let sealed = sealed_rows(&app).await;
    assert!(!sealed.contains("PRIVATE KEY") && !sealed.contains(&private[40..80]), "sealed at rest");
    let id: Uuid = key["id"].as_str().expect("id").parse().expect("uuid");
    let org = org_of(&app, &admin).await;
    let cred = app.spine.db().credentials().get(org, id).await.expect("get").expect("cred");
    let opened = app.spine.vault().expect("vault").open(cred.secret_id).await.expect("open");
    let reparsed =
        sentinel_jobs::secrets::ssh::parse_private_key(&String::from_utf8_lossy(&opened), None).expect("usable");
    assert_eq!(reparsed.fingerprint, fingerprint);

    // A server that uses it holds it; a key of another organization cannot be named.
    let key_path = format!("/api/v1/provisioning/ssh-keys/{id}");
    let (status, server) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(&admin),
            Some(json!({"provider_ref": "s1", "ip": "10.0.0.1", "ssh_credential_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    let (_, listed) = app.call(Method::GET, "/api/v1/provisioning/ssh-keys", Some(&admin), None).await;
    assert_eq!(listed["items"][0]["used_by_servers"], 1);
    let (status, problem) = app.call(Method::DELETE, &key_path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let other = app.other_org_admin().await;
    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(&other),
            Some(json!({"provider_ref": "s9", "ip": "10.0.0.9", "ssh_credential_id": id})),
        )
        .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("ssh_credential_id"))
    );
    assert_eq!(app.call(Method::GET, &key_path, Some(&other), None).await.0, StatusCode::NOT_FOUND);

    let server_path = format!("/api/v1/servers/{}", server["id"].as_str().expect("id"));
    let (status, _) =
        app.call(Method::PATCH, &server_path, Some(&admin), Some(json!({"ssh_credential_id": null}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, renamed) =
        app.call(Method::PATCH, &key_path, Some(&admin), Some(json!({"name": "deploy-2024"}))).await;
    assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("deploy-2024")));
    assert_eq!(app.call(Method::DELETE, &key_path, Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert!(sealed_rows(&app).await.is_empty(), "the sealed key is deleted with it");

    // The upload is audited, without the key.
    let (_, audit) = app.call(Method::GET, "/api/v1/audit", Some(&admin), None).await;
    let text = audit.to_string();
    assert!(text.contains("POST /api/v1/provisioning/ssh-keys"), "{text}");
    assert!(!text.contains("PRIVATE") && !text.contains("open sesame"));
}
