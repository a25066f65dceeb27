//! What a destination is (`DestinationSpec`), and the validation rules for its fields and for object
//! keys: bucket/container/account naming rules, endpoints, prefixes, and safe keys.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use crate::StorageError;

/// Where backups go. Secrets are `SecretString`s, so `Debug` never prints them.
#[derive(Debug, Clone)]
pub enum DestinationSpec {
    /// A local (or mounted) directory. It must exist: a missing mount point is an error, not a
    /// directory to create on the root file system.
    Local { path: PathBuf },
    /// Amazon S3 or an S3-compatible service (`endpoint`, e.g. `http://127.0.0.1:9000`).
    S3 {
        bucket: String,
        region: String,
        endpoint: Option<String>,
        prefix: String,
        access_key_id: String,
        secret_access_key: SecretString,
        /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
        force_path_style: bool,
    },
    /// Google Cloud Storage over its JSON API. Without `service_account_json`, requests are sent
    /// unauthenticated, which only an emulator at `endpoint` accepts.
    Gcs { bucket: String, prefix: String, endpoint: Option<String>, service_account_json: Option<SecretString> },
    /// Azure Blob Storage with a shared key. `endpoint` is the account's blob service URL
    /// (default `https://{account}.blob.core.windows.net`); for an IP or `localhost` endpoint
    /// without a path (Azurite), the account is appended as the first path segment.
    Azure { account: String, container: String, prefix: String, access_key: SecretString, endpoint: Option<String> },
}

/// The longest key accepted (S3 and GCS allow 1024 bytes for the whole name, prefix included).
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// Checks an object key: relative, `/`-separated, no empty, `.` or `..` segments, no segment
/// starting with `.` (reserved for in-progress files), no control characters or backslashes.
pub(crate) fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason: &str| Err(StorageError::invalid("key", format!("`{}`: {reason}", printable(key))));
    if key.is_empty() {
        return bad("is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad("is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("must be relative (no leading `/`)");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or a backslash");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("contains an empty segment (`//` or a trailing `/`)");
        }
        if segment == ".." || segment == "." {
            return bad("contains a `.` or `..` segment");
        }
        if segment.starts_with('.') {
            return bad("has a segment starting with `.` (reserved for in-progress uploads)");
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty (everything), or a key-like path; a trailing `/` is allowed.
pub(crate) fn normalize_list_prefix(prefix: &str) -> Result<String, StorageError> {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    validate_key(p)
        .map_err(|_| StorageError::invalid("prefix", format!("`{}` is not a valid key prefix", printable(p))))?;
    Ok(p.to_owned())
}

/// Normalizes a destination prefix (`/a/b/` → `a/b`) and checks it like a key.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, StorageError> {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    validate_key(p).map_err(|e| match e {
        StorageError::Invalid { reason, .. } => StorageError::invalid("prefix", reason),
        other => other,
    })?;
    Ok(p.to_owned())
}

/// `prefix/key`, or whichever of the two is not empty.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{key}"),
    }
}

/// Strips the destination prefix from a full object name (names outside it give `None`).
pub(crate) fn strip(prefix: &str, name: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some(name.to_owned());
    }
    name.strip_prefix(prefix)?.strip_prefix('/').map(str::to_owned)
}

fn printable(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { '?' } else { c }).take(120).collect();
    s
}

/// S3 bucket naming rules (general purpose buckets).
pub(crate) fn validate_s3_bucket(bucket: &str) -> Result<(), StorageError> {
    let bad = |reason: &str| Err(StorageError::invalid("bucket", format!("`{}`: {reason}", printable(bucket))));
    if !(3..=63).contains(&bucket.len()) {
        return bad("S3 bucket names are 3 to 63 characters long");
    }
    if !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-') {
        return bad("S3 bucket names use only lowercase letters, digits, `.` and `-`");
    }
    if !starts_and_ends_alphanumeric(bucket) {
        return bad("S3 bucket names start and end with a letter or digit");
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return bad("S3 bucket names have no `..`, `.-` or `-.`");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("S3 bucket names are not IP addresses");
    }
    if bucket.starts_with("xn--") || bucket.starts_with("sthree-") || bucket.ends_with("-s3alias") {
        return bad("S3 reserves the `xn--` and `sthree-` prefixes and the `-s3alias` suffix");
    }
    Ok(())
}

/// GCS bucket naming rules.
pub(crate) fn validate_gcs_bucket(bucket: &str) -> Result<(), StorageError> {
    let bad = |reason: &str| Err(StorageError::invalid("bucket", format!("`{}`: {reason}", printable(bucket))));
    let max = if bucket.contains('.') { 222 } else { 63 };
    if bucket.len() < 3 || bucket.len() > max {
        return bad("GCS bucket names are 3 to 63 characters long (222 with dots, 63 per component)");
    }
    if !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')) {
        return bad("GCS bucket names use only lowercase letters, digits, `-`, `_` and `.`");
    }
    if !starts_and_ends_alphanumeric(bucket) {
        return bad("GCS bucket names start and end with a letter or digit");
    }
    if bucket.split('.').any(|c| c.is_empty() || c.len() > 63) {
        return bad("each dot-separated component is 1 to 63 characters long");
    }
    if bucket.starts_with("goog") || bucket.contains("google") {
        return bad("GCS bucket names cannot start with `goog` or contain `google`");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("GCS bucket names are not IP addresses");
    }
    Ok(())
}

/// Azure storage account naming rules.
pub(crate) fn validate_azure_account(account: &str) -> Result<(), StorageError> {
    if (3..=24).contains(&account.len()) && account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "account",
            format!("`{}`: Azure account names are 3 to 24 lowercase letters or digits", printable(account)),
        ))
    }
}

/// Azure container naming rules.
pub(crate) fn validate_azure_container(container: &str) -> Result<(), StorageError> {
    let bad = |reason: &str| Err(StorageError::invalid("container", format!("`{}`: {reason}", printable(container))));
    if !(3..=63).contains(&container.len()) {
        return bad("Azure container names are 3 to 63 characters long");
    }
    if !container.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return bad("Azure container names use only lowercase letters, digits and `-`");
    }
    if !starts_and_ends_alphanumeric(container) || container.contains("--") {
        return bad("Azure container names start and end with a letter or digit and have no `--`");
    }
    Ok(())
}

/// An AWS region such as `us-east-1` (S3-compatible services accept anything of that shape).
pub(crate) fn validate_region(region: &str) -> Result<(), StorageError> {
    if !region.is_empty() && region.len() <= 32 && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(StorageError::invalid("region", format!("`{}` is not a region name like `us-east-1`", printable(region))))
    }
}

/// An `http(s)://host[:port][/path]` endpoint without credentials, query or fragment.
pub(crate) fn validate_endpoint(endpoint: &str) -> Result<reqwest::Url, StorageError> {
    let bad = |reason: &str| StorageError::invalid("endpoint", reason.to_owned());
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    // Credentials in a URL end up in logs and journals: they belong in the secret fields.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials (use the key fields)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not contain a query or fragment"));
    }
    Ok(url)
}

/// A secret that must be present.
pub(crate) fn require_secret(field: &'static str, secret: &SecretString) -> Result<(), StorageError> {
    if secret.expose_secret().trim().is_empty() {
        return Err(StorageError::invalid(field, "is empty"));
    }
    Ok(())
}

fn starts_and_ends_alphanumeric(s: &str) -> bool {
    let ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok(s.chars().next()) && ok(s.chars().last())
}

impl DestinationSpec {
    /// The spec of a stored destination from its configuration and its credentials as opened from
    /// the vault (the JSON object [`from_config`](Self::from_config) reads; `None` when it has
    /// none), or why they cannot be read. The one way the worker and the gateway open a destination.
    pub fn from_stored(
        config: &sentinel_domain::backups::DestinationConfig,
        opened_credentials: Option<&[u8]>,
    ) -> Result<Self, String> {
        let credentials = match opened_credentials {
            None => serde_json::Map::new(),
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|_| "the destination's credentials are not a JSON object".to_owned())?,
        };
        Ok(Self::from_config(config, &credentials))
    }

    /// The spec of a stored destination: its configuration and its opened credentials (a JSON
    /// object: S3 `access_key_id` + `secret_access_key`, GCS `service_account_json`, Azure
    /// `access_key`). What the backup worker and the gateway's uploads both open.
    pub fn from_config(
        config: &sentinel_domain::backups::DestinationConfig,
        credentials: &serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        use sentinel_domain::backups::DestinationConfig as C;
        let secret = |name: &str| -> Option<SecretString> {
            credentials.get(name).and_then(|v| v.as_str()).map(|s| SecretString::from(s.to_owned()))
        };
        let empty = || SecretString::from(String::new());
        match config {
            C::Local { path } => Self::Local { path: path.into() },
            C::S3 { bucket, region, endpoint, prefix, force_path_style } => Self::S3 {
                bucket: bucket.clone(),
                region: region.clone(),
                endpoint: endpoint.clone(),
                prefix: prefix.clone(),
                access_key_id: credentials.get("access_key_id").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
                secret_access_key: secret("secret_access_key").unwrap_or_else(empty),
                force_path_style: *force_path_style,
            },
            C::Gcs { bucket, prefix, endpoint } => Self::Gcs {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                service_account_json: secret("service_account_json"),
            },
            C::Azure { account, container, prefix, endpoint } => Self::Azure {
                account: account.clone(),
                container: container.clone(),
                prefix: prefix.clone(),
                access_key: secret("access_key").unwrap_or_else(empty),
                endpoint: endpoint.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "db/2026-12-01/dump.zst", "x_y-z.tar", "a/b/c"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a/../b", "..", "a//b", "a/", "./a", "a/.hidden", "a\\b", "a\nb"] {
            assert!(matches!(validate_key(bad), Err(StorageError::Invalid { field: "key", .. })), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix("/a/b/").ok().as_deref(), Some("a/b"));
        assert_eq!(normalize_prefix("").ok().as_deref(), Some(""));
        assert!(normalize_prefix("a/../b").is_err());
        assert_eq!(join("", "k"), "k");
        assert_eq!(join("p/q", "k"), "p/q/k");
        assert_eq!(join("p/q", ""), "p/q");
        assert_eq!(strip("p", "p/k/l").as_deref(), Some("k/l"));
        assert_eq!(strip("p", "pk"), None);
        assert_eq!(strip("", "k").as_deref(), Some("k"));
    }

    #[test]
    fn bucket_names() {
        assert!(validate_s3_bucket("my-backups.2026").is_ok());
        for bad in ["ab", "Upper", "-x-abc", "a..b", "192.168.1.1", "xn--abc", "a_b", "abc-"] {
            assert!(validate_s3_bucket(bad).is_err(), "{bad}");
        }
        assert!(validate_gcs_bucket("my_backups-1").is_ok());
        for bad in ["ab", "googbackups", "my-google-bucket", "_abc", "Abc"] {
            assert!(validate_gcs_bucket(bad).is_err(), "{bad}");
        }
        assert!(validate_azure_account("devstoreaccount1").is_ok());
        assert!(validate_azure_account("Dev-Store").is_err());
        assert!(validate_azure_container("backups-1").is_ok());
        assert!(validate_azure_container("back--ups").is_err());
    }

    #[test]
    fn endpoints() {
        assert!(validate_endpoint("http://127.0.0.1:9000").is_ok());
        assert!(validate_endpoint("ftp://x").is_err());
        assert!(validate_endpoint("https://user:pw@host").is_err());
        assert!(validate_endpoint("https://host/?sig=1").is_err());
        assert!(validate_region("us-east-1").is_ok());
        assert!(validate_region("").is_err());
    }
}
