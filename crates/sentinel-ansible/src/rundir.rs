//! A run's private directory (0700): the inventory written from the database, a `known_hosts` made
//! from the pinned keys, Sentinel's callback plugin, and the SSH control path and ansible's temp dirs
//! (removed when the run ends); and the extra variables as YAML with every string tagged `!unsafe`,
//! which never touch the disk (see `SecretFile`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Sentinel's stdout callback, written into every run's directory (so the plugin always matches
/// the worker that parses its lines).
pub const CALLBACK_PLUGIN: &str = include_str!("../../../ansible/callback_plugins/sentinel_jsonl.py");

/// One host of the inventory file.
#[derive(Debug, Clone)]
pub struct InventoryHost {
    /// The name ansible reports the host under.
    pub alias: String,
    pub ip: String,
    pub port: u16,
    pub user: String,
    /// Pinned host keys (`algorithm base64`).
    pub host_keys: Vec<String>,
    /// No key pinned and the operator allows the first contact to pin one.
    pub accept_new: bool,
}

/// The `known_hosts` pattern of a host: `ip` on port 22, `[ip]:port` otherwise.
pub fn known_hosts_pattern(ip: &str, port: u16) -> String {
    if port == 22 { ip.to_owned() } else { format!("[{ip}]:{port}") }
}

/// Where a run's SSH control sockets go: a short path under the system's temp directory, private
/// to this user (`sentinel-cp-<uid>/<run>`), because a Unix socket path has at most 108 bytes and ssh
/// adds a 17-byte suffix while it creates one — a work directory deep in a data dir would not fit.
pub fn control_dir_for(name: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let short: String = name.chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    std::env::temp_dir().join(format!("sentinel-cp-{uid}")).join(short)
}

/// A run's directory; `remove` (or drop) deletes it.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    control: PathBuf,
}

fn private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// A YAML scalar for an ansible value: strings are `!unsafe "…"` (JSON escaping is valid YAML), so a
/// `{{ … }}` inside a value stays text; everything else is plain JSON.
fn unsafe_yaml(v: &Value) -> String {
    match v {
        Value::String(s) => format!("!unsafe {}", Value::String(s.clone())),
        Value::Array(items) => format!("[{}]", items.iter().map(unsafe_yaml).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), unsafe_yaml(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The extra variables as a YAML document, every string `!unsafe`.
pub fn extra_vars_yaml(vars: &serde_json::Map<String, Value>) -> String {
    let mut yaml = String::from("---\n");
    for (k, v) in vars {
        yaml.push_str(&format!("{}: {}\n", Value::String(k.clone()), unsafe_yaml(v)));
    }
    yaml
}

impl RunDir {
    /// Creates `<work_dir>/<name>` (0700) with its subdirectories.
    pub fn create(work_dir: &Path, name: &str) -> std::io::Result<Self> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(work_dir)?;
        let root = work_dir.join(name);
        if root.exists() {
            // Left by a worker that died: nothing in it is worth keeping.
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&root)?;
        for sub in ["tmp", "home", "callback_plugins"] {
            std::fs::DirBuilder::new().mode(0o700).create(root.join(sub))?;
        }
        let control = control_dir_for(name);
        if let Some(parent) = control.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
            // Shared temp directories: the parent must be ours and private, or sockets could be hijacked.
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let meta = std::fs::metadata(parent)?;
            let me = std::fs::metadata("/proc/self")?.uid();
            if meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} is not a private directory of this user", parent.display()),
                ));
            }
        }
        if control.exists() {
            std::fs::remove_dir_all(&control)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&control)?;
        private_file(&root.join("callback_plugins/sentinel_jsonl.py"), CALLBACK_PLUGIN.as_bytes())?;
        private_file(&root.join("ansible.cfg"), b"[defaults]\n")?;
        Ok(Self { root, control })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn inventory(&self) -> PathBuf {
        self.root.join("hosts.ini")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
    pub fn control_dir(&self) -> PathBuf {
        self.control.clone()
    }

    /// Writes the inventory and `known_hosts`; `python` is `ansible_python_interpreter`.
    pub fn write_inventory(&self, hosts: &[InventoryHost], python: &str) -> std::io::Result<()> {
        let mut ini = String::from("[all]\n");
        let mut known = String::new();
        for h in hosts {
            let checking = if h.accept_new && h.host_keys.is_empty() { "accept-new" } else { "yes" };
            ini.push_str(&format!(
                "{} ansible_host={} ansible_port={} ansible_user={} ansible_python_interpreter={} \
                 ansible_ssh_extra_args='-o StrictHostKeyChecking={checking}'\n",
                h.alias, h.ip, h.port, h.user, python
            ));
            for key in &h.host_keys {
                known.push_str(&format!("{} {key}\n", known_hosts_pattern(&h.ip, h.port)));
            }
        }
        private_file(&self.inventory(), ini.as_bytes())?;
        private_file(&self.known_hosts(), known.as_bytes())
    }

    /// The host keys ssh added to `known_hosts` on first contact (`accept-new`), for `ip:port`.
    pub fn learned_host_keys(&self, ip: &str, port: u16) -> Vec<String> {
        let pattern = known_hosts_pattern(ip, port);
        let Ok(text) = std::fs::read_to_string(self.known_hosts()) else { return Vec::new() };
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(p, _)| p.split(',').any(|x| x == pattern))
            .map(|(_, key)| key.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// Deletes the directory and everything in it.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_values_are_never_templated() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = RunDir::create(tmp.path(), "run1").expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        let vars =
            serde_json::json!({"app": "{{ lookup('pipe', 'id') }}", "port": 8080, "list": ["a\"b"], "m": {"k": "v"}});
        let text = extra_vars_yaml(vars.as_object().expect("object"));
        assert!(text.contains("\"app\": !unsafe \"{{ lookup('pipe', 'id') }}\""), "{text}");
        assert!(text.contains("\"list\": [!unsafe \"a\\\"b\"]"), "{text}");
        assert!(text.contains("\"port\": 8080"), "{text}");
        let host = InventoryHost {
            alias: "web-1".into(),
            ip: "127.0.0.2".into(),
            port: 2222,
            user: "root".into(),
            host_keys: vec!["ssh-ed25519 AAAAC3Nza".into()],
            accept_new: false,
        };
        dir.write_inventory(&[host], "/usr/bin/python3").expect("inventory");
        let known = std::fs::read_to_string(dir.known_hosts()).expect("known_hosts");
        assert_eq!(known, "[127.0.0.2]:2222 ssh-ed25519 AAAAC3Nza\n");
        assert_eq!(dir.learned_host_keys("127.0.0.2", 2222), vec!["ssh-ed25519 AAAAC3Nza".to_owned()]);
        let root = dir.path().to_owned();
        dir.remove();
        assert!(!root.exists());
    }
}
