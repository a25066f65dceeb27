//! The operator's side of alerting: each organization's settings, the alerts and incidents lists
//! (filtered, newest first, by cursor), one incident with its alerts and timeline, and the actions —
//! acknowledge, resolve, add a note — each written to the timeline with who did it.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::monitoring::alerts::{AlertState, ClientSettings, IncidentState, Severity};
use uuid::Uuid;

use super::MonitoringStore;
use crate::DbError;
use crate::entity::{
    monitor_alerts, monitor_incident_events, monitor_incidents, monitor_machines, monitor_metrics, monitor_settings,
    monitor_targets,
};

/// An alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub source_kind: String,
    pub source_id: Uuid,
    pub rule: String,
    pub severity: Severity,
    pub firing: bool,
    pub flapping: bool,
    pub message: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// What routing and muting match on.
    pub labels: sentinel_domain::notify::Labels,
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub title: String,
    pub severity: Severity,
    pub state: IncidentState,
    pub flapping: bool,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Null when it resolved by itself.
    pub resolved_by: Option<String>,
    /// The job whose expected disruption keeps this incident from paging (`job:<id>`).
    pub suppressed_by: Option<String>,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor: Option<String>,
    pub text: Option<String>,
}

/// One entry of the organization's monitoring stream: a timeline entry with its incident.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub event: IncidentEvent,
    pub incident_id: Uuid,
    pub title: String,
    pub state: String,
    pub severity: String,
    pub flapping: bool,
}

/// Which alerts or incidents a list shows.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub firing: Option<bool>,
    pub severity: Option<Severity>,
    pub source_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<IncidentState>,
    pub severity: Option<Severity>,
}

fn corrupt(what: &str, e: String) -> DbError {
    DbError::Corrupt(format!("{what}: {e}"))
}

impl TryFrom<monitor_alerts::Model> for AlertRecord {
    type Error = DbError;
    fn try_from(m: monitor_alerts::Model) -> Result<Self, DbError> {
        Ok(Self {
            severity: Severity::parse(&m.severity).map_err(|e| corrupt("alert severity", e))?,
            firing: m.state == "firing",
            id: m.id,
            incident_id: m.incident_id,
            source_kind: m.source_kind,
            source_id: m.source_id,
            rule: m.rule,
            flapping: m.flapping,
            message: m.message,
            opened_at: m.opened_at,
            resolved_at: m.resolved_at,
            labels: m.labels.and_then(|l| serde_json::from_value(l).ok()).unwrap_or_default(),
        })
    }
}

impl TryFrom<monitor_incidents::Model> for IncidentRecord {
    type Error = DbError;
    fn try_from(m: monitor_incidents::Model) -> Result<Self, DbError> {
        Ok(Self {
            severity: Severity::parse(&m.severity).map_err(|e| corrupt("incident severity", e))?,
            state: IncidentState::parse(&m.state).map_err(|e| corrupt("incident state", e))?,
            id: m.id,
            org_id: m.org_id,
            title: m.title,
            flapping: m.flapping,
            opened_at: m.opened_at,
            acknowledged_at: m.acknowledged_at,
            acknowledged_by: m.acknowledged_by,
            resolved_at: m.resolved_at,
            resolved_by: m.resolved_by,
            suppressed_by: m.suppressed_by,
        })
    }
}

/// The organization's settings (the defaults until they are first saved).
pub(super) async fn settings_in(conn: &impl ConnectionTrait, org: Uuid) -> Result<ClientSettings, DbError> {
    let Some(m) = monitor_settings::Entity::find_by_id(org).one(conn).await? else {
        return Ok(ClientSettings::default());
    };
    let n = |v: i32| u32::try_from(v).unwrap_or(1);
    Ok(ClientSettings {
        notification_email: m.notification_email,
        heartbeat_threshold_minutes: n(m.heartbeat_threshold_minutes),
        consecutive_failures_threshold: n(m.consecutive_failures_threshold),
        consecutive_successes_threshold: n(m.consecutive_successes_threshold),
        alert_grouping_enabled: m.alert_grouping_enabled,
    })
}

/// Appends an entry to an incident's timeline.
pub(super) async fn add_event(
    conn: &impl ConnectionTrait,
    incident: Uuid,
    at: DateTime<Utc>,
    kind: &str,
    actor: Option<String>,
    text: Option<String>,
) -> Result<(), DbError> {
    monitor_incident_events::ActiveModel {
        incident_id: Set(incident),
        at: Set(at),
        kind: Set(kind.to_owned()),
        actor: Set(actor),
        text: Set(text),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Resolves every firing alert of `source` (a target paused or deleted), each with a note saying why.
pub(super) async fn resolve_source_alerts(
    txn: &DatabaseTransaction,
    source: Uuid,
    actor: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let firing = monitor_alerts::Entity::find()
        .filter(monitor_alerts::Column::SourceId.eq(source))
        .filter(monitor_alerts::Column::State.eq("firing"))
        .all(txn)
        .await?;
    for alert in firing {
        add_event(txn, alert.incident_id, now, "note", Some(actor.to_owned()), Some(why.to_owned())).await?;
        super::transitions::resolve_alert(txn, alert.id, Some(actor), now).await?;
    }
    monitor_targets::Entity::update_many()
        .col_expr(monitor_targets::Column::AlertState, Expr::value(AlertState::Ok.as_str()))
        .col_expr(monitor_targets::Column::OpenAlertId, Expr::value(Option::<Uuid>::None))
        .filter(monitor_targets::Column::Id.eq(source))
        .exec(txn)
        .await?;
    Ok(())
}

/// Forgets an alert resolved by hand on its source, so a source still failing opens a new one.
async fn release_source(txn: &DatabaseTransaction, alert: &monitor_alerts::Model) -> Result<(), DbError> {
    let none = Option::<Uuid>::None;
    match alert.source_kind.as_str() {
        "target" => {
            monitor_targets::Entity::update_many()
                .col_expr(monitor_targets::Column::AlertState, Expr::value(AlertState::Ok.as_str()))
                .col_expr(monitor_targets::Column::OpenAlertId, Expr::value(none))
                .filter(monitor_targets::Column::Id.eq(alert.source_id))
                .filter(monitor_targets::Column::OpenAlertId.eq(alert.id))
                .exec(txn)
                .await?;
        }
        "metric" => {
            monitor_metrics::Entity::update_many()
                .col_expr(monitor_metrics::Column::OpenAlertId, Expr::value(none))
                .filter(monitor_metrics::Column::Id.eq(alert.source_id))
                .filter(monitor_metrics::Column::OpenAlertId.eq(alert.id))
                .exec(txn)
                .await?;
        }
        "machine" => {
            monitor_machines::Entity::update_many()
                .col_expr(monitor_machines::Column::SilentAlertId, Expr::value(none))
                .filter(monitor_machines::Column::Id.eq(alert.source_id))
                .filter(monitor_machines::Column::SilentAlertId.eq(alert.id))
                .exec(txn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

fn count(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl MonitoringStore {
    pub async fn settings(&self, org: Uuid) -> Result<ClientSettings, DbError> {
        settings_in(&self.conn, org).await
    }

    /// Replaces the organization's settings.
    pub async fn replace_settings(&self, org: Uuid, s: &ClientSettings, actor: &str) -> Result<(), DbError> {
        use monitor_settings::Column as C;
        let row = monitor_settings::ActiveModel {
            org_id: Set(org),
            notification_email: Set(s.notification_email.clone()),
            heartbeat_threshold_minutes: Set(count(s.heartbeat_threshold_minutes)),
            consecutive_failures_threshold: Set(count(s.consecutive_failures_threshold)),
            consecutive_successes_threshold: Set(count(s.consecutive_successes_threshold)),
            alert_grouping_enabled: Set(s.alert_grouping_enabled),
            updated_by: Set(Some(actor.to_owned())),
            updated_at: Set(Utc::now().trunc_subsecs(6)),
        };
        monitor_settings::Entity::insert(row)
            .on_conflict(
                OnConflict::column(C::OrgId)
                    .update_columns([
                        C::NotificationEmail,
                        C::HeartbeatThresholdMinutes,
                        C::ConsecutiveFailuresThreshold,
                        C::ConsecutiveSuccessesThreshold,
                        C::AlertGroupingEnabled,
                        C::UpdatedBy,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.conn)
            .await?;
        Ok(())
    }

    /// A page of the organization's alerts, newest first, before the cursor `before`.
    pub async fn alerts(
        &self,
        org: Uuid,
        filter: &AlertFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<AlertRecord>, DbError> {
        use monitor_alerts::Column as C;
        let mut q = monitor_alerts::Entity::find().filter(C::OrgId.eq(org));
        if let Some(firing) = filter.firing {
            q = q.filter(C::State.eq(if firing { "firing" } else { "resolved" }));
        }
        if let Some(s) = filter.severity {
            q = q.filter(C::Severity.eq(s.as_str()));
        }
        if let Some(source) = filter.source_id {
            q = q.filter(C::SourceId.eq(source));
        }
        if let Some(b) = before {
            q = q.filter(C::Id.lt(b));
        }
        q.order_by_desc(C::Id).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }

    /// A page of the organization's incidents, newest first, before the cursor `before`.
    pub async fn incidents(
        &self,
        org: Uuid,
        filter: &IncidentFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<IncidentRecord>, DbError> {
        use monitor_incidents::Column as C;
        let mut q = monitor_incidents::Entity::find().filter(C::OrgId.eq(org));
        if let Some(s) = filter.state {
            q = q.filter(C::State.eq(s.as_str()));
        }
        if let Some(s) = filter.severity {
            q = q.filter(C::Severity.eq(s.as_str()));
        }
        if let Some(b) = before {
            q = q.filter(C::Id.lt(b));
        }
        q.order_by_desc(C::Id).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn incident(&self, org: Uuid, id: Uuid) -> Result<Option<IncidentRecord>, DbError> {
        monitor_incidents::Entity::find_by_id(id)
            .filter(monitor_incidents::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// An incident's alerts and its timeline (oldest first, the first `limit` entries).
    pub async fn incident_details(
        &self,
        id: Uuid,
        limit: u64,
    ) -> Result<(Vec<AlertRecord>, Vec<IncidentEvent>), DbError> {
        let alerts = monitor_alerts::Entity::find()
            .filter(monitor_alerts::Column::IncidentId.eq(id))
            .order_by_asc(monitor_alerts::Column::Id)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<Vec<_>, _>>()?;
        let events = monitor_incident_events::Entity::find()
            .filter(monitor_incident_events::Column::IncidentId.eq(id))
            .order_by_asc(monitor_incident_events::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|m| IncidentEvent { id: m.id, at: m.at, kind: m.kind, actor: m.actor, text: m.text })
            .collect();
        Ok((alerts, events))
    }

    /// Moves an incident to `next` (acknowledged or resolved) by `actor`. `Conflict` when its state
    /// does not allow it. Resolving by hand resolves its firing alerts too; a target still failing
    /// then opens a new incident at its next check.
    pub async fn move_incident(
        &self,
        incident: &IncidentRecord,
        next: IncidentState,
        actor: &str,
        note: Option<String>,
    ) -> Result<(), DbError> {
        use monitor_incidents::Column as C;
        if !incident.state.can_become(next) {
            return Err(DbError::Conflict(format!(
                "incident is {}: it cannot become {}",
                incident.state.as_str(),
                next.as_str()
            )));
        }
        let now = Utc::now().trunc_subsecs(6);
        let txn: DatabaseTransaction = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut update = monitor_incidents::Entity::update_many()
            .col_expr(C::State, Expr::value(next.as_str()))
            .col_expr(C::UpdatedAt, Expr::value(now));
        update = match next {
            IncidentState::Acknowledged => update
                .col_expr(C::AcknowledgedAt, Expr::value(now))
                .col_expr(C::AcknowledgedBy, Expr::value(actor.to_owned())),
            _ => {
                update.col_expr(C::ResolvedAt, Expr::value(now)).col_expr(C::ResolvedBy, Expr::value(actor.to_owned()))
            }
        };
        let moved =
            update.filter(C::Id.eq(incident.id)).filter(C::State.eq(incident.state.as_str())).exec(&txn).await?;
        if moved.rows_affected == 0 {
            return Err(DbError::Conflict("the incident changed meanwhile; read it again".to_owned()));
        }
        if next == IncidentState::Resolved {
            let firing = monitor_alerts::Entity::find()
                .filter(monitor_alerts::Column::IncidentId.eq(incident.id))
                .filter(monitor_alerts::Column::State.eq("firing"))
                .all(&txn)
                .await?;
            for alert in firing {
                super::transitions::resolve_alert(&txn, alert.id, Some(actor), now).await?;
                release_source(&txn, &alert).await?;
            }
        }
        add_event(&txn, incident.id, now, next.as_str(), Some(actor.to_owned()), note).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The organization's timeline entries after `after` (an entry id), oldest first: every
    /// transition of its alerts and incidents, resumable by id.
    pub async fn stream_after(&self, org: Uuid, after: i64, limit: u64) -> Result<Vec<StreamEntry>, DbError> {
        use monitor_incident_events::Column as E;
        use monitor_incidents::Column as I;
        use sea_orm::sea_query::{ExprTrait, Query};
        let mut q = Query::select();
        q.columns([
            (monitor_incident_events::Entity, E::Id),
            (monitor_incident_events::Entity, E::IncidentId),
            (monitor_incident_events::Entity, E::At),
            (monitor_incident_events::Entity, E::Kind),
            (monitor_incident_events::Entity, E::Actor),
            (monitor_incident_events::Entity, E::Text),
        ])
        .columns([
            (monitor_incidents::Entity, I::Title),
            (monitor_incidents::Entity, I::State),
            (monitor_incidents::Entity, I::Severity),
            (monitor_incidents::Entity, I::Flapping),
        ])
        .from(monitor_incident_events::Entity)
        .inner_join(
            monitor_incidents::Entity,
            Expr::col((monitor_incidents::Entity, I::Id)).equals((monitor_incident_events::Entity, E::IncidentId)),
        )
        .and_where(Expr::col((monitor_incidents::Entity, I::OrgId)).eq(org))
        .and_where(Expr::col((monitor_incident_events::Entity, E::Id)).gt(after))
        .order_by((monitor_incident_events::Entity, E::Id), sea_orm::Order::Asc)
        .limit(limit);
        let rows = self.conn.query_all(&q).await?;
        rows.into_iter()
            .map(|r| {
                Ok(StreamEntry {
                    event: IncidentEvent {
                        id: r.try_get("", "id")?,
                        at: r.try_get("", "at")?,
                        kind: r.try_get("", "kind")?,
                        actor: r.try_get("", "actor")?,
                        text: r.try_get("", "text")?,
                    },
                    incident_id: r.try_get("", "incident_id")?,
                    title: r.try_get("", "title")?,
                    state: r.try_get("", "state")?,
                    severity: r.try_get("", "severity")?,
                    flapping: r.try_get("", "flapping")?,
                })
            })
            .collect()
    }

    /// Adds a note to an incident's timeline.
    pub async fn add_note(&self, incident: Uuid, actor: &str, text: String) -> Result<(), DbError> {
        add_event(&self.conn, incident, Utc::now().trunc_subsecs(6), "note", Some(actor.to_owned()), Some(text)).await
    }
}
