//! `/ping/{token}`: what scheduled jobs call (Healthchecks' URL shape) — public, the token being the
//! credential: `/ping/{token}` (success), `/ping/{token}/start`, `/ping/{token}/fail`,
//! `/ping/{token}/{exit_code}` (0 success, 1–255 failure), by GET or POST; `?rid=` pairs a start
//! with its end, a POST body is kept as the run's log (its first 10 KiB). Answered `OK` once stored;
//! an unknown token is a 404, and a database that cannot be reached a 503 (the job may retry).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sentinel_jobs::Spine;
use sentinel_jobs::db::monitoring::PingInput;
use sentinel_jobs::domain::monitoring::heartbeats::PingKind;
use serde::Deserialize;

use super::resource;
use crate::Problem;
use crate::auth::token_hash;
use crate::doc;

/// The largest ping body read (bytes); more is a 413.
pub const MAX_PING_BODY: usize = 100 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_PING_BODY));
    cfg.service(resource("/{token}").route(web::get().to(success)).route(web::post().to(success)));
    cfg.service(resource("/{token}/{signal}").route(web::get().to(signal)).route(web::post().to(signal)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PingQuery {
    /// A run id (1 to 64 letters, digits, `.`, `_`, `-`; a UUID does): pairs a start with its end.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    rid: Option<String>,
}

async fn record(
    spine: &Spine,
    req: &HttpRequest,
    token: &str,
    kind: PingKind,
    rid: Option<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let unknown = || Problem::not_found("a heartbeat check with this token");
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    if let Some(r) = &rid
        && (r.is_empty() || r.len() > 64 || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        return Err(Problem::invalid_field("rid", "1 to 64 letters, digits, `.`, `_` or `-`"));
    }
    let input = PingInput {
        kind,
        run_id: rid,
        body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
        remote_addr: req.peer_addr().map(|a| a.ip().to_string()),
    };
    let receipt = spine.db().monitoring().ping(&token_hash(&token.to_ascii_lowercase()), &input, Utc::now()).await?;
    let receipt = receipt.ok_or_else(unknown)?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Heartbeat-Status", receipt.status))
        .insert_header(("X-Unexpected-Run", if receipt.unexpected { "true" } else { "false" }))
        .content_type("text/plain; charset=utf-8")
        .body("OK"))
}

#[utoipa::path(
    method(get, post),
    path = "/ping/{token}",
    tag = "pings",
    summary = "A run of a scheduled job succeeded (public: the token is the credential)",
    params(("token" = String, Path, description = "The check's ping token"), PingQuery),
    request_body(content = String, description = "Optional: the run's output, kept as its log (first 10 KiB)", content_type = "text/plain"),
    responses((status = 200, description = "Stored", body = String, content_type = "text/plain"), doc::NotFound, doc::Invalid),
    security(())
)]
pub(crate) async fn success(
    spine: web::Data<Spine>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<PingQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    record(&spine, &req, &path, PingKind::Success, q.into_inner().rid, body).await
}

#[utoipa::path(
    method(get, post),
    path = "/ping/{token}/{signal}",
    tag = "pings",
    summary = "A run of a scheduled job started (`start`), failed (`fail`) or ended with an exit code (0 success, 1–255 failure)",
    params(
        ("token" = String, Path, description = "The check's ping token"),
        ("signal" = String, Path, description = "`start`, `fail`, or an exit code from 0 to 255", pattern = "^(start|fail|[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$"),
        PingQuery
    ),
    request_body(content = String, description = "Optional: the run's output, kept as its log (first 10 KiB)", content_type = "text/plain"),
    responses((status = 200, description = "Stored", body = String, content_type = "text/plain"), doc::NotFound, doc::Invalid),
    security(())
)]
pub(crate) async fn signal(
    spine: web::Data<Spine>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    q: web::Query<PingQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let (token, signal) = path.into_inner();
    let kind = match signal.as_str() {
        "start" => PingKind::Start,
        "fail" => PingKind::Fail,
        code => PingKind::Exit(
            code.parse()
                .map_err(|_| Problem::invalid_field("signal", "`start`, `fail`, or an exit code from 0 to 255"))?,
        ),
    };
    record(&spine, &req, &token, kind, q.into_inner().rid, body).await
}
