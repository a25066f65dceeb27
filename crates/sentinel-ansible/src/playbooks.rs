//! The playbook allow-list: only `<dir>/<name>.yml` of a configured directory runs, resolved to a
//! canonical path that must stay inside that directory (a symlink pointing out of it is refused).

use std::path::{Path, PathBuf};

use sentinel_domain::provisioning::PlaybookName;
use sha2::{Digest, Sha256};

/// One playbook that may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    pub name: PlaybookName,
    /// Canonical path inside an allow-listed directory.
    pub path: PathBuf,
    /// The playbook's leading comment lines (its own description of what it does).
    pub description: String,
    /// SHA-256 of the file's bytes, hex: what a run records, and what `apply` compares.
    pub hash: String,
}

/// Why a playbook name does not resolve.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("{0}")]
    BadName(String),
    #[error("no playbook {name:?} is allowed; the allowed ones are: {}", allowed.join(", "))]
    NotAllowed { name: String, allowed: Vec<String> },
    #[error("reading playbook {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The directories playbooks are allowed from, in search order.
#[derive(Debug, Clone)]
pub struct PlaybookRegistry {
    dirs: Vec<PathBuf>,
}

fn hash_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn description(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t == "---" || (t.is_empty() && lines.is_empty()) {
            continue;
        }
        match t.strip_prefix('#') {
            Some(c) => lines.push(c.trim().to_owned()),
            None => break,
        }
    }
    lines.join(" ")
}

impl PlaybookRegistry {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// Every allowed playbook, by name (the first directory that has a name wins).
    pub fn list(&self) -> Result<Vec<Playbook>, PlaybookError> {
        let mut names = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let file = entry.file_name();
                let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".yml")) else { continue };
                if let Ok(name) = PlaybookName::parse(stem)
                    && !names.contains(&name)
                {
                    names.push(name);
                }
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(p) = self.find(&name)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The names that may run (for error messages).
    pub fn allowed_names(&self) -> Vec<String> {
        self.list().map(|l| l.into_iter().map(|p| p.name.to_string()).collect()).unwrap_or_default()
    }

    /// Resolves a caller's playbook name; anything that is not an allowed playbook's name is refused,
    /// naming the allowed ones.
    pub fn resolve(&self, raw: &str) -> Result<Playbook, PlaybookError> {
        let not_allowed =
            || PlaybookError::NotAllowed { name: raw.chars().take(64).collect(), allowed: self.allowed_names() };
        let name = PlaybookName::parse(raw).map_err(|_| not_allowed())?;
        self.find(&name)?.ok_or_else(not_allowed)
    }

    fn find(&self, name: &PlaybookName) -> Result<Option<Playbook>, PlaybookError> {
        for dir in &self.dirs {
            let Ok(root) = dir.canonicalize() else { continue };
            let Ok(path) = root.join(name.file_name()).canonicalize() else { continue };
            // Inside the directory, and a regular file: a symlink out of the allow-list is not in it.
            if !path.starts_with(&root) || !path.is_file() {
                continue;
            }
            return Self::read(name.clone(), path).map(Some);
        }
        Ok(None)
    }

    fn read(name: PlaybookName, path: PathBuf) -> Result<Playbook, PlaybookError> {
        let bytes = std::fs::read(&path).map_err(|source| PlaybookError::Io { path: path.clone(), source })?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(Playbook { name, description: description(&text), hash: hash_hex(&bytes), path })
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// The directory a playbook lives in (its `roles/` and `templates/` are found from there).
pub fn playbook_dir(p: &Playbook) -> &Path {
    p.path.parent().unwrap_or(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_playbooks_inside_the_directories_resolve() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("playbooks");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("ping.yml"), "---\n# Checks connectivity.\n# Changes nothing.\n- hosts: all\n")
            .expect("write");
        std::fs::write(tmp.path().join("secret.yml"), "- hosts: all\n").expect("write");
        std::os::unix::fs::symlink(tmp.path().join("secret.yml"), dir.join("escape.yml")).expect("symlink");
        let reg = PlaybookRegistry::new(vec![dir.clone()]);
        let ping = reg.resolve("ping").expect("allowed");
        assert_eq!(ping.description, "Checks connectivity. Changes nothing.");
        assert_eq!(ping.hash.len(), 64);
        assert_eq!(reg.list().expect("list").len(), 1, "the symlink out of the directory is not listed");
        for bad in ["../secret", "escape", "secret", "PING", "ping.yml", ""] {
            match reg.resolve(bad) {
                Err(PlaybookError::NotAllowed { allowed, .. }) => assert_eq!(allowed, vec!["ping".to_owned()]),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
