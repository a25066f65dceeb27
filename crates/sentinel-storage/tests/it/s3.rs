//! The S3 backend against moto (IAM enforced): the common suite, incomplete multipart uploads
//! for the janitor, and the error kinds (missing bucket, wrong credentials, nothing listening).

use bytes::Bytes;
use secrecy::SecretString;
use sentinel_storage::{Destination, DestinationSpec, StorageError};
use sentinel_testkit::emulators::{self, MOTO_REGION};

use crate::common::{self, MIB};

fn spec(endpoint: &str, bucket: &str, prefix: &str, key_id: &str, secret: &str) -> DestinationSpec {
    DestinationSpec::S3 {
        bucket: bucket.to_owned(),
        region: MOTO_REGION.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        prefix: prefix.to_owned(),
        access_key_id: key_id.to_owned(),
        secret_access_key: SecretString::from(secret.to_owned()),
        force_path_style: true,
    }
}

async fn fresh(prefix: &str) -> (Destination, String) {
    common::init();
    let moto = emulators::moto().await;
    let bucket = moto.create_bucket().await;
    let dest = Destination::open(&spec(&moto.endpoint, &bucket, prefix, &moto.access_key_id, &moto.secret_access_key))
        .unwrap_or_else(|e| panic!("open: {e}"));
    (dest, bucket)
}

#[tokio::test]
async fn round_trip() {
    let (dest, bucket) = fresh("/sentinel/backups/").await;
    assert_eq!(dest.location("db/x.zst"), format!("s3://{bucket}/sentinel/backups/db/x.zst"));
    let moto = emulators::moto().await;
    assert!(!format!("{dest:?}").contains(&moto.secret_access_key));
    common::round_trip(&dest).await;
}

#[tokio::test]
async fn abort_leaves_no_object_and_no_multipart_upload() {
    let (dest, _) = fresh("").await;
    common::abort_leaves_nothing(&dest, true).await;
}

#[tokio::test]
async fn a_dropped_upload_is_found_and_aborted_by_the_janitor_calls() {
    let (dest, _) = fresh("p").await;
    let mut up = dest.upload("plan/killed.zst", 5 * MIB).await.unwrap_or_else(|e| panic!("{e}"));
    for chunk in common::data(6 * MIB, 9).chunks(MIB) {
        up.put(Bytes::copy_from_slice(chunk)).await.unwrap_or_else(|e| panic!("{e}"));
    }
    drop(up); // as a killed worker would: the multipart upload stays open on the server

    let pending = dest.incomplete_uploads().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].key, "plan/killed.zst");
    assert!(pending[0].initiated.is_some());
    dest.abort_incomplete(&pending[0]).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(dest.incomplete_uploads().await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(dest.head("plan/killed.zst").await.unwrap_or_else(|e| panic!("{e}")).is_none());
}

#[tokio::test]
async fn a_missing_bucket_is_bucket_missing() {
    common::init();
    let moto = emulators::moto().await;
    let name = emulators::unique_bucket_name();
    let dest = Destination::open(&spec(&moto.endpoint, &name, "", &moto.access_key_id, &moto.secret_access_key))
        .unwrap_or_else(|e| panic!("{e}"));
    let missing = |e: &StorageError| matches!(e, StorageError::BucketMissing(_));
    let secret = [moto.secret_access_key.as_str()];
    let msg = common::assert_error(dest.probe().await, missing, &secret);
    assert!(msg.contains(&name), "{msg}");
    common::assert_error(dest.list("").await, missing, &secret);
    common::assert_error(dest.head("k").await, missing, &secret);
    common::assert_error(dest.download("k").await.map(|_| ()), missing, &secret);
    common::assert_error(dest.delete("k").await, missing, &secret);
    common::assert_error(dest.incomplete_uploads().await, missing, &secret);
}

#[tokio::test]
async fn wrong_credentials_are_denied() {
    let (_, bucket) = fresh("").await;
    let moto = emulators::moto().await;
    let denied = |e: &StorageError| matches!(e, StorageError::Denied(_));
    let wrong_secret = "wrong-secret-0123456789abcdefghijklmnopqr";
    let dest = Destination::open(&spec(&moto.endpoint, &bucket, "", &moto.access_key_id, wrong_secret))
        .unwrap_or_else(|e| panic!("{e}"));
    let msg = common::assert_error(dest.probe().await, denied, &[wrong_secret]);
    assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
    common::assert_error(dest.list("").await, denied, &[wrong_secret]);
    common::assert_error(dest.incomplete_uploads().await, denied, &[wrong_secret]);

    let unknown = Destination::open(&spec(&moto.endpoint, &bucket, "", "AKIAUNKNOWNKEY000000", wrong_secret))
        .unwrap_or_else(|e| panic!("{e}"));
    let msg = common::assert_error(unknown.probe().await, denied, &[wrong_secret]);
    assert!(msg.contains("InvalidAccessKeyId"), "{msg}");
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    common::init();
    let endpoint = format!("http://127.0.0.1:{}", sentinel_testkit::free_port());
    let dest = Destination::open(&spec(&endpoint, "backups", "", "AKIAEXAMPLE", "secret-value-123"))
        .unwrap_or_else(|e| panic!("{e}"));
    let unreachable = |e: &StorageError| matches!(e, StorageError::Unreachable(_));
    let msg = common::assert_error(dest.probe().await, unreachable, &["secret-value-123"]);
    assert!(msg.contains("127.0.0.1"), "{msg}");
    common::assert_error(dest.list("").await, unreachable, &[]);
    assert!(dest.probe().await.err().is_some_and(|e| e.is_transient()));
}

#[tokio::test]
async fn invalid_specs_are_rejected_with_the_field() {
    let field = |spec: DestinationSpec| match Destination::open(&spec) {
        Err(StorageError::Invalid { field, reason }) => (field, reason),
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(field(spec("http://127.0.0.1:1", "Bad_Bucket", "", "k", "s")).0, "bucket");
    assert_eq!(field(spec("ftp://127.0.0.1:1", "good-bucket", "", "k", "s")).0, "endpoint");
    assert_eq!(field(spec("http://127.0.0.1:1", "good-bucket", "a/../b", "k", "s")).0, "prefix");
    assert_eq!(field(spec("http://127.0.0.1:1", "good-bucket", "", "", "s")).0, "access_key_id");
    assert_eq!(field(spec("http://127.0.0.1:1", "good-bucket", "", "k", " ")).0, "secret_access_key");
}
