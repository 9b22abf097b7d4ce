--[[
release.lua: release a lock by id.

KEYS[1] <p>:{#<n>}:D   the directory of the lock's slot
ARGV[1] the lock's token (the id's last 14 digits)
ARGV[2] the scope, percent-encoded ("" = look it up in the directory)
ARGV[3] owner asking, percent-encoded
ARGV[4] force: "1" lets an administrator release a lock of any owner
ARGV[5] retention ms (see acquire.lua)
ARGV[6] ms a waiter waits before a freed resource is kept for it
ARGV[7] id prefix (slot + 1), for events
ARGV[8] the event stream's approximate maximum length

Returns:
  {0 OK, now, expired, token, record, scope}         released
  {2 NOT_FOUND, now, expired}                 unknown or expired
  {3 NOT_OWNED, now, expired, token, record, scope}  another owner's, and not forced
]]
--!include _lib.lua

local tok, owner = ARGV[1], ARGV[3]
RETAIN, HANDOFF, IDP, MAXLEN = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
if not locate(KEYS[1], tok, ARGV[2]) then
  return {NOT_FOUND, NOW, 0}
end
local r, raw = claim(tok, owner, ARGV[4] == '1')
if not r then
  return raw
end
drop(tok, r)
emit('released', tok, r, 'by', owner)
return {OK, NOW, EXPIRED, tok, raw, SCOPE}
