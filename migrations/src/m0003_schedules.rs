//! Schedules: cron or interval triggers that enqueue jobs, their firing history (one row per tick,
//! unique, so a tick can never fire twice), and the lease that elects the active scheduler replica.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    OrgId,
    Name,
    Owner,
    Cron,
    IntervalSecs,
    Timezone,
    AnchorAt,
    JobKind,
    Payload,
    Priority,
    Enabled,
    MisfirePolicy,
    JitterMs,
    EndAt,
    NextFireAt,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    LastFiredAt,
    LastJobId,
}

#[derive(DeriveIden)]
enum ScheduleFirings {
    Table,
    Id,
    ScheduleId,
    OrgId,
    TickAt,
    FiredAt,
    JobId,
    Outcome,
    MissedTicks,
}

#[derive(DeriveIden)]
enum SchedulerLeases {
    Table,
    Name,
    Holder,
    Epoch,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Schedules::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Schedules::OrgId).uuid().null())
                    .col(ColumnDef::new(Schedules::Name).string_len(128).not_null())
                    .col(ColumnDef::new(Schedules::Owner).string_len(128).null().unique_key())
                    .col(ColumnDef::new(Schedules::Cron).string_len(256).null())
                    .col(ColumnDef::new(Schedules::IntervalSecs).big_integer().null())
                    .col(ColumnDef::new(Schedules::Timezone).string_len(64).not_null())
                    .col(ColumnDef::new(Schedules::AnchorAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Schedules::JobKind).string_len(128).not_null())
                    .col(ColumnDef::new(Schedules::Payload).json().not_null())
                    .col(ColumnDef::new(Schedules::Priority).string_len(8).not_null())
                    .col(ColumnDef::new(Schedules::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Schedules::MisfirePolicy).string_len(16).not_null())
                    .col(ColumnDef::new(Schedules::JitterMs).big_integer().not_null())
                    .col(ColumnDef::new(Schedules::EndAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Schedules::NextFireAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Schedules::Version).big_integer().not_null())
                    .col(ColumnDef::new(Schedules::CreatedBy).string_len(128).null())
                    .col(ColumnDef::new(Schedules::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Schedules::UpdatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Schedules::LastFiredAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Schedules::LastJobId).uuid().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_schedules_org")
                            .from(Schedules::Table, Schedules::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_schedules_org_name")
                    .table(Schedules::Table)
                    .col(Schedules::OrgId)
                    .col(Schedules::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The active scheduler polls for edits by modification time.
        manager
            .create_index(
                Index::create()
                    .name("idx_schedules_updated_at")
                    .table(Schedules::Table)
                    .col(Schedules::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ScheduleFirings::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ScheduleFirings::Id).big_integer().not_null().primary_key().auto_increment())
                    .col(ColumnDef::new(ScheduleFirings::ScheduleId).uuid().not_null())
                    .col(ColumnDef::new(ScheduleFirings::OrgId).uuid().null())
                    .col(ColumnDef::new(ScheduleFirings::TickAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ScheduleFirings::FiredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ScheduleFirings::JobId).uuid().null())
                    .col(ColumnDef::new(ScheduleFirings::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(ScheduleFirings::MissedTicks).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_firings_schedule")
                            .from(ScheduleFirings::Table, ScheduleFirings::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The last line of defence against a double firing: one row per (schedule, tick).
        manager
            .create_index(
                Index::create()
                    .name("idx_firings_schedule_tick")
                    .table(ScheduleFirings::Table)
                    .col(ScheduleFirings::ScheduleId)
                    .col(ScheduleFirings::TickAt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_firings_fired_at")
                    .table(ScheduleFirings::Table)
                    .col(ScheduleFirings::FiredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SchedulerLeases::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SchedulerLeases::Name).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(SchedulerLeases::Holder).string_len(128).not_null())
                    .col(ColumnDef::new(SchedulerLeases::Epoch).big_integer().not_null())
                    .col(ColumnDef::new(SchedulerLeases::ExpiresAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [SchedulerLeases::Table.into_iden(), ScheduleFirings::Table.into_iden(), Schedules::Table.into_iden()]
        {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
