//! Outages that lose nothing, with the real binaries on private servers the tests stop and start:
//! PostgreSQL away for 30 s and Redis away for 30 s while 50 jobs are queued or running and enqueues
//! keep arriving (every accepted job then succeeds exactly once; nothing fails or is dead-lettered),
//! and a SIGKILLed worker whose jobs start again within 15 s at the default lease.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sentinel_jobs::Spine;
use sentinel_jobs::domain::{JobEventKind, JobId, JobState, QueueName};
use sentinel_testkit::{PostgresServer, RedisServer, TEST_TOKEN};
use serde_json::{Value, json};

use crate::distributed::Cluster;
use crate::procs::{Proc, client, wait_ready};

const OUTAGE: Duration = Duration::from_secs(30);

/// A gateway, a worker and a scheduler (which runs the outbox relay) on the cluster.
async fn deployment(cluster: &Cluster) -> Vec<Proc> {
    cluster.migrate();
    let mut procs = vec![
        cluster.start("api-gateway", &[("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN)]),
        cluster.start("backup-worker", &[("SENTINEL_WORKER__CONCURRENCY", "8")]),
        cluster.start("scheduler", &[]),
    ];
    for p in &mut procs {
        wait_ready(p, "/ready", Duration::from_secs(30)).await;
    }
    procs
}

/// One enqueue through the API: the status, the job id when accepted, and `Retry-After` if any.
async fn enqueue(base: &str, seconds: u64) -> (u16, Option<String>, Option<String>) {
    let sent = client()
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(TEST_TOKEN)
        .json(&json!({ "kind": "demo.sleep", "payload": { "seconds": seconds } }))
        .send()
        .await;
    let Ok(r) = sent else { return (0, None, None) };
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["id"].as_str().map(str::to_owned), retry_after)
}

/// Enqueues 50 jobs of 2 s through the API and waits until the first of them are running.
async fn fifty_jobs_some_running(base: &str) -> Vec<String> {
    let mut accepted = Vec::new();
    for _ in 0..50 {
        let (status, id, _) = enqueue(base, 2).await;
        assert_eq!(status, 201);
        accepted.extend(id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    accepted
}

/// Enqueues every 250 ms for `length`; returns the statuses seen and the ids accepted.
async fn keep_enqueueing(base: &str, length: Duration) -> (Vec<(u16, Option<String>)>, Vec<String>) {
    let until = Instant::now() + length;
    let (mut statuses, mut accepted) = (Vec::new(), Vec::new());
    while Instant::now() < until {
        let (status, id, retry_after) = enqueue(base, 0).await;
        statuses.push((status, retry_after));
        accepted.extend(id);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (statuses, accepted)
}

/// Every accepted job succeeds exactly once; nothing failed and no message was dead-lettered.
async fn assert_all_succeed_once(spine: &Spine, accepted: &[String], timeout: Duration) {
    let ids: Vec<JobId> = accepted.iter().map(|id| id.parse().expect("job id")).collect();
    let deadline = Instant::now() + timeout;
    for id in &ids {
        loop {
            let job = spine.store().get(*id).await.expect("read").expect("an accepted job exists");
            assert!(
                !matches!(job.state, JobState::Failed | JobState::Cancelled),
                "job {id} ended {}: {:?}",
                job.state,
                job.error
            );
            if job.state == JobState::Succeeded {
                break;
            }
            assert!(Instant::now() < deadline, "job {id} still {} after the outage", job.state);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let events = spine.store().events(*id, 0, 1000).await.expect("events");
        let finished = events.iter().filter(|e| matches!(e.body, JobEventKind::Finished { .. })).count();
        assert_eq!(finished, 1, "job {id} has exactly one outcome");
        assert!(!events.iter().any(|e| matches!(e.body, JobEventKind::DeadLettered { .. })), "job {id} dead-lettered");
    }
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    for queue in ["default", "backup"] {
        let queue = QueueName::parse(queue).expect("queue");
        let dead = spine.bus().dead_letters(&queue, 100).await.expect("dead letters");
        assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_nothing_and_enqueues_get_503() {
    let pg = PostgresServer::start().expect("a private PostgreSQL");
    let cluster = Cluster::on(&pg.url(), &sentinel_testkit::redis_url(), &[]);
    let procs = deployment(&cluster).await;
    let base = procs[0].url("");
    let spine = cluster.spine().await;

    let mut accepted = fifty_jobs_some_running(&base).await;
    pg.stop().expect("stop postgres");
    let (statuses, during) = keep_enqueueing(&base, OUTAGE).await;
    pg.resume().expect("restart postgres");
    accepted.extend(during);

    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!refused.is_empty(), "enqueues during the outage are refused with 503: {statuses:?}");
    assert!(refused.iter().all(|(_, retry)| retry.is_some()), "every 503 says when to retry: {statuses:?}");
    assert!(statuses.iter().all(|(s, _)| matches!(s, 201 | 503)), "only 201 or 503 during the outage: {statuses:?}");
    // The gateway answers at once, not after a pool timeout: 30 s of enqueues every 250 ms.
    assert!(statuses.len() >= 60, "the gateway kept answering quickly: {} answers", statuses.len());

    let (after, _) = keep_enqueueing(&base, Duration::from_secs(3)).await;
    assert!(after.iter().any(|(s, _)| *s == 201), "enqueues are accepted again: {after:?}");
    assert_all_succeed_once(&spine, &accepted, Duration::from_secs(120)).await;
    let log = procs.iter().map(|p| p.output()).collect::<String>();
    assert!(!log.contains("worker died or lost its lease"), "no outage counted as a crash:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_nothing() {
    let mut redis = RedisServer::start().expect("a private redis-server");
    let db = sentinel_testkit::TestDb::postgres().await.expect("postgres");
    let cluster = Cluster::on(&db.url, &redis.url(), &[]);
    let procs = deployment(&cluster).await;
    let base = procs[0].url("");
    let spine = cluster.spine().await;

    let mut accepted = fifty_jobs_some_running(&base).await;
    // Redis without persistence: everything it held is gone when it comes back.
    redis.kill();
    let (statuses, during) = keep_enqueueing(&base, OUTAGE).await;
    redis.restart().expect("restart redis");
    accepted.extend(during);
    assert!(statuses.iter().all(|(s, _)| *s == 201), "the database is up: enqueues are accepted: {statuses:?}");
    assert_all_succeed_once(&spine, &accepted, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_start_again_within_15_s() {
    let db = sentinel_testkit::TestDb::postgres().await.expect("postgres");
    let cluster = Cluster::on(&db.url, &sentinel_testkit::redis_url(), &[]);
    cluster.migrate();
    let spine = cluster.spine().await;
    let mut doomed = cluster.start("backup-worker", &[("SENTINEL_WORKER__CONCURRENCY", "4")]);
    wait_ready(&mut doomed, "/ready", Duration::from_secs(30)).await;
    let kind = sentinel_jobs::domain::JobKind::parse(sentinel_jobs::domain::builtin::DEMO_SLEEP).expect("kind");
    let mut ids = Vec::new();
    for _ in 0..4 {
        let req = sentinel_jobs::EnqueueRequest::new(kind.clone(), json!({ "seconds": 3 }));
        ids.push(spine.enqueue(req).await.expect("enqueue").job.id);
    }
    for id in &ids {
        let found = sentinel_testkit::eventually(Duration::from_secs(15), || async {
            (spine.store().get(*id).await.ok()??.state == JobState::Running).then_some(())
        })
        .await;
        assert!(found.is_some(), "job {id} started");
    }
    let mut survivor = cluster.start("provision-worker", &[("SENTINEL_WORKER__CONCURRENCY", "4")]);
    wait_ready(&mut survivor, "/ready", Duration::from_secs(30)).await;
    doomed.signal("-KILL");
    let killed_at = chrono::Utc::now();
    for id in &ids {
        let restarted = sentinel_testkit::eventually(Duration::from_secs(30), || async {
            let events = spine.store().events(*id, 0, 1000).await.ok()?;
            events
                .iter()
                .filter(|e| matches!(e.body, JobEventKind::Started { .. }))
                .map(|e| e.at)
                .find(|at| *at > killed_at)
        })
        .await
        .unwrap_or_else(|| panic!("job {id} never started again"));
        let after = (restarted - killed_at).to_std().unwrap_or_default();
        assert!(after <= Duration::from_secs(15), "job {id} restarted {after:?} after the kill (default lease)");
    }
    assert_all_succeed_once(&spine, &ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(), Duration::from_secs(30))
        .await;
}
