//! How a notification reaches a receiver: the generic webhook (the payload as JSON with an
//! `Idempotency-Key` header and an HMAC-SHA256 signature over the timestamp and body), Slack's
//! incoming webhooks (its message format), and email over SMTP (lettre; STARTTLS, TLS or plain for
//! loopback relays, with authentication when a user name is set).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sentinel_jobs::db::notify::Delivery;
use sentinel_jobs::domain::notify::{ChannelConfig, SmtpSecurity};
use serde_json::Value;

/// How long a receiver gets to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Alerts listed in one Slack message or email (the rest are counted).
const LISTED: usize = 20;

/// A receiver's acceptance.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// HTTP status or SMTP reply code.
    pub status: Option<i32>,
    /// What the receiver answered (first 500 bytes).
    pub answer: String,
}

/// A receiver's refusal or an unreachable receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: Option<i32>,
    pub error: String,
}

/// The client notifications are posted with: the system's trust roots, no redirects.
pub(super) fn http_client() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SEND_TIMEOUT)
        .user_agent(concat!("Sentinel-Notifier/", env!("CARGO_PKG_VERSION")));
    if let Ok(tls) = tls {
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder.build().unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The signature header's value: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

/// The body a webhook receives: the stored payload with the delivery's identity.
fn webhook_body(d: &Delivery) -> Value {
    let mut body = d.payload.clone();
    if let Some(map) = body.as_object_mut() {
        map.insert("idempotency_key".into(), Value::String(d.idempotency_key.clone()));
        map.insert("notification_id".into(), Value::String(d.id.to_string()));
    }
    body
}

/// One line per alert: `FIRING critical web-1 is down — connect: refused`.
fn lines(payload: &Value) -> (Vec<String>, usize) {
    let alerts = payload["alerts"].as_array().cloned().unwrap_or_default();
    let shown = alerts
        .iter()
        .take(LISTED)
        .map(|a| {
            let mut line = format!(
                "{} {} {}",
                a["status"].as_str().unwrap_or("").to_uppercase(),
                a["severity"].as_str().unwrap_or(""),
                a["name"].as_str().or(a["rule"].as_str()).unwrap_or("alert")
            );
            if let Some(m) = a["message"].as_str().filter(|m| !m.is_empty()) {
                line.push_str(" — ");
                line.push_str(m);
            }
            line
        })
        .collect();
    (shown, alerts.len().saturating_sub(LISTED))
}

fn text_of(d: &Delivery) -> (String, String) {
    let title = d.payload["title"].as_str().unwrap_or("Sentinel notification").to_owned();
    let (shown, more) = lines(&d.payload);
    let mut text = shown.join("\n");
    if more > 0 {
        let _ = write!(text, "\n… and {more} more");
    }
    let _ = write!(text, "\n\nNotification key: {}", d.idempotency_key);
    (title, text)
}

async fn post(req: reqwest::RequestBuilder) -> Result<Sent, Failure> {
    // Without the URL: a Slack webhook URL is a credential, and errors reach logs and the log API.
    let response = req.send().await.map_err(|e| Failure { status: None, error: describe(&e.without_url()) })?;
    let status = i32::from(response.status().as_u16());
    let ok = response.status().is_success();
    let answer: String = response.text().await.unwrap_or_default().chars().take(500).collect();
    if ok {
        Ok(Sent { status: Some(status), answer })
    } else {
        Err(Failure { status: Some(status), error: format!("the receiver answered {status}: {answer}") })
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(msg, ": {s}");
        source = s.source();
    }
    msg
}

/// Sends `d` through a channel configured as `config` with its opened credential.
pub async fn send(
    client: &reqwest::Client,
    config: &ChannelConfig,
    secret: Option<&str>,
    d: &Delivery,
) -> Result<Sent, Failure> {
    let missing = |what: &str| Failure { status: None, error: format!("the channel has no {what}") };
    match config {
        ChannelConfig::Webhook { url } => {
            let body = serde_json::to_vec(&webhook_body(d)).unwrap_or_default();
            let timestamp = chrono::Utc::now().timestamp();
            let mut req = client
                .post(url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &d.idempotency_key)
                .header("X-Sentinel-Timestamp", timestamp.to_string());
            if let Some(secret) = secret {
                req = req.header("X-Sentinel-Signature", signature(secret, timestamp, &body));
            }
            post(req.body(body)).await
        }
        ChannelConfig::Slack {} => {
            let url = secret.ok_or_else(|| missing("webhook URL"))?;
            let (title, text) = text_of(d);
            let body = serde_json::json!({
                "text": format!("*{title}*\n{text}"),
                "blocks": [
                    { "type": "header", "text": { "type": "plain_text", "text": title.chars().take(150).collect::<String>() } },
                    { "type": "section", "text": { "type": "mrkdwn", "text": text.chars().take(3000).collect::<String>() } },
                ],
            });
            post(client.post(url).header("Idempotency-Key", &d.idempotency_key).json(&body)).await
        }
        ChannelConfig::Email { smtp_host, smtp_port, security, username, from, to } => {
            let (title, text) = text_of(d);
            email(smtp_host, *smtp_port, *security, username.as_deref(), secret, from, to, &title, &text, d).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn email(
    host: &str,
    port: u16,
    security: SmtpSecurity,
    username: Option<&str>,
    password: Option<&str>,
    from: &str,
    to: &[String],
    subject: &str,
    text: &str,
    d: &Delivery,
) -> Result<Sent, Failure> {
    let fail = |error: String| Failure { status: None, error };
    let mailbox = |a: &str| a.parse::<Mailbox>().map_err(|e| fail(format!("address {a:?}: {e}")));
    let mut builder = Message::builder()
        .from(mailbox(from)?)
        .subject(subject)
        // The idempotency key names the message: a resend after a crash carries the same Message-ID.
        .message_id(Some(format!("<{}@sentinel>", d.idempotency_key.replace(':', "."))))
        .header(ContentType::TEXT_PLAIN);
    for a in to {
        builder = builder.to(mailbox(a)?);
    }
    let message = builder.body(text.to_owned()).map_err(|e| fail(format!("message not built: {e}")))?;
    let transport = match security {
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
    }
    .map_err(|e| fail(format!("SMTP relay {host}: {e}")))?;
    let mut transport = transport.port(port).timeout(Some(SEND_TIMEOUT));
    if let Some(user) = username {
        transport = transport.credentials(Credentials::new(user.to_owned(), password.unwrap_or_default().to_owned()));
    }
    match transport.build().send(message).await {
        Ok(response) => Ok(Sent {
            status: Some(i32::from(u16::from(response.code()))),
            answer: response.message().collect::<Vec<_>>().join(" ").chars().take(500).collect(),
        }),
        Err(e) => Err(Failure { status: e.status().map(|c| i32::from(u16::from(c))), error: format!("SMTP: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // RFC 4231 test case 2 key and data, framed as `<timestamp>.<body>`: checked against
        // `printf '1700000000.what do ya want for nothing?' | openssl dgst -sha256 -hmac Jefe`.
        let sig = signature("Jefe", 1_700_000_000, b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e");
    }
}
