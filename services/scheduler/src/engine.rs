//! The schedule engine: one active replica (elected by a lease in the database) keeps every active
//! schedule in a timer heap, fires due ticks in batches through a per-tick claim, and follows API edits
//! by polling modification times. Standby replicas wait for the lease.
//!
//! Exactly-once rests on the claim, not on the lease: a tick fires only if, in the committing
//! transaction, it is still the schedule's `next_fire_at` at the version the replica read (and the
//! unique (schedule, tick) firing row backs that up). The lease only keeps one replica doing the work,
//! so a replica that stalls past its lease (a long GC-like pause, a partition) can race the new one at
//! worst, never double-fire.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sentinel_jobs::db::{ClaimedTick, DbError, NewJob, ScheduleRecord, ScheduleStore, TickClaim};
use sentinel_jobs::domain::schedule::{MisfirePolicy, Trigger, jitter_for};
use sentinel_jobs::domain::{JobId, RetryPolicy};
use sentinel_jobs::{BUILTIN_OWNER_PREFIX, Spine, next_tick};
use sentinel_telemetry::{Shutdown, metric};
use uuid::Uuid;

/// The lease every scheduler replica competes for.
pub const LEASE_NAME: &str = "scheduler";
/// Most ticks fired in one transaction.
const MAX_BATCH: usize = 2_000;
/// Most missed cron ticks counted one by one after an outage (beyond that the count is a lower bound;
/// interval ticks are counted exactly, by arithmetic).
const MAX_COUNTED_MISSES: u64 = 1_000;
/// Edits committed this long after their `updated_at` are still seen by the change poll. It also absorbs
/// clock skew between the gateway that stamps `updated_at` and this replica.
const CHANGE_OVERLAP: chrono::Duration = chrono::Duration::seconds(10);
/// How often the active replica reloads every schedule, in case an edit slipped past the change poll.
const FULL_RESYNC: Duration = Duration::from_secs(300);
/// Pause after a failed claim before trying those ticks again.
const CLAIM_RETRY: Duration = Duration::from_millis(200);

/// One schedule as the active replica holds it.
struct Entry {
    trigger: Trigger,
    rec: ScheduleRecord,
    /// The tick to fire next (the row's `next_fire_at`).
    tick: DateTime<Utc>,
    /// `tick` plus this tick's jitter.
    due: DateTime<Utc>,
}

/// Heap key: due time first; the rest identifies the entry state it was pushed for (stale keys are
/// skipped when popped instead of being removed from the heap).
type HeapKey = Reverse<(DateTime<Utc>, Uuid, i64, DateTime<Utc>)>;

/// Receives the lateness (commit time minus due time) of every committed firing.
pub type LatenessObserver = std::sync::Arc<dyn Fn(Duration) + Send + Sync>;

/// A scheduler replica.
pub struct Engine {
    spine: Spine,
    store: ScheduleStore,
    holder: String,
    entries: HashMap<Uuid, Entry>,
    heap: BinaryHeap<HeapKey>,
    observer: Option<LatenessObserver>,
}

impl Engine {
    pub fn new(spine: Spine) -> Self {
        let holder = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "scheduler".to_owned()),
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let store = spine.db().schedules();
        Self { spine, store, holder, entries: HashMap::new(), heap: BinaryHeap::new(), observer: None }
    }

    /// Reports each firing's lateness to `observer` too (the benchmark's exact histogram).
    pub fn with_lateness_observer(mut self, observer: LatenessObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Competes for the lease until `shutdown`; leads while it holds it.
    pub async fn run(mut self, shutdown: Shutdown) {
        let settings = self.spine.settings().scheduler.clone();
        let ttl = chrono::Duration::from_std(settings.lease_ttl()).unwrap_or(chrono::Duration::seconds(3));
        metrics::gauge!(metric::SCHEDULER_LEADER).set(0.0);
        loop {
            match self.store.acquire_lease(LEASE_NAME, &self.holder, ttl).await {
                Ok(Some(epoch)) => {
                    tracing::info!(holder = %self.holder, epoch, "scheduler: took the lease, now active");
                    metrics::gauge!(metric::SCHEDULER_LEADER).set(1.0);
                    let outcome = self.lead(epoch, ttl, &shutdown).await;
                    metrics::gauge!(metric::SCHEDULER_LEADER).set(0.0);
                    self.entries.clear();
                    self.heap.clear();
                    match outcome {
                        Ok(()) => {}
                        Err(e) => tracing::warn!(error = %e, "scheduler: stepped down"),
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler: cannot reach the lease; will retry"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(settings.standby_poll()) => {}
            }
        }
    }

    /// Fires schedules while the lease is ours. Returns `Ok` on shutdown (lease released), an error
    /// when the lease was lost or could not be renewed in time.
    async fn lead(&mut self, epoch: i64, ttl: chrono::Duration, shutdown: &Shutdown) -> Result<(), DbError> {
        let settings = self.spine.settings().scheduler.clone();
        let mut lease_until = Utc::now() + ttl;
        let mut watermark = self.load_all().await?;
        let mut renew = tokio::time::interval(settings.lease_ttl() / 3);
        let mut reload = tokio::time::interval(settings.reload());
        let mut resync = tokio::time::interval(FULL_RESYNC);
        for timer in [&mut renew, &mut reload, &mut resync] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.reset();
        }
        loop {
            let wait = self.until_next_due();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    if let Err(e) = self.store.release_lease(LEASE_NAME, &self.holder).await {
                        tracing::warn!(error = %e, "scheduler: could not release the lease; it expires on its own");
                    }
                    return Ok(());
                }
                _ = renew.tick() => {
                    match self.store.acquire_lease(LEASE_NAME, &self.holder, ttl).await {
                        Ok(Some(e)) if e == epoch => lease_until = Utc::now() + ttl,
                        Ok(_) => return Err(DbError::NotFound("the scheduler lease (taken over)".to_owned())),
                        Err(e) if Utc::now() >= lease_until => return Err(e),
                        Err(e) => tracing::warn!(error = %e, "scheduler: lease renewal failed; retrying"),
                    }
                }
                _ = reload.tick() => {
                    match self.reload_changes(watermark).await {
                        Ok(next) => watermark = next,
                        Err(e) => tracing::warn!(error = %e, "scheduler: cannot poll schedule changes; retrying"),
                    }
                }
                _ = resync.tick() => {
                    match self.load_all().await {
                        Ok(next) => watermark = next,
                        Err(e) => tracing::warn!(error = %e, "scheduler: full reload failed; retrying"),
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    if Utc::now() >= lease_until {
                        return Err(DbError::NotFound("the scheduler lease (expired before renewal)".to_owned()));
                    }
                    if let Err(e) = self.fire_due().await {
                        tracing::warn!(error = %e, "scheduler: firing failed; retrying");
                        tokio::time::sleep(CLAIM_RETRY).await;
                    }
                }
            }
        }
    }

    fn until_next_due(&self) -> Duration {
        match self.heap.peek() {
            Some(Reverse((due, ..))) => {
                (*due - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(1))
            }
            None => Duration::from_secs(1),
        }
    }

    /// Loads every active schedule; returns the change-poll watermark to continue from.
    async fn load_all(&mut self) -> Result<DateTime<Utc>, DbError> {
        let started = Utc::now();
        let active = self.store.active().await?;
        self.entries.clear();
        self.heap.clear();
        for rec in active {
            self.upsert(rec);
        }
        metrics::gauge!(metric::SCHEDULES_ACTIVE).set(self.entries.len() as f64);
        tracing::info!(schedules = self.entries.len(), "scheduler: loaded active schedules");
        Ok(started - CHANGE_OVERLAP)
    }

    /// Applies schedules edited since `since`; returns the next watermark.
    async fn reload_changes(&mut self, since: DateTime<Utc>) -> Result<DateTime<Utc>, DbError> {
        let started = Utc::now();
        for rec in self.store.changed_since(since).await? {
            if self.entries.get(&rec.id).is_none_or(|e| e.rec.version != rec.version) {
                self.upsert(rec);
            }
        }
        metrics::gauge!(metric::SCHEDULES_ACTIVE).set(self.entries.len() as f64);
        Ok(started - CHANGE_OVERLAP)
    }

    /// Holds `rec` if it has a tick to fire, forgets it otherwise.
    fn upsert(&mut self, rec: ScheduleRecord) {
        let (Some(tick), true) = (rec.next_fire_at, rec.enabled) else {
            self.entries.remove(&rec.id);
            return;
        };
        let trigger = match rec.trigger() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(schedule_id = %rec.id, error = %e, "scheduler: stored schedule has an invalid trigger; skipped");
                self.entries.remove(&rec.id);
                return;
            }
        };
        let due = tick + jitter_for(rec.id, tick, rec.jitter_ms);
        self.heap.push(Reverse((due, rec.id, rec.version, tick)));
        self.entries.insert(rec.id, Entry { trigger, rec, tick, due });
    }

    /// Claims and fires one batch of due ticks. The caller's loop comes straight back while more are
    /// due, having checked the lease, shutdown and edits in between.
    async fn fire_due(&mut self) -> Result<(), DbError> {
        let grace = chrono::Duration::from_std(self.spine.settings().scheduler.misfire_grace())
            .unwrap_or(chrono::Duration::seconds(10));
        let now = Utc::now();
        let mut claims = Vec::new();
        let mut claimed_ids = HashSet::new();
        while claims.len() < MAX_BATCH {
            let Some(Reverse((due, id, version, tick))) = self.heap.peek().cloned() else { break };
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get(&id) else { continue };
            if entry.rec.version != version || entry.tick != tick || !claimed_ids.insert(id) {
                continue;
            }
            claims.push(self.claim_for(entry, now, grace));
        }
        if claims.is_empty() {
            return Ok(());
        }
        let dues: HashMap<Uuid, DateTime<Utc>> =
            claims.iter().filter_map(|c| self.entries.get(&c.schedule_id).map(|e| (c.schedule_id, e.due))).collect();
        let mut failed = HashSet::new();
        let claimed = match self.store.claim(claims.clone()).await {
            Ok(claimed) => claimed,
            Err(e) if claims.len() == 1 => {
                // Nothing committed: try this tick again shortly.
                self.retry_later(&claims[0], now);
                return Err(e);
            }
            Err(e) => {
                // One bad tick must not hold up the others: claim them one by one.
                tracing::warn!(error = %e, batch = claims.len(), "scheduler: batch claim failed; claiming one by one");
                let mut claimed = Vec::with_capacity(claims.len());
                for c in &claims {
                    match self.store.claim(vec![c.clone()]).await {
                        Ok(won) => claimed.extend(won),
                        Err(e) => {
                            tracing::warn!(error = %e, schedule_id = %c.schedule_id, "scheduler: cannot fire this tick; will retry");
                            self.retry_later(c, now);
                            failed.insert(c.schedule_id);
                        }
                    }
                }
                claimed
            }
        };
        let committed_at = Utc::now();
        let won: HashSet<Uuid> = claimed.iter().map(|c| c.schedule_id).collect();
        for c in &claimed {
            if let Some(due) = dues.get(&c.schedule_id) {
                let late = (committed_at - *due).to_std().unwrap_or(Duration::ZERO);
                metrics::histogram!(metric::SCHEDULE_LATENESS).record(late.as_secs_f64());
                if let Some(observe) = &self.observer {
                    observe(late);
                }
            }
            let outcome = if c.job.is_some() { "fired" } else { "skipped" };
            metrics::counter!(metric::SCHEDULE_FIRINGS, "outcome" => outcome).increment(1);
            self.advance(c);
        }
        self.publish(claimed);
        // Lost claims: another replica fired the tick, or the schedule changed. Re-read them.
        for c in claims.iter().filter(|c| !won.contains(&c.schedule_id) && !failed.contains(&c.schedule_id)) {
            match self.store.get(c.schedule_id).await {
                Ok(Some(rec)) => self.upsert(rec),
                Ok(None) => {
                    self.entries.remove(&c.schedule_id);
                }
                Err(e) => {
                    tracing::warn!(error = %e, schedule_id = %c.schedule_id, "scheduler: cannot re-read a schedule; will retry");
                    self.retry_later(c, now);
                }
            }
        }
        Ok(())
    }

    /// Puts a tick whose claim failed back in the heap, due again after a pause.
    fn retry_later(&mut self, claim: &TickClaim, now: DateTime<Utc>) {
        if let Some(entry) = self.entries.get(&claim.schedule_id) {
            let again = now + chrono::Duration::from_std(CLAIM_RETRY).unwrap_or_default();
            self.heap.push(Reverse((again.max(entry.due), claim.schedule_id, entry.rec.version, entry.tick)));
        }
    }

    /// What to do with the due tick of `entry`: fire it, or — when it is later than the misfire grace —
    /// follow the schedule's misfire policy over every tick missed so far.
    fn claim_for(&self, entry: &Entry, now: DateTime<Utc>, grace: chrono::Duration) -> TickClaim {
        let rec = &entry.rec;
        let end_at = rec.end_at;
        let mut claim = TickClaim {
            schedule_id: rec.id,
            org_id: rec.org_id,
            version: rec.version,
            tick_at: entry.tick,
            next_fire_at: next_tick(&entry.trigger, entry.tick, end_at, true),
            fired_at: now,
            job: Some(self.job_for(rec)),
            missed_ticks: 0,
        };
        if now - entry.due <= grace {
            return claim;
        }
        // A misfire: count the ticks that are past the grace too, and resume at the first one that is not.
        let cutoff = now - grace;
        let mut missed = 1u64;
        let mut next = claim.next_fire_at;
        match (&entry.trigger, rec.interval_secs) {
            (Trigger::Interval(_), Some(every)) if rec.jitter_ms == 0 => {
                // Interval ticks are evenly spaced: count them by arithmetic.
                let every_ms = (every as i64).saturating_mul(1000).max(1);
                missed += ((cutoff - entry.tick).num_milliseconds().max(0) / every_ms) as u64;
                next = next_tick(&entry.trigger, cutoff, end_at, true);
            }
            _ => {
                while let Some(t) = next {
                    if t + jitter_for(rec.id, t, rec.jitter_ms) > cutoff || missed >= MAX_COUNTED_MISSES {
                        break;
                    }
                    missed += 1;
                    next = next_tick(&entry.trigger, t, end_at, true);
                }
                if missed >= MAX_COUNTED_MISSES {
                    next = next_tick(&entry.trigger, cutoff, end_at, true);
                }
            }
        }
        claim.next_fire_at = next;
        match rec.misfire_policy {
            MisfirePolicy::Skip => {
                claim.job = None;
                claim.missed_ticks = missed;
            }
            MisfirePolicy::RunOnce => claim.missed_ticks = missed - 1,
        }
        claim
    }

    fn job_for(&self, rec: &ScheduleRecord) -> NewJob {
        let queue = match self.spine.catalog().get(&rec.job_kind) {
            Some(spec) => spec.queue.clone(),
            None => {
                // The kind was validated at creation; a release that dropped it still runs the job on the
                // default queue, where it fails visibly instead of the schedule going quiet.
                sentinel_jobs::domain::QueueName::parse(sentinel_jobs::domain::builtin::DEFAULT_QUEUE)
                    .unwrap_or_else(|_| unreachable!("the default queue name is valid"))
            }
        };
        NewJob {
            id: JobId::new(),
            kind: rec.job_kind.clone(),
            queue,
            priority: rec.priority,
            payload: rec.payload.clone(),
            retry: RetryPolicy::default(),
            run_at: None,
            trace_context: Default::default(),
            requested_by: Some(format!("schedule:{}", rec.id)),
            org_id: rec.org_id,
            // A built-in sweep is never queued twice: while one is unfinished, its ticks are skipped.
            dedup_key: rec.owner.as_ref().filter(|o| o.starts_with(BUILTIN_OWNER_PREFIX)).cloned(),
        }
    }

    /// Moves a fired schedule to its next tick (or forgets it when it has ended).
    fn advance(&mut self, claimed: &ClaimedTick) {
        let Some(entry) = self.entries.get_mut(&claimed.schedule_id) else { return };
        match claimed.next_fire_at {
            Some(next) => {
                entry.tick = next;
                entry.due = next + jitter_for(entry.rec.id, next, entry.rec.jitter_ms);
                self.heap.push(Reverse((entry.due, claimed.schedule_id, entry.rec.version, next)));
            }
            None => {
                self.entries.remove(&claimed.schedule_id);
            }
        }
    }

    /// Puts the committed jobs on the bus in the background (the outbox relay covers a crash here).
    fn publish(&self, claimed: Vec<ClaimedTick>) {
        let jobs: Vec<_> = claimed.into_iter().filter_map(|c| c.job).collect();
        if jobs.is_empty() {
            return;
        }
        let spine = self.spine.clone();
        tokio::spawn(async move {
            let mut by_queue: HashMap<_, Vec<_>> = HashMap::new();
            for (job, _) in &jobs {
                by_queue.entry(job.queue.clone()).or_default().push(job);
            }
            for (queue, batch) in by_queue {
                let messages: Vec<_> = batch.iter().map(|j| Spine::message_for(j)).collect();
                match spine.bus().publish(&queue, &messages).await {
                    Ok(()) => batch.iter().for_each(|j| spine.mark_published_later(j.id)),
                    Err(e) => tracing::warn!(error = %e, %queue, "publish failed; the outbox relay will retry"),
                }
            }
            for (_, event) in &jobs {
                spine.broadcast(event).await;
            }
        });
    }
}
