//! Test helpers (dev-dependency only): a fresh PostgreSQL database or SQLite file per test, a unique Redis
//! key prefix per test, private `redis-server` processes that tests may kill and restart, and settings.

pub mod emulators;
mod postgres_server;
pub mod procs;
pub mod product;
pub mod receivers;
pub mod ssh_hosts;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use sentinel_config::Settings;

pub use postgres_server::PostgresServer;

/// The PostgreSQL server tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var("SENTINEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The shared Redis the tests use (each with its own prefix).
pub fn redis_url() -> String {
    std::env::var("SENTINEL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A database of its own for one test. PostgreSQL databases are dropped when the guard drops.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, empty PostgreSQL database.
    pub async fn postgres() -> anyhow::Result<Self> {
        let server = postgres_server_url();
        let name = format!("sentinel_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(server.as_str()).await?;
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await?;
        admin.close().await?;
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Ok(Self { url: format!("{base}/{name}"), pg_name: Some(name), _dir: None })
    }

    /// A fresh SQLite file in a temporary directory.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("sentinel.sqlite").display());
        Ok(Self { url, pg_name: None, _dir: Some(dir) })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        let server = postgres_server_url();
        // Drop runs outside any async context guarantee: use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(server.as_str()).await {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Settings for a test: the given database, bus backend and Redis prefix, an ephemeral port, an API
/// token, short timeouts, fault kinds enabled, and quiet logs. `extra` overrides win.
pub fn settings(db_url: &str, backend: &str, prefix: &str, extra: &[(&str, &str)]) -> Settings {
    let mut overrides: Vec<(&str, String)> = vec![
        ("database.url", db_url.to_owned()),
        ("database.auto_migrate", "true".to_owned()),
        ("bus.backend", backend.to_owned()),
        ("bus.redis_url", redis_url()),
        ("bus.prefix", prefix.to_owned()),
        ("bus.visibility_timeout_ms", "3000".to_owned()),
        ("bus.block_ms", "500".to_owned()),
        ("http.listen", "127.0.0.1:0".to_owned()),
        ("http.api_token", TEST_TOKEN.to_owned()),
        ("worker.fault_injection", "true".to_owned()),
        ("worker.shutdown_grace_ms", "3000".to_owned()),
        ("relay.interval_ms", "200".to_owned()),
        ("relay.grace_ms", "500".to_owned()),
        ("relay.stuck_after_ms", "60000".to_owned()),
        ("telemetry.log_level", "warn".to_owned()),
        ("secrets.master_key", TEST_MASTER_KEY.to_owned()),
    ];
    overrides.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    sentinel_telemetry::install_crypto_provider();
    match Settings::load_from(None, &overrides) {
        Ok(s) => s,
        Err(e) => panic!("test settings are invalid: {e}"),
    }
}

/// The master key test settings use (32 bytes, base64).
pub const TEST_MASTER_KEY: &str = "c2VudGluZWwtdGVzdC1tYXN0ZXIta2V5LTMyYnl0ZXM=";

/// The API token test settings use.
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";

/// A private `redis-server` on its own port, killed on drop. Tests may stop and restart it.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut server = Self { port: free_port(), child: None, dir };
        server.spawn()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                anyhow::bail!("redis-server did not start on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server (SIGKILL): every connection drops and all data is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory holding the workspace's built binaries (`target/debug`), found from the running test.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/it-<hash> -> target/debug
    exe.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_default()
}

/// A minimal Server-Sent Events reader over a streaming HTTP response.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: serde_json::Value,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        use futures::StreamExt;
        Self { stream: response.bytes_stream().boxed(), buffer: String::new() }
    }

    /// The next event (comments and keep-alives skipped), or `None` on end of stream or timeout.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut ev = SseEvent { id: None, event: None, data: serde_json::Value::Null };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                ev.data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }
}
