//! How fast one app's new connections are admitted on this node: a `governor` bucket per
//! app (GCRA: a burst of the rate, then the rate), taken before the app's connection slot, so
//! a refused connection never touches the app's connection count, and an app that connects in
//! a storm empties only its own bucket.
//!
//! Keys are app ids of apps the catalog found, so the catalog bounds them; idle keys (a
//! bucket that has refilled is indistinguishable from a new one) are still dropped every
//! `PRUNE_EVERY` checks, so the table holds about the apps that connected in the last second.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use protocol::names::AppId;

/// Checks between two prunes of the refilled buckets.
const PRUNE_EVERY: u64 = 1024;

type AppLimiter<C> =
    RateLimiter<AppId, DashMapStateStore<AppId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One bucket per app, `per_second` tokens refilled each second, as many held at most.
pub(crate) struct ConnectRate<C: Clock = DefaultClock> {
    /// `None`: the limit is off.
    limiter: Option<AppLimiter<C>>,
    checks: AtomicU64,
}

impl ConnectRate {
    /// `per_second` new connections per app a second, with a burst of as many; 0 turns it off.
    pub(crate) fn new(per_second: u32) -> Self {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock> ConnectRate<C> {
    /// As `new`, on `clock` (tests move a fake one by hand).
    pub(crate) fn with_clock(per_second: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let quota = Quota::per_second(rate).allow_burst(rate);
            RateLimiter::dashmap_with_clock(quota, clock)
        });
        Self {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one token from the app's bucket; `false`: the bucket is empty, refuse.
    pub(crate) fn admit(&self, app: &AppId) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            Self::prune(limiter);
        }
        limiter.check_key(app).is_ok()
    }

    /// Buckets tracked now (apps that connected recently).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::len)
    }

    fn prune(limiter: &AppLimiter<C>) {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    #[test]
    fn an_app_past_its_burst_is_refused_and_another_app_is_not() {
        let clock = FakeRelativeClock::default();
        let rate = ConnectRate::with_clock(5, clock.clone());
        for n in 0..5 {
            assert!(rate.admit(&app("a")), "connection {n} is within the burst");
        }
        assert!(
            !rate.admit(&app("a")),
            "the sixth at the same instant is refused"
        );
        for n in 0..5 {
            assert!(
                rate.admit(&app("b")),
                "b's connection {n} has its own bucket"
            );
        }
        assert!(!rate.admit(&app("b")));
        // One token comes back every fifth of a second, for each app alone.
        clock.advance(Duration::from_millis(200));
        assert!(rate.admit(&app("a")));
        assert!(!rate.admit(&app("a")));
        assert!(rate.admit(&app("b")));
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let rate = ConnectRate::with_clock(0, FakeRelativeClock::default());
        assert!((0..10_000).all(|_| rate.admit(&app("a"))));
        assert_eq!(rate.tracked(), 0);
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let rate = ConnectRate::with_clock(5, clock.clone());
        for n in 0..100 {
            assert!(rate.admit(&app(&format!("app-{n}"))));
        }
        assert_eq!(rate.tracked(), 100);
        // A second later every bucket is full again, so the next prune drops all but the one
        // checked after it.
        clock.advance(Duration::from_secs(1));
        for _ in 0..PRUNE_EVERY {
            clock.advance(Duration::from_millis(200));
            assert!(rate.admit(&app("steady")));
        }
        assert_eq!(
            rate.tracked(),
            1,
            "only the app still connecting is tracked"
        );
    }
}
