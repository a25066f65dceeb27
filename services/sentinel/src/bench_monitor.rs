//! `sentinel bench monitor`: N HTTP targets checked by the real monitor-worker dispatcher (claims
//! under leases, absolute deadlines, global and per-host slots, batched result writes) against
//! loopback receivers in a child process (`sentinel bench monitor-receivers`), a share of them never
//! answering so their checks time out. Reports, from the stored results themselves: checks/s, start
//! lateness (start minus deadline) percentiles over the first and the last minute, deadlines that
//! were skipped or left the grid (drift), the result mix, this process's CPU and peak RSS, the
//! machine's CPU, and the raw results' bytes per day. Figures go to docs/benchmarks.md.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use hdrhistogram::Histogram;
use sentinel_config::Settings;
use sentinel_domain::monitoring::{CheckStatus, TargetSpec};
use sentinel_jobs::Spine;
use sentinel_telemetry::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench_schedules::{machine_cpu, process_cpu};

#[derive(Args)]
pub struct MonitorBench {
    /// PostgreSQL server (a scratch database is created on it and dropped afterwards), or a
    /// `sqlite://` file URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", env = "SENTINEL_BENCH_DATABASE_URL")]
    database_url: String,
    /// Active targets.
    #[arg(long, default_value_t = 10_000)]
    targets: usize,
    /// Check interval of every target, seconds.
    #[arg(long, default_value_t = 60)]
    interval: u32,
    /// Share of targets whose receiver never answers (their checks time out), percent.
    #[arg(long, default_value_t = 5.0)]
    hang_percent: f64,
    /// Timeout of every target, seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u32,
    /// Loopback hosts the targets are spread over (127.10.x.y, one receiver each).
    #[arg(long, default_value_t = 500)]
    hosts: usize,
    /// Measured seconds (after a warm-up of one interval).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Dispatch sweep period, seconds (the built-in schedule's default).
    #[arg(long, default_value_t = 5)]
    sweep: u64,
}

/// `sentinel bench monitor-receivers`: the loopback receivers of `sentinel bench monitor`.
#[derive(Args)]
pub struct Receivers {
    #[arg(long)]
    hosts: usize,
    #[arg(long)]
    port: u16,
}

fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 10, (i / 250) as u8, (i % 250) as u8 + 1)
}

/// Serves every host until killed: `/hang…` never answers; anything else is a 200.
pub async fn receivers(args: Receivers) -> anyhow::Result<()> {
    for i in 0..args.hosts {
        let listener = tokio::net::TcpListener::bind((host_ip(i), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", host_ip(i), args.port))?;
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while read < buf.len() {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                        if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    if buf[..read].windows(5).any(|w| w == b"/hang") {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                    let _ =
                        socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                });
            }
        });
    }
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_receivers(hosts: usize) -> anyhow::Result<(KillOnDrop, u16)> {
    let port = std::net::TcpListener::bind((host_ip(0), 0))?.local_addr()?.port();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["bench", "monitor-receivers", "--hosts", &hosts.to_string(), "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the receivers")?;
    let stdout = child.stdout.take().context("receivers' stdout")?;
    let guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "ready", "the receivers did not start: {line:?}");
    Ok((guard, port))
}

pub async fn run(args: MonitorBench) -> anyhow::Result<()> {
    sentinel_telemetry::install_crypto_provider();
    crate::bench::on_scratch_database(&args.database_url, Vec::new(), async |spine, settings| {
        measure(spine, settings, &args).await
    })
    .await
}

async fn create_targets(spine: &Spine, org: uuid::Uuid, args: &MonitorBench, port: u16) -> anyhow::Result<()> {
    let hang_every = if args.hang_percent > 0.0 { (100.0 / args.hang_percent).round() as usize } else { usize::MAX };
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..4 {
        let store = spine.db().monitoring();
        let (n, hosts, interval, timeout) = (args.targets, args.hosts, args.interval, args.timeout);
        tasks.spawn(async move {
            for i in (part..n).step_by(4) {
                // Host i % hosts; the hanging ones spread evenly over the hosts (every host has its
                // share), so the per-host limit is not what is being measured.
                let path = if (i / hosts + i % hosts) % hang_every == hang_every - 1 { "hang" } else { "ok" };
                let url = format!("http://{}:{port}/{path}/{i}", host_ip(i % hosts));
                let spec: TargetSpec = serde_json::from_value(serde_json::json!({
                    "name": format!("bench-{i}"), "url": url,
                    "check_interval_seconds": interval, "timeout_seconds": timeout,
                }))?;
                store.create_target(org, spec, "bench", Default::default()).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn measure(spine: &Spine, settings: &Settings, args: &MonitorBench) -> anyhow::Result<()> {
    let (_receivers, port) = start_receivers(args.hosts)?;
    let org = spine.db().access().create_org(&format!("bench-{}", uuid::Uuid::new_v4().simple())).await?;
    let created = Instant::now();
    create_targets(spine, org.id, args, port).await?;
    eprintln!("created {} targets in {:.1} s", args.targets, created.elapsed().as_secs_f64());

    let allowed = vec![monitor_worker::Network::parse("127.0.0.0/8").map_err(anyhow::Error::msg)?];
    let prober = Arc::new(monitor_worker::Prober::new(None, 64 * 1024, allowed));
    let shutdown = Shutdown::new();
    let m = &settings.monitor;
    let dispatcher = monitor_worker::Dispatcher::start(
        spine.db().monitoring(),
        prober,
        None,
        m.max_concurrent_checks,
        m.per_host_concurrency,
        shutdown.clone(),
    );
    // The dispatch sweep as the built-in schedule fires it (see monitor-worker's DispatchChecks).
    let every = Duration::from_secs(args.sweep.max(1));
    let sweeper = {
        let dispatcher = dispatcher.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = dispatcher.dispatch(every * 2 + Duration::from_secs(1), every * 2 + Duration::from_secs(5)).await {
                            eprintln!("dispatch failed: {e}");
                        }
                    }
                    () = shutdown.cancelled() => return,
                }
            }
        })
    };
    let storage = spine.db().monitoring();
    let warm_up = Duration::from_secs(u64::from(args.interval).max(10));
    eprintln!("warming up for {} s, then measuring for {} s", warm_up.as_secs(), args.seconds);
    tokio::time::sleep(warm_up).await;
    let bytes_before = storage.storage_bytes().await?;
    let from = Utc::now();
    let (cpu_before, machine_before) = (process_cpu(), machine_cpu());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let wall = started.elapsed().as_secs_f64();
    let to = Utc::now();
    let (cpu_after, machine_after) = (process_cpu(), machine_cpu());
    // Let the checks due before `to` finish and be written.
    tokio::time::sleep(Duration::from_secs(u64::from(args.timeout) + 3)).await;
    let bytes_after = storage.storage_bytes().await?;
    shutdown.cancel();
    let _ = sweeper.await;

    let results = storage.results_due_between(from, to).await?;
    let report = Report::of(&results, from, to, i64::from(args.interval));
    let machine = match (machine_before, machine_after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => format!("{:.0} %", 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64),
        _ => "n/a".to_owned(),
    };
    let checks = results.len() as f64;
    let per_day = match (bytes_before, bytes_after) {
        (Some((r0, _)), Some((r1, _))) if r1 > r0 => {
            let per_check = (r1 - r0) as f64 / checks.max(1.0);
            format!(
                "{:.0} B/check, {:.2} GiB/day raw",
                per_check,
                per_check * checks / wall * 86_400.0 / 1_073_741_824.0
            )
        }
        _ => "n/a".to_owned(),
    };
    println!(
        "| targets | interval | hanging | checks/s | lateness p50 / p99 / max (first min) | lateness p50 / p99 / max (last min) | skipped deadlines | off-grid | down | worker CPU | peak RSS | machine CPU | storage |"
    );
    println!("|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} s | {} % | {:.0} | {} | {} | {} | {} | {:.1} % | {:.0} % of a core | {:.0} MiB | {machine} | {per_day} |",
        args.targets,
        args.interval,
        args.hang_percent,
        checks / wall,
        report.first,
        report.last,
        report.skipped,
        report.off_grid,
        100.0 * report.down as f64 / checks.max(1.0),
        100.0 * (cpu_after - cpu_before) / wall,
        peak_rss_mib(),
    );
    Ok(())
}

struct Report {
    first: String,
    last: String,
    /// Deadlines missing between a target's first and last result in the window.
    skipped: u64,
    /// Consecutive deadlines of one target not exactly one interval apart (drift).
    off_grid: u64,
    down: u64,
}

impl Report {
    fn of(
        results: &[sentinel_db::monitoring::CheckResult],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: i64,
    ) -> Self {
        let window = |lo: DateTime<Utc>, hi: DateTime<Utc>| {
            let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
            for r in results.iter().filter(|r| r.due_at >= lo && r.due_at < hi) {
                let late = (r.started_at - r.due_at).num_microseconds().unwrap_or(0).max(1) as u64;
                let _ = h.record(late);
            }
            let ms = |v: u64| v as f64 / 1000.0;
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max())
            )
        };
        let minute = chrono::Duration::seconds(60);
        let mut by_target: HashMap<uuid::Uuid, Vec<DateTime<Utc>>> = HashMap::new();
        for r in results {
            by_target.entry(r.target_id).or_default().push(r.due_at);
        }
        let (mut skipped, mut off_grid) = (0u64, 0u64);
        let step = chrono::Duration::seconds(interval);
        for dues in by_target.values_mut() {
            dues.sort();
            for pair in dues.windows(2) {
                let gap = pair[1] - pair[0];
                if gap != step {
                    if gap.num_milliseconds() % step.num_milliseconds() == 0 {
                        skipped += (gap.num_milliseconds() / step.num_milliseconds() - 1) as u64;
                    } else {
                        off_grid += 1;
                    }
                }
            }
        }
        Self {
            first: window(from, from + minute),
            last: window(to - minute, to),
            skipped,
            off_grid,
            down: results.iter().filter(|r| r.status == CheckStatus::Down).count() as u64,
        }
    }
}
