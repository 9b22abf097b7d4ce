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
         e (events), i (indexed by owner), c (reentrant: the owner's acquire of its own
         lock counts one more hold, each release one less), k (read-write: a multi type
         whose locks are read locks, flag s, or write locks)
Optional from here on (a call may stop at any point; the default applies to the rest):
ARGV[5]  metadata, "k=v&k=v" percent-encoded ("" = none, or keep the held lock's)
ARGV[6]  max ttl ms, kept in the record to cap refreshes ("0" = none)
ARGV[7]  absolute expiry ms ("" = use the ttl), capped at the max ttl
ARGV[8]  retention ms: how long the scope's keys outlive its last lock's expiry
         (default 604800000, 7 days)
ARGV[9]  ms a waiter waits before a freed resource is kept for it (default 5)
ARGV[10] id prefix (slot + 1), for events ("" = none)
ARGV[11] the event stream's approximate maximum length (default 1000)
ARGV[12] waiter ticket ("" = not waiting): on a conflict the caller joins the
         resource's line (see wake() in _lib.lua)
ARGV[13] ms (server clock) the waiter started waiting ("" = now: its first try, which
         takes a free resource as a plain acquire does, and joins the line on a conflict)
ARGV[14] ms the waiter counts as alive without trying again
ARGV[15] request id ("" = none): the first call that gets the lock records
         "<token>:<created 1|0>" at <p>:{<scope>}:i:<request id> for ARGV[16] ms; a
         repeated call returns that lock as it is now, or NOT_FOUND if it is gone
ARGV[16] ms a request id is remembered
ARGV[17] multi types: how many live locks the resource may have at once (a semaphore's
         permits; "0" or absent = no cap): one more is a conflict (a waiter joins the
         line, woken when a permit is freed). Read-write types (flag k) need no cap: a
         read lock (flag s) conflicts with a write lock or a writer waiting in line, a
         write lock with any lock

Returns:
  {0 OK, now, expired, token}   a new lock, made exactly as asked (no absolute expiry,
                                nothing replaced): its record is the caller's arguments
                                with acquired = now, updated 0 ms after, expires = now + ttl
  {0 OK, now, expired, token, record, created 1|0, replaced token or "", its record or ""}
  {1 CONFLICT, now, expired, holder token or "", holder record or ""}  ("" when the free
                                             resource is kept for an earlier waiter)
  {2 NOT_FOUND, now, expired}   a repeated request id whose lock is gone
  {4 INVALID, now, expired}     the absolute expiry is not in the future
A lock's id is <slot + 1><token, zero-padded to 14 digits>.

The common case (a new lock of an exclusive type not indexed by owner, with or without
events, one-per-owner only when the owner holds no lock of the type in the scope; no
waiter, no request id, no absolute expiry, nothing to sweep) is done first, before the helpers are made (see the
note at the top of _lib.lua); anything else goes on to the general case below.
]]
--!include _lib.lua

open(KEYS[1])
local D = KEYS[2]
local got
local fl = ARGV[4]
local events = fl == 'xe' or fl == 'xoe'
if (fl == 'x' or fl == 'xo' or events) and ARGV[3] ~= '0' and (ARGV[7] or '') == ''
    and (ARGV[13] or '') == '' and (ARGV[15] or '') == '' then
  local field = ARGV[1]
  local ofield = fl ~= 'x' and fl ~= 'xe' and ('!o' .. match(field, '^([^:]*)') .. ':' .. ARGV[2])
  if ofield then
    got = redis.call('HMGET', L, field, '!b', '!x', ofield)
  else
    got = redis.call('HMGET', L, field, '!b', '!x')
  end
  local tok = not got[1] and not got[4] and tonumber(got[2])
  if tok and tok % 64 ~= 0 and tok % 1000 ~= 0 then
    local exp = NOW + tonumber(ARGV[3])
    local retain = ARGV[8] and tonumber(ARGV[8]) or C.retain
    local step = retain < 60000 and retain or 60000
    if got[3] and tonumber(got[3]) >= math.ceil((exp + retain) / step) * step then
      local toks, exps = got[2], fmt('%d', exp)
      local raw = fl .. ' ' .. exps .. ' ' .. ARGV[2] .. ' ' .. field .. ' '
      if (ARGV[6] or '0') == '0' and (ARGV[5] or '') == '' then
        raw = raw .. ARGV[3]  -- the short form: acquired = expires - ttl
      else
        raw = raw .. NOWS .. ' 0 ' .. ARGV[3] .. ' ' .. (ARGV[6] or '0') .. ' ' .. ARGV[5]
      end
      if ofield then
        redis.call('HSET', L, toks, raw, field, toks, ofield, toks, '!b', fmt('%d', tok + 1))
      else
        redis.call('HSET', L, toks, raw, field, toks, '!b', fmt('%d', tok + 1))
      end
      if events then
        C.idp, C.maxlen, C.retain = ARGV[10] or '', ARGV[11] or 1000, retain
        announce('acquired', tok, ARGV[2], field, exps, 'replaced', '')
      end
      return {OK, NOW, 0, toks}
    end
  end
end

-- The general case.
--!helpers

local field, owner, ttls, flags = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local meta, maxs, ats = ARGV[5] or '', ARGV[6] or '0', ARGV[7] or ''
if ARGV[8] then
  C.retain = tonumber(ARGV[8])
end
if ARGV[9] then
  C.handoff = tonumber(ARGV[9])
end
C.idp, C.maxlen = ARGV[10] or '', ARGV[11] or 1000
local ticket, request = ARGV[12] or '', ARGV[15] or ''
local ttl = tonumber(ttls)
local exclusive = sub(flags, 1, 1) == 'x'
-- A waiter's request, kept with it in line so that a release can grant it the lock (see
-- wake() in _lib.lua): only for what a grant can make (a lock with an expiry, no
-- absolute one, no request id, a type not indexed by owner).
local req = ''
if ticket ~= '' and exclusive and ttl > 0 and ats == '' and request == ''
    and not find(flags, 'i', 2, true) then
  req = ' ' .. ttls .. ' ' .. maxs .. ' ' .. flags .. ' ' .. owner .. ' ' .. C.idp .. ' '
    .. C.maxlen .. ' ' .. fmt('%d', C.retain) .. ' ' .. meta
end

if request ~= '' then
  local seen = redis.call('GET', C.B .. 'i:' .. request)
  if seen then
    local tok, created = match(seen, '^(%d+):(%d)$')
    local raw = redis.call('HGET', L, tok)
    if raw and live(parse(raw)) then
      return {OK, NOW, 0, tok, raw, tonumber(created), '', ''}
    end
    return {NOT_FOUND, NOW, 0}
  end
end

if ats ~= '' then
  ttl = tonumber(ats) - NOW
  if ttl <= 0 then
    return {INVALID, NOW, 0}
  end
  local max_ttl = tonumber(maxs)
  if max_ttl > 0 and ttl > max_ttl then
    ttl = max_ttl
  end
  ttls = fmt('%d', ttl)
end
local exp, exps = 0, '0'
if ttl > 0 then
  exp = NOW + ttl
  exps = fmt('%d', exp)
end

local ofield = find(flags, 'o', 2, true) and ('!o' .. match(field, '^([^:]*)') .. ':' .. owner)
if ofield then
  got = redis.call('HMGET', L, field, '!b', '!x', ofield)
elseif not got then
  got = redis.call('HMGET', L, field, '!b', '!x')
end
local applied = got[3]

if exclusive and got[1] then
  local cur = got[1]
  if sub(cur, 1, 1) == 'r' then
    -- Kept for a woken waiter until a time: for anyone else, a conflict until then.
    local for_ticket, till = match(cur, '^r(%S+) (%d+)$')
    if for_ticket ~= ticket and tonumber(till) > NOW then
      if ticket ~= '' then
        join_line(field, ticket, ARGV[13], ARGV[14], req)
      end
      return {CONFLICT, NOW, C.expired, '', ''}
    end
  else
    local raw = redis.call('HGET', L, cur)
    if raw then
      local r = parse(raw)
      if not live(r) or unclaimed(cur, r) then
        expire(cur, r)
        -- Its waiters were woken: the resource may now be kept for one of them, or
        -- granted to the first (this caller, maybe).
        local kept = redis.call('HGET', L, field)
        if kept and sub(kept, 1, 1) ~= 'r' then
          local kraw = redis.call('HGET', L, kept)
          if ticket ~= '' and granted_to(kept, parse(kraw)) == ticket then
            leave_line(field, ticket)  -- the grant is taken here, not from the signal
            return {OK, NOW, C.expired, kept, kraw, 1, '', ''}
          end
          if ticket ~= '' then
            join_line(field, ticket, ARGV[13], ARGV[14], req, kept, parse(kraw))
          end
          return {CONFLICT, NOW, C.expired, kept, kraw}
        elseif kept and match(kept, '^r(%S+) ') ~= ticket then
          if ticket ~= '' then
            join_line(field, ticket, ARGV[13], ARGV[14], req)
          end
          return {CONFLICT, NOW, C.expired, '', ''}
        end
      elseif r.owner ~= owner then
        if ticket ~= '' then
          join_line(field, ticket, ARGV[13], ARGV[14], req, cur, r)
        end
        return {CONFLICT, NOW, C.expired, cur, raw}
      else
        -- The owner's own lock: refreshed, same token (a reentrant type's: held once
        -- more, !c<token> counting the holds past the first).
        if find(r.flags, 'c', 2, true) then
          redis.call('HINCRBY', L, '!c' .. cur, 1)
        end
        local was = r.exp
        if was == 0 and exp > 0 then
          never_gone()
        end
        r.exp, r.x, r.upd, r.ttl = exp, exps, fmt('%d', math.max(0, NOW - tonumber(r.acq))), ttls
        if meta ~= '' then
          r.meta = meta
        end
        raw = build(r)
        redis.call('HSET', L, cur, raw)
        if exp > 0 or was ~= 0 then
          extend(exp, applied)
        end
        emit('refreshed', cur, r)
        if ticket ~= '' then
          leave_line(field, ticket)
        end
        if request ~= '' then
          remember(request, cur, 0, ARGV[16])
        end
        return {OK, NOW, C.expired, cur, raw, 0, '', ''}
      end
    end
  end
end

-- Multi types whose holders decide (see _lib.lua, holders_allow()): a cap (a
-- semaphore) or read-write (flag k; a read lock has flag s).
local cap = tonumber(ARGV[17] or '0')
if not exclusive and (cap > 0 or find(flags, 'k', 2, true)) then
  local refused = holders_allow(field, flags, cap, ticket, ARGV[13], ARGV[14])
  if refused then
    return refused
  end
end

-- A new lock: the next token of the scope's block, or a new block of the slot.
local toks = got[2]
local tok = tonumber(toks)
if not tok or tok % 1000 == 0 then
  local refused
  tok, refused = new_block(D)
  if not tok then
    return refused
  end
  toks = int(tok)
end

local rtok, rraw = '', ''
if ofield and got[4] then
  rraw = redis.call('HGET', L, got[4])
  if rraw then
    rtok = got[4]
    local old = parse(rraw)
    C.grants = false  -- a grant would take the token this lock is about to get
    if live(old) then
      drop(rtok, old, 'replaced', 'by', C.idp .. fmt('%014d', tok))
    else
      drop(rtok, old, 'expired')
      C.expired = C.expired + 1
      rtok, rraw = '', ''
    end
    C.grants = true
  else
    rraw = ''
  end
end

if ticket ~= '' then
  leave_line(field, ticket)
  if redis.call('LLEN', waiting_key('q', field)) > 0 then
    flags = flags .. 'w'
    if find(flags, 's', 2, true) then
      wake(field)  -- a reader got in: the next in line may be a reader too
    end
  end
end

local raw = build({flags = flags, x = exps, owner = owner, field = field, acq = NOWS,
                   upd = '0', ttl = ttls, max = maxs, meta = meta})
local nexts = fmt('%d', tok + 1)
if exclusive then
  if ofield then
    redis.call('HSET', L, toks, raw, field, toks, '!b', nexts, ofield, toks)
  else
    redis.call('HSET', L, toks, raw, field, toks, '!b', nexts)
  end
else
  redis.call('HSET', L, toks, raw, '!b', nexts)
  if ofield then
    redis.call('HSET', L, ofield, toks)
  end
  redis.call('ZADD', C.B .. 'R', 0, field .. ':' .. toks)
  redis.call('ZADD', C.B .. 'X', exp > 0 and exps or '1e15', toks)
end
local indexed = find(flags, 'i', 2, true)
if indexed then
  redis.call('ZADD', C.B .. 'O', 0, owner .. ':' .. type_of(field) .. ':' .. toks)
end

extend(exp, applied)
if not exclusive then
  index_lifetime({C.B .. 'R', C.B .. 'X'})
end
if indexed then
  index_lifetime({C.B .. 'O'})
end
if find(flags, 'e', 2, true) then
  emit('acquired', toks, parse(raw), 'replaced',
       rtok ~= '' and (C.idp .. fmt('%014d', tonumber(rtok))) or '')
end
if request ~= '' then
  remember(request, toks, 1, ARGV[16])
end
if tok % 64 == 0 then
  sweep(D, tok)
end

if rtok ~= '' or ats ~= '' then
  return {OK, NOW, C.expired, toks, raw, 1, rtok, rraw}
end
return {OK, NOW, C.expired, toks}
