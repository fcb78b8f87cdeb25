//! `POST /v1/stripe/webhook`'s work: verify Stripe's signature, record the event id (once),
//! re-fetch the subscription it is about and store that state.
//!
//! Order does not matter: whatever event arrives, the subscription is read back from Stripe
//! and stored as Stripe holds it now, so `customer.subscription.updated` arriving before
//! `checkout.session.completed` ends where Stripe is. A subscription older than the one
//! stored (by Stripe's `created`) is an earlier subscription's late event and changes nothing.

use serde_json::Value;
use time::OffsetDateTime;

use billing::objects::Subscription;

use crate::billing::{Billing, stripe_failed};
use crate::repository::billing::{self as repo, SubscriptionState};
use crate::service::{ControlError, DEFAULT_PLAN};

/// Largest webhook body read; Stripe's events are a few KiB.
pub const MAX_WEBHOOK_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Applied: the account's subscription state was stored.
    Applied,
    /// Seen before (its id is recorded): acknowledged, not applied again.
    Duplicate,
    /// Recorded, but about nothing billing keeps (another event type, an unknown customer, an
    /// older subscription).
    Ignored,
}

/// What a notice after the commit should say.
pub(super) enum Notice {
    PaymentFailed(OffsetDateTime),
    Restored,
}

impl Billing {
    /// Verifies and applies one delivery. A Stripe failure while applying rolls back (the
    /// event id too), so Stripe's retry applies it later.
    pub async fn handle_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<WebhookOutcome, ControlError> {
        let signature = signature.ok_or_else(|| invalid("missing Stripe-Signature"))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        billing::signature::verify(payload, signature, &self.webhook_secret, now)
            .map_err(|e| invalid(&e.to_string()))?;
        let event: Value = serde_json::from_slice(payload).map_err(|_| invalid("not JSON"))?;
        let (Some(event_id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
            return Err(invalid("an event needs an id and a type"));
        };
        let object = &event["data"]["object"];
        let mut tx = self.pool.begin().await?;
        if !repo::record_event(&mut tx, event_id, kind).await? {
            return Ok(WebhookOutcome::Duplicate);
        }
        let outcome = match subscription_of(kind, object) {
            Some(subscription_id) => {
                let subscription = self
                    .api
                    .retrieve_subscription(subscription_id)
                    .await
                    .map_err(stripe_failed)?;
                self.apply(&mut tx, &subscription).await?
            }
            None => None,
        };
        tx.commit().await?;
        tracing::info!(event_id = %ingress::Untrusted(event_id), kind = %ingress::Untrusted(kind), applied = outcome.is_some(), "stripe event");
        let Some((email, notice)) = outcome else {
            return Ok(WebhookOutcome::Ignored);
        };
        match notice {
            Some(Notice::PaymentFailed(grace_ends)) => {
                self.notices.payment_failed(&email, grace_ends).await
            }
            Some(Notice::Restored) => self.notices.restored(&email).await,
            None => {}
        }
        Ok(WebhookOutcome::Applied)
    }

    /// Stores the subscription on its account and puts the apps on the plan it pays for.
    /// `None` when it is nothing of ours; otherwise the owner's email and what to tell them.
    pub(super) async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        subscription: &Subscription,
    ) -> Result<Option<(String, Option<Notice>)>, ControlError> {
        let Some(account) = repo::lock_account_by_customer(conn, &subscription.customer).await?
        else {
            return Ok(None);
        };
        if let (Some(stored), Some(created)) =
            (&account.subscription_id, account.subscription_created)
            && stored != &subscription.id
            && created > subscription.created
        {
            return Ok(None);
        }
        let prices: Vec<String> = subscription.price_ids().map(str::to_owned).collect();
        let plan = match repo::plan_of_prices(conn, &prices).await? {
            Some(plan) => Some(plan),
            None => subscription.metadata.get("plan_id").cloned(),
        };
        let now = OffsetDateTime::now_utc();
        let status = subscription.status.as_str();
        let paying = matches!(status, "active" | "trialing");
        let overdue = matches!(status, "past_due" | "unpaid");
        let past_due_since = overdue.then(|| account.past_due_since.unwrap_or(now));
        let downgraded = overdue && account.downgraded;
        // A plan is held while paid or within its grace; an unfinished or ended subscription
        // holds none.
        let held_plan = if paying || overdue {
            plan.as_deref()
        } else {
            None
        };
        let period_start = subscription
            .items
            .data
            .iter()
            .filter_map(|item| item.current_period_start)
            .max();
        let state = SubscriptionState {
            subscription_id: &subscription.id,
            created: subscription.created,
            plan_id: held_plan,
            status,
            cancel_at_period_end: subscription.cancel_at_period_end,
            current_period_start: period_start.and_then(unix),
            current_period_end: subscription.current_period_end().and_then(unix),
            past_due_since,
            downgraded,
        };
        repo::save_subscription(conn, account.account_id, &state).await?;
        // A schedule gone (it ran at the period's end, or was released) leaves no change waiting.
        if subscription.schedule.is_none() && account.scheduled_plan_id.is_some() {
            repo::set_scheduled_plan(conn, account.account_id, None).await?;
        }
        let apps_plan = match (held_plan, downgraded) {
            (Some(plan), false) => plan,
            (Some(_), true) | (None, _) => DEFAULT_PLAN,
        };
        // Only a subscription that was ever active puts apps back on the free plan: an
        // `incomplete` checkout leaves apps as they were.
        if held_plan.is_some() || matches!(status, "canceled" | "incomplete_expired") {
            repo::set_apps_plan(conn, account.account_id, apps_plan).await?;
        }
        let notice = if overdue && account.past_due_since.is_none() {
            past_due_since.map(|since| Notice::PaymentFailed(since + self.grace_period))
        } else if paying && (account.past_due_since.is_some() || account.downgraded) {
            Some(Notice::Restored)
        } else {
            None
        };
        let email = repo::owner_email(conn, account.account_id)
            .await?
            .map(|(email, _)| email)
            .unwrap_or_default();
        Ok(Some((email, notice)))
    }
}

/// The subscription an event is about, for the kinds billing keeps.
fn subscription_of<'a>(kind: &str, object: &'a Value) -> Option<&'a str> {
    match kind {
        "checkout.session.completed" => object["subscription"].as_str(),
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => object["id"].as_str(),
        // Before API 2025-03-31 an invoice names its subscription at the top; since, under
        // `parent.subscription_details`.
        "invoice.paid" | "invoice.payment_failed" | "invoice.payment_succeeded" => {
            object["subscription"]
                .as_str()
                .or_else(|| object["parent"]["subscription_details"]["subscription"].as_str())
        }
        _ => None,
    }
}

fn unix(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

fn invalid(why: &str) -> ControlError {
    ControlError::InvalidWebhook(why.to_owned())
}
