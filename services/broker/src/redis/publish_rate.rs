//! `PublishRate` on Redis: one allowance per app for the whole cluster, `governor`'s GCRA
//! (a burst of `per_second`, then `per_second` a second) run as one Lua step on Redis's
//! clock. `<ns>pr:{app}` is a hash of the theoretical arrival time `t` (µs) and the rate
//! `r` it was kept for; a new rate starts a fresh allowance, as `LocalPublishRates` does.
//! The key expires when the allowance is full again.

use async_trait::async_trait;
use protocol::names::AppId;

use super::connection::{Commands, RedisConnection};
use super::unavailable;
use crate::BrokerError;
use crate::counters::PublishRate;

/// ARGV: per second. 1: allowed, 0: over the rate.
const TAKE: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local rate = math.max(tonumber(ARGV[1]), 1)
local interval = 1000000 / rate
local tat = now
if tonumber(redis.call('HGET', KEYS[1], 'r') or '0') == rate then
  tat = math.max(tonumber(redis.call('HGET', KEYS[1], 't') or '0'), now)
end
local next_tat = tat + interval
if next_tat - now > rate * interval then return 0 end
redis.call('HSET', KEYS[1], 't', string.format('%.0f', next_tat), 'r', rate)
redis.call('PEXPIRE', KEYS[1], math.ceil((next_tat - now) / 1000))
return 1
"#;

/// Publish rates shared by every node on one Redis: one round trip per request.
pub struct RedisPublishRates {
    commands: Commands,
    namespace: String,
    take: redis::Script,
}

impl RedisPublishRates {
    /// Connects to `url` (as `Redis::connect`); keys start with `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, BrokerError> {
        Ok(Self::on(&RedisConnection::open(url).await?, namespace))
    }

    /// As `connect`, on the node's shared command connection.
    pub fn on(connection: &RedisConnection, namespace: &str) -> Self {
        Self {
            commands: connection.commands(),
            namespace: namespace.to_owned(),
            take: redis::Script::new(TAKE),
        }
    }
}

#[async_trait]
impl PublishRate for RedisPublishRates {
    #[tracing::instrument(name = "redis.publish_rate.take", level = "debug", skip_all)]
    async fn take(&self, app: &AppId, per_second: u32) -> Result<bool, BrokerError> {
        let allowed: i64 = self
            .take
            .key(format!("{}pr:{{{}}}", self.namespace, app.as_str()))
            .arg(per_second)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(allowed == 1)
    }
}
