//! Which broker this node runs: `Local` alone, or `Redis` (`--broker redis://...`, or
//! `redis+cluster://...` for a Redis Cluster) to be one of many edges.

use std::sync::Arc;

use anyhow::Context;
use broker::broadcast::Broadcast;
use broker::cache::{CacheChannels, CacheLimits};
use broker::{
    Broker, Clock, HistoryLimits, Local, NodeSettings, Redis, RedisBroadcast, RedisCache,
    RedisCounters, RedisHealthWatch, RedisOccupancy, RedisPublishRates,
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
    Ok(Arc::new(connect_redis(url, hub).await?))
}

async fn connect_redis(url: &str, hub: Arc<Hub>) -> anyhow::Result<Redis> {
    if !url.starts_with("redis://") && !url.starts_with("redis+cluster://") {
        anyhow::bail!(
            "--broker takes redis://host:port/db, or redis+cluster://host:port,... for a Redis Cluster"
        );
    }
    let redis = Redis::connect(url, REDIS_NAMESPACE, hub, Clock::system())
        .await
        .with_context(|| format!("connecting to the broker at {}", redacted(url)))?;
    tracing::info!(broker = %redacted(url), "joined the cluster on Redis");
    Ok(redis)
}

/// What a node on Redis has beyond its broker.
pub struct RedisParts {
    pub broadcast: Arc<dyn Broadcast>,
    pub cache: Arc<dyn CacheChannels>,
    /// Started on the edge's `health` once the edge exists.
    pub health: RedisHealthWatch,
}

/// A node on the Redis at `url`: its broker (delivering to `hub`) and the rest of its
/// Redis parts: broadcasts (to `hub`, this node's sink), cache channels, health watch.
pub async fn build_redis_node(
    url: &str,
    hub: Arc<Hub>,
    settings: &EdgeSettings,
) -> anyhow::Result<(Arc<dyn Broker>, RedisParts)> {
    let redis = connect_redis(url, hub.clone()).await?;
    let health = redis.health_watch();
    let broker: Arc<dyn Broker> = Arc::new(redis);
    let broadcast = RedisBroadcast::connect(url, REDIS_NAMESPACE, hub)
        .await
        .with_context(|| format!("connecting the broadcasts to {}", redacted(url)))?;
    let limits = CacheLimits {
        max_bytes: settings.history_max_bytes,
        max_channels_per_app: settings.history_max_channels_per_app,
    };
    let cache = RedisCache::connect(url, REDIS_NAMESPACE, limits, Clock::system())
        .await
        .with_context(|| format!("connecting the cache channels to {}", redacted(url)))?;
    let health = health
        .and(broadcast.health_watch())
        .and(cache.health_watch());
    let parts = RedisParts {
        broadcast: Arc::new(broadcast),
        cache: Arc::new(cache),
        health,
    };
    Ok((broker, parts))
}

/// This node on the cluster at `url`: its hub counts messages, and the edge takes
/// connection slots, counts subscriptions and rates publishes on Redis (with this node's
/// heartbeats); its broker, broadcasts and cache channels are on Redis too. `node` names
/// this node and sets its heartbeats.
pub async fn build_node(
    url: &str,
    settings: &EdgeSettings,
    node: NodeSettings,
) -> anyhow::Result<NodeBroker> {
    let counters = RedisCounters::connect(url, REDIS_NAMESPACE, node.clone())
        .await
        .with_context(|| format!("connecting the counters to {}", redacted(url)))?;
    let counters = Arc::new(counters);
    let hub = Arc::new(Hub::new(counters.clone()));
    let occupancy = RedisOccupancy::connect(url, REDIS_NAMESPACE, node)
        .await
        .with_context(|| format!("connecting the occupancy to {}", redacted(url)))?;
    let publish_rates = RedisPublishRates::connect(url, REDIS_NAMESPACE)
        .await
        .with_context(|| format!("connecting the publish rates to {}", redacted(url)))?;
    let (broker, mut redis_parts) = build_redis_node(url, hub.clone(), settings).await?;
    redis_parts.health = redis_parts
        .health
        .and(counters.health_watch())
        .and(occupancy.health_watch())
        .and(publish_rates.health_watch());
    Ok(NodeBroker {
        hub,
        messages: counters.clone(),
        broker,
        connections: Some(counters),
        occupancy: Some(Arc::new(occupancy)),
        publish_rates: Some(Arc::new(publish_rates)),
        redis_parts: Some(redis_parts),
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
