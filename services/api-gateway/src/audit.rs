//! The audit trail: every mutating API request by an authenticated caller is recorded (who,
//! organization, action, target, outcome, time) after it completes.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use sentinel_jobs::GroupCommit;
use sentinel_jobs::Spine;
use sentinel_jobs::db::NewAuditEntry;

use crate::auth::Principal;

/// How long audit entries of committed changes are retried through a database outage.
const AUDIT_OUTAGE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// The audit trail's writer: entries of concurrent requests are committed together; each request still
/// waits until its entry is stored.
#[derive(Clone)]
pub struct AuditWriter {
    committer: GroupCommit<NewAuditEntry, bool>,
}

impl AuditWriter {
    pub fn start(spine: &Spine) -> Self {
        let access = spine.db().access();
        let committer = GroupCommit::start(256, 2, move |entries: Vec<NewAuditEntry>| {
            let access = access.clone();
            async move {
                let n = entries.len();
                // The change these entries record is already committed: an outage must not lose
                // them, so an unreachable database is waited out (the requests wait with them).
                let mut pause = std::time::Duration::from_millis(100);
                let deadline = std::time::Instant::now() + AUDIT_OUTAGE_PATIENCE;
                loop {
                    match access.record_audit_many(&entries).await {
                        Ok(()) => return vec![true; n],
                        Err(e) if e.is_unavailable() && std::time::Instant::now() < deadline => {
                            tracing::warn!(error = %e, count = n, "audit log unreachable; retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(std::time::Duration::from_secs(2));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, count = n, "could not write the audit log");
                            return vec![false; n];
                        }
                    }
                }
            }
        });
        Self { committer }
    }
}

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mutating = !matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD | actix_web::http::Method::OPTIONS
    );
    let writer = req.app_data::<web::Data<AuditWriter>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    // A request refused because the database is unreachable changed nothing, and its entry could not
    // be written either.
    let refused_by_outage = res.response().extensions().get::<crate::db_guard::DatabaseDown>().is_some();
    if mutating
        && !refused_by_outage
        && let Some(writer) = writer
    {
        // The principal as resolved for this request (login responses carry the user who logged in).
        let principal = res.request().extensions().get::<Principal>().cloned();
        if let Some(p) = principal {
            let action = format!("{method} {}", res.request().match_pattern().unwrap_or_else(|| path.clone()));
            let outcome = res.status().as_u16();
            let entry = NewAuditEntry { org_id: p.org_id, actor: p.label(), action, target: Some(path), outcome };
            writer.committer.submit(entry).await;
        }
    }
    Ok(res)
}
