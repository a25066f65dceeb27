//! The leases a run takes on its servers: all at once or none, in FIFO order among the runs that
//! share a server, fenced by the job's attempt — the same one-lease-per-server column set that
//! reservations use, so a reserved server is provisioned only by the run its reservation is for.

use chrono::{SubsecRound, Utc};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use sentinel_domain::JobState;
use sentinel_domain::inventory::{LeaseKind, ServerStatus};
use sentinel_domain::provisioning::RunState;
use uuid::Uuid;

use super::{ProvisioningStore, RunRecord, fence};
use crate::DbError;
use crate::entity::{jobs, provision_run_hosts, provision_runs, servers};
use crate::inventory::{Lease, ServerRecord, save_in};

/// How a try at a run's leases went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// Every server is leased to the run; it is `running`.
    Taken,
    /// The run waits: `position` earlier runs hold or wait for one of its servers (0: none does, but
    /// a server is held by something else, named in `blocked_by`).
    Waiting { position: u32, blocked_by: Option<String> },
}

/// Why a server can never be leased to this run (the run fails).
fn refused(server: &ServerRecord, why: &str) -> DbError {
    DbError::Conflict(format!("server {} ({}) {why}", server.name, server.id))
}

impl ProvisioningStore {
    /// How many unfinished runs created before `run` share one of its servers.
    async fn runs_ahead(&self, conn: &impl ConnectionTrait, run: &RunRecord) -> Result<u32, DbError> {
        let active = [RunState::Queued, RunState::Waiting, RunState::Running].map(RunState::as_str);
        let earlier: Vec<(Uuid, Uuid)> = provision_runs::Entity::find()
            .select_only()
            .column(provision_runs::Column::Id)
            .column(provision_runs::Column::JobId)
            .filter(provision_runs::Column::OrgId.eq(run.org_id))
            .filter(provision_runs::Column::State.is_in(active))
            .filter(provision_runs::Column::Id.lt(run.id))
            .into_tuple()
            .all(conn)
            .await?;
        if earlier.is_empty() {
            return Ok(0);
        }
        // A run whose job already ended (cancelled while queued) waits for nothing; the sweep ends it.
        let live_jobs: Vec<Uuid> = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .filter(jobs::Column::Id.is_in(earlier.iter().map(|(_, j)| *j)))
            .filter(jobs::Column::State.is_in([JobState::Queued.as_str(), JobState::Running.as_str()]))
            .into_tuple()
            .all(conn)
            .await?;
        let live: Vec<Uuid> = earlier.iter().filter(|(_, j)| live_jobs.contains(j)).map(|(r, _)| *r).collect();
        if live.is_empty() {
            return Ok(0);
        }
        let mine: Vec<Uuid> = run.inventory.iter().map(|h| h.server_id).collect();
        let sharing: Vec<Uuid> = provision_run_hosts::Entity::find()
            .select_only()
            .column(provision_run_hosts::Column::RunId)
            .distinct()
            .filter(provision_run_hosts::Column::RunId.is_in(live))
            .filter(provision_run_hosts::Column::ServerId.is_in(mine))
            .into_tuple()
            .all(conn)
            .await?;
        Ok(u32::try_from(sharing.len()).unwrap_or(u32::MAX))
    }

    /// Tries to lease every server of `run` to the attempt `epoch` of its job. FIFO: while an earlier
    /// unfinished run shares a server, the run waits (its queue position is stored on it). `Fenced`
    /// when the attempt is stale; `Conflict` when a server can never be leased (retired, deleted).
    pub async fn take_leases(&self, run: &RunRecord, epoch: i64, holder: &str) -> Result<LeaseAttempt, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        fence(&txn, run.job_id, epoch).await?;
        let ahead = self.runs_ahead(&txn, run).await?;
        if ahead > 0 {
            set_waiting(&txn, run.id, ahead).await?;
            txn.commit().await?;
            return Ok(LeaseAttempt::Waiting { position: ahead, blocked_by: None });
        }
        let ids: Vec<Uuid> = run.inventory.iter().map(|h| h.server_id).collect();
        let mut q = servers::Entity::find()
            .filter(servers::Column::OrgId.eq(run.org_id))
            .filter(servers::Column::Id.is_in(ids.clone()))
            .order_by_asc(servers::Column::Id);
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // Locked in id order, so two runs sharing servers cannot deadlock.
            q = q.lock(LockType::Update);
        }
        let rows = q.all(&txn).await?;
        if rows.len() != ids.len() {
            txn.rollback().await?;
            return Err(DbError::Conflict("a server of the run was deleted since the run was created".into()));
        }
        let now = Utc::now().trunc_subsecs(6);
        let mut leased = Vec::with_capacity(rows.len());
        for row in rows {
            let old = ServerRecord::try_from(row)?;
            let mut new = old.clone();
            match &old.lease {
                None => new.status_before_lease = Some(old.status),
                // Ours already: an earlier attempt of this run took it and died.
                Some(l) if l.kind == LeaseKind::Run && l.id == run.id => {}
                Some(l) if l.kind == LeaseKind::Reservation && Some(l.id) == run.reservation_id => {}
                Some(l) => {
                    let blocked = format!("server {} is held by a {} ({})", old.name, l.kind.as_str(), l.holder);
                    set_waiting(&txn, run.id, 0).await?;
                    txn.commit().await?;
                    return Ok(LeaseAttempt::Waiting { position: 0, blocked_by: Some(blocked) });
                }
            }
            if old.status == ServerStatus::Retired {
                txn.rollback().await?;
                return Err(refused(&old, "is retired"));
            }
            new.status = ServerStatus::Provisioning;
            new.lease = Some(Lease {
                id: run.id,
                kind: LeaseKind::Run,
                holder: holder.to_owned(),
                purpose: Some(format!("provisioning run {} ({})", run.id, run.playbook)),
                job_id: Some(run.job_id),
                expires_at: None,
            });
            leased.push((old, new));
        }
        for (old, new) in leased {
            if old.lease.as_ref().is_some_and(|l| l.id == run.id) {
                continue;
            }
            save_in(&txn, &old, new, holder, "run_start", Some(run.job_id), Some(format!("run {}", run.id))).await?;
        }
        provision_runs::Entity::update_many()
            .col_expr(provision_runs::Column::State, Expr::value(RunState::Running.as_str()))
            .col_expr(provision_runs::Column::QueuePosition, Expr::value(Option::<i32>::None))
            .col_expr(provision_runs::Column::StartedAt, Expr::value(now))
            .filter(provision_runs::Column::Id.eq(run.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(LeaseAttempt::Taken)
    }

    /// Records the ansible-core version a run uses (once it is known, before it starts).
    pub async fn set_ansible_version(&self, run: Uuid, version: &str) -> Result<(), DbError> {
        provision_runs::Entity::update_many()
            .col_expr(provision_runs::Column::AnsibleVersion, Expr::value(version))
            .filter(provision_runs::Column::Id.eq(run))
            .exec(&self.conn)
            .await?;
        Ok(())
    }
}

async fn set_waiting(conn: &impl ConnectionTrait, run: Uuid, position: u32) -> Result<(), DbError> {
    provision_runs::Entity::update_many()
        .col_expr(provision_runs::Column::State, Expr::value(RunState::Waiting.as_str()))
        .col_expr(provision_runs::Column::QueuePosition, Expr::value(i32::try_from(position).unwrap_or(i32::MAX)))
        .filter(provision_runs::Column::Id.eq(run))
        .exec(conn)
        .await?;
    Ok(())
}
