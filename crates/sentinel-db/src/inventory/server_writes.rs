//! Writes of single servers: create, edit (fenced by version, one history row per edit in the same
//! transaction) and delete (refused while a reservation or a run holds the server).

use chrono::{SubsecRound, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use sentinel_domain::JobId;
use sentinel_domain::inventory::{Labels, ServerStatus, label_index};
use serde_json::json;
use uuid::Uuid;

use super::{InventoryStore, ServerRecord, history};
use crate::entity::servers;
use crate::{DbError, unique};

/// A new server's fields (validated by the caller).
#[derive(Debug, Clone)]
pub struct ServerDraft {
    pub provider_ref: String,
    pub name: String,
    pub ip: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    pub region: String,
    pub labels: Labels,
    pub notes: String,
    pub host_keys: Vec<String>,
    pub accept_new_host_key: bool,
    pub ssh_credential_id: Option<Uuid>,
}

impl ServerDraft {
    pub(crate) fn into_record(self, org: Uuid, now: chrono::DateTime<Utc>) -> ServerRecord {
        ServerRecord {
            id: Uuid::now_v7(),
            org_id: org,
            provider_ref: self.provider_ref,
            name: self.name,
            ip: self.ip,
            ssh_port: self.ssh_port,
            ssh_user: self.ssh_user,
            region: self.region,
            labels: self.labels,
            notes: self.notes,
            status: ServerStatus::Available,
            status_reason: None,
            last_action_at: Some(now),
            host_keys: self.host_keys,
            accept_new_host_key: self.accept_new_host_key,
            ssh_credential_id: self.ssh_credential_id,
            lease: None,
            status_before_lease: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The row a record is stored as.
pub(crate) fn to_model(r: &ServerRecord) -> servers::Model {
    servers::Model {
        id: r.id,
        org_id: r.org_id,
        provider_ref: r.provider_ref.clone(),
        name: r.name.clone(),
        ip: r.ip.clone(),
        ssh_port: i32::from(r.ssh_port),
        ssh_user: r.ssh_user.clone(),
        region: r.region.clone(),
        labels: json!(r.labels),
        label_index: label_index(&r.labels),
        notes: r.notes.clone(),
        status: r.status.as_str().to_owned(),
        status_reason: r.status_reason.clone(),
        last_action_at: r.last_action_at,
        host_keys: json!(r.host_keys),
        accept_new_host_key: r.accept_new_host_key,
        ssh_credential_id: r.ssh_credential_id,
        lease_id: r.lease.as_ref().map(|l| l.id),
        lease_kind: r.lease.as_ref().map(|l| l.kind.as_str().to_owned()),
        lease_holder: r.lease.as_ref().map(|l| l.holder.clone()),
        lease_purpose: r.lease.as_ref().and_then(|l| l.purpose.clone()),
        lease_job_id: r.lease.as_ref().and_then(|l| l.job_id.map(|j| j.as_uuid())),
        lease_expires_at: r.lease.as_ref().and_then(|l| l.expires_at),
        status_before_lease: r.status_before_lease.map(|s| s.as_str().to_owned()),
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Why a server could not be deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteRefusal {
    NotFound,
    /// Held by a reservation or a run; the current status.
    Held(ServerStatus),
}

/// An edit applied as one fenced `UPDATE` plus its history row; `Conflict` when the row changed
/// since `old` was read.
pub(crate) async fn save_in(
    conn: &impl ConnectionTrait,
    old: &ServerRecord,
    new: ServerRecord,
    actor: &str,
    action: &str,
    job_id: Option<JobId>,
    detail: Option<String>,
) -> Result<ServerRecord, DbError> {
    let new = update_fenced(conn, old, new).await?;
    history::insert_all(conn, vec![history::entry(Some(old), &new, actor, action, job_id, detail)]).await?;
    Ok(new)
}

/// Writes `new` over `old` if the row is still at `old.version`; bumps the version and the times.
pub(crate) async fn update_fenced(
    conn: &impl ConnectionTrait,
    old: &ServerRecord,
    mut new: ServerRecord,
) -> Result<ServerRecord, DbError> {
    let now = Utc::now().trunc_subsecs(6);
    new.version = old.version + 1;
    new.updated_at = now;
    new.last_action_at = Some(now);
    let res = servers::Entity::update_many()
        .set(servers::ActiveModel::from(to_model(&new)).reset_all())
        .filter(servers::Column::Id.eq(old.id))
        .filter(servers::Column::OrgId.eq(old.org_id))
        .filter(servers::Column::Version.eq(old.version))
        .exec(conn)
        .await
        .map_err(unique)?;
    if res.rows_affected == 0 {
        return Err(DbError::Conflict(format!("server {} changed meanwhile; read it again and retry", old.id)));
    }
    Ok(new)
}

impl InventoryStore {
    /// Creates one server (`available`), with its history row. `Duplicate` when the organization
    /// already has a server with this `provider_ref`.
    pub async fn create_server(&self, org: Uuid, draft: ServerDraft, actor: &str) -> Result<ServerRecord, DbError> {
        let rec = draft.into_record(org, Utc::now().trunc_subsecs(6));
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        servers::ActiveModel::from(to_model(&rec)).reset_all().insert(&txn).await.map_err(unique)?;
        history::insert_all(&txn, vec![history::entry(None, &rec, actor, "create", None, None)]).await?;
        txn.commit().await?;
        Ok(rec)
    }

    /// Stores `new` in place of `old` (read earlier) and records the action. `Conflict` when the server
    /// changed meanwhile; `Duplicate` when a new `provider_ref` is taken.
    pub async fn save_server(
        &self,
        old: &ServerRecord,
        new: ServerRecord,
        actor: &str,
        action: &str,
        job_id: Option<JobId>,
    ) -> Result<ServerRecord, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let saved = save_in(&txn, old, new, actor, action, job_id, None).await?;
        txn.commit().await?;
        Ok(saved)
    }

    /// Deletes a server of `org` unless a reservation or a run holds it.
    pub async fn delete_server(&self, org: Uuid, id: Uuid) -> Result<Result<(), DeleteRefusal>, DbError> {
        let res = servers::Entity::delete_many()
            .filter(servers::Column::Id.eq(id))
            .filter(servers::Column::OrgId.eq(org))
            .filter(servers::Column::LeaseId.is_null())
            .filter(
                servers::Column::Status
                    .is_not_in([ServerStatus::Reserved.as_str(), ServerStatus::Provisioning.as_str()]),
            )
            .exec(&self.conn)
            .await?;
        if res.rows_affected > 0 {
            return Ok(Ok(()));
        }
        Ok(Err(match self.get_server(org, id).await? {
            None => DeleteRefusal::NotFound,
            Some(rec) => DeleteRefusal::Held(rec.status),
        }))
    }
}
