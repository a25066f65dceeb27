//! MySQL and MariaDB: `mariadb-dump`/`mysqldump` in one consistent transaction with routines, events
//! and triggers; `mariadb`/`mysql` to restore and query; the password through `--defaults-extra-file`
//! (which must be the first argument).

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use sentinel_jobs::domain::backups::Engine;
use zeroize::Zeroizing;

use super::credentials::{CredentialFile, mysql_option_value};
use super::{Connection, EngineError, Invocation, Tools};

const PACKAGE: &str = "mariadb-client (Debian: apt-get install mariadb-client)";

pub fn dump_tool(engine: Engine, tools: &Tools) -> Result<PathBuf, EngineError> {
    match engine {
        Engine::Mariadb => tools.first(&["mariadb-dump", "mysqldump"], PACKAGE),
        _ => tools.first(&["mysqldump", "mariadb-dump"], PACKAGE),
    }
}

fn client_tool(engine: Engine, tools: &Tools) -> Result<PathBuf, EngineError> {
    match engine {
        Engine::Mariadb => tools.first(&["mariadb", "mysql"], PACKAGE),
        _ => tools.first(&["mysql", "mariadb"], PACKAGE),
    }
}

fn start(program: PathBuf, conn: &Connection, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut contents = format!(
        "[client]\nuser={}\nhost={}\nport={}\n",
        mysql_option_value(&conn.user),
        mysql_option_value(&conn.host),
        conn.port
    );
    if let Some(pw) = &conn.password {
        contents.push_str(&format!("password={}\n", mysql_option_value(pw.expose_secret())));
    }
    if conn.tls {
        contents.push_str("ssl-verify-server-cert\n");
    }
    let file =
        CredentialFile::write(work_dir, "client.cnf", Zeroizing::new(contents)).map_err(EngineError::CredentialFile)?;
    let mut inv = Invocation::new(program);
    let mut first = std::ffi::OsString::from("--defaults-extra-file=");
    first.push(file.path());
    inv.arg(first);
    inv.credentials = Some(file);
    inv.arg("--protocol=TCP");
    Ok(inv)
}

pub fn dump(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = start(dump_tool(conn.engine, tools)?, conn, work_dir)?;
    inv.arg("--single-transaction").arg("--routines").arg("--events").arg("--triggers");
    inv.arg("--hex-blob").arg("--default-character-set=utf8mb4");
    for table in &conn.exclude {
        inv.arg(format!("--ignore-table={}.{table}", conn.database));
    }
    // One database without `--databases`: the dump names no database, so it restores into any.
    // Tables after it are the only ones dumped.
    inv.arg("--").arg(&conn.database);
    for table in &conn.include {
        inv.arg(table);
    }
    Ok(inv)
}

pub fn restore(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = start(client_tool(conn.engine, tools)?, conn, work_dir)?;
    // The client has a connect timeout (the dump tool does not take one).
    inv.arg("--connect-timeout=10");
    inv.arg("--default-character-set=utf8mb4").arg("--binary-mode").arg("--database").arg(&conn.database);
    Ok(inv)
}

/// The client reading statements from stdin as they come (unbuffered, raw values, stopping at the
/// first error) in `conn`'s database.
pub fn session(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = start(client_tool(conn.engine, tools)?, conn, work_dir)?;
    inv.arg("--connect-timeout=10").arg("--default-character-set=utf8mb4");
    inv.arg("--batch")
        .arg("--skip-column-names")
        .arg("--raw")
        .arg("--unbuffered")
        .arg("--database")
        .arg(&conn.database);
    Ok(inv)
}

pub fn query(conn: &Connection, tools: &Tools, work_dir: &Path, sql: &str) -> Result<Invocation, EngineError> {
    let mut inv = start(client_tool(conn.engine, tools)?, conn, work_dir)?;
    // The client has a connect timeout (the dump tool does not take one).
    inv.arg("--connect-timeout=10");
    inv.arg("--batch").arg("--skip-column-names").arg("--execute").arg(sql);
    Ok(inv)
}
