--[[
stats.lua: a scope's live locks and waiters by type, for metrics. Removes the expired locks
it meets exactly as any call that meets one does (expire() in _lib.lua: indexes, waiters
woken or granted, an `expired` event for types with events), and tells the counts of the
scope's expired locks removed since they were last taken, by whichever call removed them
(the fields !e<type> of the scope's hash, which expire() counts up); with ARGV[5] "1" it
takes them (deletes the fields): each removal is reported once to a caller that takes.

KEYS[1] <p>:{<scope>}:L
Optional (defaults as in acquire.lua):
ARGV[1] id prefix (slot + 1), for the events of the locks it removes
ARGV[2] the event stream's approximate maximum length
ARGV[3] retention ms
ARGV[4] ms a waiter waits before a freed resource is kept for it
ARGV[5] "1": take the counts of expired locks (the one metrics counter does); else only
        read them

Reads the whole hash (twice when it removed something): O(locks of the scope) per call.

Returns: {0 OK, now, expired (removed by this call),
          {type, live locks, type, live locks, ...},
          {type, expired locks removed since the counts were last taken, ...},
          {<type>:<resource>, waiters in its line, ...}  (resources whose holder has flag w)}
Names as stored (percent-encoded).
]]
--!include _lib.lua

open(KEYS[1])
C.idp, C.maxlen = ARGV[1] or '', ARGV[2] or 1000
if ARGV[3] then
  C.retain = tonumber(ARGV[3])
end
if ARGV[4] then
  C.handoff = tonumber(ARGV[4])
end

local all = redis.call('HGETALL', L)
-- First the expired locks go (a removal may grant the lock to a waiter: a new record,
-- counted by the second read).
for i = 1, #all, 2 do
  local tok = all[i]
  if find(tok, '^%d+$') then
    local r = parse(all[i + 1])
    if not live(r) or unclaimed(tok, r) then
      expire(tok, r)
    end
  end
end
if C.expired > 0 then
  all = redis.call('HGETALL', L)
end

local held, gone, lines = {}, {}, {}
local counters = {}
for i = 1, #all, 2 do
  local f = all[i]
  if find(f, '^%d+$') then
    local fl, fld = match(all[i + 1], '^(%S+) %d+ %S+ (%S+)')
    local t = type_of(fld)
    held[t] = (held[t] or 0) + 1
    if find(fl, 'w', 2, true) and not lines[fld] then
      lines[fld] = redis.call('LLEN', waiting_key('q', fld))
    end
  elseif sub(f, 1, 2) == '!e' then
    gone[sub(f, 3)] = tonumber(all[i + 1])
    counters[#counters + 1] = f
  end
end
if #counters > 0 and ARGV[5] == '1' then
  redis.call('HDEL', L, unpack(counters))
end

local function flat(t)
  local out = {}
  for k, v in pairs(t) do
    out[#out + 1] = k
    out[#out + 1] = v
  end
  return out
end

return {OK, NOW, C.expired, flat(held), flat(gone), flat(lines)}
