//! The memory bound: a large stream through zstd-3 (2 workers) and age must not grow the process's
//! peak RSS beyond a few chunks plus zstd's buffers. Measured in a child process (this test binary
//! re-run on one test) so that the other tests' allocations do not blur the figure.

use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use sentinel_archive::{Compression, Encryption, generate_identity, spawn_encoder};
use tokio::sync::mpsc;

use crate::helpers::mixed_data;

const CHILD_ENV: &str = "SENTINEL_ARCHIVE_RSS_CHILD";
/// Peak RSS growth allowed: zstd's workers (~2 × 4 × 2 MiB window for level 3) and its context,
/// 4 + 2 chunks in the channels, age's 64 KiB chunk, with generous slack for the allocator.
const BOUND_MIB: u64 = 96;

/// How much is encoded, from how large a pool of distinct data, in how many runs. Debug builds
/// compile zstd's C code, SHA-256 and ChaCha20 without optimisation (5–15 MB/s here), so they push
/// 64 MiB of more repetitive data (a 1 MiB pool) through zstd+age only, which still exceeds what
/// buffering the stream would cost; release builds push 256 MiB of an 8 MiB pool, without and
/// with age. `SENTINEL_ARCHIVE_RSS_MIB` overrides the size.
struct Plan {
    mib: usize,
    pool_mib: usize,
    with_plain_run: bool,
}

fn plan() -> Plan {
    let debug = cfg!(debug_assertions);
    let mib = std::env::var("SENTINEL_ARCHIVE_RSS_MIB").ok().and_then(|v| v.parse().ok());
    Plan {
        mib: mib.unwrap_or(if debug { 64 } else { 256 }),
        pool_mib: if debug { 1 } else { 8 },
        with_plain_run: !debug,
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[test]
fn encoding_a_large_stream_keeps_memory_bounded() {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args(["memory::rss_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = 0;
    for line in stdout.lines().filter_map(|l| l.split_once("ARCHIVE_RSS ").map(|(_, figures)| figures)) {
        println!("{line}");
        lines += 1;
        let growth: u64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("growth_kib="))
            .and_then(|v| v.parse().ok())
            .expect("growth figure");
        assert!(growth < BOUND_MIB * 1024, "peak RSS grew by {} MiB: {line}", growth / 1024);
    }
    let expected = if plan().with_plain_run { 2 } else { 1 };
    assert_eq!(lines, expected, "the child printed no figures:\n{stdout}");
}

/// Run only by the test above, in a fresh process.
#[test]
#[ignore = "run by encoding_a_large_stream_keeps_memory_bounded in a child process"]
fn rss_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let plan = plan();
    // Dump-like data, fed as 1 MiB slices with a counter stamped in. The 8 MiB pool exceeds zstd-3's
    // 2 MiB window, so the stream does not collapse into back-references.
    let pool = Bytes::from(mixed_data(plan.pool_mib << 20, 40));
    let id = generate_identity();
    let mut runs = vec![("zstd-3+age", Encryption::Age { recipients: vec![id.recipient.clone()], passphrase: None })];
    if plan.with_plain_run {
        runs.insert(0, ("zstd-3", Encryption::None));
    }
    for (name, encryption) in runs {
        let mib = plan.mib;
        let (rss_before, started) = (status_kib("VmRSS:"), Instant::now());
        // Resets VmHWM to the current RSS, so the peak below is this run's.
        std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
        let stored = rt.block_on(encode_generated(&pool, mib, encryption));
        let secs = started.elapsed().as_secs_f64();
        let growth = status_kib("VmHWM:").saturating_sub(rss_before);
        println!(
            "ARCHIVE_RSS run={name} mib={mib} stored_mib={:.1} secs={secs:.2} mb_per_s={:.0} growth_kib={growth}",
            stored as f64 / (1 << 20) as f64,
            (mib << 20) as f64 / 1e6 / secs
        );
    }
}

async fn encode_generated(pool: &Bytes, mib: usize, encryption: Encryption) -> u64 {
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(2);
    let handle = spawn_encoder(Compression::Zstd { level: 3 }, encryption, in_rx, out_tx).expect("spawn");
    let pool = pool.clone();
    let producer = tokio::spawn(async move {
        let slices = pool.len() >> 20;
        for i in 0..mib {
            let start = (i % slices) << 20;
            let mut chunk = pool.slice(start..start + (1 << 20)).to_vec();
            chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
            in_tx.send(Bytes::from(chunk)).await.expect("encoder alive");
        }
    });
    // The upload stand-in: counts and drops.
    let mut stored = 0u64;
    while let Some(chunk) = out_rx.recv().await {
        stored += chunk.len() as u64;
    }
    producer.await.expect("producer");
    let digests = handle.finish().await.expect("encode");
    assert_eq!(digests.plain_bytes, (mib as u64) << 20);
    assert_eq!(digests.stored_bytes, stored);
    stored
}
