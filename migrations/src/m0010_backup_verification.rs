//! Restore verification on the backup journal: the table statistics a backup recorded in its
//! dump's snapshot, and the outcome of the latest verification (status, first mismatch, when, and
//! the measured restore time, the plan's RTO evidence). One column per `ALTER` (SQLite's rule).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum BackupJournal {
    Table,
    TableStats,
    Verification,
    VerificationMessage,
    VerifiedAt,
    RtoSeconds,
}

fn columns() -> [(BackupJournal, ColumnDef); 5] {
    use BackupJournal::*;
    [
        (TableStats, ColumnDef::new(TableStats).json().null().to_owned()),
        (Verification, ColumnDef::new(Verification).string().null().to_owned()),
        (VerificationMessage, ColumnDef::new(VerificationMessage).text().null().to_owned()),
        (VerifiedAt, ColumnDef::new(VerifiedAt).timestamp_with_time_zone().null().to_owned()),
        (RtoSeconds, ColumnDef::new(RtoSeconds).double().null().to_owned()),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (_, mut column) in columns() {
            manager.alter_table(Table::alter().table(BackupJournal::Table).add_column(&mut column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in columns() {
            manager.alter_table(Table::alter().table(BackupJournal::Table).drop_column(name).to_owned()).await?;
        }
        Ok(())
    }
}
