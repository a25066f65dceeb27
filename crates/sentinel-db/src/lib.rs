//! Persistence for Sentinel: one sea-orm code path over PostgreSQL (distributed) and SQLite (embedded),
//! migrations, and the job store with its fenced writes.

mod access;
pub mod backups;
pub mod configs;
pub mod credentials;
pub mod entity;
pub mod inventory;
mod jobs;
pub mod monitoring;
pub mod notify;
pub mod provisioning;
mod schedules;
mod secrets;
pub mod sqlite_files;

use std::time::Duration;

use sea_orm::{ConnectOptions, DatabaseConnection, DbBackend};
use sentinel_migrations::{Migrator, MigratorTrait};

pub use access::{AccessStore, ApiKey, AuditEntry, NewApiKey, NewAuditEntry, Organization, User};
pub use jobs::{
    AttemptWrite, AttemptWritten, CancelOutcome, Finish, JobFilter, JobRecord, JobStore, NewJob, StartOutcome,
};
pub use schedules::{ClaimedTick, FiringRecord, ScheduleDraft, ScheduleRecord, ScheduleStore, TickClaim};
pub use secrets::{SecretRow, SecretStore};

/// Errors from the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(
        "the database schema is out of date ({pending} pending migration(s): {names}); run `sentinel migrate` \
         or set SENTINEL_DATABASE__AUTO_MIGRATE=true"
    )]
    SchemaOutdated { pending: usize, names: String },
    /// A write from an attempt whose lease epoch is no longer current (another attempt took over).
    #[error("job {job_id}: write from a stale attempt (epoch {epoch}) refused")]
    Fenced { job_id: String, epoch: i64 },
    #[error("{0} not found")]
    NotFound(String),
    /// A unique constraint refused the row (a deduplication key or a name already in use).
    #[error("already exists")]
    Duplicate,
    /// An optimistic write found the row changed since it was read.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database could not be reached (a batch's failure, answered to each of its writes).
    #[error("database unreachable: {0}")]
    Unavailable(String),
}

impl DbError {
    /// Whether the database could not be reached — connection refused or lost, pool exhausted, server
    /// shutting down or refusing connections: a condition to wait out, never the fault of the caller
    /// or of the job being written.
    pub fn is_unavailable(&self) -> bool {
        use sea_orm::{DbErr, RuntimeErr};
        match self {
            DbError::Unavailable(_) | DbError::Db(DbErr::ConnectionAcquire(_)) => true,
            DbError::Db(DbErr::Conn(e) | DbErr::Exec(e) | DbErr::Query(e)) => match e {
                RuntimeErr::SqlxError(e) => sqlx_unavailable(e),
                RuntimeErr::Internal(_) => false,
            },
            _ => false,
        }
    }
}

fn sqlx_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => true,
        Error::Protocol(_) => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, crash, cannot connect now),
        // 53300 (too many connections).
        Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    }
}

/// Maps a unique-constraint violation to `DbError::Duplicate` (a name or deduplication key in use).
pub(crate) fn unique(e: sea_orm::DbErr) -> DbError {
    match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => DbError::Duplicate,
        _ => DbError::Db(e),
    }
}

/// A throwaway PostgreSQL database on a server (benchmarks run in one, then drop it).
pub struct ScratchDatabase {
    server: DatabaseConnection,
    name: String,
    /// Connection URL of the new database.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<random>` on the server at `server_url` (a URL to any of its databases).
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self, DbError> {
        use sea_orm::ConnectionTrait;
        let server = sea_orm::Database::connect(server_url).await?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        server.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await?;
        // The server's options (`?sslmode=…`) apply to the new database too.
        let (path, options) = server_url.split_once('?').map_or((server_url, None), |(p, o)| (p, Some(o)));
        let base = path.rsplit_once('/').map_or(path, |(base, _)| base);
        let url = match options {
            Some(options) => format!("{base}/{name}?{options}"),
            None => format!("{base}/{name}"),
        };
        Ok(Self { url, server, name })
    }

    /// Drops the database, disconnecting whoever is still connected.
    pub async fn drop_now(self) -> Result<(), DbError> {
        use sea_orm::ConnectionTrait;
        self.server.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await?;
        Ok(())
    }
}

/// How the stores begin their transactions (all of which write). On SQLite, `BEGIN IMMEDIATE`: the
/// write lock is taken at the start, waiting in the busy handler if another connection holds it. A
/// deferred transaction that reads first would instead fail at its first write with "database is
/// locked" (`SQLITE_BUSY_SNAPSHOT`, which no busy handler retries) whenever another connection committed
/// since its read — the job store's writer commits many times a second. PostgreSQL ignores the mode.
pub const WRITE_TRANSACTION: sea_orm::TransactionOptions = sea_orm::TransactionOptions {
    isolation_level: None,
    access_mode: None,
    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
};

/// Whether a database URL (or the `PGSSLMODE` environment variable) says how to use TLS.
fn chooses_tls(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("sslmode=")))
        || std::env::var_os("PGSSLMODE").is_some()
}

/// No TLS to a PostgreSQL on this machine unless the URL asks for it. The traffic never leaves the
/// host, so TLS protects nothing there, and it costs both ends CPU on every statement: about a tenth
/// of the job path's rate (docs/benchmarks.md). Any other host keeps the default (`prefer`).
fn without_loopback_tls(
    options: sea_orm::sqlx::postgres::PgConnectOptions,
    tls_chosen: bool,
) -> sea_orm::sqlx::postgres::PgConnectOptions {
    if !tls_chosen && is_loopback_host(options.get_host()) {
        options.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
    } else {
        options
    }
}

/// `localhost`, an address of 127.0.0.0/8 or `::1` (a Unix socket directory never uses TLS anyway).
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A pool of connections to the Sentinel database.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    /// The connections of the batched attempt writes (see [`JobStore::write_attempts`]). On PostgreSQL a
    /// pool of its own whose sessions plan by primary-key lookups only: a queue table's statistics are
    /// always stale (it fills and drains in seconds), and with them the planner hash-joins a batch
    /// against a scan of every queued row. Setting that per session instead of per transaction is what
    /// lets a batch be one statement and one round trip. On SQLite, a pool of one connection through
    /// which the job store makes all its writes, so they queue in the process (see `JobStore::writer`).
    attempts: DatabaseConnection,
}

/// Connections of the attempt writes' own pool: one per batch the worker's two group committers (outcomes,
/// and the other writes) run at once.
pub const ATTEMPT_CONNECTIONS: u32 = 4;

impl Database {
    /// Opens a pool. SQLite files are put in WAL mode so readers never block the writer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(max_connections)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        opts.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true)
                .create_if_missing(true)
        });
        let tls_chosen = chooses_tls(url);
        opts.map_sqlx_postgres_opts(move |o| without_loopback_tls(o, tls_chosen));
        let conn = sea_orm::Database::connect(opts.clone()).await?;
        let attempts = if conn.get_database_backend() == DbBackend::Postgres {
            opts.max_connections(ATTEMPT_CONNECTIONS).map_sqlx_postgres_opts(move |o| {
                without_loopback_tls(o, tls_chosen).options([
                    ("enable_hashjoin", "off"),
                    ("enable_mergejoin", "off"),
                    ("enable_bitmapscan", "off"),
                    ("plan_cache_mode", "force_generic_plan"),
                ])
            });
            sea_orm::Database::connect(opts).await?
        } else if url.contains(":memory:") || url.contains("mode=memory") {
            // Another pool would open another in-memory database.
            conn.clone()
        } else {
            // One writer at a time is all SQLite allows; the others would wait in its busy handler,
            // which sleeps 1, 2, 5, 10… ms between tries and left a core idle in the embedded job path.
            opts.max_connections(1);
            sea_orm::Database::connect(opts).await?
        };
        Ok(Self { conn, attempts })
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies every pending migration; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        let pending = Migrator::get_pending_migrations(&self.conn).await?.len();
        Migrator::up(&self.conn, None).await?;
        Ok(pending)
    }

    /// Refuses to run on an out-of-date schema unless `auto_migrate` is set, in which case it migrates.
    pub async fn ensure_schema(&self, auto_migrate: bool) -> Result<(), DbError> {
        let pending = Migrator::get_pending_migrations_read_only(&self.conn).await?;
        if pending.is_empty() {
            return Ok(());
        }
        if auto_migrate {
            self.migrate().await?;
            return Ok(());
        }
        let names = pending.iter().map(|m| m.name().to_owned()).collect::<Vec<_>>().join(", ");
        Err(DbError::SchemaOutdated { pending: pending.len(), names })
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.conn.ping().await?;
        Ok(())
    }

    pub fn jobs(&self) -> JobStore {
        JobStore::new(self.conn.clone(), self.attempts.clone())
    }

    pub fn access(&self) -> AccessStore {
        AccessStore::new(self.conn.clone())
    }

    pub fn inventory(&self) -> inventory::InventoryStore {
        inventory::InventoryStore::new(self.conn.clone())
    }

    pub fn provisioning(&self) -> provisioning::ProvisioningStore {
        provisioning::ProvisioningStore::new(self.conn.clone())
    }

    pub fn configs(&self) -> configs::ConfigStore {
        configs::ConfigStore::new(self.conn.clone())
    }

    pub fn credentials(&self) -> credentials::CredentialStore {
        credentials::CredentialStore::new(self.conn.clone())
    }

    pub fn secrets(&self) -> SecretStore {
        SecretStore::new(self.conn.clone())
    }

    pub fn backups(&self) -> backups::BackupStore {
        backups::BackupStore::new(self.conn.clone())
    }

    pub fn monitoring(&self) -> monitoring::MonitoringStore {
        monitoring::MonitoringStore::new(self.conn.clone())
    }

    pub fn notify(&self) -> notify::NotifyStore {
        notify::NotifyStore::new(self.conn.clone())
    }

    pub fn schedules(&self) -> ScheduleStore {
        ScheduleStore::new(self.conn.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};

    fn ssl_mode_for(url: &str) -> PgSslMode {
        let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        without_loopback_tls(options, chooses_tls(url)).get_ssl_mode()
    }

    #[test]
    fn a_loopback_database_gets_no_tls_unless_the_url_asks_for_it() {
        if std::env::var_os("PGSSLMODE").is_some() {
            return; // the environment chooses for every URL; nothing of ours to check
        }
        for url in ["postgres://u@127.0.0.1:5432/db", "postgres://u@localhost/db", "postgres://u@[::1]:5432/db"] {
            assert!(matches!(ssl_mode_for(url), PgSslMode::Disable), "{url}");
        }
        assert!(matches!(ssl_mode_for("postgres://u@127.0.0.1/db?sslmode=require"), PgSslMode::Require));
        assert!(matches!(
            ssl_mode_for("postgres://u@localhost/db?application_name=x&sslmode=verify-full"),
            PgSslMode::VerifyFull
        ));
        // Another host keeps the default, which tries TLS first.
        assert!(matches!(ssl_mode_for("postgres://u@db.example.org/db"), PgSslMode::Prefer));
        assert!(matches!(ssl_mode_for("postgres://u@10.0.0.5/db"), PgSslMode::Prefer));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["10.0.0.1", "db.local", "localhost.example.org", "/var/run/postgresql", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
