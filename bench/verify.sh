#!/usr/bin/env bash
# Backup verification benchmark: for each size in USERS, seeds a fresh
# SQLite database with bench/seed, replicates it with Litestream (a file
# replica, litestream.yml's timing) and runs `onebox backup verify`
# ROUNDS times, printing the restore time and the integrity check's, and
# as the same-run baseline a plain copy of the database file (cp, then
# sync), with the ratio of the median restore to the median copy.
#
#   bench/verify.sh                              # 10,000 and 100,000 users, 3 rounds
#   USERS="10000" ROUNDS=5 bench/verify.sh
#   LITESTREAM=/path/to/litestream bench/verify.sh
#
# LITESTREAM defaults to the binary .ci/run builds.
set -euo pipefail
cd "$(dirname "$0")/.."
litestream=${LITESTREAM:-${ONEBOX_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/onebox-tools}/litestream}
[[ -x $litestream ]] || { echo "no litestream at $litestream: run .ci/run once, or set LITESTREAM" >&2; exit 1; }
work=$(mktemp -d)
ls_pid=
trap '[[ -n $ls_pid ]] && kill "$ls_pid" 2>/dev/null; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/onebox" .
go build -o "$work/seed" ./bench/seed
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk '{v=$1; if (v ~ /µs$/) {sub(/µs/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s$/,"",v); v*=1000} printf "%.1f\n", v}'; }
for users in ${USERS:-10000 100000}; do
	dir="$work/$users"
	mkdir -p "$dir/data"
	"$work/seed" -db "$dir/data/onebox.db" -users "$users" -sessions 1000 -ids "$dir/ids" -tokens "$dir/tokens" >/dev/null
	cat >"$dir/litestream.yml" <<YML
dbs:
  - path: $dir/data/onebox.db
    monitor-interval: 100ms
    replica:
      type: file
      path: $dir/replica
      sync-interval: 1s
YML
	"$litestream" replicate -config "$dir/litestream.yml" >"$dir/litestream.log" 2>&1 &
	ls_pid=$!
	for _ in $(seq 300); do [[ -d $dir/replica ]] && break; sleep 0.1; done
	bytes=$(stat -c %s "$dir/data/onebox.db")
	restores=() checks=() copies=()
	for round in $(seq "${ROUNDS:-3}"); do
		start=$(date +%s%N)
		cp "$dir/data/onebox.db" "$dir/copy.db" && sync "$dir/copy.db"
		copies+=("$(awk -v ns=$(( $(date +%s%N) - start )) 'BEGIN {printf "%.1f", ns / 1e6}')")
		rm -f "$dir/copy.db"
		out=$(ONEBOX_LITESTREAM="$litestream" ONEBOX_LITESTREAM_CONFIG="$dir/litestream.yml" \
			"$work/onebox" backup verify -data-dir "$dir/data" -backup-recovery-point 2s)
		restores+=("$(sed -n 's/^restored the replica .* in \([^:]*\):.*/\1/p' <<<"$out" | ms)")
		checks+=("$(sed -n 's/^integrity check in \(.*\)/\1/p' <<<"$out" | ms)")
	done
	kill "$ls_pid"; wait "$ls_pid" 2>/dev/null || true; ls_pid=
	r=$(printf '%s\n' "${restores[@]}" | median) c=$(printf '%s\n' "${checks[@]}" | median) k=$(printf '%s\n' "${copies[@]}" | median)
	awk -v u="$users" -v b="$bytes" -v r="$r" -v rs="${restores[*]}" -v c="$c" -v k="$k" -v ks="${copies[*]}" 'BEGIN {
		printf "%7d users, %5.1f MB: restore %s ms (runs: %s), integrity check %s ms; cp+sync of the file %s ms (runs: %s); restore/copy %.1fx\n", u, b / 1e6, r, rs, c, k, ks, r / k }'
done
