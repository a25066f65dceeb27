//! The ordered event broadcaster: events already stored in the job log go onto the bus's events
//! channel from one task per process, in the order they were handed over, several per pipelined
//! call. Callers do not wait for it, so a worker's next step (the handler, the next job) does not
//! wait for a round trip to Redis that nothing depends on: the log is the record, the broadcast is
//! the live view of it.

use std::sync::Arc;

use sentinel_bus::Bus;
use sentinel_domain::JobEvent;
use tokio::sync::mpsc;

/// Events waiting for the bus at most; beyond that (a bus down for long) new ones are dropped from
/// the live view, which readers recover from the log.
const QUEUE: usize = 65_536;
/// Events per pipelined publish.
const BATCH: usize = 1_000;

pub(crate) struct Broadcaster {
    tx: mpsc::Sender<JobEvent>,
}

impl Broadcaster {
    /// Starts the publishing task (inside the runtime).
    pub(crate) fn start(bus: Arc<dyn Bus>) -> Self {
        let (tx, mut rx) = mpsc::channel::<JobEvent>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                if let Err(e) = bus.publish_events(&batch).await {
                    tracing::warn!(error = %e, count = batch.len(), "could not broadcast job events");
                }
                batch.clear();
            }
        });
        Self { tx }
    }

    /// Hands events over, in order, without waiting for the bus.
    pub(crate) fn send(&self, events: &[JobEvent]) {
        for event in events {
            if let Err(mpsc::error::TrySendError::Full(event)) = self.tx.try_send(event.clone()) {
                tracing::warn!(job_id = %event.job_id, "event broadcast queue full; the event stays in the job log only");
            }
        }
    }
}
