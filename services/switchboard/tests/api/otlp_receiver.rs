//! An OTLP/HTTP receiver on loopback, as a collector is to the exporter: `POST /v1/traces`
//! with a protobuf `ExportTraceServiceRequest`, decoded by `opentelemetry-proto` (prost).

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// One span as received, with every string the exporter sent about it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    /// Empty for a root span.
    pub parent_span_id: Vec<u8>,
    /// The span's own attributes.
    pub attributes: Vec<(String, String)>,
    /// The attributes of its events, the event names, its resource's attributes and its
    /// links' attributes: everything else that could leak.
    pub other_strings: Vec<String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Every key and value the span carried, for scanning.
    pub fn all_strings(&self) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .flat_map(|(key, value)| [key.as_str(), value.as_str()])
            .chain(self.other_strings.iter().map(String::as_str))
            .chain([self.name.as_str(), self.service.as_str()])
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Bodies that did not decode, or requests to another path.
    refused: Mutex<Vec<String>>,
}

pub struct OtlpReceiver {
    pub port: u16,
    received: Arc<Received>,
    server: actix_web::dev::ServerHandle,
}

impl OtlpReceiver {
    pub fn start() -> Self {
        let received = Arc::new(Received::default());
        let data = web::Data::from(received.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route("/v1/traces", web::post().to(export))
                .default_service(web::to(refuse))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("the receiver binds");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            received,
            server: handle,
        }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    pub fn refused(&self) -> Vec<String> {
        self.received.refused.lock().unwrap().clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

async fn export(received: web::Data<Received>, body: web::Bytes) -> HttpResponse {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            received.refused.lock().unwrap().push(error.to_string());
            return HttpResponse::BadRequest().finish();
        }
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|resource| resource.attributes)
            .unwrap_or_default();
        let service = resource
            .iter()
            .find(|attribute| attribute.key == "service.name")
            .map(|attribute| text(attribute.value.as_ref()))
            .unwrap_or_default();
        let resource_strings: Vec<String> = strings(&resource).collect();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let mut other_strings = resource_strings.clone();
                for event in &span.events {
                    other_strings.push(event.name.clone());
                    other_strings.extend(strings(&event.attributes));
                }
                for link in &span.links {
                    other_strings.extend(strings(&link.attributes));
                }
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|attribute| (attribute.key.clone(), text(attribute.value.as_ref())))
                        .collect(),
                    other_strings,
                });
            }
        }
    }
    received.spans.lock().unwrap().extend(spans);
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

async fn refuse(received: web::Data<Received>, request: actix_web::HttpRequest) -> HttpResponse {
    let what = format!("{} {}", request.method(), request.path());
    received.refused.lock().unwrap().push(what);
    HttpResponse::NotFound().finish()
}

fn strings(attributes: &[KeyValue]) -> impl Iterator<Item = String> + '_ {
    attributes
        .iter()
        .flat_map(|attribute| [attribute.key.clone(), text(attribute.value.as_ref())])
}

/// An attribute value as text (numbers and booleans too; arrays and maps as their debug form,
/// so a scan still sees every string inside).
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::DoubleValue(n)) => n.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
