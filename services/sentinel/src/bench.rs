//! `sentinel bench bus`: a reproducible benchmark of the bus on Redis (or in-process): no-op jobs
//! enqueued in batches and consumed by N concurrent handlers (throughput), then a fixed offered rate
//! (enqueue→start latency percentiles). Figures go to docs/benchmarks.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use sentinel_bus::{Bus, BusOptions, MemoryBus, Message, RedisBus};
use sentinel_domain::{JobId, JobKind, Priority, QueueName};

#[derive(Subcommand)]
pub enum BenchTarget {
    /// Bus throughput and latency with no-op jobs.
    Bus(BusBench),
    /// Scheduler lateness and CPU with many active schedules.
    Schedules(crate::bench_schedules::ScheduleBench),
    /// The whole job path: bulk and single enqueue, drain and end to end through a real worker.
    Jobs(crate::bench_jobs::JobsBench),
    /// Inventory: a provider CSV import and concurrent reservations.
    Inventory(crate::bench_inventory::InventoryBench),
    /// HTTP monitoring: many targets checked on their deadlines against loopback receivers.
    Monitor(crate::bench_monitor::MonitorBench),
    /// The monitoring API: metric ingest by concurrent agents, and the dashboard over a month of rollups.
    MonitorApi(crate::bench_monitor_api::MonitorApiBench),
    /// Notifications: transition → webhook latency, a storm's single page, the outbox's throughput.
    Notify(crate::bench_notify::NotifyBench),
    /// The loopback receivers `sentinel bench monitor` starts in a child process.
    #[command(hide = true)]
    MonitorReceivers(crate::bench_monitor::Receivers),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Backend {
    Redis,
    Memory,
}

#[derive(Args)]
pub struct BusBench {
    #[arg(long, value_enum, default_value = "redis")]
    backend: Backend,
    #[arg(long, default_value = "redis://127.0.0.1:6379", env = "SENTINEL_BENCH_REDIS_URL")]
    redis_url: String,
    /// Jobs per throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Messages per enqueue batch (one pipelined round trip).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent handler counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    handlers: Vec<usize>,
    /// Offered rate for the latency run, jobs per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration of the latency run, seconds.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Handlers during the latency run.
    #[arg(long, default_value_t = 10)]
    latency_handlers: usize,
}

pub async fn run(target: BenchTarget) -> anyhow::Result<()> {
    let args = match target {
        BenchTarget::Bus(args) => args,
        BenchTarget::Schedules(args) => return crate::bench_schedules::run(args).await,
        BenchTarget::Jobs(args) => return crate::bench_jobs::run(args).await,
        BenchTarget::Inventory(args) => return crate::bench_inventory::run(args).await,
        BenchTarget::Monitor(args) => return crate::bench_monitor::run(args).await,
        BenchTarget::MonitorApi(args) => return crate::bench_monitor_api::run(args).await,
        BenchTarget::Notify(args) => return crate::bench_notify::run(args).await,
        BenchTarget::MonitorReceivers(args) => return crate::bench_monitor::receivers(args).await,
    };
    sentinel_telemetry::install_crypto_provider();
    let queue = QueueName::parse("bench")?;
    println!("| handlers | jobs | enqueue (jobs/s) | end-to-end (jobs/s) |");
    println!("|---:|---:|---:|---:|");
    for &handlers in &args.handlers {
        let (bus, cleanup) = make_bus(&args).await?;
        let (enqueue_rate, e2e_rate) = throughput(bus.clone(), &queue, args.jobs, args.batch, handlers).await?;
        cleanup.run().await;
        println!("| {handlers} | {} | {enqueue_rate:.0} | {e2e_rate:.0} |", args.jobs);
    }
    let (bus, cleanup) = make_bus(&args).await?;
    let hist =
        latency(bus, &queue, args.rate, Duration::from_secs(args.latency_seconds), args.latency_handlers).await?;
    cleanup.run().await;
    println!();
    println!(
        "latency at {} jobs/s offered, {} handlers, {} jobs: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.rate,
        args.latency_handlers,
        hist.len(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    Ok(())
}

struct Cleanup(Option<RedisBus>);

impl Cleanup {
    async fn run(self) {
        if let Some(bus) = self.0 {
            let _ = bus.purge().await;
        }
    }
}

async fn make_bus(args: &BusBench) -> anyhow::Result<(Arc<dyn Bus>, Cleanup)> {
    let options = BusOptions { block: Duration::from_millis(500), ..BusOptions::default() };
    Ok(match args.backend {
        Backend::Memory => (Arc::new(MemoryBus::new(options)), Cleanup(None)),
        Backend::Redis => {
            let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
            let bus = RedisBus::connect(&args.redis_url, &prefix, 64, options)?;
            bus.ping().await?;
            (Arc::new(bus.clone()), Cleanup(Some(bus)))
        }
    })
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn message(kind: &JobKind) -> Message {
    Message {
        job_id: JobId::new(),
        kind: kind.clone(),
        priority: Priority::Normal,
        attempt: 1,
        enqueued_at_ms: (now_us() / 1000) as i64,
        payload: serde_json::json!({ "t": now_us() }),
        trace: Default::default(),
    }
}

/// Consumes the queue the way the worker runtime does: one consumer reads as many messages as there
/// are free handler slots, and each message runs on its own task (a no-op handler that acks).
fn spawn_handlers(
    bus: Arc<dyn Bus>,
    queue: &QueueName,
    handlers: usize,
    done: Arc<AtomicU64>,
    target: u64,
    latencies: Option<Arc<std::sync::Mutex<Histogram<u64>>>>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let queue = queue.clone();
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(handlers));
        let mut consumer = bus.consumer(&queue, "bench").await?;
        let mut running = tokio::task::JoinSet::new();
        while done.load(Ordering::Relaxed) < target {
            let first = slots.clone().acquire_owned().await?;
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let batch = consumer.receive(permits.len(), Duration::from_millis(100)).await?;
            for d in batch {
                let permit = match permits.pop() {
                    Some(p) => p,
                    None => slots.clone().acquire_owned().await?,
                };
                let bus = bus.clone();
                let done = done.clone();
                let latencies = latencies.clone();
                running.spawn(async move {
                    if let Some(l) = &latencies {
                        let sent = d.message.payload.get("t").and_then(|t| t.as_u64()).unwrap_or(0);
                        if let Ok(mut h) = l.lock() {
                            let _ = h.record(now_us().saturating_sub(sent).max(1));
                        }
                    }
                    // The no-op handler is done: free its slot, then ack (bookkeeping, as the runtime does
                    // once the outcome is committed).
                    drop(permit);
                    let acked = bus.ack(&d).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    acked
                });
            }
            while let Some(r) = running.try_join_next() {
                r??;
            }
        }
        while let Some(r) = running.join_next().await {
            r??;
        }
        Ok(())
    })
}

async fn throughput(
    bus: Arc<dyn Bus>,
    queue: &QueueName,
    jobs: usize,
    batch: usize,
    handlers: usize,
) -> anyhow::Result<(f64, f64)> {
    let kind = JobKind::parse("bench.noop")?;
    let done = Arc::new(AtomicU64::new(0));
    // Consumers join first so the run measures steady flow, not a backlog drain only.
    let task = spawn_handlers(bus.clone(), queue, handlers, done.clone(), jobs as u64, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut sent = 0;
    while sent < jobs {
        let n = batch.min(jobs - sent);
        let msgs: Vec<Message> = (0..n).map(|_| message(&kind)).collect();
        bus.publish(queue, &msgs).await?;
        sent += n;
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    task.await??;
    let total_secs = started.elapsed().as_secs_f64();
    Ok((jobs as f64 / enqueue_secs, jobs as f64 / total_secs))
}

async fn latency(
    bus: Arc<dyn Bus>,
    queue: &QueueName,
    rate: u64,
    duration: Duration,
    handlers: usize,
) -> anyhow::Result<Histogram<u64>> {
    let kind = JobKind::parse("bench.noop")?;
    let total = rate * duration.as_secs();
    let done = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let task = spawn_handlers(bus.clone(), queue, handlers, done, total, Some(hist.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Publish one message at a time on a fixed schedule (open loop: lateness does not slow the offer).
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        bus.publish(queue, &[message(&kind)]).await?;
    }
    task.await??;
    let h = hist.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok(h)
}

/// Runs `measure` on a spine over a scratch database: a fresh one created on the PostgreSQL server
/// `database_url` names and dropped afterwards, or the `sqlite://` file it names; in-process bus,
/// warnings only, plus the `extra` settings.
pub(crate) async fn on_scratch_database(
    database_url: &str,
    extra: Vec<(&'static str, String)>,
    measure: impl AsyncFnOnce(&sentinel_jobs::Spine, &sentinel_config::Settings) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let scratch = if database_url.starts_with("postgres") {
        Some(
            sentinel_db::ScratchDatabase::create(database_url, "sentinel_bench")
                .await
                .context("cannot create a scratch database")?,
        )
    } else {
        None
    };
    let url = scratch.as_ref().map_or(database_url.to_owned(), |s| s.url.clone());
    let mut overrides = vec![
        ("database.url", url),
        ("database.auto_migrate", "true".to_owned()),
        ("bus.backend", "memory".to_owned()),
        ("telemetry.log_level", "warn".to_owned()),
    ];
    overrides.extend(extra);
    let settings = sentinel_config::Settings::load_for(&[], &overrides)?;
    let spine = sentinel_jobs::Spine::connect(&settings, sentinel_jobs::Catalog::builtin(false)).await?;
    let result = measure(&spine, &settings).await;
    drop(spine);
    if let Some(scratch) = scratch
        && let Err(e) = scratch.drop_now().await
    {
        eprintln!("could not drop the scratch database: {e}");
    }
    result
}
