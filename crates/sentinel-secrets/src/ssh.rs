//! SSH private keys as operators upload them: OpenSSH format (`ssh-keygen`'s default, optionally
//! passphrase-protected) or PEM (PKCS#8, PKCS#1 RSA, SEC1 EC). Each is checked, decrypted with its
//! passphrase, and kept as an unencrypted OpenSSH key (sealed at rest by the keyring), with its
//! public key and fingerprint for the API.

use ssh_key::{HashAlg, LineEnding, PrivateKey};
use zeroize::Zeroizing;

/// A usable private key and what the API may show of it.
pub struct ParsedKey {
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`…
    pub key_type: String,
    /// `algorithm base64` (no comment), as in `authorized_keys`.
    pub public_key: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The private key in OpenSSH format, unencrypted: seal it, never show it.
    pub private_openssh: Zeroizing<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a private key: expected an OpenSSH key (`-----BEGIN OPENSSH PRIVATE KEY-----`) or a PEM key")]
    Unrecognised,
    #[error("the key is protected by a passphrase: send `passphrase`")]
    PassphraseNeeded,
    #[error("the passphrase does not open this key")]
    WrongPassphrase,
    #[error("this key is a public key; upload the private key")]
    PublicKey,
    #[error("{0}")]
    Unsupported(String),
    #[error("the key is malformed: {0}")]
    Malformed(String),
}

/// Parses `text`, opening it with `passphrase` when it is encrypted.
pub fn parse_private_key(text: &str, passphrase: Option<&str>) -> Result<ParsedKey, KeyError> {
    let text = text.trim();
    if text.starts_with("ssh-") || text.starts_with("ecdsa-") {
        return Err(KeyError::PublicKey);
    }
    let key = if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = PrivateKey::from_openssh(text).map_err(|e| KeyError::Malformed(e.to_string()))?;
        if key.is_encrypted() {
            let pass = passphrase.filter(|p| !p.is_empty()).ok_or(KeyError::PassphraseNeeded)?;
            key.decrypt(pass).map_err(|_| KeyError::WrongPassphrase)?
        } else {
            key
        }
    } else if text.starts_with("-----BEGIN ") {
        super::ssh_pem::from_pem(text, passphrase)?
    } else {
        return Err(KeyError::Unrecognised);
    };
    describe(key)
}

fn describe(key: PrivateKey) -> Result<ParsedKey, KeyError> {
    let public = key.public_key();
    let mut public_key = public.to_openssh().map_err(|e| KeyError::Malformed(e.to_string()))?;
    // `to_openssh` appends the comment, if any; the API shows the key alone.
    if let Some((bare, _comment)) = public_key
        .split_once(' ')
        .and_then(|(alg, rest)| rest.split_once(' ').map(|(b64, c)| (format!("{alg} {b64}"), c.to_owned())))
    {
        public_key = bare;
    }
    Ok(ParsedKey {
        key_type: key.algorithm().to_string(),
        public_key,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        private_openssh: key.to_openssh(LineEnding::LF).map_err(|e| KeyError::Malformed(e.to_string()))?,
    })
}
