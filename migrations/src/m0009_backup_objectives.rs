//! Recovery objectives of backup plans (RPO, RTO) in one JSON column, so that later objectives (how
//! often to verify) need no migration of their own. Absent on older plans: no objective.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BackupPlans {
    Table,
    Objectives,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BackupPlans::Table)
                    .add_column(ColumnDef::new(BackupPlans::Objectives).json().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(BackupPlans::Table).drop_column(BackupPlans::Objectives).to_owned())
            .await
    }
}
