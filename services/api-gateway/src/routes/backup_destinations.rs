//! `/api/v1/backups/destinations`: where artifacts are stored — a local directory, S3 or an
//! S3-compatible service, Google Cloud Storage, Azure Blob — with credentials sealed in the vault
//! (never returned), and `POST …/{id}/test`, a job that writes, reads back and deletes a probe.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::backups::{DestinationRecord, SecretChange};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::backups::{self as domain, DestinationConfig};
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::backup_shared::{accepted_job, field_errors, name_taken, path_id};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/backups/destinations").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/backups/destinations/{id}")
            .route(web::get().to(get_destination))
            .route(web::put().to(replace))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/backups/destinations/{id}/test").route(web::post().to(test)));
}

/// Body of `POST /api/v1/backups/destinations` and `PUT /api/v1/backups/destinations/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `{"kind": "local", "path": "/srv/backups"}`, `{"kind": "s3", "bucket", "region", "endpoint",
    /// "prefix", "force_path_style"}`, `{"kind": "gcs", "bucket", "prefix", "endpoint"}` or
    /// `{"kind": "azure", "account", "container", "prefix", "endpoint"}`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Write-only, sealed at rest: S3 `access_key_id` + `secret_access_key`; GCS
    /// `service_account_json` (the key file's text); Azure `access_key`. On replace: absent keeps
    /// the stored ones.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
}

/// A destination as the API shows it: never its credentials.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// Whether credentials are stored (they are never shown).
    pub has_credentials: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(d: DestinationRecord) -> DestinationView {
    DestinationView {
        id: d.id,
        name: d.name,
        kind: d.config.kind().as_str().to_owned(),
        config: serde_json::to_value(&d.config).unwrap_or(Value::Null),
        has_credentials: d.credentials_secret_id.is_some(),
        created_by: d.created_by,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// Checks a body: the config, and the credentials against what its kind needs (`required` only when
/// no stored credentials are kept).
fn check(spine: &Spine, b: &DestinationBody, keeping: bool) -> Result<(DestinationConfig, SecretChange), Problem> {
    let mut errors = Vec::new();
    if let Err(e) = domain::check_name(&b.name) {
        errors.push(FieldError::new("name", e));
    }
    let config: Option<DestinationConfig> = match serde_json::from_value(b.config.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(FieldError::new(
                "config",
                format!("{e} (kind is one of local, s3, gcs, azure, with that kind's fields)"),
            ));
            None
        }
    };
    if let Some(c) = &config {
        errors.extend(
            field_errors(c.check()).into_iter().map(|e| FieldError::new(format!("config.{}", e.field), e.reason)),
        );
        let (required, accepted) = c.credential_fields();
        let given = b.credentials.clone().unwrap_or_default();
        for (k, v) in &given {
            if !accepted.contains(&k.as_str()) {
                let hint = if accepted.is_empty() { "this kind takes none".to_owned() } else { accepted.join(", ") };
                errors.push(FieldError::new(
                    format!("credentials.{k}"),
                    format!("not a credential of this kind ({hint})"),
                ));
            } else if !v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 16384) {
                errors.push(FieldError::new(
                    format!("credentials.{k}"),
                    "a non-empty string of at most 16384 characters",
                ));
            }
        }
        if b.credentials.is_some() || !keeping {
            for need in required.iter().filter(|f| !given.contains_key(**f)) {
                errors.push(FieldError::new(format!("credentials.{need}"), "is required for this kind"));
            }
        }
    }
    let (Some(config), true) = (config, errors.is_empty()) else { return Err(Problem::invalid(errors)) };
    let change = match &b.credentials {
        Some(map) if !map.is_empty() => {
            let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
            let text = zeroize::Zeroizing::new(Value::Object(map.clone()).to_string());
            let (id, sealed) = vault.seal_new(text.as_bytes());
            SecretChange::Set((id, sealed.key_id, sealed.text))
        }
        Some(_) => SecretChange::Clear,
        None if config.credential_fields().1.is_empty() => SecretChange::Clear,
        None => SecretChange::Keep,
    };
    Ok((config, change))
}

async fn destination_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<DestinationRecord, Problem> {
    let id = path_id(raw, "backup destination")?;
    spine
        .db()
        .backups()
        .destination(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("backup destination {raw:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/destinations",
    tag = "backups",
    summary = "Add a backup destination (credentials sealed at rest, never returned)",
    request_body = DestinationBody,
    responses(
        (status = 201, description = "Stored", body = DestinationView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<DestinationBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let (config, creds) = check(&spine, &b, false)?;
    let saved = spine
        .db()
        .backups()
        .create_destination(principal.org_id, b.name.clone(), &config, creds, &principal.label())
        .await
        .map_err(|e| name_taken(e, "backup destination", &b.name))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/backups/destinations/{}", saved.id)))
        .json(view(saved)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationPage {
    pub items: Vec<DestinationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/destinations",
    tag = "backups",
    summary = "List backup destinations",
    params(ListQuery),
    responses((status = 200, description = "A page of destinations", body = DestinationPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().backups().destinations(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |d| d.id);
    Ok(HttpResponse::Ok().json(DestinationPage { items: rows.into_iter().map(view).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/destinations/{id}",
    tag = "backups",
    summary = "Get a backup destination (never its credentials)",
    params(("id" = uuid::Uuid, Path, description = "Destination id (UUID)")),
    responses((status = 200, description = "The destination", body = DestinationView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_destination(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(destination_of(&spine, &principal, &path).await?)))
}

#[utoipa::path(
    put,
    path = "/api/v1/backups/destinations/{id}",
    tag = "backups",
    summary = "Replace a backup destination (stored credentials kept unless given)",
    params(("id" = uuid::Uuid, Path, description = "Destination id (UUID)")),
    request_body = DestinationBody,
    responses(
        (status = 200, description = "Replaced", body = DestinationView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<DestinationBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = destination_of(&spine, &principal, &path).await?;
    let b = body.into_inner();
    let keeping = old.credentials_secret_id.is_some() && old.config.kind() == kind_of(&b.config);
    let (config, creds) = check(&spine, &b, keeping)?;
    let saved = spine
        .db()
        .backups()
        .update_destination(&old, b.name.clone(), &config, creds)
        .await
        .map_err(|e| name_taken(e, "backup destination", &b.name))?;
    Ok(HttpResponse::Ok().json(view(saved)))
}

fn kind_of(config: &Value) -> domain::DestinationKind {
    config
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| domain::DestinationKind::parse(k).ok())
        .unwrap_or(domain::DestinationKind::Local)
}

#[utoipa::path(
    delete,
    path = "/api/v1/backups/destinations/{id}",
    tag = "backups",
    summary = "Delete a backup destination and its credentials (refused while a plan writes to it; stored artifacts stay where they are)",
    params(("id" = uuid::Uuid, Path, description = "Destination id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "A plan writes to it", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let dest = destination_of(&spine, &principal, &path).await?;
    spine.db().backups().delete_destination(&dest).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/destinations/{id}/test",
    tag = "backups",
    summary = "Test a destination: a job writes a probe object, reads it back, compares and deletes it",
    params(("id" = uuid::Uuid, Path, description = "Destination id (UUID)")),
    responses(
        (status = 202, description = "The test job (its result holds the timings)", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn test(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let dest = destination_of(&spine, &principal, &path).await?;
    let retry = sentinel_jobs::domain::RetryPolicy { max_attempts: 1, ..Default::default() };
    accepted_job(&spine, &principal, domain::TEST_DESTINATION_KIND, json!({"destination_id": dest.id}), Some(retry))
        .await
}
