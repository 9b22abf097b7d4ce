--[[
list.lua: one page of a scope's live locks; changes nothing.

Walks a lexicographic index from a cursor, skipping expired locks (even before any sweep
ran) and those that fail the filters; reads at most max(1000, 10 x count) index entries.

KEYS: the eight keys of _lib.lua (KEYS[1..3] are read).
ARGV[1..3]: scope, stream max length, retention ms (see _lib.lua)
ARGV[4] index: "res" (members "<type>:<resource>:<id>") or "own" ("<owner>:<type>:<id>")
ARGV[5] member prefix, encoded, ending in ":" ("" = the whole index)
ARGV[6] cursor: the last member of the previous page ("" = from the start)
ARGV[7] page size (locks)
ARGV[8] owner filter ("" = any)
ARGV[9] type filter ("" = any)
ARGV[10] resource filter ("" = any)

Returns: {0 OK, now_ms, 0, next_cursor ("" at the end), lock_json...}
]]
--!include _lib.lua

local index = ARGV[4] == 'own' and K_OWN or K_RES
local prefix, cursor, count = ARGV[5], ARGV[6], tonumber(ARGV[7])
local f_owner, f_type, f_resource = ARGV[8], ARGV[9], ARGV[10]

local min = '-'
local max = '+'
if prefix ~= '' then
  min = '[' .. prefix
  max = '(' .. string.sub(prefix, 1, -2) .. ';'
end
if cursor ~= '' then
  min = '(' .. cursor
end

local out = {OK, NOW, EXPIRED, ''}
local budget = math.max(1000, 10 * count)
while budget > 0 do
  local batch = math.min(count, budget)
  local members = redis.call('ZRANGEBYLEX', index, min, max, 'LIMIT', 0, batch)
  budget = budget - #members
  for i, member in ipairs(members) do
    local r, raw = load(string.match(member, '([^:]+)$'))
    if r and is_live(r)
      and (f_owner == '' or r.owner == f_owner)
      and (f_type == '' or r.type == f_type)
      and (f_resource == '' or r.resource == f_resource) then
      out[#out + 1] = raw
      if #out - 4 == count then
        if i < #members or #members == batch then
          out[4] = member
        end
        return out
      end
    end
    min = '(' .. member
  end
  if #members < batch then
    return out
  end
end
-- Read budget spent: the caller continues from the last member read.
out[4] = string.sub(min, 2)
return out
