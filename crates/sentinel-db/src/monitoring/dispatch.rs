//! The dispatcher's side of the targets table: claiming the deadlines due within a horizon under a
//! lease (so two monitor workers never run one deadline, and a killed worker's deadlines are claimed
//! again once their lease ends), and recording results in batches — a deadline's result is stored
//! once whatever happens, its target moves on to its next absolute deadline, and its latest state
//! and consecutive counts follow.

use std::collections::HashSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, Statement,
    TransactionTrait,
};
use sentinel_domain::monitoring::alerts::{AlertState, push_result};
use sentinel_domain::monitoring::{CheckStatus, ErrorClass, TargetSpec, next_due};
use serde_json::json;
use uuid::Uuid;

use super::MonitoringStore;
use super::transitions::{self, AlertChange, TargetAfter};
use crate::DbError;
use crate::entity::{monitor_check_results, monitor_targets};

/// One deadline a dispatcher holds: run it at `due_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedCheck {
    pub target_id: Uuid,
    pub org_id: Uuid,
    pub spec: TargetSpec,
    pub due_at: DateTime<Utc>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub target_id: Uuid,
    pub org_id: Uuid,
    /// The deadline it answers (a manual check's own start).
    pub due_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub response_ms: f64,
    pub status: CheckStatus,
    pub status_code: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub message: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    /// Run by an operator, outside the schedule: it does not move the deadline.
    pub manual: bool,
}

impl TryFrom<monitor_check_results::Model> for CheckResult {
    type Error = DbError;
    fn try_from(m: monitor_check_results::Model) -> Result<Self, DbError> {
        let bad = |e: String| DbError::Corrupt(format!("monitor result {} {}: {e}", m.target_id, m.due_at));
        Ok(Self {
            status: CheckStatus::parse(&m.status).map_err(bad)?,
            error_class: m.error_class.as_deref().map(ErrorClass::parse).transpose().map_err(bad)?,
            target_id: m.target_id,
            org_id: m.org_id,
            due_at: m.due_at,
            started_at: m.started_at,
            response_ms: m.response_ms,
            status_code: m.status_code.and_then(|c| u16::try_from(c).ok()),
            message: m.message,
            cert_expires_at: m.cert_expires_at,
            manual: m.manual,
        })
    }
}

/// What recording a batch did: each result's outcome, and the alert changes the results caused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recorded {
    pub outcomes: Vec<RecordOutcome>,
    pub changes: Vec<AlertChange>,
}

/// What recording one result did.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordOutcome {
    pub target_id: Uuid,
    pub due_at: DateTime<Utc>,
    /// False when this deadline already had a result (a re-run after a crash): nothing was counted.
    pub recorded: bool,
}

const RECORD_RESULTS_PG: &str = "INSERT INTO monitor_check_results \
     (target_id, due_at, org_id, started_at, response_ms, status, status_code, error_class, message, cert_expires_at, manual) \
     SELECT v.target_id, v.due_at, v.org_id, v.started_at, v.response_ms, v.status, v.status_code, v.error_class, \
     v.message, v.cert_expires_at, v.manual \
     FROM json_to_recordset($1::json) AS v(target_id uuid, due_at timestamptz, org_id uuid, started_at timestamptz, \
     response_ms double precision, status text, status_code integer, error_class text, message text, \
     cert_expires_at timestamptz, manual boolean) \
     WHERE EXISTS (SELECT 1 FROM monitor_targets t WHERE t.id = v.target_id) \
     ON CONFLICT (target_id, due_at) DO NOTHING RETURNING target_id, due_at";

// `next_due_at` moves only if it still is the deadline this result answers (an operator may have
// changed the interval meanwhile); the lease ends with it.
const UPDATE_TARGETS_PG: &str = "UPDATE monitor_targets AS t SET \
     next_due_at = CASE WHEN NOT v.manual AND t.next_due_at = v.due_at THEN v.next_due ELSE t.next_due_at END, \
     claimed_until = CASE WHEN NOT v.manual AND t.next_due_at = v.due_at THEN NULL ELSE t.claimed_until END, \
     claimed_by = CASE WHEN NOT v.manual AND t.next_due_at = v.due_at THEN NULL ELSE t.claimed_by END, \
     last_status = v.status, last_checked_at = v.started_at, last_error_class = v.error_class, \
     last_status_code = v.status_code, last_response_ms = v.response_ms, last_message = v.message, \
     cert_expires_at = COALESCE(v.cert_expires_at, t.cert_expires_at), \
     consecutive_failures = CASE WHEN v.status = 'down' THEN t.consecutive_failures + 1 ELSE 0 END, \
     consecutive_successes = CASE WHEN v.status = 'up' THEN t.consecutive_successes + 1 ELSE 0 END, \
     recent_results = ((t.recent_results << 1) | CASE WHEN v.status = 'down' THEN 1 ELSE 0 END) & 9223372036854775807 \
     FROM json_to_recordset($1::json) AS v(target_id uuid, due_at timestamptz, next_due timestamptz, manual boolean, \
     status text, started_at timestamptz, error_class text, status_code integer, response_ms double precision, \
     message text, cert_expires_at timestamptz) \
     WHERE t.id = v.target_id \
     RETURNING t.id, t.org_id, t.name, t.consecutive_failures, t.consecutive_successes, t.recent_results, \
     t.alert_state, t.open_alert_id";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl MonitoringStore {
    /// Claims for `owner` the active targets whose deadline is at or before `horizon` and that no
    /// live lease holds, oldest deadline first, at most `limit`. Each lease lasts until its deadline
    /// plus the target's timeout plus `grace`: if the owner dies, the deadline is claimed again
    /// (late, but once) after that.
    pub async fn claim_due(
        &self,
        owner: &str,
        horizon: DateTime<Utc>,
        grace: Duration,
        limit: u64,
    ) -> Result<Vec<ClaimedCheck>, DbError> {
        use monitor_targets::Column as C;
        let now = Utc::now().trunc_subsecs(6);
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let backend = txn.get_database_backend();
        let mut pick = Query::select();
        pick.columns([C::Id, C::OrgId, C::Spec, C::NextDueAt])
            .from(monitor_targets::Entity)
            .cond_where(
                Condition::all()
                    .add(C::IsActive.eq(true))
                    .add(C::NextDueAt.lte(horizon))
                    .add(Condition::any().add(C::ClaimedUntil.is_null()).add(C::ClaimedUntil.lt(now))),
            )
            .order_by(C::NextDueAt, sea_orm::Order::Asc)
            .limit(limit);
        if backend == DbBackend::Postgres {
            pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = txn.query_all(&pick).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let target_id: Uuid = row.try_get("", "id")?;
            let spec: serde_json::Value = row.try_get("", "spec")?;
            let spec: TargetSpec = serde_json::from_value(spec)
                .map_err(|e| DbError::Corrupt(format!("monitor target {target_id}: spec: {e}")))?;
            claimed.push(ClaimedCheck {
                target_id,
                org_id: row.try_get("", "org_id")?,
                spec,
                due_at: row.try_get("", "next_due_at")?,
            });
        }
        let until = |c: &ClaimedCheck| c.due_at + Duration::seconds(i64::from(c.spec.timeout_seconds)) + grace;
        if backend == DbBackend::Postgres && !claimed.is_empty() {
            let data: Vec<_> = claimed.iter().map(|c| json!({"id": c.target_id, "until": rfc3339(until(c))})).collect();
            let sql = "UPDATE monitor_targets AS t SET claimed_until = v.until, claimed_by = $2 \
                       FROM json_to_recordset($1::json) AS v(id uuid, until timestamptz) WHERE t.id = v.id";
            let values: Vec<sea_orm::Value> = vec![serde_json::Value::Array(data).to_string().into(), owner.into()];
            txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
        } else {
            for c in &claimed {
                monitor_targets::Entity::update_many()
                    .col_expr(C::ClaimedUntil, Expr::value(until(c)))
                    .col_expr(C::ClaimedBy, Expr::value(owner))
                    .filter(C::Id.eq(c.target_id))
                    .exec(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(claimed)
    }

    /// Gives back the leases `owner` holds on deadlines it will not run (a worker shutting down), so
    /// another worker claims them at once.
    pub async fn release_claims(&self, owner: &str, targets: &[Uuid]) -> Result<(), DbError> {
        use monitor_targets::Column as C;
        for chunk in targets.chunks(500) {
            monitor_targets::Entity::update_many()
                .col_expr(C::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
                .col_expr(C::ClaimedBy, Expr::value(Option::<String>::None))
                .filter(C::ClaimedBy.eq(owner))
                .filter(C::Id.is_in(chunk.iter().copied()))
                .exec(&self.conn)
                .await?;
        }
        Ok(())
    }

    /// Records results in one transaction: each deadline's result once (a second result for one
    /// deadline is dropped and reported `recorded: false`), each target moved to its next deadline
    /// after `due_at` (scheduled checks only) with its state and consecutive counts updated.
    pub async fn record_results(&self, results: &[CheckResult]) -> Result<Recorded, DbError> {
        let now = Utc::now();
        // Stored times have microseconds: compare what was sent with what comes back at that precision.
        let results: Vec<CheckResult> = results
            .iter()
            .map(|r| CheckResult {
                due_at: r.due_at.trunc_subsecs(6),
                started_at: r.started_at.trunc_subsecs(6),
                ..r.clone()
            })
            .collect();
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut recorded = Recorded::default();
        // One result per target per round, so each round's update sees every earlier one.
        let mut rest: Vec<&CheckResult> = results.iter().collect();
        while !rest.is_empty() {
            let mut seen = HashSet::new();
            let (round, later): (Vec<&CheckResult>, Vec<&CheckResult>) =
                rest.into_iter().partition(|r| seen.insert(r.target_id));
            let (outcomes, afters) = record_round(&txn, &round, now).await?;
            recorded.outcomes.extend(outcomes);
            recorded.changes.extend(transitions::apply(&txn, afters, now).await?);
            rest = later;
        }
        txn.commit().await?;
        Ok(recorded)
    }
}

/// One round's outcomes, and each recorded target's alerting inputs after it.
type Round<'a> = (Vec<RecordOutcome>, Vec<(TargetAfter, &'a CheckResult)>);

async fn record_round<'a>(
    txn: &DatabaseTransaction,
    round: &[&'a CheckResult],
    now: DateTime<Utc>,
) -> Result<Round<'a>, DbError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        let data: Vec<_> = round
            .iter()
            .map(|r| {
                json!({
                    "target_id": r.target_id, "due_at": rfc3339(r.due_at), "org_id": r.org_id,
                    "started_at": rfc3339(r.started_at), "response_ms": r.response_ms, "status": r.status.as_str(),
                    "status_code": r.status_code, "error_class": r.error_class.map(ErrorClass::as_str),
                    "message": r.message, "cert_expires_at": r.cert_expires_at.map(rfc3339), "manual": r.manual,
                })
            })
            .collect();
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            RECORD_RESULTS_PG,
            [serde_json::Value::Array(data).to_string().into()],
        );
        let mut inserted = HashSet::new();
        for row in txn.query_all_raw(stmt).await? {
            inserted.insert((row.try_get_by_index::<Uuid>(0)?, row.try_get_by_index::<DateTime<Utc>>(1)?));
        }
        let fresh: Vec<&&CheckResult> = round.iter().filter(|r| inserted.contains(&(r.target_id, r.due_at))).collect();
        let mut afters = Vec::new();
        if !fresh.is_empty() {
            let intervals = target_intervals(txn, fresh.iter().map(|r| r.target_id)).await?;
            let data: Vec<_> = fresh
                .iter()
                .map(|r| {
                    let every = intervals.get(&r.target_id).copied().unwrap_or(60);
                    json!({
                        "target_id": r.target_id, "due_at": rfc3339(r.due_at),
                        "next_due": rfc3339(next_due(r.due_at, every, now)), "manual": r.manual,
                        "status": r.status.as_str(), "started_at": rfc3339(r.started_at),
                        "error_class": r.error_class.map(ErrorClass::as_str), "status_code": r.status_code,
                        "response_ms": r.response_ms, "message": r.message,
                        "cert_expires_at": r.cert_expires_at.map(rfc3339),
                    })
                })
                .collect();
            let stmt = Statement::from_sql_and_values(
                DbBackend::Postgres,
                UPDATE_TARGETS_PG,
                [serde_json::Value::Array(data).to_string().into()],
            );
            let by_target: std::collections::HashMap<Uuid, &CheckResult> =
                fresh.iter().map(|r| (r.target_id, **r)).collect();
            for row in txn.query_all_raw(stmt).await? {
                let after = TargetAfter {
                    id: row.try_get_by_index(0)?,
                    org_id: row.try_get_by_index(1)?,
                    name: row.try_get_by_index(2)?,
                    failures: u32::try_from(row.try_get_by_index::<i32>(3)?).unwrap_or(0),
                    successes: u32::try_from(row.try_get_by_index::<i32>(4)?).unwrap_or(0),
                    recent: row.try_get_by_index(5)?,
                    alert_state: alert_state(&row.try_get_by_index::<String>(6)?)?,
                    open_alert_id: row.try_get_by_index(7)?,
                };
                if let Some(r) = by_target.get(&after.id) {
                    afters.push((after, *r));
                }
            }
        }
        let outcomes = round
            .iter()
            .map(|r| RecordOutcome {
                target_id: r.target_id,
                due_at: r.due_at,
                recorded: inserted.contains(&(r.target_id, r.due_at)),
            })
            .collect();
        return Ok((outcomes, afters));
    }
    let mut outcomes = Vec::with_capacity(round.len());
    let mut afters = Vec::new();
    for r in round {
        let after = record_one_portable(txn, r, now).await?;
        outcomes.push(RecordOutcome { target_id: r.target_id, due_at: r.due_at, recorded: after.is_some() });
        if let Some(after) = after {
            afters.push((after, *r));
        }
    }
    Ok((outcomes, afters))
}

fn alert_state(s: &str) -> Result<AlertState, DbError> {
    AlertState::parse(s).map_err(|e| DbError::Corrupt(format!("monitor target alert state: {e}")))
}

async fn target_intervals(
    txn: &DatabaseTransaction,
    ids: impl Iterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, u32>, DbError> {
    use monitor_targets::Column as C;
    use sea_orm::QuerySelect;
    let rows: Vec<(Uuid, i32)> = monitor_targets::Entity::find()
        .select_only()
        .columns([C::Id, C::CheckIntervalSeconds])
        .filter(C::Id.is_in(ids))
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows.into_iter().map(|(id, s)| (id, u32::try_from(s).unwrap_or(60))).collect())
}

/// One result on SQLite (the embedded store: one writer, statements in-process): `None` when its
/// deadline already had one.
async fn record_one_portable(
    txn: &DatabaseTransaction,
    r: &CheckResult,
    now: DateTime<Utc>,
) -> Result<Option<TargetAfter>, DbError> {
    use monitor_targets::Column as C;
    use sea_orm::ActiveValue::Set;
    // A target deleted while its check ran: nothing to record.
    let Some(target) = monitor_targets::Entity::find_by_id(r.target_id).one(txn).await? else { return Ok(None) };
    let row = monitor_check_results::ActiveModel {
        target_id: Set(r.target_id),
        due_at: Set(r.due_at),
        org_id: Set(r.org_id),
        started_at: Set(r.started_at),
        response_ms: Set(r.response_ms),
        status: Set(r.status.as_str().to_owned()),
        status_code: Set(r.status_code.map(i32::from)),
        error_class: Set(r.error_class.map(|c| c.as_str().to_owned())),
        message: Set(r.message.clone()),
        cert_expires_at: Set(r.cert_expires_at),
        manual: Set(r.manual),
    };
    let inserted = monitor_check_results::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                monitor_check_results::Column::TargetId,
                monitor_check_results::Column::DueAt,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    let down = r.status == CheckStatus::Down;
    let after = TargetAfter {
        id: target.id,
        org_id: target.org_id,
        name: target.name.clone(),
        failures: if down { u32::try_from(target.consecutive_failures).unwrap_or(0) + 1 } else { 0 },
        successes: if down { 0 } else { u32::try_from(target.consecutive_successes).unwrap_or(0) + 1 },
        recent: push_result(target.recent_results, down),
        alert_state: alert_state(&target.alert_state)?,
        open_alert_id: target.open_alert_id,
    };
    let mut update = monitor_targets::Entity::update_many()
        .col_expr(C::LastStatus, Expr::value(r.status.as_str()))
        .col_expr(C::LastCheckedAt, Expr::value(r.started_at))
        .col_expr(C::LastErrorClass, Expr::value(r.error_class.map(ErrorClass::as_str)))
        .col_expr(C::LastStatusCode, Expr::value(r.status_code.map(i32::from)))
        .col_expr(C::LastResponseMs, Expr::value(r.response_ms))
        .col_expr(C::LastMessage, Expr::value(r.message.clone()))
        .col_expr(C::ConsecutiveFailures, Expr::value(i32::try_from(after.failures).unwrap_or(i32::MAX)))
        .col_expr(C::ConsecutiveSuccesses, Expr::value(i32::try_from(after.successes).unwrap_or(i32::MAX)))
        .col_expr(C::RecentResults, Expr::value(after.recent));
    if r.cert_expires_at.is_some() {
        update = update.col_expr(C::CertExpiresAt, Expr::value(r.cert_expires_at));
    }
    if !r.manual && target.next_due_at == r.due_at {
        let every = u32::try_from(target.check_interval_seconds).unwrap_or(60);
        update = update
            .col_expr(C::NextDueAt, Expr::value(next_due(r.due_at, every, now)))
            .col_expr(C::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(C::ClaimedBy, Expr::value(Option::<String>::None));
    }
    update.filter(C::Id.eq(r.target_id)).exec(txn).await?;
    Ok(Some(after))
}
