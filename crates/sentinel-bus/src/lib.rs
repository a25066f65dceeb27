//! The message bus: one [`Bus`] trait with two backends (Redis Streams and in-process) that move job
//! messages to workers with at-least-once delivery, leases, delays, priorities, dead letters and an
//! events channel. The jobs table in the database is the source of truth; the bus is transport.

mod keys;
mod memory;
mod message;
mod redis_backend;
mod rotation;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use sentinel_domain::{DeadLetterReason, JobEvent, JobEventKind, Priority, QueueName};
use serde::{Deserialize, Serialize};

pub use keys::KeySpace;
pub use memory::MemoryBus;
pub use message::Message;
pub use redis_backend::RedisBus;
pub use rotation::PriorityRotation;

/// Errors from either backend. Every variant is transient from the caller's point of view except
/// `Codec`, which means a message on the wire could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(String),
    #[error("message codec: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("bus is closed")]
    Closed,
}

/// The due time as whole milliseconds, rounded up: a delayed message is promoted once the clock's
/// milliseconds reach this, so it is never delivered before `due` (rounding down could be up to 1 ms
/// early).
pub(crate) fn due_millis(due: DateTime<Utc>) -> i64 {
    let ms = due.timestamp_millis();
    if due.timestamp_subsec_nanos().is_multiple_of(1_000_000) { ms } else { ms + 1 }
}

/// Tunables shared by both backends.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// A delivery not renewed for this long is considered abandoned and is handed to another consumer.
    pub visibility_timeout: Duration,
    /// Bounds one blocking read so consumers notice shutdown and dead connections quickly.
    pub block: Duration,
    /// How many dead letters are kept per queue (oldest dropped first).
    pub dead_letter_cap: usize,
    /// How many events the Redis events stream keeps (approximate); readers that fall further behind
    /// resume from the database event log instead.
    pub events_cap: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(10),
            block: Duration::from_secs(2),
            dead_letter_cap: 10_000,
            events_cap: 100_000,
        }
    }
}

/// A message handed to one consumer. It stays leased to that consumer until it is acked, retried,
/// dead-lettered, or its lease lapses (then another consumer gets it with `delivery_count + 1`).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub queue: QueueName,
    pub priority: Priority,
    /// Backend-specific entry id (a Redis stream id for Redis).
    pub entry_id: String,
    pub consumer: String,
    /// 1 on the first delivery; each reclaim after a lapsed lease adds one. Business retries publish a
    /// fresh message, so this counts worker crashes, not handler failures.
    pub delivery_count: u32,
    pub message: Message,
}

/// A message parked in a queue's dead-letter stream, with why it is there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub entry_id: String,
    pub reason: DeadLetterReason,
    pub detail: String,
    pub at: DateTime<Utc>,
    pub message: Message,
}

/// Depth figures for one priority lane of one queue (exported as Prometheus gauges).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    /// Human-readable stream name, e.g. `default:high`.
    pub stream: String,
    /// Entries in the stream: waiting plus delivered-but-unacked.
    pub length: u64,
    /// Delivered and not yet acked.
    pub pending: u64,
    /// Age of the oldest unacked delivery's message, if any.
    pub oldest_pending_age: Option<Duration>,
    /// Messages waiting for their due time (reported on the `normal` lane's row only).
    pub delayed: u64,
}

/// Live job events. Every subscriber (every gateway replica) receives every event published after it
/// subscribed. The stream is best-effort under extreme lag; the database event log is lossless.
pub type EventStream = BoxStream<'static, JobEvent>;

/// The transport contract both backends satisfy (see `tests/it/conformance.rs`).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Makes messages available to the queue's consumers now, in order per priority lane.
    async fn publish(&self, queue: &QueueName, messages: &[Message]) -> Result<(), BusError>;

    /// Makes a message available at `due` (immediately if `due` is in the past).
    async fn publish_at(&self, queue: &QueueName, message: &Message, due: DateTime<Utc>) -> Result<(), BusError>;

    /// Opens a consumer of `queue` named `consumer` (stable per process). Several consumers of one queue
    /// share its messages: each message goes to exactly one of them at a time.
    async fn consumer(&self, queue: &QueueName, consumer: &str) -> Result<Box<dyn Consumer>, BusError>;

    /// Done: the message leaves the bus. Call only after the job's outcome is committed.
    async fn ack(&self, delivery: &Delivery) -> Result<(), BusError>;

    /// Acks several deliveries at once (Redis: one pipelined round trip for all of them).
    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        for delivery in deliveries {
            self.ack(delivery).await?;
        }
        Ok(())
    }

    /// Extends the lease so a long healthy job is never reclaimed. `Ok(false)` means the lease was
    /// already lost to another consumer: the caller must stop working on the message and not ack it.
    async fn renew(&self, delivery: &Delivery) -> Result<bool, BusError>;

    /// Atomically acks `delivery` and schedules `next` (the following attempt) at `due`.
    async fn retry_at(&self, delivery: &Delivery, next: &Message, due: DateTime<Utc>) -> Result<(), BusError>;

    /// Atomically moves `delivery` to the queue's dead-letter stream, recording why.
    async fn dead_letter(&self, delivery: &Delivery, reason: DeadLetterReason, detail: &str) -> Result<(), BusError>;

    /// The newest dead letters of a queue, newest first.
    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>, BusError>;

    /// Removes one dead letter (after it was requeued or discarded).
    async fn remove_dead_letter(&self, queue: &QueueName, entry_id: &str) -> Result<bool, BusError>;

    /// Broadcasts a job event to every subscriber.
    async fn publish_event(&self, event: &JobEvent) -> Result<(), BusError>;

    /// Broadcasts several events in order (Redis: one pipelined round trip).
    async fn publish_events(&self, events: &[JobEvent]) -> Result<(), BusError> {
        for event in events {
            self.publish_event(event).await?;
        }
        Ok(())
    }

    /// Receives every event published from now on. The stream reconnects by itself.
    async fn subscribe_events(&self) -> Result<EventStream, BusError>;

    /// Receives the cancel requests published from now on, and nothing else: what a worker listens
    /// to. A worker that read every event (several per job) would spend its time decoding them.
    async fn subscribe_cancels(&self) -> Result<EventStream, BusError> {
        let events = self.subscribe_events().await?;
        Ok(events.filter(|e| std::future::ready(matches!(e.body, JobEventKind::CancelRequested))).boxed())
    }

    /// Depth figures for each lane of a queue.
    async fn stats(&self, queue: &QueueName) -> Result<Vec<StreamStats>, BusError>;

    /// Whether the bus lives inside this process: a publish cannot fail, and the bus's data dies with
    /// the process (whose next start requeues unfinished jobs from the database).
    fn in_process(&self) -> bool {
        false
    }

    /// Names the bus's current body of data. It changes only when the backend lost everything it held
    /// (a Redis restarted without persistence, a flushed database), which tells the outbox relay to
    /// republish every queued job at once rather than wait for its stuck-job scan.
    async fn incarnation(&self) -> Result<String, BusError>;

    /// Checks the backend is reachable (readiness).
    async fn ping(&self) -> Result<(), BusError>;
}

/// One consumer's view of one queue. Owned by a single task; blocking reads use its own connection.
#[async_trait]
pub trait Consumer: Send {
    /// Returns up to `max` deliveries, waiting at most `wait` when none is ready: first messages whose
    /// previous consumer lost its lease, then due delayed messages, then fresh ones by priority weight.
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;
}
