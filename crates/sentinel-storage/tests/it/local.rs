//! The local-directory backend: the common suite on a temp directory, temp-file naming (no file
//! named like a backup before complete), stray partial files for the janitor, and validation.

use bytes::Bytes;
use sentinel_storage::{Destination, DestinationSpec, StorageError};

use crate::common::{self, MIB};

fn open(path: &std::path::Path) -> Destination {
    Destination::open(&DestinationSpec::Local { path: path.to_owned() }).unwrap_or_else(|e| panic!("open: {e}"))
}

/// Every file under `dir`, hidden ones included, relative and sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{e}")).flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn round_trip() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dest = open(dir.path());
    assert_eq!(dest.location("a/b"), format!("file://{}/a/b", dir.path().display()));
    common::round_trip(&dest).await;
    // Deleting the last object of a folder removes the folders it leaves empty.
    assert!(files(dir.path()).is_empty());
    assert!(std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(1) == 0, "empty folders left");
}

#[tokio::test]
async fn nothing_named_like_the_backup_exists_before_complete() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dest = open(dir.path());
    let mut up = dest.upload("plan/dump.zst", 0).await.unwrap_or_else(|e| panic!("{e}"));
    up.put(Bytes::from(common::data(MIB, 1))).await.unwrap_or_else(|e| panic!("{e}"));
    let during = files(dir.path());
    assert_eq!(during.len(), 1);
    assert!(during[0].starts_with("plan/.dump.zst.partial-"), "{during:?}");
    assert!(dest.list("").await.unwrap_or_else(|e| panic!("{e}")).is_empty(), "a partial file is listed");
    assert!(dest.head("plan/dump.zst").await.unwrap_or_else(|e| panic!("{e}")).is_none());
    assert_eq!(up.complete().await.unwrap_or_else(|e| panic!("{e}")), MIB as u64);
    assert_eq!(files(dir.path()), ["plan/dump.zst"]);
}

#[tokio::test]
async fn abort_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    common::abort_leaves_nothing(&open(dir.path()), true).await;
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[tokio::test]
async fn a_killed_upload_is_found_and_cleaned_by_the_janitor_calls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dest = open(dir.path());
    let mut up = dest.upload("plan/killed.zst", 0).await.unwrap_or_else(|e| panic!("{e}"));
    up.put(Bytes::from_static(b"half a backup")).await.unwrap_or_else(|e| panic!("{e}"));
    // A killed process runs no destructor: forget the upload to leave its temp file as a kill would.
    std::mem::forget(up);

    let pending = dest.incomplete_uploads().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].key, "plan/killed.zst");
    assert!(pending[0].upload_id.starts_with("plan/.killed.zst.partial-"));
    assert!(pending[0].initiated.is_some());
    dest.abort_incomplete(&pending[0]).await.unwrap_or_else(|e| panic!("{e}"));
    dest.abort_incomplete(&pending[0]).await.unwrap_or_else(|e| panic!("aborting twice must be Ok: {e}"));
    assert!(dest.incomplete_uploads().await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(files(dir.path()).is_empty());

    // The janitor's ids are checked: it cannot be made to delete a real backup.
    let forged =
        sentinel_storage::PendingUpload { key: "x".into(), upload_id: "plan/dump.zst".into(), initiated: None };
    common::assert_error(dest.abort_incomplete(&forged).await, |e| matches!(e, StorageError::Invalid { .. }), &[]);
}

#[tokio::test]
async fn a_dropped_upload_removes_its_temp_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dest = open(dir.path());
    let mut up = dest.upload("dropped.zst", 0).await.unwrap_or_else(|e| panic!("{e}"));
    up.put(Bytes::from_static(b"abc")).await.unwrap_or_else(|e| panic!("{e}"));
    drop(up);
    let gone = sentinel_testkit::eventually(std::time::Duration::from_secs(5), || async {
        files(dir.path()).is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "{:?}", files(dir.path()));
}

#[tokio::test]
async fn a_missing_directory_is_bucket_missing_and_never_created() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path().join("not-mounted");
    let dest = open(&root);
    let missing = |e: &StorageError| matches!(e, StorageError::BucketMissing(_));
    let msg = common::assert_error(dest.upload("k", 0).await, missing, &[]);
    assert!(msg.contains("not-mounted"), "{msg}");
    common::assert_error(dest.list("").await, missing, &[]);
    common::assert_error(dest.head("k").await, missing, &[]);
    common::assert_error(dest.probe().await, missing, &[]);
    assert!(!root.exists());
}

#[tokio::test]
async fn bad_paths_and_keys_are_invalid() {
    let invalid = |e: &StorageError| matches!(e, StorageError::Invalid { .. });
    let relative = Destination::open(&DestinationSpec::Local { path: "backups".into() });
    let msg = common::assert_error(relative, invalid, &[]);
    assert!(msg.contains("absolute"), "{msg}");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dest = open(dir.path());
    for key in ["../escape", "a/../../b", "/etc/passwd", "", "a/.hidden"] {
        common::assert_error(dest.upload(key, 0).await, invalid, &[]);
        common::assert_error(dest.head(key).await, invalid, &[]);
    }
    assert!(files(dir.path()).is_empty());
}
