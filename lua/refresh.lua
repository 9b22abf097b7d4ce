--[[
refresh.lua: extend a lock's lease.

KEYS: the eight keys of _lib.lua.
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] lock id
ARGV[5] owner asking for the refresh
ARGV[6] ttl in milliseconds from now; "" = the lock's own lease (its ttl at acquire).
        Capped at the lock's max_ttl. A lock without expiry stays without one when "".
ARGV[7] force: "1" lets an administrator refresh a lock of any owner, "0" otherwise

Returns:
  {0 OK, now_ms, expired, lock_json}
  {2 NOT_FOUND, now_ms, expired}
  {3 NOT_OWNED, now_ms, expired, lock_json}
]]
--!include _lib.lua

local id, owner, force = ARGV[4], ARGV[5], ARGV[7] == '1'
local ttl = tonumber(ARGV[6])

sweep()
local r, raw = load(id)
if not r or not is_live(r) then
  if r then
    expire(r)
    settle()
  end
  return {NOT_FOUND, NOW, EXPIRED}
end
if r.owner ~= owner and not force then
  return {NOT_OWNED, NOW, EXPIRED, raw}
end
ttl = ttl or r.ttl
if ttl and r.max_ttl and ttl > r.max_ttl then
  ttl = r.max_ttl
end
if ttl then
  r.expires_at = NOW + ttl
end
raw = store(r)
emit('refreshed', r)
settle()
return {OK, NOW, EXPIRED, raw}
