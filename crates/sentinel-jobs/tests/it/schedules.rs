//! The schedule store on both databases: validation into drafts, the per-tick claim that lets exactly
//! one claimer fire a tick, edits that invalidate stale claims, the lease, and the built-in schedules.

use chrono::{Duration, Utc};
use sentinel_jobs::ScheduleInput;
use sentinel_jobs::db::{NewJob, ScheduleDraft, ScheduleRecord, TickClaim};
use sentinel_jobs::domain::schedule::MisfirePolicy;
use sentinel_jobs::domain::{JobId, Priority, RetryPolicy, builtin};
use serde_json::json;
use uuid::Uuid;

use crate::both_modes;
use crate::helpers::{Env, Mode};

both_modes!(
    invalid_definitions_name_every_bad_field,
    racing_claims_fire_a_tick_exactly_once,
    an_edit_invalidates_claims_computed_before_it,
    the_lease_has_one_holder_and_a_new_epoch_per_holder,
    builtin_schedules_follow_configuration,
    a_backlog_of_thousands_of_ticks_is_claimed_in_one_call,
    a_tick_that_already_fired_moves_on_without_firing_again,
);

fn input(interval_secs: u64) -> ScheduleInput {
    ScheduleInput {
        name: format!("every {interval_secs}s"),
        cron: None,
        interval_secs: Some(interval_secs),
        timezone: None,
        kind: builtin::DEMO_SLEEP.to_owned(),
        payload: json!({ "seconds": 0 }),
        priority: Priority::Normal,
        enabled: true,
        misfire_policy: MisfirePolicy::Skip,
        jitter_ms: 0,
        end_at: None,
    }
}

fn draft(env: &Env, input: ScheduleInput) -> ScheduleDraft {
    let now = Utc::now();
    env.spine.schedule_draft(input, None, None, Some("test".into()), now, now).expect("valid schedule")
}

fn claim(env: &Env, rec: &ScheduleRecord) -> TickClaim {
    let tick = rec.next_fire_at.expect("has a tick");
    TickClaim {
        schedule_id: rec.id,
        org_id: rec.org_id,
        version: rec.version,
        tick_at: tick,
        next_fire_at: Some(tick + Duration::seconds(60)),
        fired_at: Utc::now(),
        job: Some(NewJob {
            id: JobId::new(),
            kind: rec.job_kind.clone(),
            queue: env.spine.catalog().get(&rec.job_kind).expect("known kind").queue.clone(),
            priority: rec.priority,
            payload: rec.payload.clone(),
            retry: RetryPolicy::default(),
            run_at: None,
            trace_context: Default::default(),
            requested_by: Some(format!("schedule:{}", rec.id)),
            org_id: rec.org_id,
            dedup_key: None,
        }),
        missed_ticks: 0,
    }
}

async fn invalid_definitions_name_every_bad_field(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let now = Utc::now();
    let bad = ScheduleInput {
        name: " ".into(),
        cron: Some("*/5 * * *".into()),
        interval_secs: None,
        kind: "no.such.kind".into(),
        jitter_ms: 10_000_000,
        end_at: Some(now - Duration::seconds(1)),
        ..input(1)
    };
    let errors = env.spine.schedule_draft(bad, Some(Uuid::now_v7()), None, None, now, now).expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "cron", "kind", "jitter_ms"], "{errors:?}");
    // Jitter longer than the period would make runs queue behind each other.
    let jittery = ScheduleInput { jitter_ms: 5_000, ..input(5) };
    let errors = env.spine.schedule_draft(jittery, None, None, None, now, now).expect_err("invalid");
    assert_eq!(errors[0].field, "jitter_ms");
    assert!(
        env.spine.schedule_draft(ScheduleInput { jitter_ms: 4_999, ..input(5) }, None, None, None, now, now).is_ok()
    );
    let zone = ScheduleInput {
        cron: Some("0 9 * * *".into()),
        interval_secs: None,
        timezone: Some("Nowhere/City".into()),
        ..input(1)
    };
    let errors = env.spine.schedule_draft(zone, None, None, None, now, now).expect_err("invalid");
    assert_eq!(errors[0].field, "timezone");
    // A bad zone does not hide a bad expression: both are named.
    let both = ScheduleInput {
        cron: Some("61 * * * *".into()),
        interval_secs: None,
        timezone: Some("Mars/Base".into()),
        ..input(1)
    };
    let errors = env.spine.schedule_draft(both, None, None, None, now, now).expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["timezone", "cron"], "{errors:?}");
    let payload = ScheduleInput { payload: json!({ "seconds": "soon" }), ..input(1) };
    let errors = env.spine.schedule_draft(payload, None, None, None, now, now).expect_err("invalid");
    assert_eq!(errors[0].field, "payload.seconds");
    // System kinds are not for organizations' schedules.
    let system = ScheduleInput { kind: builtin::SYSTEM_RETENTION.into(), payload: json!({}), ..input(60) };
    let errors = env.spine.schedule_draft(system, Some(Uuid::now_v7()), None, None, now, now).expect_err("reserved");
    assert_eq!(errors[0].field, "kind");
    env.stop().await;
}

async fn racing_claims_fire_a_tick_exactly_once(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.db().schedules();
    let rec = store.create(draft(&env, input(1))).await.expect("create");
    // Eight claimers with the same view of the tick, each with its own job: one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let c = claim(&env, &rec);
        tasks.push(tokio::spawn(async move { store.claim(vec![c]).await }));
    }
    let mut fired = Vec::new();
    for t in tasks {
        // A loser either sees the tick already moved (empty result) or, having raced on the same
        // snapshot, hits the unique firing row and rolls back as a whole.
        if let Ok(won) = t.await.expect("task") {
            fired.extend(won);
        }
    }
    assert_eq!(fired.len(), 1, "exactly one claimer wins: {fired:?}");
    let firings = store.firings(rec.id, None, 10).await.expect("firings");
    assert_eq!(firings.len(), 1);
    let job_id = fired[0].job.as_ref().expect("a job").0.id;
    assert_eq!(firings[0].job_id, Some(job_id));
    assert_eq!(firings[0].outcome, "fired");
    assert!(env.spine.store().get(job_id).await.expect("get").is_some(), "the job committed with the firing");
    let after = store.get(rec.id).await.expect("get").expect("exists");
    assert_eq!(after.next_fire_at, fired[0].next_fire_at);
    assert_eq!(after.last_job_id, Some(job_id));
    // Claiming the old tick again does nothing.
    assert!(store.claim(vec![claim(&env, &rec)]).await.expect("claim").is_empty());
    env.stop().await;
}

async fn an_edit_invalidates_claims_computed_before_it(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.db().schedules();
    let rec = store.create(draft(&env, input(5))).await.expect("create");
    let stale = claim(&env, &rec);
    let mut edit = draft(&env, input(5));
    edit.enabled = false;
    edit.next_fire_at = None;
    let edited = store.replace(None, rec.id, edit.clone(), Some(rec.version)).await.expect("replace").expect("exists");
    // A second writer holding the old version is told, not silently overwritten.
    assert!(matches!(
        store.replace(None, rec.id, edit, Some(rec.version)).await,
        Err(sentinel_jobs::db::DbError::Conflict(_))
    ));
    assert_eq!(edited.version, rec.version + 1);
    assert!(store.claim(vec![stale]).await.expect("claim").is_empty(), "a disabled schedule never fires");
    assert!(store.firings(rec.id, None, 10).await.expect("firings").is_empty());
    env.stop().await;
}

async fn a_tick_that_already_fired_moves_on_without_firing_again(mode: Mode) {
    // An edit racing a firing can set next_fire_at back to a tick that has just fired.
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.db().schedules();
    let rec = store.create(draft(&env, input(5))).await.expect("create");
    let fired = store.claim(vec![claim(&env, &rec)]).await.expect("claim");
    assert!(fired[0].job.is_some());
    let mut same = draft(&env, input(5));
    same.next_fire_at = rec.next_fire_at;
    let rewound = store.replace(None, rec.id, same, None).await.expect("replace").expect("exists");
    let again = store.claim(vec![claim(&env, &rewound)]).await.expect("the claim does not fail");
    assert_eq!(again.len(), 1);
    assert!(again[0].job.is_none(), "no second job for the same tick");
    let after = store.get(rec.id).await.expect("get").expect("exists");
    assert_eq!(after.next_fire_at, again[0].next_fire_at, "the schedule moved on");
    assert_eq!(store.firings(rec.id, None, 10).await.expect("firings").len(), 1);
    env.stop().await;
}

async fn the_lease_has_one_holder_and_a_new_epoch_per_holder(mode: Mode) {
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.db().schedules();
    let name = format!("test-{}", Uuid::new_v4().simple());
    let ttl = Duration::milliseconds(400);
    let a = store.acquire_lease(&name, "a", ttl).await.expect("lease").expect("a takes it");
    assert_eq!(store.acquire_lease(&name, "b", ttl).await.expect("lease"), None, "b waits while a holds it");
    assert_eq!(store.acquire_lease(&name, "a", ttl).await.expect("lease"), Some(a), "a renews under its epoch");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let b = store.acquire_lease(&name, "b", ttl).await.expect("lease").expect("b takes the expired lease");
    assert!(b > a, "a new holder gets a new epoch");
    assert_eq!(store.acquire_lease(&name, "a", ttl).await.expect("lease"), None);
    store.release_lease(&name, "b").await.expect("release");
    assert!(store.acquire_lease(&name, "a", ttl).await.expect("lease").is_some_and(|e| e > b));
    env.stop().await;
}

async fn builtin_schedules_follow_configuration(mode: Mode) {
    let env = Env::spine_only(mode, &[("scheduler.heartbeat_check_interval_secs", "0")]).await;
    let first = env.spine.ensure_builtin_schedules().await.expect("builtins");
    let again = env.spine.ensure_builtin_schedules().await.expect("builtins");
    assert_eq!(first, again, "idempotent: nothing changes on a second start");
    let by_kind = |kind: &str| first.iter().find(|s| s.job_kind.as_str() == kind).expect("present").clone();
    let metrics = by_kind(builtin::MONITOR_EVALUATE_METRICS);
    assert_eq!((metrics.interval_secs, metrics.enabled, metrics.org_id), (Some(60), true, None));
    let next = metrics.next_fire_at.expect("next tick");
    assert_eq!(next.timestamp() % 60, 0, "ticks on round minutes on every replica");
    assert!(!by_kind(builtin::MONITOR_CHECK_HEARTBEATS).enabled, "an interval of 0 disables it");
    assert!(by_kind(builtin::MONITOR_DISPATCH_HTTP_CHECKS).enabled);
    assert!(by_kind(builtin::SYSTEM_RETENTION).enabled);
    assert_eq!(by_kind(builtin::INVENTORY_EXPIRE_RESERVATIONS).interval_secs, Some(15));
    assert_eq!(by_kind(sentinel_jobs::domain::backups::JANITOR_KIND).interval_secs, Some(3600));
    assert_eq!(by_kind(sentinel_jobs::domain::monitoring::ROLLUP_KIND).interval_secs, Some(300));
    assert_eq!(env.spine.db().schedules().list_system().await.expect("list").len(), 7);
    env.stop().await;
}

async fn a_backlog_of_thousands_of_ticks_is_claimed_in_one_call(mode: Mode) {
    // After an outage the scheduler claims up to 2,000 ticks per transaction: more bound parameters
    // than SQLite allows in one statement, so the store must split its statements.
    let env = Env::spine_only(mode, &[]).await;
    let store = env.spine.db().schedules();
    let mut claims = Vec::new();
    for i in 0..2_000 {
        let rec =
            store.create(draft(&env, ScheduleInput { name: format!("s{i}"), ..input(60) })).await.expect("create");
        claims.push(claim(&env, &rec));
    }
    let fired = store.claim(claims).await.expect("one claim for the whole backlog");
    assert_eq!(fired.len(), 2_000);
    assert!(fired.iter().all(|c| c.job.is_some()));
    env.stop().await;
}
