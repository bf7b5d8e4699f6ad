-- Shared by the bench/wrk scripts that bench/api.py runs (wrk 4, one Lua state per thread).
-- Environment: WRK_KEY (X-API-Key), WRK_OUT (where done() writes its JSON summary).
local M = {}

wrk.headers["X-API-Key"] = os.getenv("WRK_KEY")

-- WRK_RATE: requests per second this thread sends, open loop: the send times are a Poisson
-- schedule of that rate (exponential gaps, seeded per thread), and each connection, once its
-- answer is in, waits for the next free time of the schedule. So the rate offered does not
-- depend on how fast the server answers (a closed loop, "pause after each answer", offers
-- less exactly when answers slow down), and requests still arrive at random, not in step.
-- A late answer makes its connection send at once: arrivals that were due are not dropped.
local rate = tonumber(os.getenv("WRK_RATE") or "")
if rate then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
    int clock_gettime(int clock, wrk_timespec *ts);
  ]]
  local ts = ffi.new("wrk_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  local gap_ms, slot = 1000 / rate, nil
  function delay()
    local now = now_ms()
    slot = (slot or now) - gap_ms * math.log(1 - math.random())
    return math.max(0, math.floor(slot - now + 0.5))
  end
end

-- Each wrk thread gets a number, so that scripts can make ids no other thread makes.
local threads = {}
function setup(thread)
  thread:set("thread_no", #threads)
  threads[#threads + 1] = thread
end

-- The first answer that is not 2xx, kept per thread so that done() can say what went wrong.
first_error = ""
function response(status, headers, body)
  if (status < 200 or status > 299) and first_error == "" then
    first_error = status .. " " .. (body or ""):sub(1, 300)
  end
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

-- Lines of a text file (ids to cycle through).
function M.lines(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local function first_error_of_threads()
  for _, thread in ipairs(threads) do
    local e = thread:get("first_error")
    if e ~= nil and e ~= "" then return e end
  end
  return ""
end

-- Requests, seconds, errors by kind and latency percentiles (ms), as JSON for bench/api.py.
function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("WRK_OUT"), "w"))
  f:write(string.format(
    '{"requests": %d, "seconds": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, ' ..
    '"mean_ms": %.3f, "max_ms": %.3f, "first_error": %s}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3, json_string(first_error_of_threads())))
  f:close()
end

return M
