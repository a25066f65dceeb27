//! Notifications' vocabulary: channels (email, Slack, webhook) and what makes one valid, the labels
//! of an alert that routing matches on, the routing policy with Alertmanager's timers, silences and
//! maintenance windows, and the pure planning of a group's next notification. No I/O.

pub mod groups;
pub mod routing;

use serde::{Deserialize, Serialize};

use crate::backups::FieldProblem;

pub use groups::{GroupPlan, GroupState, Notification, PlannedAlert, plan};
pub use routing::{Destination, Labels, MatchOp, Matcher, Mute, MuteSchedule, Policy, Route, Timers};

/// Sends a test message through one channel and reports the receiver's answer (queue `monitor`).
pub const TEST_CHANNEL_KIND: &str = "notify.test_channel";

/// How a channel reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    Slack,
    Webhook,
}

impl ChannelKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "email" => Ok(Self::Email),
            "slack" => Ok(Self::Slack),
            "webhook" => Ok(Self::Webhook),
            other => Err(format!("unknown channel kind {other:?} (email, slack or webhook)")),
        }
    }

    /// The name of the credential this kind keeps sealed (never returned).
    pub const fn secret_field(self) -> &'static str {
        match self {
            Self::Email => "password",
            Self::Slack => "webhook_url",
            Self::Webhook => "signing_secret",
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain SMTP, upgraded with STARTTLS (refused if the server does not offer it).
    #[default]
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No encryption: loopback relays and test sinks only.
    None,
}

/// A channel's settings that are not secret (stored as JSON, returned by the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelConfig {
    Email {
        smtp_host: String,
        smtp_port: u16,
        #[serde(default)]
        security: SmtpSecurity,
        #[serde(default)]
        username: Option<String>,
        from: String,
        to: Vec<String>,
    },
    /// The incoming-webhook URL is the credential (sealed).
    Slack {},
    Webhook {
        url: String,
    },
}

impl ChannelConfig {
    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Email { .. } => ChannelKind::Email,
            Self::Slack {} => ChannelKind::Slack,
            Self::Webhook { .. } => ChannelKind::Webhook,
        }
    }
}

/// At most this many recipients per email channel.
pub const MAX_RECIPIENTS: usize = 50;

/// A channel as an operator defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub config: ChannelConfig,
    pub is_active: bool,
}

fn plausible_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && a.len() <= 254
        && !a.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

/// Whether `url` is an absolute http(s) URL with a host.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not allowed (http or https)", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    Ok(())
}

impl ChannelSpec {
    /// Every problem of the specification, each naming its field.
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut out: Vec<FieldProblem> = Vec::new();
        let mut bad = |f: &str, r: String| out.push((f.to_owned(), r));
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            bad("name", "1 to 100 characters".into());
        }
        match &self.config {
            ChannelConfig::Email { smtp_host, smtp_port, username, from, to, .. } => {
                if smtp_host.trim().is_empty() || smtp_host.len() > 253 || smtp_host.chars().any(char::is_whitespace) {
                    bad("smtp_host", "a host name or address".into());
                }
                if *smtp_port == 0 {
                    bad("smtp_port", "must be between 1 and 65535".into());
                }
                if username.as_ref().is_some_and(|u| u.is_empty() || u.len() > 256) {
                    bad("username", "1 to 256 characters".into());
                }
                if !plausible_address(from) {
                    bad("from", "an email address (name@domain)".into());
                }
                if to.is_empty() || to.len() > MAX_RECIPIENTS {
                    bad("to", format!("1 to {MAX_RECIPIENTS} email addresses"));
                } else if let Some(i) = to.iter().position(|a| !plausible_address(a)) {
                    bad(&format!("to[{i}]"), "an email address (name@domain)".into());
                }
            }
            ChannelConfig::Slack {} => {}
            ChannelConfig::Webhook { url } => {
                if let Err(e) = check_http_url(url) {
                    bad("url", e);
                }
            }
        }
        out
    }
}

/// Checks a channel's credential for its kind (`None`: absent).
pub fn check_secret(kind: ChannelKind, secret: &str) -> Result<(), String> {
    match kind {
        ChannelKind::Slack => check_http_url(secret),
        ChannelKind::Webhook if secret.len() < 16 => Err("at least 16 characters".to_owned()),
        _ if secret.is_empty() || secret.len() > 4096 => Err("1 to 4096 characters".to_owned()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(to: Vec<&str>) -> ChannelSpec {
        ChannelSpec {
            name: "ops".into(),
            config: ChannelConfig::Email {
                smtp_host: "smtp.example.org".into(),
                smtp_port: 587,
                security: SmtpSecurity::Starttls,
                username: None,
                from: "sentinel@example.org".into(),
                to: to.into_iter().map(str::to_owned).collect(),
            },
            is_active: true,
        }
    }

    #[test]
    fn a_bad_recipient_is_named_by_its_index() {
        assert!(email(vec!["a@b.c"]).check().is_empty());
        let problems = email(vec!["a@b.c", "not an address"]).check();
        assert_eq!(problems, vec![("to[1]".to_owned(), "an email address (name@domain)".to_owned())]);
        assert_eq!(email(vec![]).check()[0].0, "to");
    }

    #[test]
    fn webhooks_take_http_urls_only() {
        let spec = |url: &str| ChannelSpec {
            name: "hook".into(),
            config: ChannelConfig::Webhook { url: url.into() },
            is_active: true,
        };
        assert!(spec("https://hooks.example.org/x").check().is_empty());
        assert_eq!(spec("ftp://example.org").check()[0].0, "url");
        assert_eq!(spec("nonsense").check()[0].0, "url");
        assert!(check_secret(ChannelKind::Webhook, "short").is_err());
        assert!(check_secret(ChannelKind::Slack, "https://hooks.slack.com/services/T/B/X").is_ok());
    }
}
