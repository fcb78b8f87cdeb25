//! Messages for every node (not for a channel's subscribers): terminate a user's connections
//! wherever they are, and a channel's new subscription count for its subscribers everywhere.
//! Each node hands them to its `NodeSink` (the edge's hub), this node included.

use std::sync::Arc;

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName, UserId};

use crate::BrokerError;

/// What one node tells all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMessage {
    /// Close (4009) every connection of the app signed in as the user.
    TerminateUser { app: AppId, user: UserId },
    /// The channel now has `count` subscriptions: its subscribers get
    /// `pusher_internal:subscription_count`.
    SubscriptionCount {
        app: AppId,
        channel: ChannelName,
        count: u64,
    },
}

/// Where a node receives broadcasts.
pub trait NodeSink: Send + Sync + 'static {
    fn on_message(&self, message: &NodeMessage);
}

/// Sends a message to every node.
///
/// Exactness: `Local` hands it to its one sink before returning. A cluster implementation
/// delivers it to every live node at most once (pub/sub: a node that is down misses it, and
/// its connections are gone with it), usually within one round trip.
#[async_trait]
pub trait Broadcast: Send + Sync + 'static {
    async fn broadcast(&self, message: NodeMessage) -> Result<(), BrokerError>;
}

/// The single node's broadcast: straight to its sink.
pub struct LocalBroadcast {
    sink: Arc<dyn NodeSink>,
}

impl LocalBroadcast {
    pub fn new(sink: Arc<dyn NodeSink>) -> Self {
        Self { sink }
    }
}

#[async_trait]
impl Broadcast for LocalBroadcast {
    async fn broadcast(&self, message: NodeMessage) -> Result<(), BrokerError> {
        self.sink.on_message(&message);
        Ok(())
    }
}
