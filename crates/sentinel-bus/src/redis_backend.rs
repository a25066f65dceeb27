//! The Redis Streams backend: one stream per priority lane per queue, one consumer group, a delayed
//! sorted set moved onto the streams by a script, leases through the pending-entries list, and an
//! events stream every gateway reads in full.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::{Config as PoolConfig, Pool, Runtime};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncConnectionConfig, AsyncTypedCommands, Script};
use sentinel_domain::{DeadLetterReason, JobEvent, JobEventKind, Priority, QueueName};

use crate::keys::WORKER_GROUP;
use crate::{
    Bus, BusError, BusOptions, Consumer, DeadLetter, Delivery, EventStream, KeySpace, Message, PriorityRotation,
    StreamStats,
};

/// Field name of the message body inside a stream entry.
const BODY: &str = "m";
/// Cancel requests kept in their own stream (about; trimmed like the events stream).
const CANCELS_CAP: usize = 10_000;
/// How often a consumer moves due delayed messages; also caps a blocking read so delays stay precise.
const PROMOTE_EVERY: Duration = Duration::from_millis(250);
/// Upper bound on delayed messages moved per script call (keeps each call short).
const PROMOTE_BATCH: usize = 512;

/// Redis Streams bus. Cheap to clone; clones share the pool and scripts.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    /// Exclusive connections for cold, possibly slow commands (stats, dead letters, purge, readiness).
    pool: Pool,
    /// One shared, self-reconnecting multiplexed connection for the hot path (publish, ack, renew…):
    /// concurrent commands are pipelined on one socket, which costs far fewer syscalls than one pooled
    /// connection per in-flight command. Created on first use so a service can start before Redis.
    shared: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    keys: KeySpace,
    options: BusOptions,
    scripts: Arc<Scripts>,
}

struct Scripts {
    fetch: Script,
    ack: Script,
    retry: Script,
    dead: Script,
    renew: Script,
    promote: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            // One round trip for a non-blocking read across the lanes in the given order, stopping once
            // `count` entries are taken. KEYS: high, normal, low. ARGV: group, consumer, count, order…
            // Returns a flat array of lane, id, body triples.
            fetch: Script::new(
                r"local out = {}
                  local want = tonumber(ARGV[3])
                  for i = 1, 3 do
                    if want <= 0 then break end
                    local lane = tonumber(ARGV[3 + i])
                    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[lane + 1], '>')
                    if r then
                      for _, e in ipairs(r[1][2]) do
                        local fields = e[2]
                        local body = ''
                        for j = 1, #fields, 2 do
                          if fields[j] == 'm' then body = fields[j + 1] end
                        end
                        out[#out + 1] = lane
                        out[#out + 1] = e[1]
                        out[#out + 1] = body
                        want = want - 1
                      end
                    end
                  end
                  return out",
            ),
            // Ack and delete together: acked entries leave memory at once, so the stream only ever holds
            // waiting and in-flight messages (history lives in the database).
            ack: Script::new(
                "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) return redis.call('XDEL', KEYS[1], ARGV[2])",
            ),
            retry: Script::new(
                r"redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
                  redis.call('XDEL', KEYS[1], ARGV[2])
                  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
                  return 1",
            ),
            dead: Script::new(
                r"redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[4], 'reason', ARGV[5], 'detail', ARGV[6], 'at', ARGV[7])
                  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
                  redis.call('XDEL', KEYS[1], ARGV[2])
                  return 1",
            ),
            // Renew only a lease we still hold: a paused worker that wakes up must not steal back a
            // message another consumer has reclaimed.
            renew: Script::new(
                r"local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
                  if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
                  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
                  return 1",
            ),
            // KEYS: delayed, high, normal, low. Members are "<lane>|<json>".
            promote: Script::new(
                r"local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
                  for _, member in ipairs(due) do
                    local lane = tonumber(string.sub(member, 1, 1))
                    redis.call('XADD', KEYS[2 + lane], '*', 'm', string.sub(member, 3))
                    redis.call('ZREM', KEYS[1], member)
                  end
                  local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
                  if nxt[2] then return {#due, nxt[2]} end
                  return {#due, '-1'}",
            ),
        }
    }
}

fn delayed_member(message: &Message) -> Result<String, BusError> {
    Ok(format!("{}|{}", message.priority.index(), serde_json::to_string(message)?))
}

fn is_code(err: &redis::RedisError, code: &str) -> bool {
    err.code() == Some(code)
}

impl RedisBus {
    /// Connects a pool of `pool_size` connections. Nothing is sent to Redis until first use, so a
    /// service can start while Redis is still coming up.
    pub fn connect(url: &str, prefix: &str, pool_size: usize, options: BusOptions) -> Result<Self, BusError> {
        let client = redis::Client::open(url)?;
        let mut cfg = PoolConfig::from_url(url);
        cfg.pool = Some(deadpool_redis::PoolConfig::new(pool_size));
        let pool = cfg.create_pool(Some(Runtime::Tokio1)).map_err(|e| BusError::Pool(e.to_string()))?;
        Ok(Self {
            client,
            pool,
            shared: Arc::new(tokio::sync::OnceCell::new()),
            keys: KeySpace::new(prefix),
            options,
            scripts: Arc::new(Scripts::new()),
        })
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// An exclusive pooled connection (cold paths).
    async fn pooled(&self) -> Result<deadpool_redis::Connection, BusError> {
        self.pool.get().await.map_err(|e| BusError::Pool(e.to_string()))
    }

    /// The shared hot-path connection. It reconnects by itself after Redis restarts; the command that
    /// hit the broken connection fails and the caller's retry goes through the new one.
    async fn conn(&self) -> Result<ConnectionManager, BusError> {
        let manager = self
            .shared
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_with_config(self.client.clone(), cfg).await
            })
            .await?;
        Ok(manager.clone())
    }

    /// A connection of its own for blocking reads: a `BLOCK` on the shared multiplexed connections would
    /// stall every other command, and the default 500 ms response timeout would cut every `BLOCK` short.
    async fn blocking_conn(&self) -> Result<MultiplexedConnection, BusError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(self.options.block + Duration::from_secs(5)));
        Ok(self.client.get_multiplexed_async_connection_with_config(&cfg).await?)
    }

    /// Removes every key of this deployment's prefix. For tests and `sentinel bench`.
    pub async fn purge(&self) -> Result<u64, BusError> {
        let mut conn = self.pooled().await?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(self.keys.pattern()).query_async(&mut conn).await?;
        let n = keys.len() as u64;
        for chunk in keys.chunks(256) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        Ok(n)
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, queue: &QueueName, messages: &[Message]) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            pipe.cmd("XADD")
                .arg(self.keys.lane(queue, m.priority))
                .arg("*")
                .arg(BODY)
                .arg(serde_json::to_string(m)?)
                .ignore();
        }
        let mut conn = self.conn().await?;
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn publish_at(&self, queue: &QueueName, message: &Message, due: DateTime<Utc>) -> Result<(), BusError> {
        if due <= Utc::now() {
            return self.publish(queue, std::slice::from_ref(message)).await;
        }
        let mut conn = self.conn().await?;
        conn.zadd(self.keys.delayed(queue), delayed_member(message)?, crate::due_millis(due)).await?;
        Ok(())
    }

    async fn consumer(&self, queue: &QueueName, consumer: &str) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(RedisConsumer {
            bus: self.clone(),
            queue: queue.clone(),
            name: consumer.to_owned(),
            lanes: self.keys.lanes(queue),
            conn: None,
            rotation: PriorityRotation::default(),
            next_reclaim: Instant::now(),
            next_promote: Instant::now(),
        }))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), BusError> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .scripts
            .ack
            .key(self.keys.lane(&delivery.queue, delivery.priority))
            .arg(WORKER_GROUP)
            .arg(&delivery.entry_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        // Per lane, one XACK and one XDEL naming every entry: a lost XDEL only leaves an acked entry
        // behind (never redelivered), so the two need not be atomic as the single ack's script is.
        let mut by_lane: Vec<(String, Vec<&str>)> = Vec::new();
        for d in deliveries {
            let lane = self.keys.lane(&d.queue, d.priority);
            match by_lane.iter_mut().find(|(key, _)| *key == lane) {
                Some((_, ids)) => ids.push(&d.entry_id),
                None => by_lane.push((lane, vec![&d.entry_id])),
            }
        }
        if by_lane.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (lane, ids) in &by_lane {
            pipe.cmd("XACK").arg(lane).arg(WORKER_GROUP).arg(ids).ignore();
            pipe.cmd("XDEL").arg(lane).arg(ids).ignore();
        }
        let mut conn = self.conn().await?;
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn renew(&self, delivery: &Delivery) -> Result<bool, BusError> {
        let mut conn = self.conn().await?;
        let held: i64 = self
            .scripts
            .renew
            .key(self.keys.lane(&delivery.queue, delivery.priority))
            .arg(WORKER_GROUP)
            .arg(&delivery.entry_id)
            .arg(&delivery.consumer)
            .invoke_async(&mut conn)
            .await?;
        Ok(held == 1)
    }

    async fn retry_at(&self, delivery: &Delivery, next: &Message, due: DateTime<Utc>) -> Result<(), BusError> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .scripts
            .retry
            .key(self.keys.lane(&delivery.queue, delivery.priority))
            .key(self.keys.delayed(&delivery.queue))
            .arg(WORKER_GROUP)
            .arg(&delivery.entry_id)
            .arg(crate::due_millis(due))
            .arg(delayed_member(next)?)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: DeadLetterReason, detail: &str) -> Result<(), BusError> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .scripts
            .dead
            .key(self.keys.lane(&delivery.queue, delivery.priority))
            .key(self.keys.dead(&delivery.queue))
            .arg(WORKER_GROUP)
            .arg(&delivery.entry_id)
            .arg(self.options.dead_letter_cap)
            .arg(serde_json::to_string(&delivery.message)?)
            .arg(reason.as_str())
            .arg(detail)
            .arg(Utc::now().to_rfc3339())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let mut conn = self.pooled().await?;
        let reply: StreamClaimReply = redis::cmd("XREVRANGE")
            .arg(self.keys.dead(queue))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids {
            let Some(body) = entry.get::<String>(BODY) else { continue };
            let reason = match entry.get::<String>("reason").as_deref() {
                Some("worker_crash") => DeadLetterReason::WorkerCrash,
                _ => DeadLetterReason::HandlerError,
            };
            out.push(DeadLetter {
                message: serde_json::from_str(&body)?,
                reason,
                detail: entry.get::<String>("detail").unwrap_or_default(),
                at: entry
                    .get::<String>("at")
                    .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                    .map(|d| d.with_timezone(&Utc))
                    .unwrap_or_else(Utc::now),
                entry_id: entry.id,
            });
        }
        Ok(out)
    }

    async fn remove_dead_letter(&self, queue: &QueueName, entry_id: &str) -> Result<bool, BusError> {
        let mut conn = self.pooled().await?;
        let n = conn.xdel(self.keys.dead(queue), &[entry_id]).await?;
        Ok(n > 0)
    }

    async fn publish_event(&self, event: &JobEvent) -> Result<(), BusError> {
        self.publish_events(std::slice::from_ref(event)).await
    }

    async fn publish_events(&self, events: &[JobEvent]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let body = serde_json::to_string(event)?;
            if matches!(event.body, JobEventKind::CancelRequested) {
                pipe.cmd("XADD").arg(self.keys.cancels()).arg("MAXLEN").arg("~").arg(CANCELS_CAP).arg("*");
                pipe.arg(BODY).arg(&body).ignore();
            }
            pipe.cmd("XADD")
                .arg(self.keys.events())
                .arg("MAXLEN")
                .arg("~")
                .arg(self.options.events_cap)
                .arg("*")
                .arg(BODY)
                .arg(body)
                .ignore();
        }
        let mut conn = self.conn().await?;
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn subscribe_events(&self) -> Result<EventStream, BusError> {
        self.tail(self.keys.events()).await
    }

    async fn subscribe_cancels(&self) -> Result<EventStream, BusError> {
        self.tail(self.keys.cancels()).await
    }

    async fn stats(&self, queue: &QueueName) -> Result<Vec<StreamStats>, BusError> {
        let mut conn = self.pooled().await?;
        let delayed: u64 = redis::cmd("ZCARD").arg(self.keys.delayed(queue)).query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(3);
        for p in Priority::ALL {
            let lane = self.keys.lane(queue, p);
            let length: u64 = redis::cmd("XLEN").arg(&lane).query_async(&mut conn).await?;
            let summary: Result<(u64, Option<String>, Option<String>, redis::Value), _> =
                redis::cmd("XPENDING").arg(&lane).arg(WORKER_GROUP).query_async(&mut conn).await;
            let (pending, oldest) = match summary {
                Ok((count, min_id, _, _)) => (count, min_id),
                Err(e) if is_code(&e, "NOGROUP") => (0, None),
                Err(e) => return Err(e.into()),
            };
            let oldest_pending_age = oldest.and_then(|id| {
                let ms: i64 = id.split('-').next()?.parse().ok()?;
                Some(Duration::from_millis((Utc::now().timestamp_millis() - ms).max(0) as u64))
            });
            out.push(StreamStats {
                stream: format!("{queue}:{p}"),
                length,
                pending,
                oldest_pending_age,
                delayed: if p == Priority::Normal { delayed } else { 0 },
            });
        }
        Ok(out)
    }

    async fn incarnation(&self) -> Result<String, BusError> {
        let mut conn = self.conn().await?;
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        // SET NX + GET in one round trip: the first caller after a data loss names the new incarnation.
        let (_, current): (Option<String>, String) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.incarnation())
            .arg(&fresh)
            .arg("NX")
            .cmd("GET")
            .arg(self.keys.incarnation())
            .query_async(&mut conn)
            .await?;
        Ok(current)
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.pooled().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

struct RedisConsumer {
    bus: RedisBus,
    queue: QueueName,
    name: String,
    lanes: [String; 3],
    /// The blocking connection; `None` after an error, so the next call reconnects (and recreates the
    /// consumer group, which a restarted Redis without persistence has forgotten).
    conn: Option<MultiplexedConnection>,
    rotation: PriorityRotation,
    next_reclaim: Instant,
    next_promote: Instant,
}

impl RedisConsumer {
    async fn ensure_conn(&mut self) -> Result<&mut MultiplexedConnection, BusError> {
        if self.conn.is_none() {
            let mut conn = self.bus.blocking_conn().await?;
            for lane in &self.lanes {
                let created: Result<(), _> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(lane)
                    .arg(WORKER_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match created {
                    Ok(()) => {}
                    Err(e) if is_code(&e, "BUSYGROUP") => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or(BusError::Closed)
    }

    fn to_delivery(&self, lane: Priority, entry: StreamId, delivery_count: u32) -> Option<Delivery> {
        let body = entry.get::<String>(BODY)?;
        match serde_json::from_str::<Message>(&body) {
            Ok(message) => Some(Delivery {
                queue: self.queue.clone(),
                priority: lane,
                entry_id: entry.id,
                consumer: self.name.clone(),
                delivery_count,
                message,
            }),
            Err(e) => {
                tracing::error!(error = %e, entry = %entry.id, "unreadable bus message skipped");
                None
            }
        }
    }

    /// Claims deliveries whose lease lapsed (their consumer died or froze).
    async fn reclaim(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let min_idle = self.bus.options.visibility_timeout.as_millis() as u64;
        let mut out = Vec::new();
        let lanes = self.lanes.clone();
        let mut conn = self.bus.conn().await?;
        for (i, lane) in lanes.iter().enumerate() {
            if out.len() >= max {
                break;
            }
            let idle: Vec<(String, String, u64, u64)> = match redis::cmd("XPENDING")
                .arg(lane)
                .arg(WORKER_GROUP)
                .arg("IDLE")
                .arg(min_idle)
                .arg("-")
                .arg("+")
                .arg(max - out.len())
                .query_async(&mut conn)
                .await
            {
                Ok(v) => v,
                Err(e) if is_code(&e, "NOGROUP") => continue,
                Err(e) => return Err(e.into()),
            };
            if idle.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(lane).arg(WORKER_GROUP).arg(&self.name).arg(min_idle);
            for (id, ..) in &idle {
                cmd.arg(id);
            }
            let claimed: StreamClaimReply = cmd.query_async(&mut conn).await?;
            let priority = Priority::from_index(i).unwrap_or_default();
            for entry in claimed.ids {
                let count = idle.iter().find(|(id, ..)| *id == entry.id).map_or(1, |(.., n)| *n as u32 + 1);
                if let Some(d) = self.to_delivery(priority, entry, count) {
                    tracing::info!(job_id = %d.message.job_id, delivery_count = d.delivery_count, "reclaimed abandoned delivery");
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Moves due delayed messages onto the lanes; returns the time until the next one is due.
    async fn promote(&mut self) -> Result<Option<Duration>, BusError> {
        let mut conn = self.bus.conn().await?;
        let now = Utc::now().timestamp_millis();
        let (_, next): (i64, String) = self
            .bus
            .scripts
            .promote
            .key(self.bus.keys.delayed(&self.queue))
            .key(&self.lanes[0])
            .key(&self.lanes[1])
            .key(&self.lanes[2])
            .arg(now)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut conn)
            .await?;
        let next: f64 = next.parse().unwrap_or(-1.0);
        Ok((next >= 0.0).then(|| Duration::from_millis((next as i64 - now).max(0) as u64)))
    }

    async fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let now = Instant::now();
        if now >= self.next_reclaim {
            // Scan for abandoned leases several times per visibility timeout (an `XPENDING … IDLE` per
            // lane is cheap), so a dead consumer's messages move on soon after their lease lapses.
            self.next_reclaim = now + (self.bus.options.visibility_timeout / 8).min(Duration::from_secs(5));
            let reclaimed = self.reclaim(max).await?;
            if !reclaimed.is_empty() {
                return Ok(reclaimed);
            }
        }
        let mut wait = wait.min(self.next_reclaim.saturating_duration_since(now));
        if now >= self.next_promote {
            self.next_promote = now + PROMOTE_EVERY;
            if let Some(due_in) = self.promote().await? {
                wait = wait.min(due_in);
            }
        }
        wait = wait.min(self.next_promote.saturating_duration_since(now)).min(self.bus.options.block);

        let order = self.rotation.next_order();
        let name = self.name.clone();
        let lanes = self.lanes.clone();
        let scripts = self.bus.scripts.clone();
        let conn = self.ensure_conn().await?;
        let fetched: Vec<(usize, String, String)> = {
            let mut invocation = scripts.fetch.prepare_invoke();
            invocation.key(&lanes[0]).key(&lanes[1]).key(&lanes[2]).arg(WORKER_GROUP).arg(&name).arg(max);
            for p in order {
                invocation.arg(p.index());
            }
            let flat: Vec<redis::Value> = invocation.invoke_async(conn).await?;
            flat.chunks_exact(3)
                .filter_map(|t| {
                    let lane: usize = redis::from_redis_value(t[0].clone()).ok()?;
                    let id: String = redis::from_redis_value(t[1].clone()).ok()?;
                    let body: String = redis::from_redis_value(t[2].clone()).ok()?;
                    Some((lane, id, body))
                })
                .collect()
        };
        let got = fetched.len();
        let mut batches: Vec<(Priority, StreamReadReply)> = Vec::new();
        if got == 0 && !wait.is_zero() {
            // Nothing ready: block on all lanes at once. If several lanes fill at the same moment Redis
            // may return one entry from each, so at most two more than asked for.
            let opts = StreamReadOptions::default()
                .group(WORKER_GROUP, &name)
                .count(1)
                .block(wait.as_millis().max(1) as usize);
            if let Some(reply) = conn.xread_options(&lanes, &[">", ">", ">"], &opts).await? {
                for key in reply.keys {
                    let p = Priority::ALL.into_iter().find(|p| lanes[p.index()] == key.key).unwrap_or_default();
                    batches.push((p, StreamReadReply { keys: vec![key] }));
                }
            }
        }
        let mut out = Vec::with_capacity(got);
        for (lane, id, body) in fetched {
            let priority = Priority::from_index(lane).unwrap_or_default();
            match serde_json::from_str::<Message>(&body) {
                Ok(message) => out.push(Delivery {
                    queue: self.queue.clone(),
                    priority,
                    entry_id: id,
                    consumer: self.name.clone(),
                    delivery_count: 1,
                    message,
                }),
                Err(e) => tracing::error!(error = %e, entry = %id, "unreadable bus message skipped"),
            }
        }
        for (p, reply) in batches {
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                if let Some(d) = self.to_delivery(p, entry, 1) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        match self.read(max, wait).await {
            Ok(out) => Ok(out),
            Err(e) => {
                if let BusError::Redis(re) = &e
                    && is_code(re, "NOGROUP")
                {
                    tracing::warn!(queue = %self.queue, "consumer group vanished (redis restarted?); recreating");
                }
                // Drop the connection: the next call reconnects and recreates the group if needed.
                self.conn = None;
                Err(e)
            }
        }
    }
}

impl RedisBus {
    /// Follows an events stream from its newest entry on: nothing published after this call is missed.
    async fn tail(&self, key: String) -> Result<EventStream, BusError> {
        let mut conn = self.conn().await?;
        let newest: StreamClaimReply =
            redis::cmd("XREVRANGE").arg(&key).arg("+").arg("-").arg("COUNT").arg(1).query_async(&mut conn).await?;
        drop(conn);
        let mut last_id = newest.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".to_owned());
        let (tx, rx) = tokio::sync::mpsc::channel::<JobEvent>(4096);
        let bus = self.clone();
        tokio::spawn(async move {
            let mut conn: Option<MultiplexedConnection> = None;
            let mut backoff = Duration::from_millis(100);
            while !tx.is_closed() {
                if conn.is_none() {
                    match bus.blocking_conn().await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "events stream: reconnecting to redis");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let opts = StreamReadOptions::default().count(1000).block(bus.options.block.as_millis() as usize);
                match c.xread_options(&[&key], &[&last_id], &opts).await {
                    Ok(reply) => {
                        backoff = Duration::from_millis(100);
                        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                            last_id = entry.id.clone();
                            let Some(body) = entry.get::<String>(BODY) else { continue };
                            match serde_json::from_str::<JobEvent>(&body) {
                                Ok(event) => {
                                    if tx.send(event).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "events stream: unreadable event skipped"),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "events stream: read failed; reconnecting");
                        conn = None;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()))
    }
}
