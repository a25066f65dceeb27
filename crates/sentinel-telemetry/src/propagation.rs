//! W3C trace context in and out of bus messages, so one trace spans gateway → bus → worker → database.

use std::collections::{BTreeMap, HashMap};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's context as `traceparent`/`tracestate` entries (empty when no trace is active).
pub fn current_trace_context() -> BTreeMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.into_iter().collect()
}

/// Makes `span` a child of the remote context carried in `carrier`.
pub fn attach_parent(span: &tracing::Span, carrier: &BTreeMap<String, String>) {
    if carrier.is_empty() {
        return;
    }
    let map: HashMap<String, String> = carrier.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let cx = TraceContextPropagator::new().extract(&map);
    // Fails only when the span is disabled, in which case there is nothing to attach to.
    let _ = span.set_parent(cx);
}
