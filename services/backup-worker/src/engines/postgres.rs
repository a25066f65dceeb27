//! PostgreSQL: `pg_dump -Fc -Z0` (compression is Sentinel's, on its own thread, not pg_dump's
//! single-threaded one), `pg_restore` in one transaction, `psql` for queries; the password through a
//! `PGPASSFILE`.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::credentials::{CredentialFile, pgpass_field};
use super::{Connection, EngineError, Invocation, Tools};

const PACKAGE: &str = "postgresql-client (Debian: apt-get install postgresql-client)";

pub fn dump_tool(tools: &Tools) -> Result<PathBuf, EngineError> {
    tools.first(&["pg_dump"], PACKAGE)
}

fn connect(inv: &mut Invocation, conn: &Connection, work_dir: &Path) -> Result<(), EngineError> {
    inv.arg("--host").arg(&conn.host).arg("--port").arg(conn.port.to_string());
    inv.arg("--username").arg(&conn.user).arg("--no-password");
    if let Some(pw) = &conn.password {
        // One line for any database: pg_dumpall and the version query connect to others.
        let line = Zeroizing::new(format!(
            "{}:{}:*:{}:{}\n",
            pgpass_field(&conn.host),
            conn.port,
            pgpass_field(&conn.user),
            pgpass_field(pw.expose_secret())
        ));
        let file = CredentialFile::write(work_dir, "pgpass", line).map_err(EngineError::CredentialFile)?;
        inv.env.push(("PGPASSFILE", file.path().into()));
        inv.credentials = Some(file);
    }
    inv.env.push(("PGSSLMODE", if conn.tls { "verify-full" } else { "prefer" }.into()));
    inv.env.push(("PGCONNECT_TIMEOUT", "10".into()));
    Ok(())
}

pub fn dump(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(dump_tool(tools)?);
    connect(&mut inv, conn, work_dir)?;
    inv.arg("--format=custom").arg("--compress=0").arg("--dbname").arg(&conn.database);
    if let Some(snapshot) = &conn.snapshot {
        inv.arg(format!("--snapshot={snapshot}"));
    }
    // The `=` form: a name is never read as an option (and none starts with '-').
    for table in &conn.include {
        inv.arg(format!("--table={table}"));
    }
    for table in &conn.exclude {
        inv.arg(format!("--exclude-table={table}"));
    }
    Ok(inv)
}

/// `pg_dumpall --globals-only`: the roles and tablespaces that a database dump refers to but does
/// not hold (a GRANT to a role the new cluster lacks fails the restore). Reading role passwords
/// needs a superuser; `with_passwords = false` reads `pg_roles` instead, as any user may.
pub fn globals(
    conn: &Connection,
    tools: &Tools,
    work_dir: &Path,
    with_passwords: bool,
) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(tools.first(&["pg_dumpall"], PACKAGE)?);
    connect(&mut inv, conn, work_dir)?;
    inv.arg("--globals-only").arg("--database").arg(&conn.database);
    if !with_passwords {
        inv.arg("--no-role-passwords");
    }
    Ok(inv)
}

/// Applies a globals script with `psql`, statement by statement: a role or tablespace that
/// already exists is reported and skipped, the others are created.
pub fn apply_globals(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(tools.first(&["psql"], PACKAGE)?);
    connect(&mut inv, conn, work_dir)?;
    inv.arg("--no-psqlrc").arg("--quiet").arg("--set").arg("ON_ERROR_STOP=0");
    inv.arg("--dbname").arg(&conn.database).arg("--file").arg("-");
    Ok(inv)
}

pub fn restore(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(tools.first(&["pg_restore"], PACKAGE)?);
    connect(&mut inv, conn, work_dir)?;
    // All or nothing: the first error aborts and rolls the whole restore back.
    inv.arg("--single-transaction").arg("--exit-on-error").arg("--no-owner").arg("--dbname").arg(&conn.database);
    Ok(inv)
}

/// `psql` reading statements from stdin as they come, printing bare values, stopping at the
/// first error (the session then ends and the caller reads why on stderr).
pub fn session(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(tools.first(&["psql"], PACKAGE)?);
    connect(&mut inv, conn, work_dir)?;
    inv.arg("--no-psqlrc").arg("--tuples-only").arg("--no-align").arg("--quiet");
    inv.arg("--set").arg("ON_ERROR_STOP=1").arg("--dbname").arg(&conn.database).arg("--file").arg("-");
    Ok(inv)
}

/// `pg_restore --list` reading a custom-format dump on stdin: its table of contents (which sits at
/// the dump's start), one object per line with its catalog and object OIDs. No connection.
pub fn list_contents(tools: &Tools) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(tools.first(&["pg_restore"], PACKAGE)?);
    inv.arg("--list");
    Ok(inv)
}

pub fn query(conn: &Connection, tools: &Tools, work_dir: &Path, sql: &str) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(tools.first(&["psql"], PACKAGE)?);
    connect(&mut inv, conn, work_dir)?;
    inv.arg("--no-psqlrc").arg("--tuples-only").arg("--no-align").arg("--dbname").arg(&conn.database);
    inv.arg("--command").arg(sql);
    Ok(inv)
}
