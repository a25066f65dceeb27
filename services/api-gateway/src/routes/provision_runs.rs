//! `GET /api/v1/provisioning/runs` and `GET /api/v1/provisioning/runs/{id}`: provisioning runs with
//! what each ran exactly (playbook hash, config version, inventory snapshot, ansible-core version,
//! extra-variable names) and its per-host results. Creating runs is `provision_run_create`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::provisioning::{HostSnapshot, RunFilter, RunHostRecord, RunRecord};
use sentinel_jobs::domain::provisioning::{HostCounts, HostStatus, RunState};
use sentinel_jobs::domain::{JobId, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{provision_run_create, resource};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/provisioning/runs").route(web::post().to(provision_run_create::create)).route(web::get().to(list)),
    );
    cfg.service(resource("/provisioning/runs/{id}").route(web::get().to(get_run)));
    cfg.service(
        resource("/provisioning/runs/{id}/retry-failed").route(web::post().to(provision_run_create::retry_failed)),
    );
    cfg.service(resource("/provisioning/runs/{id}/apply").route(web::post().to(provision_run_create::apply)));
}

/// One host of a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunHostView {
    pub server_id: Uuid,
    /// The name ansible reported it under.
    pub host: String,
    #[schema(value_type = String, example = "changed")]
    pub status: HostStatus,
    /// Why it failed: failed, unreachable, host_key_changed, host_key_unknown, timeout, interrupted, cancelled.
    pub reason: Option<String>,
    /// ansible's recap counters for the host.
    #[schema(value_type = Option<Object>)]
    pub counts: Option<HostCounts>,
    /// The `--diff` output of a check run.
    pub diff: Option<String>,
}

impl From<RunHostRecord> for RunHostView {
    fn from(h: RunHostRecord) -> Self {
        Self {
            server_id: h.server_id,
            host: h.host,
            status: h.status,
            reason: h.reason,
            counts: h.counts,
            diff: h.diff,
        }
    }
}

/// One host as the run saw it when it was created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InventoryEntryView {
    pub server_id: Uuid,
    pub host: String,
    pub ip: String,
    pub ssh_port: u16,
    pub ssh_user: String,
}

impl From<HostSnapshot> for InventoryEntryView {
    fn from(h: HostSnapshot) -> Self {
        Self { server_id: h.server_id, host: h.host, ip: h.ip, ssh_port: h.ssh_port, ssh_user: h.ssh_user }
    }
}

/// A provisioning run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: Uuid,
    /// Follow it at `/api/v1/jobs/{job_id}/stream` (SSE) or `/api/v1/jobs/{job_id}/log`; cancel it with
    /// `POST /api/v1/jobs/{job_id}/cancel`.
    #[schema(value_type = String, format = "uuid")]
    pub job_id: JobId,
    #[schema(value_type = String, example = "running")]
    pub state: RunState,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// While `waiting`: how many earlier runs hold or wait for one of its servers.
    pub queue_position: Option<u32>,
    pub playbook: String,
    /// SHA-256 of the playbook file that was (or will be) run.
    pub playbook_hash: String,
    /// `--check --diff`: nothing is changed; `POST …/apply` runs the identical bundle for real.
    pub check: bool,
    pub config_id: Option<Uuid>,
    pub config_version: Option<i64>,
    /// Names of the extra variables (values are never shown).
    pub extra_var_names: Vec<String>,
    pub inventory: Vec<InventoryEntryView>,
    /// ansible-core's version, once a worker started the run.
    pub ansible_version: Option<String>,
    pub timeout_seconds: u64,
    /// The run whose failed hosts this one retries.
    pub retry_of: Option<Uuid>,
    /// The check run whose bundle this one applies.
    pub applies_run: Option<Uuid>,
    /// The reservation this run is for.
    pub reservation_id: Option<Uuid>,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub hosts: Vec<RunHostView>,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        Self {
            id: r.id,
            job_id: r.job_id,
            state: r.state,
            reason: r.reason,
            queue_position: r.queue_position,
            playbook: r.playbook,
            playbook_hash: r.playbook_hash,
            check: r.check_mode,
            config_id: r.config_id,
            config_version: r.config_version,
            extra_var_names: r.extra_var_names,
            inventory: r.inventory.into_iter().map(InventoryEntryView::from).collect(),
            ansible_version: r.ansible_version,
            timeout_seconds: r.timeout_secs,
            retry_of: r.retry_of,
            applies_run: r.applies_run,
            reservation_id: r.reservation_id,
            requested_by: r.requested_by,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            hosts: r.hosts.into_iter().map(RunHostView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunListQuery {
    #[param(schema_with = run_state)]
    state: Option<String>,
    /// Runs of this playbook.
    #[param(value_type = Option<String>, pattern = "^[a-z0-9_-]{1,64}$")]
    playbook: Option<String>,
    /// Runs that targeted this server.
    server_id: Option<Uuid>,
    /// Created at or after this time.
    created_after: Option<DateTime<Utc>>,
    /// Created before this time.
    created_before: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
    #[serde(default = "doc::default_limit")]
    #[param(schema_with = doc::limit)]
    limit: u64,
}

fn run_state() -> utoipa::openapi::Object {
    doc::one_of(RunState::ALL.map(RunState::as_str))
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    pub items: Vec<RunView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/provisioning/runs",
    tag = "provisioning",
    summary = "List provisioning runs, newest first, by state, playbook, server and time",
    params(RunListQuery),
    responses((status = 200, description = "A page of runs", body = RunPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<RunListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let q = q.into_inner();
    let mut errors = Vec::new();
    if let Some(e) = doc::limit_error(q.limit) {
        errors.push(e);
    }
    let state = match q.state.as_deref().map(|s| RunState::parse(s).ok_or(s)) {
        Some(Err(_)) => {
            let all: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
            errors.push(sentinel_jobs::FieldError::new("state", format!("must be one of {}", all.join(", "))));
            None
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    if let Some(p) = &q.playbook
        && let Err(e) = sentinel_jobs::domain::provisioning::PlaybookName::parse(p)
    {
        errors.push(sentinel_jobs::FieldError::new("playbook", e));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let before = doc::uuid_cursor(q.cursor.as_deref())?;
    let filter = RunFilter {
        state,
        playbook: q.playbook,
        server_id: q.server_id,
        created_after: q.created_after,
        created_before: q.created_before,
    };
    let rows = spine.db().provisioning().list(principal.org_id, &filter, before, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |r| r.id);
    Ok(HttpResponse::Ok().json(RunPage { items: rows.into_iter().map(RunView::from).collect(), next_cursor }))
}

/// The run `raw` names, of the caller's organization (404 otherwise).
pub(crate) async fn run_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<RunRecord, Problem> {
    let not_found = || Problem::not_found(&format!("provisioning run {raw:?}"));
    let id: Uuid = raw.parse().map_err(|_| not_found())?;
    spine.db().provisioning().get(principal.org_id, id).await?.ok_or_else(not_found)
}

#[utoipa::path(
    get,
    path = "/api/v1/provisioning/runs/{id}",
    tag = "provisioning",
    summary = "One provisioning run with its per-host results",
    params(("id" = uuid::Uuid, Path, description = "Run id (UUID)")),
    responses((status = 200, description = "The run", body = RunView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_run(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(RunView::from(run_of(&spine, &principal, &path).await?)))
}
