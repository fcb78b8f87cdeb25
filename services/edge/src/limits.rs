//! Plan limits that need counting across connections: concurrent connections and daily
//! messages per app, and the publish API's request rate per app. Per-connection limits
//! (client event rate, channels per connection, message size) live with the connection and
//! the protocol session.
//!
//! On one node these counts are exact: admission takes a mutex, so many simultaneous connects
//! cannot overshoot. A cluster will keep the same interface over broker counters.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::names::AppId;
use tenancy::PlanLimits;

const SECONDS_PER_DAY: u64 = 86_400;

/// Seconds since the Unix epoch, for the daily counters.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[derive(Default)]
pub struct Limits {
    connections: Mutex<HashMap<AppId, u64>>,
    messages: Mutex<HashMap<AppId, DailyCount>>,
    publish_rates: Mutex<HashMap<AppId, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

#[derive(Debug, Clone, Copy)]
struct DailyCount {
    /// Days since the Unix epoch, UTC.
    day: u64,
    used: u64,
}

/// Holds one of the app's connection slots; dropping it frees the slot.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    app: AppId,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut connections = self
            .limits
            .connections
            .lock()
            .expect("limits lock poisoned");
        if let Some(count) = connections.get_mut(&self.app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                connections.remove(&self.app);
            }
        }
    }
}

impl Limits {
    /// Takes a connection slot unless the app is at its plan's ceiling (included connections
    /// times the burst multiplier).
    pub fn admit_connection(
        self: &Arc<Self>,
        app: &AppId,
        limits: &PlanLimits,
    ) -> Option<ConnectionSlot> {
        let mut connections = self.connections.lock().expect("limits lock poisoned");
        let count = connections.entry(app.clone()).or_insert(0);
        if limits
            .connection_ceiling()
            .is_some_and(|ceiling| *count >= ceiling)
        {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            app: app.clone(),
        })
    }

    pub fn connections(&self, app: &AppId) -> u64 {
        self.connections
            .lock()
            .expect("limits lock poisoned")
            .get(app)
            .copied()
            .unwrap_or(0)
    }

    /// Whether the app may publish now: its messages today (UTC) are under the plan's daily
    /// ceiling. The message itself is counted by `count_messages` once published.
    pub fn may_publish(&self, app: &AppId, limits: &PlanLimits, now_unix_secs: u64) -> bool {
        let Some(ceiling) = limits.daily_message_ceiling() else {
            return true;
        };
        self.messages_today(app, now_unix_secs) < ceiling
    }

    /// Adds published or delivered messages to the app's count for today (UTC).
    pub fn count_messages(&self, app: &AppId, messages: u64, now_unix_secs: u64) {
        let today = now_unix_secs / SECONDS_PER_DAY;
        let mut counts = self.messages.lock().expect("limits lock poisoned");
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

    pub fn messages_today(&self, app: &AppId, now_unix_secs: u64) -> u64 {
        let today = now_unix_secs / SECONDS_PER_DAY;
        let counts = self.messages.lock().expect("limits lock poisoned");
        counts
            .get(app)
            .filter(|count| count.day == today)
            .map_or(0, |count| count.used)
    }

    /// Takes one publish request from the app's per-second allowance.
    pub fn allow_publish_request(&self, app: &AppId, limits: &PlanLimits) -> bool {
        let Some(per_second) = limits.publish_requests_per_second else {
            return true;
        };
        let limiter = {
            let mut rates = self.publish_rates.lock().expect("limits lock poisoned");
            let entry = rates
                .entry(app.clone())
                .or_insert_with(|| (per_second, limiter(per_second)));
            // A plan change replaces the limiter with one at the new rate.
            if entry.0 != per_second {
                *entry = (per_second, limiter(per_second));
            }
            entry.1.clone()
        };
        limiter.check().is_ok()
    }
}

fn limiter(per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(rate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    fn plan(max_connections: u64, messages_per_day: u64, burst: u32) -> PlanLimits {
        PlanLimits {
            max_connections: Some(max_connections),
            messages_per_day: Some(messages_per_day),
            burst_multiplier: burst,
            ..PlanLimits::pusher_defaults()
        }
    }

    #[test]
    fn connections_stop_at_the_ceiling_and_slots_come_back() {
        let limits = Arc::new(Limits::default());
        let hard = plan(2, 10, 1);
        let first = limits.admit_connection(&app("a"), &hard);
        let second = limits.admit_connection(&app("a"), &hard);
        assert!(first.is_some() && second.is_some());
        assert!(
            limits.admit_connection(&app("a"), &hard).is_none(),
            "the third is over the hard limit"
        );
        assert!(
            limits.admit_connection(&app("b"), &hard).is_some(),
            "another app has its own count"
        );
        drop(first);
        let third = limits.admit_connection(&app("a"), &hard);
        assert!(third.is_some(), "a closed connection frees its slot");
        assert_eq!(limits.connections(&app("a")), 2);
    }

    #[test]
    fn paid_plans_burst_to_twice_the_included_amount() {
        let limits = Arc::new(Limits::default());
        let paid = plan(2, 10, 2);
        let slots: Vec<_> = (0..4)
            .map(|_| limits.admit_connection(&app("a"), &paid))
            .collect();
        assert!(slots.iter().all(Option::is_some));
        assert!(limits.admit_connection(&app("a"), &paid).is_none());
    }

    #[test]
    fn many_threads_connecting_at_once_never_overshoot() {
        let limits = Arc::new(Limits::default());
        let hard = plan(50, 10, 1);
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (limits, hard) = (limits.clone(), hard.clone());
                    scope.spawn(move || {
                        (0..20)
                            .filter_map(|_| limits.admit_connection(&app("a"), &hard))
                            .map(std::mem::forget)
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .sum()
        });
        assert_eq!(admitted, 50);
    }

    #[test]
    fn the_daily_message_count_rolls_over_at_utc_midnight() {
        let limits = Limits::default();
        let hard = plan(10, 5, 1);
        let last_second_of_day = 20_000 * SECONDS_PER_DAY - 1;
        limits.count_messages(&app("a"), 4, last_second_of_day);
        assert!(limits.may_publish(&app("a"), &hard, last_second_of_day));
        limits.count_messages(&app("a"), 2, last_second_of_day);
        assert!(
            !limits.may_publish(&app("a"), &hard, last_second_of_day),
            "6 of 5 used"
        );
        assert!(
            limits.may_publish(&app("a"), &hard, last_second_of_day + 1),
            "a new UTC day starts at zero"
        );
        assert_eq!(limits.messages_today(&app("a"), last_second_of_day + 1), 0);
    }

    #[test]
    fn publish_requests_are_rate_limited_per_app_at_the_plans_rate() {
        let limits = Limits::default();
        let slow = PlanLimits {
            publish_requests_per_second: Some(2),
            ..PlanLimits::pusher_defaults()
        };
        let allowed = (0..5)
            .filter(|_| limits.allow_publish_request(&app("a"), &slow))
            .count();
        assert_eq!(allowed, 2, "a burst of the per-second rate, then refusals");
        assert!(
            limits.allow_publish_request(&app("b"), &slow),
            "apps do not share a limiter"
        );
        let fast = PlanLimits {
            publish_requests_per_second: Some(100),
            ..PlanLimits::pusher_defaults()
        };
        assert!(
            limits.allow_publish_request(&app("a"), &fast),
            "a new rate applies at once"
        );
    }
}
