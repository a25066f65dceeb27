//! A notification group's timers: given what the group last notified and the alerts routed to it
//! now, whether to notify (which alerts firing, which resolved), wait, or forget the group. This is
//! Alertmanager's dispatcher with two changes: a firing that was notified always gets its
//! "resolved" (even when muted in between), and acknowledged alerts are not repeated.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::routing::Timers;

/// A firing alert routed to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedAlert {
    pub id: Uuid,
    /// Neither muted, inhibited nor suppressed: it may page.
    pub eligible: bool,
    /// Its incident was acknowledged (no repeats).
    pub acknowledged: bool,
}

/// What the group remembers between evaluations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupState {
    /// The alerts the channels were last told are firing.
    pub notified: BTreeSet<Uuid>,
    pub next_flush_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
}

/// What to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub firing: Vec<Uuid>,
    pub resolved: Vec<Uuid>,
    /// The same firing alerts again (`repeat_interval`).
    pub repeat: bool,
}

/// The group's next state, what to send, and whether the group is still worth keeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub state: GroupState,
    pub send: Option<Notification>,
    pub keep: bool,
}

fn secs(s: u32) -> Duration {
    Duration::seconds(i64::from(s))
}

/// Plans the group at `now`.
pub fn plan(state: &GroupState, firing: &[PlannedAlert], timers: Timers, now: DateTime<Utc>) -> GroupPlan {
    let eligible: BTreeSet<Uuid> = firing.iter().filter(|a| a.eligible).map(|a| a.id).collect();
    let still: BTreeSet<Uuid> = firing.iter().map(|a| a.id).collect();
    let resolved: Vec<Uuid> = state.notified.difference(&still).copied().collect();
    let added = eligible.difference(&state.notified).next().is_some();
    let changed = added || !resolved.is_empty();
    let mut next = state.next_flush_at;
    if next.is_none() && changed {
        next = Some(match state.last_notified_at {
            None => now + secs(timers.group_wait_seconds),
            Some(last) => (last + secs(timers.group_interval_seconds)).max(now),
        });
    }
    let mut out = state.clone();
    let mut send = None;
    match next {
        Some(at) if at <= now => {
            out.next_flush_at = None;
            if changed {
                send = Some(Notification { firing: eligible.iter().copied().collect(), resolved, repeat: false });
                // Muted alerts that were notified stay owed their "resolved".
                out.notified =
                    eligible.union(&state.notified.intersection(&still).copied().collect()).copied().collect();
                out.last_notified_at = Some(now);
            }
        }
        Some(at) => out.next_flush_at = Some(at),
        None => {
            let unacknowledged = firing.iter().any(|a| a.eligible && !a.acknowledged);
            if unacknowledged
                && state.last_notified_at.is_some_and(|last| last + secs(timers.repeat_interval_seconds) <= now)
            {
                send =
                    Some(Notification { firing: eligible.iter().copied().collect(), resolved: vec![], repeat: true });
                out.last_notified_at = Some(now);
            }
        }
    }
    let keep = !(eligible.is_empty() && out.notified.is_empty() && out.next_flush_at.is_none());
    GroupPlan { state: out, send, keep }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> Timers {
        Timers { group_wait_seconds: 30, group_interval_seconds: 300, repeat_interval_seconds: 3600 }
    }

    fn firing(ids: &[Uuid]) -> Vec<PlannedAlert> {
        ids.iter().map(|&id| PlannedAlert { id, eligible: true, acknowledged: false }).collect()
    }

    #[test]
    fn a_new_group_waits_then_sends_everything_that_arrived_meanwhile_once() {
        let t0 = Utc::now();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let p = plan(&GroupState::default(), &firing(&[a]), timers(), t0);
        assert_eq!((p.send.clone(), p.state.next_flush_at), (None, Some(t0 + secs(30))));
        let p = plan(&p.state, &firing(&[a, b]), timers(), t0 + secs(10));
        assert!(p.send.is_none(), "still waiting");
        let p = plan(&p.state, &firing(&[a, b]), timers(), t0 + secs(30));
        let sent = p.send.expect("sent");
        assert_eq!((sent.firing.len(), sent.resolved.len(), sent.repeat), (2, 0, false));
        let again = plan(&p.state, &firing(&[a, b]), timers(), t0 + secs(31));
        assert!(again.send.is_none() && again.keep, "nothing changed");
    }

    #[test]
    fn an_alert_resolved_within_group_wait_is_never_notified() {
        let t0 = Utc::now();
        let a = Uuid::now_v7();
        let p = plan(&GroupState::default(), &firing(&[a]), timers(), t0);
        let p = plan(&p.state, &[], timers(), t0 + secs(30));
        assert!(p.send.is_none());
        assert!(!p.keep, "the group is forgotten");
    }

    #[test]
    fn a_notified_alert_gets_its_resolved_even_while_muted() {
        let t0 = Utc::now();
        let a = Uuid::now_v7();
        let p = plan(&GroupState::default(), &firing(&[a]), timers(), t0);
        let p = plan(&p.state, &firing(&[a]), timers(), t0 + secs(30));
        assert!(p.send.is_some());
        let muted = [PlannedAlert { id: a, eligible: false, acknowledged: false }];
        let p = plan(&p.state, &muted, timers(), t0 + secs(60));
        assert!(p.send.is_none() && p.keep, "muted: quiet, but still owed its resolved");
        let p = plan(&p.state, &[], timers(), t0 + secs(90));
        assert_eq!(p.state.next_flush_at, Some(t0 + secs(330)), "a change waits for group_interval");
        let p = plan(&p.state, &[], timers(), t0 + secs(330));
        assert_eq!(p.send.expect("resolved").resolved, vec![a]);
        assert!(!p.keep);
    }

    #[test]
    fn repeats_stop_once_acknowledged() {
        let t0 = Utc::now();
        let a = Uuid::now_v7();
        let p = plan(&GroupState::default(), &firing(&[a]), timers(), t0);
        let p = plan(&p.state, &firing(&[a]), timers(), t0 + secs(30));
        let r = plan(&p.state, &firing(&[a]), timers(), t0 + secs(3630));
        assert!(r.send.expect("repeat").repeat);
        let acked = [PlannedAlert { id: a, eligible: true, acknowledged: true }];
        assert!(plan(&p.state, &acked, timers(), t0 + secs(3630)).send.is_none());
    }
}
