//! Database engines: how each one's dump and restore tools are invoked — program, arguments, and the
//! credential file they read (`PGPASSFILE`, `--defaults-extra-file`, a mongo `--config`) — so that a
//! password is never on a command line or in a process environment. Building is pure; running is
//! [`Invocation::spawn`] (own process group, cleared environment, killed on drop).

mod credentials;
mod mongodb;
mod mysql;
mod postgres;
pub mod sqlite;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use secrecy::SecretString;
use sentinel_jobs::domain::backups::Engine;

pub use credentials::CredentialFile;

/// Where a target is and who Sentinel connects as.
#[derive(Debug, Clone)]
pub struct Connection {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    /// The database (PostgreSQL, MySQL/MariaDB, MongoDB); the file for SQLite.
    pub database: String,
    /// Require TLS to the server (and verify it where the tool can).
    pub tls: bool,
    /// Only these tables (collections) are dumped, when not empty (pg_dump patterns such as
    /// `public.*` work on PostgreSQL).
    pub include: Vec<String>,
    /// These tables (collections) are left out.
    pub exclude: Vec<String>,
    /// PostgreSQL: the exported snapshot the dump reads (`pg_dump --snapshot`), so that the
    /// statistics a verification compares are taken in exactly what was dumped.
    pub snapshot: Option<String>,
}

impl Connection {
    /// A connection on the engine's default port, without TLS.
    pub fn new(engine: Engine, host: &str, user: &str, password: Option<&str>, database: &str) -> Self {
        Self {
            engine,
            host: host.to_owned(),
            port: engine.default_port().unwrap_or(0),
            user: user.to_owned(),
            password: password.map(SecretString::from),
            database: database.to_owned(),
            tls: false,
            include: Vec::new(),
            exclude: Vec::new(),
            snapshot: None,
        }
    }
}

/// The client tools, found by name on `PATH` unless configured.
#[derive(Debug, Clone)]
pub struct Tools {
    pub dir: Option<PathBuf>,
}

impl Tools {
    /// The executable `name`, in the configured directory or on `PATH`.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        if let Some(dir) = &self.dir {
            let p = dir.join(name);
            return p.is_file().then_some(p);
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    /// The first of `names` that exists, or an error naming them and how to install them.
    fn first(&self, names: &[&str], package: &str) -> Result<PathBuf, EngineError> {
        names
            .iter()
            .find_map(|n| self.find(n))
            .ok_or_else(|| EngineError::ToolMissing { tools: names.join(" or "), install: package.to_owned() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{tools} not found on this worker: install {install}")]
    ToolMissing { tools: String, install: String },
    #[error("cannot write the credential file: {0}")]
    CredentialFile(std::io::Error),
    #[error("{0}")]
    Unsupported(String),
}

/// One tool run: what to execute, and the credential file that must outlive the process.
#[derive(Debug)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Variables set on top of a cleared environment (paths only, never a secret).
    pub env: Vec<(&'static str, OsString)>,
    pub credentials: Option<CredentialFile>,
}

impl Invocation {
    fn new(program: PathBuf) -> Self {
        Self { program, args: Vec::new(), env: Vec::new(), credentials: None }
    }

    fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    /// The arguments as text (for logs and tests: they hold no secret by construction).
    pub fn args_text(&self) -> Vec<String> {
        self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// Starts the tool with piped stdin/stdout/stderr, in its own process group (a cancel stops the
    /// whole group), with a cleared environment, killed if the handle is dropped.
    pub fn spawn(&self) -> std::io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.spawn()
    }
}

/// The dump of `conn`: the tool writes one stream to stdout.
pub fn dump(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::dump(conn, tools, work_dir),
        Engine::Mysql | Engine::Mariadb => mysql::dump(conn, tools, work_dir),
        Engine::Mongodb => mongodb::dump(conn, tools, work_dir),
        Engine::Sqlite => Err(EngineError::Unsupported(
            "SQLite is copied through its own backup (VACUUM INTO), not a dump tool".to_owned(),
        )),
    }
}

/// The cluster-wide objects a database dump does not hold (PostgreSQL's roles and tablespaces);
/// `None` where the engine's dump is already whole.
pub fn globals(
    conn: &Connection,
    tools: &Tools,
    work_dir: &Path,
    with_passwords: bool,
) -> Result<Option<Invocation>, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::globals(conn, tools, work_dir, with_passwords).map(Some),
        _ => Ok(None),
    }
}

/// The tool that applies a [`globals`] artifact (read on stdin) to `conn`'s server.
pub fn apply_globals(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::apply_globals(conn, tools, work_dir),
        other => Err(EngineError::Unsupported(format!("{other} backups have no separate globals"))),
    }
}

/// The restore into `conn`: the tool reads the dump's stream on stdin. PostgreSQL restores in one
/// transaction, so a failed restore leaves the target as it was.
pub fn restore(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::restore(conn, tools, work_dir),
        Engine::Mysql | Engine::Mariadb => mysql::restore(conn, tools, work_dir),
        Engine::Mongodb => mongodb::restore(conn, tools, work_dir, None),
        Engine::Sqlite => {
            Err(EngineError::Unsupported("SQLite is restored by replacing the file, not through a tool".to_owned()))
        }
    }
}

/// An interactive SQL session (statements on stdin, results on stdout, stopping at the first
/// error): the snapshot a dump reads and the statistics a verification compares.
pub fn session(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::session(conn, tools, work_dir),
        Engine::Mysql | Engine::Mariadb => mysql::session(conn, tools, work_dir),
        other => Err(EngineError::Unsupported(format!("{other} backups are not verified by Sentinel yet"))),
    }
}

/// The tool that prints a dump's table of contents from the dump on stdin (PostgreSQL only).
pub fn list_contents(engine: Engine, tools: &Tools) -> Result<Invocation, EngineError> {
    match engine {
        Engine::Postgres => postgres::list_contents(tools),
        other => Err(EngineError::Unsupported(format!("{other} dumps are not checked for completeness yet"))),
    }
}

/// One SQL statement run with the query tool (a verification's `CREATE`/`DROP DATABASE`).
pub fn query(conn: &Connection, tools: &Tools, work_dir: &Path, sql: &str) -> Result<Invocation, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::query(conn, tools, work_dir, sql),
        Engine::Mysql | Engine::Mariadb => mysql::query(conn, tools, work_dir, sql),
        other => Err(EngineError::Unsupported(format!("{other} takes no SQL statement from Sentinel"))),
    }
}

/// A query tool run that prints the server's version on stdout.
pub fn server_version(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    match conn.engine {
        Engine::Postgres => postgres::query(conn, tools, work_dir, "SHOW server_version"),
        Engine::Mysql | Engine::Mariadb => mysql::query(conn, tools, work_dir, "SELECT VERSION()"),
        Engine::Mongodb => mongodb::version(conn, tools, work_dir),
        Engine::Sqlite => Err(EngineError::Unsupported("SQLite has no server".to_owned())),
    }
}

/// A query that prints the database's size in bytes (the progress percentage's denominator);
/// `None` where the engine has no cheap estimate.
pub fn size_estimate(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Option<Invocation>, EngineError> {
    Ok(match conn.engine {
        Engine::Postgres => {
            Some(postgres::query(conn, tools, work_dir, "SELECT pg_database_size(current_database())")?)
        }
        Engine::Mysql | Engine::Mariadb => Some(mysql::query(
            conn,
            tools,
            work_dir,
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = DATABASE()",
        )?),
        Engine::Mongodb | Engine::Sqlite => None,
    })
}

/// Runs a short tool invocation (a version or size query) and returns its trimmed stdout, or its
/// stderr's end as the error. Killed after `timeout`.
pub async fn capture(inv: &Invocation, timeout: std::time::Duration) -> Result<String, String> {
    let name = inv.program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let child = inv.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => return Err(format!("{name} did not answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => return Err(format!("{name}: {e}")),
        Ok(Ok(out)) => out,
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        let err = text(&out.stderr);
        let tail: String = err.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        Err(format!("{name} failed ({}): {tail}", out.status))
    }
}

/// The dump tool's own version (`pg_dump --version`…): compared with the server's before a backup.
pub fn tool_version(conn: &Connection, tools: &Tools) -> Result<Invocation, EngineError> {
    let program = match conn.engine {
        Engine::Postgres => postgres::dump_tool(tools)?,
        Engine::Mysql | Engine::Mariadb => mysql::dump_tool(conn.engine, tools)?,
        Engine::Mongodb => mongodb::dump_tool(tools)?,
        Engine::Sqlite => return Err(EngineError::Unsupported("SQLite needs no tool".to_owned())),
    };
    let mut inv = Invocation::new(program);
    inv.arg("--version");
    Ok(inv)
}

/// pg_dump's rule: a client older (by major version) than the server cannot dump it. Versions are
/// the first number of `pg_dump (PostgreSQL) 15.10` / `server_version` `16.2 (Debian …)`.
pub fn check_client_not_older(engine: Engine, client: &str, server: &str) -> Result<(), String> {
    if engine != Engine::Postgres {
        return Ok(());
    }
    let major = |text: &str| -> Option<u32> {
        text.split(|c: char| !c.is_ascii_digit() && c != '.')
            .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .and_then(|w| w.split('.').next())
            .and_then(|m| m.parse().ok())
    };
    match (major(client), major(server)) {
        (Some(c), Some(s)) if c < s => Err(format!(
            "pg_dump {c} cannot dump a PostgreSQL {s} server: install the PostgreSQL {s} client tools \
             (postgresql-client-{s}) on the backup worker"
        )),
        (Some(_), Some(_)) => Ok(()),
        _ => Err(format!("cannot read the versions (client {client:?}, server {server:?})")),
    }
}

#[cfg(test)]
mod tests;
