//! Stripe billing in the binary: its settings (`STRIPE_*`), the background loop (grace
//! periods, overage into the outbox and out to Stripe), and the two admin commands.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use control::billing::{Billing, BillingSettings};
use time::OffsetDateTime;

use crate::cli::DatabaseArgs;
use crate::database;

/// How often the background loop runs.
const BILLING_TICK: Duration = Duration::from_secs(60);
/// Outbox rows reported per tick at most (the next tick takes the rest).
const ROWS_PER_TICK: usize = 500;

#[derive(Debug, Clone, Args)]
pub struct BillingArgs {
    /// Stripe secret key; billing is on only with this and the webhook secret.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Signing secret of the `/v1/stripe/webhook` endpoint (`whsec_…`).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Stripe's API base URL (tests point it at a fake Stripe).
    #[arg(long, env = "STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    /// Hours an unpaid account's apps keep their plan before dropping to the free plan.
    #[arg(long, env = "SWITCHBOARD_BILLING_GRACE_HOURS", default_value_t = 168)]
    pub billing_grace_hours: u32,
}

impl BillingArgs {
    /// The settings, or `None` when billing is off; the browser comes back to
    /// `<public URL>/billing` after checkout and the portal.
    pub fn settings(&self, public_url: &str) -> Option<BillingSettings> {
        let mut settings = BillingSettings::from_keys(
            self.stripe_secret_key.as_deref(),
            self.stripe_webhook_secret.as_deref(),
            self.stripe_api_base.as_deref(),
            &format!("{}/billing", public_url.trim_end_matches('/')),
        )?;
        settings.grace_period = time::Duration::hours(i64::from(self.billing_grace_hours));
        Some(settings)
    }
}

/// Every minute: accounts past their grace drop to the free plan, days that ended become
/// outbox rows, pending rows go to Stripe. A failure is logged and retried next minute.
pub async fn run_billing_loop(billing: Billing) {
    let mut ticks = tokio::time::interval(BILLING_TICK);
    loop {
        ticks.tick().await;
        let now = OffsetDateTime::now_utc();
        if let Err(error) = billing.enforce_grace_period(now).await {
            tracing::warn!(%error, "billing: grace periods not enforced this minute");
        }
        if let Err(error) = billing.enqueue_overage(now).await {
            tracing::warn!(%error, "billing: overage not enqueued this minute");
        }
        match billing.report_usage(ROWS_PER_TICK).await {
            Ok(outcome) if outcome.failed > 0 => {
                tracing::warn!(
                    reported = outcome.reported,
                    "billing: stripe refused a usage report; retried next minute"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "billing: usage not reported this minute"),
        }
    }
}

async fn open(database: &DatabaseArgs, args: &BillingArgs) -> anyhow::Result<Billing> {
    let (pool, _) = database::open(database)
        .await?
        .context("DATABASE_URL is required")?;
    database::migrate(&pool).await?;
    let settings = args
        .settings("http://localhost")
        .context("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are required")?;
    Billing::new(pool, &settings)
}

/// `admin sync-stripe`: one JSON line per meter and plan, `created` false when it existed.
pub async fn sync_stripe(database: &DatabaseArgs, args: &BillingArgs) -> anyhow::Result<()> {
    let billing = open(database, args).await?;
    let lines = billing
        .sync_stripe()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for line in lines {
        println!(
            "{}",
            serde_json::json!({ "what": line.what, "stripe_id": line.stripe_id, "created": line.created })
        );
    }
    Ok(())
}

/// `admin reconcile-billing`: one JSON line per account and meter; `difference` is metered
/// minus what Stripe holds this period (positive while reports are pending).
pub async fn reconcile(database: &DatabaseArgs, args: &BillingArgs) -> anyhow::Result<()> {
    let billing = open(database, args).await?;
    let lines = billing
        .reconcile(OffsetDateTime::now_utc())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for line in lines {
        println!(
            "{}",
            serde_json::json!({
                "account_id": line.account_id, "meter": line.meter, "metered": line.metered,
                "reported": line.reported, "stripe": line.stripe, "difference": line.difference(),
            })
        );
    }
    Ok(())
}
