//! The fake's objects, as Stripe's JSON, and what Stripe does to them on its own.

use std::collections::HashMap;

use serde_json::{Value, json};

/// A month, as the fake's periods last.
const PERIOD_SECONDS: i64 = 30 * 24 * 3600;
/// Events kept for delivery at most; past it the oldest is dropped (a test that never takes
/// its events must not grow the fake without bound).
pub const MAX_PENDING_EVENTS: usize = 1000;

/// One meter event Stripe kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMeterEvent {
    pub identifier: String,
    pub event_name: String,
    pub customer: String,
    pub value: i64,
    pub timestamp: i64,
}

#[derive(Debug)]
pub struct FakeState {
    pub base_url: String,
    next_id: u64,
    pub products: HashMap<String, Value>,
    pub prices: HashMap<String, Value>,
    pub meters: HashMap<String, Value>,
    pub customers: HashMap<String, Value>,
    pub checkout_sessions: HashMap<String, Value>,
    pub subscriptions: HashMap<String, Value>,
    pub schedules: HashMap<String, Value>,
    pub invoices: Vec<Value>,
    /// Kept once per identifier, as Stripe does.
    pub meter_events: Vec<StoredMeterEvent>,
    /// `Idempotency-Key` → the status and body first answered.
    pub idempotent_replies: HashMap<String, (u16, String)>,
    pub meter_outage: bool,
    /// Where events are delivered (`FakeStripe::deliver_webhooks_to`); without one they wait
    /// in `pending_events` for the test to take.
    pub webhook_endpoint: Option<String>,
    /// Events Stripe would send that are not delivered yet, oldest first.
    pub pending_events: std::collections::VecDeque<Value>,
    /// While on, nothing is delivered: events wait until released (`/_fake/webhooks/release`).
    pub hold_webhooks: bool,
    /// Every request received: method and path.
    pub requests: Vec<(String, String)>,
}

impl FakeState {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            next_id: 0,
            products: HashMap::new(),
            prices: HashMap::new(),
            meters: HashMap::new(),
            customers: HashMap::new(),
            checkout_sessions: HashMap::new(),
            subscriptions: HashMap::new(),
            schedules: HashMap::new(),
            invoices: Vec::new(),
            meter_events: Vec::new(),
            idempotent_replies: HashMap::new(),
            meter_outage: false,
            webhook_endpoint: None,
            pending_events: std::collections::VecDeque::new(),
            hold_webhooks: false,
            requests: Vec::new(),
        }
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_fake{:08}", self.next_id)
    }

    /// Sum of the values kept for `customer` under `event_name`.
    pub fn meter_total(&self, customer: &str, event_name: &str) -> i64 {
        self.meter_events
            .iter()
            .filter(|event| event.customer == customer && event.event_name == event_name)
            .map(|event| event.value)
            .sum()
    }

    /// Queues events for delivery, dropping the oldest past `MAX_PENDING_EVENTS`.
    pub fn queue_events(&mut self, events: Vec<Value>) {
        for event in events {
            if self.pending_events.len() == MAX_PENDING_EVENTS {
                self.pending_events.pop_front();
            }
            self.pending_events.push_back(event);
        }
    }

    /// Requests received for `method path`.
    pub fn request_count(&self, method: &str, path: &str) -> usize {
        self.requests
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    pub(super) fn complete_checkout(&mut self, session_id: &str) -> Option<Vec<Value>> {
        let session = self.checkout_sessions.get(session_id)?.clone();
        if session["status"] == "complete" {
            return None;
        }
        let now = now();
        let subscription_id = self.new_id("sub");
        let customer = session["customer"].as_str()?.to_owned();
        let items: Vec<Value> = session["line_items_prices"]
            .as_array()?
            .iter()
            .filter_map(|price| self.prices.get(price.as_str()?).cloned())
            .map(|price| {
                json!({
                    "id": format!("si_{}_{}", subscription_id, price["id"].as_str().unwrap_or("")),
                    "object": "subscription_item",
                    "price": price,
                    "current_period_start": now,
                    "current_period_end": now + PERIOD_SECONDS,
                })
            })
            .collect();
        let subscription = json!({
            "id": subscription_id,
            "object": "subscription",
            "customer": customer,
            "status": "active",
            "cancel_at_period_end": false,
            "created": now,
            "livemode": false,
            "metadata": session["subscription_metadata"].clone(),
            "schedule": null,
            "items": { "object": "list", "data": items, "has_more": false, "url": "/v1/subscription_items" },
        });
        self.subscriptions
            .insert(subscription_id.clone(), subscription.clone());
        let mut completed = session.clone();
        completed["status"] = json!("complete");
        completed["payment_status"] = json!("paid");
        completed["subscription"] = json!(subscription_id);
        self.checkout_sessions
            .insert(session_id.to_owned(), completed.clone());
        let invoice = self.new_invoice(&customer, &subscription_id, "paid");
        Some(vec![
            self.event("checkout.session.completed", public_session(&completed)),
            self.event("customer.subscription.created", subscription),
            self.event("invoice.paid", invoice),
        ])
    }

    pub(super) fn fail_payment(&mut self, subscription_id: &str) -> Option<Vec<Value>> {
        let subscription = self.set_status(subscription_id, "past_due")?;
        let customer = subscription["customer"].as_str()?.to_owned();
        let invoice = self.new_invoice(&customer, subscription_id, "open");
        Some(vec![
            self.event("invoice.payment_failed", invoice),
            self.event("customer.subscription.updated", subscription),
        ])
    }

    pub(super) fn pay(&mut self, subscription_id: &str) -> Option<Vec<Value>> {
        let subscription = self.set_status(subscription_id, "active")?;
        let mut paid = None;
        for invoice in self.invoices.iter_mut().rev() {
            if invoice["subscription"] == subscription_id && invoice["status"] == "open" {
                invoice["status"] = json!("paid");
                invoice["amount_paid"] = invoice["amount_due"].clone();
                paid = Some(invoice.clone());
                break;
            }
        }
        let mut events = Vec::new();
        if let Some(invoice) = paid {
            events.push(self.event("invoice.paid", invoice));
        }
        events.push(self.event("customer.subscription.updated", subscription));
        Some(events)
    }

    pub(super) fn end_period(&mut self, subscription_id: &str) -> Option<Vec<Value>> {
        let subscription = self.subscriptions.get(subscription_id)?.clone();
        if subscription["cancel_at_period_end"] == true {
            let canceled = self.set_status(subscription_id, "canceled")?;
            return Some(vec![self.event("customer.subscription.deleted", canceled)]);
        }
        let next_prices = self.scheduled_prices(&subscription);
        if let Some(prices) = next_prices {
            let end = subscription["items"]["data"][0]["current_period_end"]
                .as_i64()
                .unwrap_or_default();
            self.set_items(subscription_id, &prices, end - PERIOD_SECONDS);
            // The schedule's last phase began and its end behaviour is `release`.
            if let Some(schedule_id) = subscription["schedule"].as_str() {
                self.release_schedule(schedule_id);
            }
        }
        let subscription = self.subscriptions.get_mut(subscription_id)?;
        for item in subscription["items"]["data"].as_array_mut()? {
            let end = item["current_period_end"].as_i64().unwrap_or_default();
            item["current_period_start"] = json!(end);
            item["current_period_end"] = json!(end + PERIOD_SECONDS);
        }
        let renewed = subscription.clone();
        let customer = renewed["customer"].as_str()?.to_owned();
        let invoice = self.new_invoice(&customer, subscription_id, "paid");
        Some(vec![
            self.event("customer.subscription.updated", renewed),
            self.event("invoice.paid", invoice),
        ])
    }

    /// The prices of the phase a subscription's schedule starts at its period's end.
    fn scheduled_prices(&self, subscription: &Value) -> Option<Vec<String>> {
        let schedule = self.schedules.get(subscription["schedule"].as_str()?)?;
        let period_end = subscription["items"]["data"][0]["current_period_end"].as_i64()?;
        let phase = schedule["phases"]
            .as_array()?
            .iter()
            .find(|phase| phase["start_date"].as_i64() == Some(period_end))?;
        phase["items"]
            .as_array()?
            .iter()
            .map(|item| item["price"].as_str().map(str::to_owned))
            .collect()
    }

    /// Replaces the subscription's items with one per price, in a period from `start`.
    pub(super) fn set_items(&mut self, subscription_id: &str, prices: &[String], start: i64) {
        let items: Vec<Value> = prices
            .iter()
            .filter_map(|price| self.prices.get(price).cloned())
            .map(|price| {
                json!({
                    "id": format!("si_{}_{}", subscription_id, price["id"].as_str().unwrap_or("")),
                    "object": "subscription_item",
                    "price": price,
                    "current_period_start": start,
                    "current_period_end": start + PERIOD_SECONDS,
                })
            })
            .collect();
        if let Some(subscription) = self.subscriptions.get_mut(subscription_id) {
            subscription["items"]["data"] = json!(items);
        }
    }

    pub(super) fn release_schedule(&mut self, schedule_id: &str) -> Option<Value> {
        let schedule = self.schedules.get_mut(schedule_id)?;
        schedule["status"] = json!("released");
        schedule["released_at"] = json!(now());
        let released = schedule.clone();
        if let Some(subscription) = released["subscription"]
            .as_str()
            .and_then(|id| self.subscriptions.get_mut(id))
        {
            subscription["schedule"] = Value::Null;
        }
        Some(released)
    }

    /// An upgrade's prorated invoice: the difference of the flat prices for a whole period
    /// (the fake does not count days), paid at once.
    pub(super) fn proration_invoice(&mut self, subscription_id: &str, amount: i64) -> Value {
        let customer = self.subscriptions[subscription_id]["customer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut invoice = self.new_invoice(&customer, subscription_id, "paid");
        invoice["amount_due"] = json!(amount);
        invoice["amount_paid"] = json!(amount);
        invoice["billing_reason"] = json!("subscription_update");
        if let Some(stored) = self.invoices.last_mut() {
            *stored = invoice.clone();
        }
        invoice
    }

    fn set_status(&mut self, subscription_id: &str, status: &str) -> Option<Value> {
        let subscription = self.subscriptions.get_mut(subscription_id)?;
        subscription["status"] = json!(status);
        Some(subscription.clone())
    }

    fn new_invoice(&mut self, customer: &str, subscription_id: &str, status: &str) -> Value {
        let id = self.new_id("in");
        let amount: i64 = self.subscriptions[subscription_id]["items"]["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["price"]["unit_amount"].as_i64())
                    .sum()
            })
            .unwrap_or_default();
        let now = now();
        let invoice = json!({
            "id": id,
            "object": "invoice",
            "customer": customer,
            "subscription": subscription_id,
            "status": status,
            "amount_due": amount,
            "amount_paid": if status == "paid" { amount } else { 0 },
            "currency": "usd",
            "created": now,
            "period_start": now,
            "period_end": now + PERIOD_SECONDS,
            "hosted_invoice_url": format!("{}invoice/{id}", self.base_url),
            "invoice_pdf": format!("{}invoice/{id}/pdf", self.base_url),
        });
        self.invoices.push(invoice.clone());
        invoice
    }

    pub(super) fn event(&mut self, kind: &str, object: Value) -> Value {
        json!({
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": "2025-11-17.clover",
            "created": now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": kind,
        })
    }
}

/// A session as Stripe shows it (without the fake's own bookkeeping fields).
pub(super) fn public_session(session: &Value) -> Value {
    let mut shown = session.clone();
    if let Some(fields) = shown.as_object_mut() {
        fields.remove("line_items_prices");
        fields.remove("subscription_metadata");
    }
    shown
}

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
