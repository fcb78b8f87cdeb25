//! A task run every period until it is dropped: the Redis parts' heartbeats and flushes.
//! Dropping the owner stops it, as a crash would (its deadlines then run out).

use std::future::Future;
use std::time::Duration;

pub struct Periodic(tokio::task::JoinHandle<()>);

impl Periodic {
    /// Runs `tick` every `period` (at least 1 ms) on the current runtime, the first one
    /// `period` from now (a caller that needs one at once runs it itself, awaited, so it is
    /// done when construction returns); a tick that takes longer delays the next one.
    pub fn every<Tick, Ticked>(period: Duration, mut tick: Tick) -> Self
    where
        Tick: FnMut() -> Ticked + Send + 'static,
        Ticked: Future<Output = ()> + Send + 'static,
    {
        Self(tokio::spawn(async move {
            let period = period.max(Duration::from_millis(1));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                tick().await;
            }
        }))
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.0.abort();
    }
}
