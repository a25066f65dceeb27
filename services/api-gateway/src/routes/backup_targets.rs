//! `/api/v1/backups/targets`: the databases Sentinel backs up — engine, connection (the password
//! sealed in the vault, never returned), databases, TLS, include/exclude lists, or a file for
//! SQLite — and `POST …/{id}/test`, a job that connects and reports the versions.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::backups::{SecretChange, TargetDraft, TargetRecord};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::backups::{self as domain, Engine, TargetOptions, TlsMode};
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::backup_shared::{accepted_job, field_errors, name_taken, path_id};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/backups/targets").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/backups/targets/{id}")
            .route(web::get().to(get_target))
            .route(web::put().to(replace))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/backups/targets/{id}/test").route(web::post().to(test)));
}

/// Body of `POST /api/v1/backups/targets` and `PUT /api/v1/backups/targets/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    /// Unique in your organization; 1–100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `postgres`, `mysql`, `mariadb`, `mongodb` or `sqlite`.
    #[schema(example = "postgres")]
    pub engine: String,
    /// Host name or IP address (not for SQLite).
    #[schema(max_length = 253)]
    pub host: Option<String>,
    /// Default: the engine's (5432, 3306, 27017).
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    #[schema(max_length = 128)]
    pub user: Option<String>,
    /// Sealed at rest, never returned. On replace: absent keeps the stored one.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 4096)]
    pub password: Option<Zeroizing<String>>,
    /// On replace: drop the stored password.
    #[serde(default)]
    pub clear_password: bool,
    /// The databases to back up (one artifact each); not for SQLite.
    #[serde(default)]
    pub databases: Vec<String>,
    /// The database file of a SQLite target (absolute, on the backup worker).
    #[schema(max_length = 4096)]
    pub path: Option<String>,
    /// `default`, `disable`, `require` or `verify_full`.
    #[serde(default)]
    pub tls: Option<String>,
    /// Tables (collections) to dump, when not all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables (collections) to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// PostgreSQL: each backup also takes the server's roles and tablespaces
    /// (`pg_dumpall --globals-only`; without role passwords when the user is no superuser), so
    /// the backup restores into a new cluster. Default true.
    #[serde(default)]
    pub globals: Option<bool>,
}

/// A target as the API shows it: never its password.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetView {
    pub id: Uuid,
    pub name: String,
    pub engine: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// Whether a password is stored (it is never shown).
    pub has_password: bool,
    pub databases: Vec<String>,
    pub path: Option<String>,
    pub tls: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Whether backups take the server's roles and tablespaces too (PostgreSQL).
    pub globals: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(t: TargetRecord) -> TargetView {
    let tls = serde_json::to_value(t.options.tls).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    TargetView {
        id: t.id,
        name: t.name,
        engine: t.engine.as_str().to_owned(),
        host: t.host,
        port: t.port,
        user: t.user,
        has_password: t.password_secret_id.is_some(),
        databases: t.databases,
        path: t.path,
        tls,
        include: t.options.include,
        exclude: t.options.exclude,
        globals: t.options.globals,
        created_by: t.created_by,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

/// Checks a body and builds the draft (every bad field named at once).
fn draft_of(b: &TargetBody) -> Result<TargetDraft, Problem> {
    let mut errors = Vec::new();
    if let Err(e) = domain::check_name(&b.name) {
        errors.push(FieldError::new("name", e));
    }
    let engine = match Engine::parse(&b.engine) {
        Ok(e) => Some(e),
        Err(e) => {
            errors.push(FieldError::new("engine", e));
            None
        }
    };
    let tls = match b.tls.as_deref() {
        None => TlsMode::Default,
        Some(t) => serde_json::from_value(json!(t)).unwrap_or_else(|_| {
            errors.push(FieldError::new("tls", "is default, disable, require or verify_full"));
            TlsMode::Default
        }),
    };
    let options = TargetOptions {
        globals: b.globals.unwrap_or(true),
        tls,
        include: b.include.clone(),
        exclude: b.exclude.clone(),
    };
    errors.extend(field_errors(options.check()));
    if engine.is_some_and(|e| e.is_file()) && !(b.include.is_empty() && b.exclude.is_empty()) {
        errors.push(FieldError::new("include", "a SQLite database is backed up whole (one consistent file copy)"));
    }
    if b.password.as_ref().is_some_and(|p| p.len() > 4096) {
        errors.push(FieldError::new("password", "longer than 4096 characters"));
    }
    let Some(engine) = engine else { return Err(Problem::invalid(errors)) };
    let draft = if engine.is_file() {
        for (field, given) in [
            ("host", b.host.is_some()),
            ("port", b.port.is_some()),
            ("user", b.user.is_some()),
            ("password", b.password.is_some()),
            ("databases", !b.databases.is_empty()),
        ] {
            if given {
                errors.push(FieldError::new(field, "a SQLite target is a file: give only path"));
            }
        }
        match b.path.as_deref() {
            Some(p) if p.starts_with('/') && p.len() <= 4096 && !p.chars().any(char::is_control) => {}
            _ => errors.push(FieldError::new("path", "a SQLite target needs the absolute path of its database file")),
        }
        TargetDraft {
            name: b.name.clone(),
            engine,
            host: None,
            port: None,
            user: None,
            databases: Vec::new(),
            options,
            path: b.path.clone(),
        }
    } else {
        if b.path.is_some() {
            errors.push(FieldError::new("path", format!("a {engine} target is reached by host, not by a file")));
        }
        let port = b.port.or(engine.default_port()).unwrap_or(0);
        errors.extend(field_errors(domain::check_connection(
            b.host.as_deref().unwrap_or(""),
            port,
            b.user.as_deref().unwrap_or(""),
            &b.databases,
        )));
        TargetDraft {
            name: b.name.clone(),
            engine,
            host: b.host.clone(),
            port: Some(port),
            user: b.user.clone(),
            databases: b.databases.clone(),
            options,
            path: None,
        }
    };
    if errors.is_empty() { Ok(draft) } else { Err(Problem::invalid(errors)) }
}

fn password_change(spine: &Spine, b: &TargetBody) -> Result<SecretChange, Problem> {
    match (&b.password, b.clear_password) {
        (Some(_), true) => Err(Problem::invalid_field("clear_password", "give a password or clear it, not both")),
        (Some(pw), false) => {
            let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
            let (id, sealed) = vault.seal_new(pw.as_bytes());
            Ok(SecretChange::Set((id, sealed.key_id, sealed.text)))
        }
        (None, true) => Ok(SecretChange::Clear),
        (None, false) => Ok(SecretChange::Keep),
    }
}

async fn target_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<TargetRecord, Problem> {
    let id = path_id(raw, "backup target")?;
    spine
        .db()
        .backups()
        .target(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("backup target {raw:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/targets",
    tag = "backups",
    summary = "Add a database to back up (its password sealed at rest, never returned)",
    request_body = TargetBody,
    responses(
        (status = 201, description = "Stored", body = TargetView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<TargetBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let draft = draft_of(&b)?;
    if b.clear_password {
        return Err(Problem::invalid_field("clear_password", "only a replace can clear a stored password"));
    }
    let password = password_change(&spine, &b)?;
    let saved = spine
        .db()
        .backups()
        .create_target(principal.org_id, draft, password, &principal.label())
        .await
        .map_err(|e| name_taken(e, "backup target", &b.name))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/backups/targets/{}", saved.id)))
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
pub struct TargetPage {
    pub items: Vec<TargetView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/targets",
    tag = "backups",
    summary = "List backup targets",
    params(ListQuery),
    responses((status = 200, description = "A page of targets", body = TargetPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().backups().targets(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |t| t.id);
    Ok(HttpResponse::Ok().json(TargetPage { items: rows.into_iter().map(view).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/targets/{id}",
    tag = "backups",
    summary = "Get a backup target (never its password)",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    responses((status = 200, description = "The target", body = TargetView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_target(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(target_of(&spine, &principal, &path).await?)))
}

#[utoipa::path(
    put,
    path = "/api/v1/backups/targets/{id}",
    tag = "backups",
    summary = "Replace a backup target (the password is kept unless given or cleared)",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    request_body = TargetBody,
    responses(
        (status = 200, description = "Replaced", body = TargetView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<TargetBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = target_of(&spine, &principal, &path).await?;
    let b = body.into_inner();
    let draft = draft_of(&b)?;
    let mut password = password_change(&spine, &b)?;
    if draft.engine.is_file() && old.password_secret_id.is_some() {
        password = SecretChange::Clear;
    }
    let saved = spine
        .db()
        .backups()
        .update_target(&old, draft, password)
        .await
        .map_err(|e| name_taken(e, "backup target", &b.name))?;
    Ok(HttpResponse::Ok().json(view(saved)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/backups/targets/{id}",
    tag = "backups",
    summary = "Delete a backup target and its sealed password (refused while a plan backs it up)",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "A plan backs it up", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let target = target_of(&spine, &principal, &path).await?;
    spine.db().backups().delete_target(&target).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/targets/{id}/test",
    tag = "backups",
    summary = "Test a target: a job connects, reports the server version and the client tool, and fails with the reason when the client is older than the server",
    params(("id" = uuid::Uuid, Path, description = "Target id (UUID)")),
    responses(
        (status = 202, description = "The test job (its result holds the versions)", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn test(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let target = target_of(&spine, &principal, &path).await?;
    let retry = sentinel_jobs::domain::RetryPolicy { max_attempts: 1, ..Default::default() };
    accepted_job(&spine, &principal, domain::TEST_TARGET_KIND, json!({"target_id": target.id}), Some(retry)).await
}
