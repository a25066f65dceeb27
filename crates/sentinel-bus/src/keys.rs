//! Redis key names. Every key of one queue shares a `{prefix:queue}` hash tag, so the multi-key scripts
//! stay inside one Redis Cluster slot, and the prefix lets two deployments share one Redis.

use sentinel_domain::{Priority, QueueName};

/// The consumer group every worker pool of a queue joins.
pub const WORKER_GROUP: &str = "workers";

#[derive(Debug, Clone)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    fn tag(&self, queue: &QueueName) -> String {
        format!("{{{}:{}}}", self.prefix, queue)
    }

    /// The stream of one priority lane.
    pub fn lane(&self, queue: &QueueName, priority: Priority) -> String {
        format!("{}:{}", self.tag(queue), priority.as_str())
    }

    /// All lanes, highest priority first (the order scripts take them in `KEYS`).
    pub fn lanes(&self, queue: &QueueName) -> [String; 3] {
        Priority::ALL.map(|p| self.lane(queue, p))
    }

    /// Sorted set of delayed messages, scored by due time in milliseconds.
    pub fn delayed(&self, queue: &QueueName) -> String {
        format!("{}:delayed", self.tag(queue))
    }

    /// Stream of dead letters.
    pub fn dead(&self, queue: &QueueName) -> String {
        format!("{}:dead", self.tag(queue))
    }

    /// The deployment-wide events stream.
    pub fn events(&self) -> String {
        format!("{{{}}}:events", self.prefix)
    }

    /// The deployment-wide stream of cancel requests only (a copy of those events).
    pub fn cancels(&self) -> String {
        format!("{{{}}}:cancels", self.prefix)
    }

    /// A marker naming the current incarnation of this deployment's bus data (see `Bus::incarnation`).
    pub fn incarnation(&self) -> String {
        format!("{{{}}}:incarnation", self.prefix)
    }

    /// Every key this deployment owns matches this pattern (used by tests to clean up).
    pub fn pattern(&self) -> String {
        format!("{{{}*", self.prefix)
    }
}
