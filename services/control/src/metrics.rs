//! The control plane's Prometheus figures, in the process's one recorder (the edge's
//! `/metrics` renders it; a control plane alone serves it too).
//!
//! Backlogs that live in Postgres (webhook requests waiting, usage reports waiting for Stripe)
//! are read by one small query each every `BACKLOG_EVERY`, not at scrape time, so a scraper
//! can never load the database. They are cluster-wide: every process reports the same figure.
//! Label values are fixed in code (`outcome`).

use std::time::Duration;

use sqlx::PgPool;

use crate::repository::{billing_usage, webhook_outbox};
use crate::webhooks::deliver::Status;

const WEBHOOK_ATTEMPTS: &str = "switchboard_webhook_attempts_total";
const WEBHOOK_QUEUE_REQUESTS: &str = "switchboard_webhook_queue_requests";
const WEBHOOK_QUEUE_AGE: &str = "switchboard_webhook_queue_oldest_age_seconds";
const BILLING_OUTBOX_REPORTS: &str = "switchboard_billing_outbox_reports";
const BILLING_OUTBOX_AGE: &str = "switchboard_billing_outbox_oldest_age_seconds";

/// How often the backlogs are read from Postgres.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(15);

const OUTCOMES: [Status; 3] = [Status::Delivered, Status::Retrying, Status::Failed];

/// Describes the control plane's metrics and registers them at zero, so alerts and
/// dashboards find their series before the first event. Idempotent.
pub fn register() {
    metrics::describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts by outcome (delivered, retrying: failed and retried later, \
         failed: given up)"
    );
    metrics::describe_gauge!(
        WEBHOOK_QUEUE_REQUESTS,
        "Webhook requests waiting for delivery in Postgres (cluster-wide)"
    );
    metrics::describe_gauge!(
        WEBHOOK_QUEUE_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest webhook request waiting for delivery (0 when none; cluster-wide)"
    );
    metrics::describe_gauge!(
        BILLING_OUTBOX_REPORTS,
        "Usage reports waiting to be sent to Stripe (cluster-wide)"
    );
    metrics::describe_gauge!(
        BILLING_OUTBOX_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest usage report waiting for Stripe (0 when none; cluster-wide)"
    );
    for outcome in OUTCOMES {
        metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome.as_str()).increment(0);
    }
    for gauge in [
        WEBHOOK_QUEUE_REQUESTS,
        WEBHOOK_QUEUE_AGE,
        BILLING_OUTBOX_REPORTS,
        BILLING_OUTBOX_AGE,
    ] {
        metrics::gauge!(gauge).increment(0.0);
    }
}

/// One webhook attempt ended with `status`.
pub fn webhook_attempted(status: Status) {
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => status.as_str()).increment(1);
}

/// Reads the backlogs every `BACKLOG_EVERY` until the process ends; a failed read leaves the
/// last figures (the dependency alerts tell of a database that is gone).
pub async fn watch_backlogs(pool: PgPool) {
    register();
    let mut ticks = tokio::time::interval(BACKLOG_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = read_backlogs(&pool).await {
            tracing::debug!(%error, "backlog figures not read this round");
        }
    }
}

async fn read_backlogs(pool: &PgPool) -> sqlx::Result<()> {
    let mut conn = pool.acquire().await?;
    let webhooks = webhook_outbox::backlog(&mut conn).await?;
    metrics::gauge!(WEBHOOK_QUEUE_REQUESTS).set(webhooks.waiting as f64);
    metrics::gauge!(WEBHOOK_QUEUE_AGE).set(webhooks.oldest_age_seconds);
    let billing = billing_usage::backlog(&mut conn).await?;
    metrics::gauge!(BILLING_OUTBOX_REPORTS).set(billing.waiting as f64);
    metrics::gauge!(BILLING_OUTBOX_AGE).set(billing.oldest_age_seconds);
    Ok(())
}
