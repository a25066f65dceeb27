//! The `monitor_heartbeat_pings` table: the recent pings of each heartbeat check (its log).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_heartbeat_pings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub heartbeat_id: Uuid,
    pub at: DateTimeUtc,
    pub kind: String,
    pub exit_code: Option<i32>,
    pub run_id: Option<String>,
    pub duration_ms: Option<i64>,
    pub unexpected: bool,
    pub remote_addr: Option<String>,
    pub body: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
