#!/usr/bin/env bash
# Runs Compose with whichever tool this machine has: the `docker compose`
# plugin if installed, else the standalone `docker-compose` (Debian's v1).
#
#   scripts/compose.sh up -d
#   scripts/compose.sh -f docker-compose.yml -f docker-compose.3.yml up -d
#   HEARTBEAT_INSECURE=true scripts/compose.sh up -d     # plaintext, no certificates
#
# Mutual TLS (the default): before up, create, start, restart or run, the
# certificates docker-compose.yml mounts at /tls are made in
# ${HEARTBEAT_TLS_DIR:-data/compose-tls} with `bin/heartbeat tls init` (built
# first, as scripts/local-cluster.sh does) for the cluster id
# ${HEARTBEAT_CLUSTER_ID:-heartbeat-compose} and nodes n1..n5, plus the admin
# client certificate client.pem / client-key.pem for the host's CLI and curl
# and the example workers' worker.pem / worker-key.pem (role write).
# A directory that has them is reused (tls init keeps what is there, checked
# against the cluster id). The image runs as uid 65532 (the Dockerfile's
# USER), so the containers' files (ca.pem, nI.pem, nI-key.pem, worker.pem,
# worker-key.pem; keys 0600) are handed to 65532 and the directory made 0711;
# that needs root (or passwordless sudo). The CA key and the client key stay
# yours, unreadable in the containers.
#
# HEARTBEAT_INSECURE=true: no certificates; without -f arguments the script
# adds docker-compose.insecure.yml (clears the certificate paths, sets
# HEARTBEAT_INSECURE). With your own -f list, add that file yourself.
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

# compose_tls_uid is the user the node image runs as (Dockerfile USER).
compose_tls_uid=65532

# compose_tls makes (or reuses) the compose cluster's certificates; run from
# the repository root.
compose_tls() {
	local dir=${HEARTBEAT_TLS_DIR:-data/compose-tls}
	local cluster=${HEARTBEAT_CLUSTER_ID:-heartbeat-compose}
	# (built like scripts/local-cluster.sh does: an older binary may lack tls init)
	if command -v go >/dev/null; then
		go build -o bin/heartbeat ./cmd/node
	elif [ ! -x bin/heartbeat ]; then
		echo "compose.sh: no Go toolchain to build bin/heartbeat (needed for tls init)" >&2
		return 1
	fi
	# Reuses the CA and the certificates already there (and checks they are
	# of this cluster); writes only what is missing.
	bin/heartbeat tls init --out "$dir" --cluster-id "$cluster" --nodes n1,n2,n3,n4,n5 --clients client:admin,worker:write >&2
	# The node files go to the image's user: a 0600 key owned by root (or by
	# you) is unreadable in the container. Skipped when already done.
	local sudo=
	if [ "$(id -u)" != 0 ]; then
		if sudo -n true 2>/dev/null; then
			sudo="sudo -n"
		else
			if [ "$(stat -c %u "$dir/n1-key.pem")" != "$compose_tls_uid" ]; then
				echo "compose.sh: $dir: the node keys must belong to uid $compose_tls_uid (the image's user);" >&2
				echo "  run once as root: chown $compose_tls_uid:$compose_tls_uid $dir/ca.pem $dir/n?.pem $dir/n?-key.pem $dir/worker*.pem && chmod 0711 $dir" >&2
				return 1
			fi
			return 0
		fi
	fi
	$sudo chmod 0711 "$dir"
	$sudo chown "$compose_tls_uid:$compose_tls_uid" "$dir/ca.pem" "$dir"/n[1-5].pem "$dir"/n[1-5]-key.pem \
		"$dir/worker.pem" "$dir/worker-key.pem"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/.."
	files=0 starts=0
	for a in "$@"; do
		case "$a" in
		-f | --file | -f* | --file=*) files=1 ;;
		up | create | start | restart | run) starts=1 ;;
		esac
	done
	if [ "${HEARTBEAT_INSECURE:-false}" = true ]; then
		if [ "$files" = 0 ]; then
			set -- -f docker-compose.yml -f docker-compose.insecure.yml "$@"
		fi
	elif [ "$starts" = 1 ]; then
		compose_tls
	fi
	compose "$@"
fi
