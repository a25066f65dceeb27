//! Inserting new jobs with their `queued` events, many at once: on PostgreSQL one JSON-fed statement
//! (`insert_pg`), elsewhere (SQLite) multi-row INSERTs built before the writer is taken.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::InsertStatement;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, QueryTrait,
    Statement, TransactionTrait,
};
use sentinel_domain::{JobEvent, JobEventKind};
use uuid::Uuid;

use super::{INSERT_CHUNK, JobRecord, NewJob, event, event_row, insert_pg, new_row};
use crate::entity::{job_events, jobs};
use crate::{DbError, unique};

/// Where an insert runs: a caller's transaction, or the store's writer (which then makes its own).
pub(super) enum Target<'a> {
    Transaction(&'a DatabaseTransaction),
    Pool(&'a DatabaseConnection),
}

/// Inserts `news` on `target`, marked `published` or not; answers each job with its `queued` event,
/// in order.
pub(super) async fn insert_many(
    target: Target<'_>,
    news: Vec<NewJob>,
    published: bool,
) -> Result<Vec<(JobRecord, JobEvent)>, DbError> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    // Microseconds, as stored: the records answered carry the times the rows hold.
    let now = Utc::now().trunc_subsecs(6);
    let rows = news
        .into_iter()
        .map(|n| new_row(n, now).map(|row| jobs::Model { published, ..row }))
        .collect::<Result<Vec<jobs::Model>, DbError>>()?;
    let into_records =
        |rows: Vec<jobs::Model>| rows.into_iter().map(JobRecord::try_from).collect::<Result<Vec<_>, _>>();
    let backend = match &target {
        Target::Transaction(txn) => txn.get_database_backend(),
        Target::Pool(pool) => pool.get_database_backend(),
    };
    let (records, ids) = if backend == DbBackend::Postgres {
        let ids = match target {
            Target::Transaction(txn) => insert_pg::insert(txn, &rows, now, published).await?,
            // One statement is atomic on its own: no BEGIN and COMMIT round trips around it.
            Target::Pool(pool) => insert_pg::insert(pool, &rows, now, published).await?,
        };
        (into_records(rows)?, ids)
    } else {
        // Built before the writer is taken: SQLite has one, and every other write waits meanwhile.
        let job_inserts = job_statements(backend, &rows);
        let records = into_records(rows)?;
        let statements = (job_inserts, event_statements(backend, &records, now)?);
        let ids = match target {
            Target::Transaction(txn) => run_portable(txn, statements).await?,
            Target::Pool(pool) => {
                let txn = pool.begin_with_options(crate::WRITE_TRANSACTION).await?;
                let ids = run_portable(&txn, statements).await?;
                txn.commit().await?;
                ids
            }
        };
        (records, ids)
    };
    Ok(records
        .into_iter()
        .map(|job| {
            let mut ev = event(&job, 1, now, JobEventKind::Queued);
            ev.id = ids.get(&job.id.as_uuid()).copied().unwrap_or_default();
            (job, ev)
        })
        .collect())
}

/// The portable form's INSERTs of the rows. Chunks keep each statement under SQLite's 32,766 bound
/// parameters (a job row binds about 25).
fn job_statements(backend: DbBackend, rows: &[jobs::Model]) -> Vec<Statement> {
    rows.chunks(INSERT_CHUNK)
        .map(|chunk| {
            // `reset_all` marks every field as set, so each column is inserted.
            jobs::Entity::insert_many(chunk.iter().cloned().map(|m| jobs::ActiveModel::from(m).reset_all()))
                .build(backend)
        })
        .collect()
}

/// The portable form's INSERTs of the jobs' `queued` events, each `RETURNING *` (for their ids).
fn event_statements(backend: DbBackend, records: &[JobRecord], now: DateTime<Utc>) -> Result<Vec<Statement>, DbError> {
    records
        .chunks(INSERT_CHUNK)
        .map(|chunk| {
            let models = chunk
                .iter()
                .map(|job| event_row(&event(job, 1, now, JobEventKind::Queued)))
                .collect::<Result<Vec<_>, DbError>>()?;
            let mut insert: InsertStatement = job_events::Entity::insert_many(models).into_query();
            insert.returning_all();
            Ok(backend.build(&insert))
        })
        .collect()
}

/// Runs the portable statements in `txn`; answers each job's event id.
async fn run_portable(
    txn: &DatabaseTransaction,
    (job_inserts, event_inserts): (Vec<Statement>, Vec<Statement>),
) -> Result<HashMap<Uuid, i64>, DbError> {
    for insert in job_inserts {
        txn.execute_raw(insert).await.map_err(unique)?;
    }
    let mut ids = HashMap::new();
    for insert in event_inserts {
        for stored in job_events::Entity::find().from_raw_sql(insert).all(txn).await? {
            ids.insert(stored.job_id, stored.id);
        }
    }
    Ok(ids)
}
