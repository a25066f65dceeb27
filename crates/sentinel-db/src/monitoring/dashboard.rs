//! The dashboard summary's counts, each one range of an index (m0014): targets by activity, status
//! and alert state; silent machines; open and acknowledged incidents by severity; plans whose last
//! backup failed; jobs running now and failed in the last hour. Nothing scans history.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::MonitoringStore;
use crate::DbError;
use crate::entity::{backup_journal, backup_plans, jobs, monitor_incidents, monitor_machines, monitor_targets};

/// Plans looked at for failing backups at most (an organization with more sees the first ones).
const PLANS: u64 = 500;

/// One organization's counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardCounts {
    pub targets_up: u64,
    pub targets_down: u64,
    pub targets_paused: u64,
    /// Active but not checked yet.
    pub targets_pending: u64,
    pub targets_firing: u64,
    pub targets_flapping: u64,
    pub machines: u64,
    pub machines_silent: u64,
    /// (state, severity, count) of the incidents not resolved.
    pub incidents: Vec<(String, String, u64)>,
    pub backup_plans: u64,
    /// (plan id, plan name, its last backup's status, when it started) of plans whose last backup failed.
    pub failing_backups: Vec<(Uuid, String, String, DateTime<Utc>)>,
    pub jobs_running: u64,
    pub jobs_failed_last_hour: u64,
}

impl MonitoringStore {
    pub async fn dashboard(
        &self,
        org: Uuid,
        now: DateTime<Utc>,
        heartbeat_threshold: Duration,
    ) -> Result<DashboardCounts, DbError> {
        use monitor_targets::Column as T;
        let mut c = DashboardCounts::default();
        let rows: Vec<(bool, Option<String>, String, i64)> = monitor_targets::Entity::find()
            .select_only()
            .columns([T::IsActive, T::LastStatus, T::AlertState])
            .column_as(T::Id.count(), "n")
            .filter(T::OrgId.eq(org))
            .group_by(T::IsActive)
            .group_by(T::LastStatus)
            .group_by(T::AlertState)
            .into_tuple()
            .all(&self.conn)
            .await?;
        for (active, status, alert, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match (active, status.as_deref()) {
                (false, _) => c.targets_paused += n,
                (true, Some("up")) => c.targets_up += n,
                (true, Some("down")) => c.targets_down += n,
                (true, _) => c.targets_pending += n,
            }
            if active && alert == "firing" {
                c.targets_firing += n;
            }
            if active && alert == "flapping" {
                c.targets_flapping += n;
            }
        }
        let machines = monitor_machines::Entity::find().filter(monitor_machines::Column::OrgId.eq(org));
        c.machines = machines.clone().count(&self.conn).await?;
        c.machines_silent = machines
            .filter(monitor_machines::Column::LastSeenAt.lt(now - heartbeat_threshold))
            .count(&self.conn)
            .await?;
        use monitor_incidents::Column as I;
        let rows: Vec<(String, String, i64)> = monitor_incidents::Entity::find()
            .select_only()
            .columns([I::State, I::Severity])
            .column_as(I::Id.count(), "n")
            .filter(I::OrgId.eq(org))
            .filter(I::State.is_in(["open", "acknowledged"]))
            .group_by(I::State)
            .group_by(I::Severity)
            .into_tuple()
            .all(&self.conn)
            .await?;
        c.incidents = rows.into_iter().map(|(s, v, n)| (s, v, u64::try_from(n).unwrap_or(0))).collect();
        let plans: Vec<(Uuid, String)> = backup_plans::Entity::find()
            .select_only()
            .columns([backup_plans::Column::Id, backup_plans::Column::Name])
            .filter(backup_plans::Column::OrgId.eq(org))
            .order_by_asc(backup_plans::Column::Id)
            .limit(PLANS)
            .into_tuple()
            .all(&self.conn)
            .await?;
        c.backup_plans = plans.len() as u64;
        for (plan, name) in plans {
            use backup_journal::Column as J;
            let last: Option<(String, DateTime<Utc>)> = backup_journal::Entity::find()
                .select_only()
                .columns([J::Status, J::StartedAt])
                .filter(J::PlanId.eq(plan))
                .filter(J::Kind.eq("backup"))
                .filter(J::Status.ne("running"))
                .order_by_desc(J::StartedAt)
                .into_tuple()
                .one(&self.conn)
                .await?;
            if let Some((status, at)) = last
                && matches!(status.as_str(), "failed" | "incomplete" | "interrupted")
            {
                c.failing_backups.push((plan, name, status, at));
            }
        }
        let org_jobs = jobs::Entity::find().filter(jobs::Column::OrgId.eq(org));
        c.jobs_running = org_jobs.clone().filter(jobs::Column::State.eq("running")).count(&self.conn).await?;
        c.jobs_failed_last_hour = org_jobs
            .filter(jobs::Column::State.eq("failed"))
            .filter(jobs::Column::FinishedAt.gte(now - Duration::hours(1)))
            .count(&self.conn)
            .await?;
        Ok(c)
    }
}
