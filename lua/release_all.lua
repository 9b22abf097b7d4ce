--[[
release_all.lua: release several locks of one scope together (a multi-lock's), all or none.

Locks already gone (released, expired) are passed over; if any live one is another
owner's (and not forced), none is released. A reentrant lock its owner holds more than
once gives one hold back, as release.lua does.

KEYS[1] <p>:{<scope>}:L   the scope's hash
ARGV[1] owner asking, percent-encoded
ARGV[2] force: "1" lets an administrator release locks of any owner
ARGV[3] retention ms (see acquire.lua)
ARGV[4] ms a waiter waits before a freed resource is kept for it
ARGV[5] id prefix (slot + 1), for events ("" = none)
ARGV[6] the event stream's approximate maximum length
ARGV[7..] the locks' tokens

Returns:
  {0 OK, now, expired, released}   released: how many locks went (holds given back too)
  {3 NOT_OWNED, now, expired, token, record}   another owner's: none released
]]
--!include _lib.lua
--!helpers

open(KEYS[1])
local owner, force = ARGV[1], ARGV[2] == '1'
C.retain, C.handoff, C.idp, C.maxlen = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]

local live_ones = {}
for i = 7, #ARGV do
  local tok = ARGV[i]
  local raw = redis.call('HGET', L, tok)
  if raw then
    local r = parse(raw)
    if not live(r) then
      expire(tok, r)
    elseif r.owner ~= owner and not force then
      return {NOT_OWNED, NOW, C.expired, tok, raw}
    else
      live_ones[#live_ones + 1] = {tok, r}
    end
  end
end

local released = 0
for _, one in ipairs(live_ones) do
  local tok, r = one[1], one[2]
  local more = -1
  if find(r.flags, 'c', 2, true) and not force then
    more = redis.call('HINCRBY', L, '!c' .. tok, -1)
    if more <= 0 then
      redis.call('HDEL', L, '!c' .. tok)
    end
  end
  if more < 0 then
    drop(tok, r, 'released', 'by', owner)
  end
  released = released + 1
end
return {OK, NOW, C.expired, released}
