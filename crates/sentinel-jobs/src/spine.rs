//! The spine handle shared by every service: database, bus, catalog and settings, cheap to clone.

use std::sync::Arc;

use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use sentinel_bus::{Bus, BusError, BusOptions, MemoryBus, Message, RedisBus};
use sentinel_config::{BusBackend, Settings};
use sentinel_db::{AttemptWrite, AttemptWritten, Database, DbError, JobRecord, JobStore, NewJob};
use sentinel_domain::{JobEvent, JobId, QueueName};
use sentinel_telemetry::metric;
use sentinel_telemetry::ops::Readiness;

use crate::{Catalog, DbAvailability, GroupCommit};

#[derive(Debug, thiserror::Error)]
pub enum SpineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Secrets(#[from] sentinel_secrets::SecretsError),
    #[error(transparent)]
    Vault(#[from] crate::VaultError),
}

/// Commits new jobs in batches; answers each with its row and `queued` event.
type JobCommitter = GroupCommit<NewJob, Result<(JobRecord, JobEvent), DbError>>;

/// Batches committing at once per attempt committer (one for outcomes, one for the other writes; see
/// `Spine::write_attempt`): together they use the attempt pool's connections
/// (`sentinel_db::ATTEMPT_CONNECTIONS`).
const ATTEMPT_BATCHES_IN_FLIGHT: usize = sentinel_db::ATTEMPT_CONNECTIONS as usize / 2;

/// Commits the writes of running attempts (starts, log lines, progress, outcomes) in batches.
type AttemptCommitter = GroupCommit<AttemptWrite, Result<AttemptWritten, DbError>>;

/// Database + bus + catalog. Every service is built on one; the all-in-one binary shares one between
/// all its services (that is how the in-process bus connects them).
#[derive(Clone)]
pub struct Spine {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    store: JobStore,
    /// Group commit of new jobs (created on first enqueue, inside the runtime).
    inserts: std::sync::OnceLock<JobCommitter>,
    /// Group commit of reservations (created on first use, inside the runtime).
    reservations: std::sync::OnceLock<crate::group_commit::ReservationCommitter>,
    /// Group commit of the worker's writes (created on first use, inside the runtime).
    attempts: std::sync::OnceLock<AttemptCommitter>,
    /// Group commit of the worker's outcomes, apart from the other writes (created on first use).
    outcomes: std::sync::OnceLock<AttemptCommitter>,
    /// The ordered broadcaster of stored events (created on first use, inside the runtime).
    broadcaster: std::sync::OnceLock<crate::broadcast::Broadcaster>,
    /// Batched, fire-and-forget "published" marks (a lost mark only means a harmless republish).
    published: std::sync::OnceLock<GroupCommit<JobId, ()>>,
    bus: Arc<dyn Bus>,
    catalog: Catalog,
    settings: Settings,
    availability: Arc<DbAvailability>,
    /// The secret store, when a master key is configured.
    vault: Option<crate::Vault>,
}

impl Spine {
    /// Connects the database (checking the schema, or migrating if configured) and the bus, and loads
    /// the master keyring (checking that it opens every secret the database holds).
    pub async fn connect(settings: &Settings, catalog: Catalog) -> Result<Self, SpineError> {
        let keyring = sentinel_secrets::Keyring::load(&settings.secrets, None)?;
        let db = Database::connect(settings.database.url.expose_secret(), settings.database.pool_size()).await?;
        db.ensure_schema(settings.database.auto_migrate).await?;
        let vault = keyring.map(|k| crate::Vault::new(Arc::new(k), db.secrets()));
        match &vault {
            Some(vault) => vault.check().await?,
            None => {
                let sealed: i64 = db.secrets().count_by_key().await?.iter().map(|(_, n)| n).sum();
                if sealed > 0 {
                    return Err(crate::VaultError::MissingKey { count: sealed }.into());
                }
            }
        }
        let bus = Self::bus_from_settings(settings)?;
        let mut spine = Self::new(db, bus, catalog, settings.clone());
        if let Some(inner) = Arc::get_mut(&mut spine.inner) {
            inner.vault = vault;
        }
        Ok(spine)
    }

    /// The bus described by the settings.
    pub fn bus_from_settings(settings: &Settings) -> Result<Arc<dyn Bus>, SpineError> {
        let options = BusOptions {
            visibility_timeout: settings.bus.visibility_timeout(),
            block: settings.bus.block(),
            ..BusOptions::default()
        };
        Ok(match settings.bus.backend {
            BusBackend::Memory => Arc::new(MemoryBus::new(options)),
            BusBackend::Redis => Arc::new(RedisBus::connect(
                settings.bus.redis_url.expose_secret(),
                &settings.bus.prefix,
                settings.bus.pool_size,
                options,
            )?),
        })
    }

    pub fn new(db: Database, bus: Arc<dyn Bus>, catalog: Catalog, settings: Settings) -> Self {
        // The metrics recorder must exist before the first job is counted.
        let _ = sentinel_telemetry::prometheus();
        let store = db.jobs();
        Self {
            inner: Arc::new(Inner {
                db,
                store,
                inserts: std::sync::OnceLock::new(),
                reservations: std::sync::OnceLock::new(),
                attempts: std::sync::OnceLock::new(),
                outcomes: std::sync::OnceLock::new(),
                published: std::sync::OnceLock::new(),
                broadcaster: std::sync::OnceLock::new(),
                bus,
                catalog,
                settings,
                availability: Arc::default(),
                vault: None,
            }),
        }
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }
    pub fn store(&self) -> &JobStore {
        &self.inner.store
    }
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The secret store; `NotConfigured` when no master key is set.
    pub fn vault(&self) -> Result<&crate::Vault, crate::VaultError> {
        self.inner.vault.as_ref().ok_or(crate::VaultError::NotConfigured)
    }

    /// Whether the database was found unreachable and has not answered since.
    pub fn db_down(&self) -> bool {
        self.inner.availability.is_down()
    }

    /// Notes a database error; one that says the database is unreachable marks it down until a probe
    /// reaches it again.
    pub fn report_db_error(&self, error: &DbError) {
        self.inner.availability.report(&self.inner.db, error);
    }

    /// Waits until the database is reachable (at once if it is); `false` on shutdown.
    pub async fn wait_for_db(&self, shutdown: &sentinel_telemetry::Shutdown) -> bool {
        self.inner.availability.wait_up(shutdown).await
    }

    /// Commits a new job through the group committer: concurrent enqueues share one transaction. A
    /// batch that fails (one deduplication key taken) is retried job by job, so only the offending
    /// job gets the error.
    pub async fn insert_job(&self, new: NewJob) -> Result<(JobRecord, JobEvent), DbError> {
        let store = self.inner.store.clone();
        // On the in-process bus the publish that follows cannot fail: the rows go in marked published.
        let published = self.inner.bus.in_process();
        let committer = self.inner.inserts.get_or_init(|| {
            GroupCommit::start(256, 2, move |batch: Vec<NewJob>| {
                let store = store.clone();
                async move {
                    let n = batch.len();
                    match store.insert_many_as(batch.clone(), published).await {
                        Ok(rows) if rows.len() == n => rows.into_iter().map(Ok).collect(),
                        Err(e) if e.is_unavailable() => {
                            (0..n).map(|_| Err(DbError::Unavailable(e.to_string()))).collect()
                        }
                        Ok(_) | Err(_) if n > 1 => {
                            let mut out = Vec::with_capacity(n);
                            for new in batch {
                                out.push(store.insert(new).await);
                            }
                            out
                        }
                        Ok(_) => vec![Err(DbError::Corrupt("insert returned no row".to_owned()))],
                        Err(e) => vec![Err(e)],
                    }
                }
            })
        });
        let result = match committer.submit(new).await {
            Some(result) => result,
            None => Err(DbError::Corrupt("the job committer stopped".to_owned())),
        };
        if let Err(e) = &result {
            self.report_db_error(e);
        }
        result
    }

    /// Reserves one available server of `org` matching `req` (`None`: none is left), sharing one
    /// transaction with concurrent callers (see [`crate::group_commit::reservation_committer`]).
    pub async fn reserve(
        &self,
        org: uuid::Uuid,
        req: sentinel_db::inventory::ReserveRequest,
    ) -> Result<Option<sentinel_db::inventory::Reserved>, DbError> {
        let committer = self
            .inner
            .reservations
            .get_or_init(|| crate::group_commit::reservation_committer(self.inner.db.inventory()));
        let result = match committer.submit((org, req)).await {
            Some(result) => result,
            None => Err(DbError::Corrupt("the reservation committer stopped".to_owned())),
        };
        if let Err(e) = &result {
            self.report_db_error(e);
        }
        result
    }

    /// Applies one write of a running attempt through a group committer: the writes of concurrent
    /// jobs share one round (one statement on PostgreSQL). Each caller still waits for its own write to
    /// be committed. Outcomes have a committer of their own: each of their rounds waits for a durable
    /// flush, and starts and log lines (which do not) must never queue behind those; outcomes arriving
    /// while a flush is under way gather into the next round instead. A job has at most one write in
    /// flight at a time, so the two committers cannot reorder a job's writes.
    pub async fn write_attempt(&self, write: AttemptWrite) -> Result<AttemptWritten, DbError> {
        let lane =
            if matches!(write, AttemptWrite::Finish { .. }) { &self.inner.outcomes } else { &self.inner.attempts };
        let store = self.inner.store.clone();
        let committer = lane.get_or_init(|| {
            GroupCommit::start(256, ATTEMPT_BATCHES_IN_FLIGHT, move |batch: Vec<AttemptWrite>| {
                let store = store.clone();
                async move { store.write_attempts(batch).await }
            })
        });
        let result = match committer.submit(write).await {
            Some(result) => result,
            None => Err(DbError::Corrupt("the attempt committer stopped".to_owned())),
        };
        if let Err(e) = &result {
            self.report_db_error(e);
        }
        result
    }

    /// Records, in the background and in batches, that these jobs' messages are on the bus.
    pub fn mark_published_later(&self, id: JobId) {
        let store = self.inner.store.clone();
        let marker = self
            .inner
            .published
            .get_or_init(|| {
                GroupCommit::start(512, 1, move |ids: Vec<JobId>| {
                    let store = store.clone();
                    async move {
                        let n = ids.len();
                        if let Err(e) = store.mark_published(&ids).await {
                            // Harmless: the relay republishes them and workers drop the duplicates.
                            tracing::warn!(error = %e, count = n, "could not mark jobs published");
                        }
                        vec![(); n]
                    }
                })
            })
            .clone();
        tokio::spawn(async move {
            marker.submit(id).await;
        });
    }

    /// Broadcasts an event already stored in the job's event log: handed to the process's ordered
    /// broadcaster, not waited for. Best effort: the log is the record.
    pub async fn broadcast(&self, event: &JobEvent) {
        self.broadcaster().send(std::slice::from_ref(event));
    }

    /// Broadcasts events already stored, in order, like `broadcast`.
    pub async fn broadcast_many(&self, events: &[JobEvent]) {
        self.broadcaster().send(events);
    }

    fn broadcaster(&self) -> &crate::broadcast::Broadcaster {
        self.inner.broadcaster.get_or_init(|| crate::broadcast::Broadcaster::start(self.inner.bus.clone()))
    }

    /// The bus message that starts the job's current attempt.
    pub fn message_for(job: &JobRecord) -> Message {
        Message {
            job_id: job.id,
            kind: job.kind.clone(),
            priority: job.priority,
            attempt: job.attempt,
            enqueued_at_ms: job.created_at.timestamp_millis(),
            payload: job.payload.clone(),
            trace: job.trace_context.clone(),
        }
    }

    /// Puts the job's current attempt on the bus (delayed if it is not due yet).
    pub async fn publish(&self, job: &JobRecord) -> Result<(), BusError> {
        let message = Self::message_for(job);
        if job.run_at > chrono::Utc::now() {
            self.inner.bus.publish_at(&job.queue, &message, job.run_at).await
        } else {
            self.inner.bus.publish(&job.queue, std::slice::from_ref(&message)).await
        }
    }

    /// Sets the waiting-jobs gauges of every queue from the jobs table (queues that emptied read 0).
    pub async fn refresh_waiting_gauges(&self) {
        let rows = match self.inner.store.waiting_by_queue().await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "could not read queue depths"),
        };
        let now = chrono::Utc::now();
        let mut seen: std::collections::BTreeSet<String> =
            self.catalog().queues().iter().map(|q| q.to_string()).collect();
        for (queue, n, oldest) in rows {
            let age = (now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!(metric::QUEUE_WAITING, "queue" => queue.clone()).set(n as f64);
            metrics::gauge!(metric::QUEUE_OLDEST_WAITING_AGE, "queue" => queue.clone()).set(age);
            seen.remove(&queue);
        }
        for queue in seen {
            metrics::gauge!(metric::QUEUE_WAITING, "queue" => queue.clone()).set(0.0);
            metrics::gauge!(metric::QUEUE_OLDEST_WAITING_AGE, "queue" => queue).set(0.0);
        }
    }

    /// Sets the stream depth gauges for the given queues (called before a metrics scrape).
    pub async fn refresh_stream_gauges(&self, queues: &[QueueName]) {
        for queue in queues {
            match self.inner.bus.stats(queue).await {
                Ok(stats) => {
                    for s in stats {
                        metrics::gauge!(metric::STREAM_LENGTH, "stream" => s.stream.clone()).set(s.length as f64);
                        metrics::gauge!(metric::STREAM_PENDING, "stream" => s.stream.clone()).set(s.pending as f64);
                        metrics::gauge!(metric::STREAM_DELAYED, "stream" => s.stream.clone()).set(s.delayed as f64);
                        let age = s.oldest_pending_age.map_or(0.0, |d| d.as_secs_f64());
                        metrics::gauge!(metric::STREAM_OLDEST_PENDING_AGE, "stream" => s.stream).set(age);
                    }
                }
                Err(e) => tracing::warn!(error = %e, %queue, "could not read stream stats"),
            }
        }
    }
}

/// Readiness of a service built on a spine: database and bus reachable.
pub struct SpineReadiness {
    pub spine: Spine,
    /// Queues whose depth this service reports on `/metrics`.
    pub queues: Vec<QueueName>,
    /// Report every queue's waiting jobs (gauges, and a `/ready` warning for a queue whose oldest
    /// due job has waited longer than `scheduler.unconsumed_warning_secs`): the scheduler does, so a
    /// queue that no worker consumes is visible rather than a silently growing table.
    pub watch_waiting: bool,
}

impl Readiness for SpineReadiness {
    fn check(&self) -> BoxFuture<'_, Result<(), Vec<(String, String)>>> {
        Box::pin(async move {
            let mut failing = Vec::new();
            if let Err(e) = self.spine.db().ping().await {
                failing.push(("database".to_owned(), e.to_string()));
            }
            if let Err(e) = self.spine.bus().ping().await {
                failing.push(("bus".to_owned(), e.to_string()));
            }
            if failing.is_empty() { Ok(()) } else { Err(failing) }
        })
    }

    fn warnings(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            if !self.watch_waiting {
                return Vec::new();
            }
            let now = chrono::Utc::now();
            let after = self.spine.settings().scheduler.unconsumed_warning_secs;
            let after = chrono::Duration::seconds(i64::try_from(after).unwrap_or(i64::MAX / 1000));
            match self.spine.store().waiting_by_queue().await {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|(_, _, oldest)| now - *oldest > after)
                    .map(|(queue, n, oldest)| {
                        let secs = (now - oldest).num_seconds();
                        (
                            format!("queue:{queue}"),
                            format!(
                                "{n} due job(s) waiting, the oldest for {secs} s: is a worker consuming this queue?"
                            ),
                        )
                    })
                    .collect(),
                Err(e) => vec![("queues".to_owned(), format!("cannot read queue depths: {e}"))],
            }
        })
    }

    fn refresh_gauges(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.spine.refresh_stream_gauges(&self.queues).await;
            if self.watch_waiting {
                self.spine.refresh_waiting_gauges().await;
            }
        })
    }
}
