#!/usr/bin/env bash
# bench/overload.sh: what onebox does at twice the request rate it
# sustains. One onebox process (uncached profile reads, so every request
# costs a SQLite read) goes through:
#   1. capacity: wrk, 64 connections, no pause: the sustainable rate R;
#   2. 1×:  connections that each pause PAUSE_MS between requests, as many
#           as offer R; p99 of the admitted (200) requests;
#   3. 2×:  twice as many connections: 2R offered; p99 of the admitted
#           requests, the shed fraction (503 /problems/overloaded), peak RSS;
#   4. after: 1× again, at once: back to normal?
# Admitted latencies come from onebox's access log (duration_us of each
# 200 line, from routing to the answer); wrk's own p99 mixes the fast
# 503s in. Prints one table; exits 1 if onebox died or a 5xx other than
# a shed came back.
#
# Knobs: DURATION=15s per phase, MAX_IN_FLIGHT (onebox's default when
# unset), PAUSE_MS=20, USERS=20000, KEEP=1 keeps the work directory.
set -euo pipefail

DURATION=${DURATION:-15s}
PAUSE_MS=${PAUSE_MS:-20}
USERS=${USERS:-20000}
KEEP=${KEEP:-0}
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/onebox-overload.XXXXXX")
DATA=$WORK/data
PID=""

say() { printf 'overload: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
cleanup() {
	[[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
	if [[ $KEEP == 1 ]]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/onebox" . && go build -o "$WORK/seed" ./bench/seed) || die "go build"
mkdir -p "$DATA"
"$WORK/seed" -db "$DATA/onebox.db" -users "$USERS" -sessions 1 -ids "$WORK/ids.txt" -tokens "$WORK/tokens.txt" >&2

port=$((20000 + RANDOM % 20000))
URL=http://127.0.0.1:$port
env=(ONEBOX_ADDR=127.0.0.1:$port ONEBOX_DATA_DIR="$DATA" ONEBOX_LOG_LEVEL=info
	ONEBOX_RATE_API=100000000/1s ONEBOX_CACHE_URL=none)
[[ -n ${MAX_IN_FLIGHT:-} ]] && env+=(ONEBOX_MAX_IN_FLIGHT="$MAX_IN_FLIGHT")
# The access log is appended (>>), so it can be emptied between phases.
env $(compgen -e | grep -E '^(ONEBOX_|GOGC$|GOMEMLIMIT$)' | sed 's/^/-u /') "${env[@]}" \
	"$WORK/onebox" serve -admin-addr= >>"$WORK/access.log" 2>"$WORK/stderr" &
PID=$!
for _ in $(seq 100); do curl -fs "$URL/health/live" >/dev/null && break; sleep 0.1; done
curl -fs "$URL/health/live" >/dev/null || die "onebox did not start: $(cat "$WORK/stderr")"

field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }
# admitted_p99: p99 in ms of the 200 answers in the access log.
admitted_p99() {
	grep -o '"status":200,"duration_us":[0-9]*' "$WORK/access.log" | sed 's/.*://' | sort -n |
		awk '{v[NR]=$1} END {if (NR==0) {print "n/a"; exit} i=int(NR*0.99); if (i<1) i=1; printf "%.1f", v[i]/1000}'
}
# phase NAME CONNECTIONS PAUSE: one wrk run; sets OUT.
phase() {
	: >"$WORK/access.log"
	OUT=$(wrk -t2 -c"$2" -d"$DURATION" --timeout 10s -s "$BENCH/paced.lua" "$URL" -- "$WORK/ids.txt" "$3" | grep '^BENCH') || die "$1: wrk failed"
	kill -0 "$PID" 2>/dev/null || die "$1: onebox died: $(tail -5 "$WORK/stderr")"
	local n5xx
	n5xx=$(grep -c '"msg":"request".*"status":5' "$WORK/access.log" || true)
	SHED=$(grep -c '"msg":"request".*"status":503' "$WORK/access.log" || true)
	[[ $n5xx == "$SHED" ]] || die "$1: $((n5xx - SHED)) 5xx answers other than 503"
	P99=$(admitted_p99)
	say "$1: $OUT shed=$SHED admitted_p99_ms=$P99 rss_mib=$(rss_mib)"
}

wrk -t2 -c64 -d3s -s "$BENCH/paced.lua" "$URL" -- "$WORK/ids.txt" 0 >/dev/null # warm-up
phase capacity 64 0
R=$(field "$OUT" rps)
C1=$(awk -v r="$R" -v p="$PAUSE_MS" 'BEGIN {c=int(r*p/1000+0.5); print (c<1)?1:c}')
say "sustainable rate R=$R/s; 1x = $C1 connections pausing ${PAUSE_MS} ms, 2x = $((2 * C1))"

phase 1x "$C1" "$PAUSE_MS"
RPS1=$(field "$OUT" rps) P99_1=$P99 WRK1=$(field "$OUT" p99_ms)
phase 2x $((2 * C1)) "$PAUSE_MS"
RPS2=$(field "$OUT" rps) P99_2=$P99 WRK2=$(field "$OUT" p99_ms) REQ2=$(field "$OUT" requests) SHED2=$SHED HWM=$(hwm_mib)
phase after "$C1" "$PAUSE_MS"
RPS3=$(field "$OUT" rps) P99_3=$P99 SHED3=$SHED

printf '\n| phase | offered | answered/s | admitted p99 | wrk p99 (all) | shed |\n| --- | --- | --- | --- | --- | --- |\n'
printf '| capacity (64 conns, no pause) | all it takes | %s | | | |\n' "$R"
printf '| 1× | %s conns × %s ms | %s | %s ms | %s ms | 0 |\n' "$C1" "$PAUSE_MS" "$RPS1" "$P99_1" "$WRK1"
printf '| 2× | %s conns × %s ms | %s | %s ms | %s ms | %s of %s (%s) |\n' "$((2 * C1))" "$PAUSE_MS" "$RPS2" "$P99_2" "$WRK2" "$SHED2" "$REQ2" \
	"$(awk -v s="$SHED2" -v n="$REQ2" 'BEGIN {printf "%.0f %%", 100*s/n}')"
printf '| after, 1× at once | %s conns | %s | %s ms | | %s |\n' "$C1" "$RPS3" "$P99_3" "$SHED3"
printf '\nadmitted p99 at 2x / at 1x: %s; peak RSS %s MiB\n' "$(awk -v a="$P99_2" -v b="$P99_1" 'BEGIN {printf "%.1f", a/b}')" "$HWM"
