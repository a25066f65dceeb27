//! The other engines, storages and formats through the job path: a live SQLite file
//! (passphrase-encrypted, zstd) and a MariaDB database (gzip, then zip, then tar.gz; unencrypted),
//! each backed up to Azure Blob (Azurite) and Google Cloud Storage (fake-gcs-server) at once,
//! restored from one copy each into another target and compared exactly.

use std::path::Path;
use std::time::Duration;

use backup_worker::engines::{self, Connection, Tools};
use sentinel_jobs::db::sqlite_files;
use sentinel_jobs::domain::backups::Engine;
use sentinel_testkit::emulators::{self, AZURITE_ACCOUNT, AZURITE_KEY};
use serde_json::{Value, json};

use crate::jobs::{Journal, up};

const SQLITE_FINGERPRINT: &str = "SELECT (SELECT count(*) FROM items) || ' ' || (SELECT group_concat(id || ':' || name || ':' || hex(body), ',') FROM (SELECT * FROM items ORDER BY id)) || ' ' || (SELECT count(*) FROM cheap)";

async fn sqlite(path: &Path, sql: &str) -> Vec<String> {
    sqlite_files::query_texts(path, sql, true).await.expect(sql)
}

pub(crate) async fn mariadb(work: &Path, sql: &str) -> String {
    let admin = Connection::new(Engine::Mariadb, "127.0.0.1", "root", None, "mysql");
    let mut inv = engines::server_version(&admin, &Tools { dir: None }, work).expect("mariadb client");
    inv.args.pop();
    inv.args.push(sql.into());
    engines::capture(&inv, Duration::from_secs(30)).await.expect(sql)
}

fn copies_stored(entry: &Value) -> usize {
    entry["copies"].as_array().map(|c| c.iter().filter(|c| c["state"] == "stored").count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_mariadb_round_trip_through_azure_and_gcs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let port = sentinel_testkit::free_port();
    let mut sentinel = up(tmp.path(), port);
    let api = sentinel_testkit::product::ready(&mut sentinel, tmp.path()).await;

    let azurite = emulators::azurite().await;
    let container = azurite.create_container().await;
    let azure = api
        .create(
            "/api/v1/backups/destinations",
            json!({"name": "azure", "config": {"kind": "azure", "account": AZURITE_ACCOUNT, "container": container, "endpoint": azurite.endpoint, "prefix": "sentinel"}, "credentials": {"access_key": AZURITE_KEY}}),
        )
        .await;
    let gcs_server = emulators::fake_gcs().await;
    let bucket = gcs_server.create_bucket().await;
    let gcs = api
        .create(
            "/api/v1/backups/destinations",
            json!({"name": "gcs", "config": {"kind": "gcs", "bucket": bucket, "endpoint": gcs_server.endpoint, "prefix": "sentinel"}}),
        )
        .await;
    for dest in [&azure, &gcs] {
        let probe = api.job(&format!("/api/v1/backups/destinations/{dest}/test"), json!({})).await;
        assert_eq!(probe["state"], "succeeded", "{probe}");
    }

    // SQLite: a live WAL database, passphrase-encrypted, restored over another file from GCS.
    let source = tmp.path().join("app.db");
    sqlite(
        &source,
        "PRAGMA journal_mode=WAL;\nCREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB);\nCREATE INDEX items_name ON items (name);\nWITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO items SELECT i, 'item ' || i, randomblob(24) FROM n;\nCREATE VIEW cheap AS SELECT id FROM items WHERE id < 100",
    )
    .await;
    let restored_file = tmp.path().join("restored.db");
    sqlite(&restored_file, "CREATE TABLE other (x)").await;
    let lite = api.create("/api/v1/backups/targets", json!({"name": "lite", "engine": "sqlite", "path": source})).await;
    let lite_copy = api
        .create("/api/v1/backups/targets", json!({"name": "lite-copy", "engine": "sqlite", "path": restored_file}))
        .await;
    let tested = api.job(&format!("/api/v1/backups/targets/{lite}/test"), json!({})).await;
    assert_eq!(tested["state"], "succeeded", "{tested}");
    let plan = api
        .create(
            "/api/v1/backups/plans",
            json!({"name": "lite", "target_id": lite, "destination_ids": [azure, gcs], "compression": {"format": "zstd", "level": 5}, "encryption": {"mode": "passphrase", "passphrase": "correct horse battery staple"}}),
        )
        .await;
    let run = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let entry = api.journal(&format!("plan_id={plan}")).await.remove(0);
    assert_eq!((entry["status"].as_str(), copies_stored(&entry)), (Some("succeeded"), 2), "{entry}");
    assert_eq!(entry["encryption"], "passphrase");
    assert!(entry["copies"][0]["location"].as_str().unwrap_or("").starts_with("azure://"), "{entry}");
    assert!(entry["copies"][1]["location"].as_str().unwrap_or("").starts_with("gs://"), "{entry}");
    let restored = api
        .job(
            "/api/v1/backups/restores",
            json!({"journal_id": entry["id"], "destination_id": gcs, "target_id": lite_copy}),
        )
        .await;
    assert_eq!(restored["state"], "succeeded", "{restored}");
    assert_eq!(sqlite(&restored_file, SQLITE_FINGERPRINT).await, sqlite(&source, SQLITE_FINGERPRINT).await);
    assert!(sqlite(&source, SQLITE_FINGERPRINT).await[0].starts_with("500 "));

    // MariaDB: gzip, unencrypted, restored into another database from Azure.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (src, dst) = (format!("bkj_src_{}", &suffix[..12]), format!("bkj_dst_{}", &suffix[..12]));
    mariadb(
        work.path(),
        &format!(
            "CREATE DATABASE {src}; CREATE DATABASE {dst}; USE {src};
             CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), body BLOB, INDEX (name));
             INSERT INTO items SELECT seq, CONCAT('item ', seq), UNHEX(MD5(seq)) FROM seq_1_to_700;
             CREATE VIEW few AS SELECT id FROM items WHERE id < 50;
             CREATE PROCEDURE touch() SELECT 1;"
        ),
    )
    .await;
    let maria = |name: &str, db: &str| json!({"name": name, "engine": "mariadb", "host": "127.0.0.1", "user": "root", "databases": [db]});
    let maria_src = api.create("/api/v1/backups/targets", maria("maria", &src)).await;
    let maria_dst = api.create("/api/v1/backups/targets", maria("maria-copy", &dst)).await;
    let plan = api
        .create(
            "/api/v1/backups/plans",
            json!({"name": "maria", "target_id": maria_src, "destination_ids": [gcs, azure], "compression": {"format": "gzip"}}),
        )
        .await;
    let run = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let entry = api.journal(&format!("plan_id={plan}")).await.remove(0);
    assert_eq!((entry["status"].as_str(), copies_stored(&entry)), (Some("succeeded"), 2), "{entry}");
    assert!(entry["server_version"].as_str().unwrap_or("").contains("MariaDB"), "{entry}");
    let restored = api
        .job(
            "/api/v1/backups/restores",
            json!({"journal_id": entry["id"], "destination_id": azure, "target_id": maria_dst}),
        )
        .await;
    assert_eq!(restored["state"], "succeeded", "{restored}");
    let fingerprint = |db: &str| {
        format!(
            "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(body)) ORDER BY id)), ' ', (SELECT COUNT(*) FROM {db}.few), ' ', (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = '{db}')) FROM {db}.items"
        )
    };
    let (a, b) = (mariadb(work.path(), &fingerprint(&src)).await, mariadb(work.path(), &fingerprint(&dst)).await);
    assert_eq!(a, b);
    assert!(a.starts_with("700 ") && a.ends_with(" 1"), "{a}");

    // zip and tar.gz (staged in the job's directory, then streamed), restored from GCS into an
    // emptied database each.
    for (format, ext) in [("zip", ".sql.zip"), ("tar.gz", ".sql.tar.gz")] {
        let run = api
            .job(&format!("/api/v1/backups/plans/{plan}/run"), json!({"compression": {"format": format, "level": 4}}))
            .await;
        assert_eq!(run["state"], "succeeded", "{run}");
        let entry = api.journal(&format!("plan_id={plan}")).await.remove(0);
        assert_eq!((entry["compression"].as_str(), copies_stored(&entry)), (Some(format), 2), "{entry}");
        assert!(entry["copies"][0]["key"].as_str().unwrap_or("").ends_with(ext), "{entry}");
        mariadb(work.path(), &format!("DROP DATABASE {dst}; CREATE DATABASE {dst}")).await;
        let restored = api
            .job(
                "/api/v1/backups/restores",
                json!({"journal_id": entry["id"], "destination_id": gcs, "target_id": maria_dst}),
            )
            .await;
        assert_eq!(restored["state"], "succeeded", "{format}: {restored}");
        let restores = api.journal("kind=restore&status=succeeded").await;
        assert_eq!(restores[0]["plain_sha256"], entry["plain_sha256"], "{format}: the dump came back whole");
        assert_eq!(mariadb(work.path(), &fingerprint(&dst)).await, a, "{format}");
    }
    mariadb(work.path(), &format!("DROP DATABASE {src}; DROP DATABASE {dst}")).await;
}
