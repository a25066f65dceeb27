//! The streaming pipeline: a dump tool's stdout → the codec thread (SHA-256, compression, age) → a
//! multipart upload, back-pressured through bounded channels (no temporary file, bounded memory);
//! and back: a stored object → integrity pass → decode → the restore tool's stdin. Both the tool's
//! exit status and the stream are checked; any failure or a cancel aborts the upload, so no partial
//! object is ever called a backup.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sentinel_archive::{ArchiveError, Compression, DecodeReport, DecryptKey, Digests, EncodeOptions, Encryption};
use sentinel_storage::{Destination, StorageError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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

/// What a backup reads: a dump tool's stdout, or a file (SQLite's consistent copy).
pub enum Source<'a> {
    Tool(&'a Invocation),
    /// A tool's stdout, its plain bytes also sent to `tap` for as long as the tap reads them (a
    /// table-of-contents reader that stops after the header): the dump is read once.
    Tapped(&'a Invocation, mpsc::Sender<Bytes>),
    File(&'a std::path::Path),
}

/// Where a restore writes: a restore tool's stdin, or a new file (SQLite's staging file).
#[derive(Clone, Copy)]
pub enum Sink<'a> {
    Tool(&'a Invocation),
    File(&'a std::path::Path),
}

/// Reads `source` and stores it as `artifact`. `progress` receives the plain bytes read. `options`
/// name the staging directory and entry of zip and tar.gz (the only formats that stage).
pub async fn back_up(
    source: Source<'_>,
    compression: Compression,
    encryption: Encryption,
    options: EncodeOptions,
    artifact: Artifact<'_>,
    cancel: &CancellationToken,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Stored, PipelineError> {
    let Artifact { dest, key, part_size } = artifact;
    let (plain_tx, plain_rx) = mpsc::channel::<Bytes>(4);
    let (stored_tx, mut stored_rx) = mpsc::channel::<Bytes>(2);
    let encoder = sentinel_archive::spawn_encoder_with(compression, encryption, options, plain_rx, stored_tx)?;
    let mut upload = dest.upload(key, part_size).await?;
    let (source, mut tap) = match source {
        Source::Tapped(inv, tap) => (Source::Tool(inv), Some(tap)),
        other => (other, None),
    };
    let (program, mut child, stdout): (String, Option<tokio::process::Child>, Box<dyn AsyncRead + Send + Unpin>) =
        match source {
            Source::Tool(inv) | Source::Tapped(inv, _) => {
                let program = program_of(inv);
                let mut child = match inv.spawn() {
                    Ok(c) => c,
                    Err(source) => {
                        let _ = upload.abort().await;
                        return Err(PipelineError::Spawn { program, source });
                    }
                };
                drop(child.stdin.take());
                let Some(out) = child.stdout.take() else {
                    let _ = upload.abort().await;
                    return Err(PipelineError::Io(std::io::Error::other("the tool's stdout is not piped")));
                };
                (program, Some(child), Box::new(out))
            }
            Source::File(path) => match tokio::fs::File::open(path).await {
                Ok(f) => (path.display().to_string(), None, Box::new(f)),
                Err(e) => {
                    let _ = upload.abort().await;
                    return Err(PipelineError::Io(e));
                }
            },
        };
    let stderr = child.as_mut().and_then(|c| c.stderr.take()).map(|e| tokio::spawn(tail_of(e)));
    // Owns the sender and stdout: both close when it ends, which ends the codec's input and the
    // tool's output pipe.
    let reader = async move {
        let mut out = stdout;
        let mut total = 0u64;
        let mut ended = false;
        while !ended {
            // Whole chunks, not the pipe's 64 KiB reads: a sixteenth of the channel hops and codec
            // wake-ups, and no 1 MiB buffer held for a few KiB.
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            while buf.len() < READ_CHUNK {
                let n = tokio::select! {
                    n = out.read_buf(&mut buf) => n?,
                    _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
                };
                if n == 0 {
                    ended = true;
                    break;
                }
                total += n as u64;
                progress(total);
            }
            if buf.is_empty() {
                continue;
            }
            let chunk = buf.freeze();
            if let Some(t) = &tap
                && t.send(chunk.clone()).await.is_err()
            {
                tap = None;
            }
            // The codec stopped (an upload or codec error): that error is reported, not this one.
            if plain_tx.send(chunk).await.is_err() {
                return Ok(total);
            }
        }
        Ok(total)
    };
    let uploader = async {
        while let Some(chunk) = stored_rx.recv().await {
            upload.put(chunk).await?;
        }
        Ok::<(), StorageError>(())
    };
    let (read, uploaded) = tokio::join!(reader, uploader);
    let status = match child.as_mut() {
        Some(child) => {
            if read.is_err() || uploaded.is_err() {
                let _ = child.start_kill();
            }
            Some(child.wait().await)
        }
        None => None,
    };
    let messages = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    let digests = encoder.finish().await;
    let failure = match (read, uploaded, status) {
        (Err(e), _, _) => Some(e),
        (_, Err(e), _) => Some(e.into()),
        (_, _, Some(Ok(s))) if !s.success() => {
            Some(PipelineError::Tool { program, status: s.to_string(), stderr: messages.clone() })
        }
        (_, _, Some(Err(e))) => Some(PipelineError::Tool { program, status: e.to_string(), stderr: messages.clone() }),
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

/// Copies a stored object byte for byte to another destination (a plan's second and later copies:
/// the database is dumped once), checking the copy's SHA-256 against `expected_sha256`. A
/// mismatch or any failure aborts the copy's upload.
pub async fn replicate(
    from: &Destination,
    key: &str,
    to: Artifact<'_>,
    expected_sha256: &str,
    cancel: &CancellationToken,
) -> Result<String, PipelineError> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let hasher = tokio::spawn(sentinel_archive::hash_stream(rx));
    let mut upload = to.dest.upload(to.key, to.part_size).await?;
    let copied = async {
        let mut stream = from.download(key).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = tokio::select! {
                c = async { chunk } => c?,
                _ = cancel.cancelled() => return Err(PipelineError::Cancelled),
            };
            let _ = tx.send(chunk.clone()).await;
            upload.put(chunk).await?;
        }
        Ok(())
    }
    .await;
    drop(tx);
    let digest = hasher.await.map_err(|e| std::io::Error::other(e.to_string()))?;
    let failure = match (copied, digest) {
        (Err(e), _) => Some(e),
        (Ok(()), Err(e)) => Some(e.into()),
        (Ok(()), Ok(d)) if d.sha256 != expected_sha256 => {
            Some(PipelineError::ChecksumMismatch { expected: expected_sha256.to_owned(), found: d.sha256 })
        }
        _ => None,
    };
    if let Some(e) = failure {
        let _ = upload.abort().await;
        return Err(e);
    }
    upload.complete().await?;
    Ok(to.dest.location(to.key))
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

/// Streams the object `key` of `dest`, decoded with `decrypt`, into `sink`.
pub async fn restore(
    dest: &Destination,
    key: &str,
    decrypt: DecryptKey,
    sink: Sink<'_>,
    cancel: &CancellationToken,
) -> Result<(DecodeReport, String), PipelineError> {
    let (stored_tx, stored_rx) = mpsc::channel::<Bytes>(4);
    let (plain_tx, mut plain_rx) = mpsc::channel::<Bytes>(4);
    let decoder = sentinel_archive::spawn_decoder(decrypt, stored_rx, plain_tx)?;
    let mut stream = dest.download(key).await?;
    let (program, mut child, input): (String, Option<tokio::process::Child>, Box<dyn AsyncWrite + Send + Unpin>) =
        match sink {
            Sink::Tool(inv) => {
                let program = program_of(inv);
                let mut child =
                    inv.spawn().map_err(|source| PipelineError::Spawn { program: program.clone(), source })?;
                drop(child.stdout.take());
                let Some(stdin) = child.stdin.take() else {
                    return Err(PipelineError::Io(std::io::Error::other("the tool's stdin is not piped")));
                };
                (program, Some(child), Box::new(stdin))
            }
            Sink::File(path) => {
                let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(path).await?;
                (path.display().to_string(), None, Box::new(file))
            }
        };
    let stderr = child.as_mut().and_then(|c| c.stderr.take()).map(|e| tokio::spawn(tail_of(e)));
    let mut stdin = Some(input);
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
        if let Some(mut input) = stdin.take() {
            input.flush().await?;
            input.shutdown().await?;
        }
        // End of input: the tool finishes (or, on an error upstream, rolls back).
        Ok::<(), PipelineError>(())
    };
    let (downloaded, fed) = tokio::join!(download, feed);
    let report = decoder.finish().await;
    let status = match child.as_mut() {
        Some(child) => {
            if downloaded.is_err() || fed.is_err() || report.is_err() {
                let _ = child.start_kill();
            }
            Some(child.wait().await)
        }
        None => None,
    };
    let messages = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    downloaded?;
    let report = report?;
    fed?;
    match status {
        None => Ok((report, messages)),
        Some(Ok(s)) if s.success() => Ok((report, messages)),
        Some(Ok(s)) => Err(PipelineError::Tool { program, status: s.to_string(), stderr: messages }),
        Some(Err(e)) => Err(PipelineError::Tool { program, status: e.to_string(), stderr: messages }),
    }
}
