//! The encoder: plain chunks in, stored chunks out, on one codec thread:
//! SHA-256(plain) → zstd (multithreaded), gzip, or a staged zip/tar.gz → age (if any) →
//! SHA-256(stored) → ~1 MiB chunks.

use std::io::{self, Write};

use bytes::Bytes;
use flate2::write::GzEncoder;
use sentinel_secrets::age_stream::{AgeWriter, SealTo, encrypt_writer};
use tokio::sync::mpsc;

use crate::chunks::{ChunkSink, Tally};
use crate::error::write_error;
use crate::staged::{self, Staged};
use crate::worker::{self, Done};
use crate::{ArchiveError, Compression, Digests, EncodeOptions, Encryption};

/// The running encoder. Dropping it without `finish` leaves the thread to end on its own when its
/// input closes or its output is dropped.
#[must_use = "finish() reports the digests and any codec error"]
pub struct EncoderHandle {
    done: Done<Digests>,
}

impl EncoderHandle {
    /// Waits (without blocking the runtime) until the input has closed and everything is written,
    /// and returns the digests of both sides. An error here means the stored stream is unusable.
    pub async fn finish(self) -> Result<Digests, ArchiveError> {
        worker::join(self.done).await
    }
}

/// Starts an encoder with the default options (2 zstd workers, 1 MiB chunks).
///
/// Configuration errors (a bad level, recipient or passphrase combination) are returned here,
/// before a thread exists. When `input` closes the encoder finalizes the stream (zstd end frame,
/// age final chunk); when the receiver of `output` is dropped it stops with `OutputClosed`.
pub fn spawn_encoder(
    compression: Compression,
    encryption: Encryption,
    input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> Result<EncoderHandle, ArchiveError> {
    spawn_encoder_with(compression, encryption, EncodeOptions::default(), input, output)
}

pub fn spawn_encoder_with(
    compression: Compression,
    encryption: Encryption,
    options: EncodeOptions,
    input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> Result<EncoderHandle, ArchiveError> {
    check(compression, &options)?;
    let seal = match encryption {
        Encryption::None => None,
        Encryption::Age { recipients, passphrase } => {
            let to = SealTo::new(&recipients, passphrase)?;
            Some(match options.scrypt_work_factor {
                Some(log_n) => to.with_work_factor(log_n),
                None => to,
            })
        }
    };
    let done = worker::spawn("archive-encode", move || encode(compression, seal, &options, input, output))?;
    Ok(EncoderHandle { done })
}

fn check(compression: Compression, options: &EncodeOptions) -> Result<(), ArchiveError> {
    match compression {
        Compression::Zstd { level } => {
            let range = zstd::compression_level_range();
            if !range.contains(&level) {
                return Err(ArchiveError::BadZstdLevel { level, min: *range.start(), max: *range.end() });
            }
        }
        Compression::Gzip { level } | Compression::Zip { level } | Compression::TarGz { level } if level > 9 => {
            return Err(ArchiveError::BadGzipLevel(level));
        }
        Compression::Gzip { .. } | Compression::Zip { .. } | Compression::TarGz { .. } | Compression::None => {}
    }
    if let Some(kind) = Staged::of(compression) {
        if options.staging_dir.is_none() {
            return Err(ArchiveError::NeedsStaging(kind.name()));
        }
        let name = &options.entry_name;
        if name.is_empty() || name.len() > 255 || name.contains(['/', '\0']) {
            return Err(ArchiveError::BadEntryName(name.clone()));
        }
    }
    if options.zstd_workers > 64 {
        return Err(ArchiveError::BadWorkers(options.zstd_workers));
    }
    if !(4096..=64 << 20).contains(&options.chunk_size) {
        return Err(ArchiveError::BadChunkSize(options.chunk_size));
    }
    Ok(())
}

/// Input per zstd worker job. zstd's default for level 3 is 4 × its 2 MiB window = 8 MiB, and the
/// jobs in flight (input, output buffer, overlap) then cost ~80 MiB with 2 workers; 4 MiB jobs
/// measured ~45–55 MiB at the same ratio and speed. Smaller still (2 MiB) cost throughput.
const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// The encryption layer, directly above the chunk sink.
enum Sealer {
    Age(AgeWriter<ChunkSink>),
    Plain(ChunkSink),
}

impl Sealer {
    fn finish(self) -> io::Result<ChunkSink> {
        match self {
            Self::Age(w) => w.finish(),
            Self::Plain(sink) => Ok(sink),
        }
    }
}

impl Write for Sealer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Age(w) => w.write(data),
            Self::Plain(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Age(w) => w.flush(),
            Self::Plain(w) => w.flush(),
        }
    }
}

/// The compression layer, on top.
enum Compressor {
    Zstd(zstd::stream::write::Encoder<'static, Sealer>),
    Gzip(GzEncoder<Sealer>),
    None(Sealer),
}

impl Compressor {
    fn new(compression: Compression, workers: u32, inner: Sealer) -> io::Result<Self> {
        Ok(match compression {
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                // Workers compress in zstd's own threads while this one hashes and encrypts; the
                // output is one ordinary frame any zstd decodes.
                enc.multithread(workers)?;
                // As the zstd CLI does: a frame checksum catches corruption of unencrypted artifacts.
                enc.include_checksum(true)?;
                if workers > 0 {
                    enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                Self::Zstd(enc)
            }
            Compression::Gzip { level } => Self::Gzip(GzEncoder::new(inner, flate2::Compression::new(level))),
            // Staged formats are written by `staged::encode`, never through this layer.
            Compression::None | Compression::Zip { .. } | Compression::TarGz { .. } => Self::None(inner),
        })
    }

    fn finish(self) -> io::Result<Sealer> {
        match self {
            Self::Zstd(enc) => enc.finish(),
            Self::Gzip(enc) => enc.finish(),
            Self::None(inner) => Ok(inner),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Zstd(w) => w.write(data),
            Self::Gzip(w) => w.write(data),
            Self::None(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Zstd(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
            Self::None(w) => w.flush(),
        }
    }
}

/// The codec thread's body.
fn encode(
    compression: Compression,
    seal: Option<SealTo>,
    options: &EncodeOptions,
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> Result<Digests, ArchiveError> {
    let sink = ChunkSink::new(output.clone(), options.chunk_size);
    let sealer = match &seal {
        Some(to) => Sealer::Age(encrypt_writer(to, sink).map_err(|e| match e {
            sentinel_secrets::age_stream::AgeError::Io(e) => write_error("writing the age header", e),
            e => ArchiveError::Age(e),
        })?),
        None => Sealer::Plain(sink),
    };
    // The passphrase is no longer needed once the header (with the wrapped file key) is written.
    drop(seal);
    if let (Some(kind), Some(dir)) = (Staged::of(compression), options.staging_dir.as_deref()) {
        let closed = || output.is_closed();
        let (plain, sealer) = staged::encode(kind, dir, &options.entry_name, &mut input, &closed, sealer)?;
        let sink = sealer.finish().map_err(|e| write_error("finishing encryption", e))?;
        let stored = sink.finish().map_err(|e| write_error("sending the last chunk", e))?;
        return Ok(Digests {
            plain_bytes: plain.bytes,
            plain_sha256: plain.sha256,
            stored_bytes: stored.bytes,
            stored_sha256: stored.sha256,
        });
    }
    let mut compressor =
        Compressor::new(compression, options.zstd_workers, sealer).map_err(|e| write_error("starting zstd", e))?;

    let mut plain = Tally::default();
    while let Some(chunk) = input.blocking_recv() {
        // Checked per input chunk as well as per write: zstd's workers may hold output back for
        // several MiB, and a gone upload should stop the dump promptly (dropping `input` here makes
        // the producer's next send fail).
        if output.is_closed() {
            return Err(ArchiveError::OutputClosed);
        }
        plain.update(&chunk);
        compressor.write_all(&chunk).map_err(|e| write_error("compressing", e))?;
    }
    let sealer = compressor.finish().map_err(|e| write_error("finishing compression", e))?;
    let sink = sealer.finish().map_err(|e| write_error("finishing encryption", e))?;
    let stored = sink.finish().map_err(|e| write_error("sending the last chunk", e))?;
    let plain = plain.finish();
    Ok(Digests {
        plain_bytes: plain.bytes,
        plain_sha256: plain.sha256,
        stored_bytes: stored.bytes,
        stored_sha256: stored.sha256,
    })
}
