//! `/api/v1/monitoring/heartbeats`: heartbeat checks of scheduled jobs — create (answered with the
//! ping URL, whose token is shown this once and stored only as a hash), list, read, replace, delete,
//! a new token (`POST …/{id}/token`), and the check's recent pings (`GET …/{id}/pings`).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::monitoring::{HeartbeatRecord, PingRecord};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::monitoring::heartbeats::{self as hb, HeartbeatSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::{field_errors, path_id};
use super::resource;
use crate::Problem;
use crate::auth::{Principal, random_token, token_hash};
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/heartbeats").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/monitoring/heartbeats/{id}")
            .route(web::get().to(get_heartbeat))
            .route(web::put().to(replace))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/monitoring/heartbeats/{id}/token").route(web::post().to(new_token)));
    cfg.service(resource("/monitoring/heartbeats/{id}/pings").route(web::get().to(pings)));
}

/// Body of `POST /api/v1/monitoring/heartbeats` and `PUT /api/v1/monitoring/heartbeats/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    #[schema(schema_with = check_name)]
    pub name: String,
    /// A run is expected every this many seconds after the previous one ended (10 to 31536000).
    /// Exclusive with `cron`.
    #[serde(default)]
    #[schema(minimum = 10, maximum = 31_536_000)]
    pub period_seconds: Option<u32>,
    /// A run is expected at each tick of this cron expression (in `timezone`). Exclusive with
    /// `period_seconds`.
    #[serde(default)]
    #[schema(schema_with = doc::cron)]
    pub cron: Option<String>,
    /// IANA time zone the cron expression is read in (default `UTC`; only with `cron`).
    #[serde(default)]
    #[schema(schema_with = doc::timezone_or_null)]
    pub timezone: Option<String>,
    /// How long after its expected time a run may complete (default 300).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31_536_000)]
    pub grace_seconds: Option<u32>,
    /// A run must start (ping `/start`) within this many seconds of its expected time.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31_536_000)]
    pub start_window_seconds: Option<u32>,
    /// A run shorter than this (start to end) is a problem. At most `max_runtime_seconds`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31_536_000)]
    pub min_runtime_seconds: Option<u32>,
    /// A run longer than this is a problem, raised while it still runs.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31_536_000)]
    pub max_runtime_seconds: Option<u32>,
    /// Paused checks record pings but raise nothing (default true).
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// 1 to 100 characters, not blank, no control characters (surrounding whitespace is trimmed).
fn check_name() -> utoipa::openapi::Object {
    const CTRL: &str = r"\u0000-\u001F\u007F-\u009F";
    doc::string()
        .max_length(Some(100))
        .pattern(Some(format!("^[^{CTRL}]*[^\\s{CTRL}][^{CTRL}]*$")))
        .description(Some("1 to 100 characters, not blank, no control characters (surrounding whitespace is trimmed)."))
        .build()
}

impl HeartbeatBody {
    fn into_spec(self) -> HeartbeatSpec {
        HeartbeatSpec {
            name: self.name.trim().to_owned(),
            period_seconds: self.period_seconds,
            cron: self.cron.map(|c| c.trim().to_owned()),
            timezone: self.timezone,
            grace_seconds: self.grace_seconds.unwrap_or(300),
            start_window_seconds: self.start_window_seconds,
            min_runtime_seconds: self.min_runtime_seconds,
            max_runtime_seconds: self.max_runtime_seconds,
            is_active: self.is_active.unwrap_or(true),
        }
    }
}

/// A heartbeat check as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatView {
    pub id: Uuid,
    pub name: String,
    pub period_seconds: Option<u32>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub grace_seconds: u32,
    pub start_window_seconds: Option<u32>,
    pub min_runtime_seconds: Option<u32>,
    pub max_runtime_seconds: Option<u32>,
    pub is_active: bool,
    /// `new` (never pinged), `up`, `running` (started, not ended) or `down` (see `problem`).
    pub status: String,
    /// `missed`, `start_missed`, `failed`, `too_long` or `too_short`.
    pub problem: Option<String>,
    pub problem_note: Option<String>,
    /// The run awaited: a cron tick, or the previous end plus the period.
    pub expected_at: Option<DateTime<Utc>>,
    pub running_since: Option<DateTime<Utc>>,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub open_alert_id: Option<Uuid>,
    /// Only when the check is created or its token replaced: the URL to ping (`/start`, `/fail`,
    /// `/<exit code>` appended for the other pings). The token is not stored and not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(h: HeartbeatRecord, ping_url: Option<String>) -> HeartbeatView {
    HeartbeatView {
        id: h.id,
        status: hb::status(&h.tracker).to_owned(),
        problem: h.tracker.problem.map(|p| p.as_str().to_owned()),
        problem_note: h.problem_note,
        expected_at: h.tracker.expected_at,
        running_since: h.tracker.started_at,
        last_ping_at: h.tracker.last_ping_at,
        last_success_at: h.tracker.last_success_at,
        open_alert_id: h.open_alert_id,
        name: h.spec.name,
        period_seconds: h.spec.period_seconds,
        cron: h.spec.cron,
        timezone: h.spec.timezone,
        grace_seconds: h.spec.grace_seconds,
        start_window_seconds: h.spec.start_window_seconds,
        min_runtime_seconds: h.spec.min_runtime_seconds,
        max_runtime_seconds: h.spec.max_runtime_seconds,
        is_active: h.spec.is_active,
        ping_url,
        created_at: h.created_at,
        updated_at: h.updated_at,
    }
}

fn checked(body: Value) -> Result<HeartbeatSpec, Problem> {
    let spec = doc::read_body::<HeartbeatBody>(body)?.into_spec();
    let problems = spec.check();
    if problems.is_empty() { Ok(spec) } else { Err(Problem::invalid(field_errors(problems))) }
}

fn ping_url(req: &HttpRequest, token: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}/ping/{token}", info.scheme(), info.host())
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/heartbeats",
    tag = "monitoring",
    summary = "Add a heartbeat check (the answer holds its ping URL, shown this once)",
    request_body = HeartbeatBody,
    responses((status = 201, description = "Created", body = HeartbeatView), doc::Guarded, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn create(
    req: HttpRequest,
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let spec = checked(body.into_inner())?;
    let token = random_token();
    let rec = spine
        .db()
        .monitoring()
        .create_heartbeat(principal.org_id, spec, &token_hash(&token), &principal.label(), Utc::now())
        .await?;
    let location = format!("/api/v1/monitoring/heartbeats/{}", rec.id);
    Ok(HttpResponse::Created().insert_header(("Location", location)).json(view(rec, Some(ping_url(&req, &token)))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatQuery {
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatPage {
    pub items: Vec<HeartbeatView>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/heartbeats",
    tag = "monitoring",
    summary = "List heartbeat checks with their status",
    params(HeartbeatQuery),
    responses((status = 200, description = "A page of checks", body = HeartbeatPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<HeartbeatQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().monitoring().heartbeats(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |h| h.id);
    Ok(HttpResponse::Ok().json(HeartbeatPage { items: rows.into_iter().map(|h| view(h, None)).collect(), next_cursor }))
}

async fn heartbeat_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<HeartbeatRecord, Problem> {
    let id = path_id(raw, "heartbeat")?;
    spine
        .db()
        .monitoring()
        .heartbeat(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("heartbeat check {raw:?}")))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/heartbeats/{id}",
    tag = "monitoring",
    summary = "Get a heartbeat check",
    params(("id" = uuid::Uuid, Path, description = "Check id (UUID)")),
    responses((status = 200, description = "The check", body = HeartbeatView), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn get_heartbeat(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(heartbeat_of(&spine, &principal, &path).await?, None)))
}

#[utoipa::path(
    put,
    path = "/api/v1/monitoring/heartbeats/{id}",
    tag = "monitoring",
    summary = "Replace a heartbeat check (a new schedule awaits its next run afresh; pausing resolves its alert)",
    params(("id" = uuid::Uuid, Path, description = "Check id (UUID)")),
    request_body = HeartbeatBody,
    responses((status = 200, description = "Replaced", body = HeartbeatView), (status = 409, description = "Changed meanwhile; try again", body = crate::Problem, content_type = "application/problem+json"), doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let spec = checked(body.into_inner())?;
    let old = heartbeat_of(&spine, &principal, &path).await?;
    let rec = spine.db().monitoring().update_heartbeat(&old, spec, &principal.label()).await?;
    Ok(HttpResponse::Ok().json(view(rec, None)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/heartbeats/{id}",
    tag = "monitoring",
    summary = "Delete a heartbeat check and its pings (its alert resolves)",
    params(("id" = uuid::Uuid, Path, description = "Check id (UUID)")),
    responses((status = 204, description = "Deleted"), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = heartbeat_of(&spine, &principal, &path).await?;
    spine.db().monitoring().delete_heartbeat(&rec, &principal.label()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/heartbeats/{id}/token",
    tag = "monitoring",
    summary = "Replace a check's ping token (the old URL stops working; the new one is shown this once)",
    params(("id" = uuid::Uuid, Path, description = "Check id (UUID)")),
    responses((status = 200, description = "The check with its new ping URL", body = HeartbeatView), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn new_token(
    req: HttpRequest,
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = heartbeat_of(&spine, &principal, &path).await?;
    let token = random_token();
    spine.db().monitoring().set_heartbeat_token(rec.id, &token_hash(&token)).await?;
    Ok(HttpResponse::Ok().json(view(rec, Some(ping_url(&req, &token)))))
}

/// One ping of a check (its log entry).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PingView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `start`, `success` or `fail`.
    pub kind: String,
    pub exit_code: Option<i32>,
    pub run_id: Option<String>,
    /// An end paired with its start: the run's length.
    pub duration_ms: Option<i64>,
    /// Not at a scheduled time (cron checks): a run nobody expected.
    pub unexpected: bool,
    pub remote_addr: Option<String>,
    /// The request body (the job's output), at most 10 KiB.
    pub body: Option<String>,
}

impl From<PingRecord> for PingView {
    fn from(p: PingRecord) -> Self {
        Self {
            id: p.id,
            at: p.at,
            kind: p.kind,
            exit_code: p.exit_code,
            run_id: p.run_id,
            duration_ms: p.duration_ms,
            unexpected: p.unexpected,
            remote_addr: p.remote_addr,
            body: p.body,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PingQuery {
    /// `next_cursor` of the previous page (a ping id).
    #[param(minimum = 1)]
    cursor: Option<i64>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PingPage {
    pub items: Vec<PingView>,
    pub next_cursor: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/heartbeats/{id}/pings",
    tag = "monitoring",
    summary = "A check's recent pings, newest first (the last 100 are kept)",
    params(("id" = uuid::Uuid, Path, description = "Check id (UUID)"), PingQuery),
    responses((status = 200, description = "A page of pings", body = PingPage), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn pings(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<PingQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let rec = heartbeat_of(&spine, &principal, &path).await?;
    let rows = spine.db().monitoring().heartbeat_pings(rec.id, q.cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |p| p.id);
    Ok(HttpResponse::Ok().json(PingPage { items: rows.into_iter().map(PingView::from).collect(), next_cursor }))
}
