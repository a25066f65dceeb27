//! The `monitor_metrics` table: one metric instance per machine and name, with its latest value.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_metrics")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub machine_id: Uuid,
    pub name: String,
    pub kind: String,
    pub unit: Option<String>,
    pub last_value_num: Option<f64>,
    pub last_value_text: Option<String>,
    pub last_at: Option<DateTimeUtc>,
    pub alerting_enabled: bool,
    pub paused: bool,
    pub state: String,
    pub created_at: DateTimeUtc,
    /// The threshold (`sentinel_domain::monitoring::thresholds::Threshold`), null = none.
    pub threshold: Option<Json>,
    pub open_alert_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
