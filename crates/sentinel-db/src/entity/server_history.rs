//! The `server_history` table: one row per action on a server (who, what, before → after, job).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "server_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub server_id: Uuid,
    pub org_id: Uuid,
    pub at: DateTimeUtc,
    pub actor: String,
    pub action: String,
    pub before: Option<Json>,
    pub after: Option<Json>,
    pub job_id: Option<Uuid>,
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
