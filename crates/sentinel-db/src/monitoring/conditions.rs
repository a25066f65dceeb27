//! Alerts raised by Sentinel's own work, through the same alert and incident path as checks: a
//! backup plan whose backup failed (resolved by its next good backup), a plan past its RPO
//! (resolved once a backup is young enough again), and a failed provisioning run (resolved by the
//! next successful run of the same playbook). Each is a condition on a source: raised once while
//! it holds, resolved when it stops. Callers hold a lock on the source's row, so two writers never
//! raise one condition twice.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition as Where, DatabaseTransaction, EntityTrait, QueryFilter, TransactionTrait};
use sentinel_domain::monitoring::alerts::Severity;
use uuid::Uuid;

use super::MonitoringStore;
use super::transitions::{NewAlert, open_alert, resolve_alert};
use crate::DbError;
use crate::entity::{backup_plans, backup_targets, monitor_alerts, provision_runs, servers};

pub(crate) const BACKUP_FAILED: &str = "backup_failed";
pub(crate) const BACKUP_RPO_BREACHED: &str = "backup_rpo_breached";
pub(crate) const PROVISIONING_FAILED: &str = "provisioning_failed";

/// A condition on one source.
pub(crate) struct Condition {
    pub org_id: Uuid,
    /// `backup` (a plan) or `provisioning` (a run).
    pub source_kind: &'static str,
    pub source_id: Uuid,
    pub rule: &'static str,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub server_id: Option<Uuid>,
}

/// Raises the condition's alert if it holds and none fires, or resolves the firing one if it does
/// not hold; true when something changed.
pub(crate) async fn set_condition(
    txn: &DatabaseTransaction,
    c: Condition,
    holds: bool,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let firing = monitor_alerts::Entity::find()
        .filter(monitor_alerts::Column::SourceId.eq(c.source_id))
        .filter(monitor_alerts::Column::Rule.eq(c.rule))
        .filter(monitor_alerts::Column::State.eq("firing"))
        .one(txn)
        .await?;
    match (holds, firing) {
        (true, None) => {
            let alert = NewAlert {
                id: Uuid::now_v7(),
                org_id: c.org_id,
                source_kind: c.source_kind,
                source_id: c.source_id,
                group_key: Some(format!("{}:{}", c.source_kind, c.source_id)),
                title: c.title,
                rule: c.rule,
                severity: c.severity,
                flapping: false,
                message: c.message,
                server_id: c.server_id,
            };
            open_alert(txn, alert, now).await?;
            Ok(true)
        }
        (false, Some(a)) => {
            resolve_alert(txn, a.id, None, now).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The inventory server a backup target's database runs on (by name or address), if any.
pub(crate) async fn server_of_backup_target(txn: &DatabaseTransaction, target: Uuid) -> Result<Option<Uuid>, DbError> {
    let Some(t) = backup_targets::Entity::find_by_id(target).one(txn).await? else { return Ok(None) };
    let Some(host) = t.host.filter(|h| !h.is_empty()) else { return Ok(None) };
    Ok(servers::Entity::find()
        .filter(servers::Column::OrgId.eq(t.org_id))
        .filter(Where::any().add(servers::Column::Name.eq(host.clone())).add(servers::Column::Ip.eq(host)))
        .one(txn)
        .await?
        .map(|s| s.id))
}

/// Locks a backup plan's row for the transaction (condition writers of one plan take turns).
async fn lock_plan(txn: &DatabaseTransaction, plan: Uuid) -> Result<Option<backup_plans::Model>, DbError> {
    backup_plans::Entity::update_many()
        .col_expr(backup_plans::Column::Id, Expr::col(backup_plans::Column::Id))
        .filter(backup_plans::Column::Id.eq(plan))
        .exec(txn)
        .await?;
    Ok(backup_plans::Entity::find_by_id(plan).one(txn).await?)
}

/// A backup of `plan` failed (`failed`) or succeeded: raises or resolves `backup_failed`.
pub(crate) async fn backup_outcome(
    txn: &DatabaseTransaction,
    plan: Uuid,
    failed: bool,
    message: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let Some(p) = lock_plan(txn, plan).await? else { return Ok(()) };
    let server_id = server_of_backup_target(txn, p.target_id).await?;
    let condition = Condition {
        org_id: p.org_id,
        source_kind: "backup",
        source_id: plan,
        rule: BACKUP_FAILED,
        severity: Severity::Critical,
        title: format!("backup plan {} failed", p.name),
        message: message.unwrap_or_else(|| "the backup failed".to_owned()),
        server_id,
    };
    set_condition(txn, condition, failed, now).await?;
    Ok(())
}

/// A run ended: a failed real run raises `provisioning_failed`; a successful one resolves those of
/// earlier runs of the same playbook.
pub(crate) async fn provisioning_outcome(
    txn: &DatabaseTransaction,
    run: &provision_runs::Model,
    failed_servers: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    if run.check_mode {
        return Ok(());
    }
    if run.state == "failed" {
        let condition = Condition {
            org_id: run.org_id,
            source_kind: "provisioning",
            source_id: run.id,
            rule: PROVISIONING_FAILED,
            severity: Severity::Critical,
            title: format!("provisioning run of {} failed", run.playbook),
            message: run.reason.clone().unwrap_or_else(|| format!("{} host(s) failed", failed_servers.len())),
            server_id: (failed_servers.len() == 1).then(|| failed_servers[0]),
        };
        set_condition(txn, condition, true, now).await?;
    } else if run.state == "succeeded" {
        let firing = monitor_alerts::Entity::find()
            .filter(monitor_alerts::Column::OrgId.eq(run.org_id))
            .filter(monitor_alerts::Column::Rule.eq(PROVISIONING_FAILED))
            .filter(monitor_alerts::Column::State.eq("firing"))
            .all(txn)
            .await?;
        for a in firing {
            let same = provision_runs::Entity::find_by_id(a.source_id)
                .one(txn)
                .await?
                .is_some_and(|earlier| earlier.playbook == run.playbook);
            if same {
                resolve_alert(txn, a.id, None, now).await?;
            }
        }
    }
    Ok(())
}

impl MonitoringStore {
    /// Raises or resolves a plan's `backup_rpo_breached` (the scheduler's objective refresh).
    pub async fn backup_objective(
        &self,
        plan: Uuid,
        breached: bool,
        newest_good_age_secs: f64,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let now = now.trunc_subsecs(6);
        let firing = monitor_alerts::Entity::find()
            .filter(monitor_alerts::Column::SourceId.eq(plan))
            .filter(monitor_alerts::Column::Rule.eq(BACKUP_RPO_BREACHED))
            .filter(monitor_alerts::Column::State.eq("firing"))
            .one(&self.conn)
            .await?;
        // Most refreshes change nothing: only then take a transaction and the plan's lock.
        if breached == firing.is_some() {
            return Ok(false);
        }
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let Some(p) = lock_plan(&txn, plan).await? else { return Ok(false) };
        let server_id = server_of_backup_target(&txn, p.target_id).await?;
        let hours = newest_good_age_secs / 3600.0;
        let condition = Condition {
            org_id: p.org_id,
            source_kind: "backup",
            source_id: plan,
            rule: BACKUP_RPO_BREACHED,
            severity: Severity::Critical,
            title: format!("backup plan {} is past its RPO", p.name),
            message: format!("the newest good backup is {hours:.1} h old"),
            server_id,
        };
        let changed = set_condition(&txn, condition, breached, now).await?;
        txn.commit().await?;
        Ok(changed)
    }
}
