//! zip and tar.gz: artifacts made by the stock `zip` and `tar` tools (the one file inside is
//! restored, several files are refused), and ours, which those tools open.

use std::path::Path;

use secrecy::SecretString;
use sentinel_archive::{
    ArchiveError, Compression, DecryptKey, EncodeOptions, Encryption, StoredFormat, generate_identity,
};

use crate::helpers::{decode, decode_err, encode_with, mixed_data, run_in, run_tool, test_options};

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).expect("write");
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("read")
}

#[tokio::test]
async fn one_file_in_a_zip_is_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = mixed_data(2_200_000, 20);
    std::fs::create_dir(dir.path().join("dumps")).expect("mkdir");
    write(dir.path(), "dumps/db.sql", &data);
    // A directory entry besides the file is fine: it carries no data.
    run_in(dir.path(), "zip", &["-q", "-r", "one.zip", "dumps"]);
    let (plain, report) = decode(DecryptKey::None, &read(dir.path(), "one.zip")).await.expect("decode");
    assert!(plain == data);
    assert_eq!(report.format, StoredFormat::Zip);
    assert!(!report.encrypted);

    // Stored (uncompressed) entries as well as deflated ones.
    run_in(dir.path(), "zip", &["-q", "-0", "stored.zip", "dumps/db.sql"]);
    assert!(decode(DecryptKey::None, &read(dir.path(), "stored.zip")).await.expect("decode").0 == data);
}

#[tokio::test]
async fn several_files_in_a_zip_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a.sql", "b.sql", "c.sql"] {
        write(dir.path(), name, &mixed_data(10_000, 21));
    }
    run_in(dir.path(), "zip", &["-q", "three.zip", "a.sql", "b.sql", "c.sql"]);
    let e = decode_err(DecryptKey::None, &read(dir.path(), "three.zip")).await;
    assert!(matches!(e, ArchiveError::SeveralFiles { format: "zip", count: 3 }), "{e}");
    assert_eq!(e.to_string(), "zip archive holds 3 files; a backup restores from exactly one");
}

#[tokio::test]
async fn a_streamed_zip_is_refused_clearly() {
    let data = mixed_data(100_000, 22);
    // `zip - -` reads stdin and writes stdout: sizes follow the data (a data descriptor).
    let streamed = run_tool("zip", &["-q", "-", "-"], &data);
    let e = decode_err(DecryptKey::None, &streamed).await;
    assert!(e.to_string().contains("streaming mode"), "{e}");
}

#[tokio::test]
async fn one_file_in_a_tar_gz_is_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = mixed_data(2_300_000, 23);
    std::fs::create_dir(dir.path().join("d")).expect("mkdir");
    write(dir.path(), "d/db.dump", &data);
    // `-C d .` adds a "./" directory entry before the file.
    run_in(dir.path(), "tar", &["-czf", "one.tar.gz", "-C", "d", "."]);
    let (plain, report) = decode(DecryptKey::None, &read(dir.path(), "one.tar.gz")).await.expect("decode");
    assert!(plain == data);
    assert_eq!(report.format, StoredFormat::TarGz);

    // A long name (a GNU long-name header before the entry) and the pax format.
    let long = format!("{}.dump", "x".repeat(150));
    write(dir.path(), &long, &data[..100_000]);
    run_in(dir.path(), "tar", &["--format=pax", "-czf", "pax.tar.gz", &long]);
    assert!(decode(DecryptKey::None, &read(dir.path(), "pax.tar.gz")).await.expect("pax").0 == data[..100_000]);
    run_in(dir.path(), "tar", &["--format=gnu", "-czf", "gnu.tar.gz", &long]);
    assert!(decode(DecryptKey::None, &read(dir.path(), "gnu.tar.gz")).await.expect("gnu").0 == data[..100_000]);
}

#[tokio::test]
async fn several_files_in_a_tar_gz_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.sql", b"one");
    write(dir.path(), "b.sql", b"two");
    run_in(dir.path(), "tar", &["-czf", "two.tar.gz", "a.sql", "b.sql"]);
    let e = decode_err(DecryptKey::None, &read(dir.path(), "two.tar.gz")).await;
    assert_eq!(e.to_string(), "tar archive holds 2 files; a backup restores from exactly one");

    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    run_in(dir.path(), "tar", &["-czf", "none.tar.gz", "empty"]);
    let e = decode_err(DecryptKey::None, &read(dir.path(), "none.tar.gz")).await;
    assert!(matches!(e, ArchiveError::NoFile { format: "tar" }), "{e}");
}

#[tokio::test]
async fn a_tar_gz_inside_age_is_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = mixed_data(700_000, 24);
    write(dir.path(), "db.dump", &data);
    run_in(dir.path(), "tar", &["-czf", "one.tar.gz", "db.dump"]);
    let id = generate_identity();
    let sealed = run_tool("age", &["-r", &id.recipient], &read(dir.path(), "one.tar.gz"));
    let key = DecryptKey::Identities(vec![SecretString::from(secrecy::ExposeSecret::expose_secret(&id.secret))]);
    let (plain, report) = decode(key, &sealed).await.expect("decode");
    assert!(plain == data);
    assert_eq!((report.encrypted, report.format), (true, StoredFormat::TarGz));
}

/// Encodes `data` as `compression` with entry `app.dump`, staging in a fresh directory that must be
/// empty afterwards (the staging file is unlinked from the start).
async fn staged(compression: Compression, encryption: Encryption, data: &[u8]) -> crate::helpers::Encoded {
    let staging = tempfile::tempdir().expect("tempdir");
    let options =
        EncodeOptions { staging_dir: Some(staging.path().to_owned()), entry_name: "app.dump".into(), ..test_options() };
    let out = encode_with(compression, encryption, options, data).await.expect("encode");
    assert_eq!(std::fs::read_dir(staging.path()).expect("ls").count(), 0, "nothing left in the staging directory");
    out
}

#[tokio::test]
async fn zip_made_here_opens_with_unzip_and_restores_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = mixed_data(3_100_000, 24);
    let ours = staged(Compression::Zip { level: 6 }, Encryption::None, &data).await;
    assert!(ours.stored.starts_with(b"PK\x03\x04"));
    assert!(ours.digests.stored_bytes < data.len() as u64, "deflated");
    write(dir.path(), "ours.zip", &ours.stored);
    let path = dir.path().join("ours.zip");
    let path = path.to_str().expect("utf-8");
    assert_eq!(String::from_utf8_lossy(&run_tool("unzip", &["-Z1", path], &[])).trim(), "app.dump");
    assert!(run_tool("unzip", &["-p", path, "app.dump"], &[]) == data, "unzip reads ours");
    let (plain, report) = decode(DecryptKey::None, &ours.stored).await.expect("decode");
    assert!(plain == data);
    assert_eq!((report.format, report.plain_sha256.as_str()), (StoredFormat::Zip, ours.digests.plain_sha256.as_str()));
    assert_eq!(report.stored_sha256, ours.digests.stored_sha256);
}

#[tokio::test]
async fn tar_gz_made_here_opens_with_tar_and_restores_here_encrypted_too() {
    let data = mixed_data(2_700_000, 25);
    let ours = staged(Compression::TarGz { level: 6 }, Encryption::None, &data).await;
    assert_eq!(String::from_utf8_lossy(&run_tool("tar", &["-tzf", "-"], &ours.stored)).trim(), "app.dump");
    assert!(run_tool("tar", &["-xzOf", "-", "app.dump"], &ours.stored) == data, "tar reads ours");
    let (plain, report) = decode(DecryptKey::None, &ours.stored).await.expect("decode");
    assert!(plain == data);
    assert_eq!(report.format, StoredFormat::TarGz);

    let id = generate_identity();
    let encryption = Encryption::Age { recipients: vec![id.recipient.clone()], passphrase: None };
    let sealed = staged(Compression::TarGz { level: 1 }, encryption, &data).await;
    assert!(sealed.stored.starts_with(b"age-encryption.org/v1"));
    let key = DecryptKey::Identities(vec![id.secret.clone()]);
    let (plain, report) = decode(key, &sealed.stored).await.expect("decode");
    assert!(plain == data);
    assert!(report.encrypted && report.format == StoredFormat::TarGz);
}

#[tokio::test]
async fn staged_formats_need_a_staging_directory_and_a_plain_entry_name() {
    for compression in [Compression::Zip { level: 6 }, Compression::TarGz { level: 6 }] {
        let e = encode_with(compression, Encryption::None, test_options(), b"x").await.err().expect("no staging");
        assert!(matches!(e, ArchiveError::NeedsStaging(_)), "{e}");
        let options = EncodeOptions {
            staging_dir: Some(std::env::temp_dir()),
            entry_name: "../etc/passwd".into(),
            ..test_options()
        };
        let e = encode_with(compression, Encryption::None, options, b"x").await.err().expect("bad name");
        assert!(matches!(e, ArchiveError::BadEntryName(_)), "{e}");
    }
    let e = encode_with(Compression::Zip { level: 10 }, Encryption::None, test_options(), b"x").await.err();
    assert!(matches!(e, Some(ArchiveError::BadGzipLevel(10))), "{e:?}");
}
