//! MongoDB: `mongodump --archive` (one stream on stdout) and `mongorestore --archive` (optionally into
//! another database through `--nsFrom`/`--nsTo`); the password through a `--config` YAML file.
//! No mongod can run on the build machine: this is covered by unit tests of what it builds.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::credentials::{CredentialFile, yaml_string};
use super::{Connection, EngineError, Invocation, Tools};

const PACKAGE: &str = "the MongoDB Database Tools (mongodb-database-tools, from MongoDB's repository)";

pub fn dump_tool(tools: &Tools) -> Result<PathBuf, EngineError> {
    tools.first(&["mongodump"], PACKAGE)
}

fn start(program: PathBuf, conn: &Connection, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = Invocation::new(program);
    if let Some(pw) = &conn.password {
        let contents = Zeroizing::new(format!("password: {}\n", yaml_string(pw.expose_secret())));
        let file = CredentialFile::write(work_dir, "mongo.yaml", contents).map_err(EngineError::CredentialFile)?;
        let mut config = std::ffi::OsString::from("--config=");
        config.push(file.path());
        inv.arg(config);
        inv.credentials = Some(file);
    }
    inv.arg(format!("--host={}", conn.host)).arg(format!("--port={}", conn.port));
    inv.arg(format!("--username={}", conn.user)).arg("--authenticationDatabase=admin");
    if conn.tls {
        inv.arg("--ssl");
    }
    Ok(inv)
}

pub fn dump(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    let mut inv = start(dump_tool(tools)?, conn, work_dir)?;
    inv.arg(format!("--db={}", conn.database)).arg("--archive");
    match conn.include.as_slice() {
        [] => {}
        [one] => {
            inv.arg(format!("--collection={one}"));
        }
        _ => {
            return Err(EngineError::Unsupported(
                "mongodump dumps one collection or all of them: include one, or exclude the others".to_owned(),
            ));
        }
    }
    for collection in &conn.exclude {
        inv.arg(format!("--excludeCollection={collection}"));
    }
    Ok(inv)
}

/// Restores an archive of database `from` (when it differs from the target's) into the target's.
pub fn restore(
    conn: &Connection,
    tools: &Tools,
    work_dir: &Path,
    from: Option<&str>,
) -> Result<Invocation, EngineError> {
    let mut inv = start(tools.first(&["mongorestore"], PACKAGE)?, conn, work_dir)?;
    inv.arg("--archive").arg("--stopOnError");
    match from {
        Some(source) if source != conn.database => {
            inv.arg(format!("--nsFrom={source}.*")).arg(format!("--nsTo={}.*", conn.database));
        }
        _ => {
            inv.arg(format!("--nsInclude={}.*", conn.database));
        }
    }
    Ok(inv)
}

pub fn version(conn: &Connection, tools: &Tools, work_dir: &Path) -> Result<Invocation, EngineError> {
    // mongodump prints the server version it connected to with --verbose; mongosh may be absent.
    let mut inv = start(dump_tool(tools)?, conn, work_dir)?;
    inv.arg(format!("--db={}", conn.database)).arg("--collection=__sentinel_probe").arg("--archive").arg("-v");
    Ok(inv)
}
