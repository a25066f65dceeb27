//! The access store: organizations, users, sessions, API keys and the audit log. Secrets are stored as
//! hashes only (Argon2id for passwords, computed by the caller off the async runtime; SHA-256 for random
//! tokens and keys, which carry 256 bits of entropy and need no slow hash).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use sentinel_domain::{KeyScope, Role};
use uuid::Uuid;

use crate::entity::{api_keys, audit_log, organizations, sessions, users};
use crate::{DbError, unique};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub scope: KeyScope,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub org_id: Uuid,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: i32,
    pub at: DateTime<Utc>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what}: {e}"))
}

impl TryFrom<users::Model> for User {
    type Error = DbError;
    fn try_from(m: users::Model) -> Result<Self, DbError> {
        Ok(User {
            id: m.id,
            org_id: m.org_id,
            email: m.email,
            role: m.role.parse().map_err(|e| corrupt("user role", e))?,
            disabled: m.disabled,
            created_at: m.created_at,
            password_hash: m.password_hash,
        })
    }
}

impl TryFrom<api_keys::Model> for ApiKey {
    type Error = DbError;
    fn try_from(m: api_keys::Model) -> Result<Self, DbError> {
        Ok(ApiKey {
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            prefix: m.prefix,
            role: m.role.parse().map_err(|e| corrupt("key role", e))?,
            scope: m.scope.parse().map_err(|e| corrupt("key scope", e))?,
            created_by: m.created_by,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            revoked_at: m.revoked_at,
        })
    }
}

impl From<organizations::Model> for Organization {
    fn from(m: organizations::Model) -> Self {
        Organization { id: m.id, name: m.name, created_at: m.created_at }
    }
}

impl From<audit_log::Model> for AuditEntry {
    fn from(m: audit_log::Model) -> Self {
        AuditEntry {
            id: m.id,
            org_id: m.org_id,
            actor: m.actor,
            action: m.action,
            target: m.target,
            outcome: m.outcome,
            at: m.at,
        }
    }
}

/// An audit entry to record.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub org_id: Uuid,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: u16,
}

/// A new API key's stored fields (the secret itself is never stored).
pub struct NewApiKey<'a> {
    pub org_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub role: Role,
    pub scope: KeyScope,
    pub created_by: Option<String>,
}

/// Repository of organizations, users, sessions, API keys and audit entries.
#[derive(Clone, Debug)]
pub struct AccessStore {
    conn: DatabaseConnection,
}

impl AccessStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    pub async fn create_org(&self, name: &str) -> Result<Organization, DbError> {
        let m = organizations::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.to_owned()),
            created_at: Set(Utc::now()),
        }
        .insert(&self.conn)
        .await
        .map_err(unique)?;
        Ok(m.into())
    }

    pub async fn org_by_name(&self, name: &str) -> Result<Option<Organization>, DbError> {
        Ok(organizations::Entity::find()
            .filter(organizations::Column::Name.eq(name))
            .one(&self.conn)
            .await?
            .map(Into::into))
    }

    pub async fn org(&self, id: Uuid) -> Result<Option<Organization>, DbError> {
        Ok(organizations::Entity::find_by_id(id).one(&self.conn).await?.map(Into::into))
    }

    pub async fn create_user(
        &self,
        org_id: Uuid,
        email: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<User, DbError> {
        users::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(org_id),
            email: Set(email.to_owned()),
            password_hash: Set(password_hash.to_owned()),
            role: Set(role.as_str().to_owned()),
            disabled: Set(false),
            created_at: Set(Utc::now()),
        }
        .insert(&self.conn)
        .await
        .map_err(unique)?
        .try_into()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, DbError> {
        users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.conn)
            .await?
            .map(User::try_from)
            .transpose()
    }

    pub async fn user_in_org(&self, org_id: Uuid, id: Uuid) -> Result<Option<User>, DbError> {
        users::Entity::find_by_id(id)
            .filter(users::Column::OrgId.eq(org_id))
            .one(&self.conn)
            .await?
            .map(User::try_from)
            .transpose()
    }

    pub async fn user_count(&self) -> Result<u64, DbError> {
        Ok(users::Entity::find().count(&self.conn).await?)
    }

    pub async fn users(&self, org_id: Uuid) -> Result<Vec<User>, DbError> {
        users::Entity::find()
            .filter(users::Column::OrgId.eq(org_id))
            .order_by_asc(users::Column::Email)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    /// Changes a user's role and/or disabled flag. Disabling a user ends their sessions.
    pub async fn update_user(
        &self,
        org_id: Uuid,
        id: Uuid,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<Option<User>, DbError> {
        let Some(user) = users::Entity::find_by_id(id).filter(users::Column::OrgId.eq(org_id)).one(&self.conn).await?
        else {
            return Ok(None);
        };
        let mut active: users::ActiveModel = user.into();
        if let Some(role) = role {
            active.role = Set(role.as_str().to_owned());
        }
        if let Some(disabled) = disabled {
            active.disabled = Set(disabled);
            if disabled {
                sessions::Entity::delete_many().filter(sessions::Column::UserId.eq(id)).exec(&self.conn).await?;
            }
        }
        Ok(Some(active.update(&self.conn).await?.try_into()?))
    }

    pub async fn delete_user(&self, org_id: Uuid, id: Uuid) -> Result<bool, DbError> {
        let res = users::Entity::delete_many()
            .filter(users::Column::Id.eq(id))
            .filter(users::Column::OrgId.eq(org_id))
            .exec(&self.conn)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Admins left in an organization (an organization must keep at least one).
    pub async fn admin_count(&self, org_id: Uuid) -> Result<u64, DbError> {
        Ok(users::Entity::find()
            .filter(users::Column::OrgId.eq(org_id))
            .filter(users::Column::Role.eq(Role::Admin.as_str()))
            .filter(users::Column::Disabled.eq(false))
            .count(&self.conn)
            .await?)
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let now = Utc::now();
        sessions::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            user_id: Set(user_id),
            created_at: Set(now),
            expires_at: Set(expires_at),
            last_seen_at: Set(now),
        }
        .insert(&self.conn)
        .await?;
        Ok(())
    }

    /// The live session with this token hash and its (enabled) user.
    pub async fn session_user(&self, token_hash: &str) -> Result<Option<User>, DbError> {
        let Some(session) = sessions::Entity::find_by_id(token_hash.to_owned())
            .filter(sessions::Column::ExpiresAt.gt(Utc::now()))
            .one(&self.conn)
            .await?
        else {
            return Ok(None);
        };
        let user = users::Entity::find_by_id(session.user_id)
            .filter(users::Column::Disabled.eq(false))
            .one(&self.conn)
            .await?;
        user.map(User::try_from).transpose()
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), DbError> {
        sessions::Entity::delete_by_id(token_hash.to_owned()).exec(&self.conn).await?;
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn delete_expired_sessions(&self) -> Result<u64, DbError> {
        Ok(sessions::Entity::delete_many()
            .filter(sessions::Column::ExpiresAt.lte(Utc::now()))
            .exec(&self.conn)
            .await?
            .rows_affected)
    }

    pub async fn create_api_key(&self, new: NewApiKey<'_>) -> Result<ApiKey, DbError> {
        api_keys::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(new.org_id),
            name: Set(new.name.to_owned()),
            prefix: Set(new.prefix.to_owned()),
            key_hash: Set(new.key_hash.to_owned()),
            role: Set(new.role.as_str().to_owned()),
            scope: Set(new.scope.as_str().to_owned()),
            created_by: Set(new.created_by),
            created_at: Set(Utc::now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(&self.conn)
        .await
        .map_err(unique)?
        .try_into()
    }

    /// The unrevoked key with this hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, DbError> {
        api_keys::Entity::find()
            .filter(api_keys::Column::KeyHash.eq(key_hash))
            .filter(api_keys::Column::RevokedAt.is_null())
            .one(&self.conn)
            .await?
            .map(ApiKey::try_from)
            .transpose()
    }

    /// Records use of a key, at most once a minute per key (a write per request would be wasteful).
    pub async fn touch_api_key(&self, id: Uuid) -> Result<(), DbError> {
        let now = Utc::now();
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
            .filter(api_keys::Column::Id.eq(id))
            .filter(
                Condition::any()
                    .add(api_keys::Column::LastUsedAt.is_null())
                    .add(api_keys::Column::LastUsedAt.lt(now - chrono::Duration::seconds(60))),
            )
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    pub async fn api_keys(&self, org_id: Uuid) -> Result<Vec<ApiKey>, DbError> {
        api_keys::Entity::find()
            .filter(api_keys::Column::OrgId.eq(org_id))
            .order_by_desc(api_keys::Column::CreatedAt)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect()
    }

    pub async fn revoke_api_key(&self, org_id: Uuid, id: Uuid) -> Result<bool, DbError> {
        let res = api_keys::Entity::update_many()
            .col_expr(api_keys::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(api_keys::Column::Id.eq(id))
            .filter(api_keys::Column::OrgId.eq(org_id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .exec(&self.conn)
            .await?;
        Ok(res.rows_affected > 0)
    }

    pub async fn record_audit(
        &self,
        org_id: Uuid,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: u16,
    ) -> Result<(), DbError> {
        audit_log::ActiveModel {
            org_id: Set(org_id),
            actor: Set(actor.chars().take(128).collect()),
            action: Set(action.chars().take(128).collect()),
            target: Set(target.map(|t| t.chars().take(256).collect())),
            outcome: Set(i32::from(outcome)),
            at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&self.conn)
        .await?;
        Ok(())
    }

    /// Records several audit entries with one statement (group commit of the audit trail).
    pub async fn record_audit_many(&self, entries: &[NewAuditEntry]) -> Result<(), DbError> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        audit_log::Entity::insert_many(entries.iter().map(|e| audit_log::ActiveModel {
            org_id: Set(e.org_id),
            actor: Set(e.actor.chars().take(128).collect()),
            action: Set(e.action.chars().take(128).collect()),
            target: Set(e.target.as_ref().map(|t| t.chars().take(256).collect())),
            outcome: Set(i32::from(e.outcome)),
            at: Set(now),
            ..Default::default()
        }))
        .exec(&self.conn)
        .await?;
        Ok(())
    }

    /// Audit entries of an organization, newest first, before the cursor `before` (an entry id).
    pub async fn audit(&self, org_id: Uuid, before: Option<i64>, limit: u64) -> Result<Vec<AuditEntry>, DbError> {
        let mut q = audit_log::Entity::find().filter(audit_log::Column::OrgId.eq(org_id));
        if let Some(before) = before {
            q = q.filter(audit_log::Column::Id.lt(before));
        }
        Ok(q.order_by_desc(audit_log::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
