//! The `monitor_heartbeats` table: heartbeat checks of scheduled jobs and where each stands.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_heartbeats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub token_hash: String,
    pub spec: Json,
    pub is_active: bool,
    pub expected_at: Option<DateTimeUtc>,
    pub expected_started: bool,
    pub started_at: Option<DateTimeUtc>,
    pub run_id: Option<String>,
    pub run_for: Option<DateTimeUtc>,
    pub last_ping_at: Option<DateTimeUtc>,
    pub last_success_at: Option<DateTimeUtc>,
    pub problem: Option<String>,
    pub problem_note: Option<String>,
    pub open_alert_id: Option<Uuid>,
    pub next_check_at: Option<DateTimeUtc>,
    pub version: i64,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
