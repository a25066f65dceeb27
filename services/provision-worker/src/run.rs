//! `provision.run`: one provisioning run — wait (FIFO) for the leases of all its servers, run the
//! allow-listed playbook with ansible-playbook, stream its output, and end the run with its outcome
//! written back to the inventory in one transaction. Cancel and timeout stop every process of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sentinel_ansible::process::{self, Agent, Launch, OWNER_MARKER, RUN_MARKER, Signal};
use sentinel_ansible::{Installation, InventoryHost, PlaybookRegistry, RunDir, SecretFile};
use sentinel_jobs::db::DbError;
use sentinel_jobs::db::provisioning::{HostOutcome, LeaseAttempt, RunOutcome, RunRecord};
use sentinel_jobs::domain::LogStream;
use sentinel_jobs::domain::provisioning::{HostErrorReason, HostStatus, RunState, Scrubber};
use sentinel_jobs::{JobContext, JobError, JobHandler};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::output::{Observed, Pending, event_of};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunPayload {
    run_id: Uuid,
}

/// The `provision.run` handler.
pub struct RunPlaybook {
    pub registry: PlaybookRegistry,
    pub installation: Installation,
    /// ansible-core's version, asked once per executable (`--version` costs a Python start-up),
    /// again when the executable changes (its modification time).
    version: tokio::sync::Mutex<Option<(std::time::SystemTime, String)>>,
}

/// How the ansible process ended.
enum Ended {
    Exited(Option<i32>),
    Cancelled,
    TimedOut,
}

impl RunPlaybook {
    pub fn new(spine: &sentinel_jobs::Spine) -> Arc<Self> {
        let s = &spine.settings().provision;
        Arc::new(Self {
            registry: PlaybookRegistry::new(s.playbook_dirs.clone()),
            installation: Installation::from_settings(s),
            version: tokio::sync::Mutex::new(None),
        })
    }

    async fn ansible_version(&self, ansible: &std::path::Path) -> Result<String, String> {
        let modified =
            std::fs::metadata(ansible).and_then(|m| m.modified()).map_err(|e| format!("{}: {e}", ansible.display()))?;
        let mut cached = self.version.lock().await;
        if let Some((at, v)) = cached.as_ref()
            && *at == modified
        {
            return Ok(v.clone());
        }
        let v = process::ansible_version(ansible).await?;
        *cached = Some((modified, v.clone()));
        Ok(v)
    }

    /// Ends the run (fenced by this attempt) and returns what the job reports.
    async fn end(ctx: &JobContext, run: &RunRecord, outcome: RunOutcome) -> Result<Value, JobError> {
        let store = ctx.spine().db().provisioning();
        let ended = store.finish(run, ctx.job().epoch, &outcome).await?;
        let summary = json!({
            "run_id": run.id,
            "state": ended.state,
            "reason": ended.reason,
            "hosts": ended.hosts.iter().map(|h| json!({"host": h.host, "status": h.status, "reason": h.reason, "counts": h.counts})).collect::<Vec<_>>(),
        });
        match ended.state {
            RunState::Succeeded => Ok(summary),
            RunState::Cancelled => Err(JobError::Cancelled),
            _ => Err(JobError::Permanent(ended.reason.unwrap_or_else(|| "the run failed".to_owned()))),
        }
    }

    fn all_hosts(run: &RunRecord, status: HostStatus, reason: HostErrorReason) -> Vec<HostOutcome> {
        run.hosts
            .iter()
            .map(|h| HostOutcome {
                server_id: h.server_id,
                status,
                reason: Some(reason),
                counts: None,
                diff: None,
                pinned_host_keys: Vec::new(),
            })
            .collect()
    }

    async fn fail(ctx: &JobContext, run: &RunRecord, reason: String) -> Result<Value, JobError> {
        let _ = ctx.log(LogStream::System, format!("run failed: {reason}")).await;
        let hosts = if run.state == RunState::Running || run.started_at.is_some() {
            Self::all_hosts(run, HostStatus::NotRun, HostErrorReason::Failed)
        } else {
            Vec::new()
        };
        Self::end(ctx, run, RunOutcome { state: RunState::Failed, reason: Some(reason), hosts }).await
    }

    /// Waits, in FIFO order, until every server of the run is leased to this attempt.
    async fn take_leases(&self, ctx: &JobContext, run: &RunRecord) -> Result<Option<Value>, JobError> {
        let store = ctx.spine().db().provisioning();
        let holder = format!("run {} ({})", run.id, run.requested_by);
        let mut last: Option<(u32, Option<String>)> = None;
        loop {
            match store.take_leases(run, ctx.job().epoch, &holder).await {
                Ok(LeaseAttempt::Taken) => return Ok(None),
                Ok(LeaseAttempt::Waiting { position, blocked_by }) => {
                    let now = Some((position, blocked_by.clone()));
                    if last != now {
                        let why = blocked_by.unwrap_or_else(|| format!("{position} earlier run(s) share a server"));
                        ctx.log(LogStream::System, format!("waiting for the servers' leases: {why}")).await?;
                        last = now;
                    }
                }
                Err(DbError::Conflict(reason)) => return Self::fail(ctx, run, reason).await.map(Some),
                Err(e) if e.is_unavailable() => {}
                Err(e) => return Err(e.into()),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = ctx.cancelled() => {
                    let outcome = RunOutcome { state: RunState::Cancelled, reason: Some("cancelled while waiting for its servers".into()), hosts: Vec::new() };
                    return Self::end(ctx, run, outcome).await.map(Some);
                }
            }
        }
    }
}

#[async_trait]
impl JobHandler for RunPlaybook {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let RunPayload { run_id } = ctx.payload()?;
        let store = ctx.spine().db().provisioning();
        let run =
            store.get_any(run_id).await?.ok_or_else(|| JobError::permanent(format!("run {run_id} does not exist")))?;
        if run.state.is_terminal() {
            return Ok(json!({ "run_id": run.id, "state": run.state }));
        }
        let markers = markers(ctx, run.id);
        if run.state == RunState::Running {
            // An earlier attempt started ansible and died with its worker: whatever it left is stopped,
            // and the run is not silently run again (the hosts may be half-configured).
            let control = sentinel_ansible::rundir::control_dir_for(&run_dir_name(run.id));
            process::sweep(&control, RUN_MARKER, &run.id.to_string()).await;
            let _ = std::fs::remove_dir_all(control);
            let outcome = RunOutcome {
                state: RunState::Failed,
                reason: Some("interrupted: the worker running it stopped".to_owned()),
                hosts: Self::all_hosts(&run, HostStatus::NotRun, HostErrorReason::Interrupted),
            };
            return Self::end(ctx, &run, outcome).await;
        }
        let Some(ansible) = self.installation.ansible_playbook.clone() else {
            return Self::fail(ctx, &run, self.installation.missing_message()).await;
        };
        let playbook = match self.registry.resolve(&run.playbook) {
            Ok(p) if p.hash == run.playbook_hash => p,
            Ok(_) => {
                return Self::fail(
                    ctx,
                    &run,
                    format!("playbook {} changed after the run was created; start a new run", run.playbook),
                )
                .await;
            }
            Err(e) => return Self::fail(ctx, &run, e.to_string()).await,
        };
        let version = match self.ansible_version(&ansible).await {
            Ok(v) => v,
            Err(e) => return Self::fail(ctx, &run, e).await,
        };
        store.set_ansible_version(run.id, &version).await?;
        if let Some(done) = self.take_leases(ctx, &run).await? {
            return Ok(done);
        }
        let run = store.get_any(run.id).await?.unwrap_or(run);
        ctx.log(
            LogStream::System,
            format!(
                "running {} ({}) with ansible-core {version} on {} host(s)",
                run.playbook,
                &run.playbook_hash[..12],
                run.inventory.len()
            ),
        )
        .await?;
        let prepared = match prepare(ctx, &run).await {
            Ok(p) => p,
            Err(reason) => return Self::fail(ctx, &run, reason).await,
        };
        let dir = match RunDir::create(&work_dir(ctx), &run_dir_name(run.id)) {
            Ok(d) => d,
            Err(e) => return Self::fail(ctx, &run, format!("cannot create the run's directory: {e}")).await,
        };
        let result = execute(ctx, &run, &dir, &ansible, &playbook.path, prepared, &markers).await;
        let learned: BTreeMap<Uuid, Vec<String>> = run
            .inventory
            .iter()
            .filter(|h| h.accept_new_host_key && h.host_keys.is_empty())
            .map(|h| (h.server_id, dir.learned_host_keys(&h.ip, h.ssh_port)))
            .collect();
        process::sweep(&dir.control_dir(), RUN_MARKER, &run.id.to_string()).await;
        dir.remove();
        let (ended, seen) = result?;
        Self::end(ctx, &run, outcome_of(&run, ended, seen, learned)).await
    }
}

/// What a run needs besides its directory: extra variables, keys, and the secrets to scrub.
struct Prepared {
    vars: serde_json::Map<String, Value>,
    keys: Vec<zeroize::Zeroizing<String>>,
    scrubber: Scrubber,
}

async fn prepare(ctx: &JobContext, run: &RunRecord) -> Result<Prepared, String> {
    let spine = ctx.spine();
    let vault = spine.vault().map_err(|e| e.to_string())?;
    let mut secrets: Vec<zeroize::Zeroizing<String>> = Vec::new();
    let mut vars = serde_json::Map::new();
    if let (Some(id), Some(version)) = (run.config_id, run.config_version) {
        let rec = spine.db().configs().version(run.org_id, id, version).await.map_err(|e| e.to_string())?;
        let rec = rec.ok_or_else(|| format!("config {id} version {version} no longer exists"))?;
        let (payload, opened) = vault.resolve_payload(&rec.payload).await.map_err(|e| e.to_string())?;
        secrets.extend(opened);
        vars.extend(payload.as_object().cloned().unwrap_or_default());
    }
    let (own, opened) = vault.resolve_payload(&run.extra_vars).await.map_err(|e| e.to_string())?;
    secrets.extend(opened);
    vars.extend(own.as_object().cloned().unwrap_or_default());
    let creds = spine.db().credentials();
    let mut keys = Vec::new();
    let mut ids: Vec<Option<Uuid>> = run.inventory.iter().map(|h| h.ssh_credential_id).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let cred = match id {
            Some(id) => creds.get(run.org_id, id).await.map_err(|e| e.to_string())?,
            None => creds.default_of(run.org_id).await.map_err(|e| e.to_string())?,
        };
        let Some(cred) = cred else {
            return Err(match id {
                Some(id) => format!("SSH key {id} no longer exists"),
                None => "a server names no SSH key and the organization has no default one".to_owned(),
            });
        };
        let key = vault.open(cred.secret_id).await.map_err(|e| e.to_string())?;
        let key = zeroize::Zeroizing::new(String::from_utf8_lossy(&key).into_owned());
        secrets.push(key.clone());
        keys.push(key);
    }
    let scrubber = Scrubber::new(secrets.iter().map(|s| s.as_str()));
    Ok(Prepared { vars, keys, scrubber })
}

/// Runs ansible-playbook to its end, a cancel, or the timeout, streaming its output.
async fn execute(
    ctx: &JobContext,
    run: &RunRecord,
    dir: &RunDir,
    ansible: &std::path::Path,
    playbook: &std::path::Path,
    prepared: Prepared,
    markers: &[(&str, String)],
) -> Result<(Ended, Observed), JobError> {
    let settings = &ctx.spine().settings().provision;
    let hosts: Vec<InventoryHost> = run
        .inventory
        .iter()
        .map(|h| InventoryHost {
            alias: h.host.clone(),
            ip: h.ip.clone(),
            port: h.ssh_port,
            user: h.ssh_user.clone(),
            host_keys: h.host_keys.clone(),
            accept_new: h.accept_new_host_key,
        })
        .collect();
    let io = |e: std::io::Error| JobError::Retryable(format!("writing the run's files: {e}"));
    dir.write_inventory(&hosts, &settings.python_interpreter).map_err(io)?;
    let vars_file = if prepared.vars.is_empty() {
        None
    } else {
        let yaml = sentinel_ansible::rundir::extra_vars_yaml(&prepared.vars);
        let ram = std::path::Path::new(sentinel_ansible::secret_file::RAM_DIR);
        let file = SecretFile::new(ram, &run_dir_name(run.id), "extra_vars.yml", yaml.as_bytes())
            .map_err(|e| JobError::Permanent(format!("cannot hand the extra variables to ansible: {e}")))?;
        Some(file)
    };
    let keys: Vec<&[u8]> = prepared.keys.iter().map(|k| k.as_bytes()).collect();
    let agent = Agent::start(dir, &keys, markers).await.map_err(JobError::Permanent)?;
    let launch = Launch {
        ansible_playbook: ansible,
        playbook,
        dir,
        extra_vars: vars_file.as_ref().map(|f| f.path().to_owned()),
        check: run.check_mode,
        forks: settings.forks.min(u32::try_from(run.inventory.len()).unwrap_or(u32::MAX)).max(1),
        markers,
    };
    let mut child = process::ansible_command(&launch)
        .spawn()
        .map_err(|e| JobError::Permanent(format!("cannot start ansible-playbook: {e}")))?;
    let pgid = child.id().unwrap_or(0);
    ctx.log(LogStream::System, format!("started ansible-playbook (process group {pgid})")).await?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(JobError::Permanent("ansible-playbook's output is not readable".to_owned()));
    };
    let (mut out, mut err) = (BufReader::new(out).lines(), BufReader::new(err).lines());
    let (mut out_open, mut err_open) = (true, true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(run.timeout_secs);
    let mut seen = Observed::default();
    let scrub = &prepared.scrubber;
    let mut vars_file = vars_file;
    let mut pending = Pending::default();
    let ended = loop {
        if pending.is_full() || (!pending.is_empty() && tokio::time::Instant::now() >= pending.deadline()) {
            pending.flush(ctx).await?;
        }
        tokio::select! {
            // Output first: it is batched, and written once it stops coming or the batch is due.
            biased;
            line = out.next_line(), if out_open => match line {
                Ok(Some(l)) => {
                    if let Some(ev) = event_of(scrub, LogStream::Stdout, &l, &mut seen) {
                        pending.push(ev);
                    }
                    if seen.plays > 0 {
                        // ansible loaded the variables before its first play: they leave the RAM disk now.
                        vars_file = None;
                    }
                }
                _ => out_open = false,
            },
            line = err.next_line(), if err_open => match line {
                Ok(Some(l)) => {
                    if let Some(ev) = event_of(scrub, LogStream::Stderr, &l, &mut seen) {
                        pending.push(ev);
                    }
                }
                _ => err_open = false,
            },
            _ = tokio::time::sleep_until(pending.deadline()), if !pending.is_empty() => pending.flush(ctx).await?,
            status = child.wait(), if !out_open && !err_open => {
                break Ended::Exited(status.ok().and_then(|s| s.code()));
            }
            _ = ctx.cancelled() => break Ended::Cancelled,
            _ = tokio::time::sleep_until(deadline) => break Ended::TimedOut,
        }
    };
    pending.flush(ctx).await?;
    if matches!(ended, Ended::Cancelled | Ended::TimedOut) {
        let what = if matches!(ended, Ended::Cancelled) { "cancelled" } else { "timed out" };
        let _ = ctx.log(LogStream::System, format!("run {what}: stopping process group {pgid}")).await;
        process::signal_group(pgid, Signal::SIGTERM);
        let grace = ctx.spine().settings().worker.cancel_grace();
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            process::signal_group(pgid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        process::signal_group(pgid, Signal::SIGKILL);
    }
    agent.stop().await;
    drop(vars_file);
    Ok((ended, seen))
}

/// The run's outcome from what ansible reported (never from its exit code alone).
fn outcome_of(run: &RunRecord, ended: Ended, seen: Observed, learned: BTreeMap<Uuid, Vec<String>>) -> RunOutcome {
    let stats = seen.stats.unwrap_or_default();
    let mut hosts = Vec::with_capacity(run.hosts.len());
    let (mut failed, mut unreachable) = (0, 0);
    for h in &run.hosts {
        let counts = stats.get(&h.host).copied();
        let (status, reason) = match (&ended, counts) {
            (_, Some(c)) => {
                let status = c.status();
                let reason = match status {
                    HostStatus::Unreachable => {
                        Some(seen.unreachable.get(&h.host).copied().unwrap_or(HostErrorReason::Unreachable))
                    }
                    HostStatus::Failed => Some(HostErrorReason::Failed),
                    _ => None,
                };
                (status, reason)
            }
            (Ended::Cancelled, None) => (HostStatus::NotRun, Some(HostErrorReason::Cancelled)),
            (Ended::TimedOut, None) => match seen.unreachable.get(&h.host) {
                Some(r) => (HostStatus::Unreachable, Some(*r)),
                None if seen.failed.contains_key(&h.host) => (HostStatus::Failed, Some(HostErrorReason::Failed)),
                None => (HostStatus::NotRun, Some(HostErrorReason::Timeout)),
            },
            (Ended::Exited(_), None) => (HostStatus::NotRun, Some(HostErrorReason::Failed)),
        };
        match status {
            HostStatus::Failed | HostStatus::NotRun => failed += 1,
            HostStatus::Unreachable => unreachable += 1,
            _ => {}
        }
        hosts.push(HostOutcome {
            server_id: h.server_id,
            status,
            reason,
            counts,
            diff: seen.diffs.get(&h.host).cloned(),
            pinned_host_keys: learned.get(&h.server_id).cloned().unwrap_or_default(),
        });
    }
    let (state, reason) = match ended {
        Ended::Cancelled => (RunState::Cancelled, Some("cancelled".to_owned())),
        Ended::TimedOut => (RunState::Failed, Some(format!("timeout: the run exceeded {} s", run.timeout_secs))),
        Ended::Exited(code) if stats.is_empty() => (
            RunState::Failed,
            Some(format!("ansible-playbook exited with code {code:?} before its recap (see the log)")),
        ),
        Ended::Exited(_) if failed + unreachable > 0 => {
            (RunState::Failed, Some(format!("{failed} host(s) failed, {unreachable} unreachable")))
        }
        Ended::Exited(_) => (RunState::Succeeded, None),
    };
    RunOutcome { state, reason, hosts }
}

fn work_dir(ctx: &JobContext) -> std::path::PathBuf {
    let s = ctx.spine().settings();
    s.provision.work_dir(&s.data_dir)
}

/// The name of a run's directory (and, shortened, of its control-socket directory).
fn run_dir_name(run: Uuid) -> String {
    run.simple().to_string()
}

fn markers(ctx: &JobContext, run: Uuid) -> Vec<(&'static str, String)> {
    vec![(RUN_MARKER, run.to_string()), (OWNER_MARKER, work_dir(ctx).display().to_string())]
}
