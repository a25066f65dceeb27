//! The audit trail: every mutating API request by an authenticated caller is recorded (who,
//! organization, action, target, outcome, time) after it completes.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use sentinel_jobs::Spine;

use crate::auth::Principal;

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mutating = !matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD | actix_web::http::Method::OPTIONS
    );
    let spine = req.app_data::<web::Data<Spine>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    if mutating && let Some(spine) = spine {
        // The principal as resolved for this request (login responses carry the user who logged in).
        let principal = res.request().extensions().get::<Principal>().cloned();
        if let Some(p) = principal {
            let action = format!("{method} {}", res.request().match_pattern().unwrap_or_else(|| path.clone()));
            let outcome = res.status().as_u16();
            if let Err(e) = spine.db().access().record_audit(p.org_id, &p.label(), &action, Some(&path), outcome).await
            {
                tracing::error!(error = %e, %action, "could not write the audit log");
            }
        }
    }
    Ok(res)
}
