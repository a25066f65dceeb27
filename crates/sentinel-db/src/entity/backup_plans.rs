//! The `backup_plans` table: what to back up, where, when, in which format, and what to keep.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backup_plans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub target_id: Uuid,
    pub destination_ids: Json,
    pub cron: Option<String>,
    pub timezone: String,
    pub backup_type: String,
    pub compression: Json,
    pub encryption: Json,
    pub retention: Json,
    /// `PlanObjectives` (m0009); `NULL` on plans made before it: none.
    pub objectives: Option<Json>,
    pub enabled: bool,
    pub schedule_id: Option<Uuid>,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
