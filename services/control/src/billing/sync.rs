//! `switchboard admin sync-stripe`: the Stripe catalog from the plans table, idempotently.
//! Two meters (messages, peak connections) shared by every plan; per paid plan a product
//! (our own id, `sb_plan_<plan>`), its flat monthly price and one metered price per meter.
//! What is recorded in Postgres is not made again; a run cut short after Stripe made an
//! object but before it was recorded replays the same request (same idempotency key) and
//! gets the same object back.

use crate::billing::{Billing, stripe_failed};
use crate::repository::billing::{self as repo, MeterRow, PlanPricesRow};
use crate::repository::plans;
use crate::service::ControlError;

/// Meter kind, Stripe event name, display name.
const METERS: [(&str, &str, &str); 2] = [
    ("messages", "sb_messages", "Switchboard messages"),
    (
        "connections",
        "sb_peak_connections",
        "Switchboard peak connections over included",
    ),
];

/// One line of what the sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLine {
    pub what: String,
    pub stripe_id: String,
    pub created: bool,
}

impl Billing {
    pub async fn sync_stripe(&self) -> Result<Vec<SyncLine>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let mut lines = Vec::new();
        let recorded = repo::meters(&mut conn).await?;
        for (kind, event_name, display_name) in METERS {
            if let Some(meter) = recorded.iter().find(|m| m.meter == kind) {
                lines.push(line(format!("meter {kind}"), &meter.stripe_meter_id, false));
                continue;
            }
            let meter = self
                .api
                .create_meter(event_name, display_name)
                .await
                .map_err(stripe_failed)?;
            let row = MeterRow {
                meter: kind.to_owned(),
                stripe_meter_id: meter.id.clone(),
                event_name: meter.event_name,
            };
            repo::insert_meter(&mut conn, &row).await?;
            lines.push(line(format!("meter {kind}"), &meter.id, true));
        }
        let meters = repo::meters(&mut conn).await?;
        let meter_id = |kind: &str| {
            meters
                .iter()
                .find(|m| m.meter == kind)
                .map(|m| m.stripe_meter_id.clone())
                .ok_or(ControlError::StripeUnavailable)
        };
        let (messages_meter, connections_meter) = (meter_id("messages")?, meter_id("connections")?);
        for plan in plans::list(&mut conn).await? {
            if plan.price_cents == 0 {
                continue;
            }
            if let Some(prices) = repo::plan_prices(&mut conn, &plan.id).await? {
                lines.push(line(
                    format!("plan {}", plan.id),
                    &prices.stripe_product_id,
                    false,
                ));
                continue;
            }
            let product_id = format!("sb_plan_{}", plan.id);
            let product = self
                .api
                .create_product(&product_id, &plan.display_name)
                .await
                .map_err(stripe_failed)?;
            // Lookup keys name the amounts, so a price changed in the plans table is a new price.
            let key = |what: &str, amount: &str| format!("sb_{}_{what}_{amount}", plan.id);
            let flat_amount = i64::from(plan.price_cents);
            let flat = self
                .api
                .create_flat_monthly_price(
                    &product.id,
                    flat_amount,
                    &key("flat", &flat_amount.to_string()),
                )
                .await
                .map_err(stripe_failed)?;
            let per_message = per_unit(plan.overage_cents_per_million_messages, 1_000_000);
            let messages = self
                .api
                .create_metered_price(
                    &product.id,
                    &messages_meter,
                    &per_message,
                    &key("messages", &per_message),
                )
                .await
                .map_err(stripe_failed)?;
            let per_connection = per_unit(plan.overage_cents_per_thousand_connections, 1_000);
            let connections = self
                .api
                .create_metered_price(
                    &product.id,
                    &connections_meter,
                    &per_connection,
                    &key("connections", &per_connection),
                )
                .await
                .map_err(stripe_failed)?;
            let row = PlanPricesRow {
                plan_id: plan.id.clone(),
                stripe_product_id: product.id.clone(),
                flat_price_id: flat.id,
                messages_price_id: messages.id,
                connections_price_id: connections.id,
            };
            repo::insert_plan_prices(&mut conn, &row).await?;
            lines.push(line(format!("plan {}", plan.id), &product.id, true));
        }
        Ok(lines)
    }
}

/// Cents per unit as Stripe's `unit_amount_decimal` (e.g. 150 per million: "0.00015").
fn per_unit(cents: i32, units: u32) -> String {
    (f64::from(cents) / f64::from(units)).to_string()
}

fn line(what: String, stripe_id: &str, created: bool) -> SyncLine {
    SyncLine {
        what,
        stripe_id: stripe_id.to_owned(),
        created,
    }
}

#[cfg(test)]
mod tests {
    use super::per_unit;

    #[test]
    fn prices_per_unit_are_stripe_decimals() {
        assert_eq!(per_unit(150, 1_000_000), "0.00015");
        assert_eq!(per_unit(1000, 1_000), "1");
        assert_eq!(per_unit(0, 1_000), "0");
    }
}
