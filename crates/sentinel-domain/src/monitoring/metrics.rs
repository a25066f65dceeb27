//! Metric ingest's vocabulary: the batch an agent posts (its machine, its samples, when it sent
//! them), each sample's kind (numeric, boolean, string) and its value, and their validation with
//! each problem naming its field (`metrics[3].value`). No I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backups::FieldProblem;

/// Samples in one batch at most.
pub const MAX_SAMPLES: usize = 1000;

/// What kind of value a metric carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Numeric,
    Boolean,
    String,
}

impl MetricKind {
    pub const ALL: [MetricKind; 3] = [Self::Numeric, Self::Boolean, Self::String];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Numeric => "numeric",
            Self::Boolean => "boolean",
            Self::String => "string",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of {}", Self::ALL.map(|k| k.as_str()).join(", ")))
    }
}

/// A sample's value, checked against its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Number(f64),
    Text(String),
}

impl SampleValue {
    pub fn number(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(_) => None,
        }
    }

    /// Booleans and strings are stored as text (`true`/`false` for booleans).
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Number(_) => None,
            Self::Text(t) => Some(t),
        }
    }
}

/// The machine a batch comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineInfo {
    pub hostname: String,
    #[serde(default)]
    pub os: Option<String>,
}

/// One sample as posted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSample {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Value,
    #[serde(default)]
    pub unit: Option<String>,
}

/// A batch as posted (the seed's body).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub machine: MachineInfo,
    pub metrics: Vec<RawSample>,
    pub sent_at: DateTime<Utc>,
}

/// One checked sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub kind: MetricKind,
    pub value: SampleValue,
    pub unit: Option<String>,
}

/// A checked batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub hostname: String,
    pub os: Option<String>,
    pub samples: Vec<Sample>,
    pub sent_at: DateTime<Utc>,
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
}

impl RawBatch {
    /// The batch checked whole: every problem, each naming its field.
    pub fn check(self, now: DateTime<Utc>) -> Result<Batch, Vec<FieldProblem>> {
        let mut problems: Vec<FieldProblem> = Vec::new();
        let mut bad = |f: String, r: &str| problems.push((f, r.to_owned()));
        let hostname = self.machine.hostname.trim().to_ascii_lowercase();
        if !name_ok(&hostname, 253) {
            bad("machine.hostname".into(), "1 to 253 characters: letters, digits and . _ - : /");
        }
        let os = self.machine.os.map(|o| o.trim().to_owned()).filter(|o| !o.is_empty());
        if os.as_ref().is_some_and(|o| o.len() > 64 || o.chars().any(char::is_control)) {
            bad("machine.os".into(), "at most 64 characters");
        }
        if self.metrics.is_empty() {
            bad("metrics".into(), "at least one sample");
        }
        if self.metrics.len() > MAX_SAMPLES {
            bad("metrics".into(), "at most 1000 samples per batch");
        }
        if self.sent_at > now + chrono::Duration::minutes(10) {
            bad("sent_at".into(), "more than 10 minutes in the future: check the agent's clock");
        }
        let mut samples = Vec::with_capacity(self.metrics.len());
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.metrics.into_iter().enumerate() {
            let at = |f: &str| format!("metrics[{i}].{f}");
            if !name_ok(&m.name, 128) {
                bad(at("name"), "1 to 128 characters: letters, digits and . _ - : /");
            } else if !seen.insert(m.name.clone()) {
                bad(at("name"), "appears twice in the batch");
            }
            if m.unit.as_ref().is_some_and(|u| u.len() > 32 || u.chars().any(char::is_control)) {
                bad(at("unit"), "at most 32 characters");
            }
            let kind = match MetricKind::parse(&m.kind) {
                Ok(k) => k,
                Err(e) => {
                    bad(at("type"), &e);
                    continue;
                }
            };
            let value = match (kind, &m.value) {
                (MetricKind::Numeric, Value::Number(n)) => {
                    n.as_f64().filter(|f| f.is_finite()).map(SampleValue::Number)
                }
                (MetricKind::Boolean, Value::Bool(b)) => Some(SampleValue::Text(b.to_string())),
                (MetricKind::String, Value::String(s)) if s.len() <= 1024 => Some(SampleValue::Text(s.clone())),
                _ => None,
            };
            let Some(value) = value else {
                let want = match kind {
                    MetricKind::Numeric => "a finite number for a numeric metric",
                    MetricKind::Boolean => "true or false for a boolean metric",
                    MetricKind::String => "a string of at most 1024 bytes for a string metric",
                };
                bad(at("value"), want);
                continue;
            };
            samples.push(Sample { name: m.name, kind, value, unit: m.unit });
        }
        if problems.is_empty() { Ok(Batch { hostname, os, samples, sent_at: self.sent_at }) } else { Err(problems) }
    }
}

/// The idempotency key of a batch (the seed's `X-Ingest-Id`): 1 to 128 visible ASCII characters.
pub fn check_ingest_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("1 to 128 visible ASCII characters (a UUID, say)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: serde_json::Value) -> RawBatch {
        serde_json::from_value(v).expect("shape")
    }

    #[test]
    fn the_seed_batch_is_accepted() {
        let b = raw(serde_json::json!({
            "machine": {"hostname": "web-01", "os": "linux"},
            "metrics": [
                {"name": "cpu_load", "type": "numeric", "value": 0.42, "unit": "ratio"},
                {"name": "service_nginx_ok", "type": "boolean", "value": true},
                {"name": "version", "type": "string", "value": "1.0.0"}
            ],
            "sent_at": "2025-01-01T00:00:00Z"
        }))
        .check(Utc::now())
        .expect("valid");
        assert_eq!(b.hostname, "web-01");
        assert_eq!(b.samples[0].value, SampleValue::Number(0.42));
        assert_eq!(b.samples[1].value.text(), Some("true"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let problems = raw(serde_json::json!({
            "machine": {"hostname": "bad host"},
            "metrics": [
                {"name": "cpu", "type": "numeric", "value": "high"},
                {"name": "cpu", "type": "numeric", "value": 1},
                {"name": "x", "type": "gauge", "value": 1},
                {"name": "ok", "type": "boolean", "value": 1}
            ],
            "sent_at": "2999-01-01T00:00:00Z"
        }))
        .check(Utc::now())
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "machine.hostname",
                "sent_at",
                "metrics[0].value",
                "metrics[1].name",
                "metrics[2].type",
                "metrics[3].value"
            ]
        );
        assert!(check_ingest_id("11111111-1111-1111-1111-111111111111").is_ok());
        assert!(check_ingest_id("").is_err() && check_ingest_id("has space").is_err());
    }
}
