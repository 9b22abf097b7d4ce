--[[
get.lua: read one lock by id; changes nothing.

KEYS[1] <p>:{#<n>}:D   the directory of the lock's slot
ARGV[1] the lock's token (the id's last 14 digits)
ARGV[2] the scope, percent-encoded ("" = look it up in the directory)

Returns:
  {0 OK, now, 0, token, record, scope}
  {2 NOT_FOUND, now, 0}   unknown, or expired (even if not yet removed)
]]
--!include _lib.lua

local tok = ARGV[1]
if not locate(KEYS[1], tok, ARGV[2]) then
  return {NOT_FOUND, NOW, 0}
end
local raw = redis.call('HGET', L, tok)
if not raw or not live(parse(raw)) then
  return {NOT_FOUND, NOW, 0}
end
return {OK, NOW, 0, tok, raw, C.scope}
