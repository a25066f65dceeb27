//! The vault on a real database: secrets open only with the key that sealed them, a wrong or missing
//! master key stops start-up with a clear error, and a rotation re-seals everything with the new key.

use sentinel_jobs::db::SecretStore;
use sentinel_jobs::secrets::MasterKey;
use sentinel_jobs::{Catalog, Spine, SpineError, VaultError};
use sentinel_testkit::TestDb;

async fn connect(db: &TestDb, key: Option<&str>, retired: Option<&str>) -> Result<Spine, SpineError> {
    let mut extra = vec![("secrets.master_key", key.unwrap_or(""))];
    if let Some(r) = retired {
        extra.push(("secrets.retired_keys", r));
    }
    let mut settings = sentinel_testkit::settings(&db.url, "memory", "vault", &extra);
    if key.is_none() {
        settings.secrets.master_key = None;
    }
    Spine::connect(&settings, Catalog::builtin(false)).await
}

#[tokio::test]
async fn a_rotation_reseals_every_secret_and_a_wrong_key_stops_start_up() {
    let db = TestDb::postgres().await.expect("postgres");
    let old = MasterKey::generate().encode();
    let new = MasterKey::generate().encode();

    let spine = connect(&db, Some(&old), None).await.expect("first start");
    let vault = spine.vault().expect("configured");
    let mut ids = Vec::new();
    for secret in ["db password", "ssh key"] {
        let (id, sealed) = vault.seal_new(secret.as_bytes());
        SecretStore::insert_in(spine.db().connection(), id, None, "test", &sealed.key_id, &sealed.text)
            .await
            .expect("insert");
        let row = spine.db().secrets().get(id).await.expect("get").expect("row");
        assert!(!row.sealed.contains(secret), "stored sealed");
        ids.push(id);
    }
    assert_eq!(vault.open(ids[0]).await.expect("open").as_slice(), b"db password");
    drop(spine);

    match connect(&db, Some(&new), None).await {
        Err(SpineError::Vault(VaultError::UnknownKey { count, .. })) => assert_eq!(count, 2),
        other => panic!("a wrong key must stop start-up, got {:?}", other.map(|_| ())),
    }
    match connect(&db, None, None).await {
        Err(SpineError::Vault(e @ VaultError::MissingKey { .. })) => {
            assert!(e.to_string().contains("secrets.master_key"), "{e}")
        }
        other => panic!("a missing key must stop start-up, got {:?}", other.map(|_| ())),
    }

    // Rotation: new key current, old key retired; re-seal; then the old key can go.
    let during = connect(&db, Some(&new), Some(&old)).await.expect("rotation start");
    assert_eq!(during.vault().expect("vault").reseal_all().await.expect("reseal"), 2);
    assert_eq!(during.vault().expect("vault").reseal_all().await.expect("again"), 0);
    drop(during);
    let after = connect(&db, Some(&new), None).await.expect("old key retired");
    let vault = after.vault().expect("vault");
    assert_eq!(vault.open(ids[1]).await.expect("open").as_slice(), b"ssh key");
    assert!(matches!(connect(&db, Some(&old), None).await, Err(SpineError::Vault(VaultError::UnknownKey { .. }))));
}
