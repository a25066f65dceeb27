//! Telemetry for every Sentinel binary: logs (pretty on a terminal, JSON in containers), OpenTelemetry
//! traces with W3C context propagation, Prometheus metrics, the ops HTTP endpoints and the shutdown signal.

pub mod metric;
pub mod ops;
mod propagation;
mod shutdown;
mod tracing_setup;

pub use propagation::{attach_parent, current_trace_context};
pub use shutdown::{Shutdown, wait_for_signal};
pub use tracing_setup::{TelemetryError, TelemetryGuard, init, install_crypto_provider};

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. One per process, so services sharing
/// a process (the all-in-one binary, tests) share it.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".to_owned()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global (only possible if something else installed one):
            // keep a private one so /metrics still renders.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}
