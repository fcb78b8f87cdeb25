//! Changing a subscribed account from one paid plan to another, inside its subscription: an
//! upgrade at once (the prorated difference invoiced now, the new prices only once paid), a
//! downgrade at the period's end (a Stripe subscription schedule). Either way the apps move
//! only when Stripe's webhook brings the changed subscription (`webhook.rs`); until a
//! downgrade happens, the account shows it as `scheduled_plan`.

use serde_json::json;
use uuid::Uuid;

use crate::billing::{Billing, BillingSummary, stripe_failed};
use crate::repository::{audit, billing as repo, plans};
use crate::service::ControlError;

impl Billing {
    /// Moves the account's subscription to the paid plan `plan_id`; back to the current plan
    /// drops a downgrade still waiting.
    pub async fn change_plan(
        &self,
        account_id: Uuid,
        plan_id: &str,
    ) -> Result<BillingSummary, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let (target, prices) = super::paid_plan_on_sale(
            &mut conn,
            plan_id,
            "cancel the subscription to move to it at the period's end",
        )
        .await?;
        let account = repo::find_account(&mut conn, account_id)
            .await?
            .ok_or(ControlError::NoSubscription)?;
        let (Some(subscription_id), Some(current_plan_id)) = (
            account.subscription_id.as_deref(),
            account.plan_id.as_deref(),
        ) else {
            return Err(ControlError::NoSubscription);
        };
        if !matches!(account.status.as_deref(), Some("active" | "trialing")) {
            return Err(ControlError::Validation(
                "the subscription is not paid up: pay what is due before changing plan".to_owned(),
            ));
        }
        let current = plans::find(&mut conn, current_plan_id)
            .await?
            .ok_or_else(|| ControlError::UnknownPlan(current_plan_id.to_owned()))?;
        drop(conn);

        let mut subscription = self
            .api
            .retrieve_subscription(subscription_id)
            .await
            .map_err(stripe_failed)?;
        // Whatever is asked, a downgrade still waiting is superseded (a new one gets a new
        // schedule).
        if let Some(schedule) = subscription.schedule.take() {
            self.api
                .release_schedule(&schedule)
                .await
                .map_err(stripe_failed)?;
        }
        let price_ids = [
            prices.flat_price_id,
            prices.messages_price_id,
            prices.connections_price_id,
        ];
        let (scheduled, change) = if target.id == current.id {
            (None, "kept")
        } else if target.price_cents > current.price_cents {
            self.api
                .switch_prices_now(&subscription, &price_ids)
                .await
                .map_err(stripe_failed)?;
            (None, "upgrade")
        } else {
            self.api
                .switch_prices_at_period_end(&subscription, &price_ids)
                .await
                .map_err(stripe_failed)?;
            (Some(plan_id), "downgrade_at_period_end")
        };
        let mut tx = self.pool.begin().await?;
        repo::set_scheduled_plan(&mut tx, account_id, scheduled).await?;
        audit::record(
            &mut tx,
            Some(account_id),
            "billing.plan_change_requested",
            plan_id,
            json!({ "from": current.id, "to": plan_id, "change": change }),
        )
        .await?;
        tx.commit().await?;
        self.summary(account_id).await
    }
}
