//! Alerts and incidents from recorded results, on PostgreSQL and SQLite alike: hysteresis on both
//! sides, one flapping incident for a target that keeps flipping (its uptime still exact), the
//! incident lifecycle (acknowledge, note, resolve by hand, reopen as a new incident), and a
//! replayed result that changes nothing.

use chrono::Duration;
use sentinel_jobs::db::monitoring::{IncidentFilter, MonitoringStore, UptimeWindow};
use sentinel_jobs::domain::monitoring::alerts::{AlertState, ClientSettings, IncidentState, Transition};
use uuid::Uuid;

use crate::store::{result, spec, stores};

struct Feed<'a> {
    store: &'a MonitoringStore,
    target: Uuid,
    org: Uuid,
    due: chrono::DateTime<chrono::Utc>,
}

impl Feed<'_> {
    /// Records one result per entry (true = up); returns the transitions they caused.
    async fn send(&mut self, ups: &[bool]) -> Vec<Transition> {
        let mut out = Vec::new();
        for &up in ups {
            let r = result(self.target, self.org, self.due, up, if up { 20.0 } else { 300.0 });
            out.extend(
                self.store.record_results(&[r]).await.expect("record").changes.into_iter().map(|c| c.transition),
            );
            self.due += Duration::seconds(60);
        }
        out
    }
}

#[tokio::test]
async fn hysteresis_flapping_and_the_incident_lifecycle() {
    for (_db, conn, org) in stores().await {
        let store = conn.monitoring();
        let settings = ClientSettings {
            consecutive_failures_threshold: 2,
            consecutive_successes_threshold: 2,
            ..ClientSettings::default()
        };
        store.replace_settings(org, &settings, "test").await.expect("settings");
        assert_eq!(store.settings(org).await.expect("read"), settings);
        let t = store
            .create_target(org, spec("http://127.0.0.1:9/alerting", 60), "test", Default::default())
            .await
            .expect("target");
        let start = t.next_due_at;
        let mut feed = Feed { store: &store, target: t.id, org, due: start };

        // One failure is noise; two open the alert; one success is not a recovery; two are.
        assert_eq!(feed.send(&[false, true, false]).await, []);
        assert_eq!(feed.send(&[false]).await, [Transition::Open]);
        let open = store.incidents(org, &IncidentFilter::default(), None, 10).await.expect("incidents");
        assert_eq!((open.len(), open[0].state), (1, IncidentState::Open));
        let after = store.target(org, t.id).await.expect("get").expect("target");
        assert_eq!(after.state.alert_state, AlertState::Firing);
        assert_eq!(feed.send(&[true]).await, []);
        assert_eq!(feed.send(&[true]).await, [Transition::Resolve]);
        let first = store.incident(org, open[0].id).await.expect("get").expect("incident");
        assert_eq!((first.state, first.resolved_by.clone()), (IncidentState::Resolved, None), "resolved by itself");
        let (alerts, timeline) = store.incident_details(first.id, 100).await.expect("details");
        assert_eq!(alerts.len(), 1);
        assert!(!alerts[0].firing && alerts[0].rule == "http_down");
        let kinds: Vec<&str> = timeline.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["opened", "alert_resolved", "resolved"]);

        // A target flipping every check: one flapping incident, not a storm; its uptime stays exact.
        let flips: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let changes = feed.send(&flips).await;
        assert_eq!(changes, [Transition::StartFlapping], "one flapping alert for 40 flips");
        let all = store.incidents(org, &IncidentFilter::default(), None, 10).await.expect("incidents");
        assert_eq!(all.len(), 2);
        assert!(all[0].flapping && all[0].state == IncidentState::Open, "{all:?}");
        // Stable and up again: resolved.
        let calm = feed.send(&[true; 25]).await;
        assert_eq!(calm, [Transition::Resolve]);
        let uptime = store.uptime(t.id, feed.due).await.expect("uptime");
        let day = uptime.iter().find(|u| u.window == UptimeWindow::Day).expect("24h");
        // 6 results (3 down) + 40 flips (20 down) + 25 up, all within the day.
        assert_eq!((day.checks, day.up), (71, 48), "{day:?}");

        // By hand: acknowledge, note, resolve while still failing — and the next failure reopens.
        assert_eq!(feed.send(&[false, false]).await, [Transition::Open]);
        let third = store
            .incidents(org, &IncidentFilter { state: Some(IncidentState::Open), ..Default::default() }, None, 10)
            .await
            .expect("open")
            .remove(0);
        store
            .move_incident(&third, IncidentState::Acknowledged, "user:alice", Some("looking".into()))
            .await
            .expect("ack");
        let acked = store.incident(org, third.id).await.expect("get").expect("incident");
        assert_eq!((acked.state, acked.acknowledged_by.as_deref()), (IncidentState::Acknowledged, Some("user:alice")));
        let twice = store.move_incident(&acked, IncidentState::Acknowledged, "user:alice", None).await;
        assert!(twice.is_err(), "acknowledging twice is a conflict");
        store.add_note(third.id, "user:bob", "restarting nginx".into()).await.expect("note");
        store.move_incident(&acked, IncidentState::Resolved, "user:bob", None).await.expect("resolve");
        let resolved = store.incident(org, third.id).await.expect("get").expect("incident");
        assert_eq!((resolved.state, resolved.resolved_by.as_deref()), (IncidentState::Resolved, Some("user:bob")));
        let (_, timeline) = store.incident_details(third.id, 100).await.expect("details");
        let kinds: Vec<(&str, Option<&str>)> = timeline.iter().map(|e| (e.kind.as_str(), e.actor.as_deref())).collect();
        assert_eq!(
            kinds,
            [
                ("opened", None),
                ("acknowledged", Some("user:alice")),
                ("note", Some("user:bob")),
                ("alert_resolved", Some("user:bob")),
                ("resolved", Some("user:bob"))
            ]
        );
        assert_eq!(feed.send(&[false]).await, [Transition::Open], "still failing: a new incident");
        assert_eq!(store.incidents(org, &IncidentFilter::default(), None, 10).await.expect("all").len(), 4);

        // A result replayed for a deadline already recorded changes nothing.
        let replay = result(t.id, org, feed.due - Duration::seconds(60), false, 300.0);
        let recorded = store.record_results(&[replay]).await.expect("replay");
        assert!(!recorded.outcomes[0].recorded && recorded.changes.is_empty());
        let target = store.target(org, t.id).await.expect("get").expect("target");
        assert_eq!(target.state.consecutive_failures, 3, "the replay counted nothing");

        // Pausing a target resolves what it had firing, saying why and who; so does deleting one.
        let mut paused = target.spec.clone();
        paused.is_active = false;
        let after = store.update_target(&target, paused, "user:carol", Default::default()).await.expect("pause");
        assert_eq!(after.state.alert_state, AlertState::Ok);
        let newest = store.incidents(org, &IncidentFilter::default(), None, 1).await.expect("newest").remove(0);
        assert_eq!((newest.state, newest.resolved_by.as_deref()), (IncidentState::Resolved, Some("user:carol")));
        let (_, timeline) = store.incident_details(newest.id, 100).await.expect("details");
        assert!(
            timeline.iter().any(|e| e.kind == "note" && e.text.as_deref() == Some("target paused")),
            "{timeline:?}"
        );
        let other = store
            .create_target(org, spec("http://127.0.0.1:9/other", 60), "test", Default::default())
            .await
            .expect("target");
        let mut feed = Feed { store: &store, target: other.id, org, due: other.next_due_at };
        assert_eq!(feed.send(&[false, false]).await, [Transition::Open]);
        store.delete_target(&other, "user:dave").await.expect("delete");
        let open = IncidentFilter { state: Some(IncidentState::Open), ..Default::default() };
        assert!(store.incidents(org, &open, None, 10).await.expect("open").is_empty(), "nothing left open");
    }
}

/// Through the product: settings by API, a target going down opens an incident, an operator
/// acknowledges it with a note, and its recovery resolves it by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_opens_is_acknowledged_and_resolves_by_itself() {
    use serde_json::{Value, json};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (http, switch) = crate::servers::http().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_sentinel, api) =
        sentinel_testkit::product::start(tmp.path(), &[("SENTINEL_SCHEDULER__HTTP_CHECK_DISPATCH_INTERVAL_SECS", "1")])
            .await;
    let (status, defaults) = api.get("/api/v1/monitoring/settings").await;
    assert_eq!((status, defaults["consecutive_failures_threshold"].as_u64()), (200, Some(3)), "{defaults}");
    let settings = json!({"notification_email": "alerts@example.com", "heartbeat_threshold_minutes": 5,
                          "consecutive_failures_threshold": 2, "consecutive_successes_threshold": 2, "alert_grouping_enabled": true});
    let (status, bad) = api
        .send(reqwest::Method::PUT, "/api/v1/monitoring/settings", Some(json!({"notification_email": "nope", "heartbeat_threshold_minutes": 0,
            "consecutive_failures_threshold": 2, "consecutive_successes_threshold": 2, "alert_grouping_enabled": true})))
        .await;
    assert_eq!(status, 422, "{bad}");
    let (status, saved) = api.send(reqwest::Method::PUT, "/api/v1/monitoring/settings", Some(settings.clone())).await;
    assert_eq!((status, &saved), (200, &settings));

    // The organization's monitoring stream, opened before anything happens.
    let open_stream = |after: Option<String>| {
        let mut req = sentinel_testkit::procs::stream_client()
            .get(format!("{}/api/v1/monitoring/events/stream", api.base))
            .bearer_auth(&api.token);
        if let Some(id) = after {
            req = req.header("Last-Event-ID", id);
        }
        async move { sentinel_testkit::SseReader::new(req.send().await.expect("stream")) }
    };
    let mut live = open_stream(None).await;

    switch.set_down(true);
    let id = api
        .create(
            "/api/v1/monitoring/targets",
            json!({"name": "shop", "url": format!("http://127.0.0.1:{http}/switch"), "check_interval_seconds": 1}),
        )
        .await;
    let open = sentinel_testkit::eventually(std::time::Duration::from_secs(30), || {
        let api = &api;
        async move {
            let (_, page) = api.get("/api/v1/monitoring/incidents?state=open").await;
            page["items"].as_array().and_then(|a| a.first().cloned())
        }
    })
    .await
    .expect("an incident opened");
    assert_eq!(open["title"], "shop is down", "{open}");
    assert_eq!(open["severity"], "critical");
    let incident = open["id"].as_str().expect("id").to_owned();
    let opened = live.next(std::time::Duration::from_secs(10)).await.expect("the opening, live");
    assert_eq!(
        (opened.event.as_deref(), opened.data["incident_id"].as_str()),
        (Some("opened"), Some(incident.as_str()))
    );
    assert_eq!(opened.data["title"], "shop is down");
    let (status, acked) =
        api.post(&format!("/api/v1/monitoring/incidents/{incident}/acknowledge"), json!({"note": "on it"})).await;
    assert_eq!((status, acked["state"].as_str()), (200, Some("acknowledged")), "{acked}");
    assert!(acked["acknowledged_by"].as_str().is_some_and(|a| !a.is_empty()));
    let acked_event = live.next(std::time::Duration::from_secs(10)).await.expect("the acknowledgement, live");
    assert_eq!(acked_event.event.as_deref(), Some("acknowledged"));
    assert_eq!(acked_event.data["state"], "acknowledged");
    // Resumed after the opening: the acknowledgement comes next, the opening is not repeated.
    let mut resumed = open_stream(opened.id.clone()).await;
    let next = resumed.next(std::time::Duration::from_secs(10)).await.expect("resumed");
    assert_eq!((next.event.as_deref(), next.id.clone()), (Some("acknowledged"), acked_event.id.clone()));
    let (status, again) = api.post(&format!("/api/v1/monitoring/incidents/{incident}/acknowledge"), json!({})).await;
    assert_eq!(status, 409, "{again}");
    let (status, noted) =
        api.post(&format!("/api/v1/monitoring/incidents/{incident}/notes"), json!({"text": "db restarted"})).await;
    assert_eq!(status, 201, "{noted}");
    let (status, _) = api.post(&format!("/api/v1/monitoring/incidents/{incident}/notes"), json!({"text": "  "})).await;
    assert_eq!(status, 422);
    let (_, firing) = api.get(&format!("/api/v1/monitoring/alerts?state=firing&source_id={id}")).await;
    assert_eq!(firing["items"].as_array().expect("items").len(), 1, "{firing}");
    assert_eq!(firing["items"][0]["rule"], "http_down");

    switch.set_down(false);
    let resolved = sentinel_testkit::eventually(std::time::Duration::from_secs(30), || {
        let (api, incident) = (&api, &incident);
        async move {
            let (_, i) = api.get(&format!("/api/v1/monitoring/incidents/{incident}")).await;
            (i["state"] == "resolved").then_some(i)
        }
    })
    .await
    .expect("the incident resolved when the target recovered");
    assert_eq!(resolved["resolved_by"], Value::Null, "by itself: {resolved}");
    let kinds: Vec<&str> =
        resolved["timeline"].as_array().expect("timeline").iter().map(|e| e["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["opened", "acknowledged", "note", "alert_resolved", "resolved"], "{resolved}");
    assert_eq!(resolved["timeline"][1]["text"], "on it");
    let (_, page) = api.get("/api/v1/monitoring/alerts?state=resolved").await;
    assert_eq!(page["items"][0]["state"], "resolved");
    let (status, _) = api.get("/api/v1/monitoring/incidents?state=sideways").await;
    assert_eq!(status, 422);
}
