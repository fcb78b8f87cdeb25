//! Counts that span connections and, in a cluster, nodes: connection slots per app, messages
//! per app per UTC day, and the publish API's per-second allowance per app. Plans are the
//! edge's business: these traits take the ceiling or rate as an argument.
//!
//! The `Local*` implementations are exact on one node (each takes one short lock).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::names::AppId;

use crate::BrokerError;

pub const SECONDS_PER_DAY: u64 = 86_400;

/// Concurrent connections per app.
///
/// Exactness: `Local` is exact. A cluster implementation must be exact within a small bound
/// it documents (e.g. one atomic increment-if-below per acquire: exact; releases of a dead
/// node's slots come back within its heartbeat window).
#[async_trait]
pub trait ConnectionCounter: Send + Sync + 'static {
    /// Takes one of the app's slots unless it already holds `ceiling` (`None`: no ceiling).
    /// `Some(n)`: taken, and the app now holds `n` slots (cluster-wide for a cluster
    /// implementation, this one included, as counted by the same atomic step: usage metering
    /// takes it as the app's peak); the caller must `release` it exactly once. `None`: at the
    /// ceiling. Must be cancel-safe: a dropped call holds no slot.
    async fn acquire_counted(
        &self,
        app: &AppId,
        ceiling: Option<u64>,
    ) -> Result<Option<u64>, BrokerError>;

    /// `acquire_counted` without the count: `true` when taken.
    async fn acquire(&self, app: &AppId, ceiling: Option<u64>) -> Result<bool, BrokerError> {
        Ok(self.acquire_counted(app, ceiling).await?.is_some())
    }

    /// Gives back a slot taken by `acquire`. Not awaited (it runs when a connection ends,
    /// often in a `Drop`); a cluster implementation sends it in the background.
    fn release(&self, app: &AppId);

    /// The app's slots in use (cluster-wide for a cluster implementation): a snapshot, which
    /// may not yet show releases still in flight.
    async fn count(&self, app: &AppId) -> Result<u64, BrokerError>;
}

/// Messages per app per UTC day (each publish plus each delivery, as Pusher counts).
///
/// Exactness: `Local` is exact. `add` is called from fan-out once per publication and must
/// not wait: a cluster implementation adds in the background (batched), so `today` may lag
/// the other nodes' additions by its flush interval; the quota is exact within what the
/// cluster delivers in that interval.
#[async_trait]
pub trait MessageCounter: Send + Sync + 'static {
    /// Adds `messages` to the app's count for the UTC day of `now_unix_secs`.
    fn add(&self, app: &AppId, messages: u64, now_unix_secs: u64);

    /// The app's count for the UTC day of `now_unix_secs` (0 on a new day). A cluster
    /// implementation may answer from a copy refreshed in the background (within its flush
    /// interval); it must not lose additions.
    async fn today(&self, app: &AppId, now_unix_secs: u64) -> Result<u64, BrokerError>;
}

/// The publish API's requests per second per app.
///
/// Exactness: `Local` allows a burst of `per_second` then `per_second` a second (GCRA). A
/// cluster implementation keeps one allowance per app for the cluster, exact within what
/// concurrent requests on different nodes take in one round trip.
#[async_trait]
pub trait PublishRate: Send + Sync + 'static {
    /// Takes one request from the app's allowance of `per_second`; `false`: over the rate. A
    /// new `per_second` (plan change) applies at once.
    async fn take(&self, app: &AppId, per_second: u32) -> Result<bool, BrokerError>;
}

/// Connection slots in memory.
#[derive(Default)]
pub struct LocalConnections {
    counts: Mutex<HashMap<AppId, u64>>,
}

#[async_trait]
impl ConnectionCounter for LocalConnections {
    async fn acquire_counted(
        &self,
        app: &AppId,
        ceiling: Option<u64>,
    ) -> Result<Option<u64>, BrokerError> {
        let mut counts = self.counts.lock().expect("counter lock poisoned");
        let count = counts.entry(app.clone()).or_insert(0);
        if ceiling.is_some_and(|ceiling| *count >= ceiling) {
            if *count == 0 {
                counts.remove(app);
            }
            return Ok(None);
        }
        *count += 1;
        Ok(Some(*count))
    }

    fn release(&self, app: &AppId) {
        let mut counts = self.counts.lock().expect("counter lock poisoned");
        if let Some(count) = counts.get_mut(app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(app);
            }
        }
    }

    async fn count(&self, app: &AppId) -> Result<u64, BrokerError> {
        let counts = self.counts.lock().expect("counter lock poisoned");
        Ok(counts.get(app).copied().unwrap_or(0))
    }
}

/// Daily message counts in memory: one entry per app that sent or received today.
#[derive(Default)]
pub struct LocalMessages {
    counts: Mutex<HashMap<AppId, DailyCount>>,
}

#[derive(Debug, Clone, Copy)]
struct DailyCount {
    /// Days since the Unix epoch, UTC.
    day: u64,
    used: u64,
}

#[async_trait]
impl MessageCounter for LocalMessages {
    fn add(&self, app: &AppId, messages: u64, now_unix_secs: u64) {
        let today = now_unix_secs / SECONDS_PER_DAY;
        let mut counts = self.counts.lock().expect("counter lock poisoned");
        let count = counts.entry(app.clone()).or_insert(DailyCount {
            day: today,
            used: 0,
        });
        if count.day != today {
            *count = DailyCount {
                day: today,
                used: 0,
            };
        }
        count.used = count.used.saturating_add(messages);
    }

    async fn today(&self, app: &AppId, now_unix_secs: u64) -> Result<u64, BrokerError> {
        let today = now_unix_secs / SECONDS_PER_DAY;
        let counts = self.counts.lock().expect("counter lock poisoned");
        Ok(counts
            .get(app)
            .filter(|count| count.day == today)
            .map_or(0, |count| count.used))
    }
}

/// One `governor` limiter per app, replaced when the app's rate changes.
#[derive(Default)]
pub struct LocalPublishRates {
    limiters: Mutex<HashMap<AppId, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

#[async_trait]
impl PublishRate for LocalPublishRates {
    async fn take(&self, app: &AppId, per_second: u32) -> Result<bool, BrokerError> {
        let limiter = {
            let mut limiters = self.limiters.lock().expect("rate lock poisoned");
            let entry = limiters
                .entry(app.clone())
                .or_insert_with(|| (per_second, limiter(per_second)));
            if entry.0 != per_second {
                *entry = (per_second, limiter(per_second));
            }
            entry.1.clone()
        };
        Ok(limiter.check().is_ok())
    }
}

fn limiter(per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(rate)))
}
