//! The vault: the one secret store every credential goes through — sealed by the master keyring,
//! bound to its row (a ciphertext moved to another row does not open), checked at start-up (a wrong or
//! missing key is an error, not garbage) and re-sealed when the master key rotates.

use std::sync::Arc;

use sentinel_db::{DbError, SecretRow, SecretStore};
use sentinel_secrets::{Keyring, Sealed, SecretsError};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Why the vault could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no master key is configured: set secrets.master_key or secrets.master_key_file (generate a key with `sentinel admin gen-master-key`)"
    )]
    NotConfigured,
    #[error(
        "the database holds {count} secret(s) but no master key is configured: set secrets.master_key or secrets.master_key_file to the key that sealed them"
    )]
    MissingKey { count: i64 },
    #[error(
        "the database holds {count} secret(s) sealed with master key {key_id}, which is not configured: set secrets.master_key to that key, or list it in secrets.retired_keys"
    )]
    UnknownKey { key_id: String, count: i64 },
    #[error(
        "the configured master key {key_id} does not open the secrets sealed under its id: the key is wrong or the data corrupt"
    )]
    WrongKey { key_id: String },
    #[error("secret {0} does not exist")]
    Missing(Uuid),
    #[error("secret {id}: {source}")]
    Open { id: Uuid, source: SecretsError },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Sealed storage of credentials.
#[derive(Clone)]
pub struct Vault {
    keyring: Arc<Keyring>,
    store: SecretStore,
}

/// What a ciphertext is bound to: its own row.
fn context(id: Uuid) -> Vec<u8> {
    let mut c = b"sentinel-secret:".to_vec();
    c.extend_from_slice(id.as_bytes());
    c
}

impl Vault {
    pub fn new(keyring: Arc<Keyring>, store: SecretStore) -> Self {
        Self { keyring, store }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals `plaintext` for a new secret row; returns its id and ciphertext, for the caller to
    /// insert (with [`SecretStore::insert_in`]) inside its own transaction.
    pub fn seal_new(&self, plaintext: &[u8]) -> (Uuid, Sealed) {
        let id = Uuid::now_v7();
        (id, self.keyring.seal(plaintext, &context(id)))
    }

    /// Opens a stored secret.
    pub async fn open(&self, id: Uuid) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let row = self.store.get(id).await?.ok_or(VaultError::Missing(id))?;
        self.open_row(&row)
    }

    /// Opens a stored secret only if `owner` owns it (a reference copied into another resource's
    /// row does not open).
    pub async fn open_owned(&self, id: Uuid, owner: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let row = self.store.get(id).await?.ok_or(VaultError::Missing(id))?;
        if row.owner != owner {
            return Err(VaultError::Missing(id));
        }
        self.open_row(&row)
    }

    fn open_row(&self, row: &SecretRow) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let sealed = Sealed { key_id: row.key_id.clone(), text: row.sealed.clone() };
        self.keyring.open(&sealed, &context(row.id)).map_err(|source| VaultError::Open { id: row.id, source })
    }

    /// The payload of one version of a config with its secrets opened: what the run that uses it
    /// receives (and only that run: nothing else reads secrets back).
    pub async fn resolve_config(
        &self,
        db: &sentinel_db::Database,
        org: Uuid,
        config_id: Uuid,
        version: i64,
    ) -> Result<Option<serde_json::Value>, VaultError> {
        let Some(rec) = db.configs().version(org, config_id, version).await? else { return Ok(None) };
        Ok(Some(self.resolve_payload(&rec.payload).await?.0))
    }

    /// A stored payload (`{"$secret": id}` references) with its secrets opened, and the opened
    /// values themselves (a run scrubs them from everything it prints).
    pub async fn resolve_payload(
        &self,
        stored: &serde_json::Value,
    ) -> Result<(serde_json::Value, Vec<Zeroizing<String>>), VaultError> {
        let mut opened = std::collections::HashMap::new();
        for (_, id) in sentinel_domain::configs::secret_refs(stored) {
            let uuid: Uuid = id.parse().map_err(|_| VaultError::Missing(Uuid::nil()))?;
            let plain = self.open(uuid).await?;
            opened.insert(id, Zeroizing::new(String::from_utf8_lossy(&plain).into_owned()));
        }
        let resolved = sentinel_domain::configs::resolve(stored, &mut |id| {
            opened.get(id).map(|s| s.as_str().to_owned()).ok_or(VaultError::Missing(Uuid::nil()))
        })?;
        Ok((resolved, opened.into_values().collect()))
    }

    /// Start-up check: every key that sealed something is configured and really opens it.
    pub async fn check(&self) -> Result<(), VaultError> {
        for (key_id, count) in self.store.count_by_key().await? {
            if !self.keyring.knows(&key_id) {
                return Err(VaultError::UnknownKey { key_id, count });
            }
            if let Some(row) = self.store.sample(&key_id).await?
                && self.open_row(&row).is_err()
            {
                return Err(VaultError::WrongKey { key_id });
            }
        }
        Ok(())
    }

    /// Re-seals every secret not sealed by the current key (after a rotation); returns how many.
    pub async fn reseal_all(&self) -> Result<usize, VaultError> {
        let current = self.keyring.current_id().to_owned();
        let mut done = 0;
        loop {
            let batch = self.store.not_sealed_by(&current, 500).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            for row in batch {
                let plain = self.open_row(&row)?;
                let sealed = self.keyring.seal(&plain, &context(row.id));
                if self.store.reseal(&row, &sealed.key_id, &sealed.text).await? {
                    done += 1;
                }
            }
        }
    }
}
