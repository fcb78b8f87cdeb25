//! `RedisCache`: cache channels' last events in Redis, one entry per channel for the cluster.
//!
//! Keys (all tagged `{app}`, so one app's cache sits on one shard and each step is one atomic
//! script): `<ns>cf:` / `<ns>cd:` hashes channel → frame / data, `<ns>cz:` sorted set channel →
//! stored-at (unix ms), `<ns>cb:` hash channel → bytes charged, `<ns>ct:` their total, `<ns>cm:`
//! hash channel → when its last miss was reported.
//!
//! Ages come from the broker's `Clock` (stored-at is compared with it), not from Redis TTLs;
//! the keys also get a Redis TTL of the cache's lifetime, so an idle app's cache goes away.
//! Bounds per app: its plan's bytes and the node's channels-per-app cap, oldest first;
//! `MAX_MISS_REPORTS` remembered misses (past it, misses go unreported); each store also
//! sweeps up to `SWEEP_PER_STORE` expired entries.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName};
use redis::Value;

use super::WallClock;
use super::connection::{Commands, RedisConnection};
use super::replies::malformed;
use super::unavailable;
use crate::cache::{
    CACHE_TTL, CacheChannels, CacheLimits, CacheUsage, MISS_REPORT_INTERVAL, Replay,
    is_cache_channel,
};
use crate::{BrokerError, Clock};

/// Remembered misses per app (channel names are the subscribers' choice).
const MAX_MISS_REPORTS: usize = 10_000;
/// Expired entries a store removes at most.
const SWEEP_PER_STORE: usize = 16;
/// What an entry is taken to cost beyond its frame and data (as `LocalCache`).
const ENTRY_OVERHEAD: usize = 64;

/// Drops channel `c`'s entry; KEYS are cf, cd, cz, cb, ct, cm.
const DROP: &str = r"
local function drop(c)
  local b = tonumber(redis.call('HGET', KEYS[4], c) or '0')
  redis.call('HDEL', KEYS[1], c)
  redis.call('HDEL', KEYS[2], c)
  redis.call('HDEL', KEYS[4], c)
  redis.call('ZREM', KEYS[3], c)
  if b > 0 then redis.call('DECRBY', KEYS[5], b) end
end
";

/// ARGV: channel, data, frame, now ms, ttl ms, app max bytes, max channels, sweep, overhead.
/// Returns the number of entries evicted for the bounds.
const STORE: &str = r"
local ch, data, frame = ARGV[1], ARGV[2], ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_bytes, max_channels = tonumber(ARGV[6]), tonumber(ARGV[7])
drop(ch)
redis.call('HDEL', KEYS[6], ch)
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - ttl, 'LIMIT', 0, tonumber(ARGV[8]))) do
  drop(c)
end
local bytes = #frame + #data + tonumber(ARGV[9])
redis.call('HSET', KEYS[1], ch, frame)
redis.call('HSET', KEYS[2], ch, data)
redis.call('HSET', KEYS[4], ch, bytes)
redis.call('ZADD', KEYS[3], now, ch)
redis.call('INCRBY', KEYS[5], bytes)
local evicted = 0
while tonumber(redis.call('GET', KEYS[5]) or '0') > max_bytes or redis.call('ZCARD', KEYS[3]) > max_channels do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not oldest then break end
  drop(oldest)
  evicted = evicted + 1
end
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
return evicted
";

/// ARGV: channel, now ms, ttl ms, miss interval ms, max misses. Returns {1, frame} for a hit,
/// {0, report} for a miss.
const REPLAY: &str = r"
local ch, now = ARGV[1], tonumber(ARGV[2])
local at = redis.call('ZSCORE', KEYS[3], ch)
if at then
  if now - tonumber(at) < tonumber(ARGV[3]) then
    return {1, redis.call('HGET', KEYS[1], ch)}
  end
  drop(ch)
end
local missed = redis.call('HGET', KEYS[6], ch)
local report
if missed then
  report = now - tonumber(missed) >= tonumber(ARGV[4])
else
  report = redis.call('HLEN', KEYS[6]) < tonumber(ARGV[5])
end
if report then
  redis.call('HSET', KEYS[6], ch, now)
  redis.call('PEXPIRE', KEYS[6], ARGV[4])
  return {0, 1}
end
return {0, 0}
";

/// Returns {stored-at ms, data}, or an empty reply for none.
const PEEK: &str = r"
local at = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not at then return {} end
return {at, redis.call('HGET', KEYS[2], ARGV[1]) or ''}
";

/// Cache channels shared by every node on one Redis (or Redis Cluster).
pub struct RedisCache {
    commands: Commands,
    namespace: String,
    limits: CacheLimits,
    clock: WallClock,
    store: redis::Script,
    replay: redis::Script,
    peek: redis::Script,
    /// Entries this node's stores evicted for an app's bounds.
    evictions: AtomicU64,
}

impl RedisCache {
    /// Connects to `url`; keys start with `namespace`. Only `limits.max_channels_per_app`
    /// applies (Redis's own `maxmemory` bounds the whole).
    pub async fn connect(
        url: &str,
        namespace: &str,
        limits: CacheLimits,
        clock: Clock,
    ) -> Result<Self, BrokerError> {
        Ok(Self::on(
            &RedisConnection::open(url).await?,
            namespace,
            limits,
            clock,
        ))
    }

    /// As `connect`, on the node's shared command connection.
    pub fn on(
        connection: &RedisConnection,
        namespace: &str,
        limits: CacheLimits,
        clock: Clock,
    ) -> Self {
        Self {
            commands: connection.commands(),
            namespace: namespace.to_owned(),
            limits,
            clock: WallClock::new(clock),
            store: redis::Script::new(&format!("{DROP}{STORE}")),
            replay: redis::Script::new(&format!("{DROP}{REPLAY}")),
            peek: redis::Script::new(PEEK),
            evictions: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn keys(&self, app: &AppId) -> [String; 6] {
        let (ns, tag) = (&self.namespace, app.as_str());
        ["cf", "cd", "cz", "cb", "ct", "cm"].map(|kind| format!("{ns}{kind}:{{{tag}}}"))
    }

    fn invocation<'a>(
        script: &'a redis::Script,
        keys: &[String; 6],
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation
    }
}

const TTL_MS: u64 = CACHE_TTL.as_millis() as u64;

#[async_trait]
impl CacheChannels for RedisCache {
    #[tracing::instrument(name = "redis.cache.store", level = "debug", skip_all)]
    async fn store(
        &self,
        app: &AppId,
        channel: &ChannelName,
        data: &str,
        frame: &str,
        app_max_bytes: usize,
    ) -> Result<(), BrokerError> {
        if !is_cache_channel(channel) {
            return Ok(());
        }
        let evicted: u64 = Self::invocation(&self.store, &self.keys(app))
            .arg(channel.as_str())
            .arg(data)
            .arg(frame)
            .arg(self.now_ms())
            .arg(TTL_MS)
            .arg(app_max_bytes)
            .arg(self.limits.max_channels_per_app)
            .arg(SWEEP_PER_STORE)
            .arg(ENTRY_OVERHEAD)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        Ok(())
    }

    #[tracing::instrument(name = "redis.cache.replay", level = "debug", skip_all)]
    async fn replay(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<Replay>, BrokerError> {
        if !is_cache_channel(channel) {
            return Ok(None);
        }
        let reply: Vec<Value> = Self::invocation(&self.replay, &self.keys(app))
            .arg(channel.as_str())
            .arg(self.now_ms())
            .arg(TTL_MS)
            .arg(MISS_REPORT_INTERVAL.as_millis() as u64)
            .arg(MAX_MISS_REPORTS)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [Value::Int(1), Value::BulkString(frame)] => {
                let frame = String::from_utf8(frame.clone()).map_err(|_| malformed("cache"))?;
                Ok(Some(Replay::Hit(frame.into())))
            }
            [Value::Int(0), Value::Int(report)] => Ok(Some(Replay::Miss {
                report: *report == 1,
            })),
            _ => Err(malformed("cache replay")),
        }
    }

    #[tracing::instrument(name = "redis.cache.peek", level = "debug", skip_all)]
    async fn peek(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<(String, u64)>, BrokerError> {
        if !is_cache_channel(channel) {
            return Ok(None);
        }
        let reply: Vec<String> = Self::invocation(&self.peek, &self.keys(app))
            .arg(channel.as_str())
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        let [stored_at, data] = reply.as_slice() else {
            return Ok(None);
        };
        let stored_at: u64 = stored_at.parse().map_err(|_| malformed("cache peek"))?;
        let age = self.now_ms().saturating_sub(stored_at);
        let left_ms = TTL_MS.saturating_sub(age);
        if left_ms == 0 {
            return Ok(None);
        }
        Ok(Some((data.clone(), left_ms.div_ceil(1000))))
    }

    /// Redis holds the entries: this node knows only the evictions its own stores made.
    fn usage(&self) -> CacheUsage {
        CacheUsage {
            evictions: self.evictions.load(Ordering::Relaxed),
            ..CacheUsage::default()
        }
    }
}
