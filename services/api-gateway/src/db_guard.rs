//! The gateway while its database is unreachable: every API request is answered at once with 503
//! (`unavailable`, with `Retry-After`) instead of waiting on the connection pool, until the spine's
//! probe reaches the database again. Public ops endpoints are outside this guard.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use sentinel_jobs::Spine;
use sentinel_jobs::db::DbError;

use crate::Problem;

/// Seconds a client is told to wait before retrying while the database is down.
pub const RETRY_AFTER_SECS: u32 = 2;

pub async fn refuse_while_down(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let spine = req.app_data::<web::Data<Spine>>().cloned();
    if spine.as_ref().is_some_and(|s| s.db_down()) {
        return Err(Problem::database_unavailable().into());
    }
    let res = next.call(req).await;
    let database_down = match &res {
        Ok(res) => res.response().extensions().get::<DatabaseDown>().is_some(),
        // Middleware inside (authentication) answers with an error rather than a response.
        Err(e) => e.as_error::<Problem>().is_some_and(|p| p.database_down),
    };
    if database_down && let Some(spine) = spine {
        // A handler found the database unreachable: refuse the next requests at once.
        spine.report_db_error(&DbError::Unavailable("a request found the database unreachable".to_owned()));
    }
    res
}

/// Marks a 503 that a database failure caused (so a bus outage does not pause the whole API).
pub struct DatabaseDown;
