//! The janitor through `sentinel up`: what a killed worker leaves on the S3 emulator when its job
//! never runs again — an incomplete multipart upload and a finished object under a journal entry
//! that does not exist — is removed by the built-in sweep, while a succeeded backup's artifacts (even
//! seen through a second destination on the same bucket and prefix) and files outside `plans/` stay.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sentinel_testkit::emulators;
use sentinel_testkit::procs::wait_ready;
use serde_json::json;
use uuid::Uuid;

use crate::jobs::{Journal, moto_destination, pg_target, up_with};
use crate::pipeline::{drop_pg, pg_source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_removes_what_dead_attempts_left_and_nothing_else() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let source = pg_source(work.path(), 200).await;
    let moto = emulators::moto().await;
    let bucket = moto.create_bucket().await;
    let port = sentinel_testkit::free_port();
    // First without the janitor, so the leftovers are seen in place before any sweep.
    let mut sentinel = up_with(tmp.path(), port, &[("SENTINEL_SCHEDULER__BACKUP_JANITOR_INTERVAL_SECS", "0")]);
    let api = sentinel_testkit::product::ready(&mut sentinel, tmp.path()).await;
    let target = api.create("/api/v1/backups/targets", pg_target("app", &source, "postgres")).await;
    let (body, s3) = moto_destination(moto, &bucket, "janitor");
    let dest = api.create("/api/v1/backups/destinations", body.clone()).await;
    // A second destination on the same bucket and prefix (an operator's duplicate): sweeping it must
    // not take the first one's backups for strays.
    let mut twin = body;
    twin["name"] = json!("s3-janitor-twin");
    api.create("/api/v1/backups/destinations", twin).await;
    let plan = api
        .create("/api/v1/backups/plans", json!({"name": "app", "target_id": target, "destination_ids": [dest]}))
        .await;
    let run = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let entry = api.journal(&format!("plan_id={plan}")).await.remove(0);
    let mut kept: Vec<String> = entry["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .map(|c| c["key"].as_str().expect("key").to_owned())
        .collect();

    // What a killed worker of an abandoned job leaves: a multipart upload with a part in, never
    // completed, and a finished object, both under an entry the journal does not have.
    let dead_entry = Uuid::now_v7();
    let half = format!("plans/{plan}/{dead_entry}/app.dump.zst");
    let mut upload = s3.upload(&half, 5 << 20).await.expect("upload");
    upload.put(Bytes::from(vec![7u8; 6 << 20])).await.expect("a part");
    std::mem::forget(upload); // the process died: nobody completes or aborts it
    let stray = format!("plans/{plan}/{dead_entry}/globals.sql.zst");
    let mut upload = s3.upload(&stray, 5 << 20).await.expect("upload");
    upload.put(Bytes::from_static(b"left behind")).await.expect("put");
    upload.complete().await.expect("complete");
    let outside = "uploads/by-hand.dump".to_owned();
    let mut upload = s3.upload(&outside, 5 << 20).await.expect("upload");
    upload.put(Bytes::from_static(b"an operator's file")).await.expect("put");
    upload.complete().await.expect("complete");
    assert!(s3.incomplete_uploads().await.expect("list").iter().any(|p| p.key == half), "the dead upload is there");

    // Then with the sweep every 2 s and no grace: only ownership protects an object.
    drop(sentinel);
    let mut sentinel = up_with(
        tmp.path(),
        port,
        &[("SENTINEL_SCHEDULER__BACKUP_JANITOR_INTERVAL_SECS", "2"), ("SENTINEL_BACKUP__JANITOR_GRACE_MINUTES", "0")],
    );
    wait_ready(&mut sentinel, "/ready", Duration::from_secs(30)).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = s3.incomplete_uploads().await.expect("list uploads");
        let stray_left = s3.head(&stray).await.expect("head").is_some();
        if pending.is_empty() && !stray_left {
            break;
        }
        assert!(Instant::now() < deadline, "the janitor did not clean up: {pending:?}, stray left: {stray_left}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    kept.push(outside);
    for key in &kept {
        assert!(s3.head(key).await.expect("head").is_some(), "{key} must stay");
    }
    // (The janitor's jobs are system work, outside every organization's job list; its effects are
    // what an operator sees.)
    drop_pg(work.path(), &[&source]).await;
}
