//! `/api/v1/provisioning/ssh-keys`: SSH private keys for provisioning runs — uploaded once (OpenSSH or
//! PEM, with an optional passphrase), sealed in the vault, shown only as name, type, public key and
//! fingerprint. Keys only: Sentinel never stores SSH passwords.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::DbError;
use sentinel_jobs::db::credentials::{NewSshCredential, SshCredential};
use sentinel_jobs::domain::Role;
use sentinel_jobs::secrets::ssh::parse_private_key;
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc::{self, inventory as idoc};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/provisioning/ssh-keys").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/provisioning/ssh-keys/{id}")
            .route(web::get().to(get_key))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
}

/// Body of `POST /api/v1/provisioning/ssh-keys`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeyBody {
    /// Unique in your organization.
    #[schema(schema_with = idoc::server_name)]
    pub name: String,
    /// The private key: OpenSSH (`-----BEGIN OPENSSH PRIVATE KEY-----`) or PEM (PKCS#8, PKCS#1 RSA,
    /// SEC1 EC P-256). Never returned.
    #[schema(value_type = String, max_length = 32768)]
    pub private_key: Zeroizing<String>,
    /// Opens an encrypted key; used once, then discarded (the key is sealed by the vault instead).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 1024)]
    pub passphrase: Option<Zeroizing<String>>,
    /// Make this the organization's default key (for servers that name none).
    #[serde(default)]
    pub default: bool,
}

/// Body of `PATCH /api/v1/provisioning/ssh-keys/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeyPatch {
    #[schema(schema_with = idoc::server_name_or_null)]
    pub name: Option<String>,
    /// `true` makes it the default (the previous default stops being one); `false` unmarks it.
    pub default: Option<bool>,
}

/// An SSH key as the API shows it: never its private part.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SshKeyView {
    pub id: Uuid,
    pub name: String,
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`…
    pub key_type: String,
    /// The public key, for `authorized_keys`.
    pub public_key: String,
    /// `SHA256:…`
    pub fingerprint: String,
    pub default: bool,
    /// How many servers name this key.
    pub used_by_servers: u64,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(c: SshCredential, used_by_servers: u64) -> SshKeyView {
    SshKeyView {
        id: c.id,
        name: c.name,
        key_type: c.key_type,
        public_key: c.public_key,
        fingerprint: c.fingerprint,
        default: c.is_default,
        used_by_servers,
        created_by: c.created_by,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

async fn key_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<SshCredential, Problem> {
    let not_found = || Problem::not_found(&format!("SSH key {raw:?}"));
    let id: Uuid = raw.parse().map_err(|_| not_found())?;
    spine.db().credentials().get(principal.org_id, id).await?.ok_or_else(not_found)
}

fn name_taken(e: DbError, name: &str) -> Problem {
    match e {
        DbError::Duplicate => Problem::conflict(format!("an SSH key named {name:?} already exists")),
        other => other.into(),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/provisioning/ssh-keys",
    tag = "inventory",
    summary = "Upload an SSH private key (sealed at rest; only its public half is ever shown)",
    request_body = SshKeyBody,
    responses(
        (status = 201, description = "Stored", body = SshKeyView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a private key, a passphrase missing or wrong, an unsupported format (the reason says how to convert it)", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<SshKeyBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
    let b = body.into_inner();
    let mut errors = Vec::new();
    if let Err(e) = sentinel_jobs::domain::inventory::check_server_name(&b.name) {
        errors.push(FieldError::new("name", e));
    }
    if b.private_key.len() > 32768 {
        errors.push(FieldError::new("private_key", "longer than 32768 characters"));
    }
    let passphrase = b.passphrase.as_ref().map(|p| p.as_str());
    let parsed = match parse_private_key(&b.private_key, passphrase) {
        Ok(p) => Some(p),
        Err(e) => {
            let field = if matches!(
                e,
                sentinel_jobs::secrets::ssh::KeyError::PassphraseNeeded
                    | sentinel_jobs::secrets::ssh::KeyError::WrongPassphrase
            ) {
                "passphrase"
            } else {
                "private_key"
            };
            errors.push(FieldError::new(field, e.to_string()));
            None
        }
    };
    let (Some(parsed), true) = (parsed, errors.is_empty()) else { return Err(Problem::invalid(errors)) };
    let (secret_id, sealed) = vault.seal_new(parsed.private_openssh.as_bytes());
    let new = NewSshCredential {
        name: b.name.clone(),
        key_type: parsed.key_type,
        public_key: parsed.public_key,
        fingerprint: parsed.fingerprint,
        is_default: b.default,
        sealed: (secret_id, sealed.key_id, sealed.text),
    };
    let cred = spine
        .db()
        .credentials()
        .create(principal.org_id, new, &principal.label())
        .await
        .map_err(|e| name_taken(e, &b.name))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/provisioning/ssh-keys/{}", cred.id)))
        .json(view(cred, 0)))
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
pub struct SshKeyPage {
    pub items: Vec<SshKeyView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/provisioning/ssh-keys",
    tag = "inventory",
    summary = "List SSH keys (public halves only)",
    params(ListQuery),
    responses((status = 200, description = "A page of SSH keys", body = SshKeyPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let store = spine.db().credentials();
    let rows = store.list(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |c| c.id);
    let used = store.users_of(&rows.iter().map(|c| c.id).collect::<Vec<_>>()).await?;
    let items = rows
        .into_iter()
        .map(|c| {
            let n = used.get(&c.id).copied().unwrap_or(0);
            view(c, n)
        })
        .collect();
    Ok(HttpResponse::Ok().json(SshKeyPage { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/provisioning/ssh-keys/{id}",
    tag = "inventory",
    summary = "Get an SSH key (public half only)",
    params(("id" = uuid::Uuid, Path, description = "SSH key id (UUID)")),
    responses((status = 200, description = "The key", body = SshKeyView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_key(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let cred = key_of(&spine, &principal, &path).await?;
    let used = spine.db().credentials().users(cred.id).await?;
    Ok(HttpResponse::Ok().json(view(cred, used)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/provisioning/ssh-keys/{id}",
    tag = "inventory",
    summary = "Rename an SSH key or make it the default",
    params(("id" = uuid::Uuid, Path, description = "SSH key id (UUID)")),
    request_body = SshKeyPatch,
    responses(
        (status = 200, description = "Changed", body = SshKeyView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn patch(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<SshKeyPatch>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let cred = key_of(&spine, &principal, &path).await?;
    let p = body.into_inner();
    if let Some(Err(e)) = p.name.as_deref().map(sentinel_jobs::domain::inventory::check_server_name) {
        return Err(Problem::invalid_field("name", e));
    }
    let name = p.name.clone().unwrap_or_else(|| cred.name.clone());
    let store = spine.db().credentials();
    let saved = store.update(&cred, p.name, p.default).await.map_err(|e| name_taken(e, &name))?;
    let used = store.users(saved.id).await?;
    Ok(HttpResponse::Ok().json(view(saved, used)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/provisioning/ssh-keys/{id}",
    tag = "inventory",
    summary = "Delete an SSH key and its sealed private part",
    params(("id" = uuid::Uuid, Path, description = "SSH key id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Servers still use it", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let cred = key_of(&spine, &principal, &path).await?;
    spine.db().credentials().delete(&cred).await?;
    Ok(HttpResponse::NoContent().finish())
}
