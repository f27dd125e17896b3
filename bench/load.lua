-- wrk script of bench/api_load.py: GET BENCH_PATH with a random id from BENCH_IDS_FILE appended,
-- a bearer token from BENCH_TOKEN, and a count of answers whose status is not the expected one
-- (BENCH_EXPECT: a status such as 200, or "2xx"). done() prints one line "BENCH_JSON {...}".

local path = os.getenv("BENCH_PATH") or "/"
local token = os.getenv("BENCH_TOKEN")
local expect = os.getenv("BENCH_EXPECT") or "2xx"
local ids = {}

local ids_file = os.getenv("BENCH_IDS_FILE")
if ids_file and ids_file ~= "" then
  for line in io.lines(ids_file) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
end

local headers = { ["Accept"] = "application/json" }
if token and token ~= "" then
  headers["Authorization"] = "Bearer " .. token
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
  threads[#threads + 1] = thread
end

-- per thread
unexpected = 0
first_unexpected = ""

function init(args)
  math.randomseed(os.time() * 1000 + thread_number)
end

function request()
  local target = path
  if #ids > 0 then
    target = path .. ids[math.random(#ids)]
  end
  return wrk.format("GET", target, headers)
end

local function expected(status)
  if expect == "2xx" then
    return status >= 200 and status < 300
  end
  return status == tonumber(expect)
end

function response(status, _headers, _body)
  if not expected(status) then
    unexpected = unexpected + 1
    if first_unexpected == "" then
      first_unexpected = tostring(status)
    end
  end
end

function done(summary, latency, _requests)
  local bad, first = 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("unexpected")
    if first == "" then
      first = thread:get("first_unexpected")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "unexpected_status": %d, '
      .. '"first_unexpected_status": "%s", "socket_errors": {"connect": %d, "read": %d, "write": %d, '
      .. '"timeout": %d}, "status_over_399": %d, "latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, '
      .. '"p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes, bad, first,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)
  ))
end
