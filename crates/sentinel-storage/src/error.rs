//! The storage error type, and the one place where backend errors (object_store, reqwest, io) are
//! classified into it and scrubbed of secrets.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

/// Why a storage operation failed. Every message names the cause and the bucket/key concerned, and
/// never contains a secret (messages built from server responses pass through [`Redactor`]).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The bucket, container or destination directory does not exist.
    #[error("bucket missing: {0}")]
    BucketMissing(String),
    /// The credentials were rejected or lack a permission.
    #[error("access denied: {0}")]
    Denied(String),
    /// Nothing answered (connection refused, DNS, timeout): worth retrying later.
    #[error("storage unreachable: {0}")]
    Unreachable(String),
    /// The destination specification or a key is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Anything else (an unexpected response, a local I/O error, a corrupt read-back).
    #[error("storage error: {0}")]
    Other(String),
}

impl StorageError {
    /// Whether retrying the same operation later may succeed (the backup worker's retry decision).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

/// Removes known secrets from text that came from elsewhere (server bodies, library errors), and
/// caps its length: an error message is for a journal line, not for a full XML document.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

const MAX_DETAIL: usize = 300;

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        // Very short strings are not worth scrubbing (and would mangle every message).
        Self { secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect() }
    }

    pub(crate) fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
        if out.chars().count() > MAX_DETAIL {
            let cut: String = out.chars().take(MAX_DETAIL).collect();
            format!("{cut}…")
        } else {
            out
        }
    }
}

/// What an error is about, for messages: "S3 bucket `b`", and the key if there is one.
pub(crate) struct Context<'a> {
    pub what: &'a str,
    pub key: Option<&'a str>,
}

impl Context<'_> {
    pub(crate) fn subject(&self) -> String {
        match self.key {
            Some(k) => format!("`{k}` in {}", self.what),
            None => self.what.to_owned(),
        }
    }

    /// "S3 bucket `b` refused access to `k` (AccessDenied)".
    pub(crate) fn refused(&self, detail: &str) -> StorageError {
        StorageError::Denied(match self.key {
            Some(k) => format!("{} refused access to `{k}` ({detail})", self.what),
            None => format!("{} refused access ({detail})", self.what),
        })
    }
}

/// The error code of an S3 or Azure XML error body (`<Code>NoSuchBucket</Code>`), if present.
pub(crate) fn xml_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

const BUCKET_MISSING_CODES: &[&str] = &["NoSuchBucket", "ContainerNotFound"];
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "InvalidAuthenticationInfo",
];

/// True if anything in the error's source chain is a failure to reach the server at all.
fn unreachable_cause(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>()
            && matches!(h.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout)
        {
            return true;
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Classifies an object_store error (S3 and Azure backends).
pub(crate) fn from_object_store(err: object_store::Error, ctx: &Context<'_>, redact: &Redactor) -> StorageError {
    use object_store::Error as E;
    let text = err.to_string();
    let code = xml_code(&text).map(str::to_owned);
    let detail = || match &code {
        Some(c) => c.clone(),
        None => redact.clean(&text),
    };
    if unreachable_cause(&err) {
        // The server's address is in `what`; the library message says refused/timeout/DNS.
        return StorageError::Unreachable(format!("{}: {}", ctx.what, redact.clean(&root_cause(&err))));
    }
    if let Some(c) = &code {
        if BUCKET_MISSING_CODES.contains(&c.as_str()) {
            return StorageError::BucketMissing(format!("{} does not exist ({c})", ctx.what));
        }
        if DENIED_CODES.contains(&c.as_str()) {
            return ctx.refused(c);
        }
    }
    match err {
        E::NotFound { .. } => StorageError::NotFound(ctx.subject()),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ctx.refused(&detail()),
        E::InvalidPath { .. } => StorageError::invalid("key", redact.clean(&text)),
        _ => StorageError::Other(format!("{}: {}", ctx.subject(), detail())),
    }
}

/// The innermost message of an error chain (e.g. "Connection refused (os error 111)").
pub(crate) fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut cur: &(dyn StdError + 'static) = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Classifies a reqwest transport error (GCS backend). Messages drop the URL, which for a
/// resumable-upload session is itself a bearer capability.
pub(crate) fn from_reqwest(err: reqwest::Error, ctx: &Context<'_>, redact: &Redactor) -> StorageError {
    let err = err.without_url();
    if unreachable_cause(&err) {
        return StorageError::Unreachable(format!("{}: {}", ctx.what, redact.clean(&root_cause(&err))));
    }
    StorageError::Other(format!("{}: {}", ctx.subject(), redact.clean(&root_cause(&err))))
}

/// Classifies a local file-system error.
pub(crate) fn from_io(err: std::io::Error, what: &str) -> StorageError {
    match err.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound(what.to_owned()),
        std::io::ErrorKind::PermissionDenied => StorageError::Denied(format!("{what}: {err}")),
        _ => StorageError::Other(format!("{what}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_scrubs_secrets_and_caps_length() {
        let r = Redactor::new(["hunter2-secret".to_owned(), "ab".to_owned()]);
        assert_eq!(r.clean("key hunter2-secret was wrong, ab stays"), "key *** was wrong, ab stays");
        assert!(r.clean(&"x".repeat(1000)).chars().count() <= MAX_DETAIL + 1);
    }

    #[test]
    fn xml_code_is_extracted() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(xml_code(body), Some("NoSuchBucket"));
        assert_eq!(xml_code("no xml"), None);
    }
}
