//! `sentinel up`: every service in one process on SQLite and the in-process bus. Jobs that were queued
//! or running when the process stopped are requeued from the database on the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sentinel_config::Settings;
use sentinel_jobs::{Catalog, Spine};
use sentinel_telemetry::Shutdown;

/// File in the data directory holding the generated API token.
const TOKEN_FILE: &str = "api-token";

pub async fn up(data_dir: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    // Settings first (without overrides) to learn the data directory, then the embedded overrides.
    let base = Settings::load()?;
    let data_dir = data_dir.unwrap_or(base.data_dir.clone());
    create_private_dir(&data_dir)?;
    let data_dir = data_dir.canonicalize().with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let db_file = data_dir.join("sentinel.sqlite");
    let mut overrides = vec![
        ("data_dir", data_dir.display().to_string()),
        ("database.url", format!("sqlite://{}?mode=rwc", db_file.display())),
        ("database.auto_migrate", "true".to_owned()),
        ("bus.backend", "memory".to_owned()),
    ];
    if let Some(listen) = listen {
        overrides.push(("http.listen", listen.to_string()));
    }
    let mut token_note = None;
    if base.http.api_token.is_none() {
        let (token, created) = load_or_create_token(&data_dir)?;
        if created {
            token_note = Some(token.clone());
        }
        overrides.push(("http.api_token", token));
    }
    if base.secrets.master_key.is_none() && base.secrets.master_key_file.is_none() {
        // Creates `<data_dir>/master.key` (mode 0600) on first start, and reuses it afterwards.
        sentinel_jobs::secrets::Keyring::load(&base.secrets, Some(&data_dir))?;
        let key_file = data_dir.join(sentinel_jobs::secrets::KEY_FILE);
        overrides.push(("secrets.master_key_file", key_file.display().to_string()));
    }
    let settings = Settings::load_for(&[], &overrides)?;
    let _telemetry = sentinel_telemetry::init("sentinel", &settings.telemetry)?;

    let spine = Spine::connect(&settings, Catalog::builtin(settings.worker.fault_injection))
        .await
        .with_context(|| format!("cannot start on the data in {}", data_dir.display()))?;
    let resumed = spine.store().requeue_unfinished().await?;
    if resumed > 0 {
        tracing::info!(resumed, "requeued jobs that were unfinished when Sentinel last stopped");
    }

    let admin_note = ensure_first_admin(&spine).await?;
    let shutdown = Shutdown::new();
    let app = api_gateway::Application::build(spine.clone()).await?;
    let addr = SocketAddr::new(settings.http.listen.ip(), app.port());
    println!("Sentinel is up: API on http://{addr} (data in {})", data_dir.display());
    match token_note {
        Some(token) => {
            println!("Generated an API token (shown once; stored in {}): {token}", data_dir.join(TOKEN_FILE).display())
        }
        None => println!("API token: see {} (or SENTINEL_HTTP__API_TOKEN)", data_dir.join(TOKEN_FILE).display()),
    }

    if let Some((email, password)) = admin_note {
        println!("Created the first admin (password shown once; change it after logging in): {email} / {password}");
    }

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(with_name("api-gateway", app.run_until_stopped(shutdown.clone())));
    tasks.spawn(with_name("provision-worker", provision_worker::run(spine.clone(), shutdown.clone())));
    tasks.spawn(with_name("backup-worker", backup_worker::run(spine.clone(), shutdown.clone())));
    tasks.spawn(with_name("monitor-worker", monitor_worker::run(spine.clone(), shutdown.clone())));
    tasks.spawn(with_name("scheduler", scheduler::run(spine.clone(), shutdown.clone())));

    let mut failure = None;
    tokio::select! {
        _ = sentinel_telemetry::wait_for_signal() => {}
        Some(done) = tasks.join_next() => {
            // A service ended on its own: that is a failure of the whole process.
            failure = Some(match done {
                Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped unexpectedly"),
                Ok((name, Err(e))) => e.context(format!("{name} failed")),
                Err(e) => anyhow::anyhow!("a service panicked: {e}"),
            });
        }
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    println!("Sentinel stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn with_name(
    name: &'static str,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, fut.await)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// Reads the API token from the data directory, creating a random one (mode 0600) the first time.
fn load_or_create_token(dir: &Path) -> anyhow::Result<(String, bool)> {
    let path = dir.join(TOKEN_FILE);
    if path.exists() {
        let token = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((token.trim().to_owned(), false));
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options.open(&path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    Ok((token, true))
}

/// On a fresh data directory, creates the bootstrap organization's first admin with a random password
/// (returned so it can be printed once, never logged). Nothing happens once any user exists.
async fn ensure_first_admin(spine: &Spine) -> anyhow::Result<Option<(String, String)>> {
    let access = spine.db().access();
    if access.user_count().await? > 0 || spine.settings().auth.bootstrap_admin_email.is_some() {
        return Ok(None);
    }
    let org_name = spine.settings().auth.bootstrap_org.clone();
    let org = match access.org_by_name(&org_name).await? {
        Some(org) => org,
        None => access.create_org(&org_name).await?,
    };
    let email = "admin@localhost".to_owned();
    let password = api_gateway::auth::random_token()[..24].to_owned();
    let hash = api_gateway::auth::hash_password(password.clone()).await.map_err(|p| anyhow::anyhow!("{p}"))?;
    access.create_user(org.id, &email, &hash, sentinel_domain::Role::Admin).await?;
    Ok(Some((email, password)))
}
