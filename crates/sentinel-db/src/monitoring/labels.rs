//! An alert's labels, computed once when it opens: what it is (rule, severity, source), the
//! incident it joined, and the inventory server its source belongs to (a target's linked server; a
//! machine's or metric's server by host name or address), which inhibition and the default grouping
//! (`group`) rely on.

use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter};
use sentinel_domain::notify::Labels;
use uuid::Uuid;

use super::transitions::NewAlert;
use crate::DbError;
use crate::entity::{monitor_machines, monitor_metrics, monitor_targets, servers};

/// The inventory server a machine reports for: the server of its organization named like its host
/// name, or with its address.
pub(super) async fn server_of_machine(
    conn: &impl ConnectionTrait,
    org: Uuid,
    machine: Uuid,
) -> Result<Option<Uuid>, DbError> {
    let Some(m) = monitor_machines::Entity::find_by_id(machine).one(conn).await? else { return Ok(None) };
    let found = servers::Entity::find()
        .filter(servers::Column::OrgId.eq(org))
        .filter(
            Condition::any().add(servers::Column::Name.eq(m.hostname.clone())).add(servers::Column::Ip.eq(m.hostname)),
        )
        .one(conn)
        .await?;
    Ok(found.map(|s| s.id))
}

/// The inventory server an alert's source belongs to.
pub(super) async fn server_of(
    conn: &impl ConnectionTrait,
    org: Uuid,
    source_kind: &str,
    source_id: Uuid,
) -> Result<Option<Uuid>, DbError> {
    match source_kind {
        "target" => Ok(monitor_targets::Entity::find_by_id(source_id).one(conn).await?.and_then(|t| t.server_id)),
        "machine" => server_of_machine(conn, org, source_id).await,
        "metric" => match monitor_metrics::Entity::find_by_id(source_id).one(conn).await? {
            Some(m) => server_of_machine(conn, org, m.machine_id).await,
            None => Ok(None),
        },
        // Backups and provisioning runs name their server themselves.
        _ => Ok(None),
    }
}

/// The labels of an alert about to open in `incident`.
pub(super) async fn labels_of(conn: &impl ConnectionTrait, a: &NewAlert, incident: Uuid) -> Result<Labels, DbError> {
    let server = match a.server_id {
        Some(s) => Some(s),
        None => server_of(conn, a.org_id, a.source_kind, a.source_id).await?,
    };
    let mut l = Labels::new();
    l.insert("alertname".into(), a.rule.to_owned());
    l.insert("severity".into(), a.severity.as_str().to_owned());
    l.insert("source".into(), a.source_kind.to_owned());
    l.insert("source_id".into(), a.source_id.to_string());
    l.insert("name".into(), a.title.clone());
    l.insert("incident".into(), incident.to_string());
    let group = match server {
        Some(s) => {
            l.insert("server".into(), s.to_string());
            format!("server:{s}")
        }
        None => format!("incident:{incident}"),
    };
    l.insert("group".into(), group);
    Ok(l)
}
