//! The Azure Blob backend against Azurite: the common suite, and the error kinds (missing
//! container, wrong key, nothing listening).

use base64::Engine as _;
use secrecy::SecretString;
use sentinel_storage::{Destination, DestinationSpec, StorageError};
use sentinel_testkit::emulators::{self, AZURITE_ACCOUNT, AZURITE_KEY};

use crate::common;

fn spec(endpoint: &str, container: &str, prefix: &str, key: &str) -> DestinationSpec {
    DestinationSpec::Azure {
        account: AZURITE_ACCOUNT.to_owned(),
        container: container.to_owned(),
        prefix: prefix.to_owned(),
        access_key: SecretString::from(key.to_owned()),
        endpoint: Some(endpoint.to_owned()),
    }
}

#[tokio::test]
async fn round_trip() {
    common::init();
    let azurite = emulators::azurite().await;
    let container = azurite.create_container().await;
    let dest = Destination::open(&spec(&azurite.endpoint, &container, "sentinel", AZURITE_KEY))
        .unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(dest.location("db/x.zst"), format!("azure://{AZURITE_ACCOUNT}/{container}/sentinel/db/x.zst"));
    assert!(!format!("{dest:?}").contains(AZURITE_KEY));
    common::round_trip(&dest).await;
}

#[tokio::test]
async fn abort_leaves_no_object() {
    common::init();
    let azurite = emulators::azurite().await;
    let container = azurite.create_container().await;
    // The bare host:port endpoint works too: the account is added as the first path segment.
    let bare = format!("http://127.0.0.1:{}", azurite.port);
    let dest = Destination::open(&spec(&bare, &container, "", AZURITE_KEY)).unwrap_or_else(|e| panic!("open: {e}"));
    common::abort_leaves_nothing(&dest, true).await;
}

#[tokio::test]
async fn a_missing_container_is_bucket_missing() {
    common::init();
    let azurite = emulators::azurite().await;
    let name = emulators::unique_bucket_name();
    let dest = Destination::open(&spec(&azurite.endpoint, &name, "", AZURITE_KEY)).unwrap_or_else(|e| panic!("{e}"));
    let missing = |e: &StorageError| matches!(e, StorageError::BucketMissing(_));
    let msg = common::assert_error(dest.probe().await, missing, &[AZURITE_KEY]);
    assert!(msg.contains(&name), "{msg}");
    common::assert_error(dest.list("").await, missing, &[AZURITE_KEY]);
    common::assert_error(dest.head("k").await, missing, &[AZURITE_KEY]);
    common::assert_error(dest.download("k").await.map(|_| ()), missing, &[AZURITE_KEY]);
}

#[tokio::test]
async fn a_wrong_key_is_denied() {
    common::init();
    let azurite = emulators::azurite().await;
    let container = azurite.create_container().await;
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let dest = Destination::open(&spec(&azurite.endpoint, &container, "", &wrong)).unwrap_or_else(|e| panic!("{e}"));
    let denied = |e: &StorageError| matches!(e, StorageError::Denied(_));
    common::assert_error(dest.probe().await, denied, &[&wrong]);
    common::assert_error(dest.list("").await, denied, &[&wrong]);
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    common::init();
    let endpoint = format!("http://127.0.0.1:{}", sentinel_testkit::free_port());
    let dest = Destination::open(&spec(&endpoint, "backups", "", AZURITE_KEY)).unwrap_or_else(|e| panic!("{e}"));
    let unreachable = |e: &StorageError| matches!(e, StorageError::Unreachable(_));
    common::assert_error(dest.probe().await, unreachable, &[AZURITE_KEY]);
    common::assert_error(dest.head("k").await, unreachable, &[]);
}

#[tokio::test]
async fn invalid_specs_are_rejected() {
    let invalid = |e: &StorageError| matches!(e, StorageError::Invalid { .. });
    common::assert_error(Destination::open(&spec("http://127.0.0.1:1", "Bad--Name", "", AZURITE_KEY)), invalid, &[]);
    let msg =
        common::assert_error(Destination::open(&spec("http://127.0.0.1:1", "good", "", "not base64!")), invalid, &[]);
    assert!(msg.contains("access_key") && !msg.contains("not base64!"), "{msg}");
}
