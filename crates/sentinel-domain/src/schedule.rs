//! Schedule triggers: cron expressions (5 or 6 fields, in an IANA time zone) and fixed intervals, and the
//! arithmetic that turns them into fire instants, daylight-saving transitions included.
//!
//! Cron is evaluated on local wall-clock time and then mapped to instants with these rules (those of
//! Vixie cron, which operators already expect):
//! - a wall-clock time that happens twice (the clock goes back) fires once, at its first occurrence —
//!   unless the hour field is `*`, in which case the expression asks for every hour of real time and
//!   both occurrences fire;
//! - a wall-clock time that does not exist (the clock goes forward) fires once, shifted forward by the
//!   length of the gap (02:30 becomes 03:30) — unless the hour field is `*`, in which case the skipped
//!   hour simply has no ticks.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The shortest interval a schedule may have.
pub const MIN_INTERVAL_SECS: u64 = 1;
/// The longest interval a schedule may have (one year).
pub const MAX_INTERVAL_SECS: u64 = 366 * 24 * 3600;
/// How far apart two transitions of one zone can be assumed to be, and the most a transition shifts.
const DST_WINDOW: Duration = Duration::hours(3);
/// Bound on the wall-clock ticks scanned near a transition (an expression firing every second in
/// restricted hours is the worst case: 6 h of seconds).
const MAX_SCANNED_TICKS: usize = 25_000;

/// Why a trigger was refused; `field` names the request field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TriggerError {
    pub field: &'static str,
    pub reason: String,
}

impl TriggerError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// What to do with ticks that passed while no scheduler was running (or while it was too late to fire
/// them within the misfire grace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Missed ticks are recorded as skipped; the schedule resumes at its next future tick.
    #[default]
    Skip,
    /// The missed ticks are coalesced into one run, fired as soon as the scheduler is back.
    RunOnce,
}

impl MisfirePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }
}

impl FromStr for MisfirePolicy {
    type Err = TriggerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Self::Skip),
            "run_once" => Ok(Self::RunOnce),
            other => Err(TriggerError::new("misfire_policy", format!("{other:?} is not one of skip, run_once"))),
        }
    }
}

/// A validated trigger that can compute fire instants.
#[derive(Debug, Clone)]
pub enum Trigger {
    Cron(Box<CronTrigger>),
    Interval(IntervalTrigger),
}

impl Trigger {
    /// Builds a trigger from exactly one of `cron` (with `timezone`, default UTC) or `interval_secs`
    /// (ticks at `anchor + k × interval`).
    pub fn new(
        cron: Option<&str>,
        interval_secs: Option<u64>,
        timezone: Option<&str>,
        anchor: DateTime<Utc>,
    ) -> Result<Self, TriggerError> {
        match (cron, interval_secs) {
            (Some(expr), None) => Ok(Self::Cron(Box::new(CronTrigger::new(expr, timezone.unwrap_or("UTC"))?))),
            (None, Some(secs)) => {
                if let Some(tz) = timezone {
                    parse_timezone(tz)?;
                }
                Ok(Self::Interval(IntervalTrigger::new(secs, anchor)?))
            }
            (Some(_), Some(_)) => {
                Err(TriggerError::new("interval_secs", "give either cron or interval_secs, not both"))
            }
            (None, None) => Err(TriggerError::new("cron", "give a cron expression or interval_secs")),
        }
    }

    /// Rebuilds the trigger of a stored schedule: like [`Trigger::new`] but accepts a cron expression
    /// whose last tick has passed.
    pub fn stored(
        cron: Option<&str>,
        interval_secs: Option<u64>,
        timezone: Option<&str>,
        anchor: DateTime<Utc>,
    ) -> Result<Self, TriggerError> {
        match (cron, interval_secs) {
            (Some(expr), None) => Ok(Self::Cron(Box::new(CronTrigger::parse(expr, timezone.unwrap_or("UTC"))?))),
            _ => Self::new(cron, interval_secs, timezone, anchor),
        }
    }

    /// The first fire instant strictly after `after`, if any. Instants outside years 1900–9000 have
    /// none (so no arithmetic can overflow).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !(1900..=9000).contains(&after.year()) {
            return None;
        }
        match self {
            Self::Cron(c) => c.next_after(after),
            Self::Interval(i) => i.next_after(after),
        }
    }

    /// The next `n` fire instants strictly after `after` (fewer if the trigger ends).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }
}

/// Parses an IANA time-zone name (`Europe/Paris`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, TriggerError> {
    name.parse::<Tz>().map_err(|_| {
        TriggerError::new("timezone", format!("{name:?} is not an IANA time zone (e.g. Europe/Paris, UTC)"))
    })
}

/// A cron expression evaluated in a time zone.
#[derive(Debug, Clone)]
pub struct CronTrigger {
    /// One schedule, or two whose union is the expression (crontab's day-of-month OR day-of-week).
    schedules: Vec<cron::Schedule>,
    tz: Tz,
    /// The hour field is `*`: the expression follows real time through transitions (see module docs).
    every_hour: bool,
}

impl CronTrigger {
    /// Accepts crontab's 5 fields (minute precision), 6 fields with seconds first, 7 with a year, and
    /// the `@hourly`-style macros. Refuses expressions that never fire again.
    pub fn new(expr: &str, timezone: &str) -> Result<Self, TriggerError> {
        let trigger = Self::parse(expr, timezone)?;
        if trigger.next_after(Utc::now()).is_none() {
            return Err(TriggerError::new("cron", format!("{expr:?} never fires")));
        }
        Ok(trigger)
    }

    /// Like [`CronTrigger::new`] without the "fires again" check: for stored schedules, whose last
    /// tick may be overdue.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, TriggerError> {
        let tz = parse_timezone(timezone)?;
        let (normalised, every_hour) = normalise_cron(expr)?;
        let schedules = normalised
            .iter()
            .map(|n| cron::Schedule::from_str(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TriggerError::new("cron", format!("{expr:?} is not a valid cron expression: {e}")))?;
        Ok(Self { schedules, tz, every_hour })
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.every_hour {
            return self.next_in_real_time(after);
        }
        let local_after = after.with_timezone(&self.tz).naive_local();
        // Fast path: with no transition in the last few hours, the next wall-clock tick maps to one
        // instant with the same offset as `after`, and nothing earlier (a shifted or repeated tick) can
        // come between.
        let offset_now = self.offset_at(after);
        let naive = self.next_naive_after(local_after)?;
        if let LocalResult::Single(at) = self.tz.from_local_datetime(&naive)
            && at.offset().fix() == offset_now
            && after.checked_sub_signed(DST_WINDOW).is_some_and(|before| self.offset_at(before) == offset_now)
            && at.with_timezone(&Utc) > after
        {
            return Some(at.with_timezone(&Utc));
        }
        self.next_after_near_transition(after, local_after)
    }

    fn offset_at(&self, at: DateTime<Utc>) -> chrono::FixedOffset {
        self.tz.offset_from_utc_datetime(&at.naive_utc()).fix()
    }

    /// The first wall-clock tick strictly after `local`.
    fn next_naive_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        // The cron crate iterates in a zone; UTC has no transitions, so it iterates pure wall-clock time.
        let from = Utc.from_utc_datetime(&local);
        self.schedules.iter().filter_map(|s| s.after(&from).next()).min().map(|t| t.naive_utc())
    }

    /// For expressions whose hour field is `*`: the first instant after `after` whose wall-clock time
    /// (at the offset in force then) matches. Walks offset segments, finding each transition by
    /// bisection, so it costs a few cron lookups whatever the expression's density.
    fn next_in_real_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks strictly after `from` (wall-clock `from + offset`), or at it when `inclusive`.
        let (mut from, mut inclusive) = (after, false);
        for _ in 0..4 {
            let offset = self.offset_at(from);
            let shift = Duration::seconds(i64::from(offset.local_minus_utc()));
            let local = from.naive_utc() + shift;
            let naive = if inclusive {
                self.next_naive_after(local - Duration::nanoseconds(1))?
            } else {
                self.next_naive_after(local)?
            };
            let candidate = Utc.from_utc_datetime(&(naive - shift));
            if self.offset_at(candidate) == offset && candidate > after {
                return Some(candidate);
            }
            // A transition lies between `from` and the candidate: continue from it, in the new offset.
            from = self.transition_between(from, candidate.max(from + Duration::seconds(1)));
            inclusive = true;
        }
        None
    }

    /// The first instant in `(lo, hi]` whose offset differs from `lo`'s (to the second).
    fn transition_between(&self, mut lo: DateTime<Utc>, mut hi: DateTime<Utc>) -> DateTime<Utc> {
        let offset = self.offset_at(lo);
        while hi - lo > Duration::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            if self.offset_at(mid) == offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// Scans wall-clock ticks around `after` and keeps the earliest instant after it, applying the
    /// transition rules of the module docs. Only reached near a transition, and only by expressions
    /// with a restricted hour field, so the scan covers few ticks.
    fn next_after_near_transition(&self, after: DateTime<Utc>, local_after: NaiveDateTime) -> Option<DateTime<Utc>> {
        let mut best: Option<DateTime<Utc>> = None;
        let mut stop_after = local_after + DST_WINDOW;
        let mut naive = local_after - DST_WINDOW;
        for _ in 0..MAX_SCANNED_TICKS {
            naive = self.next_naive_after(naive)?;
            if naive > stop_after && best.is_some() {
                break;
            }
            for at in self.instants_of(naive).into_iter().flatten() {
                if at > after && best.is_none_or(|b| at < b) {
                    best = Some(at);
                    stop_after = at.with_timezone(&self.tz).naive_local().max(local_after) + DST_WINDOW;
                }
            }
        }
        best
    }

    /// The instants a wall-clock tick stands for (hour field restricted): one, or none for a wall-clock
    /// time that does not exist and is shifted instead.
    fn instants_of(&self, naive: NaiveDateTime) -> [Option<DateTime<Utc>>; 1] {
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(at) => [Some(at.with_timezone(&Utc))],
            LocalResult::Ambiguous(first, _) => [Some(first.with_timezone(&Utc))],
            LocalResult::None => {
                // Shift forward by the gap: read the wall-clock time with the offset in force before it
                // (that of the wall-clock time a few hours earlier, which exists).
                let offset = self.tz.from_local_datetime(&(naive - DST_WINDOW)).earliest().map(|d| d.offset().fix());
                [offset.map(|o| Utc.from_utc_datetime(&(naive - Duration::seconds(i64::from(o.local_minus_utc())))))]
            }
        }
    }
}

/// Turns crontab syntax into the cron crate's (seconds first); reports whether the hour field is `*`.
/// When both day-of-month and day-of-week are restricted, crontab fires on days matching *either*, while
/// the cron crate requires both: such an expression becomes two, whose union is taken.
fn normalise_cron(expr: &str) -> Result<(Vec<String>, bool), TriggerError> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(TriggerError::new("cron", "must not be empty"));
    }
    if trimmed.starts_with('@') {
        let every_hour = matches!(trimmed, "@hourly");
        return Ok((vec![trimmed.to_owned()], every_hour));
    }
    let mut fields: Vec<String> = trimmed.split_whitespace().map(str::to_owned).collect();
    let weekday = match fields.len() {
        5 => 4,
        6 | 7 => 5,
        _ => 0,
    };
    if weekday > 0 {
        fields[weekday] = crontab_weekdays(&fields[weekday])?;
    }
    if fields.len() == 5 {
        fields.insert(0, "0".to_owned());
    }
    if !(6..=7).contains(&fields.len()) {
        return Err(TriggerError::new(
            "cron",
            format!("{expr:?} has {} fields; use 5 (minute hour day month weekday) or 6 (seconds first)", fields.len()),
        ));
    }
    let every_hour = matches!(fields[2].as_str(), "*" | "*/1" | "0-23");
    let unrestricted = |f: &str| f == "*" || f == "?";
    if unrestricted(&fields[3]) || unrestricted(&fields[5]) {
        return Ok((vec![fields.join(" ")], every_hour));
    }
    let (mut by_day_of_month, mut by_day_of_week) = (fields.clone(), fields);
    by_day_of_month[5] = "*".to_owned();
    by_day_of_week[3] = "*".to_owned();
    Ok((vec![by_day_of_month.join(" "), by_day_of_week.join(" ")], every_hour))
}

/// Day names in crontab numbering: 0 and 7 are Sunday, 1 is Monday.
const DAY_NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// Rewrites numeric weekdays from crontab numbering (0–7, Monday = 1) into names, because the cron
/// crate numbers them Quartz-style (Sunday = 1) and `1-5` would otherwise mean Sunday to Thursday.
/// Numeric ranges and steps are expanded into lists, so `5-7` (Friday to Sunday) works too.
fn crontab_weekdays(field: &str) -> Result<String, TriggerError> {
    let bad =
        |item: &str| TriggerError::new("cron", format!("day-of-week {item:?}: use 0-7 (0 or 7 = Sunday) or MON-SUN"));
    let mut out: Vec<String> = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<usize>().map_err(|_| bad(item))?.max(1))),
            None => (item, None),
        };
        let numeric = |s: &str| s.parse::<usize>().ok().filter(|n| *n <= 7);
        let bounds = match range.split_once('-') {
            Some((a, b)) => numeric(a).zip(numeric(b)),
            None if range == "*" => None,
            None => numeric(range).map(|n| (n, if step.is_some() { 7 } else { n })),
        };
        let Some((from, to)) = bounds else {
            if range.chars().any(|c| c.is_ascii_digit()) && range != "*" {
                // Digits that are not a valid 0-7 number or range.
                return Err(bad(item));
            }
            out.push(item.to_owned()); // `*`, `*/2` and names: left to the parser (numeric Quartz forms such as `5L` are refused above).
            continue;
        };
        if from > to {
            return Err(bad(item));
        }
        for day in (from..=to).step_by(step.unwrap_or(1)) {
            let name = DAY_NAMES[day].to_owned();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out.join(","))
}

/// Fixed-rate ticks at `anchor + k × every`.
#[derive(Debug, Clone, Copy)]
pub struct IntervalTrigger {
    every: Duration,
    anchor: DateTime<Utc>,
}

impl IntervalTrigger {
    pub fn new(every_secs: u64, anchor: DateTime<Utc>) -> Result<Self, TriggerError> {
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&every_secs) {
            return Err(TriggerError::new(
                "interval_secs",
                format!("must be between {MIN_INTERVAL_SECS} and {MAX_INTERVAL_SECS} seconds"),
            ));
        }
        let every = Duration::seconds(i64::try_from(every_secs).unwrap_or(i64::MAX));
        Ok(Self { every, anchor })
    }

    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if after < self.anchor {
            return Some(self.anchor);
        }
        let step = self.every.num_milliseconds();
        let elapsed = (after - self.anchor).num_milliseconds();
        let offset = (elapsed / step).checked_add(1)?.checked_mul(step)?;
        self.anchor.checked_add_signed(Duration::milliseconds(offset))
    }
}

/// A deterministic delay in `[0, jitter_ms)` for one tick of one schedule, so every scheduler replica
/// computes the same fire instant for it.
pub fn jitter_for(schedule: uuid::Uuid, tick: DateTime<Utc>, jitter_ms: u64) -> Duration {
    if jitter_ms == 0 {
        return Duration::zero();
    }
    // FNV-1a over the id and the tick: stable across processes and releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schedule.as_bytes().iter().chain(tick.timestamp_millis().to_le_bytes().iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::milliseconds(i64::try_from(hash % jitter_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("test instant").with_timezone(&Utc)
    }

    fn cron(expr: &str, tz: &str) -> Trigger {
        Trigger::new(Some(expr), None, Some(tz), Utc::now()).expect("valid trigger")
    }

    fn fires(t: &Trigger, from: &str, n: usize) -> Vec<String> {
        t.upcoming(utc(from), n).iter().map(|d| d.to_rfc3339()).collect()
    }

    #[test]
    fn five_fields_mean_minute_precision_and_six_add_seconds() {
        let five = cron("*/15 * * * *", "UTC");
        assert_eq!(fires(&five, "2026-01-01T00:07:30Z", 2), ["2026-01-01T00:15:00+00:00", "2026-01-01T00:30:00+00:00"]);
        let six = cron("*/20 * * * * *", "UTC");
        assert_eq!(
            fires(&six, "2026-01-01T00:00:00Z", 3),
            ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00", "2026-01-01T00:01:00+00:00"]
        );
    }

    #[test]
    fn a_stored_expression_whose_last_tick_passed_still_loads() {
        let past = Trigger::stored(Some("0 0 0 1 1 * 2020"), None, Some("UTC"), Utc::now()).expect("loads");
        assert_eq!(past.next_after(Utc::now()), None);
        assert!(Trigger::new(Some("0 0 0 1 1 * 2020"), None, None, Utc::now()).is_err());
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        let now = Utc::now();
        assert_eq!(Trigger::new(Some("* * *"), None, None, now).expect_err("refused").field, "cron");
        assert_eq!(Trigger::new(Some("61 * * * *"), None, None, now).expect_err("refused").field, "cron");
        assert_eq!(
            Trigger::new(Some("* * * * *"), None, Some("Mars/Olympus"), now).expect_err("refused").field,
            "timezone"
        );
        assert_eq!(Trigger::new(None, Some(0), None, now).expect_err("refused").field, "interval_secs");
        assert_eq!(Trigger::new(Some("* * * * *"), Some(5), None, now).expect_err("refused").field, "interval_secs");
        assert_eq!(Trigger::new(None, None, None, now).expect_err("refused").field, "cron");
        assert_eq!(Trigger::new(Some("0 0 30 2 *"), None, None, now).expect_err("never fires").field, "cron");
        assert_eq!("later".parse::<MisfirePolicy>().expect_err("refused").field, "misfire_policy");
    }

    #[test]
    fn daily_jobs_follow_the_zone_across_both_transitions() {
        let paris = cron("0 9 * * *", "Europe/Paris");
        // Winter is UTC+1, summer UTC+2 (the clocks go forward on 2026-03-29).
        assert_eq!(
            fires(&paris, "2026-03-28T00:00:00Z", 2),
            ["2026-03-28T08:00:00+00:00", "2026-03-29T07:00:00+00:00"]
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_fires_once_shifted_by_the_gap() {
        // New York skips 02:00–03:00 on 2026-03-08.
        let t = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            fires(&t, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T07:30:00+00:00", // 02:30 does not exist on the 8th: 03:30 EDT
                "2026-03-09T06:30:00+00:00", // 02:30 EDT
                "2026-03-10T06:30:00+00:00",
            ]
        );
    }

    #[test]
    fn the_spring_gap_shift_uses_the_offset_before_it_east_of_utc_too() {
        // Sydney goes from +10 to +11 at 02:00 on 2026-10-04: 02:30 becomes 03:30 AEDT.
        let t = cron("30 2 * * *", "Australia/Sydney");
        assert_eq!(
            fires(&t, "2026-10-02T12:00:00Z", 3),
            ["2026-10-02T16:30:00+00:00", "2026-10-03T16:30:00+00:00", "2026-10-04T15:30:00+00:00"]
        );
        // Two ticks that both fall in the gap stay two runs.
        let both = cron("30 1,2 * * *", "Australia/Sydney");
        assert_eq!(fires(&both, "2026-10-03T14:00:00Z", 2), ["2026-10-03T15:30:00+00:00", "2026-10-03T16:30:00+00:00"]);
    }

    #[test]
    fn a_shifted_tick_is_not_skipped_by_a_caller_just_after_the_gap() {
        // At 03:15 EDT on 2026-03-08, the shifted 02:30 run (03:30 EDT) is still to come.
        let t = cron("30 2 * * *", "America/New_York");
        assert_eq!(fires(&t, "2026-03-08T07:15:00Z", 1), ["2026-03-08T07:30:00+00:00"]);
    }

    #[test]
    fn dense_expressions_near_a_transition_stay_cheap_and_exact() {
        // Every second, through the repeated hour: one run per real second.
        let t = cron("* * * * * *", "America/New_York");
        let around = fires(&t, "2026-11-01T05:59:58Z", 4);
        assert_eq!(
            around,
            [
                "2026-11-01T05:59:59+00:00",
                "2026-11-01T06:00:00+00:00",
                "2026-11-01T06:00:01+00:00",
                "2026-11-01T06:00:02+00:00"
            ]
        );
        let started = std::time::Instant::now();
        assert_eq!(t.upcoming(utc("2026-11-01T05:30:00Z"), 100).len(), 100);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "no scan of hours of ticks");
    }

    #[test]
    fn a_time_repeated_in_autumn_fires_once() {
        // New York repeats 01:00–02:00 on 2026-11-01.
        let t = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            fires(&t, "2026-10-31T12:00:00Z", 3),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00", "2026-11-03T06:30:00+00:00"]
        );
    }

    #[test]
    fn hourly_wildcards_follow_real_time_through_both_transitions() {
        let t = cron("0 * * * *", "America/New_York");
        // Autumn: 01:00 happens twice, both fire; one run per real hour.
        assert_eq!(
            fires(&t, "2026-11-01T04:30:00Z", 4),
            [
                "2026-11-01T05:00:00+00:00",
                "2026-11-01T06:00:00+00:00",
                "2026-11-01T07:00:00+00:00",
                "2026-11-01T08:00:00+00:00"
            ]
        );
        // Spring: the hour 02:00 does not exist, so 01:00 EST is followed by 03:00 EDT, one real hour later.
        assert_eq!(
            fires(&t, "2026-03-08T05:30:00Z", 3),
            ["2026-03-08T06:00:00+00:00", "2026-03-08T07:00:00+00:00", "2026-03-08T08:00:00+00:00"]
        );
    }

    #[test]
    fn weekdays_use_crontab_numbering() {
        // 2026-01-05 is a Monday.
        let weekdays = cron("0 9 * * 1-5", "UTC");
        let days: Vec<String> =
            weekdays.upcoming(utc("2026-01-03T00:00:00Z"), 6).iter().map(|d| d.format("%a %d").to_string()).collect();
        assert_eq!(days, ["Mon 05", "Tue 06", "Wed 07", "Thu 08", "Fri 09", "Mon 12"]);
        for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 0 * * SUN"] {
            let t = cron(sunday, "UTC");
            assert_eq!(fires(&t, "2026-01-05T00:00:00Z", 1), ["2026-01-11T00:00:00+00:00"], "{sunday}");
        }
        let weekend = cron("0 0 * * 5-7", "UTC");
        let days: Vec<String> =
            weekend.upcoming(utc("2026-01-05T00:00:00Z"), 3).iter().map(|d| d.format("%a").to_string()).collect();
        assert_eq!(days, ["Fri", "Sat", "Sun"]);
        assert_eq!(Trigger::new(Some("0 0 * * 8"), None, None, Utc::now()).expect_err("refused").field, "cron");
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_as_in_crontab() {
        // The 1st and the 15th, and every Friday: 2026-01-01 is a Thursday.
        let t = cron("0 0 1,15 * 5", "UTC");
        let days: Vec<String> =
            t.upcoming(utc("2025-12-31T12:00:00Z"), 5).iter().map(|d| d.format("%a %d").to_string()).collect();
        assert_eq!(days, ["Thu 01", "Fri 02", "Fri 09", "Thu 15", "Fri 16"]);
    }

    #[test]
    fn intervals_tick_from_their_anchor() {
        let anchor = utc("2026-01-01T00:00:00Z");
        let t = Trigger::new(None, Some(7), None, anchor).expect("interval");
        assert_eq!(t.next_after(utc("2025-12-31T00:00:00Z")), Some(anchor));
        assert_eq!(t.next_after(anchor), Some(utc("2026-01-01T00:00:07Z")));
        assert_eq!(t.next_after(utc("2026-01-01T00:00:13.5Z")), Some(utc("2026-01-01T00:00:14Z")));
        assert_eq!(t.next_after(DateTime::<Utc>::MAX_UTC), None, "no overflow at the end of time");
        assert_eq!(cron("* * * * *", "Pacific/Kiritimati").next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(cron("* * * * *", "UTC").next_after(DateTime::<Utc>::MIN_UTC), None);
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let id = uuid::Uuid::now_v7();
        let tick = utc("2026-01-01T00:00:00Z");
        let a = jitter_for(id, tick, 5_000);
        assert_eq!(a, jitter_for(id, tick, 5_000));
        assert!(a >= Duration::zero() && a < Duration::milliseconds(5_000));
        assert_eq!(jitter_for(id, tick, 0), Duration::zero());
        let spread: std::collections::HashSet<i64> =
            (0..50).map(|s| jitter_for(id, tick + Duration::seconds(s), 5_000).num_milliseconds()).collect();
        assert!(spread.len() > 40, "jitter should vary from tick to tick");
    }
}
