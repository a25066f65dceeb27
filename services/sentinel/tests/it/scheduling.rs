//! Scheduler replicas as real processes on PostgreSQL + Redis: two replicas fire every tick exactly
//! once, a SIGKILLed active replica is replaced within 5 s, and after a full outage the missed ticks
//! follow each schedule's misfire policy.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sentinel_jobs::ScheduleInput;
use sentinel_jobs::Spine;
use sentinel_jobs::db::{FiringRecord, JobFilter, ScheduleRecord};
use sentinel_jobs::domain::schedule::MisfirePolicy;
use sentinel_jobs::domain::{Priority, builtin};
use serde_json::json;
use uuid::Uuid;

use crate::distributed::Cluster;
use crate::procs::{Proc, wait_ready};

struct Fixture {
    cluster: Cluster,
    spine: Spine,
    org: Uuid,
}

impl Fixture {
    async fn new(extra: &[(&str, &str)]) -> Self {
        let cluster = Cluster::new(extra).await;
        cluster.migrate();
        let spine = cluster.spine().await;
        let org = spine.db().access().create_org("scheduling").await.expect("org").id;
        Self { cluster, spine, org }
    }

    async fn schedule(
        &self,
        name: &str,
        cron: Option<&str>,
        every: Option<u64>,
        policy: MisfirePolicy,
        jitter_ms: u64,
    ) -> ScheduleRecord {
        let input = ScheduleInput {
            name: name.to_owned(),
            cron: cron.map(str::to_owned),
            interval_secs: every,
            timezone: None,
            kind: builtin::DEMO_SLEEP.to_owned(),
            payload: json!({ "seconds": 0 }),
            priority: Priority::Normal,
            enabled: true,
            misfire_policy: policy,
            jitter_ms,
            end_at: None,
        };
        let now = Utc::now();
        let draft =
            self.spine.schedule_draft(input, Some(self.org), None, Some("test".into()), now, now).expect("valid");
        self.spine.db().schedules().create(draft).await.expect("create")
    }

    async fn firings(&self, id: Uuid) -> Vec<FiringRecord> {
        let mut rows = self.spine.db().schedules().firings(id, None, 10_000).await.expect("firings");
        rows.reverse();
        rows
    }

    async fn jobs_of(&self, id: Uuid) -> usize {
        let filter = JobFilter { requested_by: Some(format!("schedule:{id}")), ..Default::default() };
        self.spine.store().list(self.org, &filter, None, 10_000).await.expect("jobs").len()
    }

    async fn start_scheduler(&self, extra: &[(&str, &str)]) -> Proc {
        let mut p = self.cluster.start("scheduler", extra);
        wait_ready(&mut p, "/health", Duration::from_secs(30)).await;
        p
    }

    /// The pid of the replica holding the lease, if any.
    async fn leader_pid(&self) -> Option<u32> {
        let (holder, _) = self.spine.db().schedules().lease_holder(scheduler::LEASE_NAME).await.expect("lease")?;
        // Holders are `<host>-<pid>-<random>`; the test processes have no HOSTNAME, so host is "scheduler".
        holder.split('-').nth(1)?.parse().ok()
    }
}

/// Checks that `rows` account for every tick of an `every`-second schedule between the first and the
/// last row exactly once; returns the ticks.
fn assert_every_tick_once(name: &str, rows: &[FiringRecord], every: i64) -> Vec<DateTime<Utc>> {
    let mut covered = Vec::new();
    for row in rows {
        // A fired row stands for its tick plus the ticks coalesced into it; a skipped row for `missed_ticks` ticks.
        let count = if row.outcome == "fired" { 1 + row.missed_ticks } else { row.missed_ticks };
        for k in 0..count as i64 {
            covered.push(row.tick_at + chrono::Duration::seconds(k * every));
        }
    }
    let unique: BTreeSet<_> = covered.iter().copied().collect();
    assert_eq!(unique.len(), covered.len(), "{name}: a tick was claimed twice: {rows:#?}");
    let (first, last) = (*unique.first().expect("fired"), *unique.last().expect("fired"));
    let expected = (last - first).num_seconds() / every + 1;
    assert_eq!(unique.len() as i64, expected, "{name}: a tick between {first} and {last} was missed: {rows:#?}");
    covered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_tick_once_and_a_killed_leader_is_replaced_within_5s() {
    let fx = Fixture::new(&[]).await;
    let every_second = fx.schedule("interval 1s", None, Some(1), MisfirePolicy::Skip, 0).await;
    let cron_second = fx.schedule("cron every second", Some("* * * * * *"), None, MisfirePolicy::Skip, 0).await;
    let jittered = fx.schedule("interval 2s, jitter", None, Some(2), MisfirePolicy::Skip, 700).await;

    let mut replicas = [fx.start_scheduler(&[]).await, fx.start_scheduler(&[]).await];
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Kill the active replica outright; the standby must take the lease within 5 s.
    let leader = fx.leader_pid().await.expect("a leader");
    let index = replicas.iter().position(|p| p.pid() == leader).expect("the leader is one of ours");
    let killed_at = Instant::now();
    replicas[index].signal("-KILL");
    let survivor = replicas[1 - index].pid();
    let took_over = sentinel_testkit::eventually(Duration::from_secs(10), || async {
        (fx.leader_pid().await == Some(survivor)).then_some(killed_at.elapsed())
    })
    .await
    .expect("the standby took over");
    assert!(took_over < Duration::from_secs(5), "takeover took {took_over:?}");

    // The new leader catches up on the ticks that fell in the gap, then keeps going.
    tokio::time::sleep(Duration::from_secs(6)).await;
    replicas[1 - index].signal("-TERM");
    replicas[1 - index].wait_exit(Duration::from_secs(15)).expect("graceful stop");

    for (rec, every) in [(&every_second, 1), (&cron_second, 1), (&jittered, 2)] {
        let rows = fx.firings(rec.id).await;
        assert!(rows.len() as i64 >= 10 / every, "{}: only {} firings", rec.name, rows.len());
        assert!(rows.iter().all(|r| r.outcome == "fired" && r.job_id.is_some()), "{}: {rows:#?}", rec.name);
        assert_every_tick_once(&rec.name, &rows, every);
        let jobs: BTreeSet<_> = rows.iter().filter_map(|r| r.job_id).collect();
        assert_eq!(jobs.len(), rows.len(), "{}: one job per firing", rec.name);
        assert_eq!(fx.jobs_of(rec.id).await, rows.len(), "{}: no job without a firing row", rec.name);
        let worst = rows.iter().map(|r| r.fired_at - r.tick_at).max().expect("rows");
        assert!(worst < chrono::Duration::seconds(6), "{}: the gap's ticks fired late but fired: {worst}", rec.name);
    }
    // Jitter delays each tick by less than its bound.
    for r in fx.firings(jittered.id).await {
        assert!(r.fired_at >= r.tick_at, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_outage_missed_ticks_follow_each_misfire_policy() {
    let grace = [("SENTINEL_SCHEDULER__MISFIRE_GRACE_MS", "1000")];
    let fx = Fixture::new(&grace).await;
    let skip = fx.schedule("skip", None, Some(1), MisfirePolicy::Skip, 0).await;
    let run_once = fx.schedule("run once", None, Some(1), MisfirePolicy::RunOnce, 0).await;

    let mut first = fx.start_scheduler(&[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    let before: HashMap<Uuid, usize> =
        [(skip.id, fx.firings(skip.id).await.len()), (run_once.id, fx.firings(run_once.id).await.len())].into();
    assert!(before.values().all(|n| *n >= 1), "both fired before the outage: {before:?}");

    // Nothing runs for 7 s: well past the 1 s misfire grace.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut second = fx.start_scheduler(&[]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    second.signal("-TERM");
    second.wait_exit(Duration::from_secs(15)).expect("graceful stop");

    let skipped = fx.firings(skip.id).await;
    let outage: Vec<_> = skipped.iter().filter(|r| r.outcome == "skipped").collect();
    assert_eq!(outage.len(), 1, "one record for the missed run of ticks: {skipped:#?}");
    assert!(outage[0].missed_ticks >= 5 && outage[0].job_id.is_none(), "{:?}", outage[0]);
    assert_every_tick_once("skip", &skipped, 1);
    let fired = skipped.iter().filter(|r| r.outcome == "fired").count();
    assert_eq!(fx.jobs_of(skip.id).await, fired, "skipped ticks start no job");

    let coalesced = fx.firings(run_once.id).await;
    assert!(coalesced.iter().all(|r| r.outcome == "fired"), "{coalesced:#?}");
    let catch_up: Vec<_> = coalesced.iter().filter(|r| r.missed_ticks > 0).collect();
    assert_eq!(catch_up.len(), 1, "the missed ticks ran once: {coalesced:#?}");
    assert!(catch_up[0].missed_ticks >= 4, "{:?}", catch_up[0]);
    assert_every_tick_once("run once", &coalesced, 1);
    assert_eq!(fx.jobs_of(run_once.id).await, coalesced.len(), "one job per fired row, the catch-up included");
}

/// With no worker consuming the `monitor` queue, the HTTP check sweep (every second here) fires its
/// first job and then records its ticks as skipped: at most one of its jobs is ever queued, and the
/// scheduler's `/metrics` and `/ready` show the queue nobody consumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_nobody_runs_is_queued_once_and_its_queue_is_reported() {
    let fx = Fixture::new(&[
        ("SENTINEL_SCHEDULER__HTTP_CHECK_DISPATCH_INTERVAL_SECS", "1"),
        ("SENTINEL_SCHEDULER__UNCONSUMED_WARNING_SECS", "2"),
    ])
    .await;
    let mut scheduler = fx.start_scheduler(&[]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let system = fx.spine.db().schedules().list_system().await.expect("system schedules");
    let sweep = system
        .iter()
        .find(|s| s.job_kind.as_str() == builtin::MONITOR_DISPATCH_HTTP_CHECKS)
        .expect("the dispatch sweep exists");
    let rows = fx.firings(sweep.id).await;
    let fired = rows.iter().filter(|r| r.outcome == "fired").count();
    let skipped = rows.iter().filter(|r| r.outcome == "skipped").count();
    assert_eq!(fired, 1, "one job while the first is unfinished: {rows:#?}");
    assert!(skipped >= 3, "later ticks are recorded as skipped: {rows:#?}");
    assert_every_tick_once("dispatch", &rows, 1);
    let job = rows.iter().find(|r| r.outcome == "fired").and_then(|r| r.job_id).expect("the fired tick's job");
    let job = fx.spine.store().get(job).await.expect("get").expect("the job exists");
    assert_eq!(job.state, sentinel_jobs::domain::JobState::Queued, "the one dispatch job waits");
    // Every other built-in sweep (on queues nobody consumes here either) holds at most one job too.
    let counts = fx.spine.store().counts(None).await.expect("counts");
    let queued = counts.iter().find(|(s, _)| *s == sentinel_jobs::domain::JobState::Queued).map_or(0, |(_, n)| *n);
    assert!(queued as usize <= system.len(), "at most one job per sweep: {counts:?}");

    let metrics = crate::procs::get_text(&format!("http://127.0.0.1:{}/metrics", scheduler.port)).await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sentinel_queue_waiting_jobs") && l.contains("queue=\"monitor\""))
        .unwrap_or_else(|| panic!("waiting gauge of the monitor queue:\n{metrics}"));
    // The dispatch sweep's job, plus the other monitor sweeps' when the test ran long enough for
    // their first tick (60 s, 120 s) on a loaded machine: at most one job each.
    let waiting: usize = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let monitor_sweeps = system.iter().filter(|s| s.job_kind.as_str().starts_with("monitor.")).count();
    assert!((1..=monitor_sweeps).contains(&waiting), "{line}");
    let (_, ready) = crate::procs::get_json(&format!("http://127.0.0.1:{}/ready", scheduler.port), None).await;
    assert_eq!(ready["status"], "ready", "a queue nobody consumes does not make the scheduler unready: {ready}");
    let warning = ready["warnings"]["queue:monitor"].as_str().unwrap_or_default();
    assert!(warning.contains(&format!("{waiting} due job")), "{ready}");
    scheduler.signal("-TERM");
    scheduler.wait_exit(Duration::from_secs(15)).expect("graceful stop");
}
