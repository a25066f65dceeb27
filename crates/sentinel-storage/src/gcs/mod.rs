//! The Google Cloud Storage backend, over the GCS JSON API with reqwest (object_store's GCS client
//! speaks the XML API, which the emulators do not serve): object metadata, `alt=media` downloads,
//! listing, delete, and resumable uploads (in `upload.rs`).

mod auth;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::error::{Context, Redactor, from_reqwest};
use crate::spec::{join, normalize_prefix, strip, validate_endpoint, validate_gcs_bucket, validate_key};
use crate::{DestinationSpec, ObjectInfo, StorageError};

pub(crate) use upload::GcsUpload;

/// Non-final resumable-upload chunks must be multiples of 256 KiB.
pub(crate) const CHUNK_QUANTUM: usize = 256 * 1024;
/// Chunks smaller than this make an upload a long series of round trips.
pub(crate) const MIN_PART: usize = CHUNK_QUANTUM;
pub(crate) const MAX_PART: usize = 1024 * 1024 * 1024;
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// Attempts for idempotent requests (metadata, download, list, delete) on transient failures.
const ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub(crate) struct GcsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: String,
    prefix: String,
    /// The API root (`https://storage.googleapis.com`, or an emulator's).
    endpoint: Url,
    http: reqwest::Client,
    auth: auth::Auth,
    what: String,
    redact: Redactor,
}

#[derive(Debug, Deserialize)]
struct ObjectResource {
    name: String,
    /// int64 values are strings in the JSON API.
    size: Option<String>,
    updated: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorReply {
    error: Option<ErrorBody>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

impl GcsBackend {
    pub(crate) fn open(spec: &DestinationSpec) -> Result<Self, StorageError> {
        let DestinationSpec::Gcs { bucket, prefix, endpoint, service_account_json } = spec else {
            return Err(StorageError::invalid("kind", "not a GCS destination"));
        };
        validate_gcs_bucket(bucket)?;
        let prefix = normalize_prefix(prefix)?;
        let endpoint_url = match endpoint {
            Some(e) => validate_endpoint(e)?,
            None => Url::parse(DEFAULT_ENDPOINT).map_err(|e| StorageError::Other(e.to_string()))?,
        };
        let (auth, redact) = match (service_account_json, endpoint) {
            (Some(json), _) => {
                let account = auth::ServiceAccount::parse(json)?;
                (auth::Auth::service_account(account), Redactor::new([json.expose_secret().to_owned()]))
            }
            (None, Some(_)) => (auth::Auth::Anonymous, Redactor::default()),
            (None, None) => {
                return Err(StorageError::invalid(
                    "service_account_json",
                    "is required for Google Cloud Storage (only an emulator `endpoint` works without one)",
                ));
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            // A resumable upload answers 308 "Resume Incomplete", which is not a redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StorageError::Other(format!("building the HTTP client: {e}")))?;
        let shown = match endpoint {
            Some(_) => format!("GCS bucket `{bucket}` at {}", endpoint_url.as_str().trim_end_matches('/')),
            None => format!("GCS bucket `{bucket}`"),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                bucket: bucket.clone(),
                prefix,
                endpoint: endpoint_url,
                http,
                auth,
                what: shown,
                redact,
            }),
        })
    }

    pub(crate) fn location(&self, key: &str) -> String {
        format!("gs://{}/{}", self.inner.bucket, join(&self.inner.prefix, key))
    }

    fn ctx<'a>(&'a self, key: Option<&'a str>) -> Context<'a> {
        Context { what: &self.inner.what, key }
    }

    /// `{endpoint}/{segments…}`; each segment is percent-encoded whole, so an object name's `/`
    /// becomes `%2F` as the JSON API requires.
    fn url(&self, segments: &[&str]) -> Result<Url, StorageError> {
        let mut url = self.inner.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| StorageError::invalid("endpoint", "cannot be a base URL"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn object_url(&self, key: &str) -> Result<Url, StorageError> {
        validate_key(key)?;
        let name = join(&self.inner.prefix, key);
        self.url(&["storage", "v1", "b", &self.inner.bucket, "o", &name])
    }

    /// Sends a request with the bearer token, retrying idempotent requests on transient failures
    /// (connection errors, 429, 5xx) with a short backoff.
    async fn send(
        &self,
        key: Option<&str>,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, StorageError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let mut request = build(&self.inner.http);
            if let Some(token) = self.inner.auth.bearer(&self.inner.http, &self.inner.redact).await? {
                request = request.bearer_auth(token);
            }
            let result = request.send().await;
            let transient = match &result {
                Ok(r) => r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error(),
                Err(e) => e.is_connect() || e.is_timeout(),
            };
            if !transient || attempt >= ATTEMPTS {
                return result.map_err(|e| from_reqwest(e, &self.ctx(key), &self.inner.redact));
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    /// The error for a non-success response. A 404 is ambiguous in the JSON API (emulators say only
    /// "Not Found"), so it is resolved by asking whether the bucket exists.
    async fn status_error(&self, response: Response, key: Option<&str>) -> StorageError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorReply>(&body)
            .ok()
            .and_then(|r| r.error)
            .and_then(|e| e.message)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = self.inner.redact.clean(&message);
        let subject = self.ctx(key);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => subject.refused(&message),
            StatusCode::NOT_FOUND => {
                // GCS says "The specified bucket does not exist."; "No such object: b/k" may name
                // a bucket called "…bucket…", so only the whole phrase counts.
                let bucket_said = message.to_lowercase().contains("bucket does not exist");
                if bucket_said || key.is_none() || !self.bucket_exists().await {
                    self.bucket_missing()
                } else {
                    StorageError::NotFound(subject.subject())
                }
            }
            _ => StorageError::Other(format!("{}: HTTP {status} ({message})", subject.subject())),
        }
    }

    fn bucket_missing(&self) -> StorageError {
        StorageError::BucketMissing(format!("{} does not exist", self.inner.what))
    }

    /// Whether the bucket exists. Anything but a clear 404 counts as "exists": a key with object
    /// permissions only may not read bucket metadata.
    async fn bucket_exists(&self) -> bool {
        let Ok(url) = self.url(&["storage", "v1", "b", &self.inner.bucket]) else { return true };
        match self.send(None, |c| c.get(url.clone()).query(&[("fields", "name")])).await {
            Ok(r) => r.status() != StatusCode::NOT_FOUND,
            Err(_) => true,
        }
    }

    pub(crate) async fn upload(&self, key: &str, part_size: usize) -> Result<GcsUpload, StorageError> {
        validate_key(key)?;
        let name = join(&self.inner.prefix, key);
        let url = self.url(&["upload", "storage", "v1", "b", &self.inner.bucket, "o"])?;
        let metadata = serde_json::json!({ "name": name, "contentType": "application/octet-stream" });
        let response = self
            .send(Some(key), |c| {
                c.post(url.clone())
                    .query(&[("uploadType", "resumable"), ("name", name.as_str())])
                    .header("X-Upload-Content-Type", "application/octet-stream")
                    .json(&metadata)
            })
            .await?;
        if !response.status().is_success() {
            // Starting a session cannot miss an object, only the bucket.
            if response.status() == StatusCode::NOT_FOUND {
                return Err(self.bucket_missing());
            }
            return Err(self.status_error(response, Some(key)).await);
        }
        let session = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Url::parse(v).ok())
            .ok_or_else(|| {
                StorageError::Other(format!("{}: no resumable session URL in the reply", self.inner.what))
            })?;
        let what = format!("`{key}` in {}", self.inner.what);
        Ok(GcsUpload::start(self.inner.http.clone(), session, part_size, what, self.inner.redact.clone()))
    }

    pub(crate) async fn download(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let url = self.object_url(key)?;
        let response = self.send(Some(key), |c| c.get(url.clone()).query(&[("alt", "media")])).await?;
        if !response.status().is_success() {
            return Err(self.status_error(response, Some(key)).await);
        }
        let (what, owned_key, redact) = (self.inner.what.clone(), key.to_owned(), self.inner.redact.clone());
        Ok(response
            .bytes_stream()
            .map_err(move |e| from_reqwest(e, &Context { what: &what, key: Some(&owned_key) }, &redact))
            .boxed())
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let url = self.object_url(key)?;
        let response = self.send(Some(key), |c| c.get(url.clone())).await?;
        if !response.status().is_success() {
            return match self.status_error(response, Some(key)).await {
                StorageError::NotFound(_) => Ok(None),
                e => Err(e),
            };
        }
        let object: ObjectResource = response
            .json()
            .await
            .map_err(|e| StorageError::Other(format!("`{key}` in {}: unreadable metadata: {e}", self.inner.what)))?;
        Ok(Some(info(key.to_owned(), &object)))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let url = self.object_url(key)?;
        let response = self.send(Some(key), |c| c.request(Method::DELETE, url.clone())).await?;
        if response.status().is_success() {
            return Ok(());
        }
        match self.status_error(response, Some(key)).await {
            StorageError::NotFound(_) => Ok(()),
            e => Err(e),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let full = join(&self.inner.prefix, prefix);
        // Segment semantics, like the other backends: `a/b` lists `a/b/…`, not `a/bc`.
        let full = if full.is_empty() { full } else { format!("{full}/") };
        let url = self.url(&["storage", "v1", "b", &self.inner.bucket, "o"])?;
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            // No `fields` selector: fake-gcs-server answers it with an empty listing.
            let mut query = vec![("prefix", full.clone())];
            if let Some(t) = &page_token {
                query.push(("pageToken", t.clone()));
            }
            let response = self.send(None, |c| c.get(url.clone()).query(&query)).await?;
            if !response.status().is_success() {
                return Err(self.status_error(response, None).await);
            }
            let page: ObjectList = response
                .json()
                .await
                .map_err(|e| StorageError::Other(format!("{}: unreadable listing: {e}", self.inner.what)))?;
            for object in &page.items {
                if let Some(key) = strip(&self.inner.prefix, &object.name) {
                    out.push(info(key, object));
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

fn info(key: String, object: &ObjectResource) -> ObjectInfo {
    ObjectInfo {
        key,
        size: object.size.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0),
        last_modified: object.updated.as_deref().and_then(|t| t.parse().ok()).unwrap_or_default(),
    }
}
