//! An HTTP target's specification as operators write it — URL, method, accepted status codes,
//! timeout, interval, request headers and body, a keyword or JSON-path assertion on the body, a
//! maximum response time, the certificate expiry warning — its validation, and the evaluation of its
//! assertion against a response body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::backups::FieldProblem;

/// The shortest check interval (seconds).
pub const MIN_INTERVAL_SECS: u32 = 1;
/// The longest check interval (one day).
pub const MAX_INTERVAL_SECS: u32 = 86_400;
/// The longest timeout (seconds); a timeout is also never longer than the target's interval.
pub const MAX_TIMEOUT_SECS: u32 = 120;
/// The largest request body (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most request headers.
pub const MAX_HEADERS: usize = 50;

/// The request methods a check may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl HttpMethod {
    pub const ALL: [HttpMethod; 7] =
        [Self::Get, Self::Head, Self::Post, Self::Put, Self::Patch, Self::Delete, Self::Options];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == upper)
            .ok_or_else(|| format!("{s:?} is not one of {}", Self::ALL.map(|m| m.as_str()).join(", ")))
    }
}

/// What the body of a response must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Assertion {
    /// The body contains `value` (or, with `invert`, does not).
    Keyword {
        value: String,
        #[serde(default)]
        invert: bool,
    },
    /// The body is JSON and the value at `path` (`$.a.b[0].c`) exists and is not null, or equals
    /// `equals` when given.
    JsonPath {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<Value>,
    },
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `$.a.b[0]["c d"]`-style paths (the leading `$` is optional).
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut rest = path.trim();
    rest = rest.strip_prefix('$').unwrap_or(rest);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("an empty key after '.'".into());
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("an unclosed '['")?;
            let inner = r[..end].trim();
            if let Some(quoted) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                steps.push(Step::Key(quoted.to_owned()));
            } else {
                let i = inner.parse().map_err(|_| format!("[{inner}] is neither an index nor a quoted key"))?;
                steps.push(Step::Index(i));
            }
            rest = &r[end + 1..];
        } else if steps.is_empty() {
            // `a.b` without the `$.`
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].to_owned()));
            rest = &rest[end..];
        } else {
            return Err(format!("unexpected {:?}", rest.chars().next().unwrap_or(' ')));
        }
    }
    if steps.is_empty() {
        return Err("names no value (write e.g. $.status)".into());
    }
    Ok(steps)
}

/// Checks `body` against `assertion`: `Err` says what failed.
pub fn evaluate_assertion(assertion: &Assertion, body: &str) -> Result<(), String> {
    match assertion {
        Assertion::Keyword { value, invert: false } if !body.contains(value.as_str()) => {
            Err(format!("the body does not contain {value:?}"))
        }
        Assertion::Keyword { value, invert: true } if body.contains(value.as_str()) => {
            Err(format!("the body contains {value:?}"))
        }
        Assertion::Keyword { .. } => Ok(()),
        Assertion::JsonPath { path, equals } => {
            let steps = parse_path(path)?;
            let doc: Value = serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
            let mut at = &doc;
            for step in &steps {
                let next = match step {
                    Step::Key(k) => at.get(k.as_str()),
                    Step::Index(i) => at.get(*i),
                };
                at = next.ok_or_else(|| format!("{path} is absent"))?;
            }
            match equals {
                None if at.is_null() => Err(format!("{path} is null")),
                None => Ok(()),
                Some(want) if loosely_equal(want, at) => Ok(()),
                Some(want) => Err(format!("{path} is {at}, expected {want}")),
            }
        }
    }
}

/// Equality that lets `"200"` match `200` (operators write either).
fn loosely_equal(want: &Value, got: &Value) -> bool {
    if want == got {
        return true;
    }
    match (want, got) {
        (Value::String(w), other) | (other, Value::String(w)) if !other.is_string() => {
            let rendered = other.to_string();
            *w == rendered
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => false,
    }
}

fn default_interval() -> u32 {
    60
}
fn default_timeout() -> u32 {
    10
}
fn default_true() -> bool {
    true
}

/// A target's fields as created or replaced (the API body, validated by [`TargetSpec::check`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// `None` accepts every 2xx.
    #[serde(default)]
    pub accepted_status_codes: Option<Vec<u16>>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    #[serde(default = "default_interval")]
    pub check_interval_seconds: u32,
    #[serde(default = "default_true")]
    pub is_active: bool,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub assertion: Option<Assertion>,
    /// A response slower than this (milliseconds) is down with class `response_time`.
    #[serde(default)]
    pub max_response_ms: Option<u32>,
    /// An HTTPS certificate that expires within this many days is flagged (`cert_expiring`).
    #[serde(default)]
    pub tls_expiry_warning_days: Option<u16>,
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// PEM certificates trusted for this target on top of the system's roots (a private CA).
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// The inventory server this target runs on.
    #[serde(default)]
    pub server_id: Option<Uuid>,
    /// Headers whose values are credentials, sealed in the vault (set by the store's caller from
    /// `secret_headers`, never from a request body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_headers: Option<SealedHeaders>,
}

/// Where a target's credential headers are: the vault's secret (a JSON object of name → value,
/// owned by the target) and their names, which may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHeaders {
    pub secret_id: Uuid,
    pub names: Vec<String>,
}

/// Header names whose values are credentials: they go in `secret_headers` (sealed, never returned).
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie")
        || ["token", "secret", "apikey", "api-key", "api_key", "password", "passwd", "credential"]
            .iter()
            .any(|w| n.contains(w))
}

/// Why a request header cannot be sent, if it cannot.
fn header_problem(k: &str, v: &str) -> Option<&'static str> {
    let token = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        Some("not a valid header name")
    } else if v.len() > 8192 || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Some("a value of at most 8192 characters without line breaks")
    } else if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("content-length") {
        Some("is set from the URL and body")
    } else {
        None
    }
}

/// Every problem of a target's credential headers (`secret_headers`), next to its plain `headers`.
pub fn check_secret_headers(secret: &BTreeMap<String, String>, plain: &BTreeMap<String, String>) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    if secret.len() + plain.len() > MAX_HEADERS {
        out.push(("secret_headers".to_owned(), format!("more than {MAX_HEADERS} headers in all")));
    }
    for (k, v) in secret {
        let field = format!("secret_headers.{k}");
        if let Some(p) = header_problem(k, v) {
            out.push((field, p.to_owned()));
        } else if plain.keys().any(|h| h.eq_ignore_ascii_case(k)) {
            out.push((field, "also given in headers: give it once".to_owned()));
        }
    }
    out
}

/// The hosts a URL names, lowercased, for the per-host concurrency limit and duplicate detection.
pub fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

/// The URL as duplicates are detected: parsed and re-serialized (case of scheme and host, default
/// port, an empty path all normalized), so `HTTP://Example.com:80` and `http://example.com/` are one.
pub fn normalize_url(url: &str) -> Option<String> {
    url::Url::parse(url.trim()).ok().map(|u| u.to_string())
}

impl TargetSpec {
    /// Every problem of the fields, each naming its field.
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out: Vec<FieldProblem> = Vec::new();
        let mut bad = |field: &str, reason: String| out.push((field.to_owned(), reason));
        if let Err(e) = crate::backups::check_name(&self.name) {
            bad("name", e);
        }
        match url::Url::parse(self.url.trim()) {
            _ if self.url.len() > 2048 => bad("url", "longer than 2048 characters".into()),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                bad("url", format!("scheme {:?} is not allowed: only http and https URLs can be checked", u.scheme()))
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => bad("url", "names no host".into()),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                bad("url", "must not carry credentials: give an Authorization header in secret_headers".into())
            }
            Ok(_) => {}
            Err(e) => bad("url", format!("not a URL ({e}); only http and https URLs can be checked")),
        }
        if let Some(codes) = &self.accepted_status_codes {
            if codes.is_empty() {
                bad("accepted_status_codes", "empty: use null to accept every 2xx".into());
            }
            if codes.len() > 100 {
                bad("accepted_status_codes", "more than 100 codes".into());
            }
            if let Some(c) = codes.iter().find(|c| !(100..=599).contains(*c)) {
                bad("accepted_status_codes", format!("{c} is not an HTTP status code (100-599)"));
            }
        }
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&self.check_interval_seconds) {
            bad(
                "check_interval_seconds",
                format!("must be between {MIN_INTERVAL_SECS} and {MAX_INTERVAL_SECS} seconds"),
            );
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_seconds) {
            bad("timeout_seconds", format!("must be between 1 and {MAX_TIMEOUT_SECS} seconds"));
        } else if self.timeout_seconds > self.check_interval_seconds {
            bad("timeout_seconds", "must not be longer than check_interval_seconds".into());
        }
        if self.headers.len() > MAX_HEADERS {
            bad("headers", format!("more than {MAX_HEADERS} headers"));
        }
        for (k, v) in &self.headers {
            if let Some(p) = header_problem(k, v) {
                bad(&format!("headers.{k}"), p.into());
            } else if is_credential_header(k) {
                bad(
                    &format!("headers.{k}"),
                    "carries a credential: give it in secret_headers, which are sealed at rest and never returned"
                        .into(),
                );
            }
        }
        if let Some(b) = &self.body {
            if b.len() > MAX_BODY_BYTES {
                bad("body", format!("larger than {MAX_BODY_BYTES} bytes"));
            }
            if matches!(self.method, HttpMethod::Get | HttpMethod::Head) {
                bad("body", format!("a {} request sends no body", self.method.as_str()));
            }
        }
        match &self.assertion {
            Some(Assertion::Keyword { value, .. }) if value.is_empty() || value.len() > 1024 => {
                bad("assertion.value", "a keyword of 1 to 1024 characters".into());
            }
            Some(Assertion::JsonPath { path, .. }) => {
                if let Err(e) = parse_path(path) {
                    bad("assertion.path", e);
                }
            }
            Some(Assertion::Keyword { .. }) if self.method == HttpMethod::Head => {
                bad("assertion", "a HEAD response has no body to assert on".into());
            }
            _ => {}
        }
        if let Some(ms) = self.max_response_ms
            && (ms == 0 || u64::from(ms) > u64::from(self.timeout_seconds) * 1000)
        {
            bad("max_response_ms", "must be between 1 and the timeout (in milliseconds)".into());
        }
        if let Some(d) = self.tls_expiry_warning_days
            && !(1..=365).contains(&d)
        {
            bad("tls_expiry_warning_days", "must be between 1 and 365 days".into());
        }
        if let Some(pem) = &self.ca_certificate
            && (!pem.contains("-----BEGIN CERTIFICATE-----") || pem.len() > 65_536)
        {
            bad("ca_certificate", "PEM certificates (-----BEGIN CERTIFICATE-----), at most 64 KiB".into());
        }
        out
    }

    /// Whether `code` is accepted.
    pub fn accepts(&self, code: u16) -> bool {
        match &self.accepted_status_codes {
            None => (200..300).contains(&code),
            Some(codes) => codes.contains(&code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> TargetSpec {
        serde_json::from_value(serde_json::json!({"name": "t", "url": url})).expect("spec")
    }

    fn fields(s: &TargetSpec) -> Vec<String> {
        s.check().into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn only_http_and_https_urls_are_checked() {
        assert!(spec("https://example.com/health").check().is_empty());
        let problems = spec("ftp://example.com/").check();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.contains("only http and https"), "{problems:?}");
        assert_eq!(fields(&spec("not a url")), ["url"]);
        assert_eq!(fields(&spec("http://user:pw@example.com/")), ["url"]);
    }

    #[test]
    fn fields_are_checked_against_each_other() {
        let mut s = spec("http://127.0.0.1/");
        s.timeout_seconds = 30;
        s.check_interval_seconds = 10;
        s.accepted_status_codes = Some(vec![200, 700]);
        s.body = Some("x".into());
        s.max_response_ms = Some(60_000);
        s.headers.insert("Bad Header".into(), "v".into());
        s.headers.insert("X-Ok".into(), "line\nbreak".into());
        let mut got = fields(&s);
        got.sort();
        assert_eq!(
            got,
            [
                "accepted_status_codes",
                "body",
                "headers.Bad Header",
                "headers.X-Ok",
                "max_response_ms",
                "timeout_seconds"
            ]
        );
        assert!(s.accepts(200) && !s.accepts(201));
        assert!(spec("http://x/").accepts(204) && !spec("http://x/").accepts(301));
    }

    #[test]
    fn assertions_evaluate_keywords_and_json_paths() {
        let kw = Assertion::Keyword { value: "ok".into(), invert: false };
        assert!(evaluate_assertion(&kw, "all ok").is_ok());
        assert!(evaluate_assertion(&kw, "fail").is_err());
        let inv = Assertion::Keyword { value: "error".into(), invert: true };
        assert!(evaluate_assertion(&inv, "an error").is_err());
        let body = r#"{"status": "ok", "checks": [{"db": {"latency": 3}}], "code": 200, "odd key": null}"#;
        let path = |p: &str, equals: Option<Value>| Assertion::JsonPath { path: p.into(), equals };
        assert!(evaluate_assertion(&path("$.status", Some("ok".into())), body).is_ok());
        assert!(evaluate_assertion(&path("$.checks[0].db.latency", Some(3.into())), body).is_ok());
        assert!(evaluate_assertion(&path("code", Some("200".into())), body).is_ok());
        let e = evaluate_assertion(&path("$.status", Some("down".into())), body).expect_err("fails");
        assert!(e.contains("expected \"down\""), "{e}");
        assert!(evaluate_assertion(&path("$[\"odd key\"]", None), body).expect_err("fails").contains("null"));
        assert!(evaluate_assertion(&path("$.missing", None), body).expect_err("fails").contains("absent"));
        assert!(evaluate_assertion(&path("$.status", None), "<html>").expect_err("fails").contains("not JSON"));
        assert!(parse_path("$").is_err() && parse_path("$.a[x]").is_err());
    }

    #[test]
    fn urls_normalize_for_duplicates() {
        assert_eq!(normalize_url("HTTP://Example.COM:80"), normalize_url("http://example.com/"));
        assert_ne!(normalize_url("http://example.com/a"), normalize_url("http://example.com/b"));
        assert_eq!(host_of("https://API.example.com:8443/x").as_deref(), Some("api.example.com"));
    }
}
