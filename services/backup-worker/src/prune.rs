//! Retention: which of a plan's backups its rules let go, and deleting their artifacts. The
//! verdicts come from `sentinel_domain::backups::plan_retention` (by start time, with floors no rule
//! breaks); a pruned backup keeps its journal row, marked `pruned`, with each copy `deleted`.

use async_trait::async_trait;
use chrono::Utc;
use sentinel_jobs::db::backups::{JournalRecord, PlanRecord};
use sentinel_jobs::domain::LogStream;
use sentinel_jobs::domain::backups::{Copy, Snapshot, plan_retention};
use sentinel_jobs::{JobContext, JobError, JobHandler, Spine};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::setup;

/// What retention would do to a plan's backups now (nothing is deleted).
pub async fn verdicts(spine: &Spine, plan: &PlanRecord) -> Result<(Vec<JournalRecord>, Value), JobError> {
    let live = spine.db().backups().live_backups_of_plan(plan.id).await?;
    let snapshots: Vec<Snapshot> = live.iter().map(JournalRecord::snapshot).collect();
    let verdicts = plan_retention(&plan.retention, &snapshots, Utc::now());
    let doomed: Vec<JournalRecord> =
        live.into_iter().filter(|e| verdicts.iter().any(|v| v.id == e.id && !v.keep)).collect();
    Ok((doomed, json!(verdicts)))
}

/// Deletes every stored copy of `entry` and marks it pruned. Returns the failures (the entry stays
/// `succeeded` if any copy could not be deleted, so the next run tries again).
pub async fn delete_entry(spine: &Spine, entry: &JournalRecord) -> Result<Vec<String>, JobError> {
    let store = spine.db().backups();
    let mut copies = entry.copies.clone();
    let failures = delete_stored(spine, entry.org_id, &mut copies).await?;
    if failures.is_empty() {
        store.mark_pruned(entry.id, &copies).await?;
    } else {
        store.set_journal_copies(entry.id, &copies).await?;
    }
    Ok(failures)
}

/// Deletes the `stored` copies among `copies`, marking each `deleted`; returns what could not be.
pub async fn delete_stored(spine: &Spine, org: Uuid, copies: &mut [Copy]) -> Result<Vec<String>, JobError> {
    let store = spine.db().backups();
    let mut failures = Vec::new();
    for copy in copies.iter_mut().filter(|c| c.state == "stored") {
        let Some(dest) = store.destination(org, copy.destination_id).await? else {
            failures.push(format!("{}: destination {} no longer exists", copy.key, copy.destination_id));
            continue;
        };
        let storage = setup::destination(spine, &dest).await?;
        match storage.delete(&copy.key).await {
            Ok(()) => copy.state = "deleted".to_owned(),
            Err(e) => failures.push(format!("{}: {e}", storage.location(&copy.key))),
        }
    }
    Ok(failures)
}

/// Applies a plan's retention; with `dry_run`, only reports.
pub async fn apply(spine: &Spine, plan: &PlanRecord, dry_run: bool) -> Result<Value, JobError> {
    let (doomed, verdicts) = verdicts(spine, plan).await?;
    let mut pruned = Vec::new();
    let mut failures = Vec::new();
    if !dry_run {
        for entry in &doomed {
            let failed = delete_entry(spine, entry).await?;
            if failed.is_empty() {
                pruned.push(entry.id);
            }
            failures.extend(failed);
        }
    }
    Ok(json!({
        "dry_run": dry_run,
        "verdicts": verdicts,
        "would_prune": doomed.iter().map(|e| e.id).collect::<Vec<_>>(),
        "pruned": pruned,
        "failures": failures,
    }))
}

/// The payload of `backup.prune`: a plan's retention now, or the named entries' artifacts (what
/// deleting a plan with `backups=delete` asks for).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunePayload {
    #[serde(default)]
    pub plan_id: Option<Uuid>,
    #[serde(default)]
    pub journal_ids: Vec<Uuid>,
}

pub struct Prune;

#[async_trait]
impl JobHandler for Prune {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let payload: PrunePayload = ctx.payload()?;
        let spine = ctx.spine();
        let store = spine.db().backups();
        let org =
            ctx.job().org_id.ok_or_else(|| JobError::Permanent("a prune job belongs to an organization".into()))?;
        if let Some(plan_id) = payload.plan_id {
            let plan = store
                .plan(org, plan_id)
                .await?
                .ok_or_else(|| JobError::Permanent(format!("backup plan {plan_id} does not exist")))?;
            let report = apply(spine, &plan, false).await?;
            ctx.log(LogStream::System, format!("retention of plan {:?}: {}", plan.name, report["pruned"])).await?;
            return Ok(report);
        }
        let mut pruned = Vec::new();
        let mut failures = Vec::new();
        for id in payload.journal_ids {
            let Some(entry) = store.journal_entry(org, id).await? else { continue };
            let failed = delete_entry(spine, &entry).await?;
            if failed.is_empty() {
                pruned.push(id);
            }
            failures.extend(failed);
        }
        if !failures.is_empty() {
            return Err(JobError::Retryable(format!("could not delete: {}", failures.join("; "))));
        }
        Ok(json!({ "pruned": pruned }))
    }
}
