//! One attempt of one request, and the retry policy: exponential backoff until a 2xx or the
//! retry window (Pusher: 5 minutes) is spent. The waits are not slept here: the outbox makes
//! the request due again (`outbox.rs`), so a failing endpoint holds no delivery slot meanwhile.

use std::time::Duration;

use tenancy::{AddressPolicy, parse_webhook_url};
use uuid::Uuid;

use crate::webhooks::failure::Failure;
use crate::webhooks::payload::SignedBody;

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one.
    pub initial: Duration,
    /// The longest wait between two attempts.
    pub max_interval: Duration,
    /// No attempt starts later than this after the first.
    pub window: Duration,
}

impl RetryPolicy {
    /// The wait after attempt `attempt` (1-based) failed.
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial
            .saturating_mul(1 << doublings)
            .min(self.max_interval)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Delivered,
    Retrying,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }
}

/// What to do with a request after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this wait.
    RetryAfter(Duration),
    /// The retry window is spent.
    GiveUp,
}

impl RetryPolicy {
    /// After attempt `attempt` (1-based) failed, `since_first` after the first one started.
    pub fn after_failure(&self, attempt: u32, since_first: Duration) -> AfterFailure {
        let wait = self.wait_after(attempt);
        if since_first.saturating_add(wait) <= self.window {
            AfterFailure::RetryAfter(wait)
        } else {
            AfterFailure::GiveUp
        }
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Job {
    pub webhook_id: Uuid,
    pub app_id: String,
    pub url: String,
    pub signed: SignedBody,
}

/// One attempt: the endpoint's status if it is 2xx, else why it failed. The URL is checked
/// against `policy` first, since IP literals never reach the guarded resolver. Its span names
/// the app and webhook, never the URL (it may hold a token) or the body.
#[tracing::instrument(name = "webhook.deliver", level = "debug", skip_all, fields(otel.kind = "client", app_id = %job.app_id, webhook_id = %job.webhook_id, http.response.status_code = tracing::field::Empty))]
pub async fn attempt(
    http: &reqwest::Client,
    policy: AddressPolicy,
    job: &Job,
) -> Result<u16, Failure> {
    if parse_webhook_url(&job.url, policy).is_err() {
        return Err(Failure::ForbiddenAddress);
    }
    let status = post(http, job).await.map_err(|error| Failure::of(&error))?;
    tracing::Span::current().record("http.response.status_code", status);
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(Failure::HttpStatus(status))
    }
}

/// One POST: exactly `Content-Type: application/json` (pusher-http-node compares the whole
/// header), `X-Pusher-Key`, `X-Pusher-Signature`. The answer's body is not read.
async fn post(http: &reqwest::Client, job: &Job) -> Result<u16, reqwest::Error> {
    let response = http
        .post(&job.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", &job.signed.key)
        .header("X-Pusher-Signature", &job.signed.signature)
        .body(job.signed.body.clone())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            window: Duration::from_secs(300),
        };
        let waits: Vec<u64> = (1..=9).map(|n| policy.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.wait_after(1000), Duration::from_secs(60));
        // Five minutes hold about a dozen attempts.
        let mut total = Duration::ZERO;
        let mut attempts = 1;
        while total + policy.wait_after(attempts) <= policy.window {
            total += policy.wait_after(attempts);
            attempts += 1;
        }
        assert_eq!(attempts, 10);
        assert_eq!(
            policy.after_failure(1, Duration::ZERO),
            AfterFailure::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            policy.after_failure(9, Duration::from_secs(241)),
            AfterFailure::GiveUp
        );
        assert_eq!(
            policy.after_failure(9, Duration::from_secs(240)),
            AfterFailure::RetryAfter(Duration::from_secs(60))
        );
    }
}
