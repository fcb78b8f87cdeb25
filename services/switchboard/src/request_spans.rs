//! A span for every management (`/v1`) and Pusher REST (`/apps/…`) request: its method, route
//! template and status, never its path or query (a REST query holds the app key and the
//! signature) nor any header. A `debug` span, so only the trace layer asks for it (see
//! `telemetry`). A `traceparent` header continues the caller's trace.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use broker::trace_context::TraceParent;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Mount with `actix_web::middleware::from_fn(switchboard::request_spans::trace_requests)`.
pub async fn trace_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = request.path();
    if !(path.starts_with("/v1/") || path.starts_with("/apps/")) {
        return next.call(request).await;
    }
    let span = tracing::debug_span!(
        "http.request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method(),
        http.route = Empty,
        http.response.status_code = Empty,
    );
    if !span.is_disabled()
        && let Some(parent) = request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(TraceParent::parse)
    {
        parent.adopt(&span);
    }
    let method = request.method().clone();
    let response = next.call(request).instrument(span.clone()).await;
    if span.is_disabled() {
        return response;
    }
    let (route, status) = match &response {
        Ok(response) => (
            response.request().match_pattern(),
            response.status().as_u16(),
        ),
        Err(error) => (None, error.as_response_error().status_code().as_u16()),
    };
    let route = route.unwrap_or_else(|| "unrouted".to_owned());
    // Started spans keep their first name in the tracing layer: rename the OpenTelemetry span.
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
    span.record("http.route", route);
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    response
}
