#!/usr/bin/env bash
# Upload benchmark: builds onebox, runs it on a fresh data dir with limits
# high enough not to reject, and drives it with bench/upload (closed loop
# for the maximum, then an open loop at 80 % of it for 202→ready latency).
# Every upload's outcome is counted and every one that did not end ready
# is printed; the exit status is 1 if any did not.
# The upload backlog bound is off: this measures the accept path, which
# outruns the pipeline, and the default bound would turn the rest into 503s.
#
#   bench/upload.sh                                   # the 128x128 hopper JPEG
#   IMAGE=path/to/photo.jpg bench/upload.sh
#   GENERATE=4032x3024 DURATION=5s bench/upload.sh    # a generated 12-MP JPEG
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/onebox" .
go build -o "$work/upload" ./bench/upload
port=$(( 20000 + RANDOM % 20000 ))
ONEBOX_ADDR=127.0.0.1:$port ONEBOX_ADMIN_ADDR= ONEBOX_DATA_DIR="$work/data" \
ONEBOX_RATE_UPLOAD=100000000/1s ONEBOX_RATE_API=100000000/1s ONEBOX_ACCESS_LOG=false ONEBOX_UPLOAD_BACKLOG=0 \
	"$work/onebox" > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
source=(-image "${IMAGE:-testdata/images/formats/jpeg_gray_hopper.jpg}")
[[ -n ${GENERATE:-} ]] && source=(-generate "$GENERATE")
echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
"$work/upload" -url "http://127.0.0.1:$port" "${source[@]}" \
	-d "${DURATION:-10s}" -c "${CONNECTIONS:-16}" -rate "${RATE:-0.8}" -wait "${WAIT:-5m}"
