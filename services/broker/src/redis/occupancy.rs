//! `Occupancy` on Redis: subscriptions per channel, cluster-wide.
//!
//! Keys, all tagged `{app}` (one app's occupancy lives on one shard): `<ns>ot:{app}` hash of
//! channel → cluster-wide subscriptions; `<ns>on:{app}` hash of `<node>\n<channel>` → the
//! node's subscriptions; `<ns>od:{app}` hash of node → deadline (Redis time, unix ms). Each
//! change is one Lua step that returns the new total, so exactly one subscription anywhere
//! sees 1 (occupied) and one sees 0 (vacant). Every step first sweeps the nodes whose
//! deadline passed, taking their subscriptions off the totals: a dead node's channels leave
//! the counts within `heartbeat_ttl`. The sweep of a dead node reads the app's per-node hash
//! (bounded by the app's channels times nodes), once per death.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName};
use redis::Value;

use super::connection::{self, Commands};
use super::counters::NodeSettings;
use super::replies::{integer, malformed};
use super::{state_scripts, unavailable};
use crate::BrokerError;
use crate::occupancy::Occupancy;

struct Shared {
    commands: Commands,
    namespace: String,
    settings: NodeSettings,
    /// This node's subscriptions per app (for its heartbeats); apps at 0 are removed.
    held: Mutex<HashMap<AppId, u64>>,
    heartbeat: redis::Script,
}

struct AppKeys {
    totals: String,
    per_node: String,
    deadlines: String,
}

impl Shared {
    fn keys(&self, app: &AppId) -> AppKeys {
        let (ns, tag) = (&self.namespace, app.as_str());
        AppKeys {
            totals: format!("{ns}ot:{{{tag}}}"),
            per_node: format!("{ns}on:{{{tag}}}"),
            deadlines: format!("{ns}od:{{{tag}}}"),
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.settings.heartbeat_ttl.as_millis().max(1) as u64
    }

    async fn beat(&self) {
        let apps: Vec<AppId> = {
            let held = self.held.lock().expect("occupancy lock poisoned");
            held.keys().cloned().collect()
        };
        for app in apps {
            let result: Result<(), _> = self
                .heartbeat
                .key(self.keys(&app).deadlines)
                .arg(&self.settings.node_id)
                .arg(self.ttl_ms())
                .invoke_async(&mut self.commands.clone())
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, "an occupancy heartbeat failed");
            }
        }
    }
}

/// Occupancy shared by every node on one Redis. Dropping it stops its heartbeats.
pub struct RedisOccupancy {
    shared: Arc<Shared>,
    change: redis::Script,
    read: redis::Script,
    beats: tokio::task::JoinHandle<()>,
}

impl RedisOccupancy {
    /// Pings this part's connection with the node's other Redis parts (see `RedisHealthWatch`).
    pub fn health_watch(&self) -> super::RedisHealthWatch {
        super::RedisHealthWatch::on_commands(self.shared.commands.clone())
    }

    /// Connects to `url` (as `Redis::connect`). Must run in a Tokio runtime (it spawns the
    /// heartbeat task).
    pub async fn connect(
        url: &str,
        namespace: &str,
        settings: NodeSettings,
    ) -> Result<Self, BrokerError> {
        let (commands, _) = connection::open(url, |_| {}).await.map_err(unavailable)?;
        let shared = Arc::new(Shared {
            commands,
            namespace: namespace.to_owned(),
            settings,
            held: Mutex::default(),
            heartbeat: redis::Script::new(state_scripts::OCCUPANCY_HEARTBEAT),
        });
        let beats = {
            let shared = shared.clone();
            let every = (shared.settings.heartbeat_ttl / 3).max(Duration::from_millis(1));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    shared.beat().await;
                }
            })
        };
        Ok(Self {
            shared,
            change: state_scripts::occupancy_change(),
            read: state_scripts::occupancy_read(),
            beats,
        })
    }

    async fn change(
        &self,
        app: &AppId,
        channel: &ChannelName,
        delta: i64,
    ) -> Result<u64, BrokerError> {
        let keys = self.shared.keys(app);
        let total: i64 = self
            .change
            .key(&keys.totals)
            .key(&keys.per_node)
            .key(&keys.deadlines)
            .arg(&self.shared.settings.node_id)
            .arg(channel.as_str())
            .arg(delta)
            .arg(self.shared.ttl_ms())
            .invoke_async(&mut self.shared.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(total.max(0) as u64)
    }

    async fn read(&self, app: &AppId, channel: &str) -> Result<Value, BrokerError> {
        let keys = self.shared.keys(app);
        self.read
            .key(&keys.totals)
            .key(&keys.per_node)
            .key(&keys.deadlines)
            .arg(channel)
            .invoke_async(&mut self.shared.commands.clone())
            .await
            .map_err(unavailable)
    }
}

impl Drop for RedisOccupancy {
    fn drop(&mut self) {
        self.beats.abort();
    }
}

#[async_trait]
impl Occupancy for RedisOccupancy {
    async fn subscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError> {
        let total = self.change(app, channel, 1).await?;
        *self
            .shared
            .held
            .lock()
            .expect("occupancy lock poisoned")
            .entry(app.clone())
            .or_default() += 1;
        Ok(total)
    }

    async fn unsubscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError> {
        let left = self.change(app, channel, -1).await?;
        let mut held = self.shared.held.lock().expect("occupancy lock poisoned");
        if let Some(count) = held.get_mut(app) {
            *count -= 1;
            if *count == 0 {
                held.remove(app);
            }
        }
        Ok(left)
    }

    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<u64, BrokerError> {
        let reply = self.read(app, channel.as_str()).await?;
        integer(&reply)
            .map(|count| count.max(0) as u64)
            .ok_or_else(|| malformed("subscription count"))
    }

    async fn occupied_channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, u64)>, BrokerError> {
        // An empty channel argument asks for all; the prefix is filtered here, not as a
        // glob pattern, so no character of it is special.
        let flat: Vec<Value> = match self.read(app, "").await? {
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Array(flat) => flat,
            _ => return Err(malformed("occupied channels")),
        };
        let mut occupied = Vec::new();
        for pair in flat.chunks_exact(2) {
            let name = match &pair[0] {
                Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
                Value::SimpleString(name) => Some(name.as_str()),
                _ => None,
            }
            .ok_or_else(|| malformed("occupied channels"))?;
            if !name.starts_with(prefix) {
                continue;
            }
            let channel = ChannelName::parse(name).map_err(|_| malformed("occupied channels"))?;
            let count = integer(&pair[1]).ok_or_else(|| malformed("occupied channels"))?;
            if count > 0 {
                occupied.push((channel, count as u64));
            }
        }
        occupied.sort();
        Ok(occupied)
    }
}
