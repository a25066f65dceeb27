//! Starting provisioning runs: `POST /api/v1/provisioning/runs` (an allow-listed playbook on servers
//! named by id or label selector), `POST …/{id}/retry-failed` (only the failed and unreachable hosts
//! of a run) and `POST …/{id}/apply` (the identical bundle of a check run, for real). Each answers 202
//! at once with the run, committed together with its job.

use actix_web::{HttpResponse, web};
use sentinel_ansible::PlaybookRegistry;
use sentinel_jobs::db::NewJob;
use sentinel_jobs::db::inventory::{ServerFilter, ServerRecord};
use sentinel_jobs::db::provisioning::{HostSnapshot, NewRun, RunRecord};
use sentinel_jobs::domain::inventory::{LabelSelector, LeaseKind, ServerStatus};
use sentinel_jobs::domain::provisioning::{self as prov, RunState};
use sentinel_jobs::domain::{JobId, JobKind, Priority, QueueName, RetryPolicy, Role, configs as rules};
use sentinel_jobs::{FieldError, Spine};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::provision_runs::{RunView, run_of};
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// Body of `POST /api/v1/provisioning/runs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// An allow-listed playbook's name (`GET /provisioning/playbooks`).
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub playbook: String,
    /// The servers to run on (exclusive with `selector`), 1 to 1000.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000)]
    pub server_ids: Option<Vec<Uuid>>,
    /// A label selector (`env=prod,role=web`) naming the servers instead (exclusive with `server_ids`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1024)]
    pub selector: Option<String>,
    /// A config whose current version's payload is the run's extra variables.
    #[serde(default)]
    pub config_id: Option<Uuid>,
    /// More extra variables (override the config's); `{"secret": "…"}` marks a secret value.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub extra_vars: Option<Map<String, Value>>,
    /// `--check --diff`: report what would change, change nothing.
    #[serde(default)]
    pub check: bool,
    /// Default from `provision.default_timeout_secs`.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub timeout_seconds: Option<u64>,
    /// The reservation (`lease_id` of `POST /servers/reserve`) this run is for: its reserved servers
    /// may be provisioned by this run only.
    #[serde(default)]
    pub reservation_id: Option<Uuid>,
}

/// The inventory name of each server: its name where ansible accepts it, unique within the run.
fn aliases(servers: &[ServerRecord]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(servers.len());
    for s in servers {
        let clean: String = s
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
            .take(64)
            .collect();
        let base = if clean.is_empty() { "server".to_owned() } else { clean };
        let alias = if out.contains(&base) { format!("{base}-{}", &s.id.simple().to_string()[..8]) } else { base };
        out.push(alias);
    }
    out
}

fn snapshot(servers: &[ServerRecord]) -> Vec<HostSnapshot> {
    servers
        .iter()
        .zip(aliases(servers))
        .map(|(s, host)| HostSnapshot {
            server_id: s.id,
            host,
            ip: s.ip.clone(),
            ssh_port: s.ssh_port,
            ssh_user: s.ssh_user.clone(),
            host_keys: s.host_keys.clone(),
            accept_new_host_key: s.accept_new_host_key,
            ssh_credential_id: s.ssh_credential_id,
        })
        .collect()
}

/// Servers that cannot be in a run: retired, or reserved by another reservation (409).
fn check_servers(servers: &[ServerRecord], reservation: Option<Uuid>) -> Result<(), Problem> {
    for s in servers {
        if s.status == ServerStatus::Retired {
            return Err(Problem::conflict(format!("server {} ({}) is retired", s.name, s.id)));
        }
        if let Some(l) = s.lease.as_ref().filter(|l| l.kind == LeaseKind::Reservation)
            && Some(l.id) != reservation
        {
            return Err(Problem::conflict(format!(
                "server {} ({}) is reserved by {} (lease {}): only the run of that reservation (reservation_id) may provision it",
                s.name, s.id, l.holder, l.id
            )));
        }
    }
    Ok(())
}

/// Everything a new run is made of, validated.
struct Spec {
    playbook: String,
    playbook_hash: String,
    servers: Vec<ServerRecord>,
    config: Option<(Uuid, i64)>,
    extra_vars: Value,
    secrets: Vec<(Uuid, String, String)>,
    check: bool,
    timeout_secs: u64,
    reservation_id: Option<Uuid>,
    retry_of: Option<Uuid>,
    applies_run: Option<Uuid>,
}

/// Commits the run with its job, publishes the job, answers 202.
async fn launch(spine: &Spine, principal: &Principal, spec: Spec) -> Result<HttpResponse, Problem> {
    check_servers(&spec.servers, spec.reservation_id)?;
    let run_id = Uuid::now_v7();
    let kind = JobKind::parse(prov::RUN_KIND).map_err(|e| Problem::internal(&e))?;
    let queue = QueueName::parse(prov::QUEUE).map_err(|e| Problem::internal(&e))?;
    let job = NewJob {
        id: JobId::new(),
        kind,
        queue,
        priority: Priority::Normal,
        payload: json!({ "run_id": run_id }),
        // A run is never repeated by itself: a failure is for an operator to look at (retry-failed).
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        run_at: None,
        trace_context: sentinel_telemetry::current_trace_context(),
        requested_by: Some(principal.label()),
        org_id: Some(principal.org_id),
        dedup_key: None,
    };
    let run = NewRun {
        id: run_id,
        org_id: principal.org_id,
        playbook: spec.playbook,
        playbook_hash: spec.playbook_hash,
        check_mode: spec.check,
        config_id: spec.config.map(|c| c.0),
        config_version: spec.config.map(|c| c.1),
        extra_vars: spec.extra_vars,
        secrets: spec.secrets,
        inventory: snapshot(&spec.servers),
        timeout_secs: spec.timeout_secs,
        retry_of: spec.retry_of,
        reservation_id: spec.reservation_id,
        applies_run: spec.applies_run,
        requested_by: principal.label(),
    };
    let (rec, job, event) = spine.db().provisioning().create(run, job).await?;
    spine.publish_committed(job, event);
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/provisioning/runs/{}", rec.id)))
        .json(RunView::from(rec)))
}

fn registry(spine: &Spine) -> PlaybookRegistry {
    PlaybookRegistry::new(spine.settings().provision.playbook_dirs.clone())
}

/// The servers a body names, or the errors naming what is wrong.
async fn servers_of(
    spine: &Spine,
    principal: &Principal,
    ids: Option<Vec<Uuid>>,
    selector: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Result<Vec<ServerRecord>, Problem> {
    let inventory = spine.db().inventory();
    match (ids, selector) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(FieldError::new("server_ids", "give exactly one of server_ids and selector"));
            Ok(Vec::new())
        }
        (Some(mut ids), None) => {
            if ids.is_empty() || ids.len() > prov::MAX_RUN_HOSTS {
                errors.push(FieldError::new("server_ids", format!("must name 1 to {} servers", prov::MAX_RUN_HOSTS)));
                return Ok(Vec::new());
            }
            ids.sort();
            ids.dedup();
            let found = inventory.servers_by_id(principal.org_id, &ids).await?;
            let missing: Vec<String> =
                ids.iter().filter(|id| !found.iter().any(|s| s.id == **id)).map(Uuid::to_string).collect();
            if !missing.is_empty() {
                errors.push(FieldError::new("server_ids", format!("no such server: {}", missing.join(", "))));
            }
            Ok(found)
        }
        (None, Some(raw)) => match LabelSelector::parse(&raw) {
            Err(e) => {
                errors.push(FieldError::new("selector", e));
                Ok(Vec::new())
            }
            Ok(selector) => {
                let filter = ServerFilter { status: None, selector, region: None, text: None };
                let limit = prov::MAX_RUN_HOSTS as u64 + 1;
                let found = inventory.list_servers(principal.org_id, &filter, None, limit).await?;
                if found.is_empty() {
                    errors.push(FieldError::new("selector", format!("matches no server ({raw})")));
                } else if found.len() > prov::MAX_RUN_HOSTS {
                    errors.push(FieldError::new(
                        "selector",
                        format!("matches more than {} servers", prov::MAX_RUN_HOSTS),
                    ));
                }
                Ok(found)
            }
        },
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/provisioning/runs",
    tag = "provisioning",
    summary = "Run an allow-listed playbook on inventory servers (answers at once with the run and its job)",
    request_body = RunBody,
    responses(
        (status = 202, description = "The run is queued", body = RunView),
        (status = 409, description = "A server is retired or reserved by another reservation", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let mut errors = Vec::new();
    let playbook = match registry(&spine).resolve(&b.playbook) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(FieldError::new("playbook", e.to_string()));
            None
        }
    };
    let servers = servers_of(&spine, &principal, b.server_ids, b.selector, &mut errors).await?;
    let config = match b.config_id {
        None => None,
        Some(id) => match spine.db().configs().get(principal.org_id, id).await? {
            Some(c) => Some((c.id, c.version)),
            None => {
                errors.push(FieldError::new("config_id", format!("no such config: {id}")));
                None
            }
        },
    };
    let timeout_secs = b.timeout_seconds.unwrap_or(spine.settings().provision.default_timeout_secs);
    if !(1..=prov::MAX_TIMEOUT_SECS).contains(&timeout_secs) {
        errors.push(FieldError::new("timeout_seconds", format!("must be from 1 to {}", prov::MAX_TIMEOUT_SECS)));
    }
    let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
    let mut secrets = Vec::new();
    let input = Value::Object(b.extra_vars.unwrap_or_default());
    for name in input.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if let Err(e) = prov::check_var_name(&name) {
            errors.push(FieldError::new(format!("extra_vars.{name}"), e));
        }
    }
    let mut seal = |plain: &str| {
        let (id, sealed) = vault.seal_new(plain.as_bytes());
        secrets.push((id, sealed.key_id, sealed.text));
        id.to_string()
    };
    let extra_vars = match rules::store_form(&input, None, &mut seal) {
        Ok(v) => v,
        Err(bad) => {
            errors.extend(
                bad.into_iter().map(|e| FieldError::new(e.field.replacen("payload", "extra_vars", 1), e.reason)),
            );
            Value::Null
        }
    };
    let Some(playbook) = playbook.filter(|_| errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    let spec = Spec {
        playbook: playbook.name.to_string(),
        playbook_hash: playbook.hash,
        servers,
        config,
        extra_vars,
        secrets,
        check: b.check,
        timeout_secs,
        reservation_id: b.reservation_id,
        retry_of: None,
        applies_run: None,
    };
    launch(&spine, &principal, spec).await
}

/// A new run with the bundle of `old` (playbook, config version, extra variables, timeout).
async fn again(spine: &Spine, old: &RunRecord, servers: Vec<ServerRecord>, check: bool) -> Result<Spec, Problem> {
    let playbook = registry(spine).resolve(&old.playbook).map_err(|e| Problem::conflict(e.to_string()))?;
    Ok(Spec {
        playbook: old.playbook.clone(),
        playbook_hash: playbook.hash,
        servers,
        config: old.config_id.zip(old.config_version),
        extra_vars: old.extra_vars.clone(),
        secrets: Vec::new(),
        check,
        timeout_secs: old.timeout_secs,
        reservation_id: old.reservation_id,
        retry_of: None,
        applies_run: None,
    })
}

fn ensure_finished(run: &RunRecord) -> Result<(), Problem> {
    if run.state.is_terminal() {
        Ok(())
    } else {
        Err(Problem::conflict(format!("run {} is still {}; wait for it to end", run.id, run.state)))
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/provisioning/runs/{id}/retry-failed",
    tag = "provisioning",
    summary = "Start a new run limited to the failed and unreachable hosts of a run",
    params(("id" = uuid::Uuid, Path, description = "Run id (UUID)")),
    responses(
        (status = 202, description = "The new run is queued", body = RunView),
        (status = 409, description = "The run is unfinished or has no failed host", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn retry_failed(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = run_of(&spine, &principal, &path).await?;
    ensure_finished(&old)?;
    let ids: Vec<Uuid> = old.hosts.iter().filter(|h| h.status.needs_retry()).map(|h| h.server_id).collect();
    if ids.is_empty() {
        return Err(Problem::conflict(format!("run {} has no failed or unreachable host", old.id)));
    }
    let servers = spine.db().inventory().servers_by_id(principal.org_id, &ids).await?;
    let mut spec = again(&spine, &old, servers, old.check_mode).await?;
    spec.retry_of = Some(old.id);
    launch(&spine, &principal, spec).await
}

#[utoipa::path(
    post,
    path = "/api/v1/provisioning/runs/{id}/apply",
    tag = "provisioning",
    summary = "Run a check run's identical bundle for real (refused if the playbook, the config version or the inventory changed)",
    params(("id" = uuid::Uuid, Path, description = "Run id (UUID) of a finished check run")),
    responses(
        (status = 202, description = "The real run is queued", body = RunView),
        (status = 409, description = "Not a finished check run, or its bundle changed since (what changed is named)", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound
    )
)]
pub(crate) async fn apply(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = run_of(&spine, &principal, &path).await?;
    if !old.check_mode {
        return Err(Problem::conflict(format!("run {} is not a check run", old.id)));
    }
    ensure_finished(&old)?;
    if old.state == RunState::Cancelled {
        return Err(Problem::conflict(format!("check run {} was cancelled; run the check again", old.id)));
    }
    let ids: Vec<Uuid> = old.inventory.iter().map(|h| h.server_id).collect();
    let servers = spine.db().inventory().servers_by_id(principal.org_id, &ids).await?;
    let mut spec = again(&spine, &old, servers, false).await?;
    let mut changed = Vec::new();
    if spec.playbook_hash != old.playbook_hash {
        changed.push(format!(
            "the playbook {} (content hash {} → {})",
            old.playbook,
            &old.playbook_hash[..12],
            &spec.playbook_hash[..12]
        ));
    }
    if let Some((id, version)) = old.config_id.zip(old.config_version) {
        match spine.db().configs().get(principal.org_id, id).await {
            Ok(Some(c)) if c.version == version => {}
            Ok(Some(c)) => changed.push(format!("config {id} (version {version} → {})", c.version)),
            Ok(None) => changed.push(format!("config {id} (deleted)")),
            Err(e) => return Err(e.into()),
        }
    }
    let now = snapshot(&spec.servers);
    let mut before = old.inventory.clone();
    before.sort_by_key(|h| h.server_id);
    if now != before {
        changed.push("the inventory (servers, addresses, users, host keys or SSH keys)".to_owned());
    }
    if !changed.is_empty() {
        return Err(Problem::conflict(format!(
            "the bundle of check run {} changed since: {}",
            old.id,
            changed.join("; ")
        )));
    }
    spec.applies_run = Some(old.id);
    launch(&spine, &principal, spec).await
}
