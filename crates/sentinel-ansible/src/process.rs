//! Starting ansible-playbook and its ssh-agent safely, and making sure nothing of a run survives it:
//! a cleared, explicit environment; an own process group; death with the worker (`setpriv
//! --pdeathsig`); the worker as child subreaper, so forks that `setsid` (ansible ≥ 2.19 does) are
//! still its descendants; and a sweep that finds every process of a run by its marker variable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::rundir::RunDir;

/// The variable that marks every process of a run (inherited through forks and `setsid`).
pub const RUN_MARKER: &str = "SENTINEL_PROVISION_RUN";
/// The variable that names the worker's work directory, so a restarted worker finds what its
/// predecessor left running (and only that).
pub const OWNER_MARKER: &str = "SENTINEL_PROVISION_OWNER";

/// Makes this process the reaper of its orphaned descendants. Called once by the provision worker.
pub fn become_subreaper() -> bool {
    nix::sys::prctl::set_child_subreaper(true).is_ok()
}

/// An executable by path, or looked up in this process's PATH.
pub fn find_executable(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn setpriv() -> Option<PathBuf> {
    find_executable(Path::new("setpriv"))
        .or_else(|| Path::new("/usr/bin/setpriv").is_file().then(|| "/usr/bin/setpriv".into()))
}

/// A command in its own process group with a cleared environment, dying with the worker.
fn guarded(program: &Path, markers: &[(&str, String)]) -> Command {
    let mut cmd = match setpriv() {
        Some(sp) => {
            let mut c = Command::new(sp);
            c.arg("--pdeathsig").arg("TERM").arg("--").arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.env_clear().process_group(0).kill_on_drop(true).stdin(Stdio::null());
    for (k, v) in markers {
        cmd.env(k, v);
    }
    cmd
}

/// The PATH children get: the ansible executable's own directory first (its virtualenv), then the system's.
fn child_path(ansible_playbook: &Path) -> String {
    let own = ansible_playbook.parent().map(|p| p.display().to_string()).unwrap_or_default();
    format!("{own}:/usr/local/bin:/usr/bin:/bin")
}

/// What one ansible-playbook launch needs.
pub struct Launch<'a> {
    pub ansible_playbook: &'a Path,
    pub playbook: &'a Path,
    pub dir: &'a RunDir,
    /// `-e @<path>` (an in-memory file).
    pub extra_vars: Option<PathBuf>,
    pub check: bool,
    pub forks: u32,
    pub markers: &'a [(&'a str, String)],
}

/// The ansible-playbook command of a run (stdout and stderr piped).
pub fn ansible_command(l: &Launch<'_>) -> Command {
    let dir = l.dir.path();
    let mut cmd = guarded(l.ansible_playbook, l.markers);
    cmd.arg("-i").arg(l.dir.inventory()).arg("--forks").arg(l.forks.to_string());
    if let Some(vars) = &l.extra_vars {
        cmd.arg("-e").arg(format!("@{}", vars.display()));
    }
    if l.check {
        cmd.arg("--check").arg("--diff");
    }
    cmd.arg(l.playbook);
    let ssh_args = format!(
        "-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o HashKnownHosts=no \
         -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=2",
        l.dir.known_hosts().display()
    );
    cmd.current_dir(dir)
        .env("PATH", child_path(l.ansible_playbook))
        .env("HOME", dir.join("home"))
        .env("LANG", "C.UTF-8")
        .env("PYTHONUNBUFFERED", "1")
        .env("SSH_AUTH_SOCK", l.dir.agent_socket())
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_HOME", dir.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", l.dir.control_dir())
        .env("ANSIBLE_SSH_ARGS", ssh_args)
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env("ANSIBLE_STDOUT_CALLBACK", "sentinel_jsonl")
        .env("ANSIBLE_CALLBACK_PLUGINS", dir.join("callback_plugins"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        // No pipelining: modules then run under a remote tty (`ssh -tt`), so a cancelled run's remote
        // commands get SIGHUP when its connection closes instead of running on.
        .env("ANSIBLE_PIPELINING", "False")
        .env("ANSIBLE_TIMEOUT", "10")
        .env("ANSIBLE_DISPLAY_ARGS_TO_STDOUT", "False")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `ansible-playbook --version`: the ansible-core version (`2.19.14`).
pub async fn ansible_version(ansible_playbook: &Path) -> Result<String, String> {
    let mut cmd = Command::new(ansible_playbook);
    cmd.arg("--version").env_clear().env("PATH", child_path(ansible_playbook)).env("LANG", "C.UTF-8");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| "`ansible-playbook --version` did not answer within 30 s".to_owned())?
        .map_err(|e| format!("cannot run {}: {e}", ansible_playbook.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .next()
        .and_then(|l| l.split("core ").nth(1))
        .map(|v| v.trim_end_matches(']').trim().to_owned())
        .ok_or_else(|| {
            format!("unexpected `ansible-playbook --version` output: {}", text.lines().next().unwrap_or(""))
        })?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 19) {
        return Err(format!(
            "ansible-core {version} is too old: Sentinel needs 2.19 or newer (pip install 'ansible-core>=2.19')"
        ));
    }
    Ok(version)
}

/// A run's own ssh-agent, holding its keys; killed with the run.
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts `ssh-agent -D -a <run dir>/agent.sock` and loads each key through `ssh-add -`'s stdin,
    /// so no key is ever written to disk.
    pub async fn start(dir: &RunDir, keys: &[&[u8]], markers: &[(&str, String)]) -> Result<Self, String> {
        let agent_bin = find_executable(Path::new("ssh-agent"))
            .ok_or("ssh-agent is not installed (apt-get install openssh-client)")?;
        let add_bin =
            find_executable(Path::new("ssh-add")).ok_or("ssh-add is not installed (apt-get install openssh-client)")?;
        let socket = dir.agent_socket();
        let mut cmd = guarded(&agent_bin, markers);
        cmd.arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("cannot start ssh-agent: {e}"))?;
        let agent = Self { child };
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for key in keys {
            let mut add = guarded(&add_bin, markers);
            add.arg("-q")
                .arg("-")
                .env("SSH_AUTH_SOCK", &socket)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = add.spawn().map_err(|e| format!("cannot start ssh-add: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(key).await.map_err(|e| format!("ssh-add: {e}"))?;
            }
            let out = child.wait_with_output().await.map_err(|e| format!("ssh-add: {e}"))?;
            if !out.status.success() {
                return Err(format!("ssh-add refused a key: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        Ok(agent)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Sends `signal` to the process group `pgid`.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pgid) {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid), signal);
    }
}

/// Every live process whose environment holds `key=value`.
pub fn marked_processes(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// Closes the run's SSH control masters (`ssh -O exit`), then kills every process still marked
/// with the run and reaps the ones this worker adopted. Returns how many processes it killed.
pub async fn sweep(control_dir: &Path, key: &str, value: &str) -> usize {
    if let Ok(entries) = std::fs::read_dir(control_dir) {
        let mut exits = tokio::task::JoinSet::new();
        for socket in entries.flatten() {
            let mut exit = Command::new("ssh");
            exit.env_clear()
                .arg("-o")
                .arg(format!("ControlPath={}", socket.path().display()))
                .arg("-O")
                .arg("exit")
                .arg("sentinel-control-master")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            exits.spawn(async move { tokio::time::timeout(Duration::from_secs(5), exit.status()).await });
        }
        while exits.join_next().await.is_some() {}
    }
    let mut killed = 0;
    for round in 0..3 {
        let pids = marked_processes(key, value);
        if pids.is_empty() {
            break;
        }
        let signal = if round == 0 { Signal::SIGTERM } else { Signal::SIGKILL };
        for pid in &pids {
            if kill(Pid::from_raw(*pid), signal).is_ok() && round == 0 {
                killed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        reap(&pids);
    }
    reap(&exited_ssh_children());
    killed
}

/// This process's exited `ssh` children: control masters adopted from a run that exited by
/// themselves (their environment is gone once they are zombies, so the marker cannot find them).
/// The worker's own `ssh` children (`ssh -O exit`) are always awaited, so none of them is here.
fn exited_ssh_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let Some((head, rest)) = stat.rsplit_once(')') else { return false };
            let mut fields = rest.split_whitespace();
            let (state, parent) = (fields.next(), fields.next());
            head.ends_with("(ssh") && state == Some("Z") && parent == Some(me.as_str())
        })
        .collect()
}

/// Reaps those of `pids` that are this process's (adopted) children and have exited.
fn reap(pids: &[i32]) {
    let me = std::process::id().to_string();
    for pid in pids {
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().nth(1).unwrap_or("").to_owned()));
        if parent.as_deref() == Some(me.as_str()) {
            let _ = waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}
