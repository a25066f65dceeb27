//! The backend-independent test suite: each backend module opens destinations and calls these.

use bytes::Bytes;
use futures::TryStreamExt;
use sentinel_storage::{Destination, StorageError};
use sha2::{Digest, Sha256};

pub const MIB: usize = 1024 * 1024;

/// Installs the ring TLS provider once per binary (reqwest is built without a default one).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `len` deterministic pseudo-random bytes (xorshift), so parts differ and a misplaced part shows.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Uploads `data` in 1 MiB chunks with `part_size` parts; returns the byte count `complete` gave.
pub async fn upload(dest: &Destination, key: &str, data: &[u8], part_size: usize) -> u64 {
    let mut up = dest.upload(key, part_size).await.unwrap_or_else(|e| panic!("upload {key}: {e}"));
    for chunk in data.chunks(MIB) {
        up.put(Bytes::copy_from_slice(chunk)).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    up.complete().await.unwrap_or_else(|e| panic!("complete {key}: {e}"))
}

pub async fn download(dest: &Destination, key: &str) -> Vec<u8> {
    let stream = dest.download(key).await.unwrap_or_else(|e| panic!("download {key}: {e}"));
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap_or_else(|e| panic!("download {key}: {e}"));
    chunks.concat()
}

/// Upload a 12 MiB object in 5 MiB parts (three parts, the last short), download it and compare
/// SHA-256, head, list (relative keys, segment prefixes), probe, delete, delete again.
pub async fn round_trip(dest: &Destination) {
    let key = "db/2026-12-01/dump.zst";
    let body = data(12 * MIB, 7);
    assert_eq!(upload(dest, key, &body, 5 * MIB).await, body.len() as u64);
    assert_eq!(sha256(&download(dest, key).await), sha256(&body), "downloaded bytes differ");

    let info = dest.head(key).await.unwrap_or_else(|e| panic!("head: {e}")).unwrap_or_else(|| panic!("head: missing"));
    assert_eq!(info.key, key);
    assert_eq!(info.size, body.len() as u64);
    assert!(info.last_modified.timestamp() > 1_700_000_000, "last_modified {}", info.last_modified);

    // A small second object, and a sibling whose name shares a string prefix but not a segment.
    assert_eq!(upload(dest, "db/2026-12-02/dump.zst", b"second", 5 * MIB).await, 6);
    assert_eq!(upload(dest, "dbx/other", b"x", 5 * MIB).await, 1);
    let all = dest.list("").await.unwrap_or_else(|e| panic!("list: {e}"));
    let keys: Vec<&str> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["db/2026-12-01/dump.zst", "db/2026-12-02/dump.zst", "dbx/other"]);
    assert_eq!(all[0].size, body.len() as u64);
    let under = dest.list("db/").await.unwrap_or_else(|e| panic!("list db/: {e}"));
    assert_eq!(
        under.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["db/2026-12-01/dump.zst", "db/2026-12-02/dump.zst"]
    );
    assert!(dest.list("nothing/here").await.unwrap_or_else(|e| panic!("list: {e}")).is_empty());

    let report = dest.probe().await.unwrap_or_else(|e| panic!("probe: {e}"));
    assert!(report.write_ms < 30_000 && report.read_ms < 30_000 && report.delete_ms < 30_000, "{report:?}");

    for k in [key, "db/2026-12-02/dump.zst", "dbx/other"] {
        dest.delete(k).await.unwrap_or_else(|e| panic!("delete {k}: {e}"));
    }
    assert!(dest.head(key).await.unwrap_or_else(|e| panic!("head: {e}")).is_none());
    dest.delete(key).await.unwrap_or_else(|e| panic!("deleting a missing object must be Ok: {e}"));
    assert!(dest.list("").await.unwrap_or_else(|e| panic!("list: {e}")).is_empty(), "probe or deleted objects left");
    assert!(matches!(dest.download(key).await.err(), Some(StorageError::NotFound(_))));
}

/// An aborted upload (one full part sent, one buffered) leaves no object; `incomplete` says
/// whether the backend can list incomplete uploads, which must then be empty too.
pub async fn abort_leaves_nothing(dest: &Destination, incomplete: bool) {
    let key = "aborted/dump.zst";
    let mut up = dest.upload(key, 5 * MIB).await.unwrap_or_else(|e| panic!("upload: {e}"));
    for chunk in data(7 * MIB, 3).chunks(MIB) {
        up.put(Bytes::copy_from_slice(chunk)).await.unwrap_or_else(|e| panic!("put: {e}"));
    }
    up.abort().await.unwrap_or_else(|e| panic!("abort: {e}"));
    assert!(dest.head(key).await.unwrap_or_else(|e| panic!("head: {e}")).is_none(), "aborted object exists");
    assert!(dest.list("").await.unwrap_or_else(|e| panic!("list: {e}")).is_empty());
    if incomplete {
        let left = dest.incomplete_uploads().await.unwrap_or_else(|e| panic!("incomplete_uploads: {e}"));
        assert!(left.is_empty(), "incomplete uploads left: {left:?}");
    }
}

/// Checks `result` is the expected error kind and its message names no secret.
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, StorageError>,
    expected: fn(&StorageError) -> bool,
    secrets: &[&str],
) -> String {
    let err = match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    };
    assert!(expected(&err), "unexpected error kind: {err:?}");
    let msg = err.to_string();
    eprintln!("expected error: {msg}");
    for s in secrets {
        assert!(!msg.contains(s), "message leaks a secret: {msg}");
    }
    msg
}
