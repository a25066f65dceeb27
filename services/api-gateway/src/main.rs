//! The `api-gateway` binary: the service library behind the shared start-up (it serves its own ops
//! endpoints next to the API).

/// mimalloc: the job path allocates many small short-lived buffers, where glibc's malloc spent a
/// sixth of the CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sentinel_jobs::service::run_binary(
        api_gateway::SERVICE,
        "127.0.0.1:8080",
        Vec::new(),
        sentinel_jobs::service::OpsEndpoints::Off,
        api_gateway::run,
    )
    .await
}
