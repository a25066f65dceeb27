//! The backup plans' recovery objectives on `/metrics`, computed from the journal by the scheduler
//! (which always runs) rather than by the backup worker: a stopped or lost worker is precisely when
//! an RPO breach must show. Per plan that declares an RPO: the RPO, the RTO, the age of the newest
//! good backup (since its start: the data it holds; since the plan was made when there is none) and
//! whether the first exceeds the second. A plan that verifies its backups counts only verified ones
//! as good, and its newest verified backup's restore time is exported as the measured RTO. A breach
//! also raises a `backup_rpo_breached` alert, resolved once a young enough backup exists.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sentinel_jobs::Spine;
use sentinel_jobs::db::backups::PlanRecord;
use sentinel_jobs::domain::backups::JournalStatus;
use sentinel_telemetry::{Shutdown, metric};

/// How often the gauges are refreshed.
pub const REFRESH: Duration = Duration::from_secs(10);

/// What the gauges say of one plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanStanding {
    pub rpo_secs: f64,
    pub rto_secs: Option<f64>,
    pub newest_good_age_secs: f64,
    pub breached: bool,
}

/// The standing of a plan with an RPO, given its newest good backup's start; `None` without an RPO.
pub fn standing(plan: &PlanRecord, newest_good: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<PlanStanding> {
    let rpo = f64::from(plan.objectives.rpo_minutes?) * 60.0;
    let since = newest_good.unwrap_or(plan.created_at);
    let age = ((now - since).num_milliseconds() as f64 / 1000.0).max(0.0);
    Some(PlanStanding {
        rpo_secs: rpo,
        rto_secs: plan.objectives.rto_minutes.map(|m| f64::from(m) * 60.0),
        newest_good_age_secs: age,
        breached: age > rpo,
    })
}

/// Refreshes the gauges until `shutdown` fires.
pub async fn run(spine: Spine, shutdown: Shutdown) {
    loop {
        if let Err(e) = refresh(&spine).await {
            tracing::warn!(error = %e, "backup objectives not refreshed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

async fn refresh(spine: &Spine) -> Result<(), sentinel_jobs::db::DbError> {
    let store = spine.db().backups();
    let mut after = None;
    loop {
        let page = store.all_plans(after, 500).await?;
        for plan in page.iter().filter(|p| p.objectives.rpo_minutes.is_some()) {
            let verified = store.newest_verified_of_plan(plan.id).await?;
            let newest = if plan.objectives.verify_every.is_some() {
                verified.as_ref().map(|e| e.started_at)
            } else {
                store.last_backup_of_plan(plan.id, JournalStatus::Succeeded).await?.map(|e| e.started_at)
            };
            if let Some(s) = standing(plan, newest, Utc::now()) {
                let labels = [("plan", plan.id.to_string()), ("plan_name", plan.name.clone())];
                metrics::gauge!(metric::BACKUP_RPO, &labels).set(s.rpo_secs);
                if let Some(rto) = s.rto_secs {
                    metrics::gauge!(metric::BACKUP_RTO, &labels).set(rto);
                }
                metrics::gauge!(metric::BACKUP_NEWEST_GOOD_AGE, &labels).set(s.newest_good_age_secs);
                metrics::gauge!(metric::BACKUP_RPO_BREACHED, &labels).set(if s.breached { 1.0 } else { 0.0 });
                // And an alert, through the same path as every other (routing, silences, pages).
                spine
                    .db()
                    .monitoring()
                    .backup_objective(plan.id, s.breached, s.newest_good_age_secs, Utc::now())
                    .await?;
                if let Some(measured) = verified.and_then(|e| e.rto_seconds) {
                    metrics::gauge!(metric::BACKUP_MEASURED_RTO, &labels).set(measured);
                }
            }
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;
    use sentinel_jobs::domain::backups::{BackupType, PlanEncryption, PlanObjectives};
    use uuid::Uuid;

    use super::*;

    fn plan(rpo: Option<u32>, rto: Option<u32>, created_at: DateTime<Utc>) -> PlanRecord {
        PlanRecord {
            id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            name: "nightly".into(),
            target_id: Uuid::now_v7(),
            destination_ids: vec![Uuid::now_v7()],
            cron: Some("0 * * * *".into()),
            timezone: "UTC".into(),
            backup_type: BackupType::Full,
            compression: Default::default(),
            encryption: PlanEncryption::None,
            retention: Default::default(),
            objectives: PlanObjectives { rpo_minutes: rpo, rto_minutes: rto, ..Default::default() },
            enabled: true,
            schedule_id: None,
            created_by: None,
            created_at,
            updated_at: created_at,
        }
    }

    #[test]
    fn the_newest_good_backups_age_is_held_against_the_rpo() {
        let now = Utc::now();
        let hourly = plan(Some(60), Some(30), now - Span::days(3));
        let fresh = standing(&hourly, Some(now - Span::minutes(20)), now).expect("an RPO");
        assert_eq!((fresh.rpo_secs, fresh.rto_secs, fresh.breached), (3600.0, Some(1800.0), false));
        assert!((fresh.newest_good_age_secs - 1200.0).abs() < 1.0);
        let stale = standing(&hourly, Some(now - Span::minutes(61)), now).expect("an RPO");
        assert!(stale.breached);
        // Never backed up: the promise runs from the plan's creation.
        let never = standing(&hourly, None, now).expect("an RPO");
        assert!(never.breached && never.newest_good_age_secs >= 3.0 * 86_400.0);
        let young = plan(Some(60), None, now - Span::minutes(5));
        assert!(!standing(&young, None, now).expect("an RPO").breached);
        assert_eq!(standing(&plan(None, Some(30), now), None, now), None, "no RPO, nothing to export");
    }
}
