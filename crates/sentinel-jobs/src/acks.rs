//! Acks a worker's finished deliveries in batches. An ack is bookkeeping (a lost one only means a
//! redelivery that finds the job finished and is dropped), and it is only ever sent after the
//! outcome committed; batching turns a round trip per job into one per batch of outcomes, which
//! commit in batches anyway.

use sentinel_bus::Delivery;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Spine;

/// Acks one batch may carry.
const BATCH: usize = 512;

/// The sending side is cloned into each attempt; the task ends once every clone is dropped, after
/// acking everything it was given.
pub(crate) struct Acker {
    tx: mpsc::Sender<Delivery>,
    task: JoinHandle<()>,
}

impl Acker {
    pub(crate) fn start(spine: Spine) -> Self {
        let (tx, rx) = mpsc::channel(BATCH * 4);
        Self { tx, task: tokio::spawn(ack_in_batches(spine, rx)) }
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Delivery> {
        self.tx.clone()
    }

    /// Waits until every delivery handed over (by this and every clone of its sender, all dropped
    /// by now) is acked.
    pub(crate) async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn ack_in_batches(spine: Spine, mut rx: mpsc::Receiver<Delivery>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = spine.bus().ack_many(&batch).await {
            tracing::warn!(error = %e, count = batch.len(), "ack failed; the messages will be redelivered and dropped as finished");
        }
        batch.clear();
    }
}
