//! The adapters between the codec thread's `std::io` world and the async side's channels: a `Write`
//! that emits whole chunks into an mpsc sender, a `BufRead` over an mpsc receiver, each counting and
//! hashing what passes, and a reader that replays a peeked prefix (for magic-byte detection).

use std::io::{self, BufRead, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::output_gone;
use crate::{ArchiveError, StreamDigest};

/// Byte count and running SHA-256 of a stream.
#[derive(Default)]
pub(crate) struct Tally {
    bytes: u64,
    sha: Sha256,
}

impl Tally {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.sha.update(data);
    }

    pub(crate) fn finish(self) -> StreamDigest {
        StreamDigest { bytes: self.bytes, sha256: hex(&self.sha.finalize()) }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The stored side of the encoder: collects what the codec layers write into `chunk`-sized `Bytes`
/// and sends each full one. `flush` deliberately sends nothing, so layers that flush often (age at
/// every 64 KiB chunk) never cause tiny chunks; `finish` sends the rest.
pub(crate) struct ChunkSink {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    chunk: usize,
    tally: Tally,
}

impl ChunkSink {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>, chunk: usize) -> Self {
        Self { tx, buf: BytesMut::with_capacity(chunk), chunk, tally: Tally::default() }
    }

    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(self.chunk));
        // `blocking_send` parks this thread (never a runtime worker) while the channel is full: that
        // is the back-pressure from the upload. It fails at once when the receiver is gone.
        self.tx.blocking_send(full.freeze()).map_err(|_| output_gone())
    }

    pub(crate) fn finish(mut self) -> io::Result<StreamDigest> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(self.tally.finish())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_closed() {
            return Err(output_gone());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let take = rest.len().min(self.chunk - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == self.chunk {
                self.send()?;
            }
        }
        self.tally.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stored side of the decoder: reads the chunks of a receiver as one byte stream, hashing each
/// chunk as it arrives. Ends when the sender is dropped.
pub(crate) struct ChunkSource {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    eof: bool,
    tally: Tally,
}

impl ChunkSource {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self { rx, cur: Bytes::new(), eof: false, tally: Tally::default() }
    }

    /// Reads (and hashes) whatever is left, then returns the digest of everything received. Trailing
    /// bytes after the last archive structure are thereby still part of `stored_sha256`.
    pub(crate) fn drain(mut self) -> StreamDigest {
        self.cur.clear();
        while let Some(chunk) = self.rx.blocking_recv() {
            self.tally.update(&chunk);
        }
        self.tally.finish()
    }
}

impl BufRead for ChunkSource {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.cur.is_empty() && !self.eof {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.tally.update(&chunk);
                    self.cur = chunk;
                }
                None => self.eof = true,
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, n: usize) {
        self.cur.advance(n.min(self.cur.len()));
    }
}

impl Read for ChunkSource {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let have = self.fill_buf()?;
            let n = have.len().min(out.len());
            out[..n].copy_from_slice(&have[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

/// A reader that first replays `prefix` (bytes already taken from `inner` to look at them), then
/// continues with `inner`.
pub(crate) struct Prefixed<R> {
    prefix: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Prefixed<R> {
    /// Takes up to `n` bytes from `inner` (fewer only at its end) and returns them along with the
    /// reader that will replay them.
    pub(crate) fn peek(mut inner: R, n: usize) -> io::Result<(Vec<u8>, Self)> {
        let mut prefix = vec![0; n];
        let mut have = 0;
        while have < n {
            match inner.read(&mut prefix[have..]) {
                Ok(0) => break,
                Ok(k) => have += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        prefix.truncate(have);
        Ok((prefix.clone(), Self { prefix, pos: 0, inner }))
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(out.len());
            out[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

impl<R: BufRead> BufRead for Prefixed<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos < self.prefix.len() { Ok(&self.prefix[self.pos..]) } else { self.inner.fill_buf() }
    }

    fn consume(&mut self, n: usize) {
        if self.pos < self.prefix.len() {
            self.pos = (self.pos + n).min(self.prefix.len());
        } else {
            self.inner.consume(n);
        }
    }
}

/// Reads `reader` to its end in `chunk`-sized pieces and sends each into `out`, tallying the plain
/// bytes. Returns the number of bytes sent.
pub(crate) fn pump(
    reader: &mut dyn Read,
    out: &mpsc::Sender<Bytes>,
    chunk: usize,
    tally: &mut Tally,
    layer: &'static str,
) -> Result<u64, ArchiveError> {
    let mut sent = 0u64;
    loop {
        let mut buf = vec![0u8; chunk];
        let mut have = 0;
        // Fill a whole chunk before sending: decoders hand out a few KiB per read.
        while have < chunk {
            match reader.read(&mut buf[have..]) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::error::read_error(layer, e)),
            }
        }
        if have == 0 {
            return Ok(sent);
        }
        buf.truncate(have);
        tally.update(&buf);
        sent += have as u64;
        out.blocking_send(Bytes::from(buf)).map_err(|_| ArchiveError::OutputClosed)?;
        if have < chunk {
            return Ok(sent);
        }
    }
}

/// Consumes a receiver, returning the size and SHA-256 of what came through.
pub(crate) fn hash_all(mut rx: mpsc::Receiver<Bytes>) -> StreamDigest {
    let mut tally = Tally::default();
    while let Some(chunk) = rx.blocking_recv() {
        tally.update(&chunk);
    }
    tally.finish()
}
