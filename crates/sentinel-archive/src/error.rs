//! The archive codec's one error type, and the mapping of I/O errors from the codec layers into it.

use std::io;

use sentinel_secrets::age_stream::AgeError;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("zstd level {level} is out of range ({min}..={max})")]
    BadZstdLevel { level: i32, min: i32, max: i32 },
    #[error("gzip/zip/tar.gz level {0} is out of range (0..=9)")]
    BadGzipLevel(u32),
    #[error("zstd worker count {0} is out of range (0..=64)")]
    BadWorkers(u32),
    #[error("chunk size {0} is out of range (4 KiB..=64 MiB)")]
    BadChunkSize(usize),
    #[error("{0} archives need a staging directory (their headers hold sizes known only at the end)")]
    NeedsStaging(&'static str),
    #[error("the archive entry name must be 1 to 255 bytes without '/' or NUL, got {0:?}")]
    BadEntryName(String),
    /// Bad recipients or identities, a wrong key or passphrase, a corrupt age header.
    #[error(transparent)]
    Age(#[from] AgeError),
    #[error("the stored stream is age-encrypted, but no key was given")]
    NoKey,
    #[error("the stored stream is truncated")]
    Truncated,
    /// Authentication failure of an age chunk, a bad zstd/gzip frame or checksum, a bad CRC.
    #[error("the stored stream is corrupt: {0}")]
    Corrupt(String),
    #[error("{format} archive holds {count} files; a backup restores from exactly one")]
    SeveralFiles { format: &'static str, count: usize },
    #[error("{format} archive holds no file; a backup restores from exactly one")]
    NoFile { format: &'static str },
    #[error("zip archive: {0}")]
    Zip(String),
    #[error("tar archive: {0}")]
    Tar(String),
    /// The consumer of the output (the upload, the restore tool) dropped its receiver.
    #[error("the consumer of the codec's output went away")]
    OutputClosed,
    #[error("cannot start the codec thread: {0}")]
    Spawn(#[source] io::Error),
    #[error("the codec thread panicked")]
    Panicked,
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The marker the chunk sink puts in its error when the output receiver is gone, so that the error
/// is recognised after it has bubbled up through zstd, gzip or age writers.
#[derive(Debug)]
pub(crate) struct OutputGone;

impl std::fmt::Display for OutputGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output receiver dropped")
    }
}

impl std::error::Error for OutputGone {}

pub(crate) fn output_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, OutputGone)
}

fn is_output_gone(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OutputGone>())
}

/// An error while writing the stored stream (encoder side).
pub(crate) fn write_error(context: &'static str, e: io::Error) -> ArchiveError {
    if is_output_gone(&e) { ArchiveError::OutputClosed } else { ArchiveError::Io { context, source: e } }
}

/// An error while reading through the decode layers: truncation and corruption get their own
/// variants, since a restore must tell them apart from an I/O failure.
pub(crate) fn read_error(layer: &'static str, e: io::Error) -> ArchiveError {
    if is_output_gone(&e) {
        return ArchiveError::OutputClosed;
    }
    let layer = e.get_ref().and_then(|inner| inner.downcast_ref::<Labeled>()).map_or(layer, |l| l.layer);
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated,
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Other => {
            ArchiveError::Corrupt(format!("{layer}: {e}"))
        }
        _ => ArchiveError::Io { context: layer, source: e },
    }
}

pub(crate) fn age_read_error(e: AgeError) -> ArchiveError {
    match e {
        AgeError::Io(e) => read_error("age header", e),
        e => ArchiveError::Age(e),
    }
}

/// An I/O error tagged with the layer it arose in (see `decode::Labeled`).
#[derive(Debug)]
struct Labeled {
    layer: &'static str,
    source: io::Error,
}

impl std::fmt::Display for Labeled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for Labeled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub(crate) fn label(layer: &'static str, e: io::Error) -> io::Error {
    let labeled = e.get_ref().is_some_and(|inner| inner.is::<Labeled>() || inner.is::<OutputGone>());
    if labeled { e } else { io::Error::new(e.kind(), Labeled { layer, source: e }) }
}
