//! zip and tar.gz, the two formats whose headers need a size before the data (tar the plain size, a
//! zip local header the CRC and compressed size), so their input is staged in one file first: an
//! anonymous, already-unlinked file in the caller's staging directory, gone even if the process
//! dies. zip stages its own deflated output (the smaller side); tar stages the plain stream.
//! Every other format streams with no file at all.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;

use crate::chunks::Tally;
use crate::error::write_error;
use crate::{ArchiveError, Compression, StreamDigest};

/// Which staged archive to build, and its deflate level (0..=9).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Staged {
    Zip(u32),
    TarGz(u32),
}

impl Staged {
    /// The staged format `compression` is, if it is one.
    pub(crate) fn of(compression: Compression) -> Option<Self> {
        match compression {
            Compression::Zip { level } => Some(Self::Zip(level)),
            Compression::TarGz { level } => Some(Self::TarGz(level)),
            Compression::Zstd { .. } | Compression::Gzip { .. } | Compression::None => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Zip(_) => "zip",
            Self::TarGz(_) => "tar.gz",
        }
    }
}

/// Reads `input` to its end, then writes the archive (one file, `entry`) into `out`. Returns the
/// digest of the plain input and `out`.
pub(crate) fn encode<W: Write>(
    kind: Staged,
    dir: &Path,
    entry: &str,
    input: &mut mpsc::Receiver<Bytes>,
    output_closed: &dyn Fn() -> bool,
    mut out: W,
) -> Result<(StreamDigest, W), ArchiveError> {
    let staging = tempfile::tempfile_in(dir).map_err(|e| write_error("creating the staging file", e))?;
    let mut plain = Tally::default();
    match kind {
        Staged::Zip(level) => {
            let mut zip = zip::ZipWriter::new(staging);
            // zip64 extras always: the size is not known when the local header is written.
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(i64::from(level)))
                .unix_permissions(0o600)
                .large_file(true);
            zip.start_file(entry, options).map_err(zip_error)?;
            while let Some(chunk) = input.blocking_recv() {
                if output_closed() {
                    return Err(ArchiveError::OutputClosed);
                }
                plain.update(&chunk);
                zip.write_all(&chunk).map_err(|e| write_error("staging the zip entry", e))?;
            }
            let mut staged = zip.finish().map_err(zip_error)?;
            copy_from_start(&mut staged, &mut out, "writing the zip archive")?;
        }
        Staged::TarGz(level) => {
            let mut staged = io::BufWriter::with_capacity(1 << 20, staging);
            while let Some(chunk) = input.blocking_recv() {
                if output_closed() {
                    return Err(ArchiveError::OutputClosed);
                }
                plain.update(&chunk);
                staged.write_all(&chunk).map_err(|e| write_error("staging the tar entry", e))?;
            }
            let mut staged = staged.into_inner().map_err(|e| write_error("staging the tar entry", e.into_error()))?;
            let digest_bytes = staged.stream_position().map_err(|e| write_error("staging the tar entry", e))?;
            staged.seek(SeekFrom::Start(0)).map_err(|e| write_error("reading the staging file", e))?;
            let mut tar = tar::Builder::new(GzEncoder::new(out, flate2::Compression::new(level)));
            // GNU headers: sizes past tar's 8 GiB octal limit are written in base 256.
            let mut header = tar::Header::new_gnu();
            header.set_size(digest_bytes);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mtime(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            );
            tar.append_data(&mut header, entry, &mut staged).map_err(|e| write_error("writing the tar archive", e))?;
            let gz = tar.into_inner().map_err(|e| write_error("ending the tar archive", e))?;
            out = gz.finish().map_err(|e| write_error("finishing gzip", e))?;
        }
    }
    Ok((plain.finish(), out))
}

fn copy_from_start<R: Read + Seek, W: Write>(
    from: &mut R,
    to: &mut W,
    context: &'static str,
) -> Result<(), ArchiveError> {
    from.seek(SeekFrom::Start(0)).map_err(|e| write_error("reading the staging file", e))?;
    let mut reader = io::BufReader::with_capacity(1 << 20, from);
    io::copy(&mut reader, to).map_err(|e| write_error(context, e))?;
    Ok(())
}

fn zip_error(e: zip::result::ZipError) -> ArchiveError {
    match e {
        zip::result::ZipError::Io(e) => write_error("writing the zip archive", e),
        other => ArchiveError::Zip(other.to_string()),
    }
}
