--[[
get.lua: read one lock; changes nothing.

KEYS: the eight keys of _lib.lua (only KEYS[1] is read).
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] lock id

Returns:
  {0 OK, now_ms, expired, lock_json}
  {2 NOT_FOUND, now_ms, expired}   unknown, or expired (even if not yet swept)
]]
--!include _lib.lua

local r, raw = load(ARGV[4])
if not r or not is_live(r) then
  return {NOT_FOUND, NOW, EXPIRED}
end
return {OK, NOW, EXPIRED, raw}
