//! Fan-out between edges and the presence sets of every channel, behind one narrow trait.
//!
//! `Local` is the in-process implementation for a single node (the default). A Redis
//! implementation for many nodes implements the same trait and passes the same conformance
//! suite (`testing::conformance`).
//!
//! Architecture invariant: the broker carries frames as shared bytes and never parses them.

mod local;
pub mod testing;

use async_trait::async_trait;
use bytestring::ByteString;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use thiserror::Error;

pub use local::Local;

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
}

/// Where a broker hands publications for this node's connections.
pub trait DeliverySink: Send + Sync + 'static {
    fn deliver(&self, publication: &Publication);
}

/// The result of joining a presence channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceJoin {
    /// Every distinct member after the join, the joiner included.
    pub members: Vec<Member>,
    /// True when this is the user's first connection on the channel, so others must be told.
    pub first_for_user: bool,
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
    /// Hands `publication` to the sink of every node, this one included.
    async fn publish(&self, publication: Publication) -> Result<(), BrokerError>;

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
}
