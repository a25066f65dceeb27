//! The `monitor_incidents` table: grouped alerts with a lifecycle.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_incidents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub group_key: String,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub flapping: bool,
    pub opened_at: DateTimeUtc,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<String>,
    pub updated_at: DateTimeUtc,
    /// The job (`job:<id>`) whose expected disruption keeps this incident from paging.
    pub suppressed_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
