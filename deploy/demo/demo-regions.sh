#!/usr/bin/env bash
# make demo-regions: a private RabbitMQ node, three regions of two clickedge
# nodes, a registration node and HAProxy mapping client source addresses to
# regions, all on loopback. Returns once every node is ready and prints the
# load balancer's URL. make demo-stop stops everything this started (pid
# files under $DEMO_DIR) and nothing else.
#
#   client source 127.0.1.x -> eu-central   (curl --interface 127.0.1.5 ...)
#   client source 127.0.2.x -> us-east
#   client source 127.0.3.x -> ap-south
#   anything else           -> eu-central
#   /postback               -> the registration node
#
# Each region's nodes form a gossip pool on loopback (cluster.bind on the
# node's address, port 7946; loopback gossip needs no keyring): the
# registration node joins eu-central's. The registration node (node.roles
# [postback]) knows one advertiser, "demo", whose signing secret is
# generated at start; the script prints a ready `clickedge postback sign`
# command for it (on stderr: stdout is the URL).
#
# Usage: demo-regions.sh [up|status]   (default up)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
demo=${DEMO_DIR:-/tmp/clickedge-demo}
bin=${DEMO_BIN:-$repo/bin/clickedge}
amqp_port=${DEMO_AMQP_PORT:-5699}
dist_port=$((amqp_port + 20000))
lb=${DEMO_LB:-127.0.0.1:18800}
http_port=18801
admin_port=18901
token=demo-admin-token
gossip_port=7946
rabbit_name=${DEMO_RABBIT_NAME:-clickedge-demo}@localhost

# id region address
nodes=(
	"eu-central-1 eu-central 127.0.10.1"
	"eu-central-2 eu-central 127.0.10.2"
	"us-east-1 us-east 127.0.20.1"
	"us-east-2 us-east 127.0.20.2"
	"ap-south-1 ap-south 127.0.30.1"
	"ap-south-2 ap-south 127.0.30.2"
	"registration-1 eu-central 127.0.40.1"
)

log() { echo "demo: $*" >&2; }

# as_rabbit runs a command as the rabbitmq user when we are root (the
# packaged Erlang and RabbitMQ files are set up for it), with an environment
# of our own: nothing of /etc/rabbitmq/rabbitmq-env.conf, which names the
# shared node, and our own Erlang cookie.
as_rabbit() {
	local env=(
		PATH="$PATH" HOME="$demo/rabbit/home" LANG=C.UTF-8 LC_ALL=C.UTF-8
		RABBITMQ_CONF_ENV_FILE="$demo/rabbit/no-env.conf"
		RABBITMQ_NODENAME="$rabbit_name"
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
		RABBITMQ_NODE_PORT="$amqp_port"
		RABBITMQ_DIST_PORT="$dist_port"
		RABBITMQ_MNESIA_BASE="$demo/rabbit/mnesia"
		RABBITMQ_LOG_BASE="$demo/rabbit/log"
		RABBITMQ_PID_FILE="$demo/rabbit/rabbit.pid"
		RABBITMQ_ENABLED_PLUGINS_FILE="$demo/rabbit/enabled_plugins"
		RABBITMQ_CONFIG_FILE="$demo/rabbit/rabbitmq.conf"
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
		ERL_EPMD_ADDRESS=127.0.0.1
	)
	if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
		runuser -u rabbitmq -- env -i "${env[@]}" "$@"
	else
		env -i "${env[@]}" "$@"
	fi
}

# rabbit_script NAME: the RabbitMQ script itself, not Debian's
# /usr/sbin wrapper (which su's to rabbitmq and drops our environment).
rabbit_script() {
	for d in /usr/lib/rabbitmq/bin /usr/lib/rabbitmq/sbin; do
		[ -x "$d/$1" ] && { echo "$d/$1"; return; }
	done
	command -v "$1"
}

port_free() { ! timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }

wait_http() { # url seconds
	local deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
		if [ $SECONDS -ge $deadline ]; then return 1; fi
		sleep 0.2
	done
}

status() {
	[ -d "$demo" ] || { log "not running"; exit 1; }
	echo "load balancer: http://$lb"
	for n in "${nodes[@]}"; do
		set -- $n
		printf '%-15s %-11s http://%s:%s admin http://%s:%s/status  ' "$1" "$2" "$3" "$http_port" "$3" "$admin_port"
		curl -fsS --max-time 1 "http://$3:$admin_port/readyz" 2>/dev/null || echo "not ready"
	done
	echo "central queue (all regions' clicks):"
	as_rabbit "$(rabbit_script rabbitmqctl)" -n "$rabbit_name" -q list_queues name messages
}

up() {
	if [ -e "$demo/pids" ]; then
		log "already running (state in $demo); make demo-stop first"
		exit 1
	fi
	[ -x "$bin" ] || { log "no binary at $bin: make build"; exit 1; }
	for c in rabbitmq-server haproxy curl; do
		command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || { log "$c is not installed (scripts/ensure-tools.sh, scripts/ensure-rabbitmq.sh)"; exit 1; }
	done
	for a in "127.0.0.1:$amqp_port" "127.0.0.1:$dist_port" "$lb"; do
		port_free "$a" || { log "$a is in use; set DEMO_AMQP_PORT / DEMO_LB"; exit 1; }
	done
	local start=$SECONDS
	# From here on, a failure stops whatever this run started.
	trap 'rc=$?; if [ $rc -ne 0 ]; then log "failed; stopping what this run started"; DEMO_DIR="$demo" "$repo/deploy/demo/demo-stop.sh"; fi' EXIT
	rm -rf "$demo"
	mkdir -p "$demo/pids" "$demo/rabbit/home" "$demo/rabbit/mnesia" "$demo/rabbit/log" "$demo/nodes"
	# The start time marks this demo's processes for demo-stop.
	date +%s >"$demo/started"

	# 1. The broker: a private node (own name, ports, cookie, data).
	head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$demo/rabbit/home/.erlang.cookie"
	chmod 400 "$demo/rabbit/home/.erlang.cookie"
	echo "[]." >"$demo/rabbit/enabled_plugins"
	printf 'listeners.tcp.1 = 127.0.0.1:%s\nlog.console = false\n' "$amqp_port" >"$demo/rabbit/rabbitmq.conf"
	if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
		chmod 755 "$demo" && chown -R rabbitmq: "$demo/rabbit"
	fi
	local server ctl
	server=$(rabbit_script rabbitmq-server)
	ctl=$(rabbit_script rabbitmqctl)
	log "starting RabbitMQ $rabbit_name on 127.0.0.1:$amqp_port"
	setsid bash -c "$(declare -f as_rabbit); $(declare -p demo rabbit_name amqp_port dist_port); as_rabbit '$server'" \
		>"$demo/rabbit/stdout.log" 2>&1 </dev/null &
	echo $! >"$demo/pids/rabbitmq-script.pid"
	# The AMQP listener opens before the boot ends; await_startup then
	# waits for the rest (durable queues, bindings).
	local deadline=$((SECONDS + 60))
	until ! port_free "127.0.0.1:$amqp_port"; do
		if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$demo/pids/rabbitmq-script.pid")" 2>/dev/null; then
			log "RabbitMQ did not start; see $demo/rabbit/log and stdout.log"
			exit 1
		fi
		sleep 0.2
	done
	if ! as_rabbit "$ctl" -n "$rabbit_name" -q await_startup --timeout 60 >/dev/null 2>&1; then
		log "RabbitMQ did not finish its boot; see $demo/rabbit/log"
		exit 1
	fi
	cp "$demo/rabbit/rabbit.pid" "$demo/pids/rabbitmq.pid"

	# 2. The nodes. The demo advertiser's secret is new each run.
	local adv_secret
	adv_secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf -- '- id: demo\n  secret: "%s"\n' "$adv_secret" >"$demo/nodes/advertisers.yaml"
	chmod 600 "$demo/nodes/advertisers.yaml"
	for n in "${nodes[@]}"; do
		set -- $n
		local id=$1 region=$2 ip=$3 cfg="$demo/nodes/$1.yaml" roles=edge extra=""
		# cluster.join: the region's edge nodes (but itself).
		local join=() m
		for m in "${nodes[@]}"; do
			set -- $m
			[[ $2 == "$region" && $1 != registration-* && $1 != "$id" ]] && join+=("\"$3:$gossip_port\"")
		done
		set -- $n
		if [[ $id == registration-* ]]; then
			roles=postback
			extra="postback: {advertisers: $demo/nodes/advertisers.yaml, declare_queue: demo-actions}"
		fi
		cat >"$cfg" <<-YAML
			node: {id: $id, region: $region, roles: [$roles]}
			cluster:
			  bind: "$ip:$gossip_port"
			  join: [$(IFS=,; echo "${join[*]}")]
			$extra
			http:
			  listen: "$ip:$http_port"
			  trusted_proxies: ["127.0.0.1"]   # HAProxy: X-Forwarded-For names the client
			admin: {listen: "$ip:$admin_port", token: $token}
			data_dir: $demo/nodes/$id
			forwarder:
			  amqp_urls: ["amqp://guest:guest@127.0.0.1:$amqp_port/"]
			  declare_queue: demo-clicks     # the "centre": every region's clicks
			  queue_type: classic
			catalog: {file: $repo/deploy/regions/links.yaml}
		YAML
		"$bin" serve -config "$cfg" -check >/dev/null
		setsid "$bin" serve -config "$cfg" >"$demo/nodes/$id.log" 2>&1 </dev/null &
		echo $! >"$demo/pids/$id.pid"
	done
	for n in "${nodes[@]}"; do
		set -- $n
		wait_http "http://$3:$admin_port/readyz" 30 || { log "$1 not ready; see $demo/nodes/$1.log"; exit 1; }
	done

	# 3. The geo load balancer.
	{
		cat <<-CFG
			global
			  pidfile $demo/pids/haproxy.pid
			defaults
			  mode http
			  timeout connect 2s
			  timeout client 30s
			  timeout server 30s
			  option forwardfor
			  default-server check port $admin_port inter 1s fall 2 rise 1 source 127.0.0.1
			frontend geo
			  bind $lb
			  # The client's source address chooses the region: a stand-in
			  # for GeoDNS or anycast in front of real regions.
			  acl from_eu src 127.0.1.0/24
			  acl from_us src 127.0.2.0/24
			  acl from_ap src 127.0.3.0/24
			  acl postback path_beg /postback
			  http-response set-header X-Clickedge-Backend %b
			  use_backend registration if postback
			  use_backend us-east if from_us
			  use_backend ap-south if from_ap
			  default_backend eu-central
		CFG
		for r in eu-central us-east ap-south registration; do
			printf 'backend %s\n  option httpchk GET /readyz\n' "$r"
			for n in "${nodes[@]}"; do
				set -- $n
				if [ "$r" = registration ] && [[ $1 == registration-* ]] || [[ $r != registration && $2 == "$r" && $1 != registration-* ]]; then
					printf '  server %s %s:%s\n' "$1" "$3" "$http_port"
				fi
			done
		done
	} >"$demo/haproxy.cfg"
	haproxy -c -q -f "$demo/haproxy.cfg"
	haproxy -D -f "$demo/haproxy.cfg"
	# Each region answers through the load balancer (HEAD records no click).
	for src in 127.0.1.5 127.0.2.5 127.0.3.5; do
		local deadline=$((SECONDS + 10))
		until curl -fsS -o /dev/null -I --max-time 1 --interface "$src" "http://$lb/r/demo" 2>/dev/null; do
			[ $SECONDS -lt $deadline ] || { log "load balancer does not answer for $src"; exit 1; }
			sleep 0.2
		done
	done
	log "up in $((SECONDS - start))s: 3 regions x 2 nodes, a registration node, RabbitMQ on 127.0.0.1:$amqp_port"
	log "a signed postback for advertiser demo (secret in $demo/nodes/advertisers.yaml); click_id from a click:"
	log "  curl \"\$($bin postback sign -config $demo/nodes/registration-1.yaml -adv demo -url http://$lb/postback click_id=CLICK_ID order_id=A-1 amount=12.50 currency=EUR)\""
	log "region pools: $bin cluster members -admin 127.0.10.1:$admin_port -token $token"
	echo "http://$lb"
}

case ${1:-up} in
up) up ;;
status) status ;;
*) echo "usage: $0 [up|status]" >&2; exit 2 ;;
esac
