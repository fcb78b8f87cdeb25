//! Login rate limiting: one `governor` quota per account email and another per client IP, so
//! neither guessing one account's password from many addresses nor trying many accounts from
//! one address gets far.

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
    fn an_ip_is_limited_across_emails() {
        let limiter = three_a_minute();
        for email in ["a@x.com", "b@x.com", "c@x.com"] {
            assert!(limiter.check(email, "10.0.0.1").is_ok());
        }
        assert!(limiter.check("d@x.com", "10.0.0.1").is_err());
        assert!(limiter.check("d@x.com", "10.0.0.2").is_ok());
    }
}
