//! The `backup_journal` table: one row per backup or restore attempt.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backup_journal")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub kind: String,
    pub plan_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub attempt: i32,
    pub status: String,
    pub backup_type: Option<String>,
    pub compression: Option<String>,
    pub encryption: Option<String>,
    pub key_secret_id: Option<Uuid>,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    pub plain_bytes: Option<i64>,
    pub stored_bytes: Option<i64>,
    pub plain_sha256: Option<String>,
    pub stored_sha256: Option<String>,
    pub tool_version: Option<String>,
    pub server_version: Option<String>,
    pub copies: Json,
    pub source: Option<Json>,
    pub verified: bool,
    pub message: Option<String>,
    pub requested_by: Option<String>,
    /// `DatabaseStats` recorded in the dump's snapshot (m0010); `NULL`: none recorded.
    pub table_stats: Option<Json>,
    /// `Verification` of the latest check; `NULL`: never verified.
    pub verification: Option<String>,
    pub verification_message: Option<String>,
    pub verified_at: Option<DateTimeUtc>,
    pub rto_seconds: Option<f64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
