//! `GET /api/v1/servers/{id}/history`: every action on a server, newest first — who, what, the
//! changed fields before and after, and the job when a job did it.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::inventory::HistoryRecord;
use sentinel_jobs::domain::{JobId, Role};
use serde::{Deserialize, Serialize};

use super::servers::server_of;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// One action on a server.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who did it (`user:…`, `key:…`, or `system`).
    pub actor: String,
    /// `create`, `import_create`, `import_update`, `edit`, `status`, `reserve`, `release`, `expire`, `run`.
    pub action: String,
    /// The changed fields before the action (absent for a creation).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub job_id: Option<JobId>,
    pub detail: Option<String>,
}

impl From<HistoryRecord> for HistoryView {
    fn from(h: HistoryRecord) -> Self {
        Self {
            id: h.id,
            at: h.at,
            actor: h.actor,
            action: h.action,
            before: h.before,
            after: h.after,
            job_id: h.job_id,
            detail: h.detail,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}/history",
    tag = "inventory",
    summary = "What happened to a server, newest first (who, what, before → after, job)",
    params(("id" = uuid::Uuid, Path, description = "Server id (UUID)"), HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = HistoryPage),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn history(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let rec = server_of(&spine, &principal, &path).await?;
    let rows = spine.db().inventory().history(rec.id, q.cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |h| h.id);
    Ok(HttpResponse::Ok().json(HistoryPage { items: rows.into_iter().map(HistoryView::from).collect(), next_cursor }))
}
