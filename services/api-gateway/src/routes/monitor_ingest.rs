//! Metric ingest: `POST /api/v1/ingest/metrics` (the seed's path, which deployed agents call) and
//! `POST /api/v1/monitoring/metrics`, with an ingest-scoped key in `X-API-Key` and the batch's
//! idempotency key in `X-Ingest-Id`: a replay is answered as the first time and counts nothing.

use actix_web::{HttpRequest, HttpResponse, web};
use sentinel_jobs::domain::monitoring::metrics::{RawBatch, check_ingest_id};
use sentinel_jobs::{FieldError, Spine};
use serde::Deserialize;
use serde_json::Value;

use super::backup_shared::field_errors;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// The header that carries a batch's idempotency key.
pub const INGEST_ID: &str = "x-ingest-id";

/// The ingest's headers, as documented.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read from the request's headers; this documents them
pub(crate) struct IngestHeaders {
    /// The batch's idempotency key (1 to 128 visible ASCII characters): a replay is answered as the
    /// first time and counts nothing.
    #[param(rename = "X-Ingest-Id", pattern = "^[!-~]{1,128}$")]
    x_ingest_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/ingest/metrics",
    tag = "monitoring",
    summary = "Ingest a batch of metrics (also at POST /api/v1/monitoring/metrics); machines and metrics are created on first sight",
    params(IngestHeaders),
    request_body(content = Object, description = "`{machine: {hostname, os}, metrics: [{name, type: numeric|boolean|string, value, unit}], sent_at}`"),
    responses(
        (status = 202, description = "Stored (or a replay: the first answer, with `Idempotency-Replayed: true`)", body = Object),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn ingest(
    principal: Principal,
    spine: web::Data<Spine>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require_ingest()?;
    let ingest_id = match req.headers().get(INGEST_ID) {
        None => None,
        Some(v) => {
            let id = v.to_str().map_err(|_| Problem::invalid_field("X-Ingest-Id", "not visible ASCII"))?.trim();
            check_ingest_id(id).map_err(|e| Problem::invalid_field("X-Ingest-Id", e))?;
            Some(id.to_owned())
        }
    };
    let mut body = body.into_inner();
    doc::integral_numbers(&mut body);
    let raw: RawBatch = serde_json::from_value(body).map_err(|e| {
        Problem::invalid(vec![FieldError::new(
            "body",
            format!("{e} (expected {{machine: {{hostname, os}}, metrics: [{{name, type, value, unit}}], sent_at}})"),
        )])
    })?;
    let batch = raw.check(chrono::Utc::now()).map_err(|p| Problem::invalid(field_errors(p)))?;
    let outcome = spine.db().monitoring().ingest(principal.org_id, ingest_id.as_deref(), &batch).await?;
    let mut response = HttpResponse::Accepted();
    if outcome.replayed {
        response.insert_header(("Idempotency-Replayed", "true"));
    }
    Ok(response.json(outcome.response))
}
