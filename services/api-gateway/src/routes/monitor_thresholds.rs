//! `/api/v1/monitoring/thresholds`: a metric instance's threshold (the seed's
//! `thresholds/default`, also answered at `POST /api/v1/monitoring/metrics/{id}/thresholds/default`)
//! — set or replace, remove, and the list of metrics that have one. A change is evaluated at once: a
//! value already past the new level opens its alert, a removed threshold resolves it.

use actix_web::{HttpResponse, web};
use sentinel_jobs::Spine;
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::monitoring::thresholds::{Comparison, Threshold};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::field_errors;
use super::monitor_machines::{MetricView, metric_of};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/thresholds").route(web::get().to(list)));
    cfg.service(
        resource("/monitoring/thresholds/{metric_id}").route(web::put().to(put)).route(web::delete().to(remove)),
    );
    cfg.service(resource("/monitoring/metrics/{metric_id}/thresholds/default").route(web::post().to(put_default)));
}

/// How a threshold judges a value.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    /// A numeric metric compared with a warning and/or a critical level.
    Numeric,
    /// A boolean or string metric that must equal `expected` (anything else is critical).
    Expected,
}

/// Which side of a level is bad.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComparisonBody {
    Above,
    Below,
}

/// Body of `PUT /api/v1/monitoring/thresholds/{metric_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdBody {
    pub kind: ThresholdKind,
    /// `numeric` only: `above` (default; load, latency) or `below` (free disk) is bad.
    #[serde(default)]
    pub comparison: Option<ComparisonBody>,
    /// `numeric` only: past this level the metric is `warning`. Give it, `critical` or both; with
    /// both, `critical` is at least as far past as `warning`.
    #[serde(default)]
    pub warning: Option<f64>,
    /// `numeric` only: past this level the metric is `critical`.
    #[serde(default)]
    pub critical: Option<f64>,
    /// `expected` only: the value the metric must have (true/false for a boolean metric, a string
    /// for a string metric).
    #[serde(default)]
    #[schema(schema_with = expected_value)]
    pub expected: Option<Value>,
}

/// `expected` is a boolean, a string or null.
fn expected_value() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Boolean, Type::String, Type::Null]))
        .description(Some(
            "`expected` only: the value the metric must have (true/false for a boolean metric, a string for a \
             string metric).",
        ))
        .build()
}

impl ThresholdBody {
    fn into_threshold(self) -> Result<Threshold, Problem> {
        match self.kind {
            ThresholdKind::Numeric => {
                if self.expected.is_some() {
                    return Err(Problem::invalid_field("expected", "only for kind `expected`"));
                }
                let comparison = match self.comparison {
                    Some(ComparisonBody::Below) => Comparison::Below,
                    _ => Comparison::Above,
                };
                Ok(Threshold::Numeric { comparison, warning: self.warning, critical: self.critical })
            }
            ThresholdKind::Expected => {
                for (field, given) in [
                    ("comparison", self.comparison.is_some()),
                    ("warning", self.warning.is_some()),
                    ("critical", self.critical.is_some()),
                ] {
                    if given {
                        return Err(Problem::invalid_field(field, "only for kind `numeric`"));
                    }
                }
                let expected = self
                    .expected
                    .ok_or_else(|| Problem::invalid_field("expected", "give the value the metric must have"))?;
                Ok(Threshold::Expected { expected })
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThresholdQuery {
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThresholdPage {
    pub items: Vec<MetricView>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/thresholds",
    tag = "monitoring",
    summary = "List the metrics that have a threshold, with their state",
    params(ThresholdQuery),
    responses((status = 200, description = "A page of metrics", body = ThresholdPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ThresholdQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().monitoring().thresholded_metrics(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |m| m.id);
    Ok(HttpResponse::Ok().json(ThresholdPage { items: rows.into_iter().map(MetricView::from).collect(), next_cursor }))
}

#[utoipa::path(
    put,
    path = "/api/v1/monitoring/thresholds/{metric_id}",
    tag = "monitoring",
    summary = "Set a metric's threshold (evaluated at once)",
    params(("metric_id" = uuid::Uuid, Path, description = "Metric id (UUID)")),
    request_body = ThresholdBody,
    responses((status = 200, description = "The metric with its threshold and state", body = MetricView), doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn put(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b: ThresholdBody = doc::read_body(body.into_inner())?;
    let metric = metric_of(&spine, &principal, &path).await?;
    let threshold = b.into_threshold()?;
    let problems = threshold.check(metric.kind);
    if !problems.is_empty() {
        return Err(Problem::invalid(field_errors(problems)));
    }
    spine.db().monitoring().set_threshold(metric.id, Some(&threshold), &principal.label()).await?;
    Ok(HttpResponse::Ok().json(MetricView::from(metric_of(&spine, &principal, &path).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/thresholds/{metric_id}",
    tag = "monitoring",
    summary = "Remove a metric's threshold (its alert resolves)",
    params(("metric_id" = uuid::Uuid, Path, description = "Metric id (UUID)")),
    responses((status = 204, description = "Removed"), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn remove(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let metric = metric_of(&spine, &principal, &path).await?;
    if metric.threshold.is_none() {
        return Err(Problem::not_found(&format!("a threshold of metric {}", metric.id)));
    }
    spine.db().monitoring().set_threshold(metric.id, None, &principal.label()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/metrics/{metric_id}/thresholds/default",
    tag = "monitoring",
    summary = "Set a metric's threshold (the seed's path; the same as PUT /api/v1/monitoring/thresholds/{metric_id})",
    params(("metric_id" = uuid::Uuid, Path, description = "Metric id (UUID)")),
    request_body = ThresholdBody,
    responses((status = 200, description = "The metric with its threshold and state", body = MetricView), doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn put_default(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    put(principal, spine, path, body).await
}
