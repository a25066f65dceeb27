//! SQLite database files that are not Sentinel's own store — the backup worker's targets: a
//! consistent copy of a live file (`VACUUM INTO`), its `PRAGMA integrity_check`, and plain queries
//! returning text (for tests and checks). sea-orm stays this crate's alone.

use std::path::Path;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

fn url(path: &Path, mode: &str) -> String {
    format!("sqlite://{}?mode={mode}", path.display())
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// Copies the live database `source` (opened read-only) into the new file `into`: one
/// transaction's view, while the source's readers and writers go on.
pub async fn vacuum_into(source: &Path, into: &Path) -> Result<(), String> {
    let db = Database::connect(url(source, "ro")).await.map_err(|e| format!("cannot open it: {e}"))?;
    let done = db
        .execute_raw(Statement::from_string(DbBackend::Sqlite, format!("VACUUM INTO {}", quoted(into))))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = db.close().await;
    done
}

/// `PRAGMA integrity_check` of the file at `path`: `Ok` when it answers `ok`, else what it found.
pub async fn integrity_check(path: &Path) -> Result<(), String> {
    let rows = query_texts(path, "PRAGMA integrity_check", false).await?;
    match rows.first().map(String::as_str) {
        Some("ok") => Ok(()),
        Some(_) => Err(rows.join("; ")),
        None => Err("no answer".to_owned()),
    }
}

/// Runs `sql` (statements separated by `;` + newline) on the file at `path`, creating it when
/// `create`, and returns the first column of every row, as text.
pub async fn query_texts(path: &Path, sql: &str, create: bool) -> Result<Vec<String>, String> {
    let mode = if create { "rwc" } else { "ro" };
    let db = Database::connect(url(path, mode)).await.map_err(|e| format!("cannot open it: {e}"))?;
    let mut out = Vec::new();
    let mut result = Ok(());
    for stmt in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
        match db.query_all_raw(Statement::from_string(DbBackend::Sqlite, stmt.to_owned())).await {
            Ok(rows) => out.extend(rows.iter().filter_map(|r| r.try_get_by_index::<String>(0).ok())),
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
    }
    let _ = db.close().await;
    result.map(|()| out)
}

/// Each table's statistics in the file at `path` (a backup's consistent copy, or a verification's
/// restored one): the row count and the order-free sum of a 60-bit SHA-256 prefix of each row's
/// `quote()`d columns, rows streamed (never all in memory). Virtual tables are skipped: their
/// shadow tables hold their data and are compared.
pub async fn table_stats(path: &Path) -> Result<Vec<sentinel_domain::backups::verification::TableStats>, String> {
    use futures::StreamExt;
    use sea_orm::StreamTrait;
    use sha2::{Digest, Sha256};
    let tables = query_texts(
        path,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
        false,
    )
    .await?;
    let db = Database::connect(url(path, "ro")).await.map_err(|e| format!("cannot open it: {e}"))?;
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = Vec::new();
    for table in tables {
        let columns_sql = format!("SELECT name FROM pragma_table_info({})", literal(&table));
        let columns = db
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, columns_sql))
            .await
            .map_err(|e| format!("{table}: {e}"))?;
        let row: Vec<String> = columns
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .map(|c| format!("quote({})", ident(&c)))
            .collect();
        let select = format!("SELECT {} FROM {}", row.join(" || char(31) || "), ident(&table));
        let mut rows = db
            .stream_raw(Statement::from_string(DbBackend::Sqlite, select))
            .await
            .map_err(|e| format!("{table}: {e}"))?;
        let (mut count, mut sum) = (0u64, 0u128);
        while let Some(r) = rows.next().await {
            let text: String = r.and_then(|r| r.try_get_by_index(0)).map_err(|e| format!("{table}: {e}"))?;
            let digest = Sha256::digest(text.as_bytes());
            let prefix = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) >> 4;
            count += 1;
            sum += u128::from(prefix);
        }
        out.push(sentinel_domain::backups::verification::TableStats { table, rows: count, hash: sum.to_string() });
    }
    let _ = db.close().await;
    Ok(out)
}
