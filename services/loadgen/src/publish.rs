//! Publishes benchmark events over HTTP at a fixed rate: a signed Pusher `POST
//! /apps/{id}/events`, or nchan's `POST /pub/{channel}` with the payload as the body.
//! Event `i` goes to channel `i % C` with per-channel sequence number `i / C`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::sign::{body_md5_hex, hmac_hex};
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::conn::BENCH_EVENT;
use crate::plan::Target;
use crate::stats::{make_payload, unix_ns};

pub struct Publisher {
    pub client: reqwest::Client,
    pub target: Target,
    /// nchan: publish where messages are buffered (for long-poll subscribers).
    pub nchan_kept: bool,
    /// `http://host:port` plus any path prefix, without a trailing slash.
    pub origin: String,
    pub path_prefix: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    pub channels: Vec<String>,
    pub payload: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct PublishReport {
    pub planned: u64,
    pub attempted: u64,
    /// Planned events not sent because the publisher was still behind when the window ended.
    pub skipped: u64,
    pub ok: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    pub achieved_rate: f64,
    /// Largest delay between an event's scheduled time and when it could be sent (the
    /// publisher falls behind when `publish_concurrency` requests are all in flight).
    pub max_lag_ms: f64,
    pub first_error: Option<String>,
    #[serde(skip)]
    pub per_channel_ok: Vec<u64>,
}

/// An app of a Pusher-protocol server as the HTTP API's signer sees it.
pub(crate) struct SignedApp<'a> {
    /// `http://host:port`, without a trailing slash.
    pub(crate) origin: &'a str,
    pub(crate) path_prefix: &'a str,
    pub(crate) app_id: &'a str,
    pub(crate) key: &'a str,
    pub(crate) secret: &'a str,
}

impl SignedApp<'_> {
    /// A signed `POST /apps/{id}/events` of one event, ready to send.
    pub(crate) fn events_request(
        &self,
        client: &reqwest::Client,
        name: &str,
        channel: &str,
        data: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let body = serde_json::to_vec(&PusherEvent {
            name,
            channel,
            data,
        })?;
        let path = format!("{}/apps/{}/events", self.path_prefix, self.app_id);
        let ts = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let query = format!(
            "auth_key={}&auth_timestamp={ts}&auth_version=1.0&body_md5={}",
            self.key,
            body_md5_hex(&body)
        );
        let signature = hmac_hex(self.secret, &format!("POST\n{path}\n{query}"));
        let url = format!("{}{path}?{query}&auth_signature={signature}", self.origin);
        Ok(client
            .post(url)
            .header("content-type", "application/json")
            .body(body))
    }
}

#[derive(Serialize)]
struct PusherEvent<'a> {
    name: &'a str,
    channel: &'a str,
    data: &'a str,
}

impl Publisher {
    async fn publish_one(&self, channel: usize, seq: u64) -> anyhow::Result<()> {
        let channel = &self.channels[channel];
        let payload = make_payload(seq, unix_ns(), self.payload);
        let response = match self.target {
            Target::Pusher => {
                let app = SignedApp {
                    origin: &self.origin,
                    path_prefix: &self.path_prefix,
                    app_id: &self.app_id,
                    key: &self.key,
                    secret: &self.secret,
                };
                app.events_request(&self.client, BENCH_EVENT, channel, &payload)?
                    .send()
                    .await?
            }
            Target::Nchan => {
                // Long-poll subscribers are between requests now and then: nchan keeps
                // those messages only when published where it buffers them.
                let location = if self.nchan_kept { "pub_kept" } else { "pub" };
                let url = format!("{}{}/{location}/{channel}", self.origin, self.path_prefix);
                self.client
                    .post(url)
                    .header("content-type", "text/plain")
                    .body(payload)
                    .send()
                    .await?
            }
        };
        let status = response.status();
        if status.is_success() {
            // Read the (small) body so the keep-alive connection is reused.
            let _ = response.bytes().await;
            Ok(())
        } else {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )
        }
    }

    /// Publishes `total` events at `rate` per second with at most `concurrency` requests in
    /// flight, then waits (bounded) for the last responses. Nothing is sent after `window`
    /// (plus one event interval): a publisher that falls behind skips the rest.
    pub async fn run(
        self: Arc<Self>,
        rate: f64,
        total: u64,
        concurrency: usize,
        window: Duration,
    ) -> PublishReport {
        let channels = self.channels.len();
        let per_channel_ok: Arc<Vec<AtomicU64>> =
            Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect());
        let failed = Arc::new(AtomicU64::new(0));
        let first_error: Arc<Mutex<Option<String>>> = Arc::default();
        let sem = Arc::new(Semaphore::new(concurrency));
        let start = Instant::now();
        let mut max_lag = Duration::ZERO;
        let deadline = start + window + Duration::from_secs_f64(1.0 / rate);
        let mut attempted = 0;
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let Ok(Ok(permit)) =
                tokio::time::timeout_at(deadline.into(), sem.clone().acquire_owned()).await
            else {
                break;
            };
            if Instant::now() >= deadline {
                break;
            }
            attempted += 1;
            max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
            let (this, ok, failed, first_error) = (
                self.clone(),
                per_channel_ok.clone(),
                failed.clone(),
                first_error.clone(),
            );
            let channel = (i % channels as u64) as usize;
            let seq = i / channels as u64;
            tokio::spawn(async move {
                match this.publish_one(channel, seq).await {
                    Ok(()) => {
                        ok[channel].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().await;
                        if first.is_none() {
                            *first = Some(format!("{e:#}"));
                        }
                    }
                }
                drop(permit);
            });
        }
        // Wait for in-flight requests (each has the client's timeout).
        let _ = tokio::time::timeout(
            Duration::from_secs(15),
            sem.acquire_many(concurrency as u32),
        )
        .await;
        let elapsed = start.elapsed().as_secs_f64();
        let per_channel_ok: Vec<u64> = per_channel_ok
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        let ok: u64 = per_channel_ok.iter().sum();
        let first_error = first_error.lock().await.clone();
        PublishReport {
            planned: total,
            attempted,
            skipped: total - attempted,
            ok,
            failed: failed.load(Ordering::Relaxed),
            elapsed_s: elapsed,
            achieved_rate: if elapsed > 0.0 {
                ok as f64 / elapsed
            } else {
                0.0
            },
            max_lag_ms: max_lag.as_secs_f64() * 1e3,
            first_error,
            per_channel_ok,
        }
    }
}
