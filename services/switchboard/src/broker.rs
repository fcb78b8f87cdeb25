//! Which broker this node runs: `Local` alone, or `Redis` (`--broker redis://...`, or
//! `redis+cluster://...` for a Redis Cluster) to be one of many edges.

use std::sync::Arc;

use anyhow::Context;
use broker::cache::CacheLimits;
use broker::{
    Broker, Clock, Cluster, HistoryLimits, Local, NodeSettings, Redis, RedisBroadcast, RedisCache,
    RedisConnection, RedisCounters, RedisOccupancy, RedisPublishRates,
};
use edge::{EdgeSettings, Hub};

use crate::startup::NodeBroker;

/// Every Redis key of the platform starts with this, so it can share a Redis.
pub const REDIS_NAMESPACE: &str = "sb:";

/// The broker that delivers to `hub`: on Redis at `url`, or the in-process one without.
pub async fn build_broker(
    url: Option<&str>,
    hub: Arc<Hub>,
    settings: &EdgeSettings,
) -> anyhow::Result<Arc<dyn Broker>> {
    let Some(url) = url else {
        let limits = HistoryLimits {
            max_bytes: settings.history_max_bytes,
            max_channels_per_app: settings.history_max_channels_per_app,
        };
        return Ok(Arc::new(Local::with_limits(hub, Clock::system(), limits)));
    };
    Ok(Arc::new(
        connect_redis(url, hub, NodeSettings::new()).await?,
    ))
}

async fn connect_redis(url: &str, hub: Arc<Hub>, node: NodeSettings) -> anyhow::Result<Redis> {
    let connection = open_connection(url).await?;
    broker_on(&connection, url, hub, node).await
}

/// The node's one command connection to Redis, shared by all of its parts.
async fn open_connection(url: &str) -> anyhow::Result<RedisConnection> {
    if !url.starts_with("redis://") && !url.starts_with("redis+cluster://") {
        anyhow::bail!(
            "--broker takes redis://host:port/db, or redis+cluster://host:port,... for a Redis Cluster"
        );
    }
    RedisConnection::open(url)
        .await
        .with_context(|| format!("connecting to the broker at {}", redacted(url)))
}

async fn broker_on(
    connection: &RedisConnection,
    url: &str,
    hub: Arc<Hub>,
    node: NodeSettings,
) -> anyhow::Result<Redis> {
    let redis = Redis::on(connection, REDIS_NAMESPACE, hub, Clock::system(), node)
        .await
        .with_context(|| format!("connecting to the broker at {}", redacted(url)))?;
    tracing::info!(broker = %redacted(url), "joined the cluster on Redis");
    Ok(redis)
}

/// This node on the cluster at `url`, every part on one shared command connection (the
/// broker and the broadcasts each with a subscription connection of its own: three
/// connections per node): its hub counts messages, and the edge takes connection slots,
/// counts subscriptions and rates publishes on Redis (with this node's heartbeats); its
/// broker (presence heartbeating as `node`), broadcasts and cache channels are on Redis too.
pub async fn build_node(
    url: &str,
    settings: &EdgeSettings,
    node: NodeSettings,
) -> anyhow::Result<NodeBroker> {
    let connection = open_connection(url).await?;
    let counters = Arc::new(RedisCounters::on(
        &connection,
        REDIS_NAMESPACE,
        node.clone(),
    ));
    let hub = Arc::new(Hub::new(counters.clone()));
    let occupancy = RedisOccupancy::on(&connection, REDIS_NAMESPACE, node.clone());
    let publish_rates = RedisPublishRates::on(&connection, REDIS_NAMESPACE);
    // One node id for all parts: a dead node's presence departures name the node whose
    // subscriptions occupancy then takes off.
    let redis = broker_on(&connection, url, hub.clone(), node).await?;
    let health = redis.health_watch();
    let broadcast = RedisBroadcast::on(&connection, REDIS_NAMESPACE, hub.clone())
        .await
        .with_context(|| format!("connecting the broadcasts to {}", redacted(url)))?;
    let limits = CacheLimits {
        max_bytes: settings.history_max_bytes,
        max_channels_per_app: settings.history_max_channels_per_app,
    };
    let cache = RedisCache::on(&connection, REDIS_NAMESPACE, limits, Clock::system());
    let health = health.and(broadcast.health_watch());
    let cluster = Cluster {
        broker: Arc::new(redis),
        connections: counters.clone(),
        messages: counters,
        publish_rates: Arc::new(publish_rates),
        occupancy: Arc::new(occupancy),
        broadcast: Arc::new(broadcast),
        cache: Arc::new(cache),
    };
    Ok(NodeBroker {
        hub,
        cluster,
        health,
    })
}

/// The URL without a password, for logs and errors.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
