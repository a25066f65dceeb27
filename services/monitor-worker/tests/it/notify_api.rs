//! Notifications through `sentinel up` to real receivers on loopback: channels by API (each bad
//! field a 422, credentials never shown), the test action answering with what the receiver said, a
//! heartbeat failure paged to a webhook (signed, with its idempotency key), Slack and email (an
//! aiosmtpd sink), a receiver that refuses the "resolved" until it recovers (retried with backoff,
//! delivered once), the notification log, silences and maintenance windows.

use std::time::Duration;

use sentinel_testkit::receivers::{HttpReceiver, Received, SmtpSink};
use serde_json::{Value, json};

use crate::ingest::curl;

const SECRET: &str = "a-webhook-signing-secret-0123456789";

fn signed_right(r: &Received) -> bool {
    let (Some(ts), Some(sig)) = (r.header("x-sentinel-timestamp"), r.header("x-sentinel-signature")) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let hex: String = ring::hmac::sign(&key, &signed).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    sig == format!("sha256={hex}")
}

async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hooks_with_status(receiver: &HttpReceiver, status: &str) -> Vec<Received> {
    receiver.accepted("/hook").into_iter().filter(|r| r.json()["status"] == status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_webhook_slack_and_email_once_through_a_refusing_receiver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let receiver = HttpReceiver::start().await;
    let smtp = SmtpSink::start(tmp.path()).await;
    let env = [("SENTINEL_MONITOR__NOTIFY_EVALUATE_MS", "200"), ("SENTINEL_MONITOR__NOTIFY_MAX_BACKOFF_SECS", "2")];
    let (_sentinel, api) = sentinel_testkit::product::start(tmp.path(), &env).await;
    let hook_url = format!("{}/hook", receiver.base);

    for (body, field) in [
        (json!({"name": "x", "kind": "pager"}), "kind"),
        (json!({"name": "x", "kind": "webhook"}), "url"),
        (json!({"name": "x", "kind": "webhook", "url": "ftp://127.0.0.1/x"}), "url"),
        (json!({"name": "x", "kind": "webhook", "url": hook_url, "signing_secret": "short"}), "signing_secret"),
        (json!({"name": "x", "kind": "slack"}), "webhook_url"),
        (json!({"name": "x", "kind": "slack", "webhook_url": hook_url, "url": hook_url}), "url"),
        (json!({"name": "x", "kind": "email", "smtp_host": "127.0.0.1", "from": "a@b.c", "to": ["nope"]}), "to[0]"),
    ] {
        let (status, problem) = api.post("/api/v1/monitoring/channels", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }

    let hook = api
        .create(
            "/api/v1/monitoring/channels",
            json!({"name": "ops hook", "kind": "webhook", "url": hook_url, "signing_secret": SECRET}),
        )
        .await;
    let (status, _) =
        api.post("/api/v1/monitoring/channels", json!({"name": "ops hook", "kind": "webhook", "url": hook_url})).await;
    assert_eq!(status, 409, "a taken name");
    let (_, read) = api.get(&format!("/api/v1/monitoring/channels/{hook}")).await;
    assert_eq!((read["has_secret"].clone(), read["settings"]["url"].clone()), (json!(true), json!(hook_url)));
    assert!(!read.to_string().contains(SECRET), "the signing secret is never returned: {read}");
    // Without a signing secret, one is made and shown this once.
    let (status, generated) =
        api.post("/api/v1/monitoring/channels", json!({"name": "spare", "kind": "webhook", "url": hook_url})).await;
    assert_eq!(status, 201, "{generated}");
    let made = generated["signing_secret"].as_str().expect("shown once").to_owned();
    let spare = generated["id"].as_str().expect("id").to_owned();
    let (_, again) = api.get(&format!("/api/v1/monitoring/channels/{spare}")).await;
    assert!(again.get("signing_secret").is_none() && !again.to_string().contains(&made));
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/api/v1/monitoring/channels/{spare}"), None).await;
    assert_eq!(status, 204);
    let slack_url = format!("{}/slack", receiver.base);
    let slack = api
        .create("/api/v1/monitoring/channels", json!({"name": "slack", "kind": "slack", "webhook_url": slack_url}))
        .await;
    let (_, read) = api.get(&format!("/api/v1/monitoring/channels/{slack}")).await;
    assert!(!read.to_string().contains(&slack_url), "a Slack URL is a credential: {read}");
    let email = api
        .create(
            "/api/v1/monitoring/channels",
            json!({"name": "mail", "kind": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                   "security": "none", "from": "sentinel@example.test", "to": ["oncall@example.test", "lead@example.test"]}),
        )
        .await;

    // The test action sends now and says what the receiver answered.
    let (status, tested) = api.post(&format!("/api/v1/monitoring/channels/{hook}/test"), json!({})).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!((tested["delivered"].clone(), tested["status"].clone()), (json!(true), json!(200)), "{tested}");
    let test_hit = receiver.accepted("/hook").pop().expect("the test arrived");
    assert!(signed_right(&test_hit), "signature of {:?}", test_hit.headers);
    assert!(test_hit.header("idempotency-key").is_some_and(|k| k.starts_with("test:")));
    let (status, tested) = api.post(&format!("/api/v1/monitoring/channels/{email}/test"), json!({})).await;
    assert_eq!((status, tested["delivered"].clone()), (200, json!(true)), "{tested}");
    receiver.answer(500);
    let (_, refused) = api.post(&format!("/api/v1/monitoring/channels/{slack}/test"), json!({})).await;
    assert_eq!((refused["delivered"].clone(), refused["status"].clone()), (json!(false), json!(500)), "{refused}");
    receiver.answer(200);
    // An unreachable Slack URL: the error says so without the URL (it is the credential).
    let dead = api
        .create(
            "/api/v1/monitoring/channels",
            json!({"name": "dead slack", "kind": "slack", "webhook_url": "http://127.0.0.1:9/services/T0/B0/s3cr3t-path"}),
        )
        .await;
    let (_, failed) = api.post(&format!("/api/v1/monitoring/channels/{dead}/test"), json!({})).await;
    assert_eq!(failed["delivered"], false, "{failed}");
    assert!(!failed.to_string().contains("s3cr3t-path"), "{failed}");
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/api/v1/monitoring/channels/{dead}"), None).await;
    assert_eq!(status, 204);

    // Page at once, regroup every second; a policy naming a channel that does not exist is refused.
    let (status, problem) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/monitoring/notification-policy",
            Some(json!({"channels": [uuid::Uuid::now_v7()]})),
        )
        .await;
    assert_eq!((status, problem["errors"][0]["field"].clone()), (422, json!("channels[0]")), "{problem}");
    let policy = json!({"group_wait_seconds": 0, "group_interval_seconds": 1, "repeat_interval_seconds": 3600});
    let (status, saved) = api.send(reqwest::Method::PUT, "/api/v1/monitoring/notification-policy", Some(policy)).await;
    assert_eq!((status, saved["is_default"].clone()), (200, json!(false)), "{saved}");

    // A scheduled job reports a failure: its alert is paged to every channel.
    let (_, check) =
        api.post("/api/v1/monitoring/heartbeats", json!({"name": "nightly dump", "period_seconds": 3600})).await;
    let ping = check["ping_url"].as_str().expect("ping url").to_owned();
    assert_eq!(curl(&[&format!("{ping}/fail")]).0, 200);
    let firing = until("the firing webhook", 20, async || hooks_with_status(&receiver, "firing").pop()).await;
    assert!(signed_right(&firing), "signature of {:?}", firing.headers);
    let body = firing.json();
    assert_eq!(body["alerts"][0]["rule"], "heartbeat_failed", "{body}");
    assert_eq!(body["idempotency_key"].as_str(), firing.header("idempotency-key"));
    let slack_hit = until("the Slack message", 20, async || receiver.accepted("/slack").pop()).await;
    assert!(slack_hit.json()["text"].as_str().expect("text").contains("nightly dump"), "{}", slack_hit.json());
    let mail = until("the email", 20, async || smtp.mails().into_iter().find(|m| m.contains("[FIRING]"))).await;
    assert!(mail.contains("oncall@example.test") && mail.contains("nightly dump"), "{mail}");

    // The receiver refuses everything; the job succeeds: the "resolved" is retried until accepted.
    receiver.answer(503);
    assert_eq!(curl(&[&ping]).0, 200);
    let log = until("a refused attempt in the log", 20, async || {
        let (_, page) = api.get(&format!("/api/v1/monitoring/notifications?channel_id={hook}&state=pending")).await;
        page["items"].as_array().and_then(|i| i.first().cloned()).filter(|n| n["last_status"] == 503)
    })
    .await;
    assert_eq!(log["transition"], "resolved", "{log}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    receiver.answer(200);
    let resolved = until("the resolved webhook", 20, async || hooks_with_status(&receiver, "resolved").pop()).await;
    assert!(signed_right(&resolved));
    // Once per key: the test, the firing and the resolved; the refused attempts carried the same key.
    let accepted = receiver.accepted("/hook");
    let mut keys: Vec<&str> = accepted.iter().filter_map(|r| r.header("idempotency-key")).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((accepted.len(), keys.len()), (3, 3), "{keys:?}");
    let refused: Vec<Received> =
        receiver.received().into_iter().filter(|r| r.path == "/hook" && r.answered == 503).collect();
    assert!(
        !refused.is_empty()
            && refused.iter().all(|r| r.header("idempotency-key") == resolved.header("idempotency-key"))
    );

    let (_, page) = api.get(&format!("/api/v1/monitoring/notifications?channel_id={hook}")).await;
    let transitions: Vec<(Value, Value)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| (n["transition"].clone(), n["state"].clone()))
        .collect();
    assert_eq!(
        transitions,
        [
            (json!("resolved"), json!("delivered")),
            (json!("firing"), json!("delivered")),
            (json!("test"), json!("delivered"))
        ]
    );
    assert!(page["items"][0]["attempts"].as_i64().expect("attempts") >= 2);

    // Silences and maintenance windows.
    let (status, problem) = api
        .post("/api/v1/monitoring/silences", json!({"matchers": [], "ends_at": "2099-01-01T00:00:00Z", "comment": "x"}))
        .await;
    assert_eq!((status, problem["errors"][0]["field"].clone()), (422, json!("matchers")), "{problem}");
    let silence = api
        .create(
            "/api/v1/monitoring/silences",
            json!({"matchers": [{"label": "source", "op": "=", "value": "heartbeat"}], "ends_at": "2099-01-01T00:00:00Z", "comment": "migrating the dump job"}),
        )
        .await;
    let (_, ended) = api.send(reqwest::Method::DELETE, &format!("/api/v1/monitoring/silences/{silence}"), None).await;
    assert_eq!(ended["active"], false, "{ended}");
    let (_, current) = api.get("/api/v1/monitoring/silences").await;
    assert_eq!(current["items"], json!([]));
    let (_, history) = api.get("/api/v1/monitoring/silences?include_ended=true").await;
    assert_eq!(history["items"][0]["created_by"].as_str().map(|s| !s.is_empty()), Some(true), "{history}");
    let (status, problem) = api
        .post(
            "/api/v1/monitoring/maintenance-windows",
            json!({"name": "w", "cron": "0 3 31 2 *", "duration_minutes": 30}),
        )
        .await;
    assert_eq!((status, problem["errors"][0]["field"].clone()), (422, json!("cron")), "{problem}");
    let (status, window) = api
        .post(
            "/api/v1/monitoring/maintenance-windows",
            json!({"name": "Sunday patching", "cron": "0 3 * * SUN", "timezone": "Europe/Berlin", "duration_minutes": 120}),
        )
        .await;
    assert_eq!((status, window["timezone"].clone()), (201, json!("Europe/Berlin")), "{window}");
}
