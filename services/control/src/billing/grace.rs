//! A failed payment's grace period: the apps keep their plan while Stripe retries; once the
//! period is over unpaid they drop to the free plan's limits (the apps trigger tells the
//! edges) until a payment makes the subscription active again (`webhook.rs` restores them).

use time::OffsetDateTime;

use crate::billing::Billing;
use crate::repository::billing as repo;
use crate::service::{ControlError, DEFAULT_PLAN};

impl Billing {
    /// Moves every account unpaid for longer than the grace period at `now` to the free
    /// plan; returns how many. Runs every minute in the background, and from tests.
    pub async fn enforce_grace_period(&self, now: OffsetDateTime) -> Result<usize, ControlError> {
        let mut tx = self.pool.begin().await?;
        let overdue = repo::lock_overdue_accounts(&mut tx, now - self.grace_period).await?;
        let mut emails = Vec::with_capacity(overdue.len());
        for account in &overdue {
            repo::set_apps_plan(&mut tx, account.account_id, DEFAULT_PLAN).await?;
            repo::set_downgraded(&mut tx, account.account_id).await?;
            if let Some((email, _)) = repo::owner_email(&mut tx, account.account_id).await? {
                emails.push(email);
            }
        }
        tx.commit().await?;
        for email in &emails {
            self.notices.downgraded(email).await;
        }
        Ok(overdue.len())
    }
}
