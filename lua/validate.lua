--[[
validate.lua: the fencing check a guarded resource makes before a write: is the token
that of a live lock on the resource? Changes nothing.

KEYS[1] <p>:{<scope>}:L
ARGV[1] <type>:<resource>, percent-encoded
ARGV[2] fencing token presented by the writer

Returns:
  {0 OK, now, 0, token, record}           the token is a live lock's on the resource
  {2 NOT_FOUND, now, 0}                   nobody holds the resource
  {3 NOT_OWNED, now, 0, token, record}    someone else holds it now: the token is stale
]]
--!include _lib.lua

open(KEYS[1])
local field, tok = ARGV[1], ARGV[2]
local raw = redis.call('HGET', L, tok)
if raw then
  local r = parse(raw)
  if r.field == field and live(r) then
    return {OK, NOW, 0, tok, raw}
  end
end
-- The current holder, if any: the exclusive pointer, else the multi index.
local holder = redis.call('HGET', L, field)
local candidates = {}
if holder and find(holder, '^%d+$') then
  candidates[1] = holder
else
  for _, m in ipairs(redis.call('ZRANGEBYLEX', C.B .. 'R', '[' .. field .. ':',
                                '[' .. field .. ';', 'LIMIT', 0, 100)) do
    candidates[#candidates + 1] = match(m, '(%d+)$')
  end
end
for _, t in ipairs(candidates) do
  local hr = redis.call('HGET', L, t)
  if hr and live(parse(hr)) then
    return {NOT_OWNED, NOW, 0, t, hr}
  end
end
return {NOT_FOUND, NOW, 0}
