--[[
release.lua: release a lock by id.

KEYS: the eight keys of _lib.lua.
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] lock id
ARGV[5] owner asking for the release
ARGV[6] force: "1" lets an administrator release a lock of any owner, "0" otherwise

Returns:
  {0 OK, now_ms, expired, lock_json}       released
  {2 NOT_FOUND, now_ms, expired}           unknown or expired
  {3 NOT_OWNED, now_ms, expired, lock_json} held by another owner and not forced
]]
--!include _lib.lua

local id, owner, force = ARGV[4], ARGV[5], ARGV[6] == '1'

sweep()
local r, raw, refusal = claim(id, owner, force)
if refusal then
  return done(refusal)
end
drop(r)
emit('released', r, {'by', owner})
return done({OK, NOW, EXPIRED, raw})
