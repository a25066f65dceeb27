//! SSH credentials: private keys sealed in the secret store, with the public half, fingerprint and
//! the organization's default; a key a server still uses cannot be deleted.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{secrets, servers, ssh_credentials};
use crate::{DbError, SecretStore, unique};

/// An SSH credential without its private part.
#[derive(Debug, Clone, PartialEq)]
pub struct SshCredential {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub key_type: String,
    pub public_key: String,
    pub fingerprint: String,
    /// Where the private key is sealed.
    pub secret_id: Uuid,
    pub is_default: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ssh_credentials::Model> for SshCredential {
    fn from(m: ssh_credentials::Model) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            key_type: m.key_type,
            public_key: m.public_key,
            fingerprint: m.fingerprint,
            secret_id: m.secret_id,
            is_default: m.is_default,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A new credential: its public fields and its sealed private key (vault id, key id, ciphertext).
#[derive(Debug, Clone)]
pub struct NewSshCredential {
    pub name: String,
    pub key_type: String,
    pub public_key: String,
    pub fingerprint: String,
    pub is_default: bool,
    pub sealed: (Uuid, String, String),
}

#[derive(Clone, Debug)]
pub struct CredentialStore {
    conn: DatabaseConnection,
}

impl CredentialStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Stores a credential and its sealed key in one transaction. `Duplicate` when the name is taken.
    pub async fn create(&self, org: Uuid, new: NewSshCredential, actor: &str) -> Result<SshCredential, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let id = Uuid::now_v7();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let (secret_id, key_id, sealed) = &new.sealed;
        SecretStore::insert_in(&txn, *secret_id, Some(org), &format!("ssh_credential:{id}"), key_id, sealed).await?;
        if new.is_default {
            Self::clear_default(&txn, org).await?;
        }
        let model = ssh_credentials::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(new.name),
            key_type: Set(new.key_type),
            public_key: Set(new.public_key),
            fingerprint: Set(new.fingerprint),
            secret_id: Set(*secret_id),
            is_default: Set(new.is_default),
            created_by: Set(Some(actor.to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(unique)?;
        txn.commit().await?;
        Ok(model.into())
    }

    async fn clear_default(conn: &impl sea_orm::ConnectionTrait, org: Uuid) -> Result<(), DbError> {
        ssh_credentials::Entity::update_many()
            .col_expr(ssh_credentials::Column::IsDefault, Expr::value(false))
            .filter(ssh_credentials::Column::OrgId.eq(org))
            .filter(ssh_credentials::Column::IsDefault.eq(true))
            .exec(conn)
            .await?;
        Ok(())
    }

    pub async fn get(&self, org: Uuid, id: Uuid) -> Result<Option<SshCredential>, DbError> {
        Ok(ssh_credentials::Entity::find_by_id(id)
            .filter(ssh_credentials::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(Into::into))
    }

    /// The organization's default credential, if one is marked.
    pub async fn default_of(&self, org: Uuid) -> Result<Option<SshCredential>, DbError> {
        Ok(ssh_credentials::Entity::find()
            .filter(ssh_credentials::Column::OrgId.eq(org))
            .filter(ssh_credentials::Column::IsDefault.eq(true))
            .one(&self.conn)
            .await?
            .map(Into::into))
    }

    pub async fn list(&self, org: Uuid, after: Option<Uuid>, limit: u64) -> Result<Vec<SshCredential>, DbError> {
        let mut q = ssh_credentials::Entity::find().filter(ssh_credentials::Column::OrgId.eq(org));
        if let Some(cursor) = after {
            q = q.filter(ssh_credentials::Column::Id.gt(cursor));
        }
        Ok(q.order_by_asc(ssh_credentials::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Renames a credential and/or makes it the default. `Duplicate` when the new name is taken.
    pub async fn update(
        &self,
        old: &SshCredential,
        name: Option<String>,
        make_default: Option<bool>,
    ) -> Result<SshCredential, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        if make_default == Some(true) {
            Self::clear_default(&txn, old.org_id).await?;
        }
        let mut update = ssh_credentials::Entity::update_many()
            .col_expr(ssh_credentials::Column::UpdatedAt, Expr::value(Utc::now().trunc_subsecs(6)));
        if let Some(name) = name {
            update = update.col_expr(ssh_credentials::Column::Name, Expr::value(name));
        }
        if let Some(default) = make_default {
            update = update.col_expr(ssh_credentials::Column::IsDefault, Expr::value(default));
        }
        update.filter(ssh_credentials::Column::Id.eq(old.id)).exec(&txn).await.map_err(unique)?;
        txn.commit().await?;
        self.get(old.org_id, old.id).await?.ok_or_else(|| DbError::NotFound(format!("SSH key {}", old.id)))
    }

    /// How many servers name this credential.
    pub async fn users(&self, id: Uuid) -> Result<u64, DbError> {
        Ok(servers::Entity::find().filter(servers::Column::SshCredentialId.eq(id)).count(&self.conn).await?)
    }

    /// How many servers name each of `ids` (absent: none), in one query.
    pub async fn users_of(&self, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, u64>, DbError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(Option<Uuid>, i64)> = servers::Entity::find()
            .select_only()
            .column(servers::Column::SshCredentialId)
            .column_as(servers::Column::Id.count(), "n")
            .filter(servers::Column::SshCredentialId.is_in(ids.iter().copied()))
            .group_by(servers::Column::SshCredentialId)
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(rows.into_iter().filter_map(|(id, n)| id.map(|id| (id, n.max(0) as u64))).collect())
    }

    /// Deletes a credential and its sealed key. `Conflict` while servers still use it.
    pub async fn delete(&self, cred: &SshCredential) -> Result<(), DbError> {
        let used = self.users(cred.id).await?;
        if used > 0 {
            return Err(DbError::Conflict(format!(
                "SSH key {:?} is used by {used} server(s); point them at another key first",
                cred.name
            )));
        }
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        ssh_credentials::Entity::delete_by_id(cred.id).exec(&txn).await.map_err(|e| match e.sql_err() {
            // A server started using it meanwhile (the foreign key refuses).
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                DbError::Conflict(format!("SSH key {:?} is used by a server", cred.name))
            }
            _ => DbError::Db(e),
        })?;
        secrets::Entity::delete_by_id(cred.secret_id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}
