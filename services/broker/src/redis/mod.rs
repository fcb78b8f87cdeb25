//! The broker for many nodes, on Redis.
//!
//! Fan-out: every publication is one Redis step that (with history) gives it the channel's
//! serial, stamps and stores it, and `PUBLISH`es it on the channel's pub/sub channel (see
//! `scripts`). A node subscribes to a channel's pub/sub channel once, when its first local
//! subscriber arrives (`Broker::subscribe`); every delivery, to this node too, comes back
//! over that subscription, so delivery order is the order Redis ran the steps in: serial
//! order, on every node. Round trips per publication: one, whatever the number of nodes or
//! subscribers.
//!
//! Keys (see `keys`) carry the hash tag `{app:channel}`: one channel's state lives on one
//! shard, so every step is atomic there. Time for the history window comes from `Clock` as
//! unix milliseconds (nodes' clocks must agree to well within the window, as NTP gives).
//!
//! Connections (`connection`): commands and subscriptions, to one Redis or a Redis Cluster,
//! both reconnecting by themselves; subscriptions are renewed after a reconnect.

mod broadcast;
mod cache;
mod connection;
mod counters;
mod health;
mod keys;
mod occupancy;
mod occupancy_nodes;
mod periodic;
mod presence;
mod presence_scripts;
mod publish_rate;
mod replies;
mod scripts;
mod state_scripts;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use redis::Value;

use crate::budget::CHARGE_OVERHEAD;
use crate::{
    Broker, BrokerError, Clock, DeliverySink, FORGET_IDLE_CHANNELS_AFTER, History, HistoryUsage,
    Position, PresenceDeparture, PresenceJoin, Publication,
};
pub use broadcast::RedisBroadcast;
pub use cache::RedisCache;
pub use connection::RedisConnection;
use connection::{Commands, Subscriptions};
pub use counters::{NodeSettings, RedisCounters};
pub use health::{HEALTH_CHECK_EVERY, HealthReport, RedisHealthWatch};
use keys::Keys;
pub use occupancy::RedisOccupancy;
use presence::NodePresence;
pub use publish_rate::RedisPublishRates;
use replies::{Deliveries, encode_head, malformed, members, parse_history, trace_header};

use crate::trace_context::TraceParent;

/// The longest history age kept in Redis; longer windows are cut to it.
const LONGEST_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

/// Pub/sub, presence and channel history shared by every node on one Redis.
pub struct Redis {
    commands: Commands,
    subscriptions: Subscriptions,
    /// This node's subscriptions, counted, with the connection generation each was confirmed
    /// in: Redis is asked on 0 → 1 and 1 → 0 only, and again by the first subscriber after
    /// the subscription connection was lost (its automatic resubscription may not be done
    /// yet, and that subscriber reads the history next). The lock is held across the Redis
    /// call so subscribe and unsubscribe of a channel keep their order.
    subscribed: tokio::sync::Mutex<HashMap<String, (usize, u64)>>,
    /// Bumped by `Deliveries` whenever the subscription connection is lost.
    generation: Arc<AtomicU64>,
    keys: Keys,
    clock: WallClock,
    scripts: Scripts,
    /// Stored frames this node's publications evicted for their app's byte budget.
    evictions: AtomicU64,
    /// This node's presence memberships and heartbeats (see `presence`).
    presence: NodePresence,
}

struct Scripts {
    publish: redis::Script,
    history: redis::Script,
    position: redis::Script,
    charge: redis::Script,
    evict: redis::Script,
}

fn unavailable(error: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// A `Clock` read as unix ms, for times stored in Redis: anchored once to the system's wall
/// clock, so a manual clock (tests) moves it too.
struct WallClock {
    clock: Clock,
    /// The clock's reading that `wall_at_start` (unix ms) corresponds to.
    started: Instant,
    wall_at_start: u64,
}

impl WallClock {
    fn new(clock: Clock) -> Self {
        let started = clock.now();
        let wall_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        Self {
            clock,
            started,
            wall_at_start,
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.started);
        self.wall_at_start + elapsed.as_millis() as u64
    }
}

impl Redis {
    /// Connects to `url` (`redis://host:port/db`) as a node of its own (a random id, the
    /// default heartbeat ttl). Every key starts with `namespace`, so several platforms (or
    /// tests) can share one Redis. Must run in a Tokio runtime (it spawns the heartbeats).
    pub async fn connect(
        url: &str,
        namespace: &str,
        sink: Arc<dyn DeliverySink>,
        clock: Clock,
    ) -> Result<Self, BrokerError> {
        Self::connect_node(url, namespace, sink, clock, NodeSettings::new()).await
    }

    /// As `connect`, as the node `node` names: its presence members leave with its
    /// heartbeats (`node.heartbeat_ttl` after the last).
    pub async fn connect_node(
        url: &str,
        namespace: &str,
        sink: Arc<dyn DeliverySink>,
        clock: Clock,
        node: NodeSettings,
    ) -> Result<Self, BrokerError> {
        let connection = RedisConnection::open(url).await?;
        Self::on(&connection, namespace, sink, clock, node).await
    }

    /// As `connect_node`, on the node's shared command connection (with a subscription
    /// connection of its own for the deliveries).
    pub async fn on(
        connection: &RedisConnection,
        namespace: &str,
        sink: Arc<dyn DeliverySink>,
        clock: Clock,
        node: NodeSettings,
    ) -> Result<Self, BrokerError> {
        let generation = Arc::new(AtomicU64::new(0));
        let deliveries = Deliveries {
            sink,
            generation: generation.clone(),
        };
        let subscriptions = connection
            .subscriptions(move |push| deliveries.push(push))
            .await
            .map_err(unavailable)?;
        let commands = connection.commands();
        let presence = NodePresence::start(commands.clone(), namespace, node).await?;
        Ok(Self {
            commands,
            subscriptions,
            subscribed: tokio::sync::Mutex::default(),
            generation,
            keys: Keys::new(namespace),
            clock: WallClock::new(clock),
            scripts: Scripts {
                publish: scripts::publish(),
                history: scripts::history(),
                position: scripts::position(),
                charge: redis::Script::new(scripts::CHARGE),
                evict: redis::Script::new(scripts::EVICT),
            },
            evictions: AtomicU64::new(0),
            presence,
        })
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn idle_ms() -> u64 {
        FORGET_IDLE_CHANNELS_AFTER.as_millis() as u64
    }

    /// The epoch a history that starts now would get: 12 characters of `[0-9a-f]`, safe to
    /// splice into JSON unescaped.
    fn proposed_epoch() -> String {
        format!("{:012x}", rand::random::<u64>() >> 16)
    }
}

impl Redis {
    /// A watch on this broker's connections (see `health`), started once the node has
    /// somewhere to report to.
    pub fn health_watch(&self) -> RedisHealthWatch {
        RedisHealthWatch::on(self.commands.clone(), self.subscriptions.clone())
    }

    /// Charges a stored frame to its app's byte budget and evicts what the budget pops, the
    /// oldest of the app's frames first: a second round trip, and one per channel evicted
    /// from (in steady state about one per publication, whatever the number of nodes).
    #[tracing::instrument(name = "redis.charge", level = "debug", skip_all)]
    async fn charge(
        &self,
        publication: &Publication,
        epoch: &str,
        serial: u64,
        stored: usize,
        app_max_bytes: usize,
    ) -> Result<(), BrokerError> {
        let (charges, total) = self.keys.budget(&publication.app);
        let popped: Vec<String> = self
            .scripts
            .charge
            .key(&charges)
            .key(&total)
            .arg(publication.channel.as_str())
            .arg(epoch)
            .arg(serial)
            .arg(stored + CHARGE_OVERHEAD)
            .arg(app_max_bytes)
            .arg(Self::idle_ms())
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        // Through the newest popped serial of each (channel, epoch): one call per channel.
        let mut through: HashMap<(&str, &str), u64> = HashMap::new();
        for charge in popped.chunks_exact(3) {
            let serial = charge[2].parse().map_err(|_| malformed("charge"))?;
            let newest = through.entry((&charge[0], &charge[1])).or_default();
            *newest = (*newest).max(serial);
        }
        for ((channel, epoch), serial) in through {
            let channel = ChannelName::parse(channel).map_err(|_| malformed("charge"))?;
            let channel_keys = self.keys.channel(&publication.app, &channel);
            let dropped: u64 = self
                .scripts
                .evict
                .key(&channel_keys.meta)
                .key(&channel_keys.list)
                .arg(epoch)
                .arg(serial)
                .invoke_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            self.evictions.fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[async_trait]
impl Broker for Redis {
    #[tracing::instrument(name = "redis.subscribe", level = "debug", skip_all, fields(app_id = %app))]
    async fn subscribe(&self, app: &AppId, channel: &ChannelName) -> Result<(), BrokerError> {
        let name = self.keys.messages(app, channel);
        let mut subscribed = self.subscribed.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let (count, confirmed_in) = subscribed.entry(name.clone()).or_insert((0, generation));
        *count += 1;
        if *count == 1 || *confirmed_in != generation {
            let result = self.subscriptions.clone().subscribe(&name).await;
            if let Err(error) = result {
                *count -= 1;
                if *count == 0 {
                    subscribed.remove(&name);
                }
                return Err(unavailable(error));
            }
            *confirmed_in = generation;
        }
        Ok(())
    }

    #[tracing::instrument(name = "redis.unsubscribe", level = "debug", skip_all, fields(app_id = %app))]
    async fn unsubscribe(&self, app: &AppId, channel: &ChannelName) -> Result<(), BrokerError> {
        let name = self.keys.messages(app, channel);
        let mut subscribed = self.subscribed.lock().await;
        let Some((count, _)) = subscribed.get_mut(&name) else {
            return Ok(());
        };
        *count -= 1;
        if *count == 0 {
            subscribed.remove(&name);
            self.subscriptions
                .clone()
                .unsubscribe(&name)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "redis.publish", level = "debug", skip_all, fields(otel.kind = "producer", app_id = %publication.app))]
    async fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        // This span's context, so every node's delivery is its child (none with traces off).
        let headers = trace_header(TraceParent::of_current_span().as_ref());
        let head = encode_head(&publication);
        let channel_name = self.keys.messages(&publication.app, &publication.channel);
        let mut commands = self.commands.clone();
        let Some(window) = publication.history else {
            let payload = format!("{headers}\n{head}\n{}", publication.frame);
            return redis::cmd(commands.publish_command())
                .arg(&channel_name)
                .arg(payload)
                .exec_async(&mut commands)
                .await
                .map_err(unavailable);
        };
        let channel_keys = self.keys.channel(&publication.app, &publication.channel);
        // Redis takes TTLs as integers: an "unlimited" age is a long one.
        let max_age_ms = window.max_age.min(LONGEST_WINDOW).as_millis() as u64;
        let stored = self
            .scripts
            .publish
            .key(&channel_keys.meta)
            .key(&channel_keys.list)
            .arg(&*publication.frame)
            .arg(self.now_ms())
            .arg(window.max_events)
            .arg(max_age_ms)
            .arg(Self::idle_ms())
            .arg(Self::proposed_epoch())
            .arg(&channel_name)
            .arg(head)
            .arg(commands.publish_command())
            .arg(headers)
            .invoke_async::<(u64, String, usize)>(&mut commands)
            .await
            .map_err(unavailable)?;
        let (serial, epoch, stored) = stored;
        if stored == 0 || window.app_max_bytes == usize::MAX {
            return Ok(());
        }
        self.charge(&publication, &epoch, serial, stored, window.app_max_bytes)
            .await
    }

    #[tracing::instrument(name = "redis.history", level = "debug", skip_all, fields(app_id = %app))]
    async fn history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        since_serial: Option<u64>,
        epoch: Option<&str>,
    ) -> Result<History, BrokerError> {
        let channel_keys = self.keys.channel(app, channel);
        let since = since_serial.map_or(-1, |since| i64::try_from(since).unwrap_or(i64::MAX));
        let reply: Vec<Value> = self
            .scripts
            .history
            .key(&channel_keys.meta)
            .key(&channel_keys.list)
            .arg(self.now_ms())
            .arg(Self::idle_ms())
            .arg(Self::proposed_epoch())
            .arg(since)
            .arg(epoch.unwrap_or(""))
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        parse_history(&reply).ok_or_else(|| malformed("history"))
    }

    #[tracing::instrument(name = "redis.position", level = "debug", skip_all, fields(app_id = %app))]
    async fn position(&self, app: &AppId, channel: &ChannelName) -> Result<Position, BrokerError> {
        let channel_keys = self.keys.channel(app, channel);
        let (epoch, serial): (String, u64) = self
            .scripts
            .position
            .key(&channel_keys.meta)
            .arg(Self::idle_ms())
            .arg(Self::proposed_epoch())
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(Position { epoch, serial })
    }

    /// Redis holds the history: this node knows only the evictions its own publications
    /// made (bytes and channels are Redis's, see its `INFO memory`).
    fn history_usage(&self) -> HistoryUsage {
        HistoryUsage {
            evictions: self.evictions.load(Ordering::Relaxed),
            ..HistoryUsage::default()
        }
    }

    #[tracing::instrument(name = "redis.presence_join", level = "debug", skip_all, fields(app_id = %app))]
    async fn presence_join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
        member: Member,
        max_members: usize,
    ) -> Result<PresenceJoin, BrokerError> {
        self.presence
            .join(app, channel, socket, member, max_members)
            .await
    }

    #[tracing::instrument(name = "redis.presence_leave", level = "debug", skip_all, fields(app_id = %app))]
    async fn presence_leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
    ) -> Result<Option<UserId>, BrokerError> {
        self.presence.leave(app, channel, socket).await
    }

    #[tracing::instrument(name = "redis.presence_members", level = "debug", skip_all, fields(app_id = %app))]
    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<Member>, BrokerError> {
        let presence = self.keys.presence(app, channel, "");
        let reply: Value = redis::cmd("HGETALL")
            .arg(&presence.infos)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        // RESP3 answers HGETALL with a map, RESP2 with a flat array.
        let flat: Vec<Value> = match reply {
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Array(flat) => flat,
            _ => return Err(malformed("presence members")),
        };
        members(&flat)
    }

    async fn sweep_dead_nodes(&self) -> Result<Vec<PresenceDeparture>, BrokerError> {
        self.presence.sweep_dead_nodes().await
    }
}
