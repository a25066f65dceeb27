//! Integration tests of the job spine on both deployments: SQLite + in-process bus (embedded) and
//! PostgreSQL + Redis Streams (distributed).

mod helpers;
mod provisioning;
mod runtime;
mod schedules;
mod store;
mod vault;
