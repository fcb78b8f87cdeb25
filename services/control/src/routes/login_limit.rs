//! Login and sign-up rate limiting. Logins: one `governor` quota per account email and another
//! per client address, so neither guessing one account's password from many addresses nor
//! trying many accounts from one address gets far. Sign-ups: a quota per client address, so
//! no one makes accounts (each an argon2 hash and rows) by the thousand.
//!
//! An address is `ingress::client_address` (proxies only when trusted); IPv6 clients are
//! counted per /64, the block one subscriber usually holds, so rotating addresses in it
//! gains nothing. Every limiter forgets refilled keys past `RETAIN_RECENT_ABOVE` and tracks at
//! most `MAX_TRACKED_KEYS`.

use std::net::IpAddr;
use std::time::Duration;

use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys longer than this are cut: a limiter key is memory held for a while, and no email is
/// longer than 254 characters.
const MAX_KEY_CHARS: usize = 320;
/// Past this many tracked keys, entries whose quota has fully refilled are dropped (at most
/// once per `SWEEP_INTERVAL`: a sweep walks every key).
const RETAIN_RECENT_ABOVE: usize = 10_000;
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Most keys one limiter tracks. Past it (every key still recent: a distributed flood) new
/// attempts are refused for `FULL_WAIT` rather than growing memory without bound.
pub const MAX_TRACKED_KEYS: usize = 100_000;
const FULL_WAIT: Duration = Duration::from_secs(10);

/// A keyed `governor` limiter whose memory is bounded (see the constants above).
struct BoundedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    last_sweep: Mutex<Instant>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> BoundedLimiter<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            last_sweep: Mutex::new(Instant::now()),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt for `key`; on refusal, how long to wait.
    fn check(&self, key: &K) -> Result<(), Duration> {
        if self.limiter.len() > RETAIN_RECENT_ABOVE {
            let mut last_sweep = self.last_sweep.lock().expect("limiter lock poisoned");
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                self.limiter.retain_recent();
                *last_sweep = Instant::now();
            }
        }
        if self.limiter.len() >= MAX_TRACKED_KEYS {
            return Err(FULL_WAIT);
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

pub struct LoginLimiter {
    by_email: BoundedLimiter<String>,
    by_ip: BoundedLimiter<String>,
}

impl LoginLimiter {
    pub fn new(quota: Quota) -> Self {
        Self {
            by_email: BoundedLimiter::new(quota),
            by_ip: BoundedLimiter::new(quota),
        }
    }

    /// Counts one login attempt for `email` from `ip`; on refusal, how long until the next
    /// attempt would be allowed. Every attempt counts, right or wrong, so a limited client
    /// learns nothing about the password by trying it.
    pub fn check(&self, email: &str, ip: &str) -> Result<(), Duration> {
        let email_key: String = email
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_KEY_CHARS)
            .collect();
        let ip_key: String = ip.chars().take(MAX_KEY_CHARS).collect();
        // The IP first: a client over its IP quota does not also use up the account's.
        self.by_ip
            .check(&ip_key)
            .and_then(|()| self.by_email.check(&email_key))
    }
}

/// Sign-ups per client address.
pub struct SignupLimiter {
    by_address: BoundedLimiter<IpAddr>,
}

impl SignupLimiter {
    pub fn new(quota: Quota) -> Self {
        Self {
            by_address: BoundedLimiter::new(quota),
        }
    }

    /// Counts one sign-up attempt from `address` (valid or not: a refused attempt still cost
    /// a request); on refusal, how long until the next would be allowed.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        self.by_address.check(&limit_key(address))
    }
}

/// Mails asked for: per recipient email (so no one floods a mailbox) and, for password-reset
/// requests, per client address (so no one probes addresses by the thousand).
pub struct MailLimiter {
    by_email: BoundedLimiter<String>,
    by_address: BoundedLimiter<IpAddr>,
}

impl MailLimiter {
    pub fn new(per_email: Quota, per_address: Quota) -> Self {
        Self {
            by_email: BoundedLimiter::new(per_email),
            by_address: BoundedLimiter::new(per_address),
        }
    }

    /// Counts one mail to `email` (case-insensitively); on refusal, how long to wait.
    pub fn check_email(&self, email: &str) -> Result<(), Duration> {
        let key: String = email
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_KEY_CHARS)
            .collect();
        self.by_email.check(&key)
    }

    /// Counts one password-reset request from `address` (IPv6: its /64).
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        self.by_address.check(&limit_key(address))
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
    fn a_limiter_full_of_recent_keys_refuses_instead_of_growing() {
        let one = NonZeroU32::new(1).unwrap();
        let limiter = BoundedLimiter::new(Quota::per_hour(one));
        for n in 0..MAX_TRACKED_KEYS as u32 {
            assert!(limiter.check(&n).is_ok());
        }
        assert_eq!(limiter.check(&u32::MAX), Err(FULL_WAIT));
        assert!(limiter.limiter.len() <= MAX_TRACKED_KEYS);
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
