--[[
_lib.lua: the state and helpers shared by lockcore's scripts (docs/redis-layout.md is the
full reference of the layout).

Not a script of its own: each script is this file's first part (down to `--!helpers`),
the line `begin()`, then the script's own file (without its `--!include _lib.lua` line),
with this file's second part (the helpers) put where the script has the line
`--!helpers`, or before its first line if it has none. lockcore/scripts.py puts them
together, and `python -m lockcore.scripts dump DIR` writes the results, ready for EVAL.

What it costs: EVALSHA runs the whole script at every call, and making its Lua functions
(closures over this file's locals) costs more than most of the commands a script runs. So
this file has two parts: the state, open(), waiting_key() and begin(), which every script
starts with; and the helpers, below the line `--!helpers`, which go where a script has
that line (else at its start). acquire.lua and release.lua do their common case first and
make the helpers only when they go on to the general case. The helpers' first part, down
to `--!waking-end`, is what a hand-off to a waiter needs: a script may also put a copy of
it alone where it has the line `--!waking` (release.lua's common case, when the lock has
waiters); a script with the line `--!no-helpers` gets none (list.lua). A Redis 7 library
makes all of them once (lockcore.scripts.library).

A scope S (percent-encoded: every byte outside A-Z a-z 0-9 - . _ ~ is %XX) keeps
everything in one hash, <p>:{S}:L, whose fields are:
  <token>           a lock's record (below); the token is the lock's fencing token
  <type>:<res>      exclusive types: the holder's token, or "r<ticket> <until ms>" while a
                    free resource is kept for a waiter
  !o<type>:<owner>  one-per-owner types: the token of the owner's lock of that type
  !b                the next token of the scope's current block of 1000
  !B                the blocks of the scope that have an entry in the slot directory
  !x                the ms instant the scope's keys are set to expire at
  !n                how many locks without expiry the scope holds (absent: none)
  !s                "<cursor> <lowest live token>" of the expiry sweep
  !e<type>          how many expired locks of the type were removed since a stats call
                    last took the count (stats.lua: metrics)
Beside it, in the same slot: <p>:{S}:E (STREAM of events, opt-in per type; its name is
also the PUBLISH channel), <p>:{S}:R (ZSET, score 0, "<type>:<res>:<token>" of the locks
of multi types), <p>:{S}:O (ZSET, score 0, "<owner>:<type>:<token>" of the locks of types
indexed by owner), <p>:{S}:X (ZSET, the tokens of multi-type locks scored by expiry,
1e15 for none: counting them costs O(log n)), and the waiting keys q: a: s: and request keys i: (see wake()).

A record is one line of space-separated words (names percent-encoded, so without spaces):
  <flags> <expires ms|0> <owner> <type>:<res> <acquired ms> <updated: ms after acquired>
  <ttl ms|0> <max ttl ms|0> <metadata>
or, short, when it says the same (see build()): <flags> <expires ms> <owner> <type>:<res>
<ttl ms>, with acquired = expires - ttl, updated 0, max ttl 0, no metadata.
flags: x (exclusive) or m (multi) first, then o (one per owner), e (events),
i (indexed by owner), w (someone waits for the resource). 0 = no expiry / no limit.
The update time is relative ("0" until the first refresh) to keep records short: a hash
whose values are all at most 64 bytes (hash-max-listpack-value, -ziplist- before 7) and
has at most 128 fields is stored compactly, at less than half the memory.
metadata: "k=v&k=v", keys and values percent-encoded; empty when there is none.

The slot's directory <p>:{#n}:D (HASH; the tag #n hashes to the scope's slot): field
"!seq" counts the slot's blocks of tokens; field <block> (= token div 1000) names the
scope (encoded) that owns the block, so a lock id alone finds its scope.
]]

-- Reply codes, mirrored by lockcore.scripts.ReplyCode. Every reply is an array
-- {code, server time in ms, number of locks this call found expired, ...}.
local OK, CONFLICT, NOT_FOUND, NOT_OWNED, INVALID = 0, 1, 2, 3, 4
-- ms a woken waiter has to take a resource kept for it before the next one may.
local RESERVE = 1000

-- The string functions the scripts use, set by begin(): a Redis 7 library is loaded where
-- `string` is not yet there to be read.
local find, sub, match, fmt

-- The call's state: what a call sets and its helpers read. Mostly the fields of the one
-- table C, which begin() sets at every call (under FCALL this file's locals live on from
-- one call to the next, so every call starts from begin()'s values, never the last
-- call's); open() sets the keys. Declared here with every field, so that the table is
-- made at its full size.
local C = {
  B = false,        -- the prefix <p>:{S}: of the scope's other keys (open())
  scope = false,    -- the scope (encoded), when looked up by id (locate(), release.lua)
  expired = false,  -- how many expired locks the call removed (each reply's third value)
  idp = false,      -- for events: the id prefix (slot + 1)
  maxlen = false,   -- for events: the stream's approximate maximum length
  handoff = false,  -- ms a waiter waits before a freed resource is kept for it (wake())
  retain = false,   -- ms the scope's keys outlive its locks' latest expiry (extend())
  grants = false,   -- whether a hand-off may grant a lock now (not while the script
                    -- holds a token it is about to use)
}
-- The two that the scripts use most are locals instead, for Redis time: reading or
-- writing a field takes about twice a local's time, and with these two as fields too (the
-- table made anew at every call) an acquire, refresh or release took 3-7% more Redis
-- time by FCALL than with the old locals; as they are, about 1% (by EVALSHA, none). The
-- event stream <p>:{S}:E is named where it is used (announce(), apply()), not by open().
local NOW, NOWS  -- the server's time in ms, as a number and as text (begin())
local L          -- the scope's hash <p>:{S}:L (open())

local function open(key)
  L = key
  C.B = sub(key, 1, -2)
end

-- The keys of waiting (see wake()): waiting_key('q', '<type>:<res>') the resource's
-- line, waiting_key('a', ticket) and waiting_key('s', ticket) a waiter's request and its
-- signal.
local function waiting_key(kind, name)
  return C.B .. kind .. ':' .. name
end

-- Every call starts here: the server's clock decides, never the client's.
local function begin()
  find, sub, match, fmt = string.find, string.sub, string.match, string.format
  local t = redis.call('TIME')
  -- Text built from text: turning numbers into text is what costs most in a script.
  NOWS = t[1] .. sub('000000' .. t[2], -6, -4)
  NOW = tonumber(NOWS)
  C.scope, C.expired, C.idp, C.maxlen, C.handoff, C.retain, C.grants =
    '', 0, '', 1000, 5, 604800000, true
end

-- Events (types with flag e): one stream entry, and its entry id PUBLISHed on a channel
-- named like the stream; names are percent-encoded, as in the keys. Made at every call
-- (the common cases use it); emit() below takes a parsed record.
local function announce(name, tok, owner, field, exps, k, v)
  local t, res = match(field, '^([^:]*):(.*)$')
  local E = C.B .. 'E'
  local id
  if k then
    id = redis.call('XADD', E, 'MAXLEN', '~', C.maxlen, '*', 'event', name, 'id',
      C.idp .. fmt('%014d', tok), 'type', t, 'resource', res, 'owner', owner,
      'expires_at', exps, k, v)
  else
    id = redis.call('XADD', E, 'MAXLEN', '~', C.maxlen, '*', 'event', name, 'id',
      C.idp .. fmt('%014d', tok), 'type', t, 'resource', res, 'owner', owner,
      'expires_at', exps)
  end
  redis.call('PUBLISH', E, id)
  if redis.call('PTTL', E) == -1 and not redis.call('HGET', L, '!n') then
    redis.call('PEXPIREAT', E, redis.call('HGET', L, '!x') or NOW + C.retain)
  end
end

--!helpers

-- The hand-off: what a release needs to wake or grant the next waiter. A script may put
-- a copy of this part alone in a block where it hands off before making the rest of the
-- helpers (the line --!waking; see release.lua).

-- The short form whenever it says the same.
local function build(r)
  if r.upd == '0' and r.max == '0' and r.meta == '' and r.x ~= '0' and r.ttl ~= '0'
      and tonumber(r.x) - tonumber(r.ttl) == tonumber(r.acq) then
    return r.flags .. ' ' .. r.x .. ' ' .. r.owner .. ' ' .. r.field .. ' ' .. r.ttl
  end
  return r.flags .. ' ' .. r.x .. ' ' .. r.owner .. ' ' .. r.field .. ' ' .. r.acq .. ' '
    .. r.upd .. ' ' .. r.ttl .. ' ' .. r.max .. ' ' .. r.meta
end

local function type_of(field)
  return match(field, '^([^:]*)')
end

-- Key lifetimes: every key of the scope lives C.retain ms past the latest expiry among
-- its locks, rounded up to a minute (so most writes find it unchanged), or forever while
-- a lock without expiry exists.
local function apply(target)
  for _, k in ipairs({L, C.B .. 'E', C.B .. 'R', C.B .. 'O', C.B .. 'X'}) do
    if target then
      redis.call('PEXPIREAT', k, target)
    else
      redis.call('PERSIST', k)
    end
  end
end

-- A lock with this expiry (0: none) was stored; `applied` is the field !x as read.
local function extend(exp, applied)
  if exp == 0 then
    if redis.call('HINCRBY', L, '!n', 1) == 1 then
      apply(nil)
    end
    return
  end
  local step = math.min(C.retain, 60000)
  local target = math.ceil((exp + C.retain) / step) * step
  if applied and tonumber(applied) >= target then
    return
  end
  redis.call('HSET', L, '!x', target)
  if not redis.call('HGET', L, '!n') then
    apply(target)
  end
end

-- Waiting, for exclusive types: <p>:{S}:q:<type>:<res> LIST of waiter tickets in arrival
-- order; <p>:{S}:a:<ticket> STRING, "<ms the waiter started waiting>" then, for a waiter
-- the lock can be granted to, " <ttl> <max ttl> <flags> <owner> <id prefix> <event
-- stream length> <retention> <metadata>" (its request), alive while it tries again (PX);
-- <p>:{S}:s:<ticket> LIST, its wake-up signal for BLPOP.
-- A resource that becomes free wakes the first live waiter. If that one has waited
-- C.handoff ms or more, the lock is granted to it: made here, as its own acquire would
-- have made it (plus flag g), its signal carries "g <token> <now ms> <record>", so the
-- woken waiter has the lock without asking again (one process wake-up per hand-off),
-- and the field !g<token> of the scope's hash holds "<ticket> <ms granted>" while the
-- lock lives. A grant still in the signal list RESERVE ms later was never taken (its
-- waiter died): the lock counts as expired (unclaimed()), and leave.lua releases a grant
-- its waiter gives up. Where a grant cannot be made here (the waiter's request has no
-- template, the owner holds another lock of a one-per-owner type, a new block of
-- tokens or a sweep is due), the resource is kept for the waiter instead (the field
-- holds "r<ticket> <until>") and the waiter takes it itself. A waiter that has not
-- waited C.handoff ms is only woken: the resource is free for anyone, the woken waiter
-- included (barging keeps the lock busy; the hand-off bounds how long anyone waits).

-- A waiter leaves the line of resource `field` (it got the lock, gave up, or stopped
-- trying) and its request goes; so does its signal, unless it was `granted` the lock
-- here (its signal carries the grant). A ticket is in a line once at most (join_line()).
local function leave_line(field, ticket, granted)
  redis.call('LREM', waiting_key('q', field), 1, ticket)
  if granted then
    redis.call('DEL', waiting_key('a', ticket))
  else
    redis.call('DEL', waiting_key('a', ticket), waiting_key('s', ticket))
  end
end

-- A waiter whose ticket starts with `m` ("m<12 hex: its process's waker><24 hex>") is
-- served by its process's one subscriber connection instead of blocking on its signal:
-- every signal to it is also announced, its ticket PUBLISHed on <p>:w:<waker>. Only here,
-- where a waiter is signalled: uncontended calls never come this way.
local function announce_wake(t)
  if sub(t, 1, 1) == 'm' then
    redis.call('PUBLISH', match(C.B, '^(.*):{[^{]*}:$') .. ':w:' .. sub(t, 2, 13), t)
  end
end

-- The lock for waiter `t` (the head of the line, which it leaves; `more`: whether
-- someone waits behind it; `s`: its signal), from its request `req`: false if it cannot
-- be made here.
local function grant(field, t, more, s, req)
  local ttls, maxs, flags, owner, idp, maxlen, retain, meta = match(req,
    '^(%d+) (%d+) (%S+) (%S+) (%S*) (%d+) (%d+) (.*)$')
  if not ttls then
    return false
  end
  local ofield = find(flags, 'o', 2, true) and ('!o' .. type_of(field) .. ':' .. owner)
  local got = redis.call('HMGET', L, '!b', '!x', ofield or '!b')
  local tok = tonumber(got[1])
  if not tok or tok % 64 == 0 or tok % 1000 == 0 or (ofield and got[3]) then
    return false
  end
  local toks = got[1]
  leave_line(field, t, true)
  if more then
    flags = flags .. 'w'
  end
  local exp = NOW + tonumber(ttls)
  local exps = fmt('%d', exp)
  local raw = build({flags = flags .. 'g', x = exps, owner = owner, field = field,
                     acq = NOWS, upd = '0', ttl = ttls, max = maxs, meta = meta})
  local nexts, mark = fmt('%d', tok + 1), t .. ' ' .. NOWS
  if ofield then
    redis.call('HSET', L, toks, raw, field, toks, '!b', nexts, '!g' .. toks, mark,
               ofield, toks)
  else
    redis.call('HSET', L, toks, raw, field, toks, '!b', nexts, '!g' .. toks, mark)
  end
  local was_retain, was_idp, was_maxlen = C.retain, C.idp, C.maxlen
  C.retain, C.idp, C.maxlen = tonumber(retain), idp, maxlen
  extend(exp, got[2])
  if find(flags, 'e', 2, true) then
    announce('acquired', tok, owner, field, exps, 'replaced', '')
  end
  C.retain, C.idp, C.maxlen = was_retain, was_idp, was_maxlen
  redis.call('LPUSH', s, 'g ' .. toks .. ' ' .. NOWS .. ' ' .. raw)
  -- Kept until taken (BLPOP empties it) or the lock is gone (drop() deletes it).
  redis.call('PEXPIRE', s, tonumber(ttls) + RESERVE)
  announce_wake(t)
  return true
end

local function wake(field)
  local q = waiting_key('q', field)
  while true do
    -- the first in line, and whether anyone is behind it
    local two = redis.call('LRANGE', q, 0, 1)
    local t = two[1]
    if not t then
      return
    end
    local since, req = match(redis.call('GET', waiting_key('a', t)) or '',
      '^(%d+) ?(.*)$')
    if since then
      local s = waiting_key('s', t)
      if NOW - tonumber(since) >= C.handoff then
        if req ~= '' and C.grants and grant(field, t, two[2], s, req) then
          return
        end
        redis.call('HSET', L, field, 'r' .. t .. ' ' .. (NOW + RESERVE))
      end
      redis.call('LPUSH', s, 1)
      redis.call('PEXPIRE', s, RESERVE)
      announce_wake(t)
      return
    end
    leave_line(field, t)  -- its request is gone: it stopped trying
  end
end

--!waking-end

local function int(n)
  return string.format('%d', n)
end

-- A record in either form: full (nine words), or short (five: acquired = expires - ttl,
-- never updated, no max ttl, no metadata).
local function parse(v)
  local f, x, o, fld, a, u, t, m, md = match(v,
    '^(%S+) (%d+) (%S+) (%S+) (%d+) (%d+) (%d+) (%d+) (.*)$')
  if not f then
    f, x, o, fld, t = match(v, '^(%S+) (%d+) (%S+) (%S+) (%d+)$')
    a, u, m, md = fmt('%d', tonumber(x) - tonumber(t)), '0', '0', ''
  end
  return {flags = f, exp = tonumber(x), x = x, owner = o, field = fld, acq = a, upd = u,
          ttl = t, max = m, meta = md}
end

local function live(r)
  return r.exp == 0 or r.exp > NOW
end

-- The event of a lock (parsed record `r`), if its type has events.
local function emit(event, tok, r, k, v)
  if find(r.flags, 'e', 2, true) then
    announce(event, tok, r.owner, r.field, r.x, k, v)
  end
end

-- An index key (R, X, O) was just written: it lives as long as the scope's hash.
local function index_lifetime(keys)
  local x = redis.call('HGET', L, '!x')
  if x and not redis.call('HGET', L, '!n') then
    for _, k in ipairs(keys) do
      if redis.call('PTTL', k) == -1 then
        redis.call('PEXPIREAT', k, x)
      end
    end
  end
end

-- A lock without expiry went away.
local function never_gone()
  if redis.call('HINCRBY', L, '!n', -1) <= 0 then
    redis.call('HDEL', L, '!n')
    apply(redis.call('HGET', L, '!x') or NOW + C.retain)
  end
end

-- The ticket a live lock (token `tok`, parsed `r`) was granted to, if it was (flag g).
local function granted_to(tok, r)
  if find(r.flags, 'g', 2, true) then
    return match(redis.call('HGET', L, '!g' .. tok) or '', '^(%S+) (%d+)$')
  end
end

-- A lock granted to a waiter that never took it (its grant still waits in the signal
-- list RESERVE ms on): it counts as expired.
local function unclaimed(tok, r)
  local t, at = granted_to(tok, r)
  return t and NOW - tonumber(at) > RESERVE
    and redis.call('LLEN', waiting_key('s', t)) > 0
end

-- Removes a lock and what points to it, announces `event` (if given, with `k`, `v`), then
-- wakes the resource's waiters (so a grant's event follows the release's).
local function drop(tok, r, event, k, v)
  local fl = r.flags
  local t = type_of(r.field)
  local fields = {tok}
  if sub(fl, 1, 1) == 'x' then
    fields[2] = r.field
  else
    redis.call('ZREM', C.B .. 'R', r.field .. ':' .. tok)
    redis.call('ZREM', C.B .. 'X', tok)
  end
  if find(fl, 'o', 2, true) then
    fields[#fields + 1] = '!o' .. t .. ':' .. r.owner
  end
  if find(fl, 'c', 2, true) then
    fields[#fields + 1] = '!c' .. tok
  end
  local ticket = granted_to(tok, r)
  if ticket then  -- a grant never taken from the signal list must not be taken later
    fields[#fields + 1] = '!g' .. tok
    redis.call('DEL', waiting_key('s', ticket))
  end
  redis.call('HDEL', L, unpack(fields))
  if find(fl, 'i', 2, true) then
    redis.call('ZREM', C.B .. 'O', r.owner .. ':' .. t .. ':' .. tok)
  end
  if r.exp == 0 then
    never_gone()
  end
  if event then
    emit(event, tok, r, k, v)
  end
  if find(fl, 'w', 2, true) then
    wake(r.field)
  end
end

-- An expired lock goes; the field !e<type> counts it until a stats call (stats.lua)
-- takes the count: metrics count each removal once, by type, whoever removed it.
local function expire(tok, r)
  drop(tok, r, 'expired')
  C.expired = C.expired + 1
  redis.call('HINCRBY', L, '!e' .. type_of(r.field), 1)
end

-- The live lock `tok`, if `owner` may change it (or `force`): returns it parsed and its
-- record, or nil and the reply to return (NOT_FOUND: unknown or expired, then removed
-- now; NOT_OWNED).
local function claim(tok, owner, force)
  local raw = redis.call('HGET', L, tok)
  if not raw then
    return nil, {NOT_FOUND, NOW, C.expired}
  end
  local r = parse(raw)
  if not live(r) then
    expire(tok, r)
    return nil, {NOT_FOUND, NOW, C.expired}
  end
  if r.owner ~= owner and not force then
    return nil, {NOT_OWNED, NOW, C.expired, tok, raw, C.scope}
  end
  return r, raw
end

-- Scripts called with a bare lock id get the slot's directory as KEYS[1] and find the
-- scope there (or are told it). Returns false if the id's block has no scope.
local function locate(dir, tok, scope)
  if scope == '' then
    scope = redis.call('HGET', dir, math.floor(tonumber(tok) / 1000))
    if not scope then
      return false
    end
  end
  C.scope = scope
  open(match(dir, '^(.*):{') .. ':{' .. scope .. '}:L')
  return true
end
-- A request id's first call records "<token>:<created 1|0>" for `ms`.
local function remember(request, tok, created, ms)
  redis.call('SET', C.B .. 'i:' .. request, tok .. ':' .. created, 'PX', ms)
end

-- A waiter joins the resource's line once, and shows it is alive at every try; the
-- holder's record (token `tok`, parsed `r`) gets flag w. `req`: "" or the waiter's
-- request for a grant (see wake()), starting with a space.
local function join_line(field, ticket, since, alive, req, tok, r)
  local q = waiting_key('q', field)
  redis.call('SET', waiting_key('a', ticket), (since ~= '' and since or NOWS) .. req,
    'PX', alive)
  if not redis.call('LPOS', q, ticket) then
    redis.call('RPUSH', q, ticket)
  end
  redis.call('PEXPIRE', q, alive)
  if r and not find(r.flags, 'w', 2, true) then
    r.flags = r.flags .. 'w'
    redis.call('HSET', L, tok, build(r))
  end
end

-- Whether a multi type's new lock on `field` may be made, by its live holders (the
-- expired ones removed here): nil if so, else the CONFLICT reply (a waiter `ticket`, if
-- any, joins the line, and every holder is flagged w, so the first to leave wakes it).
-- `cap` > 0 (a semaphore): fewer than `cap` holders. Read-write (flag k in `flags`): a
-- write lock needs no holder; a read lock (flag s) no write lock, and no writer waiting:
-- a writer in line marks the field !w<field> "<ticket> <until ms>" while it waits, so a
-- stream of readers cannot starve it. For a semaphore, a free permit kept for another
-- woken waiter (the field holds "r<ticket> <until>", see wake()) counts as taken until
-- then.
local function holders_allow(field, flags, cap, ticket, since, alive)
  local holders, writer = {}, nil
  for _, m in ipairs(redis.call('ZRANGEBYLEX', C.B .. 'R', '[' .. field .. ':',
                                '(' .. field .. ';')) do
    local htok = sub(m, #field + 2)
    local hraw = redis.call('HGET', L, htok)
    if hraw then
      local h = parse(hraw)
      if live(h) then
        holders[#holders + 1] = {htok, h, hraw}
        if not find(h.flags, 's', 2, true) then
          writer = holders[#holders]
        end
      else
        expire(htok, h)
      end
    end
  end
  local rw = find(flags, 'k', 2, true)
  local kept = redis.call('HGET', L, field)
  local for_ticket, till = match(kept or '', '^r(%S+) (%d+)$')
  -- (not for read-write types: a woken reader kept waiting for a writer in line would
  -- keep the writer out too; there the writer's mark decides)
  local reserved = not rw and for_ticket and for_ticket ~= ticket and tonumber(till) > NOW
  local busy
  local wfield = rw and ('!w' .. field)
  if rw then
    if find(flags, 's', 2, true) then
      local w_ticket, w_till = match(redis.call('HGET', L, wfield) or '', '^(%S+) (%d+)$')
      local waiting = w_ticket and w_ticket ~= ticket and tonumber(w_till) > NOW
      if w_ticket and not waiting and w_ticket ~= ticket then
        redis.call('HDEL', L, wfield)  -- that writer stopped waiting
      end
      if waiting and #holders == 0 then
        -- Nobody holds it and a reader (woken first, maybe) yields to the writer: the
        -- writer is told at once, not at its next heartbeat.
        local s = waiting_key('s', w_ticket)
        redis.call('LPUSH', s, 1)
        redis.call('PEXPIRE', s, RESERVE)
        announce_wake(w_ticket)
      end
      busy = writer or waiting or reserved
    else
      busy = #holders > 0 or reserved
    end
  else
    busy = #holders + (reserved and 1 or 0) >= cap
  end
  if busy then
    if ticket ~= '' then
      join_line(field, ticket, since, alive, '')
      for _, h in ipairs(holders) do
        if not find(h[2].flags, 'w', 2, true) then
          h[2].flags = h[2].flags .. 'w'
          redis.call('HSET', L, h[1], build(h[2]))
        end
      end
      if rw and not find(flags, 's', 2, true) then
        redis.call('HSET', L, wfield, ticket .. ' ' .. (NOW + tonumber(alive)))
      end
    end
    local first = writer or holders[1] or {'', nil, ''}
    return {CONFLICT, NOW, C.expired, first[1], first[3]}
  end
  if kept and not reserved then
    redis.call('HDEL', L, field)
  end
  if rw and not find(flags, 's', 2, true) and ticket ~= '' then
    local w_ticket = match(redis.call('HGET', L, wfield) or '', '^(%S+)')
    if w_ticket == ticket then
      redis.call('HDEL', L, wfield)
    end
  end
  return nil
end

-- A new block of 1000 tokens for the scope, from the slot's directory D: returns its
-- first token.
local function new_block(D)
  local old = match(D, '^(.*):D$')
  if redis.call('EXISTS', old .. ':ids') == 1 then
    return nil, redis.error_reply('lockcore: this Redis holds locks in the layout of '
      .. 'lockcore 0.1 (' .. old .. ':ids): drain them and delete their keys first '
      .. '(docs/redis-layout.md, "Migrating from layout 1")')
  end
  local blk = redis.call('HINCRBY', D, '!seq', 1)
  -- Floor from the clock (a block per 10 ms since 2025-01-01; tokens per 10 us, like
  -- the old layout's): tokens keep growing even if the directory was lost.
  local t = redis.call('TIME')
  local floor = math.floor(((tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2]))
    / 10000)
  local oldseq = tonumber(redis.call('GET', old .. ':seq') or '0')
  floor = math.max(floor, math.floor(oldseq / 1000) + 1)
  if blk < floor then
    blk = floor
    redis.call('HSET', D, '!seq', blk)
  end
  local scope = match(L, '{(.*)}:L$')
  redis.call('HSET', D, blk, scope)
  local blocks = redis.call('HGET', L, '!B')
  redis.call('HSET', L, '!B', blocks and (blocks .. ' ' .. blk) or blk)
  -- Directory entries of scopes that are gone, a few per new block.
  local scan = redis.call('HSCAN', D, redis.call('HGET', D, '!c') or '0', 'COUNT', 8)
  redis.call('HSET', D, '!c', scan[1])
  local prefix = match(D, '^(.*):{')
  for i = 1, #scan[2], 2 do
    local b, s = scan[2][i], scan[2][i + 1]
    if find(b, '^%d+$') and tonumber(b) ~= blk then
      local held = redis.call('HGET', prefix .. ':{' .. s .. '}:L', '!B')
      if not held or not find(' ' .. held .. ' ', ' ' .. b .. ' ', 1, true) then
        redis.call('HDEL', D, b)
      end
    end
  end
  return blk * 1000
end

-- Expired locks are removed as they are met, and by this sweep: every 64th lock of a
-- scope looks at a few more of its fields (`tok`: the lock just made).
local function sweep(D, tok)
  local st = redis.call('HGET', L, '!s')
  local cursor, low = '0', tok
  if st then
    cursor, low = match(st, '^(%d+) (%d+)$')
    low = tonumber(low)
  end
  local scan = redis.call('HSCAN', L, cursor, 'COUNT', 32)
  local kv = scan[2]
  for i = 1, #kv, 2 do
    local f = kv[i]
    if find(f, '^%d+$') then
      local x = tonumber(match(kv[i + 1], '^%S+ (%d+)'))
      if x ~= 0 and x <= NOW then
        expire(f, parse(kv[i + 1]))
      elseif tonumber(f) < low then
        low = tonumber(f)
      end
    end
  end
  if scan[1] == '0' then
    -- A whole pass: blocks below the lowest live token need no directory entry.
    local keep, gone = {}, {}
    for b in string.gmatch(redis.call('HGET', L, '!B') or '', '%d+') do
      if tonumber(b) < math.floor(low / 1000) then
        gone[#gone + 1] = b
      else
        keep[#keep + 1] = b
      end
    end
    if #gone > 0 then
      redis.call('HDEL', D, unpack(gone))
      redis.call('HSET', L, '!B', table.concat(keep, ' '))
    end
    redis.call('HSET', L, '!s', '0 ' .. (tok + 1))
  else
    redis.call('HSET', L, '!s', scan[1] .. ' ' .. low)
  end
end
