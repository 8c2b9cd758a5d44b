#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries are installed for the tests, which
# start private clusters of their own (internal/pgtest): initdb into a temp
# directory, a free port on 127.0.0.1. The system's server on 5432, if any,
# is neither needed nor used. Idempotent; installs with apt-get when missing
# and we run as root on Debian. It fails loudly otherwise: tests never skip
# PostgreSQL.
set -euo pipefail

have() {
	if [ -n "${CLICKEDGE_TEST_PG_BIN:-}" ]; then
		[ -x "$CLICKEDGE_TEST_PG_BIN/initdb" ] && [ -x "$CLICKEDGE_TEST_PG_BIN/postgres" ]
		return
	fi
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1
}

if have; then
	echo "ensure-postgres: PostgreSQL binaries present" >&2
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "ensure-postgres: installing postgresql with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq postgresql >&2
	if have; then
		exit 0
	fi
fi
echo "ensure-postgres: PostgreSQL is not installed and this is not root on Debian;" >&2
echo "  install it (apt-get install postgresql) or set CLICKEDGE_TEST_PG_BIN to its bin directory" >&2
exit 1
