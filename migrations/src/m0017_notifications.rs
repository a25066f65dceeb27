//! Notifications: channels (their credential sealed in the secret store), each organization's
//! routing policy, silences and maintenance windows, the notification groups with their timers, and
//! the outbox — one row per (group notification, channel) with its idempotency key, lease, attempts
//! and outcome, which is also the notification log. Alerts gain the labels routing matches on, and
//! incidents the job that suppresses their pages.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MonitorAlerts {
    Table,
    Labels,
}

#[derive(DeriveIden)]
enum MonitorIncidents {
    Table,
    SuppressedBy,
}

#[derive(DeriveIden)]
enum NotifyChannels {
    Table,
    Id,
    OrgId,
    Name,
    Kind,
    Config,
    SecretId,
    IsActive,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NotifyPolicies {
    Table,
    OrgId,
    Policy,
    EvaluatedAt,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NotifyMutes {
    Table,
    Id,
    OrgId,
    Kind,
    Name,
    Matchers,
    Schedule,
    EndsAt,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotifyGroups {
    Table,
    Id,
    OrgId,
    GroupKey,
    GroupLabels,
    Channels,
    Notified,
    Seq,
    NextFlushAt,
    LastNotifiedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NotifyOutbox {
    Table,
    Id,
    OrgId,
    GroupId,
    Seq,
    ChannelId,
    IdempotencyKey,
    Status,
    IncidentId,
    Payload,
    State,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    LeaseUntil,
    LastError,
    LastStatus,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

fn org_fk(name: &str, table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
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
        let mut labels = ColumnDef::new(MonitorAlerts::Labels).json().null().to_owned();
        manager.alter_table(Table::alter().table(MonitorAlerts::Table).add_column(&mut labels).to_owned()).await?;
        let mut suppressed = ColumnDef::new(MonitorIncidents::SuppressedBy).string_len(128).null().to_owned();
        manager
            .alter_table(Table::alter().table(MonitorIncidents::Table).add_column(&mut suppressed).to_owned())
            .await?;

        use NotifyChannels as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(C::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(C::OrgId).uuid().not_null())
                    .col(ColumnDef::new(C::Name).string_len(100).not_null())
                    .col(ColumnDef::new(C::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(C::Config).json().not_null())
                    .col(ColumnDef::new(C::SecretId).uuid().null())
                    .col(ColumnDef::new(C::IsActive).boolean().not_null())
                    .col(ColumnDef::new(C::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(C::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(C::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_notify_channels_org", C::Table, C::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_notify_channels_name")
                    .table(C::Table)
                    .col(C::OrgId)
                    .col(C::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        use NotifyPolicies as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(P::OrgId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(P::Policy).json().null())
                    .col(ColumnDef::new(P::EvaluatedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(P::UpdatedBy).string_len(256).null())
                    .col(ColumnDef::new(P::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_notify_policies_org", P::Table, P::OrgId))
                    .to_owned(),
            )
            .await?;

        use NotifyMutes as M;
        manager
            .create_table(
                Table::create()
                    .table(M::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(M::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(M::OrgId).uuid().not_null())
                    // silence or maintenance.
                    .col(ColumnDef::new(M::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(M::Name).text().not_null())
                    .col(ColumnDef::new(M::Matchers).json().not_null())
                    .col(ColumnDef::new(M::Schedule).json().not_null())
                    // One-off mutes: when they end (recurring windows: null).
                    .col(ColumnDef::new(M::EndsAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(M::CreatedBy).string_len(256).null())
                    .col(ColumnDef::new(M::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_notify_mutes_org", M::Table, M::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_notify_mutes_org")
                    .table(M::Table)
                    .col(M::OrgId)
                    .col(M::Kind)
                    .col(M::Id)
                    .to_owned(),
            )
            .await?;

        use NotifyGroups as G;
        manager
            .create_table(
                Table::create()
                    .table(G::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(G::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(G::OrgId).uuid().not_null())
                    .col(ColumnDef::new(G::GroupKey).string_len(1024).not_null())
                    .col(ColumnDef::new(G::GroupLabels).json().not_null())
                    // The channels of its last notification: a "resolved" goes where "firing" went.
                    .col(ColumnDef::new(G::Channels).json().not_null())
                    // The alerts last notified as firing.
                    .col(ColumnDef::new(G::Notified).json().not_null())
                    .col(ColumnDef::new(G::Seq).big_integer().not_null())
                    .col(ColumnDef::new(G::NextFlushAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(G::LastNotifiedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(G::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(G::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_fk("fk_notify_groups_org", G::Table, G::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_notify_groups_key")
                    .table(G::Table)
                    .col(G::OrgId)
                    .col(G::GroupKey)
                    .unique()
                    .to_owned(),
            )
            .await?;

        use NotifyOutbox as O;
        manager
            .create_table(
                Table::create()
                    .table(O::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(O::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(O::OrgId).uuid().not_null())
                    // Null for a channel test.
                    .col(ColumnDef::new(O::GroupId).uuid().null())
                    .col(ColumnDef::new(O::Seq).big_integer().not_null())
                    .col(ColumnDef::new(O::ChannelId).uuid().not_null())
                    .col(ColumnDef::new(O::IdempotencyKey).string_len(128).not_null())
                    // firing, resolved, repeat or test.
                    .col(ColumnDef::new(O::Status).string_len(16).not_null())
                    .col(ColumnDef::new(O::IncidentId).uuid().null())
                    .col(ColumnDef::new(O::Payload).json().not_null())
                    // pending, delivered or failed (gave up).
                    .col(ColumnDef::new(O::State).string_len(16).not_null())
                    .col(ColumnDef::new(O::Attempts).integer().not_null())
                    .col(ColumnDef::new(O::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(O::LeaseOwner).string_len(128).null())
                    .col(ColumnDef::new(O::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(O::LastError).text().null())
                    .col(ColumnDef::new(O::LastStatus).integer().null())
                    .col(ColumnDef::new(O::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(O::DeliveredAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut org_fk("fk_notify_outbox_org", O::Table, O::OrgId))
                    .to_owned(),
            )
            .await?;
        for (name, cols, unique) in [
            ("ux_notify_outbox_key", vec![O::IdempotencyKey], true),
            ("ix_notify_outbox_due", vec![O::State, O::NextAttemptAt], false),
            ("ix_notify_outbox_org", vec![O::OrgId, O::Id], false),
            ("ix_notify_outbox_order", vec![O::GroupId, O::ChannelId, O::Seq], false),
        ] {
            let mut index = Index::create().name(name).table(O::Table).to_owned();
            for c in cols {
                index.col(c);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NotifyOutbox::Table.into_iden(),
            NotifyGroups::Table.into_iden(),
            NotifyMutes::Table.into_iden(),
            NotifyPolicies::Table.into_iden(),
            NotifyChannels::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter().table(MonitorIncidents::Table).drop_column(MonitorIncidents::SuppressedBy).to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(MonitorAlerts::Table).drop_column(MonitorAlerts::Labels).to_owned())
            .await
    }
}
