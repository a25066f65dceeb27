//! Each server's history: one row per action (import, edit, status change, reservation, release,
//! expiry, a run's outcome) with who did it, what changed (before → after) and the job, if a job did it.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use sentinel_domain::JobId;
use serde_json::Value;
use uuid::Uuid;

use super::{InventoryStore, ServerRecord};
use crate::DbError;
use crate::entity::server_history;

/// One action on a server.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    pub id: i64,
    pub server_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub job_id: Option<JobId>,
    pub detail: Option<String>,
}

impl From<server_history::Model> for HistoryRecord {
    fn from(m: server_history::Model) -> Self {
        Self {
            id: m.id,
            server_id: m.server_id,
            at: m.at,
            actor: m.actor,
            action: m.action,
            before: m.before,
            after: m.after,
            job_id: m.job_id.map(JobId::from_uuid),
            detail: m.detail,
        }
    }
}

/// The history row of an action that took `before` to `after` (`before = None`: the server was created).
pub(crate) fn entry(
    before: Option<&ServerRecord>,
    after: &ServerRecord,
    actor: &str,
    action: &str,
    job_id: Option<JobId>,
    detail: Option<String>,
) -> server_history::ActiveModel {
    let (before, after_json) = match before {
        Some(b) => {
            let (b, a) = b.diff(after);
            (Some(b), a)
        }
        None => (None, serde_json::to_value(after.snapshot()).unwrap_or(Value::Null)),
    };
    server_history::ActiveModel {
        server_id: Set(after.id),
        org_id: Set(after.org_id),
        at: Set(after.updated_at),
        actor: Set(actor.chars().take(256).collect()),
        action: Set(action.to_owned()),
        before: Set(before),
        after: Set(Some(after_json)),
        job_id: Set(job_id.map(|j| j.as_uuid())),
        detail: Set(detail),
        ..Default::default()
    }
}

/// Rows per multi-row history insert (each binds 9 parameters).
const HISTORY_CHUNK: usize = 1000;

pub(crate) async fn insert_all(
    conn: &impl ConnectionTrait,
    rows: Vec<server_history::ActiveModel>,
) -> Result<(), DbError> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(HISTORY_CHUNK).collect();
        server_history::Entity::insert_many(chunk).exec_without_returning(conn).await?;
    }
    Ok(())
}

impl InventoryStore {
    /// A server's history, newest first, before the cursor `before_id`.
    pub async fn history(
        &self,
        server_id: Uuid,
        before_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<HistoryRecord>, DbError> {
        let mut q = server_history::Entity::find().filter(server_history::Column::ServerId.eq(server_id));
        if let Some(cursor) = before_id {
            q = q.filter(server_history::Column::Id.lt(cursor));
        }
        Ok(q.order_by_desc(server_history::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(HistoryRecord::from)
            .collect())
    }
}
