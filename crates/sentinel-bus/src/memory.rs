//! The in-process backend, for the embedded mode and for tests. Durability comes from the jobs table:
//! on start-up the embedded runtime republishes every unfinished job (see `sentinel-jobs`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sentinel_domain::{DeadLetterReason, JobEvent, Priority, QueueName};
use tokio::sync::{Notify, broadcast};

use crate::{
    Bus, BusError, BusOptions, Consumer, DeadLetter, Delivery, EventStream, Message, PriorityRotation, StreamStats,
};

/// In-process bus. Cloning shares the same queues.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    // A std Mutex: every critical section is short and never awaits, which is cheaper than tokio's.
    state: Mutex<State>,
    // Wakes blocked consumers when something is published or released.
    notify: Notify,
    events: broadcast::Sender<JobEvent>,
    options: BusOptions,
}

#[derive(Default)]
struct State {
    queues: HashMap<QueueName, MemQueue>,
    next_id: u64,
}

#[derive(Default)]
struct MemQueue {
    lanes: [VecDeque<Entry>; 3],
    pending: HashMap<String, Leased>,
    delayed: BTreeMap<(i64, u64), (Priority, Message)>,
    dead: VecDeque<DeadLetter>,
}

struct Entry {
    id: u64,
    added: Instant,
    message: Message,
}

struct Leased {
    entry: Entry,
    priority: Priority,
    consumer: String,
    leased_at: Instant,
    count: u32,
}

impl MemoryBus {
    pub fn new(options: BusOptions) -> Self {
        let (events, _) = broadcast::channel(16_384);
        Self { inner: Arc::new(Inner { state: Mutex::new(State::default()), notify: Notify::new(), events, options }) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of plain data; keep going.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_queue<R>(&self, queue: &QueueName, f: impl FnOnce(&mut MemQueue, &mut u64) -> R) -> R {
        let mut state = self.state();
        let State { queues, next_id } = &mut *state;
        let q = queues.entry(queue.clone()).or_default();
        f(q, next_id)
    }
}

impl MemQueue {
    fn push(&mut self, next_id: &mut u64, priority: Priority, message: Message) {
        *next_id += 1;
        self.lanes[priority.index()].push_back(Entry { id: *next_id, added: Instant::now(), message });
    }

    fn promote_due(&mut self, next_id: &mut u64, now_ms: i64) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let (priority, message) = entry.remove();
            self.push(next_id, priority, message);
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, queue: &QueueName, messages: &[Message]) -> Result<(), BusError> {
        self.with_queue(queue, |q, next_id| {
            for m in messages {
                q.push(next_id, m.priority, m.clone());
            }
        });
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn publish_at(&self, queue: &QueueName, message: &Message, due: DateTime<Utc>) -> Result<(), BusError> {
        self.with_queue(queue, |q, next_id| {
            *next_id += 1;
            q.delayed.insert((crate::due_millis(due), *next_id), (message.priority, message.clone()));
        });
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn consumer(&self, queue: &QueueName, consumer: &str) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(MemoryConsumer {
            bus: self.clone(),
            queue: queue.clone(),
            name: consumer.to_owned(),
            rotation: PriorityRotation::default(),
        }))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), BusError> {
        self.with_queue(&delivery.queue, |q, _| q.pending.remove(&delivery.entry_id));
        Ok(())
    }

    async fn renew(&self, delivery: &Delivery) -> Result<bool, BusError> {
        Ok(self.with_queue(&delivery.queue, |q, _| match q.pending.get_mut(&delivery.entry_id) {
            Some(leased) if leased.consumer == delivery.consumer => {
                leased.leased_at = Instant::now();
                true
            }
            _ => false,
        }))
    }

    async fn retry_at(&self, delivery: &Delivery, next: &Message, due: DateTime<Utc>) -> Result<(), BusError> {
        self.with_queue(&delivery.queue, |q, next_id| {
            q.pending.remove(&delivery.entry_id);
            *next_id += 1;
            q.delayed.insert((crate::due_millis(due), *next_id), (next.priority, next.clone()));
        });
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: DeadLetterReason, detail: &str) -> Result<(), BusError> {
        let cap = self.inner.options.dead_letter_cap;
        self.with_queue(&delivery.queue, |q, next_id| {
            q.pending.remove(&delivery.entry_id);
            *next_id += 1;
            q.dead.push_back(DeadLetter {
                entry_id: next_id.to_string(),
                reason,
                detail: detail.to_owned(),
                at: Utc::now(),
                message: delivery.message.clone(),
            });
            while q.dead.len() > cap {
                q.dead.pop_front();
            }
        });
        Ok(())
    }

    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self.with_queue(queue, |q, _| q.dead.iter().rev().take(limit).cloned().collect()))
    }

    async fn remove_dead_letter(&self, queue: &QueueName, entry_id: &str) -> Result<bool, BusError> {
        Ok(self.with_queue(queue, |q, _| {
            let before = q.dead.len();
            q.dead.retain(|d| d.entry_id != entry_id);
            q.dead.len() != before
        }))
    }

    async fn publish_event(&self, event: &JobEvent) -> Result<(), BusError> {
        // No subscriber is not an error: nobody is watching.
        let _ = self.inner.events.send(event.clone());
        Ok(())
    }

    async fn subscribe_events(&self) -> Result<EventStream, BusError> {
        let rx = self.inner.events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "event subscriber lagged; live events dropped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn stats(&self, queue: &QueueName) -> Result<Vec<StreamStats>, BusError> {
        Ok(self.with_queue(queue, |q, _| {
            Priority::ALL
                .iter()
                .map(|p| {
                    let pending: Vec<&Leased> = q.pending.values().filter(|l| l.priority == *p).collect();
                    StreamStats {
                        stream: format!("{queue}:{p}"),
                        length: (q.lanes[p.index()].len() + pending.len()) as u64,
                        pending: pending.len() as u64,
                        oldest_pending_age: pending.iter().map(|l| l.entry.added.elapsed()).max(),
                        delayed: if *p == Priority::Normal { q.delayed.len() as u64 } else { 0 },
                    }
                })
                .collect()
        }))
    }

    fn in_process(&self) -> bool {
        true
    }

    async fn incarnation(&self) -> Result<String, BusError> {
        // The in-process bus lives and dies with its process (and its jobs are requeued at start).
        Ok("memory".to_owned())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct MemoryConsumer {
    bus: MemoryBus,
    queue: QueueName,
    name: String,
    rotation: PriorityRotation,
}

impl MemoryConsumer {
    /// One non-blocking pass; also returns how long until something may become ready.
    fn take(&mut self, max: usize) -> (Vec<Delivery>, Duration) {
        let visibility = self.bus.inner.options.visibility_timeout;
        let order = self.rotation.next_order();
        let (queue, name) = (self.queue.clone(), self.name.clone());
        self.bus.with_queue(&queue, |q, next_id| {
            let now = Instant::now();
            q.promote_due(next_id, Utc::now().timestamp_millis());
            let mut out = Vec::new();
            // Abandoned leases first: those jobs have waited longest.
            let lapsed: Vec<String> = q
                .pending
                .iter()
                .filter(|(_, l)| now.duration_since(l.leased_at) >= visibility)
                .map(|(id, _)| id.clone())
                .take(max)
                .collect();
            for id in lapsed {
                if let Some(l) = q.pending.get_mut(&id) {
                    l.consumer = name.clone();
                    l.leased_at = now;
                    l.count += 1;
                    out.push(Delivery {
                        queue: queue.clone(),
                        priority: l.priority,
                        entry_id: id,
                        consumer: name.clone(),
                        delivery_count: l.count,
                        message: l.entry.message.clone(),
                    });
                }
            }
            for p in order {
                while out.len() < max {
                    let Some(entry) = q.lanes[p.index()].pop_front() else { break };
                    let id = entry.id.to_string();
                    out.push(Delivery {
                        queue: queue.clone(),
                        priority: p,
                        entry_id: id.clone(),
                        consumer: name.clone(),
                        delivery_count: 1,
                        message: entry.message.clone(),
                    });
                    q.pending
                        .insert(id, Leased { entry, priority: p, consumer: name.clone(), leased_at: now, count: 1 });
                }
            }
            let next_due = q
                .delayed
                .first_key_value()
                .map(|((ms, _), _)| Duration::from_millis((*ms - Utc::now().timestamp_millis()).max(0) as u64));
            let next_lapse =
                q.pending.values().map(|l| (l.leased_at + visibility).saturating_duration_since(now)).min();
            let wake = next_due.into_iter().chain(next_lapse).min().unwrap_or(Duration::from_secs(3600));
            (out, wake)
        })
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a publish between the look and the wait is seen.
            let bus = self.bus.clone();
            let mut notified = pin!(bus.inner.notify.notified());
            notified.as_mut().enable();
            let (out, wake) = self.take(max.max(1));
            if !out.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(left.min(wake).max(Duration::from_millis(1))) => {}
            }
        }
    }
}
