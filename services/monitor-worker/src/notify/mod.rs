//! The notifier: evaluates notification groups on a tick and as soon as an alert transition is
//! written (any replica; the store serializes them per organization) and delivers the outbox — claim with a lease, send, mark delivered only
//! after the receiver accepted, retry with exponential backoff, give up after a configured age.
//! Replicas share the work; a killed replica's claims are taken over when their lease runs out.

mod senders;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sentinel_jobs::db::notify::{Delivery, DeliveryOutcome, NotifyStore, channel_secret_owner};
use sentinel_jobs::{Spine, Vault};
use sentinel_telemetry::Shutdown;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub use senders::{Sent, send};

/// Notifications claimed at once by one replica.
const CLAIM_BATCH: u64 = 64;
/// How often the newest alert transition is looked at.
const WATCH: Duration = Duration::from_millis(50);
/// Notifications sent at once by one replica.
const IN_FLIGHT: usize = 32;

/// The notifier of one worker process.
pub struct Notifier {
    store: NotifyStore,
    vault: Option<Vault>,
    http: reqwest::Client,
    owner: String,
    evaluate_every: Duration,
    lease: chrono::Duration,
    max_backoff: chrono::Duration,
    give_up: chrono::Duration,
    wake: Notify,
    shutdown: Shutdown,
    /// Channels with their opened credential, read again after `CHANNEL_TTL` (an edit shows then).
    channels: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, (std::time::Instant, Arc<OpenChannel>)>>,
}

/// How long a channel read (and its credential opened) is reused.
const CHANNEL_TTL: Duration = Duration::from_secs(5);

/// A channel ready to send through.
struct OpenChannel {
    config: sentinel_jobs::domain::notify::ChannelConfig,
    secret: Option<zeroize::Zeroizing<String>>,
}

impl Notifier {
    /// Starts the evaluation and delivery loops until `shutdown` fires.
    pub fn start(spine: &Spine, shutdown: Shutdown) -> Arc<Self> {
        let m = &spine.settings().monitor;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
        let notifier = Arc::new(Self {
            store: spine.db().notify(),
            vault: spine.vault().ok().cloned(),
            http: senders::http_client(),
            owner: format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]),
            evaluate_every: Duration::from_millis(m.notify_evaluate_ms.max(10)),
            lease: chrono::Duration::seconds(i64::try_from(m.notify_lease_secs.max(1)).unwrap_or(30)),
            max_backoff: chrono::Duration::seconds(i64::try_from(m.notify_max_backoff_secs.max(1)).unwrap_or(60)),
            give_up: chrono::Duration::hours(i64::try_from(m.notify_give_up_hours.max(1)).unwrap_or(24)),
            wake: Notify::new(),
            shutdown,
            channels: std::sync::Mutex::default(),
        });
        tokio::spawn(notifier.clone().evaluate_loop());
        tokio::spawn(notifier.clone().deliver_loop());
        notifier
    }

    /// Evaluates on every tick, and as soon as an alert transition is written (the newest timeline
    /// entry is looked at every `WATCH`: one index lookup), so a page does not wait for the tick.
    async fn evaluate_loop(self: Arc<Self>) {
        let mut seen = -1;
        let mut last = tokio::time::Instant::now() - self.evaluate_every;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(WATCH.min(self.evaluate_every)) => {}
            }
            let latest = self.store.latest_transition().await.unwrap_or(seen);
            if latest == seen && last.elapsed() < self.evaluate_every {
                continue;
            }
            last = tokio::time::Instant::now();
            match self.store.evaluate(Utc::now()).await {
                Ok(report) => {
                    seen = latest;
                    if report.queued > 0 {
                        metrics::counter!("sentinel_notifications_queued_total").increment(report.queued as u64);
                        self.wake.notify_one();
                    }
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "notification groups not evaluated: database unreachable")
                }
                Err(e) => tracing::error!(error = %e, "notification groups not evaluated"),
            }
        }
    }

    async fn deliver_loop(self: Arc<Self>) {
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let claimed = match self.store.claim_due(&self.owner, self.lease, CLAIM_BATCH, Utc::now()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications not claimed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                continue;
            }
            futures::stream::iter(claimed)
                .for_each_concurrent(IN_FLIGHT, |d| {
                    let this = self.clone();
                    async move {
                        this.deliver(d).await;
                    }
                })
                .await;
        }
    }

    /// Sends one claimed notification and records the outcome.
    async fn deliver(&self, d: Delivery) -> DeliveryOutcome {
        let outcome = match self.attempt(&d).await {
            Ok(sent) => DeliveryOutcome::Delivered { status: sent.status },
            Err(failure) => {
                let now = Utc::now();
                let backoff =
                    chrono::Duration::seconds(1_i64 << d.attempt.clamp(1, 20).saturating_sub(1)).min(self.max_backoff);
                let retry_at = (now - d.created_at < self.give_up).then_some(now + backoff);
                tracing::warn!(notification = %d.id, attempt = d.attempt, error = %failure.error, "notification not delivered");
                DeliveryOutcome::Failed { status: failure.status, error: failure.error, retry_at }
            }
        };
        let label = if matches!(outcome, DeliveryOutcome::Delivered { .. }) { "delivered" } else { "failed" };
        metrics::counter!("sentinel_notification_attempts_total", "outcome" => label).increment(1);
        if let Err(e) = self.store.finish_delivery(d.id, &self.owner, &outcome, Utc::now()).await {
            tracing::warn!(notification = %d.id, error = %e, "delivery outcome not recorded; it will be sent again");
        }
        outcome
    }

    /// Sends a test message through one channel of `org` now and logs it; returns the receiver's
    /// answer (the `notify.test_channel` job's result).
    pub async fn test_channel(&self, org: uuid::Uuid, channel_id: uuid::Uuid, key: String) -> Result<Value, String> {
        let channel = self
            .store
            .channel(org, channel_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("channel {channel_id} not found"))?;
        let title = format!("[TEST] Sentinel test message for channel {}", channel.spec.name);
        let payload = json!({
            "version": 1,
            "organization_id": org,
            "status": "test",
            "repeat": false,
            "title": title,
            "counts": { "firing": 0, "resolved": 0, "inhibited_dependents": 0 },
            "alerts": [],
        });
        let d = Delivery {
            id: uuid::Uuid::now_v7(),
            org_id: org,
            channel_id,
            idempotency_key: key,
            status: "test".to_owned(),
            payload: payload.clone(),
            attempt: 1,
            created_at: Utc::now(),
        };
        // A test right after an edit tries the edited channel.
        if let Ok(mut cache) = self.channels.lock() {
            cache.remove(&channel_id);
        }
        let result = self.attempt(&d).await;
        let outcome = match &result {
            Ok(sent) => DeliveryOutcome::Delivered { status: sent.status },
            Err(f) => DeliveryOutcome::Failed { status: f.status, error: f.error.clone(), retry_at: None },
        };
        let logged = self
            .store
            .record_test(org, channel_id, &d.idempotency_key, payload, &outcome)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match result {
            Ok(sent) => {
                json!({ "channel_id": channel_id, "notification_id": logged, "delivered": true, "status": sent.status, "answer": sent.answer, "error": null })
            }
            Err(f) => {
                json!({ "channel_id": channel_id, "notification_id": logged, "delivered": false, "status": f.status, "answer": null, "error": f.error })
            }
        })
    }

    async fn open_channel(&self, id: uuid::Uuid) -> Result<Arc<OpenChannel>, senders::Failure> {
        if let Ok(cache) = self.channels.lock()
            && let Some((at, open)) = cache.get(&id)
            && at.elapsed() < CHANNEL_TTL
        {
            return Ok(open.clone());
        }
        let fail = |error: String| senders::Failure { status: None, error };
        let channel = self
            .store
            .channel_by_id(id)
            .await
            .map_err(|e| fail(format!("channel not read: {e}")))?
            .ok_or_else(|| fail("the channel was deleted".to_owned()))?;
        let secret = match (channel.secret_id, &self.vault) {
            (None, _) => None,
            (Some(sid), Some(vault)) => {
                let plain = vault
                    .open_owned(sid, &channel_secret_owner(channel.id))
                    .await
                    .map_err(|e| fail(format!("the channel's credential could not be opened: {e}")))?;
                Some(zeroize::Zeroizing::new(String::from_utf8_lossy(&plain).into_owned()))
            }
            (Some(_), None) => return Err(fail("no master key configured: the channel's credential is sealed".into())),
        };
        let open = Arc::new(OpenChannel { config: channel.spec.config, secret });
        if let Ok(mut cache) = self.channels.lock() {
            cache.insert(id, (std::time::Instant::now(), open.clone()));
        }
        Ok(open)
    }

    async fn attempt(&self, d: &Delivery) -> Result<Sent, senders::Failure> {
        let channel = self.open_channel(d.channel_id).await?;
        send(&self.http, &channel.config, channel.secret.as_ref().map(|s| s.as_str()), d).await
    }
}
