--[[
refresh.lua: extend a lock's lease, and optionally change its metadata.

KEYS: the eight keys of _lib.lua.
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] lock id
ARGV[5] owner asking for the refresh
ARGV[6] ttl in milliseconds from now; "" = the lock's own lease (its ttl at acquire);
        "keep" = leave the expiry as it is (a metadata change only).
        Capped at the lock's max_ttl. A lock without expiry stays without one when "".
ARGV[7] force: "1" lets an administrator refresh a lock of any owner, "0" otherwise
ARGV[8] absolute expiry, ms since the epoch ("" = use ARGV[6]); capped at max_ttl from now
ARGV[9] metadata JSON object ("" = unchanged)
ARGV[10] "replace": the metadata becomes ARGV[9]; "merge": its keys are set, and keys
         whose value is null are removed

Returns:
  {0 OK, now_ms, expired, lock_json}
  {2 NOT_FOUND, now_ms, expired}
  {3 NOT_OWNED, now_ms, expired, lock_json}
  {4 INVALID, now_ms, expired}    the absolute expiry is not in the future
]]
--!include _lib.lua

local id, owner, force = ARGV[4], ARGV[5], ARGV[7] == '1'
local keep = ARGV[6] == 'keep'
local ttl = tonumber(ARGV[6])

sweep()
local r, raw, refusal = claim(id, owner, force)
if refusal then
  return done(refusal)
end
if (ARGV[8] or '') ~= '' then
  ttl = tonumber(ARGV[8]) - NOW
  if ttl <= 0 then
    return done({INVALID, NOW, EXPIRED})
  end
end
if not keep then
  ttl = ttl or r.ttl
end
if ttl and r.max_ttl and ttl > r.max_ttl then
  ttl = r.max_ttl
end
if ttl then
  if r.expires_at == nil then
    NEVER_GONE = true
  end
  r.expires_at = NOW + ttl
end
if (ARGV[9] or '') ~= '' then
  local changes = cjson.decode(ARGV[9])
  if ARGV[10] == 'replace' then
    r.metadata = changes
  else
    for k, v in pairs(changes) do
      if v == cjson.null then
        r.metadata[k] = nil
      else
        r.metadata[k] = v
      end
    end
  end
end
r.updated_at = NOW
raw = store(r)
emit('refreshed', r)
return done({OK, NOW, EXPIRED, raw})
