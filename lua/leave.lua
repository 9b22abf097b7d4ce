--[[
leave.lua: a waiter gives up (timed out or cancelled): it leaves the resource's queue and
its keys, and if the free resource was held for it, the next waiter is woken.

KEYS: the eight keys of _lib.lua.
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] type name
ARGV[5] resource name
ARGV[6] waiter ticket

Returns: {0 OK, now_ms, 0}
]]
--!include _lib.lua

local ltype, resource, ticket = ARGV[4], ARGV[5], ARGV[6]
local queue, reserved_key = queue_keys(ltype, resource)
redis.call('LREM', queue, 0, ticket)
redis.call('DEL', BASE .. 'a:' .. ticket, BASE .. 's:' .. ticket)
if redis.call('GET', reserved_key) == ticket then
  redis.call('DEL', reserved_key)
  wake(ltype, resource)
end
return done({OK, NOW, EXPIRED})
