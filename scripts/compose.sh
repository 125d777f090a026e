#!/usr/bin/env bash
# Runs Compose with whichever tool this machine has: the `docker compose`
# plugin if installed, else the standalone `docker-compose` (Debian's v1).
#
#   scripts/compose.sh up -d
#   scripts/compose.sh -f docker-compose.yml -f docker-compose.3.yml up -d
#
# Source it to get the function instead:  . scripts/compose.sh; compose ps
compose() {
	if docker compose version >/dev/null 2>&1; then
		docker compose "$@"
	elif command -v docker-compose >/dev/null 2>&1; then
		docker-compose "$@"
	else
		echo "compose.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
		return 127
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/.."
	compose "$@"
fi
