//! A private PostgreSQL cluster for outage tests: `initdb` into a temporary directory, a server on its
//! own loopback port, and `stop`/`start` so a test can take the database away under running services.
//! Needs the server binaries (Debian's `postgresql` package); as root they run as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A PostgreSQL server of the test's own, stopped (immediately) on drop.
pub struct PostgresServer {
    pub port: u16,
    bin: PathBuf,
    /// Holds `data/` (the cluster) and `server.log`; owned by the server's user.
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Creates a cluster (trust authentication, no fsync: a test database need not survive a power
    /// cut, only a server stop) and starts it.
    pub fn start() -> anyhow::Result<Self> {
        let bin = server_bin_dir()?;
        let dir = tempfile::tempdir()?;
        if is_root() {
            run_checked(Command::new("chown").arg("postgres:postgres").arg(dir.path()))?;
        }
        let server = Self { port: free_port(), bin, dir };
        let mut initdb = server.as_server_user(&server.bin.join("initdb"));
        initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"]).arg(server.data());
        run_checked(&mut initdb)?;
        server.resume()?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server again after [`PostgresServer::stop`] (same port, same data).
    pub fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut start = self.as_server_user(&self.bin.join("pg_ctl"));
        start.args(["start", "-w", "-t", "30", "-D"]).arg(self.data()).arg("-l").arg(self.log()).arg("-o").arg(options);
        // The server inherits pg_ctl's output handles: capture nothing, so waiting for pg_ctl does not
        // wait for the server (its messages go to the log).
        let status = start.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        anyhow::ensure!(status.success(), "pg_ctl start failed:\n{}", self.log_text());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "postgres did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: clients are disconnected, nothing committed is lost).
    pub fn stop(&self) -> anyhow::Result<()> {
        let mut stop = self.as_server_user(&self.bin.join("pg_ctl"));
        stop.args(["stop", "-w", "-m", "fast", "-D"]).arg(self.data());
        run_checked(&mut stop)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn as_server_user(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let mut stop = self.as_server_user(&self.bin.join("pg_ctl"));
        stop.args(["stop", "-m", "immediate", "-D"]).arg(self.data()).stdout(Stdio::null()).stderr(Stdio::null());
        let _ = stop.status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The newest installed server's binaries (Debian keeps them out of PATH, per major version).
fn server_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let found = Command::new("sh").args(["-c", "command -v initdb"]).output()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    anyhow::ensure!(!path.is_empty(), "PostgreSQL server binaries not found (install Debian's postgresql package)");
    Ok(PathBuf::from(path).parent().map(Path::to_path_buf).unwrap_or_default())
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
