//! The Lua steps of the Redis broker. Each runs atomically on the shard that owns its
//! channel (every key it touches carries the channel's hash tag), so one publication is one
//! round trip however many nodes or subscribers there are.
//!
//! Channel keys: `meta` is a hash (`e` epoch, `s` last serial, `n`/`a` the window of the last
//! publication: max events and max age in ms); `list` holds the stored frames, oldest first,
//! each as `<published at, unix ms>:<stamped frame>`. Serials in `list` are contiguous, so
//! the oldest one is `s - LLEN + 1`. Both keys expire after `idle_ms` without use; a `meta`
//! that is gone means the history starts anew, in the epoch the caller proposes.

/// Drops what left the window (count, then age) from `list`. Shared by every script.
const TRIM: &str = r#"
local function trim(meta, list, now)
  local max_events = tonumber(redis.call('HGET', meta, 'n') or '-1')
  local max_age = tonumber(redis.call('HGET', meta, 'a') or '-1')
  if max_events < 0 then return end
  local len = redis.call('LLEN', list)
  if len > max_events then
    if max_events == 0 then redis.call('DEL', list) else redis.call('LTRIM', list, -max_events, -1) end
  end
  while true do
    local oldest = redis.call('LINDEX', list, 0)
    if not oldest then break end
    local at = tonumber(string.match(oldest, '^(%d+):'))
    if now - at < max_age then break end
    redis.call('LPOP', list)
  end
end

-- The channel's epoch: the stored one, or (a new history) the proposed one. Use keeps the
-- channel for `idle` more, never for less than it already has (a long window's publish).
local function epoch_of(meta, proposed, idle)
  if redis.call('HSETNX', meta, 'e', proposed) == 1 then
    redis.call('PEXPIRE', meta, idle)
  else
    redis.call('PEXPIRE', meta, idle, 'GT')
  end
  return redis.call('HGET', meta, 'e')
end
"#;

/// KEYS: meta, list. ARGV: frame, now ms, max events, max age ms, idle ms, proposed epoch,
/// pub/sub channel, message head (`except\napp\nchannel`), publish command (`PUBLISH`, or
/// `SPUBLISH` on a cluster), header lines (`replies::trace_header`: empty, or the trace
/// context). Gives the frame the next serial,
/// stamps it (`,"serial":N,"epoch":"E"` before the final `}`, as `history::stamp` does),
/// stores it within the window and publishes `headers serial\nhead\nstamped`. Returns `{serial,
/// epoch, bytes stored (0: none)}`.
const PUBLISH: &str = r#"
local meta, list = KEYS[1], KEYS[2]
local frame, now, max_events, max_age, idle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', meta) == 0 then redis.call('DEL', list) end
local epoch = epoch_of(meta, ARGV[6], idle)
local serial = redis.call('HINCRBY', meta, 's', 1)
redis.call('HSET', meta, 'n', max_events, 'a', max_age)
local stamped = frame
local head = string.match(frame, '^(.*)}%s*$')
if head then
  local sep = ','
  if string.match(head, '^{%s*$') then sep = '' end
  stamped = head .. sep .. '"serial":' .. serial .. ',"epoch":"' .. epoch .. '"}'
end
local stored = 0
if max_events > 0 and max_age > 0 then
  local entry = now .. ':' .. stamped
  stored = #entry
  redis.call('RPUSH', list, entry)
  redis.call('PEXPIRE', list, math.max(idle, max_age))
end
trim(meta, list, now)
redis.call('PEXPIRE', meta, math.max(idle, max_age))
redis.call(ARGV[9], ARGV[7], ARGV[10] .. serial .. '\n' .. ARGV[8] .. '\n' .. stamped)
return {serial, epoch, stored}
"#;

/// The app's byte budget. KEYS: charges (list of `channel\nepoch\nserial\nbytes`, oldest
/// first), total (bytes charged). ARGV: channel, epoch, serial, bytes, max bytes, idle ms.
/// Charges the frame just stored, then pops the oldest charges until the app is within its
/// budget; returns the popped ones as `{channel, epoch, serial, ...}` for `EVICT`.
pub const CHARGE: &str = r#"
local charges, total = KEYS[1], KEYS[2]
local max, idle = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('RPUSH', charges, ARGV[1] .. '\n' .. ARGV[2] .. '\n' .. ARGV[3] .. '\n' .. ARGV[4])
local bytes = redis.call('INCRBY', total, ARGV[4])
local popped = {}
while bytes > max do
  local charge = redis.call('LPOP', charges)
  if not charge then
    redis.call('SET', total, 0)
    break
  end
  local channel, epoch, serial, size = string.match(charge, '^([^\n]*)\n([^\n]*)\n(%d+)\n(%d+)$')
  bytes = redis.call('INCRBY', total, -tonumber(size))
  table.insert(popped, channel)
  table.insert(popped, epoch)
  table.insert(popped, serial)
end
redis.call('PEXPIRE', charges, idle)
redis.call('PEXPIRE', total, idle)
return popped
"#;

/// KEYS: meta, list. ARGV: epoch, serial. Drops the channel's stored frames up to and
/// including `serial` (the app's budget evicted them), unless the history started anew
/// since. Returns how many were dropped.
pub const EVICT: &str = r#"
local meta, list = KEYS[1], KEYS[2]
if redis.call('HGET', meta, 'e') ~= ARGV[1] then return 0 end
local latest = tonumber(redis.call('HGET', meta, 's') or '0')
local len = redis.call('LLEN', list)
local drop = tonumber(ARGV[2]) - (latest - len + 1) + 1
if drop <= 0 then return 0 end
if drop >= len then redis.call('DEL', list) else redis.call('LTRIM', list, drop, -1) end
return math.min(drop, len)
"#;

/// KEYS: meta, list. ARGV: now ms, idle ms, proposed epoch, since (`-1`: from the start),
/// the client's epoch (empty: any). Returns `{gap (0/1), epoch, latest, oldest available,
/// stored entries after since...}`.
const HISTORY: &str = r#"
local meta, list = KEYS[1], KEYS[2]
local now, idle, since, client_epoch = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]), ARGV[5]
local epoch = epoch_of(meta, ARGV[3], idle)
trim(meta, list, now)
local latest = tonumber(redis.call('HGET', meta, 's') or '0')
local len = redis.call('LLEN', list)
local oldest = latest - len + 1
if client_epoch ~= '' and client_epoch ~= epoch then return {1, epoch, latest, oldest} end
local skip = 0
if since >= 0 then
  if since > latest or since + 1 < oldest then return {1, epoch, latest, oldest} end
  skip = since + 1 - oldest
end
local reply = {0, epoch, latest, oldest}
if skip < len then
  for _, entry in ipairs(redis.call('LRANGE', list, skip, -1)) do table.insert(reply, entry) end
end
return reply
"#;

/// KEYS: meta. ARGV: idle ms, proposed epoch. Returns `{epoch, latest}`.
const POSITION: &str = r#"
local epoch = epoch_of(KEYS[1], ARGV[2], tonumber(ARGV[1]))
return {epoch, tonumber(redis.call('HGET', KEYS[1], 's') or '0')}
"#;

pub fn publish() -> redis::Script {
    redis::Script::new(&format!("{TRIM}{PUBLISH}"))
}

pub fn history() -> redis::Script {
    redis::Script::new(&format!("{TRIM}{HISTORY}"))
}

pub fn position() -> redis::Script {
    redis::Script::new(&format!("{TRIM}{POSITION}"))
}
