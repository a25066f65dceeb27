//! A worker that dies mid-backup (the process aborts while the multipart upload to the S3 emulator
//! is under way, as a SIGKILL or a power cut would): after the restart the job is retried and
//! succeeds, the dead attempt's journal row says `interrupted`, and no upload part is left behind.

use std::time::Duration;

use sentinel_testkit::emulators;
use sentinel_testkit::procs::wait_ready;
use serde_json::{Value, json};

use crate::jobs::{Journal, moto_destination, pg_target, up, up_with};
use crate::pipeline::{drop_pg, empty_pg, pg_sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_backup_is_retried_and_leaves_no_orphan_upload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    // ~32 MiB of random text: a dump that outlasts the first upload parts.
    let source = empty_pg(work.path()).await;
    pg_sql(
        work.path(),
        &source,
        "CREATE TABLE blobs AS SELECT g AS id, (SELECT string_agg(gen_random_uuid()::text, '') FROM generate_series(1, 30) WHERE g > 0) AS body FROM generate_series(1, 30000) g",
    )
    .await;
    let moto = emulators::moto().await;
    let bucket = moto.create_bucket().await;
    let port = sentinel_testkit::free_port();
    let mut sentinel = up_with(
        tmp.path(),
        port,
        &[("SENTINEL_WORKER__FAULT_INJECTION", "true"), ("SENTINEL_FAILPOINT", "backup-mid-upload")],
    );
    let api = sentinel_testkit::product::ready(&mut sentinel, tmp.path()).await;
    let target = api.create("/api/v1/backups/targets", pg_target("big", &source, "postgres")).await;
    let (body, s3) = moto_destination(moto, &bucket, "crash");
    let dest = api.create("/api/v1/backups/destinations", body).await;
    let plan = api
        .create(
            "/api/v1/backups/plans",
            json!({"name": "big", "target_id": target, "destination_ids": [dest], "compression": {"format": "zstd", "level": 1}}),
        )
        .await;
    let (status, job) = api.post(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("job").to_owned();
    let died = sentinel.wait_exit(Duration::from_secs(120));
    assert!(died.is_some(), "the failpoint stops the process mid-upload:\n{}", sentinel.output());

    // Back up without the failpoint: the job's next attempt runs and succeeds.
    let mut sentinel = up(tmp.path(), port);
    wait_ready(&mut sentinel, "/ready", Duration::from_secs(30)).await;
    let job = api.wait(&job_id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let entries = api.journal(&format!("plan_id={plan}")).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    // A crash is not the handler's failure: the spine runs the same attempt again under a new lease.
    assert!(entries.iter().all(|e| e["job_id"] == job_id.as_str()), "one job, run twice: {entries:?}");
    assert_eq!(entries[0]["status"], "succeeded", "{entries:?}");
    assert_eq!(entries[1]["status"], "interrupted", "{entries:?}");
    assert!(entries[1]["message"].as_str().unwrap_or("").contains("interrupted"), "{entries:?}");
    let copy_of = |entry: &Value, database: &str| {
        entry["copies"].as_array().and_then(|c| c.iter().find(|c| c["database"] == database).cloned())
    };
    let dead = copy_of(&entries[1], &source).expect("the dead attempt's database copy");
    assert_eq!(dead["state"], "aborted", "{entries:?}");
    let dead_globals = copy_of(&entries[1], "@globals").expect("the dead attempt's globals");
    assert_eq!(dead_globals["state"], "deleted", "what the dead attempt stored is removed: {entries:?}");

    // The bucket holds the one good backup and no unfinished multipart upload.
    let pending = s3.incomplete_uploads().await.expect("list uploads");
    assert!(pending.is_empty(), "orphan upload parts: {pending:?}");
    let mut objects: Vec<String> = s3.list("plans/").await.expect("list").into_iter().map(|o| o.key).collect();
    objects.sort();
    let mut good: Vec<String> = ["@globals", source.as_str()]
        .iter()
        .map(|d| copy_of(&entries[0], d).and_then(|c| c["key"].as_str().map(str::to_owned)).expect("key"))
        .collect();
    good.sort();
    assert_eq!(objects, good, "only the good backup's two artifacts remain");
    drop_pg(work.path(), &[&source]).await;
}
