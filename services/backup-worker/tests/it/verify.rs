//! Restore verification through the product: a plan that verifies every backup is backed up while
//! a writer commits about 1,000 writes a second into the source, and its verification (restore into
//! a scratch database, table-by-table comparison with the dump's snapshot) still matches exactly; a
//! tampered copy whose checksum was made to agree fails verification naming the table; bad policies
//! are 422s naming the field.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sentinel_testkit::procs::get_text;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::jobs::{Api, disk, fields, pg_target, product};
use crate::pipeline::{drop_pg, empty_pg, pg_source, pg_sql};

/// Writes into `db` from one `psql` session until `stop`: every 10 ms five inserts and five updates,
/// each its own transaction (about 1,000 commits a second). Returns how many it sent.
fn writer(db: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let client = ["psql", "-h", "127.0.0.1", "-U", "postgres", "--no-psqlrc", "--quiet", "-d", &db].map(String::from);
    writer_with(client.to_vec(), "SET synchronous_commit = off;", stop)
}

fn writer_with(client: Vec<String>, setup: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let setup = format!("{setup}\n");
    tokio::spawn(async move {
        let mut psql = tokio::process::Command::new(&client[0])
            .args(&client[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("psql");
        let mut stdin = psql.stdin.take().expect("stdin");
        stdin.write_all(setup.as_bytes()).await.expect("write");
        let sent = AtomicU64::new(0);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let mut batch = String::new();
            for _ in 0..5 {
                n += 1;
                batch.push_str(&format!("INSERT INTO items (name) VALUES ('written {n}');\n"));
                batch.push_str(&format!("UPDATE items SET name = CONCAT(name, '+') WHERE id = {};\n", 1 + n % 500));
            }
            stdin.write_all(batch.as_bytes()).await.expect("write");
            sent.fetch_add(10, Ordering::Relaxed);
        }
        stdin.write_all(b"\\q\n").await.ok();
        drop(stdin);
        let _ = psql.wait().await;
        sent.load(Ordering::Relaxed)
    })
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_owned()
}

async fn entry(api: &Api, id: &str) -> Value {
    let (status, e) = api.get(&format!("/api/v1/backups/journal/{id}")).await;
    assert_eq!(status, 200, "{e}");
    e
}

/// Makes the journal's checksum of a tampered copy agree, behind Sentinel's back, through its own store.
async fn agree_checksum(sentinel_dir: &std::path::Path, entry: &Value, old_sha: &str, new_sha: &str) {
    let journal_url = format!("sqlite://{}", sentinel_dir.join("data/sentinel.sqlite").display());
    let journal = sentinel_jobs::db::Database::connect(&journal_url, 1).await.expect("journal");
    let mut copies: Vec<sentinel_jobs::domain::backups::Copy> =
        serde_json::from_value(entry["copies"].clone()).expect("copies");
    for c in copies.iter_mut().filter(|c| c.stored_sha256.as_deref() == Some(old_sha)) {
        c.stored_sha256 = Some(new_sha.to_owned());
    }
    let id: uuid::Uuid = entry["id"].as_str().expect("id").parse().expect("uuid");
    journal.backups().set_journal_copies(id, &copies).await.expect("edited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_writes_verifies_and_a_tampered_one_names_its_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let source = pg_source(work.path(), 20_000).await;
    pg_sql(work.path(), &source, "CREATE SCHEMA audit; CREATE TABLE audit.\"Events\" (at timestamptz DEFAULT now(), x float8); INSERT INTO audit.\"Events\" (x) SELECT random() FROM generate_series(1, 500)").await;
    let other = empty_pg(work.path()).await;
    let (sentinel, api) = product(tmp.path()).await;
    let target = api.create("/api/v1/backups/targets", pg_target("app", &source, "postgres")).await;
    let local = disk(&api, &store).await;
    let plan_body = |extra: Value| {
        let mut body = json!({"name": "verified", "target_id": target, "destination_ids": [local], "compression": {"format": "none"}});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };

    // Bad policies name their field.
    let (status, bad) = api.post("/api/v1/backups/plans", plan_body(json!({"verify_every": 0}))).await;
    assert_eq!((status, fields(&bad)), (422, vec!["verify_every".to_owned()]), "{bad}");
    let nowhere = uuid::Uuid::now_v7();
    let (status, bad) = api.post("/api/v1/backups/plans", plan_body(json!({"verify_target_id": nowhere}))).await;
    assert_eq!((status, fields(&bad)), (422, vec!["verify_target_id".to_owned()]), "{bad}");
    let mongo = api
        .create(
            "/api/v1/backups/targets",
            json!({"name": "mongo", "engine": "mongodb", "host": "127.0.0.1", "user": "backup", "databases": ["app"]}),
        )
        .await;
    let (status, bad) =
        api.post("/api/v1/backups/plans", plan_body(json!({"target_id": mongo, "verify_every": 1}))).await;
    assert_eq!((status, fields(&bad)), (422, vec!["verify_every".to_owned()]), "{bad}");

    // A plan verifying every backup, taken while the writer runs.
    // (Its cron never fires, the plan being disabled: it is there for the RPO, which needs one.)
    let objectives =
        json!({"verify_every": 1, "cron": "0 * * * *", "rpo_minutes": 120, "rto_minutes": 30, "enabled": false});
    let (status, plan) = api.post("/api/v1/backups/plans", plan_body(objectives)).await;
    assert_eq!((status, plan["verify_every"].as_u64()), (201, Some(1)), "{plan}");
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(source.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backup = api.job(&format!("/api/v1/backups/plans/{plan_id}/run"), json!({})).await;
    assert_eq!(backup["state"], "succeeded", "{backup}");
    let verify_job = backup["result"]["verification_job"].as_str().expect("a verification is queued").to_owned();
    let verified = api.wait(&verify_job).await;
    stop.store(true, Ordering::Relaxed);
    let sent = writes.await.expect("writer");
    assert_eq!(verified["state"], "succeeded", "{verified}");
    let entry_id = backup["result"]["journal_id"].as_str().expect("journal id").to_owned();
    let done = entry(&api, &entry_id).await;
    assert_eq!((done["verification"].as_str(), done["verified"].as_bool()), (Some("verified"), Some(true)), "{done}");
    assert!(done["rto_seconds"].as_f64().is_some_and(|s| s > 0.0), "the restore time is measured: {done}");
    assert_eq!(done["tables_recorded"], 2, "items and audit.\"Events\": {done}");
    // The writes went on through the backup: the source moved past the snapshot that was verified.
    let rows_now: u64 = pg_sql(work.path(), &source, "SELECT count(*) FROM items").await.trim().parse().expect("count");
    let logs = api.get(&format!("/api/v1/jobs/{verify_job}/log?limit=1000")).await.1.to_string();
    assert!(rows_now > 20_000 && sent > 500, "{rows_now} rows, {sent} writes sent");
    assert!(logs.contains("restored in") && logs.contains("comparing 2 table(s)"), "{logs}");
    let scratch =
        pg_sql(work.path(), "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'sentinel_verify_%'")
            .await;
    assert_eq!(scratch.trim(), "0", "the scratch database is dropped");
    let (_, plan_now) = api.get(&format!("/api/v1/backups/plans/{plan_id}")).await;
    assert_eq!(plan_now["verify_every"], 1, "{plan_now}");
    // The measured RTO reaches /metrics, next to the objective, from the scheduler.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let measured = loop {
        let text = get_text(&sentinel.url("/metrics")).await;
        let line = text.lines().find(|l| {
            l.starts_with("sentinel_backup_measured_rto_seconds") && l.contains(&format!("plan=\"{plan_id}\""))
        });
        if let Some(v) = line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()) {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "no measured RTO on /metrics:\n{text}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!((measured - done["rto_seconds"].as_f64().expect("rto")).abs() < 1e-6, "{measured} vs {done}");

    // On a schedule: a `backup.verify` schedule naming the plan verifies its newest backup again.
    let schedule = api
        .create(
            "/api/v1/schedules",
            json!({"name": "verify nightly", "interval_secs": 2, "kind": "backup.verify", "payload": {"plan_id": plan_id}}),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let scheduled = loop {
        let (_, firings) = api.get(&format!("/api/v1/schedules/{schedule}/firings")).await;
        let job =
            firings["items"].as_array().and_then(|f| f.iter().find_map(|x| x["job_id"].as_str().map(str::to_owned)));
        if let Some(job) = job {
            break api.wait(&job).await;
        }
        assert!(std::time::Instant::now() < deadline, "the schedule never fired: {firings}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/api/v1/schedules/{schedule}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(scheduled["state"], "succeeded", "{scheduled}");
    assert_eq!(scheduled["result"]["entry_id"].as_str(), Some(entry_id.as_str()), "the newest backup: {scheduled}");
    let (status, bad) = api
        .post("/api/v1/jobs", json!({"kind": "backup.verify", "payload": {"plan_id": "x", "entry_id": entry_id}}))
        .await;
    assert_eq!((status, fields(&bad)), (422, vec!["payload".to_owned()]), "{bad}");

    // A tampered copy: one row deleted inside the artifact, its checksum made to agree.
    let copy = &done["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .find(|c| c["database"] == source.as_str())
        .cloned()
        .expect("copy");
    let artifact = store.join(copy["key"].as_str().expect("key"));
    let old_sha = sha256_of(&artifact);
    let restore = std::process::Command::new("pg_restore")
        .args(["-h", "127.0.0.1", "-U", "postgres", "--no-owner", "-d", &other])
        .arg(&artifact)
        .status()
        .expect("pg_restore");
    assert!(restore.success());
    pg_sql(work.path(), &other, "DELETE FROM items WHERE id = 7").await;
    let dumped = std::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-Fc", "-Z0", "-f"])
        .arg(&artifact)
        .arg(&other)
        .status()
        .expect("pg_dump");
    assert!(dumped.success());
    let new_sha = sha256_of(&artifact);
    agree_checksum(tmp.path(), &done, &old_sha, &new_sha).await;
    assert!(entry(&api, &entry_id).await["copies"].to_string().contains(&new_sha), "the checksum agrees now");
    let failed = api.job(&format!("/api/v1/backups/journal/{entry_id}/verify"), json!({})).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("table public.items: ") && error.contains("rows restored"), "one row fewer: {failed}");
    let after = entry(&api, &entry_id).await;
    assert_eq!(
        (after["verification"].as_str(), after["verified"].as_bool()),
        (Some("verification_failed"), Some(false)),
        "{after}"
    );
    assert!(after["verification_message"].as_str().unwrap_or("").contains("public.items"), "{after}");

    // A restore entry is not a backup; an unknown entry is not found.
    let (status, refused) =
        api.post(&format!("/api/v1/backups/journal/{}/verify", uuid::Uuid::now_v7()), json!({})).await;
    assert_eq!(status, 404, "{refused}");
    drop(sentinel);
    drop_pg(work.path(), &[&source, &other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_verifies_against_its_copy_and_a_tampered_one_names_its_table() {
    use sentinel_jobs::db::sqlite_files::query_texts;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let app = tmp.path().join("app.db");
    query_texts(
        &app,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL, raw BLOB);\n\
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO notes (body, score, raw) SELECT 'note ' || i, i / 7.0, randomblob(16) FROM n;\n\
         CREATE TABLE \"odd name\" (x);\nINSERT INTO \"odd name\" VALUES (NULL), (1), ('a');\n",
        true,
    )
    .await
    .expect("source");
    let (sentinel, api) = product(tmp.path()).await;
    let target = api.create("/api/v1/backups/targets", json!({"name": "lite", "engine": "sqlite", "path": app})).await;
    let local = disk(&api, &store).await;
    let plan = api
        .create(
            "/api/v1/backups/plans",
            json!({"name": "lite", "target_id": target, "destination_ids": [local], "compression": {"format": "none"}, "verify_every": 1}),
        )
        .await;
    let backup = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(backup["state"], "succeeded", "{backup}");
    let verified = api.wait(backup["result"]["verification_job"].as_str().expect("queued")).await;
    assert_eq!(verified["state"], "succeeded", "{verified}");
    let entry_id = backup["result"]["journal_id"].as_str().expect("id").to_owned();
    let done = entry(&api, &entry_id).await;
    assert_eq!(
        (done["verification"].as_str(), done["tables_recorded"].as_u64()),
        (Some("verified"), Some(2)),
        "{done}"
    );

    // One row deleted inside the stored copy (plain SQLite: compression none, no encryption).
    let copy = done["copies"].as_array().expect("copies")[0].clone();
    let artifact = store.join(copy["key"].as_str().expect("key"));
    let old_sha = sha256_of(&artifact);
    query_texts(&artifact, "DELETE FROM notes WHERE id = 1000", true).await.expect("tampered");
    let new_sha = sha256_of(&artifact);
    assert_ne!(old_sha, new_sha);
    agree_checksum(tmp.path(), &done, &old_sha, &new_sha).await;
    let failed = api.job(&format!("/api/v1/backups/journal/{entry_id}/verify"), json!({})).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("table notes: 1999 rows restored, 2000 in the snapshot"), "{failed}");
    drop(sentinel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_backup_taken_under_writes_verifies_and_a_tampered_one_names_its_table() {
    use crate::clouds::mariadb;
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let (source, other) = (format!("vfy_{suffix}"), format!("vfy_{suffix}_x"));
    mariadb(
        work.path(),
        &format!(
            "CREATE DATABASE {source}; CREATE DATABASE {other}; CREATE TABLE {source}.items (id int AUTO_INCREMENT PRIMARY KEY, \
             name varchar(200), n double, at datetime(6), raw varbinary(16)); INSERT INTO {source}.items (name, n, at, raw) \
             SELECT CONCAT('item ', seq), seq / 7, NOW(6) - INTERVAL seq SECOND, UNHEX(MD5(seq)) FROM {source}.seq_1_to_5000; \
             CREATE TABLE {source}.`odd name` (x text); INSERT INTO {source}.`odd name` VALUES (NULL), (''), ('a\\tb')"
        ),
    )
    .await;
    let (sentinel, api) = product(tmp.path()).await;
    let target = api
        .create(
            "/api/v1/backups/targets",
            json!({"name": "maria", "engine": "mariadb", "host": "127.0.0.1", "user": "root", "databases": [source]}),
        )
        .await;
    let local = disk(&api, &store).await;
    let plan = api
        .create(
            "/api/v1/backups/plans",
            json!({"name": "maria", "target_id": target, "destination_ids": [local], "compression": {"format": "none"}, "verify_every": 1}),
        )
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let client = ["mariadb", "-h", "127.0.0.1", "-u", "root", "--protocol=TCP", &source].map(String::from).to_vec();
    let writes = writer_with(client, "SET SESSION autocommit = 1;", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backup = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(backup["state"], "succeeded", "{backup}");
    let verified = api.wait(backup["result"]["verification_job"].as_str().expect("queued")).await;
    stop.store(true, Ordering::Relaxed);
    let sent = writes.await.expect("writer");
    assert_eq!(verified["state"], "succeeded", "{verified}");
    let entry_id = backup["result"]["journal_id"].as_str().expect("id").to_owned();
    let done = entry(&api, &entry_id).await;
    assert_eq!(
        (done["verification"].as_str(), done["tables_recorded"].as_u64()),
        (Some("verified"), Some(2)),
        "{done}"
    );
    let rows: u64 =
        mariadb(work.path(), &format!("SELECT COUNT(*) FROM {source}.items")).await.trim().parse().expect("n");
    assert!(rows > 5000 && sent > 500, "the writes went on: {rows} rows, {sent} sent");
    let left = mariadb(work.path(), "SHOW DATABASES LIKE 'sentinel\\_verify\\_%'").await;
    assert_eq!(left.trim(), "", "the scratch database is dropped");

    // A tampered copy: the dump restored elsewhere, one row deleted, dumped again in its place.
    let copy = done["copies"].as_array().expect("copies")[0].clone();
    let artifact = store.join(copy["key"].as_str().expect("key"));
    let old_sha = sha256_of(&artifact);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mariadb -h 127.0.0.1 -u root --protocol=TCP {other} < '{0}' && mariadb -h 127.0.0.1 -u root --protocol=TCP \
             -e 'DELETE FROM items WHERE id = 7' {other} && mariadb-dump -h 127.0.0.1 -u root --protocol=TCP {other} > '{0}'",
            artifact.display()
        ))
        .status()
        .expect("sh");
    assert!(status.success());
    let new_sha = sha256_of(&artifact);
    agree_checksum(tmp.path(), &done, &old_sha, &new_sha).await;
    let failed = api.job(&format!("/api/v1/backups/journal/{entry_id}/verify"), json!({})).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("table items: ") && error.contains("rows restored"), "{failed}");
    drop(sentinel);
    mariadb(work.path(), &format!("DROP DATABASE {source}; DROP DATABASE {other}")).await;
}
