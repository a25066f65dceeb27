//! `/api/v1/backups/journal`: every backup and restore attempt — start, end, duration, status,
//! sizes, checksums, format, tool and server versions, where each copy went, and the message —
//! listed newest first with filters and a cursor, and read one by one; a backup is verified on demand
//! (restored into a scratch database and compared with the snapshot it was dumped from).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::backups::{JournalFilter, JournalRecord};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::backups::{self as domain, JournalKind, JournalStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::{accepted_job, backup_retry, path_id};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/backups/journal").route(web::get().to(list)));
    cfg.service(resource("/backups/journal/{id}").route(web::get().to(get_entry)));
    cfg.service(resource("/backups/journal/{id}/verify").route(web::post().to(verify)));
}

/// One journal entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JournalView {
    pub id: Uuid,
    /// `backup` or `restore`.
    pub kind: String,
    /// `running`, `succeeded`, `incomplete` (stored, but the dump lacks objects the database holds:
    /// see `message`), `failed`, `interrupted` or `pruned`.
    pub status: String,
    pub plan_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub attempt: u32,
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    pub compression: Option<String>,
    pub encryption: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<f64>,
    pub plain_bytes: Option<u64>,
    pub stored_bytes: Option<u64>,
    pub plain_sha256: Option<String>,
    pub stored_sha256: Option<String>,
    pub tool_version: Option<String>,
    pub server_version: Option<String>,
    /// One per destination and database: `{destination_id, database, key, location, state, …}`.
    #[schema(value_type = Vec<Object>)]
    pub copies: Value,
    /// What a restore read.
    #[schema(value_type = Option<Object>)]
    pub source: Option<Value>,
    pub verified: bool,
    /// `verified`, `verification_failed` or `not_verified`: the latest verification's outcome.
    pub verification: String,
    /// The first table that differed, or why the backup could not be verified.
    pub verification_message: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    /// How long the verification's restore took (the plan's measured RTO).
    pub rto_seconds: Option<f64>,
    /// How many tables' statistics the backup recorded in its dump's snapshot (what a
    /// verification compares); 0: none, so it cannot be verified.
    pub tables_recorded: usize,
    pub message: Option<String>,
    pub requested_by: Option<String>,
}

impl From<JournalRecord> for JournalView {
    fn from(e: JournalRecord) -> Self {
        Self {
            duration_secs: e.duration_secs(),
            id: e.id,
            kind: e.kind.as_str().to_owned(),
            status: e.status.as_str().to_owned(),
            plan_id: e.plan_id,
            target_id: e.target_id,
            job_id: e.job_id,
            attempt: e.attempt,
            backup_type: e.backup_type.map(|t| t.as_str().to_owned()),
            compression: e.compression,
            encryption: e.encryption,
            started_at: e.started_at,
            finished_at: e.finished_at,
            plain_bytes: e.plain_bytes,
            stored_bytes: e.stored_bytes,
            plain_sha256: e.plain_sha256,
            stored_sha256: e.stored_sha256,
            tool_version: e.tool_version,
            server_version: e.server_version,
            copies: serde_json::to_value(&e.copies).unwrap_or(Value::Null),
            source: e.source,
            verified: e.verified,
            verification: e.verification.as_str().to_owned(),
            verification_message: e.verification_message,
            verified_at: e.verified_at,
            rto_seconds: e.rto_seconds,
            tables_recorded: e.table_stats.values().map(Vec::len).sum(),
            message: e.message,
            requested_by: e.requested_by,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct JournalQuery {
    #[param(value_type = Option<Uuid>)]
    plan_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    target_id: Option<String>,
    /// `running`, `succeeded`, `incomplete`, `failed`, `interrupted` or `pruned`.
    #[param(schema_with = status_filter)]
    status: Option<String>,
    /// `backup` or `restore`.
    #[param(schema_with = kind_filter)]
    kind: Option<String>,
    /// Entries started at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Entries started before (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

fn status_filter() -> utoipa::openapi::schema::Object {
    doc::one_of(JournalStatus::ALL.iter().map(|s| s.as_str()))
}

fn kind_filter() -> utoipa::openapi::schema::Object {
    doc::one_of(JournalKind::ALL.iter().map(|k| k.as_str()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JournalPage {
    pub items: Vec<JournalView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/journal",
    tag = "backups",
    summary = "List the journal of backups and restores, newest first",
    params(JournalQuery),
    responses((status = 200, description = "A page of entries", body = JournalPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<JournalQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let id = |field: &str, raw: &Option<String>| -> Result<Option<Uuid>, Problem> {
        raw.as_deref().map(|r| r.parse().map_err(|_| Problem::invalid_field(field, "not a UUID"))).transpose()
    };
    let filter = JournalFilter {
        plan_id: id("plan_id", &q.plan_id)?,
        target_id: id("target_id", &q.target_id)?,
        status: q
            .status
            .as_deref()
            .map(JournalStatus::parse)
            .transpose()
            .map_err(|e| Problem::invalid_field("status", e))?,
        kind: q.kind.as_deref().map(JournalKind::parse).transpose().map_err(|e| Problem::invalid_field("kind", e))?,
        since: q.since,
        until: q.until,
    };
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().backups().journal(principal.org_id, &filter, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |e| e.id);
    Ok(HttpResponse::Ok().json(JournalPage { items: rows.into_iter().map(JournalView::from).collect(), next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/journal/{id}",
    tag = "backups",
    summary = "Get one journal entry",
    params(("id" = uuid::Uuid, Path, description = "Journal entry id (UUID)")),
    responses((status = 200, description = "The entry", body = JournalView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_entry(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let entry = entry_of(&spine, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(JournalView::from(entry)))
}

/// The caller's organization's entry named by the path, or 404.
async fn entry_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<JournalRecord, Problem> {
    let id = path_id(raw, "journal entry")?;
    spine
        .db()
        .backups()
        .journal_entry(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("journal entry {raw:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/journal/{id}/verify",
    tag = "backups",
    summary = "Verify a backup now: restore it into a scratch database and compare every table with the snapshot it was dumped from",
    params(("id" = uuid::Uuid, Path, description = "Journal entry id (UUID) of a succeeded backup")),
    responses(
        (status = 202, description = "The verification job; the entry's `verification` shows its outcome", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn verify(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let entry = entry_of(&spine, &principal, &path).await?;
    if entry.kind != JournalKind::Backup || !entry.status.holds_artifact() {
        return Err(Problem::invalid_field(
            "id",
            format!("a {} that {} cannot be verified: only a succeeded backup", entry.kind, entry.status),
        ));
    }
    if entry.table_stats.is_empty() {
        return Err(Problem::invalid_field(
            "id",
            "this backup recorded no table statistics in its dump's snapshot (its plan had no verify_every when it \
             ran, or its engine is not verified yet): there is nothing to compare a restore with",
        ));
    }
    accepted_job(
        &spine,
        &principal,
        domain::VERIFY_KIND,
        serde_json::json!({"entry_id": entry.id}),
        Some(backup_retry()),
    )
    .await
}
