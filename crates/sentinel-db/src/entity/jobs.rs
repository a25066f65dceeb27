//! The `jobs` table: one row per job, the source of truth for its state.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub priority: String,
    pub payload: Json,
    pub state: String,
    /// Current attempt, 1-based; a bus message for an older attempt is stale.
    pub attempt: i32,
    pub max_attempts: i32,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    /// Lease epoch: bumped on every start; writes from an older epoch are refused.
    pub epoch: i64,
    pub progress_step: Option<i64>,
    pub progress_total: Option<i64>,
    pub progress_info: Option<String>,
    pub result: Option<Json>,
    pub error: Option<String>,
    pub trace_context: Option<Json>,
    pub requested_by: Option<String>,
    /// Sequence number of the job's newest event.
    pub event_seq: i64,
    pub cancel_requested: bool,
    /// Outbox flag: false until the job's message is on the bus.
    pub published: bool,
    pub run_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// Owning organization; `None` for system jobs (built-in periodic work).
    pub org_id: Option<Uuid>,
    /// While the job is unfinished, a second enqueue with the same key returns this job.
    pub dedup_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
