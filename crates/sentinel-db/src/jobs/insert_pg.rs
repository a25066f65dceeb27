//! The PostgreSQL form of a multi-job insert: every new row and its `queued` event in **one
//! statement** whose rows arrive as one JSON parameter (`json_to_recordset`). The portable form (one
//! multi-row INSERT per 500 rows and table, each binding ~25 parameters a row) made the client build
//! and PostgreSQL parse statements of 12,500 placeholders; this text is fixed, so it is parsed once
//! per connection whatever the batch's size.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sentinel_domain::JobEventKind;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::entity::jobs;
use crate::{DbError, unique};

/// `$1` the rows, `$2` now, `$3` the `queued` event's data (JSON sent as text, parsed once as `json`),
/// `$4` whether the rows are published already.
/// Columns not listed keep their defaults (none is set on a new job). The events come from the
/// inserted rows, so they exist exactly when their job does.
const INSERT: &str = "WITH v AS (SELECT * FROM json_to_recordset($1::json) AS v(id uuid, kind text, queue text, \
     priority text, payload json, max_attempts integer, backoff_base_ms bigint, backoff_max_ms bigint, \
     trace_context json, requested_by text, run_at timestamptz, org_id uuid, dedup_key text)), \
     j AS (INSERT INTO jobs (id, kind, queue, priority, payload, state, attempt, max_attempts, backoff_base_ms, \
     backoff_max_ms, epoch, trace_context, requested_by, event_seq, cancel_requested, published, run_at, \
     created_at, updated_at, org_id, dedup_key) \
     SELECT id, kind, queue, priority, payload, 'queued', 1, max_attempts, backoff_base_ms, backoff_max_ms, 0, \
     trace_context, requested_by, 1, false, $4, run_at, $2, $2, org_id, dedup_key FROM v RETURNING id) \
     INSERT INTO job_events (job_id, seq, event_type, data, at) SELECT id, 1, 'queued', $3::json, $2 FROM j \
     RETURNING job_id, id";

/// Inserts `rows` (new jobs, all created at `now`, `published` or not) and their `queued` events on
/// `conn` (a caller's transaction, or a connection: the statement is atomic on its own); answers each
/// job's event id. A taken deduplication key fails the whole statement with `Duplicate`.
pub(super) async fn insert(
    conn: &impl ConnectionTrait,
    rows: &[jobs::Model],
    now: DateTime<Utc>,
    published: bool,
) -> Result<HashMap<Uuid, i64>, DbError> {
    let queued = serde_json::to_string(&JobEventKind::Queued).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let input: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "kind": r.kind, "queue": r.queue, "priority": r.priority, "payload": r.payload,
                "max_attempts": r.max_attempts, "backoff_base_ms": r.backoff_base_ms,
                "backoff_max_ms": r.backoff_max_ms, "trace_context": r.trace_context,
                "requested_by": r.requested_by, "run_at": r.run_at, "org_id": r.org_id, "dedup_key": r.dedup_key,
            })
        })
        .collect();
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT,
        [Value::Array(input).to_string().into(), now.into(), queued.into(), published.into()],
    );
    let answered = conn.query_all_raw(stmt).await.map_err(unique)?;
    let mut ids = HashMap::with_capacity(answered.len());
    for row in answered {
        ids.insert(row.try_get::<Uuid>("", "job_id")?, row.try_get::<i64>("", "id")?);
    }
    if ids.len() != rows.len() {
        return Err(DbError::Corrupt(format!("{} of {} jobs inserted", ids.len(), rows.len())));
    }
    Ok(ids)
}
