//! Redis-specific behaviour: surviving a Redis restart, prefix isolation, bounded memory.

use std::time::Duration;

use sentinel_bus::{Bus, RedisBus};
use sentinel_domain::Priority;
use sentinel_testkit::RedisServer;

use crate::conformance::{msg, options, queue};

#[tokio::test]
async fn consumers_reconnect_and_recreate_their_group_after_a_redis_restart() {
    let mut server = RedisServer::start().expect("redis-server");
    let bus = RedisBus::connect(&server.url(), "restart", 4, options()).expect("bus");
    let mut consumer = bus.consumer(&queue(), "a").await.expect("consumer");
    bus.publish(&queue(), &[msg(Priority::Normal)]).await.expect("publish");
    let got = consumer.receive(1, Duration::from_secs(2)).await.expect("receive");
    assert_eq!(got.len(), 1);

    // Redis dies (no persistence: streams and groups are gone) and comes back on the same port.
    server.restart().expect("restart");

    let m = msg(Priority::Normal);
    let mut published = false;
    let mut received = Vec::new();
    for _ in 0..100 {
        if !published {
            published = bus.publish(&queue(), std::slice::from_ref(&m)).await.is_ok();
        }
        // Errors are expected while the connection is re-established; the consumer must recover alone.
        if let Ok(batch) = consumer.receive(1, Duration::from_millis(200)).await {
            received.extend(batch);
        }
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(published, "publishing never recovered");
    assert_eq!(received.len(), 1, "the consumer did not recover after the restart");
    assert_eq!(received[0].message.job_id, m.job_id);
}

#[tokio::test]
async fn prefixes_isolate_deployments_sharing_one_redis() {
    let url = sentinel_testkit::redis_url();
    let a = RedisBus::connect(&url, &sentinel_testkit::unique_prefix(), 2, options()).expect("bus");
    let b = RedisBus::connect(&url, &sentinel_testkit::unique_prefix(), 2, options()).expect("bus");
    a.publish(&queue(), &[msg(Priority::Normal)]).await.expect("publish");
    let mut cb = b.consumer(&queue(), "b").await.expect("consumer");
    assert!(cb.receive(1, Duration::from_millis(300)).await.expect("receive").is_empty());
    let mut ca = a.consumer(&queue(), "a").await.expect("consumer");
    assert_eq!(ca.receive(1, Duration::from_secs(2)).await.expect("receive").len(), 1);
    a.purge().await.expect("purge");
    b.purge().await.expect("purge");
}

#[tokio::test]
async fn every_key_of_a_queue_shares_one_cluster_slot() {
    let bus = RedisBus::connect(&sentinel_testkit::redis_url(), "slots", 1, options()).expect("bus");
    let keys = bus.keys();
    let tag = |k: &str| k[k.find('{').expect("tag")..=k.find('}').expect("tag")].to_owned();
    let q = queue();
    let mut all: Vec<String> = keys.lanes(&q).to_vec();
    all.push(keys.delayed(&q));
    all.push(keys.dead(&q));
    assert!(all.iter().all(|k| tag(k) == tag(&all[0])), "{all:?}");
}

#[tokio::test]
async fn acked_jobs_leave_redis_memory() {
    let prefix = sentinel_testkit::unique_prefix();
    let bus = RedisBus::connect(&sentinel_testkit::redis_url(), &prefix, 4, options()).expect("bus");
    let msgs: Vec<_> = (0..2000).map(|_| msg(Priority::Normal)).collect();
    bus.publish(&queue(), &msgs).await.expect("publish");
    let mut c = bus.consumer(&queue(), "a").await.expect("consumer");
    let mut n = 0;
    while n < 2000 {
        for d in c.receive(200, Duration::from_millis(200)).await.expect("receive") {
            bus.ack(&d).await.expect("ack");
            n += 1;
        }
    }
    let stats = bus.stats(&queue()).await.expect("stats");
    assert!(stats.iter().all(|s| s.length == 0 && s.pending == 0), "{stats:?}");
    bus.purge().await.expect("purge");
}
