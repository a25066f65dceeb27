//! The `monitor_alerts` table: one row per thing that went wrong, firing until resolved.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub incident_id: Uuid,
    pub source_kind: String,
    pub source_id: Uuid,
    pub rule: String,
    pub severity: String,
    pub state: String,
    pub flapping: bool,
    pub message: Option<String>,
    pub opened_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    /// What routing and muting match on (null: opened before notifications existed).
    pub labels: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
