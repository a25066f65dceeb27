//! Sentinel's encryption at rest: the master keyring (a current key that seals, retired keys that still
//! open), authenticated encryption (XChaCha20-Poly1305, bound to what each secret belongs to), key
//! loading from configuration or a 0600 key file, and SSH private keys (parsed, fingerprinted).

pub mod age_stream;
pub mod ssh;
mod ssh_pem;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::ExposeSecret;
use sentinel_config::SecretsSettings;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// The file `sentinel up` keeps its generated master key in, inside the data directory.
pub const KEY_FILE: &str = "master.key";

const FORMAT: &str = "v1.";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{setting}: {reason}")]
    BadKey { setting: &'static str, reason: String },
    #[error("cannot use the master key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("sealed with master key {0}, which is not configured")]
    UnknownKey(String),
    /// Wrong key for this ciphertext, a tampered ciphertext, or one moved to another owner.
    #[error("the secret could not be opened (tampered, or sealed for something else)")]
    Corrupt,
}

/// One 256-bit master key.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        let mut h = Sha256::new();
        h.update(b"sentinel master key id v1");
        h.update(bytes.as_slice());
        let digest = h.finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { bytes, id }
    }

    /// Parses the base64 form; `setting` names where it came from, for the error.
    pub fn parse(text: &str, setting: &'static str) -> Result<Self, SecretsError> {
        let bad = |reason: &str| SecretsError::BadKey { setting, reason: reason.to_owned() };
        let mut decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| bad("not base64 (generate a key with `sentinel admin gen-master-key`)"))?;
        if decoded.len() != 32 {
            decoded.zeroize();
            return Err(bad("must be 32 bytes in base64 (generate one with `sentinel admin gen-master-key`)"));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(Self::from_bytes(bytes))
    }

    /// The base64 form (what configuration and key files hold).
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_slice()))
    }

    /// A short public identifier of the key (a hash prefix): stored next to each ciphertext.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// A ciphertext and the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub text: String,
}

/// The current key (seals and opens) and retired keys (open only, during a rotation).
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    retired: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey, retired: Vec<MasterKey>) -> Self {
        let retired = retired.into_iter().filter(|k| k.id != current.id).collect();
        Self { current, retired }
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Whether a key with this id is configured (current or retired).
    pub fn knows(&self, key_id: &str) -> bool {
        self.key(key_id).is_some()
    }

    fn key(&self, key_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current).chain(&self.retired).find(|k| k.id == key_id)
    }

    /// Seals `plaintext` with the current key. `context` (what the secret belongs to, e.g. its row id)
    /// is authenticated: the ciphertext opens only with the same context.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Sealed {
        let cipher = XChaCha20Poly1305::new(self.current.bytes.as_slice().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = cipher.encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: context }).unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Sealed { key_id: self.current.id.clone(), text: format!("{FORMAT}{}", URL_SAFE_NO_PAD.encode(blob)) }
    }

    /// Opens what [`Keyring::seal`] sealed, with the same context.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let key = self.key(&sealed.key_id).ok_or_else(|| SecretsError::UnknownKey(sealed.key_id.clone()))?;
        let body = sealed.text.strip_prefix(FORMAT).ok_or(SecretsError::Corrupt)?;
        let blob = URL_SAFE_NO_PAD.decode(body).map_err(|_| SecretsError::Corrupt)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SecretsError::Corrupt);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::Corrupt)?;
        let cipher = XChaCha20Poly1305::new(key.bytes.as_slice().into());
        cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: context })
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Corrupt)
    }

    /// Loads the keyring from settings. Without a configured key: `create_in` (the embedded mode's
    /// data directory) gets a generated key file (mode 0600) or reuses it; otherwise `None`.
    pub fn load(settings: &SecretsSettings, create_in: Option<&Path>) -> Result<Option<Self>, SecretsError> {
        let current = if let Some(key) = &settings.master_key {
            MasterKey::parse(key.expose_secret(), "secrets.master_key")?
        } else if let Some(path) = &settings.master_key_file {
            read_key_file(path)?
        } else if let Some(dir) = create_in {
            load_or_create_key_file(&dir.join(KEY_FILE))?
        } else {
            return Ok(None);
        };
        let mut retired = Vec::new();
        if let Some(list) = &settings.retired_keys {
            for key in list.expose_secret().split(',').map(str::trim).filter(|k| !k.is_empty()) {
                retired.push(MasterKey::parse(key, "secrets.retired_keys")?);
            }
        }
        Ok(Some(Self::new(current, retired)))
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, SecretsError> {
    let err = |reason: String| SecretsError::KeyFile { path: path.to_owned(), reason };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(|e| err(e.to_string()))?.permissions().mode();
        // Group read is allowed (Kubernetes mounts secrets group-readable for the pod's fsGroup).
        if mode & 0o007 != 0 {
            return Err(err(format!("it is readable by other users (mode {:o}); run `chmod 600` on it", mode & 0o777)));
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    MasterKey::parse(&text, "secrets.master_key_file")
}

fn load_or_create_key_file(path: &Path) -> Result<MasterKey, SecretsError> {
    if path.exists() {
        return read_key_file(path);
    }
    let key = MasterKey::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let err = |e: std::io::Error| SecretsError::KeyFile { path: path.to_owned(), reason: e.to_string() };
    let mut file = opts.open(path).map_err(err)?;
    file.write_all(key.encode().as_bytes()).and_then(|()| file.sync_all()).map_err(err)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(key: Option<&str>, file: Option<PathBuf>, retired: Option<&str>) -> SecretsSettings {
        SecretsSettings {
            master_key: key.map(|k| k.to_owned().into()),
            master_key_file: file,
            retired_keys: retired.map(|k| k.to_owned().into()),
        }
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let ring = Keyring::new(MasterKey::generate(), Vec::new());
        let sealed = ring.seal(b"hunter2", b"secret:1");
        assert!(!sealed.text.contains("hunter2"));
        assert_eq!(ring.open(&sealed, b"secret:1").expect("open").as_slice(), b"hunter2");
        assert!(matches!(ring.open(&sealed, b"secret:2"), Err(SecretsError::Corrupt)), "moved to another row");
        let mut tampered = sealed.clone();
        tampered.text.replace_range(10..11, if &tampered.text[10..11] == "A" { "B" } else { "A" });
        assert!(matches!(ring.open(&tampered, b"secret:1"), Err(SecretsError::Corrupt)));
        let other = Keyring::new(MasterKey::generate(), Vec::new());
        assert!(matches!(other.open(&sealed, b"secret:1"), Err(SecretsError::UnknownKey(_))));
        assert_ne!(ring.seal(b"hunter2", b"secret:1").text, sealed.text, "a fresh nonce every time");
    }

    #[test]
    fn a_rotation_opens_old_secrets_and_seals_with_the_new_key() {
        let old = MasterKey::generate();
        let old_text = old.encode();
        let before = Keyring::new(old, Vec::new());
        let sealed = before.seal(b"k", b"c");
        let new = MasterKey::generate();
        let new_text = new.encode();
        let s = settings(Some(&new_text), None, Some(&old_text));
        let during = Keyring::load(&s, None).expect("load").expect("configured");
        assert_eq!(during.open(&sealed, b"c").expect("retired key opens").as_slice(), b"k");
        let resealed = during.seal(b"k", b"c");
        assert_eq!(resealed.key_id, during.current_id());
        let after = Keyring::load(&settings(Some(&new_text), None, None), None).expect("load").expect("configured");
        assert!(after.open(&resealed, b"c").is_ok());
        assert!(matches!(after.open(&sealed, b"c"), Err(SecretsError::UnknownKey(id)) if id == before.current_id()));
    }

    #[test]
    fn bad_or_missing_keys_are_clear_errors() {
        let e = Keyring::load(&settings(Some("short"), None, None), None).expect_err("bad");
        assert!(e.to_string().starts_with("secrets.master_key: "), "{e}");
        assert!(Keyring::load(&settings(None, None, None), None).expect("none").is_none());
        let dir = tempfile::tempdir().expect("dir");
        let created = Keyring::load(&settings(None, None, None), Some(dir.path())).expect("create").expect("key");
        let again = Keyring::load(&settings(None, None, None), Some(dir.path())).expect("reuse").expect("key");
        assert_eq!(created.current_id(), again.current_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(KEY_FILE);
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = Keyring::load(&settings(None, Some(path), None), None).expect_err("too open");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }
}
