//! Usage metering: per app and UTC minute, counted in memory on the hot path and flushed to a
//! `UsageSink` (Postgres in production) every few seconds and at shutdown.
//!
//! Counting is one short lock per event, never per subscriber: a fan-out to N connections adds
//! N once. A flush takes the closed minutes (at shutdown, every minute) out of the counters and
//! hands them to the sink. Rows the sink refuses stay pending and go out with the next flush
//! (no loss); rows it accepts are forgotten (no double count). Flushes never overlap, so the
//! shutdown flush waits for a periodic one in progress.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::names::AppId;
use tenancy::{UsageMinute, UsageSink};

use crate::metrics_per_app::PerAppMetrics;

/// Minutes since the Unix epoch, UTC.
pub fn unix_minute_now() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds / 60).unwrap_or(i64::MAX)
}

type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// Counts of one minute; the app and minute are the keys around it.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    peak_connections: u64,
    /// The peak includes a cluster-wide count (`Meter::cluster_connections`) this minute.
    cluster_counted: bool,
    connections_opened: u64,
    messages_published: u64,
    messages_delivered: u64,
    bytes_out: u64,
}

#[derive(Debug, Default)]
struct AppMeter {
    /// Connections of the app open on this node now.
    concurrent: u64,
    minutes: BTreeMap<i64, Counts>,
}

impl AppMeter {
    /// This minute's counts; a minute first seen starts with the connections open now as
    /// its peak, so a minute with connections but no other event still shows them.
    fn minute(&mut self, minute: i64) -> &mut Counts {
        let concurrent = self.concurrent;
        self.minutes.entry(minute).or_insert_with(|| Counts {
            peak_connections: concurrent,
            ..Counts::default()
        })
    }
}

/// The edge's usage counters. See the module documentation for the flush rule.
pub struct Meter {
    apps: Mutex<HashMap<AppId, AppMeter>>,
    /// Rows taken from the counters whose write has not succeeded yet. Its lock is held for a
    /// whole flush, so flushes run one at a time.
    pending: tokio::sync::Mutex<Vec<UsageMinute>>,
    /// Set by the shutdown flush: the periodic flush stops.
    closed: AtomicBool,
    clock: Clock,
    /// An app nobody is billed for (the console's system app): nothing of it is counted.
    unmetered: std::sync::OnceLock<AppId>,
    /// Per-app Prometheus series, when the operator caps them (`--metrics-per-app-cap`).
    per_app_metrics: std::sync::OnceLock<PerAppMetrics>,
}

impl Default for Meter {
    fn default() -> Self {
        Self::with_clock(unix_minute_now)
    }
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

impl Meter {
    /// A meter reading the minute from `clock` (minutes since the Unix epoch).
    pub fn with_clock(clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self {
            apps: Mutex::default(),
            pending: tokio::sync::Mutex::default(),
            closed: AtomicBool::new(false),
            clock: Box::new(clock),
            unmetered: std::sync::OnceLock::new(),
            per_app_metrics: std::sync::OnceLock::new(),
        }
    }

    /// Also counts into per-app Prometheus series for the first `cap` apps; set once.
    pub fn with_per_app_metrics(&self, cap: usize) {
        let _ = self.per_app_metrics.set(PerAppMetrics::with_cap(cap));
    }

    /// The per-app series, if on, unless `app` is exempt.
    fn per_app(&self, app: &AppId) -> Option<&PerAppMetrics> {
        self.per_app_metrics.get().filter(|_| !self.is_exempt(app))
    }

    /// Counts nothing of `app` from now on (whatever path reports it: the hub, admissions,
    /// cluster samples); set once.
    pub fn exempt(&self, app: AppId) {
        let _ = self.unmetered.set(app);
    }

    /// Whether `app` is the one app nothing is counted of.
    pub fn is_exempt(&self, app: &AppId) -> bool {
        self.unmetered.get() == Some(app)
    }

    /// Runs `count` on the app's counters for the current minute.
    fn count(&self, app: &AppId, count: impl FnOnce(&mut AppMeter, i64)) {
        if self.is_exempt(app) {
            return;
        }
        let minute = (self.clock)();
        let mut apps = self.apps.lock().expect("meter lock poisoned");
        match apps.get_mut(app) {
            Some(meter) => count(meter, minute),
            None => count(apps.entry(app.clone()).or_default(), minute),
        }
    }

    /// A connection was admitted.
    pub fn connection_opened(&self, app: &AppId) {
        if let Some(per_app) = self.per_app(app) {
            per_app.connection_opened(app);
        }
        self.count(app, |meter, minute| {
            meter.concurrent += 1;
            let concurrent = meter.concurrent;
            let counts = meter.minute(minute);
            counts.connections_opened += 1;
            counts.peak_connections = counts.peak_connections.max(concurrent);
        });
    }

    /// The app holds `in_use` connection slots, cluster-wide (an admission's count, or a
    /// sample): the minute's peak is at least that.
    pub fn cluster_connections(&self, app: &AppId, in_use: u64) {
        self.count(app, |meter, minute| {
            let counts = meter.minute(minute);
            counts.peak_connections = counts.peak_connections.max(in_use);
            counts.cluster_counted = true;
        });
    }

    /// Apps with connections on this node whose current minute has no cluster-wide count yet
    /// (at most one per app with connections here).
    pub fn apps_to_sample(&self) -> Vec<AppId> {
        let now = (self.clock)();
        let apps = self.apps.lock().expect("meter lock poisoned");
        apps.iter()
            .filter(|(_, meter)| {
                meter.concurrent > 0
                    && !meter
                        .minutes
                        .get(&now)
                        .is_some_and(|counts| counts.cluster_counted)
            })
            .map(|(app, _)| app.clone())
            .collect()
    }

    /// An admitted connection ended.
    pub fn connection_closed(&self, app: &AppId) {
        if let Some(per_app) = self.per_app(app) {
            per_app.connection_closed(app);
        }
        self.count(app, |meter, minute| {
            meter.minute(minute);
            meter.concurrent = meter.concurrent.saturating_sub(1);
        });
    }

    /// `messages` were published (one per channel of an API trigger, one per client event).
    pub fn published(&self, app: &AppId, messages: u64) {
        if let Some(per_app) = self.per_app(app) {
            per_app.published(app, messages);
        }
        self.count(app, |meter, minute| {
            meter.minute(minute).messages_published += messages;
        });
    }

    /// One frame of `frame_bytes` went to `receivers` connections.
    pub fn delivered(&self, app: &AppId, receivers: u64, frame_bytes: u64) {
        if receivers == 0 {
            return;
        }
        if let Some(per_app) = self.per_app(app) {
            per_app.delivered(app, receivers);
        }
        self.count(app, |meter, minute| {
            let counts = meter.minute(minute);
            counts.messages_delivered += receivers;
            counts.bytes_out += frame_bytes.saturating_mul(receivers);
        });
    }

    /// `frames` frames of `bytes` bytes in all went to one connection (a resume's replay).
    pub fn delivered_to_one(&self, app: &AppId, frames: u64, bytes: u64) {
        if frames == 0 {
            return;
        }
        if let Some(per_app) = self.per_app(app) {
            per_app.delivered(app, frames);
        }
        self.count(app, |meter, minute| {
            let counts = meter.minute(minute);
            counts.messages_delivered += frames;
            counts.bytes_out += bytes;
        });
    }

    /// Connections of the app open on this node now.
    pub fn concurrent(&self, app: &AppId) -> u64 {
        let apps = self.apps.lock().expect("meter lock poisoned");
        apps.get(app).map_or(0, |meter| meter.concurrent)
    }

    /// Whether the shutdown flush has run.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes the minutes before the current one (every minute if `everything`) out of the
    /// counters. Apps with open connections first get a row for the current minute, so their
    /// connections show in every minute even when nothing else happens.
    fn take(&self, everything: bool) -> Vec<UsageMinute> {
        let now = (self.clock)();
        let mut apps = self.apps.lock().expect("meter lock poisoned");
        let mut taken = Vec::new();
        apps.retain(|app, meter| {
            if meter.concurrent > 0 {
                meter.minute(now);
            }
            let closed = if everything {
                std::mem::take(&mut meter.minutes)
            } else {
                let current = meter.minutes.split_off(&now);
                std::mem::replace(&mut meter.minutes, current)
            };
            taken.extend(closed.into_iter().map(|(minute, counts)| UsageMinute {
                app: app.clone(),
                minute,
                peak_connections: counts.peak_connections,
                connections_opened: counts.connections_opened,
                messages_published: counts.messages_published,
                messages_delivered: counts.messages_delivered,
                bytes_out: counts.bytes_out,
            }));
            meter.concurrent > 0 || !meter.minutes.is_empty()
        });
        taken
    }

    /// Writes the closed minutes (every minute if `everything`) and whatever an earlier flush
    /// could not write. Without a sink, the rows are dropped. Returns how many rows were
    /// written.
    pub async fn flush(
        &self,
        sink: Option<&dyn UsageSink>,
        everything: bool,
    ) -> Result<usize, tenancy::UsageError> {
        let mut pending = self.pending.lock().await;
        let taken = self.take(everything);
        if pending.is_empty() {
            *pending = taken;
        } else {
            // Rows kept from a failed flush: merge, so each (app, minute) goes out once.
            let mut index: HashMap<(AppId, i64), usize> = pending
                .iter()
                .enumerate()
                .map(|(at, row)| ((row.app.clone(), row.minute), at))
                .collect();
            for row in taken {
                match index.get(&(row.app.clone(), row.minute)) {
                    Some(&at) => pending[at].absorb(&row),
                    None => {
                        index.insert((row.app.clone(), row.minute), pending.len());
                        pending.push(row);
                    }
                }
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        let Some(sink) = sink else {
            pending.clear();
            return Ok(0);
        };
        sink.record(&pending).await?;
        let written = pending.len();
        pending.clear();
        Ok(written)
    }

    /// The shutdown flush: every minute, including the current one; the periodic flush stops.
    pub async fn flush_at_shutdown(
        &self,
        sink: Option<&dyn UsageSink>,
    ) -> Result<usize, tenancy::UsageError> {
        self.closed.store(true, Ordering::Release);
        self.flush(sink, true).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicI64};

    use async_trait::async_trait;
    use tenancy::{MemoryUsageSink, UsageError};

    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    /// A meter whose minute the test sets.
    fn meter_at(start: i64) -> (Meter, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(start));
        let clock = now.clone();
        (Meter::with_clock(move || clock.load(Ordering::SeqCst)), now)
    }

    /// Fails its first `record`, then stores like the memory sink.
    #[derive(Default)]
    struct FailsOnce {
        failed: AtomicBool,
        inner: MemoryUsageSink,
    }

    #[async_trait]
    impl UsageSink for FailsOnce {
        async fn record(&self, rows: &[UsageMinute]) -> Result<(), UsageError> {
            if !self.failed.swap(true, Ordering::SeqCst) {
                return Err(UsageError("database down".into()));
            }
            self.inner.record(rows).await
        }
    }

    fn row(app_id: &str, minute: i64, counts: [u64; 5]) -> UsageMinute {
        let [peak, opened, published, delivered, bytes] = counts;
        UsageMinute {
            app: app(app_id),
            minute,
            peak_connections: peak,
            connections_opened: opened,
            messages_published: published,
            messages_delivered: delivered,
            bytes_out: bytes,
        }
    }

    #[tokio::test]
    async fn counts_by_app_and_minute_and_flushes_only_closed_minutes() {
        let (meter, now) = meter_at(100);
        let sink = MemoryUsageSink::default();
        let (a, b) = (app("a"), app("b"));
        meter.connection_opened(&a);
        meter.connection_opened(&a);
        meter.connection_opened(&b);
        meter.published(&a, 3);
        meter.delivered(&a, 2, 10);
        meter.connection_closed(&a);
        assert_eq!(meter.flush(Some(&sink), false).await.unwrap(), 0);

        now.store(101, Ordering::SeqCst);
        meter.delivered(&a, 1, 7);
        assert_eq!(meter.flush(Some(&sink), false).await.unwrap(), 2);
        assert_eq!(
            sink.rows(),
            [
                row("a", 100, [2, 2, 3, 2, 20]),
                row("b", 100, [1, 1, 0, 0, 0])
            ]
        );

        // Minute 101 is written at shutdown, with the connections still open as its peak.
        meter.flush_at_shutdown(Some(&sink)).await.unwrap();
        assert!(meter.is_closed());
        assert_eq!(
            sink.rows(),
            [
                row("a", 100, [2, 2, 3, 2, 20]),
                row("a", 101, [1, 0, 0, 1, 7]),
                row("b", 100, [1, 1, 0, 0, 0]),
                row("b", 101, [1, 0, 0, 0, 0]),
            ]
        );
    }

    #[tokio::test]
    async fn flushing_twice_does_not_count_twice() {
        let (meter, now) = meter_at(5);
        let sink = MemoryUsageSink::default();
        meter.published(&app("a"), 4);
        now.store(6, Ordering::SeqCst);
        assert_eq!(meter.flush(Some(&sink), false).await.unwrap(), 1);
        assert_eq!(meter.flush(Some(&sink), false).await.unwrap(), 0);
        assert_eq!(meter.flush(Some(&sink), true).await.unwrap(), 0);
        assert_eq!(sink.rows(), [row("a", 5, [0, 0, 4, 0, 0])]);
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_with_what_came_since_and_nothing_is_lost() {
        let (meter, now) = meter_at(10);
        let sink = FailsOnce::default();
        let a = app("a");
        meter.published(&a, 1);
        meter.delivered(&a, 5, 2);
        now.store(11, Ordering::SeqCst);
        assert!(meter.flush(Some(&sink), false).await.is_err());
        assert!(sink.inner.rows().is_empty());

        // More of the same minute (a clock stepping back) and of a new one meanwhile.
        now.store(10, Ordering::SeqCst);
        meter.published(&a, 2);
        now.store(12, Ordering::SeqCst);
        meter.published(&a, 7);
        now.store(13, Ordering::SeqCst);
        assert_eq!(meter.flush(Some(&sink), false).await.unwrap(), 2);
        assert_eq!(meter.flush(Some(&sink), false).await.unwrap(), 0);
        assert_eq!(
            sink.inner.rows(),
            [
                row("a", 10, [0, 0, 3, 5, 10]),
                row("a", 12, [0, 0, 7, 0, 0])
            ]
        );
    }

    #[tokio::test]
    async fn an_idle_app_is_forgotten_once_flushed() {
        let (meter, now) = meter_at(1);
        let a = app("a");
        meter.connection_opened(&a);
        meter.connection_closed(&a);
        now.store(2, Ordering::SeqCst);
        meter
            .flush(Some(&MemoryUsageSink::default()), false)
            .await
            .unwrap();
        assert!(meter.apps.lock().unwrap().is_empty());
        assert_eq!(meter.concurrent(&a), 0);
    }

    #[tokio::test]
    async fn the_peak_is_the_clusters_count_and_a_quiet_minute_is_sampled_once() {
        let (meter, now) = meter_at(10);
        let sink = MemoryUsageSink::default();
        let a = app("a");
        meter.connection_opened(&a);
        assert_eq!(
            meter.apps_to_sample(),
            std::slice::from_ref(&a),
            "no cluster count yet"
        );
        // The admission's count: four more connections on other nodes.
        meter.cluster_connections(&a, 5);
        assert_eq!(
            meter.apps_to_sample(),
            [],
            "this minute has a cluster count"
        );
        now.store(11, Ordering::SeqCst);
        assert_eq!(
            meter.apps_to_sample(),
            std::slice::from_ref(&a),
            "a new, quiet minute"
        );
        meter.cluster_connections(&a, 3);
        assert_eq!(meter.apps_to_sample(), []);
        meter.flush(Some(&sink), true).await.unwrap();
        assert_eq!(
            sink.rows(),
            [row("a", 10, [5, 1, 0, 0, 0]), row("a", 11, [3, 0, 0, 0, 0])]
        );
        meter.connection_closed(&a);
        assert_eq!(
            meter.apps_to_sample(),
            [],
            "no connections here, nothing to sample"
        );
    }
}
