//! The PostgreSQL form of the batched attempt writes: each kind of write is one statement of fixed
//! text whose rows arrive as one JSON parameter (`json_to_recordset`), so PostgreSQL parses and plans it
//! once per connection and reuses the prepared statement for every batch, whatever its size. (The
//! portable form in `attempts.rs` writes an `OR` of one condition per row: a new statement text for
//! every batch size, parsed and planned each time.)

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbBackend, EntityTrait, Statement};
use sentinel_domain::{JobEvent, JobEventKind, JobId, JobState};
use serde_json::{Value, json};

use super::{AttemptWrite, Finish, JobRecord};
use crate::DbError;
use crate::entity::jobs;

const START: &str = "UPDATE jobs AS j SET state = $3, epoch = j.epoch + 1, event_seq = j.event_seq + 1, \
     started_at = $1, updated_at = $1 \
     FROM json_to_recordset($2::json) AS v(id uuid, attempt integer, redelivery boolean) \
     WHERE j.id = v.id AND j.attempt = v.attempt AND NOT j.cancel_requested \
     AND (j.state = $4 OR (v.redelivery AND j.state = $3)) \
     RETURNING j.*";

const APPEND: &str = "UPDATE jobs AS j SET event_seq = j.event_seq + 1, updated_at = $1, \
     progress_step = CASE WHEN v.progress THEN v.step ELSE j.progress_step END, \
     progress_total = CASE WHEN v.progress THEN v.total ELSE j.progress_total END, \
     progress_info = CASE WHEN v.progress THEN v.info ELSE j.progress_info END \
     FROM json_to_recordset($2::json) AS v(id uuid, epoch bigint, progress boolean, step bigint, total bigint, info text) \
     WHERE j.id = v.id AND j.epoch = v.epoch AND j.state = $3 \
     RETURNING j.*";

// `result` travels as JSON text, so a JSON `null` result stays a JSON null rather than SQL NULL.
const FINISH: &str = "UPDATE jobs AS j SET state = v.state, result = v.result::json, error = v.error, \
     event_seq = j.event_seq + 1, finished_at = $1, updated_at = $1 \
     FROM json_to_recordset($2::json) AS v(id uuid, epoch bigint, state text, result text, error text) \
     WHERE j.id = v.id AND j.epoch = v.epoch AND j.state = $3 \
     RETURNING j.*";

const EVENTS: &str = "INSERT INTO job_events (job_id, seq, event_type, data, at) \
     SELECT v.job_id, v.seq, v.event_type, v.data, v.at \
     FROM json_to_recordset($1::json) AS v(job_id uuid, seq bigint, event_type text, data json, at timestamptz) \
     RETURNING id, job_id";

async fn returning_rows(
    txn: &DatabaseTransaction,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<(JobId, JobRecord)>, DbError> {
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    let models = jobs::Entity::find().from_raw_sql(stmt).all(txn).await?;
    models.into_iter().map(|m| JobRecord::try_from(m).map(|j| (j.id, j))).collect()
}

pub(super) async fn start(
    txn: &DatabaseTransaction,
    writes: &[&AttemptWrite],
    now: DateTime<Utc>,
) -> Result<Vec<(JobId, JobRecord)>, DbError> {
    let data: Vec<Value> = writes
        .iter()
        .filter_map(|w| match w {
            AttemptWrite::Start { id, attempt, redelivery } => {
                Some(json!({ "id": id.as_uuid(), "attempt": attempt, "redelivery": redelivery }))
            }
            _ => None,
        })
        .collect();
    let values = vec![
        now.into(),
        Value::Array(data).to_string().into(),
        JobState::Running.as_str().into(),
        JobState::Queued.as_str().into(),
    ];
    returning_rows(txn, START, values).await
}

pub(super) async fn append(
    txn: &DatabaseTransaction,
    writes: &[&AttemptWrite],
    now: DateTime<Utc>,
) -> Result<Vec<(JobId, JobRecord)>, DbError> {
    let data: Vec<Value> = writes
        .iter()
        .filter_map(|w| match w {
            AttemptWrite::Append { id, epoch, body: JobEventKind::Progress(p) } => Some(json!({
                "id": id.as_uuid(), "epoch": epoch, "progress": true,
                "step": p.step as i64, "total": p.total as i64, "info": p.info,
            })),
            AttemptWrite::Append { id, epoch, .. } => {
                Some(json!({ "id": id.as_uuid(), "epoch": epoch, "progress": false }))
            }
            _ => None,
        })
        .collect();
    let values = vec![now.into(), Value::Array(data).to_string().into(), JobState::Running.as_str().into()];
    returning_rows(txn, APPEND, values).await
}

pub(super) async fn finish(
    txn: &DatabaseTransaction,
    writes: &[&AttemptWrite],
    now: DateTime<Utc>,
) -> Result<Vec<(JobId, JobRecord)>, DbError> {
    let data: Vec<Value> = writes
        .iter()
        .filter_map(|w| {
            let AttemptWrite::Finish { id, epoch, outcome } = w else { return None };
            let (state, result, error) = match outcome {
                Finish::Succeeded(v) => (JobState::Succeeded, Some(v.to_string()), None),
                Finish::Failed(e) => (JobState::Failed, None, Some(e.clone())),
                Finish::Cancelled => (JobState::Cancelled, None, None),
            };
            Some(json!({ "id": id.as_uuid(), "epoch": epoch, "state": state.as_str(), "result": result, "error": error }))
        })
        .collect();
    let values = vec![now.into(), Value::Array(data).to_string().into(), JobState::Running.as_str().into()];
    returning_rows(txn, FINISH, values).await
}

/// Inserts the events and records each one's position in the deployment-wide log in its `id`.
pub(super) async fn insert_events(txn: &DatabaseTransaction, events: &mut [&mut JobEvent]) -> Result<(), DbError> {
    use sea_orm::ConnectionTrait;
    let data = events
        .iter()
        .map(|ev| {
            let body = serde_json::to_value(&ev.body).map_err(|e| DbError::Corrupt(e.to_string()))?;
            Ok(json!({
                "job_id": ev.job_id.as_uuid(), "seq": ev.seq, "event_type": ev.body.name(),
                "data": body, "at": ev.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            }))
        })
        .collect::<Result<Vec<Value>, DbError>>()?;
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, EVENTS, [Value::Array(data).to_string().into()]);
    let mut ids: HashMap<uuid::Uuid, i64> = HashMap::with_capacity(events.len());
    for row in txn.query_all_raw(stmt).await? {
        ids.insert(row.try_get_by_index::<uuid::Uuid>(1)?, row.try_get_by_index::<i64>(0)?);
    }
    for ev in events.iter_mut() {
        ev.id = ids.get(&ev.job_id.as_uuid()).copied().unwrap_or_default();
    }
    Ok(())
}
