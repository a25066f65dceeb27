//! Operations shared by the backends built on the `object_store` crate (S3 and Azure): multipart
//! uploads with bounded parts in flight, streaming downloads, head, delete, list, and the HTTP
//! client settings (timeouts, retries) they all use.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};

use crate::error::{Context, Redactor, from_object_store};
use crate::spec::{join, strip, validate_key};
use crate::{MAX_PARTS_IN_FLIGHT, ObjectInfo, StorageError};

/// Connection setup must be quick; a server that accepts but stalls is caught by the read timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No bytes for this long on an open request means the request is dead.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Client options for every object_store backend. There is no total request timeout: a large part
/// on a slow link, or a long download stream, may take minutes while still making progress.
pub(crate) fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(READ_TIMEOUT)
        .with_timeout_disabled()
}

/// A few quick retries for transient failures (object_store's default keeps retrying for three
/// minutes). A backup job retries as a whole, so the storage layer only smooths over blips, and an
/// unreachable destination is reported within seconds.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
    }
}

/// One object_store-backed destination (bucket or container plus prefix).
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The destination prefix (normalized, may be empty).
    pub(crate) prefix: String,
    /// "S3 bucket `b` at https://…", for messages.
    pub(crate) what: String,
    pub(crate) redact: Redactor,
    /// The service's part-count limit (S3 10,000; Azure 50,000 blocks).
    pub(crate) max_parts: u64,
}

impl Store {
    pub(crate) fn path(&self, key: &str) -> Result<Path, StorageError> {
        validate_key(key)?;
        Path::parse(join(&self.prefix, key)).map_err(|e| StorageError::invalid("key", e.to_string()))
    }

    pub(crate) fn err(&self, key: Option<&str>) -> impl Fn(object_store::Error) -> StorageError + '_ {
        let key = key.map(str::to_owned);
        move |e| from_object_store(e, &Context { what: &self.what, key: key.as_deref() }, &self.redact)
    }

    pub(crate) async fn upload(&self, key: &str, part_size: usize) -> Result<StoreUpload, StorageError> {
        let path = self.path(key)?;
        let upload = self.store.put_multipart(&path).await.map_err(self.err(Some(key)))?;
        Ok(StoreUpload {
            writer: WriteMultipart::new_with_chunk_size(upload, part_size),
            part_size,
            max_bytes: self.max_parts.saturating_mul(part_size as u64),
            bytes: 0,
            what: self.what.clone(),
            key: key.to_owned(),
            redact: self.redact.clone(),
        })
    }

    pub(crate) async fn download(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let path = self.path(key)?;
        let got = self.store.get(&path).await.map_err(self.err(Some(key)))?;
        let (what, key, redact) = (self.what.clone(), key.to_owned(), self.redact.clone());
        Ok(got
            .into_stream()
            .map_err(move |e| from_object_store(e, &Context { what: &what, key: Some(&key) }, &redact))
            .boxed())
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        match self.store.head(&path).await.map_err(self.err(Some(key))) {
            Ok(meta) => {
                Ok(Some(ObjectInfo { key: key.to_owned(), size: meta.size, last_modified: meta.last_modified }))
            }
            Err(StorageError::NotFound(_)) => {
                // A HEAD reply has no body, so a missing bucket looks like a missing object. A
                // listing under the key (normally empty, so cheap) tells them apart.
                let mut under = self.store.list(Some(&path));
                match under.next().await.transpose().map_err(self.err(Some(key))) {
                    Err(e @ StorageError::BucketMissing(_)) => Err(e),
                    _ => Ok(None),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match self.store.delete(&path).await.map_err(self.err(Some(key))) {
            // A missing object is already deleted; a missing bucket is BucketMissing, not this.
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let full = join(&self.prefix, prefix);
        let full = if full.is_empty() {
            None
        } else {
            Some(Path::parse(&full).map_err(|e| StorageError::invalid("prefix", e.to_string()))?)
        };
        let metas: Vec<_> = self.store.list(full.as_ref()).try_collect().await.map_err(self.err(None))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .filter_map(|m| {
                let key = strip(&self.prefix, m.location.as_ref())?;
                Some(ObjectInfo { key, size: m.size, last_modified: m.last_modified })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// A multipart upload through object_store: parts of `part_size` bytes upload concurrently, at
/// most [`MAX_PARTS_IN_FLIGHT`] at a time, while one more part fills.
pub(crate) struct StoreUpload {
    writer: WriteMultipart,
    part_size: usize,
    /// part size × the part-count limit: past this the service would refuse the next part.
    max_bytes: u64,
    bytes: u64,
    what: String,
    key: String,
    redact: Redactor,
}

impl StoreUpload {
    fn err(&self) -> impl Fn(object_store::Error) -> StorageError + '_ {
        |e| from_object_store(e, &Context { what: &self.what, key: Some(&self.key) }, &self.redact)
    }

    pub(crate) async fn put(&mut self, mut chunk: Bytes) -> Result<(), StorageError> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(StorageError::invalid(
                "part_size",
                format!(
                    "`{}` in {} outgrew {} MiB parts × the service's part limit: use a larger part size",
                    self.key,
                    self.what,
                    self.part_size / (1024 * 1024)
                ),
            ));
        }
        // Back-pressure: wait until fewer than MAX parts are in flight before buffering more, and
        // hand over at most one part's worth at a time (a huge chunk would otherwise start many
        // parts at once), so memory stays ≈ part_size × (in flight + 1).
        while !chunk.is_empty() {
            let wait = self.writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await;
            wait.map_err(self.err())?;
            let piece = chunk.split_to(chunk.len().min(self.part_size));
            self.writer.put(piece);
        }
        Ok(())
    }

    pub(crate) async fn complete(self) -> Result<(), StorageError> {
        let Self { writer, what, key, redact, .. } = self;
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| from_object_store(e, &Context { what: &what, key: Some(&key) }, &redact))
    }

    pub(crate) async fn abort(self) -> Result<(), StorageError> {
        let Self { writer, what, key, redact, .. } = self;
        writer.abort().await.map_err(|e| from_object_store(e, &Context { what: &what, key: Some(&key) }, &redact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_store(max_parts: u64) -> Store {
        Store {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: "p".to_owned(),
            what: "memory store".to_owned(),
            redact: Redactor::default(),
            max_parts,
        }
    }

    #[tokio::test]
    async fn a_huge_chunk_is_split_into_parts_and_reassembled() {
        let store = memory_store(100);
        let mut up = store.upload("k", 1024 * 1024).await.unwrap_or_else(|e| panic!("{e}"));
        let body: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        up.put(Bytes::from(body.clone())).await.unwrap_or_else(|e| panic!("{e}"));
        up.complete().await.unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<Bytes> = store
            .download("k")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.concat(), body);
        let listed = store.list("").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["k"]);
    }

    #[tokio::test]
    async fn outgrowing_the_part_limit_is_a_clear_error() {
        let store = memory_store(2);
        let mut up = store.upload("k", 1024 * 1024).await.unwrap_or_else(|e| panic!("{e}"));
        up.put(Bytes::from(vec![0; 2 * 1024 * 1024])).await.unwrap_or_else(|e| panic!("{e}"));
        match up.put(Bytes::from_static(b"one byte too many")).await {
            Err(StorageError::Invalid { field: "part_size", reason }) => {
                assert!(reason.contains("larger part size"), "{reason}")
            }
            other => panic!("expected Invalid part_size, got {other:?}"),
        }
    }
}
