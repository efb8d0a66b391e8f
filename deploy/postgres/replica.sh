#!/usr/bin/env bash
# A real streaming replica of a running PostgreSQL, and a base-backup
# restore drill of it, for onebox's tests and .ci/run.
#
#   replica.sh start   makes (or reuses) a hot standby with pg_basebackup -R
#                      on a free port, waits until it streams, and prints
#                      ONEBOX_TEST_POSTGRES_REPLICA_URL=... on stdout
#   replica.sh stop    stops it and removes its directory
#   replica.sh drill   writes rows on the primary, restores a base backup of
#                      it as a standalone cluster, checks every committed row
#                      is there, reports the time and tears it down
#
# Environment (all optional):
#   ONEBOX_PRIMARY_HOST, ONEBOX_PRIMARY_PORT  the primary (127.0.0.1:5432)
#   ONEBOX_REPLICA_PORT  the replica's port (default: a free one)
#   ONEBOX_PG_DIR        where clusters live (/var/tmp/onebox-pg); the
#                        replica is $ONEBOX_PG_DIR/replica, the drill's
#                        cluster $ONEBOX_PG_DIR/drill
#   ONEBOX_DRILL_ROWS    rows the drill writes (10000)
#
# Needs root (or the postgres user): pg_basebackup and pg_ctl run as
# postgres, and start adds `host replication all 127.0.0.1/32 trust` to the
# primary's pg_hba.conf (once) and reloads it; the primary is never stopped.
# The replica streams through a physical replication slot of its own
# (onebox_replica_<port>): without one, a checkpoint on a busy primary (the
# drill's base backup forces one) can recycle WAL a replica has not yet
# received, and it never catches up. stop drops the slot, and start drops
# every inactive onebox_replica_* slot, so a crash does not leave one
# holding WAL on the primary for good. Starts take turns (flock on
# /var/tmp/onebox-replica-start.lock, held until the replica streams):
# between its pg_basebackup and its first connection a new replica's slot
# is inactive too, and another start would drop it.
# Every command is safe to rerun after a crash: a stale cluster in the
# directory is stopped and removed first.
set -euo pipefail

primary_host=${ONEBOX_PRIMARY_HOST:-127.0.0.1}
primary_port=${ONEBOX_PRIMARY_PORT:-5432}
root=${ONEBOX_PG_DIR:-/var/tmp/onebox-pg}
replica_dir=$root/replica
drill_dir=$root/drill

log() { echo "replica.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# as_pg runs a command as the postgres user, which owns every data directory.
as_pg() {
	if [ "$(id -un)" = postgres ]; then
		"$@"
	else
		runuser -u postgres -- "$@"
	fi
}

# sql runs one statement on the cluster at port (database postgres),
# unaligned: the primary's port means the primary, any other one of the
# clusters this script runs on 127.0.0.1.
sql() {
	local host=127.0.0.1
	[ "$1" != "$primary_port" ] || host=$primary_host
	psql -X -Atq -v ON_ERROR_STOP=1 -h "$host" -p "$1" -U postgres -d postgres -c "$2"
}

# own_root makes the directory the clusters live in, owned by postgres.
own_root() {
	mkdir -p "$root"
	[ "$(id -u)" != 0 ] || chown postgres: "$root"
}

# pgbin is the bin directory of the primary's major version: the replica's
# server must be the same major version as the primary's.
pgbin() {
	local major
	major=$(sql "$primary_port" "select current_setting('server_version_num')::int / 10000") ||
		die "primary $primary_host:$primary_port does not answer"
	[ -x "/usr/lib/postgresql/$major/bin/pg_ctl" ] || die "no PostgreSQL $major binaries in /usr/lib/postgresql/$major/bin"
	echo "/usr/lib/postgresql/$major/bin"
}

# free_port prints a port nothing listens on (or $ONEBOX_REPLICA_PORT).
free_port() {
	if [ -n "${ONEBOX_REPLICA_PORT:-}" ]; then
		echo "$ONEBOX_REPLICA_PORT"
		return
	fi
	local p
	for p in $(seq 15433 15533); do
		if [ -z "$(ss -Htln "sport = :$p")" ] && [ ! -e "/tmp/.s.PGSQL.$p" ]; then
			echo "$p"
			return
		fi
	done
	die "no free port in 15433-15533"
}

# discard stops a cluster left in dir (by an earlier run, or a crash) and
# removes the directory.
discard() {
	local bin=$1 dir=$2
	[ -e "$dir" ] || return 0
	if [ -f "$dir/postmaster.pid" ]; then
		as_pg "$bin/pg_ctl" stop -D "$dir" -m immediate -w >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
}

# ensure_hba adds the replication line to the primary's pg_hba.conf once and
# reloads, then waits until a replication connection is let in.
ensure_hba() {
	local hba line='host replication all 127.0.0.1/32 trust'
	hba=$(sql "$primary_port" "show hba_file")
	if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
		log "adding '$line' to $hba"
		printf '# onebox: replication from this host (deploy/postgres/replica.sh)\n%s\n' "$line" >>"$hba"
	fi
	sql "$primary_port" "select pg_reload_conf()" >/dev/null
	local i
	for i in $(seq 1 100); do
		if psql -X -Atq "host=$primary_host port=$primary_port user=postgres replication=true dbname=postgres" \
			-c IDENTIFY_SYSTEM >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	die "the primary still refuses replication connections after the reload of $hba"
}

# configure writes the new cluster's own postgresql.conf and pg_hba.conf:
# on Debian the primary's live in /etc, outside the data directory that
# pg_basebackup copies. A standby needs max_connections (and the other
# max_* settings) at least the primary's, so they are copied from it.
configure() {
	local dir=$1 port=$2 name=$3 s settings=""
	for s in max_connections max_worker_processes max_wal_senders max_prepared_transactions max_locks_per_transaction; do
		settings+="$s = $(sql "$primary_port" "show $s")"$'\n'
	done
	as_pg tee "$dir/postgresql.conf" >/dev/null <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
cluster_name = '$name'
hot_standby = on
hot_standby_feedback = on
shared_buffers = 16MB
fsync = off
$settings
EOF
	as_pg tee "$dir/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
}

# wait_for polls a command until it succeeds, for up to 60 seconds.
wait_for() {
	local what=$1 i
	shift
	for i in $(seq 1 600); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	die "timed out waiting for $what"
}

is_true() { [ "$(sql "$1" "$2")" = t ]; }

streaming() {
	is_true "$1" "select pg_is_in_recovery()" &&
		is_true "$primary_port" "select exists (select from pg_stat_replication where application_name = '$2' and state = 'streaming')"
}

# drop_slots drops the inactive replication slots named like $1 (a LIKE
# pattern) on the primary.
drop_slots() {
	sql "$primary_port" "select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots
		where slot_name like '$1' and not active" >/dev/null
}

replica_url() { echo "ONEBOX_TEST_POSTGRES_REPLICA_URL=postgres://postgres@127.0.0.1:$1/test?sslmode=disable"; }

# start_lock waits for the other starts (see the top).
start_lock() {
	local lock=/var/tmp/onebox-replica-start.lock
	# Read-only, so a lock file another user made serves as well.
	[ -e "$lock" ] || (umask 0 && : >>"$lock")
	exec 9<"$lock"
	flock -w 600 9 || die "another replica.sh start held $lock for 10 minutes"
}

cmd_start() {
	local bin port name
	bin=$(pgbin)
	start_lock
	# A replica already running and streaming is reused.
	if [ -f "$replica_dir/port" ]; then
		port=$(cat "$replica_dir/port")
		if streaming "$port" "onebox_replica_$port" 2>/dev/null; then
			log "replica on port $port already streams"
			replica_url "$port"
			return
		fi
	fi
	discard "$bin" "$replica_dir"
	drop_slots 'onebox\_replica\_%'
	ensure_hba
	port=$(free_port)
	name=onebox_replica_$port
	own_root
	local t0=$SECONDS
	as_pg "$bin/pg_basebackup" -h "$primary_host" -p "$primary_port" -U postgres \
		-D "$replica_dir" -R -X stream -c fast -C -S "$name"
	configure "$replica_dir" "$port" "$name"
	as_pg tee "$replica_dir/port" >/dev/null <<<"$port"
	# 9<&-: the server must not inherit the lock and hold it while it runs.
	as_pg "$bin/pg_ctl" start -D "$replica_dir" -l "$replica_dir/log" -w -t 60 >/dev/null 9<&- ||
		die "replica did not start: $(tail -n 20 "$replica_dir/log")"
	wait_for "the replica on port $port to stream from $primary_host:$primary_port" streaming "$port" "$name"
	log "replica on port $port streams ($((SECONDS - t0))s)"
	replica_url "$port"
}

cmd_stop() {
	local bin port=""
	bin=$(pgbin)
	[ ! -f "$replica_dir/port" ] || port=$(cat "$replica_dir/port")
	discard "$bin" "$replica_dir"
	[ -z "$port" ] || drop_slots "onebox_replica_$port"
	log "replica stopped and removed"
}

cmd_drill() {
	local rows=${ONEBOX_DRILL_ROWS:-10000} port want got
	# Not local: the EXIT trap reads them after the function returns.
	drill_bin=$(pgbin)
	drill_table=onebox_drill_$(date +%s)_$$
	discard "$drill_bin" "$drill_dir"
	ensure_hba
	own_root
	# The table is dropped and the cluster removed however the drill ends.
	trap 'discard "$drill_bin" "$drill_dir"; sql "$primary_port" "drop table if exists $drill_table" >/dev/null 2>&1 || true' EXIT

	local sum="select count(*) || ' ' || coalesce(md5(string_agg(id || ':' || v, ',' order by id)), '') from $drill_table"
	sql "$primary_port" "create table $drill_table (id bigint primary key, v text not null)"
	sql "$primary_port" "insert into $drill_table select i, md5(i::text) from generate_series(1, $rows) i"
	want=$(sql "$primary_port" "$sum")

	local t0 t1 t2
	t0=$(date +%s.%N)
	as_pg "$drill_bin/pg_basebackup" -h "$primary_host" -p "$primary_port" -U postgres \
		-D "$drill_dir" -X stream -c fast
	t1=$(date +%s.%N)
	# No standby.signal: the copy replays the WAL streamed with it up to the
	# end of the backup, then runs as a primary of its own.
	port=$(free_port)
	configure "$drill_dir" "$port" "onebox_drill_$port"
	as_pg "$drill_bin/pg_ctl" start -D "$drill_dir" -l "$drill_dir/log" -w -t 60 >/dev/null ||
		die "restored cluster did not start: $(tail -n 20 "$drill_dir/log")"
	[ "$(sql "$port" "select pg_is_in_recovery()")" = f ] || die "restored cluster is still in recovery"
	got=$(sql "$port" "$sum")
	t2=$(date +%s.%N)
	if [ "$got" != "$want" ]; then
		die "drill FAILED: the primary has '$want' (rows, md5), the restored cluster '$got'"
	fi
	printf 'drill ok: %d committed rows restored (md5 %s); base backup %.1fs, restore and check %.1fs\n' \
		"$rows" "${want#* }" "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $t2 - $t1}")"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
drill) cmd_drill ;;
*)
	echo "usage: $0 start|stop|drill" >&2
	exit 2
	;;
esac
