//! Alerts and incidents from check results, inside the transaction that records the results: each
//! target's new counts and recent results go through `alerts::evaluate` with its organization's
//! settings, and a transition opens, marks flapping, settles or resolves the target's alert and its
//! incident, each with a timeline entry. A result recorded once is evaluated once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use sentinel_domain::monitoring::alerts::{AlertState, ClientSettings, IncidentState, Severity, Transition, evaluate};
use uuid::Uuid;

use super::CheckResult;
use super::incidents::{add_event, settings_in};
use crate::DbError;
use crate::entity::{monitor_alerts, monitor_incidents, monitor_targets};

/// A target's alerting inputs right after a result was recorded.
#[derive(Debug, Clone)]
pub(super) struct TargetAfter {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub failures: u32,
    pub successes: u32,
    pub recent: i64,
    pub alert_state: AlertState,
    pub open_alert_id: Option<Uuid>,
}

/// A change of a target's alert (what the live stream and notifications tell).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    pub org_id: Uuid,
    pub target_id: Uuid,
    pub transition: Transition,
    pub alert_id: Uuid,
    pub incident_id: Uuid,
}

const HTTP_DOWN: &str = "http_down";
const HTTP_FLAPPING: &str = "http_flapping";

fn describe(r: &CheckResult) -> String {
    match (r.error_class, &r.message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => "up".to_owned(),
    }
}

/// Applies the transitions the results cause; returns them.
pub(super) async fn apply(
    txn: &DatabaseTransaction,
    afters: Vec<(TargetAfter, &CheckResult)>,
    now: DateTime<Utc>,
) -> Result<Vec<AlertChange>, DbError> {
    let mut settings: HashMap<Uuid, ClientSettings> = HashMap::new();
    let mut changes = Vec::new();
    for (t, result) in afters {
        let s = match settings.entry(t.org_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(settings_in(txn, t.org_id).await?),
        };
        let Some(transition) = evaluate(t.alert_state, t.failures, t.successes, t.recent, s) else { continue };
        let (alert_id, incident_id) = match (transition, t.open_alert_id) {
            (Transition::Open, _) | (Transition::StartFlapping, None) => {
                let flapping = transition == Transition::StartFlapping;
                let alert = NewAlert {
                    id: Uuid::now_v7(),
                    org_id: t.org_id,
                    source_kind: "target",
                    source_id: t.id,
                    group_key: s.alert_grouping_enabled.then(|| format!("target:{}", t.id)),
                    title: format!("{} {}", t.name, if flapping { "is flapping" } else { "is down" }),
                    rule: if flapping { HTTP_FLAPPING } else { HTTP_DOWN },
                    severity: if flapping { Severity::Warning } else { Severity::Critical },
                    flapping,
                    message: describe(result),
                    server_id: None,
                };
                open_alert(txn, alert, now).await?
            }
            (_, None) => continue,
            (Transition::StartFlapping | Transition::SettleDown, Some(alert)) => {
                let flapping = transition == Transition::StartFlapping;
                set_flapping(txn, alert, flapping, result, now).await?
            }
            (Transition::Resolve, Some(alert)) => resolve_alert(txn, alert, None, now).await?,
        };
        let open = transition.next_state() != AlertState::Ok;
        monitor_targets::Entity::update_many()
            .col_expr(monitor_targets::Column::AlertState, Expr::value(transition.next_state().as_str()))
            .col_expr(monitor_targets::Column::OpenAlertId, Expr::value(open.then_some(alert_id)))
            .filter(monitor_targets::Column::Id.eq(t.id))
            .exec(txn)
            .await?;
        changes.push(AlertChange { org_id: t.org_id, target_id: t.id, transition, alert_id, incident_id });
    }
    Ok(changes)
}

/// An alert about to open: what it is about and where its incident groups.
pub(crate) struct NewAlert {
    /// Chosen by the caller, so it can claim the source (compare-and-set) before the alert exists.
    pub id: Uuid,
    pub org_id: Uuid,
    /// `target`, `metric` or `machine`.
    pub source_kind: &'static str,
    pub source_id: Uuid,
    /// The incident it joins while that one is unresolved (`target:<id>`, `machine:<id>`); `None`
    /// gives it an incident of its own.
    pub group_key: Option<String>,
    /// The incident's title if it opens one, and the timeline's text.
    pub title: String,
    pub rule: &'static str,
    pub severity: Severity,
    pub flapping: bool,
    pub message: String,
    /// The inventory server it concerns when the caller knows it (else found from the source).
    pub server_id: Option<Uuid>,
}

/// Opens an alert and the incident of its group (or adds it to the group's unresolved incident,
/// raising that one's severity to the alert's); returns (alert, incident).
pub(crate) async fn open_alert(
    txn: &DatabaseTransaction,
    a: NewAlert,
    now: DateTime<Utc>,
) -> Result<(Uuid, Uuid), DbError> {
    let alert_id = a.id;
    let group_key = a.group_key.clone().unwrap_or_else(|| format!("alert:{alert_id}"));
    let existing = monitor_incidents::Entity::find()
        .filter(monitor_incidents::Column::OrgId.eq(a.org_id))
        .filter(monitor_incidents::Column::GroupKey.eq(group_key.clone()))
        .filter(monitor_incidents::Column::State.ne(IncidentState::Resolved.as_str()))
        .one(txn)
        .await?;
    let incident_id = match existing {
        Some(i) => {
            add_event(txn, i.id, now, "alert_added", None, Some(a.title.clone())).await?;
            if a.severity == Severity::Critical && i.severity != Severity::Critical.as_str() {
                raise_severity(txn, i.id, now).await?;
            }
            i.id
        }
        None => {
            let id = Uuid::now_v7();
            monitor_incidents::ActiveModel {
                id: Set(id),
                org_id: Set(a.org_id),
                group_key: Set(group_key),
                title: Set(a.title.clone()),
                severity: Set(a.severity.as_str().to_owned()),
                state: Set(IncidentState::Open.as_str().to_owned()),
                flapping: Set(a.flapping),
                opened_at: Set(now),
                acknowledged_at: Set(None),
                acknowledged_by: Set(None),
                resolved_at: Set(None),
                resolved_by: Set(None),
                updated_at: Set(now),
                suppressed_by: Set(None),
            }
            .insert(txn)
            .await?;
            add_event(txn, id, now, "opened", None, Some(format!("{}: {}", a.title, a.message))).await?;
            id
        }
    };
    let labels = super::labels::labels_of(txn, &a, incident_id).await?;
    monitor_alerts::ActiveModel {
        id: Set(alert_id),
        org_id: Set(a.org_id),
        incident_id: Set(incident_id),
        source_kind: Set(a.source_kind.to_owned()),
        source_id: Set(a.source_id),
        rule: Set(a.rule.to_owned()),
        severity: Set(a.severity.as_str().to_owned()),
        state: Set("firing".to_owned()),
        flapping: Set(a.flapping),
        message: Set(Some(a.message)),
        opened_at: Set(now),
        resolved_at: Set(None),
        labels: Set(Some(serde_json::to_value(labels).unwrap_or_default())),
    }
    .insert(txn)
    .await?;
    Ok((alert_id, incident_id))
}

/// Makes an unresolved incident critical (one of its alerts became critical).
pub(super) async fn raise_severity(
    txn: &DatabaseTransaction,
    incident: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    monitor_incidents::Entity::update_many()
        .col_expr(monitor_incidents::Column::Severity, Expr::value(Severity::Critical.as_str()))
        .col_expr(monitor_incidents::Column::UpdatedAt, Expr::value(now))
        .filter(monitor_incidents::Column::Id.eq(incident))
        .exec(txn)
        .await?;
    Ok(())
}

async fn set_flapping(
    txn: &DatabaseTransaction,
    alert_id: Uuid,
    flapping: bool,
    result: &CheckResult,
    now: DateTime<Utc>,
) -> Result<(Uuid, Uuid), DbError> {
    let alert = monitor_alerts::Entity::find_by_id(alert_id)
        .one(txn)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("monitor alert {alert_id}")))?;
    monitor_alerts::Entity::update_many()
        .col_expr(monitor_alerts::Column::Flapping, Expr::value(flapping))
        .col_expr(monitor_alerts::Column::Message, Expr::value(describe(result)))
        .filter(monitor_alerts::Column::Id.eq(alert_id))
        .exec(txn)
        .await?;
    monitor_incidents::Entity::update_many()
        .col_expr(monitor_incidents::Column::Flapping, Expr::value(flapping))
        .col_expr(monitor_incidents::Column::UpdatedAt, Expr::value(now))
        .filter(monitor_incidents::Column::Id.eq(alert.incident_id))
        .exec(txn)
        .await?;
    let (kind, text) = if flapping {
        ("flapping", "keeps changing between up and down: one flapping alert until it is stable")
    } else {
        ("settled", "stable again, and down")
    };
    add_event(txn, alert.incident_id, now, kind, None, Some(text.to_owned())).await?;
    Ok((alert_id, alert.incident_id))
}

/// Resolves an alert, and its incident once no alert of it fires (by `actor`, or by itself).
pub(crate) async fn resolve_alert(
    txn: &DatabaseTransaction,
    alert_id: Uuid,
    actor: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Uuid, Uuid), DbError> {
    let alert = monitor_alerts::Entity::find_by_id(alert_id)
        .one(txn)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("monitor alert {alert_id}")))?;
    monitor_alerts::Entity::update_many()
        .col_expr(monitor_alerts::Column::State, Expr::value("resolved"))
        .col_expr(monitor_alerts::Column::ResolvedAt, Expr::value(now))
        .filter(monitor_alerts::Column::Id.eq(alert_id))
        .filter(monitor_alerts::Column::State.eq("firing"))
        .exec(txn)
        .await?;
    add_event(
        txn,
        alert.incident_id,
        now,
        "alert_resolved",
        actor.map(str::to_owned),
        Some(format!("{} recovered", alert.rule)),
    )
    .await?;
    let still_firing = monitor_alerts::Entity::find()
        .filter(monitor_alerts::Column::IncidentId.eq(alert.incident_id))
        .filter(monitor_alerts::Column::State.eq("firing"))
        .one(txn)
        .await?;
    if still_firing.is_none() {
        let done = monitor_incidents::Entity::update_many()
            .col_expr(monitor_incidents::Column::State, Expr::value(IncidentState::Resolved.as_str()))
            .col_expr(monitor_incidents::Column::ResolvedAt, Expr::value(now))
            .col_expr(monitor_incidents::Column::ResolvedBy, Expr::value(actor.map(str::to_owned)))
            .col_expr(monitor_incidents::Column::UpdatedAt, Expr::value(now))
            .filter(monitor_incidents::Column::Id.eq(alert.incident_id))
            .filter(monitor_incidents::Column::State.ne(IncidentState::Resolved.as_str()))
            .exec(txn)
            .await?;
        if done.rows_affected > 0 && actor.is_none() {
            add_event(txn, alert.incident_id, now, "resolved", None, Some("every alert recovered".to_owned())).await?;
        }
    }
    Ok((alert_id, alert.incident_id))
}
