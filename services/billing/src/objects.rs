//! What we read from Stripe's responses: only the fields billing uses, so a response that
//! gains fields (every Stripe API version does) or lacks ones we never read still parses.
//! The request side is the generated `async-stripe` types, so requests are Stripe's own shapes.

use std::collections::HashMap;

use miniserde::Deserialize;

/// Any object we only need the id of (product, price, customer, meter event's meter).
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Meter {
    pub id: String,
    pub event_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub client_reference_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortalSession {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    /// `active`, `past_due`, `unpaid`, `canceled`, `incomplete`, `incomplete_expired`,
    /// `trialing`, `paused`.
    pub status: String,
    pub cancel_at_period_end: bool,
    pub created: i64,
    pub metadata: HashMap<String, String>,
    pub items: List<SubscriptionItem>,
    /// The schedule of a change waiting for the period's end, if any.
    pub schedule: Option<String>,
}

impl Subscription {
    /// The end of the current period (since API 2025-03-31 it is on each item; all items of
    /// one subscription share it).
    pub fn current_period_end(&self) -> Option<i64> {
        self.items
            .data
            .iter()
            .filter_map(|item| item.current_period_end)
            .max()
    }

    pub fn price_ids(&self) -> impl Iterator<Item = &str> {
        self.items.data.iter().map(|item| item.price.id.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    pub id: String,
    pub price: Created,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionSchedule {
    pub id: String,
    /// `not_started`, `active`, `completed`, `released`, `canceled`.
    pub status: String,
    pub phases: Vec<SchedulePhase>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SchedulePhase {
    pub start_date: i64,
    pub end_date: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    pub id: String,
    pub status: Option<String>,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub created: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MeterEvent {
    pub identifier: String,
    pub event_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MeterEventSummary {
    pub aggregated_value: f64,
    pub start_time: i64,
    pub end_time: i64,
}
