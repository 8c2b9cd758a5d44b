#!/usr/bin/env bash
# Makes sure the tools the deploy tests and the multi-region demo need are
# installed: promtool (Debian package prometheus), amtool
# (prometheus-alertmanager), chromium (the /status page test), haproxy (the
# demo's load balancer). Idempotent: installs only what is missing, with
# apt-get when running as root on Debian; otherwise it says what to install
# and fails. Tests that need these tools fail, never skip, without them.
set -euo pipefail

# command -> Debian package
declare -A want=(
	[promtool]=prometheus
	[amtool]=prometheus-alertmanager
	[chromium]=chromium
	[haproxy]=haproxy
	[systemd-analyze]=systemd
)

missing=()
for cmd in "${!want[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
		missing+=("${want[$cmd]}")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "ensure-tools: installing ${missing[*]} with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	# --no-install-recommends: prometheus would otherwise pull in node exporters.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	# The prometheus and alertmanager packages start services; the tests
	# only need the command-line tools.
	for svc in prometheus prometheus-alertmanager; do
		if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
		fi
	done
	exit 0
fi
echo "ensure-tools: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
exit 1
