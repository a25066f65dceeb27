//! Channels: create, list, read, replace and delete, each with its sealed credential.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::notify::{ChannelConfig, ChannelSpec};
use uuid::Uuid;

use super::{ChannelRecord, NotifyStore, channel_secret_owner};
use crate::entity::{notify_channels, notify_outbox};
use crate::secrets::{SecretChange, apply_secret};
use crate::{DbError, SecretStore, unique};

impl TryFrom<notify_channels::Model> for ChannelRecord {
    type Error = DbError;
    fn try_from(m: notify_channels::Model) -> Result<Self, DbError> {
        let config: ChannelConfig =
            serde_json::from_value(m.config).map_err(|e| DbError::Corrupt(format!("channel {}: {e}", m.id)))?;
        Ok(Self {
            id: m.id,
            org_id: m.org_id,
            spec: ChannelSpec { name: m.name, config, is_active: m.is_active },
            secret_id: m.secret_id,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

fn config_json(config: &ChannelConfig) -> Result<serde_json::Value, DbError> {
    serde_json::to_value(config).map_err(|e| DbError::Corrupt(e.to_string()))
}

impl NotifyStore {
    /// Stores a channel and its sealed credential. `Duplicate` when the name is taken.
    pub async fn create_channel(
        &self,
        org: Uuid,
        spec: ChannelSpec,
        secret: SecretChange,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<ChannelRecord, DbError> {
        let now = now.trunc_subsecs(6);
        let id = Uuid::now_v7();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let secret_id = apply_secret(&txn, org, &channel_secret_owner(id), None, secret).await?;
        let model = notify_channels::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(spec.name.trim().to_owned()),
            kind: Set(spec.config.kind().as_str().to_owned()),
            config: Set(config_json(&spec.config)?),
            secret_id: Set(secret_id),
            is_active: Set(spec.is_active),
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

    /// Replaces a channel's settings (its kind stays) and, as `secret` says, its credential.
    pub async fn update_channel(
        &self,
        old: &ChannelRecord,
        spec: ChannelSpec,
        secret: SecretChange,
    ) -> Result<ChannelRecord, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let secret_id = apply_secret(&txn, old.org_id, &channel_secret_owner(old.id), old.secret_id, secret).await?;
        let model = notify_channels::ActiveModel {
            id: Set(old.id),
            name: Set(spec.name.trim().to_owned()),
            config: Set(config_json(&spec.config)?),
            secret_id: Set(secret_id),
            is_active: Set(spec.is_active),
            updated_at: Set(Utc::now().trunc_subsecs(6)),
            ..Default::default()
        }
        .update(&txn)
        .await
        .map_err(unique)?;
        txn.commit().await?;
        model.try_into()
    }

    /// Deletes a channel, its credential, and gives up its undelivered notifications.
    pub async fn delete_channel(&self, org: Uuid, id: Uuid) -> Result<bool, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let gone = notify_channels::Entity::delete_many()
            .filter(notify_channels::Column::OrgId.eq(org))
            .filter(notify_channels::Column::Id.eq(id))
            .exec(&txn)
            .await?
            .rows_affected
            > 0;
        if gone {
            SecretStore::delete_owned_in(&txn, &channel_secret_owner(id)).await?;
            notify_outbox::Entity::update_many()
                .col_expr(notify_outbox::Column::State, sea_orm::sea_query::Expr::value("failed"))
                .col_expr(notify_outbox::Column::LastError, sea_orm::sea_query::Expr::value("the channel was deleted"))
                .filter(notify_outbox::Column::ChannelId.eq(id))
                .filter(notify_outbox::Column::State.eq("pending"))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(gone)
    }

    pub async fn channel(&self, org: Uuid, id: Uuid) -> Result<Option<ChannelRecord>, DbError> {
        notify_channels::Entity::find_by_id(id)
            .filter(notify_channels::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(ChannelRecord::try_from)
            .transpose()
    }

    /// A channel by id alone (the worker's view when it delivers).
    pub async fn channel_by_id(&self, id: Uuid) -> Result<Option<ChannelRecord>, DbError> {
        notify_channels::Entity::find_by_id(id).one(&self.conn).await?.map(ChannelRecord::try_from).transpose()
    }

    /// Channels of `org`, oldest first, after the cursor.
    pub async fn channels(&self, org: Uuid, after: Option<Uuid>, limit: u64) -> Result<Vec<ChannelRecord>, DbError> {
        let mut q = notify_channels::Entity::find().filter(notify_channels::Column::OrgId.eq(org));
        if let Some(after) = after {
            q = q.filter(notify_channels::Column::Id.gt(after));
        }
        q.order_by_asc(notify_channels::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ChannelRecord::try_from)
            .collect()
    }

    /// Which of `ids` are not channels of `org`.
    pub async fn missing_channels(&self, org: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Uuid> = notify_channels::Entity::find()
            .select_only()
            .column(notify_channels::Column::Id)
            .filter(notify_channels::Column::OrgId.eq(org))
            .filter(notify_channels::Column::Id.is_in(ids.to_vec()))
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(ids.iter().filter(|id| !found.contains(id)).copied().collect())
    }
}
