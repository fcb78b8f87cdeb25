//! The fake's HTTP side: Stripe's paths under `/v1`, form-encoded bodies, Stripe's error
//! JSON, `Idempotency-Key` replays of the first answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::fake::state::{FakeState, StoredMeterEvent, now, public_session};
use crate::fake::subscriptions;

pub(super) struct Shared {
    pub state: Arc<Mutex<FakeState>>,
    pub secret_key: String,
    pub signer: Signer,
}

/// Signs events with the endpoint's secret, as Stripe does.
pub(super) struct Signer {
    pub webhook_secret: String,
}

impl Signer {
    pub fn sign_at(&self, event: &Value, timestamp: i64) -> crate::fake::SignedEvent {
        let payload = event.to_string();
        let signature = crate::signature::sign(payload.as_bytes(), &self.webhook_secret, timestamp);
        crate::fake::SignedEvent {
            id: event["id"].as_str().unwrap_or_default().to_owned(),
            kind: event["type"].as_str().unwrap_or_default().to_owned(),
            payload,
            signature,
        }
    }

    pub fn sign(&self, event: &Value) -> crate::fake::SignedEvent {
        self.sign_at(event, now())
    }
}

/// A form body or query string as Stripe encodes it (`line_items[0][price]=…`).
pub(super) type Form = HashMap<String, String>;

pub(super) type Reply = (u16, Value);

pub(super) fn configure(config: &mut web::ServiceConfig) {
    crate::fake::checkout_page::configure(config);
    crate::fake::delivery::configure(config);
    config.default_service(web::to(handle));
}

async fn handle(request: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {}", shared.secret_key));
    if !authorized {
        return reply((
            401,
            error("authentication_error", "Invalid API Key provided"),
        ));
    }
    let method = request.method().as_str().to_owned();
    let path = request.path().to_owned();
    let mut form: Form = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let query: Form = serde_urlencoded::from_str(request.query_string()).unwrap_or_default();
    form.extend(query);
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(|key| format!("{method} {path} {key}"));

    let mut state = shared.state.lock().expect("fake stripe state");
    state.requests.push((method.clone(), path.clone()));
    // A Stripe that is down answers nothing, replays included.
    if state.meter_outage && path == "/v1/billing/meter_events" {
        return reply((500, error("api_error", "An unknown error occurred")));
    }
    if let Some(key) = &idempotency_key
        && let Some((status, body)) = state.idempotent_replies.get(key)
    {
        return HttpResponse::build(status_code(*status))
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(body.clone());
    }
    let (status, body) = route(&mut state, &method, &path, &form);
    // Stripe keeps the answer of a request that ran (not of one that failed on its side).
    if let Some(key) = idempotency_key
        && status < 500
    {
        state
            .idempotent_replies
            .insert(key, (status, body.to_string()));
    }
    let events_waiting = !state.pending_events.is_empty();
    drop(state);
    if events_waiting {
        crate::fake::delivery::deliver_soon(shared);
    }
    reply((status, body))
}

fn route(state: &mut FakeState, method: &str, path: &str, form: &Form) -> Reply {
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["products"]) => create_product(state, form),
        ("POST", ["prices"]) => create_price(state, form),
        ("POST", ["billing", "meters"]) => create_meter(state, form),
        ("GET", ["billing", "meters", meter, "event_summaries"]) => summaries(state, meter, form),
        ("POST", ["billing", "meter_events"]) => create_meter_event(state, form),
        ("POST", ["customers"]) => create_customer(state, form),
        ("POST", ["checkout", "sessions"]) => create_checkout_session(state, form),
        ("POST", ["billing_portal", "sessions"]) => create_portal_session(state, form),
        ("GET", ["subscriptions", id]) => match state.subscriptions.get(*id) {
            Some(subscription) => (200, subscription.clone()),
            None => missing("subscription", id),
        },
        ("POST", ["subscriptions", id]) => subscriptions::update_subscription(state, id, form),
        ("POST", ["subscription_schedules"]) => subscriptions::create_schedule(state, form),
        ("GET", ["subscription_schedules", id]) => match state.schedules.get(*id) {
            Some(schedule) => (200, schedule.clone()),
            None => missing("subscription_schedule", id),
        },
        ("POST", ["subscription_schedules", id]) => subscriptions::update_schedule(state, id, form),
        ("POST", ["subscription_schedules", id, "release"]) => match state.release_schedule(id) {
            Some(schedule) => (200, schedule),
            None => missing("subscription_schedule", id),
        },
        ("GET", ["invoices"]) => list_invoices(state, form),
        _ => (
            404,
            error(
                "invalid_request_error",
                &format!("Unrecognized request URL ({method}: {path})"),
            ),
        ),
    }
}

fn create_product(state: &mut FakeState, form: &Form) -> Reply {
    let id = form
        .get("id")
        .cloned()
        .unwrap_or_else(|| state.new_id("prod"));
    if state.products.contains_key(&id) {
        let mut body = error(
            "invalid_request_error",
            &format!("Product already exists: {id}"),
        );
        body["error"]["code"] = json!("resource_already_exists");
        return (400, body);
    }
    let product = json!({
        "id": id, "object": "product", "active": true, "created": now(), "updated": now(),
        "name": form.get("name"), "livemode": false, "metadata": {}, "images": [],
        "marketing_features": [], "type": "service",
    });
    state.products.insert(id, product.clone());
    (200, product)
}

fn create_price(state: &mut FakeState, form: &Form) -> Reply {
    let Some(product) = form
        .get("product")
        .filter(|p| state.products.contains_key(*p))
    else {
        return missing("product", form.get("product").map_or("", String::as_str));
    };
    let id = state.new_id("price");
    let price = json!({
        "id": id, "object": "price", "active": true, "created": now(), "currency": form.get("currency"),
        "product": product, "lookup_key": form.get("lookup_key"), "livemode": false, "metadata": {},
        "unit_amount": form.get("unit_amount").and_then(|a| a.parse::<i64>().ok()),
        "unit_amount_decimal": form.get("unit_amount_decimal").or(form.get("unit_amount")),
        "billing_scheme": "per_unit", "type": "recurring",
        "recurring": {
            "interval": form.get("recurring[interval]"),
            "interval_count": 1,
            "meter": form.get("recurring[meter]"),
            "usage_type": form.get("recurring[usage_type]").map_or("licensed", String::as_str),
        },
    });
    state.prices.insert(id, price.clone());
    (200, price)
}

fn create_meter(state: &mut FakeState, form: &Form) -> Reply {
    let event_name = form.get("event_name").cloned().unwrap_or_default();
    if state
        .meters
        .values()
        .any(|meter| meter["event_name"] == event_name.as_str())
    {
        return (
            400,
            error(
                "invalid_request_error",
                "A meter with this event_name already exists",
            ),
        );
    }
    let id = state.new_id("mtr");
    let meter = json!({
        "id": id, "object": "billing.meter", "created": now(), "updated": now(), "livemode": false,
        "display_name": form.get("display_name"), "event_name": event_name, "status": "active",
        "default_aggregation": { "formula": form.get("default_aggregation[formula]") },
        "customer_mapping": {
            "event_payload_key": form.get("customer_mapping[event_payload_key]"),
            "type": form.get("customer_mapping[type]"),
        },
        "value_settings": { "event_payload_key": form.get("value_settings[event_payload_key]") },
    });
    state.meters.insert(id, meter.clone());
    (200, meter)
}

fn create_meter_event(state: &mut FakeState, form: &Form) -> Reply {
    let (Some(event_name), Some(customer), Some(value)) = (
        form.get("event_name"),
        form.get("payload[stripe_customer_id]"),
        form.get("payload[value]")
            .and_then(|v| v.parse::<i64>().ok()),
    ) else {
        return (
            400,
            error(
                "invalid_request_error",
                "event_name, payload[stripe_customer_id] and an integer payload[value] are required",
            ),
        );
    };
    let identifier = form
        .get("identifier")
        .cloned()
        .unwrap_or_else(|| state.new_id("mevt"));
    if state
        .meter_events
        .iter()
        .any(|event| event.identifier == identifier)
    {
        let mut body = error(
            "invalid_request_error",
            "An event with this identifier already exists",
        );
        body["error"]["code"] = json!("duplicate_meter_event");
        return (400, body);
    }
    let timestamp = form
        .get("timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(now);
    state.meter_events.push(StoredMeterEvent {
        identifier: identifier.clone(),
        event_name: event_name.clone(),
        customer: customer.clone(),
        value,
        timestamp,
    });
    (
        200,
        json!({
            "object": "billing.meter_event", "created": now(), "event_name": event_name,
            "identifier": identifier, "livemode": false, "timestamp": timestamp,
            "payload": { "stripe_customer_id": customer, "value": value.to_string() },
        }),
    )
}

fn summaries(state: &mut FakeState, meter_id: &str, form: &Form) -> Reply {
    let Some(meter) = state.meters.get(meter_id) else {
        return missing("billing.meter", meter_id);
    };
    let event_name = meter["event_name"].as_str().unwrap_or_default().to_owned();
    let customer = form.get("customer").cloned().unwrap_or_default();
    let start: i64 = form
        .get("start_time")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end: i64 = form
        .get("end_time")
        .and_then(|t| t.parse().ok())
        .unwrap_or(i64::MAX);
    let total: i64 = state
        .meter_events
        .iter()
        .filter(|e| e.event_name == event_name && e.customer == customer)
        .filter(|e| e.timestamp >= start && e.timestamp < end)
        .map(|e| e.value)
        .sum();
    let summary = json!({
        "id": format!("mtrsum_{meter_id}"), "object": "billing.meter_event_summary",
        "aggregated_value": total as f64, "start_time": start, "end_time": end,
        "livemode": false, "meter": meter_id,
    });
    (
        200,
        json!({ "object": "list", "data": [summary], "has_more": false, "url": format!("/v1/billing/meters/{meter_id}/event_summaries") }),
    )
}

fn create_customer(state: &mut FakeState, form: &Form) -> Reply {
    let id = state.new_id("cus");
    let customer = json!({
        "id": id, "object": "customer", "created": now(), "email": form.get("email"),
        "livemode": false, "metadata": metadata(form, "metadata"),
    });
    state.customers.insert(id, customer.clone());
    (200, customer)
}

fn create_checkout_session(state: &mut FakeState, form: &Form) -> Reply {
    let prices: Vec<String> = (0..20)
        .map_while(|index| form.get(&format!("line_items[{index}][price]")).cloned())
        .collect();
    if let Some(unknown) = prices
        .iter()
        .find(|price| !state.prices.contains_key(*price))
    {
        return missing("price", unknown);
    }
    if form.get("mode").map(String::as_str) != Some("subscription") || prices.is_empty() {
        return (
            400,
            error(
                "invalid_request_error",
                "mode=subscription with line_items is required here",
            ),
        );
    }
    let id = state.new_id("cs");
    let session = json!({
        "id": id, "object": "checkout.session", "created": now(), "livemode": false,
        "mode": "subscription", "status": "open", "payment_status": "unpaid",
        "customer": form.get("customer"), "client_reference_id": form.get("client_reference_id"),
        "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
        "metadata": metadata(form, "metadata"), "subscription": null,
        "url": format!("{}checkout/{id}", state.base_url),
        "line_items_prices": prices,
        "subscription_metadata": metadata(form, "subscription_data[metadata]"),
    });
    state.checkout_sessions.insert(id, session.clone());
    (200, public_session(&session))
}

fn create_portal_session(state: &mut FakeState, form: &Form) -> Reply {
    let Some(customer) = form
        .get("customer")
        .filter(|c| state.customers.contains_key(*c))
    else {
        return missing("customer", form.get("customer").map_or("", String::as_str));
    };
    let id = state.new_id("bps");
    (
        200,
        json!({
            "id": id, "object": "billing_portal.session", "created": now(), "customer": customer,
            "livemode": false, "return_url": form.get("return_url"),
            "url": format!("{}portal/{id}", state.base_url),
        }),
    )
}

fn list_invoices(state: &mut FakeState, form: &Form) -> Reply {
    let limit: usize = form
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10)
        .min(100);
    let customer = form.get("customer");
    let data: Vec<Value> = state
        .invoices
        .iter()
        .rev()
        .filter(|invoice| customer.is_none_or(|c| invoice["customer"] == c.as_str()))
        .take(limit)
        .cloned()
        .collect();
    (
        200,
        json!({ "object": "list", "data": data, "has_more": false, "url": "/v1/invoices" }),
    )
}

/// `prefix[key]=value` pairs of the form as a JSON object.
fn metadata(form: &Form, prefix: &str) -> Value {
    let start = format!("{prefix}[");
    let fields: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(&start)?.strip_suffix(']')?;
            (!name.contains('[')).then(|| (name.to_owned(), json!(value)))
        })
        .collect();
    Value::Object(fields)
}

pub(super) fn missing(kind: &str, id: &str) -> Reply {
    let mut body = error("invalid_request_error", &format!("No such {kind}: '{id}'"));
    body["error"]["code"] = json!("resource_missing");
    (404, body)
}

pub(super) fn error(kind: &str, message: &str) -> Value {
    json!({ "error": { "type": kind, "message": message } })
}

fn reply((status, body): Reply) -> HttpResponse {
    HttpResponse::build(status_code(status)).json(body)
}

fn status_code(status: u16) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
}
