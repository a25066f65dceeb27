//! The inventory store: servers (typed records, filtered lists, fenced edits with a history row per
//! action), their CSV import, their one lease (reservations, runs), and each server's history.

mod history;
mod import;
mod leases;
mod server_writes;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sentinel_domain::JobId;
use sentinel_domain::inventory::{LabelSelector, LabelTerm, Labels, LeaseKind, ServerStatus};
use serde_json::{Value, json};
use uuid::Uuid;

pub use history::HistoryRecord;
pub use import::{ImportChange, ImportOutcome};
pub use leases::{ReserveRequest, Reserved};
pub(crate) use server_writes::save_in;
pub use server_writes::{DeleteRefusal, ServerDraft};

use crate::DbError;
use crate::entity::servers;

/// The lease a server is held by.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: Uuid,
    pub kind: LeaseKind,
    pub holder: String,
    pub purpose: Option<String>,
    pub job_id: Option<JobId>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A server as read from the table, with typed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub provider_ref: String,
    pub name: String,
    pub ip: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    pub region: String,
    pub labels: Labels,
    pub notes: String,
    pub status: ServerStatus,
    /// Why the server is in `error` (set by the run that put it there).
    pub status_reason: Option<String>,
    pub last_action_at: Option<DateTime<Utc>>,
    /// Pinned host keys, `algorithm base64` each.
    pub host_keys: Vec<String>,
    /// Whether the first contact may pin the key it sees (only when none is pinned).
    pub accept_new_host_key: bool,
    pub ssh_credential_id: Option<Uuid>,
    pub lease: Option<Lease>,
    /// The status to return to when a lease ends without an outcome (a release, a cancelled run).
    pub status_before_lease: Option<ServerStatus>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ServerRecord {
    /// The fields an action can change, as history records them (before → after).
    pub fn snapshot(&self) -> BTreeMap<&'static str, Value> {
        BTreeMap::from([
            ("provider_ref", json!(self.provider_ref)),
            ("name", json!(self.name)),
            ("ip", json!(self.ip)),
            ("ssh_port", json!(self.ssh_port)),
            ("ssh_user", json!(self.ssh_user)),
            ("region", json!(self.region)),
            ("labels", json!(self.labels)),
            ("notes", json!(self.notes)),
            ("status", json!(self.status.as_str())),
            ("status_reason", json!(self.status_reason)),
            ("host_keys", json!(self.host_keys)),
            ("accept_new_host_key", json!(self.accept_new_host_key)),
            ("ssh_credential_id", json!(self.ssh_credential_id)),
            ("lease_id", json!(self.lease.as_ref().map(|l| l.id))),
        ])
    }

    /// The fields that differ between `self` (before) and `after`, as two JSON objects.
    pub fn diff(&self, after: &ServerRecord) -> (Value, Value) {
        let (a, b) = (self.snapshot(), after.snapshot());
        let mut before = serde_json::Map::new();
        let mut then = serde_json::Map::new();
        for (k, v) in a {
            if b.get(k) != Some(&v) {
                before.insert(k.to_owned(), v);
                then.insert(k.to_owned(), b.get(k).cloned().unwrap_or(Value::Null));
            }
        }
        (Value::Object(before), Value::Object(then))
    }
}

impl TryFrom<servers::Model> for ServerRecord {
    type Error = DbError;
    fn try_from(m: servers::Model) -> Result<Self, DbError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| DbError::Corrupt(format!("server {}: {what}: {e}", m.id));
        let lease = match (m.lease_id, m.lease_kind.as_deref()) {
            (Some(id), Some(kind)) => Some(Lease {
                id,
                kind: kind.parse().map_err(|e| corrupt("lease_kind", &e))?,
                holder: m.lease_holder.clone().unwrap_or_default(),
                purpose: m.lease_purpose.clone(),
                job_id: m.lease_job_id.map(JobId::from_uuid),
                expires_at: m.lease_expires_at,
            }),
            _ => None,
        };
        Ok(Self {
            id: m.id,
            org_id: m.org_id,
            provider_ref: m.provider_ref,
            name: m.name,
            ip: m.ip,
            ssh_port: u16::try_from(m.ssh_port).map_err(|e| corrupt("ssh_port", &e))?,
            ssh_user: m.ssh_user,
            region: m.region,
            labels: serde_json::from_value(m.labels).map_err(|e| corrupt("labels", &e))?,
            notes: m.notes,
            status: m.status.parse().map_err(|e| corrupt("status", &e))?,
            status_reason: m.status_reason,
            last_action_at: m.last_action_at,
            host_keys: serde_json::from_value(m.host_keys).map_err(|e| corrupt("host_keys", &e))?,
            accept_new_host_key: m.accept_new_host_key,
            ssh_credential_id: m.ssh_credential_id,
            lease,
            status_before_lease: m
                .status_before_lease
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| corrupt("status_before_lease", &e))?,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// What `GET /servers` filters on; every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct ServerFilter {
    pub status: Option<ServerStatus>,
    pub selector: LabelSelector,
    pub region: Option<String>,
    /// Free text, matched as a substring of the name, IP or provider id (case-insensitive).
    pub text: Option<String>,
}

/// `LIKE` pattern text with `%`, `_` and the escape character escaped.
fn like_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn like(pattern: String) -> LikeExpr {
    LikeExpr::new(pattern).escape('\\')
}

impl ServerFilter {
    pub(crate) fn condition(&self) -> Condition {
        let mut cond = Condition::all();
        if let Some(status) = self.status {
            cond = cond.add(servers::Column::Status.eq(status.as_str()));
        }
        if let Some(region) = &self.region {
            cond = cond.add(servers::Column::Region.eq(region.as_str()));
        }
        // Keys and values cannot hold `,` or `=` (checked by the domain), so `,k=v,` matches exactly.
        for term in &self.selector.0 {
            let col = || Expr::col(servers::Column::LabelIndex);
            cond = cond.add(match term {
                LabelTerm::Equals(k, v) => col().like(like(format!("%,{}={},%", like_escaped(k), like_escaped(v)))),
                LabelTerm::NotEquals(k, v) => {
                    col().not_like(like(format!("%,{}={},%", like_escaped(k), like_escaped(v))))
                }
                LabelTerm::Exists(k) => col().like(like(format!("%,{}=%", like_escaped(k)))),
                LabelTerm::Absent(k) => col().not_like(like(format!("%,{}=%", like_escaped(k)))),
            });
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            let pattern = format!("%{}%", like_escaped(&text.to_lowercase()));
            let lower = |c: servers::Column| Expr::expr(sea_orm::sea_query::Func::lower(Expr::col(c)));
            cond = cond.add(
                Condition::any()
                    .add(lower(servers::Column::Name).like(like(pattern.clone())))
                    .add(lower(servers::Column::Ip).like(like(pattern.clone())))
                    .add(lower(servers::Column::ProviderRef).like(like(pattern))),
            );
        }
        cond
    }
}

/// Repository of servers, their leases and history.
#[derive(Clone, Debug)]
pub struct InventoryStore {
    pub(crate) conn: DatabaseConnection,
}

impl InventoryStore {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Whether the store is the embedded SQLite file (one writer at a time).
    pub fn is_sqlite(&self) -> bool {
        self.conn.get_database_backend() == sea_orm::DbBackend::Sqlite
    }

    /// A server of `org` (servers of other organizations do not exist for the caller).
    pub async fn get_server(&self, org: Uuid, id: Uuid) -> Result<Option<ServerRecord>, DbError> {
        servers::Entity::find_by_id(id)
            .filter(servers::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(ServerRecord::try_from)
            .transpose()
    }

    /// Servers of `org` matching `filter`, in creation order after the cursor `after` (a server id).
    pub async fn list_servers(
        &self,
        org: Uuid,
        filter: &ServerFilter,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<ServerRecord>, DbError> {
        let mut q = servers::Entity::find().filter(servers::Column::OrgId.eq(org)).filter(filter.condition());
        if let Some(cursor) = after {
            q = q.filter(servers::Column::Id.gt(cursor));
        }
        q.order_by_asc(servers::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ServerRecord::try_from)
            .collect()
    }

    /// Servers of `org` among `ids` (missing ones are absent), in id order.
    pub async fn servers_by_id(&self, org: Uuid, ids: &[Uuid]) -> Result<Vec<ServerRecord>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        servers::Entity::find()
            .filter(servers::Column::OrgId.eq(org))
            .filter(servers::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(servers::Column::Id)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(ServerRecord::try_from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_escaped("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
