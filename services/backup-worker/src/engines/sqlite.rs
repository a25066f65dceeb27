//! SQLite: a consistent copy of a live database through `VACUUM INTO` (readers and writers of the
//! source keep going; the copy is one transaction's view), and a restore that replaces the file
//! atomically only after the restored copy passes `PRAGMA integrity_check`. Both stage one file next
//! to its final place: SQLite's page writer needs a seekable file, so this engine is not streamed.

use std::path::{Path, PathBuf};

use sentinel_jobs::db::sqlite_files;

/// Why a copy or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("{path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the copy failed: {0}")]
    Copy(String),
    #[error("the restored file is not a sound SQLite database: {0}")]
    Integrity(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Copies the live database at `source` into the new file `into` (which must not exist).
pub async fn copy(source: &Path, into: &Path) -> Result<u64, SqliteError> {
    if !source.is_file() {
        return Err(SqliteError::Open { path: source.display().to_string(), reason: "no such file".into() });
    }
    sqlite_files::vacuum_into(source, into).await.map_err(|reason| {
        if reason.starts_with("cannot open") {
            SqliteError::Open { path: source.display().to_string(), reason }
        } else {
            SqliteError::Copy(reason)
        }
    })?;
    Ok(std::fs::metadata(into)?.len())
}

/// Checks the database file at `path` (a restored copy) with `PRAGMA integrity_check`.
pub async fn check(path: &Path) -> Result<(), SqliteError> {
    sqlite_files::integrity_check(path).await.map_err(SqliteError::Integrity)
}

/// The staging file of a restore into `target`: in the same directory, so the final rename is atomic.
pub fn staging_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into());
    target.with_file_name(format!(".{name}.restore-{}", uuid::Uuid::new_v4().simple()))
}

/// Puts the restored file `staged` in place of `target` once it passes the integrity check; a
/// failing file is removed and the target is left as it was.
pub async fn replace(staged: &Path, target: &Path) -> Result<(), SqliteError> {
    if let Err(e) = check(staged).await {
        let _ = std::fs::remove_file(staged);
        return Err(e);
    }
    // A stale WAL or journal of the old file would be applied to the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(staged, target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exec(path: &Path, sql: &str) -> Vec<String> {
        sqlite_files::query_texts(path, sql, true).await.expect(sql)
    }

    const FINGERPRINT: &str = "SELECT (SELECT count(*) FROM items) || ' ' || (SELECT group_concat(id || ':' || name || ':' || hex(body), ',') FROM (SELECT * FROM items ORDER BY id)) || ' ' || (SELECT count(*) FROM cheap) || ' ' || (SELECT count(*) FROM sqlite_master WHERE type IN ('index', 'trigger'))";

    #[tokio::test]
    async fn a_live_database_is_copied_and_restored_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("app.db");
        exec(
            &source,
            "PRAGMA journal_mode=WAL;\nCREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, body BLOB);\nCREATE INDEX items_name ON items (name);\nWITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) INSERT INTO items SELECT i, 'item ' || i, i * 1.5, randomblob(16) FROM n;\nCREATE VIEW cheap AS SELECT id FROM items WHERE price < 100;\nCREATE TRIGGER items_touch AFTER UPDATE ON items BEGIN SELECT 1; END",
        )
        .await;
        let copy_path = dir.path().join("copy.db");
        let size = copy(&source, &copy_path).await.expect("copy");
        assert!(size > 4096);
        // Restore over an existing, different database.
        let target = dir.path().join("restored.db");
        exec(&target, "CREATE TABLE other (x)").await;
        let staged = staging_path(&target);
        std::fs::copy(&copy_path, &staged).expect("stage");
        replace(&staged, &target).await.expect("replace");
        assert_eq!(exec(&source, FINGERPRINT).await, exec(&target, FINGERPRINT).await);
        assert!(exec(&source, FINGERPRINT).await[0].starts_with("400 "));
    }

    #[tokio::test]
    async fn a_damaged_restore_leaves_the_target_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("keep.db");
        exec(&target, "CREATE TABLE keep (x);\nINSERT INTO keep VALUES ('still here')").await;
        let staged = staging_path(&target);
        std::fs::write(&staged, b"SQLite format 3\0 but not really a database").expect("write");
        assert!(matches!(replace(&staged, &target).await, Err(SqliteError::Integrity(_))));
        assert!(!staged.exists(), "the bad staging file is removed");
        assert_eq!(exec(&target, "SELECT x FROM keep").await, vec!["still here".to_owned()]);
        let missing = copy(&dir.path().join("absent.db"), &dir.path().join("x.db")).await;
        assert!(matches!(missing, Err(SqliteError::Open { .. })));
    }
}
