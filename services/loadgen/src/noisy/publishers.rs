//! The workload's HTTP publishers: tenant B's, paced at a set rate with a sequence number per
//! event; tenant A's storm, N publishers sending back to back, each honouring a 429's
//! `Retry-After` before its own next request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::publish::SignedApp;
use crate::stats::{make_payload, unix_ns};

/// Consecutive failed publishes (no answer, or not 200) after which B's publisher counts the
/// server as no longer answering and the run ends with what it has.
pub(crate) const UNANSWERED_LIMIT: u64 = 25;
/// The longest `Retry-After` a storm publisher waits; a larger one is waited this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A storm publisher whose request failed without an answer (connection refused, timeout)
/// waits this long first, so a server that is down is not hammered by a hot loop.
const FAILURE_BACKOFF: Duration = Duration::from_millis(100);

/// One app's HTTP API and channel, owned.
pub(crate) struct AppTarget {
    pub(crate) origin: String,
    pub(crate) path_prefix: String,
    pub(crate) app_id: String,
    pub(crate) key: String,
    pub(crate) secret: String,
    pub(crate) channel: String,
    pub(crate) event: &'static str,
    pub(crate) payload: usize,
}

impl AppTarget {
    async fn publish(&self, client: &reqwest::Client, seq: u64) -> Outcome {
        let signer = SignedApp {
            origin: &self.origin,
            path_prefix: &self.path_prefix,
            app_id: &self.app_id,
            key: &self.key,
            secret: &self.secret,
        };
        let data = make_payload(seq, unix_ns(), self.payload);
        let request = match signer.events_request(client, self.event, &self.channel, &data) {
            Ok(request) => request,
            Err(error) => return Outcome::Failed(format!("{error:#}")),
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
                // Read the (small) body so the keep-alive connection is reused.
                let _ = response.bytes().await;
                Outcome::Status(status, retry_after)
            }
            Err(error) => Outcome::Failed(format!("{error:#}")),
        }
    }
}

enum Outcome {
    /// The HTTP status and, if sent, `Retry-After` in seconds.
    Status(u16, Option<u64>),
    Failed(String),
}

/// Publishes counted by answer.
#[derive(Default)]
pub(crate) struct StatusCounts {
    ok: AtomicU64,
    too_many: AtomicU64,
    other: AtomicU64,
    failed: AtomicU64,
    retry_after_waits: AtomicU64,
    skipped: AtomicU64,
    first_error: Mutex<Option<String>>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct StatusReport {
    pub(crate) status_200: u64,
    pub(crate) status_429: u64,
    pub(crate) status_other: u64,
    /// No HTTP answer (connection error or timeout).
    pub(crate) failed: u64,
    /// 429s whose `Retry-After` the publisher waited out.
    pub(crate) retry_after_waits: u64,
    /// B: events not sent because every request allowed in flight was still unanswered.
    pub(crate) skipped_behind: u64,
    pub(crate) first_error: Option<String>,
}

impl StatusCounts {
    fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Status(200, _) => &self.ok,
            Outcome::Status(429, _) => &self.too_many,
            Outcome::Status(status, _) => {
                self.note(|| format!("HTTP {status}"));
                &self.other
            }
            Outcome::Failed(error) => {
                self.note(|| error.clone());
                &self.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn note(&self, error: impl FnOnce() -> String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(error());
        }
    }

    pub(crate) fn report(&self) -> StatusReport {
        StatusReport {
            status_200: self.ok.load(Ordering::Relaxed),
            status_429: self.too_many.load(Ordering::Relaxed),
            status_other: self.other.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retry_after_waits: self.retry_after_waits.load(Ordering::Relaxed),
            skipped_behind: self.skipped.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// B's events: which sequence numbers were accepted (200) and how long the answer took
/// (microseconds, from sending the request), and the run of failures.
pub(crate) struct Accepted {
    accepted: Mutex<Vec<Option<u32>>>,
    consecutive_failures: AtomicU64,
}

impl Accepted {
    pub(crate) fn new(events: u64) -> Self {
        Self {
            accepted: Mutex::new(vec![None; events as usize]),
            consecutive_failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<bool> {
        self.answer_times().iter().map(Option::is_some).collect()
    }

    /// Per event, how long its accepted publish took to be answered, in microseconds.
    pub(crate) fn answer_times(&self) -> Vec<Option<u32>> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `answered`: the time to a 200, or `None` for any other outcome.
    fn record(&self, seq: u64, answered: Option<Duration>) {
        if let Some(took) = answered {
            let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
            self.accepted.lock().unwrap_or_else(|e| e.into_inner())[seq as usize] = Some(micros);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn unanswered(&self) -> bool {
        self.consecutive_failures.load(Ordering::Relaxed) >= UNANSWERED_LIMIT
    }
}

/// B's publisher: events at `rate` per second, at most `in_flight` requests at once.
pub(crate) struct Paced {
    pub(crate) target: Arc<AppTarget>,
    pub(crate) client: reqwest::Client,
    pub(crate) rate: f64,
    pub(crate) in_flight: usize,
    pub(crate) accepted: Arc<Accepted>,
    pub(crate) counts: Arc<StatusCounts>,
}

impl Paced {
    /// One phase: events `seqs`, nothing sent after `window`; stops early when the server
    /// stops answering. Returns when the last request has answered or timed out.
    pub(crate) async fn phase(&self, seqs: std::ops::Range<u64>, window: Duration) {
        let start = Instant::now();
        let permits = Arc::new(Semaphore::new(self.in_flight));
        let mut requests = JoinSet::new();
        for (index, seq) in seqs.enumerate() {
            let due = start + Duration::from_secs_f64(index as f64 / self.rate);
            if due >= start + window || self.accepted.unanswered() {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            // A publisher with every request in flight skips the events it cannot send in time.
            // Not a failure of the server's: it does not count toward `UNANSWERED_LIMIT`.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.counts.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (target, client, accepted, counts) = (
                self.target.clone(),
                self.client.clone(),
                self.accepted.clone(),
                self.counts.clone(),
            );
            requests.spawn(async move {
                let sent = Instant::now();
                let outcome = target.publish(&client, seq).await;
                let ok = matches!(outcome, Outcome::Status(200, _));
                accepted.record(seq, ok.then(|| sent.elapsed()));
                counts.count(&outcome);
                drop(permit);
            });
        }
        // Every request carries the client's timeout, so this ends.
        while requests.join_next().await.is_some() {}
    }

    /// Between the phases: events of `filler` (same app and channel, another event name, so
    /// the subscribers' tallies skip them) at the same rate, until `stop`. The tenant keeps
    /// publishing while A's subscribers connect, as in production; without it B's publisher
    /// sat idle through A's ramp, the server closed its idle keep-alive connections, and
    /// phase 2 began with B reconnecting at the storm's first moment.
    pub(crate) async fn fill(&self, filler: Arc<AppTarget>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.in_flight));
        let mut requests = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for seq in 0.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue;
            };
            let (filler, client) = (filler.clone(), self.client.clone());
            requests.spawn(async move {
                let _ = filler.publish(&client, seq).await;
                drop(permit);
            });
            while requests.try_join_next().is_some() {}
        }
        while requests.join_next().await.is_some() {}
    }
}

/// A's storm: `publishers` tasks publishing back to back until `stop`.
pub(crate) fn storm(
    target: Arc<AppTarget>,
    client: reqwest::Client,
    publishers: usize,
    stop: watch::Receiver<bool>,
    counts: Arc<StatusCounts>,
    runtime: &tokio::runtime::Handle,
) -> JoinSet<()> {
    let sequence = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..publishers {
        let (target, client, mut stop, counts, sequence) = (
            target.clone(),
            client.clone(),
            stop.clone(),
            counts.clone(),
            sequence.clone(),
        );
        tasks.spawn_on(
            async move {
                while !*stop.borrow() {
                    let seq = sequence.fetch_add(1, Ordering::Relaxed);
                    let outcome = target.publish(&client, seq).await;
                    counts.count(&outcome);
                    let wait = match outcome {
                        Outcome::Status(429, retry_after) => {
                            counts.retry_after_waits.fetch_add(1, Ordering::Relaxed);
                            // No header: a second, the smallest value the header can say.
                            Duration::from_secs(retry_after.unwrap_or(1)).min(MAX_RETRY_AFTER)
                        }
                        Outcome::Failed(_) => FAILURE_BACKOFF,
                        Outcome::Status(..) => continue,
                    };
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            },
            runtime,
        );
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_counts_as_gone_only_after_a_run_of_failures() {
        let accepted = Accepted::new(100);
        for seq in 0..UNANSWERED_LIMIT - 1 {
            accepted.record(seq, None);
        }
        assert!(!accepted.unanswered());
        accepted.record(50, Some(Duration::from_millis(3)));
        for seq in 0..UNANSWERED_LIMIT - 1 {
            accepted.record(seq, None);
        }
        assert!(!accepted.unanswered(), "a success starts the run again");
        accepted.record(99, None);
        assert!(accepted.unanswered());
        let snapshot = accepted.snapshot();
        assert!(snapshot[50] && !snapshot[0] && snapshot.len() == 100);
        assert_eq!(accepted.answer_times()[50], Some(3_000), "microseconds");
    }

    #[test]
    fn answers_are_counted_by_status() {
        let counts = StatusCounts::default();
        for outcome in [
            Outcome::Status(200, None),
            Outcome::Status(429, Some(1)),
            Outcome::Status(503, None),
            Outcome::Failed("refused".into()),
        ] {
            counts.count(&outcome);
        }
        let report = counts.report();
        assert_eq!(
            (
                report.status_200,
                report.status_429,
                report.status_other,
                report.failed
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(report.first_error.as_deref(), Some("HTTP 503"));
    }
}
