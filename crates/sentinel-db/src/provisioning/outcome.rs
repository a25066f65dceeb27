//! How a run ends: one transaction writes the run's state, each host's result, and each server's new
//! status (configured, or error with its reason), ends the run's leases and adds the history rows —
//! fenced by the job's attempt, so a dead worker's late outcome is refused. Also the sweep that ends
//! runs whose job ended without them (cancelled while queued, quarantined after crashes).

use chrono::{SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};
use sentinel_domain::inventory::{LeaseKind, ServerStatus};
use sentinel_domain::provisioning::{HostCounts, HostErrorReason, HostStatus, RunState};
use sentinel_domain::{JobId, JobState};
use uuid::Uuid;

use super::{ProvisioningStore, RunRecord, fence, json_of};
use crate::DbError;
use crate::entity::{jobs, provision_run_hosts, provision_runs, servers};
use crate::inventory::{ServerRecord, save_in};

/// One host's final result.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOutcome {
    pub server_id: Uuid,
    pub status: HostStatus,
    pub reason: Option<HostErrorReason>,
    pub counts: Option<HostCounts>,
    pub diff: Option<String>,
    /// Host keys learned on first contact (only for a server that allows it and had none pinned).
    pub pinned_host_keys: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub state: RunState,
    pub reason: Option<String>,
    pub hosts: Vec<HostOutcome>,
}

/// The server after the run: configured or error for a real run that reached the host; back to its
/// status before the lease for a check run, a cancel, or a host the run never reached.
fn server_after(old: &ServerRecord, run: &RunRecord, host: Option<&HostOutcome>) -> ServerRecord {
    let mut new = old.clone();
    let before = old.status_before_lease.unwrap_or(ServerStatus::Available);
    let (status, reason) = match host {
        _ if run.check_mode => (before, old.status_reason.clone()),
        Some(h) if matches!(h.status, HostStatus::Ok | HostStatus::Changed) => (ServerStatus::Configured, None),
        Some(HostOutcome { reason: Some(HostErrorReason::Cancelled), .. }) => (before, old.status_reason.clone()),
        Some(h) => (ServerStatus::Error, Some(h.reason.unwrap_or(HostErrorReason::Failed).as_str().to_owned())),
        None => (before, old.status_reason.clone()),
    };
    new.status = status;
    new.status_reason = reason;
    if let Some(h) = host
        && old.host_keys.is_empty()
        && old.accept_new_host_key
        && !h.pinned_host_keys.is_empty()
    {
        // First contact, allowed by the operator: the key seen is pinned, and first contact is over.
        new.host_keys = h.pinned_host_keys.clone();
        new.accept_new_host_key = false;
    }
    new.lease = None;
    new.status_before_lease = None;
    new
}

impl ProvisioningStore {
    /// Ends `run` for the attempt `epoch` of its job. `Fenced` when that attempt is no longer current.
    pub async fn finish(&self, run: &RunRecord, epoch: i64, outcome: &RunOutcome) -> Result<RunRecord, DbError> {
        // A concurrent edit of one of the servers makes the fenced server update miss: read again.
        for _ in 0..5 {
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            fence(&txn, run.job_id, epoch).await?;
            match write_outcome(&txn, run, outcome, Some(run.job_id)).await {
                Ok(()) => {
                    // A failed run raises `provisioning_failed`; a good one resolves its playbook's.
                    if let Some(ended) = provision_runs::Entity::find_by_id(run.id).one(&txn).await? {
                        let failed: Vec<Uuid> = outcome
                            .hosts
                            .iter()
                            .filter(|h| matches!(h.status, HostStatus::Failed | HostStatus::Unreachable))
                            .map(|h| h.server_id)
                            .collect();
                        crate::monitoring::provisioning_outcome(&txn, &ended, &failed, Utc::now().trunc_subsecs(6))
                            .await?;
                    }
                    txn.commit().await?;
                    return self.get_any(run.id).await?.ok_or_else(|| DbError::NotFound(run.id.to_string()));
                }
                Err(DbError::Conflict(_)) => txn.rollback().await?,
                Err(e) => return Err(e),
            }
        }
        Err(DbError::Conflict(format!("run {}: its servers kept changing while its outcome was written", run.id)))
    }

    /// Ends the runs whose job ended without them — cancelled while queued, or failed by the crash
    /// quarantine — and gives their servers back. Returns how many it ended.
    pub async fn end_orphaned_runs(&self) -> Result<usize, DbError> {
        let active = [RunState::Queued, RunState::Waiting, RunState::Running].map(RunState::as_str);
        let open: Vec<(Uuid, Uuid)> = provision_runs::Entity::find()
            .select_only()
            .column(provision_runs::Column::Id)
            .column(provision_runs::Column::JobId)
            .filter(provision_runs::Column::State.is_in(active))
            .limit(1000)
            .into_tuple()
            .all(&self.conn)
            .await?;
        if open.is_empty() {
            return Ok(0);
        }
        let ended: Vec<(Uuid, String)> = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .column(jobs::Column::State)
            .filter(jobs::Column::Id.is_in(open.iter().map(|(_, j)| *j)))
            .filter(
                jobs::Column::State
                    .is_in([JobState::Succeeded, JobState::Failed, JobState::Cancelled].map(JobState::as_str)),
            )
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut count = 0;
        for (job, state) in ended {
            let Some((run_id, _)) = open.iter().find(|(_, j)| *j == job) else { continue };
            let Some(run) = self.get_any(*run_id).await? else { continue };
            let cancelled = state == JobState::Cancelled.as_str();
            let (state, reason, host_reason) = if cancelled {
                (RunState::Cancelled, "cancelled before it ran", HostErrorReason::Cancelled)
            } else {
                (RunState::Failed, "interrupted: its job ended without finishing the run", HostErrorReason::Interrupted)
            };
            let started = run.state == RunState::Running;
            let outcome = RunOutcome {
                state,
                reason: Some(reason.to_owned()),
                hosts: run
                    .hosts
                    .iter()
                    .filter(|_| started)
                    .map(|h| HostOutcome {
                        server_id: h.server_id,
                        status: HostStatus::NotRun,
                        reason: Some(host_reason),
                        counts: h.counts,
                        diff: h.diff.clone(),
                        pinned_host_keys: Vec::new(),
                    })
                    .collect(),
            };
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            match write_outcome(&txn, &run, &outcome, Some(JobId::from_uuid(job))).await {
                Ok(()) => {
                    txn.commit().await?;
                    count += 1;
                }
                Err(DbError::Conflict(_)) => txn.rollback().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}

async fn write_outcome(
    txn: &impl ConnectionTrait,
    run: &RunRecord,
    outcome: &RunOutcome,
    job_id: Option<JobId>,
) -> Result<(), DbError> {
    let now = Utc::now().trunc_subsecs(6);
    let updated = provision_runs::Entity::update_many()
        .col_expr(provision_runs::Column::State, Expr::value(outcome.state.as_str()))
        .col_expr(provision_runs::Column::Reason, Expr::value(outcome.reason.clone()))
        .col_expr(provision_runs::Column::QueuePosition, Expr::value(Option::<i32>::None))
        .col_expr(provision_runs::Column::FinishedAt, Expr::value(now))
        .filter(provision_runs::Column::Id.eq(run.id))
        .filter(
            provision_runs::Column::State
                .is_in([RunState::Queued, RunState::Waiting, RunState::Running].map(RunState::as_str)),
        )
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DbError::Conflict(format!("run {} has already ended", run.id)));
    }
    for h in &outcome.hosts {
        provision_run_hosts::Entity::update_many()
            .col_expr(provision_run_hosts::Column::Status, Expr::value(h.status.as_str()))
            .col_expr(provision_run_hosts::Column::Reason, Expr::value(h.reason.map(|r| r.as_str().to_owned())))
            .col_expr(provision_run_hosts::Column::Counts, Expr::value(h.counts.as_ref().map(json_of)))
            .col_expr(provision_run_hosts::Column::Diff, Expr::value(h.diff.clone()))
            .filter(provision_run_hosts::Column::RunId.eq(run.id))
            .filter(provision_run_hosts::Column::ServerId.eq(h.server_id))
            .exec(txn)
            .await?;
    }
    // Only the servers this run still holds: a lease it never took (the run was waiting) is not its to end.
    let held = servers::Entity::find()
        .filter(servers::Column::OrgId.eq(run.org_id))
        .filter(servers::Column::LeaseId.eq(run.id))
        .filter(servers::Column::LeaseKind.eq(LeaseKind::Run.as_str()))
        .all(txn)
        .await?;
    for row in held {
        let old = ServerRecord::try_from(row)?;
        let host = outcome.hosts.iter().find(|h| h.server_id == old.id);
        let new = server_after(&old, run, host);
        let detail = match host {
            Some(h) => format!(
                "run {}: {}{}",
                run.id,
                h.status.as_str(),
                h.reason.map(|r| format!(" ({})", r.as_str())).unwrap_or_default()
            ),
            None => format!("run {}: {}", run.id, outcome.state),
        };
        save_in(txn, &old, new, "system", "run_end", job_id, Some(detail)).await?;
    }
    Ok(())
}
