--[[
count.lua: how many live locks a scope holds; changes nothing.

KEYS: the eight keys of _lib.lua (only KEYS[4] is read).
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)

Returns: {0 OK, now_ms, 0, count}
]]
--!include _lib.lua

return {OK, NOW, EXPIRED, redis.call('ZCOUNT', K_EXP, '(' .. int(NOW), '+inf')}
