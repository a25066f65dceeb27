//! Backups' vocabulary: database engines and what each can honestly do (full everywhere; incremental
//! or differential only where the engine has one), compressions, destination kinds, a journal entry's
//! states and their legal changes, and the validation of targets' fields. No I/O.

pub mod objectives;
pub mod retention;
pub mod specs;
pub mod verification;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use objectives::{MAX_VERIFY_EVERY, PlanObjectives, check_objectives, longest_gap};
pub use retention::{Retention, RetentionError, Snapshot, Verdict, plan_retention};
pub use specs::{
    CompressionChoice, Copy, DestinationConfig, FieldProblem, PlanEncryption, TargetOptions, TlsMode, check_connection,
};

/// The backup job kind (queue `backup`): backs up one plan now.
pub const RUN_KIND: &str = "backup.run";
/// The restore job kind (queue `backup`): restores one artifact into a target.
pub const RESTORE_KIND: &str = "backup.restore";
/// Applies a plan's retention now, or deletes the artifacts of named journal entries.
pub const PRUNE_KIND: &str = "backup.prune";
/// Connects to a target: server version, client tool and version.
pub const TEST_TARGET_KIND: &str = "backup.test_target";
/// Writes, reads back and deletes a probe object on a destination.
pub const TEST_DESTINATION_KIND: &str = "backup.test_destination";
/// Restores a backup into a scratch database and compares it with the snapshot it was taken from.
pub const VERIFY_KIND: &str = "backup.verify";
/// The built-in sweep that removes what killed or abandoned attempts left on the destinations.
pub const JANITOR_KIND: &str = "backup.janitor";
/// The queue backup and restore jobs travel on; the backup worker consumes it.
pub const QUEUE: &str = "backup";
/// The `database` of a backup's copy that holds the server's globals (PostgreSQL's roles and
/// tablespaces, from `pg_dumpall --globals-only`) rather than a database: `check_identifier`
/// refuses it as a database name, and restores apply it only when asked.
pub const GLOBALS: &str = "@globals";

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the API's name; the error lists the accepted ones.
            pub fn parse(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{other:?} is not one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// A database engine Sentinel backs up.
    Engine { Postgres => "postgres", Mysql => "mysql", Mariadb => "mariadb", Mongodb => "mongodb", Sqlite => "sqlite" }
}

string_enum! {
    /// What a backup contains relative to earlier ones.
    BackupType { Full => "full", Incremental => "incremental", Differential => "differential" }
}

string_enum! {
    /// How a produced artifact is compressed: zstd, gzip and none stream; zip and tar.gz (one file
    /// in an archive, for people who open backups by hand) stage the dump in one file first,
    /// because their headers hold sizes. Restores detect every one by its magic bytes.
    Compression { Zstd => "zstd", Gzip => "gzip", None => "none", Zip => "zip", TarGz => "tar.gz" }
}

string_enum! {
    /// Where artifacts are stored.
    DestinationKind { Local => "local", S3 => "s3", Gcs => "gcs", Azure => "azure" }
}

string_enum! {
    /// Whether a journal entry records a backup or a restore.
    JournalKind { Backup => "backup", Restore => "restore" }
}

string_enum! {
    /// Where a journal entry is in its life. `running → succeeded | incomplete | failed |
    /// interrupted`; a backup whose artifacts exist becomes `pruned` when retention deletes them (the
    /// row stays). `incomplete`: stored, but the dump lacks objects the live catalog holds.
    JournalStatus {
        Running => "running",
        Succeeded => "succeeded",
        Incomplete => "incomplete",
        Failed => "failed",
        Interrupted => "interrupted",
        Pruned => "pruned",
    }
}

string_enum! {
    /// Whether a backup was proven restorable: restored into a scratch database and found equal,
    /// table by table, to the snapshot it was dumped from.
    Verification {
        Verified => "verified",
        Failed => "verification_failed",
        NotVerified => "not_verified",
    }
}

impl Engine {
    /// The default port of a networked engine; `None` for SQLite (a file).
    pub const fn default_port(self) -> Option<u16> {
        match self {
            Self::Postgres => Some(5432),
            Self::Mysql | Self::Mariadb => Some(3306),
            Self::Mongodb => Some(27017),
            Self::Sqlite => None,
        }
    }

    pub const fn is_file(self) -> bool {
        matches!(self, Self::Sqlite)
    }

    /// Whether the server holds objects outside any database that a dump leaves out (PostgreSQL's
    /// roles and tablespaces), taken as a separate artifact.
    pub const fn has_globals(self) -> bool {
        matches!(self, Self::Postgres)
    }

    /// Whether `backup_type` can be taken of this engine by Sentinel's logical dump pipeline, and
    /// why not when it cannot: no "incremental" that is secretly a full dump.
    pub fn supports(self, backup_type: BackupType) -> Result<(), String> {
        match backup_type {
            BackupType::Full => Ok(()),
            kind => Err(match self {
                Self::Postgres => format!(
                    "pg_dump has no {kind} mode: a PostgreSQL {kind} needs a physical backup (PostgreSQL 17+ \
                     pg_basebackup --incremental with summarize_wal=on and a replication connection), which \
                     Sentinel does not take yet; use type full"
                ),
                Self::Mysql | Self::Mariadb => format!(
                    "mysqldump/mariadb-dump have no {kind} mode: a {kind} needs mariabackup/xtrabackup with access \
                     to the server's data directory, or binary-log archiving, which Sentinel does not take yet; use \
                     type full"
                ),
                Self::Mongodb => format!(
                    "mongodump has no {kind} mode: a {kind} needs oplog archiving, which Sentinel does not take yet; \
                     use type full"
                ),
                Self::Sqlite => format!(
                    "SQLite has no {kind} backup: a consistent copy of the file is always whole (continuous \
                     protection would be WAL shipping); use type full"
                ),
            }),
        }
    }
}

impl JournalStatus {
    pub const fn is_terminal(self) -> bool {
        !matches!(self, Self::Running)
    }

    /// The one place that says which status changes are legal.
    pub fn can_become(self, next: JournalStatus) -> bool {
        use JournalStatus::*;
        matches!(
            (self, next),
            (Running, Succeeded | Incomplete | Failed | Interrupted) | (Succeeded | Incomplete, Pruned)
        )
    }

    /// Whether the entry's artifacts exist (what retention deletes, restores read and the janitor
    /// leaves alone): a succeeded backup, or an incomplete one.
    pub const fn holds_artifact(self) -> bool {
        matches!(self, Self::Succeeded | Self::Incomplete)
    }
}

/// The name of a target, destination or plan: 1–100 characters, no control characters, not blank.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    if name.chars().count() > 100 {
        return Err("longer than 100 characters".to_owned());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// A host name or address of a networked target: letters, digits, `.`, `-`, `_`, `:` (IPv6), no
/// spaces; at most 253 characters. It reaches a dump tool as one argument, never through a shell.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err("a host has 1 to 253 characters".to_owned());
    }
    if host.starts_with('-') {
        return Err("a host must not start with '-'".to_owned());
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')) {
        return Err("a host is a DNS name or an IP address (letters, digits, '.', '-', '_', ':')".to_owned());
    }
    Ok(())
}

/// A database, user or collection name as the dump tools take it: 1–128 characters, no control
/// characters, not starting with '-' (it would read as an option).
pub fn check_identifier(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > 128 {
        return Err(format!("a {what} has 1 to 128 characters"));
    }
    if value.starts_with('-') {
        return Err(format!("a {what} must not start with '-'"));
    }
    if value == GLOBALS {
        return Err(format!("{GLOBALS} is reserved for the server's roles and tablespaces, not a {what}"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("a {what} must not contain control characters"));
    }
    Ok(())
}

/// The compression level range of each compression (`None` accepts only no level).
pub fn check_level(compression: Compression, level: Option<i32>) -> Result<(), String> {
    match (compression, level) {
        (_, None) => Ok(()),
        (Compression::Zstd, Some(l)) if (1..=19).contains(&l) => Ok(()),
        (Compression::Gzip | Compression::Zip | Compression::TarGz, Some(l)) if (1..=9).contains(&l) => Ok(()),
        (Compression::Zstd, Some(_)) => Err("a zstd level is 1 to 19".to_owned()),
        (c @ (Compression::Gzip | Compression::Zip | Compression::TarGz), Some(_)) => {
            Err(format!("a {} level is 1 to 9", c.as_str()))
        }
        (Compression::None, Some(_)) => Err("compression none takes no level".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_say_what_is_accepted() {
        assert_eq!(Engine::parse("mariadb"), Ok(Engine::Mariadb));
        let e = Engine::parse("oracle").expect_err("refused");
        assert!(e.contains("postgres, mysql, mariadb, mongodb, sqlite"), "{e}");
        for c in Compression::ALL {
            assert_eq!(Compression::parse(c.as_str()), Ok(*c));
            // The stored and API form is the same name (`tar.gz`, not `tar_gz`).
            assert_eq!(serde_json::to_value(c).expect("valid"), serde_json::json!(c.as_str()));
        }
        assert_eq!(serde_json::to_string(&JournalStatus::Interrupted).expect("valid"), "\"interrupted\"");
    }

    #[test]
    fn only_full_backups_are_offered_and_the_refusal_says_why() {
        for engine in Engine::ALL {
            assert!(engine.supports(BackupType::Full).is_ok());
            for kind in [BackupType::Incremental, BackupType::Differential] {
                let why = engine.supports(kind).expect_err("refused");
                assert!(why.contains(kind.as_str()) && why.contains("use type full"), "{engine}: {why}");
            }
        }
        assert!(Engine::Postgres.supports(BackupType::Incremental).expect_err("refused").contains("pg_basebackup"));
    }

    #[test]
    fn journal_statuses_change_only_forward() {
        use JournalStatus::*;
        assert!(Running.can_become(Succeeded) && Running.can_become(Interrupted) && Succeeded.can_become(Pruned));
        assert!(Running.can_become(Incomplete) && Incomplete.can_become(Pruned) && !Incomplete.can_become(Succeeded));
        assert!(Incomplete.holds_artifact() && Succeeded.holds_artifact() && !Pruned.holds_artifact());
        assert!(!Failed.can_become(Succeeded) && !Pruned.can_become(Succeeded) && !Succeeded.can_become(Failed));
        assert!(!Running.is_terminal() && Failed.is_terminal());
    }

    #[test]
    fn fields_that_reach_a_tool_cannot_read_as_options() {
        assert!(check_host("db-1.example.internal").is_ok() && check_host("::1").is_ok());
        assert!(check_host("-oProxyCommand=x").is_err() && check_host("a b").is_err() && check_host("").is_err());
        assert!(check_identifier("database", "app_prod").is_ok());
        assert!(check_identifier("database", "--all").is_err() && check_identifier("user", "a\nb").is_err());
        assert!(check_name("nightly").is_ok() && check_name("  ").is_err());
        assert!(check_level(Compression::Zstd, Some(3)).is_ok() && check_level(Compression::Zstd, Some(22)).is_err());
        assert!(check_level(Compression::None, Some(1)).is_err() && check_level(Compression::Gzip, None).is_ok());
    }
}
