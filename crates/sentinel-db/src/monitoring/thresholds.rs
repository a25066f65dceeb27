//! Alerts from metrics and machines, through the same alert and incident path as HTTP targets: a
//! metric instance's threshold is evaluated when its samples arrive (inside the ingest transaction),
//! when an operator changes its threshold or switches, and by the 60 s sweep for series that stopped
//! arriving (`nodata`, which never resolves an alert); a machine that sends nothing for longer than
//! its organization's heartbeat threshold raises "machine silent" (120 s sweep), resolved by its next
//! batch. Each change is a compare-and-set on the metric or machine row, so the ingest path and a
//! sweep racing on one row change it once.

use std::collections::HashMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use sentinel_domain::monitoring::alerts::{ClientSettings, Severity};
use sentinel_domain::monitoring::metrics::MetricKind;
use sentinel_domain::monitoring::thresholds::{Comparison, MetricAlert, MetricState, Threshold, alert_for, observe};
use serde_json::Value;
use uuid::Uuid;

use super::MonitoringStore;
use super::incidents::{add_event, settings_in};
use super::ingest::value_of;
use super::transitions::{NewAlert, open_alert, raise_severity, resolve_alert};
use crate::DbError;
use crate::entity::{monitor_alerts, monitor_machines, monitor_metrics};

const METRIC_THRESHOLD: &str = "metric_threshold";
const METRIC_NODATA: &str = "metric_nodata";
const MACHINE_SILENT: &str = "machine_silent";

/// How long a series may stay quiet before it is `nodata`, and a machine before it is silent.
pub(super) fn quiet_limit(s: &ClientSettings) -> Duration {
    Duration::minutes(i64::from(s.heartbeat_threshold_minutes))
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Why a metric is in `state`, in words for the alert and the timeline.
fn explain(state: MetricState, threshold: &Threshold, value: Option<&Value>, last_at: Option<DateTime<Utc>>) -> String {
    let value_text = value.map_or_else(|| "no value".to_owned(), show);
    match (state, threshold) {
        (MetricState::Nodata, _) => match last_at {
            Some(at) => format!("no sample since {}", at.to_rfc3339()),
            None => "no sample".to_owned(),
        },
        (MetricState::Ok, _) => format!("value {value_text} is within its threshold"),
        (level, Threshold::Numeric { comparison, warning, critical }) => {
            let (name, limit) =
                if level == MetricState::Critical { ("critical", critical) } else { ("warning", warning) };
            let side = if *comparison == Comparison::Above { "above" } else { "below" };
            match limit {
                Some(l) => format!("value {value_text} is {side} the {name} level {l}"),
                None => format!("value {value_text} is not a number"),
            }
        }
        (_, Threshold::Expected { expected }) => format!("value {value_text}, expected {}", show(expected)),
    }
}

/// Loads the organizations' settings once each.
struct SettingsCache(HashMap<Uuid, ClientSettings>);

impl SettingsCache {
    async fn of(&mut self, conn: &impl ConnectionTrait, org: Uuid) -> Result<&ClientSettings, DbError> {
        Ok(match self.0.entry(org) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(settings_in(conn, org).await?),
        })
    }
}

/// Brings the alerts of the metrics matching `cond` in line with their latest values, thresholds
/// and switches; returns how many changed state. `actor` names the operator whose change caused it.
pub(super) async fn reconcile_metrics(
    txn: &DatabaseTransaction,
    cond: Condition,
    actor: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    use monitor_metrics::Column as M;
    let metrics = monitor_metrics::Entity::find().filter(cond).order_by_asc(M::Id).all(txn).await?;
    if metrics.is_empty() {
        return Ok(0);
    }
    let mut machine_ids: Vec<Uuid> = metrics.iter().map(|m| m.machine_id).collect();
    machine_ids.sort_unstable();
    machine_ids.dedup();
    let hosts: HashMap<Uuid, String> = monitor_machines::Entity::find()
        .select_only()
        .columns([monitor_machines::Column::Id, monitor_machines::Column::Hostname])
        .filter(monitor_machines::Column::Id.is_in(machine_ids))
        .into_tuple::<(Uuid, String)>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let mut settings = SettingsCache(HashMap::new());
    let mut changed = 0;
    for m in metrics {
        let s = settings.of(txn, m.org_id).await?.clone();
        let threshold: Option<Threshold> = match &m.threshold {
            Some(j) => Some(
                serde_json::from_value(j.clone())
                    .map_err(|e| DbError::Corrupt(format!("metric {}: threshold: {e}", m.id)))?,
            ),
            None => None,
        };
        let kind = MetricKind::parse(&m.kind).map_err(|e| DbError::Corrupt(format!("metric {}: {e}", m.id)))?;
        let previous = MetricState::parse(&m.state).unwrap_or(MetricState::Ok);
        let value = value_of(kind, m.last_value_num, m.last_value_text.clone());
        let state = observe(threshold.as_ref(), value.as_ref(), m.last_at, quiet_limit(&s), now);
        let want = alert_for(state, previous, m.alerting_enabled, m.paused);
        let firing = matches!(want, MetricAlert::Firing { .. });
        if state == previous && firing == m.open_alert_id.is_some() {
            continue;
        }
        let new_alert = match (want, m.open_alert_id) {
            (MetricAlert::Firing { .. }, None) => Some(Uuid::now_v7()),
            (MetricAlert::Firing { .. }, Some(a)) => Some(a),
            (MetricAlert::None, _) => None,
        };
        // Claim the change: a concurrent evaluation of the same row finds it moved and stops.
        let mut claim = monitor_metrics::Entity::update_many()
            .col_expr(M::State, Expr::value(state.as_str()))
            .col_expr(M::OpenAlertId, Expr::value(new_alert))
            .filter(M::Id.eq(m.id))
            .filter(M::State.eq(m.state.clone()));
        claim = match m.open_alert_id {
            Some(a) => claim.filter(M::OpenAlertId.eq(a)),
            None => claim.filter(M::OpenAlertId.is_null()),
        };
        if claim.exec(txn).await?.rows_affected == 0 {
            continue;
        }
        changed += 1;
        let host = hosts.get(&m.machine_id).cloned().unwrap_or_else(|| m.machine_id.to_string());
        let Some(threshold) = threshold else {
            // The threshold was removed: only an open alert is left to resolve.
            if let Some(a) = m.open_alert_id {
                resolve_alert(txn, a, actor, now).await?;
            }
            continue;
        };
        let why = explain(state, &threshold, value.as_ref(), m.last_at);
        match (want, m.open_alert_id, new_alert) {
            (MetricAlert::None, Some(a), _) => {
                resolve_alert(txn, a, actor, now).await?;
            }
            (MetricAlert::Firing { critical, nodata }, None, Some(id)) => {
                let words = if nodata {
                    "sends no data"
                } else if critical {
                    "is critical"
                } else {
                    "is warning"
                };
                let alert = NewAlert {
                    id,
                    org_id: m.org_id,
                    source_kind: "metric",
                    source_id: m.id,
                    group_key: s.alert_grouping_enabled.then(|| format!("machine:{}", m.machine_id)),
                    title: format!("{host} {} {words}", m.name),
                    rule: if nodata { METRIC_NODATA } else { METRIC_THRESHOLD },
                    severity: if critical { Severity::Critical } else { Severity::Warning },
                    flapping: false,
                    message: why,
                    server_id: None,
                };
                open_alert(txn, alert, now).await?;
            }
            (MetricAlert::Firing { critical, nodata }, Some(a), _) => {
                let severity = if critical { Severity::Critical } else { Severity::Warning };
                monitor_alerts::Entity::update_many()
                    .col_expr(monitor_alerts::Column::Severity, Expr::value(severity.as_str()))
                    .col_expr(
                        monitor_alerts::Column::Rule,
                        Expr::value(if nodata { METRIC_NODATA } else { METRIC_THRESHOLD }),
                    )
                    .col_expr(monitor_alerts::Column::Message, Expr::value(why.clone()))
                    .filter(monitor_alerts::Column::Id.eq(a))
                    .exec(txn)
                    .await?;
                if let Some(alert) = monitor_alerts::Entity::find_by_id(a).one(txn).await? {
                    let text = format!("{host} {}: {} → {}: {why}", m.name, previous.as_str(), state.as_str());
                    add_event(txn, alert.incident_id, now, "alert_changed", None, Some(text)).await?;
                    if critical {
                        raise_severity(txn, alert.incident_id, now).await?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(changed)
}

/// Resolves the "machine silent" alert of a machine heard from again (compare-and-set on the row).
pub(super) async fn machine_heard(
    txn: &DatabaseTransaction,
    machine: Uuid,
    silent_alert: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let cleared = monitor_machines::Entity::update_many()
        .col_expr(monitor_machines::Column::SilentAlertId, Expr::value(Option::<Uuid>::None))
        .filter(monitor_machines::Column::Id.eq(machine))
        .filter(monitor_machines::Column::SilentAlertId.eq(silent_alert))
        .exec(txn)
        .await?;
    if cleared.rows_affected > 0 {
        resolve_alert(txn, silent_alert, None, now).await?;
    }
    Ok(())
}

/// What a sweep changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub changed: u64,
}

impl MonitoringStore {
    /// The 60 s sweep: series with a threshold that stopped arriving become `nodata`.
    pub async fn sweep_metrics(&self, now: DateTime<Utc>) -> Result<SweepReport, DbError> {
        use monitor_metrics::Column as M;
        let now = now.trunc_subsecs(6);
        let orgs: Vec<Uuid> = monitor_metrics::Entity::find()
            .select_only()
            .column(M::OrgId)
            .distinct()
            .filter(M::Threshold.is_not_null())
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut report = SweepReport::default();
        for org in orgs {
            let limit = quiet_limit(&settings_in(&self.conn, org).await?);
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            let stale = Condition::all()
                .add(M::OrgId.eq(org))
                .add(M::LastAt.lt(now - limit))
                .add(M::Threshold.is_not_null())
                .add(M::State.ne(MetricState::Nodata.as_str()));
            // Write first (a no-op on the candidates): their rows are locked before they are read,
            // and a SQLite transaction that writes first cannot be refused a stale snapshot.
            let candidates = monitor_metrics::Entity::update_many()
                .col_expr(M::State, Expr::col(M::State))
                .filter(stale.clone())
                .exec(&txn)
                .await?;
            if candidates.rows_affected == 0 {
                txn.rollback().await?;
                continue;
            }
            report.changed += reconcile_metrics(&txn, stale, None, now).await?;
            txn.commit().await?;
        }
        Ok(report)
    }

    /// The 120 s sweep: machines silent past their organization's heartbeat threshold raise
    /// "machine silent"; those heard from again (if the ingest did not already) resolve it.
    pub async fn sweep_machines(&self, now: DateTime<Utc>) -> Result<SweepReport, DbError> {
        use monitor_machines::Column as C;
        let now = now.trunc_subsecs(6);
        let orgs: Vec<Uuid> = monitor_machines::Entity::find()
            .select_only()
            .column(C::OrgId)
            .distinct()
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut report = SweepReport::default();
        for org in orgs {
            let s = settings_in(&self.conn, org).await?;
            let cutoff = now - quiet_limit(&s);
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            // Write first (a no-op on the machines about to change), as in `sweep_metrics`.
            let changing = Condition::any()
                .add(Condition::all().add(C::LastSeenAt.lt(cutoff)).add(C::SilentAlertId.is_null()))
                .add(Condition::all().add(C::LastSeenAt.gte(cutoff)).add(C::SilentAlertId.is_not_null()));
            let candidates = monitor_machines::Entity::update_many()
                .col_expr(C::SilentAlertId, Expr::col(C::SilentAlertId))
                .filter(C::OrgId.eq(org))
                .filter(changing)
                .exec(&txn)
                .await?;
            if candidates.rows_affected == 0 {
                txn.rollback().await?;
                continue;
            }
            let silent = monitor_machines::Entity::find()
                .filter(C::OrgId.eq(org))
                .filter(C::LastSeenAt.lt(cutoff))
                .filter(C::SilentAlertId.is_null())
                .all(&txn)
                .await?;
            for m in silent {
                let id = Uuid::now_v7();
                let claimed = monitor_machines::Entity::update_many()
                    .col_expr(C::SilentAlertId, Expr::value(id))
                    .filter(C::Id.eq(m.id))
                    .filter(C::SilentAlertId.is_null())
                    .filter(C::LastSeenAt.lt(cutoff))
                    .exec(&txn)
                    .await?;
                if claimed.rows_affected == 0 {
                    continue;
                }
                let alert = NewAlert {
                    id,
                    org_id: org,
                    source_kind: "machine",
                    source_id: m.id,
                    group_key: s.alert_grouping_enabled.then(|| format!("machine:{}", m.id)),
                    title: format!("{} is silent", m.hostname),
                    rule: MACHINE_SILENT,
                    severity: Severity::Critical,
                    flapping: false,
                    message: format!(
                        "nothing received since {} (threshold {} min)",
                        m.last_seen_at.to_rfc3339(),
                        s.heartbeat_threshold_minutes
                    ),
                    server_id: None,
                };
                open_alert(&txn, alert, now).await?;
                report.changed += 1;
            }
            let back = monitor_machines::Entity::find()
                .filter(C::OrgId.eq(org))
                .filter(C::LastSeenAt.gte(cutoff))
                .filter(C::SilentAlertId.is_not_null())
                .all(&txn)
                .await?;
            for m in back {
                if let Some(a) = m.silent_alert_id {
                    machine_heard(&txn, m.id, a, now).await?;
                    report.changed += 1;
                }
            }
            txn.commit().await?;
        }
        Ok(report)
    }

    /// Sets (or, with `None`, removes) a metric's threshold and re-evaluates it at once; `actor` is
    /// who changed it (an alert it resolves names them).
    pub async fn set_threshold(&self, metric: Uuid, threshold: Option<&Threshold>, actor: &str) -> Result<(), DbError> {
        let json = threshold
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("cannot encode a threshold: {e}")))?;
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        monitor_metrics::Entity::update_many()
            .col_expr(monitor_metrics::Column::Threshold, Expr::value(json))
            .filter(monitor_metrics::Column::Id.eq(metric))
            .exec(&txn)
            .await?;
        let now = Utc::now().trunc_subsecs(6);
        reconcile_metrics(&txn, Condition::all().add(monitor_metrics::Column::Id.eq(metric)), Some(actor), now).await?;
        txn.commit().await?;
        Ok(())
    }
}

impl MonitoringStore {
    /// A page of the organization's metrics that have a threshold, by id.
    pub async fn thresholded_metrics(
        &self,
        org: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<super::MetricRecord>, DbError> {
        use monitor_metrics::Column as M;
        let mut q = monitor_metrics::Entity::find().filter(M::OrgId.eq(org)).filter(M::Threshold.is_not_null());
        if let Some(a) = after {
            q = q.filter(M::Id.gt(a));
        }
        q.order_by_asc(M::Id).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }
}
