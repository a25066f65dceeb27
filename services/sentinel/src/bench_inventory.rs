//! `sentinel bench inventory`: a provider CSV import (first import, then the same file again) and
//! reservations by concurrent callers, on a scratch PostgreSQL database or a SQLite file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use sentinel_db::inventory::{ReserveRequest, ServerFilter};
use sentinel_jobs::domain::inventory::{LabelSelector, import::parse_csv};
use tokio::sync::Mutex;

#[derive(Clone, Copy, ValueEnum)]
pub enum Store {
    Postgres,
    Sqlite,
}

#[derive(Args)]
pub struct InventoryBench {
    #[arg(long, value_enum, default_value = "postgres")]
    store: Store,
    #[arg(
        long,
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        env = "SENTINEL_BENCH_DATABASE_URL"
    )]
    database_url: String,
    /// Rows of the CSV import.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Concurrent reservation callers.
    #[arg(long, default_value_t = 50)]
    callers: usize,
    /// Reservations per caller (held until the end, as deployments hold them; then released).
    #[arg(long, default_value_t = 100)]
    reservations: usize,
}

/// A provider export of `rows` servers, as the import documents it.
pub fn provider_csv(rows: usize) -> String {
    let mut csv = String::from("provider_ref,ip,region,labels,ssh_user,ssh_port,name,notes\n");
    for i in 0..rows {
        let env = if i % 5 == 0 { "staging" } else { "prod" };
        csv.push_str(&format!(
            "prov-{i:06},10.{}.{}.{},eu-west-{},env={env};role=web;rack=r{},deploy,22,web-{i:06},imported by bench\n",
            i / 65_536,
            (i / 256) % 256,
            i % 256,
            i % 3,
            i % 40
        ));
    }
    csv
}

pub async fn run(args: InventoryBench) -> anyhow::Result<()> {
    let (url, scratch, _dir) = match args.store {
        Store::Postgres => {
            let scratch = sentinel_db::ScratchDatabase::create(&args.database_url, "sentinel_bench").await?;
            (scratch.url.clone(), Some(scratch), None)
        }
        Store::Sqlite => {
            let dir = tempfile::tempdir()?;
            (format!("sqlite://{}?mode=rwc", dir.path().join("bench.sqlite").display()), None, Some(dir))
        }
    };
    let db = sentinel_db::Database::connect(&url, 8).await?;
    db.migrate().await?;
    let org = db.access().create_org("bench").await?;
    let inventory = db.inventory();
    let csv = provider_csv(args.rows);
    println!("inventory bench: {} rows ({} KiB), {} callers", args.rows, csv.len() / 1024, args.callers);

    for label in ["first import (creates)", "same file again (unchanged)"] {
        let t = Instant::now();
        let parsed = parse_csv(csv.as_bytes());
        anyhow::ensure!(parsed.error_count == 0, "the bench CSV has errors: {:?}", parsed.errors.first());
        let parse = t.elapsed();
        let outcome = inventory.import_servers(org.id, &parsed.rows, "bench", false).await?;
        let total = t.elapsed();
        println!(
            "  import, {label}: {:.0} ms (parse {:.0} ms), created {} updated {} unchanged {}, {:.0} rows/s",
            total.as_secs_f64() * 1000.0,
            parse.as_secs_f64() * 1000.0,
            outcome.created,
            outcome.updated,
            outcome.unchanged,
            args.rows as f64 / total.as_secs_f64()
        );
    }

    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    // The path `POST /servers/reserve` takes: concurrent callers share a transaction.
    let committer = sentinel_jobs::reservation_committer(inventory.clone());
    // Warm-up, not measured: one burst of the callers' reservations, given back, so the pool's
    // connections are open and its statements prepared, as in a gateway that has been serving.
    let warm_req = ReserveRequest {
        filter: ServerFilter::default(),
        ttl: chrono::Duration::seconds(60),
        purpose: "warm-up".into(),
        holder: "bench:warm-up".into(),
    };
    let warm: Vec<_> = (0..args.callers).map(|_| committer.submit((org.id, warm_req.clone()))).collect();
    for got in futures::future::join_all(warm).await.into_iter().flatten() {
        if let Some(r) = got? {
            inventory.release(&r.server, Some(r.lease_id), "bench:warm-up").await?;
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.callers {
        let committer = committer.clone();
        let latencies = latencies.clone();
        let n = args.reservations;
        tasks.push(tokio::spawn(async move {
            let req = ReserveRequest {
                filter: ServerFilter {
                    selector: LabelSelector::parse("env=prod,role=web").map_err(anyhow::Error::msg)?,
                    ..Default::default()
                },
                ttl: chrono::Duration::seconds(600),
                purpose: format!("bench caller {c}"),
                holder: format!("bench:{c}"),
            };
            let mut own = Vec::with_capacity(n);
            let mut held = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let got = committer
                    .submit((org.id, req.clone()))
                    .await
                    .ok_or_else(|| anyhow::anyhow!("committer stopped"))??;
                own.push(t.elapsed());
                held.push(got.ok_or_else(|| anyhow::anyhow!("no server left to reserve"))?);
            }
            let mut h = latencies.lock().await;
            for d in own {
                h.record(d.as_micros().max(1) as u64)?;
            }
            drop(h);
            anyhow::Ok((held, req.holder))
        }));
    }
    let mut all_held = Vec::new();
    for t in tasks {
        all_held.push(t.await??);
    }
    let elapsed = started.elapsed();
    let released = Instant::now();
    let mut releases = Vec::new();
    for (held, holder) in all_held {
        let inventory = inventory.clone();
        releases.push(tokio::spawn(async move {
            for r in held {
                inventory.release(&r.server, Some(r.lease_id), &holder).await?;
            }
            anyhow::Ok(())
        }));
    }
    for r in releases {
        r.await??;
    }
    let release_rate = (args.callers * args.reservations) as f64 / released.elapsed().as_secs_f64();
    let h = latencies.lock().await;
    let total = args.callers * args.reservations;
    println!(
        "  reserve ({} callers, {total} reservations held): {:.0} reservations/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; then {release_rate:.0} releases/s",
        args.callers,
        total as f64 / elapsed.as_secs_f64(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    drop(inventory);
    drop(db);
    if let Some(s) = scratch {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.drop_now().await?;
    }
    Ok(())
}
