//! Provisioning runs: one row per run (what it ran, exactly, and how it ended) and one row per host
//! (its status, recap counters and diff), so runs can be listed by server.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProvisionRuns {
    Table,
    Id,
    OrgId,
    JobId,
    Playbook,
    PlaybookHash,
    CheckMode,
    ConfigId,
    ConfigVersion,
    ExtraVarNames,
    ExtraVars,
    Inventory,
    AnsibleVersion,
    TimeoutSecs,
    State,
    Reason,
    QueuePosition,
    RetryOf,
    ReservationId,
    AppliesRun,
    RequestedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum ProvisionRunHosts {
    Table,
    RunId,
    ServerId,
    Host,
    Status,
    Reason,
    Counts,
    Diff,
}

#[derive(DeriveIden)]
enum Servers {
    Table,
    StatusReason,
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
                    .table(ProvisionRuns::Table)
                    .if_not_exists()
                    // UUIDv7: ids order runs by creation, which is the FIFO order of the lease wait.
                    .col(ColumnDef::new(ProvisionRuns::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ProvisionRuns::OrgId).uuid().not_null())
                    .col(ColumnDef::new(ProvisionRuns::JobId).uuid().not_null())
                    .col(ColumnDef::new(ProvisionRuns::Playbook).string_len(64).not_null())
                    .col(ColumnDef::new(ProvisionRuns::PlaybookHash).string_len(64).not_null())
                    .col(ColumnDef::new(ProvisionRuns::CheckMode).boolean().not_null())
                    .col(ColumnDef::new(ProvisionRuns::ConfigId).uuid().null())
                    .col(ColumnDef::new(ProvisionRuns::ConfigVersion).big_integer().null())
                    // The names of the extra variables, never their values.
                    .col(ColumnDef::new(ProvisionRuns::ExtraVarNames).json().not_null())
                    // The request's extra variables, secret values as `{"$secret": id}` references.
                    .col(ColumnDef::new(ProvisionRuns::ExtraVars).json().not_null())
                    // The hosts as the run saw them: server id, name, address, port, user, host keys.
                    .col(ColumnDef::new(ProvisionRuns::Inventory).json().not_null())
                    .col(ColumnDef::new(ProvisionRuns::AnsibleVersion).string_len(64).null())
                    .col(ColumnDef::new(ProvisionRuns::TimeoutSecs).big_integer().not_null())
                    .col(ColumnDef::new(ProvisionRuns::State).string_len(16).not_null())
                    .col(ColumnDef::new(ProvisionRuns::Reason).text().null())
                    .col(ColumnDef::new(ProvisionRuns::QueuePosition).integer().null())
                    .col(ColumnDef::new(ProvisionRuns::RetryOf).uuid().null())
                    // The reservation this run is for: its servers may be taken from that lease only.
                    .col(ColumnDef::new(ProvisionRuns::ReservationId).uuid().null())
                    .col(ColumnDef::new(ProvisionRuns::AppliesRun).uuid().null())
                    .col(ColumnDef::new(ProvisionRuns::RequestedBy).string_len(256).not_null())
                    .col(ColumnDef::new(ProvisionRuns::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ProvisionRuns::StartedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ProvisionRuns::FinishedAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_provision_runs_org")
                            .from(ProvisionRuns::Table, ProvisionRuns::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_provision_runs_org_id", vec![ProvisionRuns::OrgId, ProvisionRuns::Id]),
            ("idx_provision_runs_job", vec![ProvisionRuns::JobId]),
            ("idx_provision_runs_state", vec![ProvisionRuns::State, ProvisionRuns::Id]),
        ] {
            let mut idx = Index::create().name(name).table(ProvisionRuns::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ProvisionRunHosts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ProvisionRunHosts::RunId).uuid().not_null())
                    .col(ColumnDef::new(ProvisionRunHosts::ServerId).uuid().not_null())
                    .col(ColumnDef::new(ProvisionRunHosts::Host).string_len(128).not_null())
                    .col(ColumnDef::new(ProvisionRunHosts::Status).string_len(16).not_null())
                    .col(ColumnDef::new(ProvisionRunHosts::Reason).string_len(32).null())
                    .col(ColumnDef::new(ProvisionRunHosts::Counts).json().null())
                    .col(ColumnDef::new(ProvisionRunHosts::Diff).text().null())
                    .primary_key(Index::create().col(ProvisionRunHosts::RunId).col(ProvisionRunHosts::ServerId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_provision_run_hosts_run")
                            .from(ProvisionRunHosts::Table, ProvisionRunHosts::RunId)
                            .to(ProvisionRuns::Table, ProvisionRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_provision_run_hosts_server")
                    .table(ProvisionRunHosts::Table)
                    .col(ProvisionRunHosts::ServerId)
                    .col(ProvisionRunHosts::RunId)
                    .to_owned(),
            )
            .await?;
        // Why a server is in `error`: the reason of the run that put it there.
        manager
            .alter_table(
                Table::alter()
                    .table(Servers::Table)
                    .add_column(ColumnDef::new(Servers::StatusReason).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Servers::Table).drop_column(Servers::StatusReason).to_owned()).await?;
        for t in [ProvisionRunHosts::Table.into_iden(), ProvisionRuns::Table.into_iden()] {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
