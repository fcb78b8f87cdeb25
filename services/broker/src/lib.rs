//! Fan-out between edges and the presence sets of every channel, behind one narrow trait,
//! and beside it every other piece of cluster-wide state behind its own (`counters`,
//! `occupancy`, `broadcast`, `cache`), grouped in `Cluster`.
//!
//! `Local` is the in-process implementation for a single node (the default). A Redis
//! implementation for many nodes implements the same trait and passes the same conformance
//! suite (`testing::conformance`).
//!
//! Every publication that carries a `HistoryWindow` gets the channel's next serial and goes
//! into the channel's bounded history (`history`); `Broker::history` replays it after a
//! serial, for resume and the history API. History memory is bounded by byte budgets per
//! app and per node (`budget`) and by a number of channels per app.
//!
//! `Redis` (`redis`) is the implementation for many nodes: fan-out over Redis pub/sub, with
//! each node subscribed once per channel (`Broker::subscribe`), serials and history in one
//! Lua step per publication, presence in hashes.
//!
//! Architecture invariant: the broker carries frames as shared bytes and never parses them
//! (stamping a serial is a byte splice, see `history::stamp`).

pub mod broadcast;
mod budget;
pub mod cache;
mod clock;
mod cluster;
pub mod counters;
mod history;
mod local;
pub mod occupancy;
mod redis;
pub mod testing;
pub mod trace_context;

use async_trait::async_trait;
use bytestring::ByteString;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use thiserror::Error;

pub use clock::Clock;
pub use cluster::{Cluster, LocalSpec};
pub use history::{ChannelHistory, HistoryWindow, read_stamp, stamp};
pub use local::{FORGET_IDLE_CHANNELS_AFTER, HistoryLimits, Local};
pub use redis::{
    HEALTH_CHECK_EVERY, HealthReport, NodeSettings, Redis, RedisBroadcast, RedisCache,
    RedisConnection, RedisCounters, RedisHealthWatch, RedisOccupancy, RedisPublishRates,
};

/// One event for one channel of one app, serialised once and shared by every subscriber.
#[derive(Debug, Clone)]
pub struct Publication {
    pub app: AppId,
    pub channel: ChannelName,
    /// The complete frame, as subscribers receive it.
    pub frame: ByteString,
    /// A connection that must not receive it (the sender of a client event, or the
    /// `socket_id` a publisher excluded), carried raw so exclusion works on every node.
    pub except: Option<SocketId>,
    /// Channel events (API and client events) carry their plan's window: the broker gives them
    /// a serial, stamps the frame and keeps it. Protocol frames (`member_added`,
    /// `member_removed`, `subscription_count`) carry `None`: no serial, not kept.
    pub history: Option<HistoryWindow>,
    /// The serial the broker gave the publication, as sinks see it; publishers leave `None`.
    pub serial: Option<u64>,
}

/// What a channel's history holds after a serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// Every stored frame after the serial asked for, oldest first, with its serial.
    Replay {
        epoch: String,
        /// The channel's last serial (0 before its first publication).
        latest: u64,
        frames: Vec<(u64, ByteString)>,
    },
    /// Some frames after the serial asked for are gone (outside the window), the client holds
    /// another epoch, or the serial was never reached in this epoch.
    Gap {
        epoch: String,
        latest: u64,
        /// The oldest serial still stored; `latest + 1` when nothing is.
        oldest_available: u64,
    },
}

/// Where a channel's history stands: what a new subscriber is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    /// The channel's last serial (0 before its first publication).
    pub serial: u64,
}

/// What a broker's history holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryUsage {
    /// Bytes of stored frames (and their bookkeeping) charged to the byte budgets.
    pub bytes: u64,
    /// Stored frames evicted because an app or the node was over its byte budget.
    pub evictions: u64,
    /// Channels with a history slot.
    pub channels: u64,
    /// Slots evicted because their app had too many.
    pub evicted_channels: u64,
}

/// Where a broker hands publications for this node's connections.
pub trait DeliverySink: Send + Sync + 'static {
    fn deliver(&self, publication: &Publication);

    /// Publications meant for this node may have been missed (a broker for many nodes lost
    /// its subscription connection): every local subscriber must resume, so a gap is replayed
    /// from the history or reported, never silent. `Local` never calls it.
    fn deliveries_interrupted(&self);
}

/// The result of joining a presence channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceJoin {
    /// Every distinct member after the join, the joiner included.
    pub members: Vec<Member>,
    /// True when this is the user's first connection on the channel, so others must be told.
    pub first_for_user: bool,
}

/// A presence member whose last connection was on a node that stopped heartbeating: taken
/// off the channel by `Broker::sweep_dead_nodes`, reported once cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceDeparture {
    pub app: AppId,
    pub channel: ChannelName,
    pub user: UserId,
    /// The dead node's id.
    pub node: String,
}

#[derive(Debug, Error)]
pub enum BrokerError {
    /// Not an outage: the presence channel already has its plan's maximum of distinct users.
    #[error("presence channel is full ({max} members)")]
    PresenceFull { max: usize },
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Pub/sub and presence across every edge node.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A connection of this node joined the channel (`edge::node_subscriptions` calls it for
    /// every one). The broker counts them and subscribes the node on the first; it returns
    /// once the node receives the channel's publications, also for a connection that joined
    /// while the first one's subscription was still being made. A no-op for `Local`, whose
    /// publications reach the sink whatever.
    async fn subscribe(&self, _app: &AppId, _channel: &ChannelName) -> Result<(), BrokerError> {
        Ok(())
    }

    /// A connection of this node left the channel; the node unsubscribes with the last one.
    /// Calls are balanced with `subscribe`.
    async fn unsubscribe(&self, _app: &AppId, _channel: &ChannelName) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Hands `publication` to the sink of every node subscribed to its channel (for `Local`,
    /// this one, always). With a history window it first gets the channel's next serial, its
    /// frame is stamped and stored; serial order, history order and delivery order are one
    /// order.
    async fn publish(&self, publication: Publication) -> Result<(), BrokerError>;

    /// The stored frames after `since_serial` (all of them for `None`), or `History::Gap`
    /// when any of them is gone (outside the window, or evicted by a byte budget) or `epoch`
    /// is not the channel's. A channel with no history reads as one just started.
    async fn history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        since_serial: Option<u64>,
        epoch: Option<&str>,
    ) -> Result<History, BrokerError>;

    /// The channel's epoch and last serial, so a new subscriber knows where it stands without
    /// copying any frame. A channel never published to gets no state: it is at serial 0 of
    /// the epoch its first publication will carry.
    async fn position(&self, app: &AppId, channel: &ChannelName) -> Result<Position, BrokerError>;

    /// What the history holds now.
    fn history_usage(&self) -> HistoryUsage;

    /// Adds `socket` to the channel as `member`. Joining twice with one socket is a no-op; a
    /// new user beyond `max_members` distinct users is refused with `PresenceFull`.
    async fn presence_join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
        member: Member,
        max_members: usize,
    ) -> Result<PresenceJoin, BrokerError>;

    /// Removes `socket` from the channel; returns the user when it was their last connection.
    async fn presence_leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
    ) -> Result<Option<UserId>, BrokerError>;

    /// Distinct members of the channel, ordered by user id.
    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<Member>, BrokerError>;

    /// Takes the presence memberships of nodes that stopped heartbeating off their channels
    /// and returns each user whose last connection that was, so the caller announces them
    /// (`member_removed`). Each departure is returned once cluster-wide, to whichever node's
    /// sweep took it; a sweep does a bounded amount of work. Every node calls it
    /// periodically; `Local` (one node, which cannot outlive itself) has nothing to sweep.
    async fn sweep_dead_nodes(&self) -> Result<Vec<PresenceDeparture>, BrokerError> {
        Ok(Vec::new())
    }
}
