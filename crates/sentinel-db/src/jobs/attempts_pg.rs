//! The PostgreSQL form of the batched attempt writes: a whole round — the starts, log lines, progress
//! reports and outcomes of many jobs, and their events — is **one statement**, sent in one round trip
//! and committed on its own (no BEGIN, SET or COMMIT around it). Its text is fixed and its rows arrive
//! as JSON parameters (`json_to_recordset`), so PostgreSQL parses and plans it once per connection
//! whatever the batch's size. (The portable form in `attempts.rs`, used on SQLite, writes an `OR` of one
//! condition per row inside a transaction.)
//!
//! The statement runs on the attempt pool, whose sessions plan by primary-key lookups only (see
//! `Database::attempts`). A round without an outcome commits with `synchronous_commit` off, set inside
//! the statement for its own transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement};
use sentinel_domain::{JobEventKind, JobId, JobState, Progress};
use serde_json::{Value, json};

use super::{AttemptWrite, Finish, JobRecord};
use crate::DbError;
use crate::entity::jobs;

/// The parts of a round's statement. `$1` is now, `$2` the starts, `$3` the appends, `$4` the
/// outcomes, `$5` the round's `synchronous_commit`. Each update returns the new row with its events:
/// `evs`, a JSON array of `{"t": type, "d": data}` numbered up to the row's new `event_seq` (an
/// outcome carries the attempt's unwritten log lines before its own event). The events are inserted
/// from those rows, so they exist exactly when their write matched (fencing decides both at once).
/// An append leaves `updated_at` alone: no indexed column changes, so PostgreSQL can update the row
/// in place (a HOT update) instead of adding an entry to every index of `jobs`.
const STARTS: &str = "s AS (UPDATE jobs AS j SET state = 'running', epoch = j.epoch + 1, \
     event_seq = j.event_seq + 1, started_at = $1, updated_at = $1 \
     FROM json_to_recordset($2::json) AS v(id uuid, attempt integer, redelivery boolean) \
     WHERE j.id = v.id AND j.attempt = v.attempt AND NOT j.cancel_requested \
     AND (j.state = 'queued' OR (v.redelivery AND j.state = 'running')) \
     RETURNING j.*, json_build_array(json_build_object('t', 'started', 'd', \
     json_build_object('type', 'started', 'attempt', j.attempt, 'epoch', j.epoch))) AS evs)";
const APPENDS: &str = "a AS (UPDATE jobs AS j SET event_seq = j.event_seq + 1, \
     progress_step = CASE WHEN v.progress THEN v.step ELSE j.progress_step END, \
     progress_total = CASE WHEN v.progress THEN v.total ELSE j.progress_total END, \
     progress_info = CASE WHEN v.progress THEN v.info ELSE j.progress_info END \
     FROM json_to_recordset($3::json) AS v(id uuid, epoch bigint, progress boolean, step bigint, total bigint, \
     info text, evs json) \
     WHERE j.id = v.id AND j.epoch = v.epoch AND j.state = 'running' \
     RETURNING j.*, v.evs)";
const OUTCOMES: &str = "f AS (UPDATE jobs AS j SET state = v.state, result = v.result::json, error = v.error, \
     event_seq = j.event_seq + json_array_length(v.evs), finished_at = $1, updated_at = $1, \
     progress_step = CASE WHEN v.progress THEN v.step ELSE j.progress_step END, \
     progress_total = CASE WHEN v.progress THEN v.total ELSE j.progress_total END, \
     progress_info = CASE WHEN v.progress THEN v.info ELSE j.progress_info END \
     FROM json_to_recordset($4::json) AS v(id uuid, epoch bigint, state text, result text, error text, \
     progress boolean, step bigint, total bigint, info text, evs json) \
     WHERE j.id = v.id AND j.epoch = v.epoch AND j.state = 'running' \
     RETURNING j.*, v.evs)";
const EVENTS: &str = "e AS (INSERT INTO job_events (job_id, seq, event_type, data, at) \
     SELECT w.id, w.event_seq - json_array_length(w.evs) + x.n, x.ev->>'t', x.ev->'d', $1 \
     FROM w CROSS JOIN LATERAL json_array_elements(w.evs) WITH ORDINALITY AS x(ev, n) \
     RETURNING id AS event_id, job_id, seq AS event_no), \
     c AS (SELECT set_config('synchronous_commit', $5, true) AS synchronous_commit) \
     SELECT w.*, e.event_id, e.event_no FROM w JOIN e ON e.job_id = w.id CROSS JOIN c";

/// The statement of a round holding the given kinds of write. Only those kinds' updates are in it
/// (an empty update still costs its executor set-up on every call), so there are seven texts, each
/// prepared once per connection. Every text is bound with all five parameters; those it does not use
/// are typed by the client's Parse message.
fn round_statement(starts: bool, appends: bool, outcomes: bool) -> String {
    let parts: Vec<(&str, &str)> = [(starts, STARTS), (appends, APPENDS), (outcomes, OUTCOMES)]
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, part)| (part, &part[..1]))
        .collect();
    let union = parts.iter().map(|(_, name)| format!("SELECT * FROM {name}")).collect::<Vec<_>>().join(" UNION ALL ");
    let updates = parts.iter().map(|(part, _)| *part).collect::<Vec<_>>().join(", ");
    format!("WITH {updates}, w AS ({union}), {EVENTS}")
}

fn body_json(body: &JobEventKind) -> Result<Value, DbError> {
    serde_json::to_value(body).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// A write's events as the statement reads them (`{"t": type, "d": data}` each).
fn events_json(bodies: &[JobEventKind]) -> Result<Value, DbError> {
    bodies
        .iter()
        .map(|b| Ok(json!({ "t": b.name(), "d": body_json(b)? })))
        .collect::<Result<Vec<_>, DbError>>()
        .map(Value::Array)
}

/// Sets a row's progress columns from `progress`, if any.
fn with_progress(mut row: Value, progress: Option<&Progress>) -> Value {
    row["progress"] = json!(progress.is_some());
    if let Some(p) = progress {
        row["step"] = json!(p.step as i64);
        row["total"] = json!(p.total as i64);
        row["info"] = json!(p.info);
    }
    row
}

/// The jobs a round changed, and the id each of their events got in the deployment-wide log, by job
/// and event number.
pub(super) type RoundResult = (HashMap<JobId, JobRecord>, HashMap<(JobId, i64), i64>);

/// Applies one round (each job at most once) and answers the rows it changed and their events' ids.
pub(super) async fn round(
    conn: &DatabaseConnection,
    writes: &[&AttemptWrite],
    now: DateTime<Utc>,
) -> Result<RoundResult, DbError> {
    let (mut starts, mut appends, mut finishes) = (Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        match write {
            AttemptWrite::Start { id, attempt, redelivery } => {
                starts.push(json!({ "id": id.as_uuid(), "attempt": attempt, "redelivery": redelivery }));
            }
            AttemptWrite::Append { id, epoch, body } => {
                let progress = match body {
                    JobEventKind::Progress(p) => Some(p),
                    _ => None,
                };
                let row =
                    json!({ "id": id.as_uuid(), "epoch": epoch, "evs": events_json(std::slice::from_ref(body))? });
                appends.push(with_progress(row, progress));
            }
            AttemptWrite::Finish { id, epoch, outcome, log } => {
                let (state, result, error) = match outcome {
                    Finish::Succeeded(v) => (JobState::Succeeded, Some(v.to_string()), None),
                    Finish::Failed(e) => (JobState::Failed, None, Some(e.clone())),
                    Finish::Cancelled => (JobState::Cancelled, None, None),
                };
                let bodies = super::attempts::write_events(write, 0, 0, state, error.clone());
                // `result` travels as JSON text, so a JSON `null` result stays a JSON null, not SQL NULL.
                let row = json!({
                    "id": id.as_uuid(), "epoch": epoch, "state": state.as_str(),
                    "result": result, "error": error, "evs": events_json(&bodies)?,
                });
                finishes.push(with_progress(row, super::attempts::last_progress(log)));
            }
        }
    }
    // Starts, log lines and progress need not wait for their own flush: nothing is acked on them, and
    // the outcome that follows commits synchronously, which flushes the log up to it. A server crash
    // can lose the newest of them (the job then runs again from its last durable state); a worker or
    // client crash loses nothing.
    let synchronous = if finishes.is_empty() { "off" } else { "on" };
    let sql = round_statement(!starts.is_empty(), !appends.is_empty(), !finishes.is_empty());
    let values: Vec<sea_orm::Value> = vec![
        now.into(),
        Value::Array(starts).to_string().into(),
        Value::Array(appends).to_string().into(),
        Value::Array(finishes).to_string().into(),
        synchronous.into(),
    ];
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    let mut jobs_out = HashMap::with_capacity(writes.len());
    let mut event_ids = HashMap::with_capacity(writes.len());
    // One row per event, each with its job's row.
    for row in conn.query_all_raw(stmt).await? {
        let event_id: i64 = row.try_get("", "event_id")?;
        let event_no: i64 = row.try_get("", "event_no")?;
        let id = JobId::from_uuid(row.try_get::<uuid::Uuid>("", "id")?);
        event_ids.insert((id, event_no), event_id);
        if let std::collections::hash_map::Entry::Vacant(slot) = jobs_out.entry(id) {
            slot.insert(JobRecord::try_from(jobs::Model::from_query_result(&row, "")?)?);
        }
    }
    Ok((jobs_out, event_ids))
}
