//! A plan's recovery objectives: the RPO (how much data may be lost: the newest good backup is never
//! older than this) and the RTO (how long a restore may take), and the check that a plan's cron can
//! meet its RPO at all — a schedule whose longest wait between two ticks exceeds the RPO breaks it
//! by construction, so saying so when the plan is saved beats an alert weeks later.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::CronTrigger;

/// The longest an objective may be: one year, in minutes.
pub const MAX_OBJECTIVE_MINUTES: u32 = 525_600;

/// How far ahead a cron's ticks are walked to find its longest gap: a year covers every monthly,
/// yearly and day-of-week pattern, daylight-saving shifts included.
const HORIZON_DAYS: i64 = 366;
/// At most this many ticks are walked: a cron that fires more often than every ~3 minutes for a year
/// has shown its gaps long before (its longest one is then what was seen so far, which a denser
/// pattern cannot lengthen within a backup's scale).
const MAX_TICKS: usize = 200_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanObjectives {
    /// Recovery point objective, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_minutes: Option<u32>,
    /// Recovery time objective, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_minutes: Option<u32>,
    /// Verify every Nth successful backup (1: every one) by restoring it into a scratch database
    /// and comparing it with the snapshot it was dumped from; `None`: only when asked (by hand, or
    /// by a schedule of kind `backup.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_every: Option<u32>,
    /// The target whose server receives the scratch databases of verifications (default: the
    /// plan's own target, under a throw-away name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_target_id: Option<uuid::Uuid>,
}

/// The most backups a plan may leave between two verifications.
pub const MAX_VERIFY_EVERY: u32 = 1000;

impl PlanObjectives {
    /// Whether the backups of this plan record what a verification compares (table statistics in
    /// the dump's snapshot): when the plan verifies by itself, or may be verified on a cron.
    pub fn records_statistics(&self) -> bool {
        self.verify_every.is_some()
    }

    /// Whether a backup is due for verification, given how many successful backups of the plan
    /// came after its newest verified one (this one included).
    pub fn verification_due(&self, unverified_successes: u64) -> bool {
        self.verify_every.is_some_and(|n| unverified_successes >= u64::from(n.max(1)))
    }
}

/// The longest wait between consecutive ticks of `trigger` after `from` (within a year), or `None`
/// when it fires fewer than twice in that time.
pub fn longest_gap(trigger: &CronTrigger, from: DateTime<Utc>) -> Option<Duration> {
    let horizon = from + Duration::days(HORIZON_DAYS);
    let mut previous = trigger.next_after(from)?;
    let mut longest: Option<Duration> = None;
    for _ in 0..MAX_TICKS {
        let Some(next) = trigger.next_after(previous) else { break };
        let gap = next - previous;
        longest = Some(longest.map_or(gap, |l| l.max(gap)));
        if next > horizon {
            break;
        }
        previous = next;
    }
    longest
}

/// Checks objectives against a plan's schedule; `Err((field, reason))` names what to fix.
pub fn check_objectives(
    objectives: &PlanObjectives,
    cron: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> Result<(), (&'static str, String)> {
    for (field, value) in [("rpo_minutes", objectives.rpo_minutes), ("rto_minutes", objectives.rto_minutes)] {
        if value.is_some_and(|m| m == 0 || m > MAX_OBJECTIVE_MINUTES) {
            return Err((field, format!("1 to {MAX_OBJECTIVE_MINUTES} minutes (a year)")));
        }
    }
    if objectives.verify_every.is_some_and(|n| n == 0 || n > MAX_VERIFY_EVERY) {
        return Err(("verify_every", format!("1 (every backup) to {MAX_VERIFY_EVERY}")));
    }
    let Some(rpo) = objectives.rpo_minutes else { return Ok(()) };
    let Some((expr, timezone)) = cron else {
        return Err(("rpo_minutes", "an RPO needs a cron: a plan run only by hand cannot promise one".to_owned()));
    };
    let trigger = CronTrigger::parse(expr, timezone).map_err(|e| ("cron", e.to_string()))?;
    let Some(gap) = longest_gap(&trigger, now) else {
        return Err(("rpo_minutes", format!("the cron {expr:?} fires at most once a year, so it cannot meet any RPO")));
    };
    let allowed = Duration::minutes(i64::from(rpo));
    if gap > allowed {
        return Err((
            "rpo_minutes",
            format!(
                "the cron {expr:?} ({timezone}) waits up to {} between backups, longer than the RPO of {}: \
                 back up at least every {} or raise the RPO",
                human(gap),
                human(allowed),
                human(allowed)
            ),
        ));
    }
    Ok(())
}

fn human(d: Duration) -> String {
    let minutes = d.num_minutes();
    match minutes {
        m if m % 1440 == 0 && m >= 1440 => format!("{} d", m / 1440),
        m if m % 60 == 0 && m >= 60 => format!("{} h", m / 60),
        m if m >= 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn gap(expr: &str, tz: &str) -> Duration {
        longest_gap(&CronTrigger::parse(expr, tz).expect("cron"), at("2026-12-01T00:00:00Z")).expect("a gap")
    }

    #[test]
    fn the_longest_gap_is_found_whatever_the_pattern() {
        assert_eq!(gap("0 * * * *", "UTC"), Duration::hours(1));
        assert_eq!(gap("0 */2 * * *", "UTC"), Duration::hours(2));
        assert_eq!(gap("30 3 * * *", "UTC"), Duration::hours(24));
        // Weekdays only: Friday 03:00 to Monday 03:00.
        assert_eq!(gap("0 3 * * 1-5", "UTC"), Duration::hours(72));
        // Business hours: the night and the weekend are the gaps.
        assert_eq!(gap("0 9-17 * * 1-5", "UTC"), Duration::hours(64));
        // Hourly in Paris: the autumn change repeats an hour, the spring one skips one (02:00 → 03:00
        // is one real hour either way), so the gap stays an hour.
        assert_eq!(gap("0 * * * *", "Europe/Paris"), Duration::hours(1));
    }

    #[test]
    fn an_rpo_the_cron_cannot_meet_is_refused_with_the_reason() {
        let now = at("2026-12-01T00:00:00Z");
        let hourly = PlanObjectives { rpo_minutes: Some(60), rto_minutes: Some(30), ..Default::default() };
        assert_eq!(check_objectives(&hourly, Some(("0 * * * *", "UTC")), now), Ok(()));
        let (field, reason) = check_objectives(&hourly, Some(("0 */2 * * *", "UTC")), now).expect_err("refused");
        assert_eq!(field, "rpo_minutes");
        assert!(reason.contains("2 h") && reason.contains("1 h"), "{reason}");
        let (field, reason) = check_objectives(&hourly, None, now).expect_err("refused");
        assert_eq!(field, "rpo_minutes");
        assert!(reason.contains("needs a cron"), "{reason}");
        let zero = PlanObjectives { rto_minutes: Some(0), ..Default::default() };
        assert_eq!(check_objectives(&zero, None, now).map_err(|e| e.0), Err("rto_minutes"));
        assert_eq!(check_objectives(&PlanObjectives::default(), None, now), Ok(()));
        // A weekday-only nightly backup cannot promise a day: Friday to Monday is three.
        let daily = PlanObjectives { rpo_minutes: Some(1440), ..Default::default() };
        assert!(check_objectives(&daily, Some(("0 3 * * 1-5", "UTC")), now).is_err());
        assert_eq!(check_objectives(&daily, Some(("0 3 * * *", "UTC")), now), Ok(()));
    }

    #[test]
    fn verification_is_due_every_nth_backup_and_its_range_is_checked() {
        let now = at("2026-12-01T00:00:00Z");
        let every_third = PlanObjectives { verify_every: Some(3), ..Default::default() };
        assert!(!every_third.verification_due(2) && every_third.verification_due(3) && every_third.verification_due(9));
        assert!(every_third.records_statistics());
        assert!(!PlanObjectives::default().verification_due(100) && !PlanObjectives::default().records_statistics());
        for bad in [0, MAX_VERIFY_EVERY + 1] {
            let p = PlanObjectives { verify_every: Some(bad), ..Default::default() };
            assert_eq!(check_objectives(&p, None, now).map_err(|e| e.0), Err("verify_every"));
        }
    }
}
