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
}
