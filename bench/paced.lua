-- wrk script for bench/overload.sh and bench/soak.sh: GET /v1/users/<a
-- random id of IDS_FILE>, each connection waiting DELAY_MS after every
-- answer, so C connections offer about C*1000/DELAY_MS requests a second
-- whatever the server does: a shed request comes back at once and its
-- connection sends the next on schedule. With TOKENS_FILE, one request in
-- ten is instead PATCH /v1/users/me {"bio": …} as a random token's user.
-- Arguments after "--":
--   IDS_FILE DELAY_MS [TOKENS_FILE]
-- done() prints: BENCH rps=… p50_ms=… p99_ms=… requests=… non2xx3xx=… socket_errors=… timeouts=…

local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("thread_no", nthreads)
end

local requests, edits, pause = {}, {}, 0

function init(args)
  math.randomseed(os.time() * 100 + thread_no)
  for line in io.lines(args[1]) do
    if line ~= "" then
      requests[#requests + 1] = wrk.format("GET", "/v1/users/" .. line)
    end
  end
  pause = tonumber(args[2])
  if args[3] then
    for line in io.lines(args[3]) do
      if line ~= "" then
        edits[#edits + 1] = wrk.format("PATCH", "/v1/users/me", {
          ["Authorization"] = "Bearer " .. line,
          ["Content-Type"] = "application/json",
        }, string.format('{"bio":"soak %d"}', #edits))
      end
    end
  end
end

function request()
  if #edits > 0 and math.random(10) == 1 then
    return edits[math.random(#edits)]
  end
  return requests[math.random(#requests)]
end

function delay()
  return pause
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx3xx=%d socket_errors=%d timeouts=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.status, e.connect + e.read + e.write, e.timeout))
end
