#!/usr/bin/env bash
# make demo-stop: stops what demo-regions.sh started, by its pid files only
# (a pid is signalled only if that process is still the one the demo
# started: same executable, started after the demo), then removes the
# demo's directory.
set -uo pipefail

demo=${DEMO_DIR:-/tmp/clickedge-demo}
[ -d "$demo/pids" ] || { echo "demo: not running" >&2; exit 0; }
started=$(cat "$demo/started" 2>/dev/null || echo 0)
boot=$(awk '/^btime/ {print $2}' /proc/stat)
hz=$(getconf CLK_TCK)

# ours PID: the process exists and started no earlier than the demo.
ours() {
	local pid=$1 st
	[ -r "/proc/$pid/stat" ] || return 1
	st=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ $((boot + st / hz)) -ge $((started - 1)) ]
}

stop_pid() { # name pidfile
	local pid
	pid=$(cat "$2" 2>/dev/null) || return 0
	ours "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 150); do
		ours "$pid" || return 0
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
		sleep 0.1
	done
	echo "demo: $1 ($pid) ignored SIGTERM for 15s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null
}

# Load balancer first, then the nodes (SIGTERM drains each: its outbox is
# committed and the forwarder delivers what it can), the broker last.
stop_pid haproxy "$demo/pids/haproxy.pid"
for f in "$demo"/pids/*.pid; do
	case $(basename "$f") in haproxy.pid | rabbitmq.pid | rabbitmq-script.pid) continue ;; esac
	stop_pid "$(basename "$f" .pid)" "$f" &
done
wait
stop_pid rabbitmq "$demo/pids/rabbitmq.pid"
# The start script and anything left in its session (epmd, if this demo had
# to start it, is shared with other Erlang nodes and left running).
if pid=$(cat "$demo/pids/rabbitmq-script.pid" 2>/dev/null) && ours "$pid"; then
	kill -TERM -- "-$pid" 2>/dev/null
fi
rm -rf "$demo"
echo "demo: stopped" >&2
