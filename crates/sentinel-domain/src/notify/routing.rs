//! Routing: an alert's labels, matchers over them, the policy that sends alerts to channels in
//! groups (Alertmanager's routing tree, one level deep, with its timers), and the silences and
//! maintenance windows that mute notifications (never the record).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backups::FieldProblem;
use crate::schedule::CronTrigger;

/// An alert's labels: `alertname` (its rule), `severity`, `source` (target, metric, machine,
/// heartbeat, backup, provisioning), `source_id`, `name`, `incident`, `server` (when the source is
/// tied to an inventory server) and `group` (`server:<id>`, else `incident:<id>`).
pub type Labels = BTreeMap<String, String>;

/// The labels routing and muting may name.
pub const KNOWN_LABELS: [&str; 8] =
    ["alertname", "severity", "source", "source_id", "name", "incident", "server", "group"];

/// How a matcher compares a label's value (a missing label reads as the empty string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
}

/// One condition on a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.label).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
        }
    }
}

fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn check_matchers(field: &str, matchers: &[Matcher], out: &mut Vec<FieldProblem>) {
    if matchers.len() > 20 {
        out.push((field.to_owned(), "at most 20 matchers".to_owned()));
    }
    for (i, m) in matchers.iter().enumerate() {
        if !KNOWN_LABELS.contains(&m.label.as_str()) {
            out.push((format!("{field}[{i}].label"), format!("unknown label (one of {})", KNOWN_LABELS.join(", "))));
        }
        if m.value.len() > 256 {
            out.push((format!("{field}[{i}].value"), "at most 256 characters".to_owned()));
        }
    }
}

/// Alertmanager's timers, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// Wait before a new group's first notification, so alerts arriving together leave together
    /// (an alert resolved within it is never notified).
    pub group_wait_seconds: u32,
    /// Wait between two notifications of a group that changed (alerts added or resolved).
    pub group_interval_seconds: u32,
    /// An unchanged, unacknowledged firing group is notified again after this long.
    pub repeat_interval_seconds: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Self { group_wait_seconds: 30, group_interval_seconds: 300, repeat_interval_seconds: 14_400 }
    }
}

/// The longest timer accepted (a week).
pub const MAX_TIMER_SECS: u32 = 604_800;

/// One route below the policy's root: the first whose matchers all match takes the alert (and the
/// following ones too when `continue` is set); unset fields inherit the root's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// `None`: the root's channels.
    #[serde(default)]
    pub channels: Option<Vec<Uuid>>,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub group_wait_seconds: Option<u32>,
    #[serde(default)]
    pub group_interval_seconds: Option<u32>,
    #[serde(default)]
    pub repeat_interval_seconds: Option<u32>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

/// An organization's routing policy (its root route and the routes below it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `None`: every active channel of the organization.
    #[serde(default)]
    pub channels: Option<Vec<Uuid>>,
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    #[serde(flatten)]
    pub timers: Timers,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// An alert of a server that a provisioning run or a backup is working on is recorded but not
    /// paged while the job runs and for this long after it ended.
    #[serde(default = "default_margin")]
    pub job_margin_seconds: u32,
}

fn default_group_by() -> Vec<String> {
    vec!["group".to_owned()]
}

fn default_margin() -> u32 {
    300
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            channels: None,
            group_by: default_group_by(),
            timers: Timers::default(),
            routes: Vec::new(),
            job_margin_seconds: default_margin(),
        }
    }
}

/// Where an alert goes: the route (`root` or `routes[i]`), its channels, its group and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub route_key: String,
    pub channels: Option<Vec<Uuid>>,
    /// The labels the group is made of (`group_by` with the alert's values).
    pub group_labels: Labels,
    pub timers: Timers,
}

impl Destination {
    /// The group's identity within its organization.
    pub fn group_key(&self) -> String {
        let values: Vec<String> = self.group_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}|{}", self.route_key, values.join(","))
    }
}

impl Policy {
    /// Every problem of the policy, each naming its field.
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        let check_group_by = |field: &str, g: &[String], out: &mut Vec<FieldProblem>| {
            if let Some(i) = g.iter().position(|l| !KNOWN_LABELS.contains(&l.as_str())) {
                out.push((format!("{field}[{i}]"), format!("unknown label (one of {})", KNOWN_LABELS.join(", "))));
            }
        };
        check_group_by("group_by", &self.group_by, &mut out);
        let timers = |prefix: &str, t: [(&str, Option<u32>); 3], out: &mut Vec<FieldProblem>| {
            for (name, v) in t {
                if v.is_some_and(|v| v > MAX_TIMER_SECS) {
                    out.push((format!("{prefix}{name}"), format!("at most {MAX_TIMER_SECS} (a week)")));
                }
            }
        };
        let root = self.timers;
        timers(
            "",
            [
                ("group_wait_seconds", Some(root.group_wait_seconds)),
                ("group_interval_seconds", Some(root.group_interval_seconds)),
                ("repeat_interval_seconds", Some(root.repeat_interval_seconds)),
            ],
            &mut out,
        );
        if root.group_interval_seconds == 0 {
            out.push(("group_interval_seconds".to_owned(), "at least 1".to_owned()));
        }
        if root.repeat_interval_seconds < root.group_interval_seconds {
            out.push(("repeat_interval_seconds".to_owned(), "at least group_interval_seconds".to_owned()));
        }
        if self.job_margin_seconds > 86_400 {
            out.push(("job_margin_seconds".to_owned(), "at most 86400 (a day)".to_owned()));
        }
        if self.routes.len() > 100 {
            out.push(("routes".to_owned(), "at most 100 routes".to_owned()));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let p = format!("routes[{i}].");
            check_matchers(&format!("{p}matchers"), &r.matchers, &mut out);
            if let Some(g) = &r.group_by {
                check_group_by(&format!("{p}group_by"), g, &mut out);
            }
            timers(
                &p,
                [
                    ("group_wait_seconds", r.group_wait_seconds),
                    ("group_interval_seconds", r.group_interval_seconds),
                    ("repeat_interval_seconds", r.repeat_interval_seconds),
                ],
                &mut out,
            );
            if r.group_interval_seconds == Some(0) {
                out.push((format!("{p}group_interval_seconds"), "at least 1".to_owned()));
            }
        }
        out
    }

    /// Every channel the policy names (each must exist in the organization).
    pub fn named_channels(&self) -> Vec<(String, Uuid)> {
        let mut out: Vec<(String, Uuid)> =
            self.channels.iter().flatten().enumerate().map(|(i, c)| (format!("channels[{i}]"), *c)).collect();
        for (r, route) in self.routes.iter().enumerate() {
            out.extend(
                route.channels.iter().flatten().enumerate().map(|(i, c)| (format!("routes[{r}].channels[{i}]"), *c)),
            );
        }
        out
    }

    /// The timers of `route` (the root's where it sets none).
    fn timers(&self, route: Option<&Route>) -> Timers {
        let t = self.timers;
        Timers {
            group_wait_seconds: route.and_then(|r| r.group_wait_seconds).unwrap_or(t.group_wait_seconds),
            group_interval_seconds: route
                .and_then(|r| r.group_interval_seconds)
                .unwrap_or(t.group_interval_seconds)
                .max(1),
            repeat_interval_seconds: route.and_then(|r| r.repeat_interval_seconds).unwrap_or(t.repeat_interval_seconds),
        }
    }

    /// The timers of the route a destination's `route_key` names (`root`, `routes[i]`; a route the
    /// policy no longer has: the root's).
    pub fn timers_of(&self, route_key: &str) -> Timers {
        let index = route_key.strip_prefix("routes[").and_then(|r| r.strip_suffix(']')).and_then(|i| i.parse().ok());
        self.timers(index.and_then(|i: usize| self.routes.get(i)))
    }

    fn destination(&self, route_key: String, route: Option<&Route>, labels: &Labels) -> Destination {
        let group_by = route.and_then(|r| r.group_by.as_ref()).unwrap_or(&self.group_by);
        Destination {
            route_key,
            channels: route.and_then(|r| r.channels.clone()).or_else(|| self.channels.clone()),
            group_labels: group_by.iter().map(|l| (l.clone(), labels.get(l).cloned().unwrap_or_default())).collect(),
            timers: self.timers(route),
        }
    }

    /// Where an alert with `labels` goes: the routes that take it, or the root when none does.
    pub fn route(&self, labels: &Labels) -> Vec<Destination> {
        let mut out = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if all_match(&r.matchers, labels) {
                out.push(self.destination(format!("routes[{i}]"), Some(r), labels));
                if !r.continue_matching {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(self.destination("root".to_owned(), None, labels));
        }
        out
    }
}

/// When a mute applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MuteSchedule {
    /// From `starts_at` until `ends_at`.
    Once { starts_at: DateTime<Utc>, ends_at: DateTime<Utc> },
    /// For `duration_minutes` from each tick of a cron expression in a time zone.
    Recurring { cron: String, timezone: String, duration_minutes: u32 },
}

/// A silence or a maintenance window: while active, it mutes the notifications of the alerts its
/// matchers all match (an empty list matches every alert of the organization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub id: Uuid,
    pub matchers: Vec<Matcher>,
    pub schedule: MuteSchedule,
}

/// The longest recurring window (a week).
pub const MAX_WINDOW_MINUTES: u32 = 10_080;

impl Mute {
    /// Every problem of a mute, each naming its field; `need_matchers` for silences.
    pub fn check(matchers: &[Matcher], schedule: &MuteSchedule, need_matchers: bool) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        if need_matchers && matchers.is_empty() {
            out.push(("matchers".to_owned(), "at least one matcher (a silence never mutes everything)".to_owned()));
        }
        check_matchers("matchers", matchers, &mut out);
        match schedule {
            MuteSchedule::Once { starts_at, ends_at } => {
                if ends_at <= starts_at {
                    out.push(("ends_at".to_owned(), "must be after starts_at".to_owned()));
                }
            }
            MuteSchedule::Recurring { cron, timezone, duration_minutes } => {
                if let Err(e) = CronTrigger::new(cron, timezone) {
                    out.push((e.field.to_owned(), e.reason));
                }
                if !(1..=MAX_WINDOW_MINUTES).contains(duration_minutes) {
                    out.push(("duration_minutes".to_owned(), format!("must be between 1 and {MAX_WINDOW_MINUTES}")));
                }
            }
        }
        out
    }

    /// Whether the mute is in force at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        match &self.schedule {
            MuteSchedule::Once { starts_at, ends_at } => *starts_at <= now && now < *ends_at,
            MuteSchedule::Recurring { cron, timezone, duration_minutes } => {
                let Ok(trigger) = CronTrigger::parse(cron, timezone) else { return false };
                let window = Duration::minutes(i64::from(*duration_minutes));
                // A tick in (now - window, now] opened a window that is still open.
                trigger.next_after(now - window).is_some_and(|tick| tick <= now)
            }
        }
    }

    pub fn mutes(&self, labels: &Labels, now: DateTime<Utc>) -> bool {
        self.active_at(now) && all_match(&self.matchers, labels)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn eq(label: &str, value: &str) -> Matcher {
        Matcher { label: label.into(), op: MatchOp::Equal, value: value.into() }
    }

    #[test]
    fn the_first_matching_route_takes_the_alert_unless_it_continues() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let mut policy = Policy {
            routes: vec![
                Route {
                    matchers: vec![eq("severity", "critical")],
                    channels: Some(vec![a]),
                    group_by: Some(vec!["server".into()]),
                    group_wait_seconds: Some(0),
                    group_interval_seconds: None,
                    repeat_interval_seconds: None,
                    continue_matching: false,
                },
                Route {
                    matchers: vec![eq("source", "target")],
                    channels: Some(vec![b]),
                    group_by: None,
                    group_wait_seconds: None,
                    group_interval_seconds: None,
                    repeat_interval_seconds: None,
                    continue_matching: false,
                },
            ],
            ..Policy::default()
        };
        let critical = labels(&[("severity", "critical"), ("source", "target"), ("server", "s1"), ("group", "g")]);
        let to = policy.route(&critical);
        assert_eq!(to.len(), 1);
        assert_eq!(to[0].channels, Some(vec![a]));
        assert_eq!(to[0].group_key(), "routes[0]|server=s1");
        assert_eq!(to[0].timers.group_wait_seconds, 0);
        assert_eq!(to[0].timers.group_interval_seconds, 300, "inherited from the root");
        assert_eq!(policy.timers_of("routes[0]"), to[0].timers, "a stored group finds its route's timers");
        assert_eq!(policy.timers_of("routes[9]"), policy.timers, "a route no longer there: the root's");
        policy.routes[0].continue_matching = true;
        assert_eq!(policy.route(&critical).len(), 2);
        let other = labels(&[("severity", "warning"), ("source", "metric"), ("group", "incident:1")]);
        let to = policy.route(&other);
        assert_eq!((to[0].route_key.as_str(), to[0].channels.clone()), ("root", None));
        assert_eq!(to[0].group_key(), "root|group=incident:1");
    }

    #[test]
    fn a_policy_names_its_bad_fields() {
        let mut p = Policy { group_by: vec!["colour".into()], ..Policy::default() };
        p.timers.repeat_interval_seconds = 10;
        let fields: Vec<String> = p.check().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["group_by[0]".to_owned(), "repeat_interval_seconds".to_owned()]);
    }

    #[test]
    fn a_recurring_window_is_open_for_its_duration_after_each_tick_in_its_time_zone() {
        let m = Mute {
            id: Uuid::nil(),
            matchers: vec![],
            schedule: MuteSchedule::Recurring {
                cron: "0 2 * * SUN".into(),
                timezone: "Europe/Berlin".into(),
                duration_minutes: 60,
            },
        };
        // Sunday 2026-12-06 02:00 in Berlin is 01:00 UTC.
        let at = |h: u32, min: u32| Utc.with_ymd_and_hms(2026, 12, 6, h, min, 0).single().expect("valid");
        assert!(!m.active_at(at(0, 59)));
        assert!(m.active_at(at(1, 0)));
        assert!(m.active_at(at(1, 59)));
        assert!(!m.active_at(at(2, 0)));
        assert!(m.mutes(&labels(&[("severity", "critical")]), at(1, 30)), "no matchers: everything");
    }

    #[test]
    fn a_silence_needs_a_matcher_and_an_end_after_its_start() {
        let now = Utc::now();
        let once = MuteSchedule::Once { starts_at: now, ends_at: now };
        let fields: Vec<String> = Mute::check(&[], &once, true).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["matchers".to_owned(), "ends_at".to_owned()]);
        let ok = MuteSchedule::Once { starts_at: now, ends_at: now + Duration::hours(1) };
        assert!(Mute::check(&[eq("server", "x")], &ok, true).is_empty());
    }
}
