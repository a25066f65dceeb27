//! `/api/v1/servers`: the inventory's servers — list with filters, create, read, edit (status changes
//! checked against the lifecycle), delete, and each server's history.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::inventory::{DeleteRefusal, ServerDraft, ServerFilter, ServerRecord};
use sentinel_jobs::domain::inventory::{
    self as inv, DEFAULT_SSH_PORT, DEFAULT_SSH_USER, HostKey, LabelSelector, Labels, LeaseKind, ServerStatus,
};
use sentinel_jobs::domain::{JobId, Role};
use sentinel_jobs::{FieldError, db::DbError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc::{self, inventory as idoc};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/servers").route(web::get().to(list)).route(web::post().to(create)));
    // Before `/servers/{id}`, which would otherwise take these paths.
    cfg.service(resource("/servers/import").route(web::post().to(super::server_import::import)));
    cfg.service(resource("/servers/reserve").route(web::post().to(super::reservations::reserve)));
    cfg.service(
        resource("/servers/{id}")
            .route(web::get().to(get_server))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
    cfg.service(resource("/servers/{id}/release").route(web::post().to(super::reservations::release)));
    cfg.service(resource("/servers/{id}/history").route(web::get().to(super::server_history::history)));
}

/// A pinned host key with its fingerprint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostKeyView {
    /// `algorithm base64`, as written to known_hosts.
    pub key: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// The lease holding a server.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    pub id: Uuid,
    /// `reservation` or `run`.
    #[schema(value_type = String, example = "reservation")]
    pub kind: LeaseKind,
    /// Who holds it.
    pub holder: String,
    pub purpose: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub job_id: Option<JobId>,
    /// When a reservation goes back by itself.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A server as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerView {
    pub id: Uuid,
    pub provider_ref: String,
    pub name: String,
    pub ip: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    pub region: String,
    #[schema(value_type = Object)]
    pub labels: Labels,
    pub notes: String,
    #[schema(value_type = String, example = "available")]
    pub status: ServerStatus,
    /// Why the server is in `error`: the reason of the run that put it there (failed, unreachable,
    /// host_key_changed, host_key_unknown, timeout, interrupted).
    pub status_reason: Option<String>,
    pub last_action_at: Option<DateTime<Utc>>,
    pub host_keys: Vec<HostKeyView>,
    /// Whether the first contact may pin the host key it sees (only while none is pinned).
    pub accept_new_host_key: bool,
    pub ssh_credential_id: Option<Uuid>,
    pub lease: Option<LeaseView>,
    /// Incremented by every change.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ServerRecord> for ServerView {
    fn from(s: ServerRecord) -> Self {
        let host_keys = s
            .host_keys
            .iter()
            .map(|k| HostKeyView {
                fingerprint: HostKey::parse(k).map(|h| h.fingerprint()).unwrap_or_default(),
                key: k.clone(),
            })
            .collect();
        Self {
            id: s.id,
            provider_ref: s.provider_ref,
            name: s.name,
            ip: s.ip,
            ssh_port: s.ssh_port,
            ssh_user: s.ssh_user,
            region: s.region,
            labels: s.labels,
            notes: s.notes,
            status: s.status,
            status_reason: s.status_reason,
            last_action_at: s.last_action_at,
            host_keys,
            accept_new_host_key: s.accept_new_host_key,
            ssh_credential_id: s.ssh_credential_id,
            lease: s.lease.map(|l| LeaseView {
                id: l.id,
                kind: l.kind,
                holder: l.holder,
                purpose: l.purpose,
                job_id: l.job_id,
                expires_at: l.expires_at,
            }),
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Body of `POST /api/v1/servers`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerBody {
    #[schema(schema_with = idoc::provider_ref)]
    pub provider_ref: String,
    #[schema(schema_with = idoc::ip)]
    pub ip: String,
    /// Default: the `provider_ref`.
    #[serde(default)]
    #[schema(schema_with = idoc::server_name_or_null)]
    pub name: Option<String>,
    /// Default 22.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 65535)]
    pub ssh_port: Option<u16>,
    #[serde(default)]
    #[schema(schema_with = idoc::ssh_user_or_null)]
    pub ssh_user: Option<String>,
    #[serde(default)]
    #[schema(schema_with = idoc::region_or_null)]
    pub region: Option<String>,
    #[serde(default)]
    #[schema(schema_with = idoc::labels_or_null)]
    pub labels: Option<Labels>,
    #[serde(default)]
    #[schema(schema_with = idoc::notes_or_null)]
    pub notes: Option<String>,
    #[serde(default)]
    #[schema(schema_with = idoc::host_keys_or_null)]
    pub host_keys: Option<Vec<String>>,
    /// Let the first contact pin the host key it sees (default false: an unknown key is refused).
    #[serde(default)]
    pub accept_new_host_key: Option<bool>,
    /// The SSH key runs log in with (`/api/v1/provisioning/ssh-keys`); default: the organization's
    /// default key.
    #[serde(default)]
    pub ssh_credential_id: Option<Uuid>,
}

/// Body of `PATCH /api/v1/servers/{id}`: only the fields to change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerPatch {
    #[schema(schema_with = idoc::provider_ref_or_null)]
    pub provider_ref: Option<String>,
    #[schema(schema_with = idoc::ip_or_null)]
    pub ip: Option<String>,
    #[schema(schema_with = idoc::server_name_or_null)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 65535)]
    pub ssh_port: Option<u16>,
    #[schema(schema_with = idoc::ssh_user_or_null)]
    pub ssh_user: Option<String>,
    #[schema(schema_with = idoc::region_or_null)]
    pub region: Option<String>,
    /// Replaces every label.
    #[schema(schema_with = idoc::labels_or_null)]
    pub labels: Option<Labels>,
    #[schema(schema_with = idoc::notes_or_null)]
    pub notes: Option<String>,
    /// `available`, `configured`, `error` or `retired`, along the lifecycle (an illegal change is a
    /// 409 naming the current status). Setting a reserved server's status ends its reservation.
    /// `reserved` and `provisioning` are set by reservations and runs only.
    #[schema(schema_with = idoc::settable_status_or_null)]
    pub status: Option<String>,
    #[schema(schema_with = idoc::host_keys_or_null)]
    pub host_keys: Option<Vec<String>>,
    pub accept_new_host_key: Option<bool>,
    /// The SSH key runs log in with; `null` falls back to the organization's default key.
    #[serde(default, deserialize_with = "doc::double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub ssh_credential_id: Option<Option<Uuid>>,
}

/// 422 unless `id` names an SSH key of the caller's organization.
async fn check_credential(spine: &Spine, principal: &Principal, id: Option<Uuid>) -> Result<(), Problem> {
    match id {
        Some(id) if spine.db().credentials().get(principal.org_id, id).await?.is_none() => {
            Err(Problem::invalid_field("ssh_credential_id", format!("no SSH key {id} in your organization")))
        }
        _ => Ok(()),
    }
}

fn check<T>(errors: &mut Vec<FieldError>, field: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|reason| errors.push(FieldError::new(field, reason))).ok()
}

fn host_keys(errors: &mut Vec<FieldError>, keys: &[String]) -> Vec<String> {
    if keys.len() > 8 {
        errors.push(FieldError::new("host_keys", "at most 8 keys"));
    }
    let mut lines = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match HostKey::parse(k) {
            Ok(key) if !lines.contains(&key.line()) => lines.push(key.line()),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(format!("host_keys[{i}]"), e.to_string())),
        }
    }
    lines
}

/// The server if it belongs to the caller's organization; 404 otherwise (malformed ids included).
pub(crate) async fn server_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<ServerRecord, Problem> {
    let not_found = || Problem::not_found(&format!("server {raw:?}"));
    let id: Uuid = raw.parse().map_err(|_| not_found())?;
    spine.db().inventory().get_server(principal.org_id, id).await?.ok_or_else(not_found)
}

fn duplicate_ref(e: DbError, provider_ref: &str) -> Problem {
    match e {
        DbError::Duplicate => Problem::conflict(format!("a server with provider_ref {provider_ref:?} already exists")),
        other => other.into(),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/servers",
    tag = "inventory",
    summary = "Add one server to the inventory (status `available`)",
    request_body = ServerBody,
    responses(
        (status = 201, description = "Created", body = ServerView),
        (status = 409, description = "The provider_ref is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<ServerBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let mut errors = Vec::new();
    check(&mut errors, "provider_ref", inv::check_provider_ref(&b.provider_ref));
    let ip = check(&mut errors, "ip", inv::parse_ip(&b.ip)).unwrap_or_default();
    let name = b.name.unwrap_or_else(|| b.provider_ref.clone());
    check(&mut errors, "name", inv::check_server_name(&name));
    let ssh_user = b.ssh_user.unwrap_or_else(|| DEFAULT_SSH_USER.to_owned());
    check(&mut errors, "ssh_user", inv::check_ssh_user(&ssh_user));
    let ssh_port = check(&mut errors, "ssh_port", inv::check_ssh_port(b.ssh_port.unwrap_or(DEFAULT_SSH_PORT).into()));
    let region = b.region.unwrap_or_default();
    check(&mut errors, "region", inv::check_region(&region));
    let labels = b.labels.unwrap_or_default();
    check(&mut errors, "labels", inv::check_labels(&labels));
    let notes = b.notes.unwrap_or_default();
    check(&mut errors, "notes", inv::check_notes(&notes));
    let host_keys = host_keys(&mut errors, b.host_keys.as_deref().unwrap_or_default());
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    check_credential(&spine, &principal, b.ssh_credential_id).await?;
    let draft = ServerDraft {
        provider_ref: b.provider_ref.clone(),
        name,
        ip,
        ssh_port: ssh_port.unwrap_or(DEFAULT_SSH_PORT),
        ssh_user,
        region,
        labels,
        notes,
        host_keys,
        accept_new_host_key: b.accept_new_host_key.unwrap_or(false),
        ssh_credential_id: b.ssh_credential_id,
    };
    let rec = spine
        .db()
        .inventory()
        .create_server(principal.org_id, draft, &principal.label())
        .await
        .map_err(|e| duplicate_ref(e, &b.provider_ref))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/servers/{}", rec.id)))
        .json(ServerView::from(rec)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[param(schema_with = idoc::server_status)]
    status: Option<String>,
    #[param(schema_with = idoc::selector)]
    selector: Option<String>,
    #[param(schema_with = idoc::region)]
    region: Option<String>,
    /// Free text: a case-insensitive substring of the name, IP or provider_ref (at most 256 characters).
    #[param(max_length = 256)]
    q: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerPage {
    pub items: Vec<ServerView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/servers",
    tag = "inventory",
    summary = "List servers, oldest first, filtered by status, labels, region and free text",
    params(ListQuery),
    responses((status = 200, description = "A page of servers", body = ServerPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let q = q.into_inner();
    let mut errors = Vec::new();
    let status = q.status.as_deref().and_then(|s| {
        check(&mut errors, "status", s.parse().map_err(|e: sentinel_jobs::domain::ParseError| e.to_string()))
    });
    let selector = q
        .selector
        .as_deref()
        .map_or(Some(LabelSelector::default()), |s| check(&mut errors, "selector", LabelSelector::parse(s)));
    if let Some(region) = &q.region {
        check(&mut errors, "region", inv::check_region(region));
    }
    if q.q.as_ref().is_some_and(|t| t.chars().count() > 256) {
        errors.push(FieldError::new("q", "at most 256 characters"));
    }
    let cursor = q.cursor.as_deref().and_then(|c| {
        check(&mut errors, "cursor", c.parse::<Uuid>().map_err(|_| "not a cursor from a previous page".to_owned()))
    });
    errors.extend(doc::limit_error(q.limit));
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let filter = ServerFilter { status, selector: selector.unwrap_or_default(), region: q.region, text: q.q };
    let rows = spine.db().inventory().list_servers(principal.org_id, &filter, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |s| s.id);
    Ok(HttpResponse::Ok().json(ServerPage { items: rows.into_iter().map(ServerView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/servers/{id}",
    tag = "inventory",
    summary = "Get a server",
    params(("id" = uuid::Uuid, Path, description = "Server id (UUID)")),
    responses((status = 200, description = "The server", body = ServerView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_server(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(ServerView::from(server_of(&spine, &principal, &path).await?)))
}

/// Applies a patch to `old`: the new record, or every invalid field (422) or the refused status change (409).
fn patched(old: &ServerRecord, p: ServerPatch) -> Result<ServerRecord, Problem> {
    let mut errors = Vec::new();
    let mut new = old.clone();
    if let Some(v) = p.provider_ref {
        check(&mut errors, "provider_ref", inv::check_provider_ref(&v));
        new.provider_ref = v;
    }
    if let Some(v) = p.ip {
        new.ip = check(&mut errors, "ip", inv::parse_ip(&v)).unwrap_or_default();
    }
    if let Some(v) = p.name {
        check(&mut errors, "name", inv::check_server_name(&v));
        new.name = v;
    }
    if let Some(v) = p.ssh_port {
        new.ssh_port = check(&mut errors, "ssh_port", inv::check_ssh_port(v.into())).unwrap_or(new.ssh_port);
    }
    if let Some(v) = p.ssh_user {
        check(&mut errors, "ssh_user", inv::check_ssh_user(&v));
        new.ssh_user = v;
    }
    if let Some(v) = p.region {
        check(&mut errors, "region", inv::check_region(&v));
        new.region = v;
    }
    if let Some(v) = p.labels {
        check(&mut errors, "labels", inv::check_labels(&v));
        new.labels = v;
    }
    if let Some(v) = p.notes {
        check(&mut errors, "notes", inv::check_notes(&v));
        new.notes = v;
    }
    if let Some(keys) = p.host_keys {
        new.host_keys = host_keys(&mut errors, &keys);
    }
    if let Some(v) = p.accept_new_host_key {
        new.accept_new_host_key = v;
    }
    if let Some(v) = p.ssh_credential_id {
        new.ssh_credential_id = v;
    }
    let status = match p.status.as_deref().map(str::parse::<ServerStatus>) {
        None => None,
        Some(Err(e)) => {
            errors.push(FieldError::new("status", e.to_string()));
            None
        }
        Some(Ok(s)) if s.is_system_managed() => {
            errors.push(FieldError::new(
                "status",
                format!("{s} is set by reservations (POST /api/v1/servers/reserve) and provisioning runs only"),
            ));
            None
        }
        Some(Ok(s)) => Some(s),
    };
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    if let Some(next) = status.filter(|s| *s != old.status) {
        if old.lease.as_ref().is_some_and(|l| l.kind == LeaseKind::Run) {
            return Err(Problem::conflict(format!(
                "server {} is held by a provisioning run (status {}); its status changes when the run ends",
                old.id, old.status
            )));
        }
        old.status
            .transition(next)
            .map_err(|e| Problem::conflict(format!("{e}: the server's current status is {}", old.status)))?;
        new.status = next;
        new.status_reason = None;
        // Setting a reserved server's status (e.g. `configured` after the deployment) ends the reservation.
        new.lease = None;
        new.status_before_lease = None;
    }
    Ok(new)
}

#[utoipa::path(
    patch,
    path = "/api/v1/servers/{id}",
    tag = "inventory",
    summary = "Change some fields of a server, or its status along the lifecycle",
    params(("id" = uuid::Uuid, Path, description = "Server id (UUID)")),
    request_body = ServerPatch,
    responses(
        (status = 200, description = "Changed", body = ServerView),
        (status = 409, description = "An illegal status change (the current status is named), a taken provider_ref, a server held by a run, or a concurrent change", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn patch(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<ServerPatch>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = server_of(&spine, &principal, &path).await?;
    let body = body.into_inner();
    check_credential(&spine, &principal, body.ssh_credential_id.flatten()).await?;
    let new = patched(&old, body)?;
    if new == old {
        return Ok(HttpResponse::Ok().json(ServerView::from(old)));
    }
    let action = if new.status != old.status { "status" } else { "edit" };
    let provider_ref = new.provider_ref.clone();
    let saved = spine
        .db()
        .inventory()
        .save_server(&old, new, &principal.label(), action, None)
        .await
        .map_err(|e| duplicate_ref(e, &provider_ref))?;
    Ok(HttpResponse::Ok().json(ServerView::from(saved)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/servers/{id}",
    tag = "inventory",
    summary = "Remove a server from the inventory (with its history)",
    params(("id" = uuid::Uuid, Path, description = "Server id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Reserved or held by a run: release it first", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let rec = server_of(&spine, &principal, &path).await?;
    match spine.db().inventory().delete_server(principal.org_id, rec.id).await? {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(DeleteRefusal::NotFound) => Err(Problem::not_found(&format!("server {}", rec.id))),
        Err(DeleteRefusal::Held(status)) => Err(Problem::conflict(format!(
            "server {} is {status}: release its reservation or wait for its run before deleting it",
            rec.id
        ))),
    }
}
