//! `/api/v1/backups/plans`: what to back up (a target), where (one or more destinations), when (a
//! cron and time zone, fired through an owned schedule: once per tick, with a misfire policy and
//! history), in which format (type, compression, encryption) and what retention keeps. Running,
//! pruning and deleting a plan are in `backup_plan_actions`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::backups::{PlanDraft, PlanRecord, SealedSecret, plan_schedule_owner};
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::backups::{
    self as domain, BackupType, CompressionChoice, PlanEncryption, PlanObjectives, Retention,
};
use sentinel_jobs::domain::schedule::MisfirePolicy;
use sentinel_jobs::{FieldError, ScheduleInput, Spine};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::backup_plan_actions;
use super::backup_shared::{name_taken, path_id};
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

/// The most destinations one plan writes to.
pub const MAX_DESTINATIONS: usize = 8;
/// The shortest passphrase accepted (age's scrypt makes each guess cost ~1 s; length does the rest).
pub const MIN_PASSPHRASE: usize = 12;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/backups/plans").route(web::post().to(create)).route(web::get().to(list)));
    cfg.service(
        resource("/backups/plans/{id}")
            .route(web::get().to(get_plan))
            .route(web::put().to(replace))
            .route(web::delete().to(backup_plan_actions::delete)),
    );
    cfg.service(resource("/backups/plans/{id}/run").route(web::post().to(backup_plan_actions::run)));
    cfg.service(resource("/backups/plans/{id}/prune").route(web::post().to(backup_plan_actions::prune)));
}

/// How a plan encrypts.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionBody {
    /// `none`, `age` (to an identity Sentinel generates and keeps sealed, plus any escrow
    /// recipients) or `passphrase` (age scrypt).
    #[schema(example = "age")]
    pub mode: String,
    /// `age1…` public keys that can also decrypt (with the stock `age -d -i key.txt`).
    #[serde(default)]
    pub escrow_recipients: Vec<String>,
    /// For `passphrase`: at least 12 characters; write-only. On replace: absent keeps the stored one.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 12, max_length = 1024)]
    pub passphrase: Option<Zeroizing<String>>,
}

/// Body of `POST /api/v1/backups/plans` and `PUT /api/v1/backups/plans/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub target_id: Uuid,
    /// 1 to 8 destinations: the database is dumped once, the other copies are byte-identical.
    pub destination_ids: Vec<Uuid>,
    /// Five-field cron (or six with seconds); absent: the plan runs only on demand.
    #[schema(schema_with = doc::cron)]
    pub cron: Option<String>,
    /// IANA zone the cron is read in (default `UTC`).
    pub timezone: Option<String>,
    /// `skip` or `run_once` (default): what happens to ticks missed while the scheduler was down.
    pub misfire_policy: Option<String>,
    /// `full` (default); `incremental`/`differential` are refused with the reason where the engine
    /// has none.
    #[serde(default, rename = "type")]
    pub backup_type: Option<String>,
    /// `{"format": "zstd" | "gzip" | "none" | "zip" | "tar.gz", "level": n}` (default zstd level 3).
    /// zip and tar.gz stage the dump in one file on the worker; the others stream with none.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub compression: Option<Value>,
    #[serde(default)]
    pub encryption: Option<EncryptionBody>,
    /// `{"keep_last", "keep_within_days", "keep_daily", "keep_weekly", "keep_monthly",
    /// "keep_yearly"}`; none: every backup is kept.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub retention: Option<Value>,
    /// Recovery point objective, in minutes: the newest backup is never older than this. Needs a
    /// cron whose longest wait between two runs is within it (a 2-hourly cron cannot meet 60).
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 525600)]
    pub rpo_minutes: Option<u32>,
    /// Recovery time objective, in minutes: how long a restore may take.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 525600)]
    pub rto_minutes: Option<u32>,
    /// Verify every Nth successful backup (1: each one): restore it into a scratch database and
    /// compare every table with the snapshot it was dumped from. Absent: only when asked
    /// (`POST /api/v1/backups/journal/{id}/verify`, or a schedule of kind `backup.verify`).
    /// PostgreSQL targets.
    #[serde(default, deserialize_with = "doc::integer_or_null")]
    #[schema(minimum = 1, maximum = 1000)]
    pub verify_every: Option<u32>,
    /// The target whose server receives the scratch databases (same engine); absent: the plan's
    /// own target, under a throw-away database name.
    #[serde(default)]
    pub verify_target_id: Option<Uuid>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A plan as the API shows it: its encryption's public half only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub id: Uuid,
    pub name: String,
    pub target_id: Uuid,
    pub destination_ids: Vec<Uuid>,
    pub cron: Option<String>,
    pub timezone: String,
    #[serde(rename = "type")]
    pub backup_type: String,
    #[schema(value_type = Object)]
    pub compression: Value,
    /// `{"mode", "recipient", "escrow_recipients"}`: never the identity or the passphrase.
    #[schema(value_type = Object)]
    pub encryption: Value,
    #[schema(value_type = Object)]
    pub retention: Value,
    pub rpo_minutes: Option<u32>,
    pub rto_minutes: Option<u32>,
    pub verify_every: Option<u32>,
    pub verify_target_id: Option<Uuid>,
    pub enabled: bool,
    /// The owned schedule that fires the plan (`/api/v1/schedules/{id}/firings` is its history).
    pub schedule_id: Option<Uuid>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) async fn view(spine: &Spine, p: PlanRecord) -> Result<PlanView, Problem> {
    let next_run_at = match p.schedule_id {
        Some(id) => spine.db().schedules().get(id).await?.and_then(|s| s.next_fire_at),
        None => None,
    };
    let encryption = match &p.encryption {
        PlanEncryption::None => json!({"mode": "none"}),
        PlanEncryption::Age { recipient, escrow_recipients, .. } => {
            json!({"mode": "age", "recipient": recipient, "escrow_recipients": escrow_recipients})
        }
        PlanEncryption::Passphrase { .. } => json!({"mode": "passphrase"}),
    };
    Ok(PlanView {
        id: p.id,
        name: p.name,
        target_id: p.target_id,
        destination_ids: p.destination_ids,
        cron: p.cron,
        timezone: p.timezone,
        backup_type: p.backup_type.as_str().to_owned(),
        compression: serde_json::to_value(p.compression).unwrap_or(Value::Null),
        encryption,
        retention: serde_json::to_value(&p.retention).unwrap_or(Value::Null),
        rpo_minutes: p.objectives.rpo_minutes,
        rto_minutes: p.objectives.rto_minutes,
        verify_every: p.objectives.verify_every,
        verify_target_id: p.objectives.verify_target_id,
        enabled: p.enabled,
        schedule_id: p.schedule_id,
        next_run_at,
        created_by: p.created_by,
        created_at: p.created_at,
        updated_at: p.updated_at,
    })
}

/// Parses a compression choice, naming the field on error.
pub(crate) fn compression_of(raw: Option<&Value>, errors: &mut Vec<FieldError>) -> CompressionChoice {
    let Some(raw) = raw else { return CompressionChoice::default() };
    match serde_json::from_value::<CompressionChoice>(raw.clone()) {
        Ok(c) => {
            if let Err(e) = c.check() {
                errors.push(FieldError::new("compression.level", e));
            }
            c
        }
        Err(e) => {
            errors.push(FieldError::new("compression", format!("{e} (format is zstd, gzip, none, zip or tar.gz)")));
            CompressionChoice::default()
        }
    }
}

/// The encryption to store and the secrets to seal for it; an unchanged mode keeps its key.
fn encryption_of(
    spine: &Spine,
    body: Option<&EncryptionBody>,
    old: Option<&PlanEncryption>,
    errors: &mut Vec<FieldError>,
) -> Result<(PlanEncryption, Vec<SealedSecret>), Problem> {
    let Some(b) = body else { return Ok((PlanEncryption::None, Vec::new())) };
    if let Err(e) = sentinel_jobs::secrets::age_stream::parse_recipients(&b.escrow_recipients) {
        errors.push(FieldError::new("encryption.escrow_recipients", e.to_string()));
    }
    if b.escrow_recipients.len() > 16 {
        errors.push(FieldError::new("encryption.escrow_recipients", "at most 16 recipients"));
    }
    let seal = |bytes: &[u8]| -> Result<SealedSecret, Problem> {
        let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
        let (id, sealed) = vault.seal_new(bytes);
        Ok((id, sealed.key_id, sealed.text))
    };
    match b.mode.as_str() {
        "none" => {
            if !b.escrow_recipients.is_empty() || b.passphrase.is_some() {
                errors.push(FieldError::new("encryption", "mode none takes no recipients or passphrase"));
            }
            Ok((PlanEncryption::None, Vec::new()))
        }
        "age" => {
            if b.passphrase.is_some() {
                errors.push(FieldError::new("encryption.passphrase", "age mode encrypts to keys; use mode passphrase"));
            }
            let escrow = b.escrow_recipients.clone();
            if let Some(PlanEncryption::Age { recipient, identity_secret_id, .. }) = old {
                let kept = PlanEncryption::Age {
                    recipient: recipient.clone(),
                    identity_secret_id: *identity_secret_id,
                    escrow_recipients: escrow,
                };
                return Ok((kept, Vec::new()));
            }
            let identity = sentinel_jobs::secrets::age_stream::generate_identity();
            use secrecy::ExposeSecret;
            let sealed = seal(identity.secret.expose_secret().as_bytes())?;
            let enc = PlanEncryption::Age {
                recipient: identity.recipient,
                identity_secret_id: sealed.0,
                escrow_recipients: escrow,
            };
            Ok((enc, vec![sealed]))
        }
        "passphrase" => {
            if !b.escrow_recipients.is_empty() {
                errors.push(FieldError::new(
                    "encryption.escrow_recipients",
                    "age allows a passphrase or recipients, not both",
                ));
            }
            match (&b.passphrase, old) {
                (Some(p), _) if p.chars().count() < MIN_PASSPHRASE || p.len() > 1024 => {
                    errors
                        .push(FieldError::new("encryption.passphrase", format!("{MIN_PASSPHRASE} to 1024 characters")));
                    Ok((PlanEncryption::None, Vec::new()))
                }
                (Some(p), _) => {
                    let sealed = seal(p.as_bytes())?;
                    Ok((PlanEncryption::Passphrase { passphrase_secret_id: sealed.0 }, vec![sealed]))
                }
                (None, Some(PlanEncryption::Passphrase { passphrase_secret_id })) => {
                    Ok((PlanEncryption::Passphrase { passphrase_secret_id: *passphrase_secret_id }, Vec::new()))
                }
                (None, _) => {
                    errors.push(FieldError::new("encryption.passphrase", "is required for mode passphrase"));
                    Ok((PlanEncryption::None, Vec::new()))
                }
            }
        }
        other => {
            errors.push(FieldError::new("encryption.mode", format!("{other:?} is not none, age or passphrase")));
            Ok((PlanEncryption::None, Vec::new()))
        }
    }
}

/// Checks a body against the organization's targets and destinations; returns the draft, the
/// secrets to seal, and the schedule input (when the plan has a cron).
async fn check(
    spine: &Spine,
    principal: &Principal,
    plan_id: Uuid,
    b: &PlanBody,
    old: Option<&PlanRecord>,
) -> Result<(PlanDraft, Vec<SealedSecret>, Option<ScheduleInput>), Problem> {
    let mut errors = Vec::new();
    let store = spine.db().backups();
    if let Err(e) = domain::check_name(&b.name) {
        errors.push(FieldError::new("name", e));
    }
    let target = store.target(principal.org_id, b.target_id).await?;
    if target.is_none() {
        errors.push(FieldError::new("target_id", "no such backup target in your organization"));
    }
    if b.destination_ids.is_empty() || b.destination_ids.len() > MAX_DESTINATIONS {
        errors.push(FieldError::new("destination_ids", format!("name 1 to {MAX_DESTINATIONS} destinations")));
    }
    let mut seen = std::collections::HashSet::new();
    for id in &b.destination_ids {
        if !seen.insert(id) {
            errors.push(FieldError::new("destination_ids", format!("{id} is named twice")));
        } else if store.destination(principal.org_id, *id).await?.is_none() {
            errors.push(FieldError::new(
                "destination_ids",
                format!("{id}: no such backup destination in your organization"),
            ));
        }
    }
    let backup_type = match BackupType::parse(b.backup_type.as_deref().unwrap_or("full")) {
        Ok(t) => t,
        Err(e) => {
            errors.push(FieldError::new("type", e));
            BackupType::Full
        }
    };
    if let Some(t) = &target
        && let Err(why) = t.engine.supports(backup_type)
    {
        errors.push(FieldError::new("type", why));
    }
    let compression = compression_of(b.compression.as_ref(), &mut errors);
    let retention: Retention = match b.retention.clone().map(serde_json::from_value::<Retention>).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            errors.push(FieldError::new("retention", e.to_string()));
            Retention::default()
        }
    };
    if let Err(e) = retention.check() {
        errors.push(FieldError::new(format!("retention.{}", e.field), e.reason));
    }
    let misfire_policy = match b.misfire_policy.as_deref() {
        None => MisfirePolicy::RunOnce,
        Some(m) => m.parse().unwrap_or_else(|_| {
            errors.push(FieldError::new("misfire_policy", "is skip or run_once"));
            MisfirePolicy::RunOnce
        }),
    };
    let (encryption, secrets) = encryption_of(spine, b.encryption.as_ref(), old.map(|o| &o.encryption), &mut errors)?;
    let timezone = b.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
    let schedule = b.cron.as_ref().map(|cron| ScheduleInput {
        name: format!("backup plan {}", b.name.chars().take(100).collect::<String>()),
        cron: Some(cron.clone()),
        interval_secs: None,
        timezone: Some(timezone.clone()),
        kind: domain::RUN_KIND.to_owned(),
        payload: json!({ "plan_id": plan_id }),
        priority: Default::default(),
        enabled: b.enabled,
        misfire_policy,
        jitter_ms: 0,
        end_at: None,
    });
    if let Some(input) = &schedule
        && let Err(more) = spine.schedule_draft(
            input.clone(),
            Some(principal.org_id),
            Some(plan_schedule_owner(plan_id)),
            None,
            Utc::now(),
            Utc::now(),
        )
    {
        errors.extend(more);
    }
    let objectives = PlanObjectives {
        rpo_minutes: b.rpo_minutes,
        rto_minutes: b.rto_minutes,
        verify_every: b.verify_every,
        verify_target_id: b.verify_target_id,
    };
    check_verification(spine, principal, &objectives, target.as_ref(), &mut errors).await?;
    // The cron's own errors are reported above; an RPO is checked against a cron that parses.
    let cron = b.cron.as_deref().map(|c| (c, timezone.as_str()));
    if !errors.iter().any(|e| e.field == "cron" || e.field == "timezone")
        && let Err((field, reason)) = domain::check_objectives(&objectives, cron, Utc::now())
    {
        errors.push(FieldError::new(field, reason));
    }
    if b.cron.is_none() && b.timezone.is_some() {
        sentinel_jobs::domain::schedule::parse_timezone(&timezone)
            .map_err(|e| errors.push(FieldError::new("timezone", e.to_string())))
            .ok();
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let draft = PlanDraft {
        name: b.name.clone(),
        target_id: b.target_id,
        destination_ids: b.destination_ids.clone(),
        cron: b.cron.clone(),
        timezone,
        backup_type,
        compression,
        encryption,
        retention,
        objectives,
        enabled: b.enabled,
    };
    Ok((draft, secrets, schedule))
}

/// A verification needs an engine Sentinel verifies and, when named, a server of that engine.
async fn check_verification(
    spine: &Spine,
    principal: &Principal,
    objectives: &PlanObjectives,
    target: Option<&sentinel_jobs::db::backups::TargetRecord>,
    errors: &mut Vec<FieldError>,
) -> Result<(), Problem> {
    let Some(target) = target else { return Ok(()) };
    if objectives.verify_every.is_some() && target.engine == domain::Engine::Mongodb {
        errors.push(FieldError::new(
            "verify_every",
            format!(
                "{} backups are not verified by restore yet (PostgreSQL, MySQL/MariaDB and SQLite backups are)",
                target.engine
            ),
        ));
    }
    if let Some(id) = objectives.verify_target_id {
        match spine.db().backups().target(principal.org_id, id).await? {
            None => errors.push(FieldError::new("verify_target_id", "no such backup target in your organization")),
            Some(server) if server.engine != target.engine => errors.push(FieldError::new(
                "verify_target_id",
                format!("a {} server cannot verify {} backups", server.engine, target.engine),
            )),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Keeps the plan's owned schedule in step with it: created or replaced with a cron, removed without.
async fn sync_schedule(
    spine: &Spine,
    principal: &Principal,
    plan: &PlanRecord,
    input: Option<ScheduleInput>,
) -> Result<(), Problem> {
    let owner = plan_schedule_owner(plan.id);
    match input {
        Some(input) => {
            let draft = spine
                .schedule_draft(
                    input,
                    Some(principal.org_id),
                    Some(owner),
                    Some(principal.label()),
                    Utc::now(),
                    Utc::now(),
                )
                .map_err(Problem::invalid)?;
            let rec = spine.db().schedules().upsert_owned(draft).await?;
            spine.db().backups().set_plan_schedule(plan.id, Some(rec.id)).await?;
        }
        None => {
            if let Some(id) = plan.schedule_id {
                spine.db().schedules().delete(principal.org_id, id).await?;
                spine.db().backups().set_plan_schedule(plan.id, None).await?;
            }
        }
    }
    Ok(())
}

pub(crate) async fn plan_of(spine: &Spine, principal: &Principal, raw: &str) -> Result<PlanRecord, Problem> {
    let id = path_id(raw, "backup plan")?;
    spine
        .db()
        .backups()
        .plan(principal.org_id, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("backup plan {raw:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/plans",
    tag = "backups",
    summary = "Create a backup plan (its cron fires through an owned schedule)",
    request_body = PlanBody,
    responses(
        (status = 201, description = "Stored", body = PlanView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<PlanBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let id = Uuid::now_v7();
    let (draft, secrets, schedule) = check(&spine, &principal, id, &b, None).await?;
    let store = spine.db().backups();
    let plan = store
        .create_plan(principal.org_id, id, draft, secrets, &principal.label())
        .await
        .map_err(|e| name_taken(e, "backup plan", &b.name))?;
    sync_schedule(&spine, &principal, &plan, schedule).await?;
    let plan = store.plan(principal.org_id, plan.id).await?.unwrap_or(plan);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/backups/plans/{}", plan.id)))
        .json(view(&spine, plan).await?))
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
pub struct PlanPage {
    pub items: Vec<PlanView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/plans",
    tag = "backups",
    summary = "List backup plans",
    params(ListQuery),
    responses((status = 200, description = "A page of plans", body = PlanPage), doc::Guarded, doc::Invalid)
)]
pub(crate) async fn list(
    principal: Principal,
    spine: web::Data<Spine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    doc::check_limit(q.limit)?;
    let cursor = doc::uuid_cursor(q.cursor.as_deref())?;
    let rows = spine.db().backups().plans(principal.org_id, cursor, q.limit + 1).await?;
    let (rows, next_cursor) = doc::page(rows, q.limit, |p| p.id);
    let mut items = Vec::with_capacity(rows.len());
    for p in rows {
        items.push(view(&spine, p).await?);
    }
    Ok(HttpResponse::Ok().json(PlanPage { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/plans/{id}",
    tag = "backups",
    summary = "Get a backup plan",
    params(("id" = uuid::Uuid, Path, description = "Plan id (UUID)")),
    responses((status = 200, description = "The plan", body = PlanView), doc::Guarded, doc::NotFound)
)]
pub(crate) async fn get_plan(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let plan = plan_of(&spine, &principal, &path).await?;
    Ok(HttpResponse::Ok().json(view(&spine, plan).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/backups/plans/{id}",
    tag = "backups",
    summary = "Replace a backup plan (an unchanged encryption mode keeps its key; older keys stay for older backups)",
    params(("id" = uuid::Uuid, Path, description = "Plan id (UUID)")),
    request_body = PlanBody,
    responses(
        (status = 200, description = "Replaced", body = PlanView),
        (status = 409, description = "The name is taken", body = crate::Problem, content_type = "application/problem+json"),
        doc::Guarded, doc::NotFound, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    path: web::Path<String>,
    body: web::Json<PlanBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let old = plan_of(&spine, &principal, &path).await?;
    let b = body.into_inner();
    let (draft, secrets, schedule) = check(&spine, &principal, old.id, &b, Some(&old)).await?;
    let store = spine.db().backups();
    let plan = store.update_plan(&old, draft, secrets).await.map_err(|e| name_taken(e, "backup plan", &b.name))?;
    sync_schedule(&spine, &principal, &plan, schedule).await?;
    let plan = store.plan(principal.org_id, plan.id).await?.unwrap_or(plan);
    Ok(HttpResponse::Ok().json(view(&spine, plan).await?))
}
