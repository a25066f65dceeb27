//! Monitoring's vocabulary: the job kinds of the monitor worker, what a check's outcome is (up or
//! down, and why: the error classes), the schedule arithmetic that keeps checks on absolute deadlines
//! spread over their interval, and the response-time histogram the rollups merge. No I/O.

pub mod alerts;
pub mod heartbeats;
pub mod metrics;
pub mod targets;
pub mod thresholds;

use std::fmt;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use targets::{Assertion, HttpMethod, TargetSpec, evaluate_assertion};

/// Checks one target now and returns its result (queue `monitor`; the API's manual check).
pub const CHECK_TARGET_KIND: &str = "monitor.check_target";
/// Rolls raw check results up into hourly and daily rows and trims raw results past their window
/// (built-in schedule).
pub const ROLLUP_KIND: &str = "monitor.rollup_results";

/// Whether a check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Up,
    Down,
}

impl CheckStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "up" => Ok(Self::Up),
            "down" => Ok(Self::Down),
            other => Err(format!("{other:?} is not one of up, down")),
        }
    }
}

/// Why a check failed: the step of the request that went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable, reset before a response).
    Connect,
    /// The TLS handshake failed (expired, untrusted or mismatched certificate, protocol error).
    Tls,
    /// No complete response within the target's timeout.
    Timeout,
    /// A response whose status code is not an accepted one.
    Status,
    /// The body failed the target's keyword or JSON-path assertion.
    Assertion,
    /// A response slower than the target's maximum response time.
    ResponseTime,
    /// Anything else (too many redirects, a body that could not be read).
    Other,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::Status,
        Self::Assertion,
        Self::ResponseTime,
        Self::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Assertion => "assertion",
            Self::ResponseTime => "response_time",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of {}", Self::ALL.map(|c| c.as_str()).join(", ")))
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first deadline of a target: its phase (a stable offset inside the interval, from `seed`, so
/// that ten thousand targets of one interval are spread evenly instead of all firing at :00) in the
/// first interval that has not started yet.
pub fn first_due(now: DateTime<Utc>, interval_secs: u32, seed: u128) -> DateTime<Utc> {
    let period = i64::from(interval_secs.max(1)) * 1000;
    let phase = (seed % period as u128) as i64;
    let now_ms = now.timestamp_millis();
    let mut due = now_ms - now_ms.rem_euclid(period) + phase;
    if due <= now_ms {
        due += period;
    }
    Utc.timestamp_millis_opt(due).single().unwrap_or(now)
}

/// The deadline after `due`: `due + interval`, still run (late) when it has just passed — a check
/// that took its whole timeout on a target whose timeout equals its interval ends a moment after
/// the next deadline, which must not be lost — unless it is a whole interval behind `now` (a worker
/// that was stopped): then the first `due + k × interval` ahead of `now`, so missed slots are
/// skipped rather than run in a burst. Deadlines are absolute: a slow check never pushes the next
/// one back (no drift).
pub fn next_due(due: DateTime<Utc>, interval_secs: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let period = Duration::seconds(i64::from(interval_secs.max(1)));
    let mut next = due + period;
    if next + period <= now {
        let behind = (now - next).num_milliseconds();
        let steps = behind / period.num_milliseconds() + 1;
        next += period * i32::try_from(steps).unwrap_or(i32::MAX);
    }
    next
}

/// Upper bounds (milliseconds) of the response-time histogram's buckets; the last bucket is open.
pub const HISTOGRAM_BOUNDS_MS: [u32; 21] = [
    5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 30_000, 60_000,
];

/// Response times counted per bucket: what the hourly and daily rollups store, so percentiles over
/// any window are a merge of rows rather than a scan of raw results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Histogram(Vec<u64>);

impl Default for Histogram {
    fn default() -> Self {
        Self(vec![0; HISTOGRAM_BOUNDS_MS.len() + 1])
    }
}

impl Histogram {
    pub fn record(&mut self, ms: f64) {
        let i = HISTOGRAM_BOUNDS_MS.iter().position(|b| ms <= f64::from(*b)).unwrap_or(HISTOGRAM_BOUNDS_MS.len());
        self.0[i] += 1;
    }

    /// Adds `other` (a row read back may be shorter or longer if the bounds ever change: extra
    /// buckets fold into the open one).
    pub fn merge(&mut self, other: &Histogram) {
        let last = self.0.len() - 1;
        for (i, n) in other.0.iter().enumerate() {
            self.0[i.min(last)] += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The upper bound of the bucket that holds quantile `q` (0–1), in milliseconds; `None` when empty.
    /// The open bucket reports the largest bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u32> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(HISTOGRAM_BOUNDS_MS[i.min(HISTOGRAM_BOUNDS_MS.len() - 1)]);
            }
        }
        HISTOGRAM_BOUNDS_MS.last().copied()
    }
}

/// The exact `q` quantile (nearest rank) of `sorted` response times.
pub fn exact_quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn deadlines_are_absolute_and_skip_missed_slots() {
        let due = at("2026-01-01T00:00:10Z");
        // Finished late, but before the next slot: the next slot is due + interval.
        assert_eq!(next_due(due, 60, at("2026-01-01T00:00:25Z")), at("2026-01-01T00:01:10Z"));
        // A worker down for 5 minutes: the next slot still on the same phase, ahead of now.
        assert_eq!(next_due(due, 60, at("2026-01-01T00:05:30Z")), at("2026-01-01T00:06:10Z"));
        // Just past the next slot (a check that took its whole interval): that slot still runs.
        assert_eq!(next_due(due, 60, at("2026-01-01T00:01:10.200Z")), at("2026-01-01T00:01:10Z"));
        assert_eq!(next_due(due, 60, at("2026-01-01T00:02:09Z")), at("2026-01-01T00:01:10Z"));
        // A whole interval behind: skipped, on the same phase.
        assert_eq!(next_due(due, 60, at("2026-01-01T00:02:10Z")), at("2026-01-01T00:03:10Z"));
    }

    #[test]
    fn first_deadlines_spread_over_the_interval() {
        let now = at("2026-01-01T00:00:00.500Z");
        let mut offsets: Vec<i64> = (0..600u128)
            .map(|i| {
                let d = first_due(now, 60, i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                assert!(d > now && d <= now + Duration::seconds(60), "{d}");
                d.timestamp_millis().rem_euclid(60_000) / 1000
            })
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert!(offsets.len() > 50, "600 targets should land on most of the 60 seconds: {}", offsets.len());
    }

    #[test]
    fn histogram_quantiles_merge() {
        let mut a = Histogram::default();
        for ms in [1.0, 4.0, 20.0, 20.0] {
            a.record(ms);
        }
        let mut b = Histogram::default();
        for ms in [120.0, 90_000.0] {
            b.record(ms);
        }
        a.merge(&b);
        assert_eq!(a.count(), 6);
        assert_eq!(a.quantile_ms(0.5), Some(25));
        assert_eq!(a.quantile_ms(0.8), Some(150));
        assert_eq!(a.quantile_ms(1.0), Some(60_000));
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
        assert_eq!(exact_quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(exact_quantile(&[1.0, 2.0, 3.0, 4.0], 0.99), Some(4.0));
    }

    #[test]
    fn error_classes_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(c.as_str()), Ok(c));
        }
        assert!(ErrorClass::parse("nope").expect_err("fails").contains("dns"));
    }
}
