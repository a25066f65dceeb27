//! Damaged artifacts and wrong keys: every one is an error with a clear message, never a silent
//! short or altered output.

use secrecy::SecretString;
use sentinel_archive::{ArchiveError, Compression, DecryptKey, Encryption, generate_identity};

use crate::helpers::{decode, decode_err, encode, mixed_data, run_in};

async fn sealed_to_one() -> (Vec<u8>, DecryptKey) {
    let id = generate_identity();
    let data = mixed_data(1_000_000, 30);
    let enc = encode(
        Compression::Zstd { level: 3 },
        Encryption::Age { recipients: vec![id.recipient], passphrase: None },
        &data,
    )
    .await;
    (enc.stored, DecryptKey::Identities(vec![id.secret]))
}

#[tokio::test]
async fn a_flipped_byte_in_the_payload_is_detected() {
    let (mut stored, key) = sealed_to_one().await;
    let at = stored.len() / 2;
    stored[at] ^= 0x01;
    let e = decode_err(key, &stored).await;
    assert!(matches!(e, ArchiveError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("age payload: a chunk failed authentication"), "{e}");
}

#[tokio::test]
async fn a_flipped_byte_in_the_header_is_detected() {
    let (stored, key) = sealed_to_one().await;
    // Inside the recipient stanza, and inside the header MAC line.
    let header_end = stored.windows(4).position(|w| w == b"\n---").expect("header end");
    for at in [40, header_end + 8] {
        let mut bad = stored.clone();
        bad[at] ^= 0x01;
        assert!(decode(key.clone(), &bad).await.is_err(), "flip at {at} went unnoticed");
    }
}

#[tokio::test]
async fn a_truncated_encrypted_stream_is_an_error() {
    let (stored, key) = sealed_to_one().await;
    // The header ends with "\n--- " and a 43-character MAC line; a 16-byte nonce follows.
    let payload = stored.windows(5).position(|w| w == b"\n--- ").expect("header end") + 1 + 4 + 43 + 1 + 16;
    let chunk = 64 * 1024 + 16;
    // Cut at a chunk boundary: age sees the final chunk missing.
    for keep in [payload + chunk, payload + 2 * chunk, payload] {
        let e = decode(key.clone(), &stored[..keep]).await.err().unwrap_or_else(|| panic!("cut at {keep}"));
        assert_eq!(e.to_string(), "the stored stream is truncated", "cut at {keep}");
    }
    // Cut inside a chunk (the last one included): its tag no longer verifies, which age cannot tell
    // from tampering. Cut inside the header: the header does not parse.
    for keep in [stored.len() - 1, stored.len() - 100, payload + chunk + 5000, payload - 5, 30] {
        let e = decode(key.clone(), &stored[..keep]).await.err().unwrap_or_else(|| panic!("cut at {keep}"));
        assert!(
            matches!(e, ArchiveError::Truncated | ArchiveError::Corrupt(_) | ArchiveError::Age(_)),
            "cut at {keep}: {e}"
        );
    }
}

#[tokio::test]
async fn truncated_zstd_and_gzip_streams_are_errors() {
    let data = mixed_data(1_500_000, 31);
    for compression in [Compression::Zstd { level: 3 }, Compression::Gzip { level: 6 }] {
        let enc = encode(compression, Encryption::None, &data).await;
        for keep in [enc.stored.len() - 1, enc.stored.len() - 5, enc.stored.len() / 2, 20] {
            let e = decode(DecryptKey::None, &enc.stored[..keep]).await.err();
            assert!(
                matches!(e, Some(ArchiveError::Truncated)),
                "{compression:?} cut to {keep} of {}: {e:?}",
                enc.stored.len()
            );
        }
    }
}

#[tokio::test]
async fn a_flipped_byte_in_unencrypted_zstd_or_gzip_is_detected() {
    let data = mixed_data(1_500_000, 32);
    for compression in [Compression::Zstd { level: 3 }, Compression::Gzip { level: 6 }] {
        let enc = encode(compression, Encryption::None, &data).await;
        let mut bad = enc.stored.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        let e = decode(DecryptKey::None, &bad).await.err();
        assert!(matches!(e, Some(ArchiveError::Corrupt(_))), "{compression:?}: {e:?}");
    }
}

#[tokio::test]
async fn truncated_zip_and_tar_gz_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("db.dump"), mixed_data(600_000, 33)).expect("write");
    run_in(dir.path(), "zip", &["-q", "a.zip", "db.dump"]);
    run_in(dir.path(), "tar", &["-czf", "a.tar.gz", "db.dump"]);
    for name in ["a.zip", "a.tar.gz"] {
        let whole = std::fs::read(dir.path().join(name)).expect("read");
        for keep in [whole.len() - 3, whole.len() / 2] {
            let e = decode(DecryptKey::None, &whole[..keep]).await.err();
            assert!(matches!(e, Some(ArchiveError::Truncated)), "{name} cut to {keep}: {e:?}");
        }
    }
}

#[tokio::test]
async fn wrong_or_missing_keys_are_clear_errors() {
    let (stored, _) = sealed_to_one().await;
    let other = generate_identity();
    let e = decode_err(DecryptKey::Identities(vec![other.secret]), &stored).await;
    assert_eq!(e.to_string(), "not an age file encrypted to any of the given identities");

    let e = decode_err(DecryptKey::None, &stored).await;
    assert!(matches!(e, ArchiveError::NoKey), "{e}");
    assert_eq!(e.to_string(), "the stored stream is age-encrypted, but no key was given");

    let e = decode_err(DecryptKey::Passphrase(SecretString::from("guess")), &stored).await;
    assert!(e.to_string().contains("encrypted to X25519 recipients, but a passphrase was given"), "{e}");

    let data = mixed_data(10_000, 34);
    let by_passphrase = Encryption::Age { recipients: vec![], passphrase: Some(SecretString::from("right one")) };
    let enc = encode(Compression::None, by_passphrase, &data).await;
    let e = decode_err(DecryptKey::Passphrase(SecretString::from("wrong one")), &enc.stored).await;
    assert_eq!(e.to_string(), "the passphrase does not open this age file");
    let e = decode_err(DecryptKey::Identities(vec![generate_identity().secret]), &enc.stored).await;
    assert!(e.to_string().contains("encrypted with a passphrase, but identities were given"), "{e}");
}
