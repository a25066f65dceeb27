//! The backup journal: one row per backup or restore attempt — what ran, how it ended, where the
//! artifact went and its checksums. Rows change only forward (`JournalStatus::can_become`) and are
//! never deleted by retention (a pruned backup keeps its row, marked `pruned`).

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sentinel_domain::backups::verification::DatabaseStats;
use sentinel_domain::backups::{BackupType, Copy, JournalKind, JournalStatus, Snapshot, Verification};
use serde_json::Value;
use uuid::Uuid;

use super::{BackupStore, json};
use crate::DbError;
use crate::entity::backup_journal;

/// One journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub kind: JournalKind,
    pub plan_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub attempt: u32,
    pub status: JournalStatus,
    pub backup_type: Option<BackupType>,
    pub compression: Option<String>,
    pub encryption: Option<String>,
    /// The vault secret that opens the artifact (the plan's identity or passphrase at the time).
    pub key_secret_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub plain_bytes: Option<u64>,
    pub stored_bytes: Option<u64>,
    pub plain_sha256: Option<String>,
    pub stored_sha256: Option<String>,
    pub tool_version: Option<String>,
    pub server_version: Option<String>,
    pub copies: Vec<Copy>,
    pub source: Option<Value>,
    pub verified: bool,
    pub message: Option<String>,
    pub requested_by: Option<String>,
    /// Per database, the tables' statistics recorded in the dump's snapshot (empty: none recorded).
    pub table_stats: DatabaseStats,
    /// The latest verification's outcome (`not_verified` until one ran).
    pub verification: Verification,
    /// The first mismatching table, or why the verification could not run.
    pub verification_message: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    /// How long the verification's restore took: the plan's measured RTO.
    pub rto_seconds: Option<f64>,
}

impl JournalRecord {
    /// Seconds from start to end, once ended.
    pub fn duration_secs(&self) -> Option<f64> {
        self.finished_at.map(|end| (end - self.started_at).num_milliseconds() as f64 / 1000.0)
    }

    /// What retention judges this backup by (the worker's prune and the API's dry run alike).
    pub fn snapshot(&self) -> Snapshot {
        // No backup type Sentinel takes yet depends on an earlier one.
        Snapshot {
            id: self.id,
            started_at: self.started_at,
            status: self.status,
            verified: self.verified,
            based_on: None,
        }
    }
}

impl TryFrom<backup_journal::Model> for JournalRecord {
    type Error = DbError;
    fn try_from(m: backup_journal::Model) -> Result<Self, DbError> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("backup journal {}: {what}: {e}", m.id));
        let bytes = |v: Option<i64>| v.map(|b| b.max(0) as u64);
        Ok(Self {
            kind: JournalKind::parse(&m.kind).map_err(|e| corrupt("kind", &e))?,
            status: JournalStatus::parse(&m.status).map_err(|e| corrupt("status", &e))?,
            backup_type: m
                .backup_type
                .as_deref()
                .map(BackupType::parse)
                .transpose()
                .map_err(|e| corrupt("type", &e))?,
            copies: serde_json::from_value(m.copies.clone()).map_err(|e| corrupt("copies", &e))?,
            table_stats: match &m.table_stats {
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| corrupt("table_stats", &e))?,
                None => DatabaseStats::new(),
            },
            verification: match m.verification.as_deref() {
                Some(v) => Verification::parse(v).map_err(|e| corrupt("verification", &e))?,
                None => Verification::NotVerified,
            },
            verification_message: m.verification_message,
            verified_at: m.verified_at,
            rto_seconds: m.rto_seconds,
            id: m.id,
            org_id: m.org_id,
            plan_id: m.plan_id,
            target_id: m.target_id,
            job_id: m.job_id,
            attempt: m.attempt.max(0) as u32,
            compression: m.compression,
            encryption: m.encryption,
            key_secret_id: m.key_secret_id,
            started_at: m.started_at,
            finished_at: m.finished_at,
            plain_bytes: bytes(m.plain_bytes),
            stored_bytes: bytes(m.stored_bytes),
            plain_sha256: m.plain_sha256,
            stored_sha256: m.stored_sha256,
            tool_version: m.tool_version,
            server_version: m.server_version,
            source: m.source,
            verified: m.verified,
            message: m.message,
            requested_by: m.requested_by,
        })
    }
}

/// A journal entry as an attempt opens it (`running`).
#[derive(Debug, Clone, Default)]
pub struct NewJournal {
    pub org_id: Uuid,
    pub kind: Option<JournalKind>,
    pub plan_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub attempt: u32,
    pub backup_type: Option<BackupType>,
    pub compression: Option<String>,
    pub encryption: Option<String>,
    pub key_secret_id: Option<Uuid>,
    pub copies: Vec<Copy>,
    pub source: Option<Value>,
    pub requested_by: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct JournalFinish {
    pub status: JournalStatus,
    pub plain_bytes: Option<u64>,
    pub stored_bytes: Option<u64>,
    pub plain_sha256: Option<String>,
    pub stored_sha256: Option<String>,
    pub tool_version: Option<String>,
    pub server_version: Option<String>,
    pub copies: Vec<Copy>,
    pub verified: bool,
    pub message: Option<String>,
}

impl JournalFinish {
    /// An ending with nothing but a status and a message (a failure before any byte moved).
    pub fn bare(status: JournalStatus, copies: Vec<Copy>, message: impl Into<String>) -> Self {
        Self {
            status,
            plain_bytes: None,
            stored_bytes: None,
            plain_sha256: None,
            stored_sha256: None,
            tool_version: None,
            server_version: None,
            copies,
            verified: false,
            message: Some(message.into()),
        }
    }
}

/// What a journal listing selects (every field optional).
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    pub plan_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub status: Option<JournalStatus>,
    pub kind: Option<JournalKind>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The statuses whose artifacts exist.
fn holding_artifacts() -> Vec<&'static str> {
    JournalStatus::ALL.iter().filter(|s| s.holds_artifact()).map(|s| s.as_str()).collect()
}

fn bytes(v: Option<u64>) -> Option<i64> {
    v.map(|b| i64::try_from(b).unwrap_or(i64::MAX))
}

impl BackupStore {
    /// Opens a `running` entry.
    pub async fn open_journal(&self, new: NewJournal) -> Result<JournalRecord, DbError> {
        let kind = new.kind.unwrap_or(JournalKind::Backup);
        backup_journal::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(new.org_id),
            kind: Set(kind.as_str().to_owned()),
            plan_id: Set(new.plan_id),
            target_id: Set(new.target_id),
            job_id: Set(new.job_id),
            attempt: Set(i32::try_from(new.attempt).unwrap_or(i32::MAX)),
            status: Set(JournalStatus::Running.as_str().to_owned()),
            backup_type: Set(new.backup_type.map(|t| t.as_str().to_owned())),
            compression: Set(new.compression),
            encryption: Set(new.encryption),
            key_secret_id: Set(new.key_secret_id),
            started_at: Set(Utc::now().trunc_subsecs(6)),
            finished_at: Set(None),
            plain_bytes: Set(None),
            stored_bytes: Set(None),
            plain_sha256: Set(None),
            stored_sha256: Set(None),
            tool_version: Set(None),
            server_version: Set(None),
            copies: Set(json(&new.copies)?),
            source: Set(new.source),
            verified: Set(false),
            message: Set(None),
            requested_by: Set(new.requested_by),
            table_stats: Set(None),
            verification: Set(None),
            verification_message: Set(None),
            verified_at: Set(None),
            rto_seconds: Set(None),
        }
        .insert(&self.conn)
        .await?
        .try_into()
    }

    /// Ends a `running` entry. False when it had already ended (its status only moves forward).
    pub async fn finish_journal(&self, id: Uuid, end: JournalFinish) -> Result<bool, DbError> {
        if !JournalStatus::Running.can_become(end.status) {
            return Err(DbError::Conflict(format!("a running journal entry cannot become {}", end.status)));
        }
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let message = end.message.clone();
        let res = backup_journal::Entity::update_many()
            .col_expr(backup_journal::Column::Status, Expr::value(end.status.as_str()))
            .col_expr(backup_journal::Column::FinishedAt, Expr::value(Utc::now().trunc_subsecs(6)))
            .col_expr(backup_journal::Column::PlainBytes, Expr::value(bytes(end.plain_bytes)))
            .col_expr(backup_journal::Column::StoredBytes, Expr::value(bytes(end.stored_bytes)))
            .col_expr(backup_journal::Column::PlainSha256, Expr::value(end.plain_sha256))
            .col_expr(backup_journal::Column::StoredSha256, Expr::value(end.stored_sha256))
            .col_expr(backup_journal::Column::ToolVersion, Expr::value(end.tool_version))
            .col_expr(backup_journal::Column::ServerVersion, Expr::value(end.server_version))
            .col_expr(backup_journal::Column::Copies, Expr::value(json(&end.copies)?))
            .col_expr(backup_journal::Column::Verified, Expr::value(end.verified))
            .col_expr(backup_journal::Column::Message, Expr::value(end.message))
            .filter(backup_journal::Column::Id.eq(id))
            .filter(backup_journal::Column::Status.eq(JournalStatus::Running.as_str()))
            .exec(&txn)
            .await?;
        let ended = res.rows_affected == 1;
        // A backup's outcome raises or resolves its plan's `backup_failed` alert, in this transaction.
        if ended && matches!(end.status, JournalStatus::Failed | JournalStatus::Succeeded) {
            let entry = backup_journal::Entity::find_by_id(id).one(&txn).await?;
            if let Some(e) = entry.filter(|e| e.kind == JournalKind::Backup.as_str())
                && let Some(plan) = e.plan_id
            {
                let failed = end.status == JournalStatus::Failed;
                crate::monitoring::backup_outcome(&txn, plan, failed, message, Utc::now().trunc_subsecs(6)).await?;
            }
        }
        txn.commit().await?;
        Ok(ended)
    }

    /// Records where the copies stand while the attempt runs (so an interrupted one can be cleaned).
    pub async fn set_journal_copies(&self, id: Uuid, copies: &[Copy]) -> Result<(), DbError> {
        backup_journal::Entity::update_many()
            .col_expr(backup_journal::Column::Copies, Expr::value(json(&copies)?))
            .filter(backup_journal::Column::Id.eq(id))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    /// The entries a job's earlier attempts left `running` (their worker died).
    pub async fn running_of_job(&self, job: Uuid) -> Result<Vec<JournalRecord>, DbError> {
        backup_journal::Entity::find()
            .filter(backup_journal::Column::JobId.eq(job))
            .filter(backup_journal::Column::Status.eq(JournalStatus::Running.as_str()))
            .order_by_asc(backup_journal::Column::Id)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// Entries still `running` that started before `cutoff` (the janitor checks whether their job
    /// still runs), oldest first.
    pub async fn running_started_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<JournalRecord>, DbError> {
        backup_journal::Entity::find()
            .filter(backup_journal::Column::Status.eq(JournalStatus::Running.as_str()))
            .filter(backup_journal::Column::StartedAt.lt(cutoff))
            .order_by_asc(backup_journal::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// Marks a backup whose artifacts existed `pruned` (deleted), with the copies as they now stand.
    pub async fn mark_pruned(&self, id: Uuid, copies: &[Copy]) -> Result<bool, DbError> {
        let res = backup_journal::Entity::update_many()
            .col_expr(backup_journal::Column::Status, Expr::value(JournalStatus::Pruned.as_str()))
            .col_expr(backup_journal::Column::Copies, Expr::value(json(&copies)?))
            .filter(backup_journal::Column::Id.eq(id))
            .filter(backup_journal::Column::Status.is_in(holding_artifacts()))
            .exec(&self.conn)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// An entry whatever its organization (the janitor's ownership check: artifact keys name their
    /// entry, and a bucket may be shared by several destinations).
    pub async fn journal_entry_any(&self, id: Uuid) -> Result<Option<JournalRecord>, DbError> {
        backup_journal::Entity::find_by_id(id).one(&self.conn).await?.map(TryInto::try_into).transpose()
    }

    pub async fn journal_entry(&self, org: Uuid, id: Uuid) -> Result<Option<JournalRecord>, DbError> {
        backup_journal::Entity::find_by_id(id)
            .filter(backup_journal::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// A page of the journal, newest first; `before` is the cursor (the last id of the previous page).
    pub async fn journal(
        &self,
        org: Uuid,
        filter: &JournalFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<JournalRecord>, DbError> {
        use backup_journal::Column as C;
        let mut q = backup_journal::Entity::find().filter(C::OrgId.eq(org));
        if let Some(p) = filter.plan_id {
            q = q.filter(C::PlanId.eq(p));
        }
        if let Some(t) = filter.target_id {
            q = q.filter(C::TargetId.eq(t));
        }
        if let Some(s) = filter.status {
            q = q.filter(C::Status.eq(s.as_str()));
        }
        if let Some(k) = filter.kind {
            q = q.filter(C::Kind.eq(k.as_str()));
        }
        if let Some(since) = filter.since {
            q = q.filter(C::StartedAt.gte(since));
        }
        if let Some(until) = filter.until {
            q = q.filter(C::StartedAt.lt(until));
        }
        if let Some(cursor) = before {
            q = q.filter(C::Id.lt(cursor));
        }
        q.order_by_desc(C::Id).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }

    /// Every backup of a plan that still holds an artifact (`succeeded`, `incomplete`), newest first.
    pub async fn live_backups_of_plan(&self, plan: Uuid) -> Result<Vec<JournalRecord>, DbError> {
        backup_journal::Entity::find()
            .filter(backup_journal::Column::PlanId.eq(plan))
            .filter(backup_journal::Column::Kind.eq(JournalKind::Backup.as_str()))
            .filter(backup_journal::Column::Status.is_in(holding_artifacts()))
            .order_by_desc(backup_journal::Column::StartedAt)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// The newest backup entry of each plan with a terminal status (for the per-plan metrics).
    pub async fn last_backup_of_plan(
        &self,
        plan: Uuid,
        status: JournalStatus,
    ) -> Result<Option<JournalRecord>, DbError> {
        backup_journal::Entity::find()
            .filter(backup_journal::Column::PlanId.eq(plan))
            .filter(backup_journal::Column::Kind.eq(JournalKind::Backup.as_str()))
            .filter(backup_journal::Column::Status.eq(status.as_str()))
            .order_by_desc(backup_journal::Column::Id)
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }
}
