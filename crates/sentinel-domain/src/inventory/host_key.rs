//! A server's pinned SSH host key: one `known_hosts`-style public key (`ssh-ed25519 AAAA… [comment]`),
//! checked for shape (the blob names the same algorithm as the line) and fingerprinted as OpenSSH does.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// The host key algorithms OpenSSH offers.
pub const HOST_KEY_ALGORITHMS: [&str; 7] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A parsed public host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub algorithm: String,
    /// The key blob, base64 as in `known_hosts`.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    #[error("a host key is `<algorithm> <base64>` as in known_hosts (e.g. `ssh-ed25519 AAAAC3…`)")]
    Shape,
    #[error("unknown host key algorithm {0:?} (known: {list})", list = HOST_KEY_ALGORITHMS.join(", "))]
    Algorithm(String),
    #[error("the key is not valid base64")]
    Base64,
    #[error("the key blob does not hold a {0} key")]
    Blob(String),
}

impl HostKey {
    /// Parses `algorithm base64 [comment]`; a leading host pattern (a `known_hosts` line) is skipped.
    pub fn parse(line: &str) -> Result<Self, HostKeyError> {
        let mut fields = line.split_whitespace();
        let mut algorithm = fields.next().ok_or(HostKeyError::Shape)?;
        if !HOST_KEY_ALGORITHMS.contains(&algorithm) && !algorithm.contains('-') {
            // `host,ip ssh-ed25519 AAAA…`: the first field is the host pattern.
            algorithm = fields.next().ok_or(HostKeyError::Shape)?;
        }
        if !HOST_KEY_ALGORITHMS.contains(&algorithm) {
            return Err(HostKeyError::Algorithm(algorithm.chars().take(64).collect()));
        }
        let key = fields.next().ok_or(HostKeyError::Shape)?;
        let blob = STANDARD.decode(key).map_err(|_| HostKeyError::Base64)?;
        // The blob starts with the algorithm name as an SSH string (u32 length, bytes).
        let named = blob
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n))
            .is_some_and(|name| name == algorithm.as_bytes());
        if !named {
            return Err(HostKeyError::Blob(algorithm.to_owned()));
        }
        Ok(Self { algorithm: algorithm.to_owned(), key: key.to_owned() })
    }

    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let blob = STANDARD.decode(&self.key).unwrap_or_default();
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)))
    }

    /// The canonical `algorithm key` line (no comment), as stored and written to `known_hosts`.
    pub fn line(&self) -> String {
        format!("{} {}", self.algorithm, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519`; fingerprint from `ssh-keygen -lf`.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFyt5tvLPAw+YsCjo499k6xAAaaV12lEOAFai/rDGN7f host";

    #[test]
    fn parses_and_fingerprints_like_ssh_keygen() {
        let key = HostKey::parse(KEY).expect("key");
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.line(), KEY.trim_end_matches(" host"));
        let again = HostKey::parse(&format!("10.0.0.1,web1 {}", key.line())).expect("known_hosts line");
        assert_eq!(again, key);
        assert_eq!(key.fingerprint(), "SHA256:f7LZZ35jq659jZyIQahjpR9dPRU5lrsFq+8wVNxj3aM");
    }

    #[test]
    fn refuses_what_is_not_a_host_key() {
        assert_eq!(HostKey::parse(""), Err(HostKeyError::Shape));
        assert!(matches!(HostKey::parse("ssh-dss AAAA"), Err(HostKeyError::Algorithm(_))));
        assert_eq!(HostKey::parse("ssh-ed25519 !!!"), Err(HostKeyError::Base64));
        // An RSA blob presented as ed25519.
        assert!(matches!(HostKey::parse("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB"), Err(HostKeyError::Blob(_))));
    }
}
