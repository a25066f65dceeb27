//! The `api-gateway` binary: the service library behind the shared start-up (it serves its own ops
//! endpoints next to the API).

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
