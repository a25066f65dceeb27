//! What a restore verification compares: per table, the row count and an order-free hash of the
//! rows' text, taken once in the snapshot the dump was read from and once in the scratch database
//! the artifact was restored into. Equal on every table, or the first table that differs (by name)
//! with what differs. No I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One table's statistics: `rows` and the sum, as a decimal, of a 60-bit prefix of each row's md5
/// (a sum, so the order rows come back in does not matter; a changed, missing or extra row moves it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableStats {
    /// The schema-qualified, quoted name (`public.notes`, `"Odd".x`).
    pub table: String,
    pub rows: u64,
    pub hash: String,
}

/// Each dumped database's tables, by database (the journal's `table_stats`).
pub type DatabaseStats = BTreeMap<String, Vec<TableStats>>;

/// The first difference between what the snapshot held and what the restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub table: String,
    pub reason: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {}: {}", self.table, self.reason)
    }
}

/// Compares a restore's tables (`found`) with the snapshot's (`expected`), table by table in name
/// order: a table missing from either side, another row count, or another hash is a mismatch.
pub fn compare(expected: &[TableStats], found: &[TableStats]) -> Result<(), Mismatch> {
    let index = |stats: &[TableStats]| -> BTreeMap<String, (u64, String)> {
        stats.iter().map(|s| (s.table.clone(), (s.rows, s.hash.clone()))).collect()
    };
    let (want, got) = (index(expected), index(found));
    let names: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    for table in names {
        let reason = match (want.get(table), got.get(table)) {
            (Some(_), None) => "in the snapshot but missing from the restore".to_owned(),
            (None, Some(_)) => "in the restore but not in the snapshot the backup was taken from".to_owned(),
            (Some((w, _)), Some((g, _))) if w != g => format!("{g} rows restored, {w} in the snapshot"),
            (Some((_, w)), Some((_, g))) if w != g => {
                "the same row count but different rows (content hash differs)".to_owned()
            }
            _ => continue,
        };
        return Err(Mismatch { table: table.clone(), reason });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(table: &str, rows: u64, hash: &str) -> TableStats {
        TableStats { table: table.to_owned(), rows, hash: hash.to_owned() }
    }

    #[test]
    fn equal_tables_match_in_any_order_and_the_first_difference_is_named() {
        let snapshot = vec![t("public.b", 2, "7"), t("public.a", 1, "5")];
        assert_eq!(compare(&snapshot, &[t("public.a", 1, "5"), t("public.b", 2, "7")]), Ok(()));
        let fewer = compare(&snapshot, &[t("public.a", 1, "5"), t("public.b", 1, "3")]).expect_err("differs");
        assert_eq!(fewer.table, "public.b");
        assert!(fewer.reason.contains("1 rows restored, 2 in the snapshot"), "{fewer}");
        let changed = compare(&snapshot, &[t("public.a", 1, "6"), t("public.b", 2, "7")]).expect_err("differs");
        assert_eq!(changed.table, "public.a");
        assert!(changed.reason.contains("content hash"), "{changed}");
        let missing = compare(&snapshot, &[t("public.b", 2, "7")]).expect_err("differs");
        assert_eq!((missing.table.as_str(), missing.reason.contains("missing")), ("public.a", true));
        let extra = compare(&snapshot, &[t("public.a", 1, "5"), t("public.b", 2, "7"), t("public.c", 0, "0")]);
        assert_eq!(extra.expect_err("differs").table, "public.c");
        assert_eq!(compare(&[], &[]), Ok(()));
    }
}
