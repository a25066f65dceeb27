//! Every compression × encryption through encoder and decoder, with the digests checked against
//! SHA-256 computed here, plus configuration errors and a gone consumer.

use std::time::Duration;

use bytes::Bytes;
use secrecy::SecretString;
use sentinel_archive::{
    ArchiveError, Compression, DecryptKey, EncodeOptions, Encryption, StoredFormat, generate_identity, hash_stream,
    sha256_hex, spawn_encoder,
};
use tokio::sync::mpsc;

use crate::helpers::{assert_whole_chunks, decode, decode_err, encode, encode_with, mixed_data, test_options};

fn compressions() -> [(Compression, StoredFormat); 3] {
    [
        (Compression::Zstd { level: 3 }, StoredFormat::Zstd),
        (Compression::Gzip { level: 6 }, StoredFormat::Gzip),
        (Compression::None, StoredFormat::Raw),
    ]
}

/// (name, encryption, the key a restore uses)
fn encryptions() -> Vec<(&'static str, Encryption, DecryptKey)> {
    let one = generate_identity();
    let escrow = generate_identity();
    let operator = generate_identity();
    vec![
        ("none", Encryption::None, DecryptKey::None),
        (
            "recipient",
            Encryption::Age { recipients: vec![one.recipient.clone()], passphrase: None },
            DecryptKey::Identities(vec![one.secret.clone()]),
        ),
        (
            "passphrase",
            Encryption::Age { recipients: vec![], passphrase: Some(SecretString::from("correct horse battery")) },
            DecryptKey::Passphrase(SecretString::from("correct horse battery")),
        ),
        (
            // Encrypted to the operator and an offline escrow key; restored with the escrow key only.
            "two recipients",
            Encryption::Age {
                recipients: vec![operator.recipient.clone(), escrow.recipient.clone()],
                passphrase: None,
            },
            DecryptKey::Identities(vec![escrow.secret.clone()]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_and_encryption_round_trips() {
    let data = mixed_data(2 * 1024 * 1024 + 12_345, 1);
    for (compression, format) in compressions() {
        for (name, encryption, key) in encryptions() {
            let what = format!("{compression:?} × {name}");
            let encrypted = !matches!(encryption, Encryption::None);
            let enc = encode(compression, encryption, &data).await;
            assert_eq!(enc.digests.plain_bytes, data.len() as u64, "{what}");
            assert_eq!(enc.digests.plain_sha256, sha256_hex(&data), "{what}");
            assert_eq!(enc.digests.stored_bytes, enc.stored.len() as u64, "{what}");
            assert_eq!(enc.digests.stored_sha256, sha256_hex(&enc.stored), "{what}");
            assert_whole_chunks(&enc.chunk_sizes);
            assert_eq!(enc.stored.starts_with(b"age-encryption.org/v1\n"), encrypted, "{what}");
            if compression != Compression::None {
                assert!(enc.stored.len() < data.len(), "{what}: {} stored bytes", enc.stored.len());
            }

            let (plain, report) = decode(key, &enc.stored).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(plain == data, "{what}: the decoded stream differs");
            assert_eq!(report.format, format, "{what}");
            assert_eq!(report.encrypted, encrypted, "{what}");
            assert_eq!(report.plain_bytes, enc.digests.plain_bytes, "{what}");
            assert_eq!(report.plain_sha256, enc.digests.plain_sha256, "{what}");
            assert_eq!(report.stored_bytes, enc.digests.stored_bytes, "{what}");
            assert_eq!(report.stored_sha256, enc.digests.stored_sha256, "{what}");
        }
    }
}

#[tokio::test]
async fn empty_streams_round_trip() {
    for (compression, format) in compressions() {
        for (name, encryption, key) in encryptions() {
            let enc = encode(compression, encryption, &[]).await;
            assert_eq!(enc.digests.plain_bytes, 0);
            let (plain, report) = decode(key, &enc.stored).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(plain.is_empty());
            // An empty raw stream is just empty; the others carry a frame or header.
            assert_eq!(report.format, format, "{compression:?} × {name}");
        }
    }
}

#[tokio::test]
async fn single_threaded_zstd_and_other_levels_round_trip() {
    // Small: debug builds run zstd's C code unoptimised, and high levels are slow even optimised.
    let data = mixed_data(300_000, 2);
    for (level, workers) in [(1, 0), (12, 1), (-5, 2)] {
        let options = EncodeOptions { zstd_workers: workers, ..test_options() };
        let enc = encode_with(Compression::Zstd { level }, Encryption::None, options, &data).await.expect("encode");
        let (plain, _) = decode(DecryptKey::None, &enc.stored).await.expect("decode");
        assert!(plain == data, "level {level}, {workers} workers");
    }
    let enc = encode(Compression::Gzip { level: 0 }, Encryption::None, &data).await;
    assert!(decode(DecryptKey::None, &enc.stored).await.expect("decode").0 == data);
}

#[tokio::test]
async fn hash_stream_hashes_a_stream() {
    let data = mixed_data(2_000_000, 3);
    let (tx, rx) = mpsc::channel(2);
    let feeder = tokio::spawn(async move {
        for chunk in data.chunks(300_000) {
            tx.send(Bytes::copy_from_slice(chunk)).await.expect("send");
        }
    });
    let digest = hash_stream(rx).await.expect("hash");
    feeder.await.expect("feeder");
    let data = mixed_data(2_000_000, 3);
    assert_eq!(digest.bytes, data.len() as u64);
    assert_eq!(digest.sha256, sha256_hex(&data));
}

#[tokio::test]
async fn configuration_errors_come_before_any_thread() {
    let (_in_tx, in_rx) = mpsc::channel::<Bytes>(1);
    let (out_tx, _out_rx) = mpsc::channel(1);
    let e = spawn_encoder(Compression::Zstd { level: 99 }, Encryption::None, in_rx, out_tx).err().expect("level");
    assert!(matches!(e, ArchiveError::BadZstdLevel { level: 99, .. }), "{e}");

    let mixed =
        Encryption::Age { recipients: vec![generate_identity().recipient], passphrase: Some(SecretString::from("pw")) };
    let e = encode_with(Compression::None, mixed, test_options(), b"x").await.err().expect("mixed");
    assert!(e.to_string().contains("passphrase and to recipients"), "{e}");

    let bad = Encryption::Age { recipients: vec![generate_identity().recipient, "age1bogus".into()], passphrase: None };
    let e = encode_with(Compression::None, bad.clone(), test_options(), b"x").await.err().expect("bad recipient");
    assert!(e.to_string().starts_with("recipient #2 (age1bogus)"), "{e}");

    assert!(bad.validate().is_err());
    assert!(Encryption::Age { recipients: vec![generate_identity().recipient], passphrase: None }.validate().is_ok());
    assert!(DecryptKey::Identities(vec![generate_identity().secret]).validate().is_ok());
    assert!(DecryptKey::Passphrase(SecretString::from("")).validate().is_err());

    let none = Encryption::Age { recipients: vec![], passphrase: None };
    let e = encode_with(Compression::None, none, test_options(), b"x").await.err().expect("nothing");
    assert!(e.to_string().contains("nothing to encrypt to"), "{e}");

    let e = decode_err(DecryptKey::Identities(vec![SecretString::from("AGE-SECRET-KEY-1XYZ")]), b"").await;
    assert!(e.to_string().starts_with("identity #1, line 1,"), "{e}");
    assert!(!e.to_string().contains("XYZ"), "the error must not echo the secret: {e}");
}

#[test]
fn compression_serde_names() {
    let zstd: Compression = serde_json::from_str(r#"{"type":"zstd"}"#).expect("zstd");
    assert_eq!(zstd, Compression::default());
    assert_eq!(serde_json::to_string(&Compression::Gzip { level: 9 }).expect("ser"), r#"{"type":"gzip","level":9}"#);
    assert_eq!(serde_json::from_str::<Compression>(r#"{"type":"none"}"#).expect("none"), Compression::None);
    assert!(serde_json::from_str::<Compression>(r#"{"type":"brotli"}"#).is_err());
    assert_eq!(serde_json::to_string(&StoredFormat::TarGz).expect("ser"), r#""tar_gz""#);
    let debug = format!("{:?}", Encryption::Age { recipients: vec![], passphrase: Some("hunter2".into()) });
    assert!(!debug.contains("hunter2"), "{debug}");
}

/// The upload goes away mid-stream: the encoder stops with `OutputClosed`, and the producer's next
/// send fails soon after (so the dump tool gets stopped too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_consumer_stops_the_encoder() {
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(2);
    let handle = spawn_encoder(Compression::default(), Encryption::None, in_rx, out_tx).expect("spawn");
    let producer = tokio::spawn(async move {
        let data = Bytes::from(crate::helpers::mixed_data(1 << 20, 4));
        let mut sent = 0u64;
        // Endless input: only the encoder's failure ends this loop.
        while in_tx.send(data.clone()).await.is_ok() {
            sent += 1;
        }
        sent
    });
    let first = out_rx.recv().await.expect("a first chunk");
    assert!(!first.is_empty());
    drop(out_rx);
    let result = tokio::time::timeout(Duration::from_secs(20), handle.finish()).await.expect("stops promptly");
    assert!(matches!(result, Err(ArchiveError::OutputClosed)), "{result:?}");
    let sent = tokio::time::timeout(Duration::from_secs(5), producer).await.expect("producer stops").expect("join");
    assert!(sent > 0);
}

/// The restore tool goes away mid-stream: the decoder stops with `OutputClosed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_consumer_stops_the_decoder() {
    let data = mixed_data(3 << 20, 5);
    let stored = encode(Compression::None, Encryption::None, &data).await.stored;
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(1);
    let handle = sentinel_archive::spawn_decoder(DecryptKey::None, in_rx, out_tx).expect("spawn");
    let feeder = tokio::spawn(async move {
        for chunk in stored.chunks(100_000) {
            if in_tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
        }
    });
    assert!(out_rx.recv().await.is_some());
    drop(out_rx);
    let result = tokio::time::timeout(Duration::from_secs(20), handle.finish()).await.expect("stops promptly");
    assert!(matches!(result, Err(ArchiveError::OutputClosed)), "{result:?}");
    feeder.await.expect("feeder");
}
