//! `sentinel bench notify`: notifications on a scratch PostgreSQL database, delivered by the real
//! notifier to a webhook receiver on loopback (keep-alive HTTP/1.1, answering 200 at once). Three
//! figures: the latency from an alert's transition (committed) to its webhook's arrival at a steady
//! rate of transitions; the wall time of a storm (S targets of one server failing in one batch) to
//! its single notification; and the outbox's throughput when M notifications are due at once.
//! Policy: `group_wait` 0 and `group_interval` 1 s, so the figures are the engine's own (the default
//! 30 s `group_wait` is a deliberate wait on top). Figures go to docs/benchmarks.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use hdrhistogram::Histogram;
use sentinel_db::backups::SecretChange;
use sentinel_db::monitoring::{CheckResult, MonitoringStore};
use sentinel_domain::monitoring::alerts::ClientSettings;
use sentinel_domain::monitoring::{CheckStatus, ErrorClass, TargetSpec};
use sentinel_domain::notify::{ChannelConfig, ChannelSpec, Policy, Timers};
use sentinel_jobs::Spine;
use sentinel_jobs::db as sentinel_db;
use sentinel_jobs::domain as sentinel_domain;
use sentinel_telemetry::Shutdown;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

#[derive(Args)]
pub struct NotifyBench {
    /// PostgreSQL server (a scratch database is created on it and dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", env = "SENTINEL_BENCH_DATABASE_URL")]
    database_url: String,
    /// Transitions per minute in the latency phase (half opens, half resolves).
    #[arg(long, default_value_t = 1000)]
    per_minute: u32,
    /// Seconds the latency phase offers transitions for.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Targets of one server failing at once in the storm phase.
    #[arg(long, default_value_t = 500)]
    storm: usize,
    /// Notifications due at once in the throughput phase (each target its own group).
    #[arg(long, default_value_t = 5000)]
    outbox: usize,
    /// `monitor.notify_evaluate_ms`: the evaluation tick.
    #[arg(long, default_value_t = 1000)]
    evaluate_ms: u64,
}

/// Arrivals: when each (source id, status) webhook arrived, and how many requests in all.
#[derive(Default)]
struct Arrivals {
    at: HashMap<(String, String), Instant>,
    requests: u64,
}

async fn receive(listener: tokio::net::TcpListener, arrivals: Arc<Mutex<Arrivals>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let mut data = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while data.len() < head_end + length {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let now = Instant::now();
                let body: Value = serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or_default();
                data.drain(..head_end + length);
                {
                    let mut a = arrivals.lock().expect("arrivals");
                    a.requests += 1;
                    for alert in body["alerts"].as_array().into_iter().flatten() {
                        let key = (
                            alert["source_id"].as_str().unwrap_or("").to_owned(),
                            alert["status"].as_str().unwrap_or("").to_owned(),
                        );
                        a.at.entry(key).or_insert(now);
                    }
                }
                if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.is_err() {
                    return;
                }
            }
        });
    }
}

fn result(target: Uuid, org: Uuid, up: bool) -> CheckResult {
    let now = Utc::now();
    CheckResult {
        target_id: target,
        org_id: org,
        due_at: now,
        started_at: now,
        response_ms: 5.0,
        status: if up { CheckStatus::Up } else { CheckStatus::Down },
        status_code: Some(if up { 200 } else { 503 }),
        error_class: (!up).then_some(ErrorClass::Status),
        message: None,
        cert_expires_at: None,
        manual: true,
    }
}

async fn targets(
    store: &MonitoringStore,
    org: Uuid,
    n: usize,
    server: Option<Uuid>,
    tag: &str,
) -> anyhow::Result<Vec<Uuid>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut spec: TargetSpec = serde_json::from_value(json!({
            "name": format!("{tag}-{i}"), "url": format!("http://127.0.0.1:9/{tag}/{i}"),
            "check_interval_seconds": 3600, "timeout_seconds": 2, "is_active": false,
        }))?;
        spec.server_id = server;
        out.push(store.create_target(org, spec, "bench", SecretChange::Keep).await?.id);
    }
    Ok(out)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run(args: NotifyBench) -> anyhow::Result<()> {
    sentinel_telemetry::install_crypto_provider();
    anyhow::ensure!(args.database_url.starts_with("postgres"), "--database-url: a PostgreSQL server");
    let extra = vec![
        ("secrets.master_key", sentinel_jobs::secrets::MasterKey::generate().encode().to_string()),
        ("monitor.notify_evaluate_ms", args.evaluate_ms.to_string()),
    ];
    crate::bench::on_scratch_database(&args.database_url, extra, async |spine, _| measure(spine, &args).await).await
}

async fn wait_for(arrivals: &Arc<Mutex<Arrivals>>, keys: &[(String, String)], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let missing = {
            let a = arrivals.lock().expect("arrivals");
            keys.iter().filter(|k| !a.at.contains_key(*k)).count()
        };
        if missing == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{missing} notifications never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(spine: &Spine, args: &NotifyBench) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    tokio::spawn(receive(listener, arrivals.clone()));
    let org = spine.db().access().create_org("notify-bench").await?.id;
    let (store, notify) = (spine.db().monitoring(), spine.db().notify());
    let settings =
        ClientSettings { consecutive_failures_threshold: 1, consecutive_successes_threshold: 1, ..Default::default() };
    store.replace_settings(org, &settings, "bench").await?;
    let vault = spine.vault().context("a master key")?;
    let (secret_id, sealed) = vault.seal_new(b"a-bench-signing-secret-0123456789");
    let channel = ChannelSpec { name: "hook".into(), config: ChannelConfig::Webhook { url }, is_active: true };
    notify
        .create_channel(org, channel, SecretChange::Set((secret_id, sealed.key_id, sealed.text)), "bench", Utc::now())
        .await?;
    let policy = Policy {
        timers: Timers { group_wait_seconds: 0, group_interval_seconds: 1, repeat_interval_seconds: 86_400 },
        ..Policy::default()
    };
    notify.set_policy(org, Some(&policy), "bench").await?;
    let shutdown = Shutdown::new();
    let _notifier = monitor_worker::notify::Notifier::start(spine, shutdown.clone());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();

    // 1. Latency at a steady rate: each target fails, then recovers 10 s later.
    let n = (u64::from(args.per_minute) * args.seconds / 60 / 2).max(1) as usize;
    let ids = targets(&store, org, n, None, "steady").await?;
    let start = Instant::now();
    let spacing = Duration::from_secs_f64(args.seconds as f64 / n as f64);
    let at = |i: usize| start + spacing.mul_f64(i as f64);
    let mut committed: Vec<((String, String), Instant)> = Vec::with_capacity(2 * n);
    let mut next_resolve = 0;
    for (i, id) in ids.iter().enumerate() {
        tokio::time::sleep_until(at(i).into()).await;
        store.record_results(&[result(*id, org, false)]).await?;
        committed.push(((id.to_string(), "firing".into()), Instant::now()));
        while next_resolve < i && at(next_resolve) + Duration::from_secs(10) <= Instant::now() {
            let rid = ids[next_resolve];
            store.record_results(&[result(rid, org, true)]).await?;
            committed.push(((rid.to_string(), "resolved".into()), Instant::now()));
            next_resolve += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    for rid in &ids[next_resolve..] {
        store.record_results(&[result(*rid, org, true)]).await?;
        committed.push(((rid.to_string(), "resolved".into()), Instant::now()));
    }
    let offered = start.elapsed();
    let keys: Vec<(String, String)> = committed.iter().map(|(k, _)| k.clone()).collect();
    wait_for(&arrivals, &keys, Duration::from_secs(120)).await?;
    let mut h = Histogram::<u64>::new(3)?;
    {
        let a = arrivals.lock().expect("arrivals");
        for (k, at) in &committed {
            h.record(a.at[k].saturating_duration_since(*at).as_micros() as u64)?;
        }
    }
    println!(
        "latency: {} transitions in {:.0} s ({:.0}/min), evaluation every {} ms: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        committed.len(),
        offered.as_secs_f64(),
        committed.len() as f64 / offered.as_secs_f64() * 60.0,
        args.evaluate_ms,
        ms(&h, 0.5),
        ms(&h, 0.99),
        h.max() as f64 / 1000.0
    );

    // 2. The storm: S targets of one server fail in one batch.
    let server = spine
        .db()
        .inventory()
        .create_server(
            org,
            sentinel_db::inventory::ServerDraft {
                provider_ref: "storm-host".into(),
                name: "storm-host".into(),
                ip: "10.0.0.1".into(),
                ssh_port: 22,
                ssh_user: "root".into(),
                region: String::new(),
                labels: Default::default(),
                notes: String::new(),
                host_keys: vec![],
                accept_new_host_key: false,
                ssh_credential_id: None,
            },
            "bench",
        )
        .await?
        .id;
    let storm = targets(&store, org, args.storm, Some(server), "storm").await?;
    let before = arrivals.lock().expect("arrivals").requests;
    let t0 = Instant::now();
    let failures: Vec<CheckResult> = storm.iter().map(|id| result(*id, org, false)).collect();
    store.record_results(&failures).await?;
    let recorded = t0.elapsed();
    let storm_keys: Vec<(String, String)> = storm.iter().map(|id| (id.to_string(), "firing".into())).collect();
    wait_for(&arrivals, &storm_keys, Duration::from_secs(60)).await?;
    let wall = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let storm_requests = arrivals.lock().expect("arrivals").requests - before;
    println!(
        "storm: {} targets of one server failed in one batch (recorded in {:.0} ms) → {} notification(s), the last {:.0} ms after the batch",
        args.storm,
        recorded.as_secs_f64() * 1000.0,
        storm_requests,
        wall.as_secs_f64() * 1000.0
    );

    // 3. Outbox throughput: M groups due at once.
    let many = targets(&store, org, args.outbox, None, "outbox").await?;
    let failures: Vec<CheckResult> = many.iter().map(|id| result(*id, org, false)).collect();
    for chunk in failures.chunks(1000) {
        store.record_results(chunk).await?;
    }
    let first = Instant::now();
    let many_keys: Vec<(String, String)> = many.iter().map(|id| (id.to_string(), "firing".into())).collect();
    wait_for(&arrivals, &many_keys, Duration::from_secs(600)).await?;
    let took = first.elapsed();
    println!(
        "outbox: {} notifications due at once delivered in {:.1} s: {:.0} notifications/s (evaluation included)",
        args.outbox,
        took.as_secs_f64(),
        args.outbox as f64 / took.as_secs_f64()
    );
    println!("load average before: {load}");
    shutdown.cancel();
    Ok(())
}
