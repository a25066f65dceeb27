//! Metric ingest and what it feeds: a batch is written in one transaction — its ingest key first,
//! so a replay finds it and is answered as the first time without counting anything again — the
//! machine and its metric instances created on first sight, each instance's latest value, and one
//! sample per instance and instant. Then the machines and metrics lists, one machine's latest
//! values, one metric's series, and its alerting and pause switches.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};
use sentinel_domain::monitoring::metrics::{Batch, MetricKind};
use sentinel_domain::monitoring::thresholds::{MetricState, Threshold};
use serde_json::{Value, json};
use uuid::Uuid;

use super::MonitoringStore;
use crate::DbError;
use crate::entity::{monitor_ingests, monitor_machines, monitor_metrics, monitor_samples};

/// What an ingest answered.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// The ingest key was seen before: nothing was written, `response` is the first answer.
    pub replayed: bool,
    pub response: Value,
}

/// A machine as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRecord {
    pub id: Uuid,
    pub hostname: String,
    pub os: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A metric instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
    pub id: Uuid,
    pub machine_id: Uuid,
    pub name: String,
    pub kind: MetricKind,
    pub unit: Option<String>,
    pub last_value: Option<Value>,
    pub last_at: Option<DateTime<Utc>>,
    pub alerting_enabled: bool,
    pub paused: bool,
    /// ok, warning, critical or nodata.
    pub state: MetricState,
    pub threshold: Option<Threshold>,
    /// The alert it has firing, if any.
    pub open_alert_id: Option<Uuid>,
}

/// One sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePoint {
    pub at: DateTime<Utc>,
    pub value: Value,
}

pub(super) fn value_of(kind: MetricKind, num: Option<f64>, text: Option<String>) -> Option<Value> {
    match kind {
        MetricKind::Numeric => num.map(|n| json!(n)),
        MetricKind::Boolean => text.map(|t| Value::Bool(t == "true")),
        MetricKind::String => text.map(Value::String),
    }
}

impl From<monitor_machines::Model> for MachineRecord {
    fn from(m: monitor_machines::Model) -> Self {
        Self { id: m.id, hostname: m.hostname, os: m.os, first_seen_at: m.first_seen_at, last_seen_at: m.last_seen_at }
    }
}

impl TryFrom<monitor_metrics::Model> for MetricRecord {
    type Error = DbError;
    fn try_from(m: monitor_metrics::Model) -> Result<Self, DbError> {
        let kind = MetricKind::parse(&m.kind).map_err(|e| DbError::Corrupt(format!("metric {}: {e}", m.id)))?;
        let threshold = m
            .threshold
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("metric {}: threshold: {e}", m.id)))?;
        Ok(Self {
            state: MetricState::parse(&m.state).map_err(|e| DbError::Corrupt(format!("metric {}: {e}", m.id)))?,
            threshold,
            open_alert_id: m.open_alert_id,
            last_value: value_of(kind, m.last_value_num, m.last_value_text),
            id: m.id,
            machine_id: m.machine_id,
            name: m.name,
            kind,
            unit: m.unit,
            last_at: m.last_at,
            alerting_enabled: m.alerting_enabled,
            paused: m.paused,
        })
    }
}

impl MonitoringStore {
    /// Writes one batch for `org`, once per `ingest_id`.
    pub async fn ingest(&self, org: Uuid, ingest_id: Option<&str>, batch: &Batch) -> Result<IngestOutcome, DbError> {
        let now = Utc::now().trunc_subsecs(6);
        let at = batch.sent_at.trunc_subsecs(6);
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        if let Some(key) = ingest_id {
            let claimed = monitor_ingests::Entity::insert(monitor_ingests::ActiveModel {
                org_id: Set(org),
                ingest_id: Set(key.to_owned()),
                received_at: Set(now),
                response: Set(Value::Null),
            })
            .on_conflict(
                OnConflict::columns([monitor_ingests::Column::OrgId, monitor_ingests::Column::IngestId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            if claimed == 0 {
                txn.rollback().await?;
                let first = monitor_ingests::Entity::find_by_id((org, key.to_owned())).one(&self.conn).await?;
                return Ok(IngestOutcome {
                    replayed: true,
                    response: first.map(|f| f.response).unwrap_or(Value::Null),
                });
            }
        }
        // The machine, created on first sight.
        monitor_machines::Entity::insert(monitor_machines::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(org),
            hostname: Set(batch.hostname.clone()),
            os: Set(batch.os.clone()),
            first_seen_at: Set(now),
            last_seen_at: Set(now),
            silent_alert_id: Set(None),
        })
        .on_conflict(
            OnConflict::columns([monitor_machines::Column::OrgId, monitor_machines::Column::Hostname])
                .update_column(monitor_machines::Column::LastSeenAt)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let machine = monitor_machines::Entity::find()
            .filter(monitor_machines::Column::OrgId.eq(org))
            .filter(monitor_machines::Column::Hostname.eq(batch.hostname.clone()))
            .one(&txn)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("machine {}", batch.hostname)))?;
        if batch.os.is_some() && batch.os != machine.os {
            monitor_machines::Entity::update_many()
                .col_expr(monitor_machines::Column::Os, Expr::value(batch.os.clone()))
                .filter(monitor_machines::Column::Id.eq(machine.id))
                .exec(&txn)
                .await?;
        }
        // Heard from again: its "machine silent" alert resolves.
        if let Some(alert) = machine.silent_alert_id {
            super::thresholds::machine_heard(&txn, machine.id, alert, now).await?;
        }
        // The instances, created on first sight, with their latest value (a late batch never
        // overwrites a newer one).
        use monitor_metrics::Column as M;
        let rows: Vec<monitor_metrics::ActiveModel> = batch
            .samples
            .iter()
            .map(|s| monitor_metrics::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org),
                machine_id: Set(machine.id),
                name: Set(s.name.clone()),
                kind: Set(s.kind.as_str().to_owned()),
                unit: Set(s.unit.clone()),
                last_value_num: Set(s.value.number()),
                last_value_text: Set(s.value.text().map(str::to_owned)),
                last_at: Set(Some(at)),
                alerting_enabled: Set(true),
                paused: Set(false),
                state: Set(MetricState::Ok.as_str().to_owned()),
                created_at: Set(now),
                threshold: Set(None),
                open_alert_id: Set(None),
            })
            .collect();
        // One upsert per chunk: new instances are created, known ones take the value unless they
        // hold a newer one (`excluded` is the row offered, on PostgreSQL and SQLite alike).
        for chunk in rows.chunks(200) {
            monitor_metrics::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([M::MachineId, M::Name])
                        .update_columns([M::LastValueNum, M::LastValueText, M::LastAt])
                        .action_and_where(Expr::cust(
                            "monitor_metrics.last_at IS NULL OR monitor_metrics.last_at < excluded.last_at",
                        ))
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        let names: Vec<String> = batch.samples.iter().map(|s| s.name.clone()).collect();
        let mut ids = std::collections::HashMap::new();
        for chunk in names.chunks(500) {
            let found: Vec<(Uuid, String)> = monitor_metrics::Entity::find()
                .select_only()
                .columns([M::Id, M::Name])
                .filter(M::MachineId.eq(machine.id))
                .filter(M::Name.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(&txn)
                .await?;
            ids.extend(found.into_iter().map(|(id, name)| (name, id)));
        }
        let mut samples = Vec::with_capacity(batch.samples.len());
        for s in &batch.samples {
            let Some(id) = ids.get(&s.name).copied() else { continue };
            samples.push(monitor_samples::ActiveModel {
                metric_id: Set(id),
                at: Set(at),
                value_num: Set(s.value.number()),
                value_text: Set(s.value.text().map(str::to_owned)),
            });
        }
        let mut accepted = 0u64;
        for chunk in samples.chunks(300) {
            accepted += monitor_samples::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([monitor_samples::Column::MetricId, monitor_samples::Column::At])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        // The new values against their thresholds (only instances that have one).
        let with_threshold = Condition::all()
            .add(M::MachineId.eq(machine.id))
            .add(M::Threshold.is_not_null())
            .add(Condition::any().add(M::State.ne(MetricState::Ok.as_str())).add(M::LastAt.eq(at)));
        super::thresholds::reconcile_metrics(&txn, with_threshold, None, now).await?;
        let response = json!({ "machine_id": machine.id, "accepted": accepted, "received_at": now });
        if let Some(key) = ingest_id {
            monitor_ingests::Entity::update_many()
                .col_expr(monitor_ingests::Column::Response, Expr::value(response.clone()))
                .filter(monitor_ingests::Column::OrgId.eq(org))
                .filter(monitor_ingests::Column::IngestId.eq(key))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(IngestOutcome { replayed: false, response })
    }

    /// A page of the organization's machines by id; `search` is a substring of the hostname.
    pub async fn machines(
        &self,
        org: Uuid,
        search: Option<&str>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<MachineRecord>, DbError> {
        use monitor_machines::Column as C;
        let mut q = monitor_machines::Entity::find().filter(C::OrgId.eq(org));
        if let Some(s) = search {
            q = q.filter(C::Hostname.contains(s));
        }
        if let Some(a) = after {
            q = q.filter(C::Id.gt(a));
        }
        Ok(q.order_by_asc(C::Id).limit(limit).all(&self.conn).await?.into_iter().map(Into::into).collect())
    }

    pub async fn machine(&self, org: Uuid, id: Uuid) -> Result<Option<MachineRecord>, DbError> {
        Ok(monitor_machines::Entity::find_by_id(id)
            .filter(monitor_machines::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(Into::into))
    }

    /// A page of metric instances by id: the organization's, or one machine's.
    pub async fn metrics(
        &self,
        org: Uuid,
        machine: Option<Uuid>,
        name: Option<&str>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<MetricRecord>, DbError> {
        use monitor_metrics::Column as C;
        let mut cond = Condition::all().add(C::OrgId.eq(org));
        if let Some(m) = machine {
            cond = cond.add(C::MachineId.eq(m));
        }
        if let Some(n) = name {
            cond = cond.add(C::Name.eq(n));
        }
        if let Some(a) = after {
            cond = cond.add(C::Id.gt(a));
        }
        monitor_metrics::Entity::find()
            .filter(cond)
            .order_by_asc(C::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    pub async fn metric(&self, org: Uuid, id: Uuid) -> Result<Option<MetricRecord>, DbError> {
        monitor_metrics::Entity::find_by_id(id)
            .filter(monitor_metrics::Column::OrgId.eq(org))
            .one(&self.conn)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    /// A metric's samples in `[from, to)`, oldest first, at most `limit`.
    pub async fn series(
        &self,
        metric: &MetricRecord,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<SamplePoint>, DbError> {
        use monitor_samples::Column as C;
        let rows = monitor_samples::Entity::find()
            .filter(C::MetricId.eq(metric.id))
            .filter(C::At.gte(from))
            .filter(C::At.lt(to))
            .order_by_asc(C::At)
            .limit(limit)
            .all(&self.conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                value_of(metric.kind, r.value_num, r.value_text).map(|value| SamplePoint { at: r.at, value })
            })
            .collect())
    }

    /// Switches a metric's alerting or pause (by `actor`), and brings its alert in line: switched
    /// off or paused resolves it, switched back on raises it again if the value is still bad.
    pub async fn set_metric_flags(
        &self,
        metric: Uuid,
        alerting: Option<bool>,
        paused: Option<bool>,
        actor: &str,
    ) -> Result<(), DbError> {
        use monitor_metrics::Column as C;
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut update = monitor_metrics::Entity::update_many();
        if let Some(a) = alerting {
            update = update.col_expr(C::AlertingEnabled, Expr::value(a));
        }
        if let Some(p) = paused {
            update = update.col_expr(C::Paused, Expr::value(p));
        }
        if alerting.is_some() || paused.is_some() {
            update.filter(C::Id.eq(metric)).exec(&txn).await?;
        }
        let now = Utc::now().trunc_subsecs(6);
        super::thresholds::reconcile_metrics(&txn, Condition::all().add(C::Id.eq(metric)), Some(actor), now).await?;
        txn.commit().await?;
        Ok(())
    }
}
