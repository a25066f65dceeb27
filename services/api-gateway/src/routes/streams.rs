//! Server-Sent Events: live state, progress and log lines of one job, or of every job of the caller's
//! organization, resumable with `Last-Event-ID` without losing or repeating an event. Each stream first
//! replays what the database event log holds after the client's last id, then follows the live
//! events; if the live feed lags or skips, it replays the gap from the database.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, Responder, web};
use actix_web_lab::sse;
use sentinel_jobs::Spine;
use sentinel_jobs::domain::{JobEvent, JobId, Role};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::jobs::job_of;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/jobs/{id}/stream").route(web::get().to(job_stream)));
    cfg.service(resource("/events/stream").route(web::get().to(org_stream)));
}

/// Events read from the database per page while catching up.
const PAGE: u64 = 1000;

/// One subscription to the bus per gateway process, fanned out to every SSE client (a bus
/// subscription per client would cost a Redis connection each).
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<JobEvent>>,
}

impl EventHub {
    /// Subscribes once to the bus; every event also evicts its job from the read cache.
    pub fn start(spine: Spine, cache: Arc<crate::job_cache::JobCache>) -> Self {
        let (sender, _) = broadcast::channel(65_536);
        let tx = sender.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                match spine.bus().subscribe_events().await {
                    Ok(mut events) => {
                        while let Some(ev) = events.next().await {
                            cache.evict(ev.job_id);
                            // No receiver is fine: nobody is streaming right now.
                            let _ = tx.send(Arc::new(ev));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "event hub: cannot subscribe to the bus; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { sender }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<JobEvent>> {
        self.sender.subscribe()
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Resume after this event id (same as the `Last-Event-ID` header, which wins).
    after: Option<i64>,
}

/// Where a stream resumes: `Last-Event-ID`, else `?after=`, else the beginning.
pub(crate) fn resume_point(req: &HttpRequest, q: &StreamQuery) -> Result<i64, Problem> {
    match req.headers().get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .map_err(|_| Problem::invalid_field("Last-Event-ID", "must be an integer event id")),
        None => Ok(q.after.unwrap_or(0).max(0)),
    }
}

fn to_sse(ev: &JobEvent, id: i64) -> Option<sse::Event> {
    let data = sse::Data::new_json(ev).ok()?;
    Some(data.event(ev.body.name()).id(id.to_string()).into())
}

fn respond(rx: mpsc::Receiver<sse::Event>) -> impl Responder {
    sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(Duration::from_secs(15))
        .with_retry_duration(Duration::from_secs(2))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/stream",
    tag = "live updates",
    summary = "Server-Sent Events of one job (resume with Last-Event-ID = last seq)",
    params(("id" = uuid::Uuid, Path, description = "Job id (UUID)"), StreamQuery),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn job_stream(
    principal: Principal,
    spine: web::Data<Spine>,
    hub: web::Data<EventHub>,
    path: web::Path<String>,
    q: web::Query<StreamQuery>,
    req: HttpRequest,
) -> Result<impl Responder, Problem> {
    principal.require(Role::Viewer)?;
    let job = job_of(&spine, &principal, &path).await?;
    let after = resume_point(&req, &q)?;
    let (tx, rx) = mpsc::channel(256);
    let live = hub.subscribe();
    tokio::spawn(pump(spine.get_ref().clone(), Scope::Job(job.id), after, live, tx));
    Ok(respond(rx))
}

#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    tag = "live updates",
    summary = "Server-Sent Events of every job of your organization (resume with Last-Event-ID)",
    params(StreamQuery),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn org_stream(
    principal: Principal,
    spine: web::Data<Spine>,
    hub: web::Data<EventHub>,
    q: web::Query<StreamQuery>,
    req: HttpRequest,
) -> Result<impl Responder, Problem> {
    principal.require(Role::Viewer)?;
    let after = resume_point(&req, &q)?;
    let (tx, rx) = mpsc::channel(256);
    let live = hub.subscribe();
    tokio::spawn(pump(spine.get_ref().clone(), Scope::Org(principal.org_id), after, live, tx));
    Ok(respond(rx))
}

#[derive(Clone, Copy)]
enum Scope {
    /// Cursor: the job's own event sequence number (contiguous, so gaps are detectable).
    Job(JobId),
    /// Cursor: the position in the deployment-wide event log.
    Org(Uuid),
}

impl Scope {
    fn cursor(self, ev: &JobEvent) -> i64 {
        match self {
            Scope::Job(_) => ev.seq,
            Scope::Org(_) => ev.id,
        }
    }

    fn matches(self, ev: &JobEvent) -> bool {
        match self {
            Scope::Job(id) => ev.job_id == id,
            Scope::Org(org) => ev.org_id == Some(org),
        }
    }

    async fn page(self, spine: &Spine, after: i64) -> Result<Vec<JobEvent>, sentinel_jobs::db::DbError> {
        match self {
            Scope::Job(id) => spine.store().events(id, after, PAGE).await,
            Scope::Org(org) => spine.store().org_events(org, after, PAGE).await,
        }
    }
}

/// Sends everything after `last` from the database; returns the new cursor, or `None` when the client
/// went away (or the database failed, which ends the stream; the client reconnects and resumes).
async fn catch_up(spine: &Spine, scope: Scope, mut last: i64, tx: &mpsc::Sender<sse::Event>) -> Option<i64> {
    loop {
        let page = match scope.page(spine, last).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "event stream: cannot read the event log");
                return None;
            }
        };
        let full = page.len() as u64 == PAGE;
        for ev in page {
            last = scope.cursor(&ev);
            tx.send(to_sse(&ev, last)?).await.ok()?;
        }
        if !full {
            return Some(last);
        }
    }
}

async fn pump(
    spine: Spine,
    scope: Scope,
    after: i64,
    mut live: broadcast::Receiver<Arc<JobEvent>>,
    tx: mpsc::Sender<sse::Event>,
) {
    let Some(mut last) = catch_up(&spine, scope, after, &tx).await else { return };
    loop {
        let ev = tokio::select! {
            ev = live.recv() => ev,
            _ = tx.closed() => return,
        };
        match ev {
            Ok(ev) => {
                if !scope.matches(&ev) || scope.cursor(&ev) <= last {
                    continue;
                }
                // Per-job sequences are contiguous: a jump means the live feed missed something.
                let gap = matches!(scope, Scope::Job(_)) && ev.seq > last + 1;
                if gap {
                    let Some(l) = catch_up(&spine, scope, last, &tx).await else { return };
                    last = l;
                    continue;
                }
                last = scope.cursor(&ev);
                let Some(event) = to_sse(&ev, last) else { continue };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let Some(l) = catch_up(&spine, scope, last, &tx).await else { return };
                last = l;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
