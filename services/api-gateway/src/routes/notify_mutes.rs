//! `/api/v1/monitoring/silences` and `/api/v1/monitoring/maintenance-windows`: what mutes
//! notifications (never the record; a firing that was notified still gets its "resolved").
//! Silences match alert labels from a start to an end, with a comment and an author; deleting one
//! ends it now and keeps it as history. Maintenance windows are one-off (start, end) or recurring
//! (cron + time zone + duration), with optional matchers (none: every alert).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::notify::{MuteKind, MuteRecord};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::notify::{Mute, MuteSchedule};
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::{field_errors, path_id};
use super::notify_policy::{MatcherBody, matcher_views, matchers_of};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/silences").route(web::post().to(create_silence)).route(web::get().to(silences)));
    cfg.service(
        resource("/monitoring/silences/{id}").route(web::get().to(get_silence)).route(web::delete().to(expire_silence)),
    );
    cfg.service(
        resource("/monitoring/maintenance-windows").route(web::post().to(create_window)).route(web::get().to(windows)),
    );
    cfg.service(
        resource("/monitoring/maintenance-windows/{id}")
            .route(web::get().to(get_window))
            .route(web::delete().to(delete_window)),
    );
}

/// Body of `POST /api/v1/monitoring/silences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    /// 1 to 20 conditions, all of which an alert must match.
    #[schema(min_items = 1, max_items = 20)]
    pub matchers: Vec<MatcherBody>,
    /// Default: now.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// After `starts_at`.
    pub ends_at: DateTime<Utc>,
    /// Why (shown with the silence).
    #[schema(min_length = 1, max_length = 1000)]
    pub comment: String,
}

/// Body of `POST /api/v1/monitoring/maintenance-windows`: one-off (`starts_at`, `ends_at`) or
/// recurring (`cron`, `timezone`, `duration_minutes`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Conditions an alert must all match (none: every alert of the organization).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub matchers: Vec<MatcherBody>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// Each tick opens the window (five fields, or six with seconds).
    #[serde(default)]
    #[schema(schema_with = doc::cron)]
    pub cron: Option<String>,
    /// IANA time zone of `cron` (default UTC).
    #[serde(default)]
    #[schema(schema_with = doc::timezone_or_null)]
    pub timezone: Option<String>,
    /// How long each recurring window lasts (1 to 10080).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10_080)]
    pub duration_minutes: Option<u32>,
}

/// A silence or a maintenance window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MuteView {
    pub id: Uuid,
    /// A silence's comment, a window's name.
    pub name: String,
    pub matchers: Vec<MatcherBody>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub duration_minutes: Option<u32>,
    /// In force now.
    pub active: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn view(m: MuteRecord) -> MuteView {
    let active = Mute { id: m.id, matchers: vec![], schedule: m.schedule.clone() }.active_at(Utc::now());
    let (starts_at, ends_at, cron, timezone, duration_minutes) = match m.schedule {
        MuteSchedule::Once { starts_at, ends_at } => (Some(starts_at), Some(ends_at), None, None, None),
        MuteSchedule::Recurring { cron, timezone, duration_minutes } => {
            (None, None, Some(cron), Some(timezone), Some(duration_minutes))
        }
    };
    MuteView {
        id: m.id,
        name: m.name,
        matchers: matcher_views(&m.matchers),
        starts_at,
        ends_at,
        cron,
        timezone,
        duration_minutes,
        active,
        created_by: m.created_by,
        created_at: m.created_at,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MuteQuery {
    /// Include silences that ended (default false).
    #[serde(default)]
    include_ended: bool,
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MutePage {
    pub items: Vec<MuteView>,
    pub next_cursor: Option<Uuid>,
}

async fn list(spine: &Spine, principal: &Principal, kind: MuteKind, q: &MuteQuery) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let current = (!q.include_ended).then(Utc::now);
    let rows = spine.db().notify().mutes(principal.org_id, kind, current, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |m| m.id);
    Ok(HttpResponse::Ok().json(MutePage { items: rows.into_iter().map(view).collect(), next_cursor }))
}

async fn one(spine: &Spine, principal: &Principal, kind: MuteKind, raw: &str) -> Result<MuteRecord, Problem> {
    let what = if kind == MuteKind::Silence { "silence" } else { "maintenance window" };
    let id = path_id(raw, what)?;
    spine
        .db()
        .notify()
        .mute(principal.org_id, kind, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("{what} {raw:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/silences",
    tag = "monitoring",
    summary = "Silence the notifications of matching alerts for a while",
    request_body = SilenceBody,
    responses((status = 201, description = "Created", body = MuteView), doc::Guarded, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn create_silence(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = doc::read_body::<SilenceBody>(body.into_inner())?;
    let mut errors = Vec::new();
    let matchers = matchers_of("matchers", b.matchers, &mut errors);
    let schedule = MuteSchedule::Once { starts_at: b.starts_at.unwrap_or_else(Utc::now), ends_at: b.ends_at };
    errors.extend(field_errors(Mute::check(&matchers, &schedule, true)));
    let comment = b.comment.trim();
    if comment.is_empty() {
        errors.push(FieldError::new("comment", "say why (1 to 1000 characters)"));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let rec = spine
        .db()
        .notify()
        .create_mute(principal.org_id, MuteKind::Silence, comment, &matchers, &schedule, &principal.label())
        .await?;
    let location = format!("/api/v1/monitoring/silences/{}", rec.id);
    Ok(HttpResponse::Created().insert_header(("Location", location)).json(view(rec)))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/silences",
    tag = "monitoring",
    summary = "List silences (current ones unless include_ended), newest first",
    params(MuteQuery),
    responses((status = 200, description = "A page of silences", body = MutePage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn silences(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<MuteQuery>,
) -> Result<HttpResponse, Problem> {
    list(&spine, &principal, MuteKind::Silence, &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/silences/{id}",
    tag = "monitoring",
    summary = "Get a silence",
    params(("id" = uuid::Uuid, Path, description = "Silence id (UUID)")),
    responses((status = 200, description = "The silence", body = MuteView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_silence(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(one(&spine, &principal, MuteKind::Silence, &path).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/silences/{id}",
    tag = "monitoring",
    summary = "End a silence now (it stays listed with include_ended)",
    params(("id" = uuid::Uuid, Path, description = "Silence id (UUID)")),
    responses((status = 200, description = "The silence, ended", body = MuteView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn expire_silence(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = one(&spine, &principal, MuteKind::Silence, &path).await?;
    spine.db().notify().expire_silence(principal.org_id, rec.id, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view(one(&spine, &principal, MuteKind::Silence, &path).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/maintenance-windows",
    tag = "monitoring",
    summary = "Add a maintenance window (one-off, or recurring by cron and time zone)",
    request_body = WindowBody,
    responses((status = 201, description = "Created", body = MuteView), doc::Guarded, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn create_window(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = doc::read_body::<WindowBody>(body.into_inner())?;
    let mut errors = Vec::new();
    let matchers = matchers_of("matchers", b.matchers, &mut errors);
    let name = b.name.trim().to_owned();
    if name.is_empty() || name.chars().any(char::is_control) {
        errors.push(FieldError::new("name", "1 to 100 characters"));
    }
    let schedule = match (b.starts_at, b.ends_at, b.cron, b.duration_minutes) {
        (Some(starts_at), Some(ends_at), None, None) if b.timezone.is_none() => {
            MuteSchedule::Once { starts_at, ends_at }
        }
        (None, None, Some(cron), Some(duration_minutes)) => MuteSchedule::Recurring {
            cron: cron.trim().to_owned(),
            timezone: b.timezone.unwrap_or_else(|| "UTC".to_owned()),
            duration_minutes,
        },
        _ => {
            errors.push(FieldError::new(
                "cron",
                "give starts_at and ends_at (one-off), or cron and duration_minutes with an optional timezone (recurring)",
            ));
            return Err(Problem::invalid(errors));
        }
    };
    errors.extend(field_errors(Mute::check(&matchers, &schedule, false)));
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let rec = spine
        .db()
        .notify()
        .create_mute(principal.org_id, MuteKind::Maintenance, &name, &matchers, &schedule, &principal.label())
        .await?;
    let location = format!("/api/v1/monitoring/maintenance-windows/{}", rec.id);
    Ok(HttpResponse::Created().insert_header(("Location", location)).json(view(rec)))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/maintenance-windows",
    tag = "monitoring",
    summary = "List maintenance windows (current and recurring ones unless include_ended), newest first",
    params(MuteQuery),
    responses((status = 200, description = "A page of windows", body = MutePage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn windows(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<MuteQuery>,
) -> Result<HttpResponse, Problem> {
    list(&spine, &principal, MuteKind::Maintenance, &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/maintenance-windows/{id}",
    tag = "monitoring",
    summary = "Get a maintenance window",
    params(("id" = uuid::Uuid, Path, description = "Window id (UUID)")),
    responses((status = 200, description = "The window", body = MuteView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_window(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(one(&spine, &principal, MuteKind::Maintenance, &path).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/maintenance-windows/{id}",
    tag = "monitoring",
    summary = "Delete a maintenance window",
    params(("id" = uuid::Uuid, Path, description = "Window id (UUID)")),
    responses((status = 204, description = "Deleted"), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn delete_window(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = one(&spine, &principal, MuteKind::Maintenance, &path).await?;
    spine.db().notify().delete_mute(principal.org_id, MuteKind::Maintenance, rec.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
