//! Fake servers for provisioning tests: real `sshd` processes on loopback addresses (each with its own
//! host key, children of the test, never daemonized), an address where nothing listens, a TCP
//! listener that accepts and never answers, and the pinned ansible-playbook to drive them.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A key pair made by `ssh-keygen` (ed25519, no passphrase).
pub struct KeyPair {
    pub private: String,
    /// `ssh-ed25519 AAAA…` (no comment).
    pub public: String,
}

/// Generates a key pair under `dir` (files `name` and `name.pub`).
pub fn keygen(dir: &Path, name: &str) -> anyhow::Result<KeyPair> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .context("ssh-keygen")?;
    anyhow::ensure!(status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(format!("{}.pub", path.display()))?;
    Ok(KeyPair {
        private: std::fs::read_to_string(&path)?,
        public: public.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
    })
}

/// The loopback address `127.77.<a>.<b>` for test host `n` of this process (unique per process).
pub fn loopback_ip(n: u16) -> String {
    let base = (std::process::id() % 200) as u16;
    format!("127.{}.{}.{}", 20 + base % 200, n / 250 % 250, 2 + n % 250)
}

/// One sshd on `ip:port`, accepting `authorized_key` for the current user.
pub struct SshHost {
    pub ip: String,
    pub port: u16,
    /// The host's public key, `ssh-ed25519 AAAA…`.
    pub host_key: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl SshHost {
    /// Starts sshd (a child of this process, `-D`) with its own key files under `dir`.
    pub fn start(ip: &str, dir: &Path, authorized_key: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = crate::free_port();
        std::fs::write(dir.join("authorized_keys"), format!("{authorized_key}\n"))?;
        let mut host = Self { ip: ip.to_owned(), port, host_key: String::new(), dir: dir.to_owned(), child: None };
        host.host_key = keygen(dir, "host_key")?.public;
        host.spawn()?;
        Ok(host)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.canonicalize()?;
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {}:{}\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nMaxStartups 100\n",
                self.ip,
                self.port,
                dir.join("host_key").display(),
                dir.join("authorized_keys").display()
            ),
        )?;
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(dir.join("sshd.log"))?;
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting /usr/sbin/sshd (apt-get install openssh-server)")?;
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect((self.ip.as_str(), self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        anyhow::bail!("sshd on {}:{} did not start: {}", self.ip, self.port, self.log())
    }

    /// Restarts the host with a new host key (what a reinstalled or impersonated host looks like).
    pub fn swap_host_key(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.host_key = keygen(&self.dir, "host_key")?.public;
        self.spawn()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP listener that accepts connections and never answers (a hung host).
pub struct Blackhole {
    pub ip: String,
    pub port: u16,
}

impl Blackhole {
    pub fn start(ip: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((ip, 0))?;
        let port = listener.local_addr()?.port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                // Read and hold: the peer waits for a banner that never comes.
                let mut buf = [0u8; 64];
                let _ = stream.set_nonblocking(true);
                let _ = stream.read(&mut buf);
                held.push(stream);
            }
        });
        Ok(Self { ip: ip.to_owned(), port })
    }
}

/// The ansible-playbook the tests run: `SENTINEL_TEST_ANSIBLE_PLAYBOOK`, else the virtualenv the
/// test command installs (`target/ansible-venv`).
pub fn ansible_playbook() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SENTINEL_TEST_ANSIBLE_PLAYBOOK") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root
        .join(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("ansible-venv/bin/ansible-playbook");
    anyhow::ensure!(
        venv.is_file(),
        "no ansible-playbook at {}: run scripts/test.sh (it installs ansible-core)",
        venv.display()
    );
    Ok(venv.canonicalize()?)
}

/// The login user of the fake hosts (whoever runs the tests).
pub fn current_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        let out = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        out.unwrap_or_else(|_| "root".to_owned())
    })
}
