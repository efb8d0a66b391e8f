#!/usr/bin/env bash
# bench/run.sh: load-test onebox on loopback with wrk, next to a bare echo
# baseline, and print one table. See bench/README.md.
#
# Knobs (environment):
#   DURATION=10s      measured wrk run per scenario (wrk syntax: 10s, 1m)
#   CONNECTIONS=64    wrk connections;  THREADS=2  wrk threads
#   USERS=100000      users seeded;     SESSIONS=1000  of them get a token
#   WORKING_SET=10000 ids the cached-read scenarios draw from (≤ USERS)
#   WARMUP=3s         unmeasured wrk run before each measured one
#   SCENARIOS=cached,cached-nolog,cached-noobs,uncached,update   any subset, plus
#                     "miss" (cache on, every read a miss); the baseline
#                     always runs first and last
#   ROUNDS=1          run the scenarios this many times, the baseline before,
#                     between and after the rounds; each scenario shows its
#                     median run (on a noisy machine, try ROUNDS=3)
#   PROFILE=1         also save a CPU profile of onebox per scenario (builds
#                     onebox with a pprof listener added by a -overlay file;
#                     the tree is not touched; costs a few % of throughput)
#   SERVER_LOG=1      send onebox's stdout (logs and access log) to a file
#                     instead of /dev/null, for debugging; skews the numbers
#   KEEP=1            keep the work directory (data, wrk outputs, profiles)
#   DATABASES=sqlite  the stores to run every scenario on, any of: sqlite,
#                     postgres (DATABASE_URL), postgres+replica (DATABASE_URL
#                     with REPLICA_URLS, comma-separated, for its reads);
#                     PostgreSQL runs get a schema of their own, dropped after
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
#   REPLICA_URLS=postgres://postgres@127.0.0.1:15433/test?sslmode=disable
#                     (deploy/postgres/replica.sh start makes that replica)
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
USERS=${USERS:-100000}
SESSIONS=${SESSIONS:-1000}
WORKING_SET=${WORKING_SET:-10000}
WARMUP=${WARMUP:-3s}
SCENARIOS=${SCENARIOS:-cached,cached-nolog,cached-noobs,uncached,update}
ROUNDS=${ROUNDS:-1}
PROFILE=${PROFILE:-0}
SERVER_LOG=${SERVER_LOG:-0}
KEEP=${KEEP:-0}
DATABASES=${DATABASES:-sqlite}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
REPLICA_URLS=${REPLICA_URLS:-postgres://postgres@127.0.0.1:15433/test?sslmode=disable}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/onebox-bench.XXXXXX")
DATA=$WORK/data
LUA=$BENCH/scenario.lua

# What each scenario is, and its target as a fraction of the baseline.
declare -A TITLE=(
	[baseline-first]="baseline, first run"
	[baseline-last]="baseline, last run"
	[cached]="GET /v1/users/:id, cached"
	[cached-nolog]="same, ONEBOX_ACCESS_LOG=false"
	[cached-noobs]="same, ONEBOX_METRICS=false ONEBOX_TRACING=false"
	[uncached]="GET /v1/users/:id, ONEBOX_CACHE_URL=none"
	[miss]="GET /v1/users/:id, all misses (TTL 1ns)"
	[update]="PATCH /v1/users/me (bearer)"
	[upload]="POST /v1/photos; p50/p99: 202→ready"
)
declare -A TARGET=([cached]=0.60 [uncached]=0.35 [update]=0.12)
# Results by run ("cached@1", "baseline@0") and, after pick, by scenario.
declare -A RPS P50 P99 REQS NON2XX SOCKERR RUNS
FAILURES=()
SERVER_PID=""
SCHEMA="" # the PostgreSQL runs' schema, dropped on exit

say() { printf '%s\n' "bench: $*" >&2; }
die() {
	say "FAILED: $*"
	exit 1
}
fail() {
	say "ERROR: $*"
	FAILURES+=("$*")
}

cleanup() {
	local rc=$?
	stop_server
	if [[ -n $SCHEMA ]]; then
		psql -qX "$DATABASE_URL" -c "drop schema $SCHEMA cascade" >/dev/null 2>&1 || say "could not drop schema $SCHEMA"
	fi
	if [[ $rc -ne 0 || ${#FAILURES[@]} -gt 0 || $KEEP == 1 || $PROFILE == 1 ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# seconds converts a wrk duration (10, 10s, 2m, 1h) to seconds.
seconds() {
	local d=$1
	case $d in
	*h) echo $((${d%h} * 3600)) ;;
	*m) echo $((${d%m} * 60)) ;;
	*s) echo "${d%s}" ;;
	*) echo "$d" ;;
	esac
}

# free_port prints a loopback port nothing listens on, below the kernel's
# range of ephemeral ports, which wrk's and curl's own sockets use.
free_port() {
	local lo p
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	((lo > 12000)) || lo=32768
	for _ in $(seq 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free loopback port found"
}

# start_onebox NAME [VAR=VALUE...] starts onebox with the production
# middleware on, the limiter set far above what wrk can send, and the
# given extra settings; it sets SERVER_PID, URL and PPROF.
start_onebox() {
	local name=$1 port out=/dev/null env
	shift
	[[ $SERVER_LOG == 1 ]] && out=$WORK/$name.log
	for _ in 1 2 3; do
		port=$(free_port)
		URL=http://127.0.0.1:$port
		PPROF=""
		env=(
			ONEBOX_ADDR=127.0.0.1:$port ONEBOX_ADMIN_ADDR= ONEBOX_DATA_DIR="$DATA"
			ONEBOX_LOG_LEVEL=info ONEBOX_RATE_API=100000000/1s ONEBOX_CACHE_TTL="$CACHE_TTL"
			"${DBENV[@]}"
		)
		if [[ $PROFILE == 1 ]]; then
			PPROF=127.0.0.1:$(free_port)
			env+=(BENCH_PPROF_ADDR="$PPROF")
		fi
		# Only our settings: an ONEBOX_* variable (or GOGC, GOMEMLIMIT) of
		# the caller's shell must not change what is measured. An empty
		# ONEBOX_ADMIN_ADDR counts as unset (config.Load keeps the default 127.0.0.1:8081),
		# so the admin listener is turned off by flag.
		env $(compgen -e | grep -E '^(ONEBOX_|GOGC$|GOMEMLIMIT$)' | sed 's/^/-u /') "${env[@]}" "$@" \
			"$WORK/onebox" serve -admin-addr= >"$out" 2>"$WORK/$name.stderr" &
		SERVER_PID=$!
		wait_ready "$URL/health/live" "$name" && return
	done
	die "$name: no free port after three tries"
}

start_baseline() {
	local name=$1 port
	PPROF=""
	for _ in 1 2 3; do
		port=$(free_port)
		URL=http://127.0.0.1:$port
		# The collector settings onebox gives itself (ops.TuneGC), so the
		# baseline runs the same runtime.
		GOGC=400 GOMEMLIMIT=512MiB "$WORK/baseline" -addr "127.0.0.1:$port" -size "$SIZE" >/dev/null 2>"$WORK/$name.stderr" &
		SERVER_PID=$!
		wait_ready "$URL/v1/users/$(head -n1 "$D/ids.txt")" "$name" && return
	done
	die "$name: no free port after three tries"
}

# wait_ready URL NAME waits for the server to answer URL. It returns 1 if
# the server exited because its port was taken meanwhile (try another),
# and ends the script on any other failure.
wait_ready() {
	local url=$1 name=$2
	for _ in $(seq 100); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			wait "$SERVER_PID" 2>/dev/null || true
			SERVER_PID=""
			grep -q 'address already in use' "$WORK/$name.stderr" && return 1
			cat "$WORK/$name.stderr" >&2 || true
			die "$name: server exited before it was ready"
		fi
		curl -fs -o /dev/null "$url" && return
		sleep 0.1
	done
	die "$name: not ready after 10s ($url)"
}

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# wrk_run NAME DURATION MODE FILE runs wrk against $URL and leaves its
# output in $WORK/NAME.wrk; it sets the BENCH_* values from done()'s line.
wrk_run() {
	local name=$1 dur=$2 mode=$3 file=$4 line
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency -s "$LUA" "$URL" -- "$mode" "$file" >"$WORK/$name.wrk" 2>&1 ||
		{ cat "$WORK/$name.wrk" >&2; die "$name: wrk failed"; }
	line=$(grep '^BENCH ' "$WORK/$name.wrk") || { cat "$WORK/$name.wrk" >&2; die "$name: no BENCH line from wrk"; }
	read -r BENCH_RPS BENCH_P50 BENCH_P99 BENCH_REQS BENCH_NON2XX BENCH_SOCK < <(
		awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		       print v["rps"], v["p50_ms"], v["p99_ms"], v["requests"], v["non2xx3xx"], v["socket_errors"] + v["timeouts"] }' <<<"$line")
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		cat "$WORK/${name%.*}.stderr" >&2 || true
		fail "$name: the server died during the run"
	fi
}

# measure NAME MODE FILE: warm-up run, measured run (with a CPU profile
# when PROFILE=1), then record the numbers and check for errors.
measure() {
	local name=$1 mode=$2 file=$3 prof=""
	wrk_run "$name.warmup" "$WARMUP" "$mode" "$file"
	if ((BENCH_NON2XX + BENCH_SOCK > 0)); then
		fail "$name: warm-up had $BENCH_NON2XX responses ≥ 400 and $BENCH_SOCK socket errors/timeouts"
	fi
	if [[ -n $PPROF ]]; then
		curl -fs -o "$WORK/$name.cpu.pprof" "http://$PPROF/debug/pprof/profile?seconds=$((DURATION_S > 2 ? DURATION_S - 1 : 1))" &
		prof=$!
	fi
	wrk_run "$name" "$DURATION" "$mode" "$file"
	if [[ -n $prof ]]; then
		wait "$prof" || fail "$name: CPU profile failed"
	fi
	RPS[$name]=$BENCH_RPS P50[$name]=$BENCH_P50 P99[$name]=$BENCH_P99 REQS[$name]=$BENCH_REQS
	NON2XX[$name]=$BENCH_NON2XX SOCKERR[$name]=$BENCH_SOCK
	if ((BENCH_NON2XX + BENCH_SOCK > 0)); then
		fail "$name: $BENCH_NON2XX responses ≥ 400 and $BENCH_SOCK socket errors/timeouts of $BENCH_REQS requests"
		sample_response "$name" "$mode" "$file"
	fi
	say "$name: $(printf '%.0f' "$BENCH_RPS") req/s, p50 $BENCH_P50 ms, p99 $BENCH_P99 ms"
}

# sample_response shows one response of the kind that failed.
sample_response() {
	local name=$1 mode=$2 file=$3 first
	first=$(head -n1 "$file")
	say "$name: one sample response:"
	if [[ $mode == read ]]; then
		curl -s -w '\n(HTTP %{http_code})\n' "$URL/v1/users/$first" >&2 || true
	else
		curl -s -w '\n(HTTP %{http_code})\n' -X PATCH -H "Authorization: Bearer $first" \
			-H 'Content-Type: application/json' -d '{"bio":"sample"}' "$URL/v1/users/me" >&2 || true
	fi
}

# etag prints the ETag of a profile, without quotes.
etag() {
	curl -s -o /dev/null -D - "$URL/v1/users/$1" | tr -d '\r"' | awk -F': ' 'tolower($1) == "etag" { print $2 }'
}

# warm_cache reads every id of the working set once, so the cached
# scenario's requests are all cache hits (the TTL is far longer than the
# run), then proves it: it changes some users behind the server's back
# (the seed helper bumps their version in the database) and checks that
# the server still answers with the old ETag, i.e. from its cache, while
# users outside the working set show the new one.
warm_cache() {
	local name=$1 codes
	awk -v u="$URL" '{ printf "url = \"%s/v1/users/%s\"\noutput = \"/dev/null\"\n", u, $0 }' "$D/workset.txt" >"$D/warm.curl"
	codes=$(curl -s -K "$D/warm.curl" -w '%{http_code}\n' | sort | uniq -c | awk '{ printf "%s×%s ", $1, $2 }')
	[[ $codes == "$WORKING_SET×200 " ]] || fail "$name: cache warm-up got $codes(want $WORKING_SET×200)"
	cat "$D/probe-in.txt" "$D/probe-out.txt" >"$D/probe.txt"
	"$WORK/seed" -db "$SEEDDB" -bump "$D/probe.txt" >"$WORK/$name.bumped" ||
		die "$name: seed -bump failed"
	# A read that carries no token may go to the replica: let it replay the
	# bumps first, or the probes outside the working set look stale.
	[[ -z $REPLICAS ]] || wait_replica
	check_cache "$name" "before the run"
}

# check_cache fails unless the working-set probes are still served from
# the cache and the others from the database.
check_cache() {
	local name=$1 when=$2 id version got stale=0 fresh=0 bad=0
	while read -r id version; do
		got=$(etag "$id")
		if grep -qx "$id" "$D/probe-in.txt"; then
			[[ $got != "$version" ]] && stale=$((stale + 1)) || bad=$((bad + 1))
		else
			[[ $got == "$version" ]] && fresh=$((fresh + 1)) || bad=$((bad + 1))
		fi
	done <"$WORK/$name.bumped"
	((bad == 0)) || fail "$name: cache check $when: $bad of $((stale + fresh + bad)) probes wrong (cached ids must keep the old ETag, others show the new one)"
	say "$name: cache check $when: $stale/$(wc -l <"$D/probe-in.txt") working-set ids served from cache, $fresh/$(wc -l <"$D/probe-out.txt") others from the database"
}

run_baseline() {
	start_baseline "$1"
	measure "$1" read "$D/ids.txt"
	stop_server
}

# measure_upload NAME: bench/upload against $URL, a closed loop for the
# most uploads a second accepted (its req/s), then an open loop at 80 % of
# that for the time from 202 to ready (its p50 and p99); an upload that did
# not end ready counts as an error.
measure_upload() {
	local name=$1 line
	"$WORK/upload" -url "$URL" -image "$ROOT/testdata/images/formats/jpeg_gray_hopper.jpg" \
		-d "$DURATION" -c "$UPLOAD_CONNECTIONS" -rate 0.8 -wait 1m >"$WORK/$name.upload" 2>&1 || true
	line=$(grep '^RESULT ' "$WORK/$name.upload") || { cat "$WORK/$name.upload" >&2; die "$name: no RESULT line from bench/upload"; }
	read -r BENCH_RPS BENCH_P50 BENCH_P99 BENCH_NON2XX < <(
		awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		       print v["max_per_s"], v["p50_ms"], v["p99_ms"], v["not_ready"] }' <<<"$line")
	RPS[$name]=$BENCH_RPS P50[$name]=$BENCH_P50 P99[$name]=$BENCH_P99 REQS[$name]=0
	NON2XX[$name]=$BENCH_NON2XX SOCKERR[$name]=0
	((BENCH_NON2XX == 0)) || fail "$name: $BENCH_NON2XX uploads did not end ready (see $WORK/$name.upload)"
	say "$name: $(printf '%.0f' "$BENCH_RPS") uploads/s accepted; 202→ready p50 $BENCH_P50 ms, p99 $BENCH_P99 ms"
}

# in_schema URL prints URL with the runs' schema first on its search_path
# (the comma escaped: ONEBOX_DATABASE_REPLICA_URLS is comma-separated).
in_schema() {
	local sep='?'
	[[ $1 != *\?* ]] || sep='&'
	echo "$1${sep}search_path=$SCHEMA%2Cpublic"
}

# use_database DB points the next runs at DB: D (its ids, tokens and
# probe files), SEEDDB (what bench/seed opens), DBENV (onebox's settings)
# and REPLICAS.
use_database() {
	local u urls=()
	DBENV=() REPLICAS=""
	case $1 in
	sqlite)
		D=$WORK/sqlite SEEDDB=$DATA/onebox.db
		;;
	postgres | postgres+replica)
		D=$WORK/postgres SEEDDB=$(in_schema "$DATABASE_URL")
		DBENV=(ONEBOX_DATABASE_URL="$SEEDDB")
		if [[ $1 == postgres+replica ]]; then
			IFS=, read -r -a urls <<<"$REPLICA_URLS"
			for u in "${urls[@]}"; do
				REPLICAS+=${REPLICAS:+,}$(in_schema "$u")
			done
			DBENV+=(ONEBOX_DATABASE_REPLICA_URLS="$REPLICAS")
		fi
		;;
	esac
	mkdir -p "$D"
}

# wait_replica waits until every replica has replayed the primary's WAL
# as far as it is now.
wait_replica() {
	local lsn u urls=()
	lsn=$(psql -qXtA "$DATABASE_URL" -c 'select pg_current_wal_lsn()') || die "psql on the primary failed"
	IFS=, read -r -a urls <<<"$REPLICA_URLS"
	for u in "${urls[@]}"; do
		for _ in $(seq 300); do
			[[ $(psql -qXtA "$u" -c "select pg_last_wal_replay_lsn() >= '$lsn'" 2>/dev/null) == t ]] && continue 2
			sleep 0.1
		done
		die "a replica of REPLICA_URLS has not replayed up to $lsn after 30s (is it running? deploy/postgres/replica.sh start)"
	done
}

# run_scenario SCENARIO RUN: one run of a scenario, its files and results
# named RUN, on the database use_database chose.
run_scenario() {
	local run=$2
	case $1 in
	cached)
		start_onebox "$run"
		warm_cache "$run"
		measure "$run" read "$D/workset.txt"
		check_cache "$run" "after the run"
		;;
	cached-nolog)
		start_onebox "$run" ONEBOX_ACCESS_LOG=false
		warm_cache "$run"
		measure "$run" read "$D/workset.txt"
		check_cache "$run" "after the run"
		;;
	cached-noobs)
		start_onebox "$run" ONEBOX_METRICS=false ONEBOX_TRACING=false
		warm_cache "$run"
		measure "$run" read "$D/workset.txt"
		check_cache "$run" "after the run"
		;;
	uncached)
		start_onebox "$run" ONEBOX_CACHE_URL=none
		measure "$run" read "$D/ids.txt"
		;;
	miss)
		start_onebox "$run" ONEBOX_CACHE_TTL=1ns
		measure "$run" read "$D/ids.txt"
		;;
	update)
		start_onebox "$run"
		measure "$run" patch "$D/tokens.txt"
		;;
	upload)
		# As bench/upload.sh: limits and the backlog bound off.
		start_onebox "$run" ONEBOX_RATE_UPLOAD=100000000/1s ONEBOX_UPLOAD_BACKLOG=0 ONEBOX_ACCESS_LOG=false
		measure_upload "$run"
		;;
	esac
	stop_server
}

# pick NAME RUN...: NAME gets the numbers of its median run by req/s (the
# lower middle for an even count), the errors of all runs added up, and
# the list of every run's req/s.
pick() {
	local name=$1 mid run non2xx=0 sock=0
	shift
	mid=$(for run; do echo "${RPS[$run]} $run"; done | sort -g | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
	RPS[$name]=${RPS[$mid]} P50[$name]=${P50[$mid]} P99[$name]=${P99[$mid]} REQS[$name]=${REQS[$mid]}
	for run; do
		non2xx=$((non2xx + ${NON2XX[$run]})) sock=$((sock + ${SOCKERR[$run]}))
	done
	NON2XX[$name]=$non2xx SOCKERR[$name]=$sock
	RUNS[$name]=$(for run; do printf '%.0f ' "${RPS[$run]}"; done)
}

# ---- checks and set-up

IFS=, read -r -a SCEN <<<"$SCENARIOS"
for s in "${SCEN[@]}"; do
	[[ -n ${TARGET[$s]:-} || $s == cached-nolog || $s == cached-noobs || $s == miss || $s == upload ]] ||
		die "unknown scenario $s in SCENARIOS (want cached, cached-nolog, cached-noobs, uncached, update, miss, upload)"
done
read -r -a DBS <<<"${DATABASES//,/ }"
((${#DBS[@]} > 0)) || die "DATABASES is empty"
DB0=${DBS[0]}
# A case is a scenario on a database, "uncached:postgres"; its runs are
# "uncached:postgres@1" and so on.
CASES=()
for s in "${SCEN[@]}"; do
	for db in "${DBS[@]}"; do
		CASES+=("$s:$db")
	done
done
PG=0
for db in "${DBS[@]}"; do
	case $db in
	sqlite) ;;
	postgres | postgres+replica) PG=1 ;;
	*) die "unknown database $db in DATABASES (want sqlite, postgres, postgres+replica)" ;;
	esac
done
UPLOAD_CONNECTIONS=${UPLOAD_CONNECTIONS:-16}
((WORKING_SET <= USERS)) || WORKING_SET=$USERS
((SESSIONS <= USERS)) || SESSIONS=$USERS
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
# A cached profile lives 60s ±10%. The cached scenario needs every entry
# alive from its warm-up to its last request; longer runs get a longer TTL.
CACHE_TTL=60s
if ((DURATION_S + WARMUP_S > 40)); then
	CACHE_TTL=$((2 * (DURATION_S + WARMUP_S) + 60))s
fi

if ! command -v wrk >/dev/null; then
	say "installing wrk from Debian"
	sudo=""
	[[ $(id -u) == 0 ]] || sudo=sudo
	$sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi

say "building into $WORK"
build_flags=()
if [[ $PROFILE == 1 ]]; then
	# Adds net/http/pprof on $BENCH_PPROF_ADDR to the onebox binary
	# without touching the tree.
	cat >"$WORK/zz_bench_pprof.go" <<-'EOF'
		package main

		import (
			"net/http"
			_ "net/http/pprof"
			"os"
		)

		func init() {
			if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
				go http.ListenAndServe(addr, nil)
			}
		}
	EOF
	printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/zz_bench_pprof.go" "$WORK/zz_bench_pprof.go" >"$WORK/overlay.json"
	build_flags=(-overlay "$WORK/overlay.json")
fi
(
	cd "$ROOT"
	CGO_ENABLED=0 go build "${build_flags[@]}" -o "$WORK/onebox" .
	go build -o "$WORK/baseline" ./bench/baseline
	go build -o "$WORK/seed" ./bench/seed
	go build -o "$WORK/upload" ./bench/upload
) || die "go build failed"

mkdir -p "$DATA"
if ((PG)); then
	command -v psql >/dev/null || die "the PostgreSQL runs need psql"
	SCHEMA=bench_run_$(date +%s)_$$
	psql -qX "$DATABASE_URL" -c "create schema $SCHEMA" >/dev/null || { SCHEMA=""; die "cannot create a schema at DATABASE_URL"; }
fi
# sqlite and postgres each get their users; postgres+replica reads
# postgres's, once the replica has replayed them.
for db in "${DBS[@]}"; do
	use_database "$db"
	if [[ ! -e $D/ids.txt ]]; then
		say "seeding $USERS users and $SESSIONS sessions on $db"
		"$WORK/seed" -db "$SEEDDB" -users "$USERS" -sessions "$SESSIONS" \
			-ids "$D/ids.txt" -tokens "$D/tokens.txt" >&2
		shuf -n "$WORKING_SET" "$D/ids.txt" >"$D/workset.txt"
		shuf -n 20 "$D/workset.txt" >"$D/probe-in.txt"
		sort "$D/workset.txt" | comm -23 <(sort "$D/ids.txt") - | shuf -n 5 >"$D/probe-out.txt"
	fi
	[[ -z $REPLICAS ]] || wait_replica
done
use_database "${DBS[0]}"

# The baseline serves a document as long as a real profile response.
start_onebox size
SIZE=$(curl -fs -o /dev/null -w '%{size_download}' "$URL/v1/users/$(head -n1 "$D/ids.txt")")
stop_server
say "a profile response body is $SIZE bytes"

# ---- the runs

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

run_baseline baseline@0
for r in $(seq "$ROUNDS"); do
	for s in "${SCEN[@]}"; do
		for db in "${DBS[@]}"; do
			use_database "$db"
			run_scenario "$s" "$s:$db@$r"
		done
	done
	run_baseline "baseline@$r"
done

# ---- the table

for c in "${CASES[@]}"; do
	pick "$c" $(seq -f "$c@%g" "$ROUNDS")
done
pick baseline-first baseline@0
pick baseline-last "baseline@$ROUNDS"
pick baseline $(seq -f "baseline@%g" 0 "$ROUNDS")
BASE=$(for r in $(seq 0 "$ROUNDS"); do echo "${RPS[baseline@$r]}"; done | awk '{ s += $1 } END { printf "%.1f", s / NR }')

# A scenario's ratio pairs each of its runs with the baselines run just
# before and just after its round (the mean of the two), and takes the
# median over the rounds: the machine's speed drifts over a long run (other
# tenants), and a run compared with the baselines around it cancels most of
# that drift, where a mean over every baseline lets one outlier move every
# ratio. median reads numbers on standard input.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.4f", v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A RATIO ROUND_RATIOS
for c in "${CASES[@]}"; do
	ROUND_RATIOS[$c]=$(for r in $(seq "$ROUNDS"); do
		awk -v x="${RPS[$c@$r]}" -v b0="${RPS[baseline@$((r - 1))]}" -v b1="${RPS[baseline@$r]}" 'BEGIN { printf "%.4f ", x / ((b0 + b1) / 2) }'
	done)
	RATIO[$c]=$(tr ' ' '\n' <<<"${ROUND_RATIOS[$c]}" | grep . | median)
done
# paired_share ON OFF: the median over the rounds of ON's req/s ÷ OFF's in
# the same round (the two ran minutes apart, not a whole run).
paired_share() {
	for r in $(seq "$ROUNDS"); do
		awk -v on="${RPS[$1@$r]}" -v off="${RPS[$2@$r]}" 'BEGIN { printf "%.4f\n", on / off }'
	done | median
}
echo
echo "onebox $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') | $(nproc) cores | $(go env GOVERSION) | wrk -t$THREADS -c$CONNECTIONS -d$DURATION on loopback"
echo "$USERS users; cached reads draw from $WORKING_SET ids, each read once before the run (cache TTL $CACHE_TTL ±10%)"
echo "wrk and the server share the same $(nproc) cores: absolute numbers understate the server alone; ratios are fair, the baseline pays the same"
echo "load average before the runs: $LOAD_BEFORE (other work on the machine makes every number noisier)"
if ((ROUNDS > 1)); then
	echo "$ROUNDS rounds, the baseline before, between and after them; each scenario shows its median run"
fi
echo
W=42 # the "what" column fits the longest title
for t in "${TITLE[@]}"; do
	((${#t} <= W)) || W=${#t}
done
DW=8 # the database column
for db in "${DBS[@]}"; do
	((${#db} <= DW)) || DW=${#db}
done
printf '%-16s %-*s %-*s %10s %9s %9s %7s %8s %s\n' scenario "$DW" database "$W" what "req/s" "p50 ms" "p99 ms" ratio target result
# row NAME LABEL: NAME is a case, scenario:database, or a baseline.
row() {
	local name=$1 label=$2 scen=${1%:*} db=- target full ratio result=""
	[[ $name != *:* ]] || db=${name#*:}
	target=${TARGET[$scen]:-}
	# The verdict reads the unrounded ratio: 0.3451 is short of 0.35,
	# though it prints as 0.35.
	full=${RATIO[$name]:-$(awk -v r="${RPS[$name]}" -v b="$BASE" 'BEGIN { printf "%.4f", r / b }')}
	ratio=$(awk -v r="$full" 'BEGIN { printf "%.2f", r }')
	if [[ -n $target ]]; then
		result=$(awk -v r="$full" -v t="$target" 'BEGIN { if (r >= t) print "ok"; else printf "MISS (%.0f%% short)", (1 - r / t) * 100 }')
	fi
	if [[ ${NON2XX[$name]} != 0 || ${SOCKERR[$name]} != 0 ]]; then
		result="ERRORS: ${NON2XX[$name]} ≥400, ${SOCKERR[$name]} socket${result:+; $result}"
	fi
	printf '%-16s %-*s %-*s %10.0f %9s %9s %7s %8s %s\n' "$label" "$DW" "$db" "$W" "${TITLE[$scen]}" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" \
		"$ratio" "${target:+≥$target}" "$result"
}
row "baseline-first" "baseline"
for c in "${CASES[@]}"; do
	row "$c" "${c%:*}"
done
row "baseline-last" "baseline"
printf '%-16s %-*s %-*s %10.0f\n' "baseline mean" "$DW" - "$W" "of $((ROUNDS + 1)) runs (the baseline rows' ratios)" "$BASE"
echo
rounds_note=""
((ROUNDS == 1)) || rounds_note="; the median of its $ROUNDS rounds"
echo "a scenario's ratio: its req/s ÷ the mean of the baselines run just before and after its round$rounds_note"
if ((ROUNDS > 1)); then
	echo
	for c in baseline "${CASES[@]}"; do
		printf 'req/s of each run, %-30s %s\n' "$c:" "${RUNS[$c]}"
	done
	echo
	for c in "${CASES[@]}"; do
		printf 'ratio of each round, %-30s %s\n' "$c:" "${ROUND_RATIOS[$c]}"
	done
fi
awk -v runs="${RUNS[baseline]}" -v rounds="$ROUNDS" 'BEGIN {
	n = split(runs, r, " "); lo = hi = r[1]
	for (i = 1; i <= n; i++) { s += r[i]; if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
	d = (hi - lo) / (s / n)
	if (d > 0.15) printf "\nWARNING: the baseline runs differ by %.0f%%: the machine was busy, so the ratios are unreliable; rerun when it is quiet%s\n", d * 100, (rounds == 1 ? " (or with ROUNDS=3)" : "") }'
# By database: each scenario's ratio to the baseline, and beside it that
# ratio over the first database's (the ratios paired with the same
# baselines, so the machine's drift cancels).
if ((${#DBS[@]} > 1)); then
	echo
	printf '%-16s' "ratio to echo"
	for db in "${DBS[@]}"; do
		printf ' %22s' "$db"
	done
	printf '\n'
	for s in "${SCEN[@]}"; do
		printf '%-16s' "$s"
		for db in "${DBS[@]}"; do
			awk -v r="${RATIO[$s:$db]}" -v f="${RATIO[$s:$DB0]}" -v first="$([[ $db == "$DB0" ]] && echo 1 || echo 0)" 'BEGIN {
				if (first) printf " %22.3f", r; else printf " %12.3f (%5.2f×)", r, r / f }'
		done
		printf '\n'
	done
	echo "(×: the ratio over $DB0's; upload's req/s are uploads accepted a second, its p50/p99 the time from 202 to ready)"
fi
if [[ -n ${RPS[cached:$DB0]:-} && -n ${RPS[cached-nolog:$DB0]:-} ]]; then
	awk -v on="${RPS[cached:$DB0]}" -v off="${RPS[cached-nolog:$DB0]}" -v share="$(paired_share cached:$DB0 cached-nolog:$DB0)" -v p50on="${P50[cached:$DB0]}" -v p50off="${P50[cached-nolog:$DB0]}" -v cores="$(nproc)" 'BEGIN {
		printf "\naccess log, cached reads: %.0f req/s (p50 %s ms) with it, %.0f req/s (p50 %s ms) without\n", on, p50on, off, p50off
		printf "  it costs %.1f%% of throughput (with ÷ without, paired by round), ≈ %.1f µs of CPU per request (%d cores × Δ(1/rps), from the paired share)%s\n",
			(1 - share) * 100, cores * (1 / share - 1) / off * 1e6, cores, (share > 1 ? "; negative: smaller than this run'"'"'s noise" : "") }'
fi
if [[ -n ${RPS[cached:$DB0]:-} && -n ${RPS[cached-noobs:$DB0]:-} ]]; then
	awk -v on="${RPS[cached:$DB0]}" -v off="${RPS[cached-noobs:$DB0]}" -v share="$(paired_share cached:$DB0 cached-noobs:$DB0)" -v p50on="${P50[cached:$DB0]}" -v p50off="${P50[cached-noobs:$DB0]}" -v cores="$(nproc)" 'BEGIN {
		printf "\nmetrics and tracing, cached reads: %.0f req/s (p50 %s ms) with both on, %.0f req/s (p50 %s ms) with both off\n", on, p50on, off, p50off
		printf "  on/off = %.2f (paired by round): they cost %.1f%% of throughput (target ≤ 15%%), ≈ %.1f µs of CPU per request%s\n",
			share, (1 - share) * 100, cores * (1 / share - 1) / off * 1e6, (share > 1 ? "; negative: smaller than this run'"'"'s noise" : "") }'
fi
if [[ $PROFILE == 1 ]]; then
	echo
	echo "CPU profiles: go tool pprof -top $WORK/onebox $WORK/<scenario>@<round>.cpu.pprof"
fi

if ((${#FAILURES[@]} > 0)); then
	echo
	printf 'FAILED: %s\n' "${FAILURES[@]}"
	exit 1
fi
