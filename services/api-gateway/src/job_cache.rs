//! A short-lived cache of job rows for hot reads (`GET /api/v1/jobs/{id}`, `/tasks/status/{id}`). Every
//! change to a job emits an event that every gateway receives through its event hub, which evicts the
//! job here, so a cached row is at most a few milliseconds behind the database (and never older than
//! `TTL`, should the bus be down).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sentinel_jobs::db::JobRecord;
use sentinel_jobs::domain::JobId;
use uuid::Uuid;

pub struct JobCache {
    // A std Mutex: map operations only, never held across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<JobId, (JobRecord, Instant)>,
    /// When each job was last evicted, so a read that started before an eviction is not cached.
    evicted: HashMap<JobId, Instant>,
}

impl JobCache {
    pub const TTL: Duration = Duration::from_secs(2);
    const MAX: usize = 50_000;

    pub fn new() -> Self {
        Self { inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached row of `id` if it belongs to `org` and is fresh.
    pub fn get(&self, org: Uuid, id: JobId) -> Option<JobRecord> {
        let inner = self.lock();
        inner
            .entries
            .get(&id)
            .filter(|(job, at)| at.elapsed() < Self::TTL && job.org_id == Some(org))
            .map(|(job, _)| job.clone())
    }

    /// Caches a row read from the database at `read_started`, unless the job changed since.
    pub fn put(&self, job: JobRecord, read_started: Instant) {
        let mut inner = self.lock();
        if inner.evicted.get(&job.id).is_some_and(|at| *at >= read_started) {
            return;
        }
        if inner.entries.len() >= Self::MAX {
            inner.entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if inner.entries.len() >= Self::MAX {
                inner.entries.clear();
            }
        }
        inner.entries.insert(job.id, (job, Instant::now()));
    }

    /// Forgets a job that changed.
    pub fn evict(&self, id: JobId) {
        let mut inner = self.lock();
        inner.entries.remove(&id);
        let now = Instant::now();
        if inner.evicted.len() >= Self::MAX {
            inner.evicted.retain(|_, at| now.duration_since(*at) < Self::TTL);
        }
        inner.evicted.insert(id, now);
    }
}

impl Default for JobCache {
    fn default() -> Self {
        Self::new()
    }
}
