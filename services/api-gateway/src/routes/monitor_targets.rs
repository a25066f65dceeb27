//! `/api/v1/monitoring/targets` (and the seed's `/api/v1/http-targets` for list and create): HTTP
//! targets — create (a URL the organization already watches is a 409 naming the existing target),
//! list with filters, read with its uptime, replace, delete — and `POST …/{id}/check`, which checks
//! the target now and answers with the result.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::backups::SecretChange;
use sentinel_jobs::db::monitoring::{TargetFilter, TargetRecord, Uptime};
use sentinel_jobs::domain::monitoring::targets::{SealedHeaders, check_secret_headers};
use sentinel_jobs::domain::monitoring::{self as domain, Assertion, CheckStatus, HttpMethod, TargetSpec};
use sentinel_jobs::domain::{JobEventKind, JobId, Role};
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::backup_shared::{accepted, enqueue_for, field_errors, path_id};
use super::resource;
use super::streams::EventHub;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in ["/monitoring/targets", "/http-targets"] {
        cfg.service(resource(path).route(web::post().to(create)).route(web::get().to(list)));
    }
    cfg.service(
        resource("/monitoring/targets/{id}")
            .route(web::get().to(get_target))
            .route(web::put().to(replace))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/monitoring/targets/{id}/check").route(web::post().to(check_now)));
}

/// Body of `POST /api/v1/monitoring/targets` and `PUT /api/v1/monitoring/targets/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// An `http://` or `https://` URL.
    #[schema(max_length = 2048)]
    pub url: String,
    /// GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    #[serde(default)]
    pub method: Option<String>,
    /// The status codes that count as up; `null` (default) accepts every 2xx.
    #[serde(default)]
    pub accepted_status_codes: Option<Vec<u16>>,
    /// 1 to 120 seconds, never above the interval (default 10, or the interval if shorter).
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// 5 to 86400 seconds (default 60).
    #[serde(default)]
    pub check_interval_seconds: Option<u32>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Request headers (not `Host` or `Content-Length`; credentials — `Authorization`, `Cookie`,
    /// names with `token`, `secret`, `api-key`, `password` — go in `secret_headers`).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Request headers whose values are credentials: sealed at rest in the secret store, never
    /// returned (their names are). On replace: absent keeps the stored ones, `{}` removes them.
    #[serde(default)]
    pub secret_headers: Option<BTreeMap<String, String>>,
    /// A request body (not with GET or HEAD), at most 64 KiB.
    #[serde(default)]
    pub body: Option<String>,
    /// `{"kind": "keyword", "value": "OK", "invert": false}` or `{"kind": "json_path", "path":
    /// "$.status", "equals": "ok"}` (without `equals`: the value must exist and not be null).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<Value>,
    /// Slower than this (milliseconds) counts as down (`response_time`).
    #[serde(default)]
    pub max_response_ms: Option<u32>,
    /// Flag the certificate (`cert_expiring`) once it expires within this many days.
    #[serde(default)]
    pub tls_expiry_warning_days: Option<u16>,
    /// Follow redirects (default true; false makes a 3xx the answer).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// PEM certificates trusted for this target besides the system's roots (a private CA).
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// The inventory server the target runs on.
    #[serde(default)]
    pub server_id: Option<Uuid>,
}

/// A target's latest state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetStateView {
    /// `up`, `down`, or null before the first check.
    pub status: Option<String>,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub status_code: Option<u16>,
    pub response_ms: Option<f64>,
    pub error_class: Option<String>,
    pub message: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    /// The certificate expires within `tls_expiry_warning_days`.
    pub cert_expiring: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// The next deadline (absolute: `previous + interval`).
    pub next_check_at: DateTime<Utc>,
}

/// Uptime and response times over one window (percentiles at the histogram's bucket resolution).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UptimeView {
    /// `24h`, `7d`, `30d` or `1y`.
    pub window: String,
    pub checks: u64,
    pub up: u64,
    pub uptime_percent: Option<f64>,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<u32>,
    pub p95_ms: Option<u32>,
    pub p99_ms: Option<u32>,
}

impl From<Uptime> for UptimeView {
    fn from(u: Uptime) -> Self {
        Self {
            window: u.window.label().to_owned(),
            checks: u.checks,
            up: u.up,
            uptime_percent: u.uptime_percent,
            mean_ms: u.mean_ms,
            p50_ms: u.p50_ms,
            p95_ms: u.p95_ms,
            p99_ms: u.p99_ms,
        }
    }
}

/// A target as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetView {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub method: String,
    pub accepted_status_codes: Option<Vec<u16>>,
    pub timeout_seconds: u32,
    pub check_interval_seconds: u32,
    pub is_active: bool,
    pub headers: BTreeMap<String, String>,
    /// The names of the sealed credential headers (their values are never returned).
    pub secret_headers: Vec<String>,
    pub body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub assertion: Option<Assertion>,
    pub max_response_ms: Option<u32>,
    pub tls_expiry_warning_days: Option<u16>,
    pub follow_redirects: bool,
    pub ca_certificate: Option<String>,
    pub server_id: Option<Uuid>,
    pub state: TargetStateView,
    /// Only on `GET /api/v1/monitoring/targets/{id}`: 24 h, 7 d, 30 d and 1 y.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<Vec<UptimeView>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn view(t: TargetRecord) -> TargetView {
    let s = t.spec;
    let expiring = match (s.tls_expiry_warning_days, t.state.cert_expires_at) {
        (Some(days), Some(at)) => at - Utc::now() < chrono::Duration::days(i64::from(days)),
        _ => false,
    };
    TargetView {
        id: t.id,
        name: s.name,
        url: s.url,
        method: s.method.as_str().to_owned(),
        accepted_status_codes: s.accepted_status_codes,
        timeout_seconds: s.timeout_seconds,
        check_interval_seconds: s.check_interval_seconds,
        is_active: s.is_active,
        headers: s.headers,
        secret_headers: s.sealed_headers.map(|h| h.names).unwrap_or_default(),
        body: s.body,
        assertion: s.assertion,
        max_response_ms: s.max_response_ms,
        tls_expiry_warning_days: s.tls_expiry_warning_days,
        follow_redirects: s.follow_redirects,
        ca_certificate: s.ca_certificate,
        server_id: s.server_id,
        state: TargetStateView {
            status: t.state.last_status.map(|s| s.as_str().to_owned()),
            last_checked_at: t.state.last_checked_at,
            status_code: t.state.last_status_code,
            response_ms: t.state.last_response_ms,
            error_class: t.state.last_error_class.map(|c| c.as_str().to_owned()),
            message: t.state.last_message,
            cert_expires_at: t.state.cert_expires_at,
            cert_expiring: expiring,
            consecutive_failures: t.state.consecutive_failures,
            consecutive_successes: t.state.consecutive_successes,
            next_check_at: t.next_due_at,
        },
        uptime: None,
        created_by: t.created_by,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

/// A body's credential headers for the store: sealed (`Set`), removed (`{}`), or kept when absent
/// from a replace; with the `sealed_headers` the specification records.
fn sealed_headers_of(
    spine: &Spine,
    secret: Option<BTreeMap<String, String>>,
    old: Option<&SealedHeaders>,
) -> Result<(SecretChange, Option<SealedHeaders>), Problem> {
    match secret {
        None => Ok((SecretChange::Keep, old.cloned())),
        Some(map) if map.is_empty() => Ok((if old.is_some() { SecretChange::Clear } else { SecretChange::Keep }, None)),
        Some(map) => {
            let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
            let plain = zeroize::Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default());
            let (id, sealed) = vault.seal_new(&plain);
            let names = map.keys().cloned().collect();
            Ok((SecretChange::Set((id, sealed.key_id, sealed.text)), Some(SealedHeaders { secret_id: id, names })))
        }
    }
}

/// Checks a body and builds the specification (every problem named at once), with what becomes
/// of its sealed headers (`old`: the target it replaces).
async fn spec_of(
    spine: &Spine,
    principal: &Principal,
    mut b: TargetBody,
    old: Option<&TargetSpec>,
) -> Result<(TargetSpec, SecretChange), Problem> {
    let mut errors = Vec::new();
    let secret = b.secret_headers.take();
    if let Some(map) = &secret {
        errors.extend(field_errors(check_secret_headers(map, b.headers.as_ref().unwrap_or(&BTreeMap::new()))));
    }
    let method = match b.method.as_deref().map(HttpMethod::parse).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => {
            errors.push(FieldError::new("method", e));
            HttpMethod::Get
        }
    };
    let assertion = match b.assertion.map(serde_json::from_value::<Assertion>).transpose() {
        Ok(a) => a,
        Err(e) => {
            errors.push(FieldError::new(
                "assertion",
                format!("{e} (kind keyword with value, invert; or kind json_path with path, equals)"),
            ));
            None
        }
    };
    let spec = TargetSpec {
        name: b.name,
        url: b.url.trim().to_owned(),
        method,
        accepted_status_codes: b.accepted_status_codes,
        // The default timeout (10 s) never exceeds a shorter interval.
        timeout_seconds: b.timeout_seconds.unwrap_or_else(|| b.check_interval_seconds.unwrap_or(60).clamp(1, 10)),
        check_interval_seconds: b.check_interval_seconds.unwrap_or(60),
        is_active: b.is_active.unwrap_or(true),
        headers: b.headers.unwrap_or_default(),
        body: b.body,
        assertion,
        max_response_ms: b.max_response_ms,
        tls_expiry_warning_days: b.tls_expiry_warning_days,
        follow_redirects: b.follow_redirects.unwrap_or(true),
        ca_certificate: b.ca_certificate,
        server_id: b.server_id,
        sealed_headers: None,
    };
    errors.extend(field_errors(spec.check()));
    if let Some(server) = spec.server_id
        && spine.db().inventory().get_server(principal.org_id, server).await?.is_none()
    {
        errors.push(FieldError::new("server_id", format!("no server {server} in your organization")));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let (change, sealed) = sealed_headers_of(spine, secret, old.and_then(|o| o.sealed_headers.as_ref()))?;
    Ok((TargetSpec { sealed_headers: sealed, ..spec }, change))
}

/// 409 naming the organization's existing target for this URL.
async fn url_taken(spine: &Spine, principal: &Principal, url: &str) -> Problem {
    match spine.db().monitoring().target_by_url(principal.org_id, url).await {
        Ok(Some(existing)) => {
            let mut p =
                Problem::conflict_with(format!("target {:?} already checks this URL", existing.spec.name), existing.id);
            p.existing_id = Some(existing.id.to_string().into());
            p
        }
        Ok(None) => Problem::conflict("a target already checks this URL"),
        Err(e) => e.into(),
    }
}

async fn target_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<TargetRecord, Problem> {
    let id = path_id(raw, "monitor target")?;
    spine
        .db()
        .monitoring()
        .target(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("monitor target {raw:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/targets",
    tag = "monitoring",
    summary = "Add an HTTP target (also at the seed's POST /api/v1/http-targets)",
    request_body = TargetBody,
    responses(
        (status = 201, description = "Stored; its first check is due within one interval", body = TargetView),
        (status = 409, description = "The organization already checks this URL (`existing_id` names the target)", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let (spec, headers) = spec_of(&spine, &principal, doc::read_body(body.into_inner())?, None).await?;
    let url = spec.url.clone();
    match spine.db().monitoring().create_target(principal.org_id, spec, &principal.label(), headers).await {
        Ok(saved) => Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/api/v1/monitoring/targets/{}", saved.id)))
            .json(view(saved))),
        Err(sentinel_jobs::db::DbError::Duplicate) => Err(url_taken(&spine, &principal, &url).await),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
    /// Only active (true) or paused (false) targets.
    is_active: Option<bool>,
    /// `up` or `down` (the latest check).
    #[param(schema_with = doc::check_status)]
    status: Option<String>,
    server_id: Option<Uuid>,
    /// A substring of the name or URL.
    q: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetPage {
    pub items: Vec<TargetView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/targets",
    tag = "monitoring",
    summary = "List HTTP targets with their latest state (also at GET /api/v1/http-targets)",
    params(ListQuery),
    responses((status = 200, description = "A page of targets", body = TargetPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let status =
        q.status.as_deref().map(CheckStatus::parse).transpose().map_err(|e| Problem::invalid_field("status", e))?;
    if q.q.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(Problem::invalid_field("q", "at most 200 characters"));
    }
    let filter = TargetFilter { active: q.is_active, status, server_id: q.server_id, search: q.q.clone() };
    let rows = spine.db().monitoring().targets(principal.org_id, &filter, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |t| t.id);
    Ok(HttpResponse::Ok().json(TargetPage { items: rows.into_iter().map(view).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/targets/{id}",
    tag = "monitoring",
    summary = "Get an HTTP target, its latest state and its uptime over 24 h, 7 d, 30 d and 1 y",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    responses((status = 200, description = "The target", body = TargetView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_target(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let target = target_of(&spine, &principal, &path).await?;
    let uptime = spine.db().monitoring().uptime(target.id, Utc::now()).await?;
    let mut v = view(target);
    v.uptime = Some(uptime.into_iter().map(UptimeView::from).collect());
    Ok(HttpResponse::Ok().json(v))
}

#[utoipa::path(
    put,
    path = "/api/v1/monitoring/targets/{id}",
    tag = "monitoring",
    summary = "Replace an HTTP target (a new interval starts a new schedule; the same interval keeps its phase)",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    request_body = TargetBody,
    responses(
        (status = 200, description = "Replaced", body = TargetView),
        (status = 409, description = "Another target checks this URL", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = target_of(&spine, &principal, &path).await?;
    let (spec, headers) = spec_of(&spine, &principal, doc::read_body(body.into_inner())?, Some(&old.spec)).await?;
    let url = spec.url.clone();
    match spine.db().monitoring().update_target(&old, spec, &principal.label(), headers).await {
        Ok(saved) => Ok(HttpResponse::Ok().json(view(saved))),
        Err(sentinel_jobs::db::DbError::Duplicate) => Err(url_taken(&spine, &principal, &url).await),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/targets/{id}",
    tag = "monitoring",
    summary = "Delete an HTTP target with its results and rollups (its firing alerts resolve)",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    responses((status = 204, description = "Deleted"), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let target = target_of(&spine, &principal, &path).await?;
    spine.db().monitoring().delete_target(&target, &principal.label()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Waits for `job` to finish (its events, with a read of the row every second should one be missed).
async fn finished(
    spine: &Spine,
    hub: &EventHub,
    job: JobId,
    deadline: Duration,
) -> Option<sentinel_jobs::db::JobRecord> {
    let mut events = hub.subscribe();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Ok(Some(j)) = spine.store().get(job).await
            && j.state.is_terminal()
        {
            return Some(j);
        }
        let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(until);
        loop {
            match tokio::time::timeout_at(tick, events.recv()).await {
                Ok(Ok(ev)) if ev.job_id == job && matches!(ev.body, JobEventKind::Finished { .. }) => break,
                Ok(Ok(_)) => {}
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/targets/{id}/check",
    tag = "monitoring",
    summary = "Check a target now (outside its schedule) and answer with the result",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    responses(
        (status = 200, description = "The result (also stored, flagged manual)", body = Object),
        (status = 202, description = "Still running past the target's timeout: the job to follow", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn check_now(
    principal: Principal,
    spine: web::Data<Spine>,
    hub: web::Data<EventHub>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let target = target_of(&spine, &principal, &path).await?;
    let patience = Duration::from_secs(u64::from(target.spec.timeout_seconds) + 10);
    run_once_and_answer(
        &spine,
        &hub,
        &principal,
        domain::CHECK_TARGET_KIND,
        json!({ "target_id": target.id }),
        patience,
    )
    .await
}

/// Runs one job of `kind` now (a single attempt) and answers with its result: 200 with the result,
/// 502 when it ended without one, 202 with the job when it outlasts `patience`.
pub(crate) async fn run_once_and_answer(
    spine: &Spine,
    hub: &EventHub,
    principal: &Principal,
    kind: &str,
    payload: Value,
    patience: Duration,
) -> Result<HttpResponse, Problem> {
    let once = sentinel_jobs::domain::RetryPolicy { max_attempts: 1, ..Default::default() };
    let job = enqueue_for(spine, principal, kind, payload, Some(once)).await?;
    match finished(spine, hub, job.id, patience).await {
        Some(done) if done.result.is_some() => Ok(HttpResponse::Ok().json(done.result)),
        Some(done) => Err(Problem::bad_gateway(format!(
            "the {kind} job {} ended {}: {}",
            done.id,
            done.state.as_str(),
            done.error.unwrap_or_default()
        ))),
        None => Ok(accepted(job)),
    }
}
