//! Backup plans: what to back up (a target), where (destinations), when (a cron fired through an
//! owned schedule), in which format, and what retention keeps.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait};
use sentinel_domain::backups::{BackupType, CompressionChoice, PlanEncryption, PlanObjectives, Retention};
use uuid::Uuid;

use super::{BackupStore, SealedSecret, json, page_by_id, secret_owner};
use crate::entity::{backup_plans, schedules};
use crate::{DbError, SecretStore, unique};

/// A plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub target_id: Uuid,
    pub destination_ids: Vec<Uuid>,
    /// `None`: run only on demand.
    pub cron: Option<String>,
    pub timezone: String,
    pub backup_type: BackupType,
    pub compression: CompressionChoice,
    pub encryption: PlanEncryption,
    pub retention: Retention,
    pub objectives: PlanObjectives,
    pub enabled: bool,
    pub schedule_id: Option<Uuid>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A plan's fields as created or replaced. The encryption's secrets are sealed by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDraft {
    pub name: String,
    pub target_id: Uuid,
    pub destination_ids: Vec<Uuid>,
    pub cron: Option<String>,
    pub timezone: String,
    pub backup_type: BackupType,
    pub compression: CompressionChoice,
    pub encryption: PlanEncryption,
    pub retention: Retention,
    pub objectives: PlanObjectives,
    pub enabled: bool,
}

impl TryFrom<backup_plans::Model> for PlanRecord {
    type Error = DbError;
    fn try_from(m: backup_plans::Model) -> Result<Self, DbError> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("backup plan {}: {what}: {e}", m.id));
        Ok(Self {
            destination_ids: serde_json::from_value(m.destination_ids.clone())
                .map_err(|e| corrupt("destination_ids", &e))?,
            backup_type: BackupType::parse(&m.backup_type).map_err(|e| corrupt("backup_type", &e))?,
            compression: serde_json::from_value(m.compression.clone()).map_err(|e| corrupt("compression", &e))?,
            encryption: serde_json::from_value(m.encryption.clone()).map_err(|e| corrupt("encryption", &e))?,
            retention: serde_json::from_value(m.retention.clone()).map_err(|e| corrupt("retention", &e))?,
            objectives: match &m.objectives {
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| corrupt("objectives", &e))?,
                None => PlanObjectives::default(),
            },
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            target_id: m.target_id,
            cron: m.cron,
            timezone: m.timezone,
            enabled: m.enabled,
            schedule_id: m.schedule_id,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl BackupStore {
    /// Stores a plan with the secrets its encryption names (sealed by the caller), in one transaction.
    /// `id` is chosen by the caller, who sealed the secrets for it.
    pub async fn create_plan(
        &self,
        org: Uuid,
        id: Uuid,
        draft: PlanDraft,
        secrets: Vec<SealedSecret>,
        actor: &str,
    ) -> Result<PlanRecord, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        for (secret_id, key_id, sealed) in &secrets {
            SecretStore::insert_in(&txn, *secret_id, Some(org), &secret_owner("plan", id), key_id, sealed).await?;
        }
        let model = backup_plans::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(draft.name),
            target_id: Set(draft.target_id),
            destination_ids: Set(json(&draft.destination_ids)?),
            cron: Set(draft.cron),
            timezone: Set(draft.timezone),
            backup_type: Set(draft.backup_type.as_str().to_owned()),
            compression: Set(json(&draft.compression)?),
            encryption: Set(json(&draft.encryption)?),
            retention: Set(json(&draft.retention)?),
            objectives: Set(Some(json(&draft.objectives)?)),
            enabled: Set(draft.enabled),
            schedule_id: Set(None),
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

    /// Replaces a plan's fields; `secrets` are the new ones the caller sealed. Keys the plan used
    /// before stay in the vault (its older backups name them) until the plan is deleted.
    pub async fn update_plan(
        &self,
        old: &PlanRecord,
        draft: PlanDraft,
        secrets: Vec<SealedSecret>,
    ) -> Result<PlanRecord, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        for (secret_id, key_id, sealed) in &secrets {
            let owner = secret_owner("plan", old.id);
            SecretStore::insert_in(&txn, *secret_id, Some(old.org_id), &owner, key_id, sealed).await?;
        }
        backup_plans::Entity::update_many()
            .col_expr(backup_plans::Column::Name, Expr::value(draft.name))
            .col_expr(backup_plans::Column::TargetId, Expr::value(draft.target_id))
            .col_expr(backup_plans::Column::DestinationIds, Expr::value(json(&draft.destination_ids)?))
            .col_expr(backup_plans::Column::Cron, Expr::value(draft.cron))
            .col_expr(backup_plans::Column::Timezone, Expr::value(draft.timezone))
            .col_expr(backup_plans::Column::BackupType, Expr::value(draft.backup_type.as_str()))
            .col_expr(backup_plans::Column::Compression, Expr::value(json(&draft.compression)?))
            .col_expr(backup_plans::Column::Encryption, Expr::value(json(&draft.encryption)?))
            .col_expr(backup_plans::Column::Retention, Expr::value(json(&draft.retention)?))
            .col_expr(backup_plans::Column::Objectives, Expr::value(json(&draft.objectives)?))
            .col_expr(backup_plans::Column::Enabled, Expr::value(draft.enabled))
            .col_expr(backup_plans::Column::UpdatedAt, Expr::value(Utc::now().trunc_subsecs(6)))
            .filter(backup_plans::Column::Id.eq(old.id))
            .exec(&txn)
            .await
            .map_err(unique)?;
        txn.commit().await?;
        self.plan(old.org_id, old.id).await?.ok_or_else(|| DbError::NotFound(format!("backup plan {}", old.id)))
    }

    /// Records the owned schedule that fires the plan.
    pub async fn set_plan_schedule(&self, plan: Uuid, schedule: Option<Uuid>) -> Result<(), DbError> {
        backup_plans::Entity::update_many()
            .col_expr(backup_plans::Column::ScheduleId, Expr::value(schedule))
            .filter(backup_plans::Column::Id.eq(plan))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    pub async fn plan(&self, org: Uuid, id: Uuid) -> Result<Option<PlanRecord>, DbError> {
        backup_plans::Entity::find_by_id(id)
            .filter(backup_plans::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// A plan by id alone (a job's payload names it; its organization comes with it).
    pub async fn plan_any(&self, id: Uuid) -> Result<Option<PlanRecord>, DbError> {
        backup_plans::Entity::find_by_id(id).one(&self.conn).await?.map(TryInto::try_into).transpose()
    }

    pub async fn plans(&self, org: Uuid, after: Option<Uuid>, limit: u64) -> Result<Vec<PlanRecord>, DbError> {
        let q = backup_plans::Entity::find().filter(backup_plans::Column::OrgId.eq(org));
        page_by_id(&self.conn, q, backup_plans::Column::Id, after, limit).await
    }

    /// Every plan of every organization, by id (the worker seeds its metrics from them).
    pub async fn all_plans(&self, after: Option<Uuid>, limit: u64) -> Result<Vec<PlanRecord>, DbError> {
        page_by_id(&self.conn, backup_plans::Entity::find(), backup_plans::Column::Id, after, limit).await
    }

    /// The names of the plans that write to `destination`.
    pub async fn plans_using_destination(&self, org: Uuid, destination: Uuid) -> Result<Vec<String>, DbError> {
        let rows: Vec<(String, serde_json::Value)> = backup_plans::Entity::find()
            .select_only()
            .column(backup_plans::Column::Name)
            .column(backup_plans::Column::DestinationIds)
            .filter(backup_plans::Column::OrgId.eq(org))
            .into_tuple()
            .all(&self.conn)
            .await?;
        let needle = serde_json::Value::String(destination.to_string());
        Ok(rows
            .into_iter()
            .filter(|(_, ids)| ids.as_array().is_some_and(|a| a.contains(&needle)))
            .map(|(n, _)| n)
            .collect())
    }

    /// Deletes a plan and its schedule in one transaction (its journal stays). Its keys go too
    /// unless `keep_keys`: backups that are kept must stay restorable.
    pub async fn delete_plan(&self, plan: &PlanRecord, keep_keys: bool) -> Result<(), DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        backup_plans::Entity::delete_by_id(plan.id).exec(&txn).await?;
        if !keep_keys {
            SecretStore::delete_owned_in(&txn, &secret_owner("plan", plan.id)).await?;
        }
        schedules::Entity::delete_many()
            .filter(schedules::Column::Owner.eq(plan_schedule_owner(plan.id)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// The owner key of the schedule that fires a plan.
pub fn plan_schedule_owner(plan: Uuid) -> String {
    format!("backup-plan:{plan}")
}
