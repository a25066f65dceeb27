//! A server's one lease: reservations ("give me a server ready for a deployment") picked atomically
//! — `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite — released by their holder,
//! or expired by the sweep, each with its history row.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    TransactionTrait,
};
use sentinel_domain::inventory::{LeaseKind, ServerStatus};
use uuid::Uuid;

use super::{InventoryStore, ServerFilter, ServerRecord, history, server_writes::save_in};
use crate::DbError;
use crate::entity::servers;

/// What a caller asks `POST /servers/reserve` for.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// Narrows the candidates (status is always `available`).
    pub filter: ServerFilter,
    pub ttl: Duration,
    pub purpose: String,
    pub holder: String,
}

/// A reservation that succeeded.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub server: ServerRecord,
    pub lease_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Why a release was refused.
fn not_reserved(rec: &ServerRecord) -> DbError {
    DbError::Conflict(format!("server {} is not reserved (its status is {})", rec.id, rec.status))
}

impl InventoryStore {
    /// Reserves one `available` server of `org` matching the request, or `None` when none is left.
    /// Two concurrent callers never get the same server.
    pub async fn reserve(&self, org: Uuid, req: &ReserveRequest) -> Result<Option<Reserved>, DbError> {
        if let Some(done) = self.try_reserve(org, req).await? {
            return Ok(Some(done));
        }
        // None free: servers whose reservation ran out since the last sweep count as free again.
        if self.expire_reservations(Some(org), Utc::now()).await? > 0 {
            return self.try_reserve(org, req).await;
        }
        Ok(None)
    }

    /// Reserves for many concurrent callers in one transaction (the gateway's group commit): each
    /// request is its own pick-and-update statement, so each gets a distinct server (a later statement
    /// sees the earlier ones' writes), and the history rows go in one insert. A request that found
    /// nothing is answered by [`InventoryStore::reserve`] on its own (which expires stale reservations
    /// first). Fails as a whole; the caller may then retry the requests one by one.
    pub async fn reserve_many(&self, reqs: &[(Uuid, ReserveRequest)]) -> Result<Vec<Option<Reserved>>, DbError> {
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let mut out = Vec::with_capacity(reqs.len());
        let mut entries = Vec::with_capacity(reqs.len());
        for (org, req) in reqs {
            match pick_in(&txn, *org, req).await? {
                Some((done, entry)) => {
                    entries.push(entry);
                    out.push(Some(done));
                }
                None => out.push(None),
            }
        }
        if !entries.is_empty() {
            history::insert_all(&txn, entries).await?;
        }
        txn.commit().await?;
        for (i, (org, req)) in reqs.iter().enumerate() {
            if out[i].is_none() {
                out[i] = self.reserve(*org, req).await?;
            }
        }
        Ok(out)
    }

    async fn try_reserve(&self, org: Uuid, req: &ReserveRequest) -> Result<Option<Reserved>, DbError> {
        // On SQLite the transaction's first statement is the write, so it takes the write lock before
        // it reads: the pick and the update cannot interleave with another writer's.
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let Some((done, entry)) = pick_in(&txn, org, req).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        history::insert_all(&txn, vec![entry]).await?;
        txn.commit().await?;
        Ok(Some(done))
    }
}

/// One reservation's pick-and-update inside `txn`, with its history row (not yet inserted).
async fn pick_in(
    txn: &sea_orm::DatabaseTransaction,
    org: Uuid,
    req: &ReserveRequest,
) -> Result<Option<(Reserved, crate::entity::server_history::ActiveModel)>, DbError> {
    let backend = txn.get_database_backend();
    let now = Utc::now().trunc_subsecs(6);
    let expires_at = now + req.ttl;
    let lease_id = Uuid::now_v7();
    let candidates = Condition::all()
        .add(servers::Column::OrgId.eq(org))
        .add(servers::Column::Status.eq(ServerStatus::Available.as_str()))
        .add(servers::Column::LeaseId.is_null())
        .add(ServerFilter { status: None, ..req.filter.clone() }.condition());
    let mut pick = Query::select();
    pick.column(servers::Column::Id)
        .from(servers::Entity)
        .cond_where(candidates)
        .order_by(servers::Column::Id, Order::Asc)
        .limit(1);
    if backend == DbBackend::Postgres {
        // Concurrent reservations skip the rows others are taking instead of queueing behind them.
        pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut update = Query::update();
    update
        .table(servers::Entity)
        .values([
            (servers::Column::StatusBeforeLease, Expr::col(servers::Column::Status)),
            (servers::Column::Status, Expr::value(ServerStatus::Reserved.as_str())),
            (servers::Column::LeaseId, Expr::value(lease_id)),
            (servers::Column::LeaseKind, Expr::value(LeaseKind::Reservation.as_str())),
            (servers::Column::LeaseHolder, Expr::value(req.holder.clone())),
            (servers::Column::LeasePurpose, Expr::value(req.purpose.clone())),
            (servers::Column::LeaseExpiresAt, Expr::value(expires_at)),
            (servers::Column::Version, Expr::col(servers::Column::Version).add(1)),
            (servers::Column::UpdatedAt, Expr::value(now)),
            (servers::Column::LastActionAt, Expr::value(now)),
        ])
        .and_where(Expr::col(servers::Column::Id).in_subquery(pick))
        .returning_all();
    let row = servers::Model::find_by_statement(backend.build(&update)).one(txn).await?;
    let Some(row) = row else { return Ok(None) };
    let after = ServerRecord::try_from(row)?;
    let mut before = after.clone();
    before.status = after.status_before_lease.unwrap_or(ServerStatus::Available);
    before.lease = None;
    let entry = history::entry(Some(&before), &after, &req.holder, "reserve", None, Some(req.purpose.clone()));
    Ok(Some((Reserved { server: after, lease_id, expires_at }, entry)))
}

impl InventoryStore {
    /// Gives a reserved server back: its status returns to what it was before. With `lease_id`, only
    /// that reservation is released (`Conflict` if the server is held by another).
    pub async fn release(
        &self,
        old: &ServerRecord,
        lease_id: Option<Uuid>,
        actor: &str,
    ) -> Result<ServerRecord, DbError> {
        let Some(lease) = old.lease.as_ref().filter(|l| l.kind == LeaseKind::Reservation) else {
            return Err(not_reserved(old));
        };
        if lease_id.is_some_and(|id| id != lease.id) {
            return Err(DbError::Conflict(format!("server {} is held by another reservation", old.id)));
        }
        let new = ended(old);
        let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
        let saved = save_in(&txn, old, new, actor, "release", None, None).await?;
        txn.commit().await?;
        Ok(saved)
    }

    /// Ends every reservation whose time is up (of `org`, or of all organizations), each with an
    /// `expire` history row. Returns how many ended.
    pub async fn expire_reservations(&self, org: Option<Uuid>, now: DateTime<Utc>) -> Result<usize, DbError> {
        let mut q = servers::Entity::find()
            .filter(servers::Column::LeaseExpiresAt.lte(now))
            .filter(servers::Column::LeaseKind.eq(LeaseKind::Reservation.as_str()));
        if let Some(org) = org {
            q = q.filter(servers::Column::OrgId.eq(org));
        }
        let due = q.limit(1000).all(&self.conn).await?;
        let mut ended_count = 0;
        for model in due {
            let old = ServerRecord::try_from(model)?;
            let txn = self.conn.begin_with_options(crate::WRITE_TRANSACTION).await?;
            match save_in(
                &txn,
                &old,
                ended(&old),
                "system",
                "expire",
                None,
                Some("the reservation's TTL ran out".into()),
            )
            .await
            {
                Ok(_) => {
                    txn.commit().await?;
                    ended_count += 1;
                }
                // Released or expired by someone else meanwhile.
                Err(DbError::Conflict(_)) => txn.rollback().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(ended_count)
    }
}

/// `old` with its lease ended: back to the status it had before the lease.
fn ended(old: &ServerRecord) -> ServerRecord {
    let mut new = old.clone();
    new.status = old.status_before_lease.unwrap_or(ServerStatus::Available);
    new.status_before_lease = None;
    new.lease = None;
    new
}
