//! From stored records to runnable parts: a target's connection (its password opened from the
//! vault), a destination's storage (credentials opened), a plan's codec settings. Secrets live only
//! in memory here, as `SecretString`s, and reach tools through 0600 files (see `engines`); a job's
//! private work directory, and the names and figures a backup derives (keys, progress).

use secrecy::SecretString;
use sentinel_archive::{Compression, DecryptKey, Encryption};
use sentinel_jobs::db::backups::{DestinationRecord, TargetRecord};
use sentinel_jobs::domain::backups::{self as domain, CompressionChoice, PlanEncryption, TlsMode};
use sentinel_jobs::{JobError, Spine};
use sentinel_storage::{Destination, DestinationSpec};
use uuid::Uuid;

use crate::engines::{self, Connection, Tools};

/// Opens a sealed secret as text.
pub async fn open_text(spine: &Spine, id: Uuid, what: &str) -> Result<SecretString, JobError> {
    let vault = spine.vault().map_err(|e| JobError::Permanent(format!("cannot open the {what}: {e}")))?;
    let bytes = vault.open(id).await.map_err(|e| JobError::Permanent(format!("cannot open the {what}: {e}")))?;
    let text =
        String::from_utf8(bytes.to_vec()).map_err(|_| JobError::Permanent(format!("the {what} is not UTF-8 text")))?;
    Ok(SecretString::from(text))
}

/// The connection to one database of `target`.
pub async fn connection(spine: &Spine, target: &TargetRecord, database: &str) -> Result<Connection, JobError> {
    let password = match target.password_secret_id {
        Some(id) => Some(open_text(spine, id, "target's password").await?),
        None => None,
    };
    Ok(Connection {
        engine: target.engine,
        host: target.host.clone().unwrap_or_default(),
        port: target.port.or(target.engine.default_port()).unwrap_or(0),
        user: target.user.clone().unwrap_or_default(),
        password,
        database: if target.engine.is_file() { target.path.clone().unwrap_or_default() } else { database.to_owned() },
        tls: matches!(target.options.tls, TlsMode::Require | TlsMode::VerifyFull),
        include: target.options.include.clone(),
        exclude: target.options.exclude.clone(),
        snapshot: None,
    })
}

/// The databases a backup of `target` dumps (a SQLite target is its one file).
pub fn databases(target: &TargetRecord) -> Vec<String> {
    if target.engine.is_file() { vec!["main".to_owned()] } else { target.databases.clone() }
}

/// The client tools, as configured.
pub fn tools(spine: &Spine) -> Tools {
    Tools { dir: spine.settings().backup.tools_dir.clone() }
}

/// A destination's storage, its credentials opened from the vault.
pub async fn destination(spine: &Spine, dest: &DestinationRecord) -> Result<Destination, JobError> {
    let opened = match dest.credentials_secret_id {
        Some(id) => {
            let failed = |e: &dyn std::fmt::Display| {
                JobError::Permanent(format!("cannot open the destination's credentials: {e}"))
            };
            let vault = spine.vault().map_err(|e| failed(&e))?;
            Some(vault.open(id).await.map_err(|e| failed(&e))?)
        }
        None => None,
    };
    let spec = DestinationSpec::from_stored(&dest.config, opened.as_ref().map(|b| b.as_slice()))
        .map_err(JobError::Permanent)?;
    Destination::open(&spec).map_err(|e| JobError::Permanent(format!("destination {:?}: {e}", dest.name)))
}

/// The codec's compression for a plan's choice.
pub fn compression(choice: CompressionChoice) -> Compression {
    match choice.format {
        domain::Compression::Zstd => {
            Compression::Zstd { level: choice.level.unwrap_or(sentinel_archive::DEFAULT_ZSTD_LEVEL) }
        }
        domain::Compression::Gzip => Compression::Gzip { level: deflate_level(choice.level) },
        domain::Compression::None => Compression::None,
        domain::Compression::Zip => Compression::Zip { level: deflate_level(choice.level) },
        domain::Compression::TarGz => Compression::TarGz { level: deflate_level(choice.level) },
    }
}

fn deflate_level(level: Option<i32>) -> u32 {
    level.and_then(|l| u32::try_from(l).ok()).unwrap_or(sentinel_archive::DEFAULT_GZIP_LEVEL)
}

/// The file name suffix of an engine's dump.
pub fn dump_suffix(engine: domain::Engine) -> &'static str {
    match engine {
        domain::Engine::Postgres => "dump",
        domain::Engine::Mysql | domain::Engine::Mariadb => "sql",
        domain::Engine::Mongodb => "archive",
        domain::Engine::Sqlite => "sqlite",
    }
}

/// The file name suffix of an artifact: the dump format (`base`), then compression, then `.age`.
pub fn suffix(base: &str, choice: CompressionChoice, encryption: &PlanEncryption) -> String {
    let comp = match choice.format {
        domain::Compression::Zstd => ".zst",
        domain::Compression::Gzip => ".gz",
        domain::Compression::None => "",
        domain::Compression::Zip => ".zip",
        domain::Compression::TarGz => ".tar.gz",
    };
    let enc = if matches!(encryption, PlanEncryption::None) { "" } else { ".age" };
    format!("{base}{comp}{enc}")
}

/// How a plan encrypts, and the key that opens what it wrote.
pub async fn encryption(spine: &Spine, plan: &PlanEncryption) -> Result<(Encryption, DecryptKey), JobError> {
    Ok(match plan {
        PlanEncryption::None => (Encryption::None, DecryptKey::None),
        PlanEncryption::Age { recipient, identity_secret_id, escrow_recipients } => {
            let identity = open_text(spine, *identity_secret_id, "plan's age identity").await?;
            let mut recipients = vec![recipient.clone()];
            recipients.extend(escrow_recipients.iter().cloned());
            (Encryption::Age { recipients, passphrase: None }, DecryptKey::Identities(vec![identity]))
        }
        PlanEncryption::Passphrase { passphrase_secret_id } => {
            let pass = open_text(spine, *passphrase_secret_id, "plan's passphrase").await?;
            (Encryption::Age { recipients: Vec::new(), passphrase: Some(pass.clone()) }, DecryptKey::Passphrase(pass))
        }
    })
}

/// The database's size in bytes, the progress percentage's denominator (`None` when unknown).
pub async fn size_estimate(conn: &Connection, tools: &Tools, work: &std::path::Path) -> Option<u64> {
    if conn.engine.is_file() {
        return std::fs::metadata(&conn.database).ok().map(|m| m.len());
    }
    let inv = engines::size_estimate(conn, tools, work).ok()??;
    engines::capture(&inv, std::time::Duration::from_secs(30)).await.ok().and_then(|t| t.trim().parse().ok())
}

/// A job's private directory for credential files (0700, removed when dropped).
pub fn work_dir(spine: &Spine, id: Uuid) -> Result<tempfile::TempDir, JobError> {
    let s = spine.settings();
    let root = s.backup.work_dir(&s.data_dir);
    std::fs::create_dir_all(&root)
        .map_err(|e| JobError::Retryable(format!("cannot create {}: {e}", root.display())))?;
    tempfile::Builder::new()
        .prefix(&format!("{id}-"))
        .tempdir_in(&root)
        .map_err(|e| JobError::Retryable(format!("cannot create a work directory in {}: {e}", root.display())))
}

/// A database name as one key segment.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}
