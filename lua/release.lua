--[[
release.lua: release a lock by id.

KEYS[1] <p>:{#<n>}:D   the directory of the lock's slot
ARGV[1] the lock's token (the id's last 14 digits)
ARGV[2] the scope, percent-encoded ("" = look it up in the directory; "<prefix>*" = look
        it up, and a scope that does not start with the encoded prefix is NOT_FOUND)
ARGV[3] owner asking, percent-encoded
ARGV[4] force: "1" lets an administrator release a lock of any owner
Optional from here on (defaults as in acquire.lua):
ARGV[5] retention ms (see acquire.lua)
ARGV[6] ms a waiter waits before a freed resource is kept for it
ARGV[7] id prefix (slot + 1), for events
ARGV[8] the event stream's approximate maximum length

Returns:
  {0 OK, now, expired, token, record, scope}         released
  {0 OK, now, expired, token, record, scope, holds}  a reentrant lock its owner held more
                                                     than once: one hold less (holds: how
                                                     many are left), still held
  {2 NOT_FOUND, now, expired}                 unknown or expired
  {3 NOT_OWNED, now, expired, token, record, scope}  another owner's, and not forced

The common case (a live lock of an exclusive type not indexed by owner, with an expiry)
is done first, before the helpers are made (see the note at the top of _lib.lua); if it
has waiters, only the hand-off's helpers are made (the line --!waking).
]]
--!include _lib.lua

local tok, owner, dir, scope = ARGV[1], ARGV[3], KEYS[1], ARGV[2]
if ARGV[5] then
  C.retain = tonumber(ARGV[5])
end
if ARGV[6] then
  C.handoff = tonumber(ARGV[6])
end
C.idp, C.maxlen = ARGV[7] or '', ARGV[8] or 1000
if scope == '' or sub(scope, -1) == '*' then
  -- Looked up; "<prefix>*": only a lock of a scope that starts with the prefix.
  local want = sub(scope, 1, -2)
  scope = redis.call('HGET', dir, math.floor(tonumber(tok) / 1000))
  if not scope or sub(scope, 1, #want) ~= want then
    return {NOT_FOUND, NOW, 0}
  end
end
C.scope = scope
open(match(dir, '^(.*):{') .. ':{' .. scope .. '}:L')
local raw = redis.call('HGET', L, tok)
if not raw then
  return {NOT_FOUND, NOW, 0}
end
local fl, x, holder, field = match(raw, '^(%S+) (%d+) (%S+) (%S+) ')
local kind, more = fl, ''
if fl ~= 'x' and fl ~= 'xe' and fl ~= 'xo' and fl ~= 'xoe' then
  kind, more = match(fl or '', '^(xo?e?)([wg]*)$')  -- with waiters, or granted
end
if kind and x ~= '0' and tonumber(x) > NOW and (holder == owner or ARGV[4] == '1') then
  -- granted to a waiter: its grant's bookkeeping goes too (a grant never taken from the
  -- signal list must not be taken later)
  local g = more ~= '' and find(more, 'g', 1, true) and '!g' .. tok
  if g then
    local t = match(redis.call('HGET', L, g) or '', '^(%S+)')
    if t then
      redis.call('DEL', waiting_key('s', t))
    end
  end
  if kind == 'xo' or kind == 'xoe' then
    redis.call('HDEL', L, tok, field, '!o' .. match(field, '^([^:]*)') .. ':' .. holder,
               g or tok)
  else
    redis.call('HDEL', L, tok, field, g or tok)
  end
  if kind == 'xe' or kind == 'xoe' then
    announce('released', tok, holder, field, x, 'by', owner)
  end
  if more ~= '' and find(more, 'w', 1, true) then
    -- Waiters: the hand-off's helpers only, not all of them.
    --!waking
    wake(field)
  end
  return {OK, NOW, 0, tok, raw, C.scope}
end

-- The general case.
--!helpers

local r, got = claim(tok, owner, ARGV[4] == '1')
if not r then
  return got
end
-- A reentrant lock held more than once by its owner: one hold less, still held.
if find(r.flags, 'c', 2, true) and ARGV[4] ~= '1' then
  local more = redis.call('HINCRBY', L, '!c' .. tok, -1)
  if more >= 0 then
    if more == 0 then
      redis.call('HDEL', L, '!c' .. tok)
    end
    return {OK, NOW, C.expired, tok, raw, C.scope, more + 1}
  end
  redis.call('HDEL', L, '!c' .. tok)
end
drop(tok, r, 'released', 'by', owner)
return {OK, NOW, C.expired, tok, raw, C.scope}
