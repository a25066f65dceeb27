//! `/api/v1/schedules`: create, read, edit, disable and delete cron or interval schedules, preview
//! their next fire times, and read their firing history (each tick with the job it started).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::{DbError, FiringRecord, ScheduleRecord};
use sentinel_jobs::domain::schedule::MisfirePolicy;
use sentinel_jobs::domain::{JobId, JobState, Priority, Role};
use sentinel_jobs::{FieldError, ScheduleInput, Spine};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{previews, resource};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/schedules").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(resource("/schedules/preview").route(web::post().to(previews::preview_definition)));
    cfg.service(
        resource("/schedules/{id}")
            .route(web::get().to(get_schedule))
            .route(web::put().to(replace))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/schedules/{id}/preview").route(web::get().to(previews::preview_schedule)));
    cfg.service(resource("/schedules/{id}/firings").route(web::get().to(firings)));
}

/// Body of `POST /api/v1/schedules` and `PUT /api/v1/schedules/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    #[schema(schema_with = doc::schedule_name)]
    pub name: String,
    /// Cron expression: 5 fields (`min hour day month weekday`), or a macro such as `@daily`. The
    /// server also takes 6 or 7 fields (seconds first, year last) and ranges, as long as the
    /// expression fires again. Exclusive with `interval_secs`.
    #[serde(default)]
    #[schema(schema_with = doc::cron)]
    pub cron: Option<String>,
    /// Fire every N seconds (1 to 31,622,400). Exclusive with `cron`.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(schema_with = doc::interval_secs)]
    pub interval_secs: Option<u64>,
    /// IANA time zone the cron expression is read in (default `UTC`).
    #[serde(default)]
    #[schema(schema_with = doc::timezone_or_null)]
    pub timezone: Option<String>,
    /// The job kind each tick enqueues.
    #[schema(schema_with = doc::kind)]
    pub kind: String,
    /// The kind's parameters (default `{}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    #[schema(schema_with = doc::priority)]
    pub priority: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `skip` (default): ticks missed during an outage are recorded and skipped. `run_once`: they are
    /// coalesced into one run when the scheduler is back.
    #[serde(default)]
    #[schema(schema_with = doc::misfire_policy)]
    pub misfire_policy: Option<String>,
    /// Delay each run by a stable pseudo-random 0..jitter_ms milliseconds, to spread load. At most an
    /// hour, and shorter than the time between two ticks.
    #[serde(default, deserialize_with = "doc::integer")]
    #[schema(maximum = 3_600_000)]
    pub jitter_ms: u64,
    /// No tick fires after this instant (RFC 3339); must be in the future.
    #[serde(default)]
    pub end_at: Option<DateTime<Utc>>,
}

/// Body of `PATCH /api/v1/schedules/{id}`: only the fields to change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    #[schema(schema_with = doc::schedule_name_or_null)]
    pub name: Option<String>,
    /// Setting `cron` clears `interval_secs`, and the reverse.
    #[schema(schema_with = doc::cron)]
    pub cron: Option<String>,
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(schema_with = doc::interval_secs)]
    pub interval_secs: Option<u64>,
    #[schema(schema_with = doc::timezone_or_null)]
    pub timezone: Option<String>,
    /// A new kind; the payload (new or kept) must suit it.
    #[schema(schema_with = doc::kind_or_null)]
    pub kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    #[schema(schema_with = doc::priority)]
    pub priority: Option<String>,
    pub enabled: Option<bool>,
    #[schema(schema_with = doc::misfire_policy)]
    pub misfire_policy: Option<String>,
    /// At most an hour, and shorter than the time between two ticks.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(maximum = 3_600_000)]
    pub jitter_ms: Option<u64>,
    /// Must be in the future; `null` removes the end date.
    #[serde(default, deserialize_with = "doc::double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub end_at: Option<Option<DateTime<Utc>>>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub id: Uuid,
    pub name: String,
    pub cron: Option<String>,
    pub interval_secs: Option<u64>,
    pub timezone: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[schema(value_type = String, example = "normal")]
    pub priority: Priority,
    pub enabled: bool,
    #[schema(value_type = String, example = "skip")]
    pub misfire_policy: MisfirePolicy,
    pub jitter_ms: u64,
    pub end_at: Option<DateTime<Utc>>,
    /// The next tick (before jitter); absent when disabled or ended.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub last_job_id: Option<JobId>,
    /// Incremented by every edit.
    pub version: i64,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ScheduleRecord> for ScheduleView {
    fn from(s: ScheduleRecord) -> Self {
        Self {
            id: s.id,
            name: s.name,
            cron: s.cron,
            interval_secs: s.interval_secs,
            timezone: s.timezone,
            kind: s.job_kind.to_string(),
            payload: s.payload,
            priority: s.priority,
            enabled: s.enabled,
            misfire_policy: s.misfire_policy,
            jitter_ms: s.jitter_ms,
            end_at: s.end_at,
            next_fire_at: s.next_fire_at,
            last_fired_at: s.last_fired_at,
            last_job_id: s.last_job_id,
            version: s.version,
            created_by: s.created_by,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Turns a body into the validated input, collecting every invalid field.
fn input_of(mut body: ScheduleBody, errors: &mut Vec<FieldError>) -> ScheduleInput {
    doc::integral_numbers(&mut body.payload);
    let priority = match body.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => p.parse().unwrap_or_else(|e: sentinel_jobs::domain::ParseError| {
            errors.push(FieldError::new("priority", e.to_string()));
            Priority::Normal
        }),
    };
    let misfire_policy = match body.misfire_policy.as_deref() {
        None => MisfirePolicy::Skip,
        Some(p) => p.parse().unwrap_or_else(|e: sentinel_jobs::domain::schedule::TriggerError| {
            errors.push(FieldError::new(e.field, e.reason));
            MisfirePolicy::Skip
        }),
    };
    ScheduleInput {
        name: body.name,
        cron: body.cron,
        interval_secs: body.interval_secs,
        timezone: body.timezone,
        kind: body.kind,
        payload: body.payload,
        priority,
        enabled: body.enabled,
        misfire_policy,
        jitter_ms: body.jitter_ms,
        end_at: body.end_at,
    }
}

/// Validates and stores a definition: a new schedule, or a new version of `existing`.
async fn save(
    spine: &Spine,
    principal: &Principal,
    body: ScheduleBody,
    existing: Option<&ScheduleRecord>,
) -> Result<ScheduleRecord, Problem> {
    let mut errors = Vec::new();
    let input = input_of(body, &mut errors);
    let now = Utc::now();
    // An interval keeps its phase across edits that do not change it.
    let anchor = match existing {
        Some(old) if old.interval_secs.is_some() && old.interval_secs == input.interval_secs => old.anchor_at,
        _ => now,
    };
    // A new end date must be in the future; an unchanged past one (the schedule has ended) is kept.
    if let Some(end) = input.end_at
        && end <= now
        && existing.is_none_or(|old| old.end_at != Some(end))
    {
        errors.push(FieldError::new("end_at", "must be in the future"));
    }
    let draft = spine.schedule_draft(input, Some(principal.org_id), None, Some(principal.label()), anchor, now);
    let mut draft = match (draft, errors.is_empty()) {
        (Ok(draft), true) => draft,
        (Ok(_), false) => return Err(Problem::invalid(errors)),
        (Err(more), _) => {
            errors.extend(more);
            return Err(Problem::invalid(errors));
        }
    };
    // An edit that leaves the trigger alone keeps the pending tick (it may be waiting out its jitter, or
    // be overdue after an outage) instead of jumping to the next one after now.
    if let Some(old) = existing
        && old.enabled
        && draft.enabled
        && old.cron == draft.cron
        && old.interval_secs == draft.interval_secs
        && old.timezone == draft.timezone
        && old.anchor_at == draft.anchor_at
    {
        draft.next_fire_at = old.next_fire_at.filter(|t| draft.end_at.is_none_or(|end| *t <= end));
    }
    let store = spine.db().schedules();
    let name = draft.name.clone();
    let saved = match existing {
        None => store.create(draft).await.map(Some),
        Some(old) => store.replace(Some(principal.org_id), old.id, draft, Some(old.version)).await,
    };
    match saved {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => Err(Problem::not_found("schedule")),
        Err(DbError::Duplicate) => Err(Problem::conflict(format!("a schedule named {name:?} already exists"))),
        Err(e) => Err(e.into()),
    }
}

/// The schedule if it belongs to the caller's organization; 404 otherwise (malformed ids included).
pub(crate) async fn schedule_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<ScheduleRecord, Problem> {
    let not_found = || Problem::not_found(&format!("schedule {raw:?}"));
    let id: Uuid = raw.parse().map_err(|_| not_found())?;
    spine.db().schedules().get_in_org(principal.org_id, id).await?.ok_or_else(not_found)
}

#[utoipa::path(
    post,
    path = "/api/v1/schedules",
    tag = "schedules",
    summary = "Create a schedule",
    request_body = ScheduleBody,
    responses(
        (status = 201, description = "Created; effective within 2 s", body = ScheduleView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (each named): bad cron, unknown time zone, unknown job kind…", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<ScheduleBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = save(&spine, &principal, body.into_inner(), None).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/schedules/{}", rec.id)))
        .json(ScheduleView::from(rec)))
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
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchedulePage {
    pub items: Vec<ScheduleView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "schedules",
    summary = "List schedules, oldest first",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of schedules", body = SchedulePage),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().schedules().list(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |s| s.id);
    Ok(HttpResponse::Ok().json(SchedulePage { items: rows.into_iter().map(ScheduleView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    summary = "Get a schedule",
    params(("id" = uuid::Uuid, Path, description = "Schedule id (UUID)")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn get_schedule(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(schedule_of(&spine, &principal, &path).await?)))
}

#[utoipa::path(
    put,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    summary = "Replace a schedule's definition",
    params(("id" = uuid::Uuid, Path, description = "Schedule id (UUID)")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "Replaced; effective within 2 s", body = ScheduleView),
        (status = 409, description = "The name is taken, or the schedule changed meanwhile", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<ScheduleBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let existing = schedule_of(&spine, &principal, &path).await?;
    let rec = save(&spine, &principal, body.into_inner(), Some(&existing)).await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(rec)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    summary = "Change some fields of a schedule (e.g. `{\"enabled\": false}` to pause it)",
    params(("id" = uuid::Uuid, Path, description = "Schedule id (UUID)")),
    request_body = SchedulePatch,
    responses(
        (status = 200, description = "Changed; effective within 2 s", body = ScheduleView),
        (status = 409, description = "The name is taken, or the schedule changed meanwhile", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn patch(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<SchedulePatch>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let existing = schedule_of(&spine, &principal, &path).await?;
    let p = body.into_inner();
    let (cron, interval_secs) = match (p.cron, p.interval_secs) {
        (None, None) => (existing.cron.clone(), existing.interval_secs),
        (cron, interval) => (cron, interval),
    };
    let merged = ScheduleBody {
        name: p.name.unwrap_or_else(|| existing.name.clone()),
        cron,
        interval_secs,
        timezone: p.timezone.or_else(|| Some(existing.timezone.clone())),
        kind: p.kind.unwrap_or_else(|| existing.job_kind.to_string()),
        payload: p.payload.unwrap_or_else(|| existing.payload.clone()),
        priority: p.priority.or_else(|| Some(existing.priority.as_str().to_owned())),
        enabled: p.enabled.unwrap_or(existing.enabled),
        misfire_policy: p.misfire_policy.or_else(|| Some(existing.misfire_policy.as_str().to_owned())),
        jitter_ms: p.jitter_ms.unwrap_or(existing.jitter_ms),
        end_at: p.end_at.unwrap_or(existing.end_at),
    };
    let rec = save(&spine, &principal, merged, Some(&existing)).await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(rec)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    summary = "Delete a schedule and its firing history (jobs it started are kept)",
    params(("id" = uuid::Uuid, Path, description = "Schedule id (UUID)")),
    responses(
        (status = 204, description = "Deleted; no tick fires after this"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = schedule_of(&spine, &principal, &path).await?;
    if !spine.db().schedules().delete(principal.org_id, rec.id).await? {
        return Err(Problem::not_found(&format!("schedule {}", rec.id)));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// One recorded tick of a schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FiringView {
    pub id: i64,
    /// The tick (before jitter).
    pub tick_at: DateTime<Utc>,
    /// When the firing committed.
    pub fired_at: DateTime<Utc>,
    /// `fired`, or `skipped` for ticks missed during an outage under the `skip` misfire policy.
    pub outcome: String,
    /// For `skipped`: how many consecutive ticks, from `tick_at` on, were missed and skipped. For `fired`:
    /// how many later missed ticks were coalesced into this run (`run_once` policy), usually 0. Above
    /// 1,000 missed cron ticks the count stops (a lower bound).
    pub missed_ticks: u64,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub job_id: Option<JobId>,
    /// The job's state now (absent once the job has been deleted by retention).
    #[schema(value_type = Option<String>, example = "succeeded")]
    pub job_state: Option<JobState>,
    pub job_error: Option<String>,
    pub job_finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FiringPage {
    pub items: Vec<FiringView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct FiringsQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[utoipa::path(
    get,
    path = "/api/v1/schedules/{id}/firings",
    tag = "schedules",
    summary = "When the schedule fired and what happened, newest first",
    params(("id" = uuid::Uuid, Path, description = "Schedule id (UUID)"), FiringsQuery),
    responses(
        (status = 200, description = "A page of firings, each with its job's outcome", body = FiringPage),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn firings(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<FiringsQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let rec = schedule_of(&spine, &principal, &path).await?;
    let rows = spine.db().schedules().firings(rec.id, q.cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |f| f.id);
    let ids: Vec<JobId> = rows.iter().filter_map(|f| f.job_id).collect();
    let jobs = spine.store().get_many_in_org(principal.org_id, &ids).await?;
    let items = rows
        .into_iter()
        .map(|f: FiringRecord| {
            let job = f.job_id.and_then(|id| jobs.get(&id));
            FiringView {
                id: f.id,
                tick_at: f.tick_at,
                fired_at: f.fired_at,
                outcome: f.outcome,
                missed_ticks: f.missed_ticks,
                job_id: f.job_id,
                job_state: job.map(|j| j.state),
                job_error: job.and_then(|j| j.error.clone()),
                job_finished_at: job.and_then(|j| j.finished_at),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(FiringPage { items, next_cursor }))
}
