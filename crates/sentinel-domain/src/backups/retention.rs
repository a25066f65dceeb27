//! Retention: which backups of a plan a rule set keeps and which it lets go — keep-last, keep-within,
//! grandfather-father-son — ordered by each backup's start time (never by name), with floors no rule
//! can break: the newest successful backup, the newest verified one, and every backup an incremental
//! chain of a kept one still needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::JournalStatus;

/// A plan's retention rules. A backup is kept when any rule keeps it; with no rule at all, every
/// backup is kept. Calendar buckets (days, ISO weeks, months, years) are UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The newest N successful backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Every successful backup started in the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_days: Option<u32>,
    /// The newest backup of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
}

/// A rule that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention.{field}: {reason}")]
pub struct RetentionError {
    pub field: &'static str,
    pub reason: String,
}

/// The largest count any rule takes.
pub const MAX_KEEP: u32 = 100_000;

impl Retention {
    pub fn check(&self) -> Result<(), RetentionError> {
        for (field, value) in self.rules() {
            if let Some(n) = value
                && !(1..=MAX_KEEP).contains(&n)
            {
                return Err(RetentionError {
                    field,
                    reason: format!("must be from 1 to {MAX_KEEP} (omit it to not use the rule)"),
                });
            }
        }
        Ok(())
    }

    fn rules(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("keep_last", self.keep_last),
            ("keep_within_days", self.keep_within_days),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(_, v)| v.is_none())
    }
}

/// One backup of the plan, as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub status: JournalStatus,
    /// Restored and compared successfully (the verification issue sets it).
    pub verified: bool,
    /// The backup this one is an increment of, if any.
    pub based_on: Option<Uuid>,
}

/// What retention decides for one backup, with every reason it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: Uuid,
    pub keep: bool,
    pub reasons: Vec<&'static str>,
}

/// The calendar bucket (year and day, week, month or 0) a start time falls in.
type BucketOf = fn(&DateTime<Utc>) -> (i32, u32);

/// Applies `rules` to `snapshots` at `now`. Only `succeeded` and `incomplete` backups hold an
/// artifact, so only they appear in the result (newest first); everything else has nothing to
/// delete. An incomplete backup is counted by the rules but never is the newest successful one.
pub fn plan_retention(rules: &Retention, snapshots: &[Snapshot], now: DateTime<Utc>) -> Vec<Verdict> {
    let mut live: Vec<&Snapshot> = snapshots.iter().filter(|s| s.status.holds_artifact()).collect();
    // Newest first by start time; the id (UUIDv7) breaks ties deterministically.
    live.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let mut reasons: BTreeMap<Uuid, BTreeSet<&'static str>> = BTreeMap::new();
    fn keep_in(reasons: &mut BTreeMap<Uuid, BTreeSet<&'static str>>, id: Uuid, why: &'static str) {
        reasons.entry(id).or_default().insert(why);
    }
    let mut keep = |id: Uuid, why: &'static str| keep_in(&mut reasons, id, why);
    if rules.is_empty() {
        for s in &live {
            keep(s.id, "no retention rule");
        }
    }
    if let Some(n) = rules.keep_last {
        for s in live.iter().take(n as usize) {
            keep(s.id, "keep_last");
        }
    }
    if let Some(days) = rules.keep_within_days {
        let since = now - Duration::days(i64::from(days));
        for s in live.iter().filter(|s| s.started_at >= since) {
            keep(s.id, "keep_within_days");
        }
    }
    let buckets: [(Option<u32>, &'static str, BucketOf); 4] = [
        (rules.keep_daily, "keep_daily", |t| (t.year(), t.ordinal())),
        (rules.keep_weekly, "keep_weekly", |t| (t.iso_week().year(), t.iso_week().week())),
        (rules.keep_monthly, "keep_monthly", |t| (t.year(), t.month())),
        (rules.keep_yearly, "keep_yearly", |t| (t.year(), 0)),
    ];
    for (count, why, bucket_of) in buckets {
        let Some(n) = count else { continue };
        let mut seen = BTreeSet::new();
        for s in &live {
            if seen.len() >= n as usize {
                break;
            }
            // The first (newest) backup met in each bucket is the one that bucket keeps.
            if seen.insert(bucket_of(&s.started_at)) {
                keep(s.id, why);
            }
        }
    }
    // Floors no rule can break.
    if let Some(newest) = live.iter().find(|s| s.status == JournalStatus::Succeeded) {
        keep(newest.id, "newest successful backup");
    }
    if let Some(verified) = live.iter().find(|s| s.verified) {
        keep(verified.id, "newest verified backup");
    }
    let by_id: HashMap<Uuid, &Snapshot> = snapshots.iter().map(|s| (s.id, s)).collect();
    let kept: Vec<Uuid> = reasons.keys().copied().collect();
    for id in kept {
        let mut parent = by_id.get(&id).and_then(|s| s.based_on);
        while let Some(p) = parent {
            keep_in(&mut reasons, p, "needed by an incremental chain");
            parent = by_id.get(&p).and_then(|s| s.based_on);
        }
    }
    live.iter()
        .map(|s| {
            let why = reasons.get(&s.id).map(|r| r.iter().copied().collect()).unwrap_or_default();
            Verdict { id: s.id, keep: !reasons.get(&s.id).is_none_or(BTreeSet::is_empty), reasons: why }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, hour, 0, 0).single().expect("valid") + Duration::days(i64::from(day))
    }

    fn snap(day: u32, hour: u32, status: JournalStatus) -> Snapshot {
        Snapshot { id: Uuid::now_v7(), started_at: at(day, hour), status, verified: false, based_on: None }
    }

    fn kept(verdicts: &[Verdict]) -> Vec<Uuid> {
        verdicts.iter().filter(|v| v.keep).map(|v| v.id).collect()
    }

    #[test]
    fn keep_last_counts_by_start_time_not_by_id_or_name() {
        // Created in an order unlike their start times (a backfilled journal, a clock change).
        let late = snap(5, 0, JournalStatus::Succeeded);
        let early = snap(1, 0, JournalStatus::Succeeded);
        let middle = snap(3, 0, JournalStatus::Succeeded);
        let rules = Retention { keep_last: Some(2), ..Default::default() };
        let v = plan_retention(&rules, &[late.clone(), early.clone(), middle.clone()], at(6, 0));
        assert_eq!(kept(&v), vec![late.id, middle.id]);
        assert_eq!(v.iter().find(|x| x.id == early.id).map(|x| x.keep), Some(false));
    }

    #[test]
    fn thirty_days_of_failures_never_delete_the_last_good_backups() {
        let mut all = vec![snap(0, 1, JournalStatus::Succeeded), snap(1, 1, JournalStatus::Succeeded)];
        all[0].verified = true;
        for day in 2..32 {
            all.push(snap(day, 1, JournalStatus::Failed));
        }
        let rules = Retention { keep_within_days: Some(7), ..Default::default() };
        let v = plan_retention(&rules, &all, at(32, 0));
        let keep = kept(&v);
        assert!(keep.contains(&all[0].id), "the newest verified backup survives");
        assert!(keep.contains(&all[1].id), "the newest successful backup survives");
        assert_eq!(v.len(), 2, "failed backups hold no artifact and are not candidates");
    }

    #[test]
    fn grandfather_father_son_keeps_the_newest_of_each_bucket() {
        // Four backups a day for 70 days.
        let all: Vec<Snapshot> =
            (0..70).flat_map(|d| [0, 6, 12, 18].map(|h| snap(d, h, JournalStatus::Succeeded))).collect();
        let rules =
            Retention { keep_daily: Some(7), keep_weekly: Some(4), keep_monthly: Some(3), ..Default::default() };
        let v = plan_retention(&rules, &all, at(70, 0));
        let keep: Vec<&Snapshot> = all.iter().filter(|s| kept(&v).contains(&s.id)).collect();
        let daily = v.iter().filter(|x| x.reasons.contains(&"keep_daily")).count();
        assert_eq!(daily, 7);
        assert!(keep.iter().all(|s| s.started_at.format("%H").to_string() == "18"), "the newest of each day");
        assert_eq!(v.iter().filter(|x| x.reasons.contains(&"keep_monthly")).count(), 3);
        assert!(keep.len() < 7 + 4 + 3 + 1 && keep.len() >= 7);
    }

    #[test]
    fn an_incremental_chain_keeps_its_base() {
        let base = snap(0, 0, JournalStatus::Succeeded);
        let mut inc = snap(1, 0, JournalStatus::Succeeded);
        inc.based_on = Some(base.id);
        let rules = Retention { keep_last: Some(1), ..Default::default() };
        let v = plan_retention(&rules, &[base.clone(), inc.clone()], at(2, 0));
        assert_eq!(kept(&v).len(), 2);
        assert!(v.iter().any(|x| x.id == base.id && x.reasons == vec!["needed by an incremental chain"]));
    }

    #[test]
    fn incomplete_backups_are_pruned_by_the_rules_but_never_count_as_the_newest_success() {
        let good = snap(0, 0, JournalStatus::Succeeded);
        let gappy: Vec<Snapshot> = (1..5).map(|d| snap(d, 0, JournalStatus::Incomplete)).collect();
        let mut all = gappy.clone();
        all.push(good.clone());
        let v = plan_retention(&Retention { keep_last: Some(1), ..Default::default() }, &all, at(9, 0));
        assert_eq!(v.len(), 5, "incomplete backups hold artifacts: retention sees them");
        assert!(v.iter().any(|x| x.id == good.id && x.reasons == vec!["newest successful backup"]));
        assert!(v.iter().any(|x| x.id == gappy[3].id && x.reasons == vec!["keep_last"]));
        assert_eq!(kept(&v).len(), 2, "the three older incomplete ones go");
    }

    #[test]
    fn no_rule_keeps_everything_and_counts_are_checked() {
        let all = vec![snap(0, 0, JournalStatus::Succeeded), snap(1, 0, JournalStatus::Succeeded)];
        assert_eq!(kept(&plan_retention(&Retention::default(), &all, at(9, 0))).len(), 2);
        let bad = Retention { keep_daily: Some(0), ..Default::default() };
        assert_eq!(bad.check().expect_err("refused").field, "keep_daily");
        assert!(serde_json::from_str::<Retention>(r#"{"keep_forever": 1}"#).is_err());
    }
}
