//! When a monitored thing raises an alert and when it clears: an organization's settings (failures
//! in a row before an alert opens, successes in a row before it resolves — hysteresis — grouping),
//! flap detection over the recent results, and the lifecycle of incidents. No I/O.

use serde::{Deserialize, Serialize};

use crate::backups::FieldProblem;

/// Results looked at for flapping (the newest first, one bit each, 1 = down).
pub const FLAP_WINDOW: u32 = 20;
/// State changes within the window that make a target flapping…
pub const FLAP_START_CHANGES: u32 = 8;
/// …and at most this many that make it stable again.
pub const FLAP_STOP_CHANGES: u32 = 2;

/// An organization's monitoring settings (the seed's client settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSettings {
    /// Where alert mail goes (the notifications issue sends it).
    pub notification_email: Option<String>,
    /// A machine silent for longer than this raises "machine silent".
    pub heartbeat_threshold_minutes: u32,
    /// Failures in a row before a target's alert opens.
    pub consecutive_failures_threshold: u32,
    /// Successes in a row before it resolves.
    pub consecutive_successes_threshold: u32,
    /// The alerts of one target or machine share one incident.
    pub alert_grouping_enabled: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            notification_email: None,
            heartbeat_threshold_minutes: 5,
            consecutive_failures_threshold: 3,
            consecutive_successes_threshold: 2,
            alert_grouping_enabled: true,
        }
    }
}

impl ClientSettings {
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        if let Some(email) = &self.notification_email {
            let parts: Vec<&str> = email.split('@').collect();
            let valid = email.chars().count() <= 254
                && parts.len() == 2
                && !parts[0].is_empty()
                && parts[1].contains('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                out.push(("notification_email".to_owned(), "not an email address".to_owned()));
            }
        }
        if !(1..=10_080).contains(&self.heartbeat_threshold_minutes) {
            out.push(("heartbeat_threshold_minutes".to_owned(), "must be between 1 and 10080 (a week)".to_owned()));
        }
        for (field, n) in [
            ("consecutive_failures_threshold", self.consecutive_failures_threshold),
            ("consecutive_successes_threshold", self.consecutive_successes_threshold),
        ] {
            if !(1..=100).contains(&n) {
                out.push((field.to_owned(), "must be between 1 and 100".to_owned()));
            }
        }
        out
    }
}

/// Where a target stands as far as alerting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Ok,
    Firing,
    Flapping,
}

impl AlertState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Firing => "firing",
            Self::Flapping => "flapping",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ok" => Ok(Self::Ok),
            "firing" => Ok(Self::Firing),
            "flapping" => Ok(Self::Flapping),
            other => Err(format!("{other:?} is not one of ok, firing, flapping")),
        }
    }
}

/// What a new result does to a target's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Enough failures in a row: an alert opens.
    Open,
    /// Enough successes in a row: the alert resolves.
    Resolve,
    /// It keeps changing: one flapping alert instead of a storm of opens and resolves.
    StartFlapping,
    /// Stable again, and down: the flapping alert becomes a plain firing one.
    SettleDown,
}

/// The bits of the recent results, newest first (bit 0), 1 = down: `recent` after one more result.
pub fn push_result(recent: i64, down: bool) -> i64 {
    ((recent << 1) | i64::from(down)) & i64::MAX
}

/// State changes among the newest `FLAP_WINDOW` results.
pub fn state_changes(recent: i64) -> u32 {
    let mask = (1i64 << FLAP_WINDOW) - 1;
    let window = recent & mask;
    ((window ^ (window >> 1)) & (mask >> 1)).count_ones()
}

/// The transition the latest result causes, if any: hysteresis on both sides, and flapping.
pub fn evaluate(
    state: AlertState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    recent: i64,
    settings: &ClientSettings,
) -> Option<Transition> {
    let changes = state_changes(recent);
    let down_enough = consecutive_failures >= settings.consecutive_failures_threshold;
    let up_enough = consecutive_successes >= settings.consecutive_successes_threshold;
    match state {
        AlertState::Ok | AlertState::Firing if changes >= FLAP_START_CHANGES => Some(Transition::StartFlapping),
        AlertState::Ok if down_enough => Some(Transition::Open),
        AlertState::Firing if up_enough => Some(Transition::Resolve),
        AlertState::Flapping if changes <= FLAP_STOP_CHANGES && up_enough => Some(Transition::Resolve),
        AlertState::Flapping if changes <= FLAP_STOP_CHANGES && down_enough => Some(Transition::SettleDown),
        _ => None,
    }
}

impl Transition {
    /// The target's alert state after this transition.
    pub const fn next_state(self) -> AlertState {
        match self {
            Self::Open | Self::SettleDown => AlertState::Firing,
            Self::Resolve => AlertState::Ok,
            Self::StartFlapping => AlertState::Flapping,
        }
    }
}

/// An incident's states: `open → acknowledged → resolved` (open → resolved too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub const ALL: [IncidentState; 3] = [Self::Open, Self::Acknowledged, Self::Resolved];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of {}", Self::ALL.map(|x| x.as_str()).join(", ")))
    }

    /// The legal changes; a resolved incident stays resolved (a new failure opens a new one).
    pub fn can_become(self, next: IncidentState) -> bool {
        matches!(
            (self, next),
            (Self::Open, Self::Acknowledged) | (Self::Open, Self::Resolved) | (Self::Acknowledged, Self::Resolved)
        )
    }
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "warning" => Ok(Self::Warning),
            "critical" => Ok(Self::Critical),
            other => Err(format!("{other:?} is not one of warning, critical")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(results: &[bool], settings: &ClientSettings) -> Vec<Transition> {
        let (mut state, mut fails, mut oks, mut recent) = (AlertState::Ok, 0, 0, 0i64);
        let mut out = Vec::new();
        for &down in results {
            recent = push_result(recent, down);
            if down {
                fails += 1;
                oks = 0;
            } else {
                oks += 1;
                fails = 0;
            }
            if let Some(t) = evaluate(state, fails, oks, recent, settings) {
                state = t.next_state();
                out.push(t);
            }
        }
        out
    }

    #[test]
    fn alerts_open_and_resolve_with_hysteresis() {
        let s = ClientSettings::default(); // 3 down to open, 2 up to resolve
        assert_eq!(run(&[true, true, false, true, true], &s), []);
        assert_eq!(run(&[true, true, true], &s), [Transition::Open]);
        assert_eq!(run(&[true, true, true, false, true, false, false], &s), [Transition::Open, Transition::Resolve]);
    }

    #[test]
    fn a_flipping_target_is_one_flapping_alert() {
        let s = ClientSettings {
            consecutive_failures_threshold: 1,
            consecutive_successes_threshold: 1,
            ..Default::default()
        };
        // Alternating for 60 checks: one open, one resolve… then flapping, and nothing more.
        let alternating: Vec<bool> = (0..60).map(|i| i % 2 == 0).collect();
        let t = run(&alternating, &s);
        assert!(t.len() <= 9, "{t:?}");
        assert_eq!(t.last(), Some(&Transition::StartFlapping), "{t:?}");
        assert_eq!(t.iter().filter(|x| **x == Transition::StartFlapping).count(), 1);
        // Then stable and up: resolved once the window calms down.
        let mut calm = alternating.clone();
        calm.extend([false; 25]);
        assert_eq!(run(&calm, &s).last(), Some(&Transition::Resolve));
        // Or stable and down: a plain firing alert.
        let mut down = alternating;
        down.extend([true; 25]);
        assert_eq!(run(&down, &s).last(), Some(&Transition::SettleDown));
        assert_eq!(state_changes(0b1010), 4, "the older zeros count as up");
        assert_eq!(state_changes(push_result(i64::MAX, false)), 1);
    }

    #[test]
    fn settings_and_incident_states_are_checked() {
        let bad = ClientSettings {
            notification_email: Some("not-an-email".into()),
            heartbeat_threshold_minutes: 0,
            consecutive_failures_threshold: 0,
            consecutive_successes_threshold: 101,
            alert_grouping_enabled: false,
        };
        let fields: Vec<String> = bad.check().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "notification_email",
                "heartbeat_threshold_minutes",
                "consecutive_failures_threshold",
                "consecutive_successes_threshold"
            ]
        );
        assert!(ClientSettings::default().check().is_empty());
        assert!(IncidentState::Open.can_become(IncidentState::Acknowledged));
        assert!(!IncidentState::Resolved.can_become(IncidentState::Open));
        assert!(!IncidentState::Acknowledged.can_become(IncidentState::Open));
    }
}
