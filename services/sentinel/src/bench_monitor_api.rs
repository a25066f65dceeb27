//! `sentinel bench monitor-api`: the monitoring API on a scratch PostgreSQL database, through the
//! real gateway over HTTP. Metric ingest: N concurrent agents each posting batches of M samples with
//! an ingest key (samples/s and latency percentiles). The dashboard summary: with T targets and 30
//! days of hourly and daily rollups in the tables, sequential calls (latency percentiles). Figures
//! go to docs/benchmarks.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use sentinel_domain::monitoring::TargetSpec;
use sentinel_jobs::Spine;
use sentinel_telemetry::Shutdown;
use serde_json::json;

#[derive(Args)]
pub struct MonitorApiBench {
    /// PostgreSQL server (a scratch database is created on it and dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", env = "SENTINEL_BENCH_DATABASE_URL")]
    database_url: String,
    /// Concurrent agents posting metrics.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Samples per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of ingest.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Offered samples per second in all (each agent sends on its own fixed period, whatever the
    /// answers take); 0 = every agent sends its next batch as soon as the last is answered.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Targets in the dashboard's organization.
    #[arg(long, default_value_t = 10_000)]
    targets: usize,
    /// Days of hourly and daily rollups per target.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Dashboard calls measured.
    #[arg(long, default_value_t = 500)]
    calls: usize,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run(args: MonitorApiBench) -> anyhow::Result<()> {
    sentinel_telemetry::install_crypto_provider();
    anyhow::ensure!(args.database_url.starts_with("postgres"), "--database-url: a PostgreSQL server");
    let token = api_gateway::auth::random_token();
    let extra = vec![
        ("secrets.master_key", sentinel_jobs::secrets::MasterKey::generate().encode().to_string()),
        ("http.listen", "127.0.0.1:0".to_owned()),
        ("http.api_token", token.clone()),
    ];
    crate::bench::on_scratch_database(&args.database_url, extra, async |spine, _| measure(spine, &args, &token).await)
        .await
}

async fn measure(spine: &Spine, args: &MonitorApiBench, token: &str) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let app = api_gateway::Application::build(spine.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.agents).build()?;
    let auth = format!("Bearer {token}");
    let key: serde_json::Value = client
        .post(format!("{base}/api/v1/api-keys"))
        .header("Authorization", &auth)
        .json(&json!({"name": "agents", "scope": "ingest"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = key["key"].as_str().context("ingest key")?.to_owned();

    // Ingest: every agent posts its batches back to back.
    let histogram = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let accepted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut agents = tokio::task::JoinSet::new();
    for agent in 0..args.agents {
        let (client, key, base, histogram, accepted) =
            (client.clone(), key.clone(), base.clone(), histogram.clone(), accepted.clone());
        let (batch, agents_n) = (args.batch, args.agents);
        // Open loop: agent i sends every `period`, phases spread; a late answer does not delay the
        // next batch's send time (lateness counts in the latency, not in a lower offered rate).
        let period =
            (args.rate > 0).then(|| Duration::from_secs_f64((args.agents * args.batch) as f64 / args.rate as f64));
        agents.spawn(async move {
            let names: Vec<String> = (0..batch).map(|i| format!("metric_{i}")).collect();
            let mut sent = 0u64;
            let mut next = tokio::time::Instant::now()
                + period.map_or(Duration::ZERO, |p| p.mul_f64(agent as f64 / agents_n as f64));
            while Instant::now() < deadline {
                if let Some(p) = period {
                    tokio::time::sleep_until(next).await;
                    next += p;
                }
                sent += 1;
                let at = chrono::Utc::now().to_rfc3339();
                let metrics: Vec<_> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| json!({"name": n, "type": "numeric", "value": (sent as f64) + i as f64 / 100.0}))
                    .collect();
                let body = json!({"machine": {"hostname": format!("agent-{agent}"), "os": "linux"}, "metrics": metrics, "sent_at": at});
                let t = Instant::now();
                let res = client
                    .post(format!("{base}/api/v1/ingest/metrics"))
                    .header("X-API-Key", &key)
                    .header("X-Ingest-Id", format!("{agent}-{sent}"))
                    .json(&body)
                    .send()
                    .await?;
                let took = t.elapsed();
                anyhow::ensure!(res.status() == 202, "ingest answered {}", res.status());
                let answer: serde_json::Value = res.json().await?;
                accepted.fetch_add(answer["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                if let Ok(mut h) = histogram.lock() {
                    let _ = h.record((took.as_micros() as u64).max(1));
                }
            }
            Ok(())
        });
    }
    while let Some(done) = agents.join_next().await {
        done??;
    }
    let wall = started.elapsed().as_secs_f64();
    let h = histogram.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    println!("| agents | samples per batch | offered | batches | samples/s | p50 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
        args.agents,
        args.batch,
        if args.rate > 0 { format!("{} samples/s", args.rate) } else { "closed loop".to_owned() },
        h.len(),
        accepted.load(Ordering::Relaxed) as f64 / wall,
        ms(&h, 0.5),
        ms(&h, 0.99),
        h.max() as f64 / 1000.0
    );

    // The dashboard with many targets and a month of rollups.
    let me: serde_json::Value =
        client.get(format!("{base}/api/v1/me")).header("Authorization", &auth).send().await?.json().await?;
    let org: uuid::Uuid = me["organization_id"].as_str().context("organization id")?.parse()?;
    let filled = Instant::now();
    fill_targets(spine, org, args.targets, args.days).await?;
    eprintln!("{} targets and {} days of rollups in {:.0} s", args.targets, args.days, filled.elapsed().as_secs_f64());
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..args.calls + 20 {
        let t = Instant::now();
        let res =
            client.get(format!("{base}/api/v1/monitoring/dashboard")).header("Authorization", &auth).send().await?;
        anyhow::ensure!(res.status() == 200, "dashboard answered {}", res.status());
        let _ = res.bytes().await?;
        if i >= 20 {
            let _ = h.record((t.elapsed().as_micros() as u64).max(1));
        }
    }
    println!();
    println!("| targets | rollup rows | calls | p50 | p95 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        args.targets,
        args.targets * (args.days as usize) * 25,
        h.len(),
        ms(&h, 0.5),
        ms(&h, 0.95),
        ms(&h, 0.99),
        h.max() as f64 / 1000.0
    );
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

/// Creates the targets through the store, then a month of hourly and daily rollups for each in
/// one statement per period (generate_series).
async fn fill_targets(spine: &Spine, org: uuid::Uuid, targets: usize, days: u32) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..4 {
        let store = spine.db().monitoring();
        tasks.spawn(async move {
            for i in (part..targets).step_by(4) {
                let spec: TargetSpec = serde_json::from_value(json!({
                    "name": format!("t{i}"), "url": format!("http://127.0.0.1:9/{i}"), "check_interval_seconds": 60,
                }))?;
                store.create_target(org, spec, "bench", Default::default()).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let mut histogram = sentinel_domain::monitoring::Histogram::default();
    for _ in 0..60 {
        histogram.record(42.0);
    }
    spine.db().monitoring().synthetic_rollups(org, days, &histogram).await?;
    Ok(())
}
