//! `GET /api/v1/monitoring/dashboard`: the seed's summary in one call — targets up, down and paused,
//! silent machines, unresolved incidents by severity, plans whose last backup failed, jobs running
//! and failed in the last hour — each count answered from an index.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::domain::Role;
use serde::Serialize;
use uuid::Uuid;

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/dashboard").route(web::get().to(dashboard)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetCounts {
    pub up: u64,
    pub down: u64,
    pub paused: u64,
    /// Active, not checked yet.
    pub pending: u64,
    /// With an alert open (flapping ones apart).
    pub firing: u64,
    pub flapping: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MachineCounts {
    pub total: u64,
    /// Silent for longer than `heartbeat_threshold_minutes`.
    pub silent: u64,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SeverityCounts {
    pub critical: u64,
    pub warning: u64,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct IncidentCounts {
    pub open: SeverityCounts,
    pub acknowledged: SeverityCounts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailingBackup {
    pub plan_id: Uuid,
    pub plan_name: String,
    /// failed, incomplete or interrupted.
    pub status: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackupCounts {
    pub plans: u64,
    /// Plans whose last backup did not succeed.
    pub failing: Vec<FailingBackup>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobCounts {
    pub running: u64,
    pub failed_last_hour: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub targets: TargetCounts,
    pub machines: MachineCounts,
    pub incidents: IncidentCounts,
    pub backups: BackupCounts,
    pub jobs: JobCounts,
    pub generated_at: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/dashboard",
    tag = "monitoring",
    summary = "The dashboard summary: targets, machines, incidents, failing backups, jobs",
    responses((status = 200, description = "The summary", body = Dashboard), doc::Guarded)
)]
pub(crate) async fn dashboard(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let store = spine.db().monitoring();
    let threshold = store.settings(principal.org_id).await?.heartbeat_threshold_minutes;
    let now = Utc::now();
    let c = store.dashboard(principal.org_id, now, chrono::Duration::minutes(i64::from(threshold))).await?;
    let mut incidents = IncidentCounts::default();
    for (state, severity, n) in c.incidents {
        let by_state = if state == "open" { &mut incidents.open } else { &mut incidents.acknowledged };
        if severity == "critical" {
            by_state.critical += n;
        } else {
            by_state.warning += n;
        }
    }
    Ok(HttpResponse::Ok().json(Dashboard {
        targets: TargetCounts {
            up: c.targets_up,
            down: c.targets_down,
            paused: c.targets_paused,
            pending: c.targets_pending,
            firing: c.targets_firing,
            flapping: c.targets_flapping,
        },
        machines: MachineCounts { total: c.machines, silent: c.machines_silent },
        incidents,
        backups: BackupCounts {
            plans: c.backup_plans,
            failing: c
                .failing_backups
                .into_iter()
                .map(|(plan_id, plan_name, status, started_at)| FailingBackup {
                    plan_id,
                    plan_name,
                    status,
                    started_at,
                })
                .collect(),
        },
        jobs: JobCounts { running: c.jobs_running, failed_last_hour: c.jobs_failed_last_hour },
        generated_at: now,
    }))
}
