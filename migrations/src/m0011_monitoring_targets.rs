//! Monitoring's HTTP targets: the targets (their specification, their deadline and lease for the
//! dispatcher, their latest state), the raw results (one per target and deadline: a deadline is
//! never counted twice), the hourly and daily rollups uptime and percentiles are read from, and how
//! far the rollup sweep has got.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MonitorTargets {
    Table,
    Id,
    OrgId,
    Name,
    Url,
    UrlKey,
    Spec,
    IsActive,
    CheckIntervalSeconds,
    ServerId,
    NextDueAt,
    ClaimedUntil,
    ClaimedBy,
    LastStatus,
    LastCheckedAt,
    LastErrorClass,
    LastStatusCode,
    LastResponseMs,
    LastMessage,
    CertExpiresAt,
    ConsecutiveFailures,
    ConsecutiveSuccesses,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MonitorCheckResults {
    Table,
    TargetId,
    DueAt,
    OrgId,
    StartedAt,
    ResponseMs,
    Status,
    StatusCode,
    ErrorClass,
    Message,
    CertExpiresAt,
    Manual,
}

#[derive(DeriveIden)]
enum MonitorRollups {
    Table,
    TargetId,
    Period,
    BucketStart,
    Checks,
    Up,
    ResponseMsSum,
    P50Ms,
    P95Ms,
    P99Ms,
    Histogram,
}

#[derive(DeriveIden)]
enum MonitorSweeps {
    Table,
    Name,
    DoneUntil,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Servers {
    Table,
    Id,
}

fn target_key(table: impl IntoIden, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, Alias::new("target_id"))
        .to(MonitorTargets::Table, MonitorTargets::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MonitorTargets as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(T::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(T::OrgId).uuid().not_null())
                    .col(ColumnDef::new(T::Name).string_len(100).not_null())
                    .col(ColumnDef::new(T::Url).text().not_null())
                    // The URL normalized (scheme and host case, default port): duplicates are one.
                    .col(ColumnDef::new(T::UrlKey).text().not_null())
                    // Everything else of the specification (method, codes, headers, assertion…).
                    .col(ColumnDef::new(T::Spec).json().not_null())
                    .col(ColumnDef::new(T::IsActive).boolean().not_null())
                    .col(ColumnDef::new(T::CheckIntervalSeconds).integer().not_null())
                    .col(ColumnDef::new(T::ServerId).uuid().null())
                    // The absolute deadline of the next check, and the dispatcher's lease on it.
                    .col(ColumnDef::new(T::NextDueAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(T::ClaimedUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(T::ClaimedBy).string_len(128).null())
                    .col(ColumnDef::new(T::LastStatus).string_len(8).null())
                    .col(ColumnDef::new(T::LastCheckedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(T::LastErrorClass).string_len(16).null())
                    .col(ColumnDef::new(T::LastStatusCode).integer().null())
                    .col(ColumnDef::new(T::LastResponseMs).double().null())
                    .col(ColumnDef::new(T::LastMessage).text().null())
                    .col(ColumnDef::new(T::CertExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(T::ConsecutiveFailures).integer().not_null().default(0))
                    .col(ColumnDef::new(T::ConsecutiveSuccesses).integer().not_null().default(0))
                    .col(ColumnDef::new(T::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(T::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(T::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_targets_org")
                            .from(T::Table, T::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_targets_server")
                            .from(T::Table, T::ServerId)
                            .to(Servers::Table, Servers::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // One URL per organization: a concurrent second POST hits this and answers 409.
        manager
            .create_index(
                Index::create()
                    .name("ux_monitor_targets_org_url")
                    .table(T::Table)
                    .col(T::OrgId)
                    .col(T::UrlKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The dispatcher's scan: active targets by deadline.
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_targets_due")
                    .table(T::Table)
                    .col(T::IsActive)
                    .col(T::NextDueAt)
                    .to_owned(),
            )
            .await?;

        use MonitorCheckResults as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(R::TargetId).uuid().not_null())
                    .col(ColumnDef::new(R::DueAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(R::OrgId).uuid().not_null())
                    .col(ColumnDef::new(R::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(R::ResponseMs).double().not_null())
                    .col(ColumnDef::new(R::Status).string_len(8).not_null())
                    .col(ColumnDef::new(R::StatusCode).integer().null())
                    .col(ColumnDef::new(R::ErrorClass).string_len(16).null())
                    .col(ColumnDef::new(R::Message).text().null())
                    .col(ColumnDef::new(R::CertExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(R::Manual).boolean().not_null())
                    // A deadline is checked once: a re-run of it after a crash cannot add a second row.
                    .primary_key(Index::create().col(R::TargetId).col(R::DueAt))
                    .foreign_key(&mut target_key(R::Table, "fk_monitor_results_target"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("ix_monitor_results_due").table(R::Table).col(R::DueAt).to_owned())
            .await?;

        use MonitorRollups as U;
        manager
            .create_table(
                Table::create()
                    .table(U::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(U::TargetId).uuid().not_null())
                    // `hour` or `day`.
                    .col(ColumnDef::new(U::Period).string_len(8).not_null())
                    .col(ColumnDef::new(U::BucketStart).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(U::Checks).big_integer().not_null())
                    .col(ColumnDef::new(U::Up).big_integer().not_null())
                    .col(ColumnDef::new(U::ResponseMsSum).double().not_null())
                    .col(ColumnDef::new(U::P50Ms).double().null())
                    .col(ColumnDef::new(U::P95Ms).double().null())
                    .col(ColumnDef::new(U::P99Ms).double().null())
                    // Response times per bucket (sentinel_domain::monitoring::HISTOGRAM_BOUNDS_MS).
                    .col(ColumnDef::new(U::Histogram).json().not_null())
                    .primary_key(Index::create().col(U::TargetId).col(U::Period).col(U::BucketStart))
                    .foreign_key(&mut target_key(U::Table, "fk_monitor_rollups_target"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_rollups_period")
                    .table(U::Table)
                    .col(U::Period)
                    .col(U::BucketStart)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MonitorSweeps::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(MonitorSweeps::Name).string_len(32).not_null().primary_key())
                    .col(ColumnDef::new(MonitorSweeps::DoneUntil).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MonitorSweeps::Table.into_iden(),
            MonitorRollups::Table.into_iden(),
            MonitorCheckResults::Table.into_iden(),
            MonitorTargets::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
