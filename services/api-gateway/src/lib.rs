//! The API gateway: the REST API (and, later, SSE) that the web console and automation use, plus the
//! ops endpoints. It enqueues through the spine and reads job state from the database.

mod audit;
pub mod auth;
mod db_guard;
mod doc;
mod job_cache;
pub mod openapi;
mod problem;
mod routes;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use sentinel_jobs::{Spine, SpineReadiness};
use sentinel_telemetry::Shutdown;
use sentinel_telemetry::ops::{self, Ops};

pub use problem::Problem;

/// This service's name.
pub const SERVICE: &str = "api-gateway";

/// A bound, not yet running gateway.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
}

impl Application {
    /// Binds the listener from the spine's settings (port 0 picks a free port, for tests).
    pub async fn build(spine: Spine) -> anyhow::Result<Self> {
        let settings = spine.settings().clone();
        // Credentials (SSH keys, config secrets) are sealed by the vault: no key, no gateway.
        spine.vault().context("the gateway stores credentials")?;
        auth::bootstrap(&spine).await.context("cannot create the bootstrap organization, key or admin")?;
        let listener = TcpListener::bind(settings.http.listen)
            .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
        let port = listener.local_addr()?.port();
        let ops = Ops {
            service: SERVICE,
            readiness: Arc::new(SpineReadiness {
                spine: spine.clone(),
                queues: spine.catalog().queues(),
                watch_waiting: false,
            }),
        };
        let limiter = web::Data::new(auth::LoginLimiter::new(settings.auth.login_attempts_per_minute));
        let jobs_cache = web::Data::new(job_cache::JobCache::new());
        let hub = web::Data::new(routes::streams::EventHub::start(spine.clone(), jobs_cache.clone().into_inner()));
        let credentials = web::Data::new(auth::CredentialCache::new());
        let audit_writer = web::Data::new(audit::AuditWriter::start(&spine));
        let limit = settings.http.max_body_bytes;
        let cors_origins = settings.http.cors_allowed_origins.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::Condition::new(!cors_origins.is_empty(), cors(&cors_origins)))
                .wrap(middleware::from_fn(sentinel_telemetry::ops::trace_requests))
                .wrap(middleware::from_fn(sentinel_telemetry::ops::record_http_metrics))
                .app_data(web::Data::new(spine.clone()))
                .app_data(problem::json_config(limit))
                .app_data(problem::query_config())
                .app_data(problem::path_config())
                .configure(|cfg| ops::configure(cfg, ops.clone()))
                // Public: the API's description and its browsable docs (served offline, no CDN).
                .service(
                    utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/api/v1/openapi.json", openapi::document()),
                )
                .app_data(limiter.clone())
                .app_data(hub.clone())
                .app_data(jobs_cache.clone())
                .app_data(credentials.clone())
                .app_data(audit_writer.clone())
                .service(
                    web::scope("/api/v1")
                        .wrap(middleware::from_fn(audit::record))
                        .wrap(middleware::from_fn(auth::authenticate))
                        .wrap(middleware::from_fn(db_guard::refuse_while_down))
                        .configure(routes::access::configure)
                        .configure(routes::jobs::configure)
                        .configure(routes::dead_letters::configure)
                        .configure(routes::schedules::configure)
                        .configure(routes::servers::configure)
                        .configure(routes::configs::configure)
                        .configure(routes::ssh_keys::configure)
                        .configure(routes::playbooks::configure)
                        .configure(routes::provision_runs::configure)
                        .configure(routes::backup_targets::configure)
                        .configure(routes::backup_destinations::configure)
                        .configure(routes::backup_plans::configure)
                        .configure(routes::backup_journal::configure)
                        .configure(routes::backup_restores::configure)
                        .configure(routes::backup_uploads::configure)
                        .configure(routes::monitor_targets::configure)
                        .configure(routes::monitor_results::configure)
                        .configure(routes::monitor_settings::configure)
                        .configure(routes::monitor_incidents::configure)
                        .configure(routes::monitor_machines::configure)
                        .configure(routes::monitor_thresholds::configure)
                        .configure(routes::monitor_heartbeats::configure)
                        .configure(routes::notify_channels::configure)
                        .configure(routes::notify_policy::configure)
                        .configure(routes::notify_mutes::configure)
                        .configure(routes::notify_log::configure)
                        .configure(routes::monitor_dashboard::configure)
                        .configure(routes::monitor_stream::configure)
                        .configure(routes::streams::configure),
                )
                // Public: scheduled jobs' pings, the token in the path being the credential.
                .service(
                    web::scope("/ping")
                        .wrap(middleware::from_fn(db_guard::refuse_while_down))
                        .configure(routes::pings::configure),
                )
                .service(
                    web::scope("/tasks")
                        .wrap(middleware::from_fn(audit::record))
                        .wrap(middleware::from_fn(auth::authenticate))
                        .wrap(middleware::from_fn(db_guard::refuse_while_down))
                        .configure(routes::tasks::configure),
                )
                .default_service(web::to(problem::not_found))
        })
        .workers(if settings.http.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.http.workers
        })
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` fires, finishing in-flight requests.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await.context("gateway server failed")
    }
}

/// CORS for a separately hosted console: only the configured origins, with credentials (the session
/// cookie) and the headers the API uses.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(["authorization", "content-type", "x-api-key", "last-event-id", "traceparent", "tracestate"])
        .supports_credentials()
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Runs the gateway and its outbox relay on `spine` until `shutdown` fires.
pub async fn run(spine: Spine, shutdown: Shutdown) -> anyhow::Result<()> {
    let app = Application::build(spine.clone()).await?;
    tracing::info!(port = app.port(), "api-gateway listening");
    let relay = tokio::spawn(sentinel_jobs::Relay::new(spine).run(shutdown.clone()));
    let res = app.run_until_stopped(shutdown).await;
    let _ = relay.await;
    res
}
