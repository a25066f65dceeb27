//! Whether this process can reach its database, as last seen: a failed write that found the database
//! unreachable marks it down and starts one probe that pings until it answers. Workers stop taking
//! messages while it is down, and the gateway answers 503 at once instead of queueing on the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sentinel_db::{Database, DbError};
use sentinel_telemetry::Shutdown;
use tokio::sync::Notify;

/// How often the probe pings a database that is down.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Shared by every user of one spine.
#[derive(Default)]
pub struct DbAvailability {
    down: AtomicBool,
    /// Wakes waiters when the database is back.
    back: Notify,
}

impl DbAvailability {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Records that `error` found the database unreachable; the first report starts the probe.
    pub fn report(self: &Arc<Self>, db: &Database, error: &DbError) {
        if !error.is_unavailable() || self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(error = %error, "database unreachable; pausing work that needs it until it answers");
        let this = self.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let since = Instant::now();
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if db.ping().await.is_ok() {
                    break;
                }
            }
            this.down.store(false, Ordering::Release);
            this.back.notify_waiters();
            tracing::warn!(down_ms = since.elapsed().as_millis() as u64, "database reachable again; resuming");
        });
    }

    /// Returns at once if the database is up, else when it is back (or on shutdown: `false`).
    pub async fn wait_up(&self, shutdown: &Shutdown) -> bool {
        loop {
            let back = self.back.notified();
            if !self.is_down() {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = back => {}
                // A guard against a missed wake-up.
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }
}
