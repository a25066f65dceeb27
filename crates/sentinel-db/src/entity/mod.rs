//! sea-orm entities, one module per table.

pub mod api_keys;
pub mod audit_log;
pub mod job_events;
pub mod jobs;
pub mod organizations;
pub mod schedule_firings;
pub mod scheduler_leases;
pub mod schedules;
pub mod sessions;
pub mod users;
