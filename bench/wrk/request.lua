-- One request shape for a whole wrk run, from the environment (bench/load.py sets it):
--   EKM_WRK_METHOD (GET|POST), EKM_WRK_PATH, EKM_WRK_BODY_FILE (optional), EKM_WRK_TOKEN
--   (optional bearer token). done() prints one JSON line: requests, errors, latency in µs.
local method = os.getenv("EKM_WRK_METHOD") or "GET"
local path = os.getenv("EKM_WRK_PATH") or "/"
local body_file = os.getenv("EKM_WRK_BODY_FILE")
local token = os.getenv("EKM_WRK_TOKEN")

local body = nil
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end
local headers = {}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
if body then headers["Content-Type"] = "application/json" end
local req = nil

-- Formatted once per thread, after wrk has set the Host header from the URL.
init = function(args) req = wrk.format(method, path, headers, body) end
request = function() return req end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"mean": %.1f, "p50": %d, ' ..
    '"p90": %d, "p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
