//! Cache channels (`cache-`, `private-cache-`, `private-encrypted-cache-`, `presence-cache-`):
//! the last event published through the HTTP API on each, per app, for up to 30 minutes.
//! A new subscriber gets it right after `subscription_succeeded`, or `pusher:cache_miss` when
//! there is none. Client events are not cached, as on Pusher.

mod local;

use async_trait::async_trait;
use bytestring::ByteString;
use protocol::names::{AppId, ChannelName};

use crate::BrokerError;

pub use local::{CACHE_TTL, CacheLimits, LocalCache, MISS_REPORT_INTERVAL};

/// Whether the channel's name makes it a cache channel.
pub fn is_cache_channel(channel: &ChannelName) -> bool {
    let name = channel.as_str();
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// What a subscriber of a cache channel gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The cached event's frame.
    Hit(ByteString),
    /// Nothing cached; `report` says whether to send the `cache_miss` webhook (the first miss
    /// in a while).
    Miss { report: bool },
}

/// What the cache holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub bytes: u64,
    pub evictions: u64,
    pub channels: u64,
}

/// The last API event of every cache channel.
///
/// Exactness: `Local` is exact on its node. A cluster implementation keeps one entry per
/// channel for the cluster (the last `store` to reach it wins, like the events' own order
/// between concurrent publishers) and reports a miss at most once per
/// `MISS_REPORT_INTERVAL` per channel cluster-wide, give or take concurrent first misses.
#[async_trait]
pub trait CacheChannels: Send + Sync + 'static {
    /// Remembers `frame` (and its `data`, for `info=cache`) as the channel's last event,
    /// within the app's `app_max_bytes`; channels that are not cache channels are ignored.
    async fn store(
        &self,
        app: &AppId,
        channel: &ChannelName,
        data: &str,
        frame: &str,
        app_max_bytes: usize,
    ) -> Result<(), BrokerError>;

    /// What a new subscriber gets; `None` for a channel that is not a cache channel. An event
    /// stored before the call returns is a hit on every node (a cluster implementation
    /// writes through).
    async fn replay(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<Replay>, BrokerError>;

    /// The cached event's data and its remaining whole seconds, for `info=cache`.
    async fn peek(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<(String, u64)>, BrokerError>;

    /// What this node's cache holds (a cluster implementation: what it holds in memory).
    fn usage(&self) -> CacheUsage;
}
