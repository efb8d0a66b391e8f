#!/usr/bin/env bash
# bench/backlog.sh: does a backlog of jobs starve the API? One onebox
# process on SQLite (10k seeded users, cache on), and in each of ROUNDS
# rounds:
#   1. without: wrk reads cached profiles (GET /v1/users/<id> of a
#      1000-id working set, the `cached` scenario of bench/run.sh) for
#      DURATION with the queue empty;
#   2. enqueue: bench/backlog writes JOBS (100,000) media.delete jobs into
#      the database as a second writer, 1000 a transaction;
#   3. during: the same wrk run while the Runner drains them; the queue's
#      depth (/jobs/stats on the admin listener) is read as it starts and
#      as it ends, so a run the drain outlasted is told from one it did not;
#   4. the drain is waited for, and timed from the enqueue's end.
# A last `without` run closes the last round. Each round's ratio is its
# `during` req/s over the mean of the two `without` runs around it; the
# median of the rounds is the figure (target ≥ 0.80: within 20 %).
#
# Why media.delete jobs and not photos: see bench/backlog/main.go; a
# photo's CPU is the pipeline's, measured by PIPELINE=1 bench/upload.sh.
#
# Knobs: DURATION=10s, ROUNDS=3, JOBS=100000, CONNECTIONS=64, KEEP=1
# keeps the work directory, and any ONEBOX_* variable passed through
# EXTRA (e.g. EXTRA="ONEBOX_PHOTO_WORKERS=1").
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-100000}
CONNECTIONS=${CONNECTIONS:-64}
KEEP=${KEEP:-0}
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/onebox-backlog.XXXXXX")
DATA=$WORK/data
PID=""

say() { printf 'backlog: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
cleanup() {
	[[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
	if [[ $KEEP == 1 ]]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
command -v wrk >/dev/null || die "needs wrk (apt-get install wrk)"

(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/onebox" . && go build -o "$WORK/seed" ./bench/seed &&
	go build -o "$WORK/backlog" ./bench/backlog) || die "go build"
mkdir -p "$DATA"
"$WORK/seed" -db "$DATA/onebox.db" -users 10000 -sessions 1 -ids "$WORK/ids.txt" -tokens "$WORK/tokens.txt" >&2
head -1000 "$WORK/ids.txt" >"$WORK/ws.txt"

port=$((20000 + RANDOM % 20000))
admin=$((port + 1))
URL=http://127.0.0.1:$port
# The cache TTL outlasts the run, so every read of the working set is a hit.
env $(compgen -e | grep -E '^(ONEBOX_|GOGC$|GOMEMLIMIT$)' | sed 's/^/-u /') \
	ONEBOX_ADDR=127.0.0.1:$port ONEBOX_ADMIN_ADDR=127.0.0.1:$admin ONEBOX_DATA_DIR="$DATA" \
	ONEBOX_RATE_API=100000000/1s ONEBOX_ACCESS_LOG=false ONEBOX_CACHE_TTL=1h ${EXTRA:-} \
	"$WORK/onebox" serve >"$WORK/stdout" 2>"$WORK/stderr" &
PID=$!
for _ in $(seq 100); do curl -fs "$URL/health/ready" >/dev/null && break; sleep 0.1; done
curl -fs "$URL/health/ready" >/dev/null || die "onebox did not start: $(tail -5 "$WORK/stderr")"

# depth: media.delete jobs queued plus in flight.
depth() {
	curl -fs "http://127.0.0.1:$admin/jobs/stats" | tr -d ' \n' |
		sed -n 's/.*"media.delete":{"queued":\([0-9]*\),"in_flight":\([0-9]*\).*/\1 \2/p' | awk '{s = $1 + $2} END {print s + 0}'
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }
# measure NAME: one wrk run of cached reads; sets RPS.
measure() {
	local out
	out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$BENCH/scenario.lua" "$URL" -- read "$WORK/ws.txt" | grep '^BENCH') ||
		die "$1: wrk failed"
	kill -0 "$PID" 2>/dev/null || die "$1: onebox died: $(tail -5 "$WORK/stderr")"
	[[ $(field "$out" non2xx3xx) == 0 && $(field "$out" socket_errors) == 0 ]] || die "$1: errors: $out"
	RPS=$(field "$out" rps)
	say "$1: $out"
}
now() { date +%s.%N; }

say "loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
wrk -t2 -c"$CONNECTIONS" -d3s -s "$BENCH/scenario.lua" "$URL" -- read "$WORK/ws.txt" >/dev/null # warm-up: fills the cache
measure "without 0"
before=$RPS
ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
	"$WORK/backlog" -db "$DATA/onebox.db" -n "$JOBS" >&2
	t0=$(now)
	d0=$(depth)
	measure "during $r"
	during=$RPS
	d1=$(depth)
	while (($(depth) > 0)); do sleep 0.2; done
	drain=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')
	say "round $r: depth $d0 as the run started, $d1 as it ended; drained ${drain}s after the enqueue ($(awk -v n="$JOBS" -v s="$drain" 'BEGIN {printf "%.0f", n / s}') jobs/s)"
	[[ $d1 -gt 0 ]] || say "round $r: the backlog drained before the run ended: its ratio understates the drain's cost"
	measure "without $r"
	ratio=$(awk -v d="$during" -v a="$before" -v b="$RPS" 'BEGIN {printf "%.3f", d / ((a + b) / 2)}')
	ratios+=("$ratio")
	say "round $r: during $during req/s over without $before and $RPS: $ratio"
	before=$RPS
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
echo "cached reads during a ${JOBS}-job drain over without it: median $median (rounds: ${ratios[*]}); target ≥ 0.80; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v m="$median" 'BEGIN {exit !(m >= 0.80)}' || exit 1
