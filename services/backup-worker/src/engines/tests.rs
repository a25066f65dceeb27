//! Tests of the engines: what each builds (no password in arguments or environment; credential files
//! 0600 and gone after the run), and real dump → restore round trips on the machine's PostgreSQL and
//! MariaDB with the content compared table by table.

use std::os::unix::fs::PermissionsExt;

use sentinel_jobs::domain::backups::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const PASSWORD: &str = "p@ss:wo\"rd\\ x";

fn conn(engine: Engine, database: &str) -> Connection {
    Connection::new(engine, "127.0.0.1", "backup", Some(PASSWORD), database)
}

fn local(engine: Engine, user: &str, password: Option<&str>, database: &str) -> Connection {
    Connection::new(engine, "127.0.0.1", user, password, database)
}

/// A directory holding fake tools of every name, so building never depends on what is installed.
fn fake_tools() -> (tempfile::TempDir, Tools) {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["pg_dump", "pg_dumpall", "pg_restore", "psql", "mariadb-dump", "mariadb", "mongodump", "mongorestore"]
    {
        std::fs::write(dir.path().join(name), "#!/bin/sh\n").expect("fake tool");
    }
    let tools = Tools { dir: Some(dir.path().to_owned()) };
    (dir, tools)
}

fn assert_secret_only_in_file(inv: &Invocation) {
    let args = inv.args_text().join(" ");
    assert!(!args.contains("p@ss"), "password in the arguments: {args}");
    for (k, v) in &inv.env {
        assert!(!v.to_string_lossy().contains("p@ss"), "password in {k}");
    }
    let file = inv.credentials.as_ref().expect("a credential file");
    let mode = std::fs::metadata(file.path()).expect("credential file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(file.path().parent().expect("dir")).expect("dir").permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[test]
fn postgres_globals_come_from_pg_dumpall_with_or_without_passwords() {
    let (_d, tools) = fake_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let with = globals(&conn(Engine::Postgres, "app"), &tools, work.path(), true).expect("build").expect("postgres");
    assert!(with.program.ends_with("pg_dumpall"));
    let args = with.args_text();
    assert!(args.contains(&"--globals-only".to_owned()) && args.contains(&"app".to_owned()), "{args:?}");
    assert!(!args.contains(&"--no-role-passwords".to_owned()));
    assert_secret_only_in_file(&with);
    let without = globals(&conn(Engine::Postgres, "app"), &tools, work.path(), false).expect("build").expect("pg");
    assert!(without.args_text().contains(&"--no-role-passwords".to_owned()));
    let apply = apply_globals(&conn(Engine::Postgres, "app"), &tools, work.path()).expect("apply");
    assert!(apply.program.ends_with("psql") && apply.args_text().contains(&"ON_ERROR_STOP=0".to_owned()));
    for engine in [Engine::Mariadb, Engine::Mysql, Engine::Mongodb] {
        assert!(globals(&conn(engine, "app"), &tools, work.path(), true).expect("build").is_none());
        assert!(apply_globals(&conn(engine, "app"), &tools, work.path()).is_err());
    }
}

#[test]
fn include_and_exclude_lists_reach_every_dump_tool() {
    let (_d, tools) = fake_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let with = |engine: Engine, include: &[&str], exclude: &[&str]| {
        let mut c = conn(engine, "app");
        c.include = include.iter().map(|s| s.to_string()).collect();
        c.exclude = exclude.iter().map(|s| s.to_string()).collect();
        c
    };
    let pg = dump(&with(Engine::Postgres, &["public.*", "audit.log"], &["public.cache"]), &tools, work.path());
    let args = pg.expect("pg_dump").args_text();
    for a in ["--table=public.*", "--table=audit.log", "--exclude-table=public.cache"] {
        assert!(args.contains(&a.to_owned()), "{a} missing from {args:?}");
    }
    let maria = dump(&with(Engine::Mariadb, &["items", "users"], &[]), &tools, work.path()).expect("dump");
    let args = maria.args_text();
    assert_eq!(args[args.len() - 4..], ["--", "app", "items", "users"], "tables follow the database: {args:?}");
    let maria = dump(&with(Engine::Mariadb, &[], &["sessions"]), &tools, work.path()).expect("dump");
    assert!(maria.args_text().contains(&"--ignore-table=app.sessions".to_owned()));
    let mongo = dump(&with(Engine::Mongodb, &["orders"], &["tmp"]), &tools, work.path()).expect("dump");
    let args = mongo.args_text();
    assert!(args.contains(&"--collection=orders".to_owned()) && args.contains(&"--excludeCollection=tmp".to_owned()));
    let two = dump(&with(Engine::Mongodb, &["a", "b"], &[]), &tools, work.path()).expect_err("refused");
    assert!(two.to_string().contains("one collection or all"), "{two}");
}

#[test]
fn postgres_dumps_custom_format_uncompressed_with_a_pgpass_file() {
    let (_d, tools) = fake_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let inv = dump(&conn(Engine::Postgres, "app"), &tools, work.path()).expect("dump");
    assert!(inv.program.ends_with("pg_dump"));
    let args = inv.args_text();
    for a in ["--format=custom", "--compress=0", "--no-password", "app"] {
        assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    assert_secret_only_in_file(&inv);
    let pgpass = std::fs::read_to_string(inv.credentials.as_ref().expect("file").path()).expect("read");
    assert_eq!(pgpass, "127.0.0.1:5432:*:backup:p@ss\\:wo\"rd\\\\ x\n");
    let restore = restore(&conn(Engine::Postgres, "scratch"), &tools, work.path()).expect("restore");
    assert!(restore.args_text().contains(&"--single-transaction".to_owned()));
    let path = restore.credentials.as_ref().expect("file").path().to_owned();
    drop(restore);
    assert!(!path.exists() && !path.parent().expect("dir").exists(), "credential file left behind");
}

#[test]
fn mariadb_reads_its_password_from_a_defaults_extra_file_given_first() {
    let (_d, tools) = fake_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let inv = dump(&conn(Engine::Mariadb, "shop"), &tools, work.path()).expect("dump");
    assert!(inv.program.ends_with("mariadb-dump"));
    let args = inv.args_text();
    assert!(args[0].starts_with("--defaults-extra-file=/"), "{args:?}");
    for a in ["--single-transaction", "--routines", "--events", "--triggers"] {
        assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    assert_eq!(&args[args.len() - 2..], ["--", "shop"], "one database, after `--`");
    assert_secret_only_in_file(&inv);
    let cnf = std::fs::read_to_string(inv.credentials.as_ref().expect("file").path()).expect("read");
    assert!(cnf.contains("password=\"p@ss:wo\\\"rd\\\\ x\"\n"), "{cnf}");
    // MySQL prefers mysqldump, MariaDB mariadb-dump; either falls back to the other.
    let mysql = dump(&conn(Engine::Mysql, "shop"), &tools, work.path()).expect("dump");
    assert!(mysql.program.ends_with("mariadb-dump"), "falls back when mysqldump is absent");
}

#[test]
fn mongodb_archives_to_stdout_and_renames_on_restore() {
    let (_d, tools) = fake_tools();
    let work = tempfile::tempdir().expect("tempdir");
    let inv = dump(&conn(Engine::Mongodb, "events"), &tools, work.path()).expect("dump");
    let args = inv.args_text();
    assert!(args[0].starts_with("--config=/"));
    for a in ["--db=events", "--archive", "--username=backup", "--authenticationDatabase=admin", "--port=27017"] {
        assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    assert_secret_only_in_file(&inv);
    let yaml = std::fs::read_to_string(inv.credentials.as_ref().expect("file").path()).expect("read");
    assert_eq!(yaml, "password: \"p@ss:wo\\\"rd\\\\ x\"\n");
    let into_scratch =
        mongodb::restore(&conn(Engine::Mongodb, "scratch"), &tools, work.path(), Some("events")).expect("restore");
    let args = into_scratch.args_text();
    assert!(args.contains(&"--nsFrom=events.*".to_owned()) && args.contains(&"--nsTo=scratch.*".to_owned()));
    let in_place =
        mongodb::restore(&conn(Engine::Mongodb, "events"), &tools, work.path(), Some("events")).expect("restore");
    assert!(in_place.args_text().contains(&"--nsInclude=events.*".to_owned()));
}

#[test]
fn a_missing_tool_says_what_to_install_and_an_old_client_is_refused() {
    let empty = tempfile::tempdir().expect("tempdir");
    let tools = Tools { dir: Some(empty.path().to_owned()) };
    let e = dump(&conn(Engine::Mongodb, "x"), &tools, empty.path()).expect_err("no tool");
    assert!(e.to_string().contains("mongodump not found") && e.to_string().contains("mongodb-database-tools"));
    assert!(check_client_not_older(Engine::Postgres, "pg_dump (PostgreSQL) 15.10", "15.10 (Debian 15.10-0)").is_ok());
    assert!(check_client_not_older(Engine::Postgres, "pg_dump (PostgreSQL) 16.1", "15.4").is_ok());
    let why = check_client_not_older(Engine::Postgres, "pg_dump (PostgreSQL) 15.10", "17.2").expect_err("older");
    assert!(why.contains("postgresql-client-17"), "{why}");
}

/// Runs `inv`, feeding `input`, and returns stdout; fails with stderr when the tool fails.
async fn run(inv: &Invocation, input: &[u8]) -> Vec<u8> {
    let mut child = inv.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&data).await;
    });
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out).await.expect("read");
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).await.expect("stderr");
    let status = child.wait().await.expect("wait");
    let _ = feed.await;
    assert!(status.success(), "{} failed: {err}", inv.program.display());
    out
}

fn system_tools() -> Tools {
    Tools { dir: None }
}

#[tokio::test]
async fn postgres_round_trip_restores_identical_content() {
    let work = tempfile::tempdir().expect("tempdir");
    let tools = system_tools();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (src, dst) = (format!("bk_src_{}", &suffix[..12]), format!("bk_dst_{}", &suffix[..12]));
    let admin = local(Engine::Postgres, "postgres", Some("postgres"), "postgres");
    for db in [&src, &dst] {
        run(&postgres::query(&admin, &tools, work.path(), &format!("CREATE DATABASE {db}")).expect("q"), b"").await;
    }
    let source = local(Engine::Postgres, "postgres", Some("postgres"), &src);
    let setup = "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[], meta jsonb, at timestamptz DEFAULT now());
        CREATE INDEX items_name ON items (name);
        INSERT INTO items (name, price, tags, meta) SELECT 'item ' || g, g * 1.5, ARRAY['a', 'b' || g], jsonb_build_object('n', g) FROM generate_series(1, 500) g;
        CREATE TABLE notes (id bigint PRIMARY KEY, body bytea);
        INSERT INTO notes SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 200) g;
        CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 100;
        CREATE FUNCTION double_it(x int) RETURNS int LANGUAGE sql AS 'SELECT x * 2';";
    run(&postgres::query(&source, &tools, work.path(), setup).expect("q"), b"").await;
    let dump_bytes = run(&dump(&source, &tools, work.path()).expect("dump"), b"").await;
    assert!(dump_bytes.starts_with(b"PGDMP"), "custom format");
    let target = local(Engine::Postgres, "postgres", Some("postgres"), &dst);
    run(&restore(&target, &tools, work.path()).expect("restore"), &dump_bytes).await;
    let fingerprint =
        "SELECT (SELECT count(*) FROM items) || ' ' || (SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i)
        || ' ' || (SELECT count(*) FROM notes) || ' ' || (SELECT md5(string_agg(n::text, ',' ORDER BY id)) FROM notes n)
        || ' ' || (SELECT count(*) FROM cheap) || ' ' || double_it(21)";
    let a = run(&postgres::query(&source, &tools, work.path(), fingerprint).expect("q"), b"").await;
    let b = run(&postgres::query(&target, &tools, work.path(), fingerprint).expect("q"), b"").await;
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&a).starts_with("500 "), "{}", String::from_utf8_lossy(&a));
    // An include list: only `notes` is dumped, so only it is restored.
    let only = local(Engine::Postgres, "postgres", Some("postgres"), &format!("bk_only_{}", &suffix[..12]));
    run(&postgres::query(&admin, &tools, work.path(), &format!("CREATE DATABASE {}", only.database)).expect("q"), b"")
        .await;
    let mut partial = source.clone();
    partial.include = vec!["public.notes".to_owned()];
    let notes_only = run(&dump(&partial, &tools, work.path()).expect("dump"), b"").await;
    run(&restore(&only, &tools, work.path()).expect("restore"), &notes_only).await;
    let tables = "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'";
    let restored = run(&postgres::query(&only, &tools, work.path(), tables).expect("q"), b"").await;
    assert_eq!(String::from_utf8_lossy(&restored).trim(), "notes");
    // A broken stream fails the whole restore, which leaves nothing half-restored.
    let third = local(Engine::Postgres, "postgres", Some("postgres"), &format!("bk_bad_{}", &suffix[..12]));
    run(&postgres::query(&admin, &tools, work.path(), &format!("CREATE DATABASE {}", third.database)).expect("q"), b"")
        .await;
    let mut child = restore(&third, &tools, work.path()).expect("restore").spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&dump_bytes[..dump_bytes.len() / 2]).await.expect("write");
    drop(stdin);
    assert!(!child.wait().await.expect("wait").success(), "a truncated dump must fail");
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    let left = run(&postgres::query(&third, &tools, work.path(), tables).expect("q"), b"").await;
    assert_eq!(String::from_utf8_lossy(&left).trim(), "0");
    for db in [&src, &dst, &third.database, &only.database] {
        run(&postgres::query(&admin, &tools, work.path(), &format!("DROP DATABASE {db}")).expect("q"), b"").await;
    }
}

#[tokio::test]
async fn mariadb_round_trip_restores_identical_content() {
    let work = tempfile::tempdir().expect("tempdir");
    let tools = system_tools();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (src, dst) = (format!("bk_src_{}", &suffix[..12]), format!("bk_dst_{}", &suffix[..12]));
    let admin = local(Engine::Mariadb, "root", None, "mysql");
    run(
        &mysql::query(&admin, &tools, work.path(), &format!("CREATE DATABASE {src}; CREATE DATABASE {dst}"))
            .expect("q"),
        b"",
    )
    .await;
    let source = local(Engine::Mariadb, "root", None, &src);
    let setup = format!(
        "USE {src}; CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, price DECIMAL(10,2), body BLOB, at DATETIME(6), INDEX (name));
         INSERT INTO items (name, price, body, at) SELECT CONCAT('item ', seq), seq * 1.5, UNHEX(MD5(seq)), '2026-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_300;
         CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 100;
         CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
         CREATE TRIGGER items_upper BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name);"
    );
    run(&mysql::query(&admin, &tools, work.path(), &setup).expect("q"), b"").await;
    let dump_bytes = run(&dump(&source, &tools, work.path()).expect("dump"), b"").await;
    let target = local(Engine::Mariadb, "root", None, &dst);
    run(&restore(&target, &tools, work.path()).expect("restore"), &dump_bytes).await;
    let fingerprint = |db: &str| {
        format!(
            "SELECT CONCAT((SELECT COUNT(*) FROM {db}.items), ' ', (SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, price, HEX(body), at) ORDER BY id)) FROM {db}.items), ' ',
             (SELECT COUNT(*) FROM {db}.cheap), ' ', {db}.double_it(21), ' ',
             (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = '{db}'))"
        )
    };
    let a = run(&mysql::query(&admin, &tools, work.path(), &fingerprint(&src)).expect("q"), b"").await;
    let b = run(&mysql::query(&admin, &tools, work.path(), &fingerprint(&dst)).expect("q"), b"").await;
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&a).starts_with("300 "), "{}", String::from_utf8_lossy(&a));
    run(
        &mysql::query(&admin, &tools, work.path(), &format!("DROP DATABASE {src}; DROP DATABASE {dst}")).expect("q"),
        b"",
    )
    .await;
}
