//! The GCS backend against fake-gcs-server (JSON API, no auth): the common suite and error kinds;
//! and service-account authentication against a fake OAuth token endpoint (token fetched once and
//! reused, rejected grants are Denied), plus a fake GCS answering 403.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use secrecy::SecretString;
use sentinel_storage::{Destination, DestinationSpec, StorageError};
use sentinel_testkit::emulators;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

const TEST_KEY: &str = include_str!("../data/test-service-account-key.pem");
const EMAIL: &str = "backup@sentinel-test.iam.gserviceaccount.com";

fn spec(endpoint: &str, bucket: &str, prefix: &str, key: Option<String>) -> DestinationSpec {
    DestinationSpec::Gcs {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        service_account_json: key.map(SecretString::from),
    }
}

fn key_json(token_uri: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "sentinel-test",
        "private_key_id": "test-key-1",
        "private_key": TEST_KEY,
        "client_email": EMAIL,
        "token_uri": token_uri,
    })
    .to_string()
}

/// One request a fake server received.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    body: String,
}

/// A minimal HTTP/1.1 server on a loopback port: answers every request with `reply(request)`.
async fn fake_server(reply: fn(&Seen) -> (u16, String)) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let header_end = loop {
                let Ok(n) = socket.read(&mut chunk).await else { break None };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p + 4);
                }
            };
            let Some(header_end) = header_end else { continue };
            let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < header_end + length {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request = Seen {
                request_line: head.lines().next().unwrap_or_default().to_owned(),
                body: String::from_utf8_lossy(&buf[header_end..]).into_owned(),
            };
            let (status, body) = reply(&request);
            if let Ok(mut l) = log.lock() {
                l.push(request);
            }
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, seen)
}

async fn fresh_anonymous(prefix: &str) -> (Destination, String) {
    common::init();
    let gcs = emulators::fake_gcs().await;
    let bucket = gcs.create_bucket().await;
    let dest = Destination::open(&spec(&gcs.endpoint, &bucket, prefix, None)).unwrap_or_else(|e| panic!("open: {e}"));
    (dest, bucket)
}

#[tokio::test]
async fn round_trip() {
    let (dest, bucket) = fresh_anonymous("sentinel/backups").await;
    assert_eq!(dest.location("db/x.zst"), format!("gs://{bucket}/sentinel/backups/db/x.zst"));
    common::round_trip(&dest).await;
}

#[tokio::test]
async fn abort_leaves_no_object() {
    let (dest, _) = fresh_anonymous("").await;
    common::abort_leaves_nothing(&dest, true).await;
}

#[tokio::test]
async fn exact_multiples_of_the_chunk_size_finalize() {
    // 512 KiB with 256 KiB chunks: every byte goes out in non-final chunks, and complete then sends
    // the empty final request that states the size.
    let (dest, _) = fresh_anonymous("").await;
    let body = common::data(512 * 1024, 5);
    assert_eq!(common::upload(&dest, "exact", &body, 256 * 1024).await, body.len() as u64);
    assert_eq!(common::download(&dest, "exact").await, body);
    assert_eq!(common::upload(&dest, "empty", b"", 256 * 1024).await, 0);
    assert_eq!(dest.head("empty").await.ok().flatten().map(|i| i.size), Some(0));
}

#[tokio::test]
async fn a_missing_bucket_is_bucket_missing() {
    common::init();
    let gcs = emulators::fake_gcs().await;
    let name = emulators::unique_bucket_name();
    let dest = Destination::open(&spec(&gcs.endpoint, &name, "", None)).unwrap_or_else(|e| panic!("{e}"));
    let missing = |e: &StorageError| matches!(e, StorageError::BucketMissing(_));
    let msg = common::assert_error(dest.probe().await, missing, &[]);
    assert!(msg.contains(&name), "{msg}");
    common::assert_error(dest.list("").await, missing, &[]);
    common::assert_error(dest.head("k").await, missing, &[]);
    common::assert_error(dest.download("k").await.map(|_| ()), missing, &[]);
    common::assert_error(dest.delete("k").await, missing, &[]);
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    common::init();
    let endpoint = format!("http://127.0.0.1:{}", sentinel_testkit::free_port());
    let dest = Destination::open(&spec(&endpoint, "backups", "", None)).unwrap_or_else(|e| panic!("{e}"));
    let unreachable = |e: &StorageError| matches!(e, StorageError::Unreachable(_));
    common::assert_error(dest.probe().await, unreachable, &[]);
    common::assert_error(dest.list("").await, unreachable, &[]);
}

#[tokio::test]
async fn a_service_account_token_is_fetched_once_and_reused() {
    common::init();
    let gcs = emulators::fake_gcs().await;
    let bucket = gcs.create_bucket().await;
    let (port, seen) =
        fake_server(|_| (200, r#"{"access_token":"ya29.test-token","expires_in":3600,"token_type":"Bearer"}"#.into()))
            .await;
    let token_uri = format!("http://127.0.0.1:{port}/token");
    let dest = Destination::open(&spec(&gcs.endpoint, &bucket, "", Some(key_json(&token_uri))))
        .unwrap_or_else(|e| panic!("open: {e}"));
    dest.probe().await.unwrap_or_else(|e| panic!("probe: {e}"));
    assert_eq!(common::upload(&dest, "k", b"authorized", 0).await, 10);
    assert_eq!(dest.list("").await.unwrap_or_else(|e| panic!("{e}")).len(), 1);

    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(requests.len(), 1, "one token for every request: {requests:?}");
    assert!(requests[0].request_line.starts_with("POST /token "), "{}", requests[0].request_line);
    let form: Vec<(String, String)> = requests[0]
        .body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let jwt = get("assertion");
    let claims = jwt.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["aud"], token_uri);
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/devstorage.read_write");
}

#[tokio::test]
async fn a_rejected_grant_is_denied_without_leaking_the_key() {
    common::init();
    let gcs = emulators::fake_gcs().await;
    let (port, _) =
        fake_server(|_| (400, r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into()))
            .await;
    let json = key_json(&format!("http://127.0.0.1:{port}/token"));
    let dest = Destination::open(&spec(&gcs.endpoint, "some-bucket", "", Some(json))).unwrap_or_else(|e| panic!("{e}"));
    let denied = |e: &StorageError| matches!(e, StorageError::Denied(_));
    let key_body = TEST_KEY.lines().nth(1).unwrap_or_default();
    let msg = common::assert_error(dest.probe().await, denied, &[key_body]);
    assert!(msg.contains("invalid_grant") && msg.contains(EMAIL), "{msg}");
}

#[tokio::test]
async fn a_forbidden_reply_from_gcs_is_denied() {
    common::init();
    let (port, _) = fake_server(|_| {
        (403, r#"{"error":{"code":403,"message":"caller does not have storage.objects.list access"}}"#.into())
    })
    .await;
    let endpoint = format!("http://127.0.0.1:{port}");
    let dest = Destination::open(&spec(&endpoint, "some-bucket", "", None)).unwrap_or_else(|e| panic!("{e}"));
    let denied = |e: &StorageError| matches!(e, StorageError::Denied(_));
    let msg = common::assert_error(dest.list("").await, denied, &[]);
    assert!(msg.contains("storage.objects.list"), "{msg}");
    common::assert_error(dest.probe().await, denied, &[]);
}

#[tokio::test]
async fn gcs_needs_a_key_unless_an_emulator_endpoint_is_given() {
    let spec = DestinationSpec::Gcs {
        bucket: "backups".into(),
        prefix: String::new(),
        endpoint: None,
        service_account_json: None,
    };
    match Destination::open(&spec) {
        Err(StorageError::Invalid { field, .. }) => assert_eq!(field, "service_account_json"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
