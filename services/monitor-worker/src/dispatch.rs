//! The HTTP check dispatcher of one monitor worker. Each `monitor.dispatch_http_checks` sweep claims
//! the deadlines due within the horizon (under a lease), and each one then waits for its own
//! deadline — absolute, so a slow check never delays the next one — for a slot (in all, and on its
//! host), runs, and hands its result to the writer, which records results in batches and waits out
//! a database outage instead of dropping them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sentinel_jobs::Vault;
use sentinel_jobs::db::monitoring::{CheckResult, ClaimedCheck, MonitoringStore, target_secret_owner};
use sentinel_jobs::domain::monitoring::targets::host_of;
use sentinel_jobs::domain::monitoring::{ErrorClass, TargetSpec};
use sentinel_telemetry::{Shutdown, metric};
use tokio::sync::{Notify, Semaphore, mpsc};
use uuid::Uuid;

use crate::probe::{Probe, Prober};

/// The deadlines a worker holds and has not recorded yet.
type Held = Arc<Mutex<HashSet<(Uuid, DateTime<Utc>)>>>;

/// Results recorded per database transaction at most.
const BATCH: usize = 500;
/// How long the writer gathers results before a write.
const LINGER: Duration = Duration::from_millis(100);

/// One worker's dispatcher: its leases, its slots and its writer.
pub struct Dispatcher {
    store: MonitoringStore,
    prober: Arc<Prober>,
    owner: String,
    slots: Arc<Semaphore>,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Deadlines this worker holds and has not recorded yet (a sweep must not start them twice).
    held: Held,
    /// Results for the writer, each with whether its target's next deadline is already (nearly)
    /// due: such a deadline is claimed as soon as the result is recorded rather than at the next
    /// sweep (a check that took its whole interval must not make the next one late).
    results: mpsc::UnboundedSender<(CheckResult, bool)>,
    follow_up: Arc<Notify>,
    /// The last sweep's horizon and lease grace, reused by follow-up claims.
    window: Mutex<Option<(Duration, Duration)>>,
    /// Opens targets' sealed headers (none when no master key is configured).
    vault: Option<Vault>,
    /// Opened sealed headers by secret id (a secret never changes: a new value is a new secret).
    opened: Mutex<HashMap<Uuid, Arc<BTreeMap<String, String>>>>,
    shutdown: Shutdown,
}

impl Dispatcher {
    /// Starts the writer; the dispatcher lives as long as the worker.
    pub fn start(
        store: MonitoringStore,
        prober: Arc<Prober>,
        vault: Option<Vault>,
        max_concurrent: usize,
        per_host: usize,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let held = Arc::new(Mutex::new(HashSet::new()));
        let follow_up = Arc::new(Notify::new());
        tokio::spawn(write_results(store.clone(), rx, held.clone(), follow_up.clone()));
        let owner = format!("{}:{}:{}", crate::SERVICE, std::process::id(), Uuid::now_v7().simple());
        let dispatcher = Arc::new(Self {
            store,
            prober,
            owner,
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
            held,
            results: tx,
            follow_up,
            window: Mutex::new(None),
            vault,
            opened: Mutex::new(HashMap::new()),
            shutdown,
        });
        tokio::spawn(dispatcher.clone().claim_follow_ups());
        dispatcher
    }

    /// Claims again whenever recorded results left a deadline due before the next sweep.
    async fn claim_follow_ups(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.follow_up.notified() => {}
                () = self.shutdown.cancelled() => return,
            }
            let window = *self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((horizon, grace)) = window
                && let Err(e) = self.dispatch(horizon, grace).await
            {
                tracing::warn!(error = %e, "follow-up claim failed; the next sweep claims instead");
            }
        }
    }

    /// Checks `target` once: its sealed headers opened (from the cache after the first time), then
    /// the probe. A secret that cannot be opened is a failed check that says why.
    pub async fn probe(&self, target: Uuid, spec: &TargetSpec) -> Probe {
        let Some(sealed) = &spec.sealed_headers else { return self.prober.probe(spec).await };
        match self.sealed_headers(target, sealed.secret_id).await {
            Ok(headers) => {
                let mut with = spec.clone();
                with.headers.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                self.prober.probe(&with).await
            }
            Err(e) => Probe::failed(ErrorClass::Other, format!("cannot open the target's secret headers: {e}")),
        }
    }

    async fn sealed_headers(&self, target: Uuid, id: Uuid) -> Result<Arc<BTreeMap<String, String>>, String> {
        if let Some(h) = self.opened.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id) {
            return Ok(h.clone());
        }
        let vault = self.vault.as_ref().ok_or("no master key is configured")?;
        let plain = vault.open_owned(id, &target_secret_owner(target)).await.map_err(|e| e.to_string())?;
        let headers: BTreeMap<String, String> = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
        let headers = Arc::new(headers);
        let mut opened = self.opened.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if opened.len() > 100_000 {
            opened.clear();
        }
        opened.insert(id, headers.clone());
        Ok(headers)
    }

    fn host_slots(&self, url: &str) -> Arc<Semaphore> {
        let host = host_of(url).unwrap_or_default();
        let mut map = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(host).or_insert_with(|| Arc::new(Semaphore::new(self.per_host))).clone()
    }

    /// Claims what is due within `horizon` and schedules each at its deadline; returns how many.
    /// A lease outlives its deadline by the target's timeout plus `grace`.
    pub async fn dispatch(
        self: &Arc<Self>,
        horizon: Duration,
        grace: Duration,
    ) -> Result<usize, sentinel_jobs::db::DbError> {
        *self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((horizon, grace));
        let until = Utc::now() + chrono::Duration::from_std(horizon).unwrap_or_default();
        let grace = chrono::Duration::from_std(grace).unwrap_or_default();
        let mut scheduled = 0;
        loop {
            let claimed = self.store.claim_due(&self.owner, until, grace, 5000).await?;
            let n = claimed.len();
            for check in claimed {
                let fresh = self
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((check.target_id, check.due_at));
                if fresh {
                    scheduled += 1;
                    tokio::spawn(self.clone().run_at_deadline(check));
                }
            }
            if n < 5000 {
                return Ok(scheduled);
            }
        }
    }

    async fn run_at_deadline(self: Arc<Self>, check: ClaimedCheck) {
        let wait = (check.due_at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.shutdown.cancelled() => {
                // Not started: give the deadline back so another worker runs it now.
                let _ = self.store.release_claims(&self.owner, &[check.target_id]).await;
                return;
            }
        }
        let Ok(_slot) = self.slots.clone().acquire_owned().await else { return };
        let Ok(_host) = self.host_slots(&check.spec.url).acquire_owned().await else { return };
        let started = Utc::now();
        let late = (started - check.due_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        metrics::histogram!(metric::CHECK_START_LATENESS).record(late);
        metrics::gauge!(metric::CHECKS_IN_FLIGHT).increment(1.0);
        let probe = self.probe(check.target_id, &check.spec).await;
        metrics::gauge!(metric::CHECKS_IN_FLIGHT).decrement(1.0);
        let result = result_of(&check, started, probe, false);
        let next = check.due_at + chrono::Duration::seconds(i64::from(check.spec.check_interval_seconds));
        let _ = self.results.send((result, Utc::now() + chrono::Duration::seconds(1) >= next));
    }
}

/// A probe as a stored result.
pub fn result_of(check: &ClaimedCheck, started: DateTime<Utc>, p: crate::probe::Probe, manual: bool) -> CheckResult {
    metrics::counter!(
        metric::CHECKS,
        "status" => p.status.as_str(),
        "error_class" => p.error_class.map_or("none", |c| c.as_str())
    )
    .increment(1);
    metrics::histogram!(metric::CHECK_DURATION).record(p.response_ms / 1000.0);
    CheckResult {
        target_id: check.target_id,
        org_id: check.org_id,
        due_at: if manual { chrono::SubsecRound::trunc_subsecs(started, 6) } else { check.due_at },
        started_at: started,
        response_ms: p.response_ms,
        status: p.status,
        status_code: p.status_code,
        error_class: p.error_class,
        message: p.message,
        cert_expires_at: p.cert_expires_at,
        manual,
    }
}

/// Records results in batches until the dispatcher goes away; an unreachable database is retried
/// (the results wait in memory) rather than losing them.
async fn write_results(
    store: MonitoringStore,
    mut rx: mpsc::UnboundedReceiver<(CheckResult, bool)>,
    held: Held,
    follow_up: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some((first, mut next_is_due)) = rx.recv().await else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((r, due))) => {
                    next_is_due |= due;
                    batch.push(r);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let mut pause = Duration::from_millis(100);
        loop {
            match store.record_results(&batch).await {
                Ok(recorded) => {
                    let dropped = recorded.outcomes.iter().filter(|o| !o.recorded).count();
                    if dropped > 0 {
                        tracing::info!(dropped, "results for deadlines already recorded were dropped");
                    }
                    break;
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, count = batch.len(), "cannot record check results; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    // Not an outage: the same batch would fail again. Its deadlines stay due and
                    // are claimed again when their leases end.
                    tracing::error!(error = %e, count = batch.len(), "check results could not be recorded; dropped");
                    break;
                }
            }
        }
        {
            let mut held = held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in batch.drain(..) {
                held.remove(&(r.target_id, r.due_at));
            }
        }
        if next_is_due {
            follow_up.notify_one();
        }
    }
}
