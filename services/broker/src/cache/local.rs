//! `LocalCache`: the cache channels' last events in this process.
//!
//! Memory is bounded like history's: per app by its plan's `history_bytes` and by the node's
//! channels-per-app cap, and for the node by its history byte budget; past a bound the
//! oldest cached event goes first (the app's own; for the node's bound, the largest app's).
//! Miss reports are bounded too (past `MAX_MISS_REPORTS`, misses go unreported).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytestring::ByteString;
use protocol::names::{AppId, ChannelName};

use super::{CacheChannels, CacheUsage, Replay, is_cache_channel};
use crate::{BrokerError, Clock};

/// How long a cached event lives (Pusher: "up to 30 minutes").
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);
/// After a `cache_miss` webhook for a channel, further misses stay quiet this long unless an
/// event is cached meanwhile (Pusher de-duplicates misses of concurrent subscribers).
pub const MISS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Expired entries are swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Channels whose last miss is remembered (for de-duplicating `cache_miss` webhooks).
const MAX_MISS_REPORTS: usize = 100_000;
/// What a cached event is taken to cost beyond its frame and data.
const ENTRY_OVERHEAD: usize = 64;

type Key = (AppId, ChannelName);

/// The last event of a cache channel.
#[derive(Debug, Clone)]
struct Cached {
    /// The frame subscribers received, sent again as is.
    frame: ByteString,
    /// The event's `data`, for `info=cache`.
    data: String,
    stored_at: Instant,
}

impl Cached {
    fn bytes(&self) -> usize {
        self.frame.len() + self.data.len() + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct State {
    apps: HashMap<AppId, AppCache>,
    /// Bytes of every app's cached events.
    bytes: usize,
    evictions: u64,
    /// When a `cache_miss` webhook was last reported for a channel.
    misses: HashMap<Key, Instant>,
    last_sweep: Option<Instant>,
}

#[derive(Default)]
struct AppCache {
    bytes: usize,
    events: HashMap<ChannelName, Cached>,
}

impl State {
    fn get(&self, app: &AppId, channel: &ChannelName) -> Option<&Cached> {
        self.apps.get(app)?.events.get(channel)
    }

    fn insert(&mut self, app: &AppId, channel: &ChannelName, cached: Cached) {
        let bytes = cached.bytes();
        let of_app = self.apps.entry(app.clone()).or_default();
        of_app.bytes += bytes;
        self.bytes += bytes;
        if let Some(old) = of_app.events.insert(channel.clone(), cached) {
            of_app.bytes -= old.bytes();
            self.bytes -= old.bytes();
        }
    }

    fn remove(&mut self, app: &AppId, channel: &ChannelName) {
        let Some(of_app) = self.apps.get_mut(app) else {
            return;
        };
        if let Some(old) = of_app.events.remove(channel) {
            of_app.bytes -= old.bytes();
            self.bytes -= old.bytes();
        }
        if of_app.events.is_empty() {
            self.apps.remove(app);
        }
    }

    /// Drops the app's oldest cached event.
    fn evict_oldest(&mut self, app: &AppId) {
        let oldest = self.apps.get(app).and_then(|of_app| {
            of_app
                .events
                .iter()
                .min_by_key(|(_, cached)| cached.stored_at)
                .map(|(channel, _)| channel.clone())
        });
        if let Some(channel) = oldest {
            self.remove(app, &channel);
            self.evictions += 1;
        }
    }

    /// Evicts until the app and the node are within their bounds.
    fn enforce(&mut self, app: &AppId, limits: CacheLimits, app_max_bytes: usize) {
        while let Some(of_app) = self.apps.get(app)
            && (of_app.bytes > app_max_bytes || of_app.events.len() > limits.max_channels_per_app)
        {
            self.evict_oldest(app);
        }
        while self.bytes > limits.max_bytes {
            let largest = self
                .apps
                .iter()
                .max_by_key(|(_, of_app)| of_app.bytes)
                .map(|(app, _)| app.clone());
            let Some(largest) = largest else { break };
            self.evict_oldest(&largest);
        }
    }
}

/// The node's bounds on the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_bytes: usize,
    pub max_channels_per_app: usize,
}

pub struct LocalCache {
    limits: CacheLimits,
    clock: Clock,
    state: Mutex<State>,
}

#[async_trait]
impl CacheChannels for LocalCache {
    async fn store(
        &self,
        app: &AppId,
        channel: &ChannelName,
        data: &str,
        frame: &str,
        app_max_bytes: usize,
    ) -> Result<(), BrokerError> {
        if is_cache_channel(channel) {
            let now = self.clock.now();
            self.store_at(app, channel, data, frame, app_max_bytes, now);
        }
        Ok(())
    }

    async fn replay(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<Replay>, BrokerError> {
        if !is_cache_channel(channel) {
            return Ok(None);
        }
        Ok(Some(self.replay_at(app, channel, self.clock.now())))
    }

    async fn peek(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<(String, u64)>, BrokerError> {
        Ok(self.peek_at(app, channel, self.clock.now()))
    }

    fn usage(&self) -> CacheUsage {
        let state = self.state.lock().expect("cache lock poisoned");
        CacheUsage {
            bytes: state.bytes as u64,
            evictions: state.evictions,
            channels: state
                .apps
                .values()
                .map(|of_app| of_app.events.len() as u64)
                .sum(),
        }
    }
}

impl LocalCache {
    pub fn new(limits: CacheLimits, clock: Clock) -> Self {
        Self {
            limits,
            clock,
            state: Mutex::default(),
        }
    }

    fn store_at(
        &self,
        app: &AppId,
        channel: &ChannelName,
        data: &str,
        frame: &str,
        app_max_bytes: usize,
        now: Instant,
    ) {
        let mut state = self.state.lock().expect("cache lock poisoned");
        state.misses.remove(&(app.clone(), channel.clone()));
        let cached = Cached {
            frame: ByteString::from(frame),
            data: data.to_owned(),
            stored_at: now,
        };
        state.insert(app, channel, cached);
        state.enforce(app, self.limits, app_max_bytes);
        sweep(&mut state, now);
    }

    fn replay_at(&self, app: &AppId, channel: &ChannelName, now: Instant) -> Replay {
        let mut state = self.state.lock().expect("cache lock poisoned");
        match state.get(app, channel) {
            Some(cached) if now.duration_since(cached.stored_at) < CACHE_TTL => {
                return Replay::Hit(cached.frame.clone());
            }
            Some(_) => state.remove(app, channel),
            None => {}
        }
        let key = (app.clone(), channel.clone());
        let report = match state.misses.get(&key) {
            Some(at) => now.duration_since(*at) >= MISS_REPORT_INTERVAL,
            // Subscribers choose the names: past the bound, a miss is not reported at all.
            None => state.misses.len() < MAX_MISS_REPORTS,
        };
        if report {
            state.misses.insert(key, now);
        }
        sweep(&mut state, now);
        Replay::Miss { report }
    }

    fn peek_at(&self, app: &AppId, channel: &ChannelName, now: Instant) -> Option<(String, u64)> {
        let state = self.state.lock().expect("cache lock poisoned");
        let cached = state.get(app, channel)?;
        let age = now.duration_since(cached.stored_at);
        let left = CACHE_TTL.checked_sub(age).filter(|left| !left.is_zero())?;
        Some((cached.data.clone(), left.as_secs_f64().ceil() as u64))
    }
}

/// Drops expired events and old miss reports, at most once per `SWEEP_EVERY`.
fn sweep(state: &mut State, now: Instant) {
    if state
        .last_sweep
        .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
    {
        return;
    }
    state.last_sweep = Some(now);
    let mut freed = 0;
    for of_app in state.apps.values_mut() {
        of_app.events.retain(|_, cached| {
            let keep = now.duration_since(cached.stored_at) < CACHE_TTL;
            if !keep {
                of_app.bytes -= cached.bytes();
                freed += cached.bytes();
            }
            keep
        });
    }
    state.bytes -= freed;
    state.apps.retain(|_, of_app| !of_app.events.is_empty());
    state
        .misses
        .retain(|_, at| now.duration_since(*at) < MISS_REPORT_INTERVAL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppId {
        AppId::parse("1").unwrap()
    }

    const UNBOUNDED: usize = usize::MAX;

    fn cache() -> LocalCache {
        LocalCache::new(
            CacheLimits {
                max_bytes: UNBOUNDED,
                max_channels_per_app: 10_000,
            },
            Clock::manual(),
        )
    }

    #[test]
    fn cached_events_stay_within_the_app_and_node_bounds_oldest_first() {
        let cache = LocalCache::new(
            CacheLimits {
                max_bytes: 10 * (10 + ENTRY_OVERHEAD),
                max_channels_per_app: 3,
            },
            Clock::manual(),
        );
        let start = Instant::now();
        let at = |n: u64| start + Duration::from_millis(n);
        let (c1, c2, c3, c4) = (
            channel("cache-1"),
            channel("cache-2"),
            channel("cache-3"),
            channel("cache-4"),
        );
        for (n, c) in [&c1, &c2, &c3, &c4].into_iter().enumerate() {
            cache.store_at(&app(), c, "d", "123456789", UNBOUNDED, at(n as u64));
        }
        assert_eq!(cache.usage().channels, 3, "at most 3 channels per app");
        assert!(matches!(
            cache.replay_at(&app(), &c1, at(9)),
            Replay::Miss { .. }
        ));
        assert_eq!(
            cache.replay_at(&app(), &c4, at(9)),
            Replay::Hit("123456789".into())
        );

        let budget = 2 * (10 + ENTRY_OVERHEAD);
        cache.store_at(&app(), &c1, "d", "123456789", budget, at(10));
        assert_eq!(cache.usage().channels, 2, "the app's bytes hold two");
        assert!(matches!(
            cache.replay_at(&app(), &c3, at(11)),
            Replay::Miss { .. }
        ));
        assert_eq!(cache.usage().evictions, 3);

        let other = AppId::parse("2").unwrap();
        for n in 0..9 {
            let c = channel(&format!("cache-other-{n}"));
            cache.store_at(&other, &c, "d", "123456789", UNBOUNDED, at(20 + n));
        }
        let usage = cache.usage();
        assert!(
            usage.bytes <= 10 * (10 + ENTRY_OVERHEAD) as u64,
            "{usage:?}"
        );
        assert!(
            matches!(
                cache.replay_at(&other, &channel("cache-other-0"), at(40)),
                Replay::Miss { .. }
            ),
            "the node's bound takes from the largest app"
        );
        assert_eq!(
            cache.replay_at(&app(), &c1, at(40)),
            Replay::Hit("123456789".into())
        );
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[test]
    fn cache_channels_are_named_by_their_prefixes() {
        for name in [
            "cache-a",
            "private-cache-a",
            "private-encrypted-cache-a",
            "presence-cache-a",
        ] {
            assert!(is_cache_channel(&channel(name)), "{name}");
        }
        for name in [
            "a",
            "cachex",
            "private-a",
            "presence-a-cache-",
            "private-encrypted-a",
        ] {
            assert!(!is_cache_channel(&channel(name)), "{name}");
        }
    }

    #[tokio::test]
    async fn the_last_event_is_replayed_until_it_expires() {
        let cache = cache();
        let start = Instant::now();
        let c = channel("cache-a");
        assert_eq!(cache.replay(&app(), &channel("a")).await.unwrap(), None);
        cache
            .store(&app(), &channel("a"), "d", "f", UNBOUNDED)
            .await
            .unwrap();
        assert!(cache.peek(&app(), &channel("a")).await.unwrap().is_none());

        cache.store_at(&app(), &c, "d1", "f1", UNBOUNDED, start);
        cache.store_at(&app(), &c, "d2", "f2", UNBOUNDED, start);
        assert_eq!(cache.replay_at(&app(), &c, start), Replay::Hit("f2".into()));
        assert_eq!(cache.peek_at(&app(), &c, start), Some(("d2".into(), 1800)));
        let later = start + Duration::from_millis(60_500);
        assert_eq!(cache.peek_at(&app(), &c, later), Some(("d2".into(), 1740)));
        // Another app's channel of the same name has nothing cached.
        let other = AppId::parse("2").unwrap();
        assert_eq!(
            cache.replay_at(&other, &c, start),
            Replay::Miss { report: true }
        );

        let expired = start + CACHE_TTL;
        assert_eq!(cache.peek_at(&app(), &c, expired), None);
        assert_eq!(
            cache.replay_at(&app(), &c, expired),
            Replay::Miss { report: true }
        );
    }

    #[test]
    fn misses_are_reported_once_until_an_event_arrives_or_time_passes() {
        let cache = cache();
        let start = Instant::now();
        let c = channel("private-cache-a");
        assert_eq!(
            cache.replay_at(&app(), &c, start),
            Replay::Miss { report: true }
        );
        assert_eq!(
            cache.replay_at(&app(), &c, start),
            Replay::Miss { report: false }
        );
        let later = start + MISS_REPORT_INTERVAL;
        assert_eq!(
            cache.replay_at(&app(), &c, later),
            Replay::Miss { report: true }
        );
        cache.store_at(&app(), &c, "d", "f", UNBOUNDED, later);
        assert_eq!(cache.replay_at(&app(), &c, later), Replay::Hit("f".into()));
    }
}
