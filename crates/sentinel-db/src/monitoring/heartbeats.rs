//! Heartbeat checks in the store: the checks (specification, token hash, tracker columns), their
//! pings (the last `PINGS_KEPT` of each), and the two ways a check moves — a ping, found by the
//! hash of its token, and the sweep of checks whose next deadline passed. Both move the tracker
//! with `monitoring::heartbeats` and write it back with a compare-and-set on the row's version, so
//! two pings or a ping and a sweep racing on one check are applied one after the other; a problem
//! that appears, changes or clears opens, changes or resolves the check's alert in the same
//! transaction, through the same alert and incident path as targets and metrics.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use sentinel_domain::monitoring::alerts::Severity;
use sentinel_domain::monitoring::heartbeats::{
    self as hb, HeartbeatSpec, MAX_LOG_BYTES, PingKind, Problem, Tracker, first_expected,
};
use uuid::Uuid;

use super::MonitoringStore;
use super::incidents::{add_event, settings_in};
use super::thresholds::SweepReport;
use super::transitions::{NewAlert, open_alert, raise_severity, resolve_alert};
use crate::DbError;
use crate::entity::{monitor_alerts, monitor_heartbeat_pings, monitor_heartbeats};

/// The pings kept per check (the newest).
pub const PINGS_KEPT: u64 = 100;
/// Attempts of a ping that keeps losing the compare-and-set to concurrent pings.
const PING_ATTEMPTS: usize = 8;

/// A heartbeat check as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub spec: HeartbeatSpec,
    pub tracker: Tracker,
    /// Why its problem is what it is, in words.
    pub problem_note: Option<String>,
    pub open_alert_id: Option<Uuid>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One ping as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PingRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// start, success or fail.
    pub kind: String,
    pub exit_code: Option<i32>,
    pub run_id: Option<String>,
    pub duration_ms: Option<i64>,
    pub unexpected: bool,
    pub remote_addr: Option<String>,
    pub body: Option<String>,
}

/// A ping as received.
#[derive(Debug, Clone)]
pub struct PingInput {
    pub kind: PingKind,
    pub run_id: Option<String>,
    pub body: Option<String>,
    pub remote_addr: Option<String>,
}

/// What a ping did.
#[derive(Debug, Clone, PartialEq)]
pub struct PingReceipt {
    pub heartbeat_id: Uuid,
    pub unexpected: bool,
    pub status: &'static str,
}

fn corrupt(id: Uuid, what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("heartbeat {id}: {what}: {e}"))
}

impl TryFrom<monitor_heartbeats::Model> for HeartbeatRecord {
    type Error = DbError;
    fn try_from(m: monitor_heartbeats::Model) -> Result<Self, DbError> {
        let id = m.id;
        Ok(Self {
            spec: serde_json::from_value(m.spec).map_err(|e| corrupt(id, "spec", e))?,
            tracker: Tracker {
                expected_at: m.expected_at,
                expected_started: m.expected_started,
                started_at: m.started_at,
                run_id: m.run_id,
                run_for: m.run_for,
                last_ping_at: m.last_ping_at,
                last_success_at: m.last_success_at,
                problem: m.problem.map(|p| Problem::parse(&p)).transpose().map_err(|e| corrupt(id, "problem", e))?,
            },
            id,
            org_id: m.org_id,
            problem_note: m.problem_note,
            open_alert_id: m.open_alert_id,
            next_check_at: m.next_check_at,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl From<monitor_heartbeat_pings::Model> for PingRecord {
    fn from(m: monitor_heartbeat_pings::Model) -> Self {
        Self {
            id: m.id,
            at: m.at,
            kind: m.kind,
            exit_code: m.exit_code,
            run_id: m.run_id,
            duration_ms: m.duration_ms,
            unexpected: m.unexpected,
            remote_addr: m.remote_addr,
            body: m.body,
        }
    }
}

fn spec_json(spec: &HeartbeatSpec) -> Result<serde_json::Value, DbError> {
    serde_json::to_value(spec).map_err(|e| DbError::Corrupt(format!("cannot encode a heartbeat: {e}")))
}

fn cadence(id: Uuid, spec: &HeartbeatSpec) -> Result<hb::Cadence, DbError> {
    spec.cadence().map_err(|e| corrupt(id, "schedule", e))
}

fn words(p: Problem) -> &'static str {
    match p {
        Problem::Missed => "missed its run",
        Problem::StartMissed => "did not start on time",
        Problem::Failed => "failed",
        Problem::TooLong => "ran too long",
        Problem::TooShort => "ran too short",
    }
}

fn rule(p: Problem) -> &'static str {
    match p {
        Problem::Missed => "heartbeat_missed",
        Problem::StartMissed => "heartbeat_start_missed",
        Problem::Failed => "heartbeat_failed",
        Problem::TooLong => "heartbeat_too_long",
        Problem::TooShort => "heartbeat_too_short",
    }
}

fn severity(p: Problem) -> Severity {
    if p.critical() { Severity::Critical } else { Severity::Warning }
}

/// Writes `after` over `before` if the row is still at `version`; opens, changes or resolves the
/// check's alert for the change of problem (`note` says why; `actor` names an operator). False
/// when the row moved meanwhile (nothing written).
#[allow(clippy::too_many_arguments)]
async fn write_back(
    txn: &DatabaseTransaction,
    rec: &HeartbeatRecord,
    version: i64,
    after: &Tracker,
    note: Option<String>,
    actor: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    use monitor_heartbeats::Column as H;
    let before = rec.tracker.problem;
    let alert_id = match (after.problem, rec.open_alert_id) {
        (None, _) => None,
        (Some(_), Some(a)) => Some(a),
        (Some(_), None) => Some(Uuid::now_v7()),
    };
    let problem_note = if after.problem.is_some() { note.clone().or(rec.problem_note.clone()) } else { None };
    let written = monitor_heartbeats::Entity::update_many()
        .col_expr(H::ExpectedAt, Expr::value(after.expected_at))
        .col_expr(H::ExpectedStarted, Expr::value(after.expected_started))
        .col_expr(H::StartedAt, Expr::value(after.started_at))
        .col_expr(H::RunId, Expr::value(after.run_id.clone()))
        .col_expr(H::RunFor, Expr::value(after.run_for))
        .col_expr(H::LastPingAt, Expr::value(after.last_ping_at))
        .col_expr(H::LastSuccessAt, Expr::value(after.last_success_at))
        .col_expr(H::Problem, Expr::value(after.problem.map(|p| p.as_str())))
        .col_expr(H::ProblemNote, Expr::value(problem_note))
        .col_expr(H::OpenAlertId, Expr::value(alert_id))
        .col_expr(H::NextCheckAt, Expr::value(hb::next_check(&rec.spec, after)))
        .col_expr(H::Version, Expr::value(version + 1))
        .filter(H::Id.eq(rec.id))
        .filter(H::Version.eq(version))
        .exec(txn)
        .await?;
    if written.rows_affected == 0 {
        return Ok(false);
    }
    let text = note.unwrap_or_else(|| "no detail".to_owned());
    match (before, after.problem, rec.open_alert_id, alert_id) {
        (_, None, Some(open), _) => {
            resolve_alert(txn, open, actor, now).await?;
        }
        (_, Some(p), None, Some(id)) => {
            let settings = settings_in(txn, rec.org_id).await?;
            let alert = NewAlert {
                id,
                org_id: rec.org_id,
                source_kind: "heartbeat",
                source_id: rec.id,
                group_key: settings.alert_grouping_enabled.then(|| format!("heartbeat:{}", rec.id)),
                title: format!("{} {}", rec.spec.name, words(p)),
                rule: rule(p),
                severity: severity(p),
                flapping: false,
                message: text,
                server_id: None,
            };
            open_alert(txn, alert, now).await?;
        }
        (Some(old), Some(p), Some(open), _) if old != p => {
            monitor_alerts::Entity::update_many()
                .col_expr(monitor_alerts::Column::Rule, Expr::value(rule(p)))
                .col_expr(monitor_alerts::Column::Severity, Expr::value(severity(p).as_str()))
                .col_expr(monitor_alerts::Column::Message, Expr::value(text.clone()))
                .filter(monitor_alerts::Column::Id.eq(open))
                .exec(txn)
                .await?;
            if let Some(alert) = monitor_alerts::Entity::find_by_id(open).one(txn).await? {
                let line = format!("{} {}: {text}", rec.spec.name, words(p));
                add_event(txn, alert.incident_id, now, "alert_changed", None, Some(line)).await?;
                if p.critical() {
                    raise_severity(txn, alert.incident_id, now).await?;
                }
            }
        }
        _ => {}
    }
    Ok(true)
}

impl MonitoringStore {
    /// Stores a check whose ping token hashes to `token_hash`, created at `now`; a cron check
    /// awaits its next tick.
    pub async fn create_heartbeat(
        &self,
        org: Uuid,
        spec: HeartbeatSpec,
        token_hash: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<HeartbeatRecord, DbError> {
        let now = now.trunc_subsecs(6);
        let id = Uuid::now_v7();
        let tracker = Tracker { expected_at: first_expected(&cadence(id, &spec)?, now), ..Default::default() };
        let model = monitor_heartbeats::ActiveModel {
            id: Set(id),
            org_id: Set(org),
            name: Set(spec.name.trim().to_owned()),
            token_hash: Set(token_hash.to_owned()),
            spec: Set(spec_json(&spec)?),
            is_active: Set(spec.is_active),
            expected_at: Set(tracker.expected_at),
            expected_started: Set(false),
            started_at: Set(None),
            run_id: Set(None),
            run_for: Set(None),
            last_ping_at: Set(None),
            last_success_at: Set(None),
            problem: Set(None),
            problem_note: Set(None),
            open_alert_id: Set(None),
            next_check_at: Set(hb::next_check(&spec, &tracker)),
            version: Set(0),
            created_by: Set(Some(actor.to_owned())),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.conn)
        .await?;
        model.try_into()
    }

    /// Replaces a check's specification (by `actor`). A new schedule awaits its next run afresh;
    /// a check paused (or rescheduled) has its problem cleared and its alert resolved.
    pub async fn update_heartbeat(
        &self,
        old: &HeartbeatRecord,
        spec: HeartbeatSpec,
        actor: &str,
    ) -> Result<HeartbeatRecord, DbError> {
        use monitor_heartbeats::Column as H;
        let now = Utc::now().trunc_subsecs(6);
        let rescheduled = spec.period_seconds != old.spec.period_seconds
            || spec.cron != old.spec.cron
            || spec.timezone != old.spec.timezone
            || (spec.is_active && !old.spec.is_active);
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        if !lock_check(&txn, old.id).await? {
            return Err(DbError::NotFound(format!("heartbeat {}", old.id)));
        }
        let model = monitor_heartbeats::Entity::find_by_id(old.id)
            .one(&txn)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("heartbeat {}", old.id)))?;
        let version = model.version;
        let current: HeartbeatRecord = model.try_into()?;
        let mut tracker = current.tracker.clone();
        if rescheduled || !spec.is_active {
            tracker.expected_at = first_expected(&cadence(old.id, &spec)?, now);
            tracker.expected_started = false;
            tracker.run_for = None;
            tracker.problem = None;
        }
        let why = if spec.is_active { "schedule changed" } else { "check paused" };
        let mut updated = current.clone();
        updated.spec = spec.clone();
        if !write_back(&txn, &updated, version, &tracker, Some(why.to_owned()), Some(actor), now).await? {
            return Err(DbError::Conflict("the check changed meanwhile; try again".to_owned()));
        }
        monitor_heartbeats::Entity::update_many()
            .col_expr(H::Name, Expr::value(spec.name.trim().to_owned()))
            .col_expr(H::Spec, Expr::value(spec_json(&spec)?))
            .col_expr(H::IsActive, Expr::value(spec.is_active))
            .col_expr(H::UpdatedAt, Expr::value(now))
            .filter(H::Id.eq(old.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.heartbeat(old.org_id, old.id).await?.ok_or_else(|| DbError::NotFound(format!("heartbeat {}", old.id)))
    }

    /// Deletes a check and its pings; its firing alert resolves (by `actor`).
    pub async fn delete_heartbeat(&self, rec: &HeartbeatRecord, actor: &str) -> Result<(), DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        if !lock_check(&txn, rec.id).await? {
            return Ok(());
        }
        let open = monitor_heartbeats::Entity::find_by_id(rec.id).one(&txn).await?.and_then(|m| m.open_alert_id);
        if let Some(alert) = open {
            resolve_alert(&txn, alert, Some(actor), Utc::now().trunc_subsecs(6)).await?;
        }
        monitor_heartbeats::Entity::delete_by_id(rec.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn heartbeat(&self, org: Uuid, id: Uuid) -> Result<Option<HeartbeatRecord>, DbError> {
        monitor_heartbeats::Entity::find_by_id(id)
            .filter(monitor_heartbeats::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// A page of the organization's checks by id.
    pub async fn heartbeats(
        &self,
        org: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<HeartbeatRecord>, DbError> {
        use monitor_heartbeats::Column as H;
        let mut q = monitor_heartbeats::Entity::find().filter(H::OrgId.eq(org));
        if let Some(a) = after {
            q = q.filter(H::Id.gt(a));
        }
        q.order_by_asc(H::Id).limit(limit).all(&self.conn).await?.into_iter().map(TryInto::try_into).collect()
    }

    /// Replaces a check's ping token (the old URL stops working at once).
    pub async fn set_heartbeat_token(&self, id: Uuid, token_hash: &str) -> Result<(), DbError> {
        monitor_heartbeats::Entity::update_many()
            .col_expr(monitor_heartbeats::Column::TokenHash, Expr::value(token_hash.to_owned()))
            .filter(monitor_heartbeats::Column::Id.eq(id))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    /// A page of a check's pings, newest first, before the cursor `before` (a ping id).
    pub async fn heartbeat_pings(&self, id: Uuid, before: Option<i64>, limit: u64) -> Result<Vec<PingRecord>, DbError> {
        use monitor_heartbeat_pings::Column as P;
        let mut q = monitor_heartbeat_pings::Entity::find().filter(P::HeartbeatId.eq(id));
        if let Some(b) = before {
            q = q.filter(P::Id.lt(b));
        }
        Ok(q.order_by_desc(P::Id).limit(limit).all(&self.conn).await?.into_iter().map(Into::into).collect())
    }

    /// Records a ping for the check whose token hashes to `token_hash` and moves it (a paused check
    /// records the ping and stays as it is); `None` when no check has that token.
    pub async fn ping(
        &self,
        token_hash: &str,
        input: &PingInput,
        now: DateTime<Utc>,
    ) -> Result<Option<PingReceipt>, DbError> {
        use monitor_heartbeats::Column as H;
        let now = now.trunc_subsecs(6);
        for _ in 0..PING_ATTEMPTS {
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            // Take the row's write lock first (a no-op update): pings of one check queue here
            // instead of racing, and the read below sees the previous ping's commit.
            let locked = monitor_heartbeats::Entity::update_many()
                .col_expr(H::Version, Expr::col(H::Version))
                .filter(H::TokenHash.eq(token_hash))
                .exec(&txn)
                .await?;
            if locked.rows_affected == 0 {
                return Ok(None);
            }
            let Some(model) = monitor_heartbeats::Entity::find().filter(H::TokenHash.eq(token_hash)).one(&txn).await?
            else {
                return Ok(None);
            };
            let version = model.version;
            let active = model.is_active;
            let rec: HeartbeatRecord = model.try_into()?;
            let mut tracker = rec.tracker.clone();
            let outcome = if active {
                hb::on_ping(
                    &rec.spec,
                    &cadence(rec.id, &rec.spec)?,
                    &mut tracker,
                    input.kind,
                    input.run_id.as_deref(),
                    now,
                )
            } else {
                tracker.last_ping_at = Some(now);
                hb::PingOutcome { unexpected: false, duration: None, note: None }
            };
            if !write_back(&txn, &rec, version, &tracker, outcome.note.clone(), None, now).await? {
                txn.rollback().await?;
                continue;
            }
            let exit_code = match input.kind {
                PingKind::Exit(c) => Some(i32::from(c)),
                _ => None,
            };
            let body = input.body.as_ref().filter(|b| !b.is_empty()).map(|b| {
                let mut end = b.len().min(MAX_LOG_BYTES);
                while !b.is_char_boundary(end) {
                    end -= 1;
                }
                b[..end].to_owned()
            });
            monitor_heartbeat_pings::ActiveModel {
                heartbeat_id: Set(rec.id),
                at: Set(now),
                kind: Set(input.kind.as_str().to_owned()),
                exit_code: Set(exit_code),
                run_id: Set(input.run_id.clone()),
                duration_ms: Set(outcome.duration.map(|d| d.num_milliseconds())),
                unexpected: Set(outcome.unexpected),
                remote_addr: Set(input.remote_addr.clone()),
                body: Set(body),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
            trim_pings(&txn, rec.id).await?;
            txn.commit().await?;
            return Ok(Some(PingReceipt {
                heartbeat_id: rec.id,
                unexpected: outcome.unexpected,
                status: hb::status(&tracker),
            }));
        }
        Err(DbError::Conflict("the check is pinged too often at once; retry".to_owned()))
    }

    /// The sweep: every active check whose next deadline passed is moved by the passing of time.
    pub async fn sweep_heartbeats(&self, now: DateTime<Utc>) -> Result<SweepReport, DbError> {
        use monitor_heartbeats::Column as H;
        let now = now.trunc_subsecs(6);
        let due: Vec<Uuid> = monitor_heartbeats::Entity::find()
            .select_only()
            .column(H::Id)
            .filter(H::IsActive.eq(true))
            .filter(H::NextCheckAt.lte(now))
            .order_by_asc(H::NextCheckAt)
            .limit(5000)
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut report = SweepReport::default();
        for id in due {
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            if !lock_check(&txn, id).await? {
                continue;
            }
            let Some(model) = monitor_heartbeats::Entity::find_by_id(id).one(&txn).await? else { continue };
            let version = model.version;
            let rec: HeartbeatRecord = model.try_into()?;
            let mut tracker = rec.tracker.clone();
            let why = hb::on_tick(&rec.spec, &cadence(rec.id, &rec.spec)?, &mut tracker, now);
            let changed = why.is_some();
            // A ping that moved the row first wins; the next sweep looks again.
            if write_back(&txn, &rec, version, &tracker, why, None, now).await? {
                txn.commit().await?;
                report.changed += u64::from(changed);
            } else {
                txn.rollback().await?;
            }
        }
        Ok(report)
    }
}

/// Takes a check's write lock (a no-op update) before reading it: concurrent writers queue here,
/// and on SQLite a transaction that writes first never fails on a snapshot another write made
/// stale between its read and its write. False when the check is gone.
async fn lock_check(txn: &DatabaseTransaction, id: Uuid) -> Result<bool, DbError> {
    use monitor_heartbeats::Column as H;
    let locked = monitor_heartbeats::Entity::update_many()
        .col_expr(H::Version, Expr::col(H::Version))
        .filter(H::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(locked.rows_affected > 0)
}

/// Keeps the newest `PINGS_KEPT` pings of a check.
async fn trim_pings(txn: &DatabaseTransaction, id: Uuid) -> Result<(), DbError> {
    use monitor_heartbeat_pings::Column as P;
    let cutoff: Option<i64> = monitor_heartbeat_pings::Entity::find()
        .select_only()
        .column(P::Id)
        .filter(P::HeartbeatId.eq(id))
        .order_by_desc(P::Id)
        .offset(PINGS_KEPT)
        .limit(1)
        .into_tuple()
        .one(txn)
        .await?;
    if let Some(c) = cutoff {
        monitor_heartbeat_pings::Entity::delete_many()
            .filter(P::HeartbeatId.eq(id))
            .filter(P::Id.lte(c))
            .exec(txn)
            .await?;
    }
    Ok(())
}
