#!/usr/bin/env bash
# Builds the example worker's static binary on the host and its FROM-scratch image.
#
#   examples/docker-build-worker.sh [IMAGE]   # default: ${HEARTBEAT_WORKER_IMAGE:-heartbeat-worker:local}
#
# Modelled on scripts/docker-build.sh: nothing is pulled (FROM scratch, binary compiled
# here with CGO_ENABLED=0), and the build context is a throwaway directory holding just the
# binary and an empty /ledger and /tmp. The node image comes from scripts/docker-build.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/local/go/bin"
image=${1:-${HEARTBEAT_WORKER_IMAGE:-heartbeat-worker:local}}
goarch=${GOARCH:-$(go env GOARCH)}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -1)" ]; then
	commit="${commit}-dirty"
fi

echo "building static worker binary (linux/${goarch}, commit ${commit})" >&2
(
	cd "$root"
	CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" \
		go build -trimpath -ldflags "-s -w" -o "$ctx/worker" ./examples/worker
)
mkdir -p "$ctx/rootfs/ledger" "$ctx/rootfs/tmp"
chmod 0755 "$ctx/rootfs/ledger"
chmod 1777 "$ctx/rootfs/tmp"

echo "building image ${image}" >&2
if ! out=$(docker build --quiet \
	--label "org.opencontainers.image.revision=${commit}" \
	--label "org.opencontainers.image.source=github.com/heartbeat-sidecar/heartbeat" \
	-t "$image" -f "$root/examples/Dockerfile.worker" "$ctx" 2>&1); then
	echo "$out" >&2
	exit 1
fi
echo "$image"
