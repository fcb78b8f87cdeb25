//! One request to one endpoint, retried with exponential backoff until it gets a 2xx or the
//! retry window (Pusher: 5 minutes) is spent; every attempt is logged.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

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

/// One attempt, as the delivery log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub webhook_id: Uuid,
    pub app_id: String,
    pub attempt: u32,
    pub status: Status,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub event_count: usize,
}

/// Where attempts are recorded (Postgres in production, memory in tests).
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    async fn record(&self, attempt: Attempt);
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Job {
    pub webhook_id: Uuid,
    pub app_id: String,
    pub url: String,
    pub signed: SignedBody,
}

/// The longest error text kept per attempt.
const MAX_ERROR_CHARS: usize = 500;

/// Sends the job until it is delivered or the window is spent; returns the last status.
pub async fn deliver(
    http: &reqwest::Client,
    policy: RetryPolicy,
    log: &dyn DeliveryLog,
    job: Job,
) -> Status {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let (http_status, error) = match post(http, &job).await {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (Some(status), Some(format!("HTTP {status}"))),
            Err(error) => (None, Some(error)),
        };
        let wait = policy.wait_after(attempt);
        let status = match &error {
            None => Status::Delivered,
            Some(_) if started.elapsed() + wait <= policy.window => Status::Retrying,
            Some(_) => Status::Failed,
        };
        if let Some(error) = &error {
            tracing::info!(webhook_id = %job.webhook_id, app_id = %job.app_id, attempt, %error, status = status.as_str(), "webhook delivery failed");
        }
        log.record(Attempt {
            webhook_id: job.webhook_id,
            app_id: job.app_id.clone(),
            attempt,
            status,
            http_status,
            error,
            event_count: job.signed.event_count,
        })
        .await;
        if status != Status::Retrying {
            return status;
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// One POST: exactly `Content-Type: application/json` (pusher-http-node compares the whole
/// header), `X-Pusher-Key`, `X-Pusher-Signature`.
async fn post(http: &reqwest::Client, job: &Job) -> Result<u16, String> {
    let response = http
        .post(&job.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", &job.signed.key)
        .header("X-Pusher-Signature", &job.signed.signature)
        .body(job.signed.body.clone())
        .send()
        .await
        .map_err(|error| {
            let mut text = format!("{error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text.chars().take(MAX_ERROR_CHARS).collect::<String>()
        })?;
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
    }
}
