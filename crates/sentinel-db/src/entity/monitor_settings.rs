//! The `monitor_settings` table: each organization's monitoring settings.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: Uuid,
    pub notification_email: Option<String>,
    pub heartbeat_threshold_minutes: i32,
    pub consecutive_failures_threshold: i32,
    pub consecutive_successes_threshold: i32,
    pub alert_grouping_enabled: bool,
    pub updated_by: Option<String>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
