//! The `scheduler` binary: the service library behind the shared start-up.

/// mimalloc: the job path allocates many small short-lived buffers, where glibc's malloc spent a
/// sixth of the CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sentinel_jobs::service::run_binary(
        scheduler::SERVICE,
        "127.0.0.1:9104",
        Vec::new(),
        sentinel_jobs::service::OpsEndpoints::WatchingQueues,
        scheduler::run,
    )
    .await
}
