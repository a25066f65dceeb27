//! Fail-closed completeness through the product: a whole-database backup of a database holding every
//! kind of object is complete; a schema created after a target's include list was written makes the
//! next backup `incomplete` (kept, named, the job failed), not `succeeded`; the same schema named in
//! the exclude list is left out on purpose. The same for MariaDB, whose SQL dump is read for its objects.

use serde_json::{Value, json};

use crate::jobs::{Api, Journal, disk, pg_target, product};
use crate::pipeline::{drop_pg, pg_source, pg_sql};

async fn backup(api: &Api, target: &str, dest: &str, name: &str) -> (Value, Value) {
    let plan = api
        .create("/api/v1/backups/plans", json!({"name": name, "target_id": target, "destination_ids": [dest]}))
        .await;
    let job = api.job(&format!("/api/v1/backups/plans/{plan}/run"), json!({})).await;
    // The check ran (a check that cannot run is logged, and would hide a gap).
    let (_, log) = api.get(&format!("/api/v1/jobs/{}/log?limit=1000", job["id"].as_str().unwrap_or(""))).await;
    assert!(!log.to_string().contains("not checked"), "{log}");
    let entries = api.journal(&format!("plan_id={plan}")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    (job, entries[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_outside_the_include_list_makes_the_backup_incomplete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let source = pg_source(work.path(), 50).await;
    // Every kind of object the comparison reads, so that a whole dump shows no false gap.
    pg_sql(
        work.path(),
        &source,
        "CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE TYPE mood AS ENUM ('ok'); CREATE DOMAIN positive AS int CHECK (VALUE > 0);
         CREATE TYPE pair AS (a int, b int); CREATE SEQUENCE tickets; CREATE MATERIALIZED VIEW counts AS SELECT count(*) FROM items;
         CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql AS 'SELECT 2 * x'; CREATE PROCEDURE noop() LANGUAGE sql AS 'SELECT 1';
         CREATE TABLE parted (k int) PARTITION BY RANGE (k); CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (10);
         CREATE TABLE \"Odd name\" (id int GENERATED ALWAYS AS IDENTITY); CREATE SCHEMA app; CREATE VIEW app.v AS SELECT 1 AS one",
    )
    .await;
    let (sentinel, api) = product(tmp.path()).await;
    let dest = disk(&api, &store).await;
    let with = |name: &str, extra: Value| {
        let mut body = pg_target(name, &source, "postgres");
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let whole = api.create("/api/v1/backups/targets", with("whole", json!({}))).await;
    let listed = api.create("/api/v1/backups/targets", with("listed", json!({"include": ["public.*", "app.*"]}))).await;

    let (job, entry) = backup(&api, &whole, &dest, "whole").await;
    assert_eq!((job["state"].as_str(), entry["status"].as_str()), (Some("succeeded"), Some("succeeded")), "{job}");
    let (job, entry) = backup(&api, &listed, &dest, "listed").await;
    assert_eq!(entry["status"], "succeeded", "every table is in public or app: {job} {entry}");

    // A schema created after the list was written: the next backup says what it lacks.
    pg_sql(work.path(), &source, "CREATE SCHEMA billing; CREATE TABLE billing.invoices (n int)").await;
    let (job, entry) = backup(&api, &listed, &dest, "listed again").await;
    assert_eq!((job["state"].as_str(), entry["status"].as_str()), (Some("failed"), Some("incomplete")), "{entry}");
    let message = entry["message"].as_str().unwrap_or_default();
    assert!(message.contains("lacks 1 object(s)") && message.contains("TABLE billing.invoices"), "{entry}");
    assert!(job["error"].as_str().unwrap_or_default().contains("backup incomplete"), "{job}");
    let copy = entry["copies"].as_array().expect("copies").iter().find(|c| c["database"] == source.as_str()).cloned();
    assert_eq!(copy.expect("copy")["state"], "stored", "the partial copy is kept: {entry}");
    // A whole dump has the new schema; leaving it out on purpose is what the exclude list is for.
    let (_, entry) = backup(&api, &whole, &dest, "whole again").await;
    assert_eq!(entry["status"], "succeeded", "{entry}");
    let left_out = api.create("/api/v1/backups/targets", with("left out", json!({"exclude": ["billing.*"]}))).await;
    let (_, entry) = backup(&api, &left_out, &dest, "left out").await;
    assert_eq!(entry["status"], "succeeded", "excluded on purpose: {entry}");
    let (status, page) = api.get("/api/v1/backups/journal?status=incomplete").await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(1)), "{page}");
    drop(sentinel);
    drop_pg(work.path(), &[&source]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_table_outside_the_include_list_makes_the_backup_incomplete() {
    use crate::clouds::mariadb;
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let db = format!("cmp_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    mariadb(
        work.path(),
        &format!(
            "CREATE DATABASE {db}; USE {db}; CREATE TABLE items (id int PRIMARY KEY, n int); INSERT INTO items VALUES (1, 1);
             CREATE VIEW big_items AS SELECT id FROM items WHERE n > 0; CREATE TABLE `odd``name` (x int);
             CREATE TRIGGER items_touch BEFORE INSERT ON items FOR EACH ROW SET NEW.n = NEW.n + 1;
             CREATE PROCEDURE noop() SELECT 1; CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC RETURN 2 * x;
             CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM items WHERE n < 0"
        ),
    )
    .await;
    let (sentinel, api) = product(tmp.path()).await;
    let dest = disk(&api, &store).await;
    let target = |name: &str, extra: Value| {
        let mut body =
            json!({"name": name, "engine": "mariadb", "host": "127.0.0.1", "user": "root", "databases": [db]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let whole = api.create("/api/v1/backups/targets", target("whole", json!({}))).await;
    let (job, entry) = backup(&api, &whole, &dest, "whole").await;
    assert_eq!(entry["status"], "succeeded", "tables, a view, a trigger, routines, an event: {job} {entry}");
    let listed =
        api.create("/api/v1/backups/targets", target("listed", json!({"include": ["items", "odd`name"]}))).await;
    mariadb(work.path(), &format!("CREATE TABLE {db}.invoices (n int)")).await;
    let (job, entry) = backup(&api, &listed, &dest, "listed").await;
    assert_eq!((job["state"].as_str(), entry["status"].as_str()), (Some("failed"), Some("incomplete")), "{entry}");
    assert!(
        entry["message"].as_str().unwrap_or_default().contains("lacks 1 object(s) the database holds: TABLE invoices"),
        "{entry}"
    );
    let left_out =
        api.create("/api/v1/backups/targets", target("left out", json!({"exclude": [format!("{db}.invoices")]}))).await;
    let (_, entry) = backup(&api, &left_out, &dest, "left out").await;
    assert_eq!(entry["status"], "succeeded", "excluded on purpose: {entry}");
    drop(sentinel);
    mariadb(work.path(), &format!("DROP DATABASE {db}")).await;
}
