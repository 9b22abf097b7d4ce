--[[
count.lua: how many live locks of multi types a scope holds (O(log n)); changes nothing.

KEYS[1] <p>:{<scope>}:L

Returns: {0 OK, now, 0, count}
]]
--!include _lib.lua

open(KEYS[1])
return {OK, NOW, 0, redis.call('ZCOUNT', C.B .. 'X', '(' .. NOW, '+inf')}
