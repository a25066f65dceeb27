//! Running a subprocess for a job (ansible-playbook, pg_dump, …): its output lines go to the job log,
//! and a cancel (or lost lease) stops its whole process group — SIGTERM, then SIGKILL after the grace
//! period — so no grandchild outlives the job.

use std::process::Stdio;

use sentinel_domain::LogStream;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::{JobContext, JobError};

/// How a subprocess ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
}

fn signal_group(pgid: u32, signal: &str) {
    // `kill -<SIG> -- -<pgid>` signals the whole group; a std::process call keeps this crate free of
    // unsafe code.
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl JobContext {
    /// Runs `command` in its own process group, streaming stdout and stderr into the job log. Returns
    /// `JobError::Cancelled` if the job was cancelled (after the group was stopped).
    pub async fn run_command(&self, mut command: Command) -> Result<CommandOutcome, JobError> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| JobError::Permanent(format!("cannot start the command: {e}")))?;
        let pgid = child.id().unwrap_or(0);
        self.log(LogStream::System, format!("started process group {pgid}")).await?;
        let (mut out, mut err) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (BufReader::new(o).lines(), BufReader::new(e).lines()),
            _ => return Err(JobError::Permanent("the command's output is not readable".to_owned())),
        };
        let (mut out_open, mut err_open) = (true, true);
        let grace = self.spine.settings().worker.cancel_grace();
        loop {
            tokio::select! {
                line = out.next_line(), if out_open => match line {
                    Ok(Some(l)) => self.log(LogStream::Stdout, l).await?,
                    _ => out_open = false,
                },
                line = err.next_line(), if err_open => match line {
                    Ok(Some(l)) => self.log(LogStream::Stderr, l).await?,
                    _ => err_open = false,
                },
                status = child.wait(), if !out_open && !err_open => {
                    let status = status.map_err(|e| JobError::Retryable(format!("waiting for the command: {e}")))?;
                    return Ok(CommandOutcome { code: status.code() });
                }
                _ = self.cancelled() => {
                    signal_group(pgid, "-TERM");
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        signal_group(pgid, "-KILL");
                        let _ = child.wait().await;
                    }
                    // Grandchildren that ignored SIGTERM while the leader exited still get SIGKILL.
                    signal_group(pgid, "-KILL");
                    let _ = self.log(LogStream::System, format!("process group {pgid} stopped after cancel")).await;
                    return Err(JobError::Cancelled);
                }
            }
        }
    }
}
