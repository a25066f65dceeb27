//! The codec thread: a named OS thread whose result comes back through a oneshot, so async code
//! awaits it without blocking a runtime worker on `JoinHandle::join`.

use tokio::sync::oneshot;

use crate::ArchiveError;

pub(crate) type Done<T> = oneshot::Receiver<Result<T, ArchiveError>>;

/// Starts `work` on a new thread named `name`. If `work` panics, the oneshot sender is dropped while
/// unwinding and [`join`] reports `Panicked` instead of hanging.
pub(crate) fn spawn<T, F>(name: &str, work: F) -> Result<Done<T>, ArchiveError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ArchiveError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // The receiver may be gone (handle dropped without finish); nobody is left to tell.
            let _ = tx.send(work());
        })
        .map_err(ArchiveError::Spawn)?;
    // The JoinHandle is dropped (thread detached): the oneshot already carries the outcome, and the
    // thread ends right after sending it.
    Ok(rx)
}

pub(crate) async fn join<T>(done: Done<T>) -> Result<T, ArchiveError> {
    done.await.map_err(|_| ArchiveError::Panicked)?
}
