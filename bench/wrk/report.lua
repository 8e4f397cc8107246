-- report.lua: wrk script for bench/run.sh.
--
-- It prints one machine-readable line at the end of a run:
--   RESULT requests=N duration_us=N bytes=N errors=N non2xx=N p50_us=N p99_us=N
-- (errors counts connect, read, write and timeout errors and HTTP statuses
-- above 399).
--
-- With BENCH_UNIQUE=1 in the environment every request asks for a path never
-- asked before, /slow/<BENCH_PREFIX>-<thread>-<n>, so that every request is a
-- cache miss. The choice is made when the script loads, because wrk decides
-- once, before init(), whether a script builds its own requests.

local unique = os.getenv("BENCH_UNIQUE") == "1"
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())

local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
end

if unique then
  local n = 0
  function request()
    n = n + 1
    return wrk.format("GET", "/slow/" .. prefix .. "-" .. tostring(id) .. "-" .. n)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout + e.status, e.status,
    latency:percentile(50), latency:percentile(99)))
end
