--[[
validate.lua: the fencing check a guarded resource makes before a write: is the token
that of the live lock on the resource? Changes nothing.

KEYS: the eight keys of _lib.lua (KEYS[1..2] are read).
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] type name
ARGV[5] resource name
ARGV[6] fencing token presented by the writer

Returns:
  {0 OK, now_ms, 0, lock_json}           the token is the current holder's
  {2 NOT_FOUND, now_ms, 0}               nobody holds the resource (it expired, or was released)
  {3 NOT_OWNED, now_ms, 0, holder_json}  someone else holds it now: the token is stale
]]
--!include _lib.lua

local prefix = enc(ARGV[4]) .. ':' .. enc(ARGV[5]) .. ':'
local token = tonumber(ARGV[6])
local holder_raw = nil
for _, member in ipairs(redis.call('ZRANGEBYLEX', K_RES, '[' .. prefix,
                                   '(' .. string.sub(prefix, 1, -2) .. ';')) do
  local r, raw = load(string.match(member, '([^:]+)$'))
  if r and is_live(r) then
    if r.token == token then
      return {OK, NOW, EXPIRED, raw}
    end
    holder_raw = raw
  end
end
if holder_raw then
  return {NOT_OWNED, NOW, EXPIRED, holder_raw}
end
return {NOT_FOUND, NOW, EXPIRED}
