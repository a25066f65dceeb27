//! Configs: named parameter sets (the extra variables of a run), versioned — every update writes a new
//! row of `config_versions`, so a run can record and show exactly what it used.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Configs {
    Table,
    Id,
    OrgId,
    Name,
    Description,
    Path,
    Payload,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConfigVersions {
    Table,
    ConfigId,
    Version,
    Name,
    Description,
    Path,
    Payload,
    CreatedBy,
    CreatedAt,
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
                    .table(Configs::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Configs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Configs::OrgId).uuid().not_null())
                    .col(ColumnDef::new(Configs::Name).string_len(128).not_null())
                    .col(ColumnDef::new(Configs::Description).text().not_null())
                    .col(ColumnDef::new(Configs::Path).string_len(1024).null())
                    // Secret values are stored as `{"secret_id": "<uuid>"}` references into `secrets`.
                    .col(ColumnDef::new(Configs::Payload).json().not_null())
                    .col(ColumnDef::new(Configs::Version).big_integer().not_null())
                    .col(ColumnDef::new(Configs::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(Configs::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Configs::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_configs_org")
                            .from(Configs::Table, Configs::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_configs_org_name")
                    .table(Configs::Table)
                    .col(Configs::OrgId)
                    .col(Configs::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConfigVersions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ConfigVersions::ConfigId).uuid().not_null())
                    .col(ColumnDef::new(ConfigVersions::Version).big_integer().not_null())
                    .col(ColumnDef::new(ConfigVersions::Name).string_len(128).not_null())
                    .col(ColumnDef::new(ConfigVersions::Description).text().not_null())
                    .col(ColumnDef::new(ConfigVersions::Path).string_len(1024).null())
                    .col(ColumnDef::new(ConfigVersions::Payload).json().not_null())
                    .col(ColumnDef::new(ConfigVersions::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(ConfigVersions::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(ConfigVersions::ConfigId).col(ConfigVersions::Version))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_config_versions_config")
                            .from(ConfigVersions::Table, ConfigVersions::ConfigId)
                            .to(Configs::Table, Configs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [ConfigVersions::Table.into_iden(), Configs::Table.into_iden()] {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
