//! The secret store's rows: sealed credentials with the id of the master key that sealed them. The
//! crypto lives in `sentinel-secrets`; this only stores, lists and replaces ciphertexts.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::DbError;
use crate::entity::secrets;

/// A secret sealed by the vault: its id, the key that sealed it and the sealed text.
pub type SealedSecret = (Uuid, String, String);

/// What an update does to a sealed secret.
#[derive(Debug, Clone, Default)]
pub enum SecretChange {
    #[default]
    Keep,
    Set(SealedSecret),
    Clear,
}

/// Replaces the secret `old` of `owner` as `change` says, returning the id to store.
pub(crate) async fn apply_secret(
    conn: &impl ConnectionTrait,
    org: Uuid,
    owner: &str,
    old: Option<Uuid>,
    change: SecretChange,
) -> Result<Option<Uuid>, DbError> {
    match change {
        SecretChange::Keep => Ok(old),
        SecretChange::Clear | SecretChange::Set(_) => {
            if let Some(old) = old {
                secrets::Entity::delete_by_id(old).exec(conn).await?;
            }
            if let SecretChange::Set((id, key_id, sealed)) = change {
                SecretStore::insert_in(conn, id, Some(org), owner, &key_id, &sealed).await?;
                Ok(Some(id))
            } else {
                Ok(None)
            }
        }
    }
}

/// One sealed secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretRow {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub owner: String,
    pub key_id: String,
    pub sealed: String,
    pub created_at: DateTime<Utc>,
    pub sealed_at: DateTime<Utc>,
}

impl From<secrets::Model> for SecretRow {
    fn from(m: secrets::Model) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            owner: m.owner,
            key_id: m.key_id,
            sealed: m.sealed,
            created_at: m.created_at,
            sealed_at: m.sealed_at,
        }
    }
}

/// Repository of sealed secrets.
#[derive(Clone, Debug)]
pub struct SecretStore {
    conn: DatabaseConnection,
}

impl SecretStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Stores a sealed secret (inside the caller's transaction when `conn` is one).
    pub async fn insert_in(
        conn: &impl ConnectionTrait,
        id: Uuid,
        org_id: Option<Uuid>,
        owner: &str,
        key_id: &str,
        sealed: &str,
    ) -> Result<(), DbError> {
        let now = Utc::now().trunc_subsecs(6);
        secrets::ActiveModel {
            id: Set(id),
            org_id: Set(org_id),
            owner: Set(owner.to_owned()),
            key_id: Set(key_id.to_owned()),
            sealed: Set(sealed.to_owned()),
            created_at: Set(now),
            sealed_at: Set(now),
        }
        .insert(conn)
        .await?;
        Ok(())
    }

    /// Stores a sealed secret on its own.
    pub async fn insert(
        &self,
        id: Uuid,
        org_id: Option<Uuid>,
        owner: &str,
        key_id: &str,
        sealed: &str,
    ) -> Result<(), DbError> {
        Self::insert_in(&self.conn, id, org_id, owner, key_id, sealed).await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<SecretRow>, DbError> {
        Ok(secrets::Entity::find_by_id(id).one(&self.conn).await?.map(SecretRow::from))
    }

    /// Deletes every secret of `owner` (inside the caller's transaction when `conn` is one).
    pub async fn delete_owned_in(conn: &impl ConnectionTrait, owner: &str) -> Result<u64, DbError> {
        Ok(secrets::Entity::delete_many().filter(secrets::Column::Owner.eq(owner)).exec(conn).await?.rows_affected)
    }

    /// How many secrets each master key sealed.
    pub async fn count_by_key(&self) -> Result<Vec<(String, i64)>, DbError> {
        Ok(secrets::Entity::find()
            .select_only()
            .column(secrets::Column::KeyId)
            .column_as(secrets::Column::Id.count(), "n")
            .group_by(secrets::Column::KeyId)
            .into_tuple()
            .all(&self.conn)
            .await?)
    }

    /// One secret sealed by `key_id` (to check that the configured key really opens it).
    pub async fn sample(&self, key_id: &str) -> Result<Option<SecretRow>, DbError> {
        Ok(secrets::Entity::find()
            .filter(secrets::Column::KeyId.eq(key_id))
            .one(&self.conn)
            .await?
            .map(SecretRow::from))
    }

    /// Secrets in id order after `after` (for audits of what is stored; ciphertexts only).
    pub async fn list(&self, after: Option<Uuid>, limit: u64) -> Result<Vec<SecretRow>, DbError> {
        let mut q = secrets::Entity::find();
        if let Some(cursor) = after {
            q = q.filter(secrets::Column::Id.gt(cursor));
        }
        Ok(q.order_by_asc(secrets::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Up to `limit` secrets not sealed by `key_id`, in id order.
    pub async fn not_sealed_by(&self, key_id: &str, limit: u64) -> Result<Vec<SecretRow>, DbError> {
        Ok(secrets::Entity::find()
            .filter(secrets::Column::KeyId.ne(key_id))
            .order_by_asc(secrets::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(SecretRow::from)
            .collect())
    }

    /// Replaces a ciphertext, only if it is still the one read (`false` if it changed meanwhile).
    pub async fn reseal(&self, old: &SecretRow, key_id: &str, sealed: &str) -> Result<bool, DbError> {
        let res = secrets::Entity::update_many()
            .col_expr(secrets::Column::KeyId, Expr::value(key_id))
            .col_expr(secrets::Column::Sealed, Expr::value(sealed))
            .col_expr(secrets::Column::SealedAt, Expr::value(Utc::now().trunc_subsecs(6)))
            .filter(secrets::Column::Id.eq(old.id))
            .filter(secrets::Column::Sealed.eq(old.sealed.as_str()))
            .exec(&self.conn)
            .await?;
        Ok(res.rows_affected == 1)
    }
}
