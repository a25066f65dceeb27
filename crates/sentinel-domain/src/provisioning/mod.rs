//! Provisioning runs: playbook names, a run's states and legal changes, per-host outcomes and the
//! reasons a host ends in `error`, ansible's recap counters, and the scrubbing of secret values from
//! output. No I/O.

mod scrub;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use scrub::Scrubber;

/// The provisioning job kind (queue `provision`): runs one provisioning run by id.
pub const RUN_KIND: &str = "provision.run";
/// The queue provisioning jobs travel on.
pub const QUEUE: &str = "provision";
/// Default run timeout when neither the request nor the configuration says.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;
/// The longest timeout a run may ask for (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// The most servers one run may target.
pub const MAX_RUN_HOSTS: usize = 1000;

/// A playbook's name: `^[a-z0-9_-]+$`, at most 64 characters; the file is `<name>.yml` in an
/// allow-listed directory. Nothing else addresses a playbook, so no path ever comes from a caller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlaybookName(String);

impl PlaybookName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("a playbook name has 1 to 64 characters".to_owned());
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
            return Err("a playbook name matches ^[a-z0-9_-]+$ (a name, never a path)".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file that holds it inside an allow-listed directory.
    pub fn file_name(&self) -> String {
        format!("{}.yml", self.0)
    }
}

impl TryFrom<String> for PlaybookName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<PlaybookName> for String {
    fn from(p: PlaybookName) -> String {
        p.0
    }
}

impl fmt::Display for PlaybookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created; its job is on the queue.
    Queued,
    /// A worker holds the job and waits (FIFO) for the leases of its servers.
    Waiting,
    /// ansible-playbook is running with every server leased.
    Running,
    /// Every host ended ok (or changed).
    Succeeded,
    /// A host failed or was unreachable, or the run timed out or was interrupted.
    Failed,
    Cancelled,
}

impl RunState {
    pub const ALL: [RunState; 6] =
        [Self::Queued, Self::Waiting, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The legal changes: forward through queued → waiting → running → an end, any unfinished state
    /// may end (a cancel, a timeout, an interruption), and nothing leaves an end.
    pub const fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        match (self, next) {
            (Queued, Waiting) | (Waiting, Running) | (Queued, Running) => true,
            // A worker that died while waiting leaves the run waiting: the next attempt waits again.
            (Waiting, Waiting) => true,
            (Queued | Waiting | Running, Succeeded | Failed | Cancelled) => true,
            _ => false,
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host's status in a run: `pending` until ansible reports, then its recap decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Pending,
    Ok,
    Changed,
    Failed,
    Unreachable,
    /// The run ended before ansible reported on this host (cancel, timeout, interruption).
    NotRun,
}

impl HostStatus {
    pub const ALL: [HostStatus; 6] =
        [Self::Pending, Self::Ok, Self::Changed, Self::Failed, Self::Unreachable, Self::NotRun];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Changed => "changed",
            Self::Failed => "failed",
            Self::Unreachable => "unreachable",
            Self::NotRun => "not_run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether `retry-failed` targets this host again.
    pub const fn needs_retry(self) -> bool {
        matches!(self, Self::Failed | Self::Unreachable | Self::NotRun)
    }
}

/// Why a host (and so its server) ended in `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostErrorReason {
    Failed,
    Unreachable,
    HostKeyChanged,
    /// No host key is pinned and the server does not allow the first contact to pin one.
    HostKeyUnknown,
    Timeout,
    Interrupted,
    Cancelled,
}

impl HostErrorReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Unreachable => "unreachable",
            Self::HostKeyChanged => "host_key_changed",
            Self::HostKeyUnknown => "host_key_unknown",
            Self::Timeout => "timeout",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
        }
    }

    /// Reads ssh's refusal of a changed host key out of an unreachable host's message.
    pub fn of_unreachable(msg: &str) -> Self {
        if msg.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            Self::HostKeyChanged
        } else if msg.contains("Host key verification failed") {
            Self::HostKeyUnknown
        } else {
            Self::Unreachable
        }
    }
}

/// ansible's recap counters for one host (`playbook_on_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounts {
    pub ok: u32,
    pub changed: u32,
    pub failures: u32,
    pub unreachable: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

impl HostCounts {
    /// The host's outcome, from the recap alone (never from the exit code).
    pub fn status(&self) -> HostStatus {
        if self.unreachable > 0 {
            HostStatus::Unreachable
        } else if self.failures > 0 {
            HostStatus::Failed
        } else if self.changed > 0 {
            HostStatus::Changed
        } else {
            HostStatus::Ok
        }
    }
}

/// One event line of Sentinel's ansible callback (`ansible/callback_plugins/sentinel_jsonl.py`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AnsibleEvent {
    Play {
        name: String,
    },
    Task {
        name: String,
        #[serde(default)]
        handler: bool,
    },
    Host {
        host: String,
        task: String,
        /// ok, changed, failed, unreachable, skipped or ignored.
        status: String,
        #[serde(default)]
        msg: Option<String>,
    },
    Diff {
        host: String,
        task: String,
        diff: String,
    },
    Stats {
        hosts: BTreeMap<String, HostCounts>,
    },
}

/// The marker that starts an event line (ASCII record separator).
pub const EVENT_MARK: char = '\u{1e}';

impl AnsibleEvent {
    /// Parses an output line: `Some` for an event line, `None` for ordinary output.
    pub fn from_line(line: &str) -> Option<Self> {
        serde_json::from_str(line.strip_prefix(EVENT_MARK)?).ok()
    }
}

/// Whether `name` can be an extra variable: an identifier ansible accepts, not a magic variable.
pub fn check_var_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || name.len() > 128 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("a variable name is a letter or `_` followed by letters, digits or `_` (at most 128)".to_owned());
    }
    if name.starts_with("ansible_") || name == "hostvars" || name == "inventory_hostname" {
        return Err(format!("{name} is reserved by ansible (connection settings come from the inventory)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playbook_names_are_names_never_paths() {
        assert!(PlaybookName::parse("harden-ssh").is_ok());
        assert!(PlaybookName::parse("config_template2").is_ok());
        for bad in ["", "../x", "a/b", "Ping", "ping.yml", "x y", &"a".repeat(65)] {
            assert!(PlaybookName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(PlaybookName::parse("ping").expect("valid").file_name(), "ping.yml");
    }

    #[test]
    fn run_states_move_forward_only() {
        use RunState::*;
        assert!(Queued.can_become(Waiting) && Waiting.can_become(Running) && Running.can_become(Failed));
        assert!(Queued.can_become(Cancelled));
        for end in [Succeeded, Failed, Cancelled] {
            assert!(end.is_terminal());
            for next in RunState::ALL {
                assert!(!end.can_become(next), "{end} → {next}");
            }
        }
        assert!(!Running.can_become(Waiting) && !Running.can_become(Queued));
    }

    #[test]
    fn the_recap_decides_a_hosts_status() {
        let c =
            |changed, failures, unreachable| HostCounts { ok: 3, changed, failures, unreachable, ..Default::default() };
        assert_eq!(c(0, 0, 0).status(), HostStatus::Ok);
        assert_eq!(c(2, 0, 0).status(), HostStatus::Changed);
        assert_eq!(c(1, 1, 0).status(), HostStatus::Failed);
        assert_eq!(c(0, 1, 1).status(), HostStatus::Unreachable);
        assert_eq!(
            HostErrorReason::of_unreachable("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@"),
            HostErrorReason::HostKeyChanged
        );
        assert_eq!(HostErrorReason::of_unreachable("Connection refused"), HostErrorReason::Unreachable);
        assert_eq!(
            HostErrorReason::of_unreachable(
                "No ED25519 host key is known for [127.0.0.2]:22\r\nHost key verification failed."
            ),
            HostErrorReason::HostKeyUnknown
        );
    }

    #[test]
    fn event_lines_parse_and_other_output_does_not() {
        let line = "\u{1e}{\"event\":\"host\",\"host\":\"web-1\",\"task\":\"Ping\",\"status\":\"ok\",\"msg\":null}";
        assert_eq!(
            AnsibleEvent::from_line(line),
            Some(AnsibleEvent::Host { host: "web-1".into(), task: "Ping".into(), status: "ok".into(), msg: None })
        );
        let stats = "\u{1e}{\"event\":\"stats\",\"hosts\":{\"a\":{\"ok\":1,\"changed\":0,\"failures\":0,\"unreachable\":0,\"skipped\":0,\"rescued\":0,\"ignored\":0}}}";
        assert!(matches!(AnsibleEvent::from_line(stats), Some(AnsibleEvent::Stats { .. })));
        assert_eq!(AnsibleEvent::from_line("{\"event\":\"host\"}"), None);
        assert_eq!(AnsibleEvent::from_line("\u{1e}not json"), None);
        assert_eq!(AnsibleEvent::from_line("ok: [web-1]"), None);
    }

    #[test]
    fn variable_names_are_identifiers_and_not_connection_settings() {
        assert!(check_var_name("app_port").is_ok());
        for bad in ["", "1x", "a-b", "ansible_ssh_pass", "hostvars"] {
            assert!(check_var_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
