//! Backups: targets (databases to back up, password sealed in `secrets`), destinations (where
//! artifacts go, credentials sealed), plans (target + destinations + schedule + format + retention)
//! and the journal (one row per backup or restore attempt, never deleted by retention).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BackupTargets {
    Table,
    Id,
    OrgId,
    Name,
    Engine,
    Host,
    Port,
    Username,
    PasswordSecretId,
    Databases,
    Options,
    Path,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BackupDestinations {
    Table,
    Id,
    OrgId,
    Name,
    Kind,
    Config,
    CredentialsSecretId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BackupPlans {
    Table,
    Id,
    OrgId,
    Name,
    TargetId,
    DestinationIds,
    Cron,
    Timezone,
    BackupType,
    Compression,
    Encryption,
    Retention,
    Enabled,
    ScheduleId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BackupJournal {
    Table,
    Id,
    OrgId,
    Kind,
    PlanId,
    TargetId,
    JobId,
    Attempt,
    Status,
    BackupType,
    Compression,
    Encryption,
    KeySecretId,
    StartedAt,
    FinishedAt,
    PlainBytes,
    StoredBytes,
    PlainSha256,
    StoredSha256,
    ToolVersion,
    ServerVersion,
    Copies,
    Source,
    Verified,
    Message,
    RequestedBy,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

fn timestamps(t: &mut TableCreateStatement, created_by: impl IntoIden, created: impl IntoIden, updated: impl IntoIden) {
    t.col(ColumnDef::new(created_by).string_len(256).null())
        .col(ColumnDef::new(created).timestamp_with_time_zone().not_null())
        .col(ColumnDef::new(updated).timestamp_with_time_zone().not_null());
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
        let mut targets = Table::create()
            .table(BackupTargets::Table)
            .if_not_exists()
            .col(ColumnDef::new(BackupTargets::Id).uuid().not_null().primary_key())
            .col(ColumnDef::new(BackupTargets::OrgId).uuid().not_null())
            .col(ColumnDef::new(BackupTargets::Name).string_len(100).not_null())
            .col(ColumnDef::new(BackupTargets::Engine).string_len(16).not_null())
            .col(ColumnDef::new(BackupTargets::Host).string_len(253).null())
            .col(ColumnDef::new(BackupTargets::Port).integer().null())
            .col(ColumnDef::new(BackupTargets::Username).string_len(128).null())
            .col(ColumnDef::new(BackupTargets::PasswordSecretId).uuid().null())
            // The databases to dump (one dump each), as a JSON array of names.
            .col(ColumnDef::new(BackupTargets::Databases).json().not_null())
            // TLS mode, include/exclude lists: engine options that hold no secret.
            .col(ColumnDef::new(BackupTargets::Options).json().not_null())
            // The database file of a SQLite target.
            .col(ColumnDef::new(BackupTargets::Path).text().null())
            .foreign_key(&mut org_key(BackupTargets::Table, BackupTargets::OrgId, "fk_backup_targets_org"))
            .to_owned();
        timestamps(&mut targets, BackupTargets::CreatedBy, BackupTargets::CreatedAt, BackupTargets::UpdatedAt);
        manager.create_table(targets).await?;

        let mut destinations = Table::create()
            .table(BackupDestinations::Table)
            .if_not_exists()
            .col(ColumnDef::new(BackupDestinations::Id).uuid().not_null().primary_key())
            .col(ColumnDef::new(BackupDestinations::OrgId).uuid().not_null())
            .col(ColumnDef::new(BackupDestinations::Name).string_len(100).not_null())
            .col(ColumnDef::new(BackupDestinations::Kind).string_len(16).not_null())
            // Bucket, region, endpoint, prefix, path…: everything but credentials.
            .col(ColumnDef::new(BackupDestinations::Config).json().not_null())
            // The credentials (a JSON object) sealed in `secrets`.
            .col(ColumnDef::new(BackupDestinations::CredentialsSecretId).uuid().null())
            .foreign_key(&mut org_key(
                BackupDestinations::Table,
                BackupDestinations::OrgId,
                "fk_backup_destinations_org",
            ))
            .to_owned();
        timestamps(
            &mut destinations,
            BackupDestinations::CreatedBy,
            BackupDestinations::CreatedAt,
            BackupDestinations::UpdatedAt,
        );
        manager.create_table(destinations).await?;

        let mut plans = Table::create()
            .table(BackupPlans::Table)
            .if_not_exists()
            .col(ColumnDef::new(BackupPlans::Id).uuid().not_null().primary_key())
            .col(ColumnDef::new(BackupPlans::OrgId).uuid().not_null())
            .col(ColumnDef::new(BackupPlans::Name).string_len(100).not_null())
            .col(ColumnDef::new(BackupPlans::TargetId).uuid().not_null())
            .col(ColumnDef::new(BackupPlans::DestinationIds).json().not_null())
            .col(ColumnDef::new(BackupPlans::Cron).string_len(128).null())
            .col(ColumnDef::new(BackupPlans::Timezone).string_len(64).not_null())
            .col(ColumnDef::new(BackupPlans::BackupType).string_len(16).not_null())
            .col(ColumnDef::new(BackupPlans::Compression).json().not_null())
            // The mode, the escrow recipients and the ids of the sealed identity or passphrase.
            .col(ColumnDef::new(BackupPlans::Encryption).json().not_null())
            .col(ColumnDef::new(BackupPlans::Retention).json().not_null())
            .col(ColumnDef::new(BackupPlans::Enabled).boolean().not_null())
            // The owned schedule that fires the plan (owner `backup-plan:<id>`).
            .col(ColumnDef::new(BackupPlans::ScheduleId).uuid().null())
            .foreign_key(&mut org_key(BackupPlans::Table, BackupPlans::OrgId, "fk_backup_plans_org"))
            .foreign_key(
                ForeignKey::create()
                    .name("fk_backup_plans_target")
                    .from(BackupPlans::Table, BackupPlans::TargetId)
                    .to(BackupTargets::Table, BackupTargets::Id)
                    .on_delete(ForeignKeyAction::Restrict),
            )
            .to_owned();
        timestamps(&mut plans, BackupPlans::CreatedBy, BackupPlans::CreatedAt, BackupPlans::UpdatedAt);
        manager.create_table(plans).await?;

        manager
            .create_table(
                Table::create()
                    .table(BackupJournal::Table)
                    .if_not_exists()
                    // UUIDv7: ids order the journal by creation.
                    .col(ColumnDef::new(BackupJournal::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(BackupJournal::OrgId).uuid().not_null())
                    .col(ColumnDef::new(BackupJournal::Kind).string_len(16).not_null())
                    // No foreign keys to plans and targets: the journal outlives what it names.
                    .col(ColumnDef::new(BackupJournal::PlanId).uuid().null())
                    .col(ColumnDef::new(BackupJournal::TargetId).uuid().null())
                    .col(ColumnDef::new(BackupJournal::JobId).uuid().null())
                    .col(ColumnDef::new(BackupJournal::Attempt).integer().not_null())
                    .col(ColumnDef::new(BackupJournal::Status).string_len(16).not_null())
                    .col(ColumnDef::new(BackupJournal::BackupType).string_len(16).null())
                    .col(ColumnDef::new(BackupJournal::Compression).string_len(16).null())
                    .col(ColumnDef::new(BackupJournal::Encryption).string_len(16).null())
                    // The vault secret (the plan's age identity or passphrase) that opens the artifact:
                    // a plan's key may change, its old backups stay readable.
                    .col(ColumnDef::new(BackupJournal::KeySecretId).uuid().null())
                    .col(ColumnDef::new(BackupJournal::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(BackupJournal::FinishedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(BackupJournal::PlainBytes).big_integer().null())
                    .col(ColumnDef::new(BackupJournal::StoredBytes).big_integer().null())
                    .col(ColumnDef::new(BackupJournal::PlainSha256).string_len(64).null())
                    .col(ColumnDef::new(BackupJournal::StoredSha256).string_len(64).null())
                    .col(ColumnDef::new(BackupJournal::ToolVersion).string_len(128).null())
                    .col(ColumnDef::new(BackupJournal::ServerVersion).string_len(128).null())
                    // One copy per destination: id, key, location, state.
                    .col(ColumnDef::new(BackupJournal::Copies).json().not_null())
                    // What a restore read: a journal entry, an object on a destination, an upload.
                    .col(ColumnDef::new(BackupJournal::Source).json().null())
                    .col(ColumnDef::new(BackupJournal::Verified).boolean().not_null())
                    .col(ColumnDef::new(BackupJournal::Message).text().null())
                    .col(ColumnDef::new(BackupJournal::RequestedBy).string_len(256).null())
                    .foreign_key(&mut org_key(BackupJournal::Table, BackupJournal::OrgId, "fk_backup_journal_org"))
                    .to_owned(),
            )
            .await?;
        let unique_names = [
            (
                "idx_backup_targets_name",
                BackupTargets::Table.into_iden(),
                BackupTargets::OrgId.into_iden(),
                BackupTargets::Name.into_iden(),
            ),
            (
                "idx_backup_destinations_name",
                BackupDestinations::Table.into_iden(),
                BackupDestinations::OrgId.into_iden(),
                BackupDestinations::Name.into_iden(),
            ),
            (
                "idx_backup_plans_name",
                BackupPlans::Table.into_iden(),
                BackupPlans::OrgId.into_iden(),
                BackupPlans::Name.into_iden(),
            ),
        ];
        for (name, table, org, col) in unique_names {
            manager.create_index(Index::create().name(name).table(table).col(org).col(col).unique().to_owned()).await?;
        }
        for (name, cols) in [
            ("idx_backup_journal_org_id", vec![BackupJournal::OrgId, BackupJournal::Id]),
            ("idx_backup_journal_plan", vec![BackupJournal::PlanId, BackupJournal::StartedAt]),
            ("idx_backup_journal_job", vec![BackupJournal::JobId]),
        ] {
            let mut idx = Index::create().name(name).table(BackupJournal::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            BackupJournal::Table.into_iden(),
            BackupPlans::Table.into_iden(),
            BackupDestinations::Table.into_iden(),
            BackupTargets::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
