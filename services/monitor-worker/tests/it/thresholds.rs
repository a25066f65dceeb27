//! Thresholds, nodata and silent machines on PostgreSQL and SQLite alike: a value past a level
//! opens an alert when its batch arrives and escalates it; a series that stops is `nodata` and keeps
//! its alert; a silent machine raises "machine silent", resolved by its next batch; a machine's
//! alerts share one incident with grouping on and have their own with it off; pause and the
//! removal of a threshold resolve by the operator's hand.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sentinel_jobs::db::monitoring::{AlertFilter, IncidentFilter, MetricRecord, MonitoringStore};
use sentinel_jobs::domain::monitoring::alerts::{ClientSettings, IncidentState, Severity};
use sentinel_jobs::domain::monitoring::metrics::RawBatch;
use sentinel_jobs::domain::monitoring::thresholds::{Comparison, MetricState, Threshold};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::store::stores;

async fn send(store: &MonitoringStore, org: Uuid, host: &str, at: DateTime<Utc>, metrics: Value) {
    let batch =
        serde_json::from_value::<RawBatch>(json!({"machine": {"hostname": host}, "sent_at": at, "metrics": metrics}))
            .expect("shape")
            .check(Utc::now())
            .expect("valid");
    store.ingest(org, None, &batch).await.expect("ingest");
}

async fn metric(store: &MonitoringStore, org: Uuid, name: &str) -> MetricRecord {
    store.metrics(org, None, Some(name), None, 10).await.expect("metrics").remove(0)
}

async fn firing(store: &MonitoringStore, org: Uuid) -> Vec<(String, Severity)> {
    let filter = AlertFilter { firing: Some(true), ..Default::default() };
    let mut out: Vec<(String, Severity)> = store
        .alerts(org, &filter, None, 100)
        .await
        .expect("alerts")
        .into_iter()
        .map(|a| (a.rule, a.severity))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn unresolved(store: &MonitoringStore, org: Uuid) -> usize {
    let all = store.incidents(org, &IncidentFilter::default(), None, 100).await.expect("incidents");
    all.iter().filter(|i| i.state != IncidentState::Resolved).count()
}

#[tokio::test]
async fn thresholds_nodata_and_silent_machines_raise_and_resolve_alerts() {
    for (_db, conn, org) in stores().await {
        let store = conn.monitoring();
        let now = Utc::now().trunc_subsecs(0);
        let load = Threshold::Numeric { comparison: Comparison::Above, warning: Some(0.7), critical: Some(0.9) };
        send(
            &store,
            org,
            "web-01",
            now,
            json!([{"name": "cpu_load", "type": "numeric", "value": 0.5},
            {"name": "nginx_ok", "type": "boolean", "value": true}]),
        )
        .await;
        let cpu = metric(&store, org, "cpu_load").await;
        let nginx = metric(&store, org, "nginx_ok").await;
        store.set_threshold(cpu.id, Some(&load), "user:alice").await.expect("threshold");
        store
            .set_threshold(nginx.id, Some(&Threshold::Expected { expected: json!(true) }), "user:alice")
            .await
            .expect("threshold");
        assert_eq!(metric(&store, org, "cpu_load").await.state, MetricState::Ok);
        assert!(firing(&store, org).await.is_empty());

        // Past the warning level: one warning alert; past the critical one: the same alert, critical.
        send(
            &store,
            org,
            "web-01",
            now + Duration::seconds(60),
            json!([{"name": "cpu_load", "type": "numeric", "value": 0.8}]),
        )
        .await;
        assert_eq!(firing(&store, org).await, [("metric_threshold".to_owned(), Severity::Warning)]);
        let cpu = metric(&store, org, "cpu_load").await;
        assert_eq!((cpu.state, cpu.open_alert_id.is_some()), (MetricState::Warning, true));
        send(
            &store,
            org,
            "web-01",
            now + Duration::seconds(120),
            json!([{"name": "cpu_load", "type": "numeric", "value": 0.95}]),
        )
        .await;
        assert_eq!(firing(&store, org).await, [("metric_threshold".to_owned(), Severity::Critical)]);
        assert_eq!(metric(&store, org, "cpu_load").await.open_alert_id, cpu.open_alert_id, "the same alert escalated");
        let incident = store.incidents(org, &IncidentFilter::default(), None, 10).await.expect("incidents").remove(0);
        assert_eq!(incident.severity, Severity::Critical, "the incident follows its worst alert");
        // A late batch (older than the latest value) changes nothing.
        send(
            &store,
            org,
            "web-01",
            now + Duration::seconds(90),
            json!([{"name": "cpu_load", "type": "numeric", "value": 0.1}]),
        )
        .await;
        assert_eq!(metric(&store, org, "cpu_load").await.state, MetricState::Critical);

        // Another metric of the machine joins the machine's incident (grouping is on by default).
        send(
            &store,
            org,
            "web-01",
            now + Duration::seconds(150),
            json!([{"name": "nginx_ok", "type": "boolean", "value": false}]),
        )
        .await;
        assert_eq!(firing(&store, org).await.len(), 2);
        assert_eq!(unresolved(&store, org).await, 1);

        // Silence: the series go nodata and keep their alerts (never "resolved"); the machine is silent.
        let later = Utc::now() + Duration::minutes(10);
        assert_eq!(store.sweep_metrics(later).await.expect("sweep").changed, 2);
        let cpu = metric(&store, org, "cpu_load").await;
        assert_eq!(cpu.state, MetricState::Nodata);
        assert_eq!(
            firing(&store, org).await,
            [("metric_nodata".to_owned(), Severity::Critical), ("metric_nodata".to_owned(), Severity::Critical)],
            "a critical series that falls silent stays critical"
        );
        assert_eq!(store.sweep_metrics(later).await.expect("again").changed, 0, "a sweep repeated changes nothing");
        assert_eq!(store.sweep_machines(later).await.expect("sweep").changed, 1);
        assert_eq!(store.sweep_machines(later).await.expect("again").changed, 0);
        let rules: Vec<String> = firing(&store, org).await.into_iter().map(|(r, _)| r).collect();
        assert_eq!(rules, ["machine_silent", "metric_nodata", "metric_nodata"]);
        assert_eq!(unresolved(&store, org).await, 1, "one incident for the machine");

        // Heard from again with good values: everything resolves, and the incident by itself.
        let back = now + Duration::seconds(200);
        send(
            &store,
            org,
            "web-01",
            back,
            json!([{"name": "cpu_load", "type": "numeric", "value": 0.2},
            {"name": "nginx_ok", "type": "boolean", "value": true}]),
        )
        .await;
        assert!(firing(&store, org).await.is_empty(), "{:?}", firing(&store, org).await);
        assert_eq!(unresolved(&store, org).await, 0);
        let (alerts, timeline) = store.incident_details(incident.id, 100).await.expect("details");
        assert_eq!(alerts.len(), 3);
        let kinds: Vec<&str> = timeline.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"alert_changed") && kinds.last() == Some(&"resolved"), "{kinds:?}");
        assert_eq!(metric(&store, org, "cpu_load").await.state, MetricState::Ok);

        // Paused by an operator: its alert resolves in their name; unpaused while still bad: a new one.
        send(
            &store,
            org,
            "web-01",
            back + Duration::seconds(60),
            json!([{"name": "cpu_load", "type": "numeric", "value": 0.99}]),
        )
        .await;
        assert_eq!(firing(&store, org).await.len(), 1);
        store.set_metric_flags(cpu.id, None, Some(true), "user:bob").await.expect("pause");
        assert!(firing(&store, org).await.is_empty());
        let resolved = store.alerts(org, &AlertFilter::default(), None, 1).await.expect("alerts").remove(0);
        let (_, timeline) = store.incident_details(resolved.incident_id, 100).await.expect("details");
        assert!(timeline.iter().any(|e| e.kind == "alert_resolved" && e.actor.as_deref() == Some("user:bob")));
        store.set_metric_flags(cpu.id, None, Some(false), "user:bob").await.expect("unpause");
        assert_eq!(firing(&store, org).await, [("metric_threshold".to_owned(), Severity::Critical)]);
        // Removing the threshold resolves it too.
        store.set_threshold(cpu.id, None, "user:bob").await.expect("remove");
        assert!(firing(&store, org).await.is_empty());
        assert!(metric(&store, org, "cpu_load").await.threshold.is_none());

        // Grouping off: a machine's alerts are incidents of their own.
        let settings = ClientSettings { alert_grouping_enabled: false, ..ClientSettings::default() };
        store.replace_settings(org, &settings, "test").await.expect("settings");
        let t0 = Utc::now().trunc_subsecs(0);
        send(&store, org, "db-01", t0, json!([{"name": "disk_free", "type": "numeric", "value": 50}])).await;
        let disk = metric(&store, org, "disk_free").await;
        let low = Threshold::Numeric { comparison: Comparison::Below, warning: Some(20.0), critical: None };
        store.set_threshold(disk.id, Some(&low), "user:alice").await.expect("threshold");
        send(
            &store,
            org,
            "db-01",
            t0 + Duration::seconds(1),
            json!([{"name": "disk_free", "type": "numeric", "value": 10}]),
        )
        .await;
        assert_eq!(firing(&store, org).await, [("metric_threshold".to_owned(), Severity::Warning)]);
        let later = Utc::now() + Duration::minutes(10);
        store.sweep_machines(later).await.expect("sweep");
        assert_eq!(unresolved(&store, org).await, 3, "web-01 silent too, and db-01's two alerts apart");
    }
}
