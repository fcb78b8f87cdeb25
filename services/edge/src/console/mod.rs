//! The debug console's feed and the live view, carried over Switchboard itself.
//!
//! The dashboard connects to the **system app** (`EdgeSettings::console_app`, whose secret only
//! the control plane holds) and subscribes to `private-console-<app>` (events) and
//! `private-live-<app>` (figures), which the control plane signs for the app's owner only.
//! This module is the edge's side:
//! - `Console::record` (through `report`, called where things happen) queues an event only
//!   while somebody watches the app's console anywhere in the cluster (`watched`, refreshed
//!   every second from the cluster's `Occupancy` of the system app's channels, and set at once
//!   when a watcher subscribes on this node), so an idle app costs one atomic load per event.
//! - Every `FLUSH_EVERY` the events queued per app leave as one `console` event on its channel
//!   through the broker (so every node's watchers get them), at most `MAX_EVENTS_PER_BATCH`
//!   events and `MAX_BATCH_BYTES` bytes per batch; past that they are dropped and counted, and
//!   the count rides in the next batch (`dropped`). Nothing waits on the customer's hot path.
//! - `live` sends `live` figures every second to this node's subscribers of `private-live-*`.
//! - `refusals` keeps each app's recent refusals (per node) for `GET /v1/apps/{id}/refusals`.
//!
//! None of it is counted for anyone: the system app is exempt from the hub's metering and
//! daily counts (`Hub::exempt_from_metering`), and the customer's counters are never touched.

mod live;
mod refusals;
pub(crate) mod report;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use broker::Publication;
use protocol::names::{AppId, ChannelName};
use protocol::wire;
use tenancy::{CONSOLE_CHANNEL_PREFIX, ConsoleEvent, ConsoleFeed, Refusal, console_channel};

use crate::EdgeState;
use crate::console::refusals::RefusalLog;

pub use refusals::{MAX_APPS_WITH_REFUSALS, MAX_REFUSALS_PER_APP};

/// How often queued events leave, per app, as one batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Events one batch carries at most; more within one interval are dropped and counted.
pub const MAX_EVENTS_PER_BATCH: usize = 50;
/// Bytes of events one batch carries at most.
pub const MAX_BATCH_BYTES: usize = 32 * 1024;
/// Apps whose console may be watched at once (the system app's console channels).
pub const MAX_WATCHED_APPS: usize = 10_000;
/// The event name of a batch on `private-console-<app>`.
pub const BATCH_EVENT: &str = "console";

/// Counts for `/metrics`.
#[derive(Default)]
pub struct ConsoleStats {
    /// Events queued for a watched app.
    pub recorded: AtomicU64,
    /// Events that left in a batch.
    pub published: AtomicU64,
    /// Events dropped because their app's batch was full.
    pub dropped: AtomicU64,
}

pub struct Console {
    system_app: AppId,
    /// How many apps are watched: with none, `watching` reads no lock.
    watched_count: AtomicUsize,
    watched: RwLock<HashSet<AppId>>,
    pending: Mutex<HashMap<AppId, Pending>>,
    refusals: RefusalLog,
    pub stats: ConsoleStats,
}

/// One app's events since the last flush, each already JSON.
#[derive(Default)]
struct Pending {
    events: Vec<String>,
    bytes: usize,
    dropped: u64,
}

impl Pending {
    fn has_room(&self) -> bool {
        self.events.len() < MAX_EVENTS_PER_BATCH && self.bytes < MAX_BATCH_BYTES
    }
}

impl Console {
    pub fn new(system_app: AppId) -> Self {
        Self {
            system_app,
            watched_count: AtomicUsize::new(0),
            watched: RwLock::default(),
            pending: Mutex::default(),
            refusals: RefusalLog::default(),
            stats: ConsoleStats::default(),
        }
    }

    pub fn system_app(&self) -> &AppId {
        &self.system_app
    }

    /// The customer app whose console `channel` of the system app is, if it is one.
    fn watched_app(channel: &str) -> Option<AppId> {
        AppId::parse(channel.strip_prefix(CONSOLE_CHANNEL_PREFIX)?).ok()
    }

    /// A watcher subscribed on this node: its app's events are queued from now on, without
    /// waiting for the next refresh.
    pub(crate) fn watcher_subscribed(&self, channel: &ChannelName) {
        let Some(app) = Self::watched_app(channel.as_str()) else {
            return;
        };
        let mut watched = self.watched.write().expect("console lock poisoned");
        if watched.len() < MAX_WATCHED_APPS {
            watched.insert(app);
        }
        self.watched_count.store(watched.len(), Ordering::Relaxed);
    }

    /// Replaces the watched apps by the cluster's (`occupied`), keeping those with a watcher
    /// on this node (an occupancy read that raced a subscription must not hide it).
    fn set_watched(&self, occupied: HashSet<AppId>, local: impl Fn(&AppId) -> bool) {
        let mut watched = self.watched.write().expect("console lock poisoned");
        let kept: Vec<AppId> = watched
            .iter()
            .filter(|app| !occupied.contains(*app) && local(app))
            .cloned()
            .collect();
        *watched = occupied;
        watched.extend(kept);
        self.watched_count.store(watched.len(), Ordering::Relaxed);
        drop(watched);
        let watched = self.watched.read().expect("console lock poisoned");
        self.pending
            .lock()
            .expect("console lock poisoned")
            .retain(|app, _| watched.contains(app));
    }

    /// Takes every app's queued events, as the data of one batch per app.
    fn take_batches(&self) -> Vec<(AppId, String)> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("console lock poisoned"));
        pending
            .into_iter()
            .filter(|(_, batch)| !batch.events.is_empty() || batch.dropped > 0)
            .map(|(app, batch)| {
                let data = format!(
                    r#"{{"events":[{}],"dropped":{}}}"#,
                    batch.events.join(","),
                    batch.dropped
                );
                self.stats
                    .published
                    .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                (app, data)
            })
            .collect()
    }
}

impl ConsoleFeed for Console {
    fn watching(&self, app: &AppId) -> bool {
        self.watched_count.load(Ordering::Relaxed) > 0
            && self
                .watched
                .read()
                .expect("console lock poisoned")
                .contains(app)
    }

    fn record(&self, app: &AppId, event: ConsoleEvent) {
        if !self.watching(app) {
            return;
        }
        let full = |pending: &mut HashMap<AppId, Pending>| {
            let batch = pending.entry(app.clone()).or_default();
            if batch.has_room() {
                return false;
            }
            batch.dropped += 1;
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            true
        };
        // A full batch drops before any serialising: a flood costs one lock per event.
        if full(&mut self.pending.lock().expect("console lock poisoned")) {
            return;
        }
        let mut value = serde_json::to_value(&event).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            fields
                .entry("time_ms")
                .or_insert_with(|| crate::limits::unix_millis().into());
        }
        let text = value.to_string();
        let mut pending = self.pending.lock().expect("console lock poisoned");
        if full(&mut pending) {
            return;
        }
        let batch = pending.entry(app.clone()).or_default();
        batch.bytes += text.len();
        batch.events.push(text);
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
    }

    fn refusals(&self, app: &AppId) -> Vec<Refusal> {
        self.refusals.of(app)
    }
}

impl Console {
    /// Keeps a refusal in the app's log and, if watched, sends it to its console.
    pub(crate) fn refused(&self, app: &AppId, refusal: Refusal) {
        if self.watching(app) {
            self.record(app, ConsoleEvent::Refusal(refusal.clone()));
        }
        self.refusals.push(app, refusal);
    }
}

/// The console's background work for one edge: batches every `FLUSH_EVERY`, the watched apps
/// and the live figures every second. Spawn once per edge with a console; ends with the edge.
pub async fn run(state: Weak<EdgeState>) {
    let mut ticks = tokio::time::interval(FLUSH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = live::LiveFigures::default();
    for round in 0u64.. {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let Some(console) = state.console.clone() else {
            return;
        };
        if state.meter.is_closed() {
            return;
        }
        publish_batches(&state, &console).await;
        if round % 2 == 0 {
            refresh_watched(&state, &console).await;
            live.send(&state, &console).await;
        }
    }
}

async fn publish_batches(state: &EdgeState, console: &Console) {
    for (app, data) in console.take_batches() {
        let Ok(channel) = ChannelName::parse(&console_channel(&app)) else {
            continue;
        };
        let frame = wire::channel_event(BATCH_EVENT, channel.as_str(), &data, None);
        let publication = Publication {
            app: console.system_app.clone(),
            channel,
            frame: frame.into(),
            except: None,
            // Live only: no serial, nothing kept in history.
            history: None,
            serial: None,
        };
        if let Err(error) = state.cluster.broker.publish(publication).await {
            tracing::warn!(%error, "console batch could not be published");
        }
    }
}

async fn refresh_watched(state: &EdgeState, console: &Console) {
    let occupied = state
        .cluster
        .occupancy
        .occupied_channels(&console.system_app, CONSOLE_CHANNEL_PREFIX)
        .await;
    let occupied = match occupied {
        Ok(occupied) => occupied,
        Err(error) => {
            tracing::warn!(%error, "console watchers unknown; keeping the last ones");
            return;
        }
    };
    let apps: HashSet<AppId> = occupied
        .iter()
        .filter(|(_, subscriptions)| *subscriptions > 0)
        .filter_map(|(channel, _)| Console::watched_app(channel.as_str()))
        .take(MAX_WATCHED_APPS)
        .collect();
    console.set_watched(apps, |app| {
        ChannelName::parse(&console_channel(app))
            .is_ok_and(|channel| state.hub.has_subscribers(&console.system_app, &channel))
    });
}

/// The console of an edge whose settings name a system app.
pub(crate) fn for_settings(settings: &crate::EdgeSettings) -> Option<Arc<Console>> {
    settings
        .console_app
        .clone()
        .map(|app| Arc::new(Console::new(app)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console_watching(app: &AppId) -> Console {
        let console = Console::new(AppId::parse("system").unwrap());
        console.watcher_subscribed(&ChannelName::parse(&console_channel(app)).unwrap());
        console
    }

    fn subscribed(n: usize) -> ConsoleEvent {
        ConsoleEvent::Subscribed {
            socket_id: format!("1.{n}"),
            channel: "c".into(),
        }
    }

    #[test]
    fn nothing_is_queued_for_an_app_nobody_watches() {
        let watched = AppId::parse("1").unwrap();
        let console = console_watching(&watched);
        console.record(&AppId::parse("2").unwrap(), subscribed(0));
        assert_eq!(console.stats.recorded.load(Ordering::Relaxed), 0);
        console.record(&watched, subscribed(0));
        assert_eq!(console.take_batches().len(), 1);
    }

    #[test]
    fn a_flood_fills_one_batch_and_the_rest_is_counted() {
        let app = AppId::parse("1").unwrap();
        let console = console_watching(&app);
        for n in 0..1_000 {
            console.record(&app, subscribed(n));
        }
        let batches = console.take_batches();
        let data: serde_json::Value = serde_json::from_str(&batches[0].1).unwrap();
        assert_eq!(
            data["events"].as_array().unwrap().len(),
            MAX_EVENTS_PER_BATCH
        );
        assert_eq!(data["dropped"], 1_000 - MAX_EVENTS_PER_BATCH as u64);
        assert!(batches[0].1.len() < MAX_BATCH_BYTES + 1024);
        assert!(console.take_batches().is_empty(), "the queue was emptied");
    }

    #[test]
    fn a_refresh_keeps_local_watchers_and_forgets_the_others() {
        let app = AppId::parse("1").unwrap();
        let console = console_watching(&app);
        console.set_watched(HashSet::new(), |_| true);
        assert!(console.watching(&app));
        console.set_watched(HashSet::new(), |_| false);
        assert!(!console.watching(&app));
    }
}
