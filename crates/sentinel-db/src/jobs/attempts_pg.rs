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
use sentinel_domain::{JobEventKind, JobId, JobState};
use serde_json::{Value, json};

use super::{AttemptWrite, Finish, JobRecord};
use crate::DbError;
use crate::entity::jobs;

/// The parts of a round's statement. `$1` is now, `$2` the starts, `$3` the appends, `$4` the
/// outcomes, `$5` the round's `synchronous_commit`. Each update returns the new row with its event's
/// type and data; the events are inserted from those rows, so an event exists exactly when its write
/// matched (fencing decides both at once). An append leaves `updated_at` alone: no indexed column
/// changes, so PostgreSQL can update the row in place (a HOT update) instead of adding an entry to
/// every index of `jobs`.
const STARTS: &str = "s AS (UPDATE jobs AS j SET state = 'running', epoch = j.epoch + 1, \
     event_seq = j.event_seq + 1, started_at = $1, updated_at = $1 \
     FROM json_to_recordset($2::json) AS v(id uuid, attempt integer, redelivery boolean) \
     WHERE j.id = v.id AND j.attempt = v.attempt AND NOT j.cancel_requested \
     AND (j.state = 'queued' OR (v.redelivery AND j.state = 'running')) \
     RETURNING j.*, 'started'::text AS ev_type, \
     json_build_object('type', 'started', 'attempt', j.attempt, 'epoch', j.epoch) AS ev_data)";
const APPENDS: &str = "a AS (UPDATE jobs AS j SET event_seq = j.event_seq + 1, \
     progress_step = CASE WHEN v.progress THEN v.step ELSE j.progress_step END, \
     progress_total = CASE WHEN v.progress THEN v.total ELSE j.progress_total END, \
     progress_info = CASE WHEN v.progress THEN v.info ELSE j.progress_info END \
     FROM json_to_recordset($3::json) AS v(id uuid, epoch bigint, progress boolean, step bigint, total bigint, \
     info text, ev_type text, ev_data json) \
     WHERE j.id = v.id AND j.epoch = v.epoch AND j.state = 'running' \
     RETURNING j.*, v.ev_type, v.ev_data)";
const OUTCOMES: &str = "f AS (UPDATE jobs AS j SET state = v.state, result = v.result::json, error = v.error, \
     event_seq = j.event_seq + 1, finished_at = $1, updated_at = $1 \
     FROM json_to_recordset($4::json) AS v(id uuid, epoch bigint, state text, result text, error text, ev_data json) \
     WHERE j.id = v.id AND j.epoch = v.epoch AND j.state = 'running' \
     RETURNING j.*, 'finished'::text AS ev_type, v.ev_data)";
const EVENTS: &str = "e AS (INSERT INTO job_events (job_id, seq, event_type, data, at) \
     SELECT w.id, w.event_seq, w.ev_type, w.ev_data, $1 FROM w RETURNING id AS event_id, job_id), \
     c AS (SELECT set_config('synchronous_commit', $5, true) AS synchronous_commit) \
     SELECT w.*, e.event_id FROM w JOIN e ON e.job_id = w.id CROSS JOIN c";

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

/// Applies one round (each job at most once) and answers the rows it changed, each with the id its
/// event got in the deployment-wide log.
pub(super) async fn round(
    conn: &DatabaseConnection,
    writes: &[&AttemptWrite],
    now: DateTime<Utc>,
) -> Result<HashMap<JobId, (JobRecord, i64)>, DbError> {
    let (mut starts, mut appends, mut finishes) = (Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        match write {
            AttemptWrite::Start { id, attempt, redelivery } => {
                starts.push(json!({ "id": id.as_uuid(), "attempt": attempt, "redelivery": redelivery }));
            }
            AttemptWrite::Append { id, epoch, body } => {
                let mut row = json!({
                    "id": id.as_uuid(), "epoch": epoch, "progress": false,
                    "ev_type": body.name(), "ev_data": body_json(body)?,
                });
                if let JobEventKind::Progress(p) = body {
                    row["progress"] = json!(true);
                    row["step"] = json!(p.step as i64);
                    row["total"] = json!(p.total as i64);
                    row["info"] = json!(p.info);
                }
                appends.push(row);
            }
            AttemptWrite::Finish { id, epoch, outcome } => {
                let (state, result, error) = match outcome {
                    Finish::Succeeded(v) => (JobState::Succeeded, Some(v.to_string()), None),
                    Finish::Failed(e) => (JobState::Failed, None, Some(e.clone())),
                    Finish::Cancelled => (JobState::Cancelled, None, None),
                };
                let event = body_json(&JobEventKind::Finished { state, error: error.clone() })?;
                // `result` travels as JSON text, so a JSON `null` result stays a JSON null, not SQL NULL.
                finishes.push(json!({
                    "id": id.as_uuid(), "epoch": epoch, "state": state.as_str(),
                    "result": result, "error": error, "ev_data": event,
                }));
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
    let mut out = HashMap::with_capacity(writes.len());
    for row in conn.query_all_raw(stmt).await? {
        let job = JobRecord::try_from(jobs::Model::from_query_result(&row, "")?)?;
        let event_id: i64 = row.try_get("", "event_id")?;
        out.insert(job.id, (job, event_id));
    }
    Ok(out)
}
