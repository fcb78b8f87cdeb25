//! The Lua steps of presence on Redis. A channel's steps touch only keys tagged
//! `{app:channel}` (one shard); the node steps touch only keys tagged `{nodes}`.
//!
//! Channel keys: `sockets` is one node's hash of socket → user in the channel, `counts` the
//! channel's user → connections (cluster-wide), `infos` user → info JSON. Because every
//! membership sits in its node's own `sockets` hash, a dead node's memberships are one key
//! to sweep (`PRESENCE_SWEEP`), and the step that takes a user's count to 0 reports them,
//! whichever node ran it: `member_removed` goes out once.
//!
//! Node keys: `deadlines` is node → deadline (Redis time, unix ms), moved on by each node's
//! heartbeat; `registry` (one per node) is the set of `app\nchannel` where the node holds
//! memberships, so a dead node's channels are found without scanning anything else.

/// KEYS: sockets (this node's), counts, infos. ARGV: socket, user, info, max members.
/// Returns `{status, user, info, ...}`: status -1 full, 0 the socket is already joined,
/// 1 a further connection of a present user, 2 the user's first (announce them).
pub const PRESENCE_JOIN: &str = r#"
local sockets, counts, infos = KEYS[1], KEYS[2], KEYS[3]
local socket, user, info, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local status = 0
if redis.call('HEXISTS', sockets, socket) == 0 then
  if redis.call('HEXISTS', counts, user) == 0 and redis.call('HLEN', counts) >= max then
    return {-1}
  end
  redis.call('HSET', sockets, socket, user)
  status = 1
  if redis.call('HINCRBY', counts, user, 1) == 1 then
    redis.call('HSET', infos, user, info)
    status = 2
  end
end
local reply = redis.call('HGETALL', infos)
table.insert(reply, 1, status)
return reply
"#;

/// KEYS: sockets (this node's), counts, infos. ARGV: socket. Returns `{0}` (the socket was
/// not joined), `{1}` (it left, the user stays) or `{2, user}` (the user's last connection:
/// the 1 → 0 step, so `member_removed` goes out once).
pub const PRESENCE_LEAVE: &str = r#"
local sockets, counts, infos = KEYS[1], KEYS[2], KEYS[3]
local user = redis.call('HGET', sockets, ARGV[1])
if not user then return {0} end
redis.call('HDEL', sockets, ARGV[1])
if redis.call('HINCRBY', counts, user, -1) <= 0 then
  redis.call('HDEL', counts, user)
  redis.call('HDEL', infos, user)
  return {2, user}
end
return {1}
"#;

/// KEYS: sockets (the dead node's), counts, infos. Takes every membership of the node off
/// the channel; returns the users whose last connection that was.
pub const PRESENCE_SWEEP: &str = r#"
local sockets, counts, infos = KEYS[1], KEYS[2], KEYS[3]
local fields = redis.call('HGETALL', sockets)
local gone = {}
for i = 1, #fields, 2 do
  local user = fields[i + 1]
  if redis.call('HINCRBY', counts, user, -1) <= 0 then
    redis.call('HDEL', counts, user)
    redis.call('HDEL', infos, user)
    table.insert(gone, user)
  end
end
redis.call('DEL', sockets)
return gone
"#;

/// Redis's clock in unix ms.
const NOW: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: deadlines, the node's registry. ARGV: node, ttl ms. Moves the node's deadline on;
/// returns how many channels its registry holds (fewer than the node holds: a sweep took it
/// for dead while it lived, a pause longer than its ttl, and it must register them again).
const NODE_HEARTBEAT: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], now_ms() + tonumber(ARGV[2]))
return redis.call('SCARD', KEYS[2])
"#;

/// KEYS: deadlines. ARGV: this node, at most how many. The nodes whose deadline passed.
const DEAD_NODES: &str = r#"
local now, max = now_ms(), tonumber(ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
local dead = {}
for i = 1, #fields, 2 do
  if #dead >= max then break end
  if fields[i] ~= ARGV[1] and tonumber(fields[i + 1]) < now then table.insert(dead, fields[i]) end
end
return dead
"#;

/// KEYS: deadlines, the node's registry. ARGV: node. Forgets a dead node once nothing of
/// it is left to sweep (and only if it did not come back meanwhile); 1 when forgotten.
const FORGET_NODE: &str = r#"
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
local deadline = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if deadline >= now_ms() then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"#;

pub fn node_heartbeat() -> redis::Script {
    redis::Script::new(&format!("{NOW}{NODE_HEARTBEAT}"))
}

pub fn dead_nodes() -> redis::Script {
    redis::Script::new(&format!("{NOW}{DEAD_NODES}"))
}

pub fn forget_node() -> redis::Script {
    redis::Script::new(&format!("{NOW}{FORGET_NODE}"))
}
