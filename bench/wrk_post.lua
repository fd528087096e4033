-- wrk script of the benchmark's request-rate phases (bench/wrk.py runs it):
--
--   wrk -t T -c C -d Ds --latency -s bench/wrk_post.lua URL -- RUN KEY RATE CONN_PER_THREAD
--
-- Every request POSTs one single event {"user_id": "<RUN>-<thread>-<n>", "points": 1}:
-- a distinct user each (RUN is random per run, so runs never share users), with the
-- bearer KEY. RATE > 0 paces each thread at RATE requests/s (the thread's share; an
-- arrival schedule, so a slow answer is caught up afterwards as far as the connections
-- allow); 0 sends as fast as answers come back. done() prints one line
-- "WRK_JSON {...}" with the counts, every status seen and the latency percentiles (µs).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } lb_timespec;
int clock_gettime(int clk_id, lb_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("lb_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

local threads = {}
local next_thread_id = 0

-- Defaults for wrk's own check of request() in its main state, where init() never runs.
thread_id = "main"
headers = { ["Content-Type"] = "application/json" }
prefix = '{"user_id":"check-main-'
sent = 0
statuses = {}

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  run = args[1]
  rate = tonumber(args[3] or "0")
  local connections = tonumber(args[4] or "1")
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2] }
  prefix = '{"user_id":"' .. run .. "-" .. thread_id .. "-"
  sent = 0
  statuses = {}
  if rate > 0 then
    interval_ms = 1000 / rate
    -- The connections' first requests leave at once without delay(): they take the
    -- schedule's first slots.
    slot = connections
  end
end

function request()
  sent = sent + 1
  return wrk.format("POST", nil, headers, prefix .. sent .. '","points":1}')
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

if os.getenv("LB_WRK_PACED") == "1" then
  -- Defined only when pacing: wrk calls delay() before each request but the first ones.
  function delay()
    if start_ms == nil then
      start_ms = now_ms()
    end
    local due = start_ms + slot * interval_ms
    slot = slot + 1
    local wait = due - now_ms()
    if wait < 0 then
      return 0
    end
    return wait
  end
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(
    string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"statuses":{%s},'
        .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
        .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests,
      summary.duration,
      summary.bytes,
      table.concat(parts, ","),
      e.connect,
      e.read,
      e.write,
      e.status,
      e.timeout,
      latency:percentile(50),
      latency:percentile(90),
      latency:percentile(99),
      latency.max,
      latency.mean
    )
  )
end
