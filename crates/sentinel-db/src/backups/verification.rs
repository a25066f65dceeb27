//! The journal's verification columns: the table statistics a backup recorded in its dump's
//! snapshot, the latest verification's outcome and measured restore time, and the counts a plan's
//! verification policy and its objectives read.

use chrono::{SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use sentinel_domain::backups::verification::DatabaseStats;
use sentinel_domain::backups::{JournalKind, JournalStatus, Verification};
use uuid::Uuid;

use super::{BackupStore, JournalRecord, json};
use crate::DbError;
use crate::entity::backup_journal;

/// What a verification found.
#[derive(Debug, Clone)]
pub struct VerificationOutcome {
    pub verification: Verification,
    pub message: Option<String>,
    /// The restore's duration, when the restore ran to its end.
    pub rto_seconds: Option<f64>,
}

impl BackupStore {
    /// Records the statistics taken so far in the dump's snapshot (each database as it is dumped).
    pub async fn set_table_stats(&self, id: Uuid, stats: &DatabaseStats) -> Result<(), DbError> {
        backup_journal::Entity::update_many()
            .col_expr(backup_journal::Column::TableStats, Expr::value(json(stats)?))
            .filter(backup_journal::Column::Id.eq(id))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    /// Records a verification of a backup entry (the latest one wins); `verified` follows it, so
    /// retention keeps the newest verified backup.
    pub async fn record_verification(&self, id: Uuid, outcome: &VerificationOutcome) -> Result<bool, DbError> {
        let res = backup_journal::Entity::update_many()
            .col_expr(backup_journal::Column::Verification, Expr::value(outcome.verification.as_str()))
            .col_expr(backup_journal::Column::VerificationMessage, Expr::value(outcome.message.clone()))
            .col_expr(backup_journal::Column::VerifiedAt, Expr::value(Utc::now().trunc_subsecs(6)))
            .col_expr(backup_journal::Column::RtoSeconds, Expr::value(outcome.rto_seconds))
            .col_expr(backup_journal::Column::Verified, Expr::value(outcome.verification == Verification::Verified))
            .filter(backup_journal::Column::Id.eq(id))
            .filter(backup_journal::Column::Kind.eq(JournalKind::Backup.as_str()))
            .exec(&self.conn)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// The newest verified backup of a plan (whether its artifact still exists or not).
    pub async fn newest_verified_of_plan(&self, plan: Uuid) -> Result<Option<JournalRecord>, DbError> {
        backup_journal::Entity::find()
            .filter(backup_journal::Column::PlanId.eq(plan))
            .filter(backup_journal::Column::Kind.eq(JournalKind::Backup.as_str()))
            .filter(backup_journal::Column::Verified.eq(true))
            .order_by_desc(backup_journal::Column::StartedAt)
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// How many succeeded backups of a plan started after its newest verified one (all of them
    /// when none is verified): what an "every Nth backup" policy counts.
    pub async fn unverified_successes(&self, plan: Uuid) -> Result<u64, DbError> {
        let mut q = backup_journal::Entity::find()
            .filter(backup_journal::Column::PlanId.eq(plan))
            .filter(backup_journal::Column::Kind.eq(JournalKind::Backup.as_str()))
            .filter(backup_journal::Column::Status.eq(JournalStatus::Succeeded.as_str()))
            .filter(backup_journal::Column::Verified.eq(false));
        if let Some(v) = self.newest_verified_of_plan(plan).await? {
            q = q.filter(backup_journal::Column::StartedAt.gt(v.started_at));
        }
        Ok(q.count(&self.conn).await?)
    }
}
