//! Logging and traces. Logs: human-readable by default, JSON with `SWITCHBOARD_LOG_FORMAT=json`;
//! the level from `RUST_LOG` (default `info`). Traces: OpenTelemetry over OTLP/HTTP with
//! protobuf, configured by the standard `OTEL_*` variables and off unless an OTLP endpoint is
//! named (see `TraceSettings::from_env`).
//!
//! The two are separate layers with filters of their own, so the spans made only for traces
//! (`debug` spans in our crates) cost nothing when traces are off: no layer wants them.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "switchboard";

/// How long a shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether traces are exported, decided from the environment alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceSettings {
    /// No exporter, no OpenTelemetry layer: the trace-only spans are disabled callsites.
    Off,
    /// OTLP over HTTP with protobuf; the exporter and the SDK read the rest of the standard
    /// variables themselves (endpoint, headers, sampler, batch delays, resource).
    Otlp,
}

impl TraceSettings {
    /// On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or
    /// `OTEL_TRACES_EXPORTER=otlp` asks for the default endpoint); off otherwise, and always
    /// off with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. A service name or
    /// sampler alone does not turn traces on: a pod that names itself for another tool must
    /// not start exporting to a collector that isn't there.
    pub fn from_env(variable: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| variable(name).filter(|value| !value.trim().is_empty());
        let disabled = set("OTEL_SDK_DISABLED").is_some_and(|value| value.trim() == "true");
        let exporter = set("OTEL_TRACES_EXPORTER");
        if disabled
            || exporter
                .as_deref()
                .is_some_and(|value| value.trim() == "none")
        {
            return Self::Off;
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_some();
        if endpoint || exporter.is_some_and(|value| value.trim() == "otlp") {
            Self::Otlp
        } else {
            Self::Off
        }
    }
}

/// What `init` set up; `shutdown` exports the spans still queued.
#[must_use = "call shutdown() before the process exits, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn traces_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what the batch still holds (at most `FLUSH_TIMEOUT`) and stops the exporter.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(%error, "the last traces could not be exported");
        }
    }
}

/// Installs the global subscriber: logs always, the OpenTelemetry layer when the environment
/// asks for traces. A second call (tests start many apps in one process) changes nothing.
pub fn init() -> Telemetry {
    let provider = match TraceSettings::from_env(|name| std::env::var(name).ok()) {
        TraceSettings::Off => None,
        TraceSettings::Otlp => match tracer_provider() {
            Ok(provider) => Some(provider),
            Err(error) => {
                // Logging is not set up yet: say it on stderr, and run without traces.
                eprintln!("switchboard: traces are off, the OTLP exporter failed: {error}");
                None
            }
        },
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchboard"))
            .with_location(false)
            .with_threads(false)
            .with_filter(FilterFn::new(exported))
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout is for output scripts read (`admin create-app` prints JSON).
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let json = std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|format| format == "json");
    let logs = if json {
        logs.json().with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    // A second init is harmless, so its error is not.
    if Registry::default()
        .with(logs)
        .with(traces)
        .try_init()
        .is_err()
    {
        return Telemetry { provider: None };
    }
    Telemetry { provider }
}

fn tracer_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The SDK's resource from the environment (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`),
/// named `switchboard` when it names no service.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder()
            .with_attribute(KeyValue::new("service.name", DEFAULT_SERVICE_NAME))
            .build()
    }
}

/// The crates whose spans are exported, `debug` ones included (the trace-only spans).
const TRACED_CRATES: [&str; 6] = [
    "switchboard",
    "edge",
    "broker",
    "control",
    "billing",
    "tenancy",
];

/// Spans that last as long as a client's connection: exported, each would hold every client
/// event of its connection in one trace; left out, each publication is a trace of its own.
const CONNECTION_SPANS: [&str; 3] = ["connection", "carrier_session", "xhr_session"];

/// What the OpenTelemetry layer sees: our crates' spans at `debug` and above (not the
/// connection-long ones), and of events only sqlx's statements (their SQL text, with
/// placeholders: sqlx never logs the bound values). Other events stay out, so no error text
/// or URL that might hold a secret becomes a span event.
fn exported(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        let ours = TRACED_CRATES.iter().any(|name| {
            metadata.target() == *name
                || metadata
                    .target()
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        return ours
            && *metadata.level() <= Level::DEBUG
            && !CONNECTION_SPANS.contains(&metadata.name());
    }
    metadata.target() == "sqlx::query"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(variables: &[(&str, &str)]) -> TraceSettings {
        TraceSettings::from_env(|name| {
            variables
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_named() {
        assert_eq!(settings(&[]), TraceSettings::Off);
        assert_eq!(
            settings(&[
                ("OTEL_SERVICE_NAME", "edge"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
            ]),
            TraceSettings::Off,
            "naming the service or the sampler alone exports nothing"
        );
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            TraceSettings::Off
        );
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]),
            TraceSettings::Otlp
        );
        assert_eq!(
            settings(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4318/v1/traces"
            )]),
            TraceSettings::Otlp
        );
        assert_eq!(
            settings(&[("OTEL_TRACES_EXPORTER", "otlp")]),
            TraceSettings::Otlp
        );
    }

    #[test]
    fn the_standard_switches_turn_traces_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            settings(&[endpoint, ("OTEL_SDK_DISABLED", "true")]),
            TraceSettings::Off
        );
        assert_eq!(
            settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            TraceSettings::Off
        );
        assert_eq!(
            settings(&[endpoint, ("OTEL_SDK_DISABLED", "false")]),
            TraceSettings::Otlp
        );
    }
}
