//! The monitoring store: HTTP targets (their specification, deadline, lease and latest state), the
//! raw result of each deadline, and the rollups uptime and percentiles are read from.

mod conditions;
mod dashboard;
mod dispatch;
mod heartbeats;
mod incidents;
mod ingest;
mod labels;
mod rollups;
mod thresholds;
mod transitions;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use sentinel_domain::monitoring::alerts::AlertState;
use sentinel_domain::monitoring::{CheckStatus, ErrorClass, TargetSpec, first_due, targets::normalize_url};
use uuid::Uuid;

pub(crate) use conditions::{backup_outcome, provisioning_outcome};
pub use dashboard::DashboardCounts;
pub use dispatch::{CheckResult, ClaimedCheck, RecordOutcome, Recorded};
pub use heartbeats::{HeartbeatRecord, PINGS_KEPT, PingInput, PingReceipt, PingRecord};
pub use incidents::{AlertFilter, AlertRecord, IncidentEvent, IncidentFilter, IncidentRecord, StreamEntry};
pub use ingest::{IngestOutcome, MachineRecord, MetricRecord, SamplePoint};
pub use rollups::{RollupReport, Uptime, UptimeWindow};
pub use thresholds::SweepReport;
pub use transitions::AlertChange;

/// Adds an entry to an incident's timeline (for other capabilities' stores).
pub(crate) async fn add_incident_event(
    conn: &impl sea_orm::ConnectionTrait,
    incident: Uuid,
    at: DateTime<Utc>,
    kind: &str,
    text: Option<String>,
) -> Result<(), DbError> {
    incidents::add_event(conn, incident, at, kind, None, text).await
}

use crate::entity::{monitor_check_results, monitor_targets};
use crate::secrets::{SecretChange, apply_secret};
use crate::{DbError, SecretStore, unique};

/// A target's latest observed state.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetState {
    pub last_status: Option<CheckStatus>,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub last_error_class: Option<ErrorClass>,
    pub last_status_code: Option<u16>,
    pub last_response_ms: Option<f64>,
    pub last_message: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// ok, firing or flapping.
    pub alert_state: AlertState,
    pub open_alert_id: Option<Uuid>,
}

/// An HTTP target as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub spec: TargetSpec,
    pub next_due_at: DateTime<Utc>,
    pub state: TargetState,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn corrupt(id: Uuid, what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("monitor target {id}: {what}: {e}"))
}

impl TryFrom<monitor_targets::Model> for TargetRecord {
    type Error = DbError;
    fn try_from(m: monitor_targets::Model) -> Result<Self, DbError> {
        let id = m.id;
        let spec: TargetSpec = serde_json::from_value(m.spec).map_err(|e| corrupt(id, "spec", e))?;
        Ok(Self {
            id,
            org_id: m.org_id,
            spec,
            next_due_at: m.next_due_at,
            state: TargetState {
                last_status: m
                    .last_status
                    .map(|s| CheckStatus::parse(&s))
                    .transpose()
                    .map_err(|e| corrupt(id, "status", e))?,
                last_checked_at: m.last_checked_at,
                last_error_class: m
                    .last_error_class
                    .map(|s| ErrorClass::parse(&s))
                    .transpose()
                    .map_err(|e| corrupt(id, "error class", e))?,
                last_status_code: m.last_status_code.and_then(|c| u16::try_from(c).ok()),
                last_response_ms: m.last_response_ms,
                last_message: m.last_message,
                cert_expires_at: m.cert_expires_at,
                consecutive_failures: u32::try_from(m.consecutive_failures).unwrap_or(0),
                consecutive_successes: u32::try_from(m.consecutive_successes).unwrap_or(0),
                alert_state: AlertState::parse(&m.alert_state).map_err(|e| corrupt(id, "alert state", e))?,
                open_alert_id: m.open_alert_id,
            },
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// Which targets a list shows.
#[derive(Debug, Clone, Default)]
pub struct TargetFilter {
    pub active: Option<bool>,
    pub status: Option<CheckStatus>,
    pub server_id: Option<Uuid>,
    /// A case-sensitive substring of the name or URL.
    pub search: Option<String>,
}

fn spec_json(spec: &TargetSpec) -> Result<serde_json::Value, DbError> {
    serde_json::to_value(spec).map_err(|e| DbError::Corrupt(format!("cannot encode a target: {e}")))
}

/// Who owns a target's sealed headers (deleted with it; checked when the worker opens them).
pub fn target_secret_owner(id: Uuid) -> String {
    format!("monitor_target:{id}")
}

fn url_key(spec: &TargetSpec) -> String {
    normalize_url(&spec.url).unwrap_or_else(|| spec.url.trim().to_owned())
}

#[derive(Clone, Debug)]
pub struct MonitoringStore {
    conn: DatabaseConnection,
}

impl MonitoringStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Stores a target, its first deadline spread inside its interval, and the sealed secret its
    /// `sealed_headers` name (`headers`: `Set`, or `Keep` for none). `Duplicate` when the
    /// organization already has its URL (see [`MonitoringStore::target_by_url`]).
    pub async fn create_target(
        &self,
        org: Uuid,
        spec: TargetSpec,
        actor: &str,
        headers: SecretChange,
    ) -> Result<TargetRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let id = Uuid::now_v7();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        apply_secret(&txn, org, &target_secret_owner(id), None, headers).await?;
        let model = monitor_targets::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(spec.name.clone()),
            url: Set(spec.url.trim().to_owned()),
            url_key: Set(url_key(&spec)),
            spec: Set(spec_json(&spec)?),
            is_active: Set(spec.is_active),
            check_interval_seconds: Set(i32::try_from(spec.check_interval_seconds).unwrap_or(i32::MAX)),
            server_id: Set(spec.server_id),
            next_due_at: Set(first_due(now, spec.check_interval_seconds, id.as_u128())),
            claimed_until: Set(None),
            claimed_by: Set(None),
            last_status: Set(None),
            last_checked_at: Set(None),
            last_error_class: Set(None),
            last_status_code: Set(None),
            last_response_ms: Set(None),
            last_message: Set(None),
            cert_expires_at: Set(None),
            consecutive_failures: Set(0),
            consecutive_successes: Set(0),
            alert_state: Set(AlertState::Ok.as_str().to_owned()),
            recent_results: Set(0),
            open_alert_id: Set(None),
            created_by: Set(Some(actor.to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(unique)?;
        txn.commit().await?;
        model.try_into()
    }

    /// Replaces a target's specification. A new interval (or a target switched on) gets a new
    /// first deadline; otherwise the schedule keeps its phase. `Duplicate` when the new URL is taken.
    /// Pausing a target resolves its firing alerts (by `actor`): a paused target raises nothing.
    pub async fn update_target(
        &self,
        old: &TargetRecord,
        spec: TargetSpec,
        actor: &str,
        headers: SecretChange,
    ) -> Result<TargetRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let old_secret = old.spec.sealed_headers.as_ref().map(|h| h.secret_id);
        apply_secret(&txn, old.org_id, &target_secret_owner(old.id), old_secret, headers).await?;
        if old.spec.is_active && !spec.is_active {
            incidents::resolve_source_alerts(&txn, old.id, actor, "target paused", now).await?;
        }
        let reschedule =
            spec.check_interval_seconds != old.spec.check_interval_seconds || (spec.is_active && !old.spec.is_active);
        let mut update = monitor_targets::Entity::update_many()
            .col_expr(monitor_targets::Column::Name, Expr::value(spec.name.clone()))
            .col_expr(monitor_targets::Column::Url, Expr::value(spec.url.trim().to_owned()))
            .col_expr(monitor_targets::Column::UrlKey, Expr::value(url_key(&spec)))
            .col_expr(monitor_targets::Column::Spec, Expr::value(spec_json(&spec)?))
            .col_expr(monitor_targets::Column::IsActive, Expr::value(spec.is_active))
            .col_expr(
                monitor_targets::Column::CheckIntervalSeconds,
                Expr::value(i32::try_from(spec.check_interval_seconds).unwrap_or(i32::MAX)),
            )
            .col_expr(monitor_targets::Column::ServerId, Expr::value(spec.server_id))
            .col_expr(monitor_targets::Column::UpdatedAt, Expr::value(now));
        if reschedule {
            let due = first_due(now, spec.check_interval_seconds, old.id.as_u128());
            update = update.col_expr(monitor_targets::Column::NextDueAt, Expr::value(due));
        }
        update.filter(monitor_targets::Column::Id.eq(old.id)).exec(&txn).await.map_err(unique)?;
        txn.commit().await?;
        self.target(old.org_id, old.id).await?.ok_or_else(|| DbError::NotFound(format!("monitor target {}", old.id)))
    }

    pub async fn target(&self, org: Uuid, id: Uuid) -> Result<Option<TargetRecord>, DbError> {
        monitor_targets::Entity::find_by_id(id)
            .filter(monitor_targets::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// The organization's target for `url` (normalized as duplicates are), if any.
    pub async fn target_by_url(&self, org: Uuid, url: &str) -> Result<Option<TargetRecord>, DbError> {
        let key = normalize_url(url).unwrap_or_else(|| url.trim().to_owned());
        monitor_targets::Entity::find()
            .filter(monitor_targets::Column::OrgId.eq(org))
            .filter(monitor_targets::Column::UrlKey.eq(key))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// A page of the organization's targets in id (creation) order after `after`.
    pub async fn targets(
        &self,
        org: Uuid,
        filter: &TargetFilter,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<TargetRecord>, DbError> {
        use monitor_targets::Column as C;
        let mut q = monitor_targets::Entity::find().filter(C::OrgId.eq(org));
        if let Some(active) = filter.active {
            q = q.filter(C::IsActive.eq(active));
        }
        if let Some(status) = filter.status {
            q = q.filter(C::LastStatus.eq(status.as_str()));
        }
        if let Some(server) = filter.server_id {
            q = q.filter(C::ServerId.eq(server));
        }
        if let Some(s) = &filter.search {
            q = q.filter(Condition::any().add(C::Name.contains(s)).add(C::Url.contains(s)));
        }
        if let Some(cursor) = after {
            q = q.filter(C::Id.gt(cursor));
        }
        q.order_by_asc(C::Id).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }

    /// Deletes a target with its results and rollups; its firing alerts resolve (by `actor`).
    pub async fn delete_target(&self, target: &TargetRecord, actor: &str) -> Result<(), DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        incidents::resolve_source_alerts(&txn, target.id, actor, "target deleted", Utc::now().trunc_subsecs(6)).await?;
        SecretStore::delete_owned_in(&txn, &target_secret_owner(target.id)).await?;
        monitor_targets::Entity::delete_by_id(target.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A page of one target's raw results, newest deadline first, before the cursor `before`.
    pub async fn results(
        &self,
        target: Uuid,
        before: Option<DateTime<Utc>>,
        since: Option<DateTime<Utc>>,
        limit: u64,
    ) -> Result<Vec<CheckResult>, DbError> {
        use monitor_check_results::Column as C;
        let mut q = monitor_check_results::Entity::find().filter(C::TargetId.eq(target));
        if let Some(b) = before {
            q = q.filter(C::DueAt.lt(b));
        }
        if let Some(s) = since {
            q = q.filter(C::DueAt.gte(s));
        }
        q.order_by_desc(C::DueAt).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }
}
