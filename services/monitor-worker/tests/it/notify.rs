//! Notification groups on PostgreSQL and SQLite alike, with the clock in the test's hands: a storm
//! of 500 failing targets of one server is one notification (and one "resolved"); a silent machine
//! pages once for itself with its dependents counted, not for each of them; a silence holds a page
//! back until it ends; acknowledging stops repeats; and a group's notifications reach a channel in
//! order, each claimed by one replica at a time.

use chrono::{DateTime, Duration, Utc};
use sentinel_jobs::db::Database;
use sentinel_jobs::db::backups::SecretChange;
use sentinel_jobs::db::inventory::ServerDraft;
use sentinel_jobs::db::monitoring::{IncidentFilter, MonitoringStore};
use sentinel_jobs::db::notify::{DeliveryOutcome, LogFilter, MuteKind, NotificationRecord, NotifyStore};
use sentinel_jobs::domain::monitoring::alerts::{ClientSettings, IncidentState};
use sentinel_jobs::domain::monitoring::metrics::RawBatch;
use sentinel_jobs::domain::notify::{ChannelConfig, ChannelSpec, MatchOp, Matcher, MuteSchedule, Policy, Timers};
use serde_json::json;
use uuid::Uuid;

use crate::store::{result, spec, stores};

async fn setup(conn: &Database, org: Uuid, host: &str, targets: usize) -> (Uuid, Uuid, Vec<Uuid>) {
    let server = conn
        .inventory()
        .create_server(
            org,
            ServerDraft {
                provider_ref: format!("p-{host}"),
                name: host.to_owned(),
                ip: "10.9.9.9".into(),
                ssh_port: 22,
                ssh_user: "root".into(),
                region: String::new(),
                labels: Default::default(),
                notes: String::new(),
                host_keys: vec![],
                accept_new_host_key: false,
                ssh_credential_id: None,
            },
            "test",
        )
        .await
        .expect("server")
        .id;
    let notify = conn.notify();
    let channel = notify
        .create_channel(
            org,
            ChannelSpec {
                name: "hook".into(),
                config: ChannelConfig::Webhook { url: "http://127.0.0.1:9/hook".into() },
                is_active: true,
            },
            SecretChange::Keep,
            "test",
            Utc::now(),
        )
        .await
        .expect("channel");
    let policy = Policy {
        timers: Timers { group_wait_seconds: 30, group_interval_seconds: 60, repeat_interval_seconds: 3600 },
        ..Policy::default()
    };
    notify.set_policy(org, Some(&policy), "test").await.expect("policy");
    let store = conn.monitoring();
    let settings =
        ClientSettings { consecutive_failures_threshold: 1, consecutive_successes_threshold: 1, ..Default::default() };
    store.replace_settings(org, &settings, "test").await.expect("settings");
    let mut ids = Vec::new();
    for i in 0..targets {
        let mut s = spec(&format!("http://127.0.0.1:9/{host}/{i}"), 60);
        s.server_id = Some(server);
        ids.push(store.create_target(org, s, "test", Default::default()).await.expect("target").id);
    }
    (server, channel.id, ids)
}

async fn record(store: &MonitoringStore, org: Uuid, targets: &[Uuid], up: bool, due: DateTime<Utc>) {
    let results: Vec<_> = targets.iter().map(|&t| result(t, org, due, up, 10.0)).collect();
    store.record_results(&results).await.expect("record");
}

async fn log(notify: &NotifyStore, org: Uuid) -> Vec<NotificationRecord> {
    let mut all = notify.notifications(org, &LogFilter::default(), None, 1000).await.expect("log");
    all.reverse();
    all
}

#[tokio::test]
async fn a_storm_of_500_targets_of_one_server_is_one_notification_then_one_resolved() {
    for (_db, conn, org) in stores().await {
        let (server, channel, targets) = setup(&conn, org, "web-01", 500).await;
        let (store, notify) = (conn.monitoring(), conn.notify());
        let t0 = Utc::now();
        record(&store, org, &targets, false, t0).await;
        assert_eq!(notify.evaluate(t0).await.expect("evaluate").queued, 0, "group_wait holds the first page");
        assert_eq!(notify.evaluate(t0 + Duration::seconds(29)).await.expect("evaluate").queued, 0);
        assert_eq!(notify.evaluate(t0 + Duration::seconds(30)).await.expect("evaluate").queued, 1, "one page");
        assert_eq!(notify.evaluate(t0 + Duration::seconds(31)).await.expect("evaluate").queued, 0, "and only one");
        let sent = log(&notify, org).await;
        assert_eq!(sent.len(), 1);
        let firing = &sent[0];
        assert_eq!((firing.status.as_str(), firing.channel_id, firing.sequence), ("firing", channel, 1));
        assert_eq!(firing.payload["counts"]["firing"], 500);
        assert_eq!(firing.payload["group"]["labels"]["group"], format!("server:{server}"));
        assert!(
            firing.payload["title"].as_str().expect("title").starts_with("[FIRING:500]"),
            "{}",
            firing.payload["title"]
        );

        // Everything recovers: one "resolved" for the group, after group_interval.
        record(&store, org, &targets, true, t0 + Duration::seconds(60)).await;
        assert_eq!(notify.evaluate(t0 + Duration::seconds(40)).await.expect("evaluate").queued, 0);
        assert_eq!(notify.evaluate(t0 + Duration::seconds(90)).await.expect("evaluate").queued, 1);
        let sent = log(&notify, org).await;
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[1].status.as_str(), sent[1].sequence), ("resolved", 2));
        assert_eq!(sent[1].payload["counts"]["resolved"], 500);
        assert_eq!(
            notify.evaluate(t0 + Duration::seconds(500)).await.expect("evaluate").queued,
            0,
            "the group is done"
        );

        // Delivery: the resolved waits for the firing of its group and channel; one claimant each.
        let now = t0 + Duration::seconds(100);
        let first = notify.claim_due("a", Duration::seconds(30), 10, now).await.expect("claim");
        assert_eq!(first.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(), ["firing"]);
        assert_eq!(first[0].idempotency_key, format!("{}:1:{channel}", sent[0].group_id.expect("group")));
        assert!(notify.claim_due("b", Duration::seconds(30), 10, now).await.expect("claim").is_empty());
        // A replica that lost its claim cannot record an outcome over another's.
        let delivered = DeliveryOutcome::Delivered { status: Some(200) };
        assert!(!notify.finish_delivery(first[0].id, "b", &delivered, now).await.expect("finish"));
        let refused = DeliveryOutcome::Failed {
            status: Some(503),
            error: "the receiver answered 503".into(),
            retry_at: Some(now + Duration::seconds(2)),
        };
        assert!(notify.finish_delivery(first[0].id, "a", &refused, now).await.expect("finish"));
        assert!(notify.claim_due("b", Duration::seconds(30), 10, now).await.expect("claim").is_empty(), "backing off");
        let later = now + Duration::seconds(2);
        let again = notify.claim_due("b", Duration::seconds(30), 10, later).await.expect("claim");
        assert_eq!((again.len(), again[0].attempt), (1, 2));
        assert!(notify.finish_delivery(again[0].id, "b", &delivered, later).await.expect("finish"));
        let next = notify.claim_due("a", Duration::seconds(30), 10, later).await.expect("claim");
        assert_eq!(next.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(), ["resolved"]);
        // Its holder died: the lease runs out and another replica sends it again, same key.
        let expired = later + Duration::seconds(31);
        let taken = notify.claim_due("b", Duration::seconds(30), 10, expired).await.expect("claim");
        assert_eq!(taken[0].idempotency_key, next[0].idempotency_key);
        let entries = log(&notify, org).await;
        assert_eq!(
            (entries[0].state.as_str(), entries[0].attempts, entries[0].last_status),
            ("delivered", 2, Some(200))
        );
        // Retention takes finished deliveries only: the pending "resolved" stays whatever its age.
        assert_eq!(notify.delete_finished_before(Utc::now() + Duration::days(1)).await.expect("retention"), 1);
        let left = log(&notify, org).await;
        assert_eq!((left.len(), left[0].status.as_str()), (1, "resolved"));
    }
}

async fn machine_heard(store: &MonitoringStore, org: Uuid, host: &str) {
    let batch = serde_json::from_value::<RawBatch>(
        json!({"machine": {"hostname": host}, "sent_at": Utc::now(), "metrics": [{"name": "up", "type": "boolean", "value": true}]}),
    )
    .expect("shape")
    .check(Utc::now())
    .expect("valid");
    store.ingest(org, None, &batch).await.expect("ingest");
}

#[tokio::test]
async fn a_silent_machine_is_one_page_silences_hold_pages_back_and_acknowledging_stops_repeats() {
    for (_db, conn, org) in stores().await {
        let (server, _channel, targets) = setup(&conn, org, "db-01", 20).await;
        let (store, notify) = (conn.monitoring(), conn.notify());
        machine_heard(&store, org, "db-01").await;
        // The host goes down: its agent falls silent and its 20 targets fail.
        let t0 = Utc::now() + Duration::minutes(10);
        assert_eq!(store.sweep_machines(t0).await.expect("sweep").changed, 1);
        record(&store, org, &targets, false, t0).await;
        notify.evaluate(t0).await.expect("evaluate");
        assert_eq!(notify.evaluate(t0 + Duration::seconds(30)).await.expect("evaluate").queued, 1);
        let sent = log(&notify, org).await;
        assert_eq!(sent.len(), 1, "one page for the host");
        let alerts = sent[0].payload["alerts"].as_array().expect("alerts");
        assert_eq!(alerts.len(), 1, "{}", sent[0].payload);
        assert_eq!(alerts[0]["rule"], "machine_silent");
        assert_eq!(sent[0].payload["counts"]["inhibited_dependents"], 20);
        assert!(sent[0].payload["title"].as_str().expect("title").ends_with("(20 dependents suppressed)"));

        // The host is back: the machine's alert resolves and the targets recover by themselves; only
        // the machine, which was paged, gets a "resolved".
        machine_heard(&store, org, "db-01").await;
        record(&store, org, &targets, true, t0 + Duration::seconds(60)).await;
        assert_eq!(notify.evaluate(t0 + Duration::seconds(90)).await.expect("evaluate").queued, 1);
        let sent = log(&notify, org).await;
        assert_eq!(sent[1].status, "resolved");
        assert_eq!(sent[1].payload["alerts"].as_array().expect("alerts").len(), 1);
        assert_eq!(notify.evaluate(t0 + Duration::seconds(200)).await.expect("evaluate").queued, 0);

        // A silence on the server: a failure is recorded but not paged while it lasts.
        let t1 = t0 + Duration::seconds(300);
        let silence = notify
            .create_mute(
                org,
                MuteKind::Silence,
                "db-01 maintenance",
                &[Matcher { label: "server".into(), op: MatchOp::Equal, value: server.to_string() }],
                &MuteSchedule::Once { starts_at: t0, ends_at: t1 + Duration::hours(1) },
                "user:alice",
            )
            .await
            .expect("silence");
        record(&store, org, &targets[..1], false, t1).await;
        for s in [0, 30, 100] {
            assert_eq!(notify.evaluate(t1 + Duration::seconds(s)).await.expect("evaluate").queued, 0, "silenced");
        }
        // Ended: the still-failing target pages.
        let t2 = t1 + Duration::hours(1) + Duration::seconds(1);
        assert!(
            notify
                .mutes(org, MuteKind::Silence, Some(t1), None, 10)
                .await
                .expect("list")
                .iter()
                .any(|m| m.id == silence.id)
        );
        notify.evaluate(t2).await.expect("evaluate");
        assert_eq!(notify.evaluate(t2 + Duration::seconds(30)).await.expect("evaluate").queued, 1);
        // Unacknowledged, it repeats after repeat_interval; acknowledged, it does not.
        let t3 = t2 + Duration::seconds(30) + Duration::seconds(3600);
        assert_eq!(notify.evaluate(t3).await.expect("evaluate").queued, 1);
        assert_eq!(log(&notify, org).await.last().expect("repeat").status, "repeat");
        let open = store
            .incidents(org, &IncidentFilter { state: Some(IncidentState::Open), ..Default::default() }, None, 10)
            .await
            .expect("incidents");
        assert_eq!(open.len(), 1);
        store.move_incident(&open[0], IncidentState::Acknowledged, "user:alice", None).await.expect("ack");
        assert_eq!(notify.evaluate(t3 + Duration::seconds(7200)).await.expect("evaluate").queued, 0, "acknowledged");
    }
}

#[tokio::test]
async fn alerts_caused_by_a_backup_on_their_server_are_recorded_not_paged_until_they_outlast_it() {
    use sentinel_jobs::db::backups::{JournalFinish, NewJournal, TargetDraft};
    use sentinel_jobs::domain::backups::{Engine, JournalKind, JournalStatus};
    for (_db, conn, org) in stores().await {
        let (_server, _channel, targets) = setup(&conn, org, "app-01", 2).await;
        let (store, notify, backups) = (conn.monitoring(), conn.notify(), conn.backups());
        let target = backups
            .create_target(
                org,
                TargetDraft {
                    name: "app db".into(),
                    engine: Engine::Postgres,
                    host: Some("app-01".into()),
                    port: Some(5432),
                    user: Some("postgres".into()),
                    databases: vec!["app".into()],
                    options: Default::default(),
                    path: None,
                },
                SecretChange::Keep,
                "test",
            )
            .await
            .expect("backup target");
        let job = Uuid::now_v7();
        let entry = backups
            .open_journal(NewJournal {
                org_id: org,
                kind: Some(JournalKind::Backup),
                plan_id: None,
                target_id: Some(target.id),
                job_id: Some(job),
                attempt: 1,
                backup_type: None,
                compression: None,
                encryption: None,
                key_secret_id: None,
                copies: vec![],
                source: None,
                requested_by: None,
            })
            .await
            .expect("journal");
        // The backup restarts the database: the app's targets fail while it runs.
        let t0 = Utc::now();
        record(&store, org, &targets, false, t0).await;
        for s in [0, 30, 120] {
            assert_eq!(notify.evaluate(t0 + Duration::seconds(s)).await.expect("evaluate").queued, 0, "expected");
        }
        let incidents = store.incidents(org, &IncidentFilter::default(), None, 10).await.expect("incidents");
        assert_eq!(incidents.len(), 2);
        for i in &incidents {
            assert_eq!(i.suppressed_by.as_deref(), Some(format!("job:{job}").as_str()), "{i:?}");
            let (_, timeline) = store.incident_details(i.id, 100).await.expect("details");
            assert!(timeline.iter().any(|e| e.kind == "suppressed"), "{timeline:?}");
        }
        // The backup ends; within the margin (300 s) the failure is still its doing.
        backups
            .finish_journal(entry.id, JournalFinish::bare(JournalStatus::Succeeded, vec![], "done"))
            .await
            .expect("end");
        let ended = Utc::now();
        assert_eq!(
            notify.evaluate(ended + Duration::seconds(200)).await.expect("evaluate").queued,
            0,
            "within the margin"
        );
        // Still failing past the margin: it pages like any failure.
        notify.evaluate(ended + Duration::seconds(301)).await.expect("evaluate");
        assert_eq!(
            notify.evaluate(ended + Duration::seconds(331)).await.expect("evaluate").queued,
            1,
            "outlasted the job"
        );
        assert_eq!(log(&notify, org).await[0].payload["counts"]["firing"], 2);
    }
}
