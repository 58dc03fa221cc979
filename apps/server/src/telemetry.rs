//! Logging and tracing through `tracing`: human-readable lines by default, JSON when
//! `log.format = "json"`; `RUST_LOG` overrides the configured level. Lines carry ANSI
//! colours only when standard output is a terminal (never in a file, a pipe or a
//! container's log).
//!
//! With `log.otlp_endpoint` set (an OTLP/HTTP collector's base URL, such as
//! `http://127.0.0.1:4318`), the same spans (each request's, with its request id, and the
//! stores' and services' spans inside it) are also exported as OpenTelemetry traces over
//! OTLP/HTTP with protobuf (`tracing-opentelemetry`, `opentelemetry-otlp`), in batches
//! from a thread of their own, under the service name `seatkeeper-server`. The
//! `OTEL_BSP_*` variables tune the batches.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing_subscriber::{
    layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer, Registry,
};

use crate::configuration::{LogFormat, LogSettings};

/// The service name traces are exported under.
pub const SERVICE_NAME: &str = "seatkeeper-server";

/// What must outlive the program's work: the trace exporter, whose last batch is sent
/// by [`Telemetry::shutdown`].
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not yet exported and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(e) = provider.shutdown() {
                eprintln!("seatkeeper-server: the last traces could not be exported: {e}");
            }
        }
    }
}

/// Installs the global subscriber; a second call (tests) installs nothing and exports
/// nothing. Fails when `log.otlp_endpoint` cannot be used.
pub fn init(settings: &LogSettings) -> anyhow::Result<Telemetry> {
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(settings.level.as_str()))
    };
    let lines = tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal());
    let lines = match settings.format {
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter())
            .boxed(),
        LogFormat::Text => lines.with_filter(filter()).boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![lines];
    let traces = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let provider = trace_provider(endpoint)?;
            let tracer = provider.tracer(SERVICE_NAME);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(filter())
                    .boxed(),
            );
            Some(provider)
        }
        None => None,
    };
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        // Another subscriber came first (tests start many apps in one process).
        return Ok(Telemetry { traces: None });
    }
    Ok(Telemetry { traces })
}

/// Exports spans to the OTLP/HTTP collector at `endpoint` (its base URL).
fn trace_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| anyhow::anyhow!("invalid configuration: log.otlp_endpoint: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build())
}
