//! `GET /api/v1/monitoring/targets/{id}/results`: one target's raw check results, newest deadline
//! first, paginated by deadline (results older than `monitor.raw_result_hours` live on only in the
//! rollups the target's uptime is read from).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::monitoring::CheckResult;
use sentinel_jobs::domain::Role;
use serde::{Deserialize, Serialize};

use super::backup_shared::path_id;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/targets/{id}/results").route(web::get().to(results)));
}

/// One check's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultView {
    /// The deadline it answers (a manual check's own start).
    pub due_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    /// `up` or `down`.
    pub status: String,
    pub status_code: Option<u16>,
    pub response_ms: f64,
    /// dns, connect, tls, timeout, status, assertion, response_time or other.
    pub error_class: Option<String>,
    pub message: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    /// Run by `POST …/check`, outside the schedule.
    pub manual: bool,
}

impl From<CheckResult> for ResultView {
    fn from(r: CheckResult) -> Self {
        Self {
            due_at: r.due_at,
            started_at: r.started_at,
            status: r.status.as_str().to_owned(),
            status_code: r.status_code,
            response_ms: r.response_ms,
            error_class: r.error_class.map(|c| c.as_str().to_owned()),
            message: r.message,
            cert_expires_at: r.cert_expires_at,
            manual: r.manual,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultsQuery {
    /// `next_cursor` of the previous page (a deadline: results before it).
    cursor: Option<DateTime<Utc>>,
    /// Only results whose deadline is at or after this time.
    since: Option<DateTime<Utc>>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultPage {
    pub items: Vec<ResultView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<DateTime<Utc>>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/targets/{id}/results",
    tag = "monitoring",
    summary = "A target's raw check results, newest first",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)"), ResultsQuery),
    responses((status = 200, description = "A page of results", body = ResultPage), doc::Guarded, doc::NotFound, doc::Invalid)
)]
pub(crate) async fn results(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<ResultsQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let id = path_id(&path, "monitor target")?;
    let store = spine.db().monitoring();
    if store.target(principal.org_id, id).await?.is_none() {
        return Err(Problem::not_found(&format!("monitor target {:?}", path.as_str())));
    }
    let rows = store.results(id, q.cursor, q.since, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |r| r.due_at);
    Ok(HttpResponse::Ok().json(ResultPage { items: rows.into_iter().map(ResultView::from).collect(), next_cursor }))
}
