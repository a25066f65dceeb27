//! Keys made by the real `ssh-keygen`, in every format operators upload, parsed to the same public key
//! and fingerprint `ssh-keygen` reports.

use std::path::Path;
use std::process::Command;

use sentinel_secrets::ssh::{KeyError, parse_private_key};

/// Generates a key with `ssh-keygen` and returns (private text, public line, fingerprint).
fn keygen(dir: &Path, name: &str, args: &[&str], passphrase: &str) -> (String, String, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-C", "test@sentinel", "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(status.success());
    let private = std::fs::read_to_string(&path).expect("private");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public");
    let public = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(path.with_extension("pub"))
        .output()
        .expect("-l");
    let fingerprint = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("fingerprint").to_owned();
    (private, public, fingerprint)
}

#[test]
fn every_uploadable_format_gives_the_key_ssh_keygen_made() {
    let dir = tempfile::tempdir().expect("dir");
    let cases: [(&str, &[&str], &str, &str); 6] = [
        ("ed25519", &["-t", "ed25519"], "", "ssh-ed25519"),
        ("ed25519-pass", &["-t", "ed25519"], "correct horse", "ssh-ed25519"),
        ("rsa-pem", &["-t", "rsa", "-b", "2048", "-m", "PEM"], "", "ssh-rsa"),
        ("rsa-pkcs8", &["-t", "rsa", "-b", "2048", "-m", "PKCS8"], "", "ssh-rsa"),
        ("ecdsa-pem", &["-t", "ecdsa", "-b", "256", "-m", "PEM"], "", "ecdsa-sha2-nistp256"),
        ("ecdsa-openssh", &["-t", "ecdsa", "-b", "384"], "", "ecdsa-sha2-nistp384"),
    ];
    for (name, args, pass, key_type) in cases {
        let (private, public, fingerprint) = keygen(dir.path(), name, args, pass);
        let parsed =
            parse_private_key(&private, (!pass.is_empty()).then_some(pass)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.key_type, key_type, "{name}");
        assert_eq!(parsed.public_key, public, "{name}");
        assert_eq!(parsed.fingerprint, fingerprint, "{name}");
        assert!(parsed.private_openssh.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"), "{name}");
        // What is kept is unencrypted (sealed by the keyring instead) and opens without a passphrase.
        let again = parse_private_key(&parsed.private_openssh, None).unwrap_or_else(|e| panic!("{name} again: {e}"));
        assert_eq!(again.fingerprint, fingerprint, "{name}");
    }
}

#[test]
fn passphrases_and_non_keys_are_clear_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let (private, public, _) = keygen(dir.path(), "k", &["-t", "ed25519"], "s3cret pass");
    assert_eq!(parse_private_key(&private, None).err(), Some(KeyError::PassphraseNeeded));
    assert_eq!(parse_private_key(&private, Some("wrong")).err(), Some(KeyError::WrongPassphrase));
    assert_eq!(parse_private_key(&public, None).err(), Some(KeyError::PublicKey));
    assert_eq!(parse_private_key("hello", None).err(), Some(KeyError::Unrecognised));
    assert!(matches!(
        parse_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", None),
        Err(KeyError::Malformed(_))
    ));
    let (legacy, _, _) = keygen(dir.path(), "legacy", &["-t", "rsa", "-b", "2048", "-m", "PEM"], "pass phrase");
    assert!(
        matches!(parse_private_key(&legacy, Some("pass phrase")), Err(KeyError::Unsupported(m)) if m.contains("ssh-keygen -p"))
    );
}
