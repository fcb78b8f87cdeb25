//! `Cluster`: every piece of state an edge shares with the other nodes, each behind its own
//! narrow trait. The binary builds one (`Cluster::local` for a single node) and hands it to
//! the edge, which never picks an implementation.

use std::sync::Arc;

use crate::broadcast::{Broadcast, LocalBroadcast, NodeSink};
use crate::cache::{CacheChannels, CacheLimits, LocalCache};
use crate::counters::{
    ConnectionCounter, LocalConnections, LocalPublishRates, MessageCounter, PublishRate,
};
use crate::occupancy::{LocalOccupancy, Occupancy};
use crate::{Broker, Clock, DeliverySink, HistoryLimits, Local};

/// The cluster-wide state, as one set of parts.
#[derive(Clone)]
pub struct Cluster {
    /// Fan-out, serials and history, presence.
    pub broker: Arc<dyn Broker>,
    pub connections: Arc<dyn ConnectionCounter>,
    pub messages: Arc<dyn MessageCounter>,
    pub publish_rates: Arc<dyn PublishRate>,
    pub occupancy: Arc<dyn Occupancy>,
    pub broadcast: Arc<dyn Broadcast>,
    pub cache: Arc<dyn CacheChannels>,
}

/// What a single node's in-process cluster is made from.
pub struct LocalSpec<Node> {
    /// The node's hub: it receives publications and broadcasts.
    pub node: Arc<Node>,
    /// The counter the hub adds deliveries to (it exists before the hub).
    pub messages: Arc<dyn MessageCounter>,
    pub clock: Clock,
    /// Bounds of history and, counted apart, of cache channels.
    pub history: HistoryLimits,
}

impl Cluster {
    /// Every part in process memory: one node, exact counts.
    pub fn local<Node: DeliverySink + NodeSink>(spec: LocalSpec<Node>) -> Self {
        let cache = CacheLimits {
            max_bytes: spec.history.max_bytes,
            max_channels_per_app: spec.history.max_channels_per_app,
        };
        Self {
            broker: Arc::new(Local::with_limits(
                spec.node.clone(),
                spec.clock.clone(),
                spec.history,
            )),
            connections: Arc::new(LocalConnections::default()),
            messages: spec.messages,
            publish_rates: Arc::new(LocalPublishRates::default()),
            occupancy: Arc::new(LocalOccupancy::default()),
            broadcast: Arc::new(LocalBroadcast::new(spec.node)),
            cache: Arc::new(LocalCache::new(cache, spec.clock)),
        }
    }
}
