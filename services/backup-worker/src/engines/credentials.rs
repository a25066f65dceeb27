//! Credential files for dump tools: written 0600 inside a private 0700 directory of the worker, read
//! by the tool through a path (never a secret in argv or the environment), removed when dropped.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A file holding a secret for one tool run; deleted (with its directory) on drop.
#[derive(Debug)]
pub struct CredentialFile {
    dir: PathBuf,
    path: PathBuf,
}

impl CredentialFile {
    /// Writes `contents` to `<work_dir>/cred-<uuid>/<name>` (directory 0700, file 0600).
    pub fn write(work_dir: &Path, name: &str, contents: Zeroizing<String>) -> std::io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(work_dir)?;
        let dir = work_dir.join(format!("cred-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join(name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()));
        let file = Self { dir, path };
        written.map(|()| file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CredentialFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `.pgpass` field: `:` and `\` escaped with a backslash.
pub fn pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// A value of a MySQL option file, double-quoted (`\` and `"` escaped; newlines cannot be written).
pub fn mysql_option_value(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// A YAML double-quoted scalar (the mongo tools' `--config` file).
pub fn yaml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
