//! The job spine: enqueue (database row + bus message, repaired by an outbox relay), the catalog of job
//! kinds, and the worker runtime that runs handlers with leases, fencing, retries, cancel and dead letters.

mod acks;
mod attempt_log;
mod availability;
mod broadcast;
mod builtin;
mod catalog;
mod command;
mod context;
mod enqueue;
mod group_commit;
mod relay;
mod schedules;
pub mod service;
mod spine;
mod vault;
mod worker;

pub use availability::DbAvailability;
pub use builtin::{DemoSleep, FaultCrash, FaultFail, Retention, builtin_handlers};
pub use catalog::{Catalog, FieldError, KindSpec};
pub use command::CommandOutcome;
pub use context::{JobContext, JobError};
pub use enqueue::{EnqueueError, EnqueueManyError, EnqueueRequest, Enqueued};
pub use group_commit::{GroupCommit, ReservationCommitter, reservation_committer};
pub use relay::Relay;
pub use schedules::{BUILTIN_OWNER_PREFIX, MAX_JITTER_MS, MAX_NAME_LEN, ScheduleInput, builtin_schedules, next_tick};
pub use sentinel_secrets as secrets;
pub use spine::{Spine, SpineError, SpineReadiness};
pub use vault::{Vault, VaultError};
pub use worker::{JobHandler, Worker, WorkerOptions};

pub use sentinel_bus as bus;
pub use sentinel_db as db;
pub use sentinel_domain as domain;
