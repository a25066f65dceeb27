//! `/api/v1/monitoring/machines` and `/api/v1/monitoring/metrics`: the machines agents report from
//! (list; one with the latest value of each metric and its heartbeat state), the metric instances
//! (list, one machine's, one series over a time range), and a metric's alerting and pause switches.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::monitoring::{MachineRecord, MetricRecord, SamplePoint};
use sentinel_jobs::domain::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::path_id;
use super::{monitor_ingest, resource};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ingest/metrics").route(web::post().to(monitor_ingest::ingest)));
    cfg.service(
        resource("/monitoring/metrics")
            .route(web::get().to(list_metrics))
            .route(web::post().to(monitor_ingest::ingest)),
    );
    cfg.service(resource("/monitoring/metrics/{id}").route(web::patch().to(patch_metric)));
    cfg.service(resource("/monitoring/metrics/{id}/series").route(web::get().to(series)));
    cfg.service(resource("/monitoring/machines").route(web::get().to(list_machines)));
    cfg.service(resource("/monitoring/machines/{id}").route(web::get().to(get_machine)));
    cfg.service(resource("/monitoring/machines/{id}/metrics").route(web::get().to(machine_metrics)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricView {
    pub id: Uuid,
    pub machine_id: Uuid,
    pub name: String,
    /// numeric, boolean or string.
    #[serde(rename = "type")]
    pub kind: String,
    pub unit: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub last_value: Option<Value>,
    pub last_at: Option<DateTime<Utc>>,
    pub alerting: bool,
    pub paused: bool,
    /// `ok`, `warning`, `critical` (against its threshold) or `nodata` (a thresholded series that
    /// sent nothing for `heartbeat_threshold_minutes`; never "resolved" by silence).
    pub state: String,
    /// `{"kind": "numeric", "comparison": "above", "warning": 0.7, "critical": 0.9}` or
    /// `{"kind": "expected", "expected": true}`; null without one.
    #[schema(value_type = Option<Object>)]
    pub threshold: Option<Value>,
    /// The alert it has firing.
    pub open_alert_id: Option<Uuid>,
}

impl From<MetricRecord> for MetricView {
    fn from(m: MetricRecord) -> Self {
        Self {
            id: m.id,
            machine_id: m.machine_id,
            name: m.name,
            kind: m.kind.as_str().to_owned(),
            unit: m.unit,
            last_value: m.last_value,
            last_at: m.last_at,
            alerting: m.alerting_enabled,
            paused: m.paused,
            state: m.state.as_str().to_owned(),
            threshold: m.threshold.and_then(|t| serde_json::to_value(t).ok()),
            open_alert_id: m.open_alert_id,
        }
    }
}

/// Whether a machine is heard from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatView {
    /// `ok`, or `silent` once it has sent nothing for longer than the threshold.
    pub state: String,
    pub last_seen_at: DateTime<Utc>,
    pub threshold_minutes: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MachineView {
    pub id: Uuid,
    pub hostname: String,
    pub os: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub heartbeat: HeartbeatView,
    /// Only on `GET /api/v1/monitoring/machines/{id}`: every metric with its latest value (the first 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricView>>,
}

fn machine_view(m: MachineRecord, threshold_minutes: u32) -> MachineView {
    let silent = Utc::now() - m.last_seen_at > chrono::Duration::minutes(i64::from(threshold_minutes));
    MachineView {
        heartbeat: HeartbeatView {
            state: (if silent { "silent" } else { "ok" }).to_owned(),
            last_seen_at: m.last_seen_at,
            threshold_minutes,
        },
        id: m.id,
        hostname: m.hostname,
        os: m.os,
        first_seen_at: m.first_seen_at,
        last_seen_at: m.last_seen_at,
        metrics: None,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineQuery {
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
    /// A substring of the hostname.
    q: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MachinePage {
    pub items: Vec<MachineView>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/machines",
    tag = "monitoring",
    summary = "List machines with their heartbeat state",
    params(MachineQuery),
    responses((status = 200, description = "A page of machines", body = MachinePage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list_machines(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<MachineQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let store = spine.db().monitoring();
    let threshold = store.settings(principal.org_id).await?.heartbeat_threshold_minutes;
    let rows = store.machines(principal.org_id, q.q.as_deref(), cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |m| m.id);
    Ok(HttpResponse::Ok()
        .json(MachinePage { items: rows.into_iter().map(|m| machine_view(m, threshold)).collect(), next_cursor }))
}

async fn machine_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<MachineRecord, Problem> {
    let id = path_id(raw, "machine")?;
    spine
        .db()
        .monitoring()
        .machine(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("machine {raw:?}")))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/machines/{id}",
    tag = "monitoring",
    summary = "Get a machine with the latest value of each metric and its heartbeat state",
    params(("id" = uuid::Uuid, Path, description = "Machine id (UUID)")),
    responses((status = 200, description = "The machine", body = MachineView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_machine(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let machine = machine_of(&spine, &principal, &path).await?;
    let store = spine.db().monitoring();
    let threshold = store.settings(principal.org_id).await?.heartbeat_threshold_minutes;
    let metrics = store.metrics(principal.org_id, Some(machine.id), None, None, 1000).await?;
    let mut v = machine_view(machine, threshold);
    v.metrics = Some(metrics.into_iter().map(MetricView::from).collect());
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricQuery {
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
    machine_id: Option<Uuid>,
    /// Exactly this metric name.
    name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricPage {
    pub items: Vec<MetricView>,
    pub next_cursor: Option<Uuid>,
}

async fn metric_page(
    spine: &Spine,
    principal: &Principal,
    machine: Option<Uuid>,
    q: &MetricQuery,
) -> Result<HttpResponse, Problem> {
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows =
        spine.db().monitoring().metrics(principal.org_id, machine, q.name.as_deref(), cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |m| m.id);
    Ok(HttpResponse::Ok().json(MetricPage { items: rows.into_iter().map(MetricView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/metrics",
    tag = "monitoring",
    summary = "List metric instances with their latest value",
    params(MetricQuery),
    responses((status = 200, description = "A page of metrics", body = MetricPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list_metrics(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<MetricQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    metric_page(&spine, &principal, q.machine_id, &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/machines/{id}/metrics",
    tag = "monitoring",
    summary = "List one machine's metric instances",
    params(("id" = uuid::Uuid, Path, description = "Machine id (UUID)"), MetricQuery),
    responses((status = 200, description = "A page of metrics", body = MetricPage), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn machine_metrics(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<MetricQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let machine = machine_of(&spine, &principal, &path).await?;
    metric_page(&spine, &principal, Some(machine.id), &q).await
}

/// The organization's metric named by a path segment (404 for a malformed or unknown id).
pub(crate) async fn metric_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<MetricRecord, Problem> {
    let id = path_id(raw, "metric")?;
    spine
        .db()
        .monitoring()
        .metric(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("metric {raw:?}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesQuery {
    /// Start (inclusive); default an hour before `to`.
    from: Option<DateTime<Utc>>,
    /// End (exclusive); default now.
    to: Option<DateTime<Utc>>,
    /// At most this many samples, oldest first (1 to 10000, default 1000).
    limit: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    pub at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub value: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    pub metric: MetricView,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: Vec<SeriesPoint>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/metrics/{id}/series",
    tag = "monitoring",
    summary = "One metric's samples over a time range",
    params(("id" = uuid::Uuid, Path, description = "Metric id (UUID)"), SeriesQuery),
    responses((status = 200, description = "The series", body = SeriesView), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn series(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<SeriesQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let metric = metric_of(&spine, &principal, &path).await?;
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::hours(1));
    if from >= to {
        return Err(Problem::invalid_field("from", "must be before `to`"));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::invalid_field("limit", "must be between 1 and 10000"));
    }
    let points: Vec<SamplePoint> = spine.db().monitoring().series(&metric, from, to, limit).await?;
    Ok(HttpResponse::Ok().json(SeriesView {
        metric: MetricView::from(metric),
        from,
        to,
        points: points.into_iter().map(|p| SeriesPoint { at: p.at, value: p.value }).collect(),
    }))
}

/// Body of `PATCH /api/v1/monitoring/metrics/{id}` (the seed's alerting and pause toggles).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricPatch {
    pub alerting: Option<bool>,
    pub paused: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/monitoring/metrics/{id}",
    tag = "monitoring",
    summary = "Switch a metric's alerting or pause",
    params(("id" = uuid::Uuid, Path, description = "Metric id (UUID)")),
    request_body = MetricPatch,
    responses((status = 200, description = "The metric", body = MetricView), doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn patch_metric(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<MetricPatch>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let metric = metric_of(&spine, &principal, &path).await?;
    let b = body.into_inner();
    if b.alerting.is_none() && b.paused.is_none() {
        return Err(Problem::invalid_field("body", "give `alerting`, `paused` or both"));
    }
    spine.db().monitoring().set_metric_flags(metric.id, b.alerting, b.paused, &principal.label()).await?;
    Ok(HttpResponse::Ok().json(MetricView::from(metric_of(&spine, &principal, &path).await?)))
}
