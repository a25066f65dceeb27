//! Fail-closed completeness of a PostgreSQL dump: the live catalog, read in the snapshot the dump
//! reads (schemas, tables, views, sequences, routines, types, extensions, event triggers, outside
//! the system schemas and not owned by an extension), against the dump's own table of contents
//! (`pg_restore --list` fed the dump's first bytes as it streams). Objects are matched by catalog
//! and OID, which the table of contents carries, so odd names cannot confuse the comparison. With
//! an include list only tables are compared (pg_dump `--table` writes nothing else), and a table
//! outside the list is a gap: a schema created after the list was written is found, not skipped.
//! Tables named by the exclude list are left out on purpose and are not gaps.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::snapshot::{DONE, pattern_condition};
use crate::engines::Invocation;

/// One object of the live catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CatalogObject {
    /// The OID of the system catalog holding it (`pg_class`, `pg_proc`, …).
    pub catalog: u32,
    pub oid: u32,
    pub kind: String,
    pub name: String,
}

/// At most this many missing objects are named in a backup's message (the count is always given).
const NAMED: usize = 10;

/// The statements printing one JSON line per catalog object a complete dump must hold, then DONE.
pub fn catalog_sql(include: &[String], exclude: &[String]) -> String {
    let user = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'";
    let excluded = if exclude.is_empty() {
        String::new()
    } else {
        let any: Vec<String> = exclude.iter().map(|p| pattern_condition(p)).collect();
        format!(" AND NOT ({})", any.join(" OR "))
    };
    let relkinds = if include.is_empty() { "'r', 'p', 'v', 'm', 'S', 'f'" } else { "'r', 'p'" };
    let relations = format!(
        "SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid AS catalog, c.oid, CASE c.relkind WHEN 'v' THEN 'VIEW' \
         WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind, \
         pg_catalog.format('%I.%I', n.nspname, c.relname) AS name FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ({relkinds}) AND {user}{excluded}"
    );
    let mut parts = vec![relations];
    if include.is_empty() {
        parts.push(format!(
            "SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 'SCHEMA', pg_catalog.format('%I', n.nspname) \
             FROM pg_catalog.pg_namespace n WHERE {user} AND n.nspname <> 'public'"
        ));
        parts.push(format!(
            "SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::oid, p.oid, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' \
             WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, pg_catalog.format('%I.%I', n.nspname, p.proname) \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE {user}"
        ));
        parts.push(format!(
            "SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::oid, t.oid, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, \
             pg_catalog.format('%I.%I', n.nspname, t.typname) FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE {user} AND (t.typtype IN ('e', 'd', 'r') \
             OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))"
        ));
        parts.push(
            "SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass::oid, e.oid, 'EXTENSION', pg_catalog.format('%I', e.extname) \
             FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
             WHERE n.nspname <> 'pg_catalog'"
                .to_owned(),
        );
        parts.push(
            "SELECT 'pg_catalog.pg_event_trigger'::pg_catalog.regclass::oid, t.oid, 'EVENT TRIGGER', \
             pg_catalog.format('%I', t.evtname) FROM pg_catalog.pg_event_trigger t"
                .to_owned(),
        );
    }
    format!(
        "WITH objects AS ({}) SELECT pg_catalog.json_build_object('catalog', o.catalog::bigint, 'oid', o.oid::bigint, 'kind', o.kind, \
         'name', o.name)::text FROM objects o WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
         WHERE d.deptype = 'e' AND d.classid = o.catalog AND d.objid = o.oid) ORDER BY o.kind, o.name;\nSELECT '{DONE}';",
        parts.join(" UNION ALL ")
    )
}

/// The `(catalog, oid)` of every object a `pg_restore --list` listing names
/// (`217; 1259 16386 TABLE public items owner`); entries without one (`0 0`) are skipped.
pub fn parse_contents(listing: &str) -> HashSet<(u32, u32)> {
    listing
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let (_, rest) = l.split_once("; ")?;
            let mut words = rest.split(' ');
            let catalog: u32 = words.next()?.parse().ok()?;
            let oid: u32 = words.next()?.parse().ok()?;
            (catalog != 0).then_some((catalog, oid))
        })
        .collect()
}

/// The live objects the dump does not hold, described for the journal; `None` when none is missing.
pub fn gaps(live: &[CatalogObject], contents: &HashSet<(u32, u32)>) -> Option<String> {
    let missing: Vec<String> = live
        .iter()
        .filter(|o| !contents.contains(&(o.catalog, o.oid)))
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut named = missing.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    if missing.len() > NAMED {
        named.push_str(&format!(" and {} more", missing.len() - NAMED));
    }
    Some(format!(
        "the dump lacks {} object(s) the database holds: {named} (add them to the target's include list, or name \
         them in its exclude list to leave them out on purpose)",
        missing.len()
    ))
}

/// Runs the listing tool on the dump bytes `tap` receives, stopping the feed once the tool has
/// read what it needs; returns the listing.
pub async fn read_contents(tool: Invocation, mut tap: mpsc::Receiver<Bytes>) -> Result<String, String> {
    let mut child = tool.spawn().map_err(|e| format!("cannot start pg_restore --list: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("pg_restore's stdin is not piped")?;
    let feed = async move {
        while let Some(chunk) = tap.recv().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Dropping the receiver here tells the dump's reader to stop sending.
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    let out = out.map_err(|e| format!("pg_restore --list: {e}"))?;
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() || !parse_contents(&listing).is_empty() {
        Ok(listing)
    } else {
        Err(format!("pg_restore --list failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(catalog: u32, oid: u32, kind: &str, name: &str) -> CatalogObject {
        CatalogObject { catalog, oid, kind: kind.to_owned(), name: name.to_owned() }
    }

    #[test]
    fn the_listing_is_read_by_oid_and_what_it_lacks_is_named() {
        let listing = ";\n; Archive created at 2026-12-03\n7; 2615 25027 SCHEMA - billing postgres\n\
                       219; 1259 25016 TABLE public My T postgres\n3439; 0 0 SEQUENCE OWNED BY public s postgres\n\
                       3428; 0 25016 TABLE DATA public My T postgres\n";
        let contents = parse_contents(listing);
        assert_eq!(contents, HashSet::from([(2615, 25027), (1259, 25016)]));
        let live = [object(1259, 25016, "TABLE", "public.\"My T\""), object(2615, 25027, "SCHEMA", "billing")];
        assert_eq!(gaps(&live, &contents), None);
        let more = [object(1259, 25016, "TABLE", "public.\"My T\""), object(1259, 30000, "TABLE", "audit.events")];
        let why = gaps(&more, &contents).expect("a gap");
        assert!(why.starts_with("the dump lacks 1 object(s) the database holds: TABLE audit.events"), "{why}");
        let many: Vec<CatalogObject> = (0..12).map(|i| object(1255, 40000 + i, "FUNCTION", &format!("f{i}"))).collect();
        assert!(gaps(&many, &contents).expect("gaps").contains("f9 and 2 more"));
    }

    #[test]
    fn an_include_list_compares_tables_and_the_exclude_list_is_left_out() {
        let whole = catalog_sql(&[], &["public.big".into()]);
        assert!(whole.contains("'SCHEMA'") && whole.contains("'FUNCTION'") && whole.contains("'EVENT TRIGGER'"));
        assert!(whole.contains("AND NOT ((n.nspname ~ '^(public)$' AND c.relname ~ '^(big)$'))"), "{whole}");
        let tables = catalog_sql(&["public.*".into()], &[]);
        assert!(!tables.contains("'SCHEMA'") && tables.contains("c.relkind IN ('r', 'p')"), "{tables}");
        assert!(tables.ends_with("SELECT 'sentinel:done';"));
    }
}

/// MySQL/MariaDB: the query listing `database`'s tables, views, routines, triggers and events as
/// `KIND<TAB>name` lines (information_schema; read as the dump starts).
pub fn mysql_catalog_sql(database: &str) -> String {
    let db = format!("'{}'", database.replace('\\', "\\\\").replace('\'', "''"));
    format!(
        "SELECT IF(TABLE_TYPE = 'VIEW', 'VIEW', 'TABLE'), TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = {db} AND TABLE_TYPE IN ('BASE TABLE', 'VIEW') \
         UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} \
         UNION ALL SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db} \
         UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}"
    )
}

/// The objects a complete MySQL/MariaDB dump must hold, from [`mysql_catalog_sql`]'s lines: with an
/// include list only tables (the dump holds only those), and never the excluded tables or views.
pub fn mysql_expected(lines: &str, include: &[String], exclude: &[String]) -> Vec<(String, String)> {
    let excluded = |name: &str| mysql_excluded(exclude, name);
    lines
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, n)| (k.to_owned(), n.to_owned()))
        .filter(|(k, _)| include.is_empty() || k == "TABLE")
        .filter(|(k, n)| !(matches!(k.as_str(), "TABLE" | "VIEW") && excluded(n)))
        .collect()
}

/// Whether a MySQL/MariaDB exclude list (`database.table`, as `--ignore-table` takes it, or a bare
/// name) leaves `table` out.
pub fn mysql_excluded(exclude: &[String], table: &str) -> bool {
    exclude.iter().any(|x| x == table || x.rsplit_once('.').is_some_and(|(_, n)| n == table))
}

/// The objects a SQL dump creates, read as it streams: DDL lines are inspected, the long `INSERT`
/// lines skipped without being kept.
#[derive(Debug, Default)]
pub struct SqlDumpObjects {
    line: Vec<u8>,
    skipping: bool,
    pub objects: HashSet<(String, String)>,
    /// Whether a `CREATE TABLE` was seen (the dump's snapshot exists by then).
    pub first_table: bool,
}

/// A line longer than this is data, not a statement's first line worth reading.
const MAX_DDL_LINE: usize = 64 * 1024;

impl SqlDumpObjects {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let end = chunk.iter().position(|&b| b == b'\n');
            let (part, rest) = match end {
                Some(i) => (&chunk[..i], &chunk[i + 1..]),
                None => (chunk, &[][..]),
            };
            if !self.skipping {
                self.line.extend_from_slice(part);
                if self.line.starts_with(b"INSERT") || self.line.len() > MAX_DDL_LINE {
                    self.skipping = true;
                    self.line.clear();
                }
            }
            if end.is_some() {
                if !self.skipping {
                    let line = std::mem::take(&mut self.line);
                    self.inspect(&line);
                }
                self.skipping = false;
            }
            chunk = rest;
        }
    }

    fn inspect(&mut self, line: &[u8]) {
        const KEYS: [(&[u8], &str); 6] = [
            (b"CREATE TABLE ", "TABLE"),
            (b"VIEW ", "VIEW"),
            (b"PROCEDURE ", "PROCEDURE"),
            (b"FUNCTION ", "FUNCTION"),
            (b"TRIGGER ", "TRIGGER"),
            (b"EVENT ", "EVENT"),
        ];
        for (key, kind) in KEYS {
            let Some(at) = line.windows(key.len()).position(|w| w == key) else { continue };
            let rest = &line[at + key.len()..];
            // A backquoted name (a doubled backquote is one in the name), or a bare one as the
            // server printed its `SHOW CREATE` (triggers keep the case and quoting they were made with).
            let mut name = Vec::new();
            if rest.first() == Some(&b'`') {
                let mut bytes = rest[1..].iter().peekable();
                while let Some(&b) = bytes.next() {
                    if b == b'`' {
                        if bytes.peek() == Some(&&b'`') {
                            bytes.next();
                        } else {
                            break;
                        }
                    }
                    name.push(b);
                }
            } else {
                name.extend(rest.iter().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$')));
            }
            if name.is_empty() {
                continue;
            }
            if kind == "TABLE" {
                self.first_table = true;
            }
            self.objects.insert((kind.to_owned(), String::from_utf8_lossy(&name).into_owned()));
        }
    }
}

/// The expected MySQL/MariaDB objects the dump lacks, described as for PostgreSQL.
pub fn mysql_gaps(expected: &[(String, String)], dump: &HashSet<(String, String)>) -> Option<String> {
    let live: Vec<CatalogObject> = expected
        .iter()
        .filter(|o| !dump.contains(o))
        .enumerate()
        .map(|(i, (kind, name))| CatalogObject {
            catalog: 0,
            oid: i as u32 + 1,
            kind: kind.clone(),
            name: name.clone(),
        })
        .collect();
    gaps(&live, &HashSet::new())
}

#[cfg(test)]
mod sql_dump_tests {
    use super::*;

    #[test]
    fn a_sql_dumps_objects_are_read_across_chunks_and_data_lines_are_skipped() {
        let dump = "-- MariaDB dump\nDROP TABLE IF EXISTS `items`;\nCREATE TABLE `items` (\n  `id` int\n);\n\
                    INSERT INTO `items` VALUES (1),(2),('CREATE TABLE `fake`');\n\
                    /*!50001 CREATE ALGORITHM=UNDEFINED */ /*!50001 VIEW `v` AS select 1 */;\n\
                    /*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `odd``name` BEFORE INSERT ON `items` FOR EACH ROW SET @x = 1 */;;\n\
                    CREATE DEFINER=`root`@`localhost` PROCEDURE `noop`()\nBEGIN END ;;\n\
                    /*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER touch BEFORE INSERT ON items SET @y = 2 */;;\n";
        let mut objects = SqlDumpObjects::default();
        for piece in dump.as_bytes().chunks(7) {
            objects.feed(piece);
        }
        let want: HashSet<(String, String)> =
            [("TABLE", "items"), ("VIEW", "v"), ("TRIGGER", "odd`name"), ("PROCEDURE", "noop"), ("TRIGGER", "touch")]
                .iter()
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .collect();
        assert_eq!(objects.objects, want);
        assert!(objects.first_table);
        let live = mysql_expected("TABLE\titems\nVIEW\tv\nEVENT\tnightly\nTABLE\tbig\n", &[], &["app.big".into()]);
        let why = mysql_gaps(&live, &objects.objects).expect("the event is missing");
        assert!(why.starts_with("the dump lacks 1 object(s) the database holds: EVENT nightly"), "{why}");
        assert_eq!(mysql_expected("TABLE\ta\nVIEW\tv\n", &["a".into()], &[]), vec![("TABLE".into(), "a".into())]);
    }
}
