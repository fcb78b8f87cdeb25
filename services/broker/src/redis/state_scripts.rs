//! The Lua steps of the Redis counters and occupancy. Time is Redis's own (`TIME`), so the
//! nodes' clocks never have to agree on who is dead. Each step touches only keys tagged
//! `{app}` (one app's counts live on one shard), except the node steps of occupancy, which
//! touch only keys tagged `{nodes}` (each node's deadline and the apps it holds).
//!
//! A node's contribution is alive while its deadline (unix ms) is in the future; every step
//! first sweeps the nodes whose deadline passed (their heartbeats stopped), so a dead node
//! stops counting at the first step after its deadline, whoever runs it.

/// Redis's clock in unix ms.
const NOW: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: slots (hash of `c:<node>` → slots, `d:<node>` → deadline). Sums the live nodes'
/// slots, dropping the dead ones' fields.
const LIVE_SLOTS: &str = r#"
local function live_slots(key, now)
  local fields = redis.call('HGETALL', key)
  local counts, dead = {}, {}
  for i = 1, #fields, 2 do
    local kind, node = string.sub(fields[i], 1, 1), string.sub(fields[i], 3)
    if kind == 'd' then
      if tonumber(fields[i + 1]) < now then dead[node] = true end
    else
      counts[node] = tonumber(fields[i + 1])
    end
  end
  local total = 0
  for node, count in pairs(counts) do
    if not dead[node] then total = total + count end
  end
  for node in pairs(dead) do redis.call('HDEL', key, 'c:' .. node, 'd:' .. node) end
  return total
end
"#;

/// ARGV: node, ceiling (-1: none), ttl ms. Takes a slot unless the live total is at the
/// ceiling: the live total after (this slot included) when taken, 0 refused.
const ACQUIRE: &str = r#"
local now = now_ms()
local ceiling, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local live = live_slots(KEYS[1], now)
if ceiling >= 0 and live >= ceiling then return 0 end
redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[1], 1)
redis.call('HSET', KEYS[1], 'd:' .. ARGV[1], now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return live + 1
"#;

/// ARGV: node. Gives back one of the node's slots, never below zero.
pub const RELEASE: &str = r#"
local field = 'c:' .. ARGV[1]
local left = tonumber(redis.call('HGET', KEYS[1], field) or '0') - 1
if left <= 0 then
  redis.call('HDEL', KEYS[1], field, 'd:' .. ARGV[1])
else
  redis.call('HSET', KEYS[1], field, left)
end
return 0
"#;

/// The live total of slots.
const COUNT: &str = r#"
return live_slots(KEYS[1], now_ms())
"#;

/// ARGV: node, the node's slots as it counts them, ttl ms. Moves the node's deadline on; a
/// node swept while alive (a pause longer than its ttl) puts its slots back.
const SLOTS_HEARTBEAT: &str = r#"
local now, ttl = now_ms(), tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'c:' .. ARGV[1]) == 0 then
  redis.call('HSET', KEYS[1], 'c:' .. ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[1], 'd:' .. ARGV[1], now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return 0
"#;

/// KEYS: totals (channel → subscriptions), per node (`<node>\n<channel>` → subscriptions),
/// deadlines (node → deadline). `drop_nodes` takes the given nodes' subscriptions off the
/// totals; `sweep` does so for the nodes whose deadline passed. Both return the channels
/// they left at 0 (vacated by a dead node: the step that did it reports it, once).
const SWEEP_OCCUPANCY: &str = r#"
local function drop_nodes(totals, per_node, deadlines, dead)
  local vacated = {}
  local fields = redis.call('HGETALL', per_node)
  for i = 1, #fields, 2 do
    local node, channel = string.match(fields[i], '^([^\n]*)\n(.*)$')
    if node and dead[node] then
      redis.call('HDEL', per_node, fields[i])
      if redis.call('HINCRBY', totals, channel, -tonumber(fields[i + 1])) <= 0 then
        redis.call('HDEL', totals, channel)
        table.insert(vacated, channel)
      end
    end
  end
  for node in pairs(dead) do redis.call('HDEL', deadlines, node) end
  return vacated
end

local function sweep(totals, per_node, deadlines, now)
  local nodes = redis.call('HGETALL', deadlines)
  local dead, any = {}, false
  for i = 1, #nodes, 2 do
    if tonumber(nodes[i + 1]) < now then
      dead[nodes[i]] = true
      any = true
    end
  end
  if not any then return {} end
  return drop_nodes(totals, per_node, deadlines, dead)
end
"#;

/// ARGV: node, channel, +1 or -1, ttl ms. Returns `{the channel's cluster-wide count
/// after, {channels a dead node's sweep vacated}}`.
const OCCUPANCY_CHANGE: &str = r#"
local totals, per_node, deadlines = KEYS[1], KEYS[2], KEYS[3]
local now, channel, ttl = now_ms(), ARGV[2], tonumber(ARGV[4])
local vacated = sweep(totals, per_node, deadlines, now)
local field = ARGV[1] .. '\n' .. channel
if tonumber(ARGV[3]) > 0 then
  redis.call('HINCRBY', per_node, field, 1)
  redis.call('HSET', deadlines, ARGV[1], now + ttl)
  return {redis.call('HINCRBY', totals, channel, 1), vacated}
end
local mine = tonumber(redis.call('HGET', per_node, field) or '0')
if mine <= 0 then return {tonumber(redis.call('HGET', totals, channel) or '0'), vacated} end
if mine == 1 then redis.call('HDEL', per_node, field) else redis.call('HINCRBY', per_node, field, -1) end
local left = redis.call('HINCRBY', totals, channel, -1)
if left <= 0 then
  redis.call('HDEL', totals, channel)
  return {0, vacated}
end
return {left, vacated}
"#;

/// ARGV: a channel, or empty for all. Returns `{the count, or all `channel, count, ...`,
/// {channels a dead node's sweep vacated}}`.
const OCCUPANCY_READ: &str = r#"
local vacated = sweep(KEYS[1], KEYS[2], KEYS[3], now_ms())
if ARGV[1] ~= '' then return {tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0'), vacated} end
return {redis.call('HGETALL', KEYS[1]), vacated}
"#;

/// ARGV: a node found dead (its presence heartbeats stopped). Takes its subscriptions off
/// the app's totals whatever its deadline here; returns the channels that left at 0.
const OCCUPANCY_FORGET_NODE: &str = r#"
return drop_nodes(KEYS[1], KEYS[2], KEYS[3], {[ARGV[1]] = true})
"#;

/// KEYS: deadlines. ARGV: node, ttl ms. Moves the node's deadline on.
pub const OCCUPANCY_HEARTBEAT: &str = r#"
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]))
return 0
"#;

/// KEYS: the nodes' occupancy deadlines (sorted set, node → deadline), the node's apps (set).
/// ARGV: node, ttl ms, the apps it holds subscriptions in (possibly none). Moves the node's
/// deadline on and registers the apps (again: a sweep that took the node for dead emptied it).
const OCCUPANCY_NODE_BEAT: &str = r#"
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[2]), ARGV[1])
for i = 3, #ARGV, 1000 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
"#;

/// KEYS: the nodes' occupancy deadlines. ARGV: this node, at most how many. The other nodes
/// whose deadline passed.
const OCCUPANCY_DEAD_NODES: &str = r#"
local max = tonumber(ARGV[2])
local past = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now_ms()), 'LIMIT', 0, max + 1)
local dead = {}
for _, node in ipairs(past) do
  if node ~= ARGV[1] and #dead < max then table.insert(dead, node) end
end
return dead
"#;

/// KEYS: the nodes' occupancy deadlines, the dead node's apps. ARGV: node, the apps just
/// swept. Unregisters them while the node is still dead, and forgets the node once none is
/// left. Returns 1 (the node is forgotten), 0 (apps are left) or -1 (it beat again: alive).
const OCCUPANCY_SWEPT_APPS: &str = r#"
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline then return 1 end
if tonumber(deadline) >= now_ms() then return -1 end
for i = 2, #ARGV, 1000 do
  redis.call('SREM', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"#;

pub fn occupancy_node_beat() -> redis::Script {
    redis::Script::new(&format!("{NOW}{OCCUPANCY_NODE_BEAT}"))
}

pub fn occupancy_dead_nodes() -> redis::Script {
    redis::Script::new(&format!("{NOW}{OCCUPANCY_DEAD_NODES}"))
}

pub fn occupancy_swept_apps() -> redis::Script {
    redis::Script::new(&format!("{NOW}{OCCUPANCY_SWEPT_APPS}"))
}

pub fn acquire() -> redis::Script {
    redis::Script::new(&format!("{NOW}{LIVE_SLOTS}{ACQUIRE}"))
}

pub fn count() -> redis::Script {
    redis::Script::new(&format!("{NOW}{LIVE_SLOTS}{COUNT}"))
}

pub fn slots_heartbeat() -> redis::Script {
    redis::Script::new(&format!("{NOW}{SLOTS_HEARTBEAT}"))
}

pub fn occupancy_change() -> redis::Script {
    redis::Script::new(&format!("{NOW}{SWEEP_OCCUPANCY}{OCCUPANCY_CHANGE}"))
}

pub fn occupancy_forget_node() -> redis::Script {
    redis::Script::new(&format!("{SWEEP_OCCUPANCY}{OCCUPANCY_FORGET_NODE}"))
}

pub fn occupancy_read() -> redis::Script {
    redis::Script::new(&format!("{NOW}{SWEEP_OCCUPANCY}{OCCUPANCY_READ}"))
}
