//! Alerts and incidents: each organization's monitoring settings (thresholds, grouping), alerts
//! (one per thing that went wrong, firing until resolved), incidents (the alerts of one target or
//! machine grouped, with a lifecycle) and their timeline; on targets, the alert state, the open
//! alert and the bits of the recent results that flap detection reads.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MonitorSettings {
    Table,
    OrgId,
    NotificationEmail,
    HeartbeatThresholdMinutes,
    ConsecutiveFailuresThreshold,
    ConsecutiveSuccessesThreshold,
    AlertGroupingEnabled,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MonitorIncidents {
    Table,
    Id,
    OrgId,
    GroupKey,
    Title,
    Severity,
    State,
    Flapping,
    OpenedAt,
    AcknowledgedAt,
    AcknowledgedBy,
    ResolvedAt,
    ResolvedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MonitorAlerts {
    Table,
    Id,
    OrgId,
    IncidentId,
    SourceKind,
    SourceId,
    Rule,
    Severity,
    State,
    Flapping,
    Message,
    OpenedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum MonitorIncidentEvents {
    Table,
    Id,
    IncidentId,
    At,
    Kind,
    Actor,
    Text,
}

#[derive(DeriveIden, Clone, Copy)]
enum MonitorTargets {
    Table,
    AlertState,
    RecentResults,
    OpenAlertId,
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

fn target_columns() -> [(MonitorTargets, ColumnDef); 3] {
    use MonitorTargets::*;
    [
        (AlertState, ColumnDef::new(AlertState).string_len(16).not_null().default("ok").to_owned()),
        (RecentResults, ColumnDef::new(RecentResults).big_integer().not_null().default(0).to_owned()),
        (OpenAlertId, ColumnDef::new(OpenAlertId).uuid().null().to_owned()),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MonitorSettings as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(S::OrgId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(S::NotificationEmail).string_len(254).null())
                    .col(ColumnDef::new(S::HeartbeatThresholdMinutes).integer().not_null())
                    .col(ColumnDef::new(S::ConsecutiveFailuresThreshold).integer().not_null())
                    .col(ColumnDef::new(S::ConsecutiveSuccessesThreshold).integer().not_null())
                    .col(ColumnDef::new(S::AlertGroupingEnabled).boolean().not_null())
                    .col(ColumnDef::new(S::UpdatedBy).string_len(256).null())
                    .col(ColumnDef::new(S::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_key(S::Table, S::OrgId, "fk_monitor_settings_org"))
                    .to_owned(),
            )
            .await?;

        use MonitorIncidents as I;
        manager
            .create_table(
                Table::create()
                    .table(I::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(I::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(I::OrgId).uuid().not_null())
                    // `target:<id>` or `machine:<id>` when alerts are grouped; the alert's id otherwise.
                    .col(ColumnDef::new(I::GroupKey).string_len(128).not_null())
                    .col(ColumnDef::new(I::Title).text().not_null())
                    .col(ColumnDef::new(I::Severity).string_len(16).not_null())
                    .col(ColumnDef::new(I::State).string_len(16).not_null())
                    .col(ColumnDef::new(I::Flapping).boolean().not_null())
                    .col(ColumnDef::new(I::OpenedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(I::AcknowledgedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(I::AcknowledgedBy).string_len(256).null())
                    .col(ColumnDef::new(I::ResolvedAt).timestamp_with_time_zone().null())
                    // Null when it resolved by itself (its alerts recovered).
                    .col(ColumnDef::new(I::ResolvedBy).string_len(256).null())
                    .col(ColumnDef::new(I::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut org_key(I::Table, I::OrgId, "fk_monitor_incidents_org"))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_monitor_incidents_org_state", vec![I::OrgId, I::State, I::Id]),
            ("ix_monitor_incidents_group", vec![I::OrgId, I::GroupKey, I::State]),
        ] {
            let mut index = Index::create().name(name).table(I::Table).to_owned();
            for c in cols {
                index.col(c);
            }
            manager.create_index(index).await?;
        }

        use MonitorAlerts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(A::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(A::OrgId).uuid().not_null())
                    .col(ColumnDef::new(A::IncidentId).uuid().not_null())
                    // `target`, `machine`, `metric`, `heartbeat`.
                    .col(ColumnDef::new(A::SourceKind).string_len(16).not_null())
                    .col(ColumnDef::new(A::SourceId).uuid().not_null())
                    // What went wrong: `http_down`, `http_flapping`, …
                    .col(ColumnDef::new(A::Rule).string_len(32).not_null())
                    .col(ColumnDef::new(A::Severity).string_len(16).not_null())
                    // `firing` or `resolved`.
                    .col(ColumnDef::new(A::State).string_len(16).not_null())
                    .col(ColumnDef::new(A::Flapping).boolean().not_null())
                    .col(ColumnDef::new(A::Message).text().null())
                    .col(ColumnDef::new(A::OpenedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(A::ResolvedAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut org_key(A::Table, A::OrgId, "fk_monitor_alerts_org"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_alerts_incident")
                            .from(A::Table, A::IncidentId)
                            .to(I::Table, I::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_monitor_alerts_org_state", vec![A::OrgId, A::State, A::Id]),
            ("ix_monitor_alerts_incident", vec![A::IncidentId]),
            ("ix_monitor_alerts_source", vec![A::SourceId, A::State]),
        ] {
            let mut index = Index::create().name(name).table(A::Table).to_owned();
            for c in cols {
                index.col(c);
            }
            manager.create_index(index).await?;
        }

        use MonitorIncidentEvents as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(E::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(E::IncidentId).uuid().not_null())
                    .col(ColumnDef::new(E::At).timestamp_with_time_zone().not_null())
                    // opened, alert_added, flapping, settled, alert_resolved, acknowledged, note, resolved.
                    .col(ColumnDef::new(E::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(E::Actor).string_len(256).null())
                    .col(ColumnDef::new(E::Text).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_incident_events_incident")
                            .from(E::Table, E::IncidentId)
                            .to(I::Table, I::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_monitor_incident_events")
                    .table(E::Table)
                    .col(E::IncidentId)
                    .col(E::Id)
                    .to_owned(),
            )
            .await?;
        for (_, mut column) in target_columns() {
            manager.alter_table(Table::alter().table(MonitorTargets::Table).add_column(&mut column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in target_columns() {
            manager.alter_table(Table::alter().table(MonitorTargets::Table).drop_column(name).to_owned()).await?;
        }
        for table in [
            MonitorIncidentEvents::Table.into_iden(),
            MonitorAlerts::Table.into_iden(),
            MonitorIncidents::Table.into_iden(),
            MonitorSettings::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
