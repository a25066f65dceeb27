//! Group commit: concurrent callers hand their writes to one task that commits them in batches, so a
//! burst of N requests costs a few transactions (and fsyncs) instead of N. Each caller still waits for
//! its own write to be committed, so durability is unchanged; latency grows by at most one commit.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// A batching front for a write of `T` that answers `R`.
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<(T, oneshot::Sender<R>)>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the committing task. `commit` gets a batch and must answer one `R` per item, in order.
    /// Up to `in_flight` batches commit concurrently, each of at most `max_batch` items.
    pub fn start<F, Fut>(max_batch: usize, in_flight: usize, commit: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<(T, oneshot::Sender<R>)>(max_batch * in_flight * 4);
        let commit = Arc::new(commit);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let Some(first) = rx.recv().await else { return };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let commit = commit.clone();
                tokio::spawn(async move {
                    let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                    let answers = commit(items).await;
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        // The caller may have gone away (request cancelled); its write stands.
                        let _ = reply.send(answer);
                    }
                    drop(slot);
                });
            }
        });
        Self { tx }
    }

    /// Submits one write and waits for its answer. `None` only if the committing task is gone.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.ok()?;
        answer.await.ok()
    }
}

/// The group commit of reservations: the concurrent callers of `POST /servers/reserve` share one
/// transaction (`InventoryStore::reserve_many`), each still getting its own server and its own
/// answer. A batch that fails is retried request by request, so only the offending one errs.
pub type ReservationCommitter = GroupCommit<
    (uuid::Uuid, sentinel_db::inventory::ReserveRequest),
    Result<Option<sentinel_db::inventory::Reserved>, sentinel_db::DbError>,
>;

/// Starts a [`ReservationCommitter`] over `inventory` (inside the runtime).
pub fn reservation_committer(inventory: sentinel_db::inventory::InventoryStore) -> ReservationCommitter {
    use sentinel_db::DbError;
    // PostgreSQL runs several batches at once (SKIP LOCKED keeps them apart), each small so no caller
    // waits behind a long one; SQLite has one writer, so one batch at a time, as large as it comes.
    let (max_batch, in_flight) = if inventory.is_sqlite() { (64, 1) } else { (12, 4) };
    GroupCommit::start(max_batch, in_flight, move |batch: Vec<(uuid::Uuid, sentinel_db::inventory::ReserveRequest)>| {
        let inventory = inventory.clone();
        async move {
            let n = batch.len();
            match inventory.reserve_many(&batch).await {
                Ok(done) if done.len() == n => done.into_iter().map(Ok).collect(),
                Err(e) if e.is_unavailable() => (0..n).map(|_| Err(DbError::Unavailable(e.to_string()))).collect(),
                _ => {
                    let mut out = Vec::with_capacity(n);
                    for (org, req) in &batch {
                        out.push(inventory.reserve(*org, req).await);
                    }
                    out
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_submissions_are_batched_and_answered_in_order() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = batches.clone();
        let gc = GroupCommit::start(64, 1, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                seen.lock().map(|mut b| b.push(items.len())).ok();
                items.into_iter().map(|i| i * 2).collect()
            }
        });
        let handles: Vec<_> = (0..100u32)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move { (i, gc.submit(i).await) })
            })
            .collect();
        for h in handles {
            let (i, answer) = h.await.expect("join");
            assert_eq!(answer, Some(i * 2));
        }
        let batches = batches.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(batches.iter().sum::<usize>(), 100);
        assert!(batches.len() < 100, "submissions were batched: {batches:?}");
    }
}
