//! How fast HTTP-carrier sessions (ours and pusher-js's xhr ones) may be created: one
//! `governor` quota per client address and one per app. A session is a protocol connection
//! that a single anonymous GET creates, so without these a flood of polls would fill the
//! edge's memory (and, before sessions counted only once used, an app's connection quota).
//!
//! Keys are bounded: an address is its IPv4 address or its IPv6 /64 (one host has a whole
//! /64 to rotate through), and past `MAX_TRACKED` keys the fully refilled ones are dropped;
//! if that is not enough (a flood from that many addresses), new sessions wait.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use protocol::names::AppId;

/// Past this many tracked keys, keys whose quota has fully refilled are forgotten.
const MAX_TRACKED: usize = 100_000;
/// What a refused client is told to wait when the key table itself is full.
const TABLE_FULL_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct CreationLimiter {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_app: Option<DefaultKeyedRateLimiter<AppId>>,
    clock: DefaultClock,
}

impl CreationLimiter {
    /// Sessions per minute per client address and per app; 0 turns that limit off.
    pub(crate) fn new(per_address_per_minute: u32, per_app_per_minute: u32) -> Self {
        Self {
            by_address: keyed(per_address_per_minute),
            by_app: keyed(per_app_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Counts a session created from `address` (unknown: not limited by address); on
    /// refusal, how long until the next one would be allowed.
    pub(crate) fn check_address(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        let (Some(limiter), Some(address)) = (&self.by_address, address) else {
            return Ok(());
        };
        self.check(limiter, &address_key(address))
    }

    /// Counts a session created for `app`.
    pub(crate) fn check_app(&self, app: &AppId) -> Result<(), Duration> {
        match &self.by_app {
            Some(limiter) => self.check(limiter, app),
            None => Ok(()),
        }
    }

    fn check<K>(&self, limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), Duration>
    where
        K: Clone + Eq + std::hash::Hash,
    {
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
            if limiter.len() > MAX_TRACKED {
                return Err(TABLE_FULL_WAIT);
            }
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

fn keyed<K: Clone + Eq + std::hash::Hash>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute)
        .map(quota)
        .map(RateLimiter::keyed)
}

/// `per_minute` sessions a minute, all of them at once if they come together.
fn quota(per_minute: NonZeroU32) -> Quota {
    Quota::per_minute(per_minute).allow_burst(per_minute)
}

/// The address a limit applies to: IPv4 as is, IPv6 by its /64 (IPv4-mapped as IPv4).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// The `Retry-After` value for a wait: whole seconds, at least one.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_address_is_limited_and_another_is_not() {
        let limiter = CreationLimiter::new(3, 0);
        for _ in 0..3 {
            assert!(limiter.check_address(ip("10.0.0.1")).is_ok());
        }
        let wait = limiter.check_address(ip("10.0.0.1")).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(limiter.check_address(ip("10.0.0.2")).is_ok());
        assert!(limiter.check_address(None).is_ok());
    }

    #[test]
    fn an_ipv6_host_cannot_rotate_through_its_64() {
        let limiter = CreationLimiter::new(2, 0);
        assert!(limiter.check_address(ip("2001:db8::1")).is_ok());
        assert!(limiter.check_address(ip("2001:db8::ffff:2")).is_ok());
        assert!(limiter.check_address(ip("2001:db8::3:4:5:6")).is_err());
        assert!(limiter.check_address(ip("2001:db8:0:1::1")).is_ok());
        assert_eq!(
            address_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_app_is_limited_across_addresses_and_zero_means_no_limit() {
        let limiter = CreationLimiter::new(0, 2);
        let app = AppId::parse("app").unwrap();
        assert!(limiter.check_app(&app).is_ok());
        assert!(limiter.check_app(&app).is_ok());
        assert!(limiter.check_app(&app).is_err());
        assert!(limiter.check_app(&AppId::parse("other").unwrap()).is_ok());
        for _ in 0..100 {
            assert!(limiter.check_address(ip("10.0.0.1")).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_500)), 3);
    }
}
