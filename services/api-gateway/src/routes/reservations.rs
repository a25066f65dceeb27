//! `POST /api/v1/servers/reserve` and `POST /api/v1/servers/{id}/release`: "give me a server ready for
//! a deployment" — one available server that matches, atomically, for a time — and giving it back.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::inventory::{ReserveRequest, ServerFilter};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::inventory::{
    self as inv, DEFAULT_RESERVATION_TTL_SECS, LabelSelector, LabelTerm, Labels, MAX_RESERVATION_TTL_SECS,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::servers::{ServerView, server_of};
use crate::Problem;
use crate::auth::Principal;
use crate::doc::{self, inventory as idoc};
use sentinel_jobs::FieldError;

/// Body of `POST /api/v1/servers/reserve`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// What the server is for (kept on the lease and in the history).
    #[schema(schema_with = idoc::purpose)]
    pub purpose: String,
    /// Labels the server must have (each `key: value` must match).
    #[serde(default)]
    #[schema(schema_with = idoc::labels_or_null)]
    pub labels: Option<Labels>,
    /// A label selector for richer rules (`env=prod,!draining`); combined with `labels`.
    #[serde(default)]
    #[schema(schema_with = idoc::selector_or_null)]
    pub selector: Option<String>,
    #[serde(default)]
    #[schema(schema_with = idoc::region_or_null)]
    pub region: Option<String>,
    /// How long the reservation lasts before the server goes back by itself (default 3600, at most 30 days).
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 2_592_000)]
    pub ttl_seconds: Option<u64>,
}

/// A reservation that succeeded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservationView {
    /// Pass to `POST /servers/{id}/release?lease_id=…` (and, next, to a provisioning run).
    pub lease_id: Uuid,
    /// The server's address, ready for the deployment.
    pub ip: String,
    pub expires_at: DateTime<Utc>,
    pub server: ServerView,
}

#[utoipa::path(
    post,
    path = "/api/v1/servers/reserve",
    tag = "inventory",
    summary = "Reserve one available server that matches, atomically (two callers never get the same one)",
    request_body = ReserveBody,
    responses(
        (status = 201, description = "Reserved", body = ReservationView),
        (status = 409, description = "No available server matches (the filter is named)", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn reserve(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<ReserveBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let mut errors = Vec::new();
    if let Err(e) = inv::check_purpose(&b.purpose) {
        errors.push(FieldError::new("purpose", e));
    }
    let mut selector = match b.selector.as_deref().map(LabelSelector::parse) {
        None => LabelSelector::default(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            errors.push(FieldError::new("selector", e));
            LabelSelector::default()
        }
    };
    if let Some(labels) = &b.labels {
        match inv::check_labels(labels) {
            Ok(()) => selector.0.extend(labels.iter().map(|(k, v)| LabelTerm::Equals(k.clone(), v.clone()))),
            Err(e) => errors.push(FieldError::new("labels", e)),
        }
    }
    if let Some(region) = &b.region
        && let Err(e) = inv::check_region(region)
    {
        errors.push(FieldError::new("region", e));
    }
    let ttl = b.ttl_seconds.unwrap_or(DEFAULT_RESERVATION_TTL_SECS);
    if !(1..=MAX_RESERVATION_TTL_SECS).contains(&ttl) {
        errors.push(FieldError::new("ttl_seconds", format!("must be from 1 to {MAX_RESERVATION_TTL_SECS}")));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let described = describe(&selector, b.region.as_deref());
    let req = ReserveRequest {
        filter: ServerFilter { status: None, selector, region: b.region, text: None },
        ttl: chrono::Duration::seconds(ttl as i64),
        purpose: b.purpose,
        holder: principal.label(),
    };
    match spine.reserve(principal.org_id, req).await? {
        Some(r) => Ok(HttpResponse::Created().json(ReservationView {
            lease_id: r.lease_id,
            ip: r.server.ip.clone(),
            expires_at: r.expires_at,
            server: ServerView::from(r.server),
        })),
        None => Err(Problem::conflict(format!("no available server matches {described}"))),
    }
}

fn describe(selector: &LabelSelector, region: Option<&str>) -> String {
    let mut parts = Vec::new();
    if !selector.is_empty() {
        parts.push(format!("labels {selector}"));
    }
    if let Some(r) = region {
        parts.push(format!("region {r:?}"));
    }
    if parts.is_empty() { "(any server)".to_owned() } else { parts.join(" and ") }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseQuery {
    /// Release only this reservation (409 if the server is held by another).
    lease_id: Option<Uuid>,
}

#[utoipa::path(
    post,
    path = "/api/v1/servers/{id}/release",
    tag = "inventory",
    summary = "Give a reserved server back (its status returns to what it was)",
    params(("id" = uuid::Uuid, Path, description = "Server id (UUID)"), ReleaseQuery),
    responses(
        (status = 200, description = "Released", body = ServerView),
        (status = 409, description = "Not reserved, or held by another reservation", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn release(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<ReleaseQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = server_of(&spine, &principal, &path).await?;
    let saved = spine.db().inventory().release(&rec, q.lease_id, &principal.label()).await?;
    Ok(HttpResponse::Ok().json(ServerView::from(saved)))
}
