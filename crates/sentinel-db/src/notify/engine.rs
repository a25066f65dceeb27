//! The evaluation of notification groups. Per organization, in one transaction that first locks
//! the organization's policy row (so replicas evaluate one after the other and never notify twice):
//! route every firing alert to its groups, mark what may page (not muted by a silence or a window,
//! not inhibited by its server's silent machine, not suppressed by a job on its server — see
//! `disruptions`), plan each
//! group with its timers, and write one outbox row per channel for each notification.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::notify::{Destination, GroupState, Labels, Mute, Notification, PlannedAlert, Policy, plan};
use serde_json::{Value, json};
use uuid::Uuid;

use super::NotifyStore;
use super::disruptions::{DISRUPTED_SOURCES, covering, disruptions, mark_incident};
use super::mutes::current_mutes;
use super::outbox::{NewNotification, row};
use crate::DbError;
use crate::entity::{
    monitor_alerts, monitor_incident_events, monitor_incidents, notify_channels, notify_groups, notify_outbox,
    notify_policies,
};

/// A firing alert of this rule inhibits the target and metric alerts of its server.
const INHIBITING_RULE: &str = "machine_silent";
const DEPENDENT_SOURCES: [&str; 2] = ["target", "metric"];

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvaluationReport {
    pub organizations: usize,
    /// Notifications written (one per group and channel).
    pub queued: usize,
}

impl NotifyStore {
    /// The newest entry of any incident's timeline (every alert transition writes one): the
    /// notifier evaluates as soon as it moves, instead of waiting for its tick.
    pub async fn latest_transition(&self) -> Result<i64, DbError> {
        let id: Option<Option<i64>> = monitor_incident_events::Entity::find()
            .select_only()
            .column_as(monitor_incident_events::Column::Id.max(), "latest")
            .into_tuple()
            .one(&self.conn)
            .await?;
        Ok(id.flatten().unwrap_or(0))
    }

    /// Evaluates the groups of every organization that has channels or groups.
    pub async fn evaluate(&self, now: DateTime<Utc>) -> Result<EvaluationReport, DbError> {
        let now = now.trunc_subsecs(6);
        let mut orgs: BTreeSet<Uuid> = notify_channels::Entity::find()
            .select_only()
            .column(notify_channels::Column::OrgId)
            .filter(notify_channels::Column::IsActive.eq(true))
            .distinct()
            .into_tuple::<Uuid>()
            .all(&self.conn)
            .await?
            .into_iter()
            .collect();
        orgs.extend(
            notify_groups::Entity::find()
                .select_only()
                .column(notify_groups::Column::OrgId)
                .distinct()
                .into_tuple::<Uuid>()
                .all(&self.conn)
                .await?,
        );
        let mut report = EvaluationReport::default();
        let mut first_error = None;
        for org in orgs {
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            match evaluate_org(&txn, org, now).await {
                Ok(queued) => {
                    txn.commit().await?;
                    report.queued += queued;
                    report.organizations += 1;
                }
                // One organization's bad row must not keep the others' pages back.
                Err(e) if !e.is_unavailable() => {
                    txn.rollback().await?;
                    tracing::error!(org = %org, error = %e, "notification groups of an organization not evaluated");
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match first_error {
            Some(e) if report.organizations == 0 => Err(e),
            _ => Ok(report),
        }
    }
}

/// Takes the organization's evaluation lock (its policy row, created on first use) and reads its
/// policy. Writing first also keeps SQLite from reading a stale snapshot.
async fn lock_policy(txn: &DatabaseTransaction, org: Uuid, now: DateTime<Utc>) -> Result<Policy, DbError> {
    let touch = || {
        notify_policies::Entity::update_many()
            .col_expr(notify_policies::Column::EvaluatedAt, Expr::value(now))
            .filter(notify_policies::Column::OrgId.eq(org))
    };
    if touch().exec(txn).await?.rows_affected == 0 {
        notify_policies::Entity::insert(notify_policies::ActiveModel {
            org_id: Set(org),
            policy: Set(None),
            evaluated_at: Set(Some(now)),
            updated_by: Set(None),
            updated_at: Set(now),
        })
        .on_conflict(OnConflict::column(notify_policies::Column::OrgId).do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
        touch().exec(txn).await?;
    }
    let row = notify_policies::Entity::find_by_id(org).one(txn).await?;
    Ok(match row.and_then(|r| r.policy) {
        Some(p) => serde_json::from_value(p).map_err(|e| DbError::Corrupt(format!("policy of {org}: {e}")))?,
        None => Policy::default(),
    })
}

fn labels_of(a: &monitor_alerts::Model) -> Labels {
    a.labels.clone().and_then(|l| serde_json::from_value(l).ok()).unwrap_or_else(|| {
        // Opened before labels existed: what the row itself tells.
        let mut l = Labels::new();
        l.insert("alertname".into(), a.rule.clone());
        l.insert("severity".into(), a.severity.clone());
        l.insert("source".into(), a.source_kind.clone());
        l.insert("source_id".into(), a.source_id.to_string());
        l.insert("incident".into(), a.incident_id.to_string());
        l.insert("group".into(), format!("incident:{}", a.incident_id));
        l
    })
}

fn alert_json(a: &monitor_alerts::Model, status: &str) -> Value {
    let labels = labels_of(a);
    json!({
        "id": a.id,
        "incident_id": a.incident_id,
        "status": status,
        "rule": a.rule,
        "severity": a.severity,
        "source": a.source_kind,
        "source_id": a.source_id,
        "name": labels.get("name"),
        "message": a.message,
        "labels": labels,
        "opened_at": a.opened_at,
        "resolved_at": a.resolved_at,
    })
}

struct Routed<'a> {
    dest: Destination,
    alerts: Vec<(PlannedAlert, &'a monitor_alerts::Model)>,
}

/// Evaluates one organization's groups; returns how many notifications were queued.
async fn evaluate_org(txn: &DatabaseTransaction, org: Uuid, now: DateTime<Utc>) -> Result<usize, DbError> {
    let policy = lock_policy(txn, org, now).await?;
    let active_channels: Vec<Uuid> = notify_channels::Entity::find()
        .select_only()
        .column(notify_channels::Column::Id)
        .filter(notify_channels::Column::OrgId.eq(org))
        .filter(notify_channels::Column::IsActive.eq(true))
        .into_tuple()
        .all(txn)
        .await?;
    let mutes: Vec<Mute> = current_mutes(txn, org, now)
        .await?
        .into_iter()
        .map(|m| Mute { id: m.id, matchers: m.matchers, schedule: m.schedule })
        .filter(|m| m.active_at(now))
        .collect();
    let firing = monitor_alerts::Entity::find()
        .filter(monitor_alerts::Column::OrgId.eq(org))
        .filter(monitor_alerts::Column::State.eq("firing"))
        .all(txn)
        .await?;
    let incident_ids: Vec<Uuid> = firing.iter().map(|a| a.incident_id).collect::<BTreeSet<_>>().into_iter().collect();
    // Per incident: acknowledged, and already marked as suppressed by a job.
    let mut incidents: HashMap<Uuid, (bool, bool)> = HashMap::new();
    for chunk in incident_ids.chunks(5000) {
        for i in monitor_incidents::Entity::find()
            .filter(monitor_incidents::Column::Id.is_in(chunk.to_vec()))
            .all(txn)
            .await?
        {
            incidents.insert(i.id, (i.state == "acknowledged", i.suppressed_by.is_some()));
        }
    }
    let labels: Vec<Labels> = firing.iter().map(labels_of).collect();
    let silent_servers: HashSet<&str> = firing
        .iter()
        .zip(&labels)
        .filter(|(a, _)| a.rule == INHIBITING_RULE)
        .filter_map(|(_, l)| l.get("server").map(String::as_str))
        .collect();
    let inhibited = |a: &monitor_alerts::Model, l: &Labels| {
        DEPENDENT_SOURCES.contains(&a.source_kind.as_str())
            && l.get("server").is_some_and(|s| silent_servers.contains(s.as_str()))
    };
    let margin = chrono::Duration::seconds(i64::from(policy.job_margin_seconds));
    let disrupted = disruptions(txn, org, now, margin).await?;
    let mut dependents: HashMap<String, usize> = HashMap::new();
    let mut routed: BTreeMap<String, Routed> = BTreeMap::new();
    for (a, l) in firing.iter().zip(&labels) {
        let (acknowledged, marked) = incidents.get(&a.incident_id).copied().unwrap_or((false, false));
        let server = l.get("server").and_then(|s| s.parse::<Uuid>().ok());
        let mut suppressed = false;
        if let Some(server) = server.filter(|_| DISRUPTED_SOURCES.contains(&a.source_kind.as_str()))
            && let Some(d) = covering(&disrupted, server, a.opened_at, now, margin)
        {
            if !marked {
                mark_incident(txn, a.incident_id, d, now).await?;
                incidents.insert(a.incident_id, (acknowledged, true));
            }
            suppressed = true;
        }
        let held_back = inhibited(a, l);
        if held_back && let Some(s) = l.get("server") {
            *dependents.entry(s.clone()).or_default() += 1;
        }
        let eligible = !held_back && !suppressed && !mutes.iter().any(|m| m.mutes(l, now));
        let planned = PlannedAlert { id: a.id, eligible, acknowledged };
        for dest in policy.route(l) {
            routed
                .entry(dest.group_key())
                .or_insert_with(|| Routed { dest, alerts: Vec::new() })
                .alerts
                .push((planned, a));
        }
    }
    let groups: HashMap<String, notify_groups::Model> = notify_groups::Entity::find()
        .filter(notify_groups::Column::OrgId.eq(org))
        .all(txn)
        .await?
        .into_iter()
        .map(|g| (g.group_key.clone(), g))
        .collect();
    let keys: BTreeSet<String> = routed.keys().chain(groups.keys()).cloned().collect();
    let mut queued = 0;
    // New rows are written together at the end (a storm makes thousands at once).
    let mut new_groups: Vec<notify_groups::ActiveModel> = Vec::new();
    let mut new_rows: Vec<notify_outbox::ActiveModel> = Vec::new();
    for key in keys {
        let stored = groups.get(&key);
        let here = routed.get(&key);
        let state = GroupState {
            notified: stored
                .and_then(|g| serde_json::from_value::<BTreeSet<Uuid>>(g.notified.clone()).ok())
                .unwrap_or_default(),
            next_flush_at: stored.and_then(|g| g.next_flush_at),
            last_notified_at: stored.and_then(|g| g.last_notified_at),
        };
        // A stored group's key starts with its route's key.
        let timers = here.map_or_else(|| policy.timers_of(key.split('|').next().unwrap_or("root")), |r| r.dest.timers);
        let planned: Vec<PlannedAlert> = here.map(|r| r.alerts.iter().map(|(p, _)| *p).collect()).unwrap_or_default();
        let p = plan(&state, &planned, timers, now);
        let mut seq = stored.map_or(0, |g| g.seq);
        let mut channels: Vec<Uuid> =
            stored.and_then(|g| serde_json::from_value(g.channels.clone()).ok()).unwrap_or_default();
        let group_id = stored.map_or_else(Uuid::now_v7, |g| g.id);
        let group_labels = here.map_or_else(
            || stored.map_or(Value::Null, |g| g.group_labels.clone()),
            |r| serde_json::to_value(&r.dest.group_labels).unwrap_or_default(),
        );
        if let Some(send) = &p.send {
            seq += 1;
            if let Some(r) = here.filter(|_| !send.firing.is_empty()) {
                let wanted = r.dest.channels.clone().unwrap_or_else(|| active_channels.clone());
                // A resolved still goes wherever the firing went.
                let mut union: Vec<Uuid> = wanted.into_iter().filter(|c| active_channels.contains(c)).collect();
                for c in &channels {
                    if !union.contains(c) && active_channels.contains(c) {
                        union.push(*c);
                    }
                }
                channels = union;
            } else {
                channels.retain(|c| active_channels.contains(c));
            }
            let payload = payload_of(txn, org, &key, group_id, &group_labels, seq, send, here, &dependents).await?;
            let status = if send.firing.is_empty() {
                "resolved"
            } else if send.repeat {
                "repeat"
            } else {
                "firing"
            };
            let incident_id = payload["alerts"][0]["incident_id"].as_str().and_then(|s| s.parse().ok());
            let rows: Vec<notify_outbox::ActiveModel> = channels
                .iter()
                .map(|&channel_id| {
                    row(
                        NewNotification {
                            org_id: org,
                            group_id: Some(group_id),
                            seq,
                            channel_id,
                            idempotency_key: format!("{group_id}:{seq}:{channel_id}"),
                            status,
                            incident_id,
                            payload: payload.clone(),
                        },
                        now,
                    )
                })
                .collect();
            queued += rows.len();
            new_rows.extend(rows);
        }
        let notified = serde_json::to_value(&p.state.notified).unwrap_or_default();
        let channels_json = serde_json::to_value(&channels).unwrap_or_default();
        match (stored, p.keep) {
            (Some(g), false) => {
                notify_groups::Entity::delete_by_id(g.id).exec(txn).await?;
            }
            (Some(g), true) if *g != updated(g, &p.state, seq, &notified, &channels_json, g.updated_at) => {
                let mut m: notify_groups::ActiveModel = g.clone().into();
                m.notified = Set(notified);
                m.channels = Set(channels_json);
                m.seq = Set(seq);
                m.next_flush_at = Set(p.state.next_flush_at);
                m.last_notified_at = Set(p.state.last_notified_at);
                m.updated_at = Set(now);
                m.update(txn).await?;
            }
            (Some(_), true) | (None, false) => {}
            (None, true) => {
                new_groups.push(notify_groups::ActiveModel {
                    id: Set(group_id),
                    org_id: Set(org),
                    group_key: Set(key.clone()),
                    group_labels: Set(group_labels),
                    channels: Set(channels_json),
                    notified: Set(notified),
                    seq: Set(seq),
                    next_flush_at: Set(p.state.next_flush_at),
                    last_notified_at: Set(p.state.last_notified_at),
                    created_at: Set(now),
                    updated_at: Set(now),
                });
            }
        }
    }
    // Groups before their notifications; chunks stay under the statement parameter limits.
    while !new_groups.is_empty() {
        let chunk: Vec<_> = new_groups.drain(..new_groups.len().min(500)).collect();
        notify_groups::Entity::insert_many(chunk).exec_without_returning(txn).await?;
    }
    while !new_rows.is_empty() {
        let chunk: Vec<_> = new_rows.drain(..new_rows.len().min(500)).collect();
        notify_outbox::Entity::insert_many(chunk).exec_without_returning(txn).await?;
    }
    Ok(queued)
}

fn updated(
    g: &notify_groups::Model,
    s: &GroupState,
    seq: i64,
    notified: &Value,
    channels: &Value,
    at: DateTime<Utc>,
) -> notify_groups::Model {
    notify_groups::Model {
        notified: notified.clone(),
        channels: channels.clone(),
        seq,
        next_flush_at: s.next_flush_at,
        last_notified_at: s.last_notified_at,
        updated_at: at,
        ..g.clone()
    }
}

/// The body every channel renders from (the webhook sends it as is; see docs/api.md).
#[allow(clippy::too_many_arguments)]
async fn payload_of(
    txn: &DatabaseTransaction,
    org: Uuid,
    key: &str,
    group_id: Uuid,
    group_labels: &Value,
    seq: i64,
    send: &Notification,
    here: Option<&Routed<'_>>,
    dependents: &HashMap<String, usize>,
) -> Result<Value, DbError> {
    let by_id: HashMap<Uuid, &monitor_alerts::Model> =
        here.map(|r| r.alerts.iter().map(|(p, a)| (p.id, *a)).collect()).unwrap_or_default();
    let mut alerts: Vec<Value> =
        send.firing.iter().filter_map(|id| by_id.get(id)).map(|a| alert_json(a, "firing")).collect();
    let firing_count = alerts.len();
    let mut inhibited = 0;
    for a in send.firing.iter().filter_map(|id| by_id.get(id)) {
        if a.rule == INHIBITING_RULE
            && let Some(s) = labels_of(a).get("server")
        {
            inhibited += dependents.get(s).copied().unwrap_or(0);
        }
    }
    for chunk in send.resolved.chunks(5000) {
        for a in
            monitor_alerts::Entity::find().filter(monitor_alerts::Column::Id.is_in(chunk.to_vec())).all(txn).await?
        {
            alerts.push(alert_json(&a, "resolved"));
        }
    }
    let resolved_count = alerts.len() - firing_count;
    let status = if firing_count > 0 { "firing" } else { "resolved" };
    let first = alerts.first().and_then(|a| a["name"].as_str()).unwrap_or("alert").to_owned();
    let mut title = match (status, firing_count + resolved_count) {
        ("firing", 1) => format!("[FIRING] {first}"),
        ("firing", _) => format!("[FIRING:{firing_count}] {first} and {} more", firing_count + resolved_count - 1),
        (_, 1) => format!("[RESOLVED] {first}"),
        _ => format!("[RESOLVED:{resolved_count}] {first} and {} more", resolved_count - 1),
    };
    if inhibited > 0 {
        title.push_str(&format!(" ({inhibited} dependents suppressed)"));
    }
    Ok(json!({
        "version": 1,
        "organization_id": org,
        "group": { "id": group_id, "key": key, "labels": group_labels },
        "sequence": seq,
        "status": status,
        "repeat": send.repeat,
        "title": title,
        "counts": { "firing": firing_count, "resolved": resolved_count, "inhibited_dependents": inhibited },
        "alerts": alerts,
    }))
}
