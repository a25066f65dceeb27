//! `backup.verify`: proves a backup restorable. Each database's artifact is checked against its
//! journal, restored into a scratch database (on the plan's verification target, else the backed-up
//! server under a throw-away name) and compared, table by table, with the statistics the backup took
//! in the snapshot it dumped. The outcome (`verified`, or `verification_failed` naming the first
//! table that differs) and the restore's duration (the measured RTO) go on the backup's journal
//! entry; the scratch database is dropped whatever happens.

pub mod completeness;
pub mod snapshot;

use std::time::Instant;

use async_trait::async_trait;
use sentinel_jobs::db::backups::{JournalRecord, PlanRecord, TargetRecord, VerificationOutcome};
use sentinel_jobs::domain::JobKind;
use sentinel_jobs::domain::LogStream;
use sentinel_jobs::domain::backups::verification::{TableStats, compare};
use sentinel_jobs::domain::backups::{Engine, GLOBALS, JournalKind, VERIFY_KIND, Verification};
use sentinel_jobs::{EnqueueRequest, JobContext, JobError, JobHandler};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::pipeline::{self, Sink};
use crate::restore::{RestorePayload, RestoreSource, check_stored, into_database, job_error, resolve};
use crate::{engines, setup};

/// The payload of `backup.verify`: a backup's entry, or a plan (its newest successful backup).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyPayload {
    #[serde(default)]
    pub entry_id: Option<Uuid>,
    #[serde(default)]
    pub plan_id: Option<Uuid>,
}

pub struct VerifyBackup;

/// What stops a verification: a mismatch (the backup is not what was dumped) or anything that
/// kept the comparison from running (recorded as `not_verified`).
enum Stop {
    Mismatch(String),
    Unverifiable(JobError),
}

impl From<JobError> for Stop {
    fn from(e: JobError) -> Self {
        Stop::Unverifiable(e)
    }
}

impl From<sentinel_jobs::db::DbError> for Stop {
    fn from(e: sentinel_jobs::db::DbError) -> Self {
        Stop::Unverifiable(e.into())
    }
}

/// The scratch database of one artifact: the job's id keeps two verifications apart, and an
/// attempt after a crash finds (and drops) the one its predecessor left.
fn scratch_name(job: Uuid, index: usize) -> String {
    format!("sentinel_verify_{}_{index}", &job.simple().to_string()[..16])
}

async fn entry_to_verify(ctx: &JobContext, org: Uuid, p: &VerifyPayload) -> Result<JournalRecord, JobError> {
    let store = ctx.spine().db().backups();
    let entry = match (p.entry_id, p.plan_id) {
        (Some(id), None) => store.journal_entry(org, id).await?,
        (None, Some(plan)) => store.live_backups_of_plan(plan).await?.into_iter().find(|e| e.org_id == org),
        _ => return Err(JobError::Permanent("name either entry_id or plan_id".to_owned())),
    };
    let entry = entry.ok_or_else(|| JobError::Permanent("no successful backup to verify".to_owned()))?;
    if entry.kind != JournalKind::Backup || !entry.status.holds_artifact() {
        return Err(JobError::Permanent(format!(
            "journal entry {} is a {} that {}: only a succeeded backup whose artifacts exist can be verified",
            entry.id, entry.kind, entry.status
        )));
    }
    Ok(entry)
}

#[async_trait]
impl JobHandler for VerifyBackup {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let payload: VerifyPayload = ctx.payload()?;
        let org =
            ctx.job().org_id.ok_or_else(|| JobError::Permanent("a verification belongs to an organization".into()))?;
        let entry = entry_to_verify(ctx, org, &payload).await?;
        let store = ctx.spine().db().backups();
        ctx.log(LogStream::System, format!("verifying backup {}", entry.id)).await?;
        let outcome = verify(ctx, org, &entry).await;
        let (record, result) = match outcome {
            Ok(rto) => (
                VerificationOutcome { verification: Verification::Verified, message: None, rto_seconds: Some(rto) },
                Ok(json!({"entry_id": entry.id, "verification": "verified", "rto_seconds": rto})),
            ),
            Err(Stop::Mismatch(why)) => (
                VerificationOutcome {
                    verification: Verification::Failed,
                    message: Some(why.clone()),
                    rto_seconds: None,
                },
                Err(JobError::Permanent(format!("verification failed: {why}"))),
            ),
            // A retry may still verify it: the entry keeps its earlier outcome until one ends.
            Err(Stop::Unverifiable(e @ (JobError::Retryable(_) | JobError::Cancelled))) => return Err(e),
            Err(Stop::Unverifiable(e)) => (
                VerificationOutcome {
                    verification: Verification::NotVerified,
                    message: Some(e.to_string()),
                    rto_seconds: None,
                },
                Err(e),
            ),
        };
        store.record_verification(entry.id, &record).await?;
        let line = match &record.message {
            None => format!("backup {} verified: restored in {:.1} s", entry.id, record.rto_seconds.unwrap_or(0.0)),
            Some(m) => format!("backup {} {}: {m}", entry.id, record.verification),
        };
        ctx.log(LogStream::System, line).await?;
        result
    }
}

/// The session a database's dump is proven in, opened before the dump starts. PostgreSQL: always
/// (completeness reads the catalog in the exported snapshot, which `conn` now names for pg_dump).
/// MySQL/MariaDB: for statistics only, holding the global read lock until the dump has its snapshot
/// (writes pause for that fraction of a second). `Err` says what is lost when it cannot open.
pub async fn session_for(
    conn: &mut engines::Connection,
    with_stats: bool,
    tools: &engines::Tools,
    work: &std::path::Path,
) -> Result<Option<snapshot::Session>, String> {
    match conn.engine {
        Engine::Postgres => match snapshot::Session::exporting(conn, tools, work).await {
            Ok((s, id)) => {
                conn.snapshot = Some(id);
                Ok(Some(s))
            }
            Err(e) => Err(format!("no snapshot: completeness is not checked and the backup cannot be verified: {e}")),
        },
        Engine::Mysql | Engine::Mariadb if with_stats => snapshot::Session::holding(conn, tools, work)
            .await
            .map(Some)
            .map_err(|e| format!("no shared snapshot, so the backup cannot be verified: {e}")),
        _ => Ok(None),
    }
}

/// What the checks run beside one database's dump found: the tables' statistics (when the plan
/// verifies) and the objects the dump lacks (`Some(text)`), or why a check could not run.
pub struct Proof {
    pub stats: Option<Result<Vec<TableStats>, String>>,
    pub gaps: Result<Option<String>, String>,
}

/// Runs, beside a dump reading `session`'s snapshot, the live-catalog and statistics queries in
/// that snapshot and the dump's table-of-contents reader on the bytes `contents` receives.
pub async fn checks(
    session: &mut snapshot::Session,
    conn: &engines::Connection,
    tools: &engines::Tools,
    with_stats: bool,
    contents: mpsc::Receiver<bytes::Bytes>,
) -> Proof {
    let in_snapshot = async {
        let live = session.catalog(&conn.include, &conn.exclude).await;
        let stats = if with_stats { Some(session.table_stats(&conn.include, &conn.exclude).await) } else { None };
        (live, stats)
    };
    let listing = async {
        let tool = engines::list_contents(conn.engine, tools).map_err(|e| e.to_string())?;
        completeness::read_contents(tool, contents).await
    };
    let ((live, stats), listing) = tokio::join!(in_snapshot, listing);
    let gaps = match (live, listing) {
        (Ok(live), Ok(listing)) => Ok(completeness::gaps(&live, &completeness::parse_contents(&listing))),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    Proof { stats, gaps }
}

/// MySQL/MariaDB, beside a dump: the dump's objects read from its SQL as it streams, against the
/// database's catalog (completeness); and, when `session` holds the global read lock (a verifying
/// plan), the lock released once the dump writes its first table (its consistent snapshot is taken
/// by then) and the tables' statistics taken in the session's own snapshot — the dump's commits.
pub async fn checks_mysql(
    session: Option<&mut snapshot::Session>,
    conn: &engines::Connection,
    tools: &engines::Tools,
    work: &std::path::Path,
    mut contents: mpsc::Receiver<bytes::Bytes>,
) -> Proof {
    let (first_table, table_seen) = tokio::sync::oneshot::channel::<()>();
    let scan = async move {
        let mut objects = completeness::SqlDumpObjects::default();
        let mut signal = Some(first_table);
        while let Some(chunk) = contents.recv().await {
            objects.feed(&chunk);
            if objects.first_table
                && let Some(tx) = signal.take()
            {
                let _ = tx.send(());
            }
        }
        // Dropped unsent when the dump holds no table: the lock is released at its end.
        drop(signal);
        objects.objects
    };
    let live = async {
        let sql = completeness::mysql_catalog_sql(&conn.database);
        let inv = engines::query(conn, tools, work, &sql).map_err(|e| e.to_string())?;
        engines::capture(&inv, std::time::Duration::from_secs(60)).await
    };
    let stats = async {
        let session = session?;
        let _ = table_seen.await;
        Some(match session.release().await {
            Ok(()) => session.table_stats(&conn.include, &conn.exclude).await,
            Err(e) => Err(e),
        })
    };
    let (dump_objects, live, stats) = tokio::join!(scan, live, stats);
    let gaps = live.map(|text| {
        let expected = completeness::mysql_expected(&text, &conn.include, &conn.exclude);
        completeness::mysql_gaps(&expected, &dump_objects)
    });
    Proof { stats, gaps }
}

/// Queues the verification of a plan's new backup when its policy says one is due (at most one
/// queued per plan: a due verification that finds one waiting joins it). Returns the job's id.
pub async fn queue_if_due(ctx: &JobContext, plan: &PlanRecord, entry: Uuid) -> Option<Uuid> {
    let spine = ctx.spine();
    let unverified = match spine.db().backups().unverified_successes(plan.id).await {
        Ok(n) => n,
        Err(e) => {
            let _ = ctx.log(LogStream::System, format!("verification not queued: {e}")).await;
            return None;
        }
    };
    if !plan.objectives.verification_due(unverified) {
        return None;
    }
    let kind = JobKind::parse(VERIFY_KIND).ok()?;
    let mut req = EnqueueRequest::new(kind, json!({"entry_id": entry}));
    req.org_id = Some(plan.org_id);
    req.requested_by = ctx.job().requested_by.clone();
    req.dedup_key = Some(format!("backup.verify:{}", plan.id));
    match spine.enqueue(req).await {
        Ok(queued) => {
            let id = queued.job.id.as_uuid();
            let _ = ctx.log(LogStream::System, format!("verification queued as job {id}")).await;
            Some(id)
        }
        Err(e) => {
            let _ = ctx.log(LogStream::System, format!("verification not queued: {e}")).await;
            None
        }
    }
}

/// Restores and compares every database of `entry`; returns the restores' total duration.
async fn verify(ctx: &JobContext, org: Uuid, entry: &JournalRecord) -> Result<f64, Stop> {
    let spine = ctx.spine();
    let store = spine.db().backups();
    let source_id = entry.target_id.ok_or_else(|| JobError::Permanent("the backup names no target".into()))?;
    let source = store
        .target(org, source_id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("backup target {source_id} no longer exists")))?;
    if source.engine == Engine::Mongodb {
        return Err(JobError::Permanent(format!(
            "{} backups are not verified by restore yet (PostgreSQL, MySQL/MariaDB and SQLite backups are)",
            source.engine
        ))
        .into());
    }
    if entry.table_stats.is_empty() {
        return Err(JobError::Permanent(
            "this backup recorded no table statistics in its snapshot (its plan had no verify_every when it ran), \
             so there is nothing to compare a restore with"
                .to_owned(),
        )
        .into());
    }
    if source.engine.is_file() {
        return verify_file(ctx, org, entry, &source).await;
    }
    let plan = match entry.plan_id {
        Some(id) => store.plan_any(id).await?,
        None => None,
    };
    let server = match plan.as_ref().and_then(|p| p.objectives.verify_target_id) {
        Some(id) => store
            .target(org, id)
            .await?
            .ok_or_else(|| JobError::Permanent(format!("verification target {id} does not exist")))?,
        None => source.clone(),
    };
    if server.engine != source.engine {
        return Err(JobError::Permanent(format!(
            "the verification target is a {} server; a {} backup needs a {} one",
            server.engine, source.engine, source.engine
        ))
        .into());
    }
    let work = setup::work_dir(spine, ctx.job().id.as_uuid())?;
    let admin = setup::connection(spine, &server, server.databases.first().map_or("postgres", String::as_str)).await?;
    let tools = setup::tools(spine);
    let mut rto = 0.0;
    for (index, (database, expected)) in entry.table_stats.iter().enumerate() {
        let scratch = scratch_name(ctx.job().id.as_uuid(), index);
        let mut scratch_conn = admin.clone();
        scratch_conn.database = scratch.clone();
        scratch_conn.include.clear();
        scratch_conn.exclude.clear();
        let (drop_sql, create_sql) = scratch_sql(server.engine, &scratch);
        admin_sql(&admin, &tools, work.path(), &drop_sql).await?;
        admin_sql(&admin, &tools, work.path(), &create_sql).await?;
        let checked =
            restore_and_compare(ctx, org, entry, database, (&server, &source), &scratch_conn, expected, work.path())
                .await;
        // Dropped whatever happened: a scratch copy of production data is never left behind.
        let dropped = admin_sql(&admin, &tools, work.path(), &drop_sql).await;
        if let Err(e) = dropped {
            let _ = ctx.log(LogStream::System, format!("the scratch database {scratch} was not dropped: {e}")).await;
        }
        rto += checked?;
    }
    Ok(rto)
}

/// How the scratch database is dropped (sessions left on it included) and created.
fn scratch_sql(engine: Engine, name: &str) -> (String, String) {
    match engine {
        Engine::Postgres => {
            (format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"), format!("CREATE DATABASE \"{name}\""))
        }
        _ => (format!("DROP DATABASE IF EXISTS `{name}`"), format!("CREATE DATABASE `{name}`")),
    }
}

async fn admin_sql(
    conn: &engines::Connection,
    tools: &engines::Tools,
    work: &std::path::Path,
    sql: &str,
) -> Result<(), JobError> {
    let inv = engines::query(conn, tools, work, sql).map_err(|e| JobError::Permanent(e.to_string()))?;
    engines::capture(&inv, std::time::Duration::from_secs(60))
        .await
        .map(|_| ())
        .map_err(|e| JobError::Permanent(format!("on the verification server: {e}")))
}

/// A SQLite backup: restored into a scratch file of the job's private directory (timed), checked
/// with `PRAGMA integrity_check`, its statistics compared with those of the copy it was made from.
async fn verify_file(ctx: &JobContext, org: Uuid, entry: &JournalRecord, source: &TargetRecord) -> Result<f64, Stop> {
    let spine = ctx.spine();
    let work = setup::work_dir(spine, ctx.job().id.as_uuid())?;
    let scratch = work.path().join("verify.sqlite");
    let mut rto = 0.0;
    for (database, expected) in &entry.table_stats {
        let request = RestorePayload {
            source: RestoreSource::Journal {
                entry_id: entry.id,
                database: Some(database.clone()),
                destination_id: None,
            },
            target_id: source.id,
            database: None,
            key: None,
            globals: false,
        };
        let src = resolve(ctx, org, &request, source.engine).await?;
        let storage = setup::destination(spine, &src.destination).await?;
        let started = Instant::now();
        check_stored(ctx, &src, &storage).await?;
        let _ = std::fs::remove_file(&scratch);
        let cancel = ctx.cancellation_token();
        pipeline::restore(&storage, &src.key, src.decrypt, Sink::File(&scratch), &cancel).await.map_err(job_error)?;
        engines::sqlite::check(&scratch).await.map_err(|e| Stop::Mismatch(e.to_string()))?;
        let seconds = started.elapsed().as_secs_f64();
        let found = sentinel_jobs::db::sqlite_files::table_stats(&scratch).await.map_err(JobError::Permanent)?;
        let _ = std::fs::remove_file(&scratch);
        ctx.log(
            LogStream::System,
            format!("restored in {seconds:.1} s; comparing {} table(s) with the copy", expected.len()),
        )
        .await?;
        compare(expected, &found).map_err(|m| Stop::Mismatch(format!("{m}")))?;
        rto += seconds;
    }
    Ok(rto)
}

/// One database: restore (timed), take the scratch copy's statistics, compare.
#[allow(clippy::too_many_arguments)]
async fn restore_and_compare(
    ctx: &JobContext,
    org: Uuid,
    entry: &JournalRecord,
    database: &str,
    (server, source): (&TargetRecord, &TargetRecord),
    scratch: &engines::Connection,
    expected: &[TableStats],
    work: &std::path::Path,
) -> Result<f64, Stop> {
    let spine = ctx.spine();
    // On another server the roles the data's grants name may be missing: the globals come first,
    // as in a restore into a new cluster.
    let elsewhere = server.id != source.id;
    let request = RestorePayload {
        source: RestoreSource::Journal {
            entry_id: entry.id,
            database: Some(database.to_owned()),
            destination_id: None,
        },
        target_id: server.id,
        database: Some(scratch.database.clone()),
        key: None,
        globals: elsewhere && entry.copies.iter().any(|c| c.database == GLOBALS && c.state == "stored"),
    };
    let src = resolve(ctx, org, &request, server.engine).await?;
    let storage = setup::destination(spine, &src.destination).await?;
    let tools = setup::tools(spine);
    let started = Instant::now();
    check_stored(ctx, &src, &storage).await?;
    ctx.log(
        LogStream::System,
        format!("restoring {} into the scratch database {}", storage.location(&src.key), scratch.database),
    )
    .await?;
    into_database(ctx, src, &storage, scratch, work).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut session = snapshot::Session::open(scratch, &tools, work).await.map_err(JobError::Permanent)?;
    let found = session.table_stats(&[], &[]).await.map_err(JobError::Permanent);
    session.close().await;
    let found = found?;
    ctx.log(
        LogStream::System,
        format!("{database}: restored in {seconds:.1} s; comparing {} table(s) with the snapshot", expected.len()),
    )
    .await?;
    compare(expected, &found).map_err(|m| Stop::Mismatch(format!("database {database}: {m}")))?;
    Ok(seconds)
}
