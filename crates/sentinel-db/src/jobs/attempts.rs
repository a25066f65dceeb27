//! Batched writes of running attempts: the starts, log lines, progress reports and outcomes of many
//! concurrent jobs committed together — on PostgreSQL as one statement (`attempts_pg.rs`), on SQLite as
//! one multi-row statement per kind of write in a transaction — so a worker's database cost per job is
//! a share of a round instead of several transactions.
//! Fencing is unchanged: every row is matched on its lease epoch (or, for a start, its attempt and
//! state) inside the statement, and a write that matches nothing is refused exactly as it is alone.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, Query, ReturningClause, SimpleExpr, UpdateStatement};
use sea_orm::{ColumnTrait, Condition, DatabaseTransaction, DbBackend, EntityTrait, Statement, TransactionTrait};
use sentinel_domain::{JobEvent, JobEventKind, JobId, JobState};

use super::{Finish, JobRecord, JobStore, StartOutcome, attempts_pg, event, event_row, fenced};
use crate::DbError;
use crate::entity::{job_events, jobs};

/// One write of a running attempt (see [`JobStore::write_attempts`]).
#[derive(Debug, Clone)]
pub enum AttemptWrite {
    /// Start attempt `attempt` (see [`JobStore::start`]).
    Start { id: JobId, attempt: u32, redelivery: bool },
    /// A progress report or log line of the attempt holding `epoch` (see [`JobStore::append`]).
    Append { id: JobId, epoch: i64, body: JobEventKind },
    /// The outcome of the attempt holding `epoch` (see [`JobStore::finish`]), after `log`: the
    /// attempt's last log lines and progress reports, not written yet, committed in order just before
    /// the outcome in the same write (a short job's log costs no write of its own).
    Finish { id: JobId, epoch: i64, outcome: Finish, log: Vec<JobEventKind> },
}

impl AttemptWrite {
    fn job_id(&self) -> JobId {
        match self {
            Self::Start { id, .. } | Self::Append { id, .. } | Self::Finish { id, .. } => *id,
        }
    }
}

/// What one [`AttemptWrite`] did.
#[derive(Debug)]
pub enum AttemptWritten {
    Started(StartOutcome),
    Appended(JobEvent),
    /// The job as finished, and its events: the log's, then the outcome's.
    Finished(Box<JobRecord>, Vec<JobEvent>),
}

/// Rows per multi-row UPDATE (each row binds a handful of parameters; SQLite allows 32,766).
const UPDATE_CHUNK: usize = 500;

impl JobStore {
    /// Applies the writes of many attempts, answering one result per write, in order. Writes of the same
    /// job are applied in order, each in a later statement than the one before. The batch commits as
    /// one transaction; if that fails (a lost connection, say), each write is tried again on its own
    /// so every caller gets its own answer.
    pub async fn write_attempts(&self, writes: Vec<AttemptWrite>) -> Vec<Result<AttemptWritten, DbError>> {
        let mut answers: Vec<Option<Result<AttemptWritten, DbError>>> = (0..writes.len()).map(|_| None).collect();
        for round in rounds(&writes) {
            let batch: Vec<(usize, AttemptWrite)> = round.iter().map(|&i| (i, writes[i].clone())).collect();
            match self.write_round(&batch).await {
                Ok(done) => {
                    for (i, answer) in done {
                        answers[i] = Some(answer);
                    }
                }
                // Unreachable: every write of the round would fail the same way, each after its own
                // connection timeout; answer them all at once instead.
                Err(e) if e.is_unavailable() => {
                    for (i, _) in batch {
                        answers[i] = Some(Err(DbError::Unavailable(e.to_string())));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, writes = batch.len(), "batched attempt writes failed; writing one by one");
                    for (i, write) in batch {
                        answers[i] = Some(self.write_one(write).await);
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(DbError::Corrupt("attempt write left unanswered".to_owned()))))
            .collect()
    }

    /// The unbatched path for one write.
    async fn write_one(&self, write: AttemptWrite) -> Result<AttemptWritten, DbError> {
        match write {
            AttemptWrite::Start { id, attempt, redelivery } => {
                self.start(id, attempt, redelivery).await.map(AttemptWritten::Started)
            }
            AttemptWrite::Append { id, epoch, body } => {
                self.append(id, epoch, body).await.map(AttemptWritten::Appended)
            }
            AttemptWrite::Finish { id, epoch, outcome, log } => {
                let mut events = if log.is_empty() { Vec::new() } else { self.append_many(id, epoch, log).await? };
                let (job, ev) = self.finish(id, epoch, outcome).await?;
                events.push(ev);
                Ok(AttemptWritten::Finished(Box::new(job), events))
            }
        }
    }

    /// One transaction for writes of distinct jobs. Starts that matched nothing are classified after
    /// the commit (the rare path: a stale message, a finished or cancelled job).
    async fn write_round(
        &self,
        batch: &[(usize, AttemptWrite)],
    ) -> Result<Vec<(usize, Result<AttemptWritten, DbError>)>, DbError> {
        // Microseconds, as stored: the events broadcast carry the same times the log holds.
        let now = Utc::now().trunc_subsecs(6);
        let (mut rows, events) = if self.attempts.get_database_backend() == DbBackend::Postgres {
            let writes: Vec<&AttemptWrite> = batch.iter().map(|(_, w)| w).collect();
            let (rows, event_ids) = attempts_pg::round(&self.attempts, &writes, now).await?;
            let mut events = round_events(batch, &rows, now);
            for (_, ev) in &mut events {
                ev.id = event_ids.get(&(ev.job_id, ev.seq)).copied().unwrap_or_default();
            }
            (rows, events)
        } else {
            self.portable_round(batch, now).await?
        };
        let mut by_write: HashMap<usize, Vec<JobEvent>> = HashMap::with_capacity(batch.len());
        for (i, ev) in events {
            by_write.entry(i).or_default().push(ev);
        }
        let mut out = Vec::with_capacity(batch.len());
        for (i, write) in batch {
            let events = by_write.remove(i);
            let answer = match (write, events) {
                (AttemptWrite::Finish { id, .. }, Some(events)) => match rows.remove(id) {
                    Some(job) => Ok(AttemptWritten::Finished(Box::new(job), events)),
                    None => Err(DbError::Corrupt("finished job row missing".to_owned())),
                },
                (write, Some(mut events)) if events.len() == 1 => {
                    let ev = events.remove(0);
                    match write {
                        AttemptWrite::Start { id, .. } => match rows.remove(id) {
                            Some(job) => Ok(AttemptWritten::Started(StartOutcome::Started(Box::new(job), ev))),
                            None => Err(DbError::Corrupt("started job row missing".to_owned())),
                        },
                        _ => Ok(AttemptWritten::Appended(ev)),
                    }
                }
                (_, Some(events)) => Err(DbError::Corrupt(format!("{} events for one write", events.len()))),
                (AttemptWrite::Start { id, attempt, redelivery }, None) => {
                    self.start(*id, *attempt, *redelivery).await.map(AttemptWritten::Started)
                }
                (AttemptWrite::Append { id, epoch, .. } | AttemptWrite::Finish { id, epoch, .. }, None) => {
                    Err(DbError::Fenced { job_id: id.to_string(), epoch: *epoch })
                }
            };
            out.push((*i, answer));
        }
        Ok(out)
    }

    /// The portable form of a round (SQLite): one multi-row statement per kind of write, then the
    /// events, in one transaction. Answers the changed rows and their events (with their ids).
    async fn portable_round(
        &self,
        batch: &[(usize, AttemptWrite)],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<JobId, JobRecord>, Vec<(usize, JobEvent)>), DbError> {
        let of_kind =
            |pick: fn(&AttemptWrite) -> bool| batch.iter().map(|(_, w)| w).filter(|w| pick(w)).collect::<Vec<_>>();
        let starts = of_kind(|w| matches!(w, AttemptWrite::Start { .. }));
        let appends = of_kind(|w| matches!(w, AttemptWrite::Append { .. }));
        let finishes = of_kind(|w| matches!(w, AttemptWrite::Finish { .. }));
        // The updates are built before the transaction begins: SQLite has one writer, and building
        // a large statement while holding it kept every other write waiting.
        let backend = self.attempts.get_database_backend();
        let updates: Vec<Statement> = (starts.chunks(UPDATE_CHUNK).map(|c| start_statement(c, now)))
            .chain(appends.chunks(UPDATE_CHUNK).map(append_statement))
            .chain(finishes.chunks(UPDATE_CHUNK).map(|c| finish_statement(c, now)))
            .map(|mut stmt| {
                stmt.returning(ReturningClause::All);
                backend.build(&stmt)
            })
            .collect();
        let txn = self.attempts.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut rows: HashMap<JobId, JobRecord> = HashMap::new();
        for update in updates {
            rows.extend(update_returning(&txn, update).await?);
        }
        let mut events = round_events(batch, &rows, now);
        for chunk in events.chunks_mut(super::INSERT_CHUNK) {
            let models = chunk.iter().map(|(_, ev)| event_row(ev)).collect::<Result<Vec<_>, DbError>>()?;
            let stored = job_events::Entity::insert_many(models).exec_with_returning(&txn).await?;
            let ids: HashMap<(uuid::Uuid, i64), i64> = stored.into_iter().map(|m| ((m.job_id, m.seq), m.id)).collect();
            for (_, ev) in chunk.iter_mut() {
                ev.id = ids.get(&(ev.job_id.as_uuid(), ev.seq)).copied().unwrap_or_default();
            }
        }
        txn.commit().await?;
        Ok((rows, events))
    }
}

/// The events of every matched write of a round, in the batch's order (a write's events numbered up
/// to the row's new `event_seq`).
fn round_events(
    batch: &[(usize, AttemptWrite)],
    rows: &HashMap<JobId, JobRecord>,
    now: DateTime<Utc>,
) -> Vec<(usize, JobEvent)> {
    let mut events = Vec::with_capacity(rows.len());
    for (i, write) in batch {
        let Some(job) = rows.get(&write.job_id()) else { continue };
        let bodies = write_events(write, job.attempt, job.epoch, job.state, job.error.clone());
        let first = job.event_seq - bodies.len() as i64 + 1;
        events.extend(bodies.into_iter().zip(first..).map(|(body, seq)| (*i, event(job, seq, now, body))));
    }
    events
}

/// The events one write adds, in order, given the job as it wrote them (`attempt` and `epoch` matter
/// to a start only, `state` and `error` to an outcome only).
pub(super) fn write_events(
    write: &AttemptWrite,
    attempt: u32,
    epoch: i64,
    state: JobState,
    error: Option<String>,
) -> Vec<JobEventKind> {
    match write {
        AttemptWrite::Start { .. } => vec![JobEventKind::Started { attempt, epoch }],
        AttemptWrite::Append { body, .. } => vec![body.clone()],
        AttemptWrite::Finish { log, .. } => {
            let mut bodies = log.clone();
            bodies.push(JobEventKind::Finished { state, error });
            bodies
        }
    }
}

/// The last progress report among a finish's log lines, which the row keeps as its progress.
pub(super) fn last_progress(log: &[JobEventKind]) -> Option<&sentinel_domain::Progress> {
    log.iter().rev().find_map(|e| match e {
        JobEventKind::Progress(p) => Some(p),
        _ => None,
    })
}

/// Splits a batch into rounds in which each job appears once, keeping each job's writes in order.
fn rounds(writes: &[AttemptWrite]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<(HashSet<JobId>, Vec<usize>)> = Vec::new();
    let mut last_round: HashMap<JobId, usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        let id = w.job_id();
        let r = last_round.get(&id).map_or(0, |r| r + 1);
        if rounds.len() <= r {
            rounds.push((HashSet::new(), Vec::new()));
        }
        rounds[r].0.insert(id);
        rounds[r].1.push(i);
        last_round.insert(id, r);
    }
    rounds.into_iter().map(|(_, r)| r).collect()
}

/// Runs an UPDATE … RETURNING * and reads the rows back as records, by id.
async fn update_returning(txn: &DatabaseTransaction, built: Statement) -> Result<Vec<(JobId, JobRecord)>, DbError> {
    let models = jobs::Entity::find().from_raw_sql(built).all(txn).await?;
    models.into_iter().map(|m| JobRecord::try_from(m).map(|j| (j.id, j))).collect()
}

/// `CASE WHEN id = … THEN … END` over the given jobs, keeping the column as it is for the others.
fn per_job<T: Into<sea_orm::Value>>(
    column: jobs::Column,
    values: impl IntoIterator<Item = (JobId, T)>,
    keep_others: bool,
) -> SimpleExpr {
    let mut case = CaseStatement::new();
    for (id, value) in values {
        case = case.case(jobs::Column::Id.eq(id.as_uuid()), Expr::value(value));
    }
    if keep_others {
        case = case.finally(Expr::col(column));
    }
    case.into()
}

fn start_statement(writes: &[&AttemptWrite], now: DateTime<Utc>) -> UpdateStatement {
    let mut matching = Condition::any();
    for w in writes {
        let AttemptWrite::Start { id, attempt, redelivery } = w else { continue };
        let mut startable = Condition::any().add(jobs::Column::State.eq(JobState::Queued.as_str()));
        if *redelivery {
            startable = startable.add(jobs::Column::State.eq(JobState::Running.as_str()));
        }
        matching = matching.add(
            Condition::all()
                .add(jobs::Column::Id.eq(id.as_uuid()))
                .add(jobs::Column::Attempt.eq(*attempt as i32))
                .add(startable),
        );
    }
    Query::update()
        .table(jobs::Entity)
        .value(jobs::Column::State, JobState::Running.as_str())
        .value(jobs::Column::Epoch, Expr::col(jobs::Column::Epoch).add(1))
        .value(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
        .value(jobs::Column::StartedAt, now)
        .value(jobs::Column::UpdatedAt, now)
        .cond_where(Condition::all().add(jobs::Column::CancelRequested.eq(false)).add(matching))
        .to_owned()
}

fn append_statement(writes: &[&AttemptWrite]) -> UpdateStatement {
    let mut matching = Condition::any();
    let mut progress = Vec::new();
    for w in writes {
        let AttemptWrite::Append { id, epoch, body } = w else { continue };
        matching = matching.add(fenced(*id, *epoch));
        if let JobEventKind::Progress(p) = body {
            progress.push((*id, p.clone()));
        }
    }
    let mut stmt = Query::update();
    // `updated_at` stays: the lease keeper's heartbeat keeps it fresh, and on PostgreSQL an update that
    // changes no indexed column is written in place (see attempts_pg.rs).
    stmt.table(jobs::Entity)
        .value(jobs::Column::EventSeq, Expr::col(jobs::Column::EventSeq).add(1))
        .cond_where(matching);
    set_progress(&mut stmt, &progress);
    stmt
}

fn finish_statement(writes: &[&AttemptWrite], now: DateTime<Utc>) -> UpdateStatement {
    let mut matching = Condition::any();
    let mut states = Vec::new();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    let mut added = Vec::new();
    let mut progress = Vec::new();
    for w in writes {
        let AttemptWrite::Finish { id, epoch, outcome, log } = w else { continue };
        matching = matching.add(fenced(*id, *epoch));
        added.push((*id, log.len() as i64 + 1));
        if let Some(p) = last_progress(log) {
            progress.push((*id, p.clone()));
        }
        let (state, result, error) = match outcome {
            Finish::Succeeded(v) => (JobState::Succeeded, Some(v.clone()), None),
            Finish::Failed(e) => (JobState::Failed, None, Some(e.clone())),
            Finish::Cancelled => (JobState::Cancelled, None, None),
        };
        states.push((*id, state.as_str()));
        results.push((*id, result));
        errors.push((*id, error));
    }
    let mut stmt = Query::update();
    stmt.table(jobs::Entity)
        .value(jobs::Column::State, per_job(jobs::Column::State, states, true))
        .value(jobs::Column::Result, per_job(jobs::Column::Result, results, true))
        .value(jobs::Column::Error, per_job(jobs::Column::Error, errors, true))
        .value(
            jobs::Column::EventSeq,
            Expr::col(jobs::Column::EventSeq).add(per_job(jobs::Column::EventSeq, added, false)),
        )
        .value(jobs::Column::FinishedAt, now)
        .value(jobs::Column::UpdatedAt, now)
        .cond_where(matching);
    set_progress(&mut stmt, &progress);
    stmt
}

/// Sets each listed job's progress columns (the others keep theirs).
fn set_progress(stmt: &mut UpdateStatement, progress: &[(JobId, sentinel_domain::Progress)]) {
    if progress.is_empty() {
        return;
    }
    let steps = progress.iter().map(|(id, p)| (*id, p.step as i64));
    let totals = progress.iter().map(|(id, p)| (*id, p.total as i64));
    let infos = progress.iter().map(|(id, p)| (*id, p.info.clone()));
    stmt.value(jobs::Column::ProgressStep, per_job(jobs::Column::ProgressStep, steps, true))
        .value(jobs::Column::ProgressTotal, per_job(jobs::Column::ProgressTotal, totals, true))
        .value(jobs::Column::ProgressInfo, per_job(jobs::Column::ProgressInfo, infos, true));
}
