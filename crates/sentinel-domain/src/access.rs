//! Roles and API key scopes: who may do what.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// A user's (or full API key's) role within its organization. Ordered: admin > operator > viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Runs and changes things.
    Operator,
    /// Everything, including users, API keys and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::Admin, Self::Operator, Self::Viewer];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    /// Whether this role includes everything `required` may do.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| ParseError::Invalid {
            what: "role",
            value: s.chars().take(32).collect(),
            expected: "admin, operator or viewer",
        })
    }
}

/// What an API key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Everything its role allows.
    Full,
    /// Only the ingestion endpoints agents push metrics and heartbeats to.
    Ingest,
}

impl KeyScope {
    pub const ALL: [KeyScope; 2] = [Self::Full, Self::Ingest];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Ingest => "ingest",
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyScope {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| ParseError::Invalid {
            what: "scope",
            value: s.chars().take(32).collect(),
            expected: "full or ingest",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert_eq!("ingest".parse::<KeyScope>().ok(), Some(KeyScope::Ingest));
    }
}
