//! SQL sessions that prove a backup. PostgreSQL: one exports the snapshot `pg_dump --snapshot` reads
//! and, in that same snapshot, takes each dumped table's statistics (row count and an order-free hash
//! of the rows' text). MariaDB/MySQL, which cannot share a snapshot: the session holds the global
//! read lock while it and the dump each start a consistent-snapshot transaction, so both see the same
//! commits, and releases it once the dump has begun writing tables. The same statistics are later
//! taken in the scratch database a verification restored into. Both sides fix the settings that shape
//! a row's text (time zone, date, interval, float and bytea output), so equal data gives equal hashes.

use std::time::Duration;

use sentinel_jobs::domain::backups::verification::TableStats;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use sentinel_jobs::domain::backups::Engine;

use crate::engines::{self, Connection, Invocation, Tools};

/// Printed after the statements a caller waits for: the end of their output.
pub(crate) const DONE: &str = "sentinel:done";
const SNAPSHOT: &str = "sentinel:snapshot:";
/// How long a session may take to connect and export its snapshot.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings under which a row's text is the same on every server and session.
const SETTINGS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
SET extra_float_digits = 1; SET bytea_output = 'hex'; SET statement_timeout = 0;";
const MYSQL_SETTINGS: &str = "SET SESSION time_zone = '+00:00'; SET SESSION group_concat_max_len = 16777216; \
SET SESSION lock_wait_timeout = 10;";

/// A live `psql` (or `mariadb`) session.
pub struct Session {
    engine: Engine,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    /// Holds the credential file for as long as the session runs.
    _invocation: Invocation,
}

impl Session {
    /// Connects to `conn`'s database with the fixed settings.
    pub async fn open(conn: &Connection, tools: &Tools, work: &std::path::Path) -> Result<Session, String> {
        let inv = engines::session(conn, tools, work).map_err(|e| e.to_string())?;
        let mut child = inv.spawn().map_err(|e| format!("cannot start psql: {e}"))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("psql's pipes are not open".to_owned());
        };
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if text.len() < 8192 {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text.trim().to_owned()
        });
        let mut session = Session {
            engine: conn.engine,
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr,
            _invocation: inv,
        };
        session.send(if conn.engine == Engine::Postgres { SETTINGS } else { MYSQL_SETTINGS }).await?;
        Ok(session)
    }

    async fn send(&mut self, sql: &str) -> Result<(), String> {
        let text = format!("{sql}\n");
        self.stdin.write_all(text.as_bytes()).await.map_err(|e| format!("psql stopped: {e}"))?;
        self.stdin.flush().await.map_err(|e| format!("psql stopped: {e}"))
    }

    /// The lines printed until [`DONE`]; psql's error when it stopped first.
    async fn until_done(&mut self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        loop {
            match self.lines.next_line().await {
                Ok(Some(line)) if line == DONE => return Ok(out),
                Ok(Some(line)) => out.push(line),
                Ok(None) | Err(_) => {
                    let _ = self.child.wait().await;
                    let why = (&mut self.stderr).await.unwrap_or_default();
                    return Err(if why.is_empty() { "psql ended early".to_owned() } else { why });
                }
            }
        }
    }

    /// Starts a repeatable-read transaction and exports its snapshot; it stays valid until
    /// [`Session::close`], so a dump started with it reads exactly what the statistics read.
    pub async fn export_snapshot(&mut self) -> Result<String, String> {
        self.send(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT '{SNAPSHOT}' || pg_catalog.pg_export_snapshot(); SELECT '{DONE}';"
        ))
        .await?;
        let lines = tokio::time::timeout(OPEN_TIMEOUT, self.until_done())
            .await
            .map_err(|_| format!("the snapshot was not exported within {} s", OPEN_TIMEOUT.as_secs()))??;
        lines
            .iter()
            .find_map(|l| l.strip_prefix(SNAPSHOT))
            .map(str::to_owned)
            .ok_or_else(|| format!("psql printed no snapshot: {lines:?}"))
    }

    /// A session holding an exported snapshot, and the snapshot's name for `pg_dump --snapshot`.
    pub async fn exporting(
        conn: &Connection,
        tools: &Tools,
        work: &std::path::Path,
    ) -> Result<(Session, String), String> {
        let mut session = Session::open(conn, tools, work).await?;
        match session.export_snapshot().await {
            Ok(id) => Ok((session, id)),
            Err(e) => {
                session.close().await;
                Err(e)
            }
        }
    }

    /// MariaDB/MySQL: a session holding the global read lock (no commit lands) inside its own
    /// consistent-snapshot transaction; a dump started now sees exactly what this session sees.
    /// [`Session::release`] lets writes go on once the dump has taken its snapshot.
    pub async fn holding(conn: &Connection, tools: &Tools, work: &std::path::Path) -> Result<Session, String> {
        let mut session = Session::open(conn, tools, work).await?;
        let hold = format!(
            "FLUSH TABLES WITH READ LOCK; SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
             START TRANSACTION WITH CONSISTENT SNAPSHOT; SELECT '{DONE}';"
        );
        session.send(&hold).await?;
        match tokio::time::timeout(OPEN_TIMEOUT, session.until_done()).await {
            Ok(Ok(_)) => Ok(session),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("the read lock was not taken within {} s", OPEN_TIMEOUT.as_secs())),
        }
    }

    /// Releases the global read lock [`Session::holding`] took (the transaction's snapshot stays).
    pub async fn release(&mut self) -> Result<(), String> {
        self.send(&format!("UNLOCK TABLES; SELECT '{DONE}';")).await?;
        self.until_done().await.map(|_| ())
    }

    /// Each dumped table's statistics (the tables `include`/`exclude` select, as the dump tool reads
    /// them), in name order.
    pub async fn table_stats(&mut self, include: &[String], exclude: &[String]) -> Result<Vec<TableStats>, String> {
        if self.engine != Engine::Postgres {
            return self.mysql_table_stats(include, exclude).await;
        }
        self.json_lines(&stats_sql(include, exclude)).await
    }

    /// Sends `sql` (ending with the DONE marker) and reads the JSON object each line it printed holds.
    async fn json_lines<T: serde::de::DeserializeOwned>(&mut self, sql: &str) -> Result<Vec<T>, String> {
        self.send(sql).await?;
        let lines = self.until_done().await?;
        lines
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<T>(l).map_err(|e| format!("unreadable line {l:?}: {e}")))
            .collect()
    }

    /// MariaDB/MySQL: the base tables and their columns first, then one statistics query per table
    /// (each row's `QUOTE()`d columns joined, md5, a 60-bit prefix summed).
    async fn mysql_table_stats(&mut self, include: &[String], exclude: &[String]) -> Result<Vec<TableStats>, String> {
        self.send(&format!(
            "SELECT c.TABLE_NAME, GROUP_CONCAT(CONCAT('QUOTE(`', REPLACE(c.COLUMN_NAME, '`', '``'), '`)') \
             ORDER BY c.ORDINAL_POSITION SEPARATOR ', ') FROM information_schema.COLUMNS c \
             JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
             WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' GROUP BY c.TABLE_NAME \
             ORDER BY c.TABLE_NAME; SELECT '{DONE}';"
        ))
        .await?;
        let tables: Vec<(String, String)> = self
            .until_done()
            .await?
            .into_iter()
            .filter_map(|l| l.split_once('\t').map(|(t, c)| (t.to_owned(), c.to_owned())))
            .filter(|(t, _)| include.is_empty() || include.contains(t))
            .filter(|(t, _)| !super::completeness::mysql_excluded(exclude, t))
            .collect();
        let literal = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
        let mut sql = String::new();
        for (table, columns) in &tables {
            sql.push_str(&format!(
                "SELECT JSON_OBJECT('table', {}, 'rows', COUNT(*), 'hash', CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(\
                 MD5(CONCAT_WS(CHAR(31), {columns})), 1, 15), 16, 10) AS UNSIGNED)), 0) AS CHAR)) FROM `{}`;\n",
                literal(table),
                table.replace('`', "``")
            ));
        }
        sql.push_str(&format!("SELECT '{DONE}';"));
        self.json_lines(&sql).await
    }

    /// The live catalog's objects a complete dump holds (see `completeness`).
    pub async fn catalog(
        &mut self,
        include: &[String],
        exclude: &[String],
    ) -> Result<Vec<super::completeness::CatalogObject>, String> {
        self.json_lines(&super::completeness::catalog_sql(include, exclude)).await
    }

    /// Ends the transaction and the session.
    pub async fn close(mut self) {
        let _ = self.send("COMMIT;\n\\q").await;
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The statements that print one JSON line of statistics per dumped table, then [`DONE`]: a query
/// writes one `SELECT` per table, which `\gexec` runs. Tables are ordinary ones and partitions
/// (`relkind r`, read `ONLY`), outside the system schemas and not owned by an extension — what
/// pg_dump writes data for.
pub fn stats_sql(include: &[String], exclude: &[String]) -> String {
    let mut filter = String::new();
    if !include.is_empty() {
        let any: Vec<String> = include.iter().map(|p| pattern_condition(p)).collect();
        filter.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    if !exclude.is_empty() {
        let any: Vec<String> = exclude.iter().map(|p| pattern_condition(p)).collect();
        filter.push_str(&format!(" AND NOT ({})", any.join(" OR ")));
    }
    format!(
        "SELECT pg_catalog.format('SELECT pg_catalog.json_build_object(''table'', %L, ''rows'', pg_catalog.count(*), \
         ''hash'', COALESCE(pg_catalog.sum((''x'' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(sentinel_row::text), 1, 15))::bit(60)::bigint), 0)::text)::text \
         FROM ONLY %I.%I sentinel_row', pg_catalog.format('%I.%I', n.nspname, c.relname), n.nspname, c.relname) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
         AND d.objid = c.oid AND d.deptype = 'e'){filter} ORDER BY n.nspname, c.relname\n\\gexec\nSELECT '{DONE}';"
    )
}

/// A pg_dump `--table` pattern as a SQL condition on `n.nspname`/`c.relname`: `*` and `?` are
/// wildcards, `.` separates the schema, double quotes keep case and quote the wildcards, other
/// letters fold to lower case; a pattern without a schema matches tables visible on the search path.
pub(crate) fn pattern_condition(pattern: &str) -> String {
    let mut parts: Vec<String> = vec![String::new()];
    let mut quoted = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let part = parts.last_mut().expect("one part");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            '*' if !quoted => part.push_str(".*"),
            '?' if !quoted => part.push('.'),
            c => {
                let c = if quoted { c } else { c.to_ascii_lowercase() };
                // A backslash makes any ASCII punctuation literal in a PostgreSQL regular expression.
                if c.is_ascii_punctuation() && c != '_' {
                    part.push('\\');
                }
                part.push(c);
            }
        }
    }
    let literal = |re: &str| format!("'^({})$'", re.replace('\'', "''"));
    let name = literal(parts.last().map(String::as_str).unwrap_or_default());
    match parts.len() {
        1 => format!("(pg_catalog.pg_table_is_visible(c.oid) AND c.relname ~ {name})"),
        n => format!("(n.nspname ~ {} AND c.relname ~ {name})", literal(&parts[n - 2])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_patterns_become_anchored_regular_expressions() {
        assert_eq!(pattern_condition("public.notes"), "(n.nspname ~ '^(public)$' AND c.relname ~ '^(notes)$')");
        assert_eq!(pattern_condition("Notes"), "(pg_catalog.pg_table_is_visible(c.oid) AND c.relname ~ '^(notes)$')");
        assert_eq!(pattern_condition("app.log_*"), "(n.nspname ~ '^(app)$' AND c.relname ~ '^(log_.*)$')");
        // Quotes keep case and dots; a quote inside is doubled; other characters are escaped.
        assert_eq!(pattern_condition("\"My.Schema\".t?"), "(n.nspname ~ '^(My\\.Schema)$' AND c.relname ~ '^(t.)$')");
        assert_eq!(pattern_condition("a'b"), "(pg_catalog.pg_table_is_visible(c.oid) AND c.relname ~ '^(a\\''b)$')");
        let sql = stats_sql(&["public.*".into()], &["public.big".into()]);
        assert!(sql.contains("AND ((n.nspname ~ '^(public)$'") && sql.contains("AND NOT ((n.nspname"), "{sql}");
        assert!(sql.contains("\\gexec") && sql.ends_with("SELECT 'sentinel:done';"));
    }
}
