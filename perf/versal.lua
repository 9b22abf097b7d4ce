-- wrk scripts for the Versal API: BENCH_OP = acquire | list | release | floor-post |
-- floor-get | floor-delete. Written by perf/wrk_versal.py; see its docstring.
local op = os.getenv("BENCH_OP")
local users = tonumber(os.getenv("BENCH_USERS") or "32")
local course = os.getenv("BENCH_COURSE") or "bench"
local list_course = os.getenv("BENCH_LIST_COURSE") or "listed"

-- Each wrk thread gets its own number, for its share of the locks to release.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local releases = {}
local next_release = 1
local i = 0

function init(args)
  if op == "release" then
    local n = tonumber(os.getenv("BENCH_WRK_THREADS"))
    local k = 0
    for line in io.lines(os.getenv("BENCH_RELEASE_FILE")) do
      if k % n == tid then
        local id, key = line:match("^(%S+) (%S+)$")
        table.insert(releases, {id, key})
      end
      k = k + 1
    end
  end
end

local function body(k)
  return '{"type":"gadget","subject":{"courseId":"' .. course .. '","gadgetId":"g' .. k .. '"}}'
end

request = function()
  local k = i % users
  i = i + 1
  if op == "acquire" then
    return wrk.format("POST", "/locks", {["SID"] = "bench-key-" .. k,
                      ["Content-Type"] = "application/json"}, body(k))
  elseif op == "list" then
    return wrk.format("GET", "/locks?subject.courseId=" .. list_course,
                      {["SID"] = "bench-key-" .. k})
  elseif op == "release" then
    if next_release > #releases then
      next_release = 1  -- ran out: the repeats answer 404, which wrk counts as non-2xx
    end
    local r = releases[next_release]
    next_release = next_release + 1
    return wrk.format("DELETE", "/locks/" .. r[1], {["SID"] = r[2]})
  elseif op == "floor-post" then
    return wrk.format("POST", "/ping", {["SID"] = "bench-key-" .. k,
                      ["Content-Type"] = "application/json"}, body(k))
  elseif op == "floor-get" then
    return wrk.format("GET", "/ping?subject.courseId=" .. list_course,
                      {["SID"] = "bench-key-" .. k})
  elseif op == "floor-delete" then
    return wrk.format("DELETE", "/ping", {["SID"] = "bench-key-" .. k})
  end
  error("unknown BENCH_OP " .. tostring(op))
end
