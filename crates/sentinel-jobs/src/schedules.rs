//! Schedule definitions as the API and the built-in periodic work describe them: validation against
//! the catalog and the trigger rules, the first tick, and the built-in schedules kept in step with
//! configuration.

use chrono::{DateTime, Utc};
use sentinel_config::Settings;
use sentinel_db::{DbError, ScheduleDraft, ScheduleRecord};
use sentinel_domain::schedule::{MisfirePolicy, Trigger, parse_timezone};
use sentinel_domain::{JobKind, Priority, builtin};
use serde_json::Value;
use uuid::Uuid;

use crate::{FieldError, Spine};

/// The longest jitter a schedule may ask for (one hour).
pub const MAX_JITTER_MS: u64 = 3_600_000;
/// The longest schedule name.
pub const MAX_NAME_LEN: usize = 128;

/// A schedule as a caller defines it (the API body, or a capability's own schedule).
#[derive(Debug, Clone)]
pub struct ScheduleInput {
    pub name: String,
    pub cron: Option<String>,
    pub interval_secs: Option<u64>,
    pub timezone: Option<String>,
    pub kind: String,
    pub payload: Value,
    pub priority: Priority,
    pub enabled: bool,
    pub misfire_policy: MisfirePolicy,
    pub jitter_ms: u64,
    pub end_at: Option<DateTime<Utc>>,
}

/// The first tick strictly after `after`, if the schedule is enabled and has not ended by then.
pub fn next_tick(
    trigger: &Trigger,
    after: DateTime<Utc>,
    end_at: Option<DateTime<Utc>>,
    enabled: bool,
) -> Option<DateTime<Utc>> {
    if !enabled {
        return None;
    }
    trigger.next_after(after).filter(|t| end_at.is_none_or(|end| *t <= end))
}

impl Spine {
    /// Validates `input` (every invalid field reported at once) and builds the row to store. Interval
    /// ticks are anchored at `anchor` (to the millisecond); the first tick is the next one after `now`.
    /// An `end_at` in the past is accepted (the schedule simply has no next tick); the API refuses one
    /// in new input.
    pub fn schedule_draft(
        &self,
        input: ScheduleInput,
        org_id: Option<Uuid>,
        owner: Option<String>,
        created_by: Option<String>,
        anchor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ScheduleDraft, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            errors.push(FieldError::new("name", format!("must be 1 to {MAX_NAME_LEN} characters")));
        }
        // Milliseconds: every database stores them exactly, so the claim's equality test on ticks holds.
        let anchor = DateTime::from_timestamp_millis(anchor.timestamp_millis()).unwrap_or(anchor);
        // The zone is checked on its own first, so a bad zone and a bad expression are both reported.
        let zone_error = input.timezone.as_deref().and_then(|tz| parse_timezone(tz).err());
        let zone = if zone_error.is_some() { Some("UTC") } else { input.timezone.as_deref() };
        if let Some(e) = zone_error {
            errors.push(FieldError::new(e.field, e.reason));
        }
        let trigger = match Trigger::new(input.cron.as_deref(), input.interval_secs, zone, anchor) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(FieldError::new(e.field, e.reason));
                None
            }
        };
        let kind = match JobKind::parse(&input.kind) {
            Ok(kind) => match self.catalog().get(&kind) {
                // Internal kinds fire only from schedules a capability owns (built-ins, backup plans).
                Some(spec) if org_id.is_some() && spec.internal && owner.is_none() => {
                    errors.push(FieldError::new("kind", format!("{kind} is reserved for built-in schedules")));
                    None
                }
                Some(spec) => {
                    if let Err(payload_errors) = (spec.validate)(&input.payload) {
                        errors.extend(payload_errors);
                    }
                    Some(kind)
                }
                None => {
                    let known: Vec<String> =
                        self.catalog().kinds().filter(|k| !k.internal).map(|k| k.kind.to_string()).collect();
                    errors.push(FieldError::new(
                        "kind",
                        format!("unknown job kind {kind}; known kinds: {}", known.join(", ")),
                    ));
                    None
                }
            },
            Err(e) => {
                errors.push(FieldError::new("kind", e.to_string()));
                None
            }
        };
        if input.jitter_ms > MAX_JITTER_MS {
            errors.push(FieldError::new("jitter_ms", format!("must be at most {MAX_JITTER_MS} (one hour)")));
        }
        // Jitter must stay below the time between ticks, or runs would queue behind each other's delay.
        if let Some(t) = &trigger
            && input.jitter_ms > 0
            && let [first, second] = t.upcoming(now, 2)[..]
        {
            let period = (second - first).num_milliseconds().max(0) as u64;
            if input.jitter_ms >= period {
                errors.push(FieldError::new(
                    "jitter_ms",
                    format!("must be shorter than the time between ticks ({period} ms)"),
                ));
            }
        }
        let (Some(trigger), Some(job_kind), true) = (trigger, kind, errors.is_empty()) else {
            return Err(errors);
        };
        let timezone = match &trigger {
            Trigger::Cron(c) => c.timezone().name().to_owned(),
            Trigger::Interval(_) => input.timezone.unwrap_or_else(|| "UTC".to_owned()),
        };
        Ok(ScheduleDraft {
            org_id,
            name,
            owner,
            cron: input.cron.map(|c| c.trim().to_owned()),
            interval_secs: input.interval_secs,
            timezone,
            anchor_at: anchor,
            job_kind,
            payload: input.payload,
            priority: input.priority,
            enabled: input.enabled,
            misfire_policy: input.misfire_policy,
            jitter_ms: input.jitter_ms,
            end_at: input.end_at,
            next_fire_at: next_tick(&trigger, now, input.end_at, input.enabled),
            created_by,
        })
    }

    /// Creates or updates the built-in schedules from configuration (an interval of 0 disables one).
    /// Every scheduler replica calls this at start; the owner key makes it idempotent.
    pub async fn ensure_builtin_schedules(&self) -> Result<Vec<ScheduleRecord>, DbError> {
        let store = self.db().schedules();
        let now = Utc::now();
        let mut out = Vec::new();
        for (owner, name, kind, every) in builtin_schedules(self.settings()) {
            let input = ScheduleInput {
                name: name.to_owned(),
                cron: None,
                interval_secs: Some(every.max(1)),
                timezone: None,
                kind: kind.to_owned(),
                payload: Value::Object(Default::default()),
                priority: Priority::Normal,
                enabled: every > 0,
                misfire_policy: MisfirePolicy::Skip,
                jitter_ms: 0,
                end_at: None,
            };
            // Anchored at the epoch, so ticks fall on round multiples of the interval on every replica.
            let draft = self
                .schedule_draft(input, None, Some(owner.to_owned()), None, DateTime::UNIX_EPOCH, now)
                .map_err(|e| DbError::Corrupt(format!("built-in schedule {owner}: {e:?}")))?;
            out.push(store.upsert_owned(draft).await?);
        }
        Ok(out)
    }
}

/// Owner keys of the built-in schedules start with this; their jobs carry the owner key as their
/// deduplication key, so a sweep is never queued again while the previous one is unfinished.
pub const BUILTIN_OWNER_PREFIX: &str = "builtin:";

/// The built-in periodic work: (owner, name, job kind, interval in seconds).
pub fn builtin_schedules(settings: &Settings) -> [(&'static str, &'static str, &'static str, u64); 7] {
    let s = &settings.scheduler;
    [
        (
            "builtin:metric-evaluation",
            "Evaluate metric alert rules",
            builtin::MONITOR_EVALUATE_METRICS,
            s.metric_eval_interval_secs,
        ),
        (
            "builtin:heartbeat-check",
            "Check machine heartbeats",
            builtin::MONITOR_CHECK_HEARTBEATS,
            s.heartbeat_check_interval_secs,
        ),
        (
            "builtin:http-check-dispatch",
            "Dispatch due HTTP checks",
            builtin::MONITOR_DISPATCH_HTTP_CHECKS,
            s.http_check_dispatch_interval_secs,
        ),
        ("builtin:retention", "Delete expired job data", builtin::SYSTEM_RETENTION, s.retention_interval_secs),
        (
            "builtin:reservation-expiry",
            "End expired server reservations",
            builtin::INVENTORY_EXPIRE_RESERVATIONS,
            s.reservation_expiry_interval_secs,
        ),
        (
            "builtin:backup-janitor",
            "Remove what killed backups left on destinations",
            sentinel_domain::backups::JANITOR_KIND,
            s.backup_janitor_interval_secs,
        ),
        (
            "builtin:monitor-rollup",
            "Roll up HTTP check results and trim raw ones",
            sentinel_domain::monitoring::ROLLUP_KIND,
            s.monitor_rollup_interval_secs,
        ),
    ]
}
