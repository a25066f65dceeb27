//! The provisioning store: runs (what each ran, exactly), their hosts, the leases a run takes on its
//! servers (shared with reservations), and the one transaction that ends a run and writes its outcome
//! back into the inventory.

mod leases;
mod outcome;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::JobId;
use sentinel_domain::provisioning::{HostCounts, HostStatus, RunState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use leases::LeaseAttempt;
pub use outcome::{HostOutcome, RunOutcome};

use crate::entity::{provision_run_hosts, provision_runs};
use crate::{DbError, JobRecord, JobStore, NewJob};
use sentinel_domain::JobEvent;

/// Who owns the secrets sealed for a run's extra variables.
pub fn secret_owner(run_id: Uuid) -> String {
    format!("provision_run:{run_id}")
}

/// One host as the run saw it when it was created: what its inventory file is written from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSnapshot {
    pub server_id: Uuid,
    /// The inventory name ansible reports the host under (unique within the run).
    pub host: String,
    pub ip: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    pub host_keys: Vec<String>,
    pub accept_new_host_key: bool,
    pub ssh_credential_id: Option<Uuid>,
}

/// One host of a run and how it fared.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHostRecord {
    pub server_id: Uuid,
    pub host: String,
    pub status: HostStatus,
    pub reason: Option<String>,
    pub counts: Option<HostCounts>,
    pub diff: Option<String>,
}

/// A provisioning run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub job_id: JobId,
    pub playbook: String,
    pub playbook_hash: String,
    pub check_mode: bool,
    pub config_id: Option<Uuid>,
    pub config_version: Option<i64>,
    pub extra_var_names: Vec<String>,
    /// Stored form: secret values are `{"$secret": id}` references.
    pub extra_vars: Value,
    pub inventory: Vec<HostSnapshot>,
    pub ansible_version: Option<String>,
    pub timeout_secs: u64,
    pub state: RunState,
    pub reason: Option<String>,
    /// While waiting for its servers: how many earlier runs hold or wait for one of them.
    pub queue_position: Option<u32>,
    pub retry_of: Option<Uuid>,
    /// The reservation this run is for (its servers may be taken from that lease).
    pub reservation_id: Option<Uuid>,
    pub applies_run: Option<Uuid>,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub hosts: Vec<RunHostRecord>,
}

/// A run to create (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: Uuid,
    pub org_id: Uuid,
    pub playbook: String,
    pub playbook_hash: String,
    pub check_mode: bool,
    pub config_id: Option<Uuid>,
    pub config_version: Option<i64>,
    pub extra_vars: Value,
    /// Secrets sealed for the extra variables: (id, key id, ciphertext).
    pub secrets: Vec<(Uuid, String, String)>,
    pub inventory: Vec<HostSnapshot>,
    pub timeout_secs: u64,
    pub retry_of: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub applies_run: Option<Uuid>,
    pub requested_by: String,
}

/// What `GET /provisioning/runs` filters on.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub state: Option<RunState>,
    pub playbook: Option<String>,
    pub server_id: Option<Uuid>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

fn corrupt(id: Uuid, what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("provision run {id}: {what}: {e}"))
}

fn host_record(m: provision_run_hosts::Model) -> Result<RunHostRecord, DbError> {
    Ok(RunHostRecord {
        server_id: m.server_id,
        status: HostStatus::parse(&m.status).ok_or_else(|| corrupt(m.run_id, "host status", &m.status))?,
        counts: m.counts.map(serde_json::from_value).transpose().map_err(|e| corrupt(m.run_id, "counts", e))?,
        host: m.host,
        reason: m.reason,
        diff: m.diff,
    })
}

fn run_record(m: provision_runs::Model, hosts: Vec<provision_run_hosts::Model>) -> Result<RunRecord, DbError> {
    let id = m.id;
    Ok(RunRecord {
        id,
        org_id: m.org_id,
        job_id: JobId::from_uuid(m.job_id),
        playbook: m.playbook,
        playbook_hash: m.playbook_hash,
        check_mode: m.check_mode,
        config_id: m.config_id,
        config_version: m.config_version,
        extra_var_names: serde_json::from_value(m.extra_var_names).map_err(|e| corrupt(id, "extra_var_names", e))?,
        extra_vars: m.extra_vars,
        inventory: serde_json::from_value(m.inventory).map_err(|e| corrupt(id, "inventory", e))?,
        ansible_version: m.ansible_version,
        timeout_secs: u64::try_from(m.timeout_secs).map_err(|e| corrupt(id, "timeout_secs", e))?,
        state: RunState::parse(&m.state).ok_or_else(|| corrupt(id, "state", &m.state))?,
        reason: m.reason,
        queue_position: m.queue_position.and_then(|p| u32::try_from(p).ok()),
        retry_of: m.retry_of,
        reservation_id: m.reservation_id,
        applies_run: m.applies_run,
        requested_by: m.requested_by,
        created_at: m.created_at,
        started_at: m.started_at,
        finished_at: m.finished_at,
        hosts: hosts.into_iter().map(host_record).collect::<Result<_, _>>()?,
    })
}

/// Repository of provisioning runs.
#[derive(Clone, Debug)]
pub struct ProvisioningStore {
    pub(crate) conn: DatabaseConnection,
}

impl ProvisioningStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Creates the run, its hosts (all `pending`), its sealed secrets and its job in one transaction:
    /// a run without its job (or the reverse) never exists. The job is unpublished; publish it after.
    pub async fn create(&self, run: NewRun, job: NewJob) -> Result<(RunRecord, JobRecord, JobEvent), DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let job_id = job.id;
        let names: Vec<String> = run.extra_vars.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let (job, event) = JobStore::insert_in(&txn, job).await?;
        provision_runs::ActiveModel {
            id: Set(run.id),
            org_id: Set(run.org_id),
            job_id: Set(job_id.as_uuid()),
            playbook: Set(run.playbook.clone()),
            playbook_hash: Set(run.playbook_hash.clone()),
            check_mode: Set(run.check_mode),
            config_id: Set(run.config_id),
            config_version: Set(run.config_version),
            extra_var_names: Set(json_of(&names)),
            extra_vars: Set(run.extra_vars.clone()),
            inventory: Set(json_of(&run.inventory)),
            ansible_version: Set(None),
            timeout_secs: Set(i64::try_from(run.timeout_secs).unwrap_or(i64::MAX)),
            state: Set(RunState::Queued.as_str().to_owned()),
            reason: Set(None),
            queue_position: Set(None),
            retry_of: Set(run.retry_of),
            reservation_id: Set(run.reservation_id),
            applies_run: Set(run.applies_run),
            requested_by: Set(run.requested_by.clone()),
            created_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
        }
        .insert(&txn)
        .await?;
        let hosts: Vec<provision_run_hosts::ActiveModel> = run
            .inventory
            .iter()
            .map(|h| provision_run_hosts::ActiveModel {
                run_id: Set(run.id),
                server_id: Set(h.server_id),
                host: Set(h.host.clone()),
                status: Set(HostStatus::Pending.as_str().to_owned()),
                reason: Set(None),
                counts: Set(None),
                diff: Set(None),
            })
            .collect();
        for chunk in hosts.chunks(500) {
            provision_run_hosts::Entity::insert_many(chunk.to_vec()).exec(&txn).await?;
        }
        for (sid, key_id, sealed) in &run.secrets {
            crate::SecretStore::insert_in(&txn, *sid, Some(run.org_id), &secret_owner(run.id), key_id, sealed).await?;
        }
        txn.commit().await?;
        let rec = self.get_any(run.id).await?.ok_or_else(|| DbError::NotFound(run.id.to_string()))?;
        Ok((rec, job, event))
    }

    /// A run of `org`.
    pub async fn get(&self, org: Uuid, id: Uuid) -> Result<Option<RunRecord>, DbError> {
        Ok(self.get_any(id).await?.filter(|r| r.org_id == org))
    }

    /// A run of any organization (the worker's view).
    pub async fn get_any(&self, id: Uuid) -> Result<Option<RunRecord>, DbError> {
        let Some(m) = provision_runs::Entity::find_by_id(id).one(&self.conn).await? else { return Ok(None) };
        let hosts = provision_run_hosts::Entity::find()
            .filter(provision_run_hosts::Column::RunId.eq(id))
            .order_by_asc(provision_run_hosts::Column::Host)
            .all(&self.conn)
            .await?;
        run_record(m, hosts).map(Some)
    }

    /// The run a job runs.
    pub async fn of_job(&self, job_id: JobId) -> Result<Option<RunRecord>, DbError> {
        let m = provision_runs::Entity::find()
            .filter(provision_runs::Column::JobId.eq(job_id.as_uuid()))
            .one(&self.conn)
            .await?;
        match m {
            Some(m) => self.get_any(m.id).await,
            None => Ok(None),
        }
    }

    /// Runs of `org`, newest first, after the cursor `before` (a run id), each with its hosts.
    pub async fn list(
        &self,
        org: Uuid,
        filter: &RunFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<RunRecord>, DbError> {
        let mut cond = Condition::all().add(provision_runs::Column::OrgId.eq(org));
        if let Some(state) = filter.state {
            cond = cond.add(provision_runs::Column::State.eq(state.as_str()));
        }
        if let Some(p) = &filter.playbook {
            cond = cond.add(provision_runs::Column::Playbook.eq(p.as_str()));
        }
        if let Some(t) = filter.created_after {
            cond = cond.add(provision_runs::Column::CreatedAt.gte(t));
        }
        if let Some(t) = filter.created_before {
            cond = cond.add(provision_runs::Column::CreatedAt.lt(t));
        }
        if let Some(server) = filter.server_id {
            let mut sub = sea_orm::sea_query::Query::select();
            sub.column(provision_run_hosts::Column::RunId)
                .from(provision_run_hosts::Entity)
                .and_where(Expr::col(provision_run_hosts::Column::ServerId).eq(server));
            cond = cond.add(provision_runs::Column::Id.in_subquery(sub));
        }
        if let Some(cursor) = before {
            cond = cond.add(provision_runs::Column::Id.lt(cursor));
        }
        let runs = provision_runs::Entity::find()
            .filter(cond)
            .order_by_desc(provision_runs::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?;
        let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
        let mut hosts: std::collections::HashMap<Uuid, Vec<provision_run_hosts::Model>> = Default::default();
        if !ids.is_empty() {
            for h in provision_run_hosts::Entity::find()
                .filter(provision_run_hosts::Column::RunId.is_in(ids))
                .order_by_asc(provision_run_hosts::Column::Host)
                .all(&self.conn)
                .await?
            {
                hosts.entry(h.run_id).or_default().push(h);
            }
        }
        runs.into_iter()
            .map(|r| {
                let h = hosts.remove(&r.id).unwrap_or_default();
                run_record(r, h)
            })
            .collect()
    }
}

/// Fences a run's write by its job's attempt: the first statement of the transaction is a write
/// that matches only while `epoch` is the job's current, running attempt (so on SQLite it also takes
/// the writer lock before anything is read). `Fenced` otherwise.
pub(crate) async fn fence(conn: &impl ConnectionTrait, job_id: JobId, epoch: i64) -> Result<(), DbError> {
    if JobStore::heartbeat_in(conn, job_id, epoch).await? {
        Ok(())
    } else {
        Err(DbError::Fenced { job_id: job_id.to_string(), epoch })
    }
}

/// JSON of a value whose serialization cannot fail (strings, numbers, ids).
fn json_of<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
