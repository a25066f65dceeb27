//! `/api/v1/monitoring/alerts` and `/api/v1/monitoring/incidents`: alerts and incidents listed with
//! filters and cursor pagination (newest first), one incident with its alerts and timeline, and the
//! operator's actions on it — acknowledge, resolve, add a note — each on the timeline with who did it.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::monitoring::{AlertFilter, AlertRecord, IncidentEvent, IncidentFilter, IncidentRecord};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::monitoring::alerts::{IncidentState, Severity};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::backup_shared::path_id;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// Timeline entries shown with an incident.
const TIMELINE: u64 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/alerts").route(web::get().to(alerts)));
    cfg.service(resource("/monitoring/incidents").route(web::get().to(incidents)));
    cfg.service(resource("/monitoring/incidents/{id}").route(web::get().to(get_incident)));
    cfg.service(resource("/monitoring/incidents/{id}/acknowledge").route(web::post().to(acknowledge)));
    cfg.service(resource("/monitoring/incidents/{id}/resolve").route(web::post().to(resolve)));
    cfg.service(resource("/monitoring/incidents/{id}/notes").route(web::post().to(add_note)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: Uuid,
    pub incident_id: Uuid,
    /// `target` (machines, metrics and heartbeats follow).
    pub source_kind: String,
    pub source_id: Uuid,
    /// `http_down` or `http_flapping`.
    pub rule: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub flapping: bool,
    pub message: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<AlertRecord> for AlertView {
    fn from(a: AlertRecord) -> Self {
        Self {
            id: a.id,
            incident_id: a.incident_id,
            source_kind: a.source_kind,
            source_id: a.source_id,
            rule: a.rule,
            severity: a.severity.as_str().to_owned(),
            state: (if a.firing { "firing" } else { "resolved" }).to_owned(),
            flapping: a.flapping,
            message: a.message,
            opened_at: a.opened_at,
            resolved_at: a.resolved_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// opened, alert_added, flapping, settled, alert_resolved, acknowledged, note, resolved.
    pub kind: String,
    /// Who did it; null for Sentinel itself.
    pub actor: Option<String>,
    pub text: Option<String>,
}

impl From<IncidentEvent> for TimelineEntry {
    fn from(e: IncidentEvent) -> Self {
        Self { at: e.at, kind: e.kind, actor: e.actor, text: e.text }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    pub id: Uuid,
    pub title: String,
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    pub flapping: bool,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Null when it resolved by itself (every alert recovered).
    pub resolved_by: Option<String>,
    /// The job (`job:<id>`) whose expected disruption keeps this incident from paging.
    pub suppressed_by: Option<String>,
    /// Only on `GET /api/v1/monitoring/incidents/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertView>>,
    /// Only on `GET /api/v1/monitoring/incidents/{id}`: oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

impl From<IncidentRecord> for IncidentView {
    fn from(i: IncidentRecord) -> Self {
        Self {
            id: i.id,
            title: i.title,
            severity: i.severity.as_str().to_owned(),
            state: i.state.as_str().to_owned(),
            flapping: i.flapping,
            opened_at: i.opened_at,
            acknowledged_at: i.acknowledged_at,
            acknowledged_by: i.acknowledged_by,
            resolved_at: i.resolved_at,
            resolved_by: i.resolved_by,
            suppressed_by: i.suppressed_by,
            alerts: None,
            timeline: None,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
    /// `firing` or `resolved`.
    #[param(schema_with = doc::alert_state)]
    state: Option<String>,
    /// `warning` or `critical`.
    #[param(schema_with = doc::severity)]
    severity: Option<String>,
    /// Only the alerts of this source (a target, metric or machine id).
    source_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertView>,
    pub next_cursor: Option<Uuid>,
}

fn severity(raw: Option<&str>) -> Result<Option<Severity>, Problem> {
    raw.map(Severity::parse).transpose().map_err(|e| Problem::invalid_field("severity", e))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/alerts",
    tag = "monitoring",
    summary = "List alerts, newest first",
    params(AlertQuery),
    responses((status = 200, description = "A page of alerts", body = AlertPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn alerts(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<AlertQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let firing = match q.state.as_deref() {
        None => None,
        Some("firing") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(Problem::invalid_field("state", format!("{other:?} is not one of firing, resolved")));
        }
    };
    let filter = AlertFilter { firing, severity: severity(q.severity.as_deref())?, source_id: q.source_id };
    let rows = spine.db().monitoring().alerts(principal.org_id, &filter, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |a| a.id);
    Ok(HttpResponse::Ok().json(AlertPage { items: rows.into_iter().map(AlertView::from).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentQuery {
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
    /// `open`, `acknowledged` or `resolved`.
    #[param(schema_with = doc::incident_state)]
    state: Option<String>,
    /// `warning` or `critical`.
    #[param(schema_with = doc::severity)]
    severity: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub items: Vec<IncidentView>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/incidents",
    tag = "monitoring",
    summary = "List incidents, newest first",
    params(IncidentQuery),
    responses((status = 200, description = "A page of incidents", body = IncidentPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn incidents(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<IncidentQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let state =
        q.state.as_deref().map(IncidentState::parse).transpose().map_err(|e| Problem::invalid_field("state", e))?;
    let filter = IncidentFilter { state, severity: severity(q.severity.as_deref())? };
    let rows = spine.db().monitoring().incidents(principal.org_id, &filter, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |i| i.id);
    Ok(HttpResponse::Ok().json(IncidentPage { items: rows.into_iter().map(IncidentView::from).collect(), next_cursor }))
}

async fn incident_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<IncidentRecord, Problem> {
    let id = path_id(raw, "incident")?;
    spine
        .db()
        .monitoring()
        .incident(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("incident {raw:?}")))
}

async fn detailed(spine: &Spine, incident: IncidentRecord) -> Result<IncidentView, Problem> {
    let (alerts, events) = spine.db().monitoring().incident_details(incident.id, TIMELINE).await?;
    let mut v = IncidentView::from(incident);
    v.alerts = Some(alerts.into_iter().map(AlertView::from).collect());
    v.timeline = Some(events.into_iter().map(TimelineEntry::from).collect());
    Ok(v)
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/incidents/{id}",
    tag = "monitoring",
    summary = "Get an incident with its alerts and timeline",
    params(("id" = uuid::Uuid, Path, description = "Incident id (UUID)")),
    responses((status = 200, description = "The incident", body = IncidentView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_incident(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let incident = incident_of(&spine, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(detailed(&spine, incident).await?))
}

/// Body of the incident actions: an optional note kept on the timeline with the action.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    #[schema(max_length = 10000)]
    pub note: Option<String>,
}

fn note_of(body: Option<web::Json<ActionBody>>) -> Result<Option<String>, Problem> {
    let note = body.and_then(|b| b.into_inner().note).map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 10_000) {
        return Err(Problem::invalid_field("note", "at most 10000 characters"));
    }
    Ok(note)
}

async fn act(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: Option<web::Json<ActionBody>>,
    next: IncidentState,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let note = note_of(body)?;
    let incident = incident_of(&spine, &principal, &path).await?;
    spine.db().monitoring().move_incident(&incident, next, &principal.label(), note).await?;
    let incident = incident_of(&spine, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(detailed(&spine, incident).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/incidents/{id}/acknowledge",
    tag = "monitoring",
    summary = "Acknowledge an open incident (who and when are kept)",
    params(("id" = uuid::Uuid, Path, description = "Incident id (UUID)")),
    request_body(content = Option<ActionBody>, description = "An optional note"),
    responses(
        (status = 200, description = "Acknowledged", body = IncidentView),
        (status = 409, description = "Not open", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn acknowledge(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: Option<web::Json<ActionBody>>,
) -> Result<HttpResponse, Problem> {
    act(principal, spine, path, body, IncidentState::Acknowledged).await
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/incidents/{id}/resolve",
    tag = "monitoring",
    summary = "Resolve an incident and its firing alerts (a target still failing opens a new one)",
    params(("id" = uuid::Uuid, Path, description = "Incident id (UUID)")),
    request_body(content = Option<ActionBody>, description = "An optional note"),
    responses(
        (status = 200, description = "Resolved", body = IncidentView),
        (status = 409, description = "Already resolved", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn resolve(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: Option<web::Json<ActionBody>>,
) -> Result<HttpResponse, Problem> {
    act(principal, spine, path, body, IncidentState::Resolved).await
}

/// Body of `POST /api/v1/monitoring/incidents/{id}/notes`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    #[schema(min_length = 1, max_length = 10000)]
    pub text: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/incidents/{id}/notes",
    tag = "monitoring",
    summary = "Add a note to an incident's timeline",
    params(("id" = uuid::Uuid, Path, description = "Incident id (UUID)")),
    request_body = NoteBody,
    responses((status = 201, description = "Added; the incident", body = IncidentView), doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn add_note(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<NoteBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let text = body.into_inner().text.trim().to_owned();
    if text.is_empty() || text.chars().count() > 10_000 {
        return Err(Problem::invalid_field("text", "a note of 1 to 10000 characters"));
    }
    let incident = incident_of(&spine, &principal, &path).await?;
    spine.db().monitoring().add_note(incident.id, &principal.label(), text).await?;
    Ok(HttpResponse::Created().json(detailed(&spine, incident).await?))
}
