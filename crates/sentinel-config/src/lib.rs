//! The one layered settings loader every Sentinel binary uses: built-in defaults, then an optional TOML
//! file, then `SENTINEL_<SECTION>__<KEY>` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;

/// Environment variable naming an optional settings file.
pub const CONFIG_FILE_ENV: &str = "SENTINEL_CONFIG";

/// Why settings could not be loaded. The message names the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: `{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Every setting of every binary. Unknown keys are rejected so a typo never goes unnoticed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded mode keeps its SQLite file and generated secrets.
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub relay: RelaySettings,
    pub scheduler: SchedulerSettings,
    pub auth: AuthSettings,
    pub secrets: SecretsSettings,
    pub provision: ProvisionSettings,
    pub backup: BackupSettings,
    pub monitor: MonitorSettings,
    pub telemetry: TelemetrySettings,
}

/// The backup worker: where the database client tools are and how artifacts are uploaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// The directory of `pg_dump`, `mariadb-dump`, `mongodump`…; unset: looked up on `PATH`.
    pub tools_dir: Option<PathBuf>,
    /// Where jobs keep their 0600 credential files (default `<data_dir>/backup`).
    pub work_dir: Option<PathBuf>,
    /// The part size of multipart uploads, in MiB (S3 needs ≥ 5; memory in flight is about four
    /// parts per upload).
    pub part_size_mib: u32,
    /// How old an incomplete upload or an object no finished backup owns must be before the
    /// janitor removes it (a running backup's are never touched, whatever their age).
    pub janitor_grace_minutes: u64,
}

impl BackupSettings {
    pub fn work_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| data_dir.join("backup"))
    }

    pub fn part_size(&self) -> usize {
        (self.part_size_mib.clamp(5, 512) as usize) << 20
    }
}

/// The monitor worker: how many HTTP checks run at once (in all, and per host), how long raw
/// results are kept before only their rollups remain, and which DNS server resolves target names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// Checks in flight at once in one worker.
    pub max_concurrent_checks: usize,
    /// Checks in flight at once against one host, so one slow site cannot hold every slot.
    pub per_host_concurrency: usize,
    /// Raw results older than this are deleted once rolled up into hourly rows.
    pub raw_result_hours: u64,
    /// At most this many bytes of a response body are read (for assertions).
    pub max_body_kib: usize,
    /// A DNS server (`ip:port`, UDP then TCP) that resolves target names instead of the system's
    /// resolver (`/etc/hosts`, `/etc/resolv.conf`).
    pub dns_server: Option<SocketAddr>,
    /// The networks checks may reach (CIDRs, comma-separated); empty: any. Names are checked after
    /// they resolve, redirects too — a guard against checks aimed at internal services.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub allow_networks: Vec<String>,
    /// How often notification groups are evaluated (their timers are checked), in milliseconds.
    pub notify_evaluate_ms: u64,
    /// How long a replica holds a notification it is sending before another may take it over.
    pub notify_lease_secs: u64,
    /// The longest wait between two attempts of a failing delivery (backoff doubles up to it).
    pub notify_max_backoff_secs: u64,
    /// A delivery still failing this long after it was queued is given up (marked `failed`).
    pub notify_give_up_hours: u64,
}

/// The provisioning runner: which ansible-playbook runs, which playbooks are allowed, and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSettings {
    /// The `ansible-playbook` executable (ansible-core ≥ 2.19): a path, or a name looked up in PATH.
    pub ansible_playbook: PathBuf,
    /// The allow-listed playbook directories, searched in order: a run names a playbook `<name>` and
    /// only `<dir>/<name>.yml` of one of these can run.
    #[serde(deserialize_with = "paths_or_comma_separated")]
    pub playbook_dirs: Vec<PathBuf>,
    /// A run's timeout when its request names none, in seconds.
    pub default_timeout_secs: u64,
    /// Parallel hosts per run (ansible's `--forks`).
    pub forks: u32,
    /// Where runs get their private directories (default `<data_dir>/provision`).
    pub work_dir: Option<PathBuf>,
    /// `ansible_python_interpreter` of every host (`auto_silent`: ansible's discovery).
    pub python_interpreter: String,
}

impl ProvisionSettings {
    /// The directory runs get their private directories in.
    pub fn work_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| data_dir.join("provision"))
    }
}

fn paths_or_comma_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    Ok(list_or_comma_separated(d)?.into_iter().map(PathBuf::from).collect())
}

/// The master key that seals every credential Sentinel stores (SSH keys, config secrets, database and
/// cloud credentials): 32 random bytes in base64 (`sentinel admin gen-master-key` prints one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// The key itself (e.g. from `SENTINEL_SECRETS__MASTER_KEY`). Exclusive with `master_key_file`.
    pub master_key: Option<SecretString>,
    /// A file holding the key (mode 0600). `sentinel up` creates `<data_dir>/master.key` when no key is set.
    pub master_key_file: Option<PathBuf>,
    /// Keys being rotated out, comma-separated: still read, never used to seal. Run `sentinel admin
    /// reseal-secrets` to re-seal everything with `master_key`, then remove them.
    pub retired_keys: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Lifetime of a login session (cookie or bearer token), in seconds.
    pub session_ttl_secs: u64,
    /// Failed or successful login attempts allowed per minute, per client address and per email.
    pub login_attempts_per_minute: u32,
    /// Creates this admin (in organization `bootstrap_org`) at start-up when no user exists yet.
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<SecretString>,
    /// Organization of the bootstrap admin and of the `http.api_token` root key.
    pub bootstrap_org: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path?mode=rwc`. Secret because it may carry a password.
    pub url: SecretString,
    /// Pool size; 0 means two per CPU core (at least 4). A small pool is faster under load on few
    /// cores: fewer database backends compete for the CPU and group commits get larger batches.
    pub max_connections: u32,
    /// Apply pending migrations at start-up instead of refusing to start on an old schema.
    pub auto_migrate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusBackend {
    /// Redis Streams: the distributed mode.
    Redis,
    /// In-process: the embedded mode, one process only.
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSettings {
    pub backend: BusBackend,
    pub redis_url: SecretString,
    /// Namespace for every key, so two deployments can share one Redis.
    pub prefix: String,
    /// How long a delivered message may go without a lease renewal before another worker reclaims it.
    pub visibility_timeout_ms: u64,
    /// Deliveries (first one plus reclaims after crashes) before a message is dead-lettered.
    pub max_deliveries: u32,
    /// Longest single blocking read; bounds shutdown and reconnect latency.
    pub block_ms: u64,
    /// Pool size for non-blocking commands.
    pub pool_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Largest accepted JSON body, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads of the gateway; 0 means one per CPU core.
    pub workers: usize,
    /// A root API key (admin role, organization `auth.bootstrap_org`) for automation and first
    /// set-up; optional. `sentinel up` generates one in its data directory.
    pub api_token: Option<SecretString>,
    /// Origins allowed to call the API from a browser (CORS), e.g. `https://console.example.com`; a
    /// list in TOML, comma-separated in the environment.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs one worker process runs at once.
    pub concurrency: usize,
    /// On SIGTERM, how long in-flight jobs get to finish before the rest is left for reclaim.
    pub shutdown_grace_ms: u64,
    /// After a cancel, how long a handler's subprocesses get between SIGTERM and SIGKILL.
    pub cancel_grace_ms: u64,
    /// Registers the test-only `fault.*` job kinds. Never enable in production.
    pub fault_injection: bool,
    /// Finished jobs (and their event logs) are deleted after this many days.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// How often the outbox relay looks for committed but unpublished jobs.
    pub interval_ms: u64,
    /// A job row must be this old before the relay publishes it (the enqueuer usually does it first).
    pub grace_ms: u64,
    /// Queued jobs overdue this long, and running jobs silent this long, are republished (the bus may
    /// have lost them). Must exceed `bus.visibility_timeout_ms`.
    pub stuck_after_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// How long the active scheduler's lease lasts without renewal; a standby takes over after it
    /// expires (renewed every third of it).
    pub lease_ttl_ms: u64,
    /// How often a standby replica tries to take the lease.
    pub standby_poll_ms: u64,
    /// How often the active scheduler looks for schedules created or edited through the API.
    pub reload_ms: u64,
    /// A tick later than this is a misfire, handled by its schedule's misfire policy; later ticks
    /// still fire (a takeover or a busy database delays them by a few seconds).
    pub misfire_grace_ms: u64,
    /// Built-in periodic work, in seconds (0 disables one).
    pub metric_eval_interval_secs: u64,
    pub heartbeat_check_interval_secs: u64,
    /// How often due HTTP checks are dispatched (each target keeps its own interval).
    pub http_check_dispatch_interval_secs: u64,
    /// How often finished jobs and firing records past `worker.retention_days` are deleted.
    pub retention_interval_secs: u64,
    /// How often server reservations whose TTL ran out are ended.
    pub reservation_expiry_interval_secs: u64,
    /// How often the backup janitor sweeps the destinations (see `backup.janitor_grace_minutes`).
    pub backup_janitor_interval_secs: u64,
    /// How often raw HTTP check results are rolled up into hourly and daily rows and trimmed.
    pub monitor_rollup_interval_secs: u64,
    /// A due job still queued after this long means no worker consumes its queue: the scheduler's
    /// `/ready` then warns about that queue.
    pub unconsumed_warning_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// `tracing` env-filter directives, e.g. `info,sentinel_bus=debug`.
    pub log_level: String,
    /// OTLP/HTTP endpoint (e.g. `http://otel-collector:4318`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Text(t) => t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

const DEFAULTS: &str = r#"
data_dir = "./data"

[database]
url = "sqlite://sentinel.sqlite?mode=rwc"
max_connections = 0
auto_migrate = false

[bus]
backend = "redis"
redis_url = "redis://127.0.0.1:6379"
prefix = "sentinel"
visibility_timeout_ms = 10000
max_deliveries = 3
block_ms = 2000
pool_size = 16

[http]
listen = "127.0.0.1:8080"
max_body_bytes = 1048576
workers = 0

cors_allowed_origins = []

[worker]
concurrency = 16
shutdown_grace_ms = 20000
fault_injection = false
cancel_grace_ms = 5000
retention_days = 30

[relay]
interval_ms = 1000
grace_ms = 2000
stuck_after_ms = 600000

[scheduler]
lease_ttl_ms = 3000
standby_poll_ms = 500
reload_ms = 500
misfire_grace_ms = 10000
metric_eval_interval_secs = 60
heartbeat_check_interval_secs = 120
http_check_dispatch_interval_secs = 5
retention_interval_secs = 300
reservation_expiry_interval_secs = 15
backup_janitor_interval_secs = 3600
monitor_rollup_interval_secs = 300
unconsumed_warning_secs = 60

[auth]
session_ttl_secs = 43200
login_attempts_per_minute = 10
bootstrap_org = "default"

[secrets]

[provision]
ansible_playbook = "ansible-playbook"
playbook_dirs = ["ansible/playbooks"]
default_timeout_secs = 3600
forks = 20
python_interpreter = "auto_silent"

[backup]
part_size_mib = 8
janitor_grace_minutes = 60

[monitor]
max_concurrent_checks = 4096
per_host_concurrency = 16
raw_result_hours = 48
max_body_kib = 1024
notify_evaluate_ms = 1000
notify_lease_secs = 30
notify_max_backoff_secs = 60
notify_give_up_hours = 24

[telemetry]
log_format = "auto"
log_level = "info"
"#;

impl Settings {
    /// Loads defaults, then the file named by `SENTINEL_CONFIG` if set, then the environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_for(&[], &[])
    }

    /// Like [`Settings::load`] with per-binary defaults (e.g. each service's own port) that the file and
    /// the environment can still override, and final overrides (command-line flags) that win over all.
    pub fn load_for(defaults: &[(&str, &str)], overrides: &[(&str, String)]) -> Result<Self, ConfigError> {
        let file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        Self::load_layers(defaults, file, overrides)
    }

    /// Like [`Settings::load`], with an explicit file and final overrides (`key`, `value`) that win over
    /// everything — this is how command-line flags such as `--listen` are applied.
    pub fn load_from(file: Option<PathBuf>, overrides: &[(&str, String)]) -> Result<Self, ConfigError> {
        Self::load_layers(&[], file, overrides)
    }

    fn load_layers(
        defaults: &[(&str, &str)],
        file: Option<PathBuf>,
        overrides: &[(&str, String)],
    ) -> Result<Self, ConfigError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if !defaults.is_empty() {
            let mut own = Config::builder();
            for (key, value) in defaults {
                own = own.set_override(*key, *value)?;
            }
            builder = builder.add_source(own.build()?);
        }
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    key: CONFIG_FILE_ENV,
                    reason: format!("names {} which does not exist", path.display()),
                });
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        // Only nested keys (SENTINEL_SECTION__KEY) and SENTINEL_DATA_DIR are settings; other SENTINEL_*
        // variables (SENTINEL_CONFIG, test helpers' SENTINEL_TEST_*) are not, and must not trip
        // `deny_unknown_fields`.
        let env: config::Map<String, String> = std::env::vars()
            .filter(|(k, _)| k.strip_prefix("SENTINEL_").is_some_and(|rest| rest.contains("__") || rest == "DATA_DIR"))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("SENTINEL")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .ignore_empty(true)
                .source(Some(env)),
        );
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        use secrecy::ExposeSecret;
        let url = self.database.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
            return invalid("database.url", "must start with postgres://, postgresql:// or sqlite:");
        }
        if self.bus.backend == BusBackend::Redis {
            let r = self.bus.redis_url.expose_secret();
            if !(r.starts_with("redis://") || r.starts_with("rediss://") || r.starts_with("unix:")) {
                return invalid("bus.redis_url", "must start with redis://, rediss:// or unix:");
            }
        }
        if self.bus.prefix.is_empty() || self.bus.prefix.contains(['{', '}', ' ']) {
            return invalid("bus.prefix", "must be non-empty without braces or spaces");
        }
        if self.bus.visibility_timeout_ms < 1000 {
            return invalid("bus.visibility_timeout_ms", "must be at least 1000");
        }
        if self.bus.max_deliveries == 0 {
            return invalid("bus.max_deliveries", "must be at least 1");
        }
        if self.bus.block_ms == 0 || self.bus.block_ms >= self.bus.visibility_timeout_ms {
            return invalid("bus.block_ms", "must be above 0 and below bus.visibility_timeout_ms");
        }
        if self.bus.pool_size == 0 {
            return invalid("bus.pool_size", "must be at least 1");
        }
        if self.provision.default_timeout_secs == 0 || self.provision.default_timeout_secs > 86_400 {
            return invalid("provision.default_timeout_secs", "must be from 1 to 86400");
        }
        if self.provision.forks == 0 || self.provision.forks > 500 {
            return invalid("provision.forks", "must be from 1 to 500");
        }
        if self.provision.playbook_dirs.is_empty() {
            return invalid("provision.playbook_dirs", "must name at least one directory");
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.relay.interval_ms == 0 {
            return invalid("relay.interval_ms", "must be at least 1");
        }
        if self.scheduler.lease_ttl_ms < 300 {
            return invalid("scheduler.lease_ttl_ms", "must be at least 300");
        }
        if self.scheduler.standby_poll_ms == 0 || self.scheduler.standby_poll_ms >= self.scheduler.lease_ttl_ms {
            return invalid("scheduler.standby_poll_ms", "must be above 0 and below scheduler.lease_ttl_ms");
        }
        if self.scheduler.reload_ms == 0 {
            return invalid("scheduler.reload_ms", "must be at least 1");
        }
        if let Some(token) = &self.http.api_token
            && token.expose_secret().len() < 16
        {
            return invalid("http.api_token", "must be at least 16 characters");
        }
        if self.relay.stuck_after_ms <= self.bus.visibility_timeout_ms {
            return invalid("relay.stuck_after_ms", "must be greater than bus.visibility_timeout_ms");
        }
        for origin in &self.http.cors_allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                return invalid(
                    "http.cors_allowed_origins",
                    "each origin must look like https://host[:port], without a path",
                );
            }
        }
        if self.auth.session_ttl_secs < 60 {
            return invalid("auth.session_ttl_secs", "must be at least 60");
        }
        if self.auth.login_attempts_per_minute == 0 {
            return invalid("auth.login_attempts_per_minute", "must be at least 1");
        }
        if self.auth.bootstrap_admin_email.is_some() != self.auth.bootstrap_admin_password.is_some() {
            return invalid("auth.bootstrap_admin_password", "must be set together with auth.bootstrap_admin_email");
        }
        if let Some(p) = &self.auth.bootstrap_admin_password
            && p.expose_secret().len() < 12
        {
            return invalid("auth.bootstrap_admin_password", "must be at least 12 characters");
        }
        if self.auth.bootstrap_org.trim().is_empty() {
            return invalid("auth.bootstrap_org", "must not be empty");
        }
        if self.secrets.master_key.is_some() && self.secrets.master_key_file.is_some() {
            return invalid(
                "secrets.master_key_file",
                "set either secrets.master_key or secrets.master_key_file, not both",
            );
        }
        if self.http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes", "must be at least 1024");
        }
        Ok(())
    }
}

impl DatabaseSettings {
    /// The pool size to use (resolves 0 to two per CPU core, at least 4).
    pub fn pool_size(&self) -> u32 {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        (cores * 2).max(4)
    }
}

impl BusSettings {
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_millis(self.visibility_timeout_ms)
    }
    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }
}

impl WorkerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn cancel_grace(&self) -> Duration {
        Duration::from_millis(self.cancel_grace_ms)
    }
}

impl SchedulerSettings {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    pub fn standby_poll(&self) -> Duration {
        Duration::from_millis(self.standby_poll_ms)
    }
    pub fn reload(&self) -> Duration {
        Duration::from_millis(self.reload_ms)
    }
    pub fn misfire_grace(&self) -> Duration {
        Duration::from_millis(self.misfire_grace_ms)
    }
}

impl RelaySettings {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
    pub fn stuck_after(&self) -> Duration {
        Duration::from_millis(self.stuck_after_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let o: Vec<(&str, String)> = overrides.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        Settings::load_from(None, &o)
    }

    #[test]
    fn defaults_load() {
        let s = load(&[]).expect("defaults are valid");
        assert_eq!(s.http.listen.port(), 8080);
        assert_eq!(s.bus.backend, BusBackend::Redis);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = load(&[("http.listen", "not-an-address")]).expect_err("must fail").to_string();
        assert!(err.contains("http.listen"), "{err}");
        let err = load(&[("database.url", "mysql://x")]).expect_err("must fail").to_string();
        assert!(err.contains("database.url"), "{err}");
        let err = load(&[("worker.concurrency", "0")]).expect_err("must fail").to_string();
        assert!(err.contains("worker.concurrency"), "{err}");
    }

    #[test]
    fn binary_defaults_sit_between_built_ins_and_overrides() {
        let s = Settings::load_for(&[("http.listen", "127.0.0.1:9101")], &[]).expect("valid");
        assert_eq!(s.http.listen.port(), 9101);
        let s = Settings::load_for(&[("http.listen", "127.0.0.1:9101")], &[("http.listen", "127.0.0.1:1".to_owned())])
            .expect("valid");
        assert_eq!(s.http.listen.port(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load(&[("http.lisen", "127.0.0.1:1")]).expect_err("must fail").to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = load(&[("database.url", "postgres://u:hunter2@h/db")]).expect("valid");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn missing_config_file_is_named() {
        let err = Settings::load_from(Some("/nonexistent/s.toml".into()), &[]).expect_err("must fail");
        assert!(err.to_string().contains("SENTINEL_CONFIG"));
    }
}
