--[[
_lib.lua: helpers shared by every lockcore script.

Not a script of its own: each script starts with the line `--!include _lib.lua`, which
the loader (lockcore/scripts.py, `expand_includes`) replaces with this file's text before
the script is sent to Redis. Redis-native consumers do the same replacement, or take the
expanded text from `python -m lockcore.scripts dump DIR`.

Every script receives the same eight KEYS, all in the hash slot of the scope:
  KEYS[1] <p>:{<scope>}:locks   HASH  lock id -> lock record (JSON); "~exp" -> see settle
  KEYS[2] <p>:{<scope>}:res     ZSET  (score 0) "<type>:<resource>:<id>", lexicographic index
  KEYS[3] <p>:{<scope>}:own     ZSET  (score 0) "<owner>:<type>:<id>", lexicographic index
  KEYS[4] <p>:{<scope>}:exp     ZSET  lock id -> expires_at (ms since epoch; 1e15 = never)
  KEYS[5] <p>:{<scope>}:events  STREAM of changes; also the PUBLISH channel name
  KEYS[6] <p>:{#<n>}:ids        HASH  lock id -> scope name (the slot's id directory); "~exp"
  KEYS[7] <p>:{#<n>}:idexp      ZSET  lock id -> expires_at (ms; 1e15 = never)
  KEYS[8] <p>:{#<n>}:seq        STRING counter of the slot: lock ids and fencing tokens
<type>, <resource>, <owner> and <scope> are percent-encoded (every byte outside
A-Z a-z 0-9 - . _ ~ becomes %XX), so ':' '{' '}' never appear raw in them.

And the same first three ARGV:
  ARGV[1] scope name (raw, not encoded)
  ARGV[2] approximate maximum length of the event stream (entries)
  ARGV[3] retention in milliseconds: how long keys outlive the last lock's expiry
]]

local K_LOCKS, K_RES, K_OWN, K_EXP = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_EVENTS, K_IDS, K_IDEXP, K_SEQ = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local SCOPE = ARGV[1]
local MAXLEN = tonumber(ARGV[2])
local RETAIN = tonumber(ARGV[3])

-- Reply codes, mirrored by lockcore.scripts.ReplyCode. Every reply is an array
-- {code, server time in ms, number of locks this call found expired, ...}.
local OK, CONFLICT, NOT_FOUND, NOT_OWNED, INVALID = 0, 1, 2, 3, 4

-- Score standing for "no expiry": a far-future instant (year 33658), exact in a double.
local NOEXP = 1e15
-- Expired entries removed per call: keeps every script's work bounded.
local SWEEP = 32

-- The server's clock decides, never the client's.
local _t = redis.call('TIME')
local NOW = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
local NOW_US = tonumber(_t[1]) * 1000000 + tonumber(_t[2])

local function int(n)
  return string.format('%.0f', n)
end

local function enc(s)
  return (string.gsub(s, '[^%w%-%._~]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

local function res_member(r)
  return enc(r.type) .. ':' .. enc(r.resource) .. ':' .. r.id
end

local function own_member(r)
  return enc(r.owner) .. ':' .. enc(r.type) .. ':' .. r.id
end

local function expiry_score(r)
  return r.expires_at or NOEXP
end

local function is_live(r)
  return r.expires_at == nil or r.expires_at > NOW
end

-- Returns the decoded record and its JSON text, or nil.
local function load(id)
  local raw = redis.call('HGET', K_LOCKS, id)
  if not raw then
    return nil
  end
  return cjson.decode(raw), raw
end

-- Writes (or rewrites) a record and every index entry; returns the JSON text.
-- What this call changed, for settle(): the latest expiry stored, whether any lock was
-- removed, and whether a lock without expiry went away (or got an expiry).
local STORED, REMOVED, NEVER_GONE = nil, false, false

local function store(r)
  local raw = cjson.encode(r)
  local score = expiry_score(r)
  if not STORED or score > STORED then
    STORED = score
  end
  redis.call('HSET', K_LOCKS, r.id, raw)
  redis.call('ZADD', K_RES, 0, res_member(r))
  redis.call('ZADD', K_OWN, 0, own_member(r))
  redis.call('ZADD', K_EXP, score, r.id)
  redis.call('HSET', K_IDS, r.id, SCOPE)
  redis.call('ZADD', K_IDEXP, score, r.id)
  return raw
end

-- Waiting: FIFO queues of waiters per exclusive resource. Their keys derive from the
-- scope's own names, so they live in its slot:
--   <p>:{<scope>}:q:<type>:<resource>  LIST of waiter tickets, in arrival order
--   <p>:{<scope>}:r:<type>:<resource>  STRING: the ticket a free resource is held for (PX)
--   <p>:{<scope>}:a:<ticket>           STRING: this waiter is alive (PX, renewed each try)
--   <p>:{<scope>}:s:<ticket>           LIST: this waiter's wake-up signal, for BLPOP (PX)
local BASE = string.sub(K_LOCKS, 1, -6)
-- ms a woken waiter has to take the lock before the next one may.
local RESERVE = 1000

local function queue_keys(ltype, resource)
  local suffix = enc(ltype) .. ':' .. enc(resource)
  return BASE .. 'q:' .. suffix, BASE .. 'r:' .. suffix
end

-- The first live waiter of a queue; vanished ones (no alive key) are dropped.
local function first_waiter(q)
  while true do
    local t = redis.call('LINDEX', q, 0)
    if not t then
      return nil
    end
    if redis.call('EXISTS', BASE .. 'a:' .. t) == 1 then
      return t
    end
    redis.call('LPOP', q)
    redis.call('DEL', BASE .. 's:' .. t)
  end
end

-- A resource became free: hold it for its first live waiter, and wake that one.
local function wake(ltype, resource)
  local q, reserved = queue_keys(ltype, resource)
  local t = first_waiter(q)
  if t then
    local signal = BASE .. 's:' .. t
    redis.call('SET', reserved, t, 'PX', RESERVE)
    redis.call('DEL', signal)
    redis.call('LPUSH', signal, '1')
    redis.call('PEXPIRE', signal, RESERVE)
  end
end

local function drop(r)
  REMOVED = true
  if r.expires_at == nil then
    NEVER_GONE = true
  end
  wake(r.type, r.resource)
  redis.call('HDEL', K_LOCKS, r.id)
  redis.call('ZREM', K_RES, res_member(r))
  redis.call('ZREM', K_OWN, own_member(r))
  redis.call('ZREM', K_EXP, r.id)
  redis.call('HDEL', K_IDS, r.id)
  redis.call('ZREM', K_IDEXP, r.id)
end

-- Records a change durably (capped stream) and announces it live (PUBLISH).
-- extra: optional flat list of further field, value pairs.
local function emit(event, r, extra)
  local fields = {
    'event', event, 'id', r.id, 'scope', SCOPE, 'type', r.type,
    'resource', r.resource, 'owner', r.owner, 'token', int(r.token),
    'expires_at', r.expires_at and int(r.expires_at) or '', 'at', int(NOW),
  }
  for _, v in ipairs(extra or {}) do
    fields[#fields + 1] = v
  end
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', MAXLEN, '*', unpack(fields))
  local message = {}
  for i = 1, #fields, 2 do
    message[fields[i]] = fields[i + 1]
  end
  redis.call('PUBLISH', K_EVENTS, cjson.encode(message))
end

-- Locks found expired by this call (third element of every reply).
local EXPIRED = 0

local function expire(r)
  drop(r)
  emit('expired', r)
  EXPIRED = EXPIRED + 1
end

-- Removes up to SWEEP expired locks of the scope (announcing each) and, now and then, up
-- to SWEEP expired entries of the slot's id directory.
local function sweep()
  local ids = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', NOW, 'LIMIT', 0, SWEEP)
  for _, id in ipairs(ids) do
    local r = load(id)
    if r then
      expire(r)
    else
      redis.call('ZREM', K_EXP, id)
    end
  end
  -- Directory entries of scopes whose keys expired wholesale: rare, so looked for in one
  -- call of sixteen (by the clock) and reclaimed in bounded steps.
  if NOW % 16 ~= 0 then
    return
  end
  local stale = redis.call('ZRANGEBYSCORE', K_IDEXP, '-inf', NOW, 'LIMIT', 0, SWEEP)
  for _, id in ipairs(stale) do
    redis.call('HDEL', K_IDS, id)
    redis.call('ZREM', K_IDEXP, id)
    REMOVED = true
  end
end

-- Keys' lifetimes. Each key of a scope (and of a slot's id directory) lives RETAIN past
-- the latest expiry among the locks it holds, rounded up to a STEP (so most writes find it
-- unchanged), or forever while a lock without expiry exists. The value applied is kept in
-- the hash field "~exp". Removing a lock never needs a longer life, so only a store may
-- extend it (one read when unchanged); the exact value is recomputed only when a lock
-- without expiry goes away. Empty hashes and sets vanish by themselves; "~exp" goes with
-- the last lock.
local STEP = math.min(RETAIN, 60000)
local SCOPE_KEYS = {K_LOCKS, K_RES, K_OWN, K_EXP, K_EVENTS}
local SLOT_KEYS = {K_IDS, K_IDEXP}

local function lifetime(score)
  if score >= NOEXP then
    return 'never'
  end
  return int(math.ceil((score + RETAIN) / STEP) * STEP)
end

local function apply(hash, keys, target)
  redis.call('HSET', hash, '~exp', target)
  for _, k in ipairs(keys) do
    if target == 'never' then
      redis.call('PERSIST', k)
    else
      redis.call('PEXPIREAT', k, target)
    end
  end
end

-- Make the keys live at least as long as `target` needs.
local function extend(hash, keys, target)
  local applied = redis.call('HGET', hash, '~exp')
  if applied == 'never' or (applied and target ~= 'never'
                            and tonumber(applied) >= tonumber(target)) then
    return
  end
  apply(hash, keys, target)
end

-- Set the keys' lifetime from the locks they hold now.
local function recompute(zset, hash, keys)
  local top = redis.call('ZREVRANGE', zset, 0, 0, 'WITHSCORES')
  if #top == 0 then
    redis.call('HDEL', hash, '~exp')
    return false
  end
  local target = lifetime(tonumber(top[2]))
  if redis.call('HGET', hash, '~exp') ~= target then
    apply(hash, keys, target)
  end
  return true
end

-- After the last lock of a scope (or of a slot's directory) went: forget the lifetime.
local function forget_if_empty(zset, hash)
  if redis.call('EXISTS', zset) == 0 then
    redis.call('HDEL', hash, '~exp')
    return true
  end
  return false
end

local function settle()
  if NEVER_GONE then
    if not recompute(K_EXP, K_LOCKS, SCOPE_KEYS) then
      redis.call('PEXPIRE', K_EVENTS, int(RETAIN))
    end
    recompute(K_IDEXP, K_IDS, SLOT_KEYS)
    return
  end
  if STORED then
    local target = lifetime(STORED)
    extend(K_LOCKS, SCOPE_KEYS, target)
    extend(K_IDS, SLOT_KEYS, target)
  end
  if REMOVED then
    if forget_if_empty(K_EXP, K_LOCKS) then
      redis.call('PEXPIRE', K_EVENTS, int(RETAIN))
    end
    forget_if_empty(K_IDEXP, K_IDS)
  end
end

-- Every write script returns through done(): the keys' lifetimes are settled whatever the
-- outcome (a call that ends in a conflict may still have swept expired locks).
local function done(reply)
  settle()
  return reply
end

-- The live lock `id`, if `owner` may change it (or `force`); else the reply to return:
-- NOT_FOUND (unknown, or expired: then it is removed now) or NOT_OWNED.
local function claim(id, owner, force)
  local r, raw = load(id)
  if not r or not is_live(r) then
    if r then
      expire(r)
    end
    return nil, nil, {NOT_FOUND, NOW, EXPIRED}
  end
  if r.owner ~= owner and not force then
    return nil, nil, {NOT_OWNED, NOW, EXPIRED, raw}
  end
  return r, raw, nil
end
