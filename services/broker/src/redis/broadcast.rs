//! `RedisBroadcast`: node messages over one pub/sub channel that every node subscribes to
//! (`<ns>n:{nodes}`), on a subscription connection of its own. A message is published once and
//! reaches every live node's `NodeSink`, this one included; a node that is down (or between
//! reconnects) misses it, as the trait allows.
//!
//! Payloads: `t\napp\nuser` (terminate a user), `s\napp\ncount\nchannel` (subscription count).

use std::sync::Arc;

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName, UserId};
use redis::PushInfo;

use super::connection::{Commands, RedisConnection, message_payload};
use super::unavailable;
use crate::BrokerError;
use crate::broadcast::{Broadcast, NodeMessage, NodeSink};

/// Broadcasts to every node on one Redis (or Redis Cluster).
pub struct RedisBroadcast {
    commands: Commands,
    channel: String,
    subscriptions: super::connection::Subscriptions,
}

impl RedisBroadcast {
    /// Connects to `url` and subscribes this node's `sink` to every node's broadcasts in
    /// `namespace`.
    pub async fn connect(
        url: &str,
        namespace: &str,
        sink: Arc<dyn NodeSink>,
    ) -> Result<Self, BrokerError> {
        Self::on(&RedisConnection::open(url).await?, namespace, sink).await
    }

    /// As `connect`, on the node's shared command connection (with a subscription connection
    /// of its own).
    pub async fn on(
        connection: &RedisConnection,
        namespace: &str,
        sink: Arc<dyn NodeSink>,
    ) -> Result<Self, BrokerError> {
        let commands = connection.commands();
        let mut subscriptions = connection
            .subscriptions(move |push| receive(sink.as_ref(), push))
            .await
            .map_err(unavailable)?;
        let channel = format!("{namespace}n:{{nodes}}");
        subscriptions
            .subscribe(&channel)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            commands,
            channel,
            subscriptions,
        })
    }

    /// A watch on this part's connections (see `health`).
    pub fn health_watch(&self) -> super::RedisHealthWatch {
        super::RedisHealthWatch::on(self.commands.clone(), self.subscriptions.clone())
    }
}

#[async_trait]
impl Broadcast for RedisBroadcast {
    #[tracing::instrument(name = "redis.broadcast.broadcast", level = "debug", skip_all)]
    async fn broadcast(&self, message: NodeMessage) -> Result<(), BrokerError> {
        let mut commands = self.commands.clone();
        redis::cmd(commands.publish_command())
            .arg(&self.channel)
            .arg(encode(&message))
            .exec_async(&mut commands)
            .await
            .map_err(unavailable)
    }
}

fn encode(message: &NodeMessage) -> String {
    match message {
        NodeMessage::TerminateUser { app, user } => {
            format!("t\n{}\n{}", app.as_str(), user.as_str())
        }
        NodeMessage::SubscriptionCount {
            app,
            channel,
            count,
        } => format!("s\n{}\n{count}\n{}", app.as_str(), channel.as_str()),
    }
}

fn decode(payload: &[u8]) -> Option<NodeMessage> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(3, '\n');
    let kind = parts.next()?;
    let app = AppId::parse(parts.next()?).ok()?;
    let rest = parts.next()?;
    match kind {
        "t" => Some(NodeMessage::TerminateUser {
            app,
            user: UserId::parse(rest).ok()?,
        }),
        "s" => {
            let (count, channel) = rest.split_once('\n')?;
            Some(NodeMessage::SubscriptionCount {
                app,
                count: count.parse().ok()?,
                channel: ChannelName::parse(channel).ok()?,
            })
        }
        _ => None,
    }
}

fn receive(sink: &dyn NodeSink, push: PushInfo) {
    let Some(payload) = message_payload(&push, "broadcasts") else {
        return;
    };
    match decode(payload) {
        Some(message) => sink.on_message(&message),
        None => tracing::warn!("a malformed node broadcast was dropped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_encoding_and_garbage_is_dropped() {
        let app = AppId::parse("a").unwrap();
        for message in [
            NodeMessage::TerminateUser {
                app: app.clone(),
                user: UserId::parse("u1").unwrap(),
            },
            NodeMessage::SubscriptionCount {
                app,
                channel: ChannelName::parse("presence-x").unwrap(),
                count: 7,
            },
        ] {
            assert_eq!(decode(encode(&message).as_bytes()), Some(message));
        }
        assert_eq!(decode(b"s\na\nnot-a-number\nc"), None);
        assert_eq!(decode(b"x\na\nb"), None);
        assert_eq!(decode(&[0xff, 0xfe]), None);
    }
}
