//! Bounded storage for check results: the rollup sweep folds each settled hour of raw results into
//! one row per target (checks, successes, response-time sum, exact p50/p95/p99 and a histogram), each
//! finished day of hours into a daily row, and trims raw results past their window and hourly rows
//! past the longest hourly window. Uptime over 24 h / 7 d / 30 d / 1 y reads those rows plus the raw
//! results the sweep has not reached, so it is exact and never double counts.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use sentinel_domain::monitoring::{Histogram, exact_quantile};
use uuid::Uuid;

use super::MonitoringStore;
use crate::DbError;
use crate::entity::{monitor_check_results, monitor_ingests, monitor_rollups, monitor_samples, monitor_sweeps};

const HOURLY: &str = "hour";
const DAILY: &str = "day";
/// Hourly rows are kept this long (the 30-day window plus slack); daily rows for `DAILY_KEEP`.
const HOURLY_KEEP_DAYS: i64 = 35;
const DAILY_KEEP_DAYS: i64 = 400;
/// Hours rolled up per sweep at most (a sweep catching up after a long stop works in steps).
const HOURS_PER_SWEEP: usize = 48;

/// What one rollup sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupReport {
    pub hours: usize,
    pub days: usize,
    pub raw_deleted: u64,
    pub rollups_deleted: u64,
    /// Metric samples past the raw window, and ingest keys past a day.
    pub samples_deleted: u64,
}

/// A window uptime is reported over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UptimeWindow {
    Day,
    Week,
    Month,
    Year,
}

impl UptimeWindow {
    pub const ALL: [UptimeWindow; 4] = [Self::Day, Self::Week, Self::Month, Self::Year];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::Year => "1y",
        }
    }

    fn length(self) -> Duration {
        match self {
            Self::Day => Duration::hours(24),
            Self::Week => Duration::days(7),
            Self::Month => Duration::days(30),
            Self::Year => Duration::days(365),
        }
    }
}

/// Uptime and response times of one target over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Uptime {
    pub window: UptimeWindow,
    pub checks: u64,
    pub up: u64,
    /// `None` before the first check.
    pub uptime_percent: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Percentiles at the histogram's bucket resolution (sentinel_domain::monitoring::HISTOGRAM_BOUNDS_MS).
    pub p50_ms: Option<u32>,
    pub p95_ms: Option<u32>,
    pub p99_ms: Option<u32>,
}

#[derive(Default)]
struct Tally {
    checks: u64,
    up: u64,
    sum_ms: f64,
    histogram: Histogram,
    times: Vec<f64>,
}

impl Tally {
    fn add(&mut self, up: bool, ms: f64) {
        self.checks += 1;
        self.up += u64::from(up);
        self.sum_ms += ms;
        self.histogram.record(ms);
        self.times.push(ms);
    }

    fn merge_row(&mut self, row: &monitor_rollups::Model) {
        self.checks += u64::try_from(row.checks).unwrap_or(0);
        self.up += u64::try_from(row.up).unwrap_or(0);
        self.sum_ms += row.response_ms_sum;
        if let Ok(h) = serde_json::from_value::<Histogram>(row.histogram.clone()) {
            self.histogram.merge(&h);
        }
    }

    fn row(mut self, target_id: Uuid, period: &str, start: DateTime<Utc>, exact: bool) -> monitor_rollups::ActiveModel {
        self.times.sort_by(f64::total_cmp);
        let q = |q: f64| {
            if exact { exact_quantile(&self.times, q) } else { self.histogram.quantile_ms(q).map(f64::from) }
        };
        monitor_rollups::ActiveModel {
            target_id: Set(target_id),
            period: Set(period.to_owned()),
            bucket_start: Set(start),
            checks: Set(i64::try_from(self.checks).unwrap_or(i64::MAX)),
            up: Set(i64::try_from(self.up).unwrap_or(i64::MAX)),
            response_ms_sum: Set(self.sum_ms),
            p50_ms: Set(q(0.5)),
            p95_ms: Set(q(0.95)),
            p99_ms: Set(q(0.99)),
            histogram: Set(serde_json::to_value(&self.histogram).unwrap_or_default()),
        }
    }

    fn uptime(self, window: UptimeWindow) -> Uptime {
        let h = &self.histogram;
        Uptime {
            window,
            checks: self.checks,
            up: self.up,
            uptime_percent: (self.checks > 0).then(|| self.up as f64 * 100.0 / self.checks as f64),
            mean_ms: (self.checks > 0).then(|| self.sum_ms / self.checks as f64),
            p50_ms: h.quantile_ms(0.5),
            p95_ms: h.quantile_ms(0.95),
            p99_ms: h.quantile_ms(0.99),
        }
    }
}

fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

fn day_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::days(1)).unwrap_or(t)
}

async fn upsert_rollups(conn: &impl ConnectionTrait, rows: Vec<monitor_rollups::ActiveModel>) -> Result<(), DbError> {
    use monitor_rollups::Column as C;
    for chunk in rows.chunks(500) {
        monitor_rollups::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([C::TargetId, C::Period, C::BucketStart])
                    .update_columns([C::Checks, C::Up, C::ResponseMsSum, C::P50Ms, C::P95Ms, C::P99Ms, C::Histogram])
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

impl MonitoringStore {
    async fn sweep_mark(&self, name: &str) -> Result<Option<DateTime<Utc>>, DbError> {
        Ok(monitor_sweeps::Entity::find_by_id(name.to_owned()).one(&self.conn).await?.map(|m| m.done_until))
    }

    async fn set_sweep_mark(&self, conn: &impl ConnectionTrait, name: &str, at: DateTime<Utc>) -> Result<(), DbError> {
        let row = monitor_sweeps::ActiveModel { name: Set(name.to_owned()), done_until: Set(at) };
        monitor_sweeps::Entity::insert(row)
            .on_conflict(
                OnConflict::column(monitor_sweeps::Column::Name)
                    .update_column(monitor_sweeps::Column::DoneUntil)
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Rolls up every hour that ended at least `settle` ago (the longest timeout: a deadline's result
    /// can arrive that late), every finished day of rolled hours, and trims raw results older than
    /// `raw_window` that are rolled up.
    pub async fn roll_up(
        &self,
        now: DateTime<Utc>,
        settle: Duration,
        raw_window: Duration,
    ) -> Result<RollupReport, DbError> {
        use sea_orm::TransactionTrait;
        let mut report = RollupReport::default();
        let mut hour = match self.sweep_mark(HOURLY).await? {
            Some(t) => t,
            None => {
                let oldest: Option<DateTime<Utc>> = monitor_check_results::Entity::find()
                    .select_only()
                    .column(monitor_check_results::Column::DueAt)
                    .order_by_asc(monitor_check_results::Column::DueAt)
                    .into_tuple()
                    .one(&self.conn)
                    .await?;
                hour_floor(oldest.unwrap_or(now))
            }
        };
        while hour + Duration::hours(1) + settle <= now && report.hours < HOURS_PER_SWEEP {
            let end = hour + Duration::hours(1);
            let rows: Vec<(Uuid, String, f64)> = monitor_check_results::Entity::find()
                .select_only()
                .columns([
                    monitor_check_results::Column::TargetId,
                    monitor_check_results::Column::Status,
                    monitor_check_results::Column::ResponseMs,
                ])
                .filter(monitor_check_results::Column::DueAt.gte(hour))
                .filter(monitor_check_results::Column::DueAt.lt(end))
                .into_tuple()
                .all(&self.conn)
                .await?;
            let mut tallies: BTreeMap<Uuid, Tally> = BTreeMap::new();
            for (target, status, ms) in rows {
                tallies.entry(target).or_default().add(status == "up", ms);
            }
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            upsert_rollups(&txn, tallies.into_iter().map(|(t, tally)| tally.row(t, HOURLY, hour, true)).collect())
                .await?;
            self.set_sweep_mark(&txn, HOURLY, end).await?;
            txn.commit().await?;
            hour = end;
            report.hours += 1;
        }
        let mut day = match self.sweep_mark(DAILY).await? {
            Some(t) => t,
            None => day_floor(
                monitor_rollups::Entity::find()
                    .filter(monitor_rollups::Column::Period.eq(HOURLY))
                    .order_by_asc(monitor_rollups::Column::BucketStart)
                    .one(&self.conn)
                    .await?
                    .map_or(hour, |r| r.bucket_start),
            ),
        };
        while day + Duration::days(1) <= hour {
            let end = day + Duration::days(1);
            let hours = monitor_rollups::Entity::find()
                .filter(monitor_rollups::Column::Period.eq(HOURLY))
                .filter(monitor_rollups::Column::BucketStart.gte(day))
                .filter(monitor_rollups::Column::BucketStart.lt(end))
                .all(&self.conn)
                .await?;
            let mut tallies: BTreeMap<Uuid, Tally> = BTreeMap::new();
            for row in &hours {
                tallies.entry(row.target_id).or_default().merge_row(row);
            }
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            upsert_rollups(&txn, tallies.into_iter().map(|(t, tally)| tally.row(t, DAILY, day, false)).collect())
                .await?;
            self.set_sweep_mark(&txn, DAILY, end).await?;
            txn.commit().await?;
            day = end;
            report.days += 1;
        }
        let raw_cutoff = (now - raw_window).min(hour);
        report.raw_deleted = monitor_check_results::Entity::delete_many()
            .filter(monitor_check_results::Column::DueAt.lt(raw_cutoff))
            .exec(&self.conn)
            .await?
            .rows_affected;
        let hourly_cutoff = (now - Duration::days(HOURLY_KEEP_DAYS)).min(day);
        report.rollups_deleted = monitor_rollups::Entity::delete_many()
            .filter(monitor_rollups::Column::Period.eq(HOURLY))
            .filter(monitor_rollups::Column::BucketStart.lt(hourly_cutoff))
            .exec(&self.conn)
            .await?
            .rows_affected
            + monitor_rollups::Entity::delete_many()
                .filter(monitor_rollups::Column::Period.eq(DAILY))
                .filter(monitor_rollups::Column::BucketStart.lt(now - Duration::days(DAILY_KEEP_DAYS)))
                .exec(&self.conn)
                .await?
                .rows_affected;
        report.samples_deleted = monitor_samples::Entity::delete_many()
            .filter(monitor_samples::Column::At.lt(now - raw_window))
            .exec(&self.conn)
            .await?
            .rows_affected;
        // A replay is recognised for a day: agents retry within minutes.
        monitor_ingests::Entity::delete_many()
            .filter(monitor_ingests::Column::ReceivedAt.lt(now - Duration::days(1)))
            .exec(&self.conn)
            .await?;
        Ok(report)
    }

    /// A target's uptime and response times over 24 h, 7 d, 30 d and 1 y, at hour resolution (a
    /// year's window at day resolution).
    pub async fn uptime(&self, target: Uuid, now: DateTime<Utc>) -> Result<Vec<Uptime>, DbError> {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let hour_done = self.sweep_mark(HOURLY).await?.unwrap_or(epoch);
        let day_done = self.sweep_mark(DAILY).await?.unwrap_or(epoch);
        let rollups = |period: &'static str, from: DateTime<Utc>, to: DateTime<Utc>| {
            monitor_rollups::Entity::find()
                .filter(monitor_rollups::Column::TargetId.eq(target))
                .filter(monitor_rollups::Column::Period.eq(period))
                .filter(monitor_rollups::Column::BucketStart.gte(from))
                .filter(monitor_rollups::Column::BucketStart.lt(to))
                .all(&self.conn)
        };
        let raw: Vec<(DateTime<Utc>, String, f64)> = monitor_check_results::Entity::find()
            .select_only()
            .columns([
                monitor_check_results::Column::DueAt,
                monitor_check_results::Column::Status,
                monitor_check_results::Column::ResponseMs,
            ])
            .filter(monitor_check_results::Column::TargetId.eq(target))
            .filter(monitor_check_results::Column::DueAt.gte(hour_done.max(now - Duration::days(365))))
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut out = Vec::new();
        for window in UptimeWindow::ALL {
            let from = now - window.length();
            let mut tally = Tally::default();
            let hours_from = if window == UptimeWindow::Year {
                let day_from = day_floor(from);
                for row in rollups(DAILY, day_from, day_done).await? {
                    tally.merge_row(&row);
                }
                day_done.max(day_from)
            } else {
                hour_floor(from)
            };
            for row in rollups(HOURLY, hours_from, hour_done).await? {
                tally.merge_row(&row);
            }
            for (_, status, ms) in raw.iter().filter(|(due, ..)| *due >= from.max(hour_done)) {
                tally.add(status == "up", *ms);
            }
            out.push(tally.uptime(window));
        }
        Ok(out)
    }
}

impl MonitoringStore {
    /// Every raw result (scheduled or manual) whose deadline is in `[from, to)`, by deadline; for
    /// exports and the monitoring benchmark.
    pub async fn results_due_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<super::CheckResult>, DbError> {
        use monitor_check_results::Column as C;
        monitor_check_results::Entity::find()
            .filter(C::DueAt.gte(from))
            .filter(C::DueAt.lt(to))
            .order_by_asc(C::DueAt)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// Bytes the raw results and the rollups take on disk, with their indexes (PostgreSQL; `None`
    /// on SQLite, whose file is shared by every table).
    pub async fn storage_bytes(&self) -> Result<Option<(i64, i64)>, DbError> {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_total_relation_size('monitor_check_results')::bigint AS raw, \
                 pg_total_relation_size('monitor_rollups')::bigint AS rollups",
            ))
            .await?;
        Ok(row.map(|r| (r.try_get::<i64>("", "raw").unwrap_or(0), r.try_get::<i64>("", "rollups").unwrap_or(0))))
    }
}

impl MonitoringStore {
    /// Fills `days` of hourly and daily rollups (60 checks an hour, one down, 42 ms) for every target
    /// of `org`, one statement per period, then refreshes the planner's statistics: the history a
    /// load test of a month-old installation needs (PostgreSQL only).
    pub async fn synthetic_rollups(&self, org: Uuid, days: u32, histogram: &Histogram) -> Result<(), DbError> {
        use sea_orm::{DbBackend, Statement};
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return Err(DbError::Conflict("synthetic rollups are written on PostgreSQL only".to_owned()));
        }
        let histogram = serde_json::to_string(histogram).map_err(|e| DbError::Corrupt(e.to_string()))?;
        for (period, step, count) in [(HOURLY, "1 hour", days * 24), (DAILY, "1 day", days)] {
            let sql = format!(
                "INSERT INTO monitor_rollups (target_id, period, bucket_start, checks, up, response_ms_sum, p50_ms, \
                 p95_ms, p99_ms, histogram) SELECT t.id, $1, date_trunc('hour', now()) - g * interval '{step}', 60, 59, \
                 2520.0, 42.0, 50.0, 50.0, $2::json FROM monitor_targets t CROSS JOIN generate_series(1, {count}) g \
                 WHERE t.org_id = $3"
            );
            let values: Vec<sea_orm::Value> = vec![period.into(), histogram.clone().into(), org.into()];
            self.conn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
        }
        self.conn.execute_unprepared("ANALYZE").await?;
        Ok(())
    }
}
