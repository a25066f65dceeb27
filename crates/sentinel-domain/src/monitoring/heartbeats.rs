//! Heartbeat checks for scheduled jobs (Healthchecks-style, two-sided): a job pings when it starts
//! and when it ends, and Sentinel knows when it should have. What a check's specification is (a
//! period or a cron expression in a time zone, a grace, and beyond the peers a start window and a
//! minimum and maximum run time), and the pure state machine that a ping or the passing of time
//! moves: which run a ping belongs to, a ping outside the schedule (an *unexpected run*), and the
//! problem the check has. No I/O.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::backups::FieldProblem;
use crate::schedule::CronTrigger;

/// The shortest period (seconds).
pub const MIN_PERIOD_SECS: u32 = 10;
/// The longest period, grace or run time (a year).
pub const MAX_SECS: u32 = 31_536_000;
/// How early a scheduled run may ping and still count as that run (clock skew, cron's own drift).
pub const EARLY_SECS: i64 = 60;
/// The most of a ping's body kept as its log.
pub const MAX_LOG_BYTES: usize = 10 * 1024;

/// A heartbeat check as operators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSpec {
    pub name: String,
    /// A run is expected every `period_seconds` after the previous one ended (exclusive with `cron`).
    #[serde(default)]
    pub period_seconds: Option<u32>,
    /// A run is expected at each tick of this cron expression, in `timezone` (default UTC).
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// How long after its expected time a run may complete.
    pub grace_seconds: u32,
    /// A run must *start* (ping `/start`) within this long of its expected time, even when the
    /// completion grace is longer.
    #[serde(default)]
    pub start_window_seconds: Option<u32>,
    /// A run (start to end) shorter than this is a problem: a 10 s run of a 5 minute job did nothing.
    #[serde(default)]
    pub min_runtime_seconds: Option<u32>,
    /// A run longer than this is a problem, raised while it still runs.
    #[serde(default)]
    pub max_runtime_seconds: Option<u32>,
    #[serde(default = "active")]
    pub is_active: bool,
}

fn active() -> bool {
    true
}

/// When runs are expected.
#[derive(Debug, Clone)]
pub enum Cadence {
    Period(Duration),
    Cron(Box<CronTrigger>),
}

fn secs(v: u32) -> Duration {
    Duration::seconds(i64::from(v))
}

impl HeartbeatSpec {
    /// Every problem of the specification, each naming its field.
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out: Vec<FieldProblem> = Vec::new();
        let mut bad = |f: &str, r: String| out.push((f.to_owned(), r));
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            bad("name", "1 to 100 characters".into());
        }
        match (&self.period_seconds, &self.cron) {
            (Some(_), Some(_)) => bad("cron", "give either period_seconds or cron, not both".into()),
            (None, None) => bad("period_seconds", "give period_seconds or a cron expression".into()),
            (Some(p), None) => {
                if !(MIN_PERIOD_SECS..=MAX_SECS).contains(p) {
                    bad("period_seconds", format!("must be between {MIN_PERIOD_SECS} and {MAX_SECS}"));
                }
                if self.timezone.is_some() {
                    bad("timezone", "only with cron".into());
                }
            }
            (None, Some(expr)) => {
                if let Err(e) = CronTrigger::new(expr, self.timezone.as_deref().unwrap_or("UTC")) {
                    bad(e.field, e.reason);
                }
            }
        }
        for (field, v) in [
            ("grace_seconds", Some(self.grace_seconds)),
            ("start_window_seconds", self.start_window_seconds),
            ("min_runtime_seconds", self.min_runtime_seconds),
            ("max_runtime_seconds", self.max_runtime_seconds),
        ] {
            if v.is_some_and(|v| v > MAX_SECS) {
                bad(field, format!("at most {MAX_SECS} (a year)"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_runtime_seconds, self.max_runtime_seconds)
            && min > max
        {
            bad("min_runtime_seconds", "must not exceed max_runtime_seconds".into());
        }
        out
    }

    /// The schedule of a checked specification.
    pub fn cadence(&self) -> Result<Cadence, String> {
        match (&self.period_seconds, &self.cron) {
            (Some(p), _) => Ok(Cadence::Period(secs(*p))),
            (None, Some(expr)) => CronTrigger::parse(expr, self.timezone.as_deref().unwrap_or("UTC"))
                .map(|c| Cadence::Cron(Box::new(c)))
                .map_err(|e| e.reason),
            (None, None) => Err("neither a period nor a cron expression".to_owned()),
        }
    }

    fn grace(&self) -> Duration {
        secs(self.grace_seconds)
    }
}

/// What is wrong with a check (its alert's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// No completed run by the expected time plus the grace.
    Missed,
    /// No start by the expected time plus the start window.
    StartMissed,
    /// The run said it failed (`/fail`, or a non-zero exit code).
    Failed,
    /// The run has been going on (or went on) longer than the maximum run time.
    TooLong,
    /// The run ended sooner than the minimum run time.
    TooShort,
}

impl Problem {
    pub const ALL: [Problem; 5] = [Self::Missed, Self::StartMissed, Self::Failed, Self::TooLong, Self::TooShort];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missed => "missed",
            Self::StartMissed => "start_missed",
            Self::Failed => "failed",
            Self::TooLong => "too_long",
            Self::TooShort => "too_short",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| format!("{s:?} is not a heartbeat problem"))
    }

    /// Run times are warnings; a run that did not happen or failed is critical.
    pub const fn critical(self) -> bool {
        matches!(self, Self::Missed | Self::StartMissed | Self::Failed)
    }
}

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    Start,
    Success,
    Fail,
    /// An exit code: 0 is a success, anything else a failure.
    Exit(u8),
}

impl PingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Success => "success",
            Self::Fail => "fail",
            Self::Exit(0) => "success",
            Self::Exit(_) => "fail",
        }
    }
}

/// Where a check stands between pings (what the store keeps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// The run awaited: a cron tick, or the previous end plus the period (none before the first
    /// ping of a period check, which cannot be late yet).
    pub expected_at: Option<DateTime<Utc>>,
    /// A start or an end of the awaited run has been seen.
    pub expected_started: bool,
    /// The run in progress: when it started, its run id, and whether it is the awaited one.
    pub started_at: Option<DateTime<Utc>>,
    pub run_id: Option<String>,
    /// The expected time the run in progress answers (none: a run outside the schedule).
    pub run_for: Option<DateTime<Utc>>,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub problem: Option<Problem>,
}

/// The check's status as lists show it.
pub fn status(t: &Tracker) -> &'static str {
    match (t.problem, t.started_at, t.last_ping_at) {
        (Some(_), _, _) => "down",
        (None, Some(_), _) => "running",
        (None, None, Some(_)) => "up",
        (None, None, None) => "new",
    }
}

/// What one ping did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingOutcome {
    /// Outside the schedule: not the awaited run (cron checks only).
    pub unexpected: bool,
    /// An end paired with its start (by run id, or the one in progress): the run's length.
    pub duration: Option<Duration>,
    /// Why the problem changed, in words, when it did.
    pub note: Option<String>,
}

/// The first run expected of a new (or rescheduled) check at `now`: the next cron tick, or none for
/// a period check (it waits for its first ping).
pub fn first_expected(cadence: &Cadence, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match cadence {
        Cadence::Period(_) => None,
        Cadence::Cron(c) => c.next_after(now),
    }
}

fn on_schedule(spec: &HeartbeatSpec, cadence: &Cadence, t: &Tracker, at: DateTime<Utc>) -> bool {
    match (cadence, t.expected_at) {
        (Cadence::Period(_), _) => true,
        (Cadence::Cron(_), Some(expected)) => {
            at >= expected - Duration::seconds(EARLY_SECS) && at <= expected + spec.grace()
        }
        (Cadence::Cron(_), None) => false,
    }
}

fn describe(d: Duration) -> String {
    let s = d.num_seconds();
    if s >= 120 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{}.{:03} s", s, d.num_milliseconds() % 1000)
    }
}

/// Moves the tracker for a ping received at `now` with run id `rid`.
pub fn on_ping(
    spec: &HeartbeatSpec,
    cadence: &Cadence,
    t: &mut Tracker,
    kind: PingKind,
    rid: Option<&str>,
    now: DateTime<Utc>,
) -> PingOutcome {
    t.last_ping_at = Some(now);
    if kind == PingKind::Start {
        let awaited = on_schedule(spec, cadence, t, now) && !t.expected_started;
        if awaited {
            t.expected_started = true;
        }
        t.started_at = Some(now);
        t.run_id = rid.map(str::to_owned);
        t.run_for = if awaited { t.expected_at.or(Some(now)) } else { None };
        let mut note = None;
        if t.problem == Some(Problem::StartMissed) && awaited {
            // Started late but started: the completion deadline decides now.
            t.problem = None;
            note = Some("started late".to_owned());
        }
        return PingOutcome { unexpected: !awaited && matches!(cadence, Cadence::Cron(_)), duration: None, note };
    }
    // An end: paired with the run in progress (by run id when the ping has one).
    let paired = t.started_at.filter(|_| rid.is_none() || t.run_id.as_deref() == rid);
    let duration = paired.map(|s| now - s);
    // Whether this run answers a scheduled time, and whether that time is still the awaited one
    // (a run that outlived its deadline was already counted as missed).
    let (awaited_run, advance) = match paired {
        Some(_) => (t.run_for.is_some(), t.run_for.is_some() && t.run_for == t.expected_at),
        None => {
            let awaited = on_schedule(spec, cadence, t, now) && !t.expected_started;
            (awaited, awaited)
        }
    };
    if paired.is_some() {
        t.started_at = None;
        t.run_id = None;
        t.run_for = None;
    }
    let failed = matches!(kind, PingKind::Fail) || matches!(kind, PingKind::Exit(c) if c != 0);
    let too_long = duration.zip(spec.max_runtime_seconds).filter(|(d, max)| *d > secs(*max));
    let too_short = duration.zip(spec.min_runtime_seconds).filter(|(d, min)| *d < secs(*min));
    let (problem, note) = if failed {
        let code = if let PingKind::Exit(c) = kind { format!(" (exit code {c})") } else { String::new() };
        (Some(Problem::Failed), format!("the run reported a failure{code}"))
    } else if let Some((d, max)) = too_long {
        (Some(Problem::TooLong), format!("the run took {}, more than the maximum {max} s", describe(d)))
    } else if let Some((d, min)) = too_short {
        (Some(Problem::TooShort), format!("the run took {}, less than the minimum {min} s", describe(d)))
    } else {
        t.last_success_at = Some(now);
        (None, "a run completed".to_owned())
    };
    let changed = problem != t.problem;
    t.problem = problem;
    // The awaited run is over: await the next one.
    match cadence {
        Cadence::Period(p) => {
            t.expected_at = Some(now + *p);
            t.expected_started = false;
        }
        Cadence::Cron(c) if advance => {
            t.expected_at = t.expected_at.and_then(|e| c.next_after(e.max(now - spec.grace())));
            t.expected_started = false;
        }
        Cadence::Cron(_) => {}
    }
    let unexpected = !awaited_run && matches!(cadence, Cadence::Cron(_));
    PingOutcome { unexpected, duration, note: changed.then_some(note) }
}

/// Moves the tracker for the passing of time (the sweep at `now`); returns why its problem changed.
pub fn on_tick(spec: &HeartbeatSpec, cadence: &Cadence, t: &mut Tracker, now: DateTime<Utc>) -> Option<String> {
    let before = t.problem;
    let mut why = None;
    if let (Some(start), Some(max)) = (t.started_at, spec.max_runtime_seconds)
        && now > start + secs(max)
        && t.problem.is_none()
    {
        t.problem = Some(Problem::TooLong);
        why = Some(format!("running since {} — longer than the maximum {max} s", start.to_rfc3339()));
    }
    if let Some(expected) = t.expected_at {
        if let Some(window) = spec.start_window_seconds
            && !t.expected_started
            && now > expected + secs(window)
            && matches!(t.problem, None | Some(Problem::TooLong))
        {
            t.problem = Some(Problem::StartMissed);
            why = Some(format!(
                "no start by {} (expected at {})",
                (expected + secs(window)).to_rfc3339(),
                expected.to_rfc3339()
            ));
        }
        if now > expected + spec.grace() {
            if !matches!(t.problem, Some(Problem::Failed)) {
                t.problem = Some(Problem::Missed);
                why = Some(format!(
                    "no completed run by {} (expected at {})",
                    (expected + spec.grace()).to_rfc3339(),
                    expected.to_rfc3339()
                ));
            }
            // Await the next run whose deadline is still ahead.
            t.expected_at = match cadence {
                Cadence::Period(_) => None,
                Cadence::Cron(c) => c.next_after(expected.max(now - spec.grace())),
            };
            t.expected_started = false;
        }
    }
    (t.problem != before).then_some(why).flatten()
}

/// When the sweep must look at the check next: the start window, the completion deadline or the
/// maximum run time, whichever comes first.
pub fn next_check(spec: &HeartbeatSpec, t: &Tracker) -> Option<DateTime<Utc>> {
    let mut at: Vec<DateTime<Utc>> = Vec::new();
    if let Some(expected) = t.expected_at {
        at.push(expected + spec.grace());
        if let Some(w) = spec.start_window_seconds
            && !t.expected_started
        {
            at.push(expected + secs(w));
        }
    }
    if let (Some(start), Some(max)) = (t.started_at, spec.max_runtime_seconds)
        && t.problem.is_none()
    {
        at.push(start + secs(max));
    }
    // A second past the deadline: the sweep's test is "later than".
    at.into_iter().min().map(|a| a + Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn spec(period: Option<u32>, cron: Option<&str>, tz: Option<&str>, grace: u32) -> HeartbeatSpec {
        HeartbeatSpec {
            name: "nightly".into(),
            period_seconds: period,
            cron: cron.map(str::to_owned),
            timezone: tz.map(str::to_owned),
            grace_seconds: grace,
            start_window_seconds: None,
            min_runtime_seconds: None,
            max_runtime_seconds: None,
            is_active: true,
        }
    }

    #[test]
    fn a_period_check_waits_for_its_first_ping_then_expects_a_run_each_period() {
        let s = spec(Some(60), None, None, 30);
        let c = s.cadence().expect("cadence");
        let t0 = at("2026-06-01T12:00:00Z");
        let mut t = Tracker { expected_at: first_expected(&c, t0), ..Default::default() };
        assert_eq!((status(&t), next_check(&s, &t)), ("new", None), "nothing can be late before the first ping");
        on_ping(&s, &c, &mut t, PingKind::Success, None, t0);
        assert_eq!((status(&t), t.expected_at), ("up", Some(t0 + Duration::seconds(60))));
        assert_eq!(next_check(&s, &t), Some(t0 + Duration::seconds(91)));
        assert_eq!(on_tick(&s, &c, &mut t, t0 + Duration::seconds(89)), None);
        assert!(on_tick(&s, &c, &mut t, t0 + Duration::seconds(91)).is_some());
        assert_eq!((t.problem, status(&t)), (Some(Problem::Missed), "down"));
        assert_eq!(on_tick(&s, &c, &mut t, t0 + Duration::seconds(300)), None, "missed once, not every sweep");
        let back = on_ping(&s, &c, &mut t, PingKind::Exit(0), None, t0 + Duration::seconds(400));
        assert!(!back.unexpected && back.note.is_some());
        assert_eq!((t.problem, status(&t)), (None, "up"));
        on_ping(&s, &c, &mut t, PingKind::Exit(3), None, t0 + Duration::seconds(410));
        assert_eq!(t.problem, Some(Problem::Failed));
    }

    #[test]
    fn start_window_and_run_times_are_checked_on_both_sides() {
        let mut s = spec(None, Some("0 3 * * *"), None, 3600);
        s.start_window_seconds = Some(300);
        s.min_runtime_seconds = Some(60);
        s.max_runtime_seconds = Some(1800);
        assert!(s.check().is_empty(), "{:?}", s.check());
        let c = s.cadence().expect("cadence");
        let mut t = Tracker { expected_at: first_expected(&c, at("2026-06-01T00:00:00Z")), ..Default::default() };
        assert_eq!(t.expected_at, Some(at("2026-06-01T03:00:00Z")));
        assert_eq!(next_check(&s, &t), Some(at("2026-06-01T03:05:01Z")), "the start window comes first");
        // No start within 5 minutes: an alert although the completion grace is an hour.
        assert!(on_tick(&s, &c, &mut t, at("2026-06-01T03:05:01Z")).is_some());
        assert_eq!(t.problem, Some(Problem::StartMissed));
        let late = on_ping(&s, &c, &mut t, PingKind::Start, Some("r1"), at("2026-06-01T03:06:00Z"));
        assert!(!late.unexpected);
        assert_eq!((t.problem, status(&t)), (None, "running"));
        // Still running after the maximum: raised while it runs.
        assert!(on_tick(&s, &c, &mut t, at("2026-06-01T03:36:01Z")).is_some());
        assert_eq!(t.problem, Some(Problem::TooLong));
        let end = on_ping(&s, &c, &mut t, PingKind::Success, Some("r1"), at("2026-06-01T03:40:00Z"));
        assert_eq!(end.duration, Some(Duration::minutes(34)));
        assert_eq!(t.problem, Some(Problem::TooLong));
        assert_eq!(t.expected_at, Some(at("2026-06-02T03:00:00Z")));
        // A 10 s run of a job that takes minutes did nothing.
        on_ping(&s, &c, &mut t, PingKind::Start, None, at("2026-06-02T03:00:10Z"));
        let short = on_ping(&s, &c, &mut t, PingKind::Success, None, at("2026-06-02T03:00:20Z"));
        assert_eq!((short.duration, t.problem), (Some(Duration::seconds(10)), Some(Problem::TooShort)));
        // An end whose run id matches no run in progress is not paired.
        on_ping(&s, &c, &mut t, PingKind::Start, Some("a"), at("2026-06-03T03:00:00Z"));
        let other = on_ping(&s, &c, &mut t, PingKind::Success, Some("b"), at("2026-06-03T03:02:00Z"));
        assert_eq!(other.duration, None);
        assert_eq!(t.run_id.as_deref(), Some("a"), "run a still in progress");
        let good = on_ping(&s, &c, &mut t, PingKind::Success, Some("a"), at("2026-06-03T03:05:00Z"));
        assert_eq!((good.duration, t.problem), (Some(Duration::minutes(5)), None));
    }

    #[test]
    fn berlin_spring_forward_expects_the_shifted_run_once() {
        // 02:30 does not exist on 2026-03-29 in Berlin: the run is expected at 03:30 CEST (01:30Z).
        let s = spec(None, Some("30 2 * * *"), Some("Europe/Berlin"), 600);
        let c = s.cadence().expect("cadence");
        let mut t = Tracker { expected_at: first_expected(&c, at("2026-03-28T12:00:00Z")), ..Default::default() };
        assert_eq!(t.expected_at, Some(at("2026-03-29T01:30:00Z")));
        assert_eq!(on_tick(&s, &c, &mut t, at("2026-03-29T01:20:00Z")), None, "no alert at a time that does not exist");
        let start = on_ping(&s, &c, &mut t, PingKind::Start, None, at("2026-03-29T01:30:05Z"));
        let end = on_ping(&s, &c, &mut t, PingKind::Success, None, at("2026-03-29T01:32:00Z"));
        assert!(!start.unexpected && !end.unexpected && t.problem.is_none());
        // The next night is summer time: 02:30 CEST is 00:30Z.
        assert_eq!(t.expected_at, Some(at("2026-03-30T00:30:00Z")));
        assert_eq!(on_tick(&s, &c, &mut t, at("2026-03-30T00:40:00Z")), None);
        assert!(on_tick(&s, &c, &mut t, at("2026-03-30T00:40:02Z")).is_some());
        assert_eq!(t.problem, Some(Problem::Missed));
        assert_eq!(t.expected_at, Some(at("2026-03-31T00:30:00Z")));
    }

    #[test]
    fn berlin_fall_back_expects_one_run_and_flags_the_repeated_hour() {
        // 02:30 happens twice on 2026-10-25 in Berlin (CEST 00:30Z, then CET 01:30Z): one run.
        let s = spec(None, Some("30 2 * * *"), Some("Europe/Berlin"), 600);
        let c = s.cadence().expect("cadence");
        let mut t = Tracker { expected_at: first_expected(&c, at("2026-10-24T12:00:00Z")), ..Default::default() };
        assert_eq!(t.expected_at, Some(at("2026-10-25T00:30:00Z")));
        on_ping(&s, &c, &mut t, PingKind::Start, None, at("2026-10-25T00:30:02Z"));
        let first = on_ping(&s, &c, &mut t, PingKind::Success, None, at("2026-10-25T00:31:00Z"));
        assert!(!first.unexpected);
        assert_eq!(t.expected_at, Some(at("2026-10-26T01:30:00Z")), "the next is tomorrow 02:30 CET");
        // A crontab that ran again in the repeated hour: recorded as an unexpected run, no alert.
        let again = on_ping(&s, &c, &mut t, PingKind::Start, None, at("2026-10-25T01:30:05Z"));
        let again_end = on_ping(&s, &c, &mut t, PingKind::Success, None, at("2026-10-25T01:31:00Z"));
        assert!(again.unexpected && again_end.unexpected, "{again:?} {again_end:?}");
        assert_eq!(again_end.duration, Some(Duration::seconds(55)));
        assert_eq!((t.problem, t.expected_at), (None, Some(at("2026-10-26T01:30:00Z"))));
        assert_eq!(on_tick(&s, &c, &mut t, at("2026-10-25T01:45:00Z")), None, "nothing is due in the repeated hour");
        // Nothing at 02:30 CET the next night: missed at its deadline in winter time.
        assert_eq!(on_tick(&s, &c, &mut t, at("2026-10-26T01:39:59Z")), None);
        assert!(on_tick(&s, &c, &mut t, at("2026-10-26T01:40:01Z")).is_some());
        assert_eq!(t.problem, Some(Problem::Missed));
    }

    #[test]
    fn specifications_are_checked_field_by_field() {
        let fields = |s: HeartbeatSpec| s.check().into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        assert_eq!(fields(spec(None, None, None, 60)), ["period_seconds"]);
        assert_eq!(fields(spec(Some(60), Some("* * * * *"), None, 60)), ["cron"]);
        assert_eq!(fields(spec(Some(5), None, None, 60)), ["period_seconds"]);
        assert_eq!(fields(spec(Some(60), None, Some("Europe/Berlin"), 60)), ["timezone"]);
        assert_eq!(fields(spec(None, Some("61 * * * *"), None, 60)), ["cron"]);
        assert_eq!(fields(spec(None, Some("0 3 * * *"), Some("Mars/Olympus"), 60)), ["timezone"]);
        let mut s = spec(Some(60), None, None, 60);
        s.min_runtime_seconds = Some(600);
        s.max_runtime_seconds = Some(60);
        assert_eq!(fields(s), ["min_runtime_seconds"]);
        assert_eq!(Problem::parse("start_missed"), Ok(Problem::StartMissed));
    }
}
