//! sea-orm entities, one module per table.

pub mod api_keys;
pub mod audit_log;
pub mod job_events;
pub mod jobs;
pub mod organizations;
pub mod sessions;
pub mod users;
