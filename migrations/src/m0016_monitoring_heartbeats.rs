//! Heartbeat checks for scheduled jobs: each check's specification (period or cron, grace, start
//! window, run times), the hash of its ping token, where it stands between pings (the awaited run,
//! the run in progress, its problem and open alert), when the sweep must look at it next, and a
//! version for compare-and-set; and each check's recent pings (the log).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MonitorHeartbeats {
    Table,
    Id,
    OrgId,
    Name,
    TokenHash,
    Spec,
    IsActive,
    ExpectedAt,
    ExpectedStarted,
    StartedAt,
    RunId,
    RunFor,
    LastPingAt,
    LastSuccessAt,
    Problem,
    ProblemNote,
    OpenAlertId,
    NextCheckAt,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MonitorHeartbeatPings {
    Table,
    Id,
    HeartbeatId,
    At,
    Kind,
    ExitCode,
    RunId,
    DurationMs,
    Unexpected,
    RemoteAddr,
    Body,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MonitorHeartbeats as H;
        manager
            .create_table(
                Table::create()
                    .table(H::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(H::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(H::OrgId).uuid().not_null())
                    .col(ColumnDef::new(H::Name).string_len(100).not_null())
                    // SHA-256 of the ping token (hex): the token itself is shown once, never stored.
                    .col(ColumnDef::new(H::TokenHash).string_len(64).not_null())
                    .col(ColumnDef::new(H::Spec).json().not_null())
                    .col(ColumnDef::new(H::IsActive).boolean().not_null())
                    .col(ColumnDef::new(H::ExpectedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(H::ExpectedStarted).boolean().not_null())
                    .col(ColumnDef::new(H::StartedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(H::RunId).string_len(64).null())
                    .col(ColumnDef::new(H::RunFor).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(H::LastPingAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(H::LastSuccessAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(H::Problem).string_len(16).null())
                    .col(ColumnDef::new(H::ProblemNote).text().null())
                    .col(ColumnDef::new(H::OpenAlertId).uuid().null())
                    .col(ColumnDef::new(H::NextCheckAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(H::Version).big_integer().not_null())
                    .col(ColumnDef::new(H::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(H::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(H::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_heartbeats_org")
                            .from(H::Table, H::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_monitor_heartbeats_token")
                    .table(H::Table)
                    .col(H::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ix_monitor_heartbeats_org").table(H::Table).col(H::OrgId).col(H::Id).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_heartbeats_due")
                    .table(H::Table)
                    .col(H::IsActive)
                    .col(H::NextCheckAt)
                    .to_owned(),
            )
            .await?;

        use MonitorHeartbeatPings as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(P::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(P::HeartbeatId).uuid().not_null())
                    .col(ColumnDef::new(P::At).timestamp_with_time_zone().not_null())
                    // start, success or fail.
                    .col(ColumnDef::new(P::Kind).string_len(8).not_null())
                    .col(ColumnDef::new(P::ExitCode).integer().null())
                    .col(ColumnDef::new(P::RunId).string_len(64).null())
                    .col(ColumnDef::new(P::DurationMs).big_integer().null())
                    .col(ColumnDef::new(P::Unexpected).boolean().not_null())
                    .col(ColumnDef::new(P::RemoteAddr).string_len(64).null())
                    .col(ColumnDef::new(P::Body).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_heartbeat_pings_check")
                            .from(P::Table, P::HeartbeatId)
                            .to(H::Table, H::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_heartbeat_pings_check")
                    .table(P::Table)
                    .col(P::HeartbeatId)
                    .col(P::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [MonitorHeartbeatPings::Table.into_iden(), MonitorHeartbeats::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
