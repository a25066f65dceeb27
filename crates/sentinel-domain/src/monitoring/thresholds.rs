//! Thresholds on metric instances (the seed's `thresholds/default`): for a numeric metric, a
//! comparison with a warning and a critical level; for a boolean or string one, the value it must
//! have. What a sample's level is, and when a series that stopped arriving is `nodata` rather than
//! resolved. No I/O.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::metrics::MetricKind;
use crate::backups::FieldProblem;

/// How a numeric value is compared with its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Above the level is bad (load, latency).
    Above,
    /// Below the level is bad (free disk, throughput).
    Below,
}

/// A metric instance's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Threshold {
    Numeric {
        comparison: Comparison,
        #[serde(default)]
        warning: Option<f64>,
        #[serde(default)]
        critical: Option<f64>,
    },
    /// A boolean or string metric must equal `expected`; anything else is critical.
    Expected { expected: Value },
}

/// A sample's level against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

impl Threshold {
    /// Every problem of the threshold for a metric of `kind`, each naming its field.
    pub fn check(&self, kind: MetricKind) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        match (self, kind) {
            (Threshold::Numeric { warning, critical, comparison }, MetricKind::Numeric) => {
                if warning.is_none() && critical.is_none() {
                    out.push(("warning".to_owned(), "give a warning level, a critical level or both".to_owned()));
                }
                for (field, v) in [("warning", warning), ("critical", critical)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        out.push((field.to_owned(), "must be a finite number".to_owned()));
                    }
                }
                if let (Some(w), Some(c)) = (warning, critical) {
                    let ordered = match comparison {
                        Comparison::Above => w <= c,
                        Comparison::Below => w >= c,
                    };
                    if !ordered {
                        out.push((
                            "critical".to_owned(),
                            "must be at least as far past the warning level as the comparison goes".to_owned(),
                        ));
                    }
                }
            }
            (Threshold::Numeric { .. }, _) => {
                out.push(("kind".to_owned(), "a numeric threshold needs a numeric metric".to_owned()));
            }
            (Threshold::Expected { expected }, MetricKind::Boolean) if !expected.is_boolean() => {
                out.push(("expected".to_owned(), "true or false for a boolean metric".to_owned()));
            }
            (Threshold::Expected { expected }, MetricKind::String) if !expected.is_string() => {
                out.push(("expected".to_owned(), "a string for a string metric".to_owned()));
            }
            (Threshold::Expected { .. }, MetricKind::Numeric) => {
                out.push(("kind".to_owned(), "a numeric metric takes a numeric threshold".to_owned()));
            }
            (Threshold::Expected { .. }, _) => {}
        }
        out
    }

    /// The level of `value`.
    pub fn level(&self, value: &Value) -> Level {
        match self {
            Threshold::Numeric { comparison, warning, critical } => {
                let Some(v) = value.as_f64() else { return Level::Critical };
                let past = |level: &Option<f64>| {
                    level.is_some_and(|l| match comparison {
                        Comparison::Above => v > l,
                        Comparison::Below => v < l,
                    })
                };
                if past(critical) {
                    Level::Critical
                } else if past(warning) {
                    Level::Warning
                } else {
                    Level::Ok
                }
            }
            Threshold::Expected { expected } => {
                if value == expected {
                    Level::Ok
                } else {
                    Level::Critical
                }
            }
        }
    }
}

/// Where a metric instance stands: its level against its threshold, or `nodata` once its series
/// stopped arriving (never "resolved" by silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricState {
    Ok,
    Warning,
    Critical,
    Nodata,
}

impl MetricState {
    pub const ALL: [MetricState; 4] = [Self::Ok, Self::Warning, Self::Critical, Self::Nodata];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Nodata => "nodata",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of ok, warning, critical, nodata"))
    }
}

impl From<Level> for MetricState {
    fn from(l: Level) -> Self {
        match l {
            Level::Ok => Self::Ok,
            Level::Warning => Self::Warning,
            Level::Critical => Self::Critical,
        }
    }
}

/// What a metric instance's alert should be, from its state and switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricAlert {
    /// No alert: the level is fine, or the operator switched alerting off or paused the metric.
    None,
    /// A firing alert of this severity.
    Firing { critical: bool, nodata: bool },
}

/// The state a metric is in now: `nodata` when its last sample is older than `nodata_after`,
/// otherwise its latest value's level (`ok` without a threshold).
pub fn observe(
    threshold: Option<&Threshold>,
    last_value: Option<&Value>,
    last_at: Option<DateTime<Utc>>,
    nodata_after: Duration,
    now: DateTime<Utc>,
) -> MetricState {
    let Some(threshold) = threshold else { return MetricState::Ok };
    if is_nodata(last_at, Duration::zero(), nodata_after, now) || (last_at.is_some() && last_value.is_none()) {
        return MetricState::Nodata;
    }
    match last_value {
        Some(v) => threshold.level(v).into(),
        None => MetricState::Ok,
    }
}

/// The alert a metric in `state` should have. A nodata series that was alerting stays critical or
/// warning as it was (`previous`): silence never clears an alert.
pub fn alert_for(state: MetricState, previous: MetricState, alerting: bool, paused: bool) -> MetricAlert {
    if !alerting || paused {
        return MetricAlert::None;
    }
    match state {
        MetricState::Ok => MetricAlert::None,
        MetricState::Warning => MetricAlert::Firing { critical: false, nodata: false },
        MetricState::Critical => MetricAlert::Firing { critical: true, nodata: false },
        MetricState::Nodata => MetricAlert::Firing { critical: previous == MetricState::Critical, nodata: true },
    }
}

/// Whether a series whose newest sample is `last` has stopped arriving: no sample for three of its
/// usual periods (at least `floor`). Such a series is `nodata`, never "resolved".
pub fn is_nodata(last: Option<DateTime<Utc>>, period: Duration, floor: Duration, now: DateTime<Utc>) -> bool {
    match last {
        None => false,
        Some(at) => now - at > (period * 3).max(floor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_follow_the_comparison() {
        let load = Threshold::Numeric { comparison: Comparison::Above, warning: Some(0.7), critical: Some(0.9) };
        assert_eq!(load.level(&json!(0.5)), Level::Ok);
        assert_eq!(load.level(&json!(0.8)), Level::Warning);
        assert_eq!(load.level(&json!(0.95)), Level::Critical);
        let disk = Threshold::Numeric { comparison: Comparison::Below, warning: Some(20.0), critical: None };
        assert_eq!((disk.level(&json!(50)), disk.level(&json!(10))), (Level::Ok, Level::Warning));
        let nginx = Threshold::Expected { expected: json!(true) };
        assert_eq!((nginx.level(&json!(true)), nginx.level(&json!(false))), (Level::Ok, Level::Critical));
    }

    #[test]
    fn thresholds_are_checked_against_their_metric() {
        let reversed = Threshold::Numeric { comparison: Comparison::Above, warning: Some(0.9), critical: Some(0.7) };
        assert_eq!(reversed.check(MetricKind::Numeric)[0].0, "critical");
        let empty = Threshold::Numeric { comparison: Comparison::Above, warning: None, critical: None };
        assert_eq!(empty.check(MetricKind::Numeric)[0].0, "warning");
        assert_eq!(empty.check(MetricKind::Boolean)[0].0, "kind");
        let wrong = Threshold::Expected { expected: json!("yes") };
        assert_eq!(wrong.check(MetricKind::Boolean)[0].0, "expected");
        assert!(wrong.check(MetricKind::String).is_empty());
        assert_eq!(wrong.check(MetricKind::Numeric)[0].0, "kind");
    }

    #[test]
    fn a_stopped_series_is_nodata() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().expect("time");
        let minute = Duration::minutes(1);
        assert!(!is_nodata(Some(now - Duration::minutes(2)), minute, minute, now));
        assert!(is_nodata(Some(now - Duration::minutes(4)), minute, minute, now));
        assert!(!is_nodata(Some(now - Duration::minutes(4)), minute, Duration::minutes(10), now), "floor");
        assert!(!is_nodata(None, minute, minute, now), "never seen is not nodata");
    }

    #[test]
    fn a_metric_is_observed_and_alerts_follow_its_switches() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().expect("time");
        let five = Duration::minutes(5);
        let load = Threshold::Numeric { comparison: Comparison::Above, warning: Some(0.7), critical: Some(0.9) };
        let fresh = Some(now - Duration::minutes(1));
        assert_eq!(observe(Some(&load), Some(&json!(0.95)), fresh, five, now), MetricState::Critical);
        assert_eq!(observe(Some(&load), Some(&json!(0.8)), fresh, five, now), MetricState::Warning);
        assert_eq!(observe(None, Some(&json!(0.95)), fresh, five, now), MetricState::Ok, "no threshold");
        let stale = Some(now - Duration::minutes(6));
        assert_eq!(observe(Some(&load), Some(&json!(0.1)), stale, five, now), MetricState::Nodata);
        assert_eq!(
            alert_for(MetricState::Nodata, MetricState::Critical, true, false),
            MetricAlert::Firing { critical: true, nodata: true },
            "silence keeps a critical alert critical"
        );
        assert_eq!(alert_for(MetricState::Critical, MetricState::Ok, false, false), MetricAlert::None);
        assert_eq!(alert_for(MetricState::Critical, MetricState::Ok, true, true), MetricAlert::None);
        assert_eq!(alert_for(MetricState::Ok, MetricState::Critical, true, false), MetricAlert::None);
        assert_eq!(MetricState::parse("nodata"), Ok(MetricState::Nodata));
        assert!(MetricState::parse("resolved").is_err());
    }
}
