//! Fewer index entries per job write. Every start and outcome changes `state`, so PostgreSQL adds an
//! entry to every index of `jobs` each time; this drops the ones a running job does not need:
//! - `idx_jobs_org_id` is covered by `ix_jobs_org_state_finished` (same leading column);
//! - the outbox scan only reads unpublished rows, so its index holds only those;
//! - retention reads finished rows only, so its index holds only those;
//! - on PostgreSQL, the foreign key from `job_events` to `jobs` goes (every event insert ran a
//!   trigger that looked the job up and locked it). Events are only ever inserted from the row their
//!   write just updated, and retention deletes a job's events with it (`JobStore` does both).
//!   SQLite keeps it: there the check is a primary-key probe and dropping it means rebuilding the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "DROP INDEX IF EXISTS idx_jobs_org_id",
    "DROP INDEX IF EXISTS idx_jobs_published_updated",
    "CREATE INDEX IF NOT EXISTS idx_jobs_unpublished ON jobs (updated_at) WHERE published = false",
    "DROP INDEX IF EXISTS idx_jobs_finished_at",
    "CREATE INDEX IF NOT EXISTS idx_jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS idx_jobs_finished",
    "CREATE INDEX IF NOT EXISTS idx_jobs_finished_at ON jobs (finished_at)",
    "DROP INDEX IF EXISTS idx_jobs_unpublished",
    "CREATE INDEX IF NOT EXISTS idx_jobs_published_updated ON jobs (published, updated_at)",
    "CREATE INDEX IF NOT EXISTS idx_jobs_org_id ON jobs (org_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for sql in UP {
            conn.execute_unprepared(sql).await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared("ALTER TABLE job_events DROP CONSTRAINT IF EXISTS fk_job_events_job").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(
                "DELETE FROM job_events e WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)",
            )
            .await?;
            conn.execute_unprepared(
                "ALTER TABLE job_events ADD CONSTRAINT fk_job_events_job FOREIGN KEY (job_id) \
                 REFERENCES jobs (id) ON DELETE CASCADE",
            )
            .await?;
        }
        for sql in DOWN {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
