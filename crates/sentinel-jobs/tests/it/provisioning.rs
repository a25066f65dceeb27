//! The provisioning store on both databases: a run's leases are all or nothing and FIFO among runs
//! sharing a server, a reservation's server is taken only by its own run, a stale attempt's lease
//! take and outcome are refused, and the outcome is written back to the servers with history rows.

use sentinel_jobs::db::inventory::{ReserveRequest, ServerDraft, ServerFilter, ServerRecord};
use sentinel_jobs::db::monitoring::AlertFilter;
use sentinel_jobs::db::provisioning::{HostOutcome, HostSnapshot, LeaseAttempt, NewRun, RunOutcome, RunRecord};
use sentinel_jobs::db::{DbError, NewJob, StartOutcome};
use sentinel_jobs::domain::inventory::ServerStatus;
use sentinel_jobs::domain::provisioning::{HostCounts, HostErrorReason, HostStatus, RunState};
use sentinel_jobs::domain::{JobId, JobKind, QueueName, RetryPolicy, provisioning};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Env, Mode};

async fn server(env: &Env, org: Uuid, n: u8) -> ServerRecord {
    let draft = ServerDraft {
        provider_ref: format!("p{n}"),
        name: format!("s{n}"),
        ip: format!("10.0.0.{n}"),
        ssh_port: 22,
        ssh_user: "root".into(),
        region: String::new(),
        labels: Default::default(),
        notes: String::new(),
        host_keys: vec![],
        accept_new_host_key: false,
        ssh_credential_id: None,
    };
    env.spine.db().inventory().create_server(org, draft, "test").await.expect("server")
}

/// A run on `servers` with its job started: returns the run and the attempt's epoch.
async fn started_run(env: &Env, org: Uuid, servers: &[&ServerRecord], reservation: Option<Uuid>) -> (RunRecord, i64) {
    let run_id = Uuid::now_v7();
    let job = NewJob {
        id: JobId::new(),
        kind: JobKind::parse(provisioning::RUN_KIND).expect("kind"),
        queue: QueueName::parse(provisioning::QUEUE).expect("queue"),
        priority: Default::default(),
        payload: json!({ "run_id": run_id }),
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        run_at: None,
        trace_context: Default::default(),
        requested_by: Some("test".into()),
        org_id: Some(org),
        dedup_key: None,
    };
    let inventory = servers
        .iter()
        .map(|s| HostSnapshot {
            server_id: s.id,
            host: s.name.clone(),
            ip: s.ip.clone(),
            ssh_port: s.ssh_port,
            ssh_user: s.ssh_user.clone(),
            host_keys: vec![],
            accept_new_host_key: false,
            ssh_credential_id: None,
        })
        .collect();
    let new = NewRun {
        id: run_id,
        org_id: org,
        playbook: "ping".into(),
        playbook_hash: "0".repeat(64),
        check_mode: false,
        config_id: None,
        config_version: None,
        extra_vars: json!({}),
        secrets: vec![],
        inventory,
        timeout_secs: 60,
        retry_of: None,
        reservation_id: reservation,
        applies_run: None,
        requested_by: "test".into(),
    };
    let (run, job, _) = env.spine.db().provisioning().create(new, job).await.expect("create run");
    let StartOutcome::Started(running, _) = env.spine.store().start(job.id, 1, false).await.expect("start") else {
        panic!("job not started")
    };
    (run, running.epoch)
}

async fn leases_are_all_or_nothing_fifo_and_fenced(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let org = env.spine.db().access().create_org(&format!("org-{}", Uuid::now_v7().simple())).await.expect("org").id;
    let (a, b, c) = (server(&env, org, 1).await, server(&env, org, 2).await, server(&env, org, 3).await);
    let store = env.spine.db().provisioning();

    let (first, e1) = started_run(&env, org, &[&a, &b], None).await;
    let (second, e2) = started_run(&env, org, &[&b, &c], None).await;
    let (disjoint, e3) = started_run(&env, org, &[&c], None).await;
    // The later run sharing `b` waits behind the first, even before the first took its leases.
    assert_eq!(
        store.take_leases(&second, e2, "t").await.expect("take"),
        LeaseAttempt::Waiting { position: 1, blocked_by: None }
    );
    assert_eq!(store.get_any(second.id).await.expect("get").expect("run").queue_position, Some(1));
    // A stale attempt cannot take leases.
    assert!(matches!(store.take_leases(&first, e1 + 1, "t").await, Err(DbError::Fenced { .. })));
    assert_eq!(store.take_leases(&first, e1, "t").await.expect("take"), LeaseAttempt::Taken);
    let held = env.spine.db().inventory().get_server(org, b.id).await.expect("get").expect("server");
    assert_eq!(held.status, ServerStatus::Provisioning);
    assert_eq!(held.lease.as_ref().map(|l| l.id), Some(first.id));
    // `c` is free and shares nothing with the first: the disjoint run (created after `second`, which
    // also wants `c`) still waits behind `second` — FIFO is per server.
    assert_eq!(
        store.take_leases(&disjoint, e3, "t").await.expect("take"),
        LeaseAttempt::Waiting { position: 1, blocked_by: None }
    );

    // The first ends: a stale outcome is refused, the real one writes the servers back.
    let outcome = RunOutcome {
        state: RunState::Failed,
        reason: Some("1 host(s) failed, 0 unreachable".into()),
        hosts: vec![
            HostOutcome {
                server_id: a.id,
                status: HostStatus::Changed,
                reason: None,
                counts: Some(HostCounts { ok: 2, changed: 1, ..Default::default() }),
                diff: None,
                pinned_host_keys: vec![],
            },
            HostOutcome {
                server_id: b.id,
                status: HostStatus::Failed,
                reason: Some(HostErrorReason::Failed),
                counts: Some(HostCounts { ok: 1, failures: 1, ..Default::default() }),
                diff: None,
                pinned_host_keys: vec![],
            },
        ],
    };
    assert!(matches!(store.finish(&first, e1 + 1, &outcome).await, Err(DbError::Fenced { .. })));
    let ended = store.finish(&first, e1, &outcome).await.expect("finish");
    assert_eq!(ended.state, RunState::Failed);
    // A failed run is an alert, on the one server that failed.
    let monitoring = env.spine.db().monitoring();
    let on_run = AlertFilter { source_id: Some(first.id), ..Default::default() };
    let alerts = monitoring.alerts(org, &on_run, None, 10).await.expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0].rule.as_str(), alerts[0].firing), ("provisioning_failed", true));
    assert_eq!(alerts[0].labels.get("server"), Some(&b.id.to_string()));
    let inv = env.spine.db().inventory();
    let (a2, b2) = (
        inv.get_server(org, a.id).await.expect("get").expect("a"),
        inv.get_server(org, b.id).await.expect("get").expect("b"),
    );
    assert_eq!((a2.status, a2.lease.is_none()), (ServerStatus::Configured, true));
    assert_eq!((b2.status, b2.status_reason.as_deref()), (ServerStatus::Error, Some("failed")));
    let history = inv.history(b.id, None, 10).await.expect("history");
    assert!(history.iter().any(|h| h.action == "run_end" && h.job_id == Some(first.job_id)), "{history:?}");
    assert!(matches!(
        store.finish(&first, e1, &outcome).await,
        Err(DbError::Fenced { .. }) | Err(DbError::Conflict(_))
    ));

    // Now the second goes, then the disjoint one waits for `c` behind it.
    assert_eq!(store.take_leases(&second, e2, "t").await.expect("take"), LeaseAttempt::Taken);
    assert!(matches!(store.take_leases(&disjoint, e3, "t").await.expect("take"), LeaseAttempt::Waiting { .. }));
    // The same playbook succeeding resolves the failed run's alert.
    let ok = |id: Uuid| HostOutcome {
        server_id: id,
        status: HostStatus::Ok,
        reason: None,
        counts: Some(HostCounts { ok: 1, ..Default::default() }),
        diff: None,
        pinned_host_keys: vec![],
    };
    let good = RunOutcome { state: RunState::Succeeded, reason: None, hosts: vec![ok(b.id), ok(c.id)] };
    store.finish(&second, e2, &good).await.expect("finish");
    let alerts = monitoring.alerts(org, &on_run, None, 10).await.expect("alerts");
    assert!(!alerts[0].firing, "resolved by the next good run: {alerts:?}");
    env.stop().await;
}

async fn a_reserved_server_is_taken_only_by_its_reservations_run(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let org = env.spine.db().access().create_org(&format!("org-{}", Uuid::now_v7().simple())).await.expect("org").id;
    let s = server(&env, org, 9).await;
    let req = ReserveRequest {
        filter: ServerFilter::default(),
        ttl: chrono::Duration::hours(1),
        purpose: "deploy".into(),
        holder: "ci".into(),
    };
    let reserved = env.spine.db().inventory().reserve(org, &req).await.expect("reserve").expect("a server");
    let store = env.spine.db().provisioning();
    let (other, e) = started_run(&env, org, &[&s], None).await;
    match store.take_leases(&other, e, "t").await.expect("take") {
        LeaseAttempt::Waiting { position: 0, blocked_by: Some(why) } => assert!(why.contains("reservation"), "{why}"),
        wrong => panic!("{wrong:?}"),
    }
    let (own, e2) = started_run(&env, org, &[&s], Some(reserved.lease_id)).await;
    // FIFO: `other` came first and still waits; end it (cancelled while waiting) to let `own` go.
    let cancelled = RunOutcome { state: RunState::Cancelled, reason: None, hosts: vec![] };
    store.finish(&other, e, &cancelled).await.expect("cancel");
    assert_eq!(store.take_leases(&own, e2, "t").await.expect("take"), LeaseAttempt::Taken);
    let held = env.spine.db().inventory().get_server(org, s.id).await.expect("get").expect("server");
    assert_eq!(held.lease.as_ref().map(|l| l.id), Some(own.id));
    assert_eq!(held.status_before_lease, Some(ServerStatus::Available), "the status before the reservation is kept");
    env.stop().await;
}

/// A run working on a server holds back the pages of that server's alerts (expected disruption),
/// and names its job on their incidents.
async fn a_running_run_holds_back_its_servers_pages(mode: Mode) {
    use sentinel_jobs::db::backups::SecretChange;
    use sentinel_jobs::db::monitoring::{CheckResult, IncidentFilter};
    use sentinel_jobs::domain::monitoring::alerts::ClientSettings;
    use sentinel_jobs::domain::monitoring::{CheckStatus, ErrorClass};
    use sentinel_jobs::domain::notify::{ChannelConfig, ChannelSpec, Policy, Timers};

    let env = Env::spine_only(mode, &[]).await;
    let org = env.spine.db().access().create_org(&format!("org-{}", Uuid::now_v7().simple())).await.expect("org").id;
    let s = server(&env, org, 7).await;
    let (run, e) = started_run(&env, org, &[&s], None).await;
    assert_eq!(env.spine.db().provisioning().take_leases(&run, e, "t").await.expect("take"), LeaseAttempt::Taken);
    let (monitoring, notify) = (env.spine.db().monitoring(), env.spine.db().notify());
    let settings = ClientSettings { consecutive_failures_threshold: 1, ..Default::default() };
    monitoring.replace_settings(org, &settings, "t").await.expect("settings");
    let mut spec: sentinel_jobs::domain::monitoring::TargetSpec = serde_json::from_value(
        json!({"name": "site", "url": "http://127.0.0.1:9/site", "check_interval_seconds": 60, "timeout_seconds": 2}),
    )
    .expect("spec");
    spec.server_id = Some(s.id);
    let target = monitoring.create_target(org, spec, "t", SecretChange::Keep).await.expect("target");
    let hook = ChannelSpec {
        name: "hook".into(),
        config: ChannelConfig::Webhook { url: "http://127.0.0.1:9/hook".into() },
        is_active: true,
    };
    notify.create_channel(org, hook, SecretChange::Keep, "t", chrono::Utc::now()).await.expect("channel");
    let policy = Policy {
        timers: Timers { group_wait_seconds: 0, group_interval_seconds: 1, repeat_interval_seconds: 3600 },
        ..Policy::default()
    };
    notify.set_policy(org, Some(&policy), "t").await.expect("policy");
    // The playbook restarts the site: its check fails while the run runs.
    let now = chrono::Utc::now();
    let failure = CheckResult {
        target_id: target.id,
        org_id: org,
        due_at: now,
        started_at: now,
        response_ms: 5.0,
        status: CheckStatus::Down,
        status_code: Some(502),
        error_class: Some(ErrorClass::Status),
        message: None,
        cert_expires_at: None,
        manual: false,
    };
    monitoring.record_results(&[failure]).await.expect("record");
    for s in [0, 1, 60] {
        let at = now + chrono::Duration::seconds(s);
        assert_eq!(notify.evaluate(at).await.expect("evaluate").queued, 0, "held back during the run");
    }
    let incidents = monitoring.incidents(org, &IncidentFilter::default(), None, 10).await.expect("incidents");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].suppressed_by, Some(format!("job:{}", run.job_id)));
    env.stop().await;
}

#[tokio::test]
async fn run_leases_on_sqlite() {
    leases_are_all_or_nothing_fifo_and_fenced(Mode::Embedded).await;
    a_reserved_server_is_taken_only_by_its_reservations_run(Mode::Embedded).await;
    a_running_run_holds_back_its_servers_pages(Mode::Embedded).await;
}

#[tokio::test]
async fn run_leases_on_postgres() {
    leases_are_all_or_nothing_fifo_and_fenced(Mode::Distributed).await;
    a_reserved_server_is_taken_only_by_its_reservations_run(Mode::Distributed).await;
    a_running_run_holds_back_its_servers_pages(Mode::Distributed).await;
}
