//! PEM private keys turned into OpenSSH keys: PKCS#8 (`PRIVATE KEY`, and `ENCRYPTED PRIVATE KEY` with
//! its passphrase) holding Ed25519, RSA or ECDSA P-256; PKCS#1 (`RSA PRIVATE KEY`); SEC1 (`EC PRIVATE
//! KEY`, P-256). OpenSSL's legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`) is refused with the command
//! that converts it.

use ed25519_dalek::pkcs8::DecodePrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use ssh_key::PrivateKey;
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};

use crate::ssh::KeyError;

fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
    if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
        return keypair(Ed25519Keypair::from(k).into());
    }
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
        return rsa_keypair(k);
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return p256_keypair(k);
    }
    Err(KeyError::Unsupported(
        "this PKCS#8 key is not Ed25519, RSA or ECDSA P-256; convert it with `ssh-keygen -p -f <file>`".into(),
    ))
}

fn keypair(data: KeypairData) -> Result<PrivateKey, KeyError> {
    PrivateKey::new(data, "").map_err(|e| KeyError::Malformed(e.to_string()))
}

fn rsa_keypair(k: rsa::RsaPrivateKey) -> Result<PrivateKey, KeyError> {
    keypair(RsaKeypair::try_from(k).map_err(|e| KeyError::Unsupported(format!("RSA key: {e}")))?.into())
}

fn p256_keypair(k: p256::SecretKey) -> Result<PrivateKey, KeyError> {
    let public = k.public_key();
    keypair(EcdsaKeypair::NistP256 { private: k.into(), public: public.into() }.into())
}

pub(crate) fn from_pem(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let label = text.lines().next().unwrap_or("").trim();
    let malformed = |e: &dyn std::fmt::Display| KeyError::Malformed(e.to_string());
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(KeyError::Unsupported(
            "OpenSSL's legacy PEM encryption is not supported; convert the key with `ssh-keygen -p -f <file>` (it rewrites it in OpenSSH format, keeping its passphrase)".into(),
        ));
    }
    match label {
        "-----BEGIN PRIVATE KEY-----" => {
            let (_, doc) = pkcs8::SecretDocument::from_pem(text).map_err(|e| malformed(&e))?;
            from_pkcs8_der(doc.as_bytes())
        }
        "-----BEGIN ENCRYPTED PRIVATE KEY-----" => {
            let pass = passphrase.filter(|p| !p.is_empty()).ok_or(KeyError::PassphraseNeeded)?;
            let (_, doc) = pkcs8::Document::from_pem(text).map_err(|e| malformed(&e))?;
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| malformed(&e))?;
            let plain = info.decrypt(pass).map_err(|_| KeyError::WrongPassphrase)?;
            from_pkcs8_der(plain.as_bytes())
        }
        "-----BEGIN RSA PRIVATE KEY-----" => {
            rsa_keypair(rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(|e| malformed(&e))?)
        }
        "-----BEGIN EC PRIVATE KEY-----" => p256_keypair(p256::SecretKey::from_sec1_pem(text).map_err(|_| {
            KeyError::Unsupported(
                "only P-256 EC keys are read from PEM; convert others with `ssh-keygen -p -f <file>`".into(),
            )
        })?),
        _ => Err(KeyError::Unrecognised),
    }
}
