//! The streaming pipeline end to end: PostgreSQL and MariaDB dumped through zstd/gzip/none, with and
//! without age, to local disk and to S3 (moto), restored into an empty database and compared; a
//! corrupted artifact refused before the restore; a failing tool or a cancel leaves no object.

use std::path::Path;

use backup_worker::engines::{self, Connection, Invocation, Tools};
use backup_worker::pipeline::{self, Artifact, PipelineError};
use secrecy::SecretString;
use sentinel_archive::{Compression, DecryptKey, EncodeOptions, Encryption};
use sentinel_jobs::domain::backups::Engine;
use sentinel_storage::{Destination, DestinationSpec};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

fn local(engine: Engine, user: &str, password: Option<&str>, database: &str) -> Connection {
    Connection::new(engine, "127.0.0.1", user, password, database)
}

fn tools() -> Tools {
    Tools { dir: None }
}

async fn output(inv: &Invocation) -> String {
    let mut child = inv.spawn().expect("spawn");
    drop(child.stdin.take());
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).await.expect("read");
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).await.expect("stderr");
    assert!(child.wait().await.expect("wait").success(), "{}: {err}", inv.program.display());
    out
}

fn pg(db: &str) -> Connection {
    local(Engine::Postgres, "postgres", Some("postgres"), db)
}

pub(crate) async fn pg_sql(work: &Path, db: &str, sql: &str) -> String {
    output(&pg_query(work, db, sql)).await
}

/// `pg_sql` against another server on loopback (a private cluster of the test).
pub(crate) async fn pg_sql_at(work: &Path, port: u16, db: &str, sql: &str) -> String {
    let mut conn = pg(db);
    conn.port = port;
    output(&query_of(&conn, work, sql)).await
}

fn pg_query(work: &Path, db: &str, sql: &str) -> Invocation {
    query_of(&pg(db), work, sql)
}

fn query_of(conn: &Connection, work: &Path, sql: &str) -> Invocation {
    let mut inv = engines::server_version(conn, &tools(), work).expect("psql");
    // Replace the version query (the last argument) with `sql`.
    inv.args.pop();
    inv.args.push(sql.into());
    inv
}

pub(crate) const PG_FINGERPRINT: &str = "SELECT (SELECT count(*) FROM items) || ' ' || (SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i) || ' ' || (SELECT count(*) FROM cheap)";

pub(crate) async fn pg_source(work: &Path, rows: u32) -> String {
    let db = format!("bkp_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    pg_sql(work, "postgres", &format!("CREATE DATABASE {db}")).await;
    pg_sql(
        work,
        &db,
        &format!(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, body bytea, meta jsonb);
             CREATE INDEX items_name ON items (name);
             INSERT INTO items (name, body, meta) SELECT 'item ' || g, decode(md5(g::text), 'hex'), jsonb_build_object('g', g) FROM generate_series(1, {rows}) g;
             CREATE VIEW cheap AS SELECT id FROM items WHERE id < 100;"
        ),
    )
    .await;
    db
}

pub(crate) async fn empty_pg(work: &Path) -> String {
    let db = format!("bkp_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    pg_sql(work, "postgres", &format!("CREATE DATABASE {db}")).await;
    db
}

pub(crate) async fn drop_pg(work: &Path, dbs: &[&str]) {
    for db in dbs {
        pg_sql(work, "postgres", &format!("DROP DATABASE IF EXISTS {db}")).await;
    }
}

fn local_destination(dir: &Path) -> Destination {
    Destination::open(&DestinationSpec::Local { path: dir.to_owned() }).expect("local destination")
}

async fn s3_destination() -> Destination {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let moto = sentinel_testkit::emulators::moto().await;
    let bucket = moto.create_bucket().await;
    Destination::open(&DestinationSpec::S3 {
        bucket,
        region: sentinel_testkit::emulators::MOTO_REGION.into(),
        endpoint: Some(moto.endpoint.clone()),
        prefix: "backups".into(),
        access_key_id: moto.access_key_id.clone(),
        secret_access_key: SecretString::from(moto.secret_access_key.clone()),
        force_path_style: true,
    })
    .expect("s3 destination")
}

const PART: usize = 16 << 20;

#[tokio::test]
async fn postgres_backs_up_encrypted_to_disk_and_restores_identically() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let dest = local_destination(store.path());
    let source = pg_source(work.path(), 2000).await;
    let identity = sentinel_archive::generate_identity();
    let recipients = vec![identity.recipient.clone()];
    let cancel = CancellationToken::new();
    let seen = std::sync::atomic::AtomicU64::new(0);
    let progress = |n: u64| seen.store(n, std::sync::atomic::Ordering::Relaxed);
    let dump = engines::dump(&pg(&source), &tools(), work.path()).expect("dump");
    let stored = pipeline::back_up(
        pipeline::Source::Tool(&dump),
        Compression::default(),
        Encryption::Age { recipients, passphrase: None },
        EncodeOptions::default(),
        Artifact { dest: &dest, key: "pg/one.dump.zst.age", part_size: PART },
        &cancel,
        &progress,
    )
    .await
    .expect("backup");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::Relaxed),
        stored.digests.plain_bytes,
        "progress counts the plain bytes"
    );
    assert!(stored.location.starts_with("file://") && stored.location.ends_with("pg/one.dump.zst.age"));
    let raw = std::fs::read(store.path().join("pg/one.dump.zst.age")).expect("artifact");
    assert!(raw.starts_with(b"age-encryption.org/v1"), "encrypted at rest");
    assert_eq!(sentinel_archive::sha256_hex(&raw), stored.digests.stored_sha256);
    assert!(!String::from_utf8_lossy(&raw).contains("item 1"), "no plaintext in the artifact");

    pipeline::verify_stored(&dest, "pg/one.dump.zst.age", &stored.digests.stored_sha256).await.expect("intact");
    let target = empty_pg(work.path()).await;
    let restore = engines::restore(&pg(&target), &tools(), work.path()).expect("restore");
    let key = DecryptKey::Identities(vec![identity.secret.clone()]);
    let (report, _) = pipeline::restore(&dest, "pg/one.dump.zst.age", key, pipeline::Sink::Tool(&restore), &cancel)
        .await
        .expect("restore");
    assert!(report.encrypted);
    assert_eq!(report.plain_sha256, stored.digests.plain_sha256);
    let a = pg_sql(work.path(), &source, PG_FINGERPRINT).await;
    let b = pg_sql(work.path(), &target, PG_FINGERPRINT).await;
    assert_eq!(a, b);
    assert!(a.starts_with("2000 "), "{a}");

    // One byte flipped in storage: refused before anything reaches a database.
    let mut bad = raw.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(store.path().join("pg/one.dump.zst.age"), &bad).expect("corrupt");
    let refused = pipeline::verify_stored(&dest, "pg/one.dump.zst.age", &stored.digests.stored_sha256).await;
    assert!(matches!(refused, Err(PipelineError::ChecksumMismatch { .. })), "{refused:?}");
    drop_pg(work.path(), &[&source, &target]).await;
}

#[tokio::test]
async fn mariadb_backs_up_to_s3_with_gzip_and_restores_identically() {
    let work = tempfile::tempdir().expect("tempdir");
    let dest = s3_destination().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (src, dst) = (format!("bkm_src_{}", &suffix[..12]), format!("bkm_dst_{}", &suffix[..12]));
    let admin = local(Engine::Mariadb, "root", None, "mysql");
    let sql = |s: String| {
        let mut inv = engines::server_version(&admin, &tools(), work.path()).expect("mariadb");
        inv.args.pop();
        inv.args.push(s.into());
        inv
    };
    output(&sql(format!(
        "CREATE DATABASE {src}; CREATE DATABASE {dst}; USE {src};
         CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), body BLOB, INDEX (name));
         INSERT INTO items SELECT seq, CONCAT('item ', seq), UNHEX(MD5(seq)) FROM seq_1_to_800;
         CREATE VIEW few AS SELECT id FROM items WHERE id < 50;"
    )))
    .await;
    let cancel = CancellationToken::new();
    let dump = engines::dump(&local(Engine::Mariadb, "root", None, &src), &tools(), work.path()).expect("dump");
    let stored = pipeline::back_up(
        pipeline::Source::Tool(&dump),
        Compression::Gzip { level: 6 },
        Encryption::None,
        EncodeOptions::default(),
        Artifact { dest: &dest, key: "maria/one.sql.gz", part_size: PART },
        &cancel,
        &|_| {},
    )
    .await
    .expect("backup");
    assert!(stored.location.starts_with("s3://") && stored.location.contains("backups/maria/one.sql.gz"));
    let listed = dest.list("maria/").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, stored.digests.stored_bytes);
    pipeline::verify_stored(&dest, "maria/one.sql.gz", &stored.digests.stored_sha256).await.expect("intact");
    let restore =
        engines::restore(&local(Engine::Mariadb, "root", None, &dst), &tools(), work.path()).expect("restore");
    let (report, _) =
        pipeline::restore(&dest, "maria/one.sql.gz", DecryptKey::None, pipeline::Sink::Tool(&restore), &cancel)
            .await
            .expect("restore");
    assert_eq!(report.plain_sha256, stored.digests.plain_sha256);
    let fingerprint = |db: &str| {
        format!(
            "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(body)) ORDER BY id)), ' ', (SELECT COUNT(*) FROM {db}.few)) FROM {db}.items"
        )
    };
    let a = output(&sql(fingerprint(&src))).await;
    let b = output(&sql(fingerprint(&dst))).await;
    assert_eq!(a, b);
    assert!(a.starts_with("800 "), "{a}");
    output(&sql(format!("DROP DATABASE {src}; DROP DATABASE {dst}"))).await;
}

#[tokio::test]
async fn a_failing_tool_or_a_cancel_leaves_no_object() {
    let work = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let dest = local_destination(store.path());
    let cancel = CancellationToken::new();
    // The database does not exist: pg_dump fails after the upload started.
    let dump = engines::dump(&pg("no_such_database_here"), &tools(), work.path()).expect("dump");
    let failed = pipeline::back_up(
        pipeline::Source::Tool(&dump),
        Compression::None,
        Encryption::None,
        EncodeOptions::default(),
        Artifact { dest: &dest, key: "x/failed.dump", part_size: PART },
        &cancel,
        &|_| {},
    )
    .await;
    match failed {
        Err(PipelineError::Tool { program, stderr, .. }) => {
            assert_eq!(program, "pg_dump");
            assert!(stderr.contains("no_such_database_here"), "{stderr}");
        }
        other => panic!("expected a tool failure, got {other:?}"),
    }
    // A cancel while the tool still writes.
    let source = pg_source(work.path(), 20_000).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let dump = engines::dump(&pg(&source), &tools(), work.path()).expect("dump");
    let cancelled = pipeline::back_up(
        pipeline::Source::Tool(&dump),
        Compression::Zstd { level: 3 },
        Encryption::None,
        EncodeOptions::default(),
        Artifact { dest: &dest, key: "x/cancelled.dump.zst", part_size: PART },
        &cancel,
        &move |_| trigger.cancel(),
    )
    .await;
    assert!(matches!(cancelled, Err(PipelineError::Cancelled)), "{cancelled:?}");
    assert!(dest.list("").await.expect("list").is_empty(), "no object and no partial file under the destination");
    let stray: Vec<_> = walk(store.path());
    assert!(stray.is_empty(), "files left: {stray:?}");
    drop_pg(work.path(), &[&source]).await;
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
