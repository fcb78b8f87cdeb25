//! A connection joins or leaves a channel on this node: the hub's registry, and the node's
//! subscription at the broker (the node subscribes once per channel, however many of its
//! connections do).
//!
//! The broker is told of every local subscription, not only the first: it counts them and
//! asks its backend on the first and the last only, and a second subscriber arriving while
//! the first one's subscription is still being made waits for it there. Either way no
//! subscriber is told it is in before the node receives the channel's publications.

use std::sync::Arc;

use protocol::names::{AppId, ChannelName};

use crate::EdgeState;
use crate::outbox::Outbox;

/// `Hub::subscribe`, then the node's subscription at the broker when the connection was added.
pub(crate) async fn subscribe(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
    outbox: &Arc<Outbox>,
) -> Option<usize> {
    let added = state.hub.subscribe(app, channel, outbox);
    if added.is_some()
        && let Err(error) = state.cluster.broker.subscribe(app, channel).await
    {
        // The connection stays on the channel and gets this node's own publications; other
        // nodes' reach it once the broker is back (it resubscribes by itself).
        tracing::error!(%error, channel = channel.as_str(), "the node could not subscribe");
    }
    added
}

/// `Hub::unsubscribe`, then the broker is told when the connection was removed.
pub(crate) async fn unsubscribe(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
    outbox: &Arc<Outbox>,
) -> Option<usize> {
    let removed = state.hub.unsubscribe(app, channel, outbox);
    if removed.is_some()
        && let Err(error) = state.cluster.broker.unsubscribe(app, channel).await
    {
        tracing::warn!(%error, channel = channel.as_str(), "the node could not unsubscribe");
    }
    removed
}
