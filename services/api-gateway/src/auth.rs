//! Authentication and authorisation: who is calling (session cookie, bearer session token, or API key
//! in `X-API-Key`/bearer), in which organization, with which role; password and token hashing; the
//! login rate limiter; bootstrap of the first admin and the root key.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use secrecy::ExposeSecret;
use sentinel_jobs::Spine;
use sentinel_jobs::db::{ApiKey, NewApiKey, User};
use sentinel_jobs::domain::{KeyScope, Role};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Problem;

/// Name of the console's session cookie.
pub const SESSION_COOKIE: &str = "sentinel_session";
/// `created_by` of the root key that `http.api_token` defines (it cannot be revoked through the API).
pub const CONFIGURED: &str = "configuration";
/// Prefix of generated API keys, so a leaked one is recognisable (and scannable).
pub const KEY_PREFIX: &str = "sk_";

/// Who is calling, resolved once per request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub org_id: Uuid,
    pub role: Role,
    pub scope: KeyScope,
    pub actor: Actor,
}

#[derive(Debug, Clone)]
pub enum Actor {
    User { id: Uuid, email: String },
    ApiKey { id: Uuid, name: String },
}

impl Principal {
    /// How the audit log and `requested_by` name this caller.
    pub fn label(&self) -> String {
        match &self.actor {
            Actor::User { email, .. } => format!("user:{email}"),
            Actor::ApiKey { name, id } => format!("key:{name}:{}", &id.simple().to_string()[..8]),
        }
    }

    /// Refuses (403) callers whose role is below `role`, and ingest-only keys everywhere but ingestion.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.scope == KeyScope::Ingest {
            return Err(Problem::forbidden("this API key may only ingest metrics and heartbeats"));
        }
        if !self.role.allows(role) {
            return Err(Problem::forbidden(&format!("requires the {role} role; you are {}", self.role)));
        }
        Ok(())
    }

    /// Admits the callers that may push metrics and heartbeats: ingest-only keys, and full callers
    /// of at least the operator role.
    pub fn require_ingest(&self) -> Result<(), Problem> {
        if self.scope == KeyScope::Ingest {
            return Ok(());
        }
        self.require(Role::Operator)
    }

    fn from_user(user: &User) -> Self {
        Self {
            org_id: user.org_id,
            role: user.role,
            scope: KeyScope::Full,
            actor: Actor::User { id: user.id, email: user.email.clone() },
        }
    }

    fn from_key(key: &ApiKey) -> Self {
        Self {
            org_id: key.org_id,
            role: key.role,
            scope: key.scope,
            actor: Actor::ApiKey { id: key.id, name: key.name.clone() },
        }
    }
}

/// Handlers that take a `Principal` are authenticated: no principal, 401.
impl FromRequest for Principal {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Principal>().cloned().ok_or_else(Problem::unauthorized))
    }
}

/// SHA-256 of a random token, hex; what the database stores.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// 256 random bits as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_salt() -> Result<SaltString, argon2::password_hash::Error> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    SaltString::encode_b64(&bytes)
}

/// Argon2id hash of a password, computed on the blocking pool (it is deliberately slow).
pub async fn hash_password(password: String) -> Result<String, Problem> {
    tokio::task::spawn_blocking(move || {
        let salt = random_salt()?;
        argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| Problem::internal(&e))?
    .map_err(|e| Problem::internal(&std::io::Error::other(e.to_string())))
}

/// Checks a password against a stored hash on the blocking pool. A malformed hash never matches.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so a miss costs as much time as a hit.
pub static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    random_salt()
        .and_then(|salt| argon2::Argon2::default().hash_password(b"not a real password", &salt).map(|h| h.to_string()))
        .unwrap_or_default()
});

/// Resolves the caller from the request's credentials and stores it as a request extension. Requests
/// without credentials pass through (public routes; handlers that need a principal answer 401);
/// requests with invalid credentials get 401 at once.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let spine = req.app_data::<web::Data<Spine>>().cloned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned());
    let api_key = header("x-api-key");
    let bearer = header("authorization").and_then(|h| h.strip_prefix("Bearer ").map(|t| t.trim().to_owned()));
    let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    if let Some(spine) = spine
        && (api_key.is_some() || bearer.is_some() || cookie.is_some())
    {
        let cache = req.app_data::<web::Data<CredentialCache>>().cloned();
        let presented = api_key.clone().or(bearer.clone()).or(cookie.clone()).unwrap_or_default();
        let hash = token_hash(&presented);
        let generation = cache.as_ref().map_or(0, |c| c.generation());
        let cached = cache.as_ref().and_then(|c| c.get(&hash));
        // One lookup per credential at a time: when a busy client's entry expires, its concurrent
        // requests wait for that lookup instead of each querying (and queueing on) the database.
        let _flight = match (&cached, &cache) {
            (None, Some(c)) => Some(c.single_flight(&hash).lock_owned().await),
            _ => None,
        };
        let cached = cached.or_else(|| cache.as_ref().and_then(|c| c.get(&hash)));
        let principal = match cached {
            Some(p) => Some(p),
            None => {
                let p = resolve(
                    &spine,
                    &hash,
                    api_key.is_some(),
                    cookie.is_some() && api_key.is_none() && bearer.is_none(),
                )
                .await
                .map_err(Problem::from)?;
                if let (Some(p), Some(c)) = (&p, &cache) {
                    c.put(&hash, p.clone(), generation);
                }
                p
            }
        };
        match principal {
            Some(p) => {
                req.extensions_mut().insert(p);
            }
            None => return Err(Problem::unauthorized().into()),
        }
    }
    next.call(req).await
}

/// Looks a credential up by hash: an API key (header or bearer), else a session (bearer or cookie).
async fn resolve(
    spine: &Spine,
    hash: &str,
    key_only: bool,
    session_only: bool,
) -> Result<Option<Principal>, sentinel_jobs::db::DbError> {
    let access = spine.db().access();
    if !session_only && let Some(k) = access.api_key_by_hash(hash).await? {
        // Recording use is throttled to once a minute per key; skip the write when it is recent.
        if k.last_used_at.is_none_or(|t| chrono::Utc::now() - t > chrono::Duration::seconds(60))
            && let Err(e) = access.touch_api_key(k.id).await
        {
            tracing::warn!(error = %e, "could not record API key use");
        }
        return Ok(Some(Principal::from_key(&k)));
    }
    if key_only {
        return Ok(None);
    }
    Ok(access.session_user(hash).await?.map(|u| Principal::from_user(&u)))
}

/// A short-lived in-process cache of resolved credentials (hash → principal), so a busy client costs
/// no database lookup per request. Entries live `TTL`; revoking a key or logging out evicts the entry in
/// this process at once, and in other gateway replicas within `TTL`.
pub struct CredentialCache {
    // A std Mutex: lookups are map operations, never held across an await.
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
    /// Bumped by every `clear`; a lookup that began before a clear must not be cached after it.
    generation: std::sync::atomic::AtomicU64,
    /// Per-credential locks serialising lookups of one credential (single flight).
    flights: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl CredentialCache {
    pub const TTL: Duration = Duration::from_secs(5);
    const MAX: usize = 10_000;

    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The lock that lookups of `hash` take in turn. Locks nobody holds or waits for are dropped.
    fn single_flight(&self, hash: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.len() >= Self::MAX {
            flights.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
        }
        flights.entry(hash.to_owned()).or_default().clone()
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn get(&self, hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(_, at)| at.elapsed() < Self::TTL).map(|(p, _)| p.clone())
    }

    fn put(&self, hash: &str, principal: Principal, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if generation != self.generation() {
            return;
        }
        if entries.len() >= Self::MAX {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.len() >= Self::MAX {
                entries.clear();
            }
        }
        entries.insert(hash.to_owned(), (principal, Instant::now()));
    }

    /// Forgets every cached credential (after a revocation, logout, or account change).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.clear();
    }
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Fixed-window limiter for login attempts, per key (client address or email). In memory: each gateway
/// replica limits on its own, which bounds guessing to replicas × limit per minute.
pub struct LoginLimiter {
    per_minute: u32,
    // A std Mutex: the critical section is a map lookup, never held across an await.
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts an attempt; `Err(retry_after)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.per_minute {
            Err(Duration::from_secs(60).saturating_sub(now.duration_since(entry.0)))
        } else {
            Ok(())
        }
    }
}

/// Creates what must exist before anyone can log in: the bootstrap organization, the root API key
/// (`http.api_token`) and the bootstrap admin (when configured and no user exists yet).
pub async fn bootstrap(spine: &Spine) -> anyhow::Result<()> {
    let settings = spine.settings();
    let access = spine.db().access();
    let needs_org = settings.http.api_token.is_some() || settings.auth.bootstrap_admin_email.is_some();
    if !needs_org {
        return Ok(());
    }
    let org_name = settings.auth.bootstrap_org.trim();
    let org = match access.org_by_name(org_name).await? {
        Some(org) => org,
        None => match access.create_org(org_name).await {
            Ok(org) => org,
            // Another replica created it first.
            Err(sentinel_jobs::db::DbError::Duplicate) => {
                access.org_by_name(org_name).await?.ok_or_else(|| anyhow::anyhow!("organization vanished"))?
            }
            Err(e) => return Err(e.into()),
        },
    };
    if let Some(token) = &settings.http.api_token {
        let hash = token_hash(token.expose_secret());
        if access.api_key_by_hash(&hash).await?.is_none() {
            let created = access
                .create_api_key(NewApiKey {
                    org_id: org.id,
                    name: "root (http.api_token)",
                    prefix: "configured",
                    key_hash: &hash,
                    role: Role::Admin,
                    scope: KeyScope::Full,
                    created_by: Some(CONFIGURED.to_owned()),
                })
                .await;
            match created {
                Ok(_) | Err(sentinel_jobs::db::DbError::Duplicate) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let (Some(email), Some(password)) =
        (&settings.auth.bootstrap_admin_email, &settings.auth.bootstrap_admin_password)
        && access.user_count().await? == 0
    {
        let hash = hash_password(password.expose_secret().to_owned()).await.map_err(|p| anyhow::anyhow!("{p}"))?;
        match access.create_user(org.id, &email.trim().to_lowercase(), &hash, Role::Admin).await {
            Ok(_) => tracing::info!(email = %email, "bootstrap admin created"),
            Err(sentinel_jobs::db::DbError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_the_limit_then_refuses() {
        let l = LoginLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("ip").is_ok());
        }
        assert!(l.check("ip").is_err());
        assert!(l.check("other").is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 64);
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }
}
