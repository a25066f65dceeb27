//! The job store: enqueue with an outbox flag, fenced state changes by lease epoch, and the numbered
//! per-job event log every change writes to in the same transaction.

mod attempts;
mod attempts_pg;
mod insert;
mod insert_pg;
mod queries;
mod record;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::{DeadLetterReason, JobEvent, JobEventKind, JobId, JobState};
use uuid::Uuid;

use crate::entity::{job_events, jobs};
use crate::{DbError, unique};

pub use attempts::{AttemptWrite, AttemptWritten};
use record::new_row;
pub use record::{CancelOutcome, Finish, JobFilter, JobRecord, NewJob, StartOutcome};

/// First created, first started and last finished times of a set of jobs.
pub type Timing = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Rows per multi-row INSERT.
const INSERT_CHUNK: usize = 500;

/// Repository of jobs and their events.
#[derive(Clone, Debug)]
pub struct JobStore {
    conn: DatabaseConnection,
    /// Where the batched attempt writes go (see `Database::attempts`); on SQLite, every write of the store.
    attempts: DatabaseConnection,
}

fn event(job: &JobRecord, seq: i64, at: DateTime<Utc>, body: JobEventKind) -> JobEvent {
    JobEvent { id: 0, org_id: job.org_id, job_id: job.id, kind: job.kind.clone(), seq, at, body }
}

/// The row an event is stored as.
fn event_row(ev: &JobEvent) -> Result<job_events::ActiveModel, DbError> {
    let data = serde_json::to_value(&ev.body).map_err(|e| DbError::Corrupt(e.to_string()))?;
    Ok(job_events::ActiveModel {
        job_id: Set(ev.job_id.as_uuid()),
        seq: Set(ev.seq),
        event_type: Set(ev.body.name().to_owned()),
        data: Set(data),
        at: Set(ev.at),
        ..Default::default()
    })
}

/// Stores the event and records its position in the deployment-wide log in `ev.id`.
async fn insert_event(txn: &DatabaseTransaction, ev: &mut JobEvent) -> Result<(), DbError> {
    ev.id = event_row(ev)?.insert(txn).await?.id;
    Ok(())
}

async fn load(txn: &DatabaseTransaction, id: Uuid) -> Result<JobRecord, DbError> {
    jobs::Entity::find_by_id(id).one(txn).await?.ok_or_else(|| DbError::NotFound(id.to_string()))?.try_into()
}

fn fenced(id: JobId, epoch: i64) -> Condition {
    Condition::all()
        .add(jobs::Column::Id.eq(id.as_uuid()))
        .add(jobs::Column::Epoch.eq(epoch))
        .add(jobs::Column::State.eq(JobState::Running.as_str()))
}

impl JobStore {
    pub fn new(conn: DatabaseConnection, attempts: DatabaseConnection) -> Self {
        Self { conn, attempts }
    }

    /// Where the store's writes go: on SQLite the one-connection writer pool (see `Database::attempts`),
    /// so the job path's writers wait their turn in the process; on PostgreSQL the main pool.
    fn writer(&self) -> &DatabaseConnection {
        if sea_orm::ConnectionTrait::get_database_backend(&self.conn) == sea_orm::DbBackend::Sqlite {
            &self.attempts
        } else {
            &self.conn
        }
    }

    /// Commits a new queued job and its `queued` event. The row is unpublished until
    /// [`JobStore::mark_published`]; the outbox relay publishes rows that stay unpublished.
    pub async fn insert(&self, new: NewJob) -> Result<(JobRecord, JobEvent), DbError> {
        let mut inserted = self.insert_many(vec![new]).await?;
        inserted.pop().ok_or_else(|| DbError::Corrupt("insert returned nothing".to_owned()))
    }

    /// Inserts a job inside the caller's transaction, so a job and the domain change that caused it
    /// commit or roll back together. Nothing is published: after commit, call [`JobStore::mark_published`]
    /// once the message is on the bus, or let the outbox relay publish it.
    pub async fn insert_in(txn: &DatabaseTransaction, new: NewJob) -> Result<(JobRecord, JobEvent), DbError> {
        let mut inserted = Self::insert_many_in(txn, vec![new]).await?;
        inserted.pop().ok_or_else(|| DbError::Corrupt("insert returned nothing".to_owned()))
    }

    /// Inserts several jobs (and their `queued` events) in one transaction — one statement on PostgreSQL
    /// (`insert_pg`), one multi-row statement per table and 500 rows on SQLite: the group commit behind
    /// high enqueue rates and the bulk enqueue. Fails as a whole (e.g. `Duplicate` when
    /// one deduplication key is taken); the caller may then retry the jobs one by one.
    pub async fn insert_many(&self, news: Vec<NewJob>) -> Result<Vec<(JobRecord, JobEvent)>, DbError> {
        insert::insert_many(insert::Target::Pool(self.writer()), news, false).await
    }

    /// [`JobStore::insert_many`] with the rows marked `published` already when it is true: for a caller
    /// that publishes them right after the commit on a bus that cannot refuse (the in-process bus), so
    /// the outbox relay never needs them, and the mark would be one more write per job on the job
    /// path's one writer. A process that dies before publishing loses the in-process bus as a whole,
    /// and its next start requeues every unfinished job (`requeue_unfinished`).
    pub async fn insert_many_as(
        &self,
        news: Vec<NewJob>,
        published: bool,
    ) -> Result<Vec<(JobRecord, JobEvent)>, DbError> {
        insert::insert_many(insert::Target::Pool(self.writer()), news, published).await
    }

    /// [`JobStore::insert_many`] inside the caller's transaction.
    pub async fn insert_many_in(
        txn: &DatabaseTransaction,
        news: Vec<NewJob>,
    ) -> Result<Vec<(JobRecord, JobEvent)>, DbError> {
        insert::insert_many(insert::Target::Transaction(txn), news, false).await
    }

    /// Records that the attempt holding `epoch` is alive (the lease keeper calls this). `false` means the
    /// attempt no longer owns the job.
    pub async fn heartbeat(&self, id: JobId, epoch: i64) -> Result<bool, DbError> {
        Self::heartbeat_in(&self.conn, id, epoch).await
    }

    /// [`JobStore::heartbeat`] on `conn` (inside a caller's transaction, it fences the writes that
    /// follow: a stale attempt matches nothing, and on SQLite the write takes the writer lock first).
    pub(crate) async fn heartbeat_in(
        conn: &impl sea_orm::ConnectionTrait,
        id: JobId,
        epoch: i64,
    ) -> Result<bool, DbError> {
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(fenced(id, epoch))
            .exec(conn)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// The safety net for a bus that lost messages (e.g. a Redis restart without persistence): queued
    /// jobs overdue by more than `stuck_after`, and running jobs whose attempt stopped heart-beating that
    /// long ago, are marked unpublished so the relay publishes them again. Duplicates are harmless: a
    /// worker drops a message for a job that is not startable. Returns how many were repaired.
    pub async fn repair_stuck(&self, stuck_after: chrono::Duration) -> Result<u64, DbError> {
        let cutoff = Utc::now() - stuck_after;
        let queued = jobs::Entity::update_many()
            .col_expr(jobs::Column::Published, Expr::value(false))
            .filter(jobs::Column::State.eq(JobState::Queued.as_str()))
            .filter(jobs::Column::Published.eq(true))
            .filter(jobs::Column::RunAt.lt(cutoff))
            .filter(jobs::Column::UpdatedAt.lt(cutoff))
            .exec(self.writer())
            .await?;
        let running = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Queued.as_str()))
            .col_expr(jobs::Column::Published, Expr::value(false))
            // Bump the epoch so the silent attempt, should it wake up, is fenced off.
            .col_expr(jobs::Column::Epoch, Expr::col(jobs::Column::Epoch).add(1))
            .filter(jobs::Column::State.eq(JobState::Running.as_str()))
            .filter(jobs::Column::UpdatedAt.lt(cutoff))
            .exec(self.writer())
            .await?;
        Ok(queued.rows_affected + running.rows_affected)
    }

    /// The bus lost everything it held: every queued job (due or delayed) is marked unpublished so the
    /// relay publishes it again. Running jobs keep their attempt (their workers still hold them and
    /// commit their outcome; a silent one is repaired by [`JobStore::repair_stuck`]). Returns how many.
    pub async fn unpublish_queued(&self) -> Result<u64, DbError> {
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::Published, Expr::value(false))
            .filter(jobs::Column::State.eq(JobState::Queued.as_str()))
            .filter(jobs::Column::Published.eq(true))
            .exec(self.writer())
            .await?;
        Ok(res.rows_affected)
    }

    /// Records that these jobs' messages are on the bus.
    pub async fn mark_published(&self, ids: &[JobId]) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        jobs::Entity::update_many()
            .col_expr(jobs::Column::Published, Expr::value(true))
            .filter(jobs::Column::Id.is_in(ids.iter().map(|i| i.as_uuid())))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Queued jobs whose message was never published and that were last touched before `before`.
    pub async fn unpublished(&self, before: DateTime<Utc>, limit: u64) -> Result<Vec<JobRecord>, DbError> {
        jobs::Entity::find()
            // A literal, not a parameter: the outbox index holds unpublished rows only, and a generic
            // plan could not prove a parameter matches its predicate.
            .filter(Expr::cust("published = false"))
            .filter(jobs::Column::State.eq(JobState::Queued.as_str()))
            .filter(jobs::Column::UpdatedAt.lt(before))
            .order_by_asc(jobs::Column::UpdatedAt)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(JobRecord::try_from)
            .collect()
    }

    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>, DbError> {
        jobs::Entity::find_by_id(id.as_uuid()).one(&self.conn).await?.map(JobRecord::try_from).transpose()
    }

    /// Starts (or, for a redelivery after a lapsed lease, takes over) attempt `attempt` of a job: bumps the
    /// lease epoch so any older attempt's writes are refused from now on.
    pub async fn start(&self, id: JobId, attempt: u32, redelivery: bool) -> Result<StartOutcome, DbError> {
        let now = Utc::now();
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut startable = Condition::any().add(jobs::Column::State.eq(JobState::Queued.as_str()));
        if redelivery {
            startable = startable.add(jobs::Column::State.eq(JobState::Running.as_str()));
        }
        let updated = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Running.as_str()))
            .col_expr(jobs::Column::Epoch, Expr::col(jobs::Column::Epoch).add(1))
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::StartedAt, Expr::value(now))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(jobs::Column::Attempt.eq(attempt as i32))
            .filter(jobs::Column::CancelRequested.eq(false))
            .filter(startable)
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(match self.get(id).await? {
                None => StartOutcome::Skip { state: None, why: "job does not exist" },
                Some(job) if job.cancel_requested && !job.state.is_terminal() => {
                    // A cancel raced this start: finish the cancellation now that the job is ours to drop.
                    self.finish_unfenced(id, JobState::Cancelled, None).await?;
                    StartOutcome::Skip { state: Some(JobState::Cancelled), why: "cancel requested" }
                }
                Some(job) if job.attempt != attempt => {
                    StartOutcome::Skip { state: Some(job.state), why: "stale attempt" }
                }
                Some(job) => StartOutcome::Skip { state: Some(job.state), why: "not startable" },
            });
        }
        let job = load(&txn, id.as_uuid()).await?;
        let mut ev = event(&job, job.event_seq, now, JobEventKind::Started { attempt: job.attempt, epoch: job.epoch });
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok(StartOutcome::Started(Box::new(job), ev))
    }

    /// Appends a progress report or log line, fenced by lease epoch.
    pub async fn append(&self, id: JobId, epoch: i64, body: JobEventKind) -> Result<JobEvent, DbError> {
        let now = Utc::now();
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut update = jobs::Entity::update_many()
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now));
        if let JobEventKind::Progress(p) = &body {
            update = update
                .col_expr(jobs::Column::ProgressStep, Expr::value(p.step as i64))
                .col_expr(jobs::Column::ProgressTotal, Expr::value(p.total as i64))
                .col_expr(jobs::Column::ProgressInfo, Expr::value(p.info.clone()));
        }
        let res = update.filter(fenced(id, epoch)).exec(&txn).await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Err(DbError::Fenced { job_id: id.to_string(), epoch });
        }
        let job = load(&txn, id.as_uuid()).await?;
        let mut ev = event(&job, job.event_seq, now, body);
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok(ev)
    }

    /// Appends many log lines (or other events) of one attempt in one transaction, numbered in order:
    /// how a chatty subprocess's output is stored at thousands of lines a second. Fenced by epoch.
    pub async fn append_many(
        &self,
        id: JobId,
        epoch: i64,
        bodies: Vec<JobEventKind>,
    ) -> Result<Vec<JobEvent>, DbError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now().trunc_subsecs(6);
        let n = bodies.len() as i64;
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(n))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(fenced(id, epoch))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Err(DbError::Fenced { job_id: id.to_string(), epoch });
        }
        let job = load(&txn, id.as_uuid()).await?;
        let first = job.event_seq - n + 1;
        let mut events: Vec<JobEvent> =
            bodies.into_iter().enumerate().map(|(i, body)| event(&job, first + i as i64, now, body)).collect();
        for chunk in events.chunks_mut(INSERT_CHUNK) {
            let rows = chunk.iter().map(event_row).collect::<Result<Vec<_>, DbError>>()?;
            let stored = job_events::Entity::insert_many(rows).exec_with_returning(&txn).await?;
            let ids: std::collections::HashMap<i64, i64> = stored.into_iter().map(|m| (m.seq, m.id)).collect();
            for ev in chunk.iter_mut() {
                ev.id = ids.get(&ev.seq).copied().unwrap_or_default();
            }
        }
        txn.commit().await?;
        Ok(events)
    }

    /// Ends an attempt, fenced by lease epoch: a stale attempt's outcome is refused.
    pub async fn finish(&self, id: JobId, epoch: i64, outcome: Finish) -> Result<(JobRecord, JobEvent), DbError> {
        let now = Utc::now();
        let (state, result, error) = match outcome {
            Finish::Succeeded(v) => (JobState::Succeeded, Some(v), None),
            Finish::Failed(e) => (JobState::Failed, None, Some(e)),
            Finish::Cancelled => (JobState::Cancelled, None, None),
        };
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(state.as_str()))
            .col_expr(jobs::Column::Result, Expr::value(result))
            .col_expr(jobs::Column::Error, Expr::value(error.clone()))
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(fenced(id, epoch))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Err(DbError::Fenced { job_id: id.to_string(), epoch });
        }
        let job = load(&txn, id.as_uuid()).await?;
        let mut ev = event(&job, job.event_seq, now, JobEventKind::Finished { state, error });
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok((job, ev))
    }

    /// Sends a failed attempt back to `queued` for attempt + 1 at `run_at`, fenced by lease epoch. The
    /// row is left unpublished until the caller has scheduled the next message, so a crash in between
    /// is repaired by the outbox relay.
    pub async fn retry(
        &self,
        id: JobId,
        epoch: i64,
        error: &str,
        run_at: DateTime<Utc>,
    ) -> Result<(JobRecord, JobEvent), DbError> {
        let now = Utc::now();
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Queued.as_str()))
            .col_expr(jobs::Column::Attempt, Expr::col(jobs::Column::Attempt).add(1))
            .col_expr(jobs::Column::Error, Expr::value(error.to_owned()))
            .col_expr(jobs::Column::RunAt, Expr::value(run_at))
            .col_expr(jobs::Column::Published, Expr::value(false))
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(fenced(id, epoch))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Err(DbError::Fenced { job_id: id.to_string(), epoch });
        }
        let job = load(&txn, id.as_uuid()).await?;
        let body = JobEventKind::Retrying { attempt: job.attempt, error: error.to_owned(), run_at };
        let mut ev = event(&job, job.event_seq, now, body);
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok((job, ev))
    }

    /// Fails a job whose message went to the dead-letter stream. Not fenced: the attempt that would
    /// hold the lease is the one that crashed.
    pub async fn dead_lettered(
        &self,
        id: JobId,
        reason: DeadLetterReason,
        error: &str,
    ) -> Result<Option<JobEvent>, DbError> {
        let now = Utc::now();
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Failed.as_str()))
            .col_expr(jobs::Column::Error, Expr::value(error.to_owned()))
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(jobs::Column::State.is_in(JobState::STARTABLE.map(|s| s.as_str())))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let job = load(&txn, id.as_uuid()).await?;
        let mut ev = event(&job, job.event_seq, now, JobEventKind::DeadLettered { reason, error: error.to_owned() });
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok(Some(ev))
    }

    async fn finish_unfenced(
        &self,
        id: JobId,
        state: JobState,
        error: Option<String>,
    ) -> Result<Option<JobEvent>, DbError> {
        let now = Utc::now();
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(state.as_str()))
            .col_expr(jobs::Column::Error, Expr::value(error.clone()))
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(jobs::Column::State.is_in(JobState::STARTABLE.map(|s| s.as_str())))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let job = load(&txn, id.as_uuid()).await?;
        let mut ev = event(&job, job.event_seq, now, JobEventKind::Finished { state, error });
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok(Some(ev))
    }

    /// Cancels a queued job at once, or flags a running one so its worker stops it.
    pub async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome, DbError> {
        let Some(job) = self.get(id).await? else { return Ok(CancelOutcome::NotFound) };
        match job.state {
            JobState::Queued => match self.finish_unfenced(id, JobState::Cancelled, None).await? {
                Some(ev) => Ok(CancelOutcome::Cancelled(ev)),
                // It started in the meantime: flag it instead.
                None => Box::pin(self.request_cancel(id)).await,
            },
            JobState::Running => {
                let now = Utc::now();
                let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
                let res = jobs::Entity::update_many()
                    .col_expr(jobs::Column::CancelRequested, Expr::value(true))
                    .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
                    .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
                    .filter(jobs::Column::Id.eq(id.as_uuid()))
                    .filter(jobs::Column::State.eq(JobState::Running.as_str()))
                    .exec(&txn)
                    .await?;
                if res.rows_affected == 0 {
                    txn.rollback().await?;
                    return Box::pin(self.request_cancel(id)).await;
                }
                let job = load(&txn, id.as_uuid()).await?;
                let mut ev = event(&job, job.event_seq, now, JobEventKind::CancelRequested);
                insert_event(&txn, &mut ev).await?;
                txn.commit().await?;
                Ok(CancelOutcome::Requested(ev))
            }
            state => Ok(CancelOutcome::AlreadyFinished(state)),
        }
    }

    /// Whether a cancel was requested for the attempt holding `epoch` (a fallback to the live event).
    pub async fn cancel_requested(&self, id: JobId, epoch: i64) -> Result<bool, DbError> {
        Ok(jobs::Entity::find()
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(jobs::Column::Epoch.eq(epoch))
            .filter(jobs::Column::CancelRequested.eq(true))
            .count(&self.conn)
            .await?
            > 0)
    }

    /// After an embedded restart the in-process bus is empty: every unfinished job goes back to
    /// `queued` and unpublished, so the relay publishes it again. Returns how many.
    pub async fn requeue_unfinished(&self) -> Result<u64, DbError> {
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Queued.as_str()))
            .col_expr(jobs::Column::Published, Expr::value(false))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(DateTime::<Utc>::MIN_UTC))
            .filter(jobs::Column::State.is_in(JobState::STARTABLE.map(|s| s.as_str())))
            .exec(self.writer())
            .await?;
        Ok(res.rows_affected)
    }

    /// Deletes finished jobs, and their events, that finished before `cutoff`.
    pub async fn delete_finished_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DbError> {
        self.delete_jobs_with_events("finished_at < $1", vec![cutoff.into()]).await
    }

    /// Deletes system jobs (no organization: the built-in periodic sweeps) that succeeded before
    /// `cutoff`. They run every few seconds, so they get a much shorter retention than user jobs.
    pub async fn delete_succeeded_system_jobs_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DbError> {
        self.delete_jobs_with_events("org_id IS NULL AND state = 'succeeded' AND finished_at < $1", vec![cutoff.into()])
            .await
    }

    /// Deletes the jobs matching `condition` and their events in one statement. On PostgreSQL events
    /// have no foreign key to their job (see migration m0018), so they are deleted from the jobs'
    /// `RETURNING`; SQLite keeps the cascading key (and has no data-modifying `WITH`).
    async fn delete_jobs_with_events(&self, condition: &str, values: Vec<sea_orm::Value>) -> Result<u64, DbError> {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let backend = self.conn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => format!(
                "WITH gone AS (DELETE FROM jobs WHERE {condition} RETURNING id), \
                 events AS (DELETE FROM job_events WHERE job_id IN (SELECT id FROM gone)) \
                 SELECT count(*) AS n FROM gone"
            ),
            _ => format!("DELETE FROM jobs WHERE {condition} RETURNING id"),
        };
        // SQLite numbers its parameters `?1`, PostgreSQL `$1`.
        let sql = if backend == DbBackend::Postgres { sql } else { sql.replace('$', "?") };
        let stmt = Statement::from_sql_and_values(backend, sql, values);
        let rows = self.writer().query_all_raw(stmt).await?;
        Ok(match backend {
            DbBackend::Postgres => rows.first().map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0) as u64,
            _ => rows.len() as u64,
        })
    }

    /// Sends a failed or cancelled job back to the queue for one more attempt (an operator's retry).
    /// The row is left unpublished; the caller publishes it (or the relay does).
    pub async fn requeue(&self, id: JobId) -> Result<Option<(JobRecord, JobEvent)>, DbError> {
        let now = Utc::now();
        let txn = self.writer().begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Queued.as_str()))
            .col_expr(jobs::Column::Attempt, Expr::col(jobs::Column::Attempt).add(1))
            .col_expr(jobs::Column::Result, Expr::value(Option::<serde_json::Value>::None))
            .col_expr(jobs::Column::CancelRequested, Expr::value(false))
            .col_expr(jobs::Column::Published, Expr::value(false))
            .col_expr(jobs::Column::RunAt, Expr::value(now))
            .col_expr(jobs::Column::FinishedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(jobs::Column::State.is_in([JobState::Failed.as_str(), JobState::Cancelled.as_str()]))
            .exec(&txn)
            .await
            // Duplicate: another unfinished job holds the same deduplication key.
            .map_err(unique)?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        // The retry is a fresh chance: make sure at least this attempt is allowed.
        jobs::Entity::update_many()
            .col_expr(jobs::Column::MaxAttempts, Expr::col(jobs::Column::Attempt))
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(Expr::col(jobs::Column::MaxAttempts).lt(Expr::col(jobs::Column::Attempt)))
            .exec(&txn)
            .await?;
        let job = load(&txn, id.as_uuid()).await?;
        let mut ev = event(&job, job.event_seq, now, JobEventKind::Requeued { attempt: job.attempt });
        insert_event(&txn, &mut ev).await?;
        txn.commit().await?;
        Ok(Some((job, ev)))
    }
}
