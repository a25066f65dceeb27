//! The schedule store: schedule definitions, the per-tick claim that fires them exactly once (a
//! compare-and-set on `next_fire_at` and `version`, committed with the job it enqueues and a unique
//! firing row), the firing history, and the scheduler lease.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement, TransactionTrait, Value,
};
use sentinel_domain::schedule::{MisfirePolicy, Trigger, TriggerError};
use sentinel_domain::{JobEvent, JobId, JobKind, JobState, Priority};
use uuid::Uuid;

use crate::entity::{jobs, schedule_firings, scheduler_leases, schedules};
use crate::{DbError, JobRecord, JobStore, NewJob, unique};

/// A schedule as read from the table, with typed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub name: String,
    pub owner: Option<String>,
    pub cron: Option<String>,
    pub interval_secs: Option<u64>,
    pub timezone: String,
    pub anchor_at: DateTime<Utc>,
    pub job_kind: JobKind,
    pub payload: serde_json::Value,
    pub priority: Priority,
    pub enabled: bool,
    pub misfire_policy: MisfirePolicy,
    pub jitter_ms: u64,
    pub end_at: Option<DateTime<Utc>>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<JobId>,
}

impl ScheduleRecord {
    /// The trigger this schedule fires on.
    pub fn trigger(&self) -> Result<Trigger, TriggerError> {
        Trigger::stored(self.cron.as_deref(), self.interval_secs, Some(&self.timezone), self.anchor_at)
    }
}

impl TryFrom<schedules::Model> for ScheduleRecord {
    type Error = DbError;
    fn try_from(m: schedules::Model) -> Result<Self, DbError> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("schedule {}: {what}: {e}", m.id));
        Ok(Self {
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            owner: m.owner,
            cron: m.cron,
            interval_secs: m.interval_secs.map(|s| Ord::max(s, 0) as u64),
            timezone: m.timezone,
            anchor_at: m.anchor_at,
            job_kind: JobKind::parse(&m.job_kind).map_err(|e| corrupt("job_kind", &e))?,
            payload: m.payload,
            priority: m.priority.parse().map_err(|e| corrupt("priority", &e))?,
            enabled: m.enabled,
            misfire_policy: m.misfire_policy.parse().map_err(|e| corrupt("misfire_policy", &e))?,
            jitter_ms: Ord::max(m.jitter_ms, 0) as u64,
            end_at: m.end_at,
            next_fire_at: m.next_fire_at,
            version: m.version,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_fired_at: m.last_fired_at,
            last_job_id: m.last_job_id.map(JobId::from_uuid),
        })
    }
}

/// The definition of a schedule, as created or replaced. `next_fire_at` is computed by the caller from
/// the trigger (the first tick after now, or `None` when disabled or ended).
#[derive(Debug, Clone)]
pub struct ScheduleDraft {
    pub org_id: Option<Uuid>,
    pub name: String,
    pub owner: Option<String>,
    pub cron: Option<String>,
    pub interval_secs: Option<u64>,
    pub timezone: String,
    pub anchor_at: DateTime<Utc>,
    pub job_kind: JobKind,
    pub payload: serde_json::Value,
    pub priority: Priority,
    pub enabled: bool,
    pub misfire_policy: MisfirePolicy,
    pub jitter_ms: u64,
    pub end_at: Option<DateTime<Utc>>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
}

impl ScheduleDraft {
    /// Whether firing behaviour differs from `rec` (anything but name, creator and bookkeeping).
    fn differs_from(&self, rec: &ScheduleRecord) -> bool {
        self.cron != rec.cron
            || self.interval_secs != rec.interval_secs
            || self.timezone != rec.timezone
            || self.job_kind != rec.job_kind
            || self.payload != rec.payload
            || self.priority != rec.priority
            || self.enabled != rec.enabled
            || self.misfire_policy != rec.misfire_policy
            || self.jitter_ms != rec.jitter_ms
            || self.end_at != rec.end_at
            || self.name != rec.name
    }
}

/// One recorded tick of a schedule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FiringRecord {
    pub id: i64,
    pub schedule_id: Uuid,
    pub tick_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub job_id: Option<JobId>,
    pub outcome: String,
    pub missed_ticks: u64,
}

impl From<schedule_firings::Model> for FiringRecord {
    fn from(m: schedule_firings::Model) -> Self {
        Self {
            id: m.id,
            schedule_id: m.schedule_id,
            tick_at: m.tick_at,
            fired_at: m.fired_at,
            job_id: m.job_id.map(JobId::from_uuid),
            outcome: m.outcome,
            missed_ticks: Ord::max(m.missed_ticks, 0) as u64,
        }
    }
}

/// What the scheduler wants to do with one due tick.
#[derive(Debug, Clone)]
pub struct TickClaim {
    pub schedule_id: Uuid,
    pub org_id: Option<Uuid>,
    /// The schedule version the scheduler computed this from.
    pub version: i64,
    /// The tick being claimed: must still be the schedule's `next_fire_at`.
    pub tick_at: DateTime<Utc>,
    /// The schedule's next tick after this one (`None`: it has ended).
    pub next_fire_at: Option<DateTime<Utc>>,
    pub fired_at: DateTime<Utc>,
    /// The job to enqueue; `None` records a skipped misfire.
    pub job: Option<NewJob>,
    /// Earlier ticks this claim stands for (skipped, or coalesced into this run).
    pub missed_ticks: u64,
}

/// A claim that won: its firing row and job (if any) are committed.
#[derive(Debug, Clone)]
pub struct ClaimedTick {
    pub schedule_id: Uuid,
    pub tick_at: DateTime<Utc>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub job: Option<(JobRecord, JobEvent)>,
}

/// Rows per claim statement (each row binds 6 parameters).
const CLAIM_CHUNK: usize = 500;

/// Repository of schedules, their firings and the scheduler lease.
#[derive(Clone, Debug)]
pub struct ScheduleStore {
    conn: DatabaseConnection,
}

impl ScheduleStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Creates a schedule. `Duplicate` when the organization already has one with this name.
    pub async fn create(&self, draft: ScheduleDraft) -> Result<ScheduleRecord, DbError> {
        // Microseconds: what PostgreSQL keeps, so the returned record equals the stored one.
        let now = Utc::now().trunc_subsecs(6);
        let model = schedules::Model {
            id: Uuid::now_v7(),
            org_id: draft.org_id,
            name: draft.name,
            owner: draft.owner,
            cron: draft.cron,
            interval_secs: draft.interval_secs.map(|s| s as i64),
            timezone: draft.timezone,
            anchor_at: draft.anchor_at,
            job_kind: draft.job_kind.to_string(),
            payload: draft.payload,
            priority: draft.priority.as_str().to_owned(),
            enabled: draft.enabled,
            misfire_policy: draft.misfire_policy.as_str().to_owned(),
            jitter_ms: draft.jitter_ms as i64,
            end_at: draft.end_at,
            next_fire_at: draft.next_fire_at,
            version: 1,
            created_by: draft.created_by,
            created_at: now,
            updated_at: now,
            last_fired_at: None,
            last_job_id: None,
        };
        schedules::ActiveModel::from(model.clone()).reset_all().insert(&self.conn).await.map_err(unique)?;
        model.try_into()
    }

    /// Replaces the definition of a schedule of `org`; bumps its version so a scheduler holding the old
    /// one cannot fire it. `None` when there is no such schedule.
    /// With `expected_version`, the write happens only if nobody changed the schedule since it was read
    /// (`DbError::Conflict` otherwise).
    pub async fn replace(
        &self,
        org: Option<Uuid>,
        id: Uuid,
        draft: ScheduleDraft,
        expected_version: Option<i64>,
    ) -> Result<Option<ScheduleRecord>, DbError> {
        let mut cond = Condition::all().add(schedules::Column::Id.eq(id));
        if let Some(version) = expected_version {
            cond = cond.add(schedules::Column::Version.eq(version));
        }
        cond = match org {
            Some(org) => cond.add(schedules::Column::OrgId.eq(org)),
            None => cond.add(schedules::Column::OrgId.is_null()),
        };
        let res = schedules::Entity::update_many()
            .col_expr(schedules::Column::Name, Expr::value(draft.name))
            .col_expr(schedules::Column::Cron, Expr::value(draft.cron))
            .col_expr(schedules::Column::IntervalSecs, Expr::value(draft.interval_secs.map(|s| s as i64)))
            .col_expr(schedules::Column::Timezone, Expr::value(draft.timezone))
            .col_expr(schedules::Column::AnchorAt, Expr::value(draft.anchor_at))
            .col_expr(schedules::Column::JobKind, Expr::value(draft.job_kind.to_string()))
            .col_expr(schedules::Column::Payload, Expr::value(draft.payload))
            .col_expr(schedules::Column::Priority, Expr::value(draft.priority.as_str()))
            .col_expr(schedules::Column::Enabled, Expr::value(draft.enabled))
            .col_expr(schedules::Column::MisfirePolicy, Expr::value(draft.misfire_policy.as_str()))
            .col_expr(schedules::Column::JitterMs, Expr::value(draft.jitter_ms as i64))
            .col_expr(schedules::Column::EndAt, Expr::value(draft.end_at))
            .col_expr(schedules::Column::NextFireAt, Expr::value(draft.next_fire_at))
            .col_expr(schedules::Column::Version, Expr::col(schedules::Column::Version).add(1))
            .col_expr(schedules::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(cond)
            .exec(&self.conn)
            .await
            .map_err(unique)?;
        if res.rows_affected == 0 {
            return match (expected_version, self.get(id).await?) {
                (Some(_), Some(rec)) if rec.org_id == org => {
                    Err(DbError::Conflict(format!("schedule {id} changed meanwhile")))
                }
                _ => Ok(None),
            };
        }
        self.get(id).await
    }

    /// Creates or updates the schedule managed by `draft.owner` (built-in periodic work, a backup plan).
    /// A schedule whose definition is unchanged keeps its next tick.
    pub async fn upsert_owned(&self, draft: ScheduleDraft) -> Result<ScheduleRecord, DbError> {
        let owner = draft.owner.clone().ok_or_else(|| DbError::Corrupt("an owned schedule needs an owner".into()))?;
        let existing =
            schedules::Entity::find().filter(schedules::Column::Owner.eq(owner.as_str())).one(&self.conn).await?;
        match existing {
            None => match self.create(draft.clone()).await {
                // Another replica created it first.
                Err(DbError::Duplicate) => self.by_owner(&owner).await,
                other => other,
            },
            Some(model) => {
                let rec = ScheduleRecord::try_from(model)?;
                if !draft.differs_from(&rec) {
                    return Ok(rec);
                }
                self.replace(rec.org_id, rec.id, draft, None).await?.ok_or_else(|| DbError::NotFound(owner))
            }
        }
    }

    async fn by_owner(&self, owner: &str) -> Result<ScheduleRecord, DbError> {
        schedules::Entity::find()
            .filter(schedules::Column::Owner.eq(owner))
            .one(&self.conn)
            .await?
            .ok_or_else(|| DbError::NotFound(owner.to_owned()))?
            .try_into()
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<ScheduleRecord>, DbError> {
        schedules::Entity::find_by_id(id).one(&self.conn).await?.map(ScheduleRecord::try_from).transpose()
    }

    pub async fn get_in_org(&self, org: Uuid, id: Uuid) -> Result<Option<ScheduleRecord>, DbError> {
        schedules::Entity::find_by_id(id)
            .filter(schedules::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(ScheduleRecord::try_from)
            .transpose()
    }

    /// Schedules of `org` in creation order, after the cursor `after` (a schedule id).
    pub async fn list(&self, org: Uuid, after: Option<Uuid>, limit: u64) -> Result<Vec<ScheduleRecord>, DbError> {
        let mut q = schedules::Entity::find().filter(schedules::Column::OrgId.eq(org));
        if let Some(cursor) = after {
            q = q.filter(schedules::Column::Id.gt(cursor));
        }
        q.order_by_asc(schedules::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ScheduleRecord::try_from)
            .collect()
    }

    /// System schedules (built-in periodic work), for operators of the whole deployment.
    pub async fn list_system(&self) -> Result<Vec<ScheduleRecord>, DbError> {
        schedules::Entity::find()
            .filter(schedules::Column::OrgId.is_null())
            .order_by_asc(schedules::Column::Id)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ScheduleRecord::try_from)
            .collect()
    }

    /// Deletes a schedule of `org` and its history; false when there is no such schedule.
    pub async fn delete(&self, org: Uuid, id: Uuid) -> Result<bool, DbError> {
        let res = schedules::Entity::delete_many()
            .filter(schedules::Column::Id.eq(id))
            .filter(schedules::Column::OrgId.eq(org))
            .exec(&self.conn)
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Every schedule with a tick to fire: what the active scheduler loads when it takes over.
    pub async fn active(&self) -> Result<Vec<ScheduleRecord>, DbError> {
        schedules::Entity::find()
            .filter(schedules::Column::Enabled.eq(true))
            .filter(schedules::Column::NextFireAt.is_not_null())
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ScheduleRecord::try_from)
            .collect()
    }

    /// Schedules modified at or after `since` (enabled or not).
    pub async fn changed_since(&self, since: DateTime<Utc>) -> Result<Vec<ScheduleRecord>, DbError> {
        schedules::Entity::find()
            .filter(schedules::Column::UpdatedAt.gte(since))
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ScheduleRecord::try_from)
            .collect()
    }

    /// The recorded ticks of a schedule, newest first, before the cursor `before` (a firing id).
    pub async fn firings(&self, schedule: Uuid, before: Option<i64>, limit: u64) -> Result<Vec<FiringRecord>, DbError> {
        let mut q = schedule_firings::Entity::find().filter(schedule_firings::Column::ScheduleId.eq(schedule));
        if let Some(cursor) = before {
            q = q.filter(schedule_firings::Column::Id.lt(cursor));
        }
        Ok(q.order_by_desc(schedule_firings::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(FiringRecord::from)
            .collect())
    }

    /// Deletes firing records older than `cutoff` (retention); with `system_only`, only those of the
    /// built-in schedules.
    pub async fn delete_firings_before(&self, cutoff: DateTime<Utc>, system_only: bool) -> Result<u64, DbError> {
        let mut q = schedule_firings::Entity::delete_many().filter(schedule_firings::Column::FiredAt.lt(cutoff));
        if system_only {
            q = q.filter(schedule_firings::Column::OrgId.is_null());
        }
        Ok(q.exec(&self.conn).await?.rows_affected)
    }

    /// Claims due ticks and commits, in one transaction, the schedules' next ticks, the jobs and the
    /// firing rows. A claim wins only if its tick is still the schedule's `next_fire_at` at the version
    /// it was computed from (at most one claim per schedule per call); claims that lost (another replica fired the tick, or the schedule was
    /// edited, disabled or deleted) are left out of the result. The unique (schedule, tick) index makes
    /// a double firing impossible even if two claims raced on a stale read.
    pub async fn claim(&self, claims: Vec<TickClaim>) -> Result<Vec<ClaimedTick>, DbError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.conn.get_database_backend();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut won = std::collections::HashSet::with_capacity(claims.len());
        for chunk in claims.chunks(CLAIM_CHUNK) {
            let stmt = claim_statement(backend, chunk);
            for row in txn.query_all_raw(stmt).await? {
                won.insert(row.try_get_by_index::<Uuid>(0)?);
            }
        }
        let mut winners: Vec<TickClaim> = claims.into_iter().filter(|c| won.contains(&c.schedule_id)).collect();
        // A job with a deduplication key (the built-in sweeps) is not queued again while the previous
        // one is unfinished: the tick is recorded as skipped, so a sweep nobody runs cannot pile up.
        let keyed: Vec<String> =
            winners.iter().filter_map(|c| c.job.as_ref().and_then(|j| j.dedup_key.clone())).collect();
        if !keyed.is_empty() {
            let busy: std::collections::HashSet<(Option<Uuid>, String)> = jobs::Entity::find()
                .select_only()
                .column(jobs::Column::OrgId)
                .column(jobs::Column::DedupKey)
                .filter(jobs::Column::DedupKey.is_in(keyed))
                .filter(jobs::Column::State.is_in(JobState::STARTABLE.map(|s| s.as_str())))
                .into_tuple::<(Option<Uuid>, Option<String>)>()
                .all(&txn)
                .await?
                .into_iter()
                .filter_map(|(org, key)| Some((org, key?)))
                .collect();
            for c in &mut winners {
                let held =
                    c.job.as_ref().and_then(|j| j.dedup_key.clone()).is_some_and(|k| busy.contains(&(c.org_id, k)));
                if held {
                    // Recorded as a skipped tick (a skipped row counts the ticks it stands for).
                    c.job = None;
                    c.missed_ticks += 1;
                }
            }
        }
        // Firing rows first, skipping ticks that already have one: an edit can set `next_fire_at` back to
        // a tick that fired meanwhile, and such a claim moves the schedule on but fires nothing again.
        let mut recorded = std::collections::HashSet::with_capacity(winners.len());
        for chunk in winners.chunks(CLAIM_CHUNK) {
            let rows = chunk.iter().map(|c| schedule_firings::ActiveModel {
                schedule_id: Set(c.schedule_id),
                org_id: Set(c.org_id),
                tick_at: Set(c.tick_at),
                fired_at: Set(c.fired_at),
                job_id: Set(c.job.as_ref().map(|j| j.id.as_uuid())),
                outcome: Set(if c.job.is_some() { "fired" } else { "skipped" }.to_owned()),
                missed_ticks: Set(c.missed_ticks as i64),
                ..Default::default()
            });
            let on_conflict = sea_orm::sea_query::OnConflict::columns([
                schedule_firings::Column::ScheduleId,
                schedule_firings::Column::TickAt,
            ])
            .do_nothing()
            .to_owned();
            match schedule_firings::Entity::insert_many(rows).on_conflict(on_conflict).exec_with_returning(&txn).await {
                Ok(inserted) => recorded.extend(inserted.into_iter().map(|f| f.schedule_id)),
                Err(sea_orm::DbErr::RecordNotInserted) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let jobs: Vec<NewJob> =
            winners.iter().filter(|c| recorded.contains(&c.schedule_id)).filter_map(|c| c.job.clone()).collect();
        let mut inserted: std::collections::HashMap<JobId, (JobRecord, JobEvent)> =
            JobStore::insert_many_in(&txn, jobs).await?.into_iter().map(|(j, e)| (j.id, (j, e))).collect();
        let out = winners
            .into_iter()
            .map(|c| ClaimedTick {
                schedule_id: c.schedule_id,
                tick_at: c.tick_at,
                next_fire_at: c.next_fire_at,
                job: c.job.as_ref().and_then(|j| inserted.remove(&j.id)),
            })
            .collect();
        txn.commit().await?;
        Ok(out)
    }

    /// Takes or renews the lease `name` for `holder` until now + `ttl`. Returns the lease epoch while
    /// `holder` holds it, `None` while another live holder does. A new holder gets a new epoch.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl: chrono::Duration) -> Result<Option<i64>, DbError> {
        let now = Utc::now();
        let current = scheduler_leases::Entity::find_by_id(name.to_owned()).one(&self.conn).await?;
        let Some(lease) = current else {
            let row = scheduler_leases::ActiveModel {
                name: Set(name.to_owned()),
                holder: Set(holder.to_owned()),
                epoch: Set(1),
                expires_at: Set(now + ttl),
            };
            return match row.insert(&self.conn).await {
                Ok(_) => Ok(Some(1)),
                // Another replica created it first.
                Err(e) => match unique(e) {
                    DbError::Duplicate => Ok(None),
                    other => Err(other),
                },
            };
        };
        let epoch = match (lease.holder == holder, lease.expires_at > now) {
            (true, true) => lease.epoch,
            (_, false) => lease.epoch + 1,
            (false, true) => return Ok(None),
        };
        // Compare-and-set on the epoch read above: of two replicas racing for an expired lease, one wins.
        let res = scheduler_leases::Entity::update_many()
            .col_expr(scheduler_leases::Column::Holder, Expr::value(holder))
            .col_expr(scheduler_leases::Column::Epoch, Expr::value(epoch))
            .col_expr(scheduler_leases::Column::ExpiresAt, Expr::value(now + ttl))
            .filter(scheduler_leases::Column::Name.eq(name))
            .filter(scheduler_leases::Column::Epoch.eq(lease.epoch))
            .filter(scheduler_leases::Column::Holder.eq(lease.holder.as_str()))
            .exec(&self.conn)
            .await?;
        Ok((res.rows_affected == 1).then_some(epoch))
    }

    /// Gives the lease up at once (graceful shutdown), so a standby takes over without waiting for expiry.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), DbError> {
        scheduler_leases::Entity::update_many()
            .col_expr(scheduler_leases::Column::ExpiresAt, Expr::value(Utc::now() - chrono::Duration::seconds(1)))
            .filter(scheduler_leases::Column::Name.eq(name))
            .filter(scheduler_leases::Column::Holder.eq(holder))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    /// The current holder of the lease `name` and its epoch, if any is live.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>, DbError> {
        let lease = scheduler_leases::Entity::find_by_id(name.to_owned()).one(&self.conn).await?;
        Ok(lease.filter(|l| l.expires_at > Utc::now()).map(|l| (l.holder, l.epoch)))
    }
}

/// `WITH v(...) AS (VALUES ...) UPDATE schedules ... FROM v WHERE <still at this tick and version>
/// RETURNING id`, written per backend (PostgreSQL wants typed placeholders).
fn claim_statement(backend: DbBackend, chunk: &[TickClaim]) -> Statement {
    let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
    let mut rows = Vec::with_capacity(chunk.len());
    for c in chunk {
        let job_id = c.job.as_ref().map(|j| j.id.as_uuid());
        values.extend([
            Value::from(c.schedule_id),
            Value::from(c.version),
            Value::from(c.tick_at),
            Value::from(c.next_fire_at),
            Value::from(c.fired_at),
            Value::from(job_id),
        ]);
        let n = values.len();
        rows.push(match backend {
            DbBackend::Postgres => format!(
                "(${}::uuid, ${}::bigint, ${}::timestamptz, ${}::timestamptz, ${}::timestamptz, ${}::uuid)",
                n - 5,
                n - 4,
                n - 3,
                n - 2,
                n - 1,
                n
            ),
            _ => "(?, ?, ?, ?, ?, ?)".to_owned(),
        });
    }
    let sql = format!(
        "WITH v (id, version, tick, next_at, fired_at, job_id) AS (VALUES {}) \
         UPDATE schedules SET next_fire_at = v.next_at, last_fired_at = v.fired_at, \
         last_job_id = COALESCE(v.job_id, schedules.last_job_id) \
         FROM v WHERE schedules.id = v.id AND schedules.version = v.version \
         AND schedules.next_fire_at = v.tick AND schedules.enabled \
         RETURNING schedules.id",
        rows.join(", ")
    );
    Statement::from_sql_and_values(backend, sql, values)
}
