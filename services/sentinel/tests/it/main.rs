//! Black-box tests of the binaries: the embedded `sentinel up`, the five distributed services on
//! PostgreSQL + Redis, worker crashes (SIGKILL, repeated aborts), database and Redis outages, graceful shutdown, and the
//! architecture invariants.

mod architecture;
mod distributed;
mod embedded;
mod notifications;
mod outages;
use sentinel_testkit::procs;
mod provisioning;
mod scheduling;
mod streams;
mod telemetry;
