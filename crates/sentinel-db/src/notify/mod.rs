//! The notification store: channels (credential sealed in the secret store), each organization's
//! routing policy, silences and maintenance windows, the evaluation of notification groups (which
//! writes the outbox), and the outbox itself — claimed with a lease, retried with backoff, kept as
//! the notification log.

mod channels;
mod disruptions;
mod engine;
mod mutes;
mod outbox;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use sentinel_domain::notify::{ChannelSpec, Matcher, MuteSchedule};
use uuid::Uuid;

pub use engine::EvaluationReport;
pub use mutes::PolicyRecord;
pub use outbox::{Delivery, DeliveryOutcome, LogFilter, NotificationRecord};

/// Who owns a channel's sealed credential (deleted with it; checked when the worker opens it).
pub fn channel_secret_owner(id: Uuid) -> String {
    format!("notify_channel:{id}")
}

/// A channel as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub spec: ChannelSpec,
    /// The sealed credential (password, Slack URL or signing secret), if any.
    pub secret_id: Option<Uuid>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Silence or maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuteKind {
    Silence,
    Maintenance,
}

impl MuteKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Silence => "silence",
            Self::Maintenance => "maintenance",
        }
    }
}

/// A silence or a maintenance window as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MuteRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    /// A silence's comment, a window's name.
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub schedule: MuteSchedule,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The notification store.
#[derive(Clone)]
pub struct NotifyStore {
    conn: DatabaseConnection,
}

impl NotifyStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}
