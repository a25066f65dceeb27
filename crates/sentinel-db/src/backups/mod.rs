//! The backups store: targets and destinations (their secrets sealed in `secrets`, owned by the row),
//! plans, and the journal of every backup and restore attempt.

mod journal;
mod plans;
mod verification;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::backups::{DestinationConfig, Engine, TargetOptions};
use serde_json::Value;
use uuid::Uuid;

pub use journal::{JournalFilter, JournalFinish, JournalRecord, NewJournal};
pub use plans::{PlanDraft, PlanRecord, plan_schedule_owner};
pub use verification::VerificationOutcome;

use crate::entity::{backup_destinations, backup_plans, backup_targets};
use crate::{DbError, SecretStore, unique};

use crate::secrets::apply_secret;
pub use crate::secrets::{SealedSecret, SecretChange};

/// Who owns the secrets of a target, destination or plan (deleted with it).
pub fn secret_owner(what: &str, id: Uuid) -> String {
    format!("backup_{what}:{id}")
}

/// A database Sentinel backs up, without its password.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub engine: Engine,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_secret_id: Option<Uuid>,
    pub databases: Vec<String>,
    pub options: TargetOptions,
    pub path: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A target's fields as created or replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetDraft {
    pub name: String,
    pub engine: Engine,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub databases: Vec<String>,
    pub options: TargetOptions,
    pub path: Option<String>,
}

impl TryFrom<backup_targets::Model> for TargetRecord {
    type Error = DbError;
    fn try_from(m: backup_targets::Model) -> Result<Self, DbError> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("backup target {}: {what}: {e}", m.id));
        Ok(Self {
            engine: Engine::parse(&m.engine).map_err(|e| corrupt("engine", &e))?,
            databases: serde_json::from_value(m.databases.clone()).map_err(|e| corrupt("databases", &e))?,
            options: serde_json::from_value(m.options.clone()).map_err(|e| corrupt("options", &e))?,
            port: m.port.map(|p| u16::try_from(p).map_err(|e| corrupt("port", &e))).transpose()?,
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            host: m.host,
            user: m.username,
            password_secret_id: m.password_secret_id,
            path: m.path,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// Where artifacts are stored, without its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub config: DestinationConfig,
    pub credentials_secret_id: Option<Uuid>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<backup_destinations::Model> for DestinationRecord {
    type Error = DbError;
    fn try_from(m: backup_destinations::Model) -> Result<Self, DbError> {
        let config = serde_json::from_value(m.config.clone())
            .map_err(|e| DbError::Corrupt(format!("backup destination {}: config: {e}", m.id)))?;
        Ok(Self {
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            config,
            credentials_secret_id: m.credentials_secret_id,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// One page of `query` in id order after the cursor `after`: the shape of every list of targets,
/// destinations and plans (their ids are UUIDv7, so id order is creation order).
async fn page_by_id<E, R>(
    conn: &DatabaseConnection,
    mut query: sea_orm::Select<E>,
    id: E::Column,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<R>, DbError>
where
    E: EntityTrait,
    R: TryFrom<E::Model, Error = DbError>,
{
    if let Some(cursor) = after {
        query = query.filter(id.gt(cursor));
    }
    query.order_by_asc(id).limit(limit).all(conn).await?.into_iter().map(R::try_from).collect()
}

fn json<T: serde::Serialize>(value: &T) -> Result<Value, DbError> {
    serde_json::to_value(value).map_err(|e| DbError::Corrupt(format!("cannot encode: {e}")))
}

#[derive(Clone, Debug)]
pub struct BackupStore {
    conn: DatabaseConnection,
}

impl BackupStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Stores a target and its sealed password in one transaction. `Duplicate` when the name is taken.
    pub async fn create_target(
        &self,
        org: Uuid,
        draft: TargetDraft,
        password: SecretChange,
        actor: &str,
    ) -> Result<TargetRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let id = Uuid::now_v7();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let secret = apply_secret(&txn, org, &secret_owner("target", id), None, password).await?;
        let model = backup_targets::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(draft.name),
            engine: Set(draft.engine.as_str().to_owned()),
            host: Set(draft.host),
            port: Set(draft.port.map(i32::from)),
            username: Set(draft.user),
            password_secret_id: Set(secret),
            databases: Set(json(&draft.databases)?),
            options: Set(json(&draft.options)?),
            path: Set(draft.path),
            created_by: Set(Some(actor.to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(unique)?;
        txn.commit().await?;
        model.try_into()
    }

    /// Replaces a target's fields (and its password as `password` says).
    pub async fn update_target(
        &self,
        old: &TargetRecord,
        draft: TargetDraft,
        password: SecretChange,
    ) -> Result<TargetRecord, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let secret =
            apply_secret(&txn, old.org_id, &secret_owner("target", old.id), old.password_secret_id, password).await?;
        backup_targets::Entity::update_many()
            .col_expr(backup_targets::Column::Name, Expr::value(draft.name))
            .col_expr(backup_targets::Column::Engine, Expr::value(draft.engine.as_str()))
            .col_expr(backup_targets::Column::Host, Expr::value(draft.host))
            .col_expr(backup_targets::Column::Port, Expr::value(draft.port.map(i32::from)))
            .col_expr(backup_targets::Column::Username, Expr::value(draft.user))
            .col_expr(backup_targets::Column::PasswordSecretId, Expr::value(secret))
            .col_expr(backup_targets::Column::Databases, Expr::value(json(&draft.databases)?))
            .col_expr(backup_targets::Column::Options, Expr::value(json(&draft.options)?))
            .col_expr(backup_targets::Column::Path, Expr::value(draft.path))
            .col_expr(backup_targets::Column::UpdatedAt, Expr::value(Utc::now().trunc_subsecs(6)))
            .filter(backup_targets::Column::Id.eq(old.id))
            .exec(&txn)
            .await
            .map_err(unique)?;
        txn.commit().await?;
        self.target(old.org_id, old.id).await?.ok_or_else(|| DbError::NotFound(format!("backup target {}", old.id)))
    }

    pub async fn target(&self, org: Uuid, id: Uuid) -> Result<Option<TargetRecord>, DbError> {
        backup_targets::Entity::find_by_id(id)
            .filter(backup_targets::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    pub async fn targets(&self, org: Uuid, after: Option<Uuid>, limit: u64) -> Result<Vec<TargetRecord>, DbError> {
        let q = backup_targets::Entity::find().filter(backup_targets::Column::OrgId.eq(org));
        page_by_id(&self.conn, q, backup_targets::Column::Id, after, limit).await
    }

    /// Deletes a target and its password. `Conflict` while a plan backs it up.
    pub async fn delete_target(&self, target: &TargetRecord) -> Result<(), DbError> {
        let plans =
            backup_plans::Entity::find().filter(backup_plans::Column::TargetId.eq(target.id)).count(&self.conn).await?;
        if plans > 0 {
            return Err(DbError::Conflict(format!(
                "backup target {:?} is backed up by {plans} plan(s); delete them or point them at another target first",
                target.name
            )));
        }
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        backup_targets::Entity::delete_by_id(target.id).exec(&txn).await.map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                DbError::Conflict(format!("backup target {:?} is used by a plan", target.name))
            }
            _ => DbError::Db(e),
        })?;
        SecretStore::delete_owned_in(&txn, &secret_owner("target", target.id)).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Stores a destination and its sealed credentials in one transaction.
    pub async fn create_destination(
        &self,
        org: Uuid,
        name: String,
        config: &DestinationConfig,
        credentials: SecretChange,
        actor: &str,
    ) -> Result<DestinationRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let id = Uuid::now_v7();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let secret = apply_secret(&txn, org, &secret_owner("destination", id), None, credentials).await?;
        let model = backup_destinations::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(name),
            kind: Set(config.kind().as_str().to_owned()),
            config: Set(json(config)?),
            credentials_secret_id: Set(secret),
            created_by: Set(Some(actor.to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(unique)?;
        txn.commit().await?;
        model.try_into()
    }

    pub async fn update_destination(
        &self,
        old: &DestinationRecord,
        name: String,
        config: &DestinationConfig,
        credentials: SecretChange,
    ) -> Result<DestinationRecord, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let owner = secret_owner("destination", old.id);
        let secret = apply_secret(&txn, old.org_id, &owner, old.credentials_secret_id, credentials).await?;
        backup_destinations::Entity::update_many()
            .col_expr(backup_destinations::Column::Name, Expr::value(name))
            .col_expr(backup_destinations::Column::Kind, Expr::value(config.kind().as_str()))
            .col_expr(backup_destinations::Column::Config, Expr::value(json(config)?))
            .col_expr(backup_destinations::Column::CredentialsSecretId, Expr::value(secret))
            .col_expr(backup_destinations::Column::UpdatedAt, Expr::value(Utc::now().trunc_subsecs(6)))
            .filter(backup_destinations::Column::Id.eq(old.id))
            .exec(&txn)
            .await
            .map_err(unique)?;
        txn.commit().await?;
        self.destination(old.org_id, old.id)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("backup destination {}", old.id)))
    }

    pub async fn destination(&self, org: Uuid, id: Uuid) -> Result<Option<DestinationRecord>, DbError> {
        backup_destinations::Entity::find_by_id(id)
            .filter(backup_destinations::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    pub async fn destinations(
        &self,
        org: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<DestinationRecord>, DbError> {
        let q = backup_destinations::Entity::find().filter(backup_destinations::Column::OrgId.eq(org));
        page_by_id(&self.conn, q, backup_destinations::Column::Id, after, limit).await
    }

    /// A page of every organization's destinations (the janitor's sweep), by id.
    pub async fn all_destinations(&self, after: Option<Uuid>, limit: u64) -> Result<Vec<DestinationRecord>, DbError> {
        page_by_id(&self.conn, backup_destinations::Entity::find(), backup_destinations::Column::Id, after, limit).await
    }

    /// Deletes a destination and its credentials. `Conflict` while a plan writes to it.
    pub async fn delete_destination(&self, dest: &DestinationRecord) -> Result<(), DbError> {
        let users = self.plans_using_destination(dest.org_id, dest.id).await?;
        if !users.is_empty() {
            return Err(DbError::Conflict(format!(
                "backup destination {:?} is used by plan(s) {}; remove it from them first",
                dest.name,
                users.join(", ")
            )));
        }
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        backup_destinations::Entity::delete_by_id(dest.id).exec(&txn).await?;
        SecretStore::delete_owned_in(&txn, &secret_owner("destination", dest.id)).await?;
        txn.commit().await?;
        Ok(())
    }
}
