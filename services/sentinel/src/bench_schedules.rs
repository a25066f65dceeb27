//! `sentinel bench schedules`: N active schedules firing every few seconds through the real scheduler
//! engine on a scratch PostgreSQL (or SQLite) database; reports firing lateness (commit time minus due
//! time) percentiles and CPU use. Figures go to docs/benchmarks.md.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::Rng;
use sentinel_domain::Priority;
use sentinel_domain::schedule::MisfirePolicy;
use sentinel_jobs::{ScheduleInput, Spine};
use sentinel_telemetry::Shutdown;

#[derive(Clone, Copy, ValueEnum)]
pub enum Shape {
    /// Interval schedules with random intervals and phases (how schedules created over time look).
    Interval,
    /// Every schedule on the same six-field cron (`*/N * * * * *`): all ticks on the same second.
    Cron,
}

#[derive(Args)]
pub struct ScheduleBench {
    /// PostgreSQL server (a scratch database is created on it and dropped afterwards), or a
    /// `sqlite://` file URL for the embedded mode.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", env = "SENTINEL_BENCH_DATABASE_URL")]
    database_url: String,
    /// Active schedules.
    #[arg(long, default_value_t = 10_000)]
    schedules: usize,
    #[arg(long, value_enum, default_value = "interval")]
    shape: Shape,
    /// Shortest interval in seconds (interval shape), or the cron step (cron shape).
    #[arg(long, default_value_t = 3)]
    min_interval: u64,
    /// Longest interval in seconds (interval shape).
    #[arg(long, default_value_t = 8)]
    max_interval: u64,
    /// Jitter of every schedule, in milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Measured seconds (after a 5 s warm-up).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

pub async fn run(args: ScheduleBench) -> anyhow::Result<()> {
    crate::bench::on_scratch_database(&args.database_url, Vec::new(), async |spine, _| measure(spine, &args).await)
        .await
}

async fn measure(spine: &Spine, args: &ScheduleBench) -> anyhow::Result<()> {
    let org = spine.db().access().create_org(&format!("bench-{}", uuid::Uuid::new_v4().simple())).await?;
    let created = Instant::now();
    create_schedules(spine, org.id, args).await?;
    eprintln!("created {} schedules in {:.1} s", args.schedules, created.elapsed().as_secs_f64());

    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?));
    let recording = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer: scheduler::LatenessObserver = {
        let (histogram, recording) = (histogram.clone(), recording.clone());
        Arc::new(move |late: Duration| {
            if recording.load(std::sync::atomic::Ordering::Relaxed)
                && let Ok(mut h) = histogram.lock()
            {
                let _ = h.record((late.as_micros() as u64).max(1));
            }
        })
    };
    let shutdown = Shutdown::new();
    let engine =
        tokio::spawn(scheduler::Engine::new(spine.clone()).with_lateness_observer(observer).run(shutdown.clone()));

    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu_before, machine_before) = (process_cpu(), machine_cpu());
    let started = Instant::now();
    recording.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    recording.store(false, std::sync::atomic::Ordering::Relaxed);
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, machine_after) = (process_cpu(), machine_cpu());
    shutdown.cancel();
    let _ = engine.await;

    let h = histogram.lock().map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?.clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let machine = match (machine_before, machine_after) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            format!("{:.0} %", 100.0 * (busy1 - busy0) as f64 / (total1 - total0) as f64)
        }
        _ => "n/a".to_owned(),
    };
    let shape = match args.shape {
        Shape::Interval => format!("interval {}–{} s, random phase", args.min_interval, args.max_interval),
        Shape::Cron => format!("cron */{} s, same second", args.min_interval),
    };
    println!("| schedules | shape | jitter | firings/s | p50 | p90 | p99 | max | scheduler CPU | machine CPU |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {shape} | {} ms | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} % of a core | {machine} |",
        args.schedules,
        args.jitter_ms,
        h.len() as f64 / wall,
        ms(0.50),
        ms(0.90),
        ms(0.99),
        h.max() as f64 / 1000.0,
        100.0 * (cpu_after - cpu_before) / wall,
    );
    Ok(())
}

async fn create_schedules(spine: &Spine, org: uuid::Uuid, args: &ScheduleBench) -> anyhow::Result<()> {
    let store = spine.db().schedules();
    let now = chrono::Utc::now();
    let mut rng = rand::rng();
    let mut drafts = Vec::with_capacity(args.schedules);
    for i in 0..args.schedules {
        let (cron, interval_secs, anchor) = match args.shape {
            Shape::Interval => {
                let every = rng.random_range(args.min_interval..=args.max_interval.max(args.min_interval));
                let phase = chrono::Duration::milliseconds(rng.random_range(0..every as i64 * 1000));
                (None, Some(every), now + phase)
            }
            Shape::Cron => (Some(format!("*/{} * * * * *", args.min_interval)), None, now),
        };
        let input = ScheduleInput {
            name: format!("bench-{i}"),
            cron,
            interval_secs,
            timezone: None,
            kind: sentinel_domain::builtin::DEMO_SLEEP.to_owned(),
            payload: serde_json::json!({ "seconds": 0 }),
            priority: Priority::Normal,
            enabled: true,
            misfire_policy: MisfirePolicy::Skip,
            jitter_ms: args.jitter_ms,
            end_at: None,
        };
        let draft = spine
            .schedule_draft(input, Some(org), None, Some("bench".into()), anchor, now)
            .map_err(|e| anyhow::anyhow!("invalid bench schedule: {e:?}"))?;
        drafts.push(draft);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in drafts.chunks(args.schedules.div_ceil(4).max(1)) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for d in chunk {
                store.create(d).await?;
            }
            Ok::<_, sentinel_db::DbError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// CPU seconds used by this process so far.
pub(crate) fn process_cpu() -> f64 {
    // From /proc: getrusage would need `unsafe`, which the workspace forbids.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture Sentinel targets.
    100.0
}

/// (busy, total) jiffies of the whole machine.
pub(crate) fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}
