//! The outbox relay: publishes jobs whose row was committed but whose message never reached the bus
//! (the enqueuer crashed or the bus was down), and retries whose next message was not scheduled.

use std::time::Duration;

use chrono::Utc;
use sentinel_telemetry::{Shutdown, metric};

use crate::Spine;

/// Rows published per pass.
const BATCH: u64 = 500;

pub struct Relay {
    spine: Spine,
    /// When the (more expensive) repair scan is due next; it need not run on every pass.
    next_repair: std::sync::Mutex<std::time::Instant>,
    /// The bus incarnation seen last; a new one means the bus lost its data.
    incarnation: std::sync::Mutex<Option<String>>,
}

impl Relay {
    pub fn new(spine: Spine) -> Self {
        Self {
            spine,
            next_repair: std::sync::Mutex::new(std::time::Instant::now()),
            incarnation: std::sync::Mutex::new(None),
        }
    }

    /// The repair scan reads every queued and running row, so it runs a few times per
    /// `relay.stuck_after_ms` rather than on every pass.
    fn repair_due(&self) -> bool {
        let settings = &self.spine.settings().relay;
        let every = (settings.stuck_after() / 4).clamp(settings.interval(), Duration::from_secs(60));
        let mut next = self.next_repair.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if now < *next {
            return false;
        }
        *next = now + every;
        true
    }

    /// Whether the bus lost its data since the last pass (e.g. Redis restarted without persistence).
    async fn bus_lost_data(&self) -> Result<bool, crate::SpineError> {
        let now = self.spine.bus().incarnation().await?;
        let mut seen = self.incarnation.lock().unwrap_or_else(|p| p.into_inner());
        let lost = seen.as_ref().is_some_and(|before| *before != now);
        *seen = Some(now);
        Ok(lost)
    }

    /// One pass: publishes every overdue unpublished job. Returns how many were published.
    pub async fn run_once(&self) -> Result<usize, crate::SpineError> {
        if self.bus_lost_data().await? {
            let requeued = self.spine.store().unpublish_queued().await?;
            tracing::warn!(
                requeued,
                "the bus lost its data (restarted without persistence?); republishing queued jobs"
            );
        }
        let stuck_after = chrono::Duration::from_std(self.spine.settings().relay.stuck_after()).unwrap_or_default();
        if self.repair_due() {
            let repaired = self.spine.store().repair_stuck(stuck_after).await?;
            if repaired > 0 {
                tracing::warn!(repaired, "republishing jobs the bus appears to have lost");
            }
        }
        let grace = chrono::Duration::from_std(self.spine.settings().relay.grace()).unwrap_or_default();
        let mut total = 0;
        loop {
            let rows = self.spine.store().unpublished(Utc::now() - grace, BATCH).await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let mut done = Vec::with_capacity(rows.len());
            for job in &rows {
                self.spine.publish(job).await?;
                done.push(job.id);
            }
            self.spine.store().mark_published(&done).await?;
            metrics::counter!(metric::OUTBOX_PUBLISHED).increment(done.len() as u64);
            tracing::info!(count = done.len(), "outbox relay published jobs");
            total += done.len();
            if (rows.len() as u64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Runs passes every `relay.interval_ms` until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let interval = self.spine.settings().relay.interval();
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "outbox relay pass failed; will retry");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval.max(Duration::from_millis(10))) => {}
            }
        }
    }
}
