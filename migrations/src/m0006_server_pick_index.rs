//! Reservations pick the first available server of an organization in id order: an index on
//! `(org_id, status, id)` lets that be one short index walk instead of a sort of every available row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Servers {
    Table,
    OrgId,
    Status,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_servers_org_status_id")
                    .table(Servers::Table)
                    .col(Servers::OrgId)
                    .col(Servers::Status)
                    .col(Servers::Id)
                    .to_owned(),
            )
            .await?;
        // The new index covers every lookup the old one served.
        manager.drop_index(Index::drop().name("idx_servers_org_status").table(Servers::Table).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_servers_org_status")
                    .table(Servers::Table)
                    .col(Servers::OrgId)
                    .col(Servers::Status)
                    .to_owned(),
            )
            .await?;
        manager.drop_index(Index::drop().name("idx_servers_org_status_id").table(Servers::Table).to_owned()).await
    }
}
