//! `/api/v1/monitoring/notifications`: the notification log — every delivery (one per group
//! notification and channel, and each channel test) with its channel, incident, transition,
//! attempts, last error and delivered time; filtered by channel, incident and state.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::notify::{LogFilter, NotificationRecord};
use sentinel_jobs::domain::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::path_id;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/notifications").route(web::get().to(list)));
    cfg.service(resource("/monitoring/notifications/{id}").route(web::get().to(get_notification)));
}

/// One delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    pub channel_id: Uuid,
    /// The notification group (null for a channel test).
    pub group_id: Option<Uuid>,
    /// The group's notification number (firing, then resolved, …): a channel receives them in order.
    pub sequence: i64,
    /// The incident of its first alert.
    pub incident_id: Option<Uuid>,
    /// `firing`, `resolved`, `repeat` or `test`.
    pub transition: String,
    /// What receivers see as `Idempotency-Key`: a resend after a crash carries the same key.
    pub idempotency_key: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The receiver's last HTTP status or SMTP reply code.
    pub last_status: Option<i32>,
    pub title: Option<String>,
    /// What was sent (the webhook body without its idempotency key and id).
    #[schema(value_type = Object)]
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<NotificationRecord> for NotificationView {
    fn from(n: NotificationRecord) -> Self {
        Self {
            title: n.payload["title"].as_str().map(str::to_owned),
            id: n.id,
            channel_id: n.channel_id,
            group_id: n.group_id,
            sequence: n.sequence,
            incident_id: n.incident_id,
            transition: n.status,
            idempotency_key: n.idempotency_key,
            state: n.state,
            attempts: n.attempts,
            next_attempt_at: n.next_attempt_at,
            last_error: n.last_error,
            last_status: n.last_status,
            payload: n.payload,
            created_at: n.created_at,
            delivered_at: n.delivered_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    channel_id: Option<Uuid>,
    incident_id: Option<Uuid>,
    /// pending, delivered or failed.
    #[param(schema_with = delivery_state)]
    state: Option<String>,
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

fn delivery_state() -> utoipa::openapi::Object {
    doc::one_of(["pending", "delivered", "failed"])
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/notifications",
    tag = "monitoring",
    summary = "The notification log, newest first",
    params(LogQuery),
    responses((status = 200, description = "A page of deliveries", body = NotificationPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<LogQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    if let Some(s) = &q.state
        && !["pending", "delivered", "failed"].contains(&s.as_str())
    {
        return Err(Problem::invalid_field("state", "pending, delivered or failed"));
    }
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let filter = LogFilter { channel_id: q.channel_id, incident_id: q.incident_id, state: q.state.clone() };
    let rows = spine.db().notify().notifications(principal.org_id, &filter, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |n| n.id);
    Ok(HttpResponse::Ok()
        .json(NotificationPage { items: rows.into_iter().map(NotificationView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/notifications/{id}",
    tag = "monitoring",
    summary = "One delivery of the notification log",
    params(("id" = uuid::Uuid, Path, description = "Notification id (UUID)")),
    responses((status = 200, description = "The delivery", body = NotificationView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_notification(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let id = path_id(&path, "notification")?;
    let n = spine
        .db()
        .notify()
        .notification(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("notification {:?}", path.as_str())))?;
    Ok(HttpResponse::Ok().json(NotificationView::from(n)))
}
