//! The inventory: the secret store (every credential Sentinel holds, sealed), SSH credentials, servers
//! with their one lease (a reservation or a run), and each server's history of actions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Secrets {
    Table,
    Id,
    OrgId,
    Owner,
    KeyId,
    Sealed,
    CreatedAt,
    SealedAt,
}

#[derive(DeriveIden)]
enum SshCredentials {
    Table,
    Id,
    OrgId,
    Name,
    KeyType,
    PublicKey,
    Fingerprint,
    SecretId,
    IsDefault,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Servers {
    Table,
    Id,
    OrgId,
    ProviderRef,
    Name,
    Ip,
    SshPort,
    SshUser,
    Region,
    Labels,
    LabelIndex,
    Notes,
    Status,
    LastActionAt,
    HostKeys,
    AcceptNewHostKey,
    SshCredentialId,
    LeaseId,
    LeaseKind,
    LeaseHolder,
    LeasePurpose,
    LeaseJobId,
    LeaseExpiresAt,
    StatusBeforeLease,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ServerHistory {
    Table,
    Id,
    ServerId,
    OrgId,
    At,
    Actor,
    Action,
    Before,
    After,
    JobId,
    Detail,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

fn org_fk(name: &str, table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(Organizations::Table, Organizations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index<const N: usize>(name: &str, table: impl IntoIden, cols: [DynIden; N]) -> IndexCreateStatement {
    let mut idx = Index::create().name(name).table(table).to_owned();
    for col in cols {
        idx.col(col);
    }
    idx
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Secrets::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Secrets::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Secrets::OrgId).uuid().null())
                    // What the secret belongs to (`ssh_credential:<id>`, `config:<id>`), for audits and cleanup.
                    .col(ColumnDef::new(Secrets::Owner).string_len(256).not_null())
                    // Which master key sealed it (rotation re-seals every row whose key is retired).
                    .col(ColumnDef::new(Secrets::KeyId).string_len(32).not_null())
                    .col(ColumnDef::new(Secrets::Sealed).text().not_null())
                    .col(ColumnDef::new(Secrets::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Secrets::SealedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_secrets_org", Secrets::Table, Secrets::OrgId))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_secrets_key_id", Secrets::Table, [Secrets::KeyId.into_iden()])).await?;
        manager.create_index(index("idx_secrets_owner", Secrets::Table, [Secrets::Owner.into_iden()])).await?;
        manager
            .create_table(
                Table::create()
                    .table(SshCredentials::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SshCredentials::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(SshCredentials::OrgId).uuid().not_null())
                    .col(ColumnDef::new(SshCredentials::Name).string_len(128).not_null())
                    .col(ColumnDef::new(SshCredentials::KeyType).string_len(64).not_null())
                    .col(ColumnDef::new(SshCredentials::PublicKey).text().not_null())
                    .col(ColumnDef::new(SshCredentials::Fingerprint).string_len(128).not_null())
                    .col(ColumnDef::new(SshCredentials::SecretId).uuid().not_null())
                    .col(ColumnDef::new(SshCredentials::IsDefault).boolean().not_null())
                    .col(ColumnDef::new(SshCredentials::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(SshCredentials::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SshCredentials::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_ssh_credentials_org", SshCredentials::Table, SshCredentials::OrgId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_ssh_credentials_secret")
                            .from(SshCredentials::Table, SshCredentials::SecretId)
                            .to(Secrets::Table, Secrets::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "idx_ssh_credentials_org_name",
                    SshCredentials::Table,
                    [SshCredentials::OrgId.into_iden(), SshCredentials::Name.into_iden()],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Servers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Servers::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Servers::OrgId).uuid().not_null())
                    .col(ColumnDef::new(Servers::ProviderRef).string_len(128).not_null())
                    .col(ColumnDef::new(Servers::Name).string_len(128).not_null())
                    .col(ColumnDef::new(Servers::Ip).string_len(45).not_null())
                    .col(ColumnDef::new(Servers::SshPort).integer().not_null())
                    .col(ColumnDef::new(Servers::SshUser).string_len(32).not_null())
                    .col(ColumnDef::new(Servers::Region).string_len(64).not_null())
                    .col(ColumnDef::new(Servers::Labels).json().not_null())
                    // `,k=v,k=v,`: what label selectors match with LIKE (see sentinel_domain::inventory).
                    .col(ColumnDef::new(Servers::LabelIndex).text().not_null())
                    .col(ColumnDef::new(Servers::Notes).text().not_null())
                    .col(ColumnDef::new(Servers::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Servers::LastActionAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Servers::HostKeys).json().not_null())
                    .col(ColumnDef::new(Servers::AcceptNewHostKey).boolean().not_null())
                    .col(ColumnDef::new(Servers::SshCredentialId).uuid().null())
                    // The one lease a server can have: a reservation or a provisioning run.
                    .col(ColumnDef::new(Servers::LeaseId).uuid().null())
                    .col(ColumnDef::new(Servers::LeaseKind).string_len(16).null())
                    .col(ColumnDef::new(Servers::LeaseHolder).string_len(256).null())
                    .col(ColumnDef::new(Servers::LeasePurpose).string_len(256).null())
                    .col(ColumnDef::new(Servers::LeaseJobId).uuid().null())
                    .col(ColumnDef::new(Servers::LeaseExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Servers::StatusBeforeLease).string_len(16).null())
                    .col(ColumnDef::new(Servers::Version).big_integer().not_null())
                    .col(ColumnDef::new(Servers::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Servers::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_servers_org", Servers::Table, Servers::OrgId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_servers_ssh_credential")
                            .from(Servers::Table, Servers::SshCredentialId)
                            .to(SshCredentials::Table, SshCredentials::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // Imports match rows on the provider's id.
        manager
            .create_index(
                index(
                    "idx_servers_org_provider_ref",
                    Servers::Table,
                    [Servers::OrgId.into_iden(), Servers::ProviderRef.into_iden()],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        // Reservations pick among the available servers of an organization.
        manager
            .create_index(index(
                "idx_servers_org_status",
                Servers::Table,
                [Servers::OrgId.into_iden(), Servers::Status.into_iden()],
            ))
            .await?;
        // The expiry sweep finds lapsed leases.
        manager
            .create_index(index("idx_servers_lease_expires", Servers::Table, [Servers::LeaseExpiresAt.into_iden()]))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServerHistory::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ServerHistory::Id).big_integer().not_null().primary_key().auto_increment())
                    .col(ColumnDef::new(ServerHistory::ServerId).uuid().not_null())
                    .col(ColumnDef::new(ServerHistory::OrgId).uuid().not_null())
                    .col(ColumnDef::new(ServerHistory::At).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ServerHistory::Actor).string_len(256).not_null())
                    .col(ColumnDef::new(ServerHistory::Action).string_len(32).not_null())
                    .col(ColumnDef::new(ServerHistory::Before).json().null())
                    .col(ColumnDef::new(ServerHistory::After).json().null())
                    .col(ColumnDef::new(ServerHistory::JobId).uuid().null())
                    .col(ColumnDef::new(ServerHistory::Detail).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_server_history_server")
                            .from(ServerHistory::Table, ServerHistory::ServerId)
                            .to(Servers::Table, Servers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_server_history_server",
                ServerHistory::Table,
                [ServerHistory::ServerId.into_iden(), ServerHistory::Id.into_iden()],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            ServerHistory::Table.into_iden(),
            Servers::Table.into_iden(),
            SshCredentials::Table.into_iden(),
            Secrets::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
