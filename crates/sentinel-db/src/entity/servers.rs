//! The `servers` table: every host an organization's inventory knows, with its one lease.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "servers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub provider_ref: String,
    pub name: String,
    pub ip: String,
    pub ssh_port: i32,
    pub ssh_user: String,
    pub region: String,
    pub labels: Json,
    pub label_index: String,
    pub notes: String,
    pub status: String,
    /// Why the server is in `error` (a run's reason: failed, unreachable, host_key_changed, …).
    pub status_reason: Option<String>,
    pub last_action_at: Option<DateTimeUtc>,
    /// Pinned host keys: a JSON array of `algorithm base64` lines.
    pub host_keys: Json,
    pub accept_new_host_key: bool,
    pub ssh_credential_id: Option<Uuid>,
    pub lease_id: Option<Uuid>,
    pub lease_kind: Option<String>,
    pub lease_holder: Option<String>,
    pub lease_purpose: Option<String>,
    pub lease_job_id: Option<Uuid>,
    pub lease_expires_at: Option<DateTimeUtc>,
    pub status_before_lease: Option<String>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
