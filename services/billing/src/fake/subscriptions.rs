//! The fake's subscription changes: new prices at once (with the upgrade's proration
//! invoiced), cancelling at the period's end, and subscription schedules (a change waiting for
//! the period's end). Each change Stripe would announce is queued as its webhook event.

use serde_json::{Value, json};

use crate::fake::routes::{Form, Reply, error, missing};
use crate::fake::state::{FakeState, now};

/// Cancelling at the period's end, or new prices at once (`items[n][id]` + `[deleted]`
/// removes an item, `items[n][price]` adds one), the upgrade's proration invoiced at once
/// with `proration_behavior=always_invoice`. Stripe then sends `customer.subscription.updated`
/// (and the proration's `invoice.paid`).
pub(super) fn update_subscription(state: &mut FakeState, id: &str, form: &Form) -> Reply {
    let Some(subscription) = state.subscriptions.get(id).cloned() else {
        return missing("subscription", id);
    };
    if let Some(cancel) = form.get("cancel_at_period_end")
        && let Some(stored) = state.subscriptions.get_mut(id)
    {
        stored["cancel_at_period_end"] = json!(cancel == "true");
    }
    let added: Vec<String> = (0..20)
        .filter_map(|index| form.get(&format!("items[{index}][price]")).cloned())
        .collect();
    if let Some(unknown) = added
        .iter()
        .find(|price| !state.prices.contains_key(*price))
    {
        return missing("price", unknown);
    }
    let mut events = Vec::new();
    if !added.is_empty() {
        let flat = |prices: &mut dyn Iterator<Item = &Value>| -> i64 {
            prices
                .filter_map(|price| price["unit_amount"].as_i64())
                .sum()
        };
        let before = flat(
            &mut subscription["items"]["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| &item["price"]),
        );
        let after = flat(&mut added.iter().filter_map(|price| state.prices.get(price)));
        let start = subscription["items"]["data"][0]["current_period_start"]
            .as_i64()
            .unwrap_or_else(now);
        state.set_items(id, &added, start);
        if form.get("proration_behavior").map(String::as_str) == Some("always_invoice")
            && after > before
        {
            let invoice = state.proration_invoice(id, after - before);
            events.push(("invoice.paid", invoice));
        }
    }
    let updated = state.subscriptions[id].clone();
    let mut kinds = vec![("customer.subscription.updated", updated.clone())];
    kinds.extend(events);
    let made: Vec<Value> = kinds
        .into_iter()
        .map(|(kind, object)| state.event(kind, object))
        .collect();
    state.queue_events(made);
    (200, updated)
}

/// A schedule taking over a subscription (`from_subscription`): one phase, its current period.
pub(super) fn create_schedule(state: &mut FakeState, form: &Form) -> Reply {
    let Some(subscription_id) = form.get("from_subscription") else {
        return (
            400,
            error(
                "invalid_request_error",
                "from_subscription is required here",
            ),
        );
    };
    let Some(subscription) = state.subscriptions.get(subscription_id).cloned() else {
        return missing("subscription", subscription_id);
    };
    if subscription["schedule"].is_string() {
        return (
            400,
            error(
                "invalid_request_error",
                "You cannot migrate a subscription that is already attached to a schedule",
            ),
        );
    }
    let id = state.new_id("sub_sched");
    let item = &subscription["items"]["data"][0];
    let prices: Vec<Value> = subscription["items"]["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| json!({ "price": item["price"]["id"] }))
        .collect();
    let schedule = json!({
        "id": id, "object": "subscription_schedule", "created": now(), "livemode": false,
        "customer": subscription["customer"], "subscription": subscription_id,
        "status": "active", "end_behavior": "release", "released_at": null,
        "phases": [{
            "start_date": item["current_period_start"], "end_date": item["current_period_end"],
            "items": prices,
        }],
    });
    state.schedules.insert(id.clone(), schedule.clone());
    if let Some(stored) = state.subscriptions.get_mut(subscription_id) {
        stored["schedule"] = json!(id);
    }
    (200, schedule)
}

/// New phases (`phases[n][items][m][price]`, `phases[n][start_date]`, `[end_date]`); a phase
/// without a start begins where the one before it ends.
pub(super) fn update_schedule(state: &mut FakeState, id: &str, form: &Form) -> Reply {
    let Some(schedule) = state.schedules.get(id) else {
        return missing("subscription_schedule", id);
    };
    if schedule["status"] != "active" && schedule["status"] != "not_started" {
        return (
            400,
            error("invalid_request_error", "This schedule is no longer active"),
        );
    }
    let mut phases: Vec<Value> = Vec::new();
    for index in 0..10 {
        let prices: Vec<Value> = (0..20)
            .map_while(|item| form.get(&format!("phases[{index}][items][{item}][price]")))
            .map(|price| json!({ "price": price }))
            .collect();
        if prices.is_empty() {
            break;
        }
        let number = |field: &str| {
            form.get(&format!("phases[{index}][{field}]"))
                .and_then(|value| value.parse::<i64>().ok())
        };
        let start = number("start_date").or_else(|| {
            phases
                .last()
                .and_then(|phase: &Value| phase["end_date"].as_i64())
        });
        phases
            .push(json!({ "start_date": start, "end_date": number("end_date"), "items": prices }));
    }
    if phases.is_empty() {
        return (
            400,
            error("invalid_request_error", "phases[0][items] is required"),
        );
    }
    let schedule = state.schedules.get_mut(id).expect("looked up above");
    schedule["phases"] = json!(phases);
    if let Some(behavior) = form.get("end_behavior") {
        schedule["end_behavior"] = json!(behavior);
    }
    (200, schedule.clone())
}
