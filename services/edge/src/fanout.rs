//! Fan-out, fair between the apps of this node.
//!
//! A publication's frame is pushed into its subscribers' outboxes; their connections' writers
//! then do the real work (a socket write each). Pushing 5,000 frames at once puts 5,000 writer
//! tasks ahead of every other app's in the workers' run queues, so one app's storm would delay
//! everyone's deliveries. Each app therefore has a bound on **deliveries in flight** on this
//! node ([`AppFlow`]: its WebSocket writers that a frame woke while they waited for one, and
//! that have not run since: work queued in the workers' run queues. A writer blocked on a full
//! socket, or an HTTP carrier's outbox waiting for the client's next request, is no work here
//! and does not count, so slow consumers never hold an app back):
//!
//! - a publication that fits under the app's bound, while none of the app's is waiting, is
//!   pushed at once by the caller (the broker's delivery, so under the channel's lock: serial
//!   order holds); so is one of at most `whole_when_idle` deliveries while at most half the
//!   bound is in flight (an app that publishes now and then is never chopped), and one that
//!   keeps the app's in flight within `whole_when_idle` while another app has more waiting
//!   (the storm is that one; an ordinary app is not queued with it);
//! - otherwise it waits in the app's queue (FIFO, so an app's own order holds) with its
//!   subscribers as they were at delivery, and the fan-out thread pushes the queues' heads in
//!   turns of at most [`TURN`] deliveries, one app after the other, each only while the app is
//!   under its bound (resumed once its writers took it down to half); the app with the most
//!   waiting is held to a quarter of it ([`STORM_SHARE`]);
//! - an app's queue holds at most `backlog_per_app` deliveries: the HTTP API answers 429
//!   (Retry-After) from half of it, and a publication that would overflow it is not queued:
//!   its subscribers here are closed with 4100 (over capacity), reconnect after a back-off and
//!   resume by serial, so nothing is lost for a resuming client and memory stays bounded.
//!
//! The bound holds only while the node is **contended**: another app routed a publication
//! here within `contention_window`, or has deliveries waiting. An app alone on a node is
//! never chopped (turns through the thread cost wake-ups, and the bound would only slow it
//! against nobody); the window keeps an app that publishes every few milliseconds, like a
//! ticker, counted between its publications, so a storm is held to its bound across them.
//!
//! The thread holds no lock while pushing; it sleeps on a condvar when no app may go, and the
//! writer that takes an app below its low-water mark wakes it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use broker::Publication;
use bytestring::ByteString;
use protocol::delta::Delta;
use protocol::names::AppId;

use crate::fanout_pace::{LagSignal, StormPace};
use crate::http_api::error::RETRY_AFTER_SECONDS;
use crate::metrics::metrics;
use crate::outbox::Outbox;

/// Deliveries the fan-out thread pushes for one app before the next app's turn.
pub const TURN: usize = 256;
/// While contended, the app with the most deliveries waiting (the storm) is held to this
/// fraction of the bound, so the others' writers outnumber its own in the workers' run
/// queues: with equal bounds, B's 1,000 subscribers at 50 events/s fell behind A's storm
/// in about half the noisy-neighbour runs and never caught up (README, session 10).
const STORM_SHARE: usize = 4;
/// Pace windows in a row an app must be the largest, past a storm's size, to be paced: an
/// ordinary app whose queue grows for a moment, while the storm drained its own, is not.
const STORM_WINDOWS: u32 = 3;
/// How long after the paced app's last publication it is still a storm: past a 429's
/// `Retry-After` (1 s) and the drain of its backlog meanwhile, so that a storm that comes
/// back is paced from the start instead of running free until it is found again.
const PACE_HOLD: Duration = Duration::from_secs(3);
/// A backstop for a wake-up that never comes (the accounting is exact; this only bounds the
/// cost of a bug in it).
const BACKSTOP: Duration = Duration::from_millis(100);

/// Per-app bounds of this node's fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutBounds {
    /// Writers of an app woken and not yet run before its next deliveries wait.
    pub in_flight_per_app: usize,
    /// The largest publication pushed whole, past `in_flight_per_app`, for an app with at
    /// most half of that in flight: an app that publishes now and then is never chopped by
    /// the bound meant for one that keeps publishing. Also how many an app may have in
    /// flight, publication after publication, while another app has more waiting.
    pub whole_when_idle: usize,
    /// Deliveries an app may have waiting; the HTTP API refuses its publishes from half.
    pub backlog_per_app: usize,
    /// How long after another app's last publication the bounds above still hold an app;
    /// zero holds every app to them always.
    pub contention_window: Duration,
    /// How late the workers may run, while contended, before the storm's deliveries are
    /// paced below what the node could push (`fanout_pace`); zero never paces.
    pub headroom_lag: Duration,
}

impl Default for FanoutBounds {
    /// 512 in flight for an app that keeps publishing, and a publication of up to 4,096
    /// subscribers pushed whole for one with at most 256 in flight. In the noisy bench (B: 1,000
    /// subscribers at 50 events/s; A: 5,000 flat out) B's p99 under A's storm went from
    /// 3.8–4.9× alone with a plain bound of 4,096 to 1.9–2.5× (README, Noisy neighbour).
    /// A plain bound of 512 without the idle rule made B queue behind its own bound
    /// (p99 347 ms against 28 ms). Only while another app published within the last second:
    /// alone, 1,000 subscribers at 200 events/s were held to 512 on a slow machine, and the
    /// turns cost enough to saturate it (README, session 10).
    fn default() -> Self {
        Self {
            in_flight_per_app: 512,
            whole_when_idle: 4096,
            backlog_per_app: 65_536,
            contention_window: Duration::from_secs(1),
            headroom_lag: Duration::from_millis(5),
        }
    }
}

/// One app's deliveries in flight on this node; every WebSocket outbox of the app reports
/// to it.
#[derive(Debug)]
pub struct AppFlow {
    in_flight: AtomicUsize,
    shared: Arc<Shared>,
}

impl AppFlow {
    pub(crate) fn queued(&self, frames: usize) {
        self.in_flight.fetch_add(frames, Ordering::SeqCst);
    }

    /// A woken writer ran (or its outbox is gone).
    pub(crate) fn released(&self, frames: usize) {
        let before = self.in_flight.fetch_sub(frames, Ordering::SeqCst);
        // Pairs with the thread's `stalled` store before its last look (both SeqCst): either
        // it sees this release, or this sees it stalled and wakes it.
        if self.shared.stalled.load(Ordering::SeqCst)
            && before.saturating_sub(frames) <= self.shared.low_water()
        {
            self.shared.wake();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// What to do with one publication's deliveries.
pub enum Route {
    /// Push now, in the caller.
    Now,
    /// Queued for the fan-out thread.
    Queued,
    /// Over the app's backlog: close these subscribers with 4100.
    Refused,
}

/// The node's fan-out queues and the thread that drains them.
pub struct Fanout {
    shared: Arc<Shared>,
    thread: Once,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Set by the thread before it sleeps for want of an app under its bound.
    stalled: AtomicBool,
    in_flight_per_app: AtomicUsize,
    whole_when_idle: AtomicUsize,
    backlog_per_app: AtomicUsize,
    /// In milliseconds.
    contention_window: AtomicUsize,
    /// How late the workers ran, for the storm's pace.
    lag: LagSignal,
}

#[derive(Debug, Default)]
struct State {
    apps: HashMap<AppId, AppQueue>,
    /// Apps with a job, in turn order.
    turns: VecDeque<AppId>,
    recent: Recent,
    /// The storm's rate while the workers run late.
    pace: StormPace,
    /// The app the pace holds: while paced, none of its publications is pushed unqueued.
    paced: Option<AppId>,
    /// When the paced app last routed a publication: it is a storm still for [`PACE_HOLD`]
    /// after, even with its queue drained (waiting out a 429's `Retry-After`).
    paced_routed: Option<Instant>,
    /// The app that has been the largest with more than a storm's size waiting, and for how
    /// many pace windows in a row: only one that stays so is a storm to pace.
    storm_streak: Option<(AppId, u32)>,
    closed: bool,
}

/// The last two distinct apps that routed a publication here, by their flow's address, and
/// when: for any app, the most recent other app is one of them.
#[derive(Debug, Default)]
struct Recent {
    last: Option<(usize, Instant)>,
    before: Option<(usize, Instant)>,
}

impl Recent {
    fn note(&mut self, app: usize, now: Instant) {
        if self.last.is_some_and(|(last, _)| last != app) {
            self.before = self.last;
        }
        self.last = Some((app, now));
    }

    /// Whether an app other than `app` routed within `window` before `now`.
    fn other_than(&self, app: usize, now: Instant, window: Duration) -> bool {
        [self.last, self.before]
            .into_iter()
            .flatten()
            .any(|(other, at)| other != app && now.saturating_duration_since(at) < window)
    }
}

/// A window as `Shared` keeps it.
fn millis(window: Duration) -> usize {
    usize::try_from(window.as_millis()).unwrap_or(usize::MAX)
}

fn flow_key(flow: &Arc<AppFlow>) -> usize {
    Arc::as_ptr(flow) as usize
}

#[derive(Debug)]
struct AppQueue {
    jobs: VecDeque<Job>,
    /// Deliveries not yet pushed, the job being pushed included.
    waiting: usize,
    flow: Arc<AppFlow>,
}

/// A publication waiting, with the subscribers it was delivered to.
#[derive(Debug)]
pub struct Job {
    pub publication: Publication,
    pub delta: Option<Delta<ByteString>>,
    pub targets: Vec<Arc<Outbox>>,
    next: usize,
}

impl Job {
    pub fn new(
        publication: Publication,
        delta: Option<Delta<ByteString>>,
        targets: Vec<Arc<Outbox>>,
    ) -> Self {
        Self {
            publication,
            delta,
            targets,
            next: 0,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fan-out lock poisoned")
    }

    fn low_water(&self) -> usize {
        self.in_flight_per_app.load(Ordering::Relaxed) / 2
    }

    fn contention_window(&self) -> Duration {
        Duration::from_millis(self.contention_window.load(Ordering::Relaxed) as u64)
    }

    fn wake(&self) {
        let _state = self.lock();
        self.stalled.store(false, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

impl Default for Fanout {
    fn default() -> Self {
        let bounds = FanoutBounds::default();
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    pace: StormPace::new(bounds.headroom_lag, Instant::now()),
                    ..State::default()
                }),
                wake: Condvar::new(),
                stalled: AtomicBool::new(false),
                in_flight_per_app: AtomicUsize::new(bounds.in_flight_per_app),
                whole_when_idle: AtomicUsize::new(bounds.whole_when_idle),
                backlog_per_app: AtomicUsize::new(bounds.backlog_per_app),
                contention_window: AtomicUsize::new(millis(bounds.contention_window)),
                lag: LagSignal::default(),
            }),
            thread: Once::new(),
        }
    }
}

impl Fanout {
    pub fn set_bounds(&self, bounds: FanoutBounds) {
        let shared = &self.shared;
        shared
            .in_flight_per_app
            .store(bounds.in_flight_per_app.max(1), Ordering::Relaxed);
        shared
            .whole_when_idle
            .store(bounds.whole_when_idle, Ordering::Relaxed);
        shared
            .backlog_per_app
            .store(bounds.backlog_per_app.max(1), Ordering::Relaxed);
        shared
            .contention_window
            .store(millis(bounds.contention_window), Ordering::Relaxed);
        shared.lock().pace.set_lag_high(bounds.headroom_lag);
    }

    /// A worker ran a due task `lag` late (`worker_lag`'s probe).
    pub fn worker_lagged(&self, lag: Duration) {
        self.shared.lag.record(lag);
    }

    /// A flow for a new app's outboxes.
    pub fn new_flow(&self) -> Arc<AppFlow> {
        Arc::new(AppFlow {
            in_flight: AtomicUsize::new(0),
            shared: self.shared.clone(),
        })
    }

    /// Deliveries of `app` waiting here.
    pub fn backlog(&self, app: &AppId) -> usize {
        self.shared.lock().waiting(app)
    }

    /// Whether the HTTP API should refuse the app's publishes for now: past half its
    /// backlog, or, while it is the paced storm, past what its pace drains in a
    /// `Retry-After` (its events then wait about a second here, not its whole backlog's
    /// drain at the pace, which at the floor is 16 s).
    pub fn congested(&self, app: &AppId) -> bool {
        let half = self.shared.backlog_per_app.load(Ordering::Relaxed) / 2;
        let state = self.shared.lock();
        let waiting = state.waiting(app);
        let paced = state.paced.as_ref() == Some(app);
        let drains = state
            .pace
            .rate()
            .filter(|_| paced)
            .map(|rate| rate * RETRY_AFTER_SECONDS as f64);
        waiting > half || drains.is_some_and(|drains| waiting as f64 > drains)
    }

    /// Routes `deliveries` of `app`: now when the app has nothing waiting and the node is not
    /// contended, or the app is under its bound, or has at most half of it in flight and the
    /// publication is at most `whole_when_idle`, or another app has more waiting and this
    /// one's in flight stays within `whole_when_idle`; else queued (`job` is built under the lock,
    /// so the app's order holds), else refused.
    pub fn route(
        &self,
        app: &AppId,
        flow: &Arc<AppFlow>,
        deliveries: usize,
        job: impl FnOnce() -> Job,
    ) -> Route {
        let shared = &self.shared;
        let bound = shared.in_flight_per_app.load(Ordering::Relaxed);
        let backlog = shared.backlog_per_app.load(Ordering::Relaxed);
        let (window, now) = (shared.contention_window(), Instant::now());
        let mut state = shared.lock();
        let key = flow_key(flow);
        let contended = state.contended(app, key, now, window);
        state.recent.note(key, now);
        let waiting = state.waiting(app);
        let in_flight = flow.in_flight();
        // An app whose writers are mostly done (one that publishes now and then, however many
        // subscribers it has) has its publication pushed whole; only an app that keeps work
        // in flight, publication after publication, is held to its bound. Half, not none: on
        // a loaded node a ticker's last few writers often lag its next event.
        let whole = shared.whole_when_idle.load(Ordering::Relaxed);
        let idle = in_flight <= bound / 2 && deliveries <= whole;
        // Nor is an app held while another has more waiting than this publication: the storm
        // is that one, held to its share in `next_turn`. On a node whose cores are short, an
        // ordinary app's writers lag at its bound through no fault of its own, and queueing
        // it behind that bound made it wait its turn with the storm's (README, session 11).
        // Looked at last: it walks the queued apps, the other tests are a load each.
        // A paced storm's every publication goes through the thread, at its pace.
        let is_paced_app = state.paced.as_ref() == Some(app);
        if is_paced_app {
            state.paced_routed = Some(now);
        }
        let paced = is_paced_app && state.pace.is_pacing();
        let after = in_flight.saturating_add(deliveries);
        if waiting == 0
            && (!contended
                || (!paced
                    && (idle
                        || after <= bound
                        || (after <= whole && state.has_more_waiting_than(app, deliveries)))))
        {
            return Route::Now;
        }
        if waiting.saturating_add(deliveries) > backlog {
            return Route::Refused;
        }
        let queue = state.apps.entry(app.clone()).or_insert_with(|| AppQueue {
            jobs: VecDeque::new(),
            waiting: 0,
            flow: flow.clone(),
        });
        let first = queue.jobs.is_empty() && queue.waiting == 0;
        queue.jobs.push_back(job());
        queue.waiting += deliveries;
        if first {
            state.turns.push_back(app.clone());
        }
        metrics().fanout_waiting.increment(deliveries as f64);
        drop(state);
        self.start_thread();
        shared.stalled.store(false, Ordering::SeqCst);
        shared.wake.notify_one();
        Route::Queued
    }

    fn start_thread(&self) {
        self.thread.call_once(|| {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("fanout".into())
                .spawn(move || run(&shared))
                .expect("the fan-out thread starts");
        });
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// A turn: the app, its head job, and how many of its deliveries to push.
struct Turn {
    app: AppId,
    job: Job,
    count: usize,
}

impl State {
    /// Deliveries of `app` waiting here.
    fn waiting(&self, app: &AppId) -> usize {
        self.apps.get(app).map_or(0, |queue| queue.waiting)
    }

    /// Whether another app than `app` (its flow at `key`) has deliveries waiting here, or
    /// routed a publication within `window`.
    fn contended(&self, app: &AppId, key: usize, now: Instant, window: Duration) -> bool {
        window.is_zero()
            || self.apps.len() > usize::from(self.apps.contains_key(app))
            || self.recent.other_than(key, now, window)
    }

    /// Whether an app other than `app` has more than `deliveries` waiting.
    fn has_more_waiting_than(&self, app: &AppId, deliveries: usize) -> bool {
        self.apps
            .iter()
            .any(|(other, queue)| other != app && queue.waiting > deliveries)
    }

    /// The storm: the app with the most deliveries waiting, while the node is contended for
    /// it.
    fn storm(&self, window: Duration, now: Instant) -> Option<AppId> {
        let (app, queue) = self.apps.iter().max_by_key(|(_, queue)| queue.waiting)?;
        let contended = self.contended(app, flow_key(&queue.flow), now, window);
        contended.then(|| app.clone())
    }

    /// Adjusts the storm's pace to how late the workers ran (once a pace window). Only an
    /// app with more than `storm_size` waiting is paced: an ordinary app queued behind its
    /// own lagging writers is no storm. The app paced stays the one until pacing ends.
    fn adjust_pace(&mut self, window: Duration, now: Instant, lag: &LagSignal, storm_size: usize) {
        if !self.pace.window_due(now) {
            return;
        }
        let candidate = self
            .storm(window, now)
            .filter(|app| self.waiting(app) > storm_size);
        self.storm_streak = match (self.storm_streak.take(), candidate) {
            (Some((app, windows)), Some(now_largest)) if app == now_largest => {
                Some((app, windows.saturating_add(1)))
            }
            (_, candidate) => candidate.map(|app| (app, 1)),
        };
        let storm = self
            .storm_streak
            .as_ref()
            .filter(|(_, windows)| *windows >= STORM_WINDOWS)
            .map(|(app, _)| app.clone());
        let paced_waits = self
            .paced
            .as_ref()
            .is_some_and(|app| self.apps.contains_key(app));
        let paced_publishes = self
            .paced_routed
            .is_some_and(|at| now.saturating_duration_since(at) < PACE_HOLD.max(window));
        let before = self.pace.rate();
        let on = paced_waits || paced_publishes || storm.is_some();
        self.pace.adjust(now, on, || lag.take());
        if self.pace.rate() != before {
            metrics().fanout_pace.set(self.pace.rate().unwrap_or(0.0));
        }
        if !self.pace.is_pacing() {
            if let Some(app) = self.paced.take() {
                tracing::info!(%app, "fan-out: the storm's pacing ended");
            }
            self.paced_routed = None;
        } else if self.paced.is_none() {
            // Never another while paced: an ordinary app queued behind its own lagging
            // writers while the storm waits out a 429 was paced once, and collapsed.
            self.paced = storm;
            if let (Some(app), Some(rate)) = (&self.paced, self.pace.rate()) {
                tracing::info!(%app, rate, "fan-out: workers late; pacing the storm");
            }
        }
    }

    /// The next app in turn order that is under its bound (no bound while the node is not
    /// contended for it) and, for the storm, within its pace, with its head job taken out
    /// (its deliveries still count as waiting, so the app's new publications queue behind
    /// it).
    fn next_turn(&mut self, bound: usize, window: Duration, now: Instant) -> Option<Turn> {
        let storm = self.storm(window, now);
        for _ in 0..self.turns.len() {
            let app = self.turns.pop_front()?;
            let key = flow_key(&self.apps.get(&app)?.flow);
            let is_storm = storm.as_ref() == Some(&app);
            let bound = if is_storm {
                (bound / STORM_SHARE).max(1)
            } else if self.contended(&app, key, now, window) {
                bound
            } else {
                usize::MAX
            };
            let queue = self.apps.get_mut(&app)?;
            let in_flight = queue.flow.in_flight();
            let left = queue.jobs.front().map(|job| job.targets.len() - job.next)?;
            let mut count = left.min(TURN).min(bound.saturating_sub(in_flight));
            // The pace counts the paced app's deliveries, or the storm's before any is paced.
            let pacing = self.pace.is_pacing();
            let paced = pacing && self.paced.as_ref() == Some(&app);
            if paced {
                count = self.pace.allow(count, now);
            }
            if count > 0 {
                let job = self.apps.get_mut(&app)?.jobs.pop_front()?;
                if paced || (!pacing && is_storm) {
                    self.pace.pushed(count);
                }
                return Some(Turn { app, job, count });
            }
            self.turns.push_back(app);
        }
        None
    }

    /// Puts the job back (if unfinished) and the app at the end of the turn order.
    fn end_turn(&mut self, turn: Turn) {
        let Turn { app, job, count } = turn;
        let Some(queue) = self.apps.get_mut(&app) else {
            return;
        };
        queue.waiting -= count;
        if job.next < job.targets.len() {
            queue.jobs.push_front(job);
        }
        if queue.jobs.is_empty() {
            self.apps.remove(&app);
        } else {
            self.turns.push_back(app);
        }
    }
}

fn run(shared: &Shared) {
    let mut state = shared.lock();
    while !state.closed {
        let bound = shared.in_flight_per_app.load(Ordering::Relaxed);
        let window = shared.contention_window();
        let storm_size = shared.whole_when_idle.load(Ordering::Relaxed);
        state.adjust_pace(window, Instant::now(), &shared.lag, storm_size);
        let mut turn = state.next_turn(bound, window, Instant::now());
        if turn.is_none() && !state.turns.is_empty() {
            // Every waiting app is at its bound: the flag goes up before a last look, so a
            // writer's release in between is seen here or wakes the sleep (see `released`).
            shared.stalled.store(true, Ordering::SeqCst);
            turn = state.next_turn(bound, window, Instant::now());
        }
        match turn {
            Some(mut turn) => {
                shared.stalled.store(false, Ordering::SeqCst);
                drop(state);
                push(&mut turn);
                metrics().fanout_waiting.decrement(turn.count as f64);
                state = shared.lock();
                state.end_turn(turn);
            }
            None if state.turns.is_empty() => {
                state = shared.wake.wait(state).expect("fan-out lock poisoned");
            }
            None => {
                // A paced storm may go again in a moment; nothing else wakes the thread then.
                let sleep = state
                    .pace
                    .wait()
                    .map_or(BACKSTOP, |wait| wait.min(BACKSTOP));
                let waited = shared.wake.wait_timeout(state, sleep);
                state = waited.expect("fan-out lock poisoned").0;
            }
        }
    }
}

fn push(turn: &mut Turn) {
    let job = &mut turn.job;
    let end = job.next + turn.count;
    let publication = &job.publication;
    for outbox in &job.targets[job.next..end] {
        outbox.push_publication(
            &publication.channel,
            publication.serial,
            publication.frame.clone(),
            job.delta.as_ref(),
        );
    }
    job.next = end;
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fanout_paced_tests.rs"]
mod paced_tests;
