//! Interop with the stock `zstd`, `gzip` and `age` CLIs, both ways: what we store they read, what
//! they write we restore. The tools must be installed (scripts/test.sh does it); a missing one fails.

use secrecy::{ExposeSecret, SecretString};
use sentinel_archive::{Compression, DecryptKey, Encryption, StoredFormat, generate_identity};

use crate::helpers::{decode, decode_err, encode, mixed_data, run_in, run_tool};

#[tokio::test]
async fn the_zstd_cli_reads_ours_and_we_read_its() {
    let data = mixed_data(2_500_000, 10);
    let ours = encode(Compression::Zstd { level: 3 }, Encryption::None, &data).await;
    // `-c -d` also verifies the frame checksum we include.
    assert!(run_tool("zstd", &["-q", "-d", "-c"], &ours.stored) == data);

    let theirs = run_tool("zstd", &["-q", "-c", "-19", "-T2"], &data);
    let (plain, report) = decode(DecryptKey::None, &theirs).await.expect("decode");
    assert!(plain == data);
    assert_eq!(report.format, StoredFormat::Zstd);

    // pzstd (in the zstd package) starts with a skippable frame, then one frame per job.
    let parallel = run_tool("pzstd", &["-q", "-c", "-p", "2"], &data);
    assert_eq!(parallel[..4], [0x50, 0x2a, 0x4d, 0x18]);
    let (plain, report) = decode(DecryptKey::None, &parallel).await.expect("decode");
    assert!(plain == data);
    assert_eq!(report.format, StoredFormat::Zstd);

    // Two frames back to back, as `cat a.zst b.zst` makes.
    let mut two = run_tool("zstd", &["-q", "-c"], &data[..1000]);
    two.extend(run_tool("zstd", &["-q", "-c"], &data[1000..]));
    assert!(decode(DecryptKey::None, &two).await.expect("decode").0 == data);
}

#[tokio::test]
async fn the_gzip_cli_reads_ours_and_we_read_its() {
    let data = mixed_data(2_500_000, 11);
    let ours = encode(Compression::Gzip { level: 6 }, Encryption::None, &data).await;
    assert!(run_tool("gzip", &["-d", "-c"], &ours.stored) == data);

    let theirs = run_tool("gzip", &["-c", "-9"], &data);
    let (plain, report) = decode(DecryptKey::None, &theirs).await.expect("decode");
    assert!(plain == data);
    assert_eq!(report.format, StoredFormat::Gzip);

    // Concatenated members, as pigz and `cat a.gz b.gz` make.
    let mut two = run_tool("gzip", &["-c"], &data[..5000]);
    two.extend(run_tool("gzip", &["-c"], &data[5000..]));
    assert!(decode(DecryptKey::None, &two).await.expect("decode").0 == data);
}

#[tokio::test]
async fn the_age_cli_decrypts_ours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = mixed_data(1_500_000, 12);
    let id = generate_identity();
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", id.secret.expose_secret())).expect("key file");
    let key_file = key_file.to_str().expect("utf-8 path");

    let encryption = Encryption::Age { recipients: vec![id.recipient.clone()], passphrase: None };
    let ours = encode(Compression::None, encryption.clone(), &data).await;
    assert!(run_tool("age", &["-d", "-i", key_file], &ours.stored) == data);

    // zstd inside age: age -d | zstd -d.
    let ours = encode(Compression::Zstd { level: 3 }, encryption, &data).await;
    let zst = run_tool("age", &["-d", "-i", key_file], &ours.stored);
    assert!(run_tool("zstd", &["-q", "-d", "-c"], &zst) == data);
}

#[tokio::test]
async fn we_decrypt_what_the_age_cli_encrypts() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_in(dir.path(), "age-keygen", &["-o", "key.txt"]);
    let key_text = std::fs::read_to_string(dir.path().join("key.txt")).expect("key file");
    let recipient = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_owned();
    let data = mixed_data(1_500_000, 13);

    // The whole identity file as age-keygen wrote it, comments included.
    let key = || DecryptKey::Identities(vec![SecretString::from(key_text.clone())]);
    let theirs = run_tool("age", &["-r", &recipient], &data);
    let (plain, report) = decode(key(), &theirs).await.expect("decode");
    assert!(plain == data);
    assert!(report.encrypted);
    assert_eq!(report.format, StoredFormat::Raw);

    // `zstd | age`, the pipeline an operator would write by hand.
    let theirs = run_tool("age", &["-r", &recipient], &run_tool("zstd", &["-q", "-c"], &data));
    let (plain, report) = decode(key(), &theirs).await.expect("decode");
    assert!(plain == data);
    assert_eq!((report.encrypted, report.format), (true, StoredFormat::Zstd));

    // Armored output is refused with a clear message rather than treated as raw.
    let armored = run_tool("age", &["-a", "-r", &recipient], &data[..100]);
    let e = decode_err(key(), &armored).await;
    assert!(e.to_string().contains("ASCII-armored"), "{e}");
}
