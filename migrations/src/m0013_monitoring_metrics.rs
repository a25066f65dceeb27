//! Metric ingest: machines (created on first sight, by hostname), metric instances (one per machine
//! and name, with the latest value, alerting and pause), samples (one per instance and instant), and
//! the ingest keys already seen (the seed's `X-Ingest-Id`: a replay answers as the first time).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MonitorMachines {
    Table,
    Id,
    OrgId,
    Hostname,
    Os,
    FirstSeenAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum MonitorMetrics {
    Table,
    Id,
    OrgId,
    MachineId,
    Name,
    Kind,
    Unit,
    LastValueNum,
    LastValueText,
    LastAt,
    AlertingEnabled,
    Paused,
    State,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MonitorSamples {
    Table,
    MetricId,
    At,
    ValueNum,
    ValueText,
}

#[derive(DeriveIden)]
enum MonitorIngests {
    Table,
    OrgId,
    IngestId,
    ReceivedAt,
    Response,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

fn org_key(table: impl IntoIden, column: impl IntoIden, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(Organizations::Table, Organizations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MonitorMachines as M;
        manager
            .create_table(
                Table::create()
                    .table(M::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(M::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(M::OrgId).uuid().not_null())
                    .col(ColumnDef::new(M::Hostname).string_len(253).not_null())
                    .col(ColumnDef::new(M::Os).string_len(64).null())
                    .col(ColumnDef::new(M::FirstSeenAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(M::LastSeenAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_key(M::Table, M::OrgId, "fk_monitor_machines_org"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_monitor_machines_host")
                    .table(M::Table)
                    .col(M::OrgId)
                    .col(M::Hostname)
                    .unique()
                    .to_owned(),
            )
            .await?;

        use MonitorMetrics as X;
        manager
            .create_table(
                Table::create()
                    .table(X::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(X::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(X::OrgId).uuid().not_null())
                    .col(ColumnDef::new(X::MachineId).uuid().not_null())
                    .col(ColumnDef::new(X::Name).string_len(128).not_null())
                    // numeric, boolean or string.
                    .col(ColumnDef::new(X::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(X::Unit).string_len(32).null())
                    .col(ColumnDef::new(X::LastValueNum).double().null())
                    .col(ColumnDef::new(X::LastValueText).text().null())
                    .col(ColumnDef::new(X::LastAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(X::AlertingEnabled).boolean().not_null())
                    .col(ColumnDef::new(X::Paused).boolean().not_null())
                    // ok, warning, critical or nodata (thresholds).
                    .col(ColumnDef::new(X::State).string_len(16).not_null())
                    .col(ColumnDef::new(X::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_key(X::Table, X::OrgId, "fk_monitor_metrics_org"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_metrics_machine")
                            .from(X::Table, X::MachineId)
                            .to(M::Table, M::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_monitor_metrics_machine_name")
                    .table(X::Table)
                    .col(X::MachineId)
                    .col(X::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ix_monitor_metrics_org").table(X::Table).col(X::OrgId).col(X::Id).to_owned(),
            )
            .await?;

        use MonitorSamples as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(S::MetricId).uuid().not_null())
                    .col(ColumnDef::new(S::At).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(S::ValueNum).double().null())
                    .col(ColumnDef::new(S::ValueText).text().null())
                    .primary_key(Index::create().col(S::MetricId).col(S::At))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_samples_metric")
                            .from(S::Table, S::MetricId)
                            .to(X::Table, X::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("ix_monitor_samples_at").table(S::Table).col(S::At).to_owned())
            .await?;

        use MonitorIngests as I;
        manager
            .create_table(
                Table::create()
                    .table(I::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(I::OrgId).uuid().not_null())
                    .col(ColumnDef::new(I::IngestId).string_len(128).not_null())
                    .col(ColumnDef::new(I::ReceivedAt).timestamp_with_time_zone().not_null())
                    // What the first request was answered, answered again to a replay.
                    .col(ColumnDef::new(I::Response).json().not_null())
                    .primary_key(Index::create().col(I::OrgId).col(I::IngestId))
                    .foreign_key(&mut org_key(I::Table, I::OrgId, "fk_monitor_ingests_org"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ix_monitor_ingests_received").table(I::Table).col(I::ReceivedAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MonitorIngests::Table.into_iden(),
            MonitorSamples::Table.into_iden(),
            MonitorMetrics::Table.into_iden(),
            MonitorMachines::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
