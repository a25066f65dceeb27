//! `sentinel bench jobs`: the whole job path as users run it — a committed row, a message on the bus,
//! a real worker that records start and outcome — measured as drain (jobs queued first, then one
//! worker process empties the queue), end to end (enqueue and run at once), and bulk enqueue, on
//! PostgreSQL + Redis with a worker *process*, or embedded (SQLite + in-process bus, as `sentinel up`).
//! Figures go to docs/benchmarks.md next to BullMQ's, measured in the same session
//! (scripts/bench-bullmq.sh).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use sentinel_config::Settings;
use sentinel_jobs::domain::{JobKind, JobState, builtin};
use sentinel_jobs::{Catalog, EnqueueRequest, Spine, Worker, WorkerOptions, builtin_handlers};
use serde_json::json;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Mode {
    /// PostgreSQL + Redis, the worker a separate process (the backup-worker binary).
    Distributed,
    /// SQLite + in-process bus, everything in this process (as `sentinel up`).
    Embedded,
}

#[derive(Args)]
pub struct JobsBench {
    #[arg(long, value_enum, default_value = "distributed")]
    mode: Mode,
    /// Any database of the PostgreSQL server; the benchmark creates and drops its own.
    #[arg(
        long,
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        env = "SENTINEL_BENCH_DATABASE_URL"
    )]
    database_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379", env = "SENTINEL_BENCH_REDIS_URL")]
    redis_url: String,
    /// Jobs per run.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker concurrencies to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    concurrency: Vec<usize>,
    /// Items per bulk enqueue call.
    #[arg(long, default_value_t = 5_000)]
    bulk: usize,
    /// Concurrent single enqueues during the end-to-end run.
    #[arg(long, default_value_t = 64)]
    enqueuers: usize,
    /// The worker binary (default: backup-worker next to this binary).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
}

pub async fn run(args: JobsBench) -> anyhow::Result<()> {
    sentinel_telemetry::install_crypto_provider();
    println!(
        "| mode | concurrency | jobs | bulk enqueue (jobs/s) | drain (jobs/s) | single enqueue (jobs/s) | end-to-end (jobs/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &concurrency in &args.concurrency {
        let figures = match args.mode {
            Mode::Distributed => distributed(&args, concurrency).await?,
            Mode::Embedded => embedded(&args, concurrency).await?,
        };
        let mode = if args.mode == Mode::Distributed { "distributed" } else { "embedded" };
        println!(
            "| {mode} | {concurrency} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            args.jobs, figures.bulk, figures.drain, figures.single, figures.e2e
        );
    }
    if args.mode == Mode::Distributed {
        let (p50, p99) = commit_latency(&args).await?;
        println!();
        println!("one durable commit (single-row insert, sequential): p50 {p50:.3} ms, p99 {p99:.3} ms");
    }
    Ok(())
}

struct Figures {
    bulk: f64,
    drain: f64,
    single: f64,
    e2e: f64,
}

fn settings(
    db_url: &str,
    backend: &str,
    redis_url: &str,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<Settings> {
    let overrides = vec![
        ("database.url", db_url.to_owned()),
        ("database.auto_migrate", "true".to_owned()),
        ("bus.backend", backend.to_owned()),
        ("bus.redis_url", redis_url.to_owned()),
        ("bus.prefix", prefix.to_owned()),
        ("worker.concurrency", concurrency.to_string()),
        ("telemetry.log_level", "warn".to_owned()),
    ];
    Ok(Settings::load_from(None, &overrides)?)
}

fn demo(n: usize) -> Vec<EnqueueRequest> {
    let kind = JobKind::parse(builtin::DEMO_SLEEP).expect("built-in kind");
    (0..n).map(|_| EnqueueRequest::new(kind.clone(), json!({ "seconds": 0 }))).collect()
}

/// Bulk-enqueues `n` jobs; returns jobs per second.
async fn bulk_enqueue(spine: &Spine, n: usize, per_call: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let take = left.min(per_call.max(1));
        spine.enqueue_many(demo(take)).await.map_err(|e| anyhow::anyhow!("bulk enqueue: {e}"))?;
        left -= take;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Enqueues `n` jobs one by one from `tasks` concurrent callers; returns jobs per second.
async fn single_enqueues(spine: &Spine, n: usize, tasks: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let per_task = n.div_ceil(tasks.max(1));
    let mut set = tokio::task::JoinSet::new();
    let mut left = n;
    while left > 0 {
        let take = left.min(per_task);
        left -= take;
        let spine = spine.clone();
        set.spawn(async move {
            for req in demo(take) {
                spine.enqueue(req).await?;
            }
            Ok::<_, sentinel_jobs::EnqueueError>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done?.context("enqueue")?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Waits until `n` demo jobs created since `since` have succeeded.
async fn wait_succeeded(spine: &Spine, n: usize, already: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = spine.store().counts(None).await?;
        let done = counts.iter().find(|(s, _)| *s == JobState::Succeeded).map_or(0, |(_, n)| *n);
        let bad: u64 =
            counts.iter().filter(|(s, _)| matches!(s, JobState::Failed | JobState::Cancelled)).map(|(_, n)| n).sum();
        anyhow::ensure!(bad == 0, "{bad} job(s) failed or were cancelled during the benchmark");
        if done >= already + n as u64 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {} of {n} jobs finished in {timeout:?}", done - already);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// Jobs per second between `from` (first created or first started) and the last finish.
async fn rate_since(spine: &Spine, since: DateTime<Utc>, n: usize, from_start: bool) -> anyhow::Result<f64> {
    let kind = JobKind::parse(builtin::DEMO_SLEEP)?;
    let (created, started, finished) = spine.store().timing(&kind, since).await?;
    let first = if from_start { started } else { created };
    let (Some(first), Some(last)) = (first, finished) else { anyhow::bail!("no timing recorded") };
    let secs = (last - first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;
    Ok(n as f64 / secs)
}

async fn distributed(args: &JobsBench, concurrency: usize) -> anyhow::Result<Figures> {
    let scratch = sentinel_db::ScratchDatabase::create(&args.database_url, "sentinel_bench").await?;
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let settings = settings(&scratch.url, "redis", &args.redis_url, &prefix, concurrency)?;
    let spine = Spine::connect(&settings, Catalog::builtin(false)).await?;

    let since = Utc::now();
    let bulk = bulk_enqueue(&spine, args.jobs, args.bulk).await?;
    let mut worker = spawn_worker(args, &scratch.url, &prefix, concurrency)?;
    let outcome = with_worker_running(&spine, args, since, bulk).await;
    let _ = worker.start_kill();
    let _ = worker.wait().await;
    if let Ok(bus) = sentinel_bus::RedisBus::connect(&args.redis_url, &prefix, 2, Default::default()) {
        let _ = bus.purge().await;
    }
    drop(spine);
    scratch.drop_now().await?;
    outcome
}

fn spawn_worker(
    args: &JobsBench,
    db_url: &str,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<tokio::process::Child> {
    let bin = match &args.worker_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("backup-worker"),
    };
    anyhow::ensure!(
        bin.exists(),
        "worker binary {} not found: build it with `cargo build --release --workspace --bins` or pass --worker-bin",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    tokio::process::Command::new(&bin)
        .env("SENTINEL_DATABASE__URL", db_url)
        .env("SENTINEL_BUS__BACKEND", "redis")
        .env("SENTINEL_BUS__REDIS_URL", &args.redis_url)
        .env("SENTINEL_BUS__PREFIX", prefix)
        .env("SENTINEL_WORKER__CONCURRENCY", concurrency.to_string())
        .env("SENTINEL_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("SENTINEL_TELEMETRY__LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

async fn embedded(args: &JobsBench, concurrency: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let settings = settings(&url, "memory", &args.redis_url, "bench", concurrency)?;
    let spine = Spine::connect(&settings, Catalog::builtin(false)).await?;
    let shutdown = sentinel_telemetry::Shutdown::new();

    let since = Utc::now();
    let bulk = bulk_enqueue(&spine, args.jobs, args.bulk).await?;
    let queues = backup_worker::queues();
    let options = WorkerOptions::from_spine(&spine, "bench-worker", queues);
    let worker = tokio::spawn(Worker::new(spine.clone(), builtin_handlers(false), options).run(shutdown.clone()));
    let outcome = with_worker_running(&spine, args, since, bulk).await;
    shutdown.cancel();
    let _ = worker.await;
    outcome
}

/// With the worker started after the bulk enqueue at `since`: waits for the drain, then measures
/// single enqueues and end to end.
async fn with_worker_running(
    spine: &Spine,
    args: &JobsBench,
    since: DateTime<Utc>,
    bulk: f64,
) -> anyhow::Result<Figures> {
    wait_succeeded(spine, args.jobs, 0, Duration::from_secs(900)).await?;
    let drain = rate_since(spine, since, args.jobs, true).await?;
    let since = Utc::now();
    let single = single_enqueues(spine, args.jobs, args.enqueuers).await?;
    wait_succeeded(spine, args.jobs, args.jobs as u64, Duration::from_secs(900)).await?;
    let e2e = rate_since(spine, since, args.jobs, false).await?;
    Ok(Figures { bulk, drain, single, e2e })
}

/// Latency of one durable single-row commit on the benchmark's PostgreSQL (the floor of a job at
/// concurrency 1: its start and its outcome are each at least one commit).
async fn commit_latency(args: &JobsBench) -> anyhow::Result<(f64, f64)> {
    let scratch = sentinel_db::ScratchDatabase::create(&args.database_url, "sentinel_bench").await?;
    let db = sentinel_db::Database::connect(&scratch.url, 2).await?;
    db.migrate().await?;
    let store = db.jobs();
    let mut samples = Vec::with_capacity(500);
    for _ in 0..500 {
        let new = sentinel_db::NewJob {
            id: sentinel_jobs::domain::JobId::new(),
            kind: JobKind::parse(builtin::DEMO_SLEEP)?,
            queue: sentinel_jobs::domain::QueueName::parse(builtin::DEFAULT_QUEUE)?,
            priority: Default::default(),
            payload: json!({ "seconds": 0 }),
            retry: Default::default(),
            run_at: None,
            trace_context: Default::default(),
            requested_by: None,
            org_id: None,
            dedup_key: None,
        };
        let t = Instant::now();
        store.insert(new).await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(store);
    drop(db);
    scratch.drop_now().await?;
    samples.sort_by(f64::total_cmp);
    Ok((samples[samples.len() / 2], samples[samples.len() * 99 / 100]))
}
