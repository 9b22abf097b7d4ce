--[[
leave.lua: a waiter gives up (timed out or cancelled): it leaves the resource's line and
its keys, and if the free resource was kept for it, the next waiter is woken.

KEYS[1] <p>:{<scope>}:L
ARGV[1] <type>:<resource>, percent-encoded
ARGV[2] waiter ticket
ARGV[3] ms a waiter waits before a freed resource is kept for it

Returns: {0 OK, now, 0}
]]
--!include _lib.lua

open(KEYS[1])
local field, ticket = ARGV[1], ARGV[2]
HANDOFF = tonumber(ARGV[3])
redis.call('LREM', B .. 'q:' .. field, 0, ticket)
redis.call('DEL', B .. 'a:' .. ticket, B .. 's:' .. ticket)
local kept = redis.call('HGET', L, field)
if kept and match(kept, '^r(%S+) ') == ticket then
  redis.call('HDEL', L, field)
  wake(field)
end
return {OK, NOW, 0}
