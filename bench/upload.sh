#!/usr/bin/env bash
# Upload benchmark: builds onebox, runs it on a fresh data dir with limits
# high enough not to reject, and drives it with bench/upload (closed loop
# for the maximum, then an open loop at 80 % of it for 202→ready latency).
# Every upload's outcome is counted and every one that did not end ready
# is printed; the exit status is 1 if any did not.
# The upload backlog bound is off: this measures the accept path, which
# outruns the pipeline, and the default bound would turn the rest into 503s.
# With RUNS > 1 every run gets a fresh server and data directory, and the
# last lines give the median and the spread (min-max) over the runs.
#
#   bench/upload.sh                                   # the 128x128 hopper JPEG
#   RUNS=3 bench/upload.sh
#   IMAGE=path/to/photo.jpg bench/upload.sh
#   GENERATE=4032x3024 DURATION=5s bench/upload.sh    # a generated 12-MP JPEG
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/onebox" .
go build -o "$work/upload" ./bench/upload
source=(-image "${IMAGE:-testdata/images/formats/jpeg_gray_hopper.jpg}")
[[ -n ${GENERATE:-} ]] && source=(-generate "$GENERATE")
runs=${RUNS:-1}
status=0
for ((run = 1; run <= runs; run++)); do
	port=$((20000 + RANDOM % 20000))
	ONEBOX_ADDR=127.0.0.1:$port ONEBOX_ADMIN_ADDR= ONEBOX_DATA_DIR="$work/data$run" \
	ONEBOX_RATE_UPLOAD=100000000/1s ONEBOX_RATE_API=100000000/1s ONEBOX_ACCESS_LOG=false ONEBOX_UPLOAD_BACKLOG=0 \
		"$work/onebox" >"$work/server$run.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
	echo "run $run: loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
	"$work/upload" -url "http://127.0.0.1:$port" "${source[@]}" \
		-d "${DURATION:-10s}" -c "${CONNECTIONS:-16}" -rate "${RATE:-0.8}" -wait "${WAIT:-5m}" |
		tee "$work/out$run" || status=1
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
done
((runs > 1)) || exit "$status"

# field NAME: that field of every run's RESULT line, one a line.
field() { sed -n "s/.*RESULT.* $1=\([0-9.]*\).*/\1/p" "$work"/out*; }
stats() {
	sort -g | awk '{v[NR] = $1} END {
		if (NR == 0) { print "no result"; exit }
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.0f (%.0f-%.0f)\n", m, v[1], v[NR] }'
}
echo
echo "over $runs runs, median (min-max):"
echo "  closed loop, uploads/s accepted: $(field max_per_s | stats)"
echo "  open loop, 202→ready p50 ms:     $(field p50_ms | stats)"
echo "  open loop, 202→ready p99 ms:     $(field p99_ms | stats)"
echo "  uploads that did not end ready:  $(field not_ready | awk '{s += $1} END {print s + 0}') in all"
exit "$status"
