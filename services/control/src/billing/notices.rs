//! Telling an account's owner about their payments: `MailNotices` mails them through the
//! control plane's mailer (the binary's choice); `LogNotices` only logs them.

use time::OffsetDateTime;

use crate::mail::{MailLinks, Outbox};

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

/// Mails each notice to the owner, off the request path (the mail outbox's bounds apply).
pub struct MailNotices {
    outbox: Outbox,
    links: MailLinks,
}

impl MailNotices {
    pub fn new(outbox: Outbox, links: MailLinks) -> Self {
        Self { outbox, links }
    }

    fn send(&self, email: &str, subject: &str, body: &str) {
        let mail = self.links.billing_notice(email, subject, body);
        self.outbox.send_in_background(mail);
    }
}

#[async_trait::async_trait]
impl BillingNotices for MailNotices {
    async fn payment_failed(&self, email: &str, grace_ends: OffsetDateTime) {
        LogNotices.payment_failed(email, grace_ends).await;
        let body = format!(
            "A payment for your Switchboard subscription failed. Your apps keep their plan \
             until {grace_ends} (UTC); then they drop to the free plan's limits until the \
             payment comes. Update your payment method in the billing portal."
        );
        self.send(email, "Switchboard: a payment failed", &body);
    }

    async fn downgraded(&self, email: &str) {
        LogNotices.downgraded(email).await;
        let body = "The grace period after a failed payment has ended: your apps now have the \
                    free plan's limits. Paying the open invoice restores your plan.";
        self.send(
            email,
            "Switchboard: your apps are on the free plan's limits",
            body,
        );
    }

    async fn restored(&self, email: &str) {
        LogNotices.restored(email).await;
        let body = "Your payment has arrived: your apps are back on your paid plan.";
        self.send(email, "Switchboard: payment received, plan restored", body);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mail::MemoryMailer;

    #[tokio::test]
    async fn each_notice_is_mailed_to_the_owner_with_a_link_to_the_plans_page() {
        let mailer = MemoryMailer::new();
        let notices = MailNotices::new(
            Outbox::new(Arc::new(mailer.clone())),
            MailLinks::new("https://dash.example/"),
        );
        let grace_ends = OffsetDateTime::UNIX_EPOCH;
        notices
            .payment_failed("owner@example.com", grace_ends)
            .await;
        notices.downgraded("owner@example.com").await;
        notices.restored("owner@example.com").await;
        // Sent in the background: wait for the three, bounded.
        let started = std::time::Instant::now();
        while mailer.sent().len() < 3 {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::task::yield_now().await;
        }
        let sent = mailer.sent();
        assert!(sent.iter().all(|mail| mail.to == "owner@example.com"));
        assert!(
            sent.iter()
                .all(|mail| mail.link == "https://dash.example/plans")
        );
        let failed = sent
            .iter()
            .find(|mail| mail.subject.contains("payment failed"))
            .expect("the failed payment's notice");
        assert!(
            failed.text.contains(&grace_ends.to_string()),
            "{}",
            failed.text
        );
        let subjects: Vec<_> = sent.iter().map(|mail| mail.subject.as_str()).collect();
        assert!(subjects.iter().any(|s| s.contains("free plan")));
        assert!(subjects.iter().any(|s| s.contains("restored")));
    }
}
