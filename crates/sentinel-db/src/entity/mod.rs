//! sea-orm entities, one module per table.

pub mod api_keys;
pub mod audit_log;
pub mod backup_destinations;
pub mod backup_journal;
pub mod backup_plans;
pub mod backup_targets;
pub mod config_versions;
pub mod configs;
pub mod job_events;
pub mod jobs;
pub mod monitor_check_results;
pub mod monitor_rollups;
pub mod monitor_sweeps;
pub mod monitor_targets;
pub mod organizations;
pub mod provision_run_hosts;
pub mod provision_runs;
pub mod schedule_firings;
pub mod scheduler_leases;
pub mod schedules;
pub mod secrets;
pub mod server_history;
pub mod servers;
pub mod sessions;
pub mod ssh_credentials;
pub mod users;
