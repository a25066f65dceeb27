//! The `monitor_targets` table: HTTP targets, their next deadline and lease, their latest state.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_targets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub url: String,
    pub url_key: String,
    pub spec: Json,
    pub is_active: bool,
    pub check_interval_seconds: i32,
    pub server_id: Option<Uuid>,
    pub next_due_at: DateTimeUtc,
    pub claimed_until: Option<DateTimeUtc>,
    pub claimed_by: Option<String>,
    pub last_status: Option<String>,
    pub last_checked_at: Option<DateTimeUtc>,
    pub last_error_class: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_response_ms: Option<f64>,
    pub last_message: Option<String>,
    pub cert_expires_at: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    pub consecutive_successes: i32,
    pub alert_state: String,
    pub recent_results: i64,
    pub open_alert_id: Option<Uuid>,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
