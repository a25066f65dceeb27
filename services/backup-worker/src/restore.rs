//! `backup.restore`: one artifact — named by a journal entry, or an object on a destination — into
//! a target (the plan's own or another, e.g. a scratch database). The stored object's SHA-256 is
//! checked against the journal before the target is touched; PostgreSQL restores in one
//! transaction and SQLite by an atomic file replace, so a failed restore leaves the target as it was.

use async_trait::async_trait;
use sentinel_archive::{DecodeReport, DecryptKey};
use sentinel_jobs::db::backups::{JournalFinish, NewJournal};
use sentinel_jobs::domain::LogStream;
use sentinel_jobs::domain::backups::{GLOBALS, JournalKind, JournalStatus};
use sentinel_jobs::{JobContext, JobError, JobHandler};
use sentinel_storage::Destination;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::pipeline::{self, PipelineError, Sink};
use crate::{engines, run, setup};

/// Where a restore reads from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RestoreSource {
    /// A backup's journal entry; `database` picks one of its artifacts when it has several,
    /// `destination_id` one of its copies (default: the first stored one).
    Journal {
        entry_id: Uuid,
        #[serde(default)]
        database: Option<String>,
        #[serde(default)]
        destination_id: Option<Uuid>,
    },
    /// Any object on a destination (a file put there by hand, or an upload); `sha256`, when given,
    /// is checked before the target is touched.
    Object {
        destination_id: Uuid,
        key: String,
        #[serde(default)]
        sha256: Option<String>,
    },
}

/// A key supplied with the request (sealed in the vault by the gateway), for artifacts the plan's
/// own key does not open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SuppliedKey {
    Identity { secret_id: Uuid },
    Passphrase { secret_id: Uuid },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestorePayload {
    pub source: RestoreSource,
    pub target_id: Uuid,
    /// The database on the target to restore into (default: the backup's own, else the target's first).
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub key: Option<SuppliedKey>,
    /// PostgreSQL: apply the backup's globals (roles, tablespaces) before its data, as for a
    /// restore into a new cluster. Roles that exist are reported and left; new ones are created.
    #[serde(default)]
    pub globals: bool,
}

pub struct Restore;

/// The resolved source: destination, key, expected checksum, the decrypt key and the database name.
pub(crate) struct Resolved {
    pub destination: sentinel_jobs::db::backups::DestinationRecord,
    pub key: String,
    pub sha256: Option<String>,
    pub decrypt: DecryptKey,
    pub database: Option<String>,
    /// The entry's globals artifact (key and checksum), when the restore applies it first.
    pub globals: Option<(String, Option<String>)>,
}

pub(crate) async fn resolve(
    ctx: &JobContext,
    org: Uuid,
    p: &RestorePayload,
    target_engine: sentinel_jobs::domain::backups::Engine,
) -> Result<Resolved, JobError> {
    let spine = ctx.spine();
    let store = spine.db().backups();
    let supplied = match &p.key {
        Some(SuppliedKey::Identity { secret_id }) => {
            Some(DecryptKey::Identities(vec![setup::open_text(spine, *secret_id, "supplied identity").await?]))
        }
        Some(SuppliedKey::Passphrase { secret_id }) => {
            Some(DecryptKey::Passphrase(setup::open_text(spine, *secret_id, "supplied passphrase").await?))
        }
        None => None,
    };
    let mut globals = None;
    let (destination_id, key, sha256, plan_key, database) = match &p.source {
        RestoreSource::Journal { entry_id, database, destination_id } => {
            let entry = store
                .journal_entry(org, *entry_id)
                .await?
                .ok_or_else(|| JobError::Permanent(format!("journal entry {entry_id} does not exist")))?;
            if entry.kind != JournalKind::Backup || !entry.status.holds_artifact() {
                return Err(JobError::Permanent(format!(
                    "journal entry {entry_id} is a {} that {}: only a backup whose artifacts exist can be restored",
                    entry.kind, entry.status
                )));
            }
            if let Some(source_target) = entry.target_id
                && let Some(t) = store.target(org, source_target).await?
                && t.engine.is_file() != target_engine.is_file()
            {
                return Err(JobError::Permanent(format!(
                    "the backup is of a {} database; it cannot be restored into a {target_engine} target",
                    t.engine
                )));
            }
            let stored = |wanted: Option<&str>| {
                entry
                    .copies
                    .iter()
                    .filter(|c| c.state == "stored")
                    // The globals are not a database: taken only when named.
                    .filter(|c| match wanted {
                        Some(d) => c.database == d,
                        None => c.database != GLOBALS,
                    })
                    .find(|c| destination_id.is_none_or(|d| c.destination_id == d))
                    .cloned()
            };
            let copy = stored(database.as_deref()).ok_or_else(|| {
                JobError::Permanent(format!("journal entry {entry_id} has no stored copy matching the request"))
            })?;
            if p.globals && copy.database != GLOBALS {
                // From the same destination as the data, which the restore reads from.
                let same_place = entry
                    .copies
                    .iter()
                    .find(|c| c.database == GLOBALS && c.state == "stored" && c.destination_id == copy.destination_id)
                    .cloned();
                let g = same_place.ok_or_else(|| {
                    JobError::Permanent(format!(
                        "journal entry {entry_id} holds no globals (roles, tablespaces) on that destination: \
                         restore without globals"
                    ))
                })?;
                globals = Some((g.key, g.stored_sha256));
            }
            // The key the backup was written with, which the plan may have changed since.
            let plan_key = match (entry.encryption.as_deref(), entry.key_secret_id) {
                (Some("age"), Some(id)) => {
                    Some(DecryptKey::Identities(vec![setup::open_text(spine, id, "backup's age identity").await?]))
                }
                (Some("passphrase"), Some(id)) => {
                    Some(DecryptKey::Passphrase(setup::open_text(spine, id, "backup's passphrase").await?))
                }
                _ => None,
            };
            (copy.destination_id, copy.key.clone(), copy.stored_sha256.clone(), plan_key, Some(copy.database.clone()))
        }
        RestoreSource::Object { destination_id, key, sha256 } => {
            if p.globals {
                return Err(JobError::Permanent(
                    "globals come with a journal entry's backup, not with a single object".to_owned(),
                ));
            }
            (*destination_id, key.clone(), sha256.clone(), None, None)
        }
    };
    let destination = store
        .destination(org, destination_id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("backup destination {destination_id} does not exist")))?;
    let decrypt = supplied.or(plan_key).unwrap_or_default();
    Ok(Resolved { destination, key, sha256, decrypt, database, globals })
}

/// How a failed read of a stored artifact ends the job: a storage hiccup is retried.
pub(crate) fn job_error(e: PipelineError) -> JobError {
    match e {
        PipelineError::Cancelled => JobError::Cancelled,
        PipelineError::Storage(s) if s.is_transient() => JobError::Retryable(s.to_string()),
        other => JobError::Permanent(other.to_string()),
    }
}

/// Refuses `src` before anything is touched unless its stored objects (the artifact, and the
/// globals when they are applied) match the checksums of their journal.
pub(crate) async fn check_stored(ctx: &JobContext, src: &Resolved, storage: &Destination) -> Result<(), JobError> {
    if let Some(expected) = &src.sha256 {
        ctx.log(LogStream::System, format!("checking {} against its journal", storage.location(&src.key))).await?;
        pipeline::verify_stored(storage, &src.key, expected).await.map_err(job_error)?;
    }
    if let Some((key, Some(expected))) = &src.globals {
        pipeline::verify_stored(storage, key, expected).await.map_err(job_error)?;
    }
    Ok(())
}

/// Streams `src` into `conn`'s database through the restore tool: the globals first when asked
/// (roles a new cluster lacks), then the artifact (applied with `psql` when it is the globals).
pub(crate) async fn into_database(
    ctx: &JobContext,
    src: Resolved,
    storage: &Destination,
    conn: &engines::Connection,
    work: &std::path::Path,
) -> Result<(DecodeReport, String), JobError> {
    let tools = setup::tools(ctx.spine());
    let cancel = ctx.cancellation_token();
    let tool_error = |e: engines::EngineError| JobError::Permanent(e.to_string());
    if let Some((key, _)) = &src.globals {
        ctx.log(LogStream::System, format!("applying the globals {}", storage.location(key))).await?;
        let inv = engines::apply_globals(conn, &tools, work).map_err(tool_error)?;
        let (_, notes) =
            pipeline::restore(storage, key, src.decrypt.clone(), Sink::Tool(&inv), &cancel).await.map_err(job_error)?;
        if !notes.is_empty() {
            ctx.log(LogStream::Stderr, notes).await?;
        }
    }
    let inv = if src.database.as_deref() == Some(GLOBALS) {
        engines::apply_globals(conn, &tools, work)
    } else {
        engines::restore(conn, &tools, work)
    }
    .map_err(tool_error)?;
    pipeline::restore(storage, &src.key, src.decrypt, Sink::Tool(&inv), &cancel).await.map_err(job_error)
}

#[async_trait]
impl JobHandler for Restore {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let payload: RestorePayload = ctx.payload()?;
        let spine = ctx.spine();
        let store = spine.db().backups();
        let org = ctx.job().org_id.ok_or_else(|| JobError::Permanent("a restore belongs to an organization".into()))?;
        run::interrupt_earlier(ctx).await?;
        let target = store
            .target(org, payload.target_id)
            .await?
            .ok_or_else(|| JobError::Permanent(format!("backup target {} does not exist", payload.target_id)))?;
        let entry = store
            .open_journal(NewJournal {
                org_id: org,
                kind: Some(JournalKind::Restore),
                plan_id: None,
                target_id: Some(target.id),
                job_id: Some(ctx.job().id.as_uuid()),
                attempt: ctx.job().attempt,
                source: Some(serde_json::to_value(&payload.source).unwrap_or(Value::Null)),
                requested_by: ctx.job().requested_by.clone(),
                ..Default::default()
            })
            .await?;
        let outcome = async {
            let src = resolve(ctx, org, &payload, target.engine).await?;
            let storage = setup::destination(spine, &src.destination).await?;
            check_stored(ctx, &src, &storage).await?;
            let database = payload
                .database
                .clone()
                .or(src.database.clone().filter(|d| target.databases.contains(d)))
                .or_else(|| target.databases.first().cloned())
                .unwrap_or_default();
            let conn = setup::connection(spine, &target, &database).await?;
            let work = setup::work_dir(spine, entry.id)?;
            let cancel = ctx.cancellation_token();
            ctx.log(LogStream::System, format!("restoring {} into {:?}", storage.location(&src.key), target.name))
                .await?;
            let location = storage.location(&src.key);
            let (report, messages) = if target.engine.is_file() {
                let path = std::path::PathBuf::from(&conn.database);
                let staged = engines::sqlite::staging_path(&path);
                let r = pipeline::restore(&storage, &src.key, src.decrypt, Sink::File(&staged), &cancel).await;
                if r.is_err() {
                    let _ = std::fs::remove_file(&staged);
                }
                let r = r.map_err(job_error)?;
                engines::sqlite::replace(&staged, &path).await.map_err(|e| JobError::Permanent(e.to_string()))?;
                r
            } else {
                into_database(ctx, src, &storage, &conn, work.path()).await?
            };
            if !messages.is_empty() {
                ctx.log(LogStream::Stderr, messages).await?;
            }
            Ok::<_, JobError>((report, location, database))
        }
        .await;
        match outcome {
            Ok((report, location, database)) => {
                let end = JournalFinish {
                    status: JournalStatus::Succeeded,
                    plain_bytes: Some(report.plain_bytes),
                    stored_bytes: Some(report.stored_bytes),
                    plain_sha256: Some(report.plain_sha256.clone()),
                    stored_sha256: Some(report.stored_sha256.clone()),
                    tool_version: None,
                    server_version: None,
                    copies: Vec::new(),
                    verified: false,
                    message: Some(format!("restored {location} into database {database:?}")),
                };
                store.finish_journal(entry.id, end).await?;
                Ok(json!({"journal_id": entry.id, "report": report, "database": database}))
            }
            Err(e) => {
                let message = match &e {
                    JobError::Cancelled => "cancelled".to_owned(),
                    other => other.to_string(),
                };
                store
                    .finish_journal(entry.id, JournalFinish::bare(JournalStatus::Failed, Vec::new(), message.clone()))
                    .await?;
                let _ = ctx.log(LogStream::System, format!("restore failed: {message}")).await;
                Err(e)
            }
        }
    }
}
