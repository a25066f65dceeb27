//! Retry policy: how many attempts a job gets and how long to wait between them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Exponential backoff with "equal jitter": half the delay is fixed, half is random, so retries of many
/// jobs that failed together spread out instead of stampeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first one; 1 means "never retry".
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds.
    pub backoff_base_ms: u64,
    /// Upper bound on any delay, in milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, backoff_base_ms: 1_000, backoff_max_ms: 300_000 }
    }
}

impl RetryPolicy {
    /// Whether a job that just failed its `attempt`-th try (1-based) may run again.
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// Delay before retrying after the `attempt`-th failure. `jitter` in `[0, 1)` comes from the caller,
    /// which keeps this function pure and testable.
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let raw = self.backoff_base_ms.saturating_mul(1u64 << exp).min(self.backoff_max_ms);
        let half = raw / 2;
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_millis(half + (half as f64 * jitter) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = RetryPolicy { max_attempts: 5, backoff_base_ms: 1000, backoff_max_ms: 5000 };
        assert_eq!(p.delay_after(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay_after(1, 1.0), Duration::from_millis(1000));
        assert_eq!(p.delay_after(2, 0.0), Duration::from_millis(1000));
        assert_eq!(p.delay_after(10, 1.0), Duration::from_millis(5000));
        assert!(p.allows_retry_after(4));
        assert!(!p.allows_retry_after(5));
    }
}
