//! How many subscriptions each channel has, cluster-wide: for the channel queries
//! (`/channels`, `/channels/{name}`), `subscription_count`, and deciding that a channel became
//! occupied (first subscription anywhere) or vacant (last one gone), so `channel_occupied` /
//! `channel_vacated` fire once per cluster. User counts are presence's (`Broker`).
//!
//! The edge's hub keeps its own connections per channel (for fan-out); it reports each
//! subscription it adds or removes here, once.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName};

use crate::BrokerError;

/// Subscriptions per channel across every node.
///
/// Exactness: `Local` is exact. A cluster implementation counts per node (one atomic step
/// per change, returning the cluster total), so `subscribed` returning 1 and `unsubscribed`
/// returning 0 happen once per cluster; a dead node's subscriptions leave the counts within
/// its heartbeat window, and the channels that empties are reported by `sweep_dead_nodes`
/// within the window plus one call.
#[async_trait]
pub trait Occupancy: Send + Sync + 'static {
    /// One more subscription of the channel; the cluster-wide count after it (1: the channel
    /// became occupied).
    async fn subscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError>;

    /// One subscription fewer; the count left (0: the channel became vacant). A channel with
    /// none stays at 0.
    async fn unsubscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError>;

    /// The channel's subscriptions now (a snapshot: exact at the moment of the read).
    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<u64, BrokerError>;

    /// The app's occupied channels whose names start with `prefix`, with their counts,
    /// sorted by name (a snapshot; a cluster implementation may read channel by channel, so
    /// a channel changing meanwhile shows either count).
    async fn occupied_channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, u64)>, BrokerError>;

    /// Takes the subscriptions of nodes found dead (each with an app it held presence in, as
    /// `Broker::sweep_dead_nodes` reports them) off that app's counts, and those of the
    /// dead nodes the implementation finds itself in every app they held subscriptions in
    /// (so an app nobody touches is vacated too; bounded per call, the rest next call), and
    /// returns every channel a dead node's leaving made vacant since the last call, here or
    /// in this node's other steps: each once cluster-wide, for `channel_vacated`. The edge
    /// calls it every second. `Local` (one node) has none.
    async fn sweep_dead_nodes(
        &self,
        _dead: &[(AppId, String)],
    ) -> Result<Vec<(AppId, ChannelName)>, BrokerError> {
        Ok(Vec::new())
    }
}

/// Counts in memory: one entry per occupied channel (so bounded by the subscriptions).
#[derive(Default)]
pub struct LocalOccupancy {
    counts: Mutex<HashMap<AppId, HashMap<ChannelName, u64>>>,
}

#[async_trait]
impl Occupancy for LocalOccupancy {
    async fn subscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError> {
        let mut counts = self.counts.lock().expect("occupancy lock poisoned");
        let count = counts
            .entry(app.clone())
            .or_default()
            .entry(channel.clone())
            .or_insert(0);
        *count += 1;
        Ok(*count)
    }

    async fn unsubscribed(&self, app: &AppId, channel: &ChannelName) -> Result<u64, BrokerError> {
        let mut counts = self.counts.lock().expect("occupancy lock poisoned");
        let Some(of_app) = counts.get_mut(app) else {
            return Ok(0);
        };
        let Some(count) = of_app.get_mut(channel) else {
            return Ok(0);
        };
        *count = count.saturating_sub(1);
        let left = *count;
        if left == 0 {
            of_app.remove(channel);
            if of_app.is_empty() {
                counts.remove(app);
            }
        }
        Ok(left)
    }

    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<u64, BrokerError> {
        let counts = self.counts.lock().expect("occupancy lock poisoned");
        Ok(counts
            .get(app)
            .and_then(|of_app| of_app.get(channel))
            .copied()
            .unwrap_or(0))
    }

    async fn occupied_channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, u64)>, BrokerError> {
        let counts = self.counts.lock().expect("occupancy lock poisoned");
        let mut occupied: Vec<(ChannelName, u64)> = counts
            .get(app)
            .into_iter()
            .flatten()
            .filter(|(channel, _)| channel.as_str().starts_with(prefix))
            .map(|(channel, count)| (channel.clone(), *count))
            .collect();
        occupied.sort();
        Ok(occupied)
    }
}
