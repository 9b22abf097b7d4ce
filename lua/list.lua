--[[
list.lua: one page of a scope's live locks; changes nothing.

KEYS[1] <p>:{<scope>}:L
ARGV[1] how: "p" the holder of one exclusive resource (ARGV[2] = <type>:<resource>);
        "r" the index of multi types, "o" the index by owner (ARGV[2] = a member prefix
        ending in ":", e.g. "<type>:" or "<owner>:<type>:"), in index order;
        "h" every lock of the scope, a batch of the hash at a time (ordered by token
        within a batch; the whole scope is one batch while it is small)
ARGV[2] see ARGV[1]
ARGV[3] cursor from the previous page ("" = from the start)
ARGV[4] page size (locks)
ARGV[5] owner filter, percent-encoded ("" = any)
ARGV[6] type filter ("" = any)
ARGV[7] resource filter ("" = any)
Reads at most max(1000, 10 x page size) entries per call.

Returns: {0 OK, now, 0, next cursor ("" at the end), token, record, token, record...}
]]
--!include _lib.lua
--!no-helpers (it reads records with a pattern of its own)

open(KEYS[1])
local how, arg, cursor, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local f_owner, f_type, f_res = ARGV[5], ARGV[6], ARGV[7]
local out = {OK, NOW, 0, ''}

-- A record (either form) of a live lock that the filters let through: read from its
-- first four words, without parsing the rest.
local function accepts(raw)
  local x, o, fld = match(raw, '^%S+ (%d+) (%S+) (%S+)')
  local exp = tonumber(x)
  if (exp ~= 0 and exp <= NOW) or (f_owner ~= '' and o ~= f_owner) then
    return false
  end
  if f_type == '' and f_res == '' then
    return true
  end
  local t, res = match(fld, '^([^:]*):(.*)$')
  return (f_type == '' or t == f_type) and (f_res == '' or res == f_res)
end

local function add(tok, raw)
  out[#out + 1] = tok
  out[#out + 1] = raw
end

if how == 'p' then
  local tok = redis.call('HGET', L, arg)
  if tok and find(tok, '^%d+$') then
    local raw = redis.call('HGET', L, tok)
    if raw and accepts(raw) then
      add(tok, raw)
    end
  end
  return out
end

local budget = math.max(1000, 10 * count)

if how == 'r' or how == 'o' then
  local index = C.B .. (how == 'r' and 'R' or 'O')
  local min, max = '-', '+'
  if arg ~= '' then
    min, max = '[' .. arg, '(' .. sub(arg, 1, -2) .. ';'
  end
  if cursor ~= '' then
    min = '(' .. cursor
  end
  while budget > 0 do
    local batch = math.min(count, budget)
    local members = redis.call('ZRANGEBYLEX', index, min, max, 'LIMIT', 0, batch)
    budget = budget - #members
    for i, m in ipairs(members) do
      local tok = match(m, '(%d+)$')
      local raw = redis.call('HGET', L, tok)
      if raw and accepts(raw) then
        add(tok, raw)
        if (#out - 4) / 2 == count then
          if i < #members or #members == batch then
            out[4] = m
          end
          return out
        end
      end
      min = '(' .. m
    end
    if #members < batch then
      return out
    end
  end
  out[4] = sub(min, 2)
  return out
end

-- "h": the hash, one HSCAN batch at a time; the cursor is "<batch>:<last token>".
local at, last = '0', 0
if cursor ~= '' then
  at, last = match(cursor, '^(%d+):(%d+)$')
  last = tonumber(last)
end
while true do
  local scan = redis.call('HSCAN', L, at, 'COUNT', math.max(2 * count, 64))
  local kv, batch = scan[2], {}
  for i = 1, #kv, 2 do
    local f = kv[i]
    if find(f, '^%d+$') and tonumber(f) > last and accepts(kv[i + 1]) then
      batch[#batch + 1] = {tonumber(f), f, kv[i + 1]}
    end
  end
  table.sort(batch, function(a, b) return a[1] < b[1] end)
  for i, e in ipairs(batch) do
    add(e[2], e[3])
    if (#out - 4) / 2 == count then
      if i < #batch then
        out[4] = at .. ':' .. e[2]
      elseif scan[1] ~= '0' then
        out[4] = scan[1] .. ':0'
      end
      return out
    end
  end
  budget = budget - #kv / 2
  at, last = scan[1], 0
  if at == '0' then
    return out
  end
  if budget <= 0 then
    out[4] = at .. ':0'
    return out
  end
end
