//! Authentication, roles, organizations, API keys, sessions, the audit log — on every route.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use sentinel_jobs::domain::Role;
use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, fill, routes, spawn_app, spawn_app_with};

/// Real ids of the admin's organization for the `{job}`, `{user}`, `{key}` and `{schedule}` placeholders.
async fn fixture_ids(app: &crate::helpers::TestApp, admin: &str) -> HashMap<&'static str, String> {
    let job = app.enqueue(admin, json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } })).await;
    let (_, user) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(admin),
            Some(json!({"email": "fixture@a.test", "password": ADMIN_PASSWORD, "role": "viewer"})),
        )
        .await;
    let (_, key) = app.call(Method::POST, "/api/v1/api-keys", Some(admin), Some(json!({"name": "fixture"}))).await;
    let (_, schedule) = app
        .call(Method::POST, "/api/v1/schedules", Some(admin), Some(crate::helpers::schedule_body("fixture", 60)))
        .await;
    let (_, server) = app
        .call(Method::POST, "/api/v1/servers", Some(admin), Some(json!({"provider_ref": "fixture", "ip": "10.0.0.1"})))
        .await;
    let (_, config) =
        app.call(Method::POST, "/api/v1/configs", Some(admin), Some(json!({"name": "fixture-config"}))).await;
    let (private, _) = crate::credentials::ssh_keygen("");
    let (_, sshkey) = app
        .call(
            Method::POST,
            "/api/v1/provisioning/ssh-keys",
            Some(admin),
            Some(json!({"name": "fixture", "private_key": private})),
        )
        .await;
    let (status, run) = app
        .call(
            Method::POST,
            "/api/v1/provisioning/runs",
            Some(admin),
            Some(json!({"playbook": "ping", "server_ids": [server["id"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let (_, btarget) = app
        .call(
            Method::POST,
            "/api/v1/backups/targets",
            Some(admin),
            Some(json!({"name": "fixture", "engine": "sqlite", "path": "/tmp/fixture.db"})),
        )
        .await;
    let (_, bdest) = app
        .call(
            Method::POST,
            "/api/v1/backups/destinations",
            Some(admin),
            Some(json!({"name": "fixture", "config": {"kind": "local", "path": "/tmp"}})),
        )
        .await;
    let (status, bplan) = app
        .call(
            Method::POST,
            "/api/v1/backups/plans",
            Some(admin),
            Some(json!({"name": "fixture", "target_id": btarget["id"], "destination_ids": [bdest["id"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bplan}");
    let (status, mtarget) = app
        .call(
            Method::POST,
            "/api/v1/monitoring/targets",
            Some(admin),
            Some(json!({"name": "fixture", "url": "http://127.0.0.1:9/fixture", "is_active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mtarget}");
    let (status, heartbeat) = app
        .call(
            Method::POST,
            "/api/v1/monitoring/heartbeats",
            Some(admin),
            Some(json!({"name": "fixture", "period_seconds": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{heartbeat}");
    let mut made = HashMap::new();
    for (name, path, body) in [
        (
            "channel",
            "/api/v1/monitoring/channels",
            json!({"name": "fixture", "kind": "webhook", "url": "http://127.0.0.1:9/f"}),
        ),
        (
            "silence",
            "/api/v1/monitoring/silences",
            json!({"matchers": [{"label": "severity", "op": "=", "value": "warning"}], "ends_at": "2099-01-01T00:00:00Z", "comment": "fixture"}),
        ),
        (
            "window",
            "/api/v1/monitoring/maintenance-windows",
            json!({"name": "fixture", "starts_at": "2098-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}),
        ),
    ] {
        let (status, created) = app.call(Method::POST, path, Some(admin), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        made.insert(name, created["id"].as_str().expect("id").to_owned());
    }
    HashMap::from([
        ("channel", made["channel"].clone()),
        ("silence", made["silence"].clone()),
        ("window", made["window"].clone()),
        ("notification", uuid::Uuid::now_v7().to_string()),
        ("heartbeat", heartbeat["id"].as_str().expect("heartbeat id").to_owned()),
        ("mtarget", mtarget["id"].as_str().expect("monitor target id").to_owned()),
        ("btarget", btarget["id"].as_str().expect("target id").to_owned()),
        ("bdest", bdest["id"].as_str().expect("destination id").to_owned()),
        ("bplan", bplan["id"].as_str().expect("plan id").to_owned()),
        ("bentry", uuid::Uuid::now_v7().to_string()),
        ("incident", uuid::Uuid::now_v7().to_string()),
        ("metric", uuid::Uuid::now_v7().to_string()),
        ("machine", uuid::Uuid::now_v7().to_string()),
        ("run", run["id"].as_str().expect("run id").to_owned()),
        ("config", config["id"].as_str().expect("config id").to_owned()),
        ("sshkey", sshkey["id"].as_str().expect("ssh key id").to_owned()),
        ("server", server["id"].as_str().expect("server id").to_owned()),
        ("schedule", schedule["id"].as_str().expect("schedule id").to_owned()),
        ("job", job["id"].as_str().expect("job id").to_owned()),
        ("user", user["id"].as_str().expect("user id").to_owned()),
        ("key", key["id"].as_str().expect("key id").to_owned()),
    ])
}

#[tokio::test]
async fn every_route_requires_authentication() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ids = fixture_ids(&app, &admin).await;
    for (method, path, body, _) in routes() {
        let path = fill(path, &ids);
        let (status, problem) = app.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(problem["status"], 401, "{method} {path}: {problem}");
        let (status, _) = app.call(method.clone(), &path, Some("not-a-valid-token"), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with a bad token");
    }
    // The ops endpoints and login are public.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(app.client.get(format!("{}{path}", app.base)).send().await.expect("get").status(), StatusCode::OK);
    }
    // So are pings, whose token is the credential: an unknown one is a 404, not a 401.
    let ping = format!("{}/ping/{}", app.base, "0".repeat(64));
    assert_eq!(app.client.post(ping).send().await.expect("ping").status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_route_enforces_its_role() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ids = fixture_ids(&app, &admin).await;
    for role in [Role::Viewer, Role::Operator] {
        let token = app.user_with_role(&admin, role).await;
        for (method, path, body, required) in routes() {
            if role.allows(required) {
                continue;
            }
            let path = fill(path, &ids);
            let (status, problem) = app.call(method.clone(), &path, Some(&token), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role} {method} {path}: {problem}");
        }
    }
    // An ingest-only key may not touch jobs or accounts.
    let (_, key) = app
        .call(Method::POST, "/api/v1/api-keys", Some(&admin), Some(json!({"name": "agent", "scope": "ingest"})))
        .await;
    let ingest = key["key"].as_str().expect("secret");
    let (status, _) = app.call(Method::GET, "/api/v1/jobs", Some(ingest), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn another_organization_cannot_see_or_touch_anything() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ids = fixture_ids(&app, &admin).await;
    let other = app.other_org_admin().await;
    for (method, path, body, _) in routes() {
        if ![
            "{job}",
            "{user}",
            "{key}",
            "{schedule}",
            "{server}",
            "{config}",
            "{sshkey}",
            "{run}",
            "{btarget}",
            "{bdest}",
            "{bplan}",
            "{bentry}",
            "{mtarget}",
            "{incident}",
            "{metric}",
            "{machine}",
            "{heartbeat}",
            "{channel}",
            "{silence}",
            "{window}",
            "{notification}",
        ]
        .iter()
        .any(|p| path.contains(p))
        {
            continue;
        }
        let path = fill(path, &ids);
        let (status, problem) = app.call(method.clone(), &path, Some(&other), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
    }
    let (_, page) = app.call(Method::GET, "/api/v1/jobs", Some(&other), None).await;
    assert_eq!(page["items"], json!([]));
    let (_, schedules) = app.call(Method::GET, "/api/v1/schedules", Some(&other), None).await;
    assert_eq!(schedules["items"], json!([]));
    let (_, counts) = app.call(Method::GET, "/api/v1/jobs/counts", Some(&other), None).await;
    assert_eq!(
        counts["by_state"]["queued"].as_u64().unwrap_or(0) + counts["by_state"]["succeeded"].as_u64().unwrap_or(0),
        0
    );
    let (_, users) = app.call(Method::GET, "/api/v1/users", Some(&other), None).await;
    assert!(users.as_array().expect("list").iter().all(|u| u["email"] != ADMIN_EMAIL));
    let (_, audit) = app.call(Method::GET, "/api/v1/audit", Some(&other), None).await;
    assert!(
        audit["items"]
            .as_array()
            .expect("list")
            .iter()
            .all(|e| !e["actor"].as_str().unwrap_or("").contains(ADMIN_EMAIL))
    );
    // The original organization still sees its job.
    let (status, _) = app.call(Method::GET, &format!("/api/v1/jobs/{}", ids["job"]), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn login_sets_a_secure_cookie_and_logout_ends_the_session() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("cookie").to_owned();
    assert!(cookie.starts_with("sentinel_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(body["user"].get("password_hash").is_none(), "the hash never leaves the server");
    let token = body["token"].as_str().expect("token").to_owned();

    // The cookie alone authenticates (the console's way).
    let session = cookie.split(';').next().expect("pair").to_owned();
    let me = app.client.get(format!("{}/api/v1/me", app.base)).header("cookie", &session).send().await.expect("me");
    assert_eq!(me.status(), StatusCode::OK);

    let (status, _) = app.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a logged-out token is dead");
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_logins_are_rate_limited() {
    let app = spawn_app_with(&[("auth.login_attempts_per_minute", "3")]).await;
    for _ in 0..3 {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": ADMIN_EMAIL, "password": "wrong password!" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let res = app
        .client
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn api_keys_are_shown_once_work_both_ways_and_can_be_revoked() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (status, created) = app
        .call(Method::POST, "/api/v1/api-keys", Some(&admin), Some(json!({ "name": "ci", "role": "operator" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["key"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("sk_"));
    let (_, list) = app.call(Method::GET, "/api/v1/api-keys", Some(&admin), None).await;
    let listed = list.as_array().expect("list").iter().find(|k| k["id"] == created["id"]).expect("listed").clone();
    assert!(
        listed.get("key").is_none() && !listed.to_string().contains(&secret[11..]),
        "the secret is never shown again"
    );

    // As a bearer token and as X-API-Key.
    let job = app.enqueue(&secret, json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } })).await;
    assert!(job["requested_by"].as_str().unwrap_or("").starts_with("key:ci"));
    let res =
        app.client.get(format!("{}/api/v1/jobs", app.base)).header("x-api-key", &secret).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    let (_, list) = app.call(Method::GET, "/api/v1/api-keys", Some(&admin), None).await;
    let listed = list.as_array().expect("list").iter().find(|k| k["id"] == created["id"]).expect("listed").clone();
    assert!(listed["last_used_at"].is_string(), "last use recorded: {listed}");

    let (status, _) = app
        .call(Method::DELETE, &format!("/api/v1/api-keys/{}", created["id"].as_str().expect("id")), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::GET, "/api/v1/jobs", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, problem) = app
        .call(Method::POST, "/api/v1/api-keys", Some(&admin), Some(json!({ "name": "", "role": "god", "scope": "x" })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["name", "role", "scope"]);
}

#[tokio::test]
async fn mutating_requests_are_audited_and_only_admins_read_the_trail() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let operator = app.user_with_role(&admin, Role::Operator).await;
    let job = app.enqueue(&operator, json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } })).await;
    let (status, _) = app.call(Method::POST, "/api/v1/jobs", Some(&operator), Some(json!({ "kind": "nope" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.call(Method::GET, "/api/v1/audit", Some(&operator), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, audit) = app.call(Method::GET, "/api/v1/audit?limit=50", Some(&admin), None).await;
    let items = audit["items"].as_array().expect("items");
    let enqueues: Vec<_> = items.iter().filter(|e| e["action"] == "POST /api/v1/jobs").collect();
    assert_eq!(enqueues.len(), 2, "{audit}");
    assert!(enqueues.iter().any(|e| e["outcome"] == 201) && enqueues.iter().any(|e| e["outcome"] == 422));
    assert!(enqueues.iter().all(|e| e["actor"].as_str().unwrap_or("").starts_with("user:operator-")));
    assert!(items.iter().any(|e| e["action"] == "POST /api/v1/users" && e["outcome"] == 201));
    assert!(items.iter().any(|e| e["action"] == "login" && e["outcome"] == 200));
    let _ = job;
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_deleted() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (_, users) = app.call(Method::GET, "/api/v1/users", Some(&admin), None).await;
    let me = users.as_array().expect("users").iter().find(|u| u["email"] == ADMIN_EMAIL).expect("admin")["id"].clone();
    let id = me.as_str().expect("id");
    let (status, problem) =
        app.call(Method::PATCH, &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({ "role": "viewer" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["conflicting_id"], me);
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/users/{id}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Duplicate email -> 409 naming the existing user.
    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["conflicting_id"], me);
}

#[tokio::test]
async fn admins_manage_users_of_their_organization() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (status, user) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({ "email": "Ops@A.test", "password": ADMIN_PASSWORD, "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "ops@a.test", "emails are normalised");
    assert!(user.get("password_hash").is_none());
    let id = user["id"].as_str().expect("id").to_owned();
    let token = app.login("ops@a.test", ADMIN_PASSWORD).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&token),
            Some(json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer cannot enqueue");

    let (status, user) = app
        .call(Method::PATCH, &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({ "role": "operator" })))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["role"], "operator");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&token),
            Some(json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the new role applies to the live session at once");

    let (status, _) =
        app.call(Method::PATCH, &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({ "disabled": true }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "disabling a user ends their sessions");

    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/users/{id}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, users) = app.call(Method::GET, "/api/v1/users", Some(&admin), None).await;
    assert!(users.as_array().expect("users").iter().all(|u| u["id"] != json!(id)));

    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({ "email": "not-an-email", "password": "short", "role": "root" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["email", "password", "role"]);
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let app = spawn_app().await;
    let access = app.spine.db().access();
    let admin = access.user_by_email(ADMIN_EMAIL).await.expect("query").expect("bootstrap admin");
    let live = api_gateway::auth::random_token();
    let expired = api_gateway::auth::random_token();
    let now = chrono::Utc::now();
    access
        .create_session(&api_gateway::auth::token_hash(&live), admin.id, now + chrono::Duration::hours(1))
        .await
        .expect("live");
    access
        .create_session(&api_gateway::auth::token_hash(&expired), admin.id, now - chrono::Duration::seconds(1))
        .await
        .expect("expired");
    let (status, _) = app.call(Method::GET, "/api/v1/me", Some(&live), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::GET, "/api/v1/me", Some(&expired), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
