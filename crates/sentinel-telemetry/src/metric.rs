//! Every metric name Sentinel exports, in one place.

pub const HTTP_REQUESTS: &str = "sentinel_http_requests_total";
pub const HTTP_DURATION: &str = "sentinel_http_request_duration_seconds";
pub const JOBS_STARTED: &str = "sentinel_jobs_started_total";
pub const JOBS_SUCCEEDED: &str = "sentinel_jobs_succeeded_total";
pub const JOBS_FAILED: &str = "sentinel_jobs_failed_total";
pub const JOBS_RETRIED: &str = "sentinel_jobs_retried_total";
pub const JOBS_DEAD_LETTERED: &str = "sentinel_jobs_dead_lettered_total";
pub const JOBS_CANCELLED: &str = "sentinel_jobs_cancelled_total";
pub const JOB_DURATION: &str = "sentinel_job_duration_seconds";
pub const QUEUE_WAIT: &str = "sentinel_queue_wait_seconds";
pub const STREAM_LENGTH: &str = "sentinel_stream_length";
pub const STREAM_PENDING: &str = "sentinel_stream_pending";
pub const STREAM_DELAYED: &str = "sentinel_stream_delayed";
pub const STREAM_OLDEST_PENDING_AGE: &str = "sentinel_stream_oldest_pending_age_seconds";
/// Jobs due and still queued, per queue (the scheduler reports it; a queue nobody consumes grows).
pub const QUEUE_WAITING: &str = "sentinel_queue_waiting_jobs";
/// Seconds the oldest due, still-queued job of a queue has waited.
pub const QUEUE_OLDEST_WAITING_AGE: &str = "sentinel_queue_oldest_waiting_seconds";
pub const OUTBOX_PUBLISHED: &str = "sentinel_outbox_published_total";
/// 1 on the scheduler replica that holds the lease, 0 on standbys.
pub const SCHEDULER_LEADER: &str = "sentinel_scheduler_leader";
/// Ticks claimed, by outcome (`fired`, `skipped`).
pub const SCHEDULE_FIRINGS: &str = "sentinel_schedule_firings_total";
/// Commit time of a firing minus its due time (tick plus jitter).
pub const SCHEDULE_LATENESS: &str = "sentinel_schedule_lateness_seconds";
/// Schedules loaded in the active scheduler.
pub const SCHEDULES_ACTIVE: &str = "sentinel_schedules_active";
/// Unix time of each backup plan's newest successful backup (`plan`, `plan_name`).
pub const BACKUP_LAST_SUCCESS: &str = "sentinel_backup_last_success_timestamp_seconds";
/// How long that backup took.
pub const BACKUP_LAST_DURATION: &str = "sentinel_backup_last_duration_seconds";
/// Its size, `form` = `plain` (what the tool wrote) or `stored` (after compression and encryption).
pub const BACKUP_LAST_SIZE: &str = "sentinel_backup_last_size_bytes";
/// Failed backup attempts by plan and `reason` (`database_unreachable`, `tool_failed`, `storage`…).
pub const BACKUP_FAILURES: &str = "sentinel_backup_failures_total";
/// A plan's recovery point objective, in seconds (plans that declare one), exported by the scheduler
/// from the journal, so that it stays visible when no backup worker runs.
pub const BACKUP_RPO: &str = "sentinel_backup_rpo_seconds";
/// A plan's recovery time objective, in seconds (plans that declare one).
pub const BACKUP_RTO: &str = "sentinel_backup_rto_seconds";
/// How old the newest good backup of a plan with an RPO is (its start: the data it holds), in
/// seconds; without any, since the plan was made. "Good" is verified for a plan that verifies its
/// backups (`verify_every`), succeeded for the others.
pub const BACKUP_NEWEST_GOOD_AGE: &str = "sentinel_backup_newest_good_age_seconds";
/// 1 while that age exceeds the plan's RPO, else 0.
pub const BACKUP_RPO_BREACHED: &str = "sentinel_backup_rpo_breached";
/// How long the restore of the plan's newest verified backup took, in seconds: the measured RTO.
pub const BACKUP_MEASURED_RTO: &str = "sentinel_backup_measured_rto_seconds";
/// Start of an HTTP check minus its deadline (the schedule accuracy of monitoring).
pub const CHECK_START_LATENESS: &str = "sentinel_check_start_lateness_seconds";
/// HTTP checks run, by `status` and `error_class`.
pub const CHECKS: &str = "sentinel_checks_total";
/// How long an HTTP check took (its response time, or until it failed).
pub const CHECK_DURATION: &str = "sentinel_check_duration_seconds";
/// HTTP checks running now in this process.
pub const CHECKS_IN_FLIGHT: &str = "sentinel_checks_in_flight";
