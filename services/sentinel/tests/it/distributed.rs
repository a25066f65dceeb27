//! The distributed mode: the five service binaries as separate processes on PostgreSQL + Redis.

use std::collections::HashMap;
use std::time::Duration;

use sentinel_jobs::db::JobFilter;
use sentinel_jobs::domain::{DeadLetterReason, JobEventKind, JobKind, JobState, QueueName, builtin};
use sentinel_jobs::{Catalog, EnqueueRequest, Spine};
use sentinel_testkit::{TEST_TOKEN, TestDb};
use serde_json::{Value, json};

use crate::procs::{Proc, client, get_json, get_text, wait_job_state, wait_ready};

/// One distributed deployment's shared settings (fresh database, own Redis prefix).
pub struct Cluster {
    env: HashMap<String, String>,
    db_url: String,
    redis_url: String,
    _db: Option<TestDb>,
    prefix: String,
    logs: tempfile::TempDir,
}

impl Cluster {
    /// On the shared test servers, with short leases (2 s) so crash tests are quick.
    pub async fn new(extra: &[(&str, &str)]) -> Self {
        let db = TestDb::postgres().await.expect("postgres");
        let mut with_short_leases =
            vec![("SENTINEL_BUS__VISIBILITY_TIMEOUT_MS", "2000"), ("SENTINEL_BUS__BLOCK_MS", "500")];
        with_short_leases.extend_from_slice(extra);
        let mut cluster = Self::on(&db.url, &sentinel_testkit::redis_url(), &with_short_leases);
        cluster._db = Some(db);
        cluster
    }

    /// On the given database and Redis (a test's private servers), with default leases.
    pub fn on(db_url: &str, redis_url: &str, extra: &[(&str, &str)]) -> Self {
        let prefix = sentinel_testkit::unique_prefix();
        let mut env: HashMap<String, String> = [
            ("SENTINEL_DATABASE__URL", db_url),
            ("SENTINEL_BUS__BACKEND", "redis"),
            ("SENTINEL_BUS__REDIS_URL", redis_url),
            ("SENTINEL_BUS__PREFIX", &prefix),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let logs = tempfile::tempdir().expect("tempdir");
        // The master key as deployments hand it over: a file only its owner can read.
        let key_file = logs.path().join("master.key");
        std::fs::write(&key_file, sentinel_testkit::TEST_MASTER_KEY).expect("key file");
        std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        env.insert("SENTINEL_SECRETS__MASTER_KEY_FILE".to_owned(), key_file.display().to_string());
        Self { env, db_url: db_url.to_owned(), redis_url: redis_url.to_owned(), _db: None, prefix, logs }
    }

    pub fn migrate(&self) {
        let mut p = Proc::spawn("sentinel", &["migrate"], &self.env, 0, self.logs.path());
        let status = p.wait_exit(Duration::from_secs(60)).expect("migrate finishes");
        assert!(status.success(), "sentinel migrate failed:\n{}", p.output());
    }

    pub fn start(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let port = sentinel_testkit::free_port();
        let mut env = self.env.clone();
        env.insert("SENTINEL_HTTP__LISTEN".to_owned(), format!("127.0.0.1:{port}"));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Proc::spawn(name, &[], &env, port, self.logs.path())
    }

    /// An in-process spine on the same database and bus, to enqueue and inspect directly.
    pub async fn spine(&self) -> Spine {
        let settings = sentinel_testkit::settings(
            &self.db_url,
            "redis",
            &self.prefix,
            &[
                ("bus.visibility_timeout_ms", "2000"),
                ("database.auto_migrate", "false"),
                ("bus.redis_url", self.redis_url.as_str()),
            ],
        );
        Spine::connect(&settings, Catalog::builtin(true)).await.expect("spine")
    }
}

async fn wait_state(
    spine: &Spine,
    id: sentinel_jobs::domain::JobId,
    state: JobState,
    timeout: Duration,
) -> sentinel_jobs::db::JobRecord {
    let found = sentinel_testkit::eventually(timeout, || async {
        let job = spine.store().get(id).await.ok().flatten()?;
        (job.state == state).then_some(job)
    })
    .await;
    found.unwrap_or_else(|| panic!("job {id} did not reach {state}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_binaries_run_the_demo_task_end_to_end() {
    let cluster = Cluster::new(&[]).await;
    // Before migrating, a service refuses to start and says what to do.
    let mut early = cluster.start("provision-worker", &[]);
    let status = early.wait_exit(Duration::from_secs(30)).expect("refuses to start");
    assert!(!status.success());
    assert!(early.output().contains("sentinel migrate"), "{}", early.output());

    cluster.migrate();
    let mut gateway = cluster.start("api-gateway", &[("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN)]);
    let mut others: Vec<Proc> = ["provision-worker", "backup-worker", "monitor-worker", "scheduler"]
        .iter()
        .map(|n| cluster.start(n, &[]))
        .collect();
    wait_ready(&mut gateway, "/ready", Duration::from_secs(30)).await;
    for p in &mut others {
        wait_ready(p, "/ready", Duration::from_secs(30)).await;
        let (status, health) = get_json(&p.url("/health"), None).await;
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    }
    let base = gateway.url("");

    // Enqueue with a W3C trace context: the job carries the same trace id to the worker.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client()
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(TEST_TOKEN)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "kind": "demo.sleep", "payload": { "seconds": 2 } }))
        .send()
        .await
        .expect("enqueue");
    assert_eq!(r.status().as_u16(), 201);
    let job: Value = r.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_owned();
    let traceparent = job["trace_context"]["traceparent"].as_str().unwrap_or_default();
    assert!(traceparent.contains(trace_id), "trace context not propagated: {job}");

    let done = wait_job_state(&base, TEST_TOKEN, &id, "succeeded", Duration::from_secs(20)).await;
    assert_eq!(done["progress"]["step"], 2);
    assert_eq!(done["progress"]["total"], 2);
    assert_eq!(done["result"], json!({ "slept_seconds": 2 }));

    // Seed endpoints on the distributed gateway.
    let r =
        client().post(format!("{base}/tasks/enqueue?seconds=0")).bearer_auth(TEST_TOKEN).send().await.expect("enqueue");
    let seed_id = r.json::<Value>().await.expect("json")["jobId"].as_str().expect("id").to_owned();
    wait_job_state(&base, TEST_TOKEN, &seed_id, "succeeded", Duration::from_secs(20)).await;
    let (_, counts) = get_json(&format!("{base}/tasks/counts"), Some(TEST_TOKEN)).await;
    assert_eq!(counts["succeeded"], 2);

    // Metrics: HTTP by route and status on the gateway, job outcomes and stream depth on workers.
    let gm = get_text(&gateway.url("/metrics")).await;
    assert!(gm.contains("sentinel_http_requests_total{") && gm.contains("route=\"/api/v1/jobs\""), "{gm}");
    let mut worker_metrics = String::new();
    for p in &others {
        worker_metrics.push_str(&get_text(&p.url("/metrics")).await);
    }
    assert!(worker_metrics.contains("sentinel_jobs_succeeded_total{kind=\"demo.sleep\"}"), "{worker_metrics}");
    assert!(worker_metrics.contains("sentinel_queue_wait_seconds_bucket"), "{worker_metrics}");
    assert!(worker_metrics.contains("sentinel_stream_pending{stream=\"default:normal\"}"), "{worker_metrics}");
    assert!(worker_metrics.contains("sentinel_stream_oldest_pending_age_seconds"), "{worker_metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_loses_nothing_and_the_job_succeeds_once() {
    let cluster = Cluster::new(&[]).await;
    cluster.migrate();
    let spine = cluster.spine().await;
    let mut workers = vec![cluster.start("provision-worker", &[]), cluster.start("backup-worker", &[])];
    for w in &mut workers {
        wait_ready(w, "/ready", Duration::from_secs(30)).await;
    }
    let kind = JobKind::parse(builtin::DEMO_SLEEP).expect("kind");
    let job = spine.enqueue(EnqueueRequest::new(kind, json!({ "seconds": 4 }))).await.expect("enqueue").job;
    wait_state(&spine, job.id, JobState::Running, Duration::from_secs(15)).await;

    // Find the worker holding the job and SIGKILL it mid-job.
    let mut holder = None;
    for (i, w) in workers.iter().enumerate() {
        if get_text(&w.url("/metrics")).await.contains("sentinel_jobs_started_total{kind=\"demo.sleep\"}") {
            holder = Some(i);
        }
    }
    let holder = holder.expect("one worker started the job");
    workers[holder].signal("-KILL");

    let done = wait_state(&spine, job.id, JobState::Succeeded, Duration::from_secs(30)).await;
    assert_eq!(done.result, Some(json!({ "slept_seconds": 4 })));
    let events = spine.store().events(job.id, 0, 1000).await.expect("events");
    let started = events.iter().filter(|e| matches!(e.body, JobEventKind::Started { .. })).count();
    let finished: Vec<_> = events.iter().filter(|e| matches!(e.body, JobEventKind::Finished { .. })).collect();
    assert_eq!(started, 2, "the survivor reclaimed and restarted the job");
    assert_eq!(finished.len(), 1, "exactly one outcome: {finished:?}");
    assert!(matches!(finished[0].body, JobEventKind::Finished { state: JobState::Succeeded, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_crashing_its_worker_is_dead_lettered_while_others_carry_on() {
    let cluster =
        Cluster::new(&[("SENTINEL_WORKER__FAULT_INJECTION", "true"), ("SENTINEL_BUS__MAX_DELIVERIES", "2")]).await;
    cluster.migrate();
    let spine = cluster.spine().await;
    let mut workers: Vec<Proc> =
        ["provision-worker", "backup-worker", "monitor-worker"].iter().map(|n| cluster.start(n, &[])).collect();
    for w in &mut workers {
        wait_ready(w, "/ready", Duration::from_secs(30)).await;
    }
    let crash = spine
        .enqueue(EnqueueRequest::new(JobKind::parse(builtin::FAULT_CRASH).expect("kind"), json!({})))
        .await
        .expect("enqueue")
        .job;
    let failed = wait_state(&spine, crash.id, JobState::Failed, Duration::from_secs(60)).await;
    assert!(failed.error.as_deref().unwrap_or("").contains("worker died"), "{:?}", failed.error);
    let queue = QueueName::parse(builtin::DEFAULT_QUEUE).expect("queue");
    let dead = spine.bus().dead_letters(&queue, 10).await.expect("dead letters");
    assert!(dead.iter().any(|d| d.message.job_id == crash.id && d.reason == DeadLetterReason::WorkerCrash), "{dead:?}");
    let alive = workers.iter_mut().map(|w| w.is_running()).filter(|r| *r).count();
    assert_eq!(alive, 1, "two deliveries killed two workers; the third quarantined the job and lives");

    // The fleet keeps going.
    let kind = JobKind::parse(builtin::DEMO_SLEEP).expect("kind");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            spine.enqueue(EnqueueRequest::new(kind.clone(), json!({ "seconds": 0 }))).await.expect("enqueue").job.id,
        );
    }
    for id in ids {
        wait_state(&spine, id, JobState::Succeeded, Duration::from_secs(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_job_finish_before_exit() {
    let cluster = Cluster::new(&[]).await;
    cluster.migrate();
    let spine = cluster.spine().await;
    let mut worker = cluster.start("monitor-worker", &[("SENTINEL_WORKER__SHUTDOWN_GRACE_MS", "10000")]);
    wait_ready(&mut worker, "/ready", Duration::from_secs(30)).await;
    let kind = JobKind::parse(builtin::DEMO_SLEEP).expect("kind");
    let job = spine.enqueue(EnqueueRequest::new(kind, json!({ "seconds": 2 }))).await.expect("enqueue").job;
    wait_state(&spine, job.id, JobState::Running, Duration::from_secs(15)).await;
    worker.signal("-TERM");
    let status = worker.wait_exit(Duration::from_secs(20)).expect("exits after draining");
    assert!(status.success(), "{}", worker.output());
    let done = spine.store().get(job.id).await.expect("get").expect("exists");
    assert_eq!(done.state, JobState::Succeeded, "the in-flight job finished before exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_by_a_gateway_that_died_before_publishing_still_runs() {
    let cluster = Cluster::new(&[("SENTINEL_RELAY__GRACE_MS", "200"), ("SENTINEL_RELAY__INTERVAL_MS", "200")]).await;
    cluster.migrate();
    let spine = cluster.spine().await;
    // This gateway aborts right after committing the job row, before publishing its message.
    let mut gateway = cluster.start(
        "api-gateway",
        &[
            ("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN),
            ("SENTINEL_WORKER__FAULT_INJECTION", "true"),
            ("SENTINEL_FAILPOINT", "enqueue-after-commit"),
        ],
    );
    let mut worker = cluster.start("provision-worker", &[]);
    wait_ready(&mut gateway, "/ready", Duration::from_secs(30)).await;
    wait_ready(&mut worker, "/ready", Duration::from_secs(30)).await;
    let sent = client()
        .post(gateway.url("/api/v1/jobs"))
        .bearer_auth(TEST_TOKEN)
        .json(&json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } }))
        .send()
        .await;
    assert!(sent.is_err(), "the gateway should have died mid-request");
    assert!(gateway.wait_exit(Duration::from_secs(10)).is_some_and(|s| !s.success()));
    // Follow this job only: the scheduler started below also queues its own sweeps on the
    // `default` queue, which this worker runs too.
    let org = spine.db().access().org_by_name("default").await.expect("query").expect("bootstrap org").id;
    let demo = JobFilter { kind: Some(JobKind::parse(builtin::DEMO_SLEEP).expect("kind")), ..JobFilter::default() };
    let jobs = spine.store().list(org, &demo, None, 10).await.expect("list");
    assert_eq!(jobs.len(), 1, "the row was committed");
    assert_eq!(jobs[0].state, JobState::Queued, "nothing has published it yet");
    let job = jobs[0].id;
    // The scheduler's relay publishes it, and the worker runs it.
    let mut scheduler = cluster.start("scheduler", &[]);
    wait_ready(&mut scheduler, "/ready", Duration::from_secs(30)).await;
    let ran = sentinel_testkit::eventually(Duration::from_secs(20), || async {
        let state = spine.store().get(job).await.ok()??.state;
        (state == JobState::Succeeded).then_some(())
    })
    .await;
    assert!(ran.is_some(), "the relay never published the committed job");
}
