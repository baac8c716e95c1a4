//! Logging and tracing for the process: one `tracing` subscriber, and OpenTelemetry export when
//! an OTLP endpoint is configured (nothing is exported otherwise).
//!
//! The kernel opens a span for every message an actor handles, parented on the sender's span, so
//! with the OpenTelemetry layer installed a request is one trace across actors.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

/// Keeps the exporter alive; flushes pending spans when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // Best effort: a collector that went away must not keep the process from exiting.
            let _ = p.shutdown();
        }
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter rejected its configuration.
    #[error("cannot set up OTLP export to {endpoint}: {source}")]
    Otlp {
        /// The endpoint given.
        endpoint: String,
        /// The exporter's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Install the global subscriber. `RUST_LOG` overrides the level; `--debug` raises it.
/// `otlp_endpoint` falls back to `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn init(debug: bool, otlp_endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let env_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let endpoint = otlp_endpoint.map(str::to_owned).or(env_endpoint);
    let Some(endpoint) = endpoint else {
        // A second init (tests) keeps the first subscriber.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        return Ok(Telemetry::default());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::Otlp { endpoint, source })?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("k3s")
                .build(),
        )
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("k3s"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}
