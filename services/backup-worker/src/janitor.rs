//! `backup.janitor`: the built-in sweep for what no attempt will clean up itself. A backup's next
//! attempt aborts its own dead upload (`run::interrupt_earlier`), but a job that never runs again
//! (cancelled, dead-lettered, deleted) leaves a `running` journal row, an incomplete multipart
//! upload and maybe finished objects behind. After a grace period the janitor ends such rows as
//! `interrupted`, aborts incomplete uploads under `plans/` that no running backup owns, and deletes
//! objects under `plans/` that no succeeded backup's stored copy names. Objects elsewhere on a
//! destination (uploads for restores, files put there by hand) are never touched.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use sentinel_jobs::db::backups::{DestinationRecord, JournalFinish, JournalRecord};
use sentinel_jobs::domain::backups::JournalStatus;
use sentinel_jobs::domain::{JobId, LogStream};
use sentinel_jobs::{JobContext, JobError, JobHandler, Spine};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::setup;

/// Where plans' artifacts live on a destination: `plans/<plan>/<journal entry>/<file>`.
const PLANS_PREFIX: &str = "plans/";
const PAGE: u64 = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JanitorPayload {
    /// Overrides `backup.janitor_grace_minutes` for this sweep (an operator's "now": 0).
    #[serde(default)]
    grace_minutes: Option<u64>,
}

pub struct Janitor;

/// The journal entry an artifact key belongs to.
fn entry_of(key: &str) -> Option<Uuid> {
    let mut parts = key.strip_prefix(PLANS_PREFIX)?.split('/');
    let _plan = parts.next()?;
    Uuid::parse_str(parts.next()?).ok()
}

/// What one sweep did.
#[derive(Default)]
struct Report {
    interrupted: Vec<Uuid>,
    aborted_uploads: Vec<String>,
    deleted_objects: Vec<String>,
    errors: Vec<String>,
}

#[async_trait]
impl JobHandler for Janitor {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let payload: JanitorPayload = if ctx.job().payload.as_object().is_some_and(|o| o.is_empty()) {
            JanitorPayload::default()
        } else {
            ctx.payload()?
        };
        let spine = ctx.spine();
        let minutes = payload.grace_minutes.unwrap_or(spine.settings().backup.janitor_grace_minutes);
        let cutoff = Utc::now() - Duration::minutes(i64::try_from(minutes).unwrap_or(i64::MAX / 60_000));
        let mut report = Report::default();
        end_abandoned_rows(spine, cutoff, &mut report).await?;
        let store = spine.db().backups();
        let mut after = None;
        loop {
            let page = store.all_destinations(after, PAGE).await?;
            after = page.last().map(|d| d.id);
            for dest in &page {
                if ctx.is_cancelled() {
                    return Err(JobError::Cancelled);
                }
                if let Err(e) = sweep(spine, dest, cutoff, &mut report).await {
                    report.errors.push(format!("destination {:?}: {e}", dest.name));
                }
            }
            if (page.len() as u64) < PAGE {
                break;
            }
        }
        let summary = format!(
            "{} abandoned journal row(s) ended, {} incomplete upload(s) aborted, {} stray object(s) deleted",
            report.interrupted.len(),
            report.aborted_uploads.len(),
            report.deleted_objects.len()
        );
        ctx.log(LogStream::System, summary).await?;
        for e in &report.errors {
            ctx.log(LogStream::Stderr, e.clone()).await?;
        }
        Ok(json!({
            "grace_minutes": minutes,
            "interrupted": report.interrupted,
            "aborted_uploads": report.aborted_uploads,
            "deleted_objects": report.deleted_objects,
            "errors": report.errors,
        }))
    }
}

/// Ends the `running` rows older than the grace whose job is over or gone: no attempt will.
async fn end_abandoned_rows(spine: &Spine, cutoff: chrono::DateTime<Utc>, report: &mut Report) -> Result<(), JobError> {
    let store = spine.db().backups();
    for entry in store.running_started_before(cutoff, 1000).await? {
        let job = match entry.job_id {
            Some(id) => spine.db().jobs().get(JobId::from_uuid(id)).await?,
            None => None,
        };
        if job.as_ref().is_some_and(|j| !j.state.is_terminal()) {
            continue; // its job still runs or will run again: the attempt cleans up after itself
        }
        let state = job.map_or_else(|| "gone".to_owned(), |j| j.state.as_str().to_owned());
        let mut copies = entry.copies.clone();
        for c in copies.iter_mut().filter(|c| c.state == "uploading") {
            c.state = "aborted".to_owned();
        }
        let message = format!(
            "interrupted: its job is {state} and will not end this entry; ended by the janitor (its uploads are \
             aborted and its objects deleted by the same sweep)"
        );
        if store.finish_journal(entry.id, JournalFinish::bare(JournalStatus::Interrupted, copies, message)).await? {
            report.interrupted.push(entry.id);
        }
    }
    Ok(())
}

/// One destination: incomplete uploads and stray objects under `plans/`.
async fn sweep(
    spine: &Spine,
    dest: &DestinationRecord,
    cutoff: chrono::DateTime<Utc>,
    report: &mut Report,
) -> Result<(), String> {
    let storage = setup::destination(spine, dest).await.map_err(|e| e.to_string())?;
    let store = spine.db().backups();
    let mut entries: HashMap<Uuid, Option<JournalRecord>> = HashMap::new();
    let mut entry = async |id: Uuid| -> Result<Option<JournalRecord>, String> {
        if let Some(known) = entries.get(&id) {
            return Ok(known.clone());
        }
        let found = store.journal_entry_any(id).await.map_err(|e| e.to_string())?;
        entries.insert(id, found.clone());
        Ok(found)
    };
    for pending in storage.incomplete_uploads().await.map_err(|e| e.to_string())? {
        let Some(id) = entry_of(&pending.key) else { continue };
        if pending.initiated.is_some_and(|at| at > cutoff) {
            continue;
        }
        if entry(id).await?.is_some_and(|e| e.status == JournalStatus::Running) {
            continue;
        }
        match storage.abort_incomplete(&pending).await {
            Ok(()) => report.aborted_uploads.push(storage.location(&pending.key)),
            Err(e) => report.errors.push(format!("{}: {e}", storage.location(&pending.key))),
        }
    }
    for object in storage.list(PLANS_PREFIX).await.map_err(|e| e.to_string())? {
        let Some(id) = entry_of(&object.key) else { continue };
        if object.last_modified > cutoff {
            continue;
        }
        // By key, not by destination: two destinations may share a bucket and prefix, and a key
        // names its plan and entry, so a stored copy with this key anywhere owns the object.
        let owned = entry(id).await?.is_some_and(|e| {
            e.status == JournalStatus::Running
                || (e.status.holds_artifact() && e.copies.iter().any(|c| c.key == object.key && c.state == "stored"))
        });
        if owned {
            continue;
        }
        match storage.delete(&object.key).await {
            Ok(()) => report.deleted_objects.push(storage.location(&object.key)),
            Err(e) => report.errors.push(format!("{}: {e}", storage.location(&object.key))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_of_plan_artifacts_name_an_entry() {
        let entry = Uuid::now_v7();
        assert_eq!(entry_of(&format!("plans/{}/{entry}/app.dump.zst", Uuid::now_v7())), Some(entry));
        assert_eq!(entry_of(&format!("uploads/{entry}/by-hand.dump")), None);
        assert_eq!(entry_of("plans/x/not-a-uuid/app.dump"), None);
        assert_eq!(entry_of("plans/"), None);
    }
}
