//! `Occupancy` on Redis: subscriptions per channel, cluster-wide.
//!
//! Keys, all tagged `{app}` (one app's occupancy lives on one shard): `<ns>ot:{app}` hash of
//! channel → cluster-wide subscriptions; `<ns>on:{app}` hash of `<node>\n<channel>` → the
//! node's subscriptions; `<ns>od:{app}` hash of node → deadline (Redis time, unix ms). Each
//! change is one Lua step that returns the new total, so exactly one subscription anywhere
//! sees 1 (occupied) and one sees 0 (vacant). Every step first sweeps the nodes whose
//! deadline passed, taking their subscriptions off the totals: a dead node's channels leave
//! the counts within `heartbeat_ttl`. The sweep of a dead node reads the app's per-node hash
//! (bounded by the app's channels times nodes), once per death. A step whose sweep leaves a
//! channel at 0 returns it; this node keeps those (at most `MAX_VACATED_KEPT`) until the
//! edge takes them (`Occupancy::sweep_dead_nodes`) for `channel_vacated`, so a channel a
//! dead node vacated is reported once, by the node whose step saw it.
//!
//! A dead node's apps are also found without any step on them (`occupancy_nodes`: each
//! node's registry of its apps, under its own deadline): `sweep_dead_nodes` runs the
//! forgetting step on each app of each dead node, at most `MAX_APPS_PER_SWEEP` apps a
//! call (the rest next call), so a quiet app's vacated channels are reported too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName};
use redis::Value;

use super::connection::{Commands, RedisConnection};
use super::counters::NodeSettings;
use super::occupancy_nodes::{AfterSweep, NodeApps};
use super::periodic::Periodic;
use super::replies::{integer, malformed, text};
use super::{state_scripts, unavailable};
use crate::BrokerError;
use crate::occupancy::Occupancy;

/// Channels vacated by dead nodes' sweeps kept for the edge; beyond, the oldest go (their
/// `channel_vacated` is lost, the counts are not).
const MAX_VACATED_KEPT: usize = 4_096;
/// Dead nodes one `sweep_dead_nodes` looks for in the registries.
const MAX_DEAD_NODES_PER_SWEEP: usize = 8;
/// A call stops sweeping registered apps once this many vacated channels wait for the edge,
/// so one call's channels fit in `MAX_VACATED_KEPT` (one app's step may still return more).
const MAX_VACATED_PER_SWEEP: usize = 1_024;
/// A dead node's apps read from its registry per round trip.
const SWEEP_BATCH: usize = 100;

struct Shared {
    commands: Commands,
    namespace: String,
    settings: NodeSettings,
    /// The apps this node holds subscriptions in (for its heartbeats), and every node's.
    nodes: NodeApps,
    /// Channels a sweep of this node's steps vacated, not yet taken by the edge.
    vacated: Mutex<VecDeque<(AppId, ChannelName)>>,
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
        for app in self.nodes.beat().await {
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
    forget_node: redis::Script,
    _beats: Periodic,
}

impl RedisOccupancy {
    /// Apps of dead nodes one `sweep_dead_nodes` takes; a dead node holding more is finished
    /// by the next calls (one forgetting step per app).
    pub const MAX_APPS_PER_SWEEP: usize = 256;

    /// Connects to `url` (as `Redis::connect`). Must run in a Tokio runtime (it spawns the
    /// heartbeat task).
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
            nodes: NodeApps::new(connection.commands(), namespace, settings.clone()),
            settings,
            vacated: Mutex::default(),
            heartbeat: redis::Script::new(state_scripts::OCCUPANCY_HEARTBEAT),
        });
        let beats = {
            let shared = shared.clone();
            Periodic::every(shared.settings.heartbeat_ttl / 3, move || {
                let shared = shared.clone();
                async move { shared.beat().await }
            })
        };
        Self {
            shared,
            change: state_scripts::occupancy_change(),
            read: state_scripts::occupancy_read(),
            forget_node: state_scripts::occupancy_forget_node(),
            _beats: beats,
        }
    }

    async fn change(
        &self,
        app: &AppId,
        channel: &ChannelName,
        delta: i64,
    ) -> Result<u64, BrokerError> {
        let keys = self.shared.keys(app);
        let reply: Vec<Value> = self
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
        let total = self.take_reply(app, reply, "occupancy change")?;
        let total = integer(&total).ok_or_else(|| malformed("occupancy change"))?;
        Ok(total.max(0) as u64)
    }

    async fn read(&self, app: &AppId, channel: &str) -> Result<Value, BrokerError> {
        let keys = self.shared.keys(app);
        let reply: Vec<Value> = self
            .read
            .key(&keys.totals)
            .key(&keys.per_node)
            .key(&keys.deadlines)
            .arg(channel)
            .invoke_async(&mut self.shared.commands.clone())
            .await
            .map_err(unavailable)?;
        self.take_reply(app, reply, "occupancy read")
    }

    /// A step's `{result, {vacated channels}}`: keeps the vacated ones for the edge.
    fn take_reply(&self, app: &AppId, reply: Vec<Value>, what: &str) -> Result<Value, BrokerError> {
        let mut reply = reply.into_iter();
        let (Some(result), vacated) = (reply.next(), reply.next()) else {
            return Err(malformed(what));
        };
        if let Some(Value::Array(vacated)) = vacated {
            self.keep_vacated(app, &vacated);
        }
        Ok(result)
    }

    /// Takes `node`'s subscriptions off the app's counts, keeping the channels left at 0.
    async fn forget_node_in(&self, app: &AppId, node: &str) -> Result<(), BrokerError> {
        let keys = self.shared.keys(app);
        let vacated: Vec<Value> = self
            .forget_node
            .key(&keys.totals)
            .key(&keys.per_node)
            .key(&keys.deadlines)
            .arg(node)
            .invoke_async(&mut self.shared.commands.clone())
            .await
            .map_err(unavailable)?;
        self.keep_vacated(app, &vacated);
        Ok(())
    }

    /// Runs the forgetting step on the registered apps of nodes whose deadline passed, within
    /// this call's bounds. Two nodes sweeping one dead node at once run the same steps; only
    /// the one that took a subscription off reports its channel.
    async fn sweep_registered_dead_nodes(&self) -> Result<(), BrokerError> {
        let nodes = &self.shared.nodes;
        let mut budget = Self::MAX_APPS_PER_SWEEP;
        for node in nodes.dead_nodes(MAX_DEAD_NODES_PER_SWEEP).await? {
            loop {
                let waiting = self
                    .shared
                    .vacated
                    .lock()
                    .expect("occupancy lock poisoned")
                    .len();
                if budget == 0 || waiting >= MAX_VACATED_PER_SWEEP {
                    return Ok(());
                }
                let apps = nodes
                    .registered_apps(&node, budget.min(SWEEP_BATCH))
                    .await?;
                budget = budget.saturating_sub(apps.len());
                for entry in &apps {
                    match AppId::parse(entry) {
                        Ok(app) => self.forget_node_in(&app, &node).await?,
                        Err(_) => {
                            tracing::warn!("a malformed occupancy registry entry was dropped")
                        }
                    }
                }
                let after = nodes.swept(&node, &apps).await?;
                if apps.is_empty() || after != AfterSweep::AppsLeft {
                    break;
                }
            }
        }
        Ok(())
    }

    fn keep_vacated(&self, app: &AppId, channels: &[Value]) {
        if channels.is_empty() {
            return;
        }
        let mut kept = self.shared.vacated.lock().expect("occupancy lock poisoned");
        for channel in channels {
            let Some(channel) = text(channel).and_then(|name| ChannelName::parse(&name).ok())
            else {
                tracing::warn!("a malformed vacated channel was dropped");
                continue;
            };
            if kept.len() == MAX_VACATED_KEPT {
                kept.pop_front();
            }
            kept.push_back((app.clone(), channel));
        }
    }
}

#[async_trait]
impl Occupancy for RedisOccupancy {
    #[tracing::instrument(name = "redis.occupancy.subscribed", level = "debug", skip_all)]
    async fn subscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError> {
        // Registered before the step, so Redis never counts a subscription of this node in
        // an app its registry lacks.
        self.shared.nodes.hold(app).await?;
        let total = self.change(app, channel, 1).await;
        if total.is_err() {
            self.shared.nodes.release(app).await;
        }
        total
    }

    #[tracing::instrument(name = "redis.occupancy.unsubscribed", level = "debug", skip_all)]
    async fn unsubscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError> {
        let left = self.change(app, channel, -1).await?;
        self.shared.nodes.release(app).await;
        Ok(left)
    }

    #[tracing::instrument(name = "redis.occupancy.subscription_count", level = "debug", skip_all)]
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

    #[tracing::instrument(name = "redis.occupancy.occupied_channels", level = "debug", skip_all)]
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

    async fn sweep_dead_nodes(
        &self,
        dead: &[(AppId, String)],
    ) -> Result<Vec<(AppId, ChannelName)>, BrokerError> {
        for (app, node) in dead {
            self.forget_node_in(app, node).await?;
        }
        self.sweep_registered_dead_nodes().await?;
        let mut kept = self.shared.vacated.lock().expect("occupancy lock poisoned");
        Ok(kept.drain(..).collect())
    }
}
