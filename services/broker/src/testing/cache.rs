//! Conformance of `CacheChannels`. Each check uses app ids of its own.

use std::time::Duration;

use protocol::names::{AppId, ChannelName};

use crate::Clock;
use crate::cache::{CACHE_TTL, CacheChannels, CacheLimits, MISS_REPORT_INTERVAL, Replay};

fn app(id: &str) -> AppId {
    AppId::parse(id).expect("valid app id")
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

const UNBOUNDED: usize = usize::MAX;

/// Runs every check against caches made by `make`, which must bound the cache by the given
/// limits and read the time from the given clock (a manual one, moved by the checks).
pub async fn cache_conformance<C: CacheChannels>(make: impl Fn(CacheLimits, Clock) -> C) {
    let roomy = CacheLimits {
        max_bytes: UNBOUNDED,
        max_channels_per_app: 10_000,
    };
    the_last_event_is_replayed_until_it_expires(&make, roomy).await;
    misses_are_reported_once_in_a_while(&make, roomy).await;
    an_app_stays_within_its_bytes_oldest_first(&make, roomy).await;
}

async fn the_last_event_is_replayed_until_it_expires<C: CacheChannels>(
    make: &impl Fn(CacheLimits, Clock) -> C,
    limits: CacheLimits,
) {
    let clock = Clock::manual();
    let cache = make(limits, clock.clone());
    let (a, c, plain) = (app("cache-replay"), channel("cache-a"), channel("a"));
    assert_eq!(cache.replay(&a, &plain).await.unwrap(), None);
    cache.store(&a, &plain, "d", "f", UNBOUNDED).await.unwrap();
    assert_eq!(
        cache.peek(&a, &plain).await.unwrap(),
        None,
        "not a cache channel"
    );

    cache.store(&a, &c, "d1", "f1", UNBOUNDED).await.unwrap();
    cache.store(&a, &c, "d2", "f2", UNBOUNDED).await.unwrap();
    assert_eq!(
        cache.replay(&a, &c).await.unwrap(),
        Some(Replay::Hit("f2".into())),
        "the last event wins"
    );
    assert_eq!(cache.peek(&a, &c).await.unwrap(), Some(("d2".into(), 1800)));
    clock.advance(Duration::from_millis(60_500));
    assert_eq!(cache.peek(&a, &c).await.unwrap(), Some(("d2".into(), 1740)));
    let other = app("cache-replay-other");
    assert!(
        matches!(
            cache.replay(&other, &c).await.unwrap(),
            Some(Replay::Miss { .. })
        ),
        "another app's channel of that name has nothing cached"
    );
    clock.advance(CACHE_TTL);
    assert_eq!(cache.peek(&a, &c).await.unwrap(), None, "expired");
    assert_eq!(
        cache.replay(&a, &c).await.unwrap(),
        Some(Replay::Miss { report: true })
    );
}

async fn misses_are_reported_once_in_a_while<C: CacheChannels>(
    make: &impl Fn(CacheLimits, Clock) -> C,
    limits: CacheLimits,
) {
    let clock = Clock::manual();
    let cache = make(limits, clock.clone());
    let (a, c) = (app("cache-misses"), channel("private-cache-a"));
    let miss = |report| Some(Replay::Miss { report });
    assert_eq!(cache.replay(&a, &c).await.unwrap(), miss(true));
    assert_eq!(cache.replay(&a, &c).await.unwrap(), miss(false));
    clock.advance(MISS_REPORT_INTERVAL);
    assert_eq!(cache.replay(&a, &c).await.unwrap(), miss(true));
    cache.store(&a, &c, "d", "f", UNBOUNDED).await.unwrap();
    assert_eq!(
        cache.replay(&a, &c).await.unwrap(),
        Some(Replay::Hit("f".into()))
    );
}

async fn an_app_stays_within_its_bytes_oldest_first<C: CacheChannels>(
    make: &impl Fn(CacheLimits, Clock) -> C,
    limits: CacheLimits,
) {
    let clock = Clock::manual();
    let cache = make(limits, clock.clone());
    let a = app("cache-bytes");
    let frame = "x".repeat(1000);
    // Room for about two events of 1 KB each, whatever a store counts beyond its bytes.
    let budget = 2 * 1000 + 2 * 1000 / 2;
    for n in 0..3 {
        let c = channel(&format!("cache-{n}"));
        cache.store(&a, &c, "", &frame, budget).await.unwrap();
        clock.advance(Duration::from_millis(1));
    }
    assert!(
        matches!(
            cache.replay(&a, &channel("cache-0")).await.unwrap(),
            Some(Replay::Miss { .. })
        ),
        "the oldest event went first"
    );
    assert_eq!(
        cache.replay(&a, &channel("cache-2")).await.unwrap(),
        Some(Replay::Hit(frame.clone().into()))
    );
}
