//! A task run every period until it is dropped: the Redis parts' heartbeats and flushes.
//! Dropping the owner stops it, as a crash would (its deadlines then run out).

use std::future::Future;
use std::time::Duration;

pub struct Periodic(tokio::task::JoinHandle<()>);

impl Periodic {
    /// Runs `tick` at once and then every `period` (at least 1 ms), on the current runtime;
    /// a tick that takes longer delays the next one.
    pub fn every<Tick, Ticked>(period: Duration, mut tick: Tick) -> Self
    where
        Tick: FnMut() -> Ticked + Send + 'static,
        Ticked: Future<Output = ()> + Send + 'static,
    {
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
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
