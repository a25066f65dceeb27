//! A provider's CSV export read into validated server rows: a required header naming documented columns
//! in any order, every bad cell reported as `{row, column, reason}` (`row` is the line of the file the
//! record starts on: the header is row 1).

use std::collections::HashMap;

use serde::Serialize;

use super::{
    DEFAULT_SSH_PORT, DEFAULT_SSH_USER, HostKey, Labels, check_notes, check_provider_ref, check_region,
    check_server_name, check_ssh_port, check_ssh_user, parse_ip, parse_labels,
};

/// Data rows one import may hold.
pub const MAX_IMPORT_ROWS: usize = 100_000;
/// Errors listed in one answer; the count covers them all.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// The columns an import understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    ProviderRef,
    Ip,
    Name,
    Region,
    Labels,
    SshUser,
    SshPort,
    Notes,
    HostKey,
}

impl Column {
    pub const ALL: [Column; 9] = [
        Self::ProviderRef,
        Self::Ip,
        Self::Name,
        Self::Region,
        Self::Labels,
        Self::SshUser,
        Self::SshPort,
        Self::Notes,
        Self::HostKey,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProviderRef => "provider_ref",
            Self::Ip => "ip",
            Self::Name => "name",
            Self::Region => "region",
            Self::Labels => "labels",
            Self::SshUser => "ssh_user",
            Self::SshPort => "ssh_port",
            Self::Notes => "notes",
            Self::HostKey => "host_key",
        }
    }

    fn parse(header: &str) -> Option<Self> {
        let h = header.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|c| c.as_str() == h)
    }
}

/// One valid row. `None` means the column is absent from the file (an update keeps the stored value);
/// an empty cell in a present column sets the field's default (no region, no labels, port 22, …).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    pub row: usize,
    pub provider_ref: String,
    pub ip: String,
    pub name: Option<String>,
    pub region: Option<String>,
    pub labels: Option<Labels>,
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub notes: Option<String>,
    /// An empty cell leaves the pinned keys alone (never unpins by accident).
    pub host_key: Option<HostKey>,
}

/// Why a row (or the whole file, row 1) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
}

impl RowError {
    fn new(row: usize, column: Option<&str>, reason: impl Into<String>) -> Self {
        Self { row, column: column.map(str::to_owned), reason: reason.into() }
    }
}

/// The outcome of reading a file: its valid rows and every error (the first [`MAX_LISTED_ERRORS`]).
#[derive(Debug, Clone, Default)]
pub struct ParsedImport {
    pub rows: Vec<ImportRow>,
    pub errors: Vec<RowError>,
    /// All errors, listed or not.
    pub error_count: usize,
    /// Rows that had errors (each counted once).
    pub bad_rows: usize,
    /// The whole file was refused (header, size): no row can be imported, even in partial mode.
    pub refused: bool,
}

impl ParsedImport {
    fn fail(&mut self, e: RowError) {
        self.error_count += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(e);
        }
    }

    /// An error that refuses the whole file.
    fn file_error(reason: impl Into<String>) -> Self {
        let mut p = Self { refused: true, ..Self::default() };
        p.fail(RowError::new(1, None, reason));
        p
    }
}

/// Reads a CSV export. File-level problems (no header, unknown or repeated columns, a missing required
/// column, too many rows) come back as a single row-1 error and no rows.
pub fn parse_csv(body: &[u8]) -> ParsedImport {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => return ParsedImport::file_error("the file is empty: a header row naming the columns is required"),
        Some(Err(e)) => return ParsedImport::file_error(format!("the header row is not valid CSV: {e}")),
        Some(Ok(h)) => h,
    };
    let mut columns = Vec::with_capacity(header.len());
    for raw in header.iter() {
        let Ok(name) = std::str::from_utf8(raw) else {
            return ParsedImport::file_error("the header row is not valid UTF-8");
        };
        let Some(col) = Column::parse(name) else {
            let known: Vec<&str> = Column::ALL.iter().map(|c| c.as_str()).collect();
            return ParsedImport::file_error(format!(
                "unknown column {:?} (known columns: {})",
                name.chars().take(64).collect::<String>(),
                known.join(", ")
            ));
        };
        if columns.contains(&col) {
            return ParsedImport::file_error(format!("column {} appears twice", col.as_str()));
        }
        columns.push(col);
    }
    for required in [Column::ProviderRef, Column::Ip] {
        if !columns.contains(&required) {
            return ParsedImport::file_error(format!("the required column {} is missing", required.as_str()));
        }
    }
    let mut out = ParsedImport::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, record) in records.enumerate() {
        // The line the record starts on (the reader skips blank lines; quoted cells may span lines).
        let row = match &record {
            Ok(rec) => rec.position().map(|p| line_of(body, p)),
            Err(e) => e.position().map(|p| line_of(body, p)),
        }
        .unwrap_or(i + 2);
        if i >= MAX_IMPORT_ROWS {
            return ParsedImport::file_error(format!("more than {MAX_IMPORT_ROWS} rows; split the file"));
        }
        let before = out.error_count;
        match record {
            Err(e) => out.fail(RowError::new(row, None, format!("not valid CSV: {e}"))),
            Ok(rec) if rec.len() != columns.len() => out.fail(RowError::new(
                row,
                None,
                format!("has {} fields; the header has {}", rec.len(), columns.len()),
            )),
            Ok(rec) => {
                if let Some(parsed) = parse_row(row, &columns, &rec, &mut out) {
                    match seen.get(&parsed.provider_ref) {
                        Some(first) => out.fail(RowError::new(
                            row,
                            Some("provider_ref"),
                            format!("{:?} is also on row {first}", parsed.provider_ref),
                        )),
                        None => {
                            seen.insert(parsed.provider_ref.clone(), row);
                            out.rows.push(parsed);
                        }
                    }
                }
            }
        }
        if out.error_count > before {
            out.bad_rows += 1;
        }
    }
    out
}

/// The line a record starts on: the reader's position is where it started reading, before the blank
/// lines it skipped.
fn line_of(body: &[u8], pos: &csv::Position) -> usize {
    let skipped = body.get(pos.byte() as usize..).unwrap_or_default();
    let blank = skipped.iter().take_while(|b| matches!(b, b'\n' | b'\r')).filter(|b| **b == b'\n').count();
    pos.line() as usize + blank
}

fn parse_row(row: usize, columns: &[Column], rec: &csv::ByteRecord, out: &mut ParsedImport) -> Option<ImportRow> {
    let mut parsed = ImportRow {
        row,
        provider_ref: String::new(),
        ip: String::new(),
        name: None,
        region: None,
        labels: None,
        ssh_user: None,
        ssh_port: None,
        notes: None,
        host_key: None,
    };
    let mut ok = true;
    for (col, raw) in columns.iter().zip(rec.iter()) {
        let name = col.as_str();
        let Ok(cell) = std::str::from_utf8(raw) else {
            out.fail(RowError::new(row, Some(name), "not valid UTF-8 (save the file as UTF-8)"));
            ok = false;
            continue;
        };
        let cell = cell.trim();
        let result: Result<(), String> = match col {
            Column::ProviderRef => check_provider_ref(cell).map(|()| parsed.provider_ref = cell.to_owned()),
            Column::Ip => parse_ip(cell).map(|ip| parsed.ip = ip),
            Column::Name if cell.is_empty() => Ok(()),
            Column::Name => check_server_name(cell).map(|()| parsed.name = Some(cell.to_owned())),
            Column::Region => check_region(cell).map(|()| parsed.region = Some(cell.to_owned())),
            Column::Labels => parse_labels(cell).map(|l| parsed.labels = Some(l)),
            Column::SshUser if cell.is_empty() => {
                parsed.ssh_user = Some(DEFAULT_SSH_USER.to_owned());
                Ok(())
            }
            Column::SshUser => check_ssh_user(cell).map(|()| parsed.ssh_user = Some(cell.to_owned())),
            Column::SshPort if cell.is_empty() => {
                parsed.ssh_port = Some(DEFAULT_SSH_PORT);
                Ok(())
            }
            Column::SshPort => cell
                .parse::<i64>()
                .map_err(|_| format!("{cell:?} is not a port number"))
                .and_then(check_ssh_port)
                .map(|p| parsed.ssh_port = Some(p)),
            Column::Notes => check_notes(cell).map(|()| parsed.notes = Some(cell.to_owned())),
            Column::HostKey if cell.is_empty() => Ok(()),
            Column::HostKey => HostKey::parse(cell).map(|k| parsed.host_key = Some(k)).map_err(|e| e.to_string()),
        };
        if let Err(reason) = result {
            out.fail(RowError::new(row, Some(name), reason));
            ok = false;
        }
    }
    if ok && columns.contains(&Column::Name) && parsed.name.is_none() {
        parsed.name = Some(parsed.provider_ref.clone());
    }
    ok.then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_in_any_order() {
        let csv = "ip,Provider_Ref,labels,ssh_port\n10.0.0.1,p-1,env=prod;role=web,2222\n\n2001:db8::1,p-2,,\n";
        let p = parse_csv(csv.as_bytes());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].provider_ref, "p-1");
        assert_eq!(p.rows[0].ssh_port, Some(2222));
        assert_eq!(p.rows[0].labels.as_ref().map(|l| l.len()), Some(2));
        assert_eq!(p.rows[0].name, None, "no name column: an update keeps the name");
        assert_eq!(p.rows[1].ssh_port, Some(22));
        assert_eq!(p.rows[1].row, 4);
    }

    #[test]
    fn reports_every_bad_cell_with_row_and_column() {
        let csv = b"provider_ref,ip,ssh_port\np-1,10.0.0.300,22\np-2,10.0.0.2,0\np-1,10.0.0.3,22\np-4,\xff,22\np-5,10.0.0.5\n";
        let p = parse_csv(csv);
        let found: Vec<(usize, Option<&str>)> = p.errors.iter().map(|e| (e.row, e.column.as_deref())).collect();
        assert_eq!(found, vec![(2, Some("ip")), (3, Some("ssh_port")), (5, Some("ip")), (6, None)], "{:?}", p.errors);
        // Row 4 repeats p-1, whose row 2 was refused: it is the only p-1 kept.
        assert_eq!(p.rows.iter().map(|r| r.row).collect::<Vec<_>>(), vec![4]);
        assert_eq!(p.bad_rows, 4);
    }

    #[test]
    fn refuses_unknown_missing_or_repeated_columns() {
        for (csv, says) in [
            ("provider_ref,ip,colour\n", "unknown column"),
            ("provider_ref,name\n", "required column ip"),
            ("provider_ref,ip,ip\n", "twice"),
            ("", "empty"),
        ] {
            let p = parse_csv(csv.as_bytes());
            assert_eq!(p.errors.len(), 1, "{csv}");
            assert_eq!(p.errors[0].row, 1);
            assert!(p.refused);
            assert!(p.errors[0].reason.contains(says), "{csv}: {}", p.errors[0].reason);
        }
    }

    #[test]
    fn a_row_with_hundreds_of_fields_is_one_clear_error() {
        let csv = format!("provider_ref,ip\np-1,10.0.0.1{}\n", ",x".repeat(498));
        let p = parse_csv(csv.as_bytes());
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].reason.contains("500 fields"), "{}", p.errors[0].reason);
    }
}
