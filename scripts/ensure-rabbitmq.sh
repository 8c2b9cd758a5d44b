#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers for the tests, and that
# rabbitmq-server is installed for the tests that start private nodes.
#
#  - uses the broker at CLICKEDGE_TEST_AMQP_URL (default
#    amqp://guest:guest@127.0.0.1:5672/) when it answers;
#  - otherwise starts an installed rabbitmq-server;
#  - installs rabbitmq-server with apt-get when it is missing and we run as
#    root on Debian.
# It fails loudly when none of that works: tests never skip the broker.
set -euo pipefail

url=${CLICKEDGE_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
hostport=${url#*://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
host=${hostport%%:*}
port=${hostport##*:}
[ "$port" = "$hostport" ] && port=5672

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }

install_server() {
	if command -v rabbitmq-server >/dev/null 2>&1; then
		return 0
	fi
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "ensure-rabbitmq: installing rabbitmq-server with apt-get" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >&2
		apt-get install -y -qq rabbitmq-server >&2
		return 0
	fi
	echo "ensure-rabbitmq: rabbitmq-server is not installed and this is not root on Debian;" >&2
	echo "  install it (apt-get install rabbitmq-server) or point CLICKEDGE_TEST_AMQP_URL at a broker" >&2
	return 1
}

# Private-node tests need the server binary even when a broker answers.
install_server

if answers; then
	echo "ensure-rabbitmq: broker answers at $host:$port" >&2
	exit 0
fi
case $host in
127.0.0.1 | localhost) ;;
*)
	echo "ensure-rabbitmq: no broker answers at $host:$port, and it is not local: cannot start one" >&2
	exit 1
	;;
esac

echo "ensure-rabbitmq: starting rabbitmq-server" >&2
if [ "$(id -u)" = 0 ]; then
	rabbitmq-server -detached >&2 || true
else
	rabbitmq-server -detached >&2
fi
for _ in $(seq 1 120); do
	if answers; then
		# The port opens before the broker takes connections.
		rabbitmqctl await_startup >/dev/null 2>&1 || sleep 2
		echo "ensure-rabbitmq: broker started at $host:$port" >&2
		exit 0
	fi
	sleep 0.5
done
echo "ensure-rabbitmq: rabbitmq-server did not answer at $host:$port within 60s" >&2
tail -n 30 /var/log/rabbitmq/*.log 2>/dev/null >&2 || true
exit 1
