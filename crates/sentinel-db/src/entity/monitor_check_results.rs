//! The `monitor_check_results` table: one raw result per target and deadline.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_check_results")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub target_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub due_at: DateTimeUtc,
    pub org_id: Uuid,
    pub started_at: DateTimeUtc,
    pub response_ms: f64,
    pub status: String,
    pub status_code: Option<i32>,
    pub error_class: Option<String>,
    pub message: Option<String>,
    pub cert_expires_at: Option<DateTimeUtc>,
    pub manual: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
