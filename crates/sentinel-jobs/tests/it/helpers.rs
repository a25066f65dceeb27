//! A spine with a worker and a relay running, on a fresh database and bus prefix.

use std::time::Duration;

use sentinel_jobs::db::JobRecord;
use sentinel_jobs::domain::{JobId, JobKind, JobState, QueueName, builtin};
use sentinel_jobs::{Catalog, EnqueueRequest, Relay, Spine, Worker, WorkerOptions, builtin_handlers};
use sentinel_telemetry::Shutdown;
use sentinel_testkit::TestDb;

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Embedded,
    Distributed,
}

pub struct Env {
    pub spine: Spine,
    pub shutdown: Shutdown,
    pub _db: TestDb,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Env {
    pub async fn spine_only(mode: Mode, extra: &[(&str, &str)]) -> Self {
        let db = match mode {
            Mode::Embedded => TestDb::sqlite().expect("sqlite"),
            Mode::Distributed => TestDb::postgres().await.expect("postgres"),
        };
        let backend = match mode {
            Mode::Embedded => "memory",
            Mode::Distributed => "redis",
        };
        let settings = sentinel_testkit::settings(&db.url, backend, &sentinel_testkit::unique_prefix(), extra);
        let spine = Spine::connect(&settings, Catalog::builtin(true)).await.expect("spine");
        Self { spine, shutdown: Shutdown::new(), _db: db, tasks: Vec::new() }
    }

    /// A spine plus one worker on the default queue and the outbox relay.
    pub async fn start(mode: Mode, extra: &[(&str, &str)]) -> Self {
        let mut env = Self::spine_only(mode, extra).await;
        env.add_worker("w1");
        let relay = Relay::new(env.spine.clone());
        env.tasks.push(tokio::spawn(relay.run(env.shutdown.clone())));
        env
    }

    pub fn add_worker(&mut self, name: &str) {
        self.add_worker_on(name, &[builtin::DEFAULT_QUEUE]);
    }

    /// A worker consuming the given queues, in that order.
    pub fn add_worker_on(&mut self, name: &str, queues: &[&str]) {
        self.add_worker_with(name, queues, builtin_handlers(true));
    }

    /// A worker consuming the given queues with the given handlers.
    pub fn add_worker_with(
        &mut self,
        name: &str,
        queues: &[&str],
        handlers: std::collections::HashMap<JobKind, std::sync::Arc<dyn sentinel_jobs::JobHandler>>,
    ) {
        let queues = queues.iter().map(|q| QueueName::parse(q).expect("valid")).collect();
        let options = WorkerOptions::from_spine(&self.spine, name, queues);
        let worker = Worker::new(self.spine.clone(), handlers, options);
        self.tasks.push(tokio::spawn(worker.run(self.shutdown.clone())));
    }

    pub async fn enqueue(&self, kind: &str, payload: serde_json::Value) -> JobRecord {
        self.enqueue_with(EnqueueRequest::new(JobKind::parse(kind).expect("kind"), payload)).await
    }

    pub async fn enqueue_with(&self, req: EnqueueRequest) -> JobRecord {
        self.spine.enqueue(req).await.expect("enqueue").job
    }

    pub async fn get(&self, id: JobId) -> JobRecord {
        self.spine.store().get(id).await.expect("get").expect("exists")
    }

    /// Waits until the job is in `state`, failing the test after `timeout`.
    pub async fn wait_for(&self, id: JobId, state: JobState, timeout: Duration) -> JobRecord {
        let found = sentinel_testkit::eventually(timeout, || async {
            let job = self.get(id).await;
            (job.state == state).then_some(job)
        })
        .await;
        match found {
            Some(job) => job,
            None => panic!("job {id} did not reach {state} in {timeout:?}: {:?}", self.get(id).await),
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// Defines one test per mode from an `async fn(Mode)`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::helpers::Mode::Embedded).await } )*
        }
        mod distributed {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::helpers::Mode::Distributed).await } )*
        }
    };
}
