--[[
acquire.lua: take a lock on a resource, atomically.

Exclusive types: a live lock of another owner on the resource is a conflict; the owner's
own live lock is refreshed and returned (same token; metadata replaced if given). Multi
types: every acquire makes a new lock. One-per-owner types: the owner's other live lock
of the type in the scope is released in this same script and reported as replaced.

KEYS[1] <p>:{<scope>}:L   the scope's hash
KEYS[2] <p>:{#<n>}:D      the slot's directory (for a new block of tokens)
ARGV[1]  <type>:<resource>, percent-encoded
ARGV[2]  owner, percent-encoded
ARGV[3]  ttl ms; "0" = no expiry
ARGV[4]  flags of the type: "x" exclusive or "m" multi, then any of o (one per owner),
         e (events), i (indexed by owner)
ARGV[5]  max ttl ms, kept in the record to cap refreshes; "0" = none
ARGV[6]  metadata, "k=v&k=v" percent-encoded ("" = none, or keep the held lock's)
ARGV[7]  retention ms: how long the scope's keys outlive its last lock's expiry
ARGV[8]  absolute expiry ms (optional; "" = use the ttl), capped at the max ttl
ARGV[9]  waiter ticket (optional; "" = not waiting): on a conflict the caller joins the
         resource's line (see wake() in _lib.lua)
ARGV[10] ms (server clock) the waiter started waiting ("" = now)
ARGV[11] ms the waiter counts as alive without trying again
ARGV[12] request id (optional): the first call that gets the lock records
         "<token>:<created 1|0>" at <p>:{<scope>}:i:<request id> for ARGV[13] ms; a
         repeated call returns that lock as it is now, or NOT_FOUND if it is gone
ARGV[13] ms a request id is remembered
ARGV[14] id prefix (slot + 1), for events
ARGV[15] the event stream's approximate maximum length
ARGV[16] ms a waiter waits before a freed resource is kept for it (default 5)

Returns:
  {0 OK, now, expired, token, record, created 1|0, replaced token or "", its record or ""}
  {1 CONFLICT, now, expired, holder token or "", holder record or ""}  ("" when the free
                                             resource is kept for an earlier waiter)
  {2 NOT_FOUND, now, expired}   a repeated request id whose lock is gone
  {4 INVALID, now, expired}     the absolute expiry is not in the future
A lock's id is <slot + 1><token, zero-padded to 14 digits>.
]]
--!include _lib.lua

open(KEYS[1])
local D = KEYS[2]
local field, owner, flags = ARGV[1], ARGV[2], ARGV[4]
local ttl, max_ttl, ttls = tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[3]
RETAIN = tonumber(ARGV[7])
IDP, MAXLEN, HANDOFF = ARGV[14] or '', ARGV[15] or 1000, tonumber(ARGV[16] or 5)
local exclusive = sub(flags, 1, 1) == 'x'
local ticket = ARGV[9] or ''
local request = ARGV[12] or ''

if request ~= '' then
  local seen = redis.call('GET', B .. 'i:' .. request)
  if seen then
    local tok, created = match(seen, '^(%d+):(%d)$')
    local raw = redis.call('HGET', L, tok)
    if raw and live(parse(raw)) then
      return {OK, NOW, 0, tok, raw, tonumber(created), '', ''}
    end
    return {NOT_FOUND, NOW, 0}
  end
end

if (ARGV[8] or '') ~= '' then
  ttl = tonumber(ARGV[8]) - NOW
  if ttl <= 0 then
    return {INVALID, NOW, 0}
  end
  if max_ttl > 0 and ttl > max_ttl then
    ttl = max_ttl
  end
  ttls = int(ttl)
end
local exp = ttl > 0 and NOW + ttl or 0
local exps = ttl > 0 and int(exp) or '0'

local ofield = find(flags, 'o', 2, true) and ('!o' .. type_of(field) .. ':' .. owner)
local got = redis.call('HMGET', L, field, '!b', '!x', ofield or '!b')
local applied = got[3]

local function remember(tok, created)
  if request ~= '' then
    redis.call('SET', B .. 'i:' .. request, tok .. ':' .. created, 'PX', ARGV[13])
  end
end

local q = B .. 'q:' .. field
local function leave_line()
  redis.call('LREM', q, 1, ticket)
  redis.call('DEL', B .. 'a:' .. ticket, B .. 's:' .. ticket)
end

-- A waiter joins the line once, and shows it is alive at every try.
local function conflict(tok, raw, r)
  if ticket ~= '' then
    redis.call('SET', B .. 'a:' .. ticket, ARGV[10] ~= '' and ARGV[10] or NOW,
               'PX', ARGV[11])
    if not redis.call('LPOS', q, ticket) then
      redis.call('RPUSH', q, ticket)
    end
    redis.call('PEXPIRE', q, ARGV[11])
    if r and not find(r.flags, 'w', 2, true) then
      r.flags = r.flags .. 'w'
      redis.call('HSET', L, tok, build(r))
    end
  end
  return {CONFLICT, NOW, EXPIRED, tok or '', raw or ''}
end

if exclusive and got[1] then
  local cur = got[1]
  if sub(cur, 1, 1) == 'r' then
    -- Kept for a woken waiter until a time: for anyone else, a conflict until then.
    local for_ticket, till = match(cur, '^r(%S+) (%d+)$')
    if for_ticket ~= ticket and tonumber(till) > NOW then
      return conflict(nil, nil, nil)
    end
  else
    local raw = redis.call('HGET', L, cur)
    if raw then
      local r = parse(raw)
      if not live(r) then
        expire(cur, r)
        -- Its waiters were woken: the resource may now be kept for one of them.
        local kept = redis.call('HGET', L, field)
        if kept and match(kept, '^r(%S+) ') ~= ticket then
          return conflict(nil, nil, nil)
        end
      elseif r.owner ~= owner then
        return conflict(cur, raw, r)
      else
        -- The owner's own lock: refreshed, same token.
        local was = r.exp
        if was == 0 and exp > 0 then
          never_gone()
        end
        r.exp, r.x, r.upd, r.ttl = exp, exps, NOWS, ttls
        if ARGV[6] ~= '' then
          r.meta = ARGV[6]
        end
        raw = build(r)
        redis.call('HSET', L, cur, raw)
        if exp > 0 or was ~= 0 then
          extend(exp, applied)
        end
        emit('refreshed', cur, r)
        if ticket ~= '' then
          leave_line()
        end
        remember(cur, 0)
        return {OK, NOW, EXPIRED, cur, raw, 0, '', ''}
      end
    end
  end
end

-- A new lock: the next token of the scope's block, or a new block of the slot.
local toks = got[2]
local tok = tonumber(toks)
if not tok or tok % 1000 == 0 then
  local old = match(D, '^(.*):D$')
  if redis.call('EXISTS', old .. ':ids') == 1 then
    return redis.error_reply('lockcore: this Redis holds locks in the layout of lockcore '
      .. '0.1 (' .. old .. ':ids); run `lockcore migrate` (see docs/redis-layout.md)')
  end
  local blk = redis.call('HINCRBY', D, '!seq', 1)
  -- Floor from the clock (a block per 10 ms since 2025-01-01; tokens per 10 us, like the
  -- old layout's): tokens keep growing even if the directory was lost.
  local t = redis.call('TIME')
  local floor = math.floor(((tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])) / 10000)
  local oldseq = tonumber(redis.call('GET', old .. ':seq') or '0')
  floor = math.max(floor, math.floor(oldseq / 1000) + 1)
  if blk < floor then
    blk = floor
    redis.call('HSET', D, '!seq', blk)
  end
  local scope = match(L, '{(.*)}:L$')
  redis.call('HSET', D, blk, scope)
  local blocks = redis.call('HGET', L, '!B')
  redis.call('HSET', L, '!B', blocks and (blocks .. ' ' .. blk) or blk)
  tok = blk * 1000
  toks = int(tok)
  -- Directory entries of scopes that are gone, a few per new block.
  local scan = redis.call('HSCAN', D, redis.call('HGET', D, '!c') or '0', 'COUNT', 8)
  redis.call('HSET', D, '!c', scan[1])
  local prefix = match(D, '^(.*):{')
  for i = 1, #scan[2], 2 do
    local b, s = scan[2][i], scan[2][i + 1]
    if find(b, '^%d+$') and tonumber(b) ~= blk then
      local held = redis.call('HGET', prefix .. ':{' .. s .. '}:L', '!B')
      if not held or not find(' ' .. held .. ' ', ' ' .. b .. ' ', 1, true) then
        redis.call('HDEL', D, b)
      end
    end
  end
end

local r = {flags = flags, exp = exp, x = exps, owner = owner, field = field, acq = NOWS,
           upd = NOWS, ttl = ttls, max = ARGV[5], meta = ARGV[6]}

local rtok, rraw = '', ''
if ofield and got[4] then
  rraw = redis.call('HGET', L, got[4])
  if rraw then
    rtok = got[4]
    local old = parse(rraw)
    drop(rtok, old)
    if live(old) then
      emit('replaced', rtok, old, 'by', IDP .. string.format('%014d', tok))
    else
      emit('expired', rtok, old)
      EXPIRED = EXPIRED + 1
      rtok, rraw = '', ''
    end
  else
    rraw = ''
  end
end

if ticket ~= '' then
  leave_line()
  if redis.call('LLEN', q) > 0 then
    r.flags = r.flags .. 'w'
  end
end

local raw = build(r)
if exclusive then
  if ofield then
    redis.call('HSET', L, toks, raw, field, toks, '!b', int(tok + 1), ofield, toks)
  else
    redis.call('HSET', L, toks, raw, field, toks, '!b', int(tok + 1))
  end
else
  redis.call('HSET', L, toks, raw, '!b', int(tok + 1))
  if ofield then
    redis.call('HSET', L, ofield, toks)
  end
  redis.call('ZADD', B .. 'R', 0, field .. ':' .. toks)
  redis.call('ZADD', B .. 'X', exp > 0 and exps or '1e15', toks)
end
if find(flags, 'i', 2, true) then
  redis.call('ZADD', B .. 'O', 0, owner .. ':' .. type_of(field) .. ':' .. toks)
end
extend(exp, applied)
if not exclusive then
  index_lifetime({B .. 'R', B .. 'X'})
end
if find(flags, 'i', 2, true) then
  index_lifetime({B .. 'O'})
end
emit('acquired', toks, r, 'replaced', rtok ~= '' and (IDP .. string.format('%014d', tonumber(rtok))) or '')
remember(toks, 1)

-- Expired locks are removed as they are met, and by a sweep: every 64th lock of the
-- scope looks at a few more of its fields.
if tok % 64 == 0 then
  local st = redis.call('HGET', L, '!s')
  local cursor, low = '0', tok
  if st then
    cursor, low = match(st, '^(%d+) (%d+)$')
    low = tonumber(low)
  end
  local scan = redis.call('HSCAN', L, cursor, 'COUNT', 32)
  local kv = scan[2]
  for i = 1, #kv, 2 do
    local f = kv[i]
    if find(f, '^%d+$') then
      local lr = parse(kv[i + 1])
      if not live(lr) then
        expire(f, lr)
      elseif tonumber(f) < low then
        low = tonumber(f)
      end
    end
  end
  if scan[1] == '0' then
    -- A whole pass: blocks below the lowest live token need no directory entry.
    local keep, gone = {}, {}
    for b in string.gmatch(redis.call('HGET', L, '!B') or '', '%d+') do
      if tonumber(b) < math.floor(low / 1000) then
        gone[#gone + 1] = b
      else
        keep[#keep + 1] = b
      end
    end
    if #gone > 0 then
      redis.call('HDEL', D, unpack(gone))
      redis.call('HSET', L, '!B', table.concat(keep, ' '))
    end
    redis.call('HSET', L, '!s', '0 ' .. (tok + 1))
  else
    redis.call('HSET', L, '!s', scan[1] .. ' ' .. low)
  end
end

return {OK, NOW, EXPIRED, tok, raw, 1, rtok, rraw}
