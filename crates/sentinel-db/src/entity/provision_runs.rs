//! The `provision_runs` table: one provisioning run, what it ran exactly and how it ended.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "provision_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub job_id: Uuid,
    pub playbook: String,
    pub playbook_hash: String,
    pub check_mode: bool,
    pub config_id: Option<Uuid>,
    pub config_version: Option<i64>,
    pub extra_var_names: Json,
    pub extra_vars: Json,
    pub inventory: Json,
    pub ansible_version: Option<String>,
    pub timeout_secs: i64,
    pub state: String,
    pub reason: Option<String>,
    pub queue_position: Option<i32>,
    pub retry_of: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub applies_run: Option<Uuid>,
    pub requested_by: String,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
