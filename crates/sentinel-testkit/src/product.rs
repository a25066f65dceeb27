//! The whole product as an operator runs it: `sentinel up` (embedded) in a temporary directory on a
//! free port, and its REST API driven with the token it generated.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::{Proc, client, get_json, wait_ready};

/// Sentinel's API at `base`, authenticated with `token`.
pub struct Api {
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = client().request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&format!("{}{path}", self.base), Some(&self.token)).await
    }

    /// Creates something and returns its id (201 expected).
    pub async fn create(&self, path: &str, body: Value) -> String {
        let (status, created) = self.post(path, body.clone()).await;
        assert_eq!(status, 201, "{path} {body} → {created}");
        created["id"].as_str().expect("id").to_owned()
    }

    /// POSTs something that answers with a job (202), and waits until the job ends.
    pub async fn job(&self, path: &str, body: Value) -> Value {
        let (status, job) = self.post(path, body.clone()).await;
        assert_eq!(status, 202, "{path} {body} → {job}");
        self.wait(job["id"].as_str().expect("job id")).await
    }

    /// Waits (two minutes at most) until job `id` ends, and returns it.
    pub async fn wait(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, job) = self.get(&format!("/api/v1/jobs/{id}")).await;
            if ["succeeded", "failed", "cancelled", "dead"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `sentinel up` with its data under `tmp/data`, listening on `port`, with `env` added.
pub fn up(tmp: &Path, port: u16, env: &[(&str, &str)]) -> Proc {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let listen = format!("127.0.0.1:{port}");
    let dir = tmp.join("data");
    Proc::spawn("sentinel", &["up", "--data-dir", dir.to_str().expect("utf-8"), "--listen", &listen], &env, port, tmp)
}

/// The API of a `sentinel up` started in `tmp`, once it is ready.
pub async fn ready(sentinel: &mut Proc, tmp: &Path) -> Api {
    wait_ready(sentinel, "/ready", Duration::from_secs(30)).await;
    let token = std::fs::read_to_string(tmp.join("data/api-token")).expect("token");
    Api { base: sentinel.url(""), token }
}

/// `sentinel up` in `tmp` on a free port with `env`, ready, with its API.
pub async fn start(tmp: &Path, env: &[(&str, &str)]) -> (Proc, Api) {
    let mut sentinel = up(tmp, crate::free_port(), env);
    let api = ready(&mut sentinel, tmp).await;
    (sentinel, api)
}
