//! Metered billing through Stripe (issue 11): checkout, the customer portal, cancelling at
//! the period's end (`account.rs`), paid-to-paid plan changes (`plan_change.rs`), Stripe's webhooks (`webhook.rs`), the grace period of a
//! failed payment (`grace.rs`), overage reported through an outbox (`usage.rs`), and the
//! Stripe catalog made from the plans table (`sync.rs`).
//!
//! On only when both `STRIPE_SECRET_KEY` and `STRIPE_WEBHOOK_SECRET` are set; otherwise
//! there is no `Billing` and paid plans are set by `switchboard admin set-plan`.
//! Architecture invariant: a plan becomes active only from a verified webhook (the state
//! re-fetched from Stripe), never from the browser coming back from checkout.

mod account;
mod grace;
mod notices;
mod plan_change;
mod sync;
mod usage;
mod webhook;

use std::sync::Arc;

use billing::StripeApi;
use sqlx::PgPool;

pub use account::{BillingSummary, InvoiceSummary, UsageThisPeriod};
pub use notices::{BillingNotices, LogNotices, MailNotices};
pub use sync::SyncLine;
pub use usage::{ReconcileLine, ReportOutcome};
pub use webhook::{MAX_WEBHOOK_BYTES, WebhookOutcome};

use crate::service::ControlError;

/// The default grace period of a failed payment before the apps drop to the free plan.
pub const DEFAULT_GRACE_PERIOD: time::Duration = time::Duration::days(7);

/// Billing's settings, from the environment or the command line.
#[derive(Clone)]
pub struct BillingSettings {
    pub secret_key: String,
    pub webhook_secret: String,
    /// Stripe's API by default; the fake's in tests (`STRIPE_API_BASE`).
    pub api_base: String,
    pub grace_period: time::Duration,
    /// Where the browser returns after checkout and the portal (the dashboard).
    pub return_url: String,
}

impl std::fmt::Debug for BillingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingSettings")
            .field("api_base", &self.api_base)
            .field("grace_period", &self.grace_period)
            .field("return_url", &self.return_url)
            .finish_non_exhaustive()
    }
}

impl BillingSettings {
    /// Settings when both keys are given (non-empty); `None` means billing is off.
    pub fn from_keys(
        secret_key: Option<&str>,
        webhook_secret: Option<&str>,
        api_base: Option<&str>,
        return_url: &str,
    ) -> Option<Self> {
        let secret_key = secret_key.filter(|key| !key.is_empty())?;
        let webhook_secret = webhook_secret.filter(|key| !key.is_empty())?;
        Some(Self {
            secret_key: secret_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            api_base: api_base
                .filter(|base| !base.is_empty())
                .unwrap_or(billing::DEFAULT_API_BASE)
                .to_owned(),
            grace_period: DEFAULT_GRACE_PERIOD,
            return_url: return_url.to_owned(),
        })
    }
}

/// Billing on one deployment: the Stripe client, the database, and who tells owners.
#[derive(Clone)]
pub struct Billing {
    api: StripeApi,
    pool: PgPool,
    webhook_secret: String,
    grace_period: time::Duration,
    return_url: String,
    notices: Arc<dyn BillingNotices>,
}

impl Billing {
    pub fn new(pool: PgPool, settings: &BillingSettings) -> anyhow::Result<Self> {
        let api = StripeApi::new(&settings.secret_key, &settings.api_base)?;
        Ok(Self {
            api,
            pool,
            webhook_secret: settings.webhook_secret.clone(),
            grace_period: settings.grace_period,
            return_url: settings.return_url.clone(),
            notices: Arc::new(LogNotices),
        })
    }

    /// The same billing telling owners through `notices` (the mailer, once wired).
    pub fn with_notices(mut self, notices: Arc<dyn BillingNotices>) -> Self {
        self.notices = notices;
        self
    }

    pub fn api(&self) -> &StripeApi {
        &self.api
    }
}

/// The paid plan `plan_id` and its Stripe prices; `free` is the refusal's text when the plan
/// costs nothing (checkout and plan changes each say what to do instead).
async fn paid_plan_on_sale(
    conn: &mut sqlx::PgConnection,
    plan_id: &str,
    free: &str,
) -> Result<
    (
        crate::domain::Plan,
        crate::repository::billing::PlanPricesRow,
    ),
    ControlError,
> {
    let plan = crate::repository::plans::find(conn, plan_id)
        .await?
        .ok_or_else(|| ControlError::UnknownPlan(plan_id.to_owned()))?;
    if plan.price_cents == 0 {
        return Err(ControlError::Validation(format!(
            "plan {plan_id:?} is free: {free}"
        )));
    }
    let prices = crate::repository::billing::plan_prices(conn, plan_id)
        .await?
        .ok_or_else(|| {
            ControlError::Validation(format!(
                "plan {plan_id:?} is not on sale yet (switchboard admin sync-stripe)"
            ))
        })?;
    Ok((plan, prices))
}

fn stripe_failed(failure: billing::StripeFailure) -> ControlError {
    tracing::warn!(error = %failure, status = ?failure.status, "stripe call failed");
    ControlError::StripeUnavailable
}

/// The summary of a deployment without billing: the free plan, nothing to pay.
pub fn disabled_summary() -> BillingSummary {
    let now = time::OffsetDateTime::now_utc();
    BillingSummary {
        enabled: false,
        plan: None,
        status: None,
        cancel_at_period_end: false,
        current_period_end: None,
        past_due_since: None,
        grace_ends_at: None,
        downgraded: false,
        scheduled_plan: None,
        usage: UsageThisPeriod {
            since: now,
            messages: 0,
            peak_connections: 0,
            overage_messages: 0,
            overage_connections: 0,
        },
        projected_cents: 0,
        invoices: Vec::new(),
    }
}
