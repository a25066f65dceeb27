//! The streaming pipeline: a dump tool's stdout → the codec thread (SHA-256, compression, age) → a
//! multipart upload, back-pressured through bounded channels (no temporary file, bounded memory);
//! and back: a stored object → integrity pass → decode → the restore tool's stdin. Both the tool's
//! exit status and the stream are checked; any failure or a cancel aborts the upload, so no partial
//! object is ever called a backup.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sentinel_archive::{ArchiveError, Compression, DecodeReport, DecryptKey, Digests, Encryption};
use sentinel_storage::{Destination, StorageError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engines::Invocation;

/// Size of the reads from a tool's stdout.
const READ_CHUNK: usize = 1 << 20;
/// How much of a tool's stderr is kept for the journal (its end, where the error is).
const STDERR_TAIL: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} failed ({status}): {stderr}")]
    Tool { program: String, status: String, stderr: String },
    #[error("reading the tool's output: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the stored artifact does not match its journal: SHA-256 {found}, expected {expected}")]
    ChecksumMismatch { expected: String, found: String },
    #[error("cancelled")]
    Cancelled,
}

/// What a finished backup stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub digests: Digests,
    pub location: String,
    /// The end of the tool's stderr (warnings), if it printed any.
    pub tool_messages: String,
}

async fn tail_of(mut stream: impl AsyncRead + Unpin) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * STDERR_TAIL {
            buf.drain(..buf.len() - STDERR_TAIL);
        }
    }
    let start = buf.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&buf[start..]).trim().to_owned()
}

fn program_of(inv: &Invocation) -> String {
    inv.program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Where a backup's artifact goes: a key of a destination, uploaded in parts of `part_size`.
#[derive(Clone, Copy)]
pub struct Artifact<'a> {
    pub dest: &'a Destination,
    pub key: &'a str,
    pub part_size: usize,
}

/// Runs `inv` and stores its stdout as `artifact`. `progress` receives the plain bytes read.
pub async fn back_up(
    inv: &Invocation,
    compression: Compression,
    encryption: Encryption,
    artifact: Artifact<'_>,
    cancel: &CancellationToken,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Stored, PipelineError> {
    let Artifact { dest, key, part_size } = artifact;
    let program = program_of(inv);
    let (plain_tx, plain_rx) = mpsc::channel::<Bytes>(4);
    let (stored_tx, mut stored_rx) = mpsc::channel::<Bytes>(2);
    let encoder = sentinel_archive::spawn_encoder(compression, encryption, plain_rx, stored_tx)?;
    let mut upload = dest.upload(key, part_size).await?;
    let mut child = match inv.spawn() {
        Ok(c) => c,
        Err(source) => {
            let _ = upload.abort().await;
            return Err(PipelineError::Spawn { program, source });
        }
    };
    drop(child.stdin.take());
    let stderr = child.stderr.take().map(|e| tokio::spawn(tail_of(e)));
    let stdout = child.stdout.take();
    // Owns the sender and stdout: both close when it ends, which ends the codec's input and the
    // tool's output pipe.
    let reader = async move {
        let Some(mut out) = stdout else { return Ok(0) };
        let mut total = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let n = tokio::select! {
                n = out.read_buf(&mut buf) => n?,
                _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
            };
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            progress(total);
            // The codec stopped (an upload or codec error): that error is reported, not this one.
            if plain_tx.send(buf.freeze()).await.is_err() {
                return Ok(total);
            }
        }
    };
    let uploader = async {
        while let Some(chunk) = stored_rx.recv().await {
            upload.put(chunk).await?;
        }
        Ok::<(), StorageError>(())
    };
    let (read, uploaded) = tokio::join!(reader, uploader);
    if read.is_err() || uploaded.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let messages = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    let digests = encoder.finish().await;
    let failure = match (read, uploaded, status) {
        (Err(e), _, _) => Some(e),
        (_, Err(e), _) => Some(e.into()),
        (_, _, Ok(s)) if !s.success() => {
            Some(PipelineError::Tool { program, status: s.to_string(), stderr: messages.clone() })
        }
        (_, _, Err(e)) => Some(PipelineError::Tool { program, status: e.to_string(), stderr: messages.clone() }),
        _ => None,
    };
    let digests = match (failure, digests) {
        (None, Ok(d)) => d,
        (Some(e), _) => {
            let _ = upload.abort().await;
            return Err(e);
        }
        (None, Err(e)) => {
            let _ = upload.abort().await;
            return Err(e.into());
        }
    };
    upload.complete().await?;
    Ok(Stored { digests, location: dest.location(key), tool_messages: messages })
}

/// Reads the stored object once, hashing it, and refuses it unless it matches `expected_sha256`:
/// run before a restore touches its target.
pub async fn verify_stored(dest: &Destination, key: &str, expected_sha256: &str) -> Result<u64, PipelineError> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let hasher = tokio::spawn(sentinel_archive::hash_stream(rx));
    let mut stream = dest.download(key).await?;
    while let Some(chunk) = stream.next().await {
        if tx.send(chunk?).await.is_err() {
            break;
        }
    }
    drop(tx);
    let digest = hasher.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    if digest.sha256 != expected_sha256 {
        return Err(PipelineError::ChecksumMismatch { expected: expected_sha256.to_owned(), found: digest.sha256 });
    }
    Ok(digest.bytes)
}

/// Streams the object `key` of `dest`, decoded with `decrypt`, into the stdin of `inv`.
pub async fn restore(
    dest: &Destination,
    key: &str,
    decrypt: DecryptKey,
    inv: &Invocation,
    cancel: &CancellationToken,
) -> Result<(DecodeReport, String), PipelineError> {
    let program = program_of(inv);
    let (stored_tx, stored_rx) = mpsc::channel::<Bytes>(4);
    let (plain_tx, mut plain_rx) = mpsc::channel::<Bytes>(4);
    let decoder = sentinel_archive::spawn_decoder(decrypt, stored_rx, plain_tx)?;
    let mut stream = dest.download(key).await?;
    let mut child = inv.spawn().map_err(|source| PipelineError::Spawn { program: program.clone(), source })?;
    let stderr = child.stderr.take().map(|e| tokio::spawn(tail_of(e)));
    drop(child.stdout.take());
    let mut stdin = child.stdin.take();
    let download = async {
        while let Some(chunk) = stream.next().await {
            let chunk = tokio::select! {
                c = async { chunk } => c?,
                _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
            };
            if stored_tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(stored_tx);
        Ok(())
    };
    let feed = async {
        while let Some(chunk) = plain_rx.recv().await {
            let Some(input) = stdin.as_mut() else { break };
            tokio::select! {
                w = input.write_all(&chunk) => w?,
                _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
            }
        }
        // End of input: the tool finishes (or, on an error upstream, rolls back).
        drop(stdin.take());
        Ok::<(), PipelineError>(())
    };
    let (downloaded, fed) = tokio::join!(download, feed);
    let report = decoder.finish().await;
    if downloaded.is_err() || fed.is_err() || report.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let messages = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    downloaded?;
    let report = report?;
    fed?;
    match status {
        Ok(s) if s.success() => Ok((report, messages)),
        Ok(s) => Err(PipelineError::Tool { program, status: s.to_string(), stderr: messages }),
        Err(e) => Err(PipelineError::Tool { program, status: e.to_string(), stderr: messages }),
    }
}
