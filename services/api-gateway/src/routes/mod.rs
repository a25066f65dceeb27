//! Route handlers, one module per resource.

pub mod access;
pub mod jobs;
pub mod jobs_batch;
pub mod schedules;
pub mod streams;
pub mod tasks;

use sentinel_db::DbError;
use sentinel_jobs::{EnqueueError, db as sentinel_db};

use crate::Problem;

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
