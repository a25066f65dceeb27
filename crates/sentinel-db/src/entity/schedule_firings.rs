//! The `schedule_firings` table: one row per claimed tick (fired or skipped), unique per schedule and tick.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "schedule_firings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub schedule_id: Uuid,
    pub org_id: Option<Uuid>,
    pub tick_at: DateTimeUtc,
    pub fired_at: DateTimeUtc,
    pub job_id: Option<Uuid>,
    /// `fired` or `skipped` (a misfire under the skip policy).
    pub outcome: String,
    /// Earlier ticks this row stands for: skipped ones, or those coalesced into one late run.
    pub missed_ticks: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
