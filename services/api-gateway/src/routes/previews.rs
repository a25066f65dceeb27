//! Previews of schedules: the next fire times of a definition before it is saved, or of a saved
//! schedule.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::schedule::Trigger;
use serde::{Deserialize, Serialize};

use super::schedules::schedule_of;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// Most fire times a preview returns.
const MAX_PREVIEW: usize = 100;

/// Body of `POST /api/v1/schedules/preview`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// Exclusive with `interval_secs`.
    #[serde(default)]
    #[schema(schema_with = doc::cron)]
    pub cron: Option<String>,
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(schema_with = doc::interval_secs)]
    pub interval_secs: Option<u64>,
    #[serde(default)]
    #[schema(schema_with = doc::timezone_or_null)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub end_at: Option<DateTime<Utc>>,
    /// How many fire times (1–100, default 10).
    #[serde(default = "default_count", deserialize_with = "doc::integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub count: usize,
    /// Start after this instant (default now).
    #[serde(default)]
    pub after: Option<DateTime<Utc>>,
}

fn default_count() -> usize {
    10
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// The time zone the expression is read in.
    pub timezone: String,
    /// The next fire times, in UTC (before jitter).
    pub fire_times: Vec<DateTime<Utc>>,
    /// The same instants as wall-clock times in `timezone` (RFC 3339 with offset).
    pub local_times: Vec<String>,
}

fn check_count(count: usize) -> Result<(), Problem> {
    if !(1..=MAX_PREVIEW).contains(&count) {
        return Err(Problem::invalid_field("count", format!("must be from 1 to {MAX_PREVIEW}")));
    }
    Ok(())
}

fn preview_of(
    trigger: &Trigger,
    timezone: &str,
    after: DateTime<Utc>,
    end_at: Option<DateTime<Utc>>,
    count: usize,
) -> Result<Preview, Problem> {
    check_count(count)?;
    let tz = sentinel_jobs::domain::schedule::parse_timezone(timezone)
        .map_err(|e| Problem::invalid_field(e.field, e.reason))?;
    let fire_times: Vec<DateTime<Utc>> =
        trigger.upcoming(after, count).into_iter().take_while(|t| end_at.is_none_or(|end| *t <= end)).collect();
    let local_times = fire_times.iter().map(|t| t.with_timezone(&tz).to_rfc3339()).collect();
    Ok(Preview { timezone: tz.name().to_owned(), fire_times, local_times })
}

#[utoipa::path(
    post,
    path = "/api/v1/schedules/preview",
    tag = "schedules",
    summary = "Preview the next fire times of a definition before saving it",
    request_body = PreviewBody,
    responses(
        (status = 200, description = "The next fire times", body = Preview),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn preview_definition(
    principal: Principal,
    body: web::Json<PreviewBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let body = body.into_inner();
    let now = Utc::now();
    let trigger = Trigger::new(body.cron.as_deref(), body.interval_secs, body.timezone.as_deref(), now)
        .map_err(|e| Problem::invalid_field(e.field, e.reason))?;
    let timezone = body.timezone.unwrap_or_else(|| "UTC".to_owned());
    Ok(HttpResponse::Ok().json(preview_of(&trigger, &timezone, body.after.unwrap_or(now), body.end_at, body.count)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewQuery {
    /// How many fire times (1–100, default 10).
    #[serde(default = "default_count")]
    #[param(minimum = 1, maximum = 100, default = 10)]
    count: usize,
}

#[utoipa::path(
    get,
    path = "/api/v1/schedules/{id}/preview",
    tag = "schedules",
    summary = "The next fire times of a schedule",
    params(("id" = uuid::Uuid, Path, description = "Schedule id (UUID)"), PreviewQuery),
    responses(
        (status = 200, description = "The next fire times (empty when disabled or ended)", body = Preview),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn preview_schedule(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<PreviewQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let rec = schedule_of(&spine, &principal, &path).await?;
    // Checked first: a disabled schedule's empty preview must not hide a bad count.
    check_count(q.count)?;
    let trigger = rec.trigger().map_err(|e| Problem::internal(&e))?;
    let Some(next) = rec.next_fire_at.filter(|_| rec.enabled) else {
        return Ok(HttpResponse::Ok().json(Preview {
            timezone: rec.timezone,
            fire_times: Vec::new(),
            local_times: Vec::new(),
        }));
    };
    // The stored next tick is the first one; the rest follow from it.
    let mut preview = preview_of(&trigger, &rec.timezone, next, rec.end_at, q.count)?;
    let tz = sentinel_jobs::domain::schedule::parse_timezone(&rec.timezone).map_err(|e| Problem::internal(&e))?;
    preview.fire_times.insert(0, next);
    preview.fire_times.truncate(q.count);
    preview.local_times = preview.fire_times.iter().map(|t| t.with_timezone(&tz).to_rfc3339()).collect();
    Ok(HttpResponse::Ok().json(preview))
}
