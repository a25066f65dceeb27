//! `GET /api/v1/monitoring/events/stream`: Server-Sent Events of every alert and incident transition
//! of the caller's organization (opened, alert added, flapping, settled, alert resolved,
//! acknowledged, note, resolved) as they are written to the incidents' timelines. Each event's id is
//! its timeline entry's, so `Last-Event-ID` resumes without losing or repeating one.

use std::time::Duration;

use actix_web::{HttpRequest, Responder, web};
use actix_web_lab::sse;
use sentinel_jobs::Spine;
use sentinel_jobs::db::monitoring::StreamEntry;
use sentinel_jobs::domain::Role;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::resource;
use super::streams::{StreamQuery, resume_point};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// How often the timeline is read for new entries once the stream has caught up.
const POLL: Duration = Duration::from_millis(500);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/events/stream").route(web::get().to(stream)));
}

/// One transition, as sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransitionEvent {
    pub incident_id: Uuid,
    /// opened, alert_added, flapping, settled, alert_resolved, acknowledged, note, resolved.
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: Option<String>,
    pub text: Option<String>,
    /// The incident as it is now.
    pub title: String,
    pub state: String,
    pub severity: String,
    pub flapping: bool,
}

fn to_sse(e: StreamEntry) -> Option<sse::Event> {
    let id = e.event.id;
    let kind = e.event.kind.clone();
    let body = TransitionEvent {
        incident_id: e.incident_id,
        kind: e.event.kind,
        at: e.event.at,
        actor: e.event.actor,
        text: e.event.text,
        title: e.title,
        state: e.state,
        severity: e.severity,
        flapping: e.flapping,
    };
    let data = sse::Data::new_json(body).ok()?;
    Some(data.event(kind).id(id.to_string()).into())
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/events/stream",
    tag = "live updates",
    summary = "Server-Sent Events of every alert and incident transition of your organization (resume with Last-Event-ID)",
    params(StreamQuery),
    responses(
        (status = 200, description = "text/event-stream of TransitionEvent", content_type = "text/event-stream", body = String),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn stream(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<StreamQuery>,
    req: HttpRequest,
) -> Result<impl Responder, Problem> {
    principal.require(Role::Viewer)?;
    let mut after = resume_point(&req, &q)?;
    let (tx, rx) = mpsc::channel(256);
    let store = spine.db().monitoring();
    let org = principal.org_id;
    tokio::spawn(async move {
        loop {
            match store.stream_after(org, after, 500).await {
                Ok(entries) => {
                    let caught_up = entries.len() < 500;
                    for entry in entries {
                        let id = entry.event.id;
                        if let Some(ev) = to_sse(entry)
                            && tx.send(ev).await.is_err()
                        {
                            return;
                        }
                        after = id;
                    }
                    if !caught_up {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "monitoring stream: cannot read the timeline; retrying"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(Duration::from_secs(15))
        .with_retry_duration(Duration::from_secs(2)))
}
