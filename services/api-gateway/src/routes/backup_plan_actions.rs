//! What an operator does to a plan besides editing it: run it now (with optional overrides of the
//! type and the compression, answered at once with the job), apply its retention (`?dry_run=true`
//! shows what would go), and delete it — saying what happens to its backups.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use sentinel_jobs::Spine;
use sentinel_jobs::db::backups::JournalRecord;
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::backups::{self as domain, BackupType, Snapshot, plan_retention};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::backup_plans::{compression_of, plan_of};
use super::backup_shared::{accepted_job, backup_retry};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// Body of `POST /api/v1/backups/plans/{id}/run` (every field optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Overrides the plan's type for this run.
    #[serde(default, rename = "type")]
    pub backup_type: Option<String>,
    /// Overrides the plan's compression for this run: `{"format": "gzip", "level": 6}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub compression: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/plans/{id}/run",
    tag = "backups",
    summary = "Run a plan now (optionally another type or compression); answers at once with the job",
    params(("id" = uuid::Uuid, Path, description = "Plan id (UUID)")),
    request_body(content = Option<RunBody>, description = "Optional overrides"),
    responses(
        (status = 202, description = "The backup job; its journal entry appears when it starts", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn run(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: Option<web::Json<RunBody>>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let plan = plan_of(&spine, &principal, &path).await?;
    let b = body.map(web::Json::into_inner).unwrap_or_default();
    let mut errors = Vec::new();
    let mut payload = json!({ "plan_id": plan.id });
    if let Some(raw) = &b.backup_type {
        match BackupType::parse(raw) {
            Ok(t) => {
                let target = spine.db().backups().target(principal.org_id, plan.target_id).await?;
                if let Some(Err(why)) = target.map(|t2| t2.engine.supports(t)) {
                    errors.push(sentinel_jobs::FieldError::new("type", why));
                }
                payload["type"] = json!(t);
            }
            Err(e) => errors.push(sentinel_jobs::FieldError::new("type", e)),
        }
    }
    if b.compression.is_some() {
        let c = compression_of(b.compression.as_ref(), &mut errors);
        payload["compression"] = json!(c);
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    accepted_job(&spine, &principal, domain::RUN_KIND, payload, Some(backup_retry())).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PruneQuery {
    /// Only report what the rules would delete.
    #[serde(default)]
    dry_run: bool,
}

/// What retention decides for each backup that holds an artifact.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrunePreview {
    pub dry_run: bool,
    /// Newest first: `{id, keep, reasons}`; a backup is kept for every reason listed.
    #[schema(value_type = Vec<Object>)]
    pub verdicts: Value,
    pub would_prune: Vec<Uuid>,
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/plans/{id}/prune",
    tag = "backups",
    summary = "Apply the plan's retention now (by start time, never deleting the newest successful or verified backup); ?dry_run=true only reports",
    params(("id" = uuid::Uuid, Path, description = "Plan id (UUID)"), PruneQuery),
    responses(
        (status = 200, description = "Dry run: what would go", body = PrunePreview),
        (status = 202, description = "The prune job", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn prune(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<PruneQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(if q.dry_run { Role::Viewer } else { Role::Operator })?;
    let plan = plan_of(&spine, &principal, &path).await?;
    if !q.dry_run {
        return accepted_job(&spine, &principal, domain::PRUNE_KIND, json!({ "plan_id": plan.id }), None).await;
    }
    let live = spine.db().backups().live_backups_of_plan(plan.id).await?;
    let snapshots: Vec<Snapshot> = live.iter().map(JournalRecord::snapshot).collect();
    let verdicts = plan_retention(&plan.retention, &snapshots, Utc::now());
    let would_prune = verdicts.iter().filter(|v| !v.keep).map(|v| v.id).collect();
    Ok(HttpResponse::Ok().json(PrunePreview { dry_run: true, verdicts: json!(verdicts), would_prune }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    /// Required: `keep` leaves the plan's backups (and the keys that open them) in place, still
    /// listed in the journal and restorable; `delete` deletes their artifacts with a job.
    #[param(schema_with = backups_choice)]
    backups: Option<String>,
}

fn backups_choice() -> utoipa::openapi::schema::Object {
    doc::one_of(["keep", "delete"])
}

#[utoipa::path(
    delete,
    path = "/api/v1/backups/plans/{id}",
    tag = "backups",
    summary = "Delete a plan and its schedule; ?backups=keep|delete says what happens to its backups",
    params(("id" = uuid::Uuid, Path, description = "Plan id (UUID)"), DeleteQuery),
    responses(
        (status = 204, description = "Deleted; its backups are kept"),
        (status = 202, description = "Deleted; the job deleting its backups' artifacts", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::NotFound, doc::Invalid
    )
)]
pub(crate) async fn delete(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    q: web::Query<DeleteQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let plan = plan_of(&spine, &principal, &path).await?;
    let keep = match q.backups.as_deref() {
        Some("keep") => true,
        Some("delete") => false,
        _ => {
            return Err(Problem::invalid_field(
                "backups",
                "say what happens to the plan's backups: backups=keep (they stay restorable) or backups=delete",
            ));
        }
    };
    let store = spine.db().backups();
    let doomed: Vec<Uuid> =
        if keep { Vec::new() } else { store.live_backups_of_plan(plan.id).await?.iter().map(|e| e.id).collect() };
    store.delete_plan(&plan, keep).await?;
    if keep || doomed.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    accepted_job(&spine, &principal, domain::PRUNE_KIND, json!({ "journal_ids": doomed }), None).await
}
