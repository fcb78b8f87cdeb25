//! Connection slots and daily message counts on Redis, shared by every node.
//!
//! Slots: `<ns>cs:{app}` is a hash of `c:<node>` → the node's slots and `d:<node>` → its
//! deadline (Redis time, unix ms). `acquire` is one Lua step (`state_scripts`) that sums the
//! live nodes' slots and takes one below the ceiling: exact cluster-wide, whatever the number
//! of nodes (the hash holds two fields per node). Each node moves its deadline on every
//! `heartbeat_ttl / 3`; a node that stops (crash, partition) stops counting once its deadline
//! passes, at the next step on the app, so its slots come back within `heartbeat_ttl`.
//! Releases run in the background, so a count may lag them by one round trip.
//!
//! Messages: `<ns>md:{app}:<day>` is the app's count for a UTC day, expiring two days on.
//! `add` only adds to this node's pending counts; a task flushes them every
//! `flush_interval` (one `INCRBY` per app), so another node's `today` lags by at most that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use protocol::names::AppId;

use super::connection::{Commands, RedisConnection};
use super::periodic::Periodic;
use super::{state_scripts, unavailable};
use crate::BrokerError;
use crate::counters::{ConnectionCounter, MessageCounter, SECONDS_PER_DAY};

/// How a node takes part in the cluster's shared state.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's name among the nodes on one Redis: unique per running process.
    pub node_id: String,
    /// How long a node counts after its last heartbeat (heartbeats run every third of it).
    pub heartbeat_ttl: Duration,
    /// How often pending message counts go to Redis.
    pub flush_interval: Duration,
}

impl NodeSettings {
    /// A random node id, a 9 s heartbeat ttl (a dead node stops counting within 10 s), a
    /// 100 ms flush.
    pub fn new() -> Self {
        Self {
            node_id: format!("{:016x}", rand::random::<u64>()),
            heartbeat_ttl: Duration::from_secs(9),
            flush_interval: Duration::from_millis(100),
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.heartbeat_ttl.as_millis().max(1) as u64
    }
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// Two days, so a count outlives its day whatever the nodes' clocks say.
const DAY_KEY_SECONDS: u64 = 2 * SECONDS_PER_DAY;

struct Shared {
    commands: Commands,
    namespace: String,
    settings: NodeSettings,
    /// Slots this node holds per app (for its heartbeats); apps at 0 are removed.
    held: Mutex<HashMap<AppId, u64>>,
    /// Messages added but not yet flushed, per (app, UTC day).
    pending: Mutex<HashMap<(AppId, u64), u64>>,
    /// Held by a flush from taking `pending` until its increments have landed, and by `today`
    /// around its read: otherwise a read between the two would miss the counts in flight.
    flush_gate: tokio::sync::Mutex<()>,
    release: redis::Script,
    heartbeat: redis::Script,
}

impl Shared {
    fn slots_key(&self, app: &AppId) -> String {
        format!("{}cs:{{{}}}", self.namespace, app.as_str())
    }

    fn day_key(&self, app: &AppId, day: u64) -> String {
        format!("{}md:{{{}}}:{day}", self.namespace, app.as_str())
    }

    async fn beat(&self) {
        let held: Vec<(AppId, u64)> = {
            let held = self.held.lock().expect("slots lock poisoned");
            held.iter().map(|(app, n)| (app.clone(), *n)).collect()
        };
        for (app, slots) in held {
            let result: Result<(), _> = self
                .heartbeat
                .key(self.slots_key(&app))
                .arg(&self.settings.node_id)
                .arg(slots)
                .arg(self.settings.ttl_ms())
                .invoke_async(&mut self.commands.clone())
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, "a connection-slot heartbeat failed");
            }
        }
    }

    async fn flush(&self) {
        let _gate = self.flush_gate.lock().await;
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending lock poisoned"));
        for ((app, day), messages) in pending {
            let key = self.day_key(&app, day);
            let result: Result<(), _> = redis::pipe()
                .incr(&key, messages)
                .ignore()
                .expire(&key, DAY_KEY_SECONDS as i64)
                .ignore()
                .query_async(&mut self.commands.clone())
                .await;
            if let Err(error) = result {
                // Kept for the next flush: counts are never lost to a Redis hiccup.
                tracing::warn!(%error, "flushing message counts failed");
                *self
                    .pending
                    .lock()
                    .expect("pending lock poisoned")
                    .entry((app, day))
                    .or_default() += messages;
            }
        }
    }
}

/// `ConnectionCounter` and `MessageCounter` on Redis. Dropping it stops its heartbeats and
/// flushes (as a crash would: its slots expire with its deadline).
pub struct RedisCounters {
    shared: Arc<Shared>,
    acquire: redis::Script,
    count: redis::Script,
    _tasks: [Periodic; 2],
}

impl RedisCounters {
    /// Connects to `url` (as `Redis::connect`); keys start with `namespace`. Must run in a
    /// Tokio runtime: it spawns the heartbeat and flush tasks.
    pub async fn connect(
        url: &str,
        namespace: &str,
        settings: NodeSettings,
    ) -> Result<Self, BrokerError> {
        Ok(Self::on(
            &RedisConnection::open(url).await?,
            namespace,
            settings,
        ))
    }

    /// As `connect`, on the node's shared command connection.
    pub fn on(connection: &RedisConnection, namespace: &str, settings: NodeSettings) -> Self {
        let shared = Arc::new(Shared {
            commands: connection.commands(),
            namespace: namespace.to_owned(),
            settings,
            held: Mutex::default(),
            pending: Mutex::default(),
            flush_gate: tokio::sync::Mutex::new(()),
            release: redis::Script::new(state_scripts::RELEASE),
            heartbeat: state_scripts::slots_heartbeat(),
        });
        let beats = {
            let shared = shared.clone();
            Periodic::every(shared.settings.heartbeat_ttl / 3, move || {
                let shared = shared.clone();
                async move { shared.beat().await }
            })
        };
        let flushes = {
            let shared = shared.clone();
            Periodic::every(shared.settings.flush_interval, move || {
                let shared = shared.clone();
                async move { shared.flush().await }
            })
        };
        Self {
            shared,
            acquire: state_scripts::acquire(),
            count: state_scripts::count(),
            _tasks: [beats, flushes],
        }
    }
}

#[async_trait]
impl ConnectionCounter for RedisCounters {
    #[tracing::instrument(name = "redis.counters.acquire_counted", level = "debug", skip_all)]
    async fn acquire_counted(
        &self,
        app: &AppId,
        ceiling: Option<u64>,
    ) -> Result<Option<u64>, BrokerError> {
        let ceiling = ceiling.map_or(-1, |ceiling| i64::try_from(ceiling).unwrap_or(i64::MAX));
        // The step runs in a task of its own so a dropped call holds no slot: if nobody
        // waits for the answer any more, a slot it took is given back.
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (shared, script, app) = (self.shared.clone(), self.acquire.clone(), app.clone());
        tokio::spawn(async move {
            let taken: Result<i64, _> = script
                .key(shared.slots_key(&app))
                .arg(&shared.settings.node_id)
                .arg(ceiling)
                .arg(shared.settings.ttl_ms())
                .invoke_async(&mut shared.commands.clone())
                .await;
            let taken = taken
                .map(|after| u64::try_from(after).ok().filter(|&after| after > 0))
                .map_err(unavailable);
            if let Ok(Some(_)) = taken {
                *shared
                    .held
                    .lock()
                    .expect("slots lock poisoned")
                    .entry(app.clone())
                    .or_default() += 1;
            }
            if let Err(Ok(Some(_))) = answer.send(taken) {
                forget_one(&shared, &app);
                release_in_background(shared, app);
            }
        });
        answered
            .await
            .map_err(|_| BrokerError::Unavailable("the acquire task ended".into()))?
    }

    fn release(&self, app: &AppId) {
        if !forget_one(&self.shared, app) {
            return;
        }
        release_in_background(self.shared.clone(), app.clone());
    }

    #[tracing::instrument(name = "redis.counters.count", level = "debug", skip_all)]
    async fn count(&self, app: &AppId) -> Result<u64, BrokerError> {
        self.count
            .key(self.shared.slots_key(app))
            .invoke_async(&mut self.shared.commands.clone())
            .await
            .map_err(unavailable)
    }
}

/// Gives back one of this node's slots of `app` in Redis (its books already show it gone).
fn release_in_background(shared: Arc<Shared>, app: AppId) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let result: Result<(), _> = shared
            .release
            .key(shared.slots_key(&app))
            .arg(&shared.settings.node_id)
            .invoke_async(&mut shared.commands.clone())
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "releasing a connection slot failed");
        }
    });
}

/// Takes one of this node's slots of `app` off its books; `false`: it held none.
fn forget_one(shared: &Shared, app: &AppId) -> bool {
    let mut held = shared.held.lock().expect("slots lock poisoned");
    let Some(slots) = held.get_mut(app) else {
        return false;
    };
    *slots -= 1;
    if *slots == 0 {
        held.remove(app);
    }
    true
}

#[async_trait]
impl MessageCounter for RedisCounters {
    fn add(&self, app: &AppId, messages: u64, now_unix_secs: u64) {
        let day = now_unix_secs / SECONDS_PER_DAY;
        let mut pending = self.shared.pending.lock().expect("pending lock poisoned");
        let count = pending.entry((app.clone(), day)).or_default();
        *count = count.saturating_add(messages);
    }

    #[tracing::instrument(name = "redis.counters.today", level = "debug", skip_all)]
    async fn today(&self, app: &AppId, now_unix_secs: u64) -> Result<u64, BrokerError> {
        let day = now_unix_secs / SECONDS_PER_DAY;
        let _gate = self.shared.flush_gate.lock().await;
        let flushed: Option<u64> = redis::cmd("GET")
            .arg(self.shared.day_key(app, day))
            .query_async(&mut self.shared.commands.clone())
            .await
            .map_err(unavailable)?;
        let pending = self
            .shared
            .pending
            .lock()
            .expect("pending lock poisoned")
            .get(&(app.clone(), day))
            .copied()
            .unwrap_or(0);
        Ok(flushed.unwrap_or(0).saturating_add(pending))
    }
}
