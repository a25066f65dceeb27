//! The job store on both databases: migrations, the schema check, and fencing by lease epoch.

use sentinel_jobs::db::{AttemptWrite, AttemptWritten, DbError, Finish, NewJob, StartOutcome};
use sentinel_jobs::domain::{JobId, JobKind, JobState, QueueName, RetryPolicy, builtin};
use serde_json::json;

use crate::both_modes;
use crate::helpers::{Env, Mode};

both_modes!(
    stale_attempt_writes_are_refused,
    a_message_for_an_old_attempt_is_skipped,
    counts_cover_every_state,
    retention_of_system_sweeps_spares_user_jobs_and_failures,
    batched_attempt_writes_keep_fencing_and_order,
    a_multi_job_insert_stores_every_field_and_its_event,
    a_transaction_that_reads_first_survives_a_concurrent_job_write,
);

fn new_job() -> NewJob {
    NewJob {
        id: JobId::new(),
        kind: JobKind::parse(builtin::DEMO_SLEEP).expect("kind"),
        queue: QueueName::parse(builtin::DEFAULT_QUEUE).expect("queue"),
        priority: Default::default(),
        payload: json!({ "seconds": 1 }),
        retry: RetryPolicy::default(),
        run_at: None,
        trace_context: Default::default(),
        requested_by: Some("test".to_owned()),
        org_id: None,
        dedup_key: None,
    }
}

async fn a_multi_job_insert_stores_every_field_and_its_event(mode: Mode) {
    use sentinel_jobs::domain::Priority;
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.store();
    let org = uuid::Uuid::new_v4();
    // A later run time with nanoseconds (stored to the microsecond), every optional field set on one
    // job and left empty on the next.
    let later = chrono::Utc::now() + chrono::Duration::nanoseconds(3_600_000_000_123);
    let full = NewJob {
        priority: Priority::High,
        payload: json!({ "seconds": 7, "note": "ünïcode \"quoted\"" }),
        retry: RetryPolicy { max_attempts: 4, backoff_base_ms: 250, backoff_max_ms: 9_000 },
        run_at: Some(later),
        trace_context: [("traceparent".to_owned(), "00-abc-def-01".to_owned())].into(),
        org_id: Some(org),
        dedup_key: Some("nightly".to_owned()),
        ..new_job()
    };
    let bare = NewJob { requested_by: None, ..new_job() };
    let answered = store.insert_many(vec![full.clone(), bare.clone()]).await.expect("insert");
    assert_eq!(answered.len(), 2);
    for ((job, event), new) in answered.iter().zip([&full, &bare]) {
        assert_eq!(job.id, new.id, "answers in request order");
        let stored = store.get(job.id).await.expect("get").expect("stored");
        assert_eq!(&stored, job, "the answer is the stored row");
        assert_eq!((stored.priority, &stored.payload, &stored.retry), (new.priority, &new.payload, &new.retry));
        assert_eq!((&stored.trace_context, &stored.requested_by), (&new.trace_context, &new.requested_by));
        assert_eq!((stored.org_id, &stored.dedup_key), (new.org_id, &new.dedup_key));
        assert_eq!((stored.state, stored.attempt, stored.event_seq, stored.published), (JobState::Queued, 1, 1, false));
        let events = store.events(job.id, 0, 10).await.expect("events");
        assert_eq!(events, vec![event.clone()], "one queued event, answered with its id");
        assert_eq!(event.body.name(), "queued");
        assert!(event.id > 0);
    }
    assert_eq!(answered[0].0.run_at.timestamp_micros(), later.timestamp_micros());
    assert!(answered[1].0.run_at <= chrono::Utc::now());

    // A deduplication key held by an unfinished job refuses the whole batch: nothing is inserted.
    let taken = NewJob { id: JobId::new(), org_id: Some(org), dedup_key: Some("nightly".to_owned()), ..new_job() };
    let innocent = new_job();
    let refused = store.insert_many(vec![innocent.clone(), taken]).await;
    assert!(matches!(refused, Err(DbError::Duplicate)), "{refused:?}");
    assert_eq!(store.get(innocent.id).await.expect("get"), None, "all or nothing");

    // Rows inserted as published (the in-process bus publishes right after the commit) are stored so,
    // and the outbox relay does not see them.
    let premarked = store.insert_many_as(vec![new_job(), new_job()], true).await.expect("insert published");
    for (job, _) in &premarked {
        assert!(job.published, "answered as published");
        let stored = store.get(job.id).await.expect("get").expect("stored");
        assert!(stored.published, "stored as published");
    }
    let unpublished = store.unpublished(chrono::Utc::now() + chrono::Duration::seconds(1), 100).await.expect("outbox");
    assert!(unpublished.iter().all(|j| premarked.iter().all(|(p, _)| p.id != j.id)), "not in the outbox");
    assert!(unpublished.iter().any(|j| j.id == bare.id), "an ordinary insert is in the outbox");
    env.stop().await;
}

async fn stale_attempt_writes_are_refused(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.store();
    let (job, _) = store.insert(new_job()).await.expect("insert");
    let StartOutcome::Started(a, _) = store.start(job.id, 1, false).await.expect("start") else {
        panic!("not started")
    };
    // A second delivery after A's lease lapsed takes over with a newer epoch.
    let StartOutcome::Started(b, _) = store.start(job.id, 1, true).await.expect("start") else { panic!("not started") };
    assert!(b.epoch > a.epoch);
    let progress = sentinel_jobs::domain::JobEventKind::Progress(Default::default());
    assert!(matches!(store.append(job.id, a.epoch, progress.clone()).await, Err(DbError::Fenced { .. })));
    assert!(matches!(store.finish(job.id, a.epoch, Finish::Succeeded(json!("a"))).await, Err(DbError::Fenced { .. })));
    store.append(job.id, b.epoch, progress).await.expect("current attempt may write");
    store.finish(job.id, b.epoch, Finish::Succeeded(json!("b"))).await.expect("current attempt may finish");
    // A resumes late and tries again: still refused, and the stored result is B's.
    assert!(matches!(store.finish(job.id, a.epoch, Finish::Failed("late".into())).await, Err(DbError::Fenced { .. })));
    let stored = store.get(job.id).await.expect("get").expect("exists");
    assert_eq!(stored.state, JobState::Succeeded);
    assert_eq!(stored.result, Some(json!("b")));
    let finished =
        store.events(job.id, 0, 100).await.expect("events").iter().filter(|e| e.body.name() == "finished").count();
    assert_eq!(finished, 1, "exactly one outcome recorded");
    env.stop().await;
}

async fn a_message_for_an_old_attempt_is_skipped(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.store();
    let (job, _) = store.insert(new_job()).await.expect("insert");
    let StartOutcome::Started(a, _) = store.start(job.id, 1, false).await.expect("start") else {
        panic!("not started")
    };
    store.retry(job.id, a.epoch, "boom", chrono::Utc::now()).await.expect("retry");
    // A duplicate of attempt 1's message arrives: it must not start attempt 2.
    assert!(matches!(store.start(job.id, 1, false).await.expect("start"), StartOutcome::Skip { .. }));
    // A duplicate first delivery of a running job is skipped too (only a reclaim may take over).
    assert!(matches!(store.start(job.id, 2, false).await.expect("start"), StartOutcome::Started(..)));
    assert!(matches!(store.start(job.id, 2, false).await.expect("start"), StartOutcome::Skip { .. }));
    env.stop().await;
}

async fn counts_cover_every_state(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.store();
    for _ in 0..3 {
        store.insert(new_job()).await.expect("insert");
    }
    let counts = store.counts(None).await.expect("counts");
    assert_eq!(counts.len(), JobState::ALL.len());
    assert_eq!(counts.iter().find(|(s, _)| *s == JobState::Queued).map(|(_, n)| *n), Some(3));
    env.stop().await;
}

#[tokio::test]
async fn an_out_of_date_schema_stops_the_service_with_a_clear_message() {
    let db = sentinel_testkit::TestDb::postgres().await.expect("postgres");
    let settings = sentinel_testkit::settings(&db.url, "memory", "x", &[("database.auto_migrate", "false")]);
    let err = match sentinel_jobs::Spine::connect(&settings, sentinel_jobs::Catalog::builtin(false)).await {
        Ok(_) => panic!("connected to an empty database without migrating"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("sentinel migrate"), "{err}");
    // `migrate` fixes it, on PostgreSQL and on SQLite alike.
    for url in [db.url.clone(), sentinel_testkit::TestDb::sqlite().expect("sqlite").url.clone()] {
        let conn = sentinel_jobs::db::Database::connect(&url, 2).await.expect("connect");
        assert!(conn.migrate().await.expect("migrate") >= 1);
        conn.ensure_schema(false).await.expect("schema is current");
        assert_eq!(conn.migrate().await.expect("migrate again"), 0);
    }
}

async fn retention_of_system_sweeps_spares_user_jobs_and_failures(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.store();
    let finish = |outcome: Finish, org: Option<uuid::Uuid>| {
        let store = store.clone();
        async move {
            let (job, _) = store.insert(NewJob { org_id: org, ..new_job() }).await.expect("insert");
            let StartOutcome::Started(running, _) = store.start(job.id, 1, false).await.expect("start") else {
                panic!("not started")
            };
            store.finish(job.id, running.epoch, outcome).await.expect("finish");
            job.id
        }
    };
    let system_ok = finish(Finish::Succeeded(json!({})), None).await;
    let system_failed = finish(Finish::Failed("boom".into()), None).await;
    let user_ok = finish(Finish::Succeeded(json!({})), Some(uuid::Uuid::now_v7())).await;
    let deleted = store.delete_succeeded_system_jobs_before(chrono::Utc::now() + chrono::Duration::minutes(1)).await;
    assert_eq!(deleted.expect("delete"), 1);
    assert!(store.get(system_ok).await.expect("get").is_none(), "successful sweeps go after a day");
    assert!(store.get(system_failed).await.expect("get").is_some(), "failed sweeps stay for inspection");
    assert!(store.get(user_ok).await.expect("get").is_some(), "user jobs follow worker.retention_days");
    // A deleted job's events go with it (PostgreSQL has no cascading key on them any more).
    let conn = env.spine.db().connection().clone();
    let events_of = |id: JobId| {
        let conn = conn.clone();
        async move {
            use sea_orm::{ConnectionTrait, Statement};
            let backend = conn.get_database_backend();
            let sql = match backend {
                sea_orm::DbBackend::Postgres => "SELECT count(*) AS n FROM job_events WHERE job_id = $1",
                _ => "SELECT count(*) AS n FROM job_events WHERE job_id = ?",
            };
            let stmt = Statement::from_sql_and_values(backend, sql, [id.as_uuid().into()]);
            let row = conn.query_one_raw(stmt).await;
            row.expect("count").expect("a row").try_get::<i64>("", "n").expect("n")
        }
    };
    assert_eq!(events_of(system_ok).await, 0, "the sweep's events are gone");
    assert_eq!(events_of(user_ok).await, 3, "queued, started, finished");
    let deleted = store.delete_finished_before(chrono::Utc::now() + chrono::Duration::minutes(1)).await;
    assert_eq!(deleted.expect("delete"), 2);
    for id in [system_failed, user_ok] {
        assert!(store.get(id).await.expect("get").is_none());
        assert_eq!(events_of(id).await, 0);
    }
    env.stop().await;
}

/// One batch mixing the starts, log lines, progress and outcomes of several jobs answers each write as
/// it would be answered alone: stale epochs and attempts are refused, a cancelled job does not start,
/// and each job's events stay numbered in order.
async fn batched_attempt_writes_keep_fencing_and_order(mode: Mode) {
    use sentinel_jobs::domain::{JobEventKind, LogStream, Progress};
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.store();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(store.insert(new_job()).await.expect("insert").0.id);
    }
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    // d is cancelled while queued: its start must be skipped.
    store.request_cancel(d).await.expect("cancel");
    let starts = store
        .write_attempts(vec![
            AttemptWrite::Start { id: a, attempt: 1, redelivery: false },
            AttemptWrite::Start { id: b, attempt: 1, redelivery: false },
            AttemptWrite::Start { id: c, attempt: 2, redelivery: false },
            AttemptWrite::Start { id: d, attempt: 1, redelivery: false },
        ])
        .await;
    let epoch = |r: &Result<AttemptWritten, DbError>| match r {
        Ok(AttemptWritten::Started(StartOutcome::Started(job, ev))) => {
            assert_eq!(ev.seq, 2);
            assert!(ev.id > 0, "the event has its place in the deployment-wide log");
            job.epoch
        }
        other => panic!("not started: {other:?}"),
    };
    let (ea, eb) = (epoch(&starts[0]), epoch(&starts[1]));
    assert!(matches!(&starts[2], Ok(AttemptWritten::Started(StartOutcome::Skip { why: "stale attempt", .. }))));
    assert!(matches!(&starts[3], Ok(AttemptWritten::Started(StartOutcome::Skip { .. }))), "{:?}", starts[3]);
    let progress = Progress { step: 1, total: 2, info: Some("half".into()) };
    let writes = store
        .write_attempts(vec![
            AttemptWrite::Append {
                id: a,
                epoch: ea,
                body: JobEventKind::Log { stream: LogStream::Stdout, line: "x".into() },
            },
            AttemptWrite::Append { id: b, epoch: eb, body: JobEventKind::Progress(progress.clone()) },
            // Same job twice in one batch: applied in order.
            AttemptWrite::Finish { id: a, epoch: ea, outcome: Finish::Succeeded(json!({ "n": 1 })), log: vec![] },
            AttemptWrite::Finish { id: b, epoch: eb + 7, outcome: Finish::Failed("stale".into()), log: vec![] },
        ])
        .await;
    assert!(matches!(&writes[0], Ok(AttemptWritten::Appended(ev)) if ev.seq == 3));
    assert!(matches!(&writes[1], Ok(AttemptWritten::Appended(ev)) if ev.seq == 3));
    assert!(
        matches!(&writes[2], Ok(AttemptWritten::Finished(job, ev)) if ev[0].seq == 4 && job.state == JobState::Succeeded)
    );
    assert!(matches!(&writes[3], Err(DbError::Fenced { .. })), "{:?}", writes[3]);
    let job_a = store.get(a).await.expect("get").expect("a");
    assert_eq!((job_a.state, job_a.result), (JobState::Succeeded, Some(json!({ "n": 1 }))));
    let job_b = store.get(b).await.expect("get").expect("b");
    assert_eq!((job_b.state, job_b.progress), (JobState::Running, Some(progress)));
    assert_eq!(store.get(d).await.expect("get").expect("d").state, JobState::Cancelled);
    let names: Vec<&str> = store.events(a, 0, 10).await.expect("events").iter().map(|e| e.body.name()).collect();
    assert_eq!(names, ["queued", "started", "log", "finished"]);
    // An outcome carrying the attempt's unwritten log: its lines come first, numbered in order, and
    // the last progress report among them is the row's progress.
    let done = Progress { step: 2, total: 2, info: Some("done".into()) };
    let log = vec![
        JobEventKind::Log { stream: LogStream::Stderr, line: "last".into() },
        JobEventKind::Progress(done.clone()),
    ];
    let finish_b = store
        .write_attempts(vec![AttemptWrite::Finish { id: b, epoch: eb, outcome: Finish::Failed("boom".into()), log }])
        .await;
    let Ok(AttemptWritten::Finished(job, events)) = &finish_b[0] else { panic!("not finished: {:?}", finish_b[0]) };
    assert_eq!((job.error.as_deref(), job.progress.clone()), (Some("boom"), Some(done)));
    let answered: Vec<(i64, &str)> = events.iter().map(|e| (e.seq, e.body.name())).collect();
    assert_eq!(answered, [(4, "log"), (5, "progress"), (6, "finished")]);
    assert!(events.windows(2).all(|w| w[0].id > 0 && w[0].id < w[1].id), "each has its place in the log, in order");
    let stored = store.events(b, 0, 10).await.expect("events");
    let names: Vec<&str> = stored.iter().map(|e| e.body.name()).collect();
    assert_eq!(names, ["queued", "started", "progress", "log", "progress", "finished"]);
    let tail: Vec<(i64, i64)> = stored[3..].iter().map(|e| (e.id, e.seq)).collect();
    assert_eq!(tail, events.iter().map(|e| (e.id, e.seq)).collect::<Vec<_>>(), "answered as stored");
    env.stop().await;
}

/// A store transaction that reads before it writes still commits when the job store's writer commits
/// in between. On SQLite it holds the write lock from its `BEGIN IMMEDIATE` (the job write waits); a
/// deferred one failed at its first write with "database is locked" (`SQLITE_BUSY_SNAPSHOT`), which
/// failed a monitoring check under `sentinel up`.
async fn a_transaction_that_reads_first_survives_a_concurrent_job_write(mode: Mode) {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let env = Env::spine_only(mode, &[]).await;
    let conn = env.spine.db().connection();
    let txn = conn.begin_with_options(sentinel_jobs::db::WRITE_TRANSACTION).await.expect("begin");
    let count = Statement::from_string(txn.get_database_backend(), "SELECT count(*) AS n FROM jobs");
    txn.query_one_raw(count).await.expect("read first");
    let store = env.spine.store().clone();
    let concurrent = tokio::spawn(async move { store.insert(new_job()).await });
    // Long enough for the concurrent insert to commit, had nothing held it back.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (mine, _) = sentinel_jobs::db::JobStore::insert_in(&txn, new_job()).await.expect("then write");
    txn.commit().await.expect("commit");
    let (theirs, _) = concurrent.await.expect("join").expect("the concurrent insert");
    for id in [mine.id, theirs.id] {
        assert!(env.spine.store().get(id).await.expect("get").is_some(), "{id} stored");
    }
    env.stop().await;
}
