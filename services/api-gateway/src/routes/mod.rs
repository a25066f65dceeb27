//! Route handlers, one module per resource.

pub mod access;
pub mod backup_destinations;
pub mod backup_journal;
pub mod backup_plan_actions;
pub mod backup_plans;
pub mod backup_restores;
pub mod backup_shared;
pub mod backup_targets;
pub mod backup_uploads;
pub mod configs;
pub mod dead_letters;
pub mod jobs;
pub mod jobs_batch;
pub mod monitor_dashboard;
pub mod monitor_heartbeats;
pub mod monitor_incidents;
pub mod monitor_ingest;
pub mod monitor_machines;
pub mod monitor_results;
pub mod monitor_settings;
pub mod monitor_stream;
pub mod monitor_targets;
pub mod monitor_thresholds;
pub mod notify_channels;
pub mod notify_log;
pub mod notify_mutes;
pub mod notify_policy;
pub mod pings;
pub mod playbooks;
pub mod previews;
pub mod provision_run_create;
pub mod provision_runs;
pub mod reservations;
pub mod schedules;
pub mod server_history;
pub mod server_import;
pub mod servers;
pub mod ssh_keys;
pub mod streams;
pub mod tasks;

use actix_web::{Resource, web};
use sentinel_db::DbError;
use sentinel_jobs::{EnqueueError, db as sentinel_db};

use crate::Problem;

/// A resource at `path` (one per path, so that a method it has no route for answers 405 with
/// `Allow`, instead of falling through to 404).
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(crate::problem::method_not_allowed))
}

impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(what) => Problem::not_found(&what),
            DbError::Duplicate => Problem::conflict("already exists"),
            DbError::Conflict(detail) => Problem::conflict(detail),
            other if other.is_unavailable() => Problem::database_unavailable(),
            other => Problem::internal(&other),
        }
    }
}

impl From<EnqueueError> for Problem {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::UnknownKind(kind) => Problem::invalid_field("kind", format!("unknown job kind {kind:?}")),
            EnqueueError::InvalidPayload(errors) => Problem::invalid(errors),
            EnqueueError::Store(e) => e.into(),
        }
    }
}
