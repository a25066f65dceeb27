//! Streaming age encryption for backup artifacts: parsing X25519 recipients and identities, passphrase
//! (scrypt) sealing, wrapping a sync writer or reader, and generating identities. The binary (not
//! armored) age v1 format, so the stock `age` CLI decrypts what this writes and the other way round.
//!
//! Sync on purpose: the archive codec runs on its own OS thread, so the `age` crate's async feature
//! would only add a futures dependency and a poll loop nobody needs.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use age::{DecryptError, EncryptError, x25519};

/// What every binary age file starts with.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
/// What an ASCII-armored age file starts with (recognised only to refuse it clearly).
pub const AGE_ARMOR_MAGIC: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// The encrypting writer: call [`AgeWriter::finish`] or the file lacks its final chunk and will not decrypt.
pub type AgeWriter<W> = age::stream::StreamWriter<W>;
/// The decrypting reader: authenticates every 64 KiB chunk and reports a missing final chunk as
/// `UnexpectedEof` ("age file is truncated").
pub type AgeReader<R> = age::stream::StreamReader<R>;

/// Errors of age sealing and opening. None of them carries a passphrase or secret-key text: an
/// identity is named by its position and line only.
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    #[error("recipient #{index} ({shown}) is not an X25519 age recipient (age1…): {reason}")]
    BadRecipient { index: usize, shown: String, reason: String },
    #[error("identity #{index}, line {line}, is not an X25519 age identity (AGE-SECRET-KEY-1…): {reason}")]
    BadIdentity { index: usize, line: usize, reason: String },
    #[error("identity #{index} holds no key")]
    EmptyIdentity { index: usize },
    #[error("no identities were given")]
    NoIdentities,
    #[error("no recipients and no passphrase: nothing to encrypt to")]
    NoRecipients,
    #[error("age cannot encrypt to a passphrase and to recipients at once; choose one")]
    PassphraseWithRecipients,
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error("not an age file encrypted to any of the given identities")]
    NoMatchingIdentity,
    #[error("the age file is encrypted with a passphrase, but identities were given")]
    NeedsPassphrase,
    #[error("the age file is encrypted to X25519 recipients, but a passphrase was given")]
    NeedsIdentity,
    #[error("the passphrase does not open this age file")]
    WrongPassphrase,
    #[error("the age header is corrupt or was tampered with")]
    CorruptHeader,
    #[error("the age file's passphrase work factor 2^{required} is above the accepted maximum")]
    ExcessiveWork { required: u8 },
    #[error("not an age v1 file")]
    NotAge,
    #[error("ASCII-armored age files are not accepted; decrypt or de-armor it with the age CLI first")]
    Armored,
    #[error("age: {0}")]
    Io(#[source] io::Error),
    #[error("age: {0}")]
    Other(String),
}

/// Whom a stream is sealed to: X25519 recipients (one of them may be an offline escrow key), or a
/// passphrase. age forbids mixing the two in one file (a passphrase stanza must stand alone).
pub enum SealTo {
    Recipients(Vec<x25519::Recipient>),
    Passphrase { passphrase: SecretString, work_factor: Option<u8> },
}

impl SealTo {
    /// The combination a backup plan can hold: recipients and/or a passphrase, checked together.
    pub fn new<S: AsRef<str>>(recipients: &[S], passphrase: Option<SecretString>) -> Result<Self, AgeError> {
        match (recipients.is_empty(), passphrase) {
            (true, None) => Err(AgeError::NoRecipients),
            (false, Some(_)) => Err(AgeError::PassphraseWithRecipients),
            (false, None) => Ok(Self::Recipients(parse_recipients(recipients)?)),
            (true, Some(p)) => Self::passphrase(p),
        }
    }

    pub fn passphrase(passphrase: SecretString) -> Result<Self, AgeError> {
        if passphrase.expose_secret().is_empty() {
            return Err(AgeError::EmptyPassphrase);
        }
        Ok(Self::Passphrase { passphrase, work_factor: None })
    }

    /// Fixes the scrypt work factor (N = 2^log_n) instead of age's calibration to ~1 s on this machine.
    /// Tests use it to stay fast; production keeps the calibration.
    pub fn with_work_factor(self, log_n: u8) -> Self {
        match self {
            Self::Passphrase { passphrase, .. } => {
                Self::Passphrase { passphrase, work_factor: Some(log_n.clamp(1, 63)) }
            }
            other => other,
        }
    }
}

impl fmt::Debug for SealTo {
    // By hand: the passphrase must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Recipients(r) => f.debug_tuple("Recipients").field(&r.len()).finish(),
            Self::Passphrase { .. } => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

/// The keys a stream is opened with.
pub enum OpenWith {
    Identities(Vec<x25519::Identity>),
    Passphrase(SecretString),
}

impl OpenWith {
    /// Parses identities; each entry may be one `AGE-SECRET-KEY-1…` line or a whole identity file as
    /// `age-keygen` writes it (comment lines starting with `#` and blank lines are skipped).
    pub fn identities(list: &[SecretString]) -> Result<Self, AgeError> {
        if list.is_empty() {
            return Err(AgeError::NoIdentities);
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            let index = i + 1;
            let before = out.len();
            for (l, line) in text.expose_secret().lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(parse_identity(line).map_err(|reason| AgeError::BadIdentity {
                    index,
                    line: l + 1,
                    reason,
                })?);
            }
            if out.len() == before {
                return Err(AgeError::EmptyIdentity { index });
            }
        }
        Ok(Self::Identities(out))
    }

    pub fn passphrase(passphrase: SecretString) -> Result<Self, AgeError> {
        if passphrase.expose_secret().is_empty() {
            return Err(AgeError::EmptyPassphrase);
        }
        Ok(Self::Passphrase(passphrase))
    }
}

impl fmt::Debug for OpenWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identities(i) => f.debug_tuple("Identities").field(&i.len()).finish(),
            Self::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

/// Parses `age1…` recipients; the error names the first bad one (public keys may be shown).
pub fn parse_recipients<S: AsRef<str>>(list: &[S]) -> Result<Vec<x25519::Recipient>, AgeError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.as_ref().trim();
            let bad =
                |reason: &str| AgeError::BadRecipient { index: i + 1, shown: shorten(s), reason: reason.to_owned() };
            if s.starts_with("ssh-") {
                return Err(bad("SSH keys are not supported, use an age X25519 key"));
            }
            x25519::Recipient::from_str(s).map_err(|reason| match reason {
                // `age1<plugin>1…` has another Bech32 prefix than X25519's plain `age`.
                "incorrect HRP" if s.starts_with("age1") => bad("plugin recipients are not supported"),
                reason => bad(reason),
            })
        })
        .collect()
}

fn parse_identity(line: &str) -> Result<x25519::Identity, String> {
    if line.starts_with("AGE-PLUGIN-") {
        return Err("plugin identities are not supported".into());
    }
    if line.starts_with("-----BEGIN") {
        return Err("SSH or PEM keys are not supported".into());
    }
    x25519::Identity::from_str(line).map_err(str::to_owned)
}

/// A short, loggable form of a recipient for error messages.
fn shorten(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(16).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

/// A new X25519 identity: the secret (`AGE-SECRET-KEY-1…`) for the operator to keep offline, the
/// recipient (`age1…`) for backup plans to encrypt to.
pub struct NewIdentity {
    pub secret: SecretString,
    pub recipient: String,
}

impl fmt::Debug for NewIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewIdentity").field("secret", &"[REDACTED]").field("recipient", &self.recipient).finish()
    }
}

pub fn generate_identity() -> NewIdentity {
    let identity = x25519::Identity::generate();
    NewIdentity { secret: identity.to_string(), recipient: identity.to_public().to_string() }
}

/// Writes the age header to `output` and returns the writer that encrypts what follows.
pub fn encrypt_writer<W: Write>(to: &SealTo, output: W) -> Result<AgeWriter<W>, AgeError> {
    let encryptor = match to {
        SealTo::Recipients(list) => {
            age::Encryptor::with_recipients(list.iter().map(|r| r as &dyn age::Recipient)).map_err(encrypt_error)?
        }
        SealTo::Passphrase { passphrase, work_factor } => {
            let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
            if let Some(log_n) = work_factor {
                recipient.set_work_factor(*log_n);
            }
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(encrypt_error)?
        }
    };
    encryptor.wrap_output(output).map_err(AgeError::Io)
}

/// Reads and checks the age header from `input` and returns the reader of the plaintext.
pub fn decrypt_reader<R: BufRead>(with: &OpenWith, input: R) -> Result<AgeReader<R>, AgeError> {
    let decryptor = age::Decryptor::new_buffered(input).map_err(decrypt_error)?;
    let scrypt = decryptor.is_scrypt();
    match with {
        OpenWith::Identities(_) if scrypt => Err(AgeError::NeedsPassphrase),
        OpenWith::Passphrase(_) if !scrypt => Err(AgeError::NeedsIdentity),
        OpenWith::Identities(list) => {
            decryptor.decrypt(list.iter().map(|i| i as &dyn age::Identity)).map_err(decrypt_error)
        }
        OpenWith::Passphrase(p) => {
            let identity = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)).map_err(|e| match e {
                // The scrypt stanza is the only one, so a failed unwrap means a wrong passphrase.
                DecryptError::DecryptionFailed | DecryptError::KeyDecryptionFailed => AgeError::WrongPassphrase,
                e => decrypt_error(e),
            })
        }
    }
}

fn encrypt_error(e: EncryptError) -> AgeError {
    match e {
        EncryptError::MissingRecipients => AgeError::NoRecipients,
        EncryptError::MixedRecipientAndPassphrase => AgeError::PassphraseWithRecipients,
        EncryptError::Io(e) => AgeError::Io(e),
        e => AgeError::Other(e.to_string()),
    }
}

fn decrypt_error(e: DecryptError) -> AgeError {
    match e {
        DecryptError::NoMatchingKeys => AgeError::NoMatchingIdentity,
        DecryptError::InvalidHeader | DecryptError::InvalidMac | DecryptError::DecryptionFailed => {
            AgeError::CorruptHeader
        }
        DecryptError::ExcessiveWork { required, .. } => AgeError::ExcessiveWork { required },
        DecryptError::UnknownFormat => AgeError::NotAge,
        DecryptError::Io(e) => AgeError::Io(e),
        e => AgeError::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    fn seal(to: &SealTo, plain: &[u8]) -> Vec<u8> {
        let mut w = encrypt_writer(to, Vec::new()).expect("header");
        w.write_all(plain).expect("write");
        w.finish().expect("finish")
    }

    fn open(with: &OpenWith, sealed: &[u8]) -> Result<Vec<u8>, AgeError> {
        let mut r = decrypt_reader(with, Cursor::new(sealed))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(AgeError::Io)?;
        Ok(out)
    }

    #[test]
    fn generated_identity_round_trips() {
        let id = generate_identity();
        assert!(id.recipient.starts_with("age1"));
        assert!(id.secret.expose_secret().starts_with("AGE-SECRET-KEY-1"));
        assert!(!format!("{id:?}").contains("AGE-SECRET"));
        let sealed = seal(&SealTo::new(&[&id.recipient], None).expect("to"), b"hello");
        assert!(sealed.starts_with(AGE_MAGIC));
        let with = OpenWith::identities(&[id.secret]).expect("identity");
        assert_eq!(open(&with, &sealed).expect("open"), b"hello");
    }

    #[test]
    fn identity_files_with_comments_parse() {
        let id = generate_identity();
        let file = format!("# created: now\n# public key: {}\n{}\n", id.recipient, id.secret.expose_secret());
        let with = OpenWith::identities(&[SecretString::from(file)]).expect("file");
        assert!(matches!(with, OpenWith::Identities(ref v) if v.len() == 1));
    }

    #[test]
    fn bad_keys_are_named_without_leaking() {
        let good = generate_identity();
        let e = parse_recipients(&[good.recipient.as_str(), "age1notakey"]).expect_err("bad");
        assert!(matches!(e, AgeError::BadRecipient { index: 2, .. }), "{e}");
        assert!(e.to_string().contains("age1notakey"));

        let secret = "AGE-SECRET-KEY-1NOTVALIDATALLXXXXXXXXXXXXXXXXXXXXX";
        let e = OpenWith::identities(&[good.secret, SecretString::from(format!("# c\n{secret}"))]).expect_err("bad");
        assert!(matches!(e, AgeError::BadIdentity { index: 2, line: 2, .. }), "{e}");
        assert!(!e.to_string().contains("NOTVALID"), "{e}");
        let e = OpenWith::identities(&[SecretString::from("# only a comment")]).expect_err("empty");
        assert!(matches!(e, AgeError::EmptyIdentity { index: 1 }));
        let e = parse_recipients(&["ssh-ed25519 AAAA"]).expect_err("ssh");
        assert!(e.to_string().contains("SSH"), "{e}");
    }

    #[test]
    fn seal_combinations_are_checked() {
        let id = generate_identity();
        let p = || Some(SecretString::from("pw"));
        assert!(matches!(SealTo::new::<&str>(&[], None), Err(AgeError::NoRecipients)));
        assert!(matches!(SealTo::new(&[&id.recipient], p()), Err(AgeError::PassphraseWithRecipients)));
        assert!(matches!(SealTo::new::<&str>(&[], Some("".into())), Err(AgeError::EmptyPassphrase)));
        let to = SealTo::new::<&str>(&[], p()).expect("passphrase");
        assert!(!format!("{to:?}").contains("pw"));
    }

    #[test]
    fn passphrase_and_key_mismatches_are_clear() {
        let to = SealTo::passphrase("correct horse".into()).expect("p").with_work_factor(10);
        let sealed = seal(&to, b"secret data");
        let right = OpenWith::passphrase("correct horse".into()).expect("p");
        assert_eq!(open(&right, &sealed).expect("open"), b"secret data");
        let wrong = OpenWith::passphrase("battery staple".into()).expect("p");
        assert!(matches!(open(&wrong, &sealed), Err(AgeError::WrongPassphrase)));
        let id = generate_identity();
        let ids = OpenWith::identities(&[id.secret]).expect("id");
        assert!(matches!(open(&ids, &sealed), Err(AgeError::NeedsPassphrase)));

        let other = generate_identity();
        let sealed = seal(&SealTo::new(&[&id.recipient], None).expect("to"), b"x");
        let other = OpenWith::identities(&[other.secret]).expect("id");
        let e = open(&other, &sealed).expect_err("no match");
        assert_eq!(e.to_string(), "not an age file encrypted to any of the given identities");
        assert!(matches!(open(&right, &sealed), Err(AgeError::NeedsIdentity)));
    }
}
