//! Database migrations for Sentinel, written once with sea-query so they run on PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;

mod m0001_jobs;
mod m0002_access;
mod m0003_schedules;
mod m0004_inventory;
mod m0005_configs;
mod m0006_server_pick_index;
mod m0007_provisioning;
mod m0008_backups;
mod m0009_backup_objectives;
mod m0010_backup_verification;
mod m0011_monitoring_targets;
mod m0012_monitoring_alerts;
mod m0013_monitoring_metrics;
mod m0014_monitoring_dashboard;
mod m0015_monitoring_thresholds;
mod m0016_monitoring_heartbeats;
mod m0017_notifications;
mod m0018_lean_job_writes;

pub use sea_orm_migration::MigratorTrait;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_jobs::Migration),
            Box::new(m0002_access::Migration),
            Box::new(m0003_schedules::Migration),
            Box::new(m0004_inventory::Migration),
            Box::new(m0005_configs::Migration),
            Box::new(m0006_server_pick_index::Migration),
            Box::new(m0007_provisioning::Migration),
            Box::new(m0008_backups::Migration),
            Box::new(m0009_backup_objectives::Migration),
            Box::new(m0010_backup_verification::Migration),
            Box::new(m0011_monitoring_targets::Migration),
            Box::new(m0012_monitoring_alerts::Migration),
            Box::new(m0013_monitoring_metrics::Migration),
            Box::new(m0014_monitoring_dashboard::Migration),
            Box::new(m0015_monitoring_thresholds::Migration),
            Box::new(m0016_monitoring_heartbeats::Migration),
            Box::new(m0017_notifications::Migration),
            Box::new(m0018_lean_job_writes::Migration),
        ]
    }
}
