//! The config store: named parameter sets, each update a new version (old versions stay readable), and
//! the sealed secrets of their payloads written in the same transaction.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{config_versions, configs};
use crate::{DbError, SecretStore, unique};

/// A config (or one of its versions) as stored; the payload holds `{"$secret": id}` references. For a
/// version, `created_by` is who wrote that version and `updated_at` when.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub path: Option<String>,
    pub payload: serde_json::Value,
    pub version: i64,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<configs::Model> for ConfigRecord {
    fn from(m: configs::Model) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            description: m.description,
            path: m.path,
            payload: m.payload,
            version: m.version,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A config's fields as written (validated, secrets already sealed into `secrets`).
#[derive(Debug, Clone)]
pub struct ConfigDraft {
    pub name: String,
    pub description: String,
    pub path: Option<String>,
    pub payload: serde_json::Value,
    /// New secrets of this version: (vault id, key id, ciphertext).
    pub secrets: Vec<(Uuid, String, String)>,
}

/// The vault owner of a config's secrets.
pub fn secret_owner(config_id: Uuid) -> String {
    format!("config:{config_id}")
}

/// One version of `current`'s config, as a record (its writer in `created_by`, its time in `updated_at`).
fn of_version(current: &ConfigRecord, v: config_versions::Model) -> ConfigRecord {
    ConfigRecord {
        name: v.name,
        description: v.description,
        path: v.path,
        payload: v.payload,
        version: v.version,
        created_by: v.created_by,
        updated_at: v.created_at,
        ..current.clone()
    }
}

#[derive(Clone, Debug)]
pub struct ConfigStore {
    conn: DatabaseConnection,
}

/// The history row of a version, written by `actor`.
fn version_row(r: &ConfigRecord, actor: &str) -> config_versions::ActiveModel {
    config_versions::ActiveModel {
        config_id: Set(r.id),
        version: Set(r.version),
        name: Set(r.name.clone()),
        description: Set(r.description.clone()),
        path: Set(r.path.clone()),
        payload: Set(r.payload.clone()),
        created_by: Set(Some(actor.to_owned())),
        created_at: Set(r.updated_at),
    }
}

impl ConfigStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Creates a config at version 1. `Duplicate` when the name is taken in the organization.
    pub async fn create(&self, org: Uuid, id: Uuid, draft: ConfigDraft, actor: &str) -> Result<ConfigRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let rec = ConfigRecord {
            id,
            org_id: org,
            name: draft.name,
            description: draft.description,
            path: draft.path,
            payload: draft.payload,
            version: 1,
            created_by: Some(actor.to_owned()),
            created_at: now,
            updated_at: now,
        };
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        configs::ActiveModel {
            id: Set(rec.id),
            org_id: Set(org),
            name: Set(rec.name.clone()),
            description: Set(rec.description.clone()),
            path: Set(rec.path.clone()),
            payload: Set(rec.payload.clone()),
            version: Set(1),
            created_by: Set(rec.created_by.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(unique)?;
        version_row(&rec, actor).insert(&txn).await?;
        for (sid, key_id, sealed) in &draft.secrets {
            SecretStore::insert_in(&txn, *sid, Some(org), &secret_owner(rec.id), key_id, sealed).await?;
        }
        txn.commit().await?;
        Ok(rec)
    }

    /// Writes a new version over `old` (read earlier). `Conflict` when another update came first.
    pub async fn update(&self, old: &ConfigRecord, draft: ConfigDraft, actor: &str) -> Result<ConfigRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let rec = ConfigRecord {
            name: draft.name,
            description: draft.description,
            path: draft.path,
            payload: draft.payload,
            version: old.version + 1,
            updated_at: now,
            ..old.clone()
        };
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = configs::Entity::update_many()
            .col_expr(configs::Column::Name, Expr::value(rec.name.clone()))
            .col_expr(configs::Column::Description, Expr::value(rec.description.clone()))
            .col_expr(configs::Column::Path, Expr::value(rec.path.clone()))
            .col_expr(configs::Column::Payload, Expr::value(rec.payload.clone()))
            .col_expr(configs::Column::Version, Expr::value(rec.version))
            .col_expr(configs::Column::UpdatedAt, Expr::value(now))
            .filter(configs::Column::Id.eq(old.id))
            .filter(configs::Column::Version.eq(old.version))
            .exec(&txn)
            .await
            .map_err(unique)?;
        if res.rows_affected == 0 {
            return Err(DbError::Conflict(format!("config {} changed meanwhile; read it again and retry", old.id)));
        }
        version_row(&rec, actor).insert(&txn).await?;
        for (sid, key_id, sealed) in &draft.secrets {
            SecretStore::insert_in(&txn, *sid, Some(old.org_id), &secret_owner(rec.id), key_id, sealed).await?;
        }
        txn.commit().await?;
        Ok(rec)
    }

    pub async fn get(&self, org: Uuid, id: Uuid) -> Result<Option<ConfigRecord>, DbError> {
        Ok(configs::Entity::find_by_id(id)
            .filter(configs::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(ConfigRecord::from))
    }

    /// Configs of `org` in creation order after the cursor `after`.
    pub async fn list(&self, org: Uuid, after: Option<Uuid>, limit: u64) -> Result<Vec<ConfigRecord>, DbError> {
        let mut q = configs::Entity::find().filter(configs::Column::OrgId.eq(org));
        if let Some(cursor) = after {
            q = q.filter(configs::Column::Id.gt(cursor));
        }
        Ok(q.order_by_asc(configs::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// One version of a config of `org` (the current one included).
    pub async fn version(&self, org: Uuid, id: Uuid, version: i64) -> Result<Option<ConfigRecord>, DbError> {
        let Some(current) = self.get(org, id).await? else { return Ok(None) };
        Ok(config_versions::Entity::find_by_id((id, version)).one(&self.conn).await?.map(|v| of_version(&current, v)))
    }

    /// Versions of a config, newest first, below the cursor `before`.
    pub async fn versions(&self, id: Uuid, before: Option<i64>, limit: u64) -> Result<Vec<ConfigRecord>, DbError> {
        let mut q = config_versions::Entity::find().filter(config_versions::Column::ConfigId.eq(id));
        if let Some(cursor) = before {
            q = q.filter(config_versions::Column::Version.lt(cursor));
        }
        let Some(current) = configs::Entity::find_by_id(id).one(&self.conn).await?.map(ConfigRecord::from) else {
            return Ok(Vec::new());
        };
        Ok(q.order_by_desc(config_versions::Column::Version)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|v| of_version(&current, v))
            .collect())
    }

    /// Deletes a config, its versions and its secrets. `false` when there was none.
    pub async fn delete(&self, org: Uuid, id: Uuid) -> Result<bool, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let res = configs::Entity::delete_many()
            .filter(configs::Column::Id.eq(id))
            .filter(configs::Column::OrgId.eq(org))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        SecretStore::delete_owned_in(&txn, &secret_owner(id)).await?;
        txn.commit().await?;
        Ok(true)
    }
}
