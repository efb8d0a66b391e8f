#!/usr/bin/env bash
# bench/nginx.sh: onebox scaled out behind nginx against one instance
# without it, the same scenarios as bench/run.sh, in one command. See
# bench/README.md ("Behind nginx").
#
# Topologies (TOPOLOGIES, space-separated; the first is the baseline of
# the ratios):
#   one        one instance (ONEBOX_ROLE=all), wrk straight at it
#   one-nginx  the same instance behind nginx: what nginx itself costs
#   two        two web instances and one worker behind nginx
# Every instance of every topology runs on the same shared backends, as
# TestBehindNginx does: PostgreSQL (a schema of this run's, seeded
# once), JetStream for the queue (fed by the web instances' relays),
# core NATS for notifications and cache invalidations, the Redis limiter,
# and S3 media on moto_server (MEDIA=local: one local directory all the
# instances share instead). nginx runs deploy/nginx.conf, the file the
# project ships, with its upstream's one server replaced by the
# instances and a listen on a free port (as deploy_nginx_test.go does).
#
# Knobs (environment):
#   DURATION=5s WARMUP=2s ROUNDS=1 CONNECTIONS=64 THREADS=2
#   USERS=10000 SESSIONS=1000 WORKING_SET=5000 UPLOAD_CONNECTIONS=16
#   SCENARIOS=cached,uncached,update,upload
#   TOPOLOGIES="one two"
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
#   NATS_URL=nats://127.0.0.1:4222  REDIS_URL=redis://127.0.0.1:6379/0
#   S3_URL=       an S3 endpoint (http://host:port); empty: start
#                 moto_server on a free port for the run
#   MEDIA=s3      or local
#   NGINX=nginx   its path
#   KEEP=1        keep the work directory
set -euo pipefail

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
USERS=${USERS:-10000}
SESSIONS=${SESSIONS:-1000}
WORKING_SET=${WORKING_SET:-5000}
UPLOAD_CONNECTIONS=${UPLOAD_CONNECTIONS:-16}
SCENARIOS=${SCENARIOS:-cached,uncached,update,upload}
TOPOLOGIES=${TOPOLOGIES:-one two}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
S3_URL=${S3_URL:-}
MEDIA=${MEDIA:-s3}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
KEEP=${KEEP:-0}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/onebox-nginx-bench.XXXXXX")
LUA=$BENCH/scenario.lua
RUN=$(date +%s)$$
SCHEMA=bench_nginx_$RUN
PIDS=()     # of the running topology
MOTO_PID=""
FAILED=0
declare -A RPS P50 P99 ERRS

say() { printf '%s\n' "nginx-bench: $*" >&2; }
die() {
	say "FAILED: $*"
	exit 1
}

cleanup() {
	local rc=$?
	stop_topology
	[[ -z $MOTO_PID ]] || { kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null || true; }
	psql -qX "$DATABASE_URL" -c "drop schema if exists $SCHEMA cascade" >/dev/null 2>&1 || say "could not drop schema $SCHEMA"
	if [[ $rc -ne 0 || $FAILED -ne 0 || $KEEP == 1 ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_url() {
	local url=$1 what=$2 pid=${3:-}
	for _ in $(seq 300); do
		curl -fs -o /dev/null "$url" && return
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$WORK/$what.log" >&2 || true
			die "$what exited before it was ready"
		fi
		sleep 0.1
	done
	tail -n 20 "$WORK/$what.log" >&2 || true
	die "$what not ready after 30s ($url)"
}

# instance NAME ROLE [VAR=VALUE...] starts onebox with the shared
# backends and sets URL to its base URL.
instance() {
	local name=$1 role=$2 port
	shift 2
	port=$(free_port)
	mkdir -p "$WORK/$name"
	env $(compgen -e | grep -E '^(ONEBOX_|GOGC$|GOMEMLIMIT$)' | sed 's/^/-u /') \
		ONEBOX_ADDR=127.0.0.1:$port ONEBOX_ADMIN_ADDR= ONEBOX_DATA_DIR="$WORK/$name" \
		ONEBOX_ROLE="$role" "${SHARED[@]}" "$@" \
		"$WORK/onebox" serve >/dev/null 2>"$WORK/$name.log" &
	PIDS+=($!)
	URL=http://127.0.0.1:$port
	wait_url "$URL/health/ready" "$name" $!
}

# nginx_front UPSTREAM... runs nginx with deploy/nginx.conf in front of
# the upstreams (host:port) and sets FRONT to its base URL.
nginx_front() {
	local port dir=$WORK/nginx-$RANDOM
	port=$(free_port)
	mkdir -p "$dir"
	python3 - "$ROOT/deploy/nginx.conf" "$dir/onebox.conf" "$port" "$@" <<-'EOF'
		import sys
		src, dst, port, ups = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
		conf = open(src).read()
		# The shipped file leaves the addresses to the operator.
		servers = "".join(f"    server {u} max_fails=3 fail_timeout=2s;\n" for u in ups)
		for old, new in (("    server 127.0.0.1:8080;\n", servers), ("\nserver {\n", f"\nserver {{\n    listen 127.0.0.1:{port};\n")):
		    assert conf.count(old) == 1, f"deploy/nginx.conf: want one {old!r}"
		    conf = conf.replace(old, new, 1)
		open(dst, "w").write(conf)
	EOF
	local user=""
	[[ $(id -u) != 0 ]] || user="user root;"
	cat >"$dir/nginx.conf" <<-EOF
		daemon off;
		$user
		worker_processes auto;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections 4096; }
		http {
		    access_log off;
		    client_body_temp_path $dir/body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    include $dir/onebox.conf;
		}
	EOF
	"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$WORK/nginx.log" 2>&1 &
	PIDS+=($!)
	FRONT=http://127.0.0.1:$port
	wait_url "$FRONT/health/ready" nginx $!
}

stop_topology() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
}

# start TOPOLOGY [VAR=VALUE...] sets FRONT (where the load goes) and
# WEB (each web instance, for the cache warm-up).
start() {
	local topo=$1 a b
	shift
	case $topo in
	one)
		instance one all "$@"
		FRONT=$URL WEB=("$URL")
		;;
	one-nginx)
		instance one all "$@"
		WEB=("$URL")
		nginx_front "${URL#http://}"
		;;
	two)
		instance web1 web "$@"
		a=$URL
		instance web2 web "$@"
		b=$URL
		instance worker worker "$@"
		WEB=("$a" "$b")
		nginx_front "${a#http://}" "${b#http://}"
		;;
	*) die "unknown topology $topo (want one, one-nginx, two)" ;;
	esac
}

warm() {
	local base codes
	for base in "${WEB[@]}"; do
		awk -v u="$base" '{ printf "url = \"%s/v1/users/%s\"\noutput = \"/dev/null\"\n", u, $0 }' "$WORK/workset.txt" >"$WORK/warm.curl"
		codes=$(curl -s -K "$WORK/warm.curl" -w '%{http_code}\n' | sort | uniq -c | awk '{ printf "%s×%s ", $1, $2 }')
		[[ $codes == "$WORKING_SET×200 " ]] || die "cache warm-up on $base got $codes(want $WORKING_SET×200)"
	done
}

wrk_run() {
	local name=$1 dur=$2 mode=$3 file=$4 line
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency -s "$LUA" "$FRONT" -- "$mode" "$file" >"$WORK/$name.wrk" 2>&1 ||
		{ cat "$WORK/$name.wrk" >&2; die "$name: wrk failed"; }
	line=$(grep '^BENCH ' "$WORK/$name.wrk") || { cat "$WORK/$name.wrk" >&2; die "$name: no BENCH line"; }
	read -r R50 R99 RR RERR < <(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		print v["p50_ms"], v["p99_ms"], v["rps"], v["non2xx3xx"] + v["socket_errors"] + v["timeouts"] }' <<<"$line")
}

measure() {
	local name=$1 scen=$2 line
	case $scen in
	upload)
		"$WORK/upload" -url "$FRONT" -image "$ROOT/testdata/images/formats/jpeg_gray_hopper.jpg" \
			-d "$DURATION" -c "$UPLOAD_CONNECTIONS" -rate 0.8 -wait 1m >"$WORK/$name.upload" 2>&1 || true
		line=$(grep '^RESULT ' "$WORK/$name.upload") || { cat "$WORK/$name.upload" >&2; die "$name: no RESULT line"; }
		read -r RR R50 R99 RERR < <(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			print v["max_per_s"], v["p50_ms"], v["p99_ms"], v["not_ready"] }' <<<"$line")
		;;
	*)
		local mode=read file=$WORK/ids.txt
		[[ $scen != cached ]] || file=$WORK/workset.txt
		[[ $scen != update ]] || mode=patch file=$WORK/tokens.txt
		wrk_run "$name.warmup" "$WARMUP" "$mode" "$file"
		wrk_run "$name" "$DURATION" "$mode" "$file"
		;;
	esac
	RPS[$name]=$RR P50[$name]=$R50 P99[$name]=$R99 ERRS[$name]=$RERR
	if [[ $RERR != 0 ]]; then
		FAILED=1
		say "ERROR: $name: $RERR failed requests (uploads: not ready)"
	fi
	say "$name: $(printf '%.0f' "$RR")/s, p50 $R50 ms, p99 $R99 ms"
}

run() {
	local scen=$1 topo=$2 name=$1:$2@$3
	case $scen in
	cached) start "$topo" ;;
	uncached) start "$topo" ONEBOX_CACHE_URL=none ;;
	update) start "$topo" ;;
	upload) start "$topo" ONEBOX_RATE_UPLOAD=100000000/1s ONEBOX_UPLOAD_BACKLOG=0 ONEBOX_ACCESS_LOG=false ;;
	*) die "unknown scenario $scen (want cached, uncached, update, upload)" ;;
	esac
	[[ $scen != cached ]] || warm
	measure "$name" "$scen"
	stop_topology
}

command -v wrk >/dev/null || die "needs wrk (apt-get install wrk)"
command -v psql >/dev/null || die "needs psql"
[[ -x $NGINX ]] || die "needs nginx (apt-get install nginx), or NGINX=path"

say "building into $WORK"
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
(
	cd "$ROOT"
	CGO_ENABLED=0 go build -o "$WORK/onebox" .
	go build -o "$WORK/seed" ./bench/seed
	go build -o "$WORK/upload" ./bench/upload
) || die "go build failed"

if [[ $MEDIA == s3 && -z $S3_URL ]]; then
	command -v moto_server >/dev/null || die "MEDIA=s3 needs S3_URL or moto_server (or MEDIA=local)"
	port=$(free_port)
	moto_server -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
	MOTO_PID=$!
	S3_URL=http://127.0.0.1:$port
	wait_url "$S3_URL/moto-api/" moto
fi
SHARED=(
	ONEBOX_DATABASE_URL="$DATABASE_URL&search_path=$SCHEMA%2Cpublic"
	ONEBOX_QUEUE_URL="$NATS_URL?stream=BENCH_NGINX_$RUN&prefix=benchnginx$RUN"
	ONEBOX_NOTIFY_URL="$NATS_URL?subject=onebox.bench.nginx.$RUN"
	ONEBOX_LIMITER_URL="$REDIS_URL"
	ONEBOX_CACHE_URL=memory://
	ONEBOX_TRUSTED_PROXIES=127.0.0.1/32
	ONEBOX_LOG_LEVEL=info
	ONEBOX_RATE_API=100000000/1s
)
[[ $DATABASE_URL == *\?* ]] || SHARED[0]="ONEBOX_DATABASE_URL=$DATABASE_URL?search_path=$SCHEMA%2Cpublic"
case $MEDIA in
s3)
	bucket=onebox-bench-$RUN
	curl -fs -X PUT -o /dev/null "$S3_URL/$bucket" || die "cannot create bucket $bucket on $S3_URL"
	export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-onebox} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-onebox-secret} AWS_REGION=${AWS_REGION:-us-east-1}
	SHARED+=(ONEBOX_MEDIA_URL="s3://$bucket/media?region=us-east-1&endpoint=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$S3_URL")")
	;;
local) SHARED+=(ONEBOX_MEDIA_URL="file:$WORK/media") ;;
*) die "MEDIA=$MEDIA (want s3 or local)" ;;
esac

psql -qX "$DATABASE_URL" -c "create schema $SCHEMA" >/dev/null || die "cannot create schema $SCHEMA"
seeddb=${SHARED[0]#ONEBOX_DATABASE_URL=}
# onebox migrates the schema at start; then the seed fills it.
start one
stop_topology
say "seeding $USERS users and $SESSIONS sessions"
"$WORK/seed" -db "$seeddb" -users "$USERS" -sessions "$SESSIONS" -ids "$WORK/ids.txt" -tokens "$WORK/tokens.txt" >&2
((WORKING_SET <= USERS)) || WORKING_SET=$USERS
shuf -n "$WORKING_SET" "$WORK/ids.txt" >"$WORK/workset.txt"

IFS=, read -r -a SCEN <<<"$SCENARIOS"
read -r -a TOPO <<<"$TOPOLOGIES"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
	for s in "${SCEN[@]}"; do
		for t in "${TOPO[@]}"; do
			run "$s" "$t" "$r"
		done
	done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "onebox $REV | $(nproc) cores | wrk -t$THREADS -c$CONNECTIONS -d$DURATION | media $MEDIA | $ROUNDS round(s)"
echo "load average before the runs: $LOAD_BEFORE; every process (wrk, nginx, the instances, PostgreSQL, NATS, Redis, moto) shares these cores"
echo "ratio: a topology's run over the ${TOPO[0]} run of the same round (median over the rounds); upload: accepted/s, p50/p99 202→ready"
printf '%-10s %-10s %12s %9s %9s %-18s %s\n' scenario topology "req/s" "p50 ms" "p99 ms" "ratio (rounds)" errors
for s in "${SCEN[@]}"; do
	for t in "${TOPO[@]}"; do
		rounds=$(for r in $(seq "$ROUNDS"); do awk -v x="${RPS[$s:$t@$r]}" -v b="${RPS[$s:${TOPO[0]}@$r]}" 'BEGIN { printf "%.2f\n", x / b }'; done)
		rps=$(for r in $(seq "$ROUNDS"); do echo "${RPS[$s:$t@$r]}"; done | median)
		p50=$(for r in $(seq "$ROUNDS"); do echo "${P50[$s:$t@$r]}"; done | median)
		p99=$(for r in $(seq "$ROUNDS"); do echo "${P99[$s:$t@$r]}"; done | median)
		errs=$(for r in $(seq "$ROUNDS"); do echo "${ERRS[$s:$t@$r]}"; done | awk '{ s += $1 } END { print s }')
		printf '%-10s %-10s %12.0f %9s %9s %-18s %s\n' "$s" "$t" "$rps" "$p50" "$p99" "$(median <<<"$rounds") ($(echo $rounds))" "$errs"
	done
done
((FAILED == 0)) || die "some requests failed (above)"
