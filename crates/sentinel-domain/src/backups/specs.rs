//! The stored shapes of backup targets, destinations and plans (everything but secrets, which are
//! sealed apart and named by id) and the checks a definition passes before it is stored.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Compression, DestinationKind, check_host, check_identifier, check_level};

/// A field that is wrong and why (the API turns each into one entry of a 422).
pub type FieldProblem = (String, String);

/// How a networked target's connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// The tool's own default (PostgreSQL `prefer`, MariaDB opportunistic).
    #[default]
    Default,
    Disable,
    Require,
    VerifyFull,
}

/// Engine options that hold no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOptions {
    /// PostgreSQL: each backup also takes the server's roles and tablespaces
    /// (`pg_dumpall --globals-only`) as one more artifact, so it restores into a new cluster.
    #[serde(default = "yes")]
    pub globals: bool,
    #[serde(default)]
    pub tls: TlsMode,
    /// Tables (or collections) to dump, when not all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Tables (or collections) to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for TargetOptions {
    fn default() -> Self {
        Self { globals: true, tls: TlsMode::default(), include: Vec::new(), exclude: Vec::new() }
    }
}

impl TargetOptions {
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        for (field, list) in [("include", &self.include), ("exclude", &self.exclude)] {
            if list.len() > 1000 {
                out.push((field.to_owned(), "at most 1000 names".to_owned()));
            }
            for name in list {
                if let Err(e) = check_identifier("table name", name) {
                    out.push((field.to_owned(), e));
                }
            }
        }
        if !self.include.is_empty() && !self.exclude.is_empty() {
            out.push(("exclude".to_owned(), "give include or exclude, not both".to_owned()));
        }
        out
    }
}

/// The non-secret configuration of a destination; the credentials are a JSON object sealed apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationConfig {
    /// A directory on the worker's machine (or a mount). It must exist.
    Local { path: String },
    S3 {
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        force_path_style: bool,
    },
    Gcs {
        bucket: String,
        #[serde(default)]
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    Azure {
        account: String,
        container: String,
        #[serde(default)]
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

impl DestinationConfig {
    pub fn kind(&self) -> DestinationKind {
        match self {
            Self::Local { .. } => DestinationKind::Local,
            Self::S3 { .. } => DestinationKind::S3,
            Self::Gcs { .. } => DestinationKind::Gcs,
            Self::Azure { .. } => DestinationKind::Azure,
        }
    }

    /// The credential fields this kind needs (`required`) and accepts.
    pub fn credential_fields(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Local { .. } => (&[], &[]),
            Self::S3 { .. } => (&["access_key_id", "secret_access_key"], &["access_key_id", "secret_access_key"]),
            // Without a service account only an emulator answers.
            Self::Gcs { .. } => (&[], &["service_account_json"]),
            Self::Azure { .. } => (&["access_key"], &["access_key"]),
        }
    }

    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        let mut need = |field: &str, value: &str, max: usize| {
            if value.trim().is_empty() {
                out.push((field.to_owned(), "must not be blank".to_owned()));
            } else if value.len() > max || value.chars().any(char::is_control) {
                out.push((field.to_owned(), format!("at most {max} characters, no control characters")));
            }
        };
        match self {
            Self::Local { path } => {
                need("path", path, 4096);
                if !path.starts_with('/') {
                    out.push(("path".to_owned(), "must be an absolute directory path".to_owned()));
                }
            }
            Self::S3 { bucket, region, endpoint, .. } => {
                need("bucket", bucket, 63);
                need("region", region, 64);
                if let Some(e) = endpoint {
                    check_url("endpoint", e, &mut out);
                }
            }
            Self::Gcs { bucket, endpoint, .. } => {
                need("bucket", bucket, 222);
                if let Some(e) = endpoint {
                    check_url("endpoint", e, &mut out);
                }
            }
            Self::Azure { account, container, endpoint, .. } => {
                need("account", account, 24);
                need("container", container, 63);
                if let Some(e) = endpoint {
                    check_url("endpoint", e, &mut out);
                }
            }
        }
        let prefix = match self {
            Self::Local { .. } => "",
            Self::S3 { prefix, .. } | Self::Gcs { prefix, .. } | Self::Azure { prefix, .. } => prefix,
        };
        if prefix.starts_with('/') || prefix.split('/').any(|s| s == "..") || prefix.chars().any(char::is_control) {
            out.push(("prefix".to_owned(), "a relative key prefix without `..` segments".to_owned()));
        }
        out
    }
}

fn check_url(field: &str, value: &str, out: &mut Vec<FieldProblem>) {
    if !(value.starts_with("http://") || value.starts_with("https://")) || value.len() > 2048 {
        out.push((field.to_owned(), "an http:// or https:// URL".to_owned()));
    }
}

/// A plan's compression: the format and, optionally, its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionChoice {
    pub format: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
}

impl Default for CompressionChoice {
    fn default() -> Self {
        Self { format: Compression::Zstd, level: None }
    }
}

impl CompressionChoice {
    pub fn check(&self) -> Result<(), String> {
        check_level(self.format, self.level)
    }
}

/// How a plan encrypts its artifacts, as stored: secrets by id only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlanEncryption {
    None,
    /// To the plan's own age identity (held by Sentinel, sealed in the vault) and to any escrow
    /// recipients the operator added (their identities stay with them: `age -d -i key.txt` works).
    Age {
        /// The public half of the plan's identity.
        recipient: String,
        identity_secret_id: Uuid,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        escrow_recipients: Vec<String>,
    },
    /// To a passphrase (age scrypt), sealed in the vault.
    Passphrase {
        passphrase_secret_id: Uuid,
    },
}

impl PlanEncryption {
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Age { .. } => "age",
            Self::Passphrase { .. } => "passphrase",
        }
    }

    /// The secrets this encryption keeps in the vault.
    pub fn secret_ids(&self) -> Vec<Uuid> {
        match self {
            Self::None => Vec::new(),
            Self::Age { identity_secret_id, .. } => vec![*identity_secret_id],
            Self::Passphrase { passphrase_secret_id } => vec![*passphrase_secret_id],
        }
    }
}

/// Where one copy of a backup went and how that copy fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copy {
    pub destination_id: Uuid,
    /// The database this artifact holds (a target may name several; one artifact each), or
    /// [`GLOBALS`](super::GLOBALS) for the server's roles and tablespaces.
    pub database: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `uploading`, `stored`, `failed`, `aborted`, `deleted`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_sha256: Option<String>,
    /// What a restore checks the object against before it touches a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
}

impl Copy {
    pub fn new(destination_id: Uuid, database: &str, key: String) -> Self {
        Self {
            destination_id,
            database: database.to_owned(),
            key,
            location: None,
            state: "uploading".to_owned(),
            message: None,
            plain_bytes: None,
            stored_bytes: None,
            plain_sha256: None,
            stored_sha256: None,
        }
    }
}

/// Checks a networked target's connection fields.
pub fn check_connection(host: &str, port: u16, user: &str, databases: &[String]) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    if let Err(e) = check_host(host) {
        out.push(("host".to_owned(), e));
    }
    if port == 0 {
        out.push(("port".to_owned(), "must be from 1 to 65535".to_owned()));
    }
    if let Err(e) = check_identifier("user", user) {
        out.push(("user".to_owned(), e));
    }
    if databases.is_empty() || databases.len() > 100 {
        out.push(("databases".to_owned(), "name 1 to 100 databases".to_owned()));
    }
    for db in databases {
        if let Err(e) = check_identifier("database", db) {
            out.push(("databases".to_owned(), e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_configs_round_trip_and_name_bad_fields() {
        let s3: DestinationConfig =
            serde_json::from_value(serde_json::json!({"kind": "s3", "bucket": "b"})).expect("parses");
        assert_eq!(s3.kind(), DestinationKind::S3);
        assert!(s3.check().is_empty());
        assert!(matches!(&s3, DestinationConfig::S3 { region, .. } if region == "us-east-1"));
        let bad = DestinationConfig::S3 {
            bucket: " ".into(),
            region: "r".into(),
            endpoint: Some("ftp://x".into()),
            prefix: "../up".into(),
            force_path_style: false,
        };
        let fields: Vec<String> = bad.check().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["bucket", "endpoint", "prefix"]);
        let local = DestinationConfig::Local { path: "relative".into() };
        assert_eq!(local.check()[0].0, "path");
        assert!(serde_json::from_value::<DestinationConfig>(serde_json::json!({"kind": "ftp"})).is_err());
    }

    #[test]
    fn encryption_names_its_secrets_and_never_holds_them() {
        let id = Uuid::now_v7();
        let enc = PlanEncryption::Passphrase { passphrase_secret_id: id };
        assert_eq!(enc.secret_ids(), [id]);
        let text = serde_json::to_string(&enc).expect("serializes");
        assert_eq!(text, format!("{{\"mode\":\"passphrase\",\"passphrase_secret_id\":\"{id}\"}}"));
        assert_eq!(PlanEncryption::None.mode(), "none");
    }

    #[test]
    fn connection_and_options_checks_name_the_field() {
        let dbs = vec!["app".to_owned()];
        assert!(check_connection("127.0.0.1", 5432, "postgres", &dbs).is_empty());
        let bad = check_connection("-x", 0, "", &[]);
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["host", "port", "user", "databases"]);
        let both = TargetOptions { include: vec!["a".into()], exclude: vec!["b".into()], ..Default::default() };
        assert_eq!(both.check()[0].0, "exclude");
        assert_eq!(CompressionChoice::default().format, Compression::Zstd);
        assert!(CompressionChoice { format: Compression::Gzip, level: Some(12) }.check().is_err());
    }
}
