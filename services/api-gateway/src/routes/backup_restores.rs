//! `POST /api/v1/backups/restores`: restore a journal entry's backup, or any object on a
//! destination, into a target (the plan's own or another, e.g. a scratch database). Answers at
//! once with the job; the restore's own journal entry records how it went. A supplied key (for
//! artifacts Sentinel's key does not open) is sealed in the vault, never put in the job payload.

use actix_web::{HttpResponse, web};
use sentinel_jobs::domain::backups as domain;
use sentinel_jobs::domain::{RetryPolicy, Role};
use sentinel_jobs::{FieldError, Spine};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::backup_shared::accepted_job;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/backups/restores").route(web::post().to(create)));
}

/// A key that opens the artifact: an age identity (`AGE-SECRET-KEY-1…`) or a passphrase.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppliedKeyBody {
    /// `identity` or `passphrase`.
    pub mode: String,
    /// Write-only.
    #[schema(value_type = String, max_length = 16384)]
    pub value: Zeroizing<String>,
}

/// Body of `POST /api/v1/backups/restores`: a journal entry, or a destination and key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// A succeeded backup's journal entry.
    pub journal_id: Option<Uuid>,
    /// Which of the entry's databases (when it holds several), or the destination of `key`.
    pub database: Option<String>,
    /// Which copy of the entry to read (default: the first stored one), or where `key` is.
    pub destination_id: Option<Uuid>,
    /// An object on `destination_id` (instead of `journal_id`), e.g. a dump put there by hand.
    #[schema(max_length = 1024)]
    pub key: Option<String>,
    /// The object's expected SHA-256 (lowercase hex), checked before the target is touched.
    #[schema(min_length = 64, max_length = 64)]
    pub sha256: Option<String>,
    /// The target to restore into.
    pub target_id: Uuid,
    /// The database on the target to restore into (default: the backup's own if the target has
    /// it, else the target's first). It must exist (create an empty one for a scratch restore).
    pub into_database: Option<String>,
    pub decrypt_key: Option<SuppliedKeyBody>,
    /// PostgreSQL: apply the backup's globals (roles and tablespaces) before its data, for a
    /// restore into a new cluster: missing roles are created, existing ones are reported and
    /// left as they are, apart from the attributes the backup sets (e.g. a password). Only with
    /// `journal_id`, of a backup that took them.
    #[serde(default)]
    pub with_globals: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/backups/restores",
    tag = "backups",
    summary = "Restore a backup (a journal entry or an object on a destination) into a target; answers at once with the job",
    request_body = RestoreBody,
    responses(
        (status = 202, description = "The restore job", body = crate::routes::jobs::JobView),
        doc::Guarded, doc::Invalid, doc::BadBody
    )
)]
pub(crate) async fn create(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<RestoreBody>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b = body.into_inner();
    let store = spine.db().backups();
    let mut errors = Vec::new();
    let target = store.target(principal.org_id, b.target_id).await?;
    if target.is_none() {
        errors.push(FieldError::new("target_id", "no such backup target in your organization"));
    }
    if let Some(db) = &b.into_database
        && let Err(e) = domain::check_identifier("database", db)
    {
        errors.push(FieldError::new("into_database", e));
    }
    // The journal entry, when the source is one (read once, for its status and its globals).
    let mut entry_record = None;
    let source = match (b.journal_id, &b.key) {
        (Some(entry), None) => {
            entry_record = store.journal_entry(principal.org_id, entry).await?;
            match &entry_record {
                None => errors.push(FieldError::new("journal_id", "no such journal entry in your organization")),
                Some(e) if e.kind != domain::JournalKind::Backup || !e.status.holds_artifact() => {
                    errors.push(FieldError::new(
                        "journal_id",
                        format!("a {} that {}: only a succeeded backup can be restored", e.kind, e.status),
                    ))
                }
                Some(_) => {}
            }
            json!({"journal": {"entry_id": entry, "database": b.database, "destination_id": b.destination_id}})
        }
        (None, Some(key)) => {
            match b.destination_id {
                None => errors.push(FieldError::new("destination_id", "is required with key")),
                Some(d) if store.destination(principal.org_id, d).await?.is_none() => {
                    errors.push(FieldError::new("destination_id", "no such backup destination in your organization"))
                }
                Some(_) => {}
            }
            if key.is_empty() || key.len() > 1024 || key.starts_with('/') || key.split('/').any(|s| s == "..") {
                errors.push(FieldError::new("key", "a relative object key of 1 to 1024 bytes without `..`"));
            }
            if let Some(h) = &b.sha256
                && !(h.len() == 64 && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
            {
                errors.push(FieldError::new("sha256", "64 lowercase hexadecimal digits"));
            }
            json!({"object": {"destination_id": b.destination_id, "key": key, "sha256": b.sha256}})
        }
        _ => {
            errors.push(FieldError::new("journal_id", "give journal_id, or destination_id with key"));
            json!(null)
        }
    };
    let key = match &b.decrypt_key {
        None => None,
        Some(k) if !["identity", "passphrase"].contains(&k.mode.as_str()) => {
            errors.push(FieldError::new("decrypt_key.mode", "is identity or passphrase"));
            None
        }
        Some(k) if k.value.is_empty() || k.value.len() > 16384 => {
            errors.push(FieldError::new("decrypt_key.value", "1 to 16384 characters"));
            None
        }
        Some(k) => {
            if k.mode == "identity" {
                let list = [secrecy::SecretString::from(k.value.to_string())];
                if let Err(e) = sentinel_jobs::secrets::age_stream::OpenWith::identities(&list) {
                    errors.push(FieldError::new("decrypt_key.value", e.to_string()));
                }
            }
            Some(k)
        }
    };
    if b.with_globals {
        match (b.journal_id, &target) {
            (None, _) => errors.push(FieldError::new("with_globals", "only with journal_id")),
            (Some(_), Some(t)) if !t.engine.has_globals() => {
                errors.push(FieldError::new("with_globals", format!("{} targets have no globals to apply", t.engine)))
            }
            (Some(_), Some(_)) => {
                let has = entry_record
                    .as_ref()
                    .is_some_and(|e| e.copies.iter().any(|c| c.database == domain::GLOBALS && c.state == "stored"));
                if !has {
                    errors.push(FieldError::new("with_globals", "this backup holds no globals (roles, tablespaces)"));
                }
            }
            (Some(_), None) => {}
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let mut payload = json!({
        "source": source, "target_id": b.target_id, "database": b.into_database, "globals": b.with_globals,
    });
    if let Some(k) = key {
        let vault = spine.vault().map_err(|e| Problem::unavailable(e.to_string()))?;
        let (id, sealed) = vault.seal_new(k.value.as_bytes());
        let owner = format!("backup_restore:{}", Uuid::now_v7());
        spine.db().secrets().insert(id, Some(principal.org_id), &owner, &sealed.key_id, &sealed.text).await?;
        payload["key"] = json!({"mode": k.mode, "secret_id": id});
    }
    // A restore is never repeated by itself: a half-failed one is for an operator to look at.
    accepted_job(
        &spine,
        &principal,
        domain::RESTORE_KIND,
        payload,
        Some(RetryPolicy { max_attempts: 1, ..Default::default() }),
    )
    .await
}
