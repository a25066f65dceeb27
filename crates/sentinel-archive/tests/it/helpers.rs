//! Test helpers: mixed test data, running the encoder and decoder over in-memory streams fed in odd
//! chunk sizes, and running the stock CLIs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use sentinel_archive::{
    ArchiveError, CHUNK_SIZE, Compression, DecodeReport, DecryptKey, Digests, EncodeOptions, Encryption, spawn_decoder,
    spawn_encoder_with,
};
use tokio::sync::mpsc;

/// A small, fast PRNG: the tests need reproducible data, not randomness.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Dump-like data: runs of text rows (compressible, ~4× with zstd-3) between short runs of random
/// bytes (not compressible, like bytea or already-compressed columns).
pub fn mixed_data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 4096);
    while out.len() < len {
        if rng.below(8) == 0 {
            for _ in 0..rng.below(128) {
                out.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
        } else {
            for _ in 0..rng.below(64) {
                let id = rng.below(1_000_000);
                let _ = writeln!(
                    out,
                    "{id}\tcustomer-{}\t{}.{:02}\t2026-01-{:02}",
                    id % 977,
                    id % 5000,
                    id % 100,
                    id % 28 + 1
                );
            }
        }
    }
    out.truncate(len);
    out
}

/// Odd chunk sizes, including empty chunks and single bytes.
pub fn odd_chunks(data: &[u8], seed: u64) -> Vec<Bytes> {
    let sizes = [1usize, 0, 7, 4093, 65_537, 333_333, 1 << 20, 1_500_001, 12];
    let mut rng = XorShift::new(seed);
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = sizes[rng.below(sizes.len() as u64) as usize].min(data.len() - at);
        chunks.push(Bytes::copy_from_slice(&data[at..at + n]));
        at += n;
    }
    chunks
}

/// Options for tests: a low scrypt work factor so passphrase tests take milliseconds, not seconds.
pub fn test_options() -> EncodeOptions {
    EncodeOptions { scrypt_work_factor: Some(10), ..EncodeOptions::default() }
}

pub struct Encoded {
    pub stored: Vec<u8>,
    pub digests: Digests,
    pub chunk_sizes: Vec<usize>,
}

pub async fn encode(compression: Compression, encryption: Encryption, data: &[u8]) -> Encoded {
    encode_with(compression, encryption, test_options(), data).await.expect("encode")
}

pub async fn encode_with(
    compression: Compression,
    encryption: Encryption,
    options: EncodeOptions,
    data: &[u8],
) -> Result<Encoded, ArchiveError> {
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(2);
    let handle = spawn_encoder_with(compression, encryption, options, in_rx, out_tx)?;
    let feed = tokio::spawn(feed(in_tx, odd_chunks(data, data.len() as u64)));
    let (stored, chunk_sizes) = collect(out_rx).await;
    let digests = handle.finish().await?;
    feed.await.expect("feeder");
    Ok(Encoded { stored, digests, chunk_sizes })
}

pub async fn decode(key: DecryptKey, stored: &[u8]) -> Result<(Vec<u8>, DecodeReport), ArchiveError> {
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(2);
    let handle = spawn_decoder(key, in_rx, out_tx)?;
    let feed = tokio::spawn(feed(in_tx, odd_chunks(stored, 7 + stored.len() as u64)));
    let (plain, sizes) = collect(out_rx).await;
    let report = handle.finish().await?;
    feed.await.expect("feeder");
    assert_whole_chunks(&sizes);
    Ok((plain, report))
}

async fn feed(tx: mpsc::Sender<Bytes>, chunks: Vec<Bytes>) {
    for chunk in chunks {
        if tx.send(chunk).await.is_err() {
            return; // the codec stopped (an expected error in corruption tests)
        }
    }
}

async fn collect(mut rx: mpsc::Receiver<Bytes>) -> (Vec<u8>, Vec<usize>) {
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    while let Some(chunk) = rx.recv().await {
        sizes.push(chunk.len());
        all.extend_from_slice(&chunk);
    }
    (all, sizes)
}

/// Every chunk but the last is a full one (no tiny chunks).
pub fn assert_whole_chunks(sizes: &[usize]) {
    if let Some((_, full)) = sizes.split_last() {
        assert!(full.iter().all(|&n| n == CHUNK_SIZE), "short chunk in the middle: {sizes:?}");
    }
}

/// Runs a stock tool with `input` on stdin and returns its stdout; fails clearly when the tool is
/// missing (scripts/test.sh installs them).
pub fn run_tool(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the `{program}` CLI is needed by this test (apt-get install {program}): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Written from another thread: the tool's stdout fills while we are still writing its stdin.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Runs a tool in `dir` for its side effects.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("the `{program}` CLI is needed by this test (apt-get install {program}): {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Decodes a stream that must fail, and returns the error (without printing megabytes if it did not).
pub async fn decode_err(key: DecryptKey, stored: &[u8]) -> ArchiveError {
    match decode(key, stored).await {
        Ok((plain, report)) => panic!("decoded {} bytes instead of failing: {report:?}", plain.len()),
        Err(e) => e,
    }
}
