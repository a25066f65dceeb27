//! The outbox: each row is one notification for one channel. A replica claims a due row with a
//! lease (compare-and-set), sends it, and marks it delivered only if it still holds the lease; a row
//! whose holder died is taken over when the lease runs out and sent again with the same idempotency
//! key. A group's notifications reach a channel in order: a row waits while an earlier one of its
//! group and channel is undelivered. The rows are the notification log.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::Value;
use uuid::Uuid;

use super::NotifyStore;
use crate::DbError;
use crate::entity::notify_outbox;

/// A notification claimed for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub org_id: Uuid,
    pub channel_id: Uuid,
    pub idempotency_key: String,
    /// firing, resolved, repeat or test.
    pub status: String,
    pub payload: Value,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it (its HTTP status or SMTP reply code).
    Delivered { status: Option<i32> },
    /// It did not; try again at `retry_at` (or give up when `None`).
    Failed { status: Option<i32>, error: String, retry_at: Option<DateTime<Utc>> },
}

/// One entry of the notification log.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub group_id: Option<Uuid>,
    pub sequence: i64,
    pub incident_id: Option<Uuid>,
    pub idempotency_key: String,
    pub status: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_status: Option<i32>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<notify_outbox::Model> for NotificationRecord {
    fn from(m: notify_outbox::Model) -> Self {
        Self {
            next_attempt_at: (m.state == "pending").then_some(m.next_attempt_at),
            id: m.id,
            channel_id: m.channel_id,
            group_id: m.group_id,
            sequence: m.seq,
            incident_id: m.incident_id,
            idempotency_key: m.idempotency_key,
            status: m.status,
            state: m.state,
            attempts: m.attempts,
            last_error: m.last_error,
            last_status: m.last_status,
            payload: m.payload,
            created_at: m.created_at,
            delivered_at: m.delivered_at,
        }
    }
}

/// Filters of the notification log.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub channel_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
    pub state: Option<String>,
}

/// A new outbox row (written by the evaluation, or by a channel test).
pub(super) struct NewNotification {
    pub org_id: Uuid,
    pub group_id: Option<Uuid>,
    pub seq: i64,
    pub channel_id: Uuid,
    pub idempotency_key: String,
    pub status: &'static str,
    pub incident_id: Option<Uuid>,
    pub payload: Value,
}

pub(super) fn row(n: NewNotification, now: DateTime<Utc>) -> notify_outbox::ActiveModel {
    notify_outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(n.org_id),
        group_id: Set(n.group_id),
        seq: Set(n.seq),
        channel_id: Set(n.channel_id),
        idempotency_key: Set(n.idempotency_key),
        status: Set(n.status.to_owned()),
        incident_id: Set(n.incident_id),
        payload: Set(n.payload),
        state: Set("pending".to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_owner: Set(None),
        lease_until: Set(None),
        last_error: Set(None),
        last_status: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
    }
}

fn claimable(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(notify_outbox::Column::State.eq("pending"))
        .add(notify_outbox::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(notify_outbox::Column::LeaseUntil.is_null())
                .add(notify_outbox::Column::LeaseUntil.lt(now)),
        )
}

impl NotifyStore {
    /// Claims up to `limit` due notifications for `owner` for `lease`: each is the earliest
    /// undelivered one of its group and channel.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, DbError> {
        let now = now.trunc_subsecs(6);
        let candidates = notify_outbox::Entity::find()
            .filter(claimable(now))
            .order_by_asc(notify_outbox::Column::NextAttemptAt)
            .limit(limit)
            .all(&self.conn)
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // The earliest undelivered sequence of each (group, channel) the candidates belong to: one
        // query for the batch; only that row of each may go.
        let groups: Vec<Uuid> =
            candidates.iter().filter_map(|c| c.group_id).collect::<HashSet<_>>().into_iter().collect();
        let mut earliest: HashMap<(Uuid, Uuid), i64> = HashMap::new();
        for chunk in groups.chunks(1000) {
            let rows: Vec<(Option<Uuid>, Uuid, Option<i64>)> = notify_outbox::Entity::find()
                .select_only()
                .column(notify_outbox::Column::GroupId)
                .column(notify_outbox::Column::ChannelId)
                .column_as(notify_outbox::Column::Seq.min(), "first")
                .filter(notify_outbox::Column::State.eq("pending"))
                .filter(notify_outbox::Column::GroupId.is_in(chunk.to_vec()))
                .group_by(notify_outbox::Column::GroupId)
                .group_by(notify_outbox::Column::ChannelId)
                .into_tuple()
                .all(&self.conn)
                .await?;
            for (g, c, first) in rows {
                if let (Some(g), Some(first)) = (g, first) {
                    earliest.insert((g, c), first);
                }
            }
        }
        let ready: Vec<Uuid> = candidates
            .iter()
            .filter(|c| c.group_id.is_none_or(|g| earliest.get(&(g, c.channel_id)).is_none_or(|&f| f == c.seq)))
            .map(|c| c.id)
            .collect();
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        // One compare-and-set for the batch; what this claimant got is what carries its lease.
        let until = now + lease;
        notify_outbox::Entity::update_many()
            .col_expr(notify_outbox::Column::LeaseOwner, Expr::value(owner))
            .col_expr(notify_outbox::Column::LeaseUntil, Expr::value(until))
            .col_expr(notify_outbox::Column::Attempts, Expr::col(notify_outbox::Column::Attempts).add(1))
            .filter(notify_outbox::Column::Id.is_in(ready.clone()))
            .filter(claimable(now))
            .exec(&self.conn)
            .await?;
        let claimed = notify_outbox::Entity::find()
            .filter(notify_outbox::Column::Id.is_in(ready))
            .filter(notify_outbox::Column::LeaseOwner.eq(owner))
            .filter(notify_outbox::Column::LeaseUntil.eq(until))
            .filter(notify_outbox::Column::State.eq("pending"))
            .order_by_asc(notify_outbox::Column::NextAttemptAt)
            .all(&self.conn)
            .await?;
        Ok(claimed
            .into_iter()
            .map(|c| Delivery {
                id: c.id,
                org_id: c.org_id,
                channel_id: c.channel_id,
                idempotency_key: c.idempotency_key,
                status: c.status,
                payload: c.payload,
                attempt: c.attempts,
                created_at: c.created_at,
            })
            .collect())
    }

    /// Records how an attempt ended, if `owner` still holds the notification (false: another
    /// replica took it over, and its outcome counts).
    pub async fn finish_delivery(
        &self,
        id: Uuid,
        owner: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let mut q = notify_outbox::Entity::update_many()
            .col_expr(notify_outbox::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(notify_outbox::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None));
        q = match outcome {
            DeliveryOutcome::Delivered { status } => q
                .col_expr(notify_outbox::Column::State, Expr::value("delivered"))
                .col_expr(notify_outbox::Column::DeliveredAt, Expr::value(now.trunc_subsecs(6)))
                .col_expr(notify_outbox::Column::LastStatus, Expr::value(*status))
                .col_expr(notify_outbox::Column::LastError, Expr::value(Option::<String>::None)),
            DeliveryOutcome::Failed { status, error, retry_at } => {
                let q = q.col_expr(notify_outbox::Column::LastStatus, Expr::value(*status)).col_expr(
                    notify_outbox::Column::LastError,
                    Expr::value(error.chars().take(2000).collect::<String>()),
                );
                match retry_at {
                    Some(at) => q.col_expr(notify_outbox::Column::NextAttemptAt, Expr::value(at.trunc_subsecs(6))),
                    None => q.col_expr(notify_outbox::Column::State, Expr::value("failed")),
                }
            }
        };
        Ok(q.filter(notify_outbox::Column::Id.eq(id))
            .filter(notify_outbox::Column::LeaseOwner.eq(owner))
            .filter(notify_outbox::Column::State.eq("pending"))
            .exec(&self.conn)
            .await?
            .rows_affected
            == 1)
    }

    /// Records a channel test that was sent directly (it never waits in the outbox).
    pub async fn record_test(
        &self,
        org: Uuid,
        channel: Uuid,
        idempotency_key: &str,
        payload: Value,
        outcome: &DeliveryOutcome,
    ) -> Result<Uuid, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let mut m = row(
            NewNotification {
                org_id: org,
                group_id: None,
                seq: 0,
                channel_id: channel,
                idempotency_key: idempotency_key.to_owned(),
                status: "test",
                incident_id: None,
                payload,
            },
            now,
        );
        m.attempts = Set(1);
        match outcome {
            DeliveryOutcome::Delivered { status } => {
                m.state = Set("delivered".to_owned());
                m.delivered_at = Set(Some(now));
                m.last_status = Set(*status);
            }
            DeliveryOutcome::Failed { status, error, .. } => {
                m.state = Set("failed".to_owned());
                m.last_status = Set(*status);
                m.last_error = Set(Some(error.chars().take(2000).collect()));
            }
        }
        Ok(m.insert(&self.conn).await?.id)
    }

    /// Deletes delivered and given-up notifications queued before `cutoff` (retention); pending
    /// ones stay whatever their age. Returns how many went.
    pub async fn delete_finished_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DbError> {
        Ok(notify_outbox::Entity::delete_many()
            .filter(notify_outbox::Column::State.ne("pending"))
            .filter(notify_outbox::Column::CreatedAt.lt(cutoff))
            .exec(&self.conn)
            .await?
            .rows_affected)
    }

    /// One log entry of `org`.
    pub async fn notification(&self, org: Uuid, id: Uuid) -> Result<Option<NotificationRecord>, DbError> {
        Ok(notify_outbox::Entity::find_by_id(id)
            .filter(notify_outbox::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(NotificationRecord::from))
    }

    /// The notification log of `org`, newest first, before the cursor.
    pub async fn notifications(
        &self,
        org: Uuid,
        filter: &LogFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<NotificationRecord>, DbError> {
        let mut q = notify_outbox::Entity::find().filter(notify_outbox::Column::OrgId.eq(org));
        if let Some(c) = filter.channel_id {
            q = q.filter(notify_outbox::Column::ChannelId.eq(c));
        }
        if let Some(i) = filter.incident_id {
            q = q.filter(notify_outbox::Column::IncidentId.eq(i));
        }
        if let Some(s) = &filter.state {
            q = q.filter(notify_outbox::Column::State.eq(s.as_str()));
        }
        if let Some(b) = before {
            q = q.filter(notify_outbox::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(notify_outbox::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(NotificationRecord::from)
            .collect())
    }
}
