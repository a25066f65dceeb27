//! The ops endpoints every service serves (`/health`, `/ready`, `/metrics`) and the middleware that
//! counts HTTP requests by route and status.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use futures::future::BoxFuture;
use serde_json::json;

use crate::metric;

/// Something that can say whether the service's dependencies are reachable, and refresh gauges
/// (stream depths) right before a scrape.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when ready; otherwise the name of each failing dependency and why.
    fn check(&self) -> BoxFuture<'_, Result<(), Vec<(String, String)>>>;
    /// Conditions worth an operator's attention that do not make the service unready (shown by
    /// `/ready` under `warnings`); the default has none.
    fn warnings(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(async { Vec::new() })
    }
    /// Called before `/metrics` renders; the default does nothing.
    fn refresh_gauges(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Shared state of the ops routes.
#[derive(Clone)]
pub struct Ops {
    pub service: &'static str,
    pub readiness: Arc<dyn Readiness>,
}

/// Registers `/health`, `/ready` and `/metrics` on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig, ops: Ops) {
    cfg.app_data(web::Data::new(ops))
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

async fn health(ops: web::Data<Ops>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "service": ops.service }))
}

async fn ready(ops: web::Data<Ops>) -> HttpResponse {
    match ops.readiness.check().await {
        Ok(()) => {
            let warnings: serde_json::Map<String, serde_json::Value> = ops
                .readiness
                .warnings()
                .await
                .into_iter()
                .map(|(name, why)| (name, serde_json::Value::String(why)))
                .collect();
            if warnings.is_empty() {
                HttpResponse::Ok().json(json!({ "status": "ready", "service": ops.service }))
            } else {
                HttpResponse::Ok().json(json!({ "status": "ready", "service": ops.service, "warnings": warnings }))
            }
        }
        Err(failures) => {
            let checks: serde_json::Map<String, serde_json::Value> =
                failures.into_iter().map(|(name, why)| (name, serde_json::Value::String(why))).collect();
            HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "not_ready", "service": ops.service, "failing": checks }))
        }
    }
}

async fn metrics(ops: web::Data<Ops>) -> HttpResponse {
    ops.readiness.refresh_gauges().await;
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::prometheus().render())
}

/// Middleware: counts requests and their duration by route pattern (never the raw path, which would
/// explode cardinality with ids), method and status.
pub async fn record_http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let res = next.call(req).await;
    // Routing happens inside the app, so the matched pattern is known only on the way out.
    let (status, route) = match &res {
        Ok(r) => (r.status().as_u16(), r.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
    };
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!(metric::HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!(metric::HTTP_DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    res
}

/// A small HTTP server with only the ops routes, for services that have no API of their own.
pub struct OpsServer {
    server: actix_web::dev::Server,
    port: u16,
}

impl OpsServer {
    /// Binds `listen` (port 0 picks a free port, for tests).
    pub fn bind(listen: std::net::SocketAddr, ops: Ops) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(record_http_metrics))
                .configure(|cfg| configure(cfg, ops.clone()))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` fires.
    pub async fn run_until_stopped(self, shutdown: crate::Shutdown) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

/// Middleware: one span per request, continuing the caller's W3C trace (`traceparent`/`tracestate`
/// headers) so work the request enqueues joins the same trace.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "http.request",
        http.method = %req.method(),
        http.route = tracing::field::Empty,
        http.status_code = tracing::field::Empty
    );
    let carrier: std::collections::BTreeMap<String, String> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    crate::attach_parent(&span, &carrier);
    let res = next.call(req).instrument(span.clone()).await;
    if let Ok(r) = &res {
        span.record("http.status_code", r.status().as_u16());
        span.record("http.route", r.request().match_pattern().unwrap_or_default());
    }
    res
}
