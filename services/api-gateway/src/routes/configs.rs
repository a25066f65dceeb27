//! `/api/v1/configs`: named parameter sets (the extra variables of a run), versioned on every update,
//! with secret values sealed in the vault and shown only as set.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::DbError;
use sentinel_jobs::db::configs::{ConfigDraft, ConfigRecord};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::configs as rules;
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc::{self, inventory as idoc};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/configs").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/configs/{id}")
            .route(web::get().to(get_config))
            .route(web::put().to(replace))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/configs/{id}/versions").route(web::get().to(versions)));
    cfg.service(resource("/configs/{id}/versions/{version}").route(web::get().to(get_version)));
}

/// Body of `POST /api/v1/configs` and `PUT /api/v1/configs/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// Unique in your organization.
    #[schema(schema_with = idoc::server_name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = idoc::notes_or_null)]
    pub description: Option<String>,
    /// A file on the worker's side this config refers to (1 to 1024 characters).
    #[serde(default)]
    #[schema(schema_with = idoc::config_path_or_null)]
    pub path: Option<String>,
    /// The extra variables of a run (at most 256 KiB). A secret value is written `{"secret": "…"}`:
    /// it is sealed in the vault, never shown again (reads show `{"secret": true}`), and handed only
    /// to the run that uses the config. On update, `{"secret": true}` keeps the stored value.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

/// A config (or one version of it) as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub path: Option<String>,
    /// Secrets appear as `{"secret": true}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Where the payload holds secrets (`payload.db.password`).
    pub secrets: Vec<String>,
    /// Incremented by every update; every version stays readable.
    pub version: i64,
    /// Who created the config (for a version: who wrote it).
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ConfigRecord> for ConfigView {
    fn from(c: ConfigRecord) -> Self {
        Self {
            id: c.id,
            name: c.name,
            description: c.description,
            path: c.path,
            secrets: rules::secret_refs(&c.payload).into_iter().map(|(path, _)| path).collect(),
            payload: rules::view_form(&c.payload),
            version: c.version,
            created_by: c.created_by,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Validates a body and seals its new secrets (keeping those of `previous`).
fn draft(spine: &Spine, body: ConfigBody, previous: Option<&ConfigRecord>) -> Result<ConfigDraft, Problem> {
    let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
    let mut errors = Vec::new();
    if let Err(e) = rules::check_name(&body.name) {
        errors.push(FieldError::new("name", e));
    }
    let description = body.description.unwrap_or_default();
    if let Err(e) = rules::check_description(&description) {
        errors.push(FieldError::new("description", e));
    }
    if let Some(Err(e)) = body.path.as_deref().map(rules::check_path) {
        errors.push(FieldError::new("path", e));
    }
    let mut secrets = Vec::new();
    let input = body.payload.unwrap_or_else(|| serde_json::json!({}));
    let mut seal = |plain: &str| {
        let (id, sealed) = vault.seal_new(plain.as_bytes());
        secrets.push((id, sealed.key_id, sealed.text));
        id.to_string()
    };
    let payload = match rules::store_form(&input, previous.map(|p| &p.payload), &mut seal) {
        Ok(p) => p,
        Err(bad) => {
            errors.extend(bad.into_iter().map(|e| FieldError::new(e.field, e.reason)));
            serde_json::Value::Null
        }
    };
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    Ok(ConfigDraft { name: body.name, description, path: body.path, payload, secrets })
}

fn name_taken(e: DbError, name: &str) -> Problem {
    match e {
        DbError::Duplicate => Problem::conflict(format!("a config named {name:?} already exists")),
        other => other.into(),
    }
}

async fn config_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<ConfigRecord, Problem> {
    let not_found = || Problem::not_found(&format!("config {raw:?}"));
    let id: Uuid = raw.parse().map_err(|_| not_found())?;
    spine.db().configs().get(principal.org_id, id).await?.ok_or_else(not_found)
}

#[utoipa::path(
    post,
    path = "/api/v1/configs",
    tag = "inventory",
    summary = "Create a config (version 1)",
    request_body = ConfigBody,
    responses(
        (status = 201, description = "Created", body = ConfigView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<ConfigBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let draft = draft(&spine, body.into_inner(), None)?;
    let name = draft.name.clone();
    let rec = spine
        .db()
        .configs()
        .create(principal.org_id, Uuid::now_v7(), draft, &principal.label())
        .await
        .map_err(|e| name_taken(e, &name))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/configs/{}", rec.id)))
        .json(ConfigView::from(rec)))
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
pub struct ConfigPage {
    pub items: Vec<ConfigView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/configs",
    tag = "inventory",
    summary = "List configs, oldest first",
    params(ListQuery),
    responses((status = 200, description = "A page of configs", body = ConfigPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().configs().list(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |c| c.id);
    Ok(HttpResponse::Ok().json(ConfigPage { items: rows.into_iter().map(ConfigView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{id}",
    tag = "inventory",
    summary = "Get a config (its current version)",
    params(("id" = uuid::Uuid, Path, description = "Config id (UUID)")),
    responses((status = 200, description = "The config", body = ConfigView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_config(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config_of(&spine, &principal, &path).await?)))
}

#[utoipa::path(
    put,
    path = "/api/v1/configs/{id}",
    tag = "inventory",
    summary = "Replace a config: a new version (the old one stays readable)",
    params(("id" = uuid::Uuid, Path, description = "Config id (UUID)")),
    request_body = ConfigBody,
    responses(
        (status = 200, description = "The new version", body = ConfigView),
        (status = 409, description = "The name is taken, or another update came first", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<ConfigBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = config_of(&spine, &principal, &path).await?;
    let draft = draft(&spine, body.into_inner(), Some(&old))?;
    let name = draft.name.clone();
    let rec = spine.db().configs().update(&old, draft, &principal.label()).await.map_err(|e| name_taken(e, &name))?;
    Ok(HttpResponse::Ok().json(ConfigView::from(rec)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/configs/{id}",
    tag = "inventory",
    summary = "Delete a config, all its versions and its secrets",
    params(("id" = uuid::Uuid, Path, description = "Config id (UUID)")),
    responses((status = 204, description = "Deleted"), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = config_of(&spine, &principal, &path).await?;
    if !spine.db().configs().delete(principal.org_id, rec.id).await? {
        return Err(Problem::not_found(&format!("config {}", rec.id)));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionsQuery {
    /// `next_cursor` of the previous page.
    #[param(minimum = 1)]
    cursor: Option<i64>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigVersionPage {
    pub items: Vec<ConfigView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{id}/versions",
    tag = "inventory",
    summary = "Every version of a config, newest first",
    params(("id" = uuid::Uuid, Path, description = "Config id (UUID)"), VersionsQuery),
    responses(
        (status = 200, description = "A page of versions", body = ConfigVersionPage),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn versions(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<VersionsQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    if q.cursor.is_some_and(|c| c < 1) {
        return Err(Problem::invalid_field("cursor", "must be at least 1"));
    }
    let rec = config_of(&spine, &principal, &path).await?;
    let rows = spine.db().configs().versions(rec.id, q.cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |c| c.version);
    Ok(HttpResponse::Ok()
        .json(ConfigVersionPage { items: rows.into_iter().map(ConfigView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{id}/versions/{version}",
    tag = "inventory",
    summary = "One version of a config, exactly as a run that used it saw it (secrets shown as set)",
    params(
        ("id" = uuid::Uuid, Path, description = "Config id (UUID)"),
        ("version" = i64, Path, minimum = 1, description = "Version number")
    ),
    responses((status = 200, description = "The version", body = ConfigView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_version(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let (raw_id, raw_version) = path.into_inner();
    let rec = config_of(&spine, &principal, &raw_id).await?;
    let not_found = || Problem::not_found(&format!("version {raw_version:?} of config {}", rec.id));
    let version: i64 = raw_version.parse().map_err(|_| not_found())?;
    let found = spine.db().configs().version(principal.org_id, rec.id, version).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(ConfigView::from(found)))
}
