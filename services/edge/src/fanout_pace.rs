//! Headroom for the other apps: while this node's workers run late and another app is
//! active, the storm's deliveries are paced below what the node could push.
//!
//! Fair turns and in-flight bounds are work-conserving: a storm may use every cycle the
//! others leave. On a node whose cores are all busy, that is exactly when a quiet app's
//! events wait for a core (README, session 11: both cores saturated, workers 50–100 ms
//! late, a quiet app's p99 3.5× its own alone). So the fan-out thread also keeps a rate
//! for the storm (the app with the most deliveries waiting, while contended), steered by
//! how late the workers run (`worker_lag`): past `lag_high` in a window, the rate halves
//! (from what the storm really got); a window at most half that adds [`FLOOR`] to it, if
//! the storm used at least half its rate (a storm waiting out a `Retry-After` earns no
//! credit for it); once the storm is over, pacing stops. Additive increase and
//! multiplicative decrease, as TCP's congestion control: it settles below saturation
//! instead of at it. The storm is slowed with its own codes (its backlog fills, its
//! publishes get 429); nobody else is.
//!
//! Free of I/O and of clocks: the caller passes `now` and the lag it read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the rate is adjusted: the workers' probes each report twice or more in it.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Deliveries per second a paced app always gets, and what a calm window adds to its rate.
pub const FLOOR: f64 = 2_000.0;
/// The fewest deliveries a paced app's turn pushes (fewer of what it has left): tokens
/// accrue to this before it goes, so turns are not wasted on a handful.
pub const CHUNK: usize = 64;
/// Tokens kept while the storm cannot use them: at most this much of its rate.
const BURST: Duration = Duration::from_millis(20);

/// The largest lateness any worker reported since the fan-out thread last looked.
#[derive(Debug, Default)]
pub struct LagSignal {
    micros: AtomicU64,
}

impl LagSignal {
    pub fn record(&self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// The largest since the last take, and starts again.
    pub fn take(&self) -> Duration {
        Duration::from_micros(self.micros.swap(0, Ordering::Relaxed))
    }
}

/// The storm's rate, in deliveries per second, and its tokens.
#[derive(Debug)]
pub struct StormPace {
    /// Lateness past which the rate halves; zero never paces.
    lag_high: Duration,
    /// `None` while not pacing.
    rate: Option<f64>,
    tokens: f64,
    refilled: Instant,
    window_started: Instant,
    /// The storm's deliveries pushed in this window.
    pushed: usize,
}

impl Default for StormPace {
    /// Never pacing, until given a threshold.
    fn default() -> Self {
        Self::new(Duration::ZERO, Instant::now())
    }
}

impl StormPace {
    pub fn new(lag_high: Duration, now: Instant) -> Self {
        Self {
            lag_high,
            rate: None,
            tokens: 0.0,
            refilled: now,
            window_started: now,
            pushed: 0,
        }
    }

    pub fn set_lag_high(&mut self, lag_high: Duration) {
        self.lag_high = lag_high;
        if lag_high.is_zero() {
            self.rate = None;
        }
    }

    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Whether a window ended, so that `adjust` would look.
    pub fn window_due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.window_started) >= WINDOW
    }

    pub fn is_pacing(&self) -> bool {
        self.rate.is_some()
    }

    /// Once per [`WINDOW`]: reads the workers' lateness (`lag`, called only then) and
    /// adjusts the rate. `storm` says whether a storm is on (an app contended with many
    /// deliveries waiting, or the paced one still publishing); without one, lateness is
    /// nobody's to pace.
    pub fn adjust(&mut self, now: Instant, storm: bool, lag: impl FnOnce() -> Duration) {
        let elapsed = now.saturating_duration_since(self.window_started);
        if elapsed < WINDOW {
            return;
        }
        let lag = lag();
        let got = self.pushed as f64 / elapsed.as_secs_f64();
        self.window_started = now;
        self.pushed = 0;
        if self.lag_high.is_zero() {
            return;
        }
        if storm && lag > self.lag_high {
            let from = self.rate.map_or(got, |rate| rate.min(got));
            if self.rate.is_none() {
                self.refilled = now;
                self.tokens = 0.0;
            }
            self.rate = Some((from / 2.0).max(FLOOR));
        } else if let Some(rate) = self.rate {
            if !storm {
                self.rate = None;
            } else if lag <= self.lag_high / 2 && got >= rate / 2.0 {
                self.rate = Some(rate + FLOOR);
            }
        }
    }

    /// Of `wanted` deliveries, how many the storm may push now: all while not pacing; else
    /// what its tokens allow, and none until they reach [`CHUNK`] (or `wanted`, if fewer).
    pub fn allow(&mut self, wanted: usize, now: Instant) -> usize {
        let Some(rate) = self.rate else {
            return wanted;
        };
        let burst = (rate * BURST.as_secs_f64()).max(CHUNK as f64);
        let since = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + rate * since).min(burst);
        self.refilled = now;
        let tokens = self.tokens as usize;
        if tokens < wanted.min(CHUNK) {
            0
        } else {
            wanted.min(tokens)
        }
    }

    /// The storm pushed `count` deliveries (whether paced or not: the rate starts from it).
    pub fn pushed(&mut self, count: usize) {
        self.pushed += count;
        if self.rate.is_some() {
            self.tokens -= count as f64;
        }
    }

    /// How long until the storm may go again, while paced.
    pub fn wait(&self) -> Option<Duration> {
        let rate = self.rate?;
        let short = (CHUNK as f64 - self.tokens).max(0.0);
        // Rounded up, and a microsecond more: waking a hair early would find a token short.
        Some(Duration::from_micros(
            (short / rate * 1e6).ceil() as u64 + 1,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIGH: Duration = Duration::from_millis(10);
    const LATE: Duration = Duration::from_millis(40);
    const CALM: Duration = Duration::from_millis(1);

    /// A pace whose storm pushed `per_window` deliveries in each of `windows` windows, with
    /// the workers `lag` late in each.
    fn windows(
        pace: &mut StormPace,
        start: &mut Instant,
        windows: usize,
        per_window: usize,
        lag: Duration,
    ) {
        for _ in 0..windows {
            pace.pushed(per_window);
            *start += WINDOW;
            pace.adjust(*start, true, || lag);
        }
    }

    #[test]
    fn a_late_window_halves_what_the_storm_got() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        windows(&mut pace, &mut now, 1, 10_000, CALM);
        assert_eq!(pace.rate(), None, "calm: no pacing");
        windows(&mut pace, &mut now, 1, 10_000, LATE);
        // 10,000 in 100 ms is 100,000 a second; half of it.
        assert_eq!(pace.rate(), Some(50_000.0));
        windows(&mut pace, &mut now, 1, 5_000, LATE);
        assert_eq!(pace.rate(), Some(25_000.0));
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        windows(&mut pace, &mut now, 20, 100, LATE);
        assert_eq!(pace.rate(), Some(FLOOR));
    }

    #[test]
    fn calm_windows_add_the_floor_only_while_the_storm_uses_its_rate() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        windows(&mut pace, &mut now, 1, 2_000, LATE);
        assert_eq!(pace.rate(), Some(10_000.0));
        windows(&mut pace, &mut now, 1, 1_000, CALM);
        assert_eq!(pace.rate(), Some(10_000.0 + FLOOR));
        // Between half the threshold and the threshold: held.
        windows(&mut pace, &mut now, 1, 1_000, HIGH);
        assert_eq!(pace.rate(), Some(10_000.0 + FLOOR));
        // The storm pushes far less than it may (10 a window is 100 a second), waiting out a
        // Retry-After, say: no credit, and still paced.
        windows(&mut pace, &mut now, 3, 10, CALM);
        assert_eq!(pace.rate(), Some(10_000.0 + FLOOR));
    }

    #[test]
    fn without_a_storm_lateness_paces_nobody_and_a_pace_ends() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        pace.pushed(10_000);
        now += WINDOW;
        pace.adjust(now, false, || LATE);
        assert_eq!(pace.rate(), None);
        windows(&mut pace, &mut now, 1, 10_000, LATE);
        assert!(pace.is_pacing());
        now += WINDOW;
        pace.adjust(now, false, || LATE);
        assert_eq!(pace.rate(), None, "the storm is over");
    }

    #[test]
    fn a_zero_threshold_never_paces() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(Duration::ZERO, now);
        windows(&mut pace, &mut now, 5, 10_000, LATE);
        assert_eq!(pace.rate(), None);
    }

    #[test]
    fn the_lag_is_read_once_a_window() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        let mut reads = 0;
        pace.adjust(now + WINDOW / 2, true, || {
            reads += 1;
            LATE
        });
        assert_eq!(reads, 0, "too soon");
        now += WINDOW;
        pace.adjust(now, true, || {
            reads += 1;
            LATE
        });
        assert_eq!(reads, 1);
    }

    #[test]
    fn a_paced_storm_goes_in_chunks_at_its_rate() {
        let mut now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        windows(&mut pace, &mut now, 1, 1_000, LATE);
        let rate = pace.rate().unwrap();
        assert_eq!(rate, 5_000.0);
        assert_eq!(pace.allow(256, now), 0, "no tokens yet");
        let wait = pace.wait().unwrap();
        let exact = Duration::from_secs_f64(CHUNK as f64 / rate);
        assert!(
            wait > exact && wait <= exact + Duration::from_micros(2),
            "{wait:?}"
        );
        now += wait;
        let allowed = pace.allow(256, now);
        assert_eq!(allowed, CHUNK);
        pace.pushed(allowed);
        assert_eq!(pace.allow(256, now), 0);
        // Fewer left than a chunk go as soon as there are tokens for them.
        now += Duration::from_millis(2);
        assert_eq!(pace.allow(5, now), 5);
        // Idle tokens are capped: a second's absence is not a second's burst.
        now += Duration::from_secs(1);
        assert_eq!(
            pace.allow(10_000, now),
            (rate * BURST.as_secs_f64()) as usize
        );
    }

    #[test]
    fn the_signal_keeps_the_largest_until_taken() {
        let signal = LagSignal::default();
        signal.record(Duration::from_millis(3));
        signal.record(Duration::from_millis(30));
        signal.record(Duration::from_millis(7));
        assert_eq!(signal.take(), Duration::from_millis(30));
        assert_eq!(signal.take(), Duration::ZERO);
    }

    #[test]
    fn an_unpaced_storm_is_never_held() {
        let now = Instant::now();
        let mut pace = StormPace::new(HIGH, now);
        assert_eq!(pace.allow(100_000, now), 100_000);
        assert_eq!(pace.wait(), None);
    }
}
