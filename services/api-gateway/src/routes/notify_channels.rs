//! `/api/v1/monitoring/channels`: notification channels — email (SMTP), Slack (incoming webhook)
//! and webhook (JSON, signed) — create, list, read, replace, delete, and `POST …/{id}/test`, which
//! sends a test message now and answers with what the receiver said. Credentials (the SMTP password,
//! the Slack URL, the webhook's signing secret) are sealed in the secret store and never returned; a
//! webhook created without a signing secret gets one, shown in that answer only.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::backups::SecretChange;
use sentinel_jobs::db::notify::ChannelRecord;
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::notify::{self as domain, ChannelConfig, ChannelKind, ChannelSpec, SmtpSecurity};
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::backup_shared::{field_errors, name_taken, path_id};
use super::monitor_targets::run_once_and_answer;
use super::resource;
use super::streams::EventHub;
use crate::Problem;
use crate::auth::{Principal, random_token};
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/channels").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/monitoring/channels/{id}")
            .route(web::get().to(get_channel))
            .route(web::put().to(replace))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/monitoring/channels/{id}/test").route(web::post().to(test)));
}

/// Body of `POST /api/v1/monitoring/channels` and `PUT /api/v1/monitoring/channels/{id}`: the fields
/// of the channel's `kind` (a field of another kind is refused).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `email`, `slack` or `webhook` (a replace keeps the kind).
    #[schema(schema_with = channel_kind)]
    pub kind: String,
    /// Inactive channels receive nothing (default true).
    #[serde(default)]
    pub is_active: Option<bool>,
    /// email: the SMTP relay's host name or address.
    #[serde(default)]
    #[schema(max_length = 253)]
    pub smtp_host: Option<String>,
    /// email: its port (default 587).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65535)]
    pub smtp_port: Option<u16>,
    /// email: `starttls` (default), `tls` (from the first byte, usually port 465) or `none`
    /// (loopback relays only).
    #[serde(default)]
    #[schema(schema_with = smtp_security)]
    pub security: Option<String>,
    /// email: the user to authenticate as (with `password`).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub username: Option<String>,
    /// email: the password (sealed, never returned; absent on a replace: kept).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub password: Option<String>,
    /// email: the sender address.
    #[serde(default)]
    #[schema(max_length = 254)]
    pub from: Option<String>,
    /// email: 1 to 50 recipient addresses.
    #[serde(default)]
    pub to: Option<Vec<String>>,
    /// slack: the incoming-webhook URL (a credential: sealed, never returned; absent on a replace:
    /// kept).
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub webhook_url: Option<String>,
    /// webhook: the `http://` or `https://` URL notifications are posted to.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// webhook: the HMAC-SHA256 key of the `X-Sentinel-Signature` header (16 to 4096 characters;
    /// generated and shown once when a webhook is created without one; absent on a replace: kept).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub signing_secret: Option<String>,
}

fn channel_kind() -> utoipa::openapi::Object {
    doc::one_of(["email", "slack", "webhook"])
}

fn smtp_security() -> utoipa::openapi::Object {
    doc::or_null(doc::one_of(["starttls", "tls", "none"]))
}

/// A channel as the API shows it (never its credential).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub is_active: bool,
    /// The kind's settings that are not secret (email: smtp_host, smtp_port, security, username,
    /// from, to; webhook: url; slack: none).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Whether a credential is stored (password, Slack URL or signing secret).
    pub has_secret: bool,
    /// Only when a webhook was created without one: the generated signing secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(c: ChannelRecord, signing_secret: Option<String>) -> ChannelView {
    let mut settings = serde_json::to_value(&c.spec.config).unwrap_or_default();
    if let Some(map) = settings.as_object_mut() {
        map.remove("kind");
    }
    ChannelView {
        id: c.id,
        name: c.spec.name,
        kind: c.spec.config.kind().as_str().to_owned(),
        is_active: c.spec.is_active,
        settings,
        has_secret: c.secret_id.is_some(),
        signing_secret,
        created_by: c.created_by,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// A checked body: the specification, the credential given (if any), and its field name.
struct Checked {
    spec: ChannelSpec,
    secret: Option<String>,
}

fn checked(body: Value, existing: Option<&ChannelRecord>) -> Result<Checked, Problem> {
    let b = doc::read_body::<ChannelBody>(body)?;
    let kind = ChannelKind::parse(&b.kind).map_err(|e| Problem::invalid_field("kind", e))?;
    let mut errors: Vec<FieldError> = Vec::new();
    if let Some(old) = existing
        && old.spec.config.kind() != kind
    {
        errors.push(FieldError::new("kind", format!("a channel keeps its kind ({})", old.spec.config.kind().as_str())));
    }
    let foreign: [(&str, bool, ChannelKind); 9] = [
        ("smtp_host", b.smtp_host.is_some(), ChannelKind::Email),
        ("smtp_port", b.smtp_port.is_some(), ChannelKind::Email),
        ("security", b.security.is_some(), ChannelKind::Email),
        ("username", b.username.is_some(), ChannelKind::Email),
        ("password", b.password.is_some(), ChannelKind::Email),
        ("from", b.from.is_some(), ChannelKind::Email),
        ("to", b.to.is_some(), ChannelKind::Email),
        ("webhook_url", b.webhook_url.is_some(), ChannelKind::Slack),
        ("url", b.url.is_some(), ChannelKind::Webhook),
    ];
    for (field, given, owner) in foreign {
        if given && owner != kind {
            errors.push(FieldError::new(field, format!("not a setting of a {} channel", kind.as_str())));
        }
    }
    if b.signing_secret.is_some() && kind != ChannelKind::Webhook {
        errors.push(FieldError::new("signing_secret", format!("not a setting of a {} channel", kind.as_str())));
    }
    let required = |field: &str, v: Option<String>, errors: &mut Vec<FieldError>| -> String {
        v.unwrap_or_else(|| {
            errors.push(FieldError::new(field, format!("required for a {} channel", kind.as_str())));
            String::new()
        })
    };
    let (config, secret) = match kind {
        ChannelKind::Email => {
            let security = match b.security.as_deref() {
                None | Some("starttls") => SmtpSecurity::Starttls,
                Some("tls") => SmtpSecurity::Tls,
                Some("none") => SmtpSecurity::None,
                Some(other) => {
                    errors.push(FieldError::new("security", format!("{other:?} is not starttls, tls or none")));
                    SmtpSecurity::Starttls
                }
            };
            let host = required("smtp_host", b.smtp_host, &mut errors);
            let from = required("from", b.from, &mut errors);
            let to = b.to.unwrap_or_else(|| {
                errors.push(FieldError::new("to", "required for an email channel"));
                Vec::new()
            });
            let config = ChannelConfig::Email {
                smtp_host: host.trim().to_owned(),
                smtp_port: b.smtp_port.unwrap_or(587),
                security,
                username: b.username,
                from,
                to,
            };
            (config, b.password)
        }
        ChannelKind::Slack => {
            if b.webhook_url.is_none() && existing.is_none() {
                errors.push(FieldError::new("webhook_url", "required for a slack channel"));
            }
            (ChannelConfig::Slack {}, b.webhook_url)
        }
        ChannelKind::Webhook => {
            (ChannelConfig::Webhook { url: required("url", b.url, &mut errors).trim().to_owned() }, b.signing_secret)
        }
    };
    let spec = ChannelSpec { name: b.name.trim().to_owned(), config, is_active: b.is_active.unwrap_or(true) };
    if errors.iter().all(|e| e.field != "kind") {
        errors.extend(field_errors(spec.check()));
    }
    if let Some(s) = &secret
        && let Err(reason) = domain::check_secret(kind, s)
    {
        errors.push(FieldError::new(kind.secret_field(), reason));
    }
    if errors.is_empty() { Ok(Checked { spec, secret }) } else { Err(Problem::invalid(errors)) }
}

/// Seals a credential for the store.
fn seal(spine: &Spine, secret: &str) -> Result<SecretChange, Problem> {
    let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
    let (id, sealed) = vault.seal_new(secret.as_bytes());
    Ok(SecretChange::Set((id, sealed.key_id, sealed.text)))
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/channels",
    tag = "monitoring",
    summary = "Add a notification channel (email, Slack or webhook)",
    request_body = ChannelBody,
    responses((status = 201, description = "Created", body = ChannelView), (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"), doc::Guarded, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let Checked { spec, secret } = checked(body.into_inner(), None)?;
    // A webhook is always signed: without a key given, one is made and shown once.
    let generated = (spec.config.kind() == ChannelKind::Webhook && secret.is_none()).then(random_token);
    let change = match secret.as_deref().or(generated.as_deref()) {
        Some(s) => seal(&spine, s)?,
        None => SecretChange::Keep,
    };
    let name = spec.name.clone();
    let rec = spine
        .db()
        .notify()
        .create_channel(principal.org_id, spec, change, &principal.label(), Utc::now())
        .await
        .map_err(|e| name_taken(e, "channel", &name))?;
    let location = format!("/api/v1/monitoring/channels/{}", rec.id);
    Ok(HttpResponse::Created().insert_header(("Location", location)).json(view(rec, generated)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelQuery {
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelPage {
    pub items: Vec<ChannelView>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/channels",
    tag = "monitoring",
    summary = "List notification channels",
    params(ChannelQuery),
    responses((status = 200, description = "A page of channels", body = ChannelPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ChannelQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().notify().channels(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |c| c.id);
    Ok(HttpResponse::Ok().json(ChannelPage { items: rows.into_iter().map(|c| view(c, None)).collect(), next_cursor }))
}

async fn channel_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<ChannelRecord, Problem> {
    let id = path_id(raw, "channel")?;
    spine
        .db()
        .notify()
        .channel(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("channel {raw:?}")))
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/channels/{id}",
    tag = "monitoring",
    summary = "Get a notification channel",
    params(("id" = uuid::Uuid, Path, description = "Channel id (UUID)")),
    responses((status = 200, description = "The channel", body = ChannelView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_channel(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(channel_of(&spine, &principal, &path).await?, None)))
}

#[utoipa::path(
    put,
    path = "/api/v1/monitoring/channels/{id}",
    tag = "monitoring",
    summary = "Replace a notification channel (its kind stays; a credential left out is kept)",
    params(("id" = uuid::Uuid, Path, description = "Channel id (UUID)")),
    request_body = ChannelBody,
    responses((status = 200, description = "Replaced", body = ChannelView), (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"), doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let old = channel_of(&spine, &principal, &path).await?;
    let Checked { spec, secret } = checked(body.into_inner(), Some(&old))?;
    let change = match secret {
        Some(s) => seal(&spine, &s)?,
        None => SecretChange::Keep,
    };
    let name = spec.name.clone();
    let rec =
        spine.db().notify().update_channel(&old, spec, change).await.map_err(|e| name_taken(e, "channel", &name))?;
    Ok(HttpResponse::Ok().json(view(rec, None)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/channels/{id}",
    tag = "monitoring",
    summary = "Delete a notification channel and its credential (its undelivered notifications are given up)",
    params(("id" = uuid::Uuid, Path, description = "Channel id (UUID)")),
    responses((status = 204, description = "Deleted"), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let rec = channel_of(&spine, &principal, &path).await?;
    spine.db().notify().delete_channel(principal.org_id, rec.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/api/v1/monitoring/channels/{id}/test",
    tag = "monitoring",
    summary = "Send a test message through a channel now and answer with the receiver's reply",
    params(("id" = uuid::Uuid, Path, description = "Channel id (UUID)")),
    responses(
        (status = 200, description = "What happened: `delivered`, the receiver's `status` and `answer`, or its `error` (also in the notification log)", body = Object),
        (status = 202, description = "Still sending after 30 s: the job to follow", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn test(
    principal: Principal,
    spine: web::Data<Spine>,
    hub: web::Data<EventHub>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let channel = channel_of(&spine, &principal, &path).await?;
    let payload = json!({ "channel_id": channel.id });
    run_once_and_answer(&spine, &hub, &principal, domain::TEST_CHANNEL_KIND, payload, Duration::from_secs(30)).await
}
