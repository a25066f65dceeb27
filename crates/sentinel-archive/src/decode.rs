//! The decoder: stored chunks in, plain chunks out, on one codec thread. The format is detected from
//! magic bytes, outermost first: age (decrypted with the given key), then zstd, gzip (and tar inside
//! gzip), zip, or raw. Of a zip or tar.gz archive (Sentinel's own, or made elsewhere), the one
//! regular file inside is the output, and any other file is an error.

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;
use sentinel_secrets::age_stream::{AGE_ARMOR_MAGIC, AGE_MAGIC, AgeError, OpenWith, decrypt_reader};
use tokio::sync::mpsc;

use crate::chunks::{ChunkSource, Prefixed, Tally, pump};
use crate::error::{age_read_error, read_error};
use crate::worker::{self, Done};
use crate::{ArchiveError, CHUNK_SIZE, DecodeReport, DecryptKey, StoredFormat};

const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// A POSIX/GNU tar header is one 512-byte block with "ustar" at offset 257.
const TAR_BLOCK: usize = 512;
/// age's payload reader hands out 64 KiB plaintext chunks; a buffer of the same size above it.
const AGE_BUFFER: usize = 64 << 10;
const AGE_LAYER: &str = "age payload";

/// The running decoder.
#[must_use = "finish() reports truncation, corruption and the digests"]
pub struct DecoderHandle {
    done: Done<DecodeReport>,
}

impl DecoderHandle {
    /// Waits (without blocking the runtime) for the end of the stream. Only an `Ok` here says the
    /// output was complete and authentic: a truncated or corrupt stream is reported here after the
    /// output has already received whatever preceded the damage.
    pub async fn finish(self) -> Result<DecodeReport, ArchiveError> {
        worker::join(self.done).await
    }
}

/// Starts a decoder emitting 1 MiB chunks. The key is parsed here (a bad identity is reported before
/// a thread exists); it is only used if the stream turns out to be age-encrypted.
pub fn spawn_decoder(
    key: DecryptKey,
    input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> Result<DecoderHandle, ArchiveError> {
    spawn_decoder_with(key, CHUNK_SIZE, input, output)
}

/// [`spawn_decoder`] with another output chunk size.
pub fn spawn_decoder_with(
    key: DecryptKey,
    chunk_size: usize,
    input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> Result<DecoderHandle, ArchiveError> {
    if !(4096..=64 << 20).contains(&chunk_size) {
        return Err(ArchiveError::BadChunkSize(chunk_size));
    }
    let open = match key {
        DecryptKey::None => None,
        DecryptKey::Identities(list) => Some(OpenWith::identities(&list)?),
        DecryptKey::Passphrase(p) => Some(OpenWith::passphrase(p)?),
    };
    let done = worker::spawn("archive-decode", move || decode(open, chunk_size, input, output))?;
    Ok(DecoderHandle { done })
}

/// The codec thread's body.
fn decode(
    open: Option<OpenWith>,
    chunk: usize,
    input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> Result<DecodeReport, ArchiveError> {
    let mut src = ChunkSource::new(input);
    let mut plain = Tally::default();
    let mut out = Out { tx: &output, chunk, tally: &mut plain };
    let (encrypted, format) = decode_stored(open.as_ref(), &mut src, &mut out)?;
    drop(open);
    let stored = src.drain();
    let plain = plain.finish();
    Ok(DecodeReport {
        encrypted,
        format,
        plain_bytes: plain.bytes,
        plain_sha256: plain.sha256,
        stored_bytes: stored.bytes,
        stored_sha256: stored.sha256,
    })
}

/// Where plain bytes go.
struct Out<'a> {
    tx: &'a mpsc::Sender<Bytes>,
    chunk: usize,
    tally: &'a mut Tally,
}

impl Out<'_> {
    fn pump(&mut self, reader: &mut dyn Read, layer: &'static str) -> Result<u64, ArchiveError> {
        pump(reader, self.tx, self.chunk, self.tally, layer)
    }
}

/// The outer layer: age or not.
fn decode_stored(
    open: Option<&OpenWith>,
    src: &mut ChunkSource,
    out: &mut Out<'_>,
) -> Result<(bool, StoredFormat), ArchiveError> {
    let (head, stored) = Prefixed::peek(src, AGE_ARMOR_MAGIC.len()).map_err(|e| read_error("stored stream", e))?;
    if head.starts_with(AGE_MAGIC) {
        let open = open.ok_or(ArchiveError::NoKey)?;
        let payload = decrypt_reader(open, stored).map_err(age_read_error)?;
        let payload = BufReader::with_capacity(AGE_BUFFER, Labeled { inner: payload, layer: AGE_LAYER });
        return Ok((true, decode_plain(payload, out)?));
    }
    if head.starts_with(AGE_ARMOR_MAGIC) {
        return Err(AgeError::Armored.into());
    }
    Ok((false, decode_plain(stored, out)?))
}

/// The inner layer: the (decrypted) compression or archive format.
fn decode_plain<R: BufRead>(reader: R, out: &mut Out<'_>) -> Result<StoredFormat, ArchiveError> {
    let (head, mut reader) = Prefixed::peek(reader, ZIP_MAGIC.len()).map_err(|e| read_error("stored stream", e))?;
    if head.starts_with(ZSTD_MAGIC) || is_zstd_skippable(&head) {
        // Multi-frame (as `zstd` and `pzstd` may write); a frame cut short is an UnexpectedEof.
        let mut zstd = zstd::stream::read::Decoder::with_buffer(reader).map_err(|e| read_error("zstd", e))?;
        out.pump(&mut zstd, "zstd")?;
        return Ok(StoredFormat::Zstd);
    }
    if head.starts_with(GZIP_MAGIC) {
        // Multi-member, as pigz and concatenated gzip files are.
        let gz = flate2::bufread::MultiGzDecoder::new(reader);
        let (first, mut gz) = Prefixed::peek(gz, TAR_BLOCK).map_err(|e| read_error("gzip", e))?;
        if is_tar_header(&first) {
            untar(gz, out)?;
            return Ok(StoredFormat::TarGz);
        }
        out.pump(&mut gz, "gzip")?;
        return Ok(StoredFormat::Gzip);
    }
    if head.starts_with(ZIP_MAGIC) {
        unzip(reader, out)?;
        return Ok(StoredFormat::Zip);
    }
    out.pump(&mut reader, "stored stream")?;
    Ok(StoredFormat::Raw)
}

/// A zstd skippable frame (magic 0x184D2A50..=0x184D2A5F, little-endian), which pzstd writes first.
fn is_zstd_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

fn is_tar_header(block: &[u8]) -> bool {
    block.len() == TAR_BLOCK && &block[257..262] == b"ustar"
}

/// Streams the one regular file of a tar archive, counting any others to report them.
fn untar<R: Read>(reader: R, out: &mut Out<'_>) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut files = 0usize;
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        // Directories, links and the like carry no dump; pax and GNU long-name headers are
        // consumed by the tar crate itself.
        if !entry.header().entry_type().is_file() {
            continue;
        }
        files += 1;
        if files == 1 {
            let size = entry.size();
            let sent = out.pump(&mut entry, "tar entry")?;
            // The tar crate ends an entry quietly at the end of its input: a short entry is a cut stream.
            if sent != size {
                return Err(ArchiveError::Truncated);
            }
        }
    }
    // The tar end-of-archive blocks may come before the end of the gzip stream; reading to its end
    // checks gzip's CRC and length trailer (and catches a cut trailer).
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| read_error("gzip", e))?;
    exactly_one("tar", files)
}

/// Streams the one file entry of a zip archive from its local headers (no seeking: the central
/// directory at the end is only read past).
fn unzip<R: Read>(mut reader: R, out: &mut Out<'_>) -> Result<(), ArchiveError> {
    let mut files = 0usize;
    // `None` at the first central-directory header: the local entries are done.
    while let Some(mut entry) = zip::read::read_zipfile_from_stream(&mut reader).map_err(zip_error)? {
        if entry.is_dir() {
            continue;
        }
        files += 1;
        if files == 1 {
            let size = entry.size();
            let sent = out.pump(&mut entry, "zip entry")?;
            if sent != size {
                return Err(ArchiveError::Truncated);
            }
        }
    }
    check_zip_tail(&mut reader)?;
    exactly_one("zip", files)
}

/// The central directory is not needed to stream the entries, but a cut in it is still a cut
/// artifact: check that the stream ends with a whole end-of-central-directory record.
fn check_zip_tail<R: Read>(reader: &mut R) -> Result<(), ArchiveError> {
    // One header per entry plus the record: a central directory past this is not a one-dump archive.
    const MAX_TAIL: u64 = 16 << 20;
    let mut tail = Vec::new();
    reader.take(MAX_TAIL + 1).read_to_end(&mut tail).map_err(|e| read_error("zip", e))?;
    if tail.len() as u64 > MAX_TAIL {
        return Err(ArchiveError::Zip("the central directory is implausibly large".into()));
    }
    // EOCD: signature, 16 bytes of counts and offsets, a 2-byte comment length, the comment.
    let eocd = tail.windows(4).rposition(|w| w == b"PK\x05\x06").filter(|&at| tail.len() >= at + 22);
    let Some(at) = eocd else { return Err(ArchiveError::Truncated) };
    let end = at + 22 + usize::from(u16::from_le_bytes([tail[at + 20], tail[at + 21]]));
    match tail.len().cmp(&end) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(ArchiveError::Truncated),
        std::cmp::Ordering::Greater => Err(ArchiveError::Zip("data follows the end of the archive".into())),
    }
}

fn exactly_one(format: &'static str, files: usize) -> Result<(), ArchiveError> {
    match files {
        1 => Ok(()),
        0 => Err(ArchiveError::NoFile { format }),
        count => Err(ArchiveError::SeveralFiles { format, count }),
    }
}

fn tar_error(e: io::Error) -> ArchiveError {
    match read_error("tar", e) {
        ArchiveError::Corrupt(msg) => ArchiveError::Tar(msg),
        other => other,
    }
}

fn zip_error(e: zip::result::ZipError) -> ArchiveError {
    use zip::result::ZipError;
    match e {
        ZipError::Io(e) => read_error("zip", e),
        ZipError::UnsupportedArchive(msg) if msg.contains("local header") => ArchiveError::Zip(
            "an entry was written in streaming mode (sizes after the data), which cannot be read \
             without seeking; re-create the archive from a file (zip archive.zip dump)"
                .into(),
        ),
        e => ArchiveError::Zip(e.to_string()),
    }
}

/// Labels the errors of one layer, so that they keep saying where they came from after passing up
/// through the decoders above (a failed age chunk surfaces through zstd's reader).
struct Labeled<R> {
    inner: R,
    layer: &'static str,
}

impl<R: Read> Read for Labeled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            // age says only "decryption error" for a chunk whose tag does not verify.
            let e = if self.layer == AGE_LAYER && e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a chunk failed authentication (corrupt, tampered with, or cut short)",
                )
            } else {
                e
            };
            crate::error::label(self.layer, e)
        })
    }
}
