//! The routing policy of an organization, and its silences and maintenance windows.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use sentinel_domain::notify::{Matcher, MuteSchedule, Policy};
use uuid::Uuid;

use super::{MuteKind, MuteRecord, NotifyStore};
use crate::DbError;
use crate::entity::{notify_mutes, notify_policies};

fn corrupt(what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what}: {e}"))
}

impl TryFrom<notify_mutes::Model> for MuteRecord {
    type Error = DbError;
    fn try_from(m: notify_mutes::Model) -> Result<Self, DbError> {
        Ok(Self {
            matchers: serde_json::from_value(m.matchers).map_err(|e| corrupt("mute matchers", e))?,
            schedule: serde_json::from_value(m.schedule).map_err(|e| corrupt("mute schedule", e))?,
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            created_by: m.created_by,
            created_at: m.created_at,
        })
    }
}

/// A stored policy: what it says, who changed it last and when (`None`: the default, never saved).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    pub policy: Policy,
    /// No policy saved (or reset): the default is in force.
    pub is_default: bool,
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl NotifyStore {
    /// The organization's routing policy (the default until one is saved).
    pub async fn policy(&self, org: Uuid) -> Result<PolicyRecord, DbError> {
        let row = notify_policies::Entity::find_by_id(org).one(&self.conn).await?;
        Ok(match row {
            Some(r) => PolicyRecord {
                is_default: r.policy.is_none(),
                policy: match r.policy {
                    Some(p) => serde_json::from_value(p).map_err(|e| corrupt("policy", e))?,
                    None => Policy::default(),
                },
                updated_by: r.updated_by,
                updated_at: Some(r.updated_at),
            },
            None => PolicyRecord { policy: Policy::default(), is_default: true, updated_by: None, updated_at: None },
        })
    }

    /// Replaces the organization's routing policy (`None`: back to the default).
    pub async fn set_policy(&self, org: Uuid, policy: Option<&Policy>, actor: &str) -> Result<PolicyRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let json = policy.map(serde_json::to_value).transpose().map_err(|e| corrupt("policy", e))?;
        notify_policies::Entity::insert(notify_policies::ActiveModel {
            org_id: Set(org),
            policy: Set(json),
            evaluated_at: Set(None),
            updated_by: Set(Some(actor.to_owned())),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(notify_policies::Column::OrgId)
                .update_columns([
                    notify_policies::Column::Policy,
                    notify_policies::Column::UpdatedBy,
                    notify_policies::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(&self.conn)
        .await?;
        self.policy(org).await
    }

    /// Stores a silence or a maintenance window.
    pub async fn create_mute(
        &self,
        org: Uuid,
        kind: MuteKind,
        name: &str,
        matchers: &[Matcher],
        schedule: &MuteSchedule,
        actor: &str,
    ) -> Result<MuteRecord, DbError> {
        let ends_at = match schedule {
            MuteSchedule::Once { ends_at, .. } => Some(*ends_at),
            MuteSchedule::Recurring { .. } => None,
        };
        notify_mutes::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(org),
            kind: Set(kind.as_str().to_owned()),
            name: Set(name.to_owned()),
            matchers: Set(serde_json::to_value(matchers).map_err(|e| corrupt("matchers", e))?),
            schedule: Set(serde_json::to_value(schedule).map_err(|e| corrupt("schedule", e))?),
            ends_at: Set(ends_at),
            created_by: Set(Some(actor.to_owned())),
            created_at: Set(Utc::now().trunc_subsecs(6)),
        }
        .insert(&self.conn)
        .await?
        .try_into()
    }

    pub async fn mute(&self, org: Uuid, kind: MuteKind, id: Uuid) -> Result<Option<MuteRecord>, DbError> {
        notify_mutes::Entity::find_by_id(id)
            .filter(notify_mutes::Column::OrgId.eq(org))
            .filter(notify_mutes::Column::Kind.eq(kind.as_str()))
            .one(&self.conn)
            .await?
            .map(MuteRecord::try_from)
            .transpose()
    }

    /// Mutes of `org` of one kind, newest first, before the cursor; `current_at`: only those not
    /// over by then (one-off mutes that ended are history).
    pub async fn mutes(
        &self,
        org: Uuid,
        kind: MuteKind,
        current_at: Option<DateTime<Utc>>,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<MuteRecord>, DbError> {
        let mut q = notify_mutes::Entity::find()
            .filter(notify_mutes::Column::OrgId.eq(org))
            .filter(notify_mutes::Column::Kind.eq(kind.as_str()));
        if let Some(now) = current_at {
            q = q.filter(
                Condition::any().add(notify_mutes::Column::EndsAt.is_null()).add(notify_mutes::Column::EndsAt.gt(now)),
            );
        }
        if let Some(before) = before {
            q = q.filter(notify_mutes::Column::Id.lt(before));
        }
        q.order_by_desc(notify_mutes::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(MuteRecord::try_from)
            .collect()
    }

    /// Ends a silence now (it stays listed as history); false when it was over already.
    pub async fn expire_silence(&self, org: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<bool, DbError> {
        let Some(m) = self.mute(org, MuteKind::Silence, id).await? else { return Ok(false) };
        let MuteSchedule::Once { starts_at, ends_at } = m.schedule else { return Ok(false) };
        if ends_at <= now {
            return Ok(false);
        }
        let schedule = MuteSchedule::Once { starts_at: starts_at.min(now), ends_at: now };
        notify_mutes::Entity::update_many()
            .col_expr(notify_mutes::Column::EndsAt, Expr::value(now))
            .col_expr(
                notify_mutes::Column::Schedule,
                Expr::value(serde_json::to_value(&schedule).map_err(|e| corrupt("schedule", e))?),
            )
            .filter(notify_mutes::Column::Id.eq(id))
            .exec(&self.conn)
            .await?;
        Ok(true)
    }

    /// Deletes a maintenance window.
    pub async fn delete_mute(&self, org: Uuid, kind: MuteKind, id: Uuid) -> Result<bool, DbError> {
        Ok(notify_mutes::Entity::delete_many()
            .filter(notify_mutes::Column::OrgId.eq(org))
            .filter(notify_mutes::Column::Kind.eq(kind.as_str()))
            .filter(notify_mutes::Column::Id.eq(id))
            .exec(&self.conn)
            .await?
            .rows_affected
            > 0)
    }
}

/// The mutes of `org` that may be in force at `now` (one-off ones not over, recurring ones).
pub(super) async fn current_mutes(
    conn: &impl sea_orm::ConnectionTrait,
    org: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<MuteRecord>, DbError> {
    notify_mutes::Entity::find()
        .filter(notify_mutes::Column::OrgId.eq(org))
        .filter(Condition::any().add(notify_mutes::Column::EndsAt.is_null()).add(notify_mutes::Column::EndsAt.gt(now)))
        .all(conn)
        .await?
        .into_iter()
        .map(MuteRecord::try_from)
        .collect()
}
