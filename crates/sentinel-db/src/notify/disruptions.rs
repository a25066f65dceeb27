//! Expected disruption from Sentinel's own work: the servers a provisioning run (not a check run)
//! or a backup or restore is working on, from when it started until `margin` after it ended. An
//! alert of such a server (its targets, its machine and metrics) that opened in that window is
//! recorded but not paged, and its incident names the job (`suppressed_by`); one still firing
//! after the window pages normally.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::DbError;
use crate::entity::{backup_journal, backup_targets, monitor_incidents, provision_run_hosts, provision_runs, servers};

/// A job working on a server: since when, until when (`None`: still running), and its id.
#[derive(Debug, Clone)]
pub(super) struct Disruption {
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub job_id: Uuid,
    /// What it is, for the incident's timeline.
    pub what: String,
}

/// The source kinds whose alerts a job on their server may cause.
pub(super) const DISRUPTED_SOURCES: [&str; 3] = ["target", "metric", "machine"];

/// The disruptions of `org` that may still hold at `now`, by server.
pub(super) async fn disruptions(
    txn: &DatabaseTransaction,
    org: Uuid,
    now: DateTime<Utc>,
    margin: Duration,
) -> Result<HashMap<Uuid, Vec<Disruption>>, DbError> {
    let since = now - margin;
    let mut out: HashMap<Uuid, Vec<Disruption>> = HashMap::new();
    let runs = provision_runs::Entity::find()
        .filter(provision_runs::Column::OrgId.eq(org))
        .filter(provision_runs::Column::CheckMode.eq(false))
        .filter(provision_runs::Column::StartedAt.is_not_null())
        .filter(
            Condition::any()
                .add(provision_runs::Column::FinishedAt.is_null())
                .add(provision_runs::Column::FinishedAt.gt(since)),
        )
        .all(txn)
        .await?;
    if !runs.is_empty() {
        let hosts = provision_run_hosts::Entity::find()
            .filter(provision_run_hosts::Column::RunId.is_in(runs.iter().map(|r| r.id)))
            .all(txn)
            .await?;
        for r in &runs {
            let Some(started_at) = r.started_at else { continue };
            for h in hosts.iter().filter(|h| h.run_id == r.id) {
                out.entry(h.server_id).or_default().push(Disruption {
                    started_at,
                    ended_at: r.finished_at,
                    job_id: r.job_id,
                    what: format!("provisioning run {} ({})", r.id, r.playbook),
                });
            }
        }
    }
    let entries = backup_journal::Entity::find()
        .filter(backup_journal::Column::OrgId.eq(org))
        .filter(backup_journal::Column::TargetId.is_not_null())
        .filter(backup_journal::Column::JobId.is_not_null())
        .filter(
            Condition::any()
                .add(backup_journal::Column::FinishedAt.is_null())
                .add(backup_journal::Column::FinishedAt.gt(since)),
        )
        .all(txn)
        .await?;
    if !entries.is_empty() {
        let target_ids: HashSet<Uuid> = entries.iter().filter_map(|e| e.target_id).collect();
        let targets =
            backup_targets::Entity::find().filter(backup_targets::Column::Id.is_in(target_ids)).all(txn).await?;
        let hosts: HashSet<String> = targets.iter().filter_map(|t| t.host.clone()).collect();
        let by_host: Vec<servers::Model> = if hosts.is_empty() {
            Vec::new()
        } else {
            servers::Entity::find()
                .filter(servers::Column::OrgId.eq(org))
                .filter(
                    Condition::any()
                        .add(servers::Column::Name.is_in(hosts.clone()))
                        .add(servers::Column::Ip.is_in(hosts)),
                )
                .all(txn)
                .await?
        };
        for e in &entries {
            let (Some(target), Some(job_id)) = (e.target_id, e.job_id) else { continue };
            let Some(host) = targets.iter().find(|t| t.id == target).and_then(|t| t.host.as_deref()) else { continue };
            for s in by_host.iter().filter(|s| s.name == host || s.ip == host) {
                out.entry(s.id).or_default().push(Disruption {
                    started_at: e.started_at,
                    ended_at: e.finished_at,
                    job_id,
                    what: format!("{} of backup target {target}", e.kind),
                });
            }
        }
    }
    Ok(out)
}

/// The disruption that covers an alert of `server` opened at `opened_at`, if one does at `now`.
pub(super) fn covering(
    all: &HashMap<Uuid, Vec<Disruption>>,
    server: Uuid,
    opened_at: DateTime<Utc>,
    now: DateTime<Utc>,
    margin: Duration,
) -> Option<&Disruption> {
    all.get(&server)?.iter().find(|d| {
        d.started_at <= opened_at && d.ended_at.is_none_or(|end| opened_at <= end + margin && now < end + margin)
    })
}

/// Names the job on the incident (once) with a timeline entry.
pub(super) async fn mark_incident(
    txn: &DatabaseTransaction,
    incident: Uuid,
    d: &Disruption,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let marked = monitor_incidents::Entity::update_many()
        .col_expr(monitor_incidents::Column::SuppressedBy, Expr::value(format!("job:{}", d.job_id)))
        .filter(monitor_incidents::Column::Id.eq(incident))
        .filter(monitor_incidents::Column::SuppressedBy.is_null())
        .exec(txn)
        .await?;
    if marked.rows_affected > 0 {
        crate::monitoring::add_incident_event(
            txn,
            incident,
            now,
            "suppressed",
            Some(format!("expected disruption: {} (job {}): recorded, not paged", d.what, d.job_id)),
        )
        .await?;
    }
    Ok(())
}
