//! Spawning and controlling the workspace's binaries from tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running binary, killed (SIGKILL) when dropped. Its output goes to a log file kept for debugging.
pub struct Proc {
    pub name: String,
    pub port: u16,
    child: Child,
    pub log: PathBuf,
}

pub fn binary(name: &str) -> PathBuf {
    let path = crate::bin_dir().join(name);
    assert!(path.exists(), "{} is not built; run the suite with `cargo test --workspace`", path.display());
    path
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], env: &HashMap<String, String>, port: u16, logs: &Path) -> Self {
        let log = logs.join(format!("{name}-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(binary(name));
        cmd.args(args).stdout(Stdio::from(out)).stderr(Stdio::from(err)).stdin(Stdio::null());
        // Children get only the settings given here (plus PATH and HOME).
        cmd.env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("SENTINEL_TELEMETRY__LOG_FORMAT", "json").env("SENTINEL_TELEMETRY__LOG_LEVEL", "info");
        cmd.envs(env);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { name: name.to_owned(), port, child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.pid().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {sig} {} failed", self.pid());
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    sentinel_telemetry::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

/// A client for long-lived streams (SSE): no total timeout, which would cut a stream that outlives it.
pub fn stream_client() -> reqwest::Client {
    sentinel_telemetry::install_crypto_provider();
    reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().expect("client")
}

/// Waits until GET `url` answers 200.
pub async fn wait_ready(p: &mut Proc, path: &str, timeout: Duration) {
    let client = client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(p.url(path)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(p.is_running(), "{} exited during start-up:\n{}", p.name, p.output());
        assert!(Instant::now() < deadline, "{} not ready in {timeout:?}:\n{}", p.name, p.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_text(url: &str) -> String {
    client().get(url).send().await.expect("request").text().await.expect("body")
}

/// Polls a job through the gateway until it reaches `state`.
pub async fn wait_job_state(base: &str, token: &str, id: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, job) = get_json(&format!("{base}/api/v1/jobs/{id}"), Some(token)).await;
        if status == 200 && job["state"] == state {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not reach {state} in {timeout:?}; last: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
