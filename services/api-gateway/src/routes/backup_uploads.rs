//! `POST /api/v1/backups/uploads`: a backup file supplied by the operator (a dump made by hand, an
//! artifact from elsewhere) streamed onto a destination in bounded memory — never staged on the
//! gateway's disk — with its SHA-256 computed on the way. The answer names the key and checksum a
//! restore (`POST /api/v1/backups/restores` with `destination_id`, `key`, `sha256`) then uses.

use actix_web::{HttpResponse, web};
use futures::StreamExt;
use sentinel_jobs::Spine;
use sentinel_jobs::domain::Role;
use sentinel_storage::{Destination, DestinationSpec, StorageError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// Parts of uploads through the gateway (small: several uploads may run at once).
const PART_SIZE: usize = 8 << 20;
/// The largest file accepted through the API (bigger ones: put them on the destination directly).
pub const MAX_UPLOAD_BYTES: u64 = 64 << 30;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/backups/uploads").route(web::post().to(upload)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    /// Where to store the file.
    destination_id: Uuid,
    /// The file's name (letters, digits, `.`, `-`, `_`; at most 200).
    #[param(min_length = 1, max_length = 200)]
    name: String,
}

/// Where an uploaded file went.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadView {
    pub destination_id: Uuid,
    /// Pass as `key` to `POST /api/v1/backups/restores`.
    pub key: String,
    pub location: String,
    pub bytes: u64,
    /// Pass as `sha256`: the restore refuses the object if it changed since.
    pub sha256: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/uploads",
    tag = "backups",
    summary = "Upload a backup file onto a destination (streamed, hashed), to restore it from there",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file, as is (any format a restore detects: pg_dump custom, SQL, zstd, gzip, zip, tar.gz, age)"),
    responses(
        (status = 201, description = "Stored", body = UploadView),
        (status = 413, description = "Over 64 GiB", body = crate::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such destination in your organization", body = crate::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The destination refused or failed the upload (the reason is given)", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn upload(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<UploadQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let name = &q.name;
    if name.is_empty()
        || name.len() > 200
        || name.starts_with('.')
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(Problem::invalid_field("name", "1 to 200 letters, digits, '.', '-', '_', not starting with '.'"));
    }
    let dest = spine
        .db()
        .backups()
        .destination(principal.org_id, q.destination_id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("backup destination {}", q.destination_id)))?;
    let storage = open(&spine, &dest).await?;
    let key = format!("uploads/{}/{name}", Uuid::now_v7());
    let failed = |e: StorageError| Problem::bad_gateway(format!("{}: {e}", storage.location(&key)));
    let mut upload = storage.upload(&key, PART_SIZE).await.map_err(failed)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = upload.abort().await;
                return Err(Problem::bad_request(format!("reading the body: {e}")));
            }
        };
        bytes += chunk.len() as u64;
        if bytes > MAX_UPLOAD_BYTES {
            let _ = upload.abort().await;
            return Err(Problem::payload_too_large(MAX_UPLOAD_BYTES as usize));
        }
        hasher.update(&chunk);
        if let Err(e) = upload.put(chunk).await {
            let _ = upload.abort().await;
            return Err(failed(e));
        }
    }
    if bytes == 0 {
        let _ = upload.abort().await;
        return Err(Problem::invalid_field("body", "the file is empty"));
    }
    upload.complete().await.map_err(failed)?;
    let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(HttpResponse::Created().json(UploadView {
        destination_id: dest.id,
        location: storage.location(&key),
        key,
        bytes,
        sha256,
    }))
}

async fn open(spine: &Spine, dest: &sentinel_jobs::db::backups::DestinationRecord) -> Result<Destination, Problem> {
    let opened = match dest.credentials_secret_id {
        Some(id) => {
            let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
            Some(vault.open(id).await.map_err(|e| Problem::unavailable(e.to_string()))?)
        }
        None => None,
    };
    let spec = DestinationSpec::from_stored(&dest.config, opened.as_ref().map(|b| b.as_slice()))
        .map_err(|e| Problem::invalid_field("destination_id", e))?;
    Destination::open(&spec).map_err(|e| Problem::invalid_field("destination_id", e.to_string()))
}
