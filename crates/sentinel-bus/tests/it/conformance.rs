//! The contract every bus backend must meet. Each test runs once on the in-process bus and once on
//! Redis Streams (with a key prefix of its own).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use sentinel_bus::{Bus, BusOptions, MemoryBus, Message, RedisBus};
use sentinel_domain::{DeadLetterReason, JobEvent, JobEventKind, JobId, JobKind, Priority, QueueName};

pub const VISIBILITY: Duration = Duration::from_millis(1000);

pub fn options() -> BusOptions {
    BusOptions { visibility_timeout: VISIBILITY, block: Duration::from_millis(200), ..BusOptions::default() }
}

pub fn queue() -> QueueName {
    QueueName::parse("conformance").expect("valid")
}

pub fn msg(priority: Priority) -> Message {
    Message {
        job_id: JobId::new(),
        kind: JobKind::parse("test.noop").expect("valid"),
        priority,
        attempt: 1,
        enqueued_at_ms: Utc::now().timestamp_millis(),
        payload: serde_json::json!({}),
        trace: Default::default(),
    }
}

fn memory() -> Arc<dyn Bus> {
    Arc::new(MemoryBus::new(options()))
}

fn redis() -> Arc<dyn Bus> {
    let prefix = sentinel_testkit::unique_prefix();
    Arc::new(RedisBus::connect(&sentinel_testkit::redis_url(), &prefix, 8, options()).expect("redis bus"))
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_backend {
            $( #[tokio::test] async fn $name() { super::$name(super::memory()).await } )*
        }
        mod redis_backend {
            $( #[tokio::test] async fn $name() { super::$name(super::redis()).await } )*
        }
    };
}

conformance!(
    each_message_goes_to_exactly_one_consumer,
    acked_messages_leave_the_bus,
    abandoned_deliveries_are_reclaimed_with_a_higher_count,
    renewed_leases_are_not_reclaimed_and_stale_renewals_are_refused,
    delayed_messages_wait_for_their_due_time,
    retry_at_acks_and_reschedules_atomically,
    dead_letters_record_why_and_can_be_removed,
    priorities_favour_high_without_starving_low,
    every_subscriber_receives_every_event_in_order,
    a_cancel_subscriber_receives_only_cancel_requests,
    stats_report_depth_and_pending_age,
);

async fn drain(bus: &Arc<dyn Bus>, consumer: &str, want: usize, within: Duration) -> Vec<sentinel_bus::Delivery> {
    let mut c = bus.consumer(&queue(), consumer).await.expect("consumer");
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        out.extend(c.receive(want - out.len(), Duration::from_millis(200)).await.expect("receive"));
    }
    out
}

async fn each_message_goes_to_exactly_one_consumer(bus: Arc<dyn Bus>) {
    let sent: Vec<Message> = (0..50).map(|_| msg(Priority::Normal)).collect();
    bus.publish(&queue(), &sent).await.expect("publish");
    let (a, b) =
        tokio::join!(drain(&bus, "a", 25, Duration::from_secs(5)), drain(&bus, "b", 25, Duration::from_secs(5)));
    let ids: Vec<JobId> = a.iter().chain(b.iter()).map(|d| d.message.job_id).collect();
    let unique: HashSet<JobId> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 50, "every message delivered");
    assert_eq!(unique.len(), 50, "no message delivered twice");
    assert!(a.iter().chain(b.iter()).all(|d| d.delivery_count == 1));
}

async fn acked_messages_leave_the_bus(bus: Arc<dyn Bus>) {
    let lanes = [Priority::High, Priority::Normal, Priority::Low];
    bus.publish(&queue(), &(0..20).map(|i| msg(lanes[i % 3])).collect::<Vec<_>>()).await.expect("publish");
    let got = drain(&bus, "a", 20, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 20);
    // Some one by one, the rest (from every lane) in one batch.
    for d in &got[..5] {
        bus.ack(d).await.expect("ack");
    }
    bus.ack_many(&got[5..]).await.expect("ack_many");
    let stats = bus.stats(&queue()).await.expect("stats");
    assert!(stats.iter().all(|s| s.length == 0 && s.pending == 0), "{stats:?}");
    // Nothing comes back after the visibility timeout either.
    tokio::time::sleep(VISIBILITY + Duration::from_millis(200)).await;
    assert!(drain(&bus, "b", 1, Duration::from_millis(600)).await.is_empty());
}

async fn abandoned_deliveries_are_reclaimed_with_a_higher_count(bus: Arc<dyn Bus>) {
    let m = msg(Priority::Normal);
    bus.publish(&queue(), std::slice::from_ref(&m)).await.expect("publish");
    let first = drain(&bus, "dies", 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    // "dies" never acks or renews. Another consumer gets it once the lease lapses, not before.
    let early = drain(&bus, "survivor", 1, VISIBILITY / 3).await;
    assert!(early.is_empty(), "reclaimed before the visibility timeout");
    let again = drain(&bus, "survivor", 1, VISIBILITY * 6).await;
    assert_eq!(again.len(), 1, "abandoned message was not reclaimed");
    assert_eq!(again[0].message.job_id, m.job_id);
    assert_eq!(again[0].delivery_count, 2);
    bus.ack(&again[0]).await.expect("ack");
}

async fn renewed_leases_are_not_reclaimed_and_stale_renewals_are_refused(bus: Arc<dyn Bus>) {
    bus.publish(&queue(), &[msg(Priority::Normal)]).await.expect("publish");
    let held = drain(&bus, "holder", 1, Duration::from_secs(5)).await.remove(0);
    let mut other = bus.consumer(&queue(), "other").await.expect("consumer");
    let until = Instant::now() + VISIBILITY * 3;
    while Instant::now() < until {
        assert!(bus.renew(&held).await.expect("renew"), "the holder still owns its lease");
        let got = other.receive(1, VISIBILITY / 4).await.expect("receive");
        assert!(got.is_empty(), "a renewed lease was reclaimed");
    }
    // The holder stops renewing (it froze); the other consumer takes over and the holder's renewal
    // afterwards must not steal the message back.
    let taken = drain(&bus, "other", 1, VISIBILITY * 6).await;
    assert_eq!(taken.len(), 1);
    assert!(!bus.renew(&held).await.expect("renew"), "stale holder renewed a lease it lost");
    assert!(bus.renew(&taken[0]).await.expect("renew"));
}

async fn delayed_messages_wait_for_their_due_time(bus: Arc<dyn Bus>) {
    let m = msg(Priority::Normal);
    let due = Utc::now() + chrono::Duration::milliseconds(800);
    bus.publish_at(&queue(), &m, due).await.expect("publish_at");
    assert!(drain(&bus, "a", 1, Duration::from_millis(400)).await.is_empty(), "delivered before due");
    let got = drain(&bus, "a", 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(Utc::now() >= due);
    assert_eq!(got[0].message, m);
}

async fn retry_at_acks_and_reschedules_atomically(bus: Arc<dyn Bus>) {
    let m = msg(Priority::High);
    bus.publish(&queue(), std::slice::from_ref(&m)).await.expect("publish");
    let d = drain(&bus, "a", 1, Duration::from_secs(5)).await.remove(0);
    let next = m.next_attempt();
    bus.retry_at(&d, &next, Utc::now() + chrono::Duration::milliseconds(500)).await.expect("retry_at");
    let stats = bus.stats(&queue()).await.expect("stats");
    assert_eq!(stats.iter().map(|s| s.pending).sum::<u64>(), 0, "the failed delivery is no longer pending");
    let got = drain(&bus, "a", 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.attempt, 2);
    assert_eq!(got[0].delivery_count, 1, "a business retry is a fresh delivery, not a crash");
    assert_eq!(got[0].priority, Priority::High);
}

async fn dead_letters_record_why_and_can_be_removed(bus: Arc<dyn Bus>) {
    let m = msg(Priority::Low);
    bus.publish(&queue(), std::slice::from_ref(&m)).await.expect("publish");
    let d = drain(&bus, "a", 1, Duration::from_secs(5)).await.remove(0);
    bus.dead_letter(&d, DeadLetterReason::WorkerCrash, "died 3 times").await.expect("dead_letter");
    let dead = bus.dead_letters(&queue(), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::WorkerCrash);
    assert_eq!(dead[0].detail, "died 3 times");
    assert_eq!(dead[0].message, m);
    let stats = bus.stats(&queue()).await.expect("stats");
    assert!(stats.iter().all(|s| s.pending == 0 && s.length == 0));
    assert!(bus.remove_dead_letter(&queue(), &dead[0].entry_id).await.expect("remove"));
    assert!(bus.dead_letters(&queue(), 10).await.expect("list").is_empty());
}

async fn priorities_favour_high_without_starving_low(bus: Arc<dyn Bus>) {
    let lows: Vec<Message> = (0..100).map(|_| msg(Priority::Low)).collect();
    let highs: Vec<Message> = (0..100).map(|_| msg(Priority::High)).collect();
    bus.publish(&queue(), &lows).await.expect("publish");
    bus.publish(&queue(), &highs).await.expect("publish");
    let mut c = bus.consumer(&queue(), "a").await.expect("consumer");
    let mut seen = Vec::new();
    while seen.len() < 50 {
        for d in c.receive(1, Duration::from_millis(200)).await.expect("receive") {
            seen.push(d.priority);
            bus.ack(&d).await.expect("ack");
        }
    }
    let high = seen.iter().filter(|p| **p == Priority::High).count();
    let low = seen.iter().filter(|p| **p == Priority::Low).count();
    assert!(high > low * 3, "high {high} vs low {low}");
    assert!(low >= 3, "low priority starved: {low} of 50");
}

async fn every_subscriber_receives_every_event_in_order(bus: Arc<dyn Bus>) {
    let mut a = bus.subscribe_events().await.expect("subscribe");
    let mut b = bus.subscribe_events().await.expect("subscribe");
    let job = JobId::new();
    for seq in 1..=200 {
        bus.publish_event(&test_event(job, seq, JobEventKind::Queued)).await.expect("publish_event");
    }
    for sub in [&mut a, &mut b] {
        let mut seqs = Vec::new();
        while seqs.len() < 200 {
            let ev =
                tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("event in time").expect("open");
            seqs.push(ev.seq);
        }
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    }
}

async fn a_cancel_subscriber_receives_only_cancel_requests(bus: Arc<dyn Bus>) {
    let mut cancels = bus.subscribe_cancels().await.expect("subscribe");
    let mut events = bus.subscribe_events().await.expect("subscribe");
    let job = JobId::new();
    let bodies =
        [JobEventKind::Queued, JobEventKind::CancelRequested, JobEventKind::Queued, JobEventKind::CancelRequested];
    let all: Vec<JobEvent> = bodies.into_iter().zip(1..).map(|(body, seq)| test_event(job, seq, body)).collect();
    bus.publish_events(&all).await.expect("publish_events");
    assert_eq!(next_event(&mut cancels).await.seq, 2);
    assert_eq!(next_event(&mut cancels).await.seq, 4);
    // The cancel requests are still among all events, in order.
    for seq in 1..=4 {
        assert_eq!(next_event(&mut events).await.seq, seq);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), cancels.next()).await.is_err(),
        "only the two cancel requests reach a cancel subscriber"
    );
}

/// Event number `seq` of `job` (also its id in the log).
fn test_event(job: JobId, seq: i64, body: JobEventKind) -> JobEvent {
    JobEvent {
        id: seq,
        org_id: None,
        job_id: job,
        kind: JobKind::parse("test.noop").expect("valid"),
        seq,
        at: Utc::now(),
        body,
    }
}

async fn next_event(stream: &mut sentinel_bus::EventStream) -> JobEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("event in time").expect("open")
}

async fn stats_report_depth_and_pending_age(bus: Arc<dyn Bus>) {
    bus.publish(&queue(), &(0..5).map(|_| msg(Priority::Normal)).collect::<Vec<_>>()).await.expect("publish");
    bus.publish_at(&queue(), &msg(Priority::Normal), Utc::now() + chrono::Duration::hours(1)).await.expect("delay");
    let got = drain(&bus, "a", 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let normal =
        bus.stats(&queue()).await.expect("stats").into_iter().find(|s| s.stream.ends_with(":normal")).expect("lane");
    assert_eq!(normal.length, 5);
    assert_eq!(normal.pending, 2);
    assert_eq!(normal.delayed, 1);
    assert!(normal.oldest_pending_age.expect("age") >= Duration::from_millis(100));
}
