#!/bin/sh
# deploy.sh NEW_BINARY: install NEW_BINARY as onebox and hand the running
# service over to it without dropping a request (see README, Deploy).
#
# It copies NEW_BINARY beside the installed one and renames it over it
# (the running process keeps its old file), sends the running process
# SIGHUP (what `systemctl reload onebox` sends: ExecReload in
# onebox.service), and waits for the pid file to name a new process,
# which onebox writes only once the new process is ready, then for the
# old process to finish draining and exit. If no new process is ready
# within DEPLOY_TIMEOUT seconds, the old process is still serving (it
# kills a replacement that is not ready after a minute): the script
# puts the previous binary back, so a restart runs it too, and fails.
#
# Settings (environment): ONEBOX_BIN (the installed binary,
# /usr/local/bin/onebox), ONEBOX_PID_FILE (/run/onebox/onebox.pid, as in
# onebox.service), DEPLOY_TIMEOUT (seconds, 90: more than the minute a
# new process has to become ready), DEPLOY_DRAIN_TIMEOUT (seconds, 60:
# more than ONEBOX_SHUTDOWN_DELAY + ONEBOX_DRAIN_TIMEOUT).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: deploy.sh NEW_BINARY" >&2
	exit 2
fi
new=$1
bin=${ONEBOX_BIN:-/usr/local/bin/onebox}
pidfile=${ONEBOX_PID_FILE:-/run/onebox/onebox.pid}
timeout=${DEPLOY_TIMEOUT:-90}
drain=${DEPLOY_DRAIN_TIMEOUT:-60}

# zombie PID: it has exited, and whoever adopted it has not reaped it yet.
zombie() {
	[ "$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

fail() {
	echo "deploy: $*" >&2
	exit 1
}

old=$(cat "$pidfile") || fail "no pid file $pidfile: is onebox running?"
kill -0 "$old" 2>/dev/null || fail "pid $old (from $pidfile) is not running"

cp "$new" "$bin.new"
chmod 0755 "$bin.new"
cp -p "$bin" "$bin.prev"
mv -f "$bin.new" "$bin"
echo "deploy: installed $new as $bin (previous kept as $bin.prev); asking pid $old to hand over"
kill -HUP "$old"

# Timing by counting ticks of 0.1 s, not date(1): no clock involved.
ticks=$((timeout * 10))
pid=$old
while [ "$pid" = "$old" ]; do
	if [ "$ticks" -le 0 ]; then
		mv -f "$bin.prev" "$bin"
		fail "no new process became ready within ${timeout}s; pid $old serves on, $bin is the previous binary again (its log says why the new one failed)"
	fi
	kill -0 "$old" 2>/dev/null && ! zombie "$old" || fail "pid $old exited without a ready replacement: onebox is down"
	sleep 0.1
	ticks=$((ticks - 1))
	pid=$(cat "$pidfile" 2>/dev/null || echo "$old")
done
echo "deploy: pid $pid is ready; pid $old drains"
# The old process drains (in-flight requests, running jobs) and exits;
# until then the new one refuses a further hand-over.
ticks=$((drain * 10))
while kill -0 "$old" 2>/dev/null && ! zombie "$old"; do
	[ "$ticks" -gt 0 ] || fail "pid $old still draining after ${drain}s (pid $pid serves)"
	sleep 0.1
	ticks=$((ticks - 1))
done
echo "deploy: done, pid $pid serves"
