//! What an account's owner does with billing: start a checkout, open the customer portal,
//! cancel at the period's end (changing plan is `plan_change.rs`), and read the summary (plan, this period's usage, projected
//! bill, invoices).

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::billing::{Billing, stripe_failed};
use crate::repository::{billing as repo, billing_usage, plans};
use crate::service::ControlError;

/// Invoices shown in the summary.
const SUMMARY_INVOICES: i64 = 12;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BillingSummary {
    /// False when this deployment has no Stripe keys: plans are set by an operator.
    pub enabled: bool,
    /// The paid plan, if any (`null`: the free plan).
    pub plan: Option<String>,
    /// Stripe's subscription status (`active`, `past_due`, `canceled`, …).
    pub status: Option<String>,
    pub cancel_at_period_end: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub current_period_end: Option<OffsetDateTime>,
    /// When a payment first failed; the apps keep the plan until `grace_ends_at`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub past_due_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub grace_ends_at: Option<OffsetDateTime>,
    /// The grace period ended unpaid: the apps run on the free plan's limits until paid.
    pub downgraded: bool,
    /// The plan a downgrade moves to at `current_period_end` (`null`: no change waiting).
    pub scheduled_plan: Option<String>,
    pub usage: UsageThisPeriod,
    /// The plan's monthly price plus this period's overage so far, in US cents.
    pub projected_cents: i64,
    pub invoices: Vec<InvoiceSummary>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageThisPeriod {
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Published plus delivered, every app of the account.
    pub messages: i64,
    pub peak_connections: i64,
    /// Messages beyond each app's included messages per day.
    pub overage_messages: i64,
    /// Each app's peak over its included connections.
    pub overage_connections: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceSummary {
    pub id: String,
    pub status: Option<String>,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Stripe's page for the invoice (pay, download).
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
}

impl Billing {
    /// A Checkout Session for `plan_id`; its URL is where the browser goes to pay. The plan
    /// becomes the account's only when Stripe's webhook says it was paid.
    pub async fn start_checkout(
        &self,
        account_id: Uuid,
        plan_id: &str,
    ) -> Result<String, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let (_, prices) =
            super::paid_plan_on_sale(&mut conn, plan_id, "no checkout needed").await?;
        let (email, verified) = repo::owner_email(&mut conn, account_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        if !verified {
            return Err(ControlError::EmailUnverified);
        }
        let account = match repo::find_account(&mut conn, account_id).await? {
            Some(account) => account,
            None => {
                let customer = self
                    .api
                    .create_customer(&account_id.to_string(), &email)
                    .await
                    .map_err(stripe_failed)?;
                repo::insert_account(&mut conn, account_id, &customer.id).await?;
                repo::find_account(&mut conn, account_id)
                    .await?
                    .ok_or(ControlError::NotFound)?
            }
        };
        if matches!(
            account.status.as_deref(),
            Some("active" | "trialing" | "past_due" | "unpaid")
        ) {
            return Err(ControlError::AlreadySubscribed);
        }
        let price_ids = [
            prices.flat_price_id,
            prices.messages_price_id,
            prices.connections_price_id,
        ];
        let success_url = format!("{}?checkout=success", self.return_url);
        let cancel_url = format!("{}?checkout=cancel", self.return_url);
        let account_text = account_id.to_string();
        let session = self
            .api
            .create_checkout_session(&billing::CheckoutRequest {
                customer_id: &account.stripe_customer_id,
                account_id: &account_text,
                plan_id,
                price_ids: &price_ids,
                success_url: &success_url,
                cancel_url: &cancel_url,
            })
            .await
            .map_err(stripe_failed)?;
        session.url.ok_or(ControlError::StripeUnavailable)
    }

    /// A Customer Portal link (payment method, invoices, plan) for the account's customer.
    pub async fn portal_link(&self, account_id: Uuid) -> Result<String, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let account = repo::find_account(&mut conn, account_id)
            .await?
            .ok_or(ControlError::NoSubscription)?;
        let portal = self
            .api
            .create_portal_session(&account.stripe_customer_id, &self.return_url)
            .await
            .map_err(stripe_failed)?;
        Ok(portal.url)
    }

    /// Cancels (or, `cancel: false`, keeps) the subscription at the end of the paid period:
    /// the apps keep the plan until Stripe ends it (`customer.subscription.deleted`).
    pub async fn cancel_at_period_end(
        &self,
        account_id: Uuid,
        cancel: bool,
    ) -> Result<BillingSummary, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let account = repo::find_account(&mut conn, account_id).await?;
        let Some(subscription_id) = account.and_then(|a| a.subscription_id) else {
            return Err(ControlError::NoSubscription);
        };
        drop(conn);
        let subscription = self
            .api
            .set_cancel_at_period_end(&subscription_id, cancel)
            .await
            .map_err(stripe_failed)?;
        // Stored now so the summary shows it; the webhook that follows stores the same.
        let mut tx = self.pool.begin().await?;
        self.apply(&mut tx, &subscription).await?;
        tx.commit().await?;
        self.summary(account_id).await
    }

    pub async fn summary(&self, account_id: Uuid) -> Result<BillingSummary, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let account = repo::find_account(&mut conn, account_id).await?;
        let plan_id = account.as_ref().and_then(|a| a.plan_id.clone());
        let plan = match &plan_id {
            Some(id) => plans::find(&mut conn, id).await?,
            None => None,
        };
        let now = OffsetDateTime::now_utc();
        let since = account
            .as_ref()
            .and_then(|a| a.current_period_start)
            .unwrap_or_else(|| {
                now.replace_day(1)
                    .unwrap_or(now)
                    .replace_time(time::Time::MIDNIGHT)
            });
        let (included_messages, included_connections) = match &plan {
            Some(plan) => (plan.messages_per_day, i64::from(plan.max_connections)),
            None => (i64::MAX, i64::MAX),
        };
        let usage = billing_usage::period_usage(
            &mut conn,
            account_id,
            since,
            included_messages,
            included_connections,
        )
        .await?;
        let projected_cents = plan.as_ref().map_or(0, |plan| {
            i64::from(plan.price_cents)
                + ceil_div(
                    usage.overage_messages * i64::from(plan.overage_cents_per_million_messages),
                    1_000_000,
                )
                + ceil_div(
                    usage.overage_connections
                        * i64::from(plan.overage_cents_per_thousand_connections),
                    1_000,
                )
        });
        drop(conn);
        let invoices = match &account {
            Some(account) => self
                .api
                .invoices(&account.stripe_customer_id, SUMMARY_INVOICES)
                .await
                .map_err(stripe_failed)?
                .into_iter()
                .map(invoice_summary)
                .collect(),
            None => Vec::new(),
        };
        let past_due_since = account.as_ref().and_then(|a| a.past_due_since);
        Ok(BillingSummary {
            enabled: true,
            plan: plan_id,
            status: account.as_ref().and_then(|a| a.status.clone()),
            cancel_at_period_end: account.as_ref().is_some_and(|a| a.cancel_at_period_end),
            current_period_end: account.as_ref().and_then(|a| a.current_period_end),
            past_due_since,
            grace_ends_at: past_due_since.map(|since| since + self.grace_period),
            downgraded: account.as_ref().is_some_and(|a| a.downgraded),
            scheduled_plan: account.as_ref().and_then(|a| a.scheduled_plan_id.clone()),
            usage: UsageThisPeriod {
                since,
                messages: usage.messages,
                peak_connections: usage.peak_connections,
                overage_messages: usage.overage_messages,
                overage_connections: usage.overage_connections,
            },
            projected_cents,
            invoices,
        })
    }
}

fn ceil_div(value: i64, by: i64) -> i64 {
    (value + by - 1).div_euclid(by)
}

fn invoice_summary(invoice: billing::objects::Invoice) -> InvoiceSummary {
    InvoiceSummary {
        id: invoice.id,
        status: invoice.status,
        amount_due: invoice.amount_due,
        amount_paid: invoice.amount_paid,
        currency: invoice.currency,
        created: OffsetDateTime::from_unix_timestamp(invoice.created)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        hosted_invoice_url: invoice.hosted_invoice_url,
        invoice_pdf: invoice.invoice_pdf,
    }
}
