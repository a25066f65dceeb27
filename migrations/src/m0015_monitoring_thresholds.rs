//! Thresholds and silence: each metric instance's threshold (JSON, null = none) and the alert it has
//! open; each machine's open "machine silent" alert; an index for the nodata sweep (metrics by
//! organization and last sample).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum MonitorMetrics {
    Table,
    OrgId,
    LastAt,
    Threshold,
    OpenAlertId,
}

#[derive(DeriveIden, Clone, Copy)]
enum MonitorMachines {
    Table,
    SilentAlertId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MonitorMetrics as M;
        for mut column in [
            ColumnDef::new(M::Threshold).json().null().to_owned(),
            ColumnDef::new(M::OpenAlertId).uuid().null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(M::Table).add_column(&mut column).to_owned()).await?;
        }
        let mut silent = ColumnDef::new(MonitorMachines::SilentAlertId).uuid().null().to_owned();
        manager.alter_table(Table::alter().table(MonitorMachines::Table).add_column(&mut silent).to_owned()).await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_metrics_org_last")
                    .table(M::Table)
                    .col(M::OrgId)
                    .col(M::LastAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MonitorMetrics as M;
        manager.drop_index(Index::drop().name("ix_monitor_metrics_org_last").table(M::Table).to_owned()).await?;
        for column in [M::Threshold, M::OpenAlertId] {
            manager.alter_table(Table::alter().table(M::Table).drop_column(column).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter().table(MonitorMachines::Table).drop_column(MonitorMachines::SilentAlertId).to_owned(),
            )
            .await
    }
}
