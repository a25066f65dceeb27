//! The CSV import's write side: rows matched on `provider_ref` become creations, updates or nothing,
//! all in one transaction (or none, for a dry run), each creation and update with its history row.

use std::collections::HashMap;

use chrono::{SubsecRound, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use sentinel_domain::inventory::import::ImportRow;
use sentinel_domain::inventory::{DEFAULT_SSH_PORT, DEFAULT_SSH_USER};
use serde_json::Value;
use uuid::Uuid;

use super::server_writes::{ServerDraft, to_model, update_fenced};
use super::{InventoryStore, ServerRecord, history};
use crate::entity::servers;
use crate::{DbError, unique};

/// What an import did (or, for a dry run, would do) to one row.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportChange {
    pub row: usize,
    pub provider_ref: String,
    /// The server's id (for a dry run's creations, the id it would have had: not kept).
    pub server_id: Uuid,
    /// `created`, `updated` or `unchanged`.
    pub action: &'static str,
    /// For updates: the changed fields, before and after.
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Counts and per-row changes of an import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOutcome {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Creations and updates, in file order (unchanged rows are only counted).
    pub changes: Vec<ImportChange>,
}

/// From this many rows, the import reads the organization's whole inventory (by pages of `PAGE`).
const WHOLE_ORG_FROM: usize = 1000;
const PAGE: u64 = 5000;

/// Rows per lookup and per multi-row insert (a server row binds 27 parameters; SQLite allows 32,766).
const CHUNK: usize = 400;

/// `row` applied to the stored server: only the columns the file has replace stored values.
fn apply(row: &ImportRow, old: &ServerRecord) -> ServerRecord {
    let mut new = old.clone();
    new.ip.clone_from(&row.ip);
    if let Some(v) = &row.name {
        new.name.clone_from(v);
    }
    if let Some(v) = &row.region {
        new.region.clone_from(v);
    }
    if let Some(v) = &row.labels {
        new.labels.clone_from(v);
    }
    if let Some(v) = &row.ssh_user {
        new.ssh_user.clone_from(v);
    }
    if let Some(v) = row.ssh_port {
        new.ssh_port = v;
    }
    if let Some(v) = &row.notes {
        new.notes.clone_from(v);
    }
    if let Some(key) = &row.host_key
        && !new.host_keys.contains(&key.line())
    {
        new.host_keys = vec![key.line()];
    }
    new
}

fn draft(row: &ImportRow) -> ServerDraft {
    ServerDraft {
        provider_ref: row.provider_ref.clone(),
        name: row.name.clone().unwrap_or_else(|| row.provider_ref.clone()),
        ip: row.ip.clone(),
        ssh_port: row.ssh_port.unwrap_or(DEFAULT_SSH_PORT),
        ssh_user: row.ssh_user.clone().unwrap_or_else(|| DEFAULT_SSH_USER.to_owned()),
        region: row.region.clone().unwrap_or_default(),
        labels: row.labels.clone().unwrap_or_default(),
        notes: row.notes.clone().unwrap_or_default(),
        host_keys: row.host_key.iter().map(|k| k.line()).collect(),
        accept_new_host_key: false,
        ssh_credential_id: None,
    }
}

impl InventoryStore {
    /// Imports validated rows into `org`'s inventory. With `dry_run`, nothing is written. A concurrent
    /// import of the same servers makes this one fail as a whole (`Duplicate` or `Conflict`).
    pub async fn import_servers(
        &self,
        org: Uuid,
        rows: &[ImportRow],
        actor: &str,
        dry_run: bool,
    ) -> Result<ImportOutcome, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut existing: HashMap<String, ServerRecord> = HashMap::with_capacity(rows.len());
        if rows.len() < WHOLE_ORG_FROM {
            for chunk in rows.chunks(CHUNK) {
                let refs = chunk.iter().map(|r| r.provider_ref.clone());
                for m in servers::Entity::find()
                    .filter(servers::Column::OrgId.eq(org))
                    .filter(servers::Column::ProviderRef.is_in(refs))
                    .all(&txn)
                    .await?
                {
                    let rec = ServerRecord::try_from(m)?;
                    existing.insert(rec.provider_ref.clone(), rec);
                }
            }
        } else {
            // A large file is most of the inventory: one ordered pass over the organization's servers
            // is cheaper than many long IN lists (which a generic plan may evaluate row by row).
            let wanted: std::collections::HashSet<&str> = rows.iter().map(|r| r.provider_ref.as_str()).collect();
            let mut after: Option<Uuid> = None;
            loop {
                let mut q = servers::Entity::find().filter(servers::Column::OrgId.eq(org));
                if let Some(cursor) = after {
                    q = q.filter(servers::Column::Id.gt(cursor));
                }
                let page = q.order_by_asc(servers::Column::Id).limit(PAGE).all(&txn).await?;
                let full = page.len() as u64 == PAGE;
                after = page.last().map(|m| m.id);
                for m in page {
                    if wanted.contains(m.provider_ref.as_str()) {
                        let rec = ServerRecord::try_from(m)?;
                        existing.insert(rec.provider_ref.clone(), rec);
                    }
                }
                if !full {
                    break;
                }
            }
        }
        let now = Utc::now().trunc_subsecs(6);
        let mut outcome = ImportOutcome::default();
        let mut creations = Vec::new();
        let mut updates = Vec::new();
        for row in rows {
            match existing.get(&row.provider_ref) {
                None => {
                    let rec = draft(row).into_record(org, now);
                    outcome.created += 1;
                    outcome.changes.push(ImportChange {
                        row: row.row,
                        provider_ref: row.provider_ref.clone(),
                        server_id: rec.id,
                        action: "created",
                        before: None,
                        after: None,
                    });
                    creations.push(rec);
                }
                Some(old) => {
                    let new = apply(row, old);
                    if new.snapshot() == old.snapshot() {
                        outcome.unchanged += 1;
                        continue;
                    }
                    let (before, after) = old.diff(&new);
                    outcome.updated += 1;
                    outcome.changes.push(ImportChange {
                        row: row.row,
                        provider_ref: row.provider_ref.clone(),
                        server_id: old.id,
                        action: "updated",
                        before: Some(before),
                        after: Some(after),
                    });
                    updates.push((old, new));
                }
            }
        }
        if dry_run {
            txn.rollback().await?;
            return Ok(outcome);
        }
        let mut entries = Vec::with_capacity(creations.len() + updates.len());
        for chunk in creations.chunks(CHUNK) {
            let models = chunk.iter().map(|r| servers::ActiveModel::from(to_model(r)).reset_all());
            servers::Entity::insert_many(models).exec_without_returning(&txn).await.map_err(unique)?;
            entries.extend(chunk.iter().map(|r| history::entry(None, r, actor, "import_create", None, None)));
        }
        for (old, new) in updates {
            let saved = update_fenced(&txn, old, new).await?;
            entries.push(history::entry(Some(old), &saved, actor, "import_update", None, None));
        }
        history::insert_all(&txn, entries).await?;
        txn.commit().await?;
        Ok(outcome)
    }
}
