//! The backup figures on `/metrics`: per plan, the newest success (time, duration, plain and stored
//! size) and failures by reason. The gauges are seeded from the journal when the worker starts, so a
//! restart does not hide a plan's last success from an alert on `time() - last_success`.

use sentinel_jobs::Spine;
use sentinel_jobs::db::backups::{JournalRecord, PlanRecord};
use sentinel_jobs::domain::backups::JournalStatus;
use sentinel_telemetry::metric;

use crate::pipeline::PipelineError;

/// What a pipeline failure is, as the `reason` label.
pub fn reason_of(e: &PipelineError) -> &'static str {
    match e {
        PipelineError::Spawn { .. } => "tool_missing",
        PipelineError::Tool { .. } => "tool_failed",
        PipelineError::Io(_) => "io",
        PipelineError::Archive(_) => "codec",
        PipelineError::Storage(_) => "storage",
        PipelineError::ChecksumMismatch { .. } => "checksum",
        PipelineError::Cancelled => "cancelled",
    }
}

pub fn record_success(plan: &PlanRecord, entry: &JournalRecord) {
    let labels = [("plan", plan.id.to_string()), ("plan_name", plan.name.clone())];
    if let Some(end) = entry.finished_at {
        metrics::gauge!(metric::BACKUP_LAST_SUCCESS, &labels).set(end.timestamp_millis() as f64 / 1000.0);
    }
    if let Some(secs) = entry.duration_secs() {
        metrics::gauge!(metric::BACKUP_LAST_DURATION, &labels).set(secs);
    }
    for (form, bytes) in [("plain", entry.plain_bytes), ("stored", entry.stored_bytes)] {
        if let Some(b) = bytes {
            let mut with_form = labels.to_vec();
            with_form.push(("form", form.to_owned()));
            metrics::gauge!(metric::BACKUP_LAST_SIZE, &with_form).set(b as f64);
        }
    }
}

pub fn record_failure(plan: &PlanRecord, reason: &'static str) {
    metrics::counter!(
        metric::BACKUP_FAILURES,
        "plan" => plan.id.to_string(),
        "plan_name" => plan.name.clone(),
        "reason" => reason
    )
    .increment(1);
}

/// Sets every plan's gauges from its newest successful journal entry.
pub async fn seed(spine: &Spine) {
    let store = spine.db().backups();
    let mut after = None;
    loop {
        let page = match store.all_plans(after, 500).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "backup metrics not seeded from the journal");
                return;
            }
        };
        for plan in &page {
            if let Ok(Some(entry)) = store.last_backup_of_plan(plan.id, JournalStatus::Succeeded).await {
                record_success(plan, &entry);
            }
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.id),
            _ => return,
        }
    }
}
