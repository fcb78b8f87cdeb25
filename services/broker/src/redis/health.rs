//! `RedisHealthWatch`: tells the node when its Redis goes away and when it is back. It pings
//! the connections of the node's Redis parts (broker, broadcasts, cache, counters, occupancy,
//! publish rates; `and` joins them) every `HEALTH_CHECK_EVERY` and
//! reports the first failure and the first success after it to a `HealthReport`. The pings
//! also make both connections reconnect (and resubscribe) as soon as Redis is back, rather
//! than on the next request: "recovered" means the broker works again.

use std::sync::Weak;
use std::time::Duration;

use super::connection::{Commands, Subscriptions};

/// How often the Redis is pinged.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where a node hears about its Redis (the edge's `/healthz`).
pub trait HealthReport: Send + Sync + 'static {
    /// Redis cannot be reached.
    fn trouble(&self, what: &str);
    /// Redis answers again.
    fn recovered(&self);
    /// A health ping of every connection succeeded in `round_trip` (for latency figures).
    fn pinged(&self, _round_trip: Duration) {}
}

/// Connections to ping, not yet watching.
pub struct RedisHealthWatch {
    commands: Vec<Commands>,
    subscriptions: Vec<Subscriptions>,
}

impl RedisHealthWatch {
    pub(super) fn on(commands: Commands, subscriptions: Subscriptions) -> Self {
        Self {
            commands: vec![commands],
            subscriptions: vec![subscriptions],
        }
    }

    /// One watch over both sets of connections.
    pub fn and(mut self, other: Self) -> Self {
        self.commands.extend(other.commands);
        self.subscriptions.extend(other.subscriptions);
        self
    }

    /// Watches on the current runtime until `report` is gone.
    pub fn start(self, report: Weak<dyn HealthReport>) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEALTH_CHECK_EVERY);
            let mut in_trouble = false;
            loop {
                ticks.tick().await;
                let started = std::time::Instant::now();
                let result = self.ping().await;
                let round_trip = started.elapsed();
                let Some(report) = report.upgrade() else {
                    return;
                };
                if result.is_ok() {
                    report.pinged(round_trip);
                }
                match result {
                    Err(error) if !in_trouble => {
                        in_trouble = true;
                        report.trouble(&error.to_string());
                    }
                    Ok(()) if in_trouble => {
                        in_trouble = false;
                        report.recovered();
                    }
                    _ => {}
                }
            }
        });
    }

    /// Pings every connection, even after a failure, so each one that lost Redis starts
    /// reconnecting now; the first error is the answer.
    async fn ping(&self) -> redis::RedisResult<()> {
        let mut first_error = Ok(());
        for commands in &self.commands {
            let pinged = redis::cmd("PING").exec_async(&mut commands.clone()).await;
            first_error = first_error.and(pinged);
        }
        for subscriptions in &self.subscriptions {
            let pinged = Self::ping_subscriptions(subscriptions).await;
            first_error = first_error.and(pinged);
        }
        first_error
    }

    async fn ping_subscriptions(subscriptions: &Subscriptions) -> redis::RedisResult<()> {
        match subscriptions.clone() {
            Subscriptions::Single(mut connection) => {
                redis::cmd("PING").exec_async(&mut connection).await
            }
            Subscriptions::Cluster(mut connection) => {
                redis::cmd("PING").exec_async(&mut connection).await
            }
        }
    }
}
