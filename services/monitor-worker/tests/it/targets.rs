//! HTTP targets through the whole product (`sentinel up`), against real servers on loopback: the
//! seed's curl examples replayed with curl; duplicates (409 with the existing id, also for two
//! concurrent POSTs) and bad fields (422 naming them); every outcome class of a check; and
//! scheduled checks that keep their absolute deadlines, with a slow target beside them.

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sentinel_testkit::product::{self, Api};
use serde_json::{Value, json};

use crate::servers::{self, KNOWN_NAME, TestCa};

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Runs curl with `args`; returns (status code, body).
fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("code"), serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn check(api: &Api, id: &str) -> Value {
    let (status, result) = api.post(&format!("/api/v1/monitoring/targets/{id}/check"), json!({})).await;
    assert_eq!(status, 200, "{result}");
    result
}

async fn target(api: &Api, body: Value) -> String {
    api.create("/api/v1/monitoring/targets", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_validated_deduplicated_and_checked_for_every_outcome() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (http, _) = servers::http().await;
    let dns = servers::dns().await;
    let ca = TestCa::new();
    let now = Utc::now();
    let (good_tls, _) = servers::https(&ca, now - chrono::Duration::days(2), now + chrono::Duration::days(10)).await;
    let (expired_tls, _) = servers::https(&ca, now - chrono::Duration::days(30), now - chrono::Duration::days(3)).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dns_env = dns.to_string();
    let (_sentinel, api) = product::start(tmp.path(), &[("SENTINEL_MONITOR__DNS_SERVER", &dns_env)]).await;
    let base = |path: &str| format!("http://127.0.0.1:{http}{path}");

    // The seed's curl examples, with a key made through the API and the seed's httpbin 500 served here.
    let (status, key) = api.post("/api/v1/api-keys", json!({"name": "seed"})).await;
    assert_eq!(status, 201, "{key}");
    let header = format!("X-API-Key: {}", key["key"].as_str().expect("key"));
    let seed_body = json!({
        "name": "Httpbin 500 (via API)", "url": base("/status/500"), "method": "GET",
        "accepted_status_codes": null, "timeout_seconds": 10, "check_interval_seconds": 60, "is_active": true
    })
    .to_string();
    let create = ["-H", "Content-Type: application/json", "-H", &header, "-X", "POST"];
    let url = format!("{}/api/v1/http-targets", api.base);
    let (status, created) = curl(&[&create[..], &[&url, "-d", &seed_body]].concat());
    assert_eq!(status, 201, "{created}");
    let seed_id = created["id"].as_str().expect("201 -> {\"id\": ...}").to_owned();
    let (status, listed) = curl(&["-H", &header, &url]);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["id"], seed_id.as_str());
    assert_eq!(listed["items"][0]["accepted_status_codes"], Value::Null);
    // Idempotence of a repeated POST: 409 with detail.existing_id.
    let (status, conflict) = curl(&[&create[..], &[&url, "-d", &seed_body]].concat());
    assert_eq!((status, conflict["existing_id"].as_str()), (409, Some(seed_id.as_str())), "{conflict}");
    // URL validation: 422 with an explicit message.
    let ftp = json!({"name": "ftp", "url": "ftp://127.0.0.1/file"}).to_string();
    let (status, problem) = curl(&[&create[..], &[&url, "-d", &ftp]].concat());
    assert_eq!((status, fields(&problem)), (422, vec!["url".to_owned()]), "{problem}");
    assert!(problem["errors"][0]["reason"].as_str().expect("reason").contains("only http and https"), "{problem}");

    // The same URL written differently is the same target; two concurrent POSTs: one 201, one 409.
    let (status, conflict) = api
        .post(
            "/api/v1/monitoring/targets",
            json!({"name": "again", "url": format!("HTTP://127.0.0.1:{http}/status/500")}),
        )
        .await;
    assert_eq!((status, conflict["conflicting_id"].as_str()), (409, Some(seed_id.as_str())), "{conflict}");
    let race = json!({"name": "race", "url": base("/race")});
    let (a, b) = tokio::join!(api.post("/api/v1/http-targets", race.clone()), api.post("/api/v1/http-targets", race));
    let mut codes = [a.0, b.0];
    codes.sort_unstable();
    assert_eq!(codes, [201, 409], "{a:?} {b:?}");
    let winner = if a.0 == 201 { &a.1 } else { &b.1 };
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(loser["existing_id"], winner["id"]);

    // Bad fields, each named.
    let (status, problem) = api
        .post(
            "/api/v1/monitoring/targets",
            json!({"name": "", "url": base("/x"), "method": "FETCH", "timeout_seconds": 30, "check_interval_seconds": 10,
                   "accepted_status_codes": [200, 999], "assertion": {"kind": "regex"}, "server_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let mut named = fields(&problem);
    named.sort();
    assert_eq!(named, ["accepted_status_codes", "assertion", "method", "name", "server_id", "timeout_seconds"]);
    let (status, _) = api.post("/api/v1/monitoring/targets", json!({"name": "x", "url": 5})).await;
    assert_eq!(status, 422);

    // Every outcome of a check, each with its class.
    let cases: Vec<(Value, &str, Option<&str>, Option<u64>)> = vec![
        (
            json!({"url": base("/ok"), "assertion": {"kind": "json_path", "path": "$.db.latency_ms", "equals": 3}}),
            "up",
            None,
            Some(200),
        ),
        (json!({"url": base("/fail")}), "down", Some("status"), Some(500)),
        (
            json!({"url": base("/fail?as-expected"), "accepted_status_codes": [500], "method": "POST", "body": "{}"}),
            "up",
            None,
            Some(500),
        ),
        (json!({"url": base("/hang"), "timeout_seconds": 1}), "down", Some("timeout"), None),
        (json!({"url": base("/redirect")}), "up", None, Some(200)),
        (json!({"url": base("/redirect?stay"), "follow_redirects": false}), "down", Some("status"), Some(302)),
        (
            json!({"url": base("/ok?keyword"), "assertion": {"kind": "keyword", "value": "healthy"}}),
            "down",
            Some("assertion"),
            Some(200),
        ),
        (json!({"url": base("/slow"), "max_response_ms": 100}), "down", Some("response_time"), Some(200)),
        (json!({"url": format!("http://{KNOWN_NAME}:{http}/ok")}), "up", None, Some(200)),
        (json!({"url": format!("http://nowhere.sentinel.test:{http}/ok")}), "down", Some("dns"), None),
        (
            json!({"url": format!("http://127.0.0.1:{}/ok", sentinel_testkit::free_port())}),
            "down",
            Some("connect"),
            None,
        ),
        (
            json!({"url": format!("https://127.0.0.1:{good_tls}/ok"), "ca_certificate": ca.pem, "tls_expiry_warning_days": 14}),
            "up",
            None,
            Some(200),
        ),
        (json!({"url": format!("https://127.0.0.1:{good_tls}/ok?untrusted")}), "down", Some("tls"), None),
        (
            json!({"url": format!("https://127.0.0.1:{expired_tls}/ok"), "ca_certificate": ca.pem}),
            "down",
            Some("tls"),
            None,
        ),
    ];
    for (i, (mut body, status, class, code)) in cases.into_iter().enumerate() {
        body["name"] = json!(format!("case {i}"));
        body["is_active"] = json!(false);
        let id = target(&api, body.clone()).await;
        let result = check(&api, &id).await;
        assert_eq!(result["status"], status, "{body} → {result}");
        assert_eq!(result["error_class"].as_str(), class, "{body} → {result}");
        assert_eq!(result["status_code"].as_u64(), code, "{body} → {result}");
        if class.is_some() {
            assert!(result["message"].as_str().is_some_and(|m| !m.is_empty()), "{result}");
        }
        let (_, page) = api.get(&format!("/api/v1/monitoring/targets/{id}/results")).await;
        assert_eq!(page["items"][0]["manual"], true, "{page}");
        assert_eq!(page["items"][0]["status"], status);
    }
    // The certificates' expiry is read during the handshake, also when the handshake fails on it.
    let (_, page) = api.get("/api/v1/monitoring/targets?q=case%2011").await;
    let good = &page["items"][0]["state"];
    let expires: DateTime<Utc> = good["cert_expires_at"].as_str().expect("expiry").parse().expect("time");
    assert!((expires - (now + chrono::Duration::days(10))).num_days().abs() <= 1, "{good}");
    assert_eq!(good["cert_expiring"], true, "expires in 10 days, warning at 14: {good}");
    let (_, page) = api.get("/api/v1/monitoring/targets?q=case%2013").await;
    let expired: DateTime<Utc> =
        page["items"][0]["state"]["cert_expires_at"].as_str().expect("expiry").parse().expect("time");
    assert!(expired < now, "{page}");
    assert!(
        page["items"][0]["state"]["message"].as_str().expect("message").to_lowercase().contains("expired"),
        "{page}"
    );

    // Lists are paginated and filtered on the server; replace and delete.
    let (_, first) = api.get("/api/v1/monitoring/targets?limit=5").await;
    assert_eq!(first["items"].as_array().expect("items").len(), 5);
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, second) = api.get(&format!("/api/v1/monitoring/targets?limit=100&cursor={cursor}")).await;
    assert!(
        second["items"].as_array().expect("items").iter().all(|t| first["items"]
            .as_array()
            .expect("f")
            .iter()
            .all(|f| f["id"] != t["id"]))
    );
    let (_, down) = api.get("/api/v1/monitoring/targets?status=down&limit=100").await;
    assert!(down["items"].as_array().expect("items").iter().all(|t| t["state"]["status"] == "down"));
    assert!(down["items"].as_array().expect("items").len() >= 8, "{down}");
    let (status, bad) = api.get("/api/v1/monitoring/targets?status=sideways").await;
    assert_eq!((status, fields(&bad)), (422, vec!["status".to_owned()]));
    let put = |url: String| {
        let api = &api;
        let path = format!("/api/v1/monitoring/targets/{seed_id}");
        async move { api.send(reqwest::Method::PUT, &path, Some(json!({"name": "renamed", "url": url}))).await }
    };
    // Onto a URL another target checks: 409 naming it.
    let (status, conflict) = put(base("/ok")).await;
    assert_eq!(status, 409, "{conflict}");
    assert!(conflict["detail"].as_str().expect("detail").contains("case 0"), "{conflict}");
    let (status, replaced) = put(base("/renamed")).await;
    assert_eq!((status, replaced["name"].as_str()), (200, Some("renamed")), "{replaced}");
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/api/v1/monitoring/targets/{seed_id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/api/v1/monitoring/targets/{seed_id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_checks_keep_absolute_deadlines_beside_a_hanging_target() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (http, hits) = servers::http().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_sentinel, api) =
        product::start(tmp.path(), &[("SENTINEL_SCHEDULER__HTTP_CHECK_DISPATCH_INTERVAL_SECS", "1")]).await;
    let fast = target(
        &api,
        json!({"name": "fast", "url": format!("http://127.0.0.1:{http}/ok"), "check_interval_seconds": 5}),
    )
    .await;
    let hang = target(
        &api,
        json!({"name": "hang", "url": format!("http://127.0.0.1:{http}/hang"), "check_interval_seconds": 5, "timeout_seconds": 4}),
    )
    .await;
    let results_of = |id: String| {
        let api = &api;
        async move {
            let (_, page) = api.get(&format!("/api/v1/monitoring/targets/{id}/results?limit=100")).await;
            let mut dues: Vec<DateTime<Utc>> = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|r| r["due_at"].as_str().expect("due").parse().expect("time"))
                .collect();
            dues.sort();
            (dues, page)
        }
    };
    let got = sentinel_testkit::eventually(Duration::from_secs(60), || {
        let f = results_of(fast.clone());
        let h = results_of(hang.clone());
        async move {
            let ((f, _), (h, _)) = tokio::join!(f, h);
            (f.len() >= 4 && h.len() >= 3).then_some((f, h))
        }
    })
    .await;
    let (fast_dues, hang_dues) = got.expect("both targets checked on schedule");
    for dues in [&fast_dues, &hang_dues] {
        for pair in dues.windows(2) {
            // Absolute deadlines: each the previous plus the interval, never pushed back by a slow check.
            assert_eq!((pair[1] - pair[0]).num_milliseconds(), 5000, "{dues:?}");
        }
    }
    let (_, page) = results_of(hang.clone()).await;
    assert!(page["items"].as_array().expect("items").iter().all(|r| r["error_class"] == "timeout"), "{page}");
    let (_, fast_page) = results_of(fast.clone()).await;
    assert!(fast_page["items"].as_array().expect("items").iter().all(|r| r["status"] == "up" && r["manual"] == false));
    // Each deadline was one request (no double runs).
    assert!(hits.of("/ok") >= fast_dues.len() as u64 && hits.of("/ok") <= fast_dues.len() as u64 + 1);
    // The detail shows uptime over each window.
    let (_, detail) = api.get(&format!("/api/v1/monitoring/targets/{fast}")).await;
    let windows: Vec<&str> =
        detail["uptime"].as_array().expect("uptime").iter().map(|u| u["window"].as_str().expect("w")).collect();
    assert_eq!(windows, ["24h", "7d", "30d", "1y"]);
    assert_eq!(detail["uptime"][0]["uptime_percent"], 100.0, "{detail}");
    let (_, detail) = api.get(&format!("/api/v1/monitoring/targets/{hang}")).await;
    assert_eq!(detail["uptime"][0]["uptime_percent"], 0.0, "{detail}");
    assert!(detail["state"]["consecutive_failures"].as_u64().expect("count") >= 3, "{detail}");
}
