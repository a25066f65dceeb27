//! The job spine: the `jobs` table and its per-job event log.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Kind,
    Queue,
    Priority,
    Payload,
    State,
    Attempt,
    MaxAttempts,
    BackoffBaseMs,
    BackoffMaxMs,
    Epoch,
    ProgressStep,
    ProgressTotal,
    ProgressInfo,
    Result,
    Error,
    TraceContext,
    RequestedBy,
    EventSeq,
    CancelRequested,
    Published,
    RunAt,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobEvents {
    Table,
    Id,
    JobId,
    Seq,
    EventType,
    Data,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Jobs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Jobs::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(Jobs::Queue).string_len(48).not_null())
                    .col(ColumnDef::new(Jobs::Priority).string_len(8).not_null())
                    .col(ColumnDef::new(Jobs::Payload).json().not_null())
                    .col(ColumnDef::new(Jobs::State).string_len(16).not_null())
                    .col(ColumnDef::new(Jobs::Attempt).integer().not_null())
                    .col(ColumnDef::new(Jobs::MaxAttempts).integer().not_null())
                    .col(ColumnDef::new(Jobs::BackoffBaseMs).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::BackoffMaxMs).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::Epoch).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::ProgressStep).big_integer().null())
                    .col(ColumnDef::new(Jobs::ProgressTotal).big_integer().null())
                    .col(ColumnDef::new(Jobs::ProgressInfo).text().null())
                    .col(ColumnDef::new(Jobs::Result).json().null())
                    .col(ColumnDef::new(Jobs::Error).text().null())
                    .col(ColumnDef::new(Jobs::TraceContext).json().null())
                    .col(ColumnDef::new(Jobs::RequestedBy).string_len(128).null())
                    .col(ColumnDef::new(Jobs::EventSeq).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::CancelRequested).boolean().not_null())
                    .col(ColumnDef::new(Jobs::Published).boolean().not_null())
                    .col(ColumnDef::new(Jobs::RunAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Jobs::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Jobs::StartedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Jobs::FinishedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Jobs::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        // The outbox relay scans unpublished rows; a partial index would be ideal but is not portable.
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_published_updated")
                    .table(Jobs::Table)
                    .col(Jobs::Published)
                    .col(Jobs::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_state_kind")
                    .table(Jobs::Table)
                    .col(Jobs::State)
                    .col(Jobs::Kind)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_jobs_finished_at").table(Jobs::Table).col(Jobs::FinishedAt).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobEvents::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(JobEvents::Id).big_integer().not_null().primary_key().auto_increment())
                    .col(ColumnDef::new(JobEvents::JobId).uuid().not_null())
                    .col(ColumnDef::new(JobEvents::Seq).big_integer().not_null())
                    .col(ColumnDef::new(JobEvents::EventType).string_len(32).not_null())
                    .col(ColumnDef::new(JobEvents::Data).json().not_null())
                    .col(ColumnDef::new(JobEvents::At).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_job_events_job")
                            .from(JobEvents::Table, JobEvents::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_job_events_job_seq")
                    .table(JobEvents::Table)
                    .col(JobEvents::JobId)
                    .col(JobEvents::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(JobEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Jobs::Table).to_owned()).await
    }
}
