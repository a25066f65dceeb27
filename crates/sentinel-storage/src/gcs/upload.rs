//! GCS resumable uploads: the caller's bytes are cut into chunks (multiples of 256 KiB) that a
//! background task sends in order to the session URL; only the final chunk, which states the total
//! size, makes the object exist. A bounded queue between the two bounds memory.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::CHUNK_QUANTUM;
use crate::error::{Context, Redactor, from_reqwest};
use crate::{MAX_PARTS_IN_FLIGHT, StorageError};

/// GCS takes one chunk at a time per session; up to this many more wait queued, so the producer
/// keeps going while a chunk is on the wire. Memory ≈ chunk × (queued + sending + filling).
const QUEUED: usize = MAX_PARTS_IN_FLIGHT - 2;
const ATTEMPTS: u32 = 4;

enum Msg {
    Part(Bytes),
    Final(Bytes),
}

/// Sends chunks to one resumable session. The session URL is itself the credential (no bearer
/// token is needed or sent), so it never appears in messages.
struct Sender {
    http: reqwest::Client,
    session: Url,
    what: String,
    redact: Redactor,
    /// Bytes the server has acknowledged.
    persisted: u64,
}

pub(crate) struct GcsUpload {
    buffer: BytesMut,
    chunk: usize,
    tx: Option<mpsc::Sender<Msg>>,
    task: JoinHandle<Result<(), StorageError>>,
    http: reqwest::Client,
    session: Url,
    what: String,
}

impl GcsUpload {
    pub(crate) fn start(http: reqwest::Client, session: Url, part_size: usize, what: String, redact: Redactor) -> Self {
        let chunk = part_size.div_ceil(CHUNK_QUANTUM).max(1) * CHUNK_QUANTUM;
        let (tx, rx) = mpsc::channel(QUEUED);
        let sender = Sender { http: http.clone(), session: session.clone(), what: what.clone(), redact, persisted: 0 };
        let task = tokio::spawn(sender.run(rx));
        Self { buffer: BytesMut::with_capacity(chunk), chunk, tx: Some(tx), task, http, session, what }
    }

    pub(crate) async fn put(&mut self, mut data: Bytes) -> Result<(), StorageError> {
        while !data.is_empty() {
            let room = self.chunk - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data.split_to(take));
            if self.buffer.len() == self.chunk {
                let part = std::mem::replace(&mut self.buffer, BytesMut::with_capacity(self.chunk)).freeze();
                self.send(Msg::Part(part)).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, msg: Msg) -> Result<(), StorageError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The sender stopped: it failed, and its result says why.
        self.tx = None;
        match (&mut self.task).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(StorageError::Other(format!("{}: the upload stopped early", self.what))),
            Err(e) => Err(StorageError::Other(format!("{}: the upload task failed: {e}", self.what))),
        }
    }

    pub(crate) async fn complete(mut self) -> Result<(), StorageError> {
        let last = std::mem::take(&mut self.buffer).freeze();
        self.send(Msg::Final(last)).await?;
        self.tx = None;
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(StorageError::Other(format!("{}: the upload task failed: {e}", self.what))),
        }
    }

    /// Stops sending and cancels the session; the object was never finalized, so none exists.
    pub(crate) async fn abort(mut self) -> Result<(), StorageError> {
        self.tx = None;
        self.task.abort();
        // GCS answers a cancelled session with 499; a session already gone is just as cancelled.
        match self.http.delete(self.session.clone()).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.is_connect() || e.is_timeout() => Err(StorageError::Unreachable(format!(
                "{}: cancelling the upload session failed (it expires by itself within a week)",
                self.what
            ))),
            Err(_) => Ok(()),
        }
    }
}

impl Drop for GcsUpload {
    /// Dropped without complete: the task ends without finalizing, so no object appears.
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) -> Result<(), StorageError> {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Part(data) => self.send_range(data, false).await?,
                Msg::Final(data) => return self.send_range(data, true).await,
            }
        }
        // The channel closed without a final chunk: an abort or a drop. Nothing is finalized.
        Ok(())
    }

    fn ctx(&self) -> Context<'_> {
        Context { what: &self.what, key: None }
    }

    /// Sends `data` (the bytes after `persisted`) until the server has all of it, resending what it
    /// did not keep: a 308 may acknowledge fewer bytes than were sent.
    async fn send_range(&mut self, data: Bytes, last: bool) -> Result<(), StorageError> {
        let start = self.persisted;
        let end = start + data.len() as u64;
        let mut attempt = 0;
        loop {
            let offset = (self.persisted - start) as usize;
            let body = data.slice(offset..);
            let range = match (last, body.is_empty()) {
                (true, true) => format!("bytes */{end}"),
                (true, false) => format!("bytes {}-{}/{end}", self.persisted, end - 1),
                (false, true) => return Ok(()),
                (false, false) => format!("bytes {}-{}/*", self.persisted, end - 1),
            };
            let result = self
                .http
                .put(self.session.clone())
                .header(reqwest::header::CONTENT_RANGE, range)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
                .send()
                .await;
            let failure = match result {
                Ok(r) if r.status().is_success() => {
                    return if last {
                        Ok(())
                    } else {
                        Err(StorageError::Other(format!("{}: the server finalized the upload early", self.what)))
                    };
                }
                Ok(r) if r.status().as_u16() == 308 => {
                    let persisted = persisted_from(&r)?;
                    if persisted < start {
                        return Err(StorageError::Other(format!("{}: the server lost acknowledged bytes", self.what)));
                    }
                    let advanced = persisted > self.persisted;
                    self.persisted = persisted.min(end);
                    if !last && self.persisted >= end {
                        return Ok(());
                    }
                    if advanced {
                        attempt = 0;
                        continue;
                    }
                    StorageError::Other(format!("{}: the server kept none of the chunk", self.what))
                }
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() => {
                    StorageError::Other(format!("{}: HTTP {}", self.what, r.status()))
                }
                Ok(r) => return Err(self.chunk_error(r).await),
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                    from_reqwest(e, &self.ctx(), &self.redact)
                }
                Err(e) => return Err(from_reqwest(e, &self.ctx(), &self.redact)),
            };
            attempt += 1;
            if attempt >= ATTEMPTS {
                return Err(failure);
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            // After a failure the server may hold any prefix of what was sent: ask, then resume.
            match self.query_status().await {
                Ok(Some(persisted)) => {
                    if persisted < start {
                        return Err(StorageError::Other(format!("{}: the server lost acknowledged bytes", self.what)));
                    }
                    self.persisted = persisted.min(end);
                }
                Ok(None) if last => return Ok(()),
                Ok(None) => {
                    return Err(StorageError::Other(format!("{}: the server finalized the upload early", self.what)));
                }
                Err(_) => {} // still failing: retry the same range
            }
        }
    }

    /// The persisted size per the server (`Content-Range: bytes */*`), or `None` if the object is
    /// already complete.
    async fn query_status(&self) -> Result<Option<u64>, StorageError> {
        let r = self
            .http
            .put(self.session.clone())
            .header(reqwest::header::CONTENT_RANGE, "bytes */*")
            .send()
            .await
            .map_err(|e| from_reqwest(e, &self.ctx(), &self.redact))?;
        match r.status().as_u16() {
            200 | 201 => Ok(None),
            308 => Ok(Some(persisted_from(&r)?)),
            _ => Err(self.chunk_error(r).await),
        }
    }

    async fn chunk_error(&self, r: reqwest::Response) -> StorageError {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let detail = self.redact.clean(&body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                StorageError::Denied(format!("{}: HTTP {status}", self.what))
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => StorageError::Other(format!(
                "{}: the upload session expired or was cancelled (HTTP {status})",
                self.what
            )),
            _ => StorageError::Other(format!("{}: HTTP {status} ({detail})", self.what)),
        }
    }
}

/// Bytes persisted per a 308's `Range: bytes=0-N` header (none means nothing persisted).
fn persisted_from(r: &reqwest::Response) -> Result<u64, StorageError> {
    let Some(range) = r.headers().get(reqwest::header::RANGE) else { return Ok(0) };
    let last = range
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("bytes=0-"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| StorageError::Other("unreadable Range header in a resumable-upload reply".to_owned()))?;
    Ok(last + 1)
}
