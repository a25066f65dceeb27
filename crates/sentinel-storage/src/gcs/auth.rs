//! Google service-account authentication: parsing the JSON key, building the RS256-signed JWT
//! assertion (OAuth2 JWT-bearer grant), and fetching and caching access tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::StorageError;
use crate::error::{Context, Redactor, from_reqwest};

/// Read, write and delete objects; nothing on IAM or bucket configuration.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Refresh a token this long before it expires, so a request never carries a token that lapses
/// on the way.
const REFRESH_MARGIN: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    private_key: SecretString,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A parsed service-account key. The private key lives only inside ring's key pair.
pub(crate) struct ServiceAccount {
    pub(crate) client_email: String,
    pub(crate) private_key_id: Option<String>,
    pub(crate) token_uri: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

const FIELD: &str = "service_account_json";

impl ServiceAccount {
    pub(crate) fn parse(json: &SecretString) -> Result<Self, StorageError> {
        let file: KeyFile = serde_json::from_str(json.expose_secret()).map_err(|e| {
            // serde_json quotes offending values in some messages: report only what is safe.
            let msg = e.to_string();
            let reason = if msg.starts_with("missing field") {
                msg.split(" at line").next().unwrap_or("missing field").to_owned()
            } else {
                format!("is not a service-account key file (JSON error at line {}, column {})", e.line(), e.column())
            };
            StorageError::invalid(FIELD, reason)
        })?;
        if let Some(kind) = &file.kind
            && kind != "service_account"
        {
            return Err(StorageError::invalid(FIELD, format!("has type `{kind}`, expected `service_account`")));
        }
        if !file.client_email.contains('@') {
            return Err(StorageError::invalid(FIELD, "client_email is not an e-mail address"));
        }
        let token_uri = file.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        check_token_uri(&token_uri)?;
        let key = key_pair(file.private_key.expose_secret())?;
        Ok(Self { client_email: file.client_email, private_key_id: file.private_key_id, token_uri, key })
    }

    /// The signed JWT for the token request, issued at `now` (seconds since the epoch).
    pub(crate) fn assertion(&self, now: i64) -> Result<String, StorageError> {
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input.as_bytes(), &mut signature)
            .map_err(|_| StorageError::Other("signing the service-account assertion failed".to_owned()))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The DER public key, for tests that verify signatures.
    #[cfg(test)]
    pub(crate) fn public_key_der(&self) -> Vec<u8> {
        self.key.public().as_ref().to_vec()
    }
}

/// The token endpoint receives the signed assertion, itself a credential for an hour: only over
/// TLS, except to a loopback test server.
fn check_token_uri(uri: &str) -> Result<(), StorageError> {
    let url = reqwest::Url::parse(uri).map_err(|_| StorageError::invalid(FIELD, "token_uri is not a URL"))?;
    let loopback = url.host_str().is_some_and(|h| {
        h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(StorageError::invalid(FIELD, "token_uri must be an https:// URL")),
    }
}

/// The RSA key from a PEM block: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or PKCS#1.
fn key_pair(pem: &str) -> Result<RsaKeyPair, StorageError> {
    let bad = |reason: &str| StorageError::invalid(FIELD, format!("private_key {reason}"));
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).flat_map(|l| l.trim().chars()).collect();
    if body.is_empty() {
        return Err(bad("is not a PEM block"));
    }
    let der = STANDARD.decode(body).map_err(|_| bad("is not valid PEM (base64)"))?;
    let key = if pkcs1 { RsaKeyPair::from_der(&der) } else { RsaKeyPair::from_pkcs8(&der) };
    // KeyRejected's text is a fixed description ("InvalidEncoding"…), never key material.
    key.map_err(|e| bad(&format!("is not a usable RSA key ({e})")))
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: SecretString,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

pub(crate) struct Cached {
    token: SecretString,
    refresh_at: SystemTime,
}

/// How requests are authorized.
pub(crate) enum Auth {
    /// No `Authorization` header: only an emulator accepts this.
    Anonymous,
    ServiceAccount {
        /// Boxed: ring's key pair is large, and most destinations never hold one.
        account: Box<ServiceAccount>,
        /// A tokio mutex, held while a token is fetched, so concurrent requests wait for one
        /// refresh instead of each signing and fetching their own.
        cache: tokio::sync::Mutex<Option<Cached>>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::ServiceAccount { account, .. } => write!(f, "ServiceAccount({})", account.client_email),
        }
    }
}

impl Auth {
    pub(crate) fn service_account(account: ServiceAccount) -> Self {
        Self::ServiceAccount { account: Box::new(account), cache: tokio::sync::Mutex::new(None) }
    }

    /// The bearer token to send, fetching a fresh one when needed.
    pub(crate) async fn bearer(
        &self,
        http: &reqwest::Client,
        redact: &Redactor,
    ) -> Result<Option<String>, StorageError> {
        let Self::ServiceAccount { account, cache } = self else { return Ok(None) };
        let mut cached = cache.lock().await;
        if let Some(c) = cached.as_ref()
            && SystemTime::now() < c.refresh_at
        {
            return Ok(Some(c.token.expose_secret().to_owned()));
        }
        let fresh = fetch_token(account, http, redact).await?;
        let token = fresh.token.expose_secret().to_owned();
        *cached = Some(fresh);
        Ok(Some(token))
    }
}

async fn fetch_token(
    account: &ServiceAccount,
    http: &reqwest::Client,
    redact: &Redactor,
) -> Result<Cached, StorageError> {
    let what = format!("GCS token endpoint {}", account.token_uri);
    let ctx = Context { what: &what, key: None };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
    let assertion = account.assertion(now)?;
    let response = http
        .post(&account.token_uri)
        .form(&[("grant_type", GRANT_TYPE), ("assertion", assertion.as_str())])
        .send()
        .await
        .map_err(|e| from_reqwest(e, &ctx, redact))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| from_reqwest(e, &ctx, redact))?;
    if !status.is_success() {
        let detail = serde_json::from_str::<OAuthError>(&body)
            .ok()
            .map(|e| [e.error, e.error_description].into_iter().flatten().collect::<Vec<_>>().join(": "))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let detail = redact.clean(&detail);
        return Err(if status.is_client_error() {
            StorageError::Denied(format!("{what} rejected service account `{}` ({detail})", account.client_email))
        } else {
            StorageError::Other(format!("{what} failed ({detail})"))
        });
    }
    let reply: TokenReply = serde_json::from_str(&body)
        .map_err(|_| StorageError::Other(format!("{what} sent an unreadable token reply")))?;
    let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(3600));
    let refresh_at = SystemTime::now() + lifetime.saturating_sub(REFRESH_MARGIN);
    Ok(Cached { token: reply.access_token, refresh_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway RSA key made for these tests only (it signs nothing anywhere else).
    const TEST_KEY: &str = include_str!("../../tests/data/test-service-account-key.pem");

    fn key_json(extra: serde_json::Value) -> SecretString {
        let mut v = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid-123",
            "private_key": TEST_KEY,
            "client_email": "backup@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        SecretString::from(v.to_string())
    }

    fn decode(part: &str) -> serde_json::Value {
        let raw = URL_SAFE_NO_PAD.decode(part).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn assertion_has_the_expected_header_claims_and_a_valid_signature() {
        let sa = ServiceAccount::parse(&key_json(serde_json::json!({}))).unwrap_or_else(|e| panic!("{e}"));
        let jwt = sa.assertion(1_700_000_000).unwrap_or_else(|e| panic!("{e}"));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0]), serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": "kid-123" }));
        assert_eq!(
            decode(parts[1]),
            serde_json::json!({
                "iss": "backup@p.iam.gserviceaccount.com",
                "scope": SCOPE,
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000,
                "exp": 1_700_003_600,
            })
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_else(|e| panic!("{e}"));
        let public =
            ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, sa.public_key_der());
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &signature).is_ok(), "RS256 signature must verify");
        // PKCS#1 v1.5 signatures are deterministic: the same input signs the same.
        assert_eq!(sa.assertion(1_700_000_000).ok(), Some(jwt));
    }

    #[test]
    fn key_errors_are_clear_and_leak_nothing() {
        let missing = ServiceAccount::parse(&SecretString::from(
            r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#,
        ));
        let msg = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("missing field `client_email`"), "{msg}");

        let wrong_type = ServiceAccount::parse(&SecretString::from(r#"{"client_email": 12345678901234}"#));
        let msg = wrong_type.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!msg.contains("12345678901234"), "{msg}");

        let bad_key = ServiceAccount::parse(&key_json(
            serde_json::json!({ "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----" }),
        ));
        let msg = bad_key.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("not a usable RSA key") && !msg.contains("c2VjcmV0"), "{msg}");

        let http =
            ServiceAccount::parse(&key_json(serde_json::json!({ "token_uri": "http://oauth.example.com/token" })));
        assert!(matches!(http, Err(StorageError::Invalid { field: FIELD, .. })));
        let loopback = ServiceAccount::parse(&key_json(serde_json::json!({ "token_uri": "http://127.0.0.1:9/token" })));
        assert!(loopback.is_ok());
        let user = ServiceAccount::parse(&key_json(serde_json::json!({ "type": "authorized_user" })));
        assert!(user.err().map(|e| e.to_string()).unwrap_or_default().contains("authorized_user"));
    }
}
