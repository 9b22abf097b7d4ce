--[[
leave.lua: a waiter gives up (timed out or cancelled): it leaves the resource's line and
its keys; if the free resource was kept for it, the next waiter is woken; if the lock was
granted to it (see wake() in _lib.lua) and it never took it, the lock is released.

KEYS[1] <p>:{<scope>}:L
ARGV[1] <type>:<resource>, percent-encoded
ARGV[2] waiter ticket
ARGV[3] ms a waiter waits before a freed resource is kept for it
Optional (defaults as in acquire.lua): for the event of a released grant
ARGV[4] id prefix (slot + 1)
ARGV[5] the event stream's approximate maximum length

Returns: {0 OK, now, 0} or, if a lock granted to the waiter was released,
         {0 OK, now, 0, token}
]]
--!include _lib.lua

open(KEYS[1])
local field, ticket = ARGV[1], ARGV[2]
C.handoff = tonumber(ARGV[3])
C.idp, C.maxlen = ARGV[4] or '', ARGV[5] or 1000
leave_line(field, ticket)
local kept = redis.call('HGET', L, field)
if kept and sub(kept, 1, 1) == 'r' then
  if match(kept, '^r(%S+) ') == ticket then
    redis.call('HDEL', L, field)
    wake(field)
  end
elseif kept then
  local raw = redis.call('HGET', L, kept)
  local r = raw and parse(raw)
  if r and granted_to(kept, r) == ticket then
    drop(kept, r, 'released', 'by', r.owner)
    return {OK, NOW, 0, kept}
  end
end
return {OK, NOW, 0}
