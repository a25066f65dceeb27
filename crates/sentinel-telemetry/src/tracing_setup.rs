//! Builds and installs the tracing subscriber (logs + OpenTelemetry layer).

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sentinel_config::{LogFormat, TelemetrySettings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid configuration: `telemetry.log_level` {0}")]
    Filter(String),
    #[error("invalid configuration: `telemetry.otlp_endpoint` {0}")]
    Exporter(String),
}

/// Flushes and stops trace export when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Flush off the async runtime: the exporter's blocking client must not starve it.
        let provider = self.provider.clone();
        let _ = std::thread::spawn(move || {
            let _ = provider.shutdown();
        })
        .join();
    }
}

/// Installs logging and tracing for a binary named `service`. Call once, first thing in `main`.
pub fn init(service: &str, settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    install_crypto_provider();
    // Install the metrics recorder before anything records, or early samples are lost.
    let _ = crate::prometheus();
    let filter = EnvFilter::try_new(&settings.log_level).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let mut builder =
        SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service.to_owned()).build());
    if let Some(endpoint) = settings.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);

    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let fmt = if json {
        tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).boxed()
    } else {
        tracing_subscriber::fmt::layer().compact().boxed()
    };
    // `try_init` fails only if a subscriber is already installed (tests start several services).
    let _ = tracing_subscriber::registry().with(filter).with(otel).with(fmt).try_init();
    Ok(TelemetryGuard { provider })
}

/// Selects ring as the process's TLS crypto provider (the HTTP clients are built without a default one,
/// which keeps aws-lc and OpenSSL out of the build). Idempotent; tests call it too.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
