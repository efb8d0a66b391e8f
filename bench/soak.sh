#!/usr/bin/env bash
# bench/soak.sh: onebox at half its sustainable rate for DURATION, with a
# profile edit for every ten reads (so the WAL grows and must be
# checkpointed), sampling every INTERVAL seconds: RSS (/proc), goroutines
# and open files (the admin /metrics: go_goroutines, process_open_fds)
# and the WAL's size. At the end it compares the mean of the first third
# of the samples with the last third and says, per series, whether it
# stayed flat (last ≤ first × 1.2 + slack). Exits 1 if not, or if onebox
# died.
#
# Knobs: DURATION=600 (seconds), INTERVAL=10, USERS=20000, KEEP=1.
set -euo pipefail

DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-10}
USERS=${USERS:-20000}
KEEP=${KEEP:-0}
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/onebox-soak.XXXXXX")
DATA=$WORK/data
PID="" LOAD=()

say() { printf 'soak: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
cleanup() {
	for p in "${LOAD[@]}" $PID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	if [[ $KEEP == 1 ]]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/onebox" . && go build -o "$WORK/seed" ./bench/seed) || die "go build"
mkdir -p "$DATA"
"$WORK/seed" -db "$DATA/onebox.db" -users "$USERS" -sessions 100 -ids "$WORK/ids.txt" -tokens "$WORK/tokens.txt" >&2

port=$((20000 + RANDOM % 20000)) admin=$((40000 + RANDOM % 20000))
URL=http://127.0.0.1:$port ADMIN=http://127.0.0.1:$admin
env $(compgen -e | grep -E '^(ONEBOX_|GOGC$|GOMEMLIMIT$)' | sed 's/^/-u /') \
	ONEBOX_ADDR=127.0.0.1:$port ONEBOX_ADMIN_ADDR=127.0.0.1:$admin ONEBOX_DATA_DIR="$DATA" \
	ONEBOX_RATE_API=100000000/1s ONEBOX_ACCESS_LOG=false \
	"$WORK/onebox" serve >/dev/null 2>"$WORK/stderr" &
PID=$!
for _ in $(seq 100); do curl -fs "$ADMIN/health/ready" >/dev/null && break; sleep 0.1; done
curl -fs "$ADMIN/health/ready" >/dev/null || die "onebox did not start: $(cat "$WORK/stderr")"

# Capacity: reads as fast as 64 connections go, for 5 s.
R=$(wrk -t2 -c64 -d5s -s "$BENCH/paced.lua" "$URL" -- "$WORK/ids.txt" 0 | sed -n 's/^BENCH rps=\([0-9.]*\).*/\1/p')
# Half of it: 100 connections pausing to offer R/2 in all, nine reads to an edit.
PAUSE=$(awk -v r="$R" 'BEGIN {printf "%d", 100*1000/(r/2)}')
say "sustainable rate $R/s; soaking at half: 100 connections pausing $PAUSE ms, ${DURATION}s, a sample every ${INTERVAL}s"
# wrk runs past the last sample and is stopped (SIGINT: it prints its
# figures) once it is taken, so every sample is under load.
wrk -t2 -c100 -d"$((DURATION + 2 * INTERVAL))s" --timeout 10s -s "$BENCH/paced.lua" "$URL" -- "$WORK/ids.txt" "$PAUSE" "$WORK/tokens.txt" >"$WORK/load.out" &
LOAD+=($!)

metric() { curl -fs "$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
printf 't_s rss_mib goroutines open_fds wal_mib\n' >"$WORK/samples"
end=$((SECONDS + DURATION))
while ((SECONDS < end)); do
	sleep "$INTERVAL"
	kill -0 "$PID" 2>/dev/null || die "onebox died: $(tail -5 "$WORK/stderr")"
	rss=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status")
	fds=$(ls "/proc/$PID/fd" | wc -l)
	wal=$(stat -c %s "$DATA/onebox.db-wal" 2>/dev/null || echo 0)
	printf '%d %s %s %s %.1f\n' "$((DURATION - end + SECONDS))" "$rss" "$(metric go_goroutines)" "$fds" \
		"$(awk -v b="$wal" 'BEGIN {print b/1048576}')" | tee -a "$WORK/samples" >&2
done
kill -INT "${LOAD[@]}"
wait "${LOAD[@]}" || true
LOAD=()
grep '^BENCH' "$WORK/load.out" >&2 || true

# First third against last third of the samples.
awk 'NR > 1 {n++; for (i = 2; i <= 5; i++) v[n, i] = $i}
END {
	split("rss_mib goroutines open_fds wal_mib", name, " ")
	slack[2] = 8; slack[3] = 20; slack[4] = 5; slack[5] = 4.5  # MiB, count, count, MiB (the WAL checkpoints at ~4 MiB)
	third = int(n / 3); if (third < 1) { print "too few samples"; exit 1 }
	bad = 0
	printf "| series | first third | last third | flat |\n| --- | --- | --- | --- |\n"
	for (i = 2; i <= 5; i++) {
		a = 0; b = 0
		for (j = 1; j <= third; j++) { a += v[j, i]; b += v[n - third + j, i] }
		a /= third; b /= third
		flat = (b <= a * 1.2 + slack[i]) ? "yes" : "NO"
		if (flat == "NO") bad = 1
		printf "| %s | %.1f | %.1f | %s |\n", name[i - 1], a, b, flat
	}
	exit bad
}' "$WORK/samples"
