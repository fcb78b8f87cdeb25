//! A node's connections to Redis, a single server (`redis://host:port/db`) or a Redis
//! Cluster (`redis+cluster://host:port,host:port,...`, any of its masters): one command
//! connection all of its parts share (`RedisConnection`), and one subscription connection
//! for each part that receives (the broker's deliveries, the broadcasts). All reconnect by
//! themselves; subscriptions are renewed after a reconnect.
//!
//! On a single server fan-out uses `SUBSCRIBE` / `PUBLISH`; on a cluster sharded pub/sub,
//! `SSUBSCRIBE` / `SPUBLISH`, so a publication goes only to the shard that owns its channel
//! (the pub/sub channel carries the channel's hash tag) rather than to every shard.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, PushKind, RedisFuture, RedisResult, Value};

/// The command connection, cheap to clone (it is shared).
#[derive(Clone)]
pub enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The subscription connection.
#[derive(Clone)]
pub enum Subscriptions {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A node's command connection to the Redis at `url`, shared by all of its parts (one
/// multiplexed connection: every part's requests are pipelined on it), and the URL its
/// receiving parts (broker, broadcasts) open their subscription connections to.
#[derive(Clone)]
pub struct RedisConnection {
    commands: Commands,
    url: String,
}

impl RedisConnection {
    /// Opens the command connection to `url` (`redis://host:port/db`, or
    /// `redis+cluster://host:port,...` for a Redis Cluster).
    pub async fn open(url: &str) -> Result<Self, crate::BrokerError> {
        let commands = open_commands(url).await.map_err(super::unavailable)?;
        Ok(Self {
            commands,
            url: url.to_owned(),
        })
    }

    pub(super) fn commands(&self) -> Commands {
        self.commands.clone()
    }

    /// A subscription connection of its own; `on_push` gets every push message, in order.
    pub(super) async fn subscriptions(
        &self,
        on_push: impl Fn(PushInfo) + Send + Sync + 'static,
    ) -> RedisResult<Subscriptions> {
        open_subscriptions(&self.url, on_push).await
    }
}

fn cluster_builder(nodes: &str) -> ClusterClientBuilder {
    let nodes: Vec<String> = nodes
        .split(',')
        .map(|node| format!("redis://{node}"))
        .collect();
    ClusterClientBuilder::new(nodes)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(5))
}

fn single_client(url: &str) -> RedisResult<redis::Client> {
    let info = redis::IntoConnectionInfo::into_connection_info(url)?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings))
}

async fn open_commands(url: &str) -> RedisResult<Commands> {
    if let Some(nodes) = url.strip_prefix(CLUSTER_SCHEME) {
        let commands = cluster_builder(nodes)
            .build()?
            .get_async_connection()
            .await?;
        return Ok(Commands::Cluster(commands));
    }
    let client = single_client(url)?;
    let commands = client
        .get_connection_manager_with_config(base_config())
        .await?;
    Ok(Commands::Single(commands))
}

async fn open_subscriptions(
    url: &str,
    on_push: impl Fn(PushInfo) + Send + Sync + 'static,
) -> RedisResult<Subscriptions> {
    let push_sender = move |push: PushInfo| {
        on_push(push);
        Ok::<(), redis::aio::SendError>(())
    };
    if let Some(nodes) = url.strip_prefix(CLUSTER_SCHEME) {
        let subscriptions = cluster_builder(nodes)
            .push_sender(push_sender)
            .build()?
            .get_async_connection()
            .await?;
        return Ok(Subscriptions::Cluster(subscriptions));
    }
    let client = single_client(url)?;
    let subscription_config = base_config()
        .set_push_sender(push_sender)
        .set_automatic_resubscription();
    let subscriptions = client
        .get_connection_manager_with_config(subscription_config)
        .await?;
    Ok(Subscriptions::Single(subscriptions))
}

/// The first push message of a subscription connection that carries a publication: its
/// payload. A lost connection is logged (it reconnects and resubscribes by itself; what was
/// published meanwhile does not arrive), anything else is skipped.
pub fn message_payload<'a>(push: &'a PushInfo, connection: &str) -> Option<&'a [u8]> {
    if push.kind == PushKind::Disconnection {
        tracing::warn!(
            connection,
            "lost a Redis subscription connection; reconnecting"
        );
        return None;
    }
    if push.kind != PushKind::Message && push.kind != PushKind::SMessage {
        return None;
    }
    // `message` / `smessage`: [channel, payload].
    match push.data.get(1) {
        Some(Value::BulkString(payload)) => Some(payload),
        _ => None,
    }
}

/// One retry per reconnect: requests wait for a reconnect in progress, so the default six
/// (seconds of back-off) would hold every publish during an outage instead of answering
/// `Unavailable`. The health watch's pings start a new reconnect every second anyway.
fn base_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_max_delay(Duration::from_secs(2))
}

impl Commands {
    /// The command that publishes on the pub/sub channels `Subscriptions` listens to.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Subscriptions {
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(connection) => connection.subscribe(channel).await,
            Self::Cluster(connection) => connection.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(connection) => connection.unsubscribe(channel).await,
            Self::Cluster(connection) => connection.sunsubscribe(channel).await,
        }
    }
}
