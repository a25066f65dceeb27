//! Indexes for the dashboard summary, so each of its counts is a range of one index rather than a
//! scan: targets by organization, activity, status and alert state; machines by last contact; jobs
//! by organization, state and end.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MonitorTargets {
    Table,
    OrgId,
    IsActive,
    LastStatus,
    AlertState,
}

#[derive(DeriveIden)]
enum MonitorMachines {
    Table,
    OrgId,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    OrgId,
    State,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_targets_dashboard")
                    .table(MonitorTargets::Table)
                    .col(MonitorTargets::OrgId)
                    .col(MonitorTargets::IsActive)
                    .col(MonitorTargets::LastStatus)
                    .col(MonitorTargets::AlertState)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_machines_seen")
                    .table(MonitorMachines::Table)
                    .col(MonitorMachines::OrgId)
                    .col(MonitorMachines::LastSeenAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_jobs_org_state_finished")
                    .table(Jobs::Table)
                    .col(Jobs::OrgId)
                    .col(Jobs::State)
                    .col(Jobs::FinishedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("ix_jobs_org_state_finished", Jobs::Table.into_iden()),
            ("ix_monitor_machines_seen", MonitorMachines::Table.into_iden()),
            ("ix_monitor_targets_dashboard", MonitorTargets::Table.into_iden()),
        ] {
            manager.drop_index(Index::drop().name(name).table(table).to_owned()).await?;
        }
        Ok(())
    }
}
