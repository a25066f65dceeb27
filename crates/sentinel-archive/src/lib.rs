//! The codec of backup artifacts: what sits between a dump tool's stdout and the object-store upload
//! (SHA-256 of the plain stream → zstd, gzip, zip or tar.gz → age → SHA-256 of the stored stream),
//! and back on restore, where the stored format is detected from magic bytes.
//!
//! Architecture invariant: codec work never runs on the async runtime. Each encoder, decoder or hasher
//! is one named OS thread, fed and drained through bounded `tokio::sync::mpsc` channels of `Bytes`, so
//! memory stays bounded (a few chunks in each channel, the zstd window, age's 64 KiB chunk) however
//! large the stream, and no temporary file is written (except by zip and tar.gz, which need sizes
//! up front and stage one unlinked file). The caller awaits `finish()` for the digests.
//!
//! Architecture invariant: this crate knows nothing about databases or object stores; it sees bytes.

mod chunks;
mod decode;
mod encode;
mod error;
mod staged;
mod worker;

use bytes::Bytes;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use decode::{DecoderHandle, spawn_decoder, spawn_decoder_with};
pub use encode::{EncoderHandle, spawn_encoder, spawn_encoder_with};
pub use error::ArchiveError;
pub use sentinel_secrets::age_stream::{AgeError, NewIdentity, generate_identity};

/// Size of the chunks the codec threads emit: large enough that per-chunk costs (a channel hop, an
/// upload-buffer append) vanish, small enough that a few in flight stay cheap.
pub const CHUNK_SIZE: usize = 1 << 20;

/// How a backup is compressed before it is (maybe) encrypted and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Compression {
    /// zstd, multithreaded; level 1..=19 (up to 22 with more memory, negative = faster).
    Zstd {
        #[serde(default = "default_zstd_level")]
        level: i32,
    },
    /// gzip (deflate) for tools that only know gzip; level 0..=9.
    Gzip {
        #[serde(default = "default_gzip_level")]
        level: u32,
    },
    /// Stored as is, e.g. for a deduplicating repository where compression would defeat dedup.
    None,
    /// One deflated file in a zip archive (for people who open backups by double-click); level
    /// 0..=9. Staged: see [`EncodeOptions::staging_dir`].
    Zip {
        #[serde(default = "default_gzip_level")]
        level: u32,
    },
    /// One file in a gzip-compressed tar archive; level 0..=9. Staged: see
    /// [`EncodeOptions::staging_dir`].
    TarGz {
        #[serde(default = "default_gzip_level")]
        level: u32,
    },
}

/// pgBackRest's default: most of zstd's ratio at a fraction of higher levels' CPU.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

fn default_zstd_level() -> i32 {
    DEFAULT_ZSTD_LEVEL
}

fn default_gzip_level() -> u32 {
    DEFAULT_GZIP_LEVEL
}

impl Default for Compression {
    fn default() -> Self {
        Self::Zstd { level: DEFAULT_ZSTD_LEVEL }
    }
}

/// Whether and to whom a backup is encrypted. age forbids a passphrase together with recipients;
/// `spawn_encoder` rejects that combination.
#[derive(Clone, Default)]
pub enum Encryption {
    #[default]
    None,
    Age {
        /// X25519 recipients (`age1…`), e.g. the operator's key and an offline escrow key.
        recipients: Vec<String>,
        /// Or a passphrase (scrypt, work factor calibrated to ~1 s).
        passphrase: Option<SecretString>,
    },
}

impl Encryption {
    /// Checks recipients and passphrase as `spawn_encoder` will, e.g. when a backup plan is saved.
    pub fn validate(&self) -> Result<(), ArchiveError> {
        match self {
            Self::None => Ok(()),
            Self::Age { recipients, passphrase } => {
                sentinel_secrets::age_stream::SealTo::new(recipients, passphrase.clone())?;
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Encryption {
    // By hand: a passphrase must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Age { recipients, passphrase } => f
                .debug_struct("Age")
                .field("recipients", recipients)
                .field("passphrase", &passphrase.as_ref().map(|_| "[REDACTED]"))
                .finish(),
        }
    }
}

/// The key a restore opens an age-encrypted artifact with (ignored for unencrypted ones).
#[derive(Clone, Default)]
pub enum DecryptKey {
    #[default]
    None,
    /// `AGE-SECRET-KEY-1…` lines, or whole identity files as `age-keygen` writes them.
    Identities(Vec<SecretString>),
    Passphrase(SecretString),
}

impl DecryptKey {
    /// Checks identities or passphrase as `spawn_decoder` will, e.g. when an operator uploads a key.
    pub fn validate(&self) -> Result<(), ArchiveError> {
        use sentinel_secrets::age_stream::OpenWith;
        match self {
            Self::None => Ok(()),
            Self::Identities(list) => OpenWith::identities(list).map(drop).map_err(Into::into),
            Self::Passphrase(p) => OpenWith::passphrase(p.clone()).map(drop).map_err(Into::into),
        }
    }
}

impl std::fmt::Debug for DecryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Identities(list) => write!(f, "Identities({} redacted)", list.len()),
            Self::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

/// Tuning of the encoder that plans need not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Where zip and tar.gz stage their input (an unlinked file, gone even after a crash); required
    /// for them, unused by the streaming formats.
    pub staging_dir: Option<std::path::PathBuf>,
    /// The file name inside a zip or tar.gz archive.
    pub entry_name: String,
    /// zstd worker threads besides the codec thread (0 = compress on the codec thread itself).
    pub zstd_workers: u32,
    /// Size of the emitted chunks (the last one may be shorter).
    pub chunk_size: usize,
    /// scrypt work factor (log2 N) for passphrase encryption; `None` = age's ~1 s calibration.
    /// Tests lower it to stay fast.
    pub scrypt_work_factor: Option<u8>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            staging_dir: None,
            entry_name: "dump".to_owned(),
            zstd_workers: 2,
            chunk_size: CHUNK_SIZE,
            scrypt_work_factor: None,
        }
    }
}

/// What the journal records of an encoded backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    pub plain_bytes: u64,
    /// Lowercase hex.
    pub plain_sha256: String,
    pub stored_bytes: u64,
    pub stored_sha256: String,
}

/// The format found inside a stored artifact (after decryption, if it was encrypted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredFormat {
    Zstd,
    Gzip,
    /// One file inside a zip archive.
    Zip,
    /// One file inside a gzip-compressed tar archive.
    TarGz,
    Raw,
}

/// What a decode found and produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeReport {
    pub encrypted: bool,
    pub format: StoredFormat,
    pub plain_bytes: u64,
    pub plain_sha256: String,
    pub stored_bytes: u64,
    pub stored_sha256: String,
}

/// Size and SHA-256 of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// Hashes a stream on its own thread (the restore's integrity check of the stored artifact before
/// anything touches a database): the chunks are consumed, nothing is produced.
pub async fn hash_stream(input: mpsc::Receiver<Bytes>) -> Result<StreamDigest, ArchiveError> {
    let done = worker::spawn("archive-hash", move || Ok(chunks::hash_all(input)))?;
    worker::join(done).await
}

/// Lowercase hex SHA-256 of a byte slice, in the form the digests use.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    chunks::hex(&sha2::Sha256::digest(data))
}
