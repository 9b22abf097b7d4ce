--[[
acquire.lua: take a lock on a resource, atomically.

Expired entries are removed first. Then, for an `exclusive` type: a live lock of another
owner on the resource is a conflict; a live lock of the same owner is refreshed and
returned (same id, same token). For a `one_per_owner` type, the owner's other live locks
of this type in the scope are released in this same script and reported as replaced.
Otherwise a new lock is created with a new id and a new fencing token.

KEYS: the eight keys of _lib.lua.
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4]  type name
ARGV[5]  resource name
ARGV[6]  owner
ARGV[7]  mode: "exclusive" (one holder per resource) or "multi" (many locks per resource)
ARGV[8]  one_per_owner: "1" or "0"
ARGV[9]  ttl in milliseconds; "0" = no expiry
ARGV[10] max ttl in milliseconds, kept in the record to cap refreshes; "0" = no cap
ARGV[11] metadata: JSON object of string -> string
ARGV[12] id prefix: hash slot of the scope + 1 (decimal)
ARGV[13] absolute expiry, ms since the epoch ("" = use the ttl): the lease is what is left
         until then, capped at the max ttl
ARGV[14] waiter ticket ("" = not waiting): on a conflict the caller joins the resource's
         FIFO queue (see _lib.lua), and gets the lock only in its turn
ARGV[15] ms the waiter counts as alive without trying again
ARGV[16] ms the queue must live at least (as long as its waiters count as alive)
ARGV[17] request id ("" = none): a caller's idempotency key, hex. The first call that gets
         the lock records "<lock id>:<created 1|0>" under <p>:{<scope>}:i:<request id> for
         ARGV[18] ms; a repeated call with the same request id acts no more: it returns
         that lock as it is now, or NOT_FOUND if it is gone
ARGV[18] ms a request id is remembered

Returns:
  {0 OK, now_ms, expired, lock_json, replaced_json or "", created 1|0}
  {1 CONFLICT, now_ms, expired, holder_json}    holder_json "" when the free resource
                                                 is held for an earlier waiter
  {4 INVALID, now_ms, expired}    the absolute expiry is not in the future
  {2 NOT_FOUND, now_ms, expired}  a repeated request id whose lock is gone
Ids are "<slot+1><seq zero-padded to 14 digits>": decimal, fit a signed 64-bit integer.
The fencing token is <seq>: it grows for every lock of the slot, so per resource too.
]]
--!include _lib.lua

local ltype, resource, owner, mode = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local one_per_owner = ARGV[8] == '1'
local ttl, max_ttl = tonumber(ARGV[9]), tonumber(ARGV[10])
local metadata = cjson.decode(ARGV[11])
local id_prefix = ARGV[12]

sweep()

-- A repeated request (same request id) returns the first call's lock instead of acting.
local request = ARGV[17] or ''
local request_key = BASE .. 'i:' .. request
if request ~= '' then
  local seen = redis.call('GET', request_key)
  if seen then
    local seen_id, seen_created = string.match(seen, '^([^:]+):(%d)$')
    local r, raw = load(seen_id or '')
    if r and is_live(r) then
      return done({OK, NOW, EXPIRED, raw, '', tonumber(seen_created)})
    end
    return done({NOT_FOUND, NOW, EXPIRED})
  end
end

local function remember(id, created)
  if request ~= '' then
    redis.call('SET', request_key, id .. ':' .. created, 'PX', tonumber(ARGV[18]))
  end
end

if (ARGV[13] or '') ~= '' then
  ttl = tonumber(ARGV[13]) - NOW
  if ttl <= 0 then
    return done({INVALID, NOW, EXPIRED})
  end
  if max_ttl > 0 and ttl > max_ttl then
    ttl = max_ttl
  end
end

local function lex_range(key, prefix)
  return redis.call('ZRANGEBYLEX', key, '[' .. prefix, '(' .. string.sub(prefix, 1, -2) .. ';')
end

local function id_of(member)
  return string.match(member, '([^:]+)$')
end

local function expires(now)
  if ttl > 0 then
    return now + ttl
  end
  return nil
end

local ticket = ARGV[14] or ''
local queue, reserved_key = queue_keys(ltype, resource)

-- A waiter joins the queue once, and proves it is alive at every try.
local function wait_in_line()
  if ticket == '' then
    return
  end
  redis.call('SET', BASE .. 'a:' .. ticket, '1', 'PX', tonumber(ARGV[15]))
  if not redis.call('LPOS', queue, ticket) then
    redis.call('RPUSH', queue, ticket)
  end
  if redis.call('PTTL', queue) < tonumber(ARGV[16]) then
    redis.call('PEXPIRE', queue, tonumber(ARGV[16]))
  end
end

if mode == 'exclusive' then
  for _, member in ipairs(lex_range(K_RES, enc(ltype) .. ':' .. enc(resource) .. ':')) do
    local r, raw = load(id_of(member))
    if r and not is_live(r) then
      expire(r)
    elseif r and r.owner ~= owner then
      wait_in_line()
      return done({CONFLICT, NOW, EXPIRED, raw})
    elseif r then
      if r.expires_at == nil and ttl > 0 then
        NEVER_GONE = true
      end
      r.expires_at = expires(NOW)
      r.updated_at = NOW
      r.ttl = ttl > 0 and ttl or nil
      for k, v in pairs(metadata) do
        r.metadata[k] = v
      end
      local raw = store(r)
      emit('refreshed', r)
      if ticket ~= '' then  -- it was waiting for a lock its owner already holds
        redis.call('LREM', queue, 0, ticket)
        redis.call('DEL', BASE .. 'a:' .. ticket, BASE .. 's:' .. ticket)
      end
      remember(r.id, 0)
      return done({OK, NOW, EXPIRED, raw, '', 0})
    end
  end
  -- Free. Waiters who came first go first.
  local reserved = redis.call('GET', reserved_key)
  if not reserved then
    local first = first_waiter(queue)
    if first and first ~= ticket then
      wake(ltype, resource)
      reserved = first
    end
  end
  if reserved and reserved ~= ticket then
    wait_in_line()
    return done({CONFLICT, NOW, EXPIRED, ''})
  end
  if ticket ~= '' then
    redis.call('LREM', queue, 1, ticket)
    redis.call('DEL', reserved_key, BASE .. 'a:' .. ticket, BASE .. 's:' .. ticket)
  end
end

-- A new lock.
local seq = tonumber(redis.call('GET', K_SEQ) or '0') + 1
-- Floor from the clock (one per 10 microseconds since 2025-01-01, less than a script
-- takes): tokens keep growing even if the counter key was lost.
local floor = math.floor((NOW_US - 1735689600000000) / 10)
if seq < floor then
  seq = floor
end
redis.call('SET', K_SEQ, int(seq))

local lock = {
  id = id_prefix .. string.format('%014.0f', seq),
  type = ltype, resource = resource, owner = owner, token = seq,
  acquired_at = NOW, updated_at = NOW, expires_at = expires(NOW), metadata = metadata,
}
if ttl > 0 then
  lock.ttl = ttl
end
if max_ttl > 0 then
  lock.max_ttl = max_ttl
end

local replaced_raw, replaced_id = '', ''
if one_per_owner then
  for _, member in ipairs(lex_range(K_OWN, enc(owner) .. ':' .. enc(ltype) .. ':')) do
    local r, raw = load(id_of(member))
    if r and is_live(r) then
      drop(r)
      emit('replaced', r, {'by', lock.id})
      if replaced_raw == '' then
        replaced_raw, replaced_id = raw, r.id
      end
    elseif r then
      expire(r)
    end
  end
end

local raw = store(lock)
emit('acquired', lock, {'replaced', replaced_id})
remember(lock.id, 1)
return done({OK, NOW, EXPIRED, raw, replaced_raw, 1})
