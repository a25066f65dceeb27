//! The `monitor_samples` table: one value per metric instance and instant.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "monitor_samples")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub at: DateTimeUtc,
    pub value_num: Option<f64>,
    pub value_text: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
