//! Job states with their legal transitions, priorities and progress.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// Where a job is in its life. `queued -> running -> succeeded | failed | cancelled`; a retry sends a
/// running (or failed/cancelled, by an operator) job back to `queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A state change that the job lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: JobState,
    pub to: JobState,
}

impl JobState {
    pub const ALL: [JobState; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Finished jobs never run again unless an operator retries them.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The one place that says which state changes are legal.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Queued, Failed) // dead-lettered before it could start
                | (Running, Running) // a reclaimed attempt takes over
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Queued) // retry with backoff, or resumed after a restart
                | (Failed, Queued) // operator retry
                | (Cancelled, Queued) // operator retry
        )
    }

    pub fn transition(self, next: JobState) -> Result<JobState, TransitionError> {
        if self.can_become(next) { Ok(next) } else { Err(TransitionError { from: self, to: next }) }
    }

    /// States a job may be in when it is (re)started by a worker.
    pub const STARTABLE: [JobState; 2] = [Self::Queued, Self::Running];
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| ParseError::Invalid {
            what: "job state",
            value: s.chars().take(32).collect(),
            expected: "queued, running, succeeded, failed or cancelled",
        })
    }
}

/// Three lanes per queue. Workers read them by weight (6:3:1), so low priority is slowed, never starved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Self::High, Self::Normal, Self::Low];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// Position in [`Priority::ALL`]; used as a compact tag on the wire.
    pub const fn index(self) -> usize {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }

    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    /// Relative share of reads each lane gets when all lanes are busy.
    pub const fn weight(self) -> u32 {
        match self {
            Self::High => 6,
            Self::Normal => 3,
            Self::Low => 1,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| ParseError::Invalid {
            what: "priority",
            value: s.chars().take(32).collect(),
            expected: "high, normal or low",
        })
    }
}

/// How far a running job has come, as reported by its handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    pub step: u64,
    pub total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_allows_only_legal_moves() {
        assert!(JobState::Queued.can_become(JobState::Running));
        assert!(JobState::Running.can_become(JobState::Queued));
        assert!(!JobState::Succeeded.can_become(JobState::Running));
        assert!(!JobState::Succeeded.can_become(JobState::Queued));
        assert!(JobState::Cancelled.transition(JobState::Succeeded).is_err());
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().ok(), Some(s));
        }
    }

    #[test]
    fn priorities_round_trip() {
        for p in Priority::ALL {
            assert_eq!(Priority::from_index(p.index()), Some(p));
            assert_eq!(p.as_str().parse::<Priority>().ok(), Some(p));
        }
        assert!("urgent".parse::<Priority>().is_err());
    }
}
