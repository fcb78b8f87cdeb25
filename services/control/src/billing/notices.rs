//! Telling an account's owner about their payments. The hook the mailer plugs into: until
//! it does, `LogNotices` writes each notice to the log.

use time::OffsetDateTime;

#[async_trait::async_trait]
pub trait BillingNotices: Send + Sync {
    /// A payment failed; the apps keep their plan until `grace_ends`.
    async fn payment_failed(&self, email: &str, grace_ends: OffsetDateTime);
    /// The grace period ended unpaid; the apps are on the free plan's limits.
    async fn downgraded(&self, email: &str);
    /// The payment came; the apps are back on the paid plan.
    async fn restored(&self, email: &str);
}

pub struct LogNotices;

#[async_trait::async_trait]
impl BillingNotices for LogNotices {
    async fn payment_failed(&self, email: &str, grace_ends: OffsetDateTime) {
        tracing::warn!(to = %ingress::Untrusted(email), %grace_ends, "billing notice: payment failed");
    }

    async fn downgraded(&self, email: &str) {
        tracing::warn!(to = %ingress::Untrusted(email), "billing notice: apps on the free plan until paid");
    }

    async fn restored(&self, email: &str) {
        tracing::info!(to = %ingress::Untrusted(email), "billing notice: payment received, plan restored");
    }
}
