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
#   PIPELINE=1 DURATION=30s bench/upload.sh           # at 80 % of the pipeline's rate
#
# PIPELINE=1: the closed loop's connections (CONNECTIONS, then 4 by
# default) each wait for their photo to be ready before the next upload,
# so its rate is the pipeline's sustainable rate (photos/s), and the open
# loop runs at RATE of that; PER_S sets the open loop's rate outright.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/onebox" .
go build -o "$work/upload" ./bench/upload
source=(-image "${IMAGE:-testdata/images/formats/jpeg_gray_hopper.jpg}")
[[ -n ${GENERATE:-} ]] && source=(-generate "$GENERATE")
mode=() conns=${CONNECTIONS:-16}
if [[ ${PIPELINE:-0} == 1 ]]; then
	mode=(-pipeline)
	conns=${CONNECTIONS:-4}
fi
[[ -n ${PER_S:-} ]] && mode+=(-per-s "$PER_S")
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
		"${mode[@]}" -d "${DURATION:-10s}" -c "$conns" -rate "${RATE:-0.8}" -wait "${WAIT:-5m}" |
		tee "$work/out$run" || status=1
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
done
((runs > 1)) || exit "$status"

# field NAME: that field of every run's RESULT line, one a line.
field() { sed -n "s/.*RESULT.* $1=\([0-9.]*\).*/\1/p" "$work"/out*; }
# stats [DECIMALS]: "median (min-max)" of the numbers on stdin.
stats() {
	sort -g | awk -v d="${1:-0}" '{v[NR] = $1} END {
		if (NR == 0) { print "no result"; exit }
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		f = "%." d "f"
		printf f " (" f "-" f ")\n", m, v[1], v[NR] }'
}
echo
echo "over $runs runs, median (min-max):"
echo "  closed loop, uploads/s accepted (PIPELINE=1: photos/s ready): $(field max_per_s | stats 1)"
echo "  open loop, 202→ready p50 ms:     $(field p50_ms | stats)"
echo "  open loop, 202→ready p99 ms:     $(field p99_ms | stats)"
echo "  first third p50 / p99 ms:        $(field first_p50_ms | stats) / $(field first_p99_ms | stats)"
echo "  last third p50 / p99 ms:         $(field last_p50_ms | stats) / $(field last_p99_ms | stats)"
echo "  uploads that did not end ready:  $(field not_ready | awk '{s += $1} END {print s + 0}') in all"
exit "$status"
