//! Live updates across gateway replicas: a client disconnects from one gateway, 10,000 events happen,
//! it reconnects to the other gateway with Last-Event-ID and gets every event once, in order.

use std::time::Duration;

use sentinel_jobs::db::{NewJob, StartOutcome};
use sentinel_jobs::domain::{JobEventKind, JobId, JobKind, LogStream, QueueName, RetryPolicy, builtin};
use sentinel_testkit::{SseReader, TEST_TOKEN};
use serde_json::json;

use crate::distributed::Cluster;
use crate::procs::{Proc, client, wait_ready};

async fn open(gateway: &Proc, job: JobId, last: Option<i64>) -> SseReader {
    let mut req = client().get(gateway.url(&format!("/api/v1/jobs/{job}/stream"))).bearer_auth(TEST_TOKEN);
    if let Some(l) = last {
        req = req.header("Last-Event-ID", l.to_string());
    }
    // The default client has a 10 s total timeout; streams need none.
    let res = reqwest::Client::new().execute(req.build().expect("request")).await.expect("stream");
    assert_eq!(res.status(), 200);
    SseReader::new(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_replica_after_ten_thousand_events_loses_nothing() {
    let cluster = Cluster::new(&[]).await;
    cluster.migrate();
    let mut a = cluster.start("api-gateway", &[("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN)]);
    let mut b = cluster.start("api-gateway", &[("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN)]);
    wait_ready(&mut a, "/ready", Duration::from_secs(30)).await;
    wait_ready(&mut b, "/ready", Duration::from_secs(30)).await;
    let spine = cluster.spine().await;
    let org = spine.db().access().org_by_name("default").await.expect("query").expect("bootstrap org");

    // This test plays the worker: it owns a running attempt and writes its events.
    let (job, _) = spine
        .store()
        .insert(NewJob {
            id: JobId::new(),
            kind: JobKind::parse(builtin::DEMO_SLEEP).expect("kind"),
            queue: QueueName::parse("not-consumed").expect("queue"),
            priority: Default::default(),
            payload: json!({ "seconds": 0 }),
            retry: RetryPolicy::default(),
            run_at: None,
            trace_context: Default::default(),
            requested_by: None,
            org_id: Some(org.id),
            dedup_key: None,
        })
        .await
        .expect("insert");
    let StartOutcome::Started(attempt, started) = spine.store().start(job.id, 1, false).await.expect("start") else {
        panic!("not started")
    };
    spine.broadcast(&started).await;
    let (job_id, epoch) = (job.id, attempt.epoch);
    let log = |i: usize| JobEventKind::Log { stream: LogStream::Stdout, line: format!("line {i}") };
    let emit = |i: usize| {
        let spine = spine.clone();
        let body = log(i);
        async move {
            let ev = spine.store().append(job_id, epoch, body).await.expect("append");
            spine.broadcast(&ev).await;
        }
    };

    // Watch through gateway A for a while.
    let mut on_a = open(&a, job.id, None).await;
    for i in 0..5 {
        emit(i).await;
    }
    let mut last = 0;
    while last < 7 {
        let ev = on_a.next(Duration::from_secs(10)).await.expect("live event on A");
        let seq: i64 = ev.id.expect("id").parse().expect("int");
        assert_eq!(seq, last + 1, "in order, nothing skipped");
        last = seq;
    }
    drop(on_a);

    // 10,000 events while disconnected.
    for i in 5..10_005 {
        emit(i).await;
    }

    // Reconnect to gateway B: the backlog, then live events, each exactly once, in order.
    let mut on_b = open(&b, job.id, Some(last)).await;
    let mut received = 0;
    while last < 10_007 {
        let ev = on_b.next(Duration::from_secs(30)).await.expect("replayed event on B");
        let seq: i64 = ev.id.expect("id").parse().expect("int");
        assert_eq!(seq, last + 1, "in order, nothing skipped or repeated");
        last = seq;
        received += 1;
    }
    assert_eq!(received, 10_000);
    for i in 10_005..10_008 {
        emit(i).await;
    }
    while last < 10_010 {
        let ev = on_b.next(Duration::from_secs(10)).await.expect("live event on B");
        let seq: i64 = ev.id.expect("id").parse().expect("int");
        assert_eq!(seq, last + 1);
        assert_eq!(ev.data["line"], json!(format!("line {}", seq - 3)));
        last = seq;
    }
}
