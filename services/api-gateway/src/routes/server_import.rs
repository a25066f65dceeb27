//! `POST /api/v1/servers/import`: a provider's CSV export (a `text/csv` body, or a file uploaded as
//! `multipart/form-data` by the console) matched on `provider_ref`, all or nothing by default.

use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use sentinel_jobs::Spine;
use sentinel_jobs::db::inventory::{ImportChange, ImportOutcome};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::inventory::import::{self, RowError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// Largest accepted import body (about 150,000 typical rows).
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    /// `all` (default): one bad row refuses the file (422 listing every bad row) and nothing is
    /// written. `partial`: the good rows are written and the bad ones reported (a bad header or an
    /// oversized file is still a 422).
    #[serde(default)]
    #[param(schema_with = mode_schema)]
    mode: Option<String>,
    /// Answer what the import would do, without writing anything.
    #[serde(default)]
    dry_run: bool,
}

fn mode_schema() -> utoipa::openapi::schema::Object {
    doc::or_null(doc::one_of(["all", "partial"]))
}

/// One created or updated row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportChangeView {
    /// The line of the file the row starts on (the header is line 1).
    pub row: usize,
    pub provider_ref: String,
    /// For a dry run's creations, the id is not kept.
    pub server_id: Uuid,
    /// `created` or `updated`.
    pub action: &'static str,
    /// For updates: the changed fields before and after.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<ImportChange> for ImportChangeView {
    fn from(c: ImportChange) -> Self {
        Self {
            row: c.row,
            provider_ref: c.provider_ref,
            server_id: c.server_id,
            action: c.action,
            before: c.before,
            after: c.after,
        }
    }
}

/// A refused row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowErrorView {
    pub row: usize,
    pub column: Option<String>,
    pub reason: String,
}

/// What an import did (or would do, for a dry run).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    /// `all` or `partial`.
    pub mode: &'static str,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Rows refused (partial mode only; in `all` mode any bad row is a 422).
    pub failed: usize,
    /// The first 1000 errors; `error_count` counts them all.
    pub errors: Vec<RowErrorView>,
    pub error_count: usize,
    /// Created and updated rows, in file order.
    pub changes: Vec<ImportChangeView>,
}

fn row_views(errors: Vec<RowError>) -> Vec<RowErrorView> {
    errors.into_iter().map(|e| RowErrorView { row: e.row, column: e.column, reason: e.reason }).collect()
}

/// The body, read up to the limit (413 beyond, without reading the rest).
async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, Problem> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::bad_request(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_IMPORT_BYTES {
            return Err(Problem::payload_too_large(MAX_IMPORT_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first file part of a `multipart/form-data` body (or its first part).
fn multipart_file(body: &[u8], boundary: &str) -> Result<Vec<u8>, Problem> {
    let bad = |why: &str| Problem::bad_request(format!("malformed multipart body: {why}"));
    let delimiter = format!("--{boundary}");
    let mut rest = &body[find(body, delimiter.as_bytes()).ok_or_else(|| bad("no boundary"))?..];
    let mut first = None;
    loop {
        rest = &rest[delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let start = find(rest, b"\r\n\r\n").ok_or_else(|| bad("a part without headers"))?;
        let headers = String::from_utf8_lossy(&rest[..start]).to_ascii_lowercase();
        let content = &rest[start + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes()).ok_or_else(|| bad("an unterminated part"))?;
        let part = content[..end].to_vec();
        if headers.contains("filename=") {
            return Ok(part);
        }
        first.get_or_insert(part);
        rest = &content[end + 2..];
    }
    first.ok_or_else(|| bad("no part"))
}

/// The CSV bytes of the request, whichever way they were sent.
fn csv_of(req: &HttpRequest, body: Vec<u8>) -> Result<Vec<u8>, Problem> {
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "text/csv" | "application/csv" | "text/plain" => Ok(body),
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"').to_owned())
                .ok_or_else(|| Problem::bad_request("multipart/form-data without a boundary"))?;
            multipart_file(&body, &boundary)
        }
        _ => Err(Problem::unsupported_media_type(
            "send the CSV as `Content-Type: text/csv`, or upload it as multipart/form-data",
        )),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/servers/import",
    tag = "inventory",
    summary = "Import a provider's CSV export: rows matched on provider_ref are created, updated or left alone",
    description = "Columns (header row required, any order, names case-insensitive): `provider_ref` and `ip` (required), `name`, `region`, `labels` (`k=v;k=v`), `ssh_user`, `ssh_port`, `notes`, `host_key` (known_hosts form). Unknown columns are refused. A column absent from the file leaves the stored value alone; an empty cell sets its default. Rows are numbered by the line they start on (header = 1).",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "A CSV file (UTF-8, header row required, at most 100000 rows, 32 MiB)"),
    responses(
        (status = 200, description = "Imported (or, for a dry run, what would be)", body = ImportReport),
        (status = 409, description = "Another import changed the same servers meanwhile; retry", body = crate::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 32 MiB", body = crate::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not CSV or multipart", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad rows (each `{row, column, reason}` in `rows`); nothing written", body = crate::Problem, content_type = "application/problem+json"),
        (status = 400, description = "Malformed multipart body", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded
    )
)]
pub(crate) async fn import(
    principal: Principal,
    spine: web::Data<Spine>,
    req: HttpRequest,
    q: web::Query<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let partial = match q.mode.as_deref() {
        None | Some("all") => false,
        Some("partial") => true,
        Some(_) => return Err(Problem::invalid_field("mode", "must be all or partial")),
    };
    let body = read_body(payload).await?;
    let csv = csv_of(&req, body)?;
    let parsed =
        tokio::task::spawn_blocking(move || import::parse_csv(&csv)).await.map_err(|e| Problem::internal(&e))?;
    if parsed.error_count > 0 && (!partial || parsed.refused) {
        let mut p = Problem::invalid(Vec::new());
        p.detail = Some(
            format!(
                "{} row(s) have errors ({} error(s)); nothing was imported. Fix them, or import with ?mode=partial",
                parsed.bad_rows.max(1),
                parsed.error_count
            )
            .into(),
        );
        p.rows = Some(Box::new(row_views(parsed.errors)));
        return Err(p);
    }
    let outcome: ImportOutcome = spine
        .db()
        .inventory()
        .import_servers(principal.org_id, &parsed.rows, &principal.label(), q.dry_run)
        .await
        .map_err(|e| match e {
            sentinel_jobs::db::DbError::Duplicate => {
                Problem::conflict("another import created some of these servers meanwhile; retry")
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(ImportReport {
        dry_run: q.dry_run,
        mode: if partial { "partial" } else { "all" },
        created: outcome.created,
        updated: outcome.updated,
        unchanged: outcome.unchanged,
        failed: parsed.bad_rows,
        errors: row_views(parsed.errors),
        error_count: parsed.error_count,
        changes: outcome.changes.into_iter().map(ImportChangeView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_file_part_of_a_multipart_upload() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nprovider_ref,ip\r\np-1,10.0.0.1\r\n--XyZ--\r\n";
        assert_eq!(multipart_file(body, "XyZ").expect("file"), b"provider_ref,ip\r\np-1,10.0.0.1".to_vec());
        assert!(multipart_file(b"garbage", "XyZ").is_err());
    }
}
