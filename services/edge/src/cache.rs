//! Cache channels (`cache-`, `private-cache-`, `private-encrypted-cache-`, `presence-cache-`):
//! the last event published through the HTTP API on each, per app, for up to 30 minutes.
//! A new subscriber gets it right after `subscription_succeeded`, or `pusher:cache_miss` when
//! there is none. Client events are not cached, as on Pusher.
//!
//! The cache is this node's: with several edges, an event is cached by the node whose API
//! received it (as the broker grows a cluster, this moves next to it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use protocol::names::{AppId, ChannelName};

/// How long a cached event lives (Pusher: "up to 30 minutes").
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);
/// After a `cache_miss` webhook for a channel, further misses stay quiet this long unless an
/// event is cached meanwhile (Pusher de-duplicates misses of concurrent subscribers).
pub const MISS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Expired entries are swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Key = (AppId, ChannelName);

/// Whether the channel's name makes it a cache channel.
pub fn is_cache_channel(channel: &ChannelName) -> bool {
    let name = channel.as_str();
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// The last event of a cache channel.
#[derive(Debug, Clone)]
struct Cached {
    /// The frame subscribers received, sent again as is.
    frame: ByteString,
    /// The event's `data`, for `info=cache`.
    data: String,
    stored_at: Instant,
}

#[derive(Default)]
struct State {
    events: HashMap<Key, Cached>,
    /// When a `cache_miss` webhook was last reported for a channel.
    misses: HashMap<Key, Instant>,
    last_sweep: Option<Instant>,
}

/// What a subscriber of a cache channel gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The cached event's frame.
    Hit(ByteString),
    /// Nothing cached; `report` says whether to send the `cache_miss` webhook (the first miss
    /// in a while).
    Miss { report: bool },
}

#[derive(Default)]
pub struct ChannelCache {
    state: Mutex<State>,
}

impl ChannelCache {
    /// Remembers an event published to a cache channel; other channels are ignored.
    pub fn store(&self, app: &AppId, channel: &ChannelName, data: &str, frame: &str) {
        if !is_cache_channel(channel) {
            return;
        }
        self.store_at(app, channel, data, frame, Instant::now());
    }

    fn store_at(&self, app: &AppId, channel: &ChannelName, data: &str, frame: &str, now: Instant) {
        let mut state = self.state.lock().expect("cache lock poisoned");
        let key = (app.clone(), channel.clone());
        state.misses.remove(&key);
        state.events.insert(
            key,
            Cached {
                frame: ByteString::from(frame),
                data: data.to_owned(),
                stored_at: now,
            },
        );
        sweep(&mut state, now);
    }

    /// What a new subscriber of the channel gets; `None` for a channel that is not a cache
    /// channel.
    pub fn replay(&self, app: &AppId, channel: &ChannelName) -> Option<Replay> {
        if !is_cache_channel(channel) {
            return None;
        }
        Some(self.replay_at(app, channel, Instant::now()))
    }

    fn replay_at(&self, app: &AppId, channel: &ChannelName, now: Instant) -> Replay {
        let mut state = self.state.lock().expect("cache lock poisoned");
        let key = (app.clone(), channel.clone());
        match state.events.get(&key) {
            Some(cached) if now.duration_since(cached.stored_at) < CACHE_TTL => {
                return Replay::Hit(cached.frame.clone());
            }
            Some(_) => {
                state.events.remove(&key);
            }
            None => {}
        }
        let report = state
            .misses
            .get(&key)
            .is_none_or(|at| now.duration_since(*at) >= MISS_REPORT_INTERVAL);
        if report {
            state.misses.insert(key, now);
        }
        sweep(&mut state, now);
        Replay::Miss { report }
    }

    /// The cached event's data and its remaining seconds, for `info=cache`.
    pub fn peek(&self, app: &AppId, channel: &ChannelName) -> Option<(String, u64)> {
        self.peek_at(app, channel, Instant::now())
    }

    fn peek_at(&self, app: &AppId, channel: &ChannelName, now: Instant) -> Option<(String, u64)> {
        let state = self.state.lock().expect("cache lock poisoned");
        let cached = state.events.get(&(app.clone(), channel.clone()))?;
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
    state
        .events
        .retain(|_, cached| now.duration_since(cached.stored_at) < CACHE_TTL);
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

    #[test]
    fn the_last_event_is_replayed_until_it_expires() {
        let cache = ChannelCache::default();
        let start = Instant::now();
        let c = channel("cache-a");
        assert_eq!(cache.replay(&app(), &channel("a")), None);
        cache.store(&app(), &channel("a"), "d", "f");
        assert!(cache.peek(&app(), &channel("a")).is_none());

        cache.store_at(&app(), &c, "d1", "f1", start);
        cache.store_at(&app(), &c, "d2", "f2", start);
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
        let cache = ChannelCache::default();
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
        cache.store_at(&app(), &c, "d", "f", later);
        assert_eq!(cache.replay_at(&app(), &c, later), Replay::Hit("f".into()));
    }
}
