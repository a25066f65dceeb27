//! `/api/v1/auth`, `/api/v1/me`, `/api/v1/users`, `/api/v1/api-keys`, `/api/v1/audit`: logging in and
//! out, managing people and keys of one's organization, reading the audit trail.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sentinel_jobs::Spine;
use sentinel_jobs::db::{ApiKey, AuditEntry, DbError, NewApiKey, User};
use sentinel_jobs::domain::{KeyScope, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::resource;
use crate::Problem;
use crate::auth::{self, CONFIGURED, CredentialCache, KEY_PREFIX, LoginLimiter, Principal, SESSION_COOKIE};
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/login").route(web::post().to(login)));
    cfg.service(resource("/auth/logout").route(web::post().to(logout)));
    cfg.service(resource("/me").route(web::get().to(me)));
    cfg.service(resource("/users").route(web::get().to(list_users)).route(web::post().to(create_user)));
    cfg.service(resource("/users/{id}").route(web::patch().to(update_user)).route(web::delete().to(delete_user)));
    cfg.service(resource("/api-keys").route(web::get().to(list_keys)).route(web::post().to(create_key)));
    cfg.service(resource("/api-keys/{id}").route(web::delete().to(revoke_key)));
    cfg.service(resource("/audit").route(web::get().to(audit)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Bearer token for scripts; the console uses the cookie set alongside.
    pub token: String,
    pub expires_at: chrono::DateTime<Utc>,
    #[schema(value_type = Object)]
    pub user: User,
}

fn client_addr(req: &HttpRequest) -> String {
    req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".to_owned())
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    summary = "Log in with email and password",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in; sets the session cookie", body = LoginResponse),
        (status = 401, description = "Not authenticated", body = crate::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = crate::Problem, content_type = "application/problem+json"),
        doc::Invalid, doc::BadBody
    ),
    security(())
)]
pub(crate) async fn login(
    spine: web::Data<Spine>,
    limiter: web::Data<LoginLimiter>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, Problem> {
    let email = body.email.trim().to_lowercase();
    limiter.check(&format!("ip:{}", client_addr(&req))).map_err(Problem::too_many_requests)?;
    limiter.check(&format!("email:{email}")).map_err(Problem::too_many_requests)?;
    let access = spine.db().access();
    let user = access.user_by_email(&email).await?;
    let hash = user.as_ref().map_or_else(|| auth::DUMMY_HASH.clone(), |u| u.password_hash.clone());
    let valid = auth::verify_password(body.password.clone(), hash).await;
    let user = match user {
        Some(u) if valid && !u.disabled => u,
        Some(u) => {
            // Failed logins of real accounts go to their organization's audit trail.
            let _ = access.record_audit(u.org_id, &format!("user:{}", u.email), "login", None, 401).await;
            return Err(Problem::unauthorized_with("wrong email or password"));
        }
        None => return Err(Problem::unauthorized_with("wrong email or password")),
    };
    let token = auth::random_token();
    let ttl = chrono::Duration::seconds(spine.settings().auth.session_ttl_secs as i64);
    let expires_at = Utc::now() + ttl;
    access.create_session(&auth::token_hash(&token), user.id, expires_at).await?;
    let secure = req.connection_info().scheme() == "https";
    let cookie = Cookie::build(SESSION_COOKIE, token.clone())
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(ttl.num_seconds()))
        .finish();
    let _ = access.record_audit(user.org_id, &format!("user:{}", user.email), "login", None, 200).await;
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginResponse { token, expires_at, user }))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    summary = "Log out (ends the session)",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not authenticated", body = crate::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn logout(
    principal: Principal,
    req: HttpRequest,
    spine: web::Data<Spine>,
    credentials: web::Data<CredentialCache>,
) -> Result<HttpResponse, Problem> {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()));
    if let (auth::Actor::User { .. }, Some(token)) = (&principal.actor, presented) {
        spine.db().access().delete_session(&auth::token_hash(&token)).await?;
        credentials.clear();
    }
    let mut expired = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    expired.make_removal();
    Ok(HttpResponse::NoContent().cookie(expired).finish())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    organization_id: Uuid,
    organization: Option<String>,
    #[schema(value_type = String)]
    role: Role,
    #[schema(value_type = String)]
    scope: KeyScope,
    actor: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "auth",
    summary = "Who am I",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not authenticated", body = crate::Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn me(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    let org = spine.db().access().org(principal.org_id).await?;
    Ok(HttpResponse::Ok().json(Me {
        organization_id: principal.org_id,
        organization: org.map(|o| o.name),
        role: principal.role,
        scope: principal.scope,
        actor: principal.label(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    summary = "List users of your organization",
    responses(
        (status = 200, description = "Users", body = Vec<Value>),
        doc::Guarded
    )
)]
pub(crate) async fn list_users(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(spine.db().access().users(principal.org_id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    #[schema(schema_with = doc::email)]
    pub email: String,
    /// 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    #[schema(schema_with = doc::role)]
    pub role: String,
}

fn valid_email(email: &str) -> bool {
    let parts: Vec<&str> = email.split('@').collect();
    parts.len() == 2
        && !parts[0].is_empty()
        && parts[1].contains('.')
        && email.chars().count() <= 254
        && !email.contains(char::is_whitespace)
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    summary = "Create a user",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Created", body = Value),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create_user(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<NewUserBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let email = body.email.trim().to_lowercase();
    let mut errors = Vec::new();
    if !valid_email(&email) {
        errors.push(sentinel_jobs::FieldError::new("email", "must be an email address"));
    }
    if !(12..=1024).contains(&body.password.chars().count()) {
        errors.push(sentinel_jobs::FieldError::new("password", "must be 12 to 1024 characters"));
    }
    let role =
        body.role.parse::<Role>().map_err(|e| errors.push(sentinel_jobs::FieldError::new("role", e.to_string()))).ok();
    let Some(role) = role.filter(|_| errors.is_empty()) else { return Err(Problem::invalid(errors)) };
    let hash = auth::hash_password(body.password.clone()).await?;
    let access = spine.db().access();
    match access.create_user(principal.org_id, &email, &hash, role).await {
        Ok(user) => Ok(HttpResponse::Created().json(user)),
        Err(DbError::Duplicate) => {
            // Only reveal the conflicting id when it belongs to the caller's organization.
            let existing = access.user_by_email(&email).await?.filter(|u| u.org_id == principal.org_id);
            Err(match existing {
                Some(u) => Problem::conflict_with("a user with this email exists", u.id),
                None => Problem::invalid_field("email", "is not available"),
            })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[schema(schema_with = doc::role_or_null)]
    pub role: Option<String>,
    pub disabled: Option<bool>,
}

fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found(&format!("{what} {raw:?}")))
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "users",
    summary = "Change a user's role or disable them",
    params(("id" = uuid::Uuid, Path, description = "User id (UUID)")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "Updated", body = Value),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn update_user(
    principal: Principal,
    spine: web::Data<Spine>,
    credentials: web::Data<CredentialCache>,
    path: web::Path<String>,
    body: web::Json<UpdateUserBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let id = parse_uuid(&path, "user")?;
    let role = match &body.role {
        Some(r) => Some(r.parse::<Role>().map_err(|e| Problem::invalid_field("role", e.to_string()))?),
        None => None,
    };
    let access = spine.db().access();
    let current =
        access.user_in_org(principal.org_id, id).await?.ok_or_else(|| Problem::not_found(&format!("user {id}")))?;
    let demotes_admin =
        current.role == Role::Admin && (role.is_some_and(|r| r != Role::Admin) || body.disabled == Some(true));
    if demotes_admin && access.admin_count(principal.org_id).await? <= 1 {
        return Err(Problem::conflict_with("an organization must keep at least one enabled admin", id));
    }
    let updated = access.update_user(principal.org_id, id, role, body.disabled).await;
    // Cached credentials must not outlive a change to them (other replicas: within the cache TTL).
    credentials.clear();
    let user = updated?.ok_or_else(|| Problem::not_found(&format!("user {id}")))?;
    Ok(HttpResponse::Ok().json(user))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "users",
    summary = "Delete a user",
    params(("id" = uuid::Uuid, Path, description = "User id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn delete_user(
    principal: Principal,
    spine: web::Data<Spine>,
    credentials: web::Data<CredentialCache>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let id = parse_uuid(&path, "user")?;
    let access = spine.db().access();
    let current =
        access.user_in_org(principal.org_id, id).await?.ok_or_else(|| Problem::not_found(&format!("user {id}")))?;
    if current.role == Role::Admin && access.admin_count(principal.org_id).await? <= 1 {
        return Err(Problem::conflict_with("an organization must keep at least one enabled admin", id));
    }
    access.delete_user(principal.org_id, id).await?;
    credentials.clear();
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api keys",
    summary = "List API keys (never their secrets)",
    responses(
        (status = 200, description = "Keys", body = Vec<Value>),
        doc::Guarded
    )
)]
pub(crate) async fn list_keys(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(spine.db().access().api_keys(principal.org_id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    #[schema(schema_with = doc::key_name)]
    pub name: String,
    /// Default `operator`.
    #[serde(default)]
    #[schema(schema_with = doc::role_or_null)]
    pub role: Option<String>,
    /// `full` (default) or `ingest`.
    #[serde(default)]
    #[schema(schema_with = doc::key_scope_or_null)]
    pub scope: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedKey {
    /// The secret: shown once, never again.
    key: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    api_key: ApiKey,
}

#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api keys",
    summary = "Create an API key (its secret is shown once)",
    request_body = NewKeyBody,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create_key(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<NewKeyBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let mut errors = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        errors.push(sentinel_jobs::FieldError::new("name", "must be 1 to 128 characters"));
    }
    let role = match body.role.as_deref() {
        None => Role::Operator,
        Some(r) => r.parse().unwrap_or_else(|e: sentinel_jobs::domain::ParseError| {
            errors.push(sentinel_jobs::FieldError::new("role", e.to_string()));
            Role::Viewer
        }),
    };
    let scope = match body.scope.as_deref() {
        None => KeyScope::Full,
        Some(s) => s.parse().unwrap_or_else(|e: sentinel_jobs::domain::ParseError| {
            errors.push(sentinel_jobs::FieldError::new("scope", e.to_string()));
            KeyScope::Full
        }),
    };
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let key = format!("{KEY_PREFIX}{}", auth::random_token());
    let api_key = spine
        .db()
        .access()
        .create_api_key(NewApiKey {
            org_id: principal.org_id,
            name,
            prefix: &key[..11],
            key_hash: &auth::token_hash(&key),
            role,
            scope,
            created_by: Some(principal.label()),
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedKey { key, api_key }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api keys",
    summary = "Revoke an API key",
    params(("id" = uuid::Uuid, Path, description = "API key id (UUID)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 409, description = "Conflicts with the resource's state", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn revoke_key(
    principal: Principal,
    spine: web::Data<Spine>,
    credentials: web::Data<CredentialCache>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let id = parse_uuid(&path, "API key")?;
    let keys = spine.db().access().api_keys(principal.org_id).await?;
    if keys.iter().any(|k| k.id == id && k.created_by.as_deref() == Some(CONFIGURED)) {
        return Err(Problem::conflict_with(
            "this key comes from http.api_token; remove it from the configuration instead",
            id,
        ));
    }
    let revoked = spine.db().access().revoke_api_key(principal.org_id, id).await?;
    credentials.clear();
    if revoked { Ok(HttpResponse::NoContent().finish()) } else { Err(Problem::not_found(&format!("API key {id}"))) }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// `next_cursor` of the previous page: entries older than this id.
    before: Option<i64>,
    #[serde(default = "default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

fn default_limit() -> u64 {
    doc::LIMIT_DEFAULT
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    #[schema(value_type = Vec<Object>)]
    items: Vec<AuditEntry>,
    next_cursor: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    summary = "Read the audit trail",
    params(AuditQuery),
    responses(
        (status = 200, description = "Entries, newest first", body = AuditPage),
        doc::Guarded, doc::Invalid
    )
)]
pub(crate) async fn audit(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    doc::check_limit(q.limit)?;
    let items = spine.db().access().audit(principal.org_id, q.before, q.limit).await?;
    let next_cursor = (items.len() as u64 == q.limit).then(|| items.last().map(|e| e.id)).flatten();
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}
