//! Identifier newtypes: job ids, job kinds and queue names, parsed once at the boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string could not become one of the domain's identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} may only contain lowercase letters, digits, '.', '_' and '-' (got {value:?})")]
    BadCharacters { what: &'static str, value: String },
    #[error("{what} {value:?} is not a valid {expected}")]
    Invalid { what: &'static str, value: String, expected: &'static str },
}

/// A job's identity: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| ParseError::Invalid {
            what: "job id",
            value: s.chars().take(64).collect(),
            expected: "UUID",
        })
    }
}

fn parse_token(what: &'static str, value: &str, max: usize) -> Result<String, ParseError> {
    if value.is_empty() {
        return Err(ParseError::Empty { what });
    }
    if value.len() > max {
        return Err(ParseError::TooLong { what, max });
    }
    let ok = value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(ParseError::BadCharacters { what, value: value.chars().take(64).collect() });
    }
    Ok(value.to_owned())
}

macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, ParseError> {
                parse_token($what, value, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

token_newtype!(
    /// A registered kind of job, such as `demo.sleep` or `backup.run`.
    JobKind, "job kind", 64
);
token_newtype!(
    /// A named work queue; each worker pool consumes one or more queues.
    QueueName, "queue name", 48
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_reject_bad_characters_and_accept_dotted_names() {
        assert!(JobKind::parse("demo.sleep").is_ok());
        assert!(matches!(JobKind::parse("Demo"), Err(ParseError::BadCharacters { .. })));
        assert!(matches!(JobKind::parse(""), Err(ParseError::Empty { .. })));
        assert!(matches!(QueueName::parse(&"q".repeat(49)), Err(ParseError::TooLong { .. })));
        assert!(serde_json::from_str::<JobKind>("\"a b\"").is_err());
    }

    #[test]
    fn job_ids_round_trip_and_sort_by_creation() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<JobId>().ok(), Some(a));
        assert!("nope".parse::<JobId>().is_err());
    }
}
