//! Everything Sentinel knows about Ansible: the playbook allow-list, a run's private directory and
//! in-memory extra variables, launching ansible-playbook and its ssh-agent safely, and the sweep that
//! leaves no process of a run behind. The provision worker drives it; the gateway lists playbooks
//! and checks the installation through it.

pub mod playbooks;
pub mod process;
pub mod rundir;
pub mod secret_file;

pub use playbooks::{Playbook, PlaybookError, PlaybookRegistry};
pub use rundir::{InventoryHost, RunDir};
pub use secret_file::SecretFile;

use std::path::PathBuf;

use sentinel_config::ProvisionSettings;

/// The resolved ansible installation of this process.
#[derive(Debug, Clone)]
pub struct Installation {
    /// Absolute path of `ansible-playbook`, when found.
    pub ansible_playbook: Option<PathBuf>,
    /// What was configured (for messages).
    pub configured: PathBuf,
}

impl Installation {
    pub fn from_settings(s: &ProvisionSettings) -> Self {
        Self { ansible_playbook: process::find_executable(&s.ansible_playbook), configured: s.ansible_playbook.clone() }
    }

    /// The message for a missing installation: what was looked for, and how to install it.
    pub fn missing_message(&self) -> String {
        format!(
            "ansible-playbook was not found (provision.ansible_playbook = {:?}); install ansible-core 2.19 or newer, \
             e.g. `python3 -m venv /opt/ansible && /opt/ansible/bin/pip install 'ansible-core==2.19.14'`, and set \
             provision.ansible_playbook = \"/opt/ansible/bin/ansible-playbook\"",
            self.configured.display()
        )
    }
}
