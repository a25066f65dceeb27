//! The provisioning routes' contract without running ansible: the allow-list, every refused field of a
//! run request, the 409s of reserved servers and of retry/apply on runs that cannot be retried or
//! applied, and what a created run records (its job, the playbook hash, the config version, the
//! inventory snapshot, extra-variable names and never their secret values).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, path, Some(token), Some(body)).await
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn runs_are_validated_recorded_and_listed() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (_, playbooks) = app.call(Method::GET, "/api/v1/provisioning/playbooks", Some(&admin), None).await;
    let names: Vec<&str> =
        playbooks["items"].as_array().expect("items").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["apply-config", "base", "harden-ssh", "ping"], "{playbooks}");
    let ping_hash = playbooks["items"][3]["content_hash"].as_str().expect("hash").to_owned();
    assert_eq!(ping_hash.len(), 64);
    assert!(playbooks["items"][3]["description"].as_str().unwrap_or("").contains("Connectivity"), "{playbooks}");

    let (_, web) = post(
        &app,
        &admin,
        "/api/v1/servers",
        json!({"provider_ref": "w1", "ip": "10.0.0.1", "labels": {"role": "web"}}),
    )
    .await;
    let (_, spare) = post(
        &app,
        &admin,
        "/api/v1/servers",
        json!({"provider_ref": "s1", "ip": "10.0.0.2", "labels": {"role": "spare"}}),
    )
    .await;
    let (_, config) = post(&app, &admin, "/api/v1/configs", json!({"name": "app", "payload": {"port": 1}})).await;

    // Each bad field is named.
    let cases = [
        (json!({"playbook": "../x", "selector": "role=web"}), "playbook"),
        (json!({"playbook": "nope", "selector": "role=web"}), "playbook"),
        (json!({"playbook": "ping"}), "server_ids"),
        (json!({"playbook": "ping", "server_ids": [web["id"]], "selector": "role=web"}), "server_ids"),
        (json!({"playbook": "ping", "server_ids": []}), "server_ids"),
        (json!({"playbook": "ping", "server_ids": ["0190f1a4-0000-7000-8000-000000000000"]}), "server_ids"),
        (json!({"playbook": "ping", "selector": "role=none"}), "selector"),
        (json!({"playbook": "ping", "selector": "a=b=c"}), "selector"),
        (
            json!({"playbook": "ping", "selector": "role=web", "config_id": "0190f1a4-0000-7000-8000-000000000000"}),
            "config_id",
        ),
        (json!({"playbook": "ping", "selector": "role=web", "timeout_seconds": 0}), "timeout_seconds"),
        (
            json!({"playbook": "ping", "selector": "role=web", "extra_vars": {"ansible_user": "x"}}),
            "extra_vars.ansible_user",
        ),
        (json!({"playbook": "ping", "selector": "role=web", "extra_vars": {"bad-name": 1}}), "extra_vars.bad-name"),
        (json!({"playbook": "ping", "selector": "role=web", "extra_vars": {"p": {"secret": 5}}}), "extra_vars.p"),
    ];
    for (body, field) in cases {
        let (status, problem) = post(&app, &admin, "/api/v1/provisioning/runs", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert!(fields(&problem).contains(&field.to_owned()), "{body}: {field} not named in {problem}");
    }
    let (_, problem) =
        post(&app, &admin, "/api/v1/provisioning/runs", json!({"playbook": "../x", "selector": "role=web"})).await;
    assert!(
        problem.to_string().contains("apply-config, base, harden-ssh, ping"),
        "the allowed ones are named: {problem}"
    );

    // A reserved server belongs to its reservation's run.
    let (_, reservation) =
        post(&app, &admin, "/api/v1/servers/reserve", json!({"purpose": "deploy", "labels": {"role": "spare"}})).await;
    let (status, problem) =
        post(&app, &admin, "/api/v1/provisioning/runs", json!({"playbook": "ping", "server_ids": [spare["id"]]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, own) = post(
        &app,
        &admin,
        "/api/v1/provisioning/runs",
        json!({"playbook": "ping", "server_ids": [spare["id"]], "reservation_id": reservation["lease_id"]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{own}");
    assert_eq!(own["reservation_id"], reservation["lease_id"]);

    // What a run records.
    let (status, run) = post(
        &app,
        &admin,
        "/api/v1/provisioning/runs",
        json!({"playbook": "ping", "selector": "role=web", "config_id": config["id"], "check": true,
               "extra_vars": {"token": {"secret": "hunter2-hunter2"}, "n": 3}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["state"], "queued");
    assert_eq!(run["playbook_hash"], json!(ping_hash));
    assert_eq!(run["config_version"], 1);
    assert_eq!(run["extra_var_names"], json!(["n", "token"]));
    assert_eq!(run["inventory"][0]["ip"], "10.0.0.1");
    assert_eq!(run["hosts"][0]["status"], "pending");
    assert!(!run.to_string().contains("hunter2"), "{run}");
    let (_, job) = app
        .call(Method::GET, &format!("/api/v1/jobs/{}", run["job_id"].as_str().expect("job")), Some(&admin), None)
        .await;
    assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("provision.run"), Some("queued")), "{job}");

    // Unfinished runs cannot be retried or applied; a real run is never "applied".
    let id = run["id"].as_str().expect("id");
    for action in ["retry-failed", "apply"] {
        let (status, problem) =
            post(&app, &admin, &format!("/api/v1/provisioning/runs/{id}/{action}"), json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {problem}");
    }
    let (status, _) =
        post(&app, &admin, &format!("/api/v1/provisioning/runs/{}/apply", own["id"].as_str().expect("id")), json!({}))
            .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Lists: filters and pages.
    let (_, page) = app.call(Method::GET, "/api/v1/provisioning/runs?limit=1", Some(&admin), None).await;
    assert_eq!(page["items"][0]["id"], run["id"], "newest first");
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, next) =
        app.call(Method::GET, &format!("/api/v1/provisioning/runs?limit=1&cursor={cursor}"), Some(&admin), None).await;
    assert_eq!(next["items"][0]["id"], own["id"]);
    let by_server = format!("/api/v1/provisioning/runs?server_id={}", spare["id"].as_str().expect("id"));
    let (_, only) = app.call(Method::GET, &by_server, Some(&admin), None).await;
    assert_eq!(only["items"].as_array().map(Vec::len), Some(1));
    for bad in ["state=nope", "limit=0", "playbook=../x", "cursor=x"] {
        let (status, problem) =
            app.call(Method::GET, &format!("/api/v1/provisioning/runs?{bad}"), Some(&admin), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
    }
    let (_, queued) =
        app.call(Method::GET, "/api/v1/provisioning/runs?state=queued&playbook=ping", Some(&admin), None).await;
    assert_eq!(queued["items"].as_array().map(Vec::len), Some(2));
}
