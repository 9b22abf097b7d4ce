--[[
refresh.lua: extend a lock's lease, and optionally change its metadata.

KEYS[1] <p>:{#<n>}:D   the directory of the lock's slot
ARGV[1] the lock's token (the id's last 14 digits)
ARGV[2] the scope, percent-encoded ("" = look it up in the directory)
ARGV[3] owner asking, percent-encoded
ARGV[4] force: "1" lets an administrator refresh a lock of any owner
ARGV[5] ttl ms from now; "" = the lock's own lease (its ttl at acquire; a lock without
        expiry stays without); "keep" = the expiry stays (a metadata change only).
        Capped at the lock's max ttl
ARGV[6] absolute expiry ms ("" = use ARGV[5]); capped at the max ttl from now
ARGV[7] metadata ("" = unchanged): "k=v&k=v" percent-encoded; with ARGV[8] "merge" a
        key without "=v" is removed
ARGV[8] "replace": the metadata becomes ARGV[7]; "merge": its keys are set or removed
Optional from here on (defaults as in acquire.lua):
ARGV[9] retention ms (see acquire.lua)
ARGV[10] id prefix (slot + 1), for events
ARGV[11] the event stream's approximate maximum length

Returns:
  {0 OK, now, expired, token, record, scope}
  {2 NOT_FOUND, now, expired}
  {3 NOT_OWNED, now, expired, token, record, scope}
  {4 INVALID, now, expired}    the absolute expiry is not in the future

The common case (a new lease for a live lock of an exclusive type, no metadata change, the keys' lifetime long enough already) is done first, before the
helpers are made (see the note at the top of _lib.lua).
]]
--!include _lib.lua

local tok, owner = ARGV[1], ARGV[3]
if ARGV[9] then
  C.retain = tonumber(ARGV[9])
end
C.idp, C.maxlen = ARGV[10] or '', ARGV[11] or 1000
if ARGV[6] == '' and ARGV[7] == '' and ARGV[5] ~= 'keep' then
  local dir, scope = KEYS[1], ARGV[2]
  if scope == '' then
    scope = redis.call('HGET', dir, math.floor(tonumber(tok) / 1000)) or ''
  end
  if scope ~= '' then
    open(match(dir, '^(.*):{') .. ':{' .. scope .. '}:L')
    local got = redis.call('HMGET', L, tok, '!x')
    local fl, x, holder, field, acq, upd, lease, max, meta
    if got[1] then
      fl, x, holder, field, acq, upd, lease, max, meta = match(got[1],
        '^(%S+) (%d+) (%S+) (%S+) (%d+) (%d+) (%d+) (%d+) (.*)$')
      if not fl then  -- the short form
        fl, x, holder, field, lease = match(got[1], '^(%S+) (%d+) (%S+) (%S+) (%d+)$')
        acq, max, meta = fl and fmt('%d', tonumber(x) - tonumber(lease)), '0', ''
      end
    end
    if fl and sub(fl, 1, 1) == 'x' and x ~= '0'
        and tonumber(x) > NOW and (holder == owner or ARGV[4] == '1') then
      local ttl = tonumber(ARGV[5]) or tonumber(lease)
      local cap = tonumber(max)
      if cap > 0 and ttl > cap then
        ttl = cap
      end
      local exp, retain = NOW + ttl, C.retain
      local step = retain < 60000 and retain or 60000
      if ttl > 0 and got[2] and tonumber(got[2]) >= math.ceil((exp + retain) / step) * step then
        local raw = fl .. ' ' .. fmt('%d', exp) .. ' ' .. holder .. ' ' .. field .. ' ' .. acq
          .. ' ' .. fmt('%d', math.max(0, NOW - tonumber(acq))) .. ' ' .. lease .. ' ' .. max .. ' ' .. meta
        redis.call('HSET', L, tok, raw)
        if find(fl, 'e', 2, true) then
          announce('refreshed', tok, holder, field, fmt('%d', exp))
        end
        return {OK, NOW, 0, tok, raw, scope}
      end
    end
  end
end

-- The general case.
--!helpers

if not locate(KEYS[1], tok, ARGV[2]) then
  return {NOT_FOUND, NOW, 0}
end
local r, raw = claim(tok, owner, ARGV[4] == '1')
if not r then
  return raw
end
local ttl = nil
if ARGV[6] ~= '' then
  ttl = tonumber(ARGV[6]) - NOW
  if ttl <= 0 then
    return {INVALID, NOW, C.expired}
  end
elseif ARGV[5] ~= 'keep' then
  ttl = tonumber(ARGV[5])
  if not ttl and r.ttl ~= '0' then
    ttl = tonumber(r.ttl)
  end
end
local max = tonumber(r.max)
if ttl and max > 0 and ttl > max then
  ttl = max
end
local was = r.exp
if ttl then
  r.exp = NOW + ttl
  r.x = int(r.exp)
end

if ARGV[7] ~= '' then
  if ARGV[8] == 'replace' then
    r.meta = ARGV[7]
  else
    local keys, values = {}, {}
    for pair in string.gmatch(r.meta, '[^&]+') do
      local k, v = match(pair, '^([^=]*)=(.*)$')
      keys[#keys + 1] = k
      values[k] = v
    end
    for pair in string.gmatch(ARGV[7], '[^&]+') do
      local k, v = match(pair, '^([^=]*)=(.*)$')
      k = k or pair
      if values[k] == nil and v then
        keys[#keys + 1] = k
      end
      values[k] = v or false
    end
    local out = {}
    for _, k in ipairs(keys) do
      if values[k] then
        out[#out + 1] = k .. '=' .. values[k]
      end
    end
    r.meta = table.concat(out, '&')
  end
end
r.upd = fmt('%d', math.max(0, NOW - tonumber(r.acq)))  -- a clock set back: 0
raw = build(r)
redis.call('HSET', L, tok, raw)
if sub(r.flags, 1, 1) == 'm' then
  redis.call('ZADD', C.B .. 'X', r.exp > 0 and r.x or '1e15', tok)
end
if was == 0 and r.exp ~= 0 then
  never_gone()
end
if r.exp ~= 0 then
  extend(r.exp, redis.call('HGET', L, '!x'))
end
emit('refreshed', tok, r)
return {OK, NOW, C.expired, tok, raw, C.scope}
