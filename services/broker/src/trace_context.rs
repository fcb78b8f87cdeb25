//! The W3C trace context a publication carries from the node that publishes it to the nodes
//! that deliver it, so one trace holds the publish and every node's delivery.
//!
//! Only a node with traces on has a context to carry (`TraceParent::of_current_span` is `None`
//! otherwise, without allocating), so with traces off the broker's messages are what they were.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// A W3C `traceparent` value that parsed as a valid span context (`00-<trace id>-<span
/// id>-<flags>`, 55 characters for version 00).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// The longest value accepted from the wire: version 00 is 55 characters; later versions
    /// may append fields, which the propagator ignores.
    pub const MAX_LEN: usize = 256;

    /// The current span's context, when traces are on and it has one.
    pub fn of_current_span() -> Option<Self> {
        let context = tracing::Span::current().context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::with_capacity(1);
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove(TRACEPARENT).map(Self)
    }

    /// A value read from another node; `None` when it is not a valid `traceparent`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > Self::MAX_LEN {
            return None;
        }
        let valid = extract(text).span().span_context().is_valid();
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Makes `span` a child of the span this context names (on the publishing node). A span
    /// no OpenTelemetry layer sees (traces off here) is left as it is.
    pub fn adopt(&self, span: &tracing::Span) {
        // An error only says that no layer records `span`.
        let _ = span.set_parent(extract(&self.0));
    }
}

fn extract(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_trace_parents_parse() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(valid).unwrap().as_str(), valid);
        for invalid in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "not a trace parent",
        ] {
            assert!(TraceParent::parse(invalid).is_none(), "{invalid:?}");
        }
        let long = format!(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{}",
            "a".repeat(300)
        );
        assert!(TraceParent::parse(&long).is_none(), "bounded");
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_nothing_to_carry() {
        let span = tracing::info_span!("publish");
        let _entered = span.enter();
        assert!(TraceParent::of_current_span().is_none());
    }
}
