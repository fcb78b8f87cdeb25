//! Login and sign-up rate limiting. Logins: one `governor` quota per account email and another
//! per client address, so neither guessing one account's password from many addresses nor
//! trying many accounts from one address gets far. Sign-ups: a quota per client address, so
//! no one makes accounts (each an argon2 hash and rows) by the thousand.
//!
//! An address is `ingress::client_address` (proxies only when trusted); IPv6 clients are
//! counted per /64, the block one subscriber usually holds, so rotating addresses in it
//! gains nothing. Every limiter forgets refilled keys past `RETAIN_RECENT_ABOVE`.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys longer than this are cut: a limiter key is memory held for a while, and no email is
/// longer than 254 characters.
const MAX_KEY_CHARS: usize = 320;
/// Past this many tracked keys, entries whose quota has fully refilled are dropped.
const RETAIN_RECENT_ABOVE: usize = 10_000;

pub struct LoginLimiter {
    by_email: DefaultKeyedRateLimiter<String>,
    by_ip: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LoginLimiter {
    pub fn new(quota: Quota) -> Self {
        Self {
            by_email: RateLimiter::keyed(quota),
            by_ip: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one login attempt for `email` from `ip`; on refusal, how long until the next
    /// attempt would be allowed. Every attempt counts, right or wrong, so a limited client
    /// learns nothing about the password by trying it.
    pub fn check(&self, email: &str, ip: &str) -> Result<(), Duration> {
        self.forget_idle_keys();
        let email_key: String = email
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_KEY_CHARS)
            .collect();
        let ip_key: String = ip.chars().take(MAX_KEY_CHARS).collect();
        // The IP first: a client over its IP quota does not also use up the account's.
        self.by_ip
            .check_key(&ip_key)
            .and_then(|()| self.by_email.check_key(&email_key))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn forget_idle_keys(&self) {
        for limiter in [&self.by_email, &self.by_ip] {
            if limiter.len() > RETAIN_RECENT_ABOVE {
                limiter.retain_recent();
            }
        }
    }
}

/// Sign-ups per client address.
pub struct SignupLimiter {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl SignupLimiter {
    pub fn new(quota: Quota) -> Self {
        Self {
            by_address: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one sign-up attempt from `address` (valid or not: a refused attempt still cost
    /// a request); on refusal, how long until the next would be allowed.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        if self.by_address.len() > RETAIN_RECENT_ABOVE {
            self.by_address.retain_recent();
        }
        self.by_address
            .check_key(&limit_key(address))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The key an address is limited under: itself for IPv4, its /64 for IPv6.
pub fn limit_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn three_a_minute() -> LoginLimiter {
        let three = NonZeroU32::new(3).unwrap();
        LoginLimiter::new(Quota::per_minute(three).allow_burst(three))
    }

    #[test]
    fn an_email_is_limited_whatever_its_case_and_from_any_ip() {
        let limiter = three_a_minute();
        assert!(limiter.check("ann@example.com", "10.0.0.1").is_ok());
        assert!(limiter.check("Ann@Example.com", "10.0.0.2").is_ok());
        assert!(limiter.check(" ANN@example.com ", "10.0.0.3").is_ok());
        let wait = limiter.check("ann@example.com", "10.0.0.4").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(limiter.check("bob@example.com", "10.0.0.4").is_ok());
    }

    #[test]
    fn sign_ups_are_limited_per_address_and_ipv6_per_64() {
        let two = NonZeroU32::new(2).unwrap();
        let limiter = SignupLimiter::new(Quota::per_hour(two).allow_burst(two));
        let v4: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(limiter.check(v4).is_ok() && limiter.check(v4).is_ok());
        assert!(limiter.check(v4).is_err());
        assert!(limiter.check("203.0.113.2".parse().unwrap()).is_ok());
        for host in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"] {
            assert!(limiter.check(host.parse().unwrap()).is_ok());
        }
        assert!(
            limiter.check("2001:db8:1:2::77".parse().unwrap()).is_err(),
            "the same /64"
        );
        assert!(limiter.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn an_ip_is_limited_across_emails() {
        let limiter = three_a_minute();
        for email in ["a@x.com", "b@x.com", "c@x.com"] {
            assert!(limiter.check(email, "10.0.0.1").is_ok());
        }
        assert!(limiter.check("d@x.com", "10.0.0.1").is_err());
        assert!(limiter.check("d@x.com", "10.0.0.2").is_ok());
    }
}
