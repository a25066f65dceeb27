//! `backup.run`: one attempt of a plan's backup — a journal row opened first and always ended, each
//! database dumped once and streamed to the first destination, byte-identical copies to the
//! others, then the plan's retention applied. An attempt whose worker died is found by the next
//! one: its row is marked `interrupted` and its unfinished uploads are aborted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sentinel_jobs::db::backups::{DestinationRecord, JournalFinish, JournalRecord, NewJournal, PlanRecord};
use sentinel_jobs::domain::LogStream;
use sentinel_jobs::domain::backups::verification::{DatabaseStats, TableStats};
use sentinel_jobs::domain::backups::{
    BackupType, CompressionChoice, Copy, Engine, GLOBALS, JournalKind, JournalStatus,
};
use sentinel_jobs::{JobContext, JobError, JobHandler, Spine};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::engines::{self, Connection};
use crate::pipeline::{self, Artifact, PipelineError, Source};
use crate::{metrics, prune, setup, verify};
use sentinel_storage::Destination;

/// The payload of `backup.run` (a schedule's tick, or `POST /plans/{id}/run` with overrides).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPayload {
    pub plan_id: Uuid,
    #[serde(default, rename = "type")]
    pub backup_type: Option<BackupType>,
    #[serde(default)]
    pub compression: Option<CompressionChoice>,
}

pub struct RunBackup;

impl RunBackup {
    pub fn new(_spine: &Spine) -> Arc<Self> {
        Arc::new(Self)
    }
}

/// How an attempt failed: what the journal says and whether the job tries again.
fn failure_of(e: &PipelineError) -> JobError {
    match e {
        PipelineError::Cancelled => JobError::Cancelled,
        PipelineError::Storage(s) if s.is_transient() => JobError::Retryable(e.to_string()),
        PipelineError::Io(_) => JobError::Retryable(e.to_string()),
        _ => JobError::Permanent(e.to_string()),
    }
}

fn error_text(e: &JobError) -> String {
    match e {
        JobError::Cancelled => "cancelled".to_owned(),
        other => other.to_string(),
    }
}

/// Ends the entries an earlier attempt of this job left `running`: its worker died mid-backup.
/// Their uploads are aborted (S3 multipart parts, local partial files) so nothing is orphaned.
pub async fn interrupt_earlier(ctx: &JobContext) -> Result<(), JobError> {
    let spine = ctx.spine();
    let store = spine.db().backups();
    for entry in store.running_of_job(ctx.job().id.as_uuid()).await? {
        let mut copies = entry.copies.clone();
        for copy in copies.iter_mut().filter(|c| c.state == "uploading") {
            copy.state = "aborted".to_owned();
            if let Some(dest) = store.destination(entry.org_id, copy.destination_id).await? {
                let aborted = abort_uploads_of(spine, &dest, &copy.key).await;
                copy.message = Some(match aborted {
                    Ok(n) => format!("upload interrupted; {n} incomplete upload(s) aborted"),
                    Err(e) => format!("upload interrupted; aborting it failed: {e}"),
                });
            }
        }
        // What the dead attempt did store is not a backup: leave no object for a janitor to find.
        let _ = discard_partial(spine, entry.org_id, &mut copies).await;
        let message = format!(
            "interrupted: the worker running this job (attempt {}) stopped before the backup ended; the job runs again",
            entry.attempt
        );
        store
            .finish_journal(entry.id, JournalFinish::bare(JournalStatus::Interrupted, copies, message.clone()))
            .await?;
        ctx.log(LogStream::System, format!("journal entry {}: {message}", entry.id)).await?;
    }
    Ok(())
}

/// Deletes the artifacts an attempt that did not complete had already stored (the globals before
/// a failed dump, say): a failed backup leaves no object behind that looks like one.
async fn discard_partial(spine: &Spine, org: Uuid, copies: &mut [Copy]) -> Result<(), String> {
    let failures = prune::delete_stored(spine, org, copies).await.map_err(|e| e.to_string())?;
    for c in copies.iter_mut().filter(|c| c.state == "deleted") {
        c.message = Some("removed: the backup did not complete".to_owned());
    }
    if failures.is_empty() { Ok(()) } else { Err(format!("could not remove: {}", failures.join("; "))) }
}

async fn abort_uploads_of(spine: &Spine, dest: &DestinationRecord, key: &str) -> Result<usize, String> {
    let storage = setup::destination(spine, dest).await.map_err(|e| e.to_string())?;
    let pending = storage.incomplete_uploads().await.map_err(|e| e.to_string())?;
    let mut n = 0;
    for p in pending.iter().filter(|p| p.key == key) {
        storage.abort_incomplete(p).await.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

#[async_trait]
impl JobHandler for RunBackup {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let payload: RunPayload = ctx.payload()?;
        let spine = ctx.spine();
        let store = spine.db().backups();
        let plan = store
            .plan_any(payload.plan_id)
            .await?
            .filter(|p| ctx.job().org_id.is_none_or(|org| org == p.org_id))
            .ok_or_else(|| JobError::Permanent(format!("backup plan {} does not exist", payload.plan_id)))?;
        interrupt_earlier(ctx).await?;
        let backup_type = payload.backup_type.unwrap_or(plan.backup_type);
        let compression = payload.compression.unwrap_or(plan.compression);
        let entry = store
            .open_journal(NewJournal {
                org_id: plan.org_id,
                kind: Some(JournalKind::Backup),
                plan_id: Some(plan.id),
                target_id: Some(plan.target_id),
                job_id: Some(ctx.job().id.as_uuid()),
                attempt: ctx.job().attempt,
                backup_type: Some(backup_type),
                compression: Some(compression.format.as_str().to_owned()),
                encryption: Some(plan.encryption.mode().to_owned()),
                key_secret_id: plan.encryption.secret_ids().first().copied(),
                copies: Vec::new(),
                source: None,
                requested_by: ctx.job().requested_by.clone(),
            })
            .await?;
        ctx.log(LogStream::System, format!("journal entry {} opened for plan {:?}", entry.id, plan.name)).await?;
        let mut attempt = Attempt {
            ctx,
            plan: &plan,
            entry: &entry,
            copies: Vec::new(),
            stats: DatabaseStats::new(),
            gaps: Vec::new(),
            file_stats: std::sync::Mutex::new(None),
            versions: (None, None),
            phase: "config",
        };
        match attempt.back_up(backup_type, compression).await {
            Ok(totals) => {
                let copies = attempt.copies.clone();
                // The entry's checksums are its database's, when it holds one (the globals aside).
                let single = |f: fn(&Copy) -> Option<String>| {
                    let mut values: Vec<String> =
                        copies.iter().filter(|c| c.database != GLOBALS).filter_map(f).collect();
                    values.dedup();
                    if values.len() == 1 { values.pop() } else { None }
                };
                // Stored, but not whole: kept (a partial copy beats none) and said so, fail-closed.
                let incomplete = (!attempt.gaps.is_empty()).then(|| attempt.gaps.join("; "));
                let end = JournalFinish {
                    status: if incomplete.is_some() { JournalStatus::Incomplete } else { JournalStatus::Succeeded },
                    plain_bytes: Some(totals.0),
                    stored_bytes: Some(totals.1),
                    plain_sha256: single(|c| c.plain_sha256.clone()),
                    stored_sha256: single(|c| c.stored_sha256.clone()),
                    tool_version: attempt.versions.0.clone(),
                    server_version: attempt.versions.1.clone(),
                    copies: copies.clone(),
                    verified: false,
                    message: incomplete.clone(),
                };
                store.finish_journal(entry.id, end).await?;
                if let Some(gaps) = incomplete {
                    metrics::record_failure(&plan, "incomplete");
                    if let Err(e) = prune::apply(spine, &plan, false).await {
                        ctx.log(LogStream::System, format!("retention not applied: {e}")).await?;
                    }
                    ctx.log(LogStream::System, format!("backup incomplete: {gaps}")).await?;
                    return Err(JobError::Permanent(format!("backup incomplete: {gaps}")));
                }
                if let Some(done) = store.journal_entry(plan.org_id, entry.id).await? {
                    metrics::record_success(&plan, &done);
                }
                let verification = verify::queue_if_due(ctx, &plan, entry.id).await;
                let pruned = match prune::apply(spine, &plan, false).await {
                    Ok(report) => report,
                    Err(e) => {
                        ctx.log(LogStream::System, format!("retention not applied: {e}")).await?;
                        json!({"error": e.to_string()})
                    }
                };
                Ok(json!({
                    "journal_id": entry.id,
                    "plain_bytes": totals.0,
                    "stored_bytes": totals.1,
                    "copies": copies,
                    "retention": pruned,
                    "verification_job": verification,
                }))
            }
            Err(e) => {
                let mut copies = attempt.copies.clone();
                for c in copies.iter_mut().filter(|c| c.state == "uploading") {
                    c.state = "aborted".to_owned();
                }
                if let Err(left) = discard_partial(spine, plan.org_id, &mut copies).await {
                    let _ = ctx.log(LogStream::System, left).await;
                }
                let status = JournalStatus::Failed;
                let mut end = JournalFinish::bare(status, copies, error_text(&e));
                end.tool_version = attempt.versions.0.clone();
                end.server_version = attempt.versions.1.clone();
                store.finish_journal(entry.id, end).await?;
                let reason = if matches!(e, JobError::Cancelled) { "cancelled" } else { attempt.phase };
                metrics::record_failure(&plan, reason);
                let _ = ctx.log(LogStream::System, format!("backup failed ({reason}): {}", error_text(&e))).await;
                Err(e)
            }
        }
    }
}

/// What a stream dumps, with what it needs.
#[derive(Clone, Copy)]
enum Dump {
    /// A database, with its size estimate for the progress percentage.
    Database {
        estimate: Option<u64>,
    },
    Globals {
        with_passwords: bool,
    },
}

/// One attempt in progress: what it has stored so far (recorded on the row as it goes).
struct Attempt<'a> {
    ctx: &'a JobContext,
    plan: &'a PlanRecord,
    entry: &'a JournalRecord,
    copies: Vec<Copy>,
    /// The tables' statistics taken in each database's dump snapshot (for verification).
    stats: DatabaseStats,
    /// What the dumps lack that the live catalogs hold: a non-empty list makes the backup incomplete.
    gaps: Vec<String>,
    /// A SQLite copy's statistics, taken by `stream` on the copy it uploads.
    file_stats: std::sync::Mutex<Option<Result<Vec<TableStats>, String>>>,
    /// The dump tool's and the server's versions, once known.
    versions: (Option<String>, Option<String>),
    /// What the attempt was doing: a failure's reason on the metrics.
    phase: &'static str,
}

impl Attempt<'_> {
    /// Returns the plain and stored byte totals over every database (first copies only).
    async fn back_up(
        &mut self,
        backup_type: BackupType,
        compression: CompressionChoice,
    ) -> Result<(u64, u64), JobError> {
        let spine = self.ctx.spine();
        let store = spine.db().backups();
        let plan = self.plan;
        let target = store
            .target(plan.org_id, plan.target_id)
            .await?
            .ok_or_else(|| JobError::Permanent(format!("backup target {} does not exist", plan.target_id)))?;
        self.phase = "unsupported_type";
        target.engine.supports(backup_type).map_err(JobError::Permanent)?;
        self.phase = "config";
        let mut destinations = Vec::new();
        for id in &plan.destination_ids {
            let dest = store
                .destination(plan.org_id, *id)
                .await?
                .ok_or_else(|| JobError::Permanent(format!("backup destination {id} does not exist")))?;
            let storage = setup::destination(spine, &dest).await?;
            destinations.push((dest, storage));
        }
        if destinations.is_empty() {
            return Err(JobError::Permanent("the plan names no destination".to_owned()));
        }
        let (encryption, _) = setup::encryption(spine, &plan.encryption).await?;
        let work = setup::work_dir(spine, self.entry.id)?;
        let tools = setup::tools(spine);
        let part_size = spine.settings().backup.part_size();
        let mut totals = (0u64, 0u64);
        let databases = setup::databases(&target);
        // The server's roles and tablespaces first (PostgreSQL), so a restore into a new cluster
        // can create them before the grants that name them.
        let mut items: Vec<(String, String, Dump)> = Vec::new();
        if let Some(first) = databases.first() {
            // The tool's and the server's versions are the server's: checked once, before anything.
            self.check_versions(&setup::connection(spine, &target, first).await?, &tools, work.path()).await?;
            if target.engine.has_globals() && target.options.globals {
                items.push((GLOBALS.to_owned(), first.clone(), Dump::Globals { with_passwords: true }));
            }
        }
        items.extend(databases.iter().map(|d| (d.clone(), d.clone(), Dump::Database { estimate: None })));
        for (label, database, dump) in items {
            let mut conn = setup::connection(spine, &target, &database).await?;
            // The live catalog (completeness) and the tables' statistics (verification) are read in
            // the very snapshot the dump reads; a SQL dump (MySQL/MariaDB) is read for its objects.
            let sql_dump = matches!(target.engine, Engine::Mysql | Engine::Mariadb);
            let with_stats = plan.objectives.records_statistics();
            let mut session = None;
            if matches!(dump, Dump::Database { .. }) {
                let opened = verify::session_for(&mut conn, with_stats, &tools, work.path()).await;
                match opened {
                    Ok(s) => session = s,
                    Err(e) => self.ctx.log(LogStream::System, format!("{label:?}: {e}")).await?,
                }
            }
            let conn = conn;
            let dump = match dump {
                Dump::Database { .. } => {
                    Dump::Database { estimate: setup::size_estimate(&conn, &tools, work.path()).await }
                }
                globals => globals,
            };
            self.phase = "dump";
            let (name, base) = match dump {
                Dump::Globals { .. } => ("globals".to_owned(), "sql"),
                Dump::Database { .. } => (setup::sanitize(&database), setup::dump_suffix(target.engine)),
            };
            let suffix = setup::suffix(base, compression, &plan.encryption);
            let key = format!("plans/{}/{}/{name}.{suffix}", plan.id, self.entry.id);
            let (first, first_storage) = &destinations[0];
            self.copies.push(Copy::new(first.id, &label, key.clone()));
            store.set_journal_copies(self.entry.id, &self.copies).await?;
            self.ctx.log(LogStream::System, format!("dumping {label:?} to {}", first_storage.location(&key))).await?;
            let artifact = || Artifact { dest: first_storage, key: &key, part_size };
            let entry = format!("{name}.{base}");
            let stream = |dump, tap| {
                self.stream(&conn, &tools, work.path(), compression, encryption.clone(), artifact(), &entry, dump, tap)
            };
            let stored = match dump {
                Dump::Database { .. } => {
                    let (tap, contents) = tokio::sync::mpsc::channel(4);
                    // MySQL/MariaDB dumps are always read for completeness; PostgreSQL ones in a snapshot.
                    let tap = (session.is_some() || sql_dump).then_some(tap);
                    let checks = async {
                        if sql_dump {
                            let s = session.as_mut();
                            return Some(verify::checks_mysql(s, &conn, &tools, work.path(), contents).await);
                        }
                        match session.as_mut() {
                            Some(s) => Some(verify::checks(s, &conn, &tools, with_stats, contents).await),
                            None => None,
                        }
                    };
                    let (stored, proof) = tokio::join!(stream(dump, tap), checks);
                    if let Some(s) = session.take() {
                        s.close().await;
                    }
                    let copied = self.file_stats.lock().ok().and_then(|mut s| s.take());
                    let proof = proof.or(copied.map(|stats| verify::Proof { stats: Some(stats), gaps: Ok(None) }));
                    if let (Some(proof), true) = (proof, stored.is_ok()) {
                        self.record_proof(&label, proof).await?;
                    }
                    stored
                }
                Dump::Globals { .. } => match stream(dump, None).await {
                    Err(e) if !matches!(e, PipelineError::Cancelled) => {
                        // Role passwords need a superuser; any user may read the roles without them.
                        let note = format!("globals with role passwords not readable ({e}); taking them without");
                        self.ctx.log(LogStream::System, note).await?;
                        stream(Dump::Globals { with_passwords: false }, None).await
                    }
                    other => other,
                },
            };
            let stored = match stored {
                Ok(s) => s,
                Err(e) => {
                    if let Some(c) = self.copies.last_mut() {
                        c.state = "failed".to_owned();
                        c.message = Some(e.to_string());
                    }
                    self.phase = metrics::reason_of(&e);
                    return Err(failure_of(&e));
                }
            };
            if !stored.tool_messages.is_empty() {
                self.ctx.log(LogStream::Stderr, stored.tool_messages.clone()).await?;
            }
            let d = &stored.digests;
            totals.0 += d.plain_bytes;
            totals.1 += d.stored_bytes;
            if let Some(c) = self.copies.last_mut() {
                c.state = "stored".to_owned();
                c.location = Some(stored.location.clone());
                c.plain_bytes = Some(d.plain_bytes);
                c.stored_bytes = Some(d.stored_bytes);
                c.plain_sha256 = Some(d.plain_sha256.clone());
                c.stored_sha256 = Some(d.stored_sha256.clone());
            }
            self.replicate(&destinations, &key, part_size, &d.stored_sha256).await?;
        }
        Ok(totals)
    }

    /// Keeps what the checks beside a database's dump found: its statistics on the journal, its
    /// gaps for the backup's ending (a check that could not run is logged, not a gap).
    async fn record_proof(&mut self, label: &str, proof: verify::Proof) -> Result<(), JobError> {
        match proof.stats {
            Some(Ok(tables)) => {
                self.stats.insert(label.to_owned(), tables);
                self.ctx.spine().db().backups().set_table_stats(self.entry.id, &self.stats).await?;
            }
            Some(Err(e)) => {
                let note = format!("statistics of {label:?} not taken, so it cannot be verified: {e}");
                self.ctx.log(LogStream::System, note).await?;
            }
            None => {}
        }
        match proof.gaps {
            Ok(None) => {}
            Ok(Some(gaps)) => self.gaps.push(format!("database {label}: {gaps}")),
            Err(e) => self.ctx.log(LogStream::System, format!("completeness of {label:?} not checked: {e}")).await?,
        }
        Ok(())
    }

    /// Copies the stored artifact `key` from the first destination to the others, byte for byte.
    async fn replicate(
        &mut self,
        destinations: &[(DestinationRecord, Destination)],
        key: &str,
        part_size: usize,
        stored_sha256: &str,
    ) -> Result<(), JobError> {
        let store = self.ctx.spine().db().backups();
        let first_storage = &destinations[0].1;
        let template = self.copies.last().cloned().ok_or_else(|| JobError::Permanent("no copy".into()))?;
        for (dest, storage) in destinations.iter().skip(1) {
            let mut copy =
                Copy { destination_id: dest.id, state: "uploading".to_owned(), location: None, ..template.clone() };
            self.copies.push(copy.clone());
            store.set_journal_copies(self.entry.id, &self.copies).await?;
            let cancel = self.ctx.cancellation_token();
            let to = Artifact { dest: storage, key, part_size };
            match pipeline::replicate(first_storage, key, to, stored_sha256, &cancel).await {
                Ok(location) => {
                    copy.state = "stored".to_owned();
                    copy.location = Some(location);
                }
                Err(e) => {
                    self.phase = metrics::reason_of(&e);
                    copy.state = "failed".to_owned();
                    copy.message = Some(e.to_string());
                    if let Some(c) = self.copies.last_mut() {
                        *c = copy;
                    }
                    return Err(failure_of(&e));
                }
            }
            if let Some(c) = self.copies.last_mut() {
                *c = copy;
            }
        }
        store.set_journal_copies(self.entry.id, &self.copies).await?;
        Ok(())
    }

    /// Reads the versions, refusing a client older than the server (nothing to check for a file).
    async fn check_versions(
        &mut self,
        conn: &Connection,
        tools: &engines::Tools,
        work: &std::path::Path,
    ) -> Result<(), JobError> {
        if conn.engine.is_file() {
            return Ok(());
        }
        self.phase = "tool_missing";
        let tool = engines::tool_version(conn, tools).map_err(|e| JobError::Permanent(e.to_string()))?;
        let tool = engines::capture(&tool, Duration::from_secs(30)).await.map_err(JobError::Permanent)?;
        self.phase = "database_unreachable";
        let server = engines::server_version(conn, tools, work).map_err(|e| JobError::Permanent(e.to_string()))?;
        let server = engines::capture(&server, Duration::from_secs(30))
            .await
            .map_err(|e| JobError::Permanent(format!("cannot reach the database: {e}")))?;
        let server = server.lines().last().unwrap_or_default().trim().to_owned();
        self.versions = (Some(tool.clone()), Some(server.clone()));
        self.phase = "client_too_old";
        engines::check_client_not_older(conn.engine, &tool, &server).map_err(JobError::Permanent)?;
        self.phase = "config";
        Ok(())
    }

    /// Streams one database into `artifact`, reporting progress every second.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        conn: &Connection,
        tools: &engines::Tools,
        work: &std::path::Path,
        compression: CompressionChoice,
        encryption: sentinel_archive::Encryption,
        artifact: Artifact<'_>,
        entry: &str,
        dump: Dump,
        tap: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    ) -> Result<pipeline::Stored, PipelineError> {
        // zip and tar.gz stage in the job's private directory (removed with it).
        let options = sentinel_archive::EncodeOptions {
            staging_dir: Some(work.to_owned()),
            entry_name: entry.to_owned(),
            ..Default::default()
        };
        let estimate = match dump {
            Dump::Database { estimate } => estimate,
            Dump::Globals { .. } => None,
        };
        let read = Arc::new(AtomicU64::new(0));
        let seen = read.clone();
        // Test only: the process dies mid-upload, as a SIGKILL or a power cut would.
        let crash_after = (self.ctx.spine().settings().worker.fault_injection
            && std::env::var("SENTINEL_FAILPOINT").is_ok_and(|v| v == "backup-mid-upload"))
        .then(|| 4 * self.ctx.spine().settings().backup.part_size() as u64);
        let progress = move |n: u64| {
            seen.store(n, Ordering::Relaxed);
            if crash_after.is_some_and(|limit| n >= limit) {
                std::process::abort();
            }
        };
        let cancel = self.ctx.cancellation_token();
        let codec = setup::compression(compression);
        let reporter = async {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = read.load(Ordering::Relaxed);
                if n != last {
                    last = n;
                    let total = estimate.unwrap_or(0).max(n);
                    let _ = self.ctx.progress(n, total, Some(format!("{} read", setup::human(n)))).await;
                }
            }
        };
        let work_copy = work.join("copy.sqlite");
        let run = async {
            if conn.engine.is_file() {
                engines::sqlite::copy(std::path::Path::new(&conn.database), &work_copy)
                    .await
                    .map_err(|e| PipelineError::Io(std::io::Error::other(e.to_string())))?;
                // The copy is one transaction's view: what a verification compares (a copy is whole,
                // so there is no completeness to check).
                if self.plan.objectives.records_statistics() {
                    let stats = sentinel_jobs::db::sqlite_files::table_stats(&work_copy).await;
                    if let Ok(mut slot) = self.file_stats.lock() {
                        *slot = Some(stats);
                    }
                }
                let stored = pipeline::back_up(
                    Source::File(&work_copy),
                    codec,
                    encryption,
                    options,
                    artifact,
                    &cancel,
                    &progress,
                )
                .await;
                let _ = std::fs::remove_file(&work_copy);
                stored
            } else {
                let tool_error = |e: engines::EngineError| PipelineError::Io(std::io::Error::other(e.to_string()));
                let inv = match dump {
                    Dump::Database { .. } => engines::dump(conn, tools, work).map_err(tool_error)?,
                    Dump::Globals { with_passwords } => engines::globals(conn, tools, work, with_passwords)
                        .map_err(tool_error)?
                        .ok_or_else(|| tool_error(engines::EngineError::Unsupported("no globals".into())))?,
                };
                let source = match tap {
                    Some(tap) => Source::Tapped(&inv, tap),
                    None => Source::Tool(&inv),
                };
                pipeline::back_up(source, codec, encryption, options, artifact, &cancel, &progress).await
            }
        };
        tokio::select! {
            r = run => r,
            _ = reporter => unreachable!("the reporter never ends"),
        }
    }
}
