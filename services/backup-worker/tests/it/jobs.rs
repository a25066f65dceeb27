//! Backups through the whole product, as an operator drives them: `sentinel up` (embedded: SQLite,
//! the in-process bus, every worker in one process), the REST API, a real PostgreSQL, the local disk
//! and the S3 emulator. Targets, destinations and plans are created and tested; a plan runs now and
//! its journal says where both copies went; a restore into an empty database matches the source; a
//! corrupted copy is refused before the target is touched; retention prunes by start time; bad
//! input is a 4xx or a failed job naming the cause; deleting a plan asks what becomes of its backups.

use std::path::Path;

use sentinel_testkit::procs::{Proc, client};
use serde_json::{Value, json};

use crate::pipeline::{PG_FINGERPRINT, drop_pg, empty_pg, pg_source, pg_sql, pg_sql_at};

pub(crate) use sentinel_testkit::product::Api;

/// The backup journal's page for `query`, as the API lists it.
pub(crate) trait Journal {
    async fn journal(&self, query: &str) -> Vec<Value>;
}

impl Journal for Api {
    async fn journal(&self, query: &str) -> Vec<Value> {
        let (status, page) = self.get(&format!("/api/v1/backups/journal?{query}")).await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().expect("items").clone()
    }
}

pub(crate) fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `sentinel up` in `tmp` on a free port, ready, with its API (the generated token).
pub(crate) async fn product(tmp: &Path) -> (Proc, Api) {
    let mut sentinel = up(tmp, sentinel_testkit::free_port());
    let api = sentinel_testkit::product::ready(&mut sentinel, tmp).await;
    (sentinel, api)
}

/// A local-disk destination at `dir`, created through the API.
pub(crate) async fn disk(api: &Api, dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("store");
    api.create("/api/v1/backups/destinations", json!({"name": "disk", "config": {"kind": "local", "path": dir}})).await
}

pub(crate) fn up(tmp: &Path, port: u16) -> Proc {
    up_with(tmp, port, &[])
}

/// `sentinel up` with 5 MiB upload parts and `extra` in its environment.
pub(crate) fn up_with(tmp: &Path, port: u16, extra: &[(&str, &str)]) -> Proc {
    let env: Vec<(&str, &str)> =
        [("SENTINEL_WORKER__SHUTDOWN_GRACE_MS", "300"), ("SENTINEL_BACKUP__PART_SIZE_MIB", "5")]
            .iter()
            .chain(extra)
            .copied()
            .collect();
    sentinel_testkit::product::up(tmp, port, &env)
}

/// A destination on the S3 emulator under `prefix`: the API's body for it, and the same place
/// opened directly (to look at what is there, or to leave things behind as a dead worker would).
pub(crate) fn moto_destination(
    moto: &sentinel_testkit::emulators::Moto,
    bucket: &str,
    prefix: &str,
) -> (Value, sentinel_storage::Destination) {
    use sentinel_testkit::emulators::MOTO_REGION;
    let body = json!({
        "name": format!("s3-{prefix}"),
        "config": {"kind": "s3", "bucket": bucket, "region": MOTO_REGION, "endpoint": moto.endpoint, "prefix": prefix, "force_path_style": true},
        "credentials": {"access_key_id": moto.access_key_id, "secret_access_key": moto.secret_access_key},
    });
    let direct = sentinel_storage::Destination::open(&sentinel_storage::DestinationSpec::S3 {
        bucket: bucket.to_owned(),
        region: MOTO_REGION.into(),
        endpoint: Some(moto.endpoint.clone()),
        prefix: prefix.into(),
        access_key_id: moto.access_key_id.clone(),
        secret_access_key: secrecy::SecretString::from(moto.secret_access_key.clone()),
        force_path_style: true,
    })
    .expect("s3");
    (body, direct)
}

pub(crate) fn pg_target(name: &str, db: &str, password: &str) -> Value {
    json!({"name": name, "engine": "postgres", "host": "127.0.0.1", "user": "postgres", "password": password, "databases": [db]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_back_up_restore_prune_and_refuse_bad_input_through_the_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).expect("store");
    let source = pg_source(work.path(), 3000).await;
    // A role the cluster may lack elsewhere, granted on the data: the backup takes it with the globals.
    let role = format!("sentinel_it_reader_{}", &source[source.len() - 8..]);
    pg_sql(work.path(), &source, &format!("CREATE ROLE {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        .await;
    let scratch = empty_pg(work.path()).await;
    let untouched = empty_pg(work.path()).await;
    let port = sentinel_testkit::free_port();
    let mut sentinel = up(tmp.path(), port);
    let api = sentinel_testkit::product::ready(&mut sentinel, tmp.path()).await;

    // Targets: the password is sealed and never shown; a test connects and reports versions.
    let (status, target) = api.post("/api/v1/backups/targets", pg_target("app", &source, "postgres")).await;
    assert_eq!(status, 201, "{target}");
    assert_eq!(target["has_password"], true);
    assert!(target.get("password").is_none(), "{target}");
    let target_id = target["id"].as_str().expect("id").to_owned();
    let tested = api.job(&format!("/api/v1/backups/targets/{target_id}/test"), json!({})).await;
    assert_eq!(tested["state"], "succeeded", "{tested}");
    assert!(tested["result"]["tool_version"].as_str().unwrap_or("").contains("pg_dump"), "{tested}");
    assert!(!tested["result"]["server_version"].as_str().unwrap_or("").is_empty(), "{tested}");
    // (The machine's PostgreSQL trusts loopback; MariaDB's root has no password, so any is wrong.)
    let wrong = api
        .create(
            "/api/v1/backups/targets",
            json!({"name": "wrong", "engine": "mariadb", "host": "127.0.0.1", "user": "root", "password": "not-the-password", "databases": ["mysql"]}),
        )
        .await;
    let refused = api.job(&format!("/api/v1/backups/targets/{wrong}/test"), json!({})).await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(refused["error"].as_str().unwrap_or("").contains("Access denied"), "{refused}");

    // Destinations: local disk and S3; each test writes, reads back and deletes a probe.
    let local = api
        .create("/api/v1/backups/destinations", json!({"name": "disk", "config": {"kind": "local", "path": store}}))
        .await;
    let moto = sentinel_testkit::emulators::moto().await;
    let bucket = moto.create_bucket().await;
    let s3 = |bucket: &str| {
        json!({
            "name": format!("s3-{bucket}"),
            "config": {"kind": "s3", "bucket": bucket, "region": sentinel_testkit::emulators::MOTO_REGION, "endpoint": moto.endpoint, "prefix": "sentinel", "force_path_style": true},
            "credentials": {"access_key_id": moto.access_key_id, "secret_access_key": moto.secret_access_key},
        })
    };
    let (status, s3_view) = api.post("/api/v1/backups/destinations", s3(&bucket)).await;
    assert_eq!(status, 201, "{s3_view}");
    assert_eq!(s3_view["has_credentials"], true);
    assert!(!s3_view.to_string().contains(&moto.secret_access_key), "{s3_view}");
    let s3_id = s3_view["id"].as_str().expect("id").to_owned();
    for dest in [&local, &s3_id] {
        let probe = api.job(&format!("/api/v1/backups/destinations/{dest}/test"), json!({})).await;
        assert_eq!(probe["state"], "succeeded", "{probe}");
    }
    let missing = api.create("/api/v1/backups/destinations", s3("no-such-bucket-here")).await;
    let probe = api.job(&format!("/api/v1/backups/destinations/{missing}/test"), json!({})).await;
    assert_eq!(probe["state"], "failed", "{probe}");
    assert!(probe["error"].as_str().unwrap_or("").contains("no-such-bucket-here"), "the bucket is named: {probe}");

    // Bad input: each a 422 naming the field.
    let (status, bad) = api.post("/api/v1/backups/targets", json!({"name": "x", "engine": "oracle"})).await;
    assert_eq!((status, fields(&bad)), (422, vec!["engine".to_owned()]), "{bad}");
    let whole = json!({"name": "lite", "engine": "sqlite", "path": "/var/lib/app.db", "include": ["users"]});
    let (status, bad) = api.post("/api/v1/backups/targets", whole).await;
    assert_eq!((status, fields(&bad)), (422, vec!["include".to_owned()]), "{bad}");
    let plan_body = |extra: Value| {
        let mut body = json!({"name": "nightly", "target_id": target_id, "destination_ids": [local, s3_id], "encryption": {"mode": "age"}, "retention": {"keep_last": 2}, "cron": "0 3 * * *", "timezone": "Europe/Paris", "rpo_minutes": 1500, "rto_minutes": 60});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let (status, bad) = api.post("/api/v1/backups/plans", plan_body(json!({"cron": "not a cron"}))).await;
    assert_eq!(status, 422, "{bad}");
    assert!(fields(&bad).contains(&"cron".to_owned()), "{bad}");
    // A cron that waits longer than the RPO between two backups cannot meet it. (The daily one meets
    // 25 h, not 24: the night the clocks go back, 03:00 to 03:00 is 25 hours.)
    let (status, bad) = api.post("/api/v1/backups/plans", plan_body(json!({"cron": "0 3 * * 1-5"}))).await;
    assert_eq!((status, fields(&bad)), (422, vec!["rpo_minutes".to_owned()]), "{bad}");
    assert!(bad.to_string().contains("longer than the RPO of 25 h"), "the longest wait is named: {bad}");
    let (status, bad) = api.post("/api/v1/backups/plans", plan_body(json!({"rpo_minutes": 1440}))).await;
    assert_eq!((status, fields(&bad)), (422, vec!["rpo_minutes".to_owned()]), "24 h fails on that night: {bad}");
    let (status, bad) = api.post("/api/v1/backups/plans", plan_body(json!({"type": "incremental"}))).await;
    assert_eq!((status, fields(&bad)), (422, vec!["type".to_owned()]), "{bad}");
    assert!(bad.to_string().contains("pg_basebackup"), "the reason says why: {bad}");

    // A plan with two destinations, age-encrypted, fired by an owned schedule; run now.
    let (status, plan) = api.post("/api/v1/backups/plans", plan_body(json!({}))).await;
    assert_eq!(status, 201, "{plan}");
    assert!(plan["schedule_id"].is_string() && plan["next_run_at"].is_string(), "{plan}");
    assert!(plan["encryption"]["recipient"].as_str().unwrap_or("").starts_with("age1"), "{plan}");
    assert_eq!((plan["rpo_minutes"].as_u64(), plan["rto_minutes"].as_u64()), (Some(1500), Some(60)), "{plan}");
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    let first = api.job(&format!("/api/v1/backups/plans/{plan_id}/run"), json!({})).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    let entries = api.journal(&format!("plan_id={plan_id}")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["status"], "succeeded", "{entry}");
    assert_eq!(entry["encryption"], "age");
    assert!(entry["tool_version"].as_str().unwrap_or("").contains("pg_dump"), "{entry}");
    let all_copies = entry["copies"].as_array().expect("copies");
    assert_eq!(all_copies.len(), 4, "the database and the server's globals, on two destinations each: {entry}");
    let globals: Vec<&Value> = all_copies.iter().filter(|c| c["database"] == "@globals").collect();
    assert_eq!(globals.len(), 2, "{entry}");
    assert!(
        globals
            .iter()
            .all(|c| c["state"] == "stored" && c["key"].as_str().unwrap_or("").ends_with("/globals.sql.zst.age"))
    );
    let copies: Vec<&Value> = all_copies.iter().filter(|c| c["database"] == source.as_str()).collect();
    assert_eq!(copies.len(), 2, "{entry}");
    assert!(copies.iter().all(|c| c["state"] == "stored" && c["stored_sha256"] == entry["stored_sha256"]), "{entry}");
    let key = copies[0]["key"].as_str().expect("key").to_owned();
    let artifact = store.join(&key);
    assert!(artifact.is_file(), "{artifact:?}");
    let bytes = std::fs::read(&artifact).expect("artifact");
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "stored encrypted");
    assert_eq!(bytes.len() as u64, copies[0]["stored_bytes"].as_u64().expect("bytes"));
    let total = bytes.len() as u64 + globals[0]["stored_bytes"].as_u64().expect("globals bytes");
    assert_eq!(entry["stored_bytes"].as_u64(), Some(total), "the entry counts every artifact once: {entry}");

    // Restore the entry (from the S3 copy) into an empty database: the content matches exactly.
    let scratch_target = api.create("/api/v1/backups/targets", pg_target("scratch", &scratch, "postgres")).await;
    let restored = api
        .job(
            "/api/v1/backups/restores",
            json!({"journal_id": entry["id"], "destination_id": s3_id, "target_id": scratch_target}),
        )
        .await;
    assert_eq!(restored["state"], "succeeded", "{restored}");
    assert_eq!(pg_sql(work.path(), &scratch, PG_FINGERPRINT).await, pg_sql(work.path(), &source, PG_FINGERPRINT).await);
    let restores = api.journal("kind=restore&status=succeeded").await;
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert_eq!(restores[0]["plain_sha256"], entry["plain_sha256"], "the restore read exactly what was backed up");

    // One corrupted byte in the local copy: refused before the target is touched.
    let mut corrupted = bytes.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x01;
    std::fs::write(&artifact, &corrupted).expect("corrupt");
    let untouched_target = api.create("/api/v1/backups/targets", pg_target("untouched", &untouched, "postgres")).await;
    let refused = api
        .job(
            "/api/v1/backups/restores",
            json!({"journal_id": entry["id"], "destination_id": local, "target_id": untouched_target}),
        )
        .await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(refused["error"].as_str().unwrap_or("").contains("does not match"), "{refused}");
    let tables =
        pg_sql(work.path(), &untouched, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .await;
    assert_eq!(tables.trim(), "0", "the target was not touched");
    std::fs::write(&artifact, &bytes).expect("repair");

    // A dump made by hand (pg_dump's custom format, as is), uploaded through the API and restored.
    let by_hand = std::process::Command::new("pg_dump")
        .args(["-Fc", "-h", "127.0.0.1", "-U", "postgres", &source])
        .env("PGPASSWORD", "postgres")
        .output()
        .expect("pg_dump");
    assert!(by_hand.status.success(), "{}", String::from_utf8_lossy(&by_hand.stderr));
    let r = client()
        .post(format!("{}/api/v1/backups/uploads?destination_id={s3_id}&name=by-hand.dump", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/octet-stream")
        .body(by_hand.stdout.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 201);
    let uploaded: Value = r.json().await.expect("json");
    assert_eq!(uploaded["bytes"].as_u64(), Some(by_hand.stdout.len() as u64), "{uploaded}");
    let handmade = empty_pg(work.path()).await;
    let handmade_target = api.create("/api/v1/backups/targets", pg_target("handmade", &handmade, "postgres")).await;
    let restored = api
        .job(
            "/api/v1/backups/restores",
            json!({"destination_id": s3_id, "key": uploaded["key"], "sha256": uploaded["sha256"], "target_id": handmade_target}),
        )
        .await;
    assert_eq!(restored["state"], "succeeded", "{restored}");
    assert_eq!(
        pg_sql(work.path(), &handmade, PG_FINGERPRINT).await,
        pg_sql(work.path(), &source, PG_FINGERPRINT).await
    );

    // A new cluster (initdb'd by the test) lacks the role: the restore fails on its GRANT, unless the
    // backup's globals are applied first (missing roles created, existing ones left).
    let cluster = tokio::task::spawn_blocking(sentinel_testkit::PostgresServer::start)
        .await
        .expect("join")
        .expect("a private PostgreSQL cluster");
    let mut fresh = pg_target("fresh", "postgres", "postgres");
    fresh["port"] = json!(cluster.port);
    let fresh_target = api.create("/api/v1/backups/targets", fresh).await;
    let restore = |with_globals: bool| json!({"journal_id": entry["id"], "destination_id": local, "target_id": fresh_target, "with_globals": with_globals});
    let without = api.job("/api/v1/backups/restores", restore(false)).await;
    assert_eq!(without["state"], "failed", "{without}");
    assert!(without["error"].as_str().unwrap_or("").contains(&format!("role \"{role}\" does not exist")), "{without}");
    let with = api.job("/api/v1/backups/restores", restore(true)).await;
    assert_eq!(with["state"], "succeeded", "{with}");
    let fresh_sql = |sql: String| {
        let work = work.path().to_owned();
        async move { pg_sql_at(&work, cluster.port, "postgres", &sql).await }
    };
    assert_eq!(fresh_sql(PG_FINGERPRINT.to_owned()).await, pg_sql(work.path(), &source, PG_FINGERPRINT).await);
    let granted = format!("SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = '{role}'");
    assert_ne!(fresh_sql(granted).await.trim(), "0", "the grants to the re-created role are back");
    let (status, bad) = api
        .post(
            "/api/v1/backups/restores",
            json!({"destination_id": local, "key": key, "target_id": fresh_target, "with_globals": true}),
        )
        .await;
    assert_eq!((status, fields(&bad)), (422, vec!["with_globals".to_owned()]), "{bad}");

    // Two more runs (overrides: gzip, then no compression): keep_last 2 prunes the first, by start time.
    for compression in [json!({"format": "gzip"}), json!({"format": "none"})] {
        let run = api.job(&format!("/api/v1/backups/plans/{plan_id}/run"), json!({"compression": compression})).await;
        assert_eq!(run["state"], "succeeded", "{run}");
    }
    let entries = api.journal(&format!("plan_id={plan_id}")).await;
    let statuses: Vec<&str> = entries.iter().map(|e| e["status"].as_str().unwrap_or("")).collect();
    assert_eq!(statuses, ["succeeded", "succeeded", "pruned"], "newest first: {entries:?}");
    assert_eq!(entries[0]["compression"], "none");
    assert_eq!(entries[1]["compression"], "gzip");
    assert!(!artifact.exists(), "the pruned backup's artifact is deleted");
    let (status, preview) = api.post(&format!("/api/v1/backups/plans/{plan_id}/prune?dry_run=true"), json!({})).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["would_prune"], json!([]), "{preview}");

    // An unreachable database: the job fails naming the cause; the journal never says success.
    let port_nobody = sentinel_testkit::free_port();
    let mut dead = pg_target("dead", &source, "postgres");
    dead["port"] = json!(port_nobody);
    let dead_id = api.create("/api/v1/backups/targets", dead).await;
    let dead_plan = api
        .create("/api/v1/backups/plans", json!({"name": "dead", "target_id": dead_id, "destination_ids": [local]}))
        .await;
    let failed = api.job(&format!("/api/v1/backups/plans/{dead_plan}/run"), json!({})).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap_or("").contains("cannot reach the database"), "{failed}");
    let dead_entries = api.journal(&format!("plan_id={dead_plan}")).await;
    assert!(!dead_entries.is_empty() && dead_entries.iter().all(|e| e["status"] == "failed"), "{dead_entries:?}");
    // The failure is an alert (paged like any other): one, on the plan, however many attempts failed.
    let (_, alerts) = api.get("/api/v1/monitoring/alerts?state=firing").await;
    let on_plan: Vec<&Value> =
        alerts["items"].as_array().expect("alerts").iter().filter(|a| a["source_id"] == json!(dead_plan)).collect();
    assert_eq!(on_plan.len(), 1, "{alerts}");
    assert_eq!(
        (on_plan[0]["rule"].clone(), on_plan[0]["source_kind"].clone()),
        (json!("backup_failed"), json!("backup"))
    );

    // The figures per plan on /metrics: the last success, its duration and sizes; failures by reason.
    let exposition = sentinel_testkit::procs::get_text(&sentinel.url("/metrics")).await;
    let line = |name: &str, needle: &str| {
        exposition.lines().find(|l| l.starts_with(name) && l.contains(needle)).map(str::to_owned)
    };
    let plan_label = format!("plan=\"{plan_id}\"");
    let success = line("sentinel_backup_last_success_timestamp_seconds", &plan_label).expect("last success");
    let at: f64 = success.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a timestamp");
    assert!((at - chrono::Utc::now().timestamp() as f64).abs() < 600.0, "{success}");
    for form in ["plain", "stored"] {
        let found = exposition.lines().any(|l| {
            l.starts_with("sentinel_backup_last_size_bytes")
                && l.contains(&plan_label)
                && l.contains(&format!("form=\"{form}\""))
        });
        assert!(found, "{form} size of the plan: {exposition}");
    }
    assert!(line("sentinel_backup_last_duration_seconds", &plan_label).is_some(), "{exposition}");
    let failures = line("sentinel_backup_failures_total", &format!("plan=\"{dead_plan}\"")).expect("failures");
    assert!(failures.contains("reason=\"database_unreachable\"") && failures.ends_with(" 1"), "{failures}");

    // Deleting a plan asks what happens to its backups.
    let (status, ask) = api.send(reqwest::Method::DELETE, &format!("/api/v1/backups/plans/{plan_id}"), None).await;
    assert_eq!((status, fields(&ask)), (422, vec!["backups".to_owned()]), "{ask}");
    let (status, job) =
        api.send(reqwest::Method::DELETE, &format!("/api/v1/backups/plans/{plan_id}?backups=delete"), None).await;
    assert_eq!(status, 202, "{job}");
    let job = api.wait(job["id"].as_str().expect("job")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let entries = api.journal(&format!("plan_id={plan_id}&status=succeeded")).await;
    assert!(entries.is_empty(), "every backup of the deleted plan is pruned: {entries:?}");
    let (status, _) = api.get(&format!("/api/v1/backups/plans/{plan_id}")).await;
    assert_eq!(status, 404);
    drop_pg(work.path(), &[&source, &scratch, &untouched, &handmade]).await;
    // The databases that held grants to the role are gone: the role can go too.
    pg_sql(work.path(), "postgres", &format!("DROP ROLE IF EXISTS {role}")).await;
}
