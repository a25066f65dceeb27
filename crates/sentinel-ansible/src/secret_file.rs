//! How a run's extra variables — secrets included — reach ansible-playbook without touching the disk,
//! the command line or the environment: a 0600 file in a 0700 directory on a RAM file system
//! (`/dev/shm`), removed as soon as ansible has loaded it (its first play) and at the latest when the
//! run ends. ansible resolves a vars file's real path and needs a regular file, so neither an in-memory
//! descriptor (`memfd`) nor a pipe can carry them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where secret files go: RAM, never a disk.
pub const RAM_DIR: &str = "/dev/shm";

/// A private file on a RAM file system; deleted on drop.
#[derive(Debug)]
pub struct SecretFile {
    dir: PathBuf,
    path: PathBuf,
}

impl SecretFile {
    /// Writes `contents` to `<ram>/sentinel-<name>/<file>` (0700 directory, 0600 file). Refuses when
    /// `ram` is missing: a secret is never written to a disk instead.
    pub fn new(ram: &Path, name: &str, file: &str, contents: &[u8]) -> std::io::Result<Self> {
        if !ram.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} (a RAM file system for the run's secret variables) does not exist", ram.display()),
            ));
        }
        let dir = ram.join(format!("sentinel-{name}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join(file);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(contents)?;
        Ok(Self { dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn it_is_private_and_gone_after_drop() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = SecretFile::new(tmp.path(), "run1", "vars.yml", b"answer: 42\n").expect("file");
        assert_eq!(std::fs::read(f.path()).expect("read"), b"answer: 42\n");
        assert_eq!(std::fs::metadata(f.path()).expect("stat").permissions().mode() & 0o777, 0o600);
        let path = f.path().to_owned();
        drop(f);
        assert!(!path.exists());
        assert!(SecretFile::new(&tmp.path().join("missing"), "x", "y", b"").is_err(), "no RAM dir, no file");
    }
}
