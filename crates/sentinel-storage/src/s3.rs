//! The S3 (and S3-compatible) backend: an object_store `AmazonS3` for objects, plus the one call
//! object_store lacks, ListMultipartUploads (SigV4-signed with object_store's own authorizer), so a
//! janitor can find and abort uploads a killed worker left behind.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::cloud::{Store, client_options, retry_config};
use crate::error::{Context, Redactor, from_object_store, from_reqwest, xml_code};
use crate::spec::{
    join, normalize_prefix, require_secret, strip, validate_endpoint, validate_key, validate_region, validate_s3_bucket,
};
use crate::{DestinationSpec, PendingUpload, StorageError};

/// S3 rejects parts other than the last below 5 MiB.
pub(crate) const MIN_PART: usize = 5 * 1024 * 1024;
/// S3's largest part.
pub(crate) const MAX_PART: usize = 5 * 1024 * 1024 * 1024;
/// S3's part-count limit: with 5 MiB parts an upload tops out at ≈ 48.8 GiB.
const MAX_PARTS: u64 = 10_000;

#[derive(Clone)]
pub(crate) struct S3Backend {
    pub(crate) store: Store,
    s3: Arc<AmazonS3>,
    bucket: String,
    /// `https://bucket.s3.region.amazonaws.com` or `http://host:port/bucket`: where bucket-level
    /// requests (ListMultipartUploads) go.
    bucket_url: String,
    region: String,
    credential: Arc<AwsCredential>,
    http: reqwest::Client,
}

impl S3Backend {
    pub(crate) fn open(spec: &DestinationSpec) -> Result<Self, StorageError> {
        let DestinationSpec::S3 {
            bucket,
            region,
            endpoint,
            prefix,
            access_key_id,
            secret_access_key,
            force_path_style,
        } = spec
        else {
            return Err(StorageError::invalid("kind", "not an S3 destination"));
        };
        validate_s3_bucket(bucket)?;
        validate_region(region)?;
        let prefix = normalize_prefix(prefix)?;
        if access_key_id.trim().is_empty() {
            return Err(StorageError::invalid("access_key_id", "is empty"));
        }
        require_secret("secret_access_key", secret_access_key)?;

        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key.expose_secret())
            .with_retry(retry_config());
        let (bucket_url, allow_http, shown) = match endpoint {
            None => {
                builder = builder.with_virtual_hosted_style_request(!force_path_style);
                let url = if *force_path_style {
                    format!("https://s3.{region}.amazonaws.com/{bucket}")
                } else {
                    format!("https://{bucket}.s3.{region}.amazonaws.com")
                };
                (url, false, format!("S3 bucket `{bucket}` ({region})"))
            }
            Some(e) => {
                let url = validate_endpoint(e)?;
                let base = url.as_str().trim_end_matches('/').to_owned();
                let bucket_url = if *force_path_style {
                    builder = builder.with_endpoint(&base).with_virtual_hosted_style_request(false);
                    format!("{base}/{bucket}")
                } else {
                    // object_store expects a virtual-hosted endpoint to include the bucket already.
                    let mut vurl = url.clone();
                    let host = url.host_str().unwrap_or_default();
                    vurl.set_host(Some(&format!("{bucket}.{host}")))
                        .map_err(|e| StorageError::invalid("endpoint", format!("cannot prefix the bucket: {e}")))?;
                    let v = vurl.as_str().trim_end_matches('/').to_owned();
                    builder = builder.with_endpoint(&v).with_virtual_hosted_style_request(true);
                    v
                };
                (bucket_url, url.scheme() == "http", format!("S3 bucket `{bucket}` at {base}"))
            }
        };
        let s3 = builder
            .with_client_options(client_options(allow_http))
            .build()
            .map_err(|e| StorageError::invalid("s3", Redactor::new([secret(spec)]).clean(&e.to_string())))?;
        let s3 = Arc::new(s3);
        let redact = Redactor::new([secret(spec)]);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| StorageError::Other(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            store: Store { store: s3.clone(), prefix, what: shown, redact, max_parts: MAX_PARTS },
            s3,
            bucket: bucket.clone(),
            bucket_url,
            region: region.clone(),
            credential: Arc::new(AwsCredential {
                key_id: access_key_id.clone(),
                secret_key: secret_access_key.expose_secret().to_owned(),
                token: None,
            }),
            http,
        })
    }

    pub(crate) fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, join(&self.store.prefix, key))
    }

    /// Multipart uploads started under the destination prefix and neither completed nor aborted.
    pub(crate) async fn incomplete_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        let list_prefix = if self.store.prefix.is_empty() { String::new() } else { format!("{}/", self.store.prefix) };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        // Pages of up to 1,000 uploads; the page limit only guards against a server that never
        // stops saying "truncated".
        for _ in 0..1000 {
            let mut query = vec![("prefix", list_prefix.clone()), ("uploads", String::new())];
            if let Some((k, u)) = &markers {
                query.push(("key-marker", k.clone()));
                query.push(("upload-id-marker", u.clone()));
            }
            let page = self.list_uploads_page(&query).await?;
            for u in page.upload {
                if let Some(key) = strip(&self.store.prefix, &u.key) {
                    let initiated = u.initiated.and_then(|t| t.parse().ok());
                    out.push(PendingUpload { key, upload_id: u.upload_id, initiated });
                }
            }
            match (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) {
                (true, Some(k), Some(u)) => markers = Some((k, u)),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    async fn list_uploads_page(&self, query: &[(&str, String)]) -> Result<ListUploadsResult, StorageError> {
        let ctx = Context { what: &self.store.what, key: None };
        let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", aws_encode(v))).collect();
        pairs.sort();
        let url = format!("{}/?{}", self.bucket_url, pairs.join("&"));
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(&url)
            .body(HttpRequestBody::from(bytes::Bytes::new()))
            .map_err(|e| StorageError::Other(format!("building ListMultipartUploads: {e}")))?;
        AwsAuthorizer::new(&self.credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| from_object_store(e, &ctx, &self.store.redact))?;
        let response = self
            .http
            .get(&url)
            .headers(request.headers().clone())
            .send()
            .await
            .map_err(|e| from_reqwest(e, &ctx, &self.store.redact))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| from_reqwest(e, &ctx, &self.store.redact))?;
        if !status.is_success() {
            let code = xml_code(&body).unwrap_or("no error code").to_owned();
            return Err(match (status.as_u16(), code.as_str()) {
                (_, "NoSuchBucket") => {
                    StorageError::BucketMissing(format!("{} does not exist ({code})", self.store.what))
                }
                (401 | 403, _) => {
                    StorageError::Denied(format!("{} refused ListMultipartUploads ({code})", self.store.what))
                }
                _ => {
                    StorageError::Other(format!("{}: ListMultipartUploads returned {status} ({code})", self.store.what))
                }
            });
        }
        quick_xml::de::from_str(&body).map_err(|e| {
            StorageError::Other(format!("{}: unreadable ListMultipartUploads reply: {e}", self.store.what))
        })
    }

    pub(crate) async fn abort_incomplete(&self, pending: &PendingUpload) -> Result<(), StorageError> {
        validate_key(&pending.key)?;
        let path = Path::parse(join(&self.store.prefix, &pending.key))
            .map_err(|e| StorageError::invalid("key", e.to_string()))?;
        let ctx = Context { what: &self.store.what, key: Some(&pending.key) };
        match self.s3.abort_multipart(&path, &pending.upload_id).await {
            Ok(()) => Ok(()),
            Err(e) => match from_object_store(e, &ctx, &self.store.redact) {
                // NoSuchUpload: already completed or aborted.
                StorageError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

fn secret(spec: &DestinationSpec) -> String {
    match spec {
        DestinationSpec::S3 { secret_access_key, .. } => secret_access_key.expose_secret().to_owned(),
        _ => String::new(),
    }
}

/// SigV4's URI encoding: everything but unreserved characters is percent-encoded (`+` would be
/// read as a space by some servers and break the signature).
fn aws_encode(s: &str) -> String {
    sentinel_domain::percent_encode(s)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsResult {
    #[serde(default)]
    upload: Vec<UploadEntry>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    initiated: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_encoding_is_strict() {
        assert_eq!(aws_encode("a b/c+d~e"), "a%20b%2Fc%2Bd~e");
    }

    #[test]
    fn list_uploads_reply_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/k2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/k1</Key><UploadId>u1</UploadId><Initiated>2026-12-01T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/k2</Key><UploadId>u2</UploadId><Initiated>2026-12-01T10:00:01.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let r: ListUploadsResult = quick_xml::de::from_str(xml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.upload.len(), 2);
        assert!(r.is_truncated);
        assert_eq!(r.next_upload_id_marker.as_deref(), Some("u2"));
        let empty: ListUploadsResult = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(empty.upload.is_empty());
    }
}
