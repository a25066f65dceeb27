//! The `scheduler` binary: the service library behind the shared start-up.

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
