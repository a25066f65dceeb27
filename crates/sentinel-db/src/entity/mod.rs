//! sea-orm entities, one module per table.

pub mod job_events;
pub mod jobs;
