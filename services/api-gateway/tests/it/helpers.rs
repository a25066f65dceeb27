//! A running gateway (plus a worker) on a fresh database, and HTTP helpers.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use sentinel_jobs::domain::{QueueName, Role, builtin};
use sentinel_jobs::{Catalog, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;
use sentinel_testkit::TestDb;
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "admin@a.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    pub spine: Spine,
    pub client: reqwest::Client,
    shutdown: Shutdown,
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    spawn(extra, false).await
}

/// A gateway with the scheduler service running in-process too, as in the embedded mode.
pub async fn spawn_app_with_scheduler() -> TestApp {
    spawn(&[], true).await
}

/// Like [`spawn_app_with_scheduler`], with extra settings.
pub async fn spawn_app_with_scheduler_and(extra: &[(&str, &str)]) -> TestApp {
    spawn(extra, true).await
}

/// A gateway over a fresh PostgreSQL database (still with the in-process bus).
pub async fn spawn_app_on_postgres() -> TestApp {
    spawn_on(TestDb::postgres().await.expect("postgres"), &[], false).await
}

async fn spawn(extra: &[(&str, &str)], with_scheduler: bool) -> TestApp {
    spawn_on(TestDb::sqlite().expect("sqlite"), extra, with_scheduler).await
}

async fn spawn_on(db: TestDb, extra: &[(&str, &str)], with_scheduler: bool) -> TestApp {
    let playbooks = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ansible/playbooks");
    let mut overrides = vec![
        ("auth.bootstrap_admin_email", ADMIN_EMAIL),
        ("auth.bootstrap_admin_password", ADMIN_PASSWORD),
        ("http.max_body_bytes", "4096"),
        ("provision.playbook_dirs", playbooks),
    ];
    overrides.extend_from_slice(extra);
    let settings = sentinel_testkit::settings(&db.url, "memory", "gw", &overrides);
    let spine = Spine::connect(&settings, Catalog::builtin(true)).await.expect("spine");
    let app = api_gateway::Application::build(spine.clone()).await.expect("gateway");
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = Shutdown::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let queues = vec![QueueName::parse(builtin::DEFAULT_QUEUE).expect("queue")];
    let worker =
        Worker::new(spine.clone(), builtin_handlers(true), WorkerOptions::from_spine(&spine, "gw-test", queues));
    tokio::spawn(worker.run(shutdown.clone()));
    if with_scheduler {
        tokio::spawn(scheduler::run(spine.clone(), shutdown.clone()));
    }
    let client = reqwest::Client::builder().build().expect("client");
    TestApp { base, spine, client, shutdown, _db: db }
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends `body` with an explicit content type; returns status and the JSON answer.
    pub async fn send_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "email": email, "password": password })))
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user with `role` in the admin's organization and returns their session token.
    pub async fn user_with_role(&self, admin: &str, role: Role) -> String {
        let email = format!("{}-{}@a.test", role, uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(admin),
                Some(json!({ "email": email, "password": ADMIN_PASSWORD, "role": role.as_str() })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.login(&email, ADMIN_PASSWORD).await
    }

    /// An admin of a second organization, created out of band (organizations come from the CLI).
    pub async fn other_org_admin(&self) -> String {
        let access = self.spine.db().access();
        let org = access.create_org(&format!("org-{}", uuid::Uuid::new_v4().simple())).await.expect("org");
        let email = format!("admin-{}@b.test", uuid::Uuid::new_v4().simple());
        let hash = api_gateway::auth::hash_password(ADMIN_PASSWORD.to_owned()).await.expect("hash");
        access.create_user(org.id, &email, &hash, Role::Admin).await.expect("user");
        self.login(&email, ADMIN_PASSWORD).await
    }

    pub async fn enqueue(&self, token: &str, body: Value) -> Value {
        let (status, job) = self.call(Method::POST, "/api/v1/jobs", Some(token), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        job
    }

    pub async fn wait_state(&self, token: &str, id: &str, state: &str) -> Value {
        let found = sentinel_testkit::eventually(std::time::Duration::from_secs(15), || async {
            let (_, job) = self.call(Method::GET, &format!("/api/v1/jobs/{id}"), Some(token), None).await;
            (job["state"] == state).then_some(job)
        })
        .await;
        found.unwrap_or_else(|| panic!("job {id} never reached {state}"))
    }
}

/// A schedule body that fires `demo.sleep` every `every` seconds.
pub fn schedule_body(name: &str, every: u64) -> Value {
    json!({ "name": name, "interval_secs": every, "kind": "demo.sleep", "payload": { "seconds": 0 } })
}

/// Every route with a sample body, for the authentication/authorisation matrix. `{job}` is replaced by
/// a job id, `{user}` by a user id, `{key}` by an API key id, `{schedule}` by a schedule id, `{server}`
/// by a server id, `{config}` by a config id, `{sshkey}` by an SSH key id.
pub fn routes() -> Vec<(Method, &'static str, Option<Value>, Role)> {
    vec![
        (Method::GET, "/api/v1/me", None, Role::Viewer),
        (Method::POST, "/api/v1/auth/logout", None, Role::Viewer),
        (Method::GET, "/api/v1/users", None, Role::Admin),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "x@a.test", "password": "long enough pw", "role": "viewer"})),
            Role::Admin,
        ),
        (Method::PATCH, "/api/v1/users/{user}", Some(json!({"role": "viewer"})), Role::Admin),
        (Method::DELETE, "/api/v1/users/{user}", None, Role::Admin),
        (Method::GET, "/api/v1/api-keys", None, Role::Admin),
        (Method::POST, "/api/v1/api-keys", Some(json!({"name": "k"})), Role::Admin),
        (Method::DELETE, "/api/v1/api-keys/{key}", None, Role::Admin),
        (Method::GET, "/api/v1/audit", None, Role::Admin),
        (Method::POST, "/api/v1/jobs", Some(json!({"kind": "demo.sleep", "payload": {"seconds": 0}})), Role::Operator),
        (
            Method::POST,
            "/api/v1/jobs/batch",
            Some(json!({"jobs": [{"kind": "demo.sleep", "payload": {"seconds": 0}}]})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/jobs", None, Role::Viewer),
        (Method::GET, "/api/v1/jobs/counts", None, Role::Viewer),
        (Method::GET, "/api/v1/jobs/{job}", None, Role::Viewer),
        (Method::POST, "/api/v1/jobs/{job}/cancel", None, Role::Operator),
        (Method::POST, "/api/v1/jobs/{job}/retry", None, Role::Operator),
        (Method::GET, "/api/v1/jobs/{job}/events", None, Role::Viewer),
        (Method::GET, "/api/v1/jobs/{job}/log", None, Role::Viewer),
        (Method::GET, "/api/v1/jobs/{job}/stream", None, Role::Viewer),
        (Method::GET, "/api/v1/events/stream", None, Role::Viewer),
        (Method::GET, "/api/v1/dead-letters", None, Role::Viewer),
        (Method::POST, "/api/v1/dead-letters/default/1-0/requeue", None, Role::Operator),
        (Method::DELETE, "/api/v1/dead-letters/default/1-0", None, Role::Operator),
        (Method::POST, "/api/v1/schedules", Some(schedule_body("matrix", 60)), Role::Operator),
        (Method::GET, "/api/v1/schedules", None, Role::Viewer),
        (Method::POST, "/api/v1/schedules/preview", Some(json!({"cron": "0 9 * * 1-5"})), Role::Viewer),
        (Method::GET, "/api/v1/schedules/{schedule}", None, Role::Viewer),
        (Method::PUT, "/api/v1/schedules/{schedule}", Some(schedule_body("fixture", 120)), Role::Operator),
        (Method::PATCH, "/api/v1/schedules/{schedule}", Some(json!({"enabled": false})), Role::Operator),
        (Method::GET, "/api/v1/schedules/{schedule}/preview", None, Role::Viewer),
        (Method::GET, "/api/v1/schedules/{schedule}/firings", None, Role::Viewer),
        (Method::DELETE, "/api/v1/schedules/{schedule}", None, Role::Operator),
        (Method::GET, "/api/v1/servers", None, Role::Viewer),
        (Method::POST, "/api/v1/servers", Some(json!({"provider_ref": "matrix", "ip": "10.0.0.9"})), Role::Operator),
        (Method::POST, "/api/v1/servers/import", None, Role::Operator),
        (Method::POST, "/api/v1/servers/reserve", Some(json!({"purpose": "matrix"})), Role::Operator),
        (Method::GET, "/api/v1/servers/{server}", None, Role::Viewer),
        (Method::PATCH, "/api/v1/servers/{server}", Some(json!({"notes": "matrix"})), Role::Operator),
        (Method::GET, "/api/v1/servers/{server}/history", None, Role::Viewer),
        (Method::POST, "/api/v1/servers/{server}/release", None, Role::Operator),
        (Method::DELETE, "/api/v1/servers/{server}", None, Role::Operator),
        (Method::POST, "/api/v1/configs", Some(json!({"name": "matrix"})), Role::Operator),
        (Method::GET, "/api/v1/configs", None, Role::Viewer),
        (Method::GET, "/api/v1/configs/{config}", None, Role::Viewer),
        (Method::PUT, "/api/v1/configs/{config}", Some(json!({"name": "fixture"})), Role::Operator),
        (Method::GET, "/api/v1/configs/{config}/versions", None, Role::Viewer),
        (Method::GET, "/api/v1/configs/{config}/versions/1", None, Role::Viewer),
        (Method::DELETE, "/api/v1/configs/{config}", None, Role::Operator),
        (Method::POST, "/api/v1/provisioning/ssh-keys", Some(json!({"name": "m", "private_key": "x"})), Role::Operator),
        (Method::GET, "/api/v1/provisioning/ssh-keys", None, Role::Viewer),
        (Method::GET, "/api/v1/provisioning/ssh-keys/{sshkey}", None, Role::Viewer),
        (Method::PATCH, "/api/v1/provisioning/ssh-keys/{sshkey}", Some(json!({"default": true})), Role::Operator),
        (Method::DELETE, "/api/v1/provisioning/ssh-keys/{sshkey}", None, Role::Operator),
        (Method::GET, "/api/v1/provisioning/playbooks", None, Role::Viewer),
        (
            Method::POST,
            "/api/v1/provisioning/runs",
            Some(json!({"playbook": "ping", "selector": "x=y"})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/provisioning/runs", None, Role::Viewer),
        (Method::GET, "/api/v1/provisioning/runs/{run}", None, Role::Viewer),
        (Method::POST, "/api/v1/provisioning/runs/{run}/retry-failed", None, Role::Operator),
        (Method::POST, "/api/v1/provisioning/runs/{run}/apply", None, Role::Operator),
        (
            Method::POST,
            "/api/v1/backups/targets",
            Some(json!({"name": "m", "engine": "sqlite", "path": "/tmp/matrix.db"})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/backups/targets", None, Role::Viewer),
        (Method::GET, "/api/v1/backups/targets/{btarget}", None, Role::Viewer),
        (
            Method::PUT,
            "/api/v1/backups/targets/{btarget}",
            Some(json!({"name": "fixture", "engine": "sqlite", "path": "/tmp/fixture.db"})),
            Role::Operator,
        ),
        (Method::POST, "/api/v1/backups/targets/{btarget}/test", None, Role::Operator),
        (
            Method::POST,
            "/api/v1/backups/destinations",
            Some(json!({"name": "m", "config": {"kind": "local", "path": "/tmp"}})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/backups/destinations", None, Role::Viewer),
        (Method::GET, "/api/v1/backups/destinations/{bdest}", None, Role::Viewer),
        (
            Method::PUT,
            "/api/v1/backups/destinations/{bdest}",
            Some(json!({"name": "fixture", "config": {"kind": "local", "path": "/tmp"}})),
            Role::Operator,
        ),
        (Method::POST, "/api/v1/backups/destinations/{bdest}/test", None, Role::Operator),
        (Method::POST, "/api/v1/backups/plans", Some(plan_shape()), Role::Operator),
        (Method::GET, "/api/v1/backups/plans", None, Role::Viewer),
        (Method::GET, "/api/v1/backups/plans/{bplan}", None, Role::Viewer),
        (Method::PUT, "/api/v1/backups/plans/{bplan}", Some(plan_shape()), Role::Operator),
        (Method::POST, "/api/v1/backups/plans/{bplan}/run", None, Role::Operator),
        (Method::POST, "/api/v1/backups/plans/{bplan}/prune?dry_run=true", None, Role::Viewer),
        (Method::POST, "/api/v1/backups/plans/{bplan}/prune", None, Role::Operator),
        (Method::GET, "/api/v1/backups/journal", None, Role::Viewer),
        (Method::GET, "/api/v1/backups/journal/{bentry}", None, Role::Viewer),
        (Method::POST, "/api/v1/backups/journal/{bentry}/verify", None, Role::Operator),
        (
            Method::POST,
            "/api/v1/backups/restores",
            Some(json!({"target_id": "00000000-0000-0000-0000-000000000000"})),
            Role::Operator,
        ),
        (Method::POST, "/api/v1/backups/uploads?destination_id={bdest}&name=x.dump", None, Role::Operator),
        (Method::DELETE, "/api/v1/backups/plans/{bplan}?backups=keep", None, Role::Operator),
        (Method::DELETE, "/api/v1/backups/destinations/{bdest}", None, Role::Operator),
        (Method::DELETE, "/api/v1/backups/targets/{btarget}", None, Role::Operator),
        (Method::GET, "/api/v1/monitoring/targets", None, Role::Viewer),
        (Method::GET, "/api/v1/http-targets", None, Role::Viewer),
        (
            Method::POST,
            "/api/v1/monitoring/targets",
            Some(json!({"name": "m", "url": "http://127.0.0.1:9/m"})),
            Role::Operator,
        ),
        (
            Method::POST,
            "/api/v1/http-targets",
            Some(json!({"name": "m", "url": "http://127.0.0.1:9/h"})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/monitoring/targets/{mtarget}", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/targets/{mtarget}/results", None, Role::Viewer),
        (Method::POST, "/api/v1/monitoring/targets/{mtarget}/check", None, Role::Operator),
        (
            Method::PUT,
            "/api/v1/monitoring/targets/{mtarget}",
            Some(json!({"name": "fixture", "url": "http://127.0.0.1:9/fixture"})),
            Role::Operator,
        ),
        (Method::DELETE, "/api/v1/monitoring/targets/{mtarget}", None, Role::Operator),
        (Method::GET, "/api/v1/monitoring/settings", None, Role::Viewer),
        (
            Method::PUT,
            "/api/v1/monitoring/settings",
            Some(
                json!({"notification_email": null, "heartbeat_threshold_minutes": 5, "consecutive_failures_threshold": 3,
                        "consecutive_successes_threshold": 2, "alert_grouping_enabled": true}),
            ),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/monitoring/alerts", None, Role::Viewer),
        (Method::POST, "/api/v1/ingest/metrics", Some(json!({"machine": {}})), Role::Operator),
        (Method::POST, "/api/v1/monitoring/metrics", Some(json!({"machine": {}})), Role::Operator),
        (Method::GET, "/api/v1/monitoring/metrics", None, Role::Viewer),
        (Method::PATCH, "/api/v1/monitoring/metrics/{metric}", Some(json!({"paused": true})), Role::Operator),
        (Method::GET, "/api/v1/monitoring/metrics/{metric}/series", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/machines", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/dashboard", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/events/stream", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/machines/{machine}", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/machines/{machine}/metrics", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/incidents", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/incidents/{incident}", None, Role::Viewer),
        (Method::POST, "/api/v1/monitoring/incidents/{incident}/acknowledge", None, Role::Operator),
        (Method::POST, "/api/v1/monitoring/incidents/{incident}/resolve", None, Role::Operator),
        (Method::POST, "/api/v1/monitoring/incidents/{incident}/notes", Some(json!({"text": "n"})), Role::Operator),
        (Method::GET, "/api/v1/monitoring/thresholds", None, Role::Viewer),
        (
            Method::PUT,
            "/api/v1/monitoring/thresholds/{metric}",
            Some(json!({"kind": "numeric", "warning": 1})),
            Role::Operator,
        ),
        (
            Method::POST,
            "/api/v1/monitoring/metrics/{metric}/thresholds/default",
            Some(json!({"kind": "numeric", "warning": 1})),
            Role::Operator,
        ),
        (Method::DELETE, "/api/v1/monitoring/thresholds/{metric}", None, Role::Operator),
        (
            Method::POST,
            "/api/v1/monitoring/heartbeats",
            Some(json!({"name": "m", "period_seconds": 60})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/monitoring/heartbeats", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/heartbeats/{heartbeat}", None, Role::Viewer),
        (
            Method::PUT,
            "/api/v1/monitoring/heartbeats/{heartbeat}",
            Some(json!({"name": "fixture", "period_seconds": 120})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/monitoring/heartbeats/{heartbeat}/pings", None, Role::Viewer),
        (Method::POST, "/api/v1/monitoring/heartbeats/{heartbeat}/token", None, Role::Operator),
        (Method::DELETE, "/api/v1/monitoring/heartbeats/{heartbeat}", None, Role::Operator),
        (Method::GET, "/api/v1/monitoring/channels", None, Role::Viewer),
        (
            Method::POST,
            "/api/v1/monitoring/channels",
            Some(json!({"name": "m", "kind": "webhook", "url": "http://127.0.0.1:9/m"})),
            Role::Admin,
        ),
        (Method::GET, "/api/v1/monitoring/channels/{channel}", None, Role::Viewer),
        (
            Method::PUT,
            "/api/v1/monitoring/channels/{channel}",
            Some(json!({"name": "fixture", "kind": "webhook", "url": "http://127.0.0.1:9/f"})),
            Role::Admin,
        ),
        (Method::POST, "/api/v1/monitoring/channels/{channel}/test", None, Role::Operator),
        (Method::DELETE, "/api/v1/monitoring/channels/{channel}", None, Role::Admin),
        (Method::GET, "/api/v1/monitoring/notification-policy", None, Role::Viewer),
        (Method::PUT, "/api/v1/monitoring/notification-policy", Some(json!({})), Role::Admin),
        (Method::DELETE, "/api/v1/monitoring/notification-policy", None, Role::Admin),
        (Method::GET, "/api/v1/monitoring/silences", None, Role::Viewer),
        (
            Method::POST,
            "/api/v1/monitoring/silences",
            Some(json!({"matchers": [{"label": "severity", "op": "=", "value": "warning"}],
                        "ends_at": "2099-01-01T00:00:00Z", "comment": "m"})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/monitoring/silences/{silence}", None, Role::Viewer),
        (Method::DELETE, "/api/v1/monitoring/silences/{silence}", None, Role::Operator),
        (Method::GET, "/api/v1/monitoring/maintenance-windows", None, Role::Viewer),
        (
            Method::POST,
            "/api/v1/monitoring/maintenance-windows",
            Some(json!({"name": "m", "cron": "0 2 * * SUN", "duration_minutes": 60})),
            Role::Operator,
        ),
        (Method::GET, "/api/v1/monitoring/maintenance-windows/{window}", None, Role::Viewer),
        (Method::DELETE, "/api/v1/monitoring/maintenance-windows/{window}", None, Role::Operator),
        (Method::GET, "/api/v1/monitoring/notifications", None, Role::Viewer),
        (Method::GET, "/api/v1/monitoring/notifications/{notification}", None, Role::Viewer),
        (Method::POST, "/tasks/enqueue?seconds=0", None, Role::Operator),
        (Method::GET, "/tasks/status/{job}", None, Role::Viewer),
        (Method::GET, "/tasks/counts", None, Role::Viewer),
    ]
}

/// A plan body of the right shape (its ids name nothing: the matrix checks who may call, not what).
fn plan_shape() -> serde_json::Value {
    json!({"name": "m", "target_id": "00000000-0000-0000-0000-000000000000", "destination_ids": []})
}

pub fn fill(path: &str, ids: &HashMap<&str, String>) -> String {
    let mut p = path.to_owned();
    for (k, v) in ids {
        p = p.replace(&format!("{{{k}}}"), v);
    }
    p
}
