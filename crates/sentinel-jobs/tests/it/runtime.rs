//! The worker runtime end to end: success with progress, retries into the dead-letter stream, cancel of
//! queued and running jobs, delayed jobs, the outbox relay, and recovery after a Redis restart.

use std::time::Duration;

use chrono::Utc;
use sentinel_jobs::domain::{DeadLetterReason, JobEventKind, JobState, QueueName, RetryPolicy, builtin};
use sentinel_jobs::{EnqueueRequest, Relay};
use serde_json::json;

use crate::both_modes;
use crate::helpers::{Env, Mode};

both_modes!(
    demo_job_reports_progress_and_result,
    failing_job_retries_with_backoff_then_dead_letters,
    queued_job_is_cancelled_before_it_runs,
    running_job_is_cancelled_promptly_and_not_retried,
    delayed_job_runs_at_its_time,
    committed_but_unpublished_job_is_published_by_the_relay,
    an_idle_queue_holds_no_slot_of_a_busy_one,
    a_chatty_handler_s_events_are_all_logged_in_order_before_its_outcome,
);

async fn demo_job_reports_progress_and_result(mode: Mode) {
    let env = Env::start(mode, &[]).await;
    let job = env.enqueue(builtin::DEMO_SLEEP, json!({ "seconds": 2 })).await;
    assert_eq!(job.state, JobState::Queued);
    // On the in-process bus the row goes in marked published (that publish cannot fail); on Redis
    // it is marked after the message is on the bus.
    assert_eq!(job.published, matches!(mode, Mode::Embedded), "published at insert");
    let done = env.wait_for(job.id, JobState::Succeeded, Duration::from_secs(15)).await;
    assert!(done.published);
    assert_eq!(done.result, Some(json!({ "slept_seconds": 2 })));
    let progress = done.progress.expect("progress");
    assert_eq!((progress.step, progress.total), (2, 2));
    let events = env.spine.store().events(job.id, 0, 100).await.expect("events");
    let names: Vec<&str> = events.iter().map(|e| e.body.name()).collect();
    assert_eq!(names, ["queued", "started", "log", "progress", "progress", "finished"]);
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    env.stop().await;
}

async fn failing_job_retries_with_backoff_then_dead_letters(mode: Mode) {
    let env = Env::start(mode, &[]).await;
    let mut req =
        EnqueueRequest::new(sentinel_jobs::domain::JobKind::parse(builtin::FAULT_FAIL).expect("kind"), json!({}));
    req.retry = Some(RetryPolicy { max_attempts: 3, backoff_base_ms: 200, backoff_max_ms: 1000 });
    let job = env.enqueue_with(req).await;
    let failed = env.wait_for(job.id, JobState::Failed, Duration::from_secs(20)).await;
    assert_eq!(failed.attempt, 3);
    assert!(failed.error.as_deref().unwrap_or("").contains("attempt 3"), "{:?}", failed.error);
    let events = env.spine.store().events(job.id, 0, 100).await.expect("events");
    let retries: Vec<_> = events.iter().filter(|e| matches!(e.body, JobEventKind::Retrying { .. })).collect();
    assert_eq!(retries.len(), 2);
    // Backoff: each retry waited at least half its base delay.
    let starts: Vec<_> =
        events.iter().filter(|e| matches!(e.body, JobEventKind::Started { .. })).map(|e| e.at).collect();
    assert_eq!(starts.len(), 3);
    assert!(starts[1] - starts[0] >= chrono::Duration::milliseconds(100));
    assert!(starts[2] - starts[1] >= chrono::Duration::milliseconds(200));
    let queue = QueueName::parse(builtin::DEFAULT_QUEUE).expect("valid");
    let dead = sentinel_testkit::eventually(Duration::from_secs(5), || async {
        let dl = env.spine.bus().dead_letters(&queue, 10).await.expect("dead letters");
        dl.into_iter().find(|d| d.message.job_id == job.id)
    })
    .await
    .expect("job in the dead-letter stream");
    assert_eq!(dead.reason, DeadLetterReason::HandlerError);
    env.stop().await;
}

async fn queued_job_is_cancelled_before_it_runs(mode: Mode) {
    let env = Env::start(mode, &[]).await;
    let mut req = EnqueueRequest::new(
        sentinel_jobs::domain::JobKind::parse(builtin::DEMO_SLEEP).expect("kind"),
        json!({ "seconds": 0 }),
    );
    req.run_at = Some(Utc::now() + chrono::Duration::seconds(2));
    let job = env.enqueue_with(req).await;
    let outcome = env.spine.store().request_cancel(job.id).await.expect("cancel");
    assert!(matches!(outcome, sentinel_jobs::db::CancelOutcome::Cancelled(_)), "{outcome:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = env.get(job.id).await;
    assert_eq!(after.state, JobState::Cancelled);
    assert!(after.started_at.is_none(), "a cancelled job must never start");
    env.stop().await;
}

async fn running_job_is_cancelled_promptly_and_not_retried(mode: Mode) {
    let env = Env::start(mode, &[]).await;
    let job = env.enqueue(builtin::DEMO_SLEEP, json!({ "seconds": 60 })).await;
    env.wait_for(job.id, JobState::Running, Duration::from_secs(10)).await;
    let outcome = env.spine.store().request_cancel(job.id).await.expect("cancel");
    let sentinel_jobs::db::CancelOutcome::Requested(ev) = outcome else {
        panic!("expected a cancel request, got {outcome:?}")
    };
    env.spine.broadcast(&ev).await;
    let cancelled = env.wait_for(job.id, JobState::Cancelled, Duration::from_secs(3)).await;
    assert_eq!(cancelled.attempt, 1, "a cancelled job is not retried");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.get(job.id).await.state, JobState::Cancelled);
    env.stop().await;
}

async fn delayed_job_runs_at_its_time(mode: Mode) {
    let env = Env::start(mode, &[]).await;
    let mut req = EnqueueRequest::new(
        sentinel_jobs::domain::JobKind::parse(builtin::DEMO_SLEEP).expect("kind"),
        json!({ "seconds": 0 }),
    );
    let run_at = Utc::now() + chrono::Duration::milliseconds(1500);
    req.run_at = Some(run_at);
    let job = env.enqueue_with(req).await;
    let done = env.wait_for(job.id, JobState::Succeeded, Duration::from_secs(10)).await;
    let started = done.started_at.expect("started");
    assert!(started >= run_at, "started {started} before its time {run_at}");
    assert!(started - run_at < chrono::Duration::seconds(2), "started {started}, due {run_at}");
    env.stop().await;
}

async fn committed_but_unpublished_job_is_published_by_the_relay(mode: Mode) {
    use sea_orm::TransactionTrait;
    let env = Env::start(mode, &[]).await;
    let new = |seconds: u64| sentinel_jobs::db::NewJob {
        id: sentinel_jobs::domain::JobId::new(),
        kind: sentinel_jobs::domain::JobKind::parse(builtin::DEMO_SLEEP).expect("kind"),
        queue: QueueName::parse(builtin::DEFAULT_QUEUE).expect("queue"),
        priority: Default::default(),
        payload: json!({ "seconds": seconds }),
        retry: RetryPolicy::default(),
        run_at: None,
        trace_context: Default::default(),
        requested_by: None,
        org_id: None,
        dedup_key: None,
    };
    // The enqueuer "dies" right after commit: the row exists, no message was published.
    let conn = env.spine.db().connection();
    let txn = conn.begin().await.expect("begin");
    let (committed, _) = sentinel_jobs::db::JobStore::insert_in(&txn, new(0)).await.expect("insert");
    txn.commit().await.expect("commit");
    // A rolled-back enqueue must never be published or run.
    let txn = conn.begin().await.expect("begin");
    let (rolled_back, _) = sentinel_jobs::db::JobStore::insert_in(&txn, new(0)).await.expect("insert");
    txn.rollback().await.expect("rollback");

    let done = env.wait_for(committed.id, JobState::Succeeded, Duration::from_secs(10)).await;
    assert!(done.published);
    assert!(env.spine.store().get(rolled_back.id).await.expect("get").is_none());
    // Nothing left for the relay, and the relay never ran the rolled-back id.
    assert_eq!(Relay::new(env.spine.clone()).run_once().await.expect("relay"), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_carry_on_after_redis_restarts_under_them() {
    let mut redis = sentinel_testkit::RedisServer::start().expect("redis-server");
    let url = redis.url();
    let mut env = Env::start(
        Mode::Distributed,
        &[("bus.redis_url", url.as_str()), ("relay.stuck_after_ms", "4000"), ("worker.concurrency", "4")],
    )
    .await;
    env.add_worker("idle-worker");
    // Busy: jobs running while Redis dies. Idle: the second worker has nothing to do.
    let busy: Vec<_> = futures_join(&env, 3, 2).await;
    env.wait_for(busy[0], JobState::Running, Duration::from_secs(10)).await;

    redis.restart().expect("restart");

    // Work enqueued after the restart runs, and work Redis forgot (it had no persistence) is repaired.
    let after: Vec<_> = futures_join(&env, 4, 0).await;
    for id in busy.iter().chain(after.iter()) {
        env.wait_for(*id, JobState::Succeeded, Duration::from_secs(30)).await;
    }
    env.stop().await;
}

async fn futures_join(env: &Env, n: usize, seconds: u64) -> Vec<sentinel_jobs::domain::JobId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(env.enqueue(builtin::DEMO_SLEEP, json!({ "seconds": seconds })).await.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_whole_process_group_after_the_grace_period() {
    let env = Env::start(Mode::Embedded, &[("worker.cancel_grace_ms", "500")]).await;
    let job = env.enqueue(builtin::FAULT_SUBPROCESS, json!({})).await;
    // The shell (which ignores SIGTERM) reports its grandchild's pid in the job log.
    let pids = sentinel_testkit::eventually(Duration::from_secs(10), || async {
        let events = env.spine.store().events(job.id, 0, 100).await.ok()?;
        let mut pids = Vec::new();
        for e in events {
            if let JobEventKind::Log { line, .. } = e.body {
                if let Some(p) = line.strip_prefix("child ") {
                    pids.push(p.trim().to_owned());
                }
                if let Some(p) = line.strip_prefix("started process group ") {
                    pids.push(p.trim().to_owned());
                }
            }
        }
        (pids.len() == 2).then_some(pids)
    })
    .await
    .expect("the subprocess tree started");
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} should be running");
    }
    let outcome = env.spine.store().request_cancel(job.id).await.expect("cancel");
    let sentinel_jobs::db::CancelOutcome::Requested(ev) = outcome else {
        panic!("expected a cancel request, got {outcome:?}")
    };
    env.spine.broadcast(&ev).await;
    let cancelled = env.wait_for(job.id, JobState::Cancelled, Duration::from_secs(10)).await;
    assert_eq!(cancelled.attempt, 1);
    // Nothing of the tree survives (a zombie reaped later would show as absent or 'Z').
    let gone = sentinel_testkit::eventually(Duration::from_secs(5), || async {
        pids.iter()
            .all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
            })
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "processes {pids:?} outlived the cancel");
    env.stop().await;
}

/// A worker with one slot consuming an idle queue and a busy one: the idle queue's blocking read (20 s
/// here) must not hold the slot, or each job of the busy queue waits for that read to time out.
async fn an_idle_queue_holds_no_slot_of_a_busy_one(mode: Mode) {
    let extra = [
        ("worker.concurrency", "1"),
        ("bus.block_ms", "20000"),
        ("bus.visibility_timeout_ms", "60000"),
        ("relay.stuck_after_ms", "120000"),
    ];
    let mut env = Env::spine_only(mode, &extra).await;
    env.add_worker_on("two-queues", &["idle", builtin::DEFAULT_QUEUE]);
    // Let both consume loops reach their blocking reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(env.enqueue(builtin::DEMO_SLEEP, json!({ "seconds": 0 })).await);
    }
    for job in jobs {
        env.wait_for(job.id, JobState::Succeeded, Duration::from_secs(10)).await;
    }
    env.stop().await;
}

/// Writes `LINES` log lines with a progress report after every hundredth as fast as it can, then
/// succeeds: more than the attempt's writer holds queued, so it waits and commits them in groups.
struct Chatty;

const LINES: u64 = 700;

#[async_trait::async_trait]
impl sentinel_jobs::JobHandler for Chatty {
    async fn run(&self, ctx: &sentinel_jobs::JobContext) -> Result<serde_json::Value, sentinel_jobs::JobError> {
        for i in 0..LINES {
            ctx.log(sentinel_jobs::domain::LogStream::Stdout, format!("line {i}")).await?;
            if i % 100 == 99 {
                ctx.progress(i + 1, LINES, None).await?;
            }
        }
        Ok(json!({ "lines": LINES }))
    }
}

/// A handler's log lines and progress are handed to the attempt's writer without waiting for their
/// commits; every one must still be in the job's log, in the order written, numbered without a gap,
/// before the outcome, which comes last.
async fn a_chatty_handler_s_events_are_all_logged_in_order_before_its_outcome(mode: Mode) {
    let mut env = Env::spine_only(mode, &[("worker.concurrency", "4")]).await;
    let kind = sentinel_jobs::domain::JobKind::parse(builtin::DEMO_SLEEP).expect("kind");
    let handlers = std::collections::HashMap::from([(
        kind,
        std::sync::Arc::new(Chatty) as std::sync::Arc<dyn sentinel_jobs::JobHandler>,
    )]);
    env.add_worker_with("chatty", &[builtin::DEFAULT_QUEUE], handlers);
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(env.enqueue(builtin::DEMO_SLEEP, json!({ "seconds": 0 })).await);
    }
    for job in jobs {
        let done = env.wait_for(job.id, JobState::Succeeded, Duration::from_secs(60)).await;
        assert_eq!(done.result, Some(json!({ "lines": LINES })));
        let events = env.spine.store().events(job.id, 0, 1000).await.expect("events");
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "sequence numbers without a gap");
        let mut expected = vec!["queued".to_owned(), "started".to_owned()];
        for i in 0..LINES {
            expected.push(format!("line {i}"));
            if i % 100 == 99 {
                expected.push(format!("progress {}", i + 1));
            }
        }
        expected.push("finished".to_owned());
        let seen: Vec<String> = events
            .iter()
            .map(|e| match &e.body {
                JobEventKind::Log { line, .. } => line.clone(),
                JobEventKind::Progress(p) => format!("progress {}", p.step),
                other => other.name().to_owned(),
            })
            .collect();
        assert_eq!(seen, expected);
    }
    env.stop().await;
}
