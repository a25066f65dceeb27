//! The `sentinel` command: `up` runs every service in one process (the embedded default), `migrate`
//! applies database migrations, `bench` measures the bus.

mod bench;
mod embedded;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use sentinel_config::Settings;

#[derive(Parser)]
#[command(
    name = "sentinel",
    version,
    about = "Sentinel: an ops control plane (jobs, provisioning, backups, monitoring)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Sentinel in one process: SQLite in the data directory, in-process bus, API on 127.0.0.1:8080.
    Up {
        /// Where the database file and generated secrets live.
        #[arg(long, env = "SENTINEL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address the API listens on.
        #[arg(long, env = "SENTINEL_HTTP__LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations to the configured database (SENTINEL_DATABASE__URL).
    Migrate,
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        target: bench::BenchTarget,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { data_dir, listen } => embedded::up(data_dir, listen).await,
        Command::Migrate => migrate().await,
        Command::Bench { target } => bench::run(target).await,
    }
}

async fn migrate() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let _telemetry = sentinel_telemetry::init("sentinel", &settings.telemetry)?;
    let db = sentinel_db::Database::connect(settings.database.url.expose_secret(), 2)
        .await
        .context("cannot connect to the database (check SENTINEL_DATABASE__URL)")?;
    let applied = db.migrate().await.context("migration failed")?;
    println!("database schema is up to date ({applied} migration(s) applied)");
    Ok(())
}
