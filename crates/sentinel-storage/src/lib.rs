//! Object storage for backups, behind one API: a local directory, S3 and S3-compatible services,
//! Google Cloud Storage and Azure Blob. `Destination` opens a validated `DestinationSpec`; uploads
//! are multipart/resumable with bounded memory and only exist once completed.
//!
//! Architecture invariant: this crate knows nothing about backups, jobs or the database; it moves
//! bytes under keys. Architecture invariant: no error message or `Debug` output contains a secret.

mod azure;
mod cloud;
mod error;
mod gcs;
mod local;
mod s3;
mod spec;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, TryStreamExt};

pub use error::StorageError;
pub use spec::DestinationSpec;

/// Parts uploading at once (S3, Azure); for GCS, which takes one chunk at a time per session,
/// the chunks queued or on the wire. Memory per upload ≈ part size × (this + 1).
pub const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Size of the probe object: big enough to measure, small enough to cost nothing.
const PROBE_BYTES: usize = 64 * 1024;

/// One object as listed or looked up. `key` is relative to the destination's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// How long each step of [`Destination::probe`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    pub write_ms: u64,
    pub read_ms: u64,
    pub delete_ms: u64,
}

/// An upload that was started and never completed or aborted (its process died).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key it would have created, relative to the destination's prefix.
    pub key: String,
    /// The backend's handle: the S3 upload id, or for Local the temp file's path under the root.
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

#[derive(Clone)]
enum Backend {
    Local(local::LocalBackend),
    S3(s3::S3Backend),
    Azure(azure::AzureBackend),
    Gcs(gcs::GcsBackend),
}

/// An opened destination. Cheap to clone; share it between tasks.
#[derive(Clone)]
pub struct Destination {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for Destination {
    /// Only the kind and location: the backends' own `Debug` may include keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination").field("location", &self.root_location()).finish()
    }
}

impl Destination {
    /// Validates `spec` (names, paths, endpoints, keys) and builds its client. Does no I/O: use
    /// [`Destination::probe`] to check that the destination works.
    pub fn open(spec: &DestinationSpec) -> Result<Self, StorageError> {
        let backend = match spec {
            DestinationSpec::Local { path } => Backend::Local(local::LocalBackend::open(path)?),
            DestinationSpec::S3 { .. } => Backend::S3(s3::S3Backend::open(spec)?),
            DestinationSpec::Azure { .. } => Backend::Azure(azure::AzureBackend::open(spec)?),
            DestinationSpec::Gcs { .. } => Backend::Gcs(gcs::GcsBackend::open(spec)?),
        };
        Ok(Self { backend: Arc::new(backend) })
    }

    /// Where `key` lives, for journals: `file:///abs/path/key`, `s3://bucket/prefix/key`,
    /// `gs://bucket/prefix/key`, `azure://account/container/prefix/key`. Never contains a secret.
    pub fn location(&self, key: &str) -> String {
        match self.backend.as_ref() {
            Backend::Local(b) => b.location(key),
            Backend::S3(b) => b.location(key),
            Backend::Azure(b) => b.location(key),
            Backend::Gcs(b) => b.location(key),
        }
    }

    fn root_location(&self) -> String {
        self.location("").trim_end_matches('/').to_owned()
    }

    /// Starts an upload to `key`. `part_size` is the multipart part (GCS: chunk) size, raised to
    /// the backend's minimum (S3 5 MiB, Azure 1 MiB, GCS 256 KiB, rounded up to a multiple of
    /// 256 KiB) and capped at its maximum. Nothing exists under `key` until [`Upload::complete`].
    pub async fn upload(&self, key: &str, part_size: usize) -> Result<Upload, StorageError> {
        let inner = match self.backend.as_ref() {
            Backend::Local(b) => UploadInner::Local(b.upload(key).await?),
            Backend::S3(b) => {
                UploadInner::Store(b.store.upload(key, part_size.clamp(s3::MIN_PART, s3::MAX_PART)).await?)
            }
            Backend::Azure(b) => {
                UploadInner::Store(b.store.upload(key, part_size.clamp(azure::MIN_PART, azure::MAX_PART)).await?)
            }
            Backend::Gcs(b) => UploadInner::Gcs(b.upload(key, part_size.clamp(gcs::MIN_PART, gcs::MAX_PART)).await?),
        };
        Ok(Upload { inner, bytes: 0, location: self.location(key) })
    }

    /// The object's bytes as a stream.
    pub async fn download(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        match self.backend.as_ref() {
            Backend::Local(b) => b.download(key).await,
            Backend::S3(b) => b.store.download(key).await,
            Backend::Azure(b) => b.store.download(key).await,
            Backend::Gcs(b) => b.download(key).await,
        }
    }

    /// The object's size and modification time, or `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self.backend.as_ref() {
            Backend::Local(b) => b.head(key).await,
            Backend::S3(b) => b.store.head(key).await,
            Backend::Azure(b) => b.store.head(key).await,
            Backend::Gcs(b) => b.head(key).await,
        }
    }

    /// Deletes the object. Deleting a missing object is `Ok`; a missing bucket is `BucketMissing`.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.backend.as_ref() {
            Backend::Local(b) => b.delete(key).await,
            Backend::S3(b) => b.store.delete(key).await,
            Backend::Azure(b) => b.store.delete(key).await,
            Backend::Gcs(b) => b.delete(key).await,
        }
    }

    /// Every object under `prefix` (`""`: all), sorted by key, with keys relative to the
    /// destination's prefix. Prefixes match whole segments: `a/b` lists `a/b/…`, not `a/bc`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let prefix = spec::normalize_list_prefix(prefix)?;
        match self.backend.as_ref() {
            Backend::Local(b) => b.list(&prefix).await,
            Backend::S3(b) => b.store.list(&prefix).await,
            Backend::Azure(b) => b.store.list(&prefix).await,
            Backend::Gcs(b) => b.list(&prefix).await,
        }
    }

    /// Writes a small object through the upload path, reads it back and compares, deletes it, and
    /// reports how long each step took. Proves credentials, permissions and reachability at once.
    pub async fn probe(&self) -> Result<ProbeReport, StorageError> {
        let key = format!("_sentinel-probe-{}", uuid::Uuid::new_v4().simple());
        let payload = probe_payload(&key);

        let started = Instant::now();
        let mut upload = self.upload(&key, 0).await?;
        upload.put(payload.clone()).await?;
        upload.complete().await?;
        let write_ms = elapsed_ms(started);

        let started = Instant::now();
        let read = self.read_all(&key).await;
        let read_ms = elapsed_ms(started);
        let checked = match read {
            Ok(bytes) if bytes == payload => Ok(()),
            Ok(bytes) => Err(StorageError::Other(format!(
                "{}: read back {} bytes that differ from the {} written",
                self.location(&key),
                bytes.len(),
                payload.len()
            ))),
            Err(e) => Err(e),
        };

        let started = Instant::now();
        let deleted = self.delete(&key).await;
        let delete_ms = elapsed_ms(started);
        checked?;
        deleted?;
        Ok(ProbeReport { write_ms, read_ms, delete_ms })
    }

    async fn read_all(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let mut stream = self.download(key).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Uploads started and never completed or aborted, where the backend can list them: S3
    /// (ListMultipartUploads under the prefix) and Local (stray `.partial-` files). Azure and GCS
    /// return an empty list: Azure has no call listing uncommitted blocks (Azure discards them
    /// after a week) and GCS none listing resumable sessions (they hold no object and expire after
    /// a week), so neither leaves anything a janitor could act on.
    pub async fn incomplete_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        match self.backend.as_ref() {
            Backend::Local(b) => b.incomplete_uploads().await,
            Backend::S3(b) => b.incomplete_uploads().await,
            Backend::Azure(_) | Backend::Gcs(_) => Ok(Vec::new()),
        }
    }

    /// Aborts one upload found by [`Destination::incomplete_uploads`]; one already gone is `Ok`.
    pub async fn abort_incomplete(&self, pending: &PendingUpload) -> Result<(), StorageError> {
        match self.backend.as_ref() {
            Backend::Local(b) => b.abort_incomplete(pending).await,
            Backend::S3(b) => b.abort_incomplete(pending).await,
            Backend::Azure(_) | Backend::Gcs(_) => Ok(()),
        }
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Non-repeating bytes derived from the key, so a backend that returns another object's bytes (or
/// zeros) fails the comparison.
fn probe_payload(key: &str) -> Bytes {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(PROBE_BYTES);
    let mut block = Sha256::digest(key.as_bytes());
    while out.len() < PROBE_BYTES {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(PROBE_BYTES);
    Bytes::from(out)
}

enum UploadInner {
    Local(local::LocalUpload),
    Store(cloud::StoreUpload),
    Gcs(gcs::GcsUpload),
}

/// An upload in progress. Dropping it without [`Upload::complete`] or [`Upload::abort`] leaves
/// no object; for S3 it may leave parts, which [`Destination::incomplete_uploads`] finds.
pub struct Upload {
    inner: UploadInner,
    bytes: u64,
    location: String,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("location", &self.location).field("bytes", &self.bytes).finish()
    }
}

impl Upload {
    /// Appends `chunk`. Waits (back-pressure) while [`MAX_PARTS_IN_FLIGHT`] parts are uploading,
    /// so memory stays ≈ part size × (parts in flight + 1) however fast the producer is.
    pub async fn put(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let len = chunk.len() as u64;
        match &mut self.inner {
            UploadInner::Local(u) => u.put(chunk).await?,
            UploadInner::Store(u) => u.put(chunk).await?,
            UploadInner::Gcs(u) => u.put(chunk).await?,
        }
        self.bytes += len;
        Ok(())
    }

    /// Finishes the upload and returns the total bytes written. Only now does the object exist.
    pub async fn complete(self) -> Result<u64, StorageError> {
        match self.inner {
            UploadInner::Local(u) => u.complete().await?,
            UploadInner::Store(u) => u.complete().await?,
            UploadInner::Gcs(u) => u.complete().await?,
        }
        Ok(self.bytes)
    }

    /// Abandons the upload: no object, no orphan parts, no partial file.
    pub async fn abort(self) -> Result<(), StorageError> {
        match self.inner {
            UploadInner::Local(u) => u.abort().await,
            UploadInner::Store(u) => u.abort().await,
            UploadInner::Gcs(u) => u.abort().await,
        }
    }

    /// The bytes accepted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the object will be, as [`Destination::location`] gives it.
    pub fn location(&self) -> &str {
        &self.location
    }
}
