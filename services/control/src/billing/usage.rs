//! Overage to Stripe's meters through the outbox (`billing_usage_outbox`), and the
//! reconciliation of what was metered with what Stripe holds.
//!
//! Each row is claimed in its own transaction (`FOR UPDATE SKIP LOCKED`), sent with its
//! identifier as both the meter event's `identifier` and the `Idempotency-Key`, and marked
//! in the same transaction. A crash after sending leaves it unmarked: it is sent again and
//! Stripe keeps one event per identifier. A failing Stripe leaves it unmarked with its error;
//! the next run tries again. Nothing is lost and nothing counts twice.

use std::collections::HashMap;

use time::{OffsetDateTime, Time};

use crate::billing::{Billing, stripe_failed};
use crate::repository::billing as repo;
use crate::repository::billing_usage::{self, OutboxRow};
use crate::service::ControlError;

/// What one reporting run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    pub reported: usize,
    /// Rows Stripe refused or failed on this run; they stay in the outbox.
    pub failed: usize,
}

/// One account's meter: what Postgres metered as overage this period against Stripe's total.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileLine {
    pub account_id: uuid::Uuid,
    pub meter: String,
    /// Overage in the outbox for this period (reported or not).
    pub metered: i64,
    pub reported: i64,
    pub stripe: f64,
}

impl ReconcileLine {
    /// Metered minus what Stripe holds: positive while reports are pending.
    pub fn difference(&self) -> f64 {
        self.metered as f64 - self.stripe
    }
}

impl Billing {
    /// Adds overage rows for every UTC day over at `now` (each once).
    pub async fn enqueue_overage(&self, now: OffsetDateTime) -> Result<u64, ControlError> {
        let mut conn = self.pool.acquire().await?;
        Ok(billing_usage::enqueue_overage(&mut conn, now).await?)
    }

    /// Reports up to `max_rows` pending rows; stops at the first failure (Stripe is likely
    /// down for the rest too), which stays pending.
    pub async fn report_usage(&self, max_rows: usize) -> Result<ReportOutcome, ControlError> {
        let meters = self.meter_event_names().await?;
        let mut outcome = ReportOutcome::default();
        for _ in 0..max_rows {
            let mut tx = self.pool.begin().await?;
            let Some(row) = billing_usage::claim_next(&mut tx).await? else {
                break;
            };
            match self.send_usage_row(&row, &meters).await {
                Ok(()) => {
                    billing_usage::mark_reported(&mut tx, &row.identifier).await?;
                    tx.commit().await?;
                    outcome.reported += 1;
                }
                Err(error) => {
                    billing_usage::record_failure(&mut tx, &row.identifier, &error).await?;
                    tx.commit().await?;
                    outcome.failed += 1;
                    break;
                }
            }
        }
        Ok(outcome)
    }

    /// Sends one row to its meter (what `report_usage` does before marking it). Public so a
    /// test can send a claimed row and "crash" before the mark.
    pub async fn send_usage_row(
        &self,
        row: &OutboxRow,
        meters: &HashMap<String, String>,
    ) -> Result<(), String> {
        let event_name = meters.get(&row.meter).ok_or_else(|| {
            format!(
                "no Stripe meter for {:?} (switchboard admin sync-stripe)",
                row.meter
            )
        })?;
        // Inside the day it counts for, and never in the future (Stripe refuses that).
        let in_day = row
            .usage_day
            .with_time(Time::from_hms(23, 59, 59).expect("valid"))
            .assume_utc();
        let timestamp = in_day.min(OffsetDateTime::now_utc()).unix_timestamp();
        match self
            .api
            .create_meter_event(
                event_name,
                &row.stripe_customer_id,
                row.quantity,
                &row.identifier,
                timestamp,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(failure) => {
                tracing::warn!(identifier = %row.identifier, error = %failure, "meter event not reported");
                Err(failure.message)
            }
        }
    }

    /// Meter kind (`messages`, `connections`) → its Stripe event name.
    pub async fn meter_event_names(&self) -> Result<HashMap<String, String>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let meters = repo::meters(&mut conn).await?;
        Ok(meters
            .into_iter()
            .map(|m| (m.meter, m.event_name))
            .collect())
    }

    /// Every subscribed account's meters this period: metered against Stripe's totals.
    pub async fn reconcile(&self, now: OffsetDateTime) -> Result<Vec<ReconcileLine>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        let meters = repo::meters(&mut conn).await?;
        let accounts = repo::accounts_in_a_period(&mut conn).await?;
        let mut lines = Vec::new();
        for account in accounts {
            let Some(start) = account.current_period_start else {
                continue;
            };
            let day_start = start.replace_time(Time::MIDNIGHT);
            for meter in &meters {
                let (metered, reported) = billing_usage::totals(
                    &mut conn,
                    account.account_id,
                    &meter.meter,
                    day_start.date(),
                )
                .await?;
                let stripe = self
                    .api
                    .meter_total(
                        &meter.stripe_meter_id,
                        &account.stripe_customer_id,
                        day_start.unix_timestamp(),
                        now.unix_timestamp() + 86_400,
                    )
                    .await
                    .map_err(stripe_failed)?;
                lines.push(ReconcileLine {
                    account_id: account.account_id,
                    meter: meter.meter.clone(),
                    metered,
                    reported,
                    stripe,
                });
            }
        }
        Ok(lines)
    }
}
