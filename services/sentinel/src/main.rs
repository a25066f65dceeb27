//! The `sentinel` command: `up` runs every service in one process (the embedded default), `migrate`
//! applies database migrations, `bench` measures the bus, the job path and the scheduler.

/// mimalloc: the job path allocates many small short-lived buffers, where glibc's malloc spent a
/// sixth of the CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_inventory;
mod bench_jobs;
mod bench_monitor;
mod bench_monitor_api;
mod bench_notify;
mod bench_schedules;
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
    /// Manage accounts and the master key.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        target: bench::BenchTarget,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user (the first admin of an organization, typically). The password is read from
    /// SENTINEL_ADMIN_PASSWORD, or generated and printed once.
    Create {
        /// Organization name; created if it does not exist.
        #[arg(long, default_value = "default")]
        org: String,
        #[arg(long)]
        email: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Print a new random master key (base64) for secrets.master_key or a key file.
    GenMasterKey,
    /// After a key rotation (new key in secrets.master_key, old ones in secrets.retired_keys): re-seal
    /// every secret with the new key, so the old ones can be removed.
    ResealSecrets,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { data_dir, listen } => embedded::up(data_dir, listen).await,
        Command::Migrate => migrate().await,
        Command::Admin { command: AdminCommand::Create { org, email, role } } => {
            admin_create(&org, &email, &role).await
        }
        Command::Admin { command: AdminCommand::GenMasterKey } => {
            println!("{}", sentinel_jobs::secrets::MasterKey::generate().encode().as_str());
            Ok(())
        }
        Command::Admin { command: AdminCommand::ResealSecrets } => reseal_secrets().await,
        Command::Bench { target } => bench::run(target).await,
    }
}

async fn reseal_secrets() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    sentinel_telemetry::install_crypto_provider();
    let keyring = sentinel_jobs::secrets::Keyring::load(&settings.secrets, None)?
        .context("set secrets.master_key (the new key) and secrets.retired_keys (the old ones)")?;
    let db = sentinel_db::Database::connect(settings.database.url.expose_secret(), 2)
        .await
        .context("cannot connect to the database (check SENTINEL_DATABASE__URL)")?;
    db.ensure_schema(false).await?;
    let current = keyring.current_id().to_owned();
    let vault = sentinel_jobs::Vault::new(std::sync::Arc::new(keyring), db.secrets());
    let resealed = vault.reseal_all().await?;
    println!("re-sealed {resealed} secret(s) with master key {current}; the retired keys can now be removed");
    Ok(())
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

async fn admin_create(org: &str, email: &str, role: &str) -> anyhow::Result<()> {
    let role: sentinel_domain::Role = role.parse().context("--role must be admin, operator or viewer")?;
    let email = email.trim().to_lowercase();
    anyhow::ensure!(email.contains('@'), "--email must be an email address");
    let settings = Settings::load()?;
    sentinel_telemetry::install_crypto_provider();
    let db = sentinel_db::Database::connect(settings.database.url.expose_secret(), 2)
        .await
        .context("cannot connect to the database (check SENTINEL_DATABASE__URL)")?;
    db.ensure_schema(false).await?;
    let access = db.access();
    let org = match access.org_by_name(org).await? {
        Some(o) => o,
        None => access.create_org(org).await?,
    };
    let (password, generated) = match std::env::var("SENTINEL_ADMIN_PASSWORD") {
        Ok(p) if p.len() >= 12 => (p, false),
        Ok(_) => anyhow::bail!("SENTINEL_ADMIN_PASSWORD must be at least 12 characters"),
        Err(_) => (api_gateway::auth::random_token()[..24].to_owned(), true),
    };
    let hash = api_gateway::auth::hash_password(password.clone()).await.map_err(|p| anyhow::anyhow!("{p}"))?;
    match access.create_user(org.id, &email, &hash, role).await {
        Ok(user) => println!("created {role} {} in organization {} ({})", user.email, org.name, user.id),
        Err(sentinel_db::DbError::Duplicate) => anyhow::bail!("a user with email {email} already exists"),
        Err(e) => return Err(e.into()),
    }
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}
