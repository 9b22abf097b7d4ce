--[[
acquire_all.lua: take locks on several resources of one scope, all or none (a multi-lock).

For an exclusive type that is not one per owner. Every resource must be free or held by
the owner already (its lock is then refreshed and returned as it is, as acquire does);
if another owner holds any of them, nothing is taken and the reply names that holder.
Expired locks met on the way are removed (their waiters woken). One scope only: its keys
share one hash slot, so one script can see and change them all (on a Cluster, several
scopes would be several slots, which no script may span).

KEYS[1] <p>:{<scope>}:L   the scope's hash
KEYS[2] <p>:{#<n>}:D      the slot's directory (for a new block of tokens)
ARGV[1] owner, percent-encoded
ARGV[2] ttl ms; "0" = no expiry
ARGV[3] flags of the type: "x", then any of e (events), i (indexed by owner), c
ARGV[4] metadata, "k=v&k=v" percent-encoded ("" = none, or keep a held lock's)
ARGV[5] max ttl ms, kept in the records ("0" = none)
ARGV[6] retention ms (see acquire.lua)
ARGV[7] id prefix (slot + 1), for events ("" = none)
ARGV[8] the event stream's approximate maximum length
ARGV[9..] <type>:<resource> of each resource, percent-encoded, each once

Returns:
  {0 OK, now, expired, token, record, created 1|0, token, record, created 1|0, ...}
                      one triple per resource, in the order asked
  {1 CONFLICT, now, expired, holder token or "", holder record or ""}  nothing taken ("":
                      the free resource is kept for a woken waiter)
]]
--!include _lib.lua
--!helpers

open(KEYS[1])
local D = KEYS[2]
local owner, ttls, flags, meta, maxs = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
C.retain, C.idp, C.maxlen = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local ttl = tonumber(ttls)
local exp, exps = 0, '0'
if ttl > 0 then
  exp = NOW + ttl
  exps = fmt('%d', exp)
end

-- First every resource is looked at: free, or the owner's, else nothing is taken.
local mine = {}
for i = 9, #ARGV do
  local field = ARGV[i]
  local cur = redis.call('HGET', L, field)
  if cur and sub(cur, 1, 1) ~= 'r' then
    local raw = redis.call('HGET', L, cur)
    if raw then
      local r = parse(raw)
      if not live(r) or unclaimed(cur, r) then
        expire(cur, r)  -- its waiters woken: one of them may have it now
        cur = redis.call('HGET', L, field)
      elseif r.owner == owner then
        mine[field] = {cur, r}
        cur = nil
      else
        return {CONFLICT, NOW, C.expired, cur, raw}
      end
    else
      cur = nil
    end
  end
  if cur then
    local t, till = match(cur, '^r(%S+) (%d+)$')
    if not t then  -- granted to a waiter just now
      return {CONFLICT, NOW, C.expired, cur, redis.call('HGET', L, cur) or ''}
    end
    if tonumber(till) > NOW then
      return {CONFLICT, NOW, C.expired, '', ''}
    end
  end
end

-- Then every lock is made (or the owner's refreshed), each with its own token.
local out = {OK, NOW, 0}
local events, indexed = find(flags, 'e', 2, true), find(flags, 'i', 2, true)
local made = 0
for i = 9, #ARGV do
  local field = ARGV[i]
  local own = mine[field]
  if own then
    local tok, r = own[1], own[2]
    if r.exp == 0 and exp > 0 then
      never_gone()
    end
    local was = r.exp
    r.exp, r.x, r.ttl = exp, exps, ttls
    r.upd = fmt('%d', math.max(0, NOW - tonumber(r.acq)))
    if meta ~= '' then
      r.meta = meta
    end
    if find(r.flags, 'c', 2, true) then
      redis.call('HINCRBY', L, '!c' .. tok, 1)
    end
    local raw = build(r)
    redis.call('HSET', L, tok, raw)
    if exp > 0 or was ~= 0 then
      extend(exp, redis.call('HGET', L, '!x'))
    end
    emit('refreshed', tok, r)
    out[#out + 1], out[#out + 2], out[#out + 3] = tok, raw, 0
  else
    local tok = tonumber(redis.call('HGET', L, '!b'))
    if not tok or tok % 1000 == 0 then
      local refused
      tok, refused = new_block(D)
      if not tok then
        return refused
      end
    end
    local toks = int(tok)
    local fl = flags
    if redis.call('LLEN', waiting_key('q', field)) > 0 then
      fl = fl .. 'w'
    end
    local raw = build({flags = fl, x = exps, owner = owner, field = field, acq = NOWS,
                       upd = '0', ttl = ttls, max = maxs, meta = meta})
    redis.call('HSET', L, toks, raw, field, toks, '!b', int(tok + 1))
    if indexed then
      redis.call('ZADD', C.B .. 'O', 0, owner .. ':' .. type_of(field) .. ':' .. toks)
    end
    extend(exp, redis.call('HGET', L, '!x'))
    if events then
      emit('acquired', toks, parse(raw), 'replaced', '')
    end
    if tok % 64 == 0 then
      sweep(D, tok)
    end
    made = made + 1
    out[#out + 1], out[#out + 2], out[#out + 3] = toks, raw, 1
  end
end
if indexed and made > 0 then
  index_lifetime({C.B .. 'O'})
end
out[3] = C.expired
return out
