-- wrk script for bench/run.sh. Arguments after wrk's "--":
--
--   read  IDS_FILE      GET /v1/users/<id>, a random id of the file per request
--   patch TOKENS_FILE   PATCH /v1/users/me {"bio": "..."} with
--                       "Authorization: Bearer <a random token of the file>"
--
-- Every request is built once in init(), so wrk spends its CPU on sending,
-- not on Lua: it shares the machine with the server under test.
--
-- done() prints one line that run.sh parses (times in milliseconds):
--   BENCH rps=… p50_ms=… p99_ms=… requests=… non2xx3xx=… socket_errors=… timeouts=…
-- non2xx3xx counts responses with status ≥ 400; socket_errors counts
-- connect, read and write errors.

local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("thread_no", nthreads)
end

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  if #lines == 0 then
    error(path .. ": no lines")
  end
  return lines
end

local requests = {}

function init(args)
  local mode, path = args[1], args[2]
  if path == nil then
    error("usage: wrk ... -s scenario.lua URL -- read|patch FILE")
  end
  math.randomseed(os.time() * 100 + thread_no)
  local lines = read_lines(path)
  for i, line in ipairs(lines) do
    if mode == "read" then
      requests[i] = wrk.format("GET", "/v1/users/" .. line)
    elseif mode == "patch" then
      requests[i] = wrk.format("PATCH", "/v1/users/me", {
        ["Authorization"] = "Bearer " .. line,
        ["Content-Type"] = "application/json",
      }, string.format('{"bio":"benchmark bio %d, thread %d: rewritten on every request"}', i, thread_no))
    else
      error("unknown mode " .. tostring(mode) .. " (want read or patch)")
    end
  end
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx3xx=%d socket_errors=%d timeouts=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.status, e.connect + e.read + e.write, e.timeout))
end
