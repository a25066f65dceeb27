//! Reads of the job store: one job, lists with filters and cursors, counts, event logs, and the
//! figures operators and benchmarks read (queue depths, timings).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sentinel_domain::{JobEvent, JobEventKind, JobId, JobKind, JobState};
use uuid::Uuid;

use super::{JobFilter, JobRecord, JobStore, Timing};
use crate::DbError;
use crate::entity::{job_events, jobs};

impl JobStore {
    /// Number of jobs in each state (states with none are included with 0).
    pub async fn counts(&self, org: Option<Uuid>) -> Result<Vec<(JobState, u64)>, DbError> {
        let mut query = jobs::Entity::find();
        if let Some(org) = org {
            query = query.filter(jobs::Column::OrgId.eq(org));
        }
        let rows: Vec<(String, i64)> = query
            .select_only()
            .column(jobs::Column::State)
            .column_as(jobs::Column::Id.count(), "n")
            .group_by(jobs::Column::State)
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(JobState::ALL
            .into_iter()
            .map(|s| (s, rows.iter().find(|(name, _)| name == s.as_str()).map_or(0, |(_, n)| *n as u64)))
            .collect())
    }

    /// The job's events after `after_seq`, oldest first.
    pub async fn events(&self, id: JobId, after_seq: i64, limit: u64) -> Result<Vec<JobEvent>, DbError> {
        let Some(job) = self.get(id).await? else { return Err(DbError::NotFound(id.to_string())) };
        job_events::Entity::find()
            .filter(job_events::Column::JobId.eq(id.as_uuid()))
            .filter(job_events::Column::Seq.gt(after_seq))
            .order_by_asc(job_events::Column::Seq)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|m| {
                let body: JobEventKind = serde_json::from_value(m.data).map_err(|e| DbError::Corrupt(e.to_string()))?;
                Ok(JobEvent {
                    id: m.id,
                    org_id: job.org_id,
                    job_id: id,
                    kind: job.kind.clone(),
                    seq: m.seq,
                    at: m.at,
                    body,
                })
            })
            .collect()
    }

    /// A job of `org` (jobs of other organizations do not exist for the caller).
    pub async fn get_in_org(&self, org: Uuid, id: JobId) -> Result<Option<JobRecord>, DbError> {
        jobs::Entity::find_by_id(id.as_uuid())
            .filter(jobs::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(JobRecord::try_from)
            .transpose()
    }

    /// The jobs of `org` among `ids`, by id (missing ones are absent).
    pub async fn get_many_in_org(
        &self,
        org: Uuid,
        ids: &[JobId],
    ) -> Result<std::collections::HashMap<JobId, JobRecord>, DbError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        jobs::Entity::find()
            .filter(jobs::Column::OrgId.eq(org))
            .filter(jobs::Column::Id.is_in(ids.iter().map(|id| id.as_uuid())))
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|m| JobRecord::try_from(m).map(|j| (j.id, j)))
            .collect()
    }

    /// The unfinished job of `org` holding deduplication key `key`, if any.
    pub async fn active_with_dedup_key(&self, org: Option<Uuid>, key: &str) -> Result<Option<JobRecord>, DbError> {
        let mut q = jobs::Entity::find()
            .filter(jobs::Column::DedupKey.eq(key))
            .filter(jobs::Column::State.is_in(JobState::STARTABLE.map(|s| s.as_str())));
        q = match org {
            Some(org) => q.filter(jobs::Column::OrgId.eq(org)),
            None => q.filter(jobs::Column::OrgId.is_null()),
        };
        q.one(&self.conn).await?.map(JobRecord::try_from).transpose()
    }

    /// Jobs of `org` matching `filter`, newest first, after the cursor `before` (a job id: ids sort by
    /// creation time).
    pub async fn list(
        &self,
        org: Uuid,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u64,
    ) -> Result<Vec<JobRecord>, DbError> {
        let mut q = jobs::Entity::find().filter(jobs::Column::OrgId.eq(org));
        if let Some(state) = filter.state {
            q = q.filter(jobs::Column::State.eq(state.as_str()));
        }
        if let Some(kind) = &filter.kind {
            q = q.filter(jobs::Column::Kind.eq(kind.as_str()));
        }
        if let Some(after) = filter.created_after {
            q = q.filter(jobs::Column::CreatedAt.gte(after));
        }
        if let Some(until) = filter.created_before {
            q = q.filter(jobs::Column::CreatedAt.lt(until));
        }
        if let Some(who) = &filter.requested_by {
            q = q.filter(jobs::Column::RequestedBy.eq(who.as_str()));
        }
        if let Some(cursor) = before {
            q = q.filter(jobs::Column::Id.lt(cursor.as_uuid()));
        }
        q.order_by_desc(jobs::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(JobRecord::try_from)
            .collect()
    }

    /// When the jobs of `kind` created at or after `since` were first created, first started and last
    /// finished (benchmarks read throughput off these).
    pub async fn timing(&self, kind: &JobKind, since: DateTime<Utc>) -> Result<Timing, DbError> {
        let row: Option<Timing> = jobs::Entity::find()
            .select_only()
            .column_as(jobs::Column::CreatedAt.min(), "first_created")
            .column_as(jobs::Column::StartedAt.min(), "first_started")
            .column_as(jobs::Column::FinishedAt.max(), "last_finished")
            .filter(jobs::Column::Kind.eq(kind.as_str()))
            .filter(jobs::Column::CreatedAt.gte(since))
            .into_tuple()
            .one(&self.conn)
            .await?;
        Ok(row.unwrap_or((None, None, None)))
    }

    /// Per queue: how many jobs are due and still queued, and since when the oldest has been due.
    pub async fn waiting_by_queue(&self) -> Result<Vec<(String, u64, DateTime<Utc>)>, DbError> {
        let rows: Vec<(String, i64, Option<DateTime<Utc>>)> = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Queue)
            .column_as(jobs::Column::Id.count(), "n")
            .column_as(jobs::Column::RunAt.min(), "oldest")
            .filter(jobs::Column::State.eq(JobState::Queued.as_str()))
            .filter(jobs::Column::RunAt.lte(Utc::now()))
            .group_by(jobs::Column::Queue)
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(rows.into_iter().filter_map(|(q, n, oldest)| Some((q, Ord::max(n, 0) as u64, oldest?))).collect())
    }

    /// Number of jobs of `org` per kind and state.
    pub async fn counts_by_kind(&self, org: Uuid) -> Result<Vec<(String, JobState, u64)>, DbError> {
        let rows: Vec<(String, String, i64)> = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Kind)
            .column(jobs::Column::State)
            .column_as(jobs::Column::Id.count(), "n")
            .filter(jobs::Column::OrgId.eq(org))
            .group_by(jobs::Column::Kind)
            .group_by(jobs::Column::State)
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, state, n)| Some((kind, state.parse().ok()?, Ord::max(n, 0) as u64)))
            .collect())
    }

    /// Events of every job of `org` after position `after_id` in the deployment-wide log, oldest first.
    pub async fn org_events(&self, org: Uuid, after_id: i64, limit: u64) -> Result<Vec<JobEvent>, DbError> {
        use sea_orm::sea_query::Query;
        let org_jobs = Query::select()
            .column(jobs::Column::Id)
            .from(jobs::Entity)
            .and_where(jobs::Column::OrgId.eq(org))
            .to_owned();
        let rows = job_events::Entity::find()
            .filter(job_events::Column::JobId.in_subquery(org_jobs))
            .filter(job_events::Column::Id.gt(after_id))
            .order_by_asc(job_events::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?;
        // Kinds for the envelope, one lookup per distinct job.
        let ids: Vec<Uuid> =
            rows.iter().map(|r| r.job_id).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let kinds: std::collections::HashMap<Uuid, String> = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .column(jobs::Column::Kind)
            .filter(jobs::Column::Id.is_in(ids))
            .into_tuple::<(Uuid, String)>()
            .all(&self.conn)
            .await?
            .into_iter()
            .collect();
        rows.into_iter()
            .map(|m| {
                let body: JobEventKind = serde_json::from_value(m.data).map_err(|e| DbError::Corrupt(e.to_string()))?;
                let kind = kinds.get(&m.job_id).map(String::as_str).unwrap_or("unknown");
                Ok(JobEvent {
                    id: m.id,
                    org_id: Some(org),
                    job_id: JobId::from_uuid(m.job_id),
                    kind: JobKind::parse(kind).map_err(|e| DbError::Corrupt(e.to_string()))?,
                    seq: m.seq,
                    at: m.at,
                    body,
                })
            })
            .collect()
    }
}
