//! Metric ingest through the product: the seed's curl example replayed with curl and an
//! ingest-scoped key; a replayed `X-Ingest-Id` answered as the first time and counted once; bad
//! bodies a 422 per field, a 10 MB body a 413; machines and metrics created on first sight, listed,
//! read with their latest values, a series over a range, alerting and pause switched.

use std::process::Command;

use serde_json::{Value, json};

pub(crate) fn curl(args: &[&str]) -> (u16, Value, String) {
    let out = Command::new("curl").args(["-s", "-D", "-", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').expect("status line");
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or(("", rest));
    (
        code.trim().parse().expect("code"),
        serde_json::from_str(body).unwrap_or(Value::Null),
        headers.to_ascii_lowercase(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_ingested_once_and_machines_and_metrics_appear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_sentinel, api) = sentinel_testkit::product::start(tmp.path(), &[]).await;
    let (status, key) = api.post("/api/v1/api-keys", json!({"name": "agent", "scope": "ingest"})).await;
    assert_eq!(status, 201, "{key}");
    let key = format!("X-API-Key: {}", key["key"].as_str().expect("key"));
    let url = format!("{}/api/v1/ingest/metrics", api.base);
    // The seed's example, verbatim but for the host and the key.
    let body = r#"{
    "machine": {"hostname":"web-01", "os":"linux"},
    "metrics": [
      {"name":"cpu_load","type":"numeric","value":0.42,"unit":"ratio"},
      {"name":"service_nginx_ok","type":"boolean","value":true},
      {"name":"version","type":"string","value":"1.0.0"}
    ],
    "sent_at": "2025-01-01T00:00:00Z"
  }"#;
    let seed = |id: &str| {
        curl(&[
            "-X",
            "POST",
            &url,
            "-H",
            &key,
            "-H",
            &format!("X-Ingest-Id: {id}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
    };
    let (status, first, headers) = seed("11111111-1111-1111-1111-111111111111");
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["accepted"], 3, "{first}");
    assert!(!headers.contains("idempotency-replayed"));
    // Replayed twice: answered as the first time, nothing counted again.
    for _ in 0..2 {
        let (status, again, headers) = seed("11111111-1111-1111-1111-111111111111");
        assert_eq!((status, &again), (202, &first));
        assert!(headers.contains("idempotency-replayed: true"), "{headers}");
    }
    let machine = first["machine_id"].as_str().expect("machine id").to_owned();
    let (status, detail) = api.get(&format!("/api/v1/monitoring/machines/{machine}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!((detail["hostname"].as_str(), detail["os"].as_str()), (Some("web-01"), Some("linux")));
    let metrics = detail["metrics"].as_array().expect("metrics");
    let value =
        |name: &str| metrics.iter().find(|m| m["name"] == name).map(|m| m["last_value"].clone()).expect("metric");
    assert_eq!(
        (value("cpu_load"), value("service_nginx_ok"), value("version")),
        (json!(0.42), json!(true), json!("1.0.0"))
    );
    let cpu = metrics.iter().find(|m| m["name"] == "cpu_load").expect("cpu")["id"].as_str().expect("id").to_owned();
    let (_, series) = api
        .get(&format!("/api/v1/monitoring/metrics/{cpu}/series?from=2024-12-31T00:00:00Z&to=2025-01-02T00:00:00Z"))
        .await;
    assert_eq!(series["points"].as_array().expect("points").len(), 1, "one sample for three posts: {series}");
    // A new batch with a new key counts.
    let later = body.replace("2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z").replace("0.42", "0.97");
    let (status, _, _) = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        &key,
        "-H",
        "X-Ingest-Id: second",
        "-H",
        "Content-Type: application/json",
        "-d",
        &later,
    ]);
    assert_eq!(status, 202);
    let (_, series) = api
        .get(&format!("/api/v1/monitoring/metrics/{cpu}/series?from=2024-12-31T00:00:00Z&to=2025-01-02T00:00:00Z"))
        .await;
    let points: Vec<&Value> = series["points"].as_array().expect("points").iter().map(|p| &p["value"]).collect();
    assert_eq!(points, [&json!(0.42), &json!(0.97)]);
    // Also at /api/v1/monitoring/metrics; the machine is the same one (by hostname).
    let (status, _, _) = curl(&[
        "-X",
        "POST",
        &format!("{}/api/v1/monitoring/metrics", api.base),
        "-H",
        &key,
        "-H",
        "Content-Type: application/json",
        "-d",
        &body.replace("2025-01-01T00:00:00Z", "2025-01-01T00:02:00Z"),
    ]);
    assert_eq!(status, 202);
    let (_, machines) = api.get("/api/v1/monitoring/machines").await;
    assert_eq!(machines["items"].as_array().expect("items").len(), 1, "{machines}");
    assert_eq!(machines["items"][0]["heartbeat"]["state"], "ok");
    let (_, listed) = api.get(&format!("/api/v1/monitoring/machines/{machine}/metrics?limit=2")).await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 2);
    assert!(listed["next_cursor"].is_string());
    let (_, by_name) = api.get("/api/v1/monitoring/metrics?name=version").await;
    assert_eq!(by_name["items"][0]["type"], "string", "{by_name}");

    // Bad bodies: a 422 naming each field; a 10 MB body: 413. The ingest key can do nothing else.
    let (status, problem, _) = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        &key,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"machine": {"hostname": ""}, "metrics": [{"name": "cpu", "type": "numeric", "value": "hot"}, {"name": "x", "type": "gauge", "value": 1}], "sent_at": "2025-01-01T00:00:00Z"}"#,
    ]);
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().expect("f")).collect();
    assert_eq!(fields, ["machine.hostname", "metrics[0].value", "metrics[1].type"]);
    let (status, problem, _) =
        curl(&["-X", "POST", &url, "-H", &key, "-H", "Content-Type: application/json", "-d", r#"{"machine": {}}"#]);
    assert_eq!(status, 422, "{problem}");
    let (status, _, _) = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        &key,
        "-H",
        "X-Ingest-Id: has space",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    ]);
    assert_eq!(status, 422);
    let huge = tmp.path().join("huge.json");
    std::fs::write(&huge, format!("{{\"pad\": \"{}\"}}", "x".repeat(10 << 20))).expect("write");
    let (status, _, _) = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        &key,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", huge.display()),
    ]);
    assert_eq!(status, 413);
    let (status, _, _) = curl(&["-H", &key, &format!("{}/api/v1/monitoring/targets", api.base)]);
    assert_eq!(status, 403);
    let (status, _, _) =
        curl(&["-X", "POST", &url, "-H", "X-API-Key: wrong", "-H", "Content-Type: application/json", "-d", body]);
    assert_eq!(status, 401);

    // The seed's toggles.
    let (status, patched) = api
        .send(reqwest::Method::PATCH, &format!("/api/v1/monitoring/metrics/{cpu}"), Some(json!({"alerting": false})))
        .await;
    assert_eq!(
        (status, patched["alerting"].as_bool(), patched["paused"].as_bool()),
        (200, Some(false), Some(false)),
        "{patched}"
    );
    let (_, patched) = api
        .send(reqwest::Method::PATCH, &format!("/api/v1/monitoring/metrics/{cpu}"), Some(json!({"paused": true})))
        .await;
    assert_eq!((patched["alerting"].as_bool(), patched["paused"].as_bool()), (Some(false), Some(true)));
    let (status, _) =
        api.send(reqwest::Method::PATCH, &format!("/api/v1/monitoring/metrics/{cpu}"), Some(json!({}))).await;
    assert_eq!(status, 422);

    // Thresholds: each bad one a 422 naming its field, an unknown metric a 404.
    let nginx =
        metrics.iter().find(|m| m["name"] == "service_nginx_ok").expect("nginx")["id"].as_str().expect("id").to_owned();
    let put_threshold = |metric: &str, body: Value| {
        let path = format!("/api/v1/monitoring/thresholds/{metric}");
        let api = &api;
        async move { api.send(reqwest::Method::PUT, &path, Some(body)).await }
    };
    for (metric, body, field) in [
        (&nginx, json!({"kind": "numeric", "warning": 1}), "kind"),
        (&nginx, json!({"kind": "expected", "expected": "yes"}), "expected"),
        (&nginx, json!({"kind": "expected", "expected": true, "warning": 1}), "warning"),
        (&cpu, json!({"kind": "numeric", "warning": 0.9, "critical": 0.7}), "critical"),
        (&cpu, json!({"kind": "numeric"}), "warning"),
    ] {
        let (status, problem) = put_threshold(metric, body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let (status, _) = put_threshold(&uuid::Uuid::new_v4().to_string(), json!({"kind": "numeric", "warning": 1})).await;
    assert_eq!(status, 404);
    // The seed's path sets it too; a value that breaks it, arriving next, opens an alert.
    let (status, set) = api
        .post(
            &format!("/api/v1/monitoring/metrics/{nginx}/thresholds/default"),
            json!({"kind": "expected", "expected": true}),
        )
        .await;
    assert_eq!((status, &set["threshold"]), (200, &json!({"kind": "expected", "expected": true})), "{set}");
    // Sent now: a sample a year old would be `nodata` rather than a level.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let broken = body.replace("2025-01-01T00:00:00Z", &now).replace("\"value\":true", "\"value\":false");
    let (status, _, _) = curl(&["-X", "POST", &url, "-H", &key, "-H", "Content-Type: application/json", "-d", &broken]);
    assert_eq!(status, 202);
    let (_, alerts) = api.get("/api/v1/monitoring/alerts?state=firing").await;
    let alerts = alerts["items"].as_array().expect("alerts").clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0]["rule"].as_str(), alerts[0]["severity"].as_str()),
        (Some("metric_threshold"), Some("critical"))
    );
    let (_, listed) = api.get("/api/v1/monitoring/thresholds").await;
    let listed = listed["items"].as_array().expect("items").clone();
    assert_eq!((listed.len(), listed[0]["state"].as_str()), (1, Some("critical")), "{listed:?}");
    // Removed: its alert resolves; removing it again is a 404.
    let path = format!("/api/v1/monitoring/thresholds/{nginx}");
    assert_eq!(api.send(reqwest::Method::DELETE, &path, None).await.0, 204);
    assert_eq!(api.send(reqwest::Method::DELETE, &path, None).await.0, 404);
    let (_, alerts) = api.get("/api/v1/monitoring/alerts?state=firing").await;
    assert_eq!(alerts["items"].as_array().map(Vec::len), Some(0), "{alerts}");
}
