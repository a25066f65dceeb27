//! The inventory's vocabulary: a server's status and its legal changes, labels and label selectors,
//! and the validation of every field a server has (address, SSH port and user, region, host keys).

mod host_key;
pub mod import;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use host_key::{HostKey, HostKeyError};

use crate::ParseError;

/// Where a server is in its life. `available → reserved → configured | error`; `provisioning` while a
/// run holds it; `retired` when it leaves the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Available,
    Reserved,
    Provisioning,
    Configured,
    Error,
    Retired,
}

/// A status change that the server lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a server cannot go from {from} to {to}")]
pub struct StatusChangeError {
    pub from: ServerStatus,
    pub to: ServerStatus,
}

impl ServerStatus {
    pub const ALL: [ServerStatus; 6] =
        [Self::Available, Self::Reserved, Self::Provisioning, Self::Configured, Self::Error, Self::Retired];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::Provisioning => "provisioning",
            Self::Configured => "configured",
            Self::Error => "error",
            Self::Retired => "retired",
        }
    }

    /// The one place that says which status changes are legal.
    pub fn can_become(self, next: ServerStatus) -> bool {
        use ServerStatus::*;
        matches!(
            (self, next),
            (Available, Reserved | Provisioning | Configured | Error | Retired)
                | (Reserved, Available | Provisioning | Configured | Error)
                // A run ends: its outcome, or back to where it was when it was cancelled.
                | (Provisioning, Available | Reserved | Configured | Error)
                | (Configured, Available | Reserved | Provisioning | Error | Retired)
                | (Error, Available | Reserved | Provisioning | Configured | Retired)
                | (Retired, Available)
        )
    }

    pub fn transition(self, next: ServerStatus) -> Result<ServerStatus, StatusChangeError> {
        if self == next || self.can_become(next) { Ok(next) } else { Err(StatusChangeError { from: self, to: next }) }
    }

    /// Statuses only the system sets: a reservation (`POST /servers/reserve`) or a run.
    pub const fn is_system_managed(self) -> bool {
        matches!(self, Self::Reserved | Self::Provisioning)
    }

    /// Statuses in which a server is held (by a reservation or a run) and cannot be deleted.
    pub const fn is_held(self) -> bool {
        matches!(self, Self::Reserved | Self::Provisioning)
    }
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServerStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| ParseError::Invalid {
            what: "server status",
            value: s.chars().take(32).collect(),
            expected: "available, reserved, provisioning, configured, error or retired",
        })
    }
}

/// What holds a server's one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseKind {
    /// `POST /servers/reserve`: held for a deployment until released or expired.
    Reservation,
    /// A provisioning run holds the server while it runs.
    Run,
}

impl LeaseKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reservation => "reservation",
            Self::Run => "run",
        }
    }
}

impl FromStr for LeaseKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reservation" => Ok(Self::Reservation),
            "run" => Ok(Self::Run),
            _ => Err(ParseError::Invalid {
                what: "lease kind",
                value: s.chars().take(32).collect(),
                expected: "reservation or run",
            }),
        }
    }
}

/// Reservation lifetimes: default one hour, at most 30 days.
pub const DEFAULT_RESERVATION_TTL_SECS: u64 = 3600;
pub const MAX_RESERVATION_TTL_SECS: u64 = 30 * 86_400;

/// Labels: key → value, both restricted so that a selector and the stored index never need escaping.
pub type Labels = BTreeMap<String, String>;

pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 128;

fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

/// Checks one label key.
pub fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a label key must not be empty".into());
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(format!("label key {key:?} is longer than {MAX_LABEL_KEY} characters"));
    }
    if !key.starts_with(|c: char| c.is_ascii_alphanumeric()) || !key.chars().all(label_char) {
        return Err(format!(
            "label key {key:?} must start with a letter or digit and contain only letters, digits, '.', '_', '-' and '/'"
        ));
    }
    Ok(())
}

/// Checks one label value (may be empty).
pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_LABEL_VALUE {
        return Err(format!("the value of label {key:?} is longer than {MAX_LABEL_VALUE} characters"));
    }
    if !value.chars().all(|c| label_char(c) || c == ':' || c == '@' || c == '+') {
        return Err(format!(
            "the value of label {key:?} may contain only letters, digits, '.', '_', '-', '/', ':', '@' and '+'"
        ));
    }
    Ok(())
}

/// Checks a whole label map.
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in labels {
        check_label_key(k)?;
        check_label_value(k, v)?;
    }
    Ok(())
}

/// Parses labels written `k=v;k=v` (the CSV form). Empty input is no labels.
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("{part:?} is not key=value"));
        };
        let (k, v) = (k.trim(), v.trim());
        if labels.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("label {k:?} is given twice"));
        }
    }
    check_labels(&labels)?;
    Ok(labels)
}

/// The stored, searchable form of labels: `,k=v,k=v,` (keys sorted). Selectors match it with `LIKE`,
/// which is exact because neither `,` nor `=` can appear in a key or value.
pub fn label_index(labels: &Labels) -> String {
    let mut s = String::from(",");
    for (k, v) in labels {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push(',');
    }
    s
}

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelTerm {
    /// `key=value`
    Equals(String, String),
    /// `key!=value` (also true when the key is absent)
    NotEquals(String, String),
    /// `key`: the label is present
    Exists(String),
    /// `!key`: the label is absent
    Absent(String),
}

/// A label selector such as `env=prod,role=web,!decommissioning` (every term must hold).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector(pub Vec<LabelTerm>);

impl LabelSelector {
    /// Parses `term,term,…` strictly (no spaces, no empty terms; the empty string selects all), so
    /// the accepted language is exactly the documented pattern.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        let mut terms = Vec::new();
        for part in text.split(',') {
            let term = if let Some(k) = part.strip_prefix('!') {
                LabelTerm::Absent(k.to_owned())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelTerm::NotEquals(k.to_owned(), v.to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelTerm::Equals(k.to_owned(), v.to_owned())
            } else {
                LabelTerm::Exists(part.to_owned())
            };
            match &term {
                LabelTerm::Equals(k, v) | LabelTerm::NotEquals(k, v) => {
                    check_label_key(k)?;
                    check_label_value(k, v)?;
                }
                LabelTerm::Exists(k) | LabelTerm::Absent(k) => check_label_key(k)?,
            }
            terms.push(term);
        }
        if terms.len() > MAX_LABELS {
            return Err(format!("at most {MAX_LABELS} terms"));
        }
        Ok(Self(terms))
    }

    /// Whether `labels` satisfy every term (the same rule the store applies in SQL).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|t| match t {
            LabelTerm::Equals(k, v) => labels.get(k) == Some(v),
            LabelTerm::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelTerm::Exists(k) => labels.contains_key(k),
            LabelTerm::Absent(k) => !labels.contains_key(k),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .0
            .iter()
            .map(|t| match t {
                LabelTerm::Equals(k, v) => format!("{k}={v}"),
                LabelTerm::NotEquals(k, v) => format!("{k}!={v}"),
                LabelTerm::Exists(k) => k.clone(),
                LabelTerm::Absent(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

pub const MAX_PROVIDER_REF: usize = 128;
pub const MAX_SERVER_NAME: usize = 128;
pub const MAX_REGION: usize = 64;
pub const MAX_NOTES: usize = 4096;
pub const MAX_SSH_USER: usize = 32;

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The provider's id of a server: 1–128 of letters, digits and `. _ : / @ + -`, starting with a
/// letter or digit (instance ids, host names and serial numbers all fit).
pub fn check_provider_ref(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_PROVIDER_REF {
        return Err(format!("must be 1 to {MAX_PROVIDER_REF} characters"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '+' | '-'))
    {
        return Err("must start with a letter or digit and contain only letters, digits and . _ : / @ + -".into());
    }
    Ok(())
}

/// A server's display name: 1–128 characters, no control characters, no surrounding whitespace.
pub fn check_server_name(s: &str) -> Result<(), String> {
    match s {
        "" => Err("must not be empty".into()),
        s if s.chars().count() > MAX_SERVER_NAME => Err(format!("longer than {MAX_SERVER_NAME} characters")),
        s if !printable(s) || s.trim() != s => {
            Err("must not contain control characters or start or end with whitespace".into())
        }
        _ => Ok(()),
    }
}

/// An IPv4 or IPv6 address, returned in its canonical form (`2001:db8::1`, not `2001:0db8:0::1`).
pub fn parse_ip(s: &str) -> Result<String, String> {
    s.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("{:?} is not an IPv4 or IPv6 address", s.chars().take(64).collect::<String>()))
}

/// A region: up to 64 letters, digits, '.', '_' and '-' (empty = none).
pub fn check_region(s: &str) -> Result<(), String> {
    if s.len() > MAX_REGION {
        return Err(format!("longer than {MAX_REGION} characters"));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err("may contain only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// A login name as OpenSSH and useradd accept it: lowercase letters, digits, '_', '.', '-', not
/// starting with a digit or '-'.
pub fn check_ssh_user(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_SSH_USER {
        return Err(format!("must be 1 to {MAX_SSH_USER} characters"));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "{s:?} is not a user name (lowercase letters, digits, '_', '.', '-'; starting with a letter or '_')"
        ));
    }
    Ok(())
}

/// An SSH port: 1 to 65535.
pub fn check_ssh_port(port: i64) -> Result<u16, String> {
    u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| "must be from 1 to 65535".to_owned())
}

/// What a reservation is for: 1–256 characters, no control characters, no surrounding whitespace.
pub fn check_purpose(s: &str) -> Result<(), String> {
    match s {
        "" => Err("must not be empty".into()),
        s if s.chars().count() > 256 => Err("longer than 256 characters".into()),
        s if !printable(s) || s.trim() != s => {
            Err("must not contain control characters or start or end with whitespace".into())
        }
        _ => Ok(()),
    }
}

/// Free-form notes: at most 4096 characters.
pub fn check_notes(s: &str) -> Result<(), String> {
    if s.chars().count() > MAX_NOTES { Err(format!("longer than {MAX_NOTES} characters")) } else { Ok(()) }
}

pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_SSH_USER: &str = "root";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_allows_only_legal_moves() {
        use ServerStatus::*;
        assert!(Available.can_become(Reserved));
        assert!(Reserved.can_become(Configured));
        assert!(Reserved.can_become(Error));
        assert!(Provisioning.can_become(Configured));
        assert!(!Retired.can_become(Reserved));
        assert!(!Retired.can_become(Provisioning));
        assert!(!Available.can_become(Available));
        assert_eq!(Available.transition(Available), Ok(Available));
        assert_eq!(Retired.transition(Configured), Err(StatusChangeError { from: Retired, to: Configured }));
        for s in ServerStatus::ALL {
            assert_eq!(s.as_str().parse::<ServerStatus>().ok(), Some(s));
        }
    }

    #[test]
    fn labels_parse_and_index_without_ambiguity() {
        let labels = parse_labels("role=web; env=prod").expect("labels");
        assert_eq!(label_index(&labels), ",env=prod,role=web,");
        assert!(parse_labels("env").is_err());
        assert!(parse_labels("env=prod;env=dev").is_err());
        assert!(parse_labels("e,nv=prod").is_err());
        assert!(parse_labels("env=pr,od").is_err());
        assert_eq!(parse_labels("").expect("none"), Labels::new());
    }

    #[test]
    fn selectors_match_like_the_store() {
        let labels = parse_labels("env=prod;role=web").expect("labels");
        let sel = LabelSelector::parse("env=prod,role").expect("selector");
        assert!(LabelSelector::parse("env=prod, role").is_err(), "strict: no spaces");
        assert!(LabelSelector::parse("env=prod,").is_err(), "strict: no empty term");
        assert!(sel.matches(&labels));
        assert!(!LabelSelector::parse("env!=prod").expect("sel").matches(&labels));
        assert!(LabelSelector::parse("!drain").expect("sel").matches(&labels));
        assert!(!LabelSelector::parse("!env").expect("sel").matches(&labels));
        assert!(LabelSelector::parse("env=pr%d").is_err());
        assert_eq!(sel.to_string(), "env=prod,role");
    }

    #[test]
    fn fields_are_validated() {
        assert_eq!(parse_ip("2001:0db8:0::1").as_deref(), Ok("2001:db8::1"));
        assert!(parse_ip(" 10.0.0.1").is_err());
        assert!(parse_ip("10.0.0.256").is_err());
        assert!(parse_ip("example.com").is_err());
        assert!(check_ssh_user("deploy").is_ok());
        assert!(check_ssh_user("Root").is_err());
        assert!(check_ssh_user("-x").is_err());
        assert_eq!(check_ssh_port(2222), Ok(2222));
        assert!(check_ssh_port(0).is_err());
        assert!(check_ssh_port(70000).is_err());
        assert!(check_provider_ref(" a").is_err());
        assert!(check_region("eu-west-1").is_ok());
        assert!(check_region("eu west").is_err());
    }
}
