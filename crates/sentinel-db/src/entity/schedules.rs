//! The `schedules` table: triggers (cron or interval) that enqueue a job at each tick.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `None` for system schedules (built-in periodic work).
    pub org_id: Option<Uuid>,
    pub name: String,
    /// The capability that manages this schedule (`builtin:…`, `backup_plan:…`); `None` for user schedules.
    pub owner: Option<String>,
    pub cron: Option<String>,
    pub interval_secs: Option<i64>,
    pub timezone: String,
    /// Interval ticks fall at `anchor_at + k × interval_secs`.
    pub anchor_at: DateTimeUtc,
    pub job_kind: String,
    pub payload: Json,
    pub priority: String,
    pub enabled: bool,
    pub misfire_policy: String,
    pub jitter_ms: i64,
    pub end_at: Option<DateTimeUtc>,
    /// The next tick to fire (`None` when disabled or past its end). Claiming a tick moves it forward.
    pub next_fire_at: Option<DateTimeUtc>,
    /// Bumped by every edit, so a scheduler holding an older copy cannot fire it.
    pub version: i64,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_fired_at: Option<DateTimeUtc>,
    pub last_job_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
