#!/usr/bin/env bash
# Builds the static heartbeat binary on the host and the FROM-scratch image.
#
#   scripts/docker-build.sh [IMAGE]      # default image: ${HEARTBEAT_IMAGE:-heartbeat:local}
#
# Another program of this module is built the same way with BUILD_PKG (the Go
# package, default ./cmd/node), BUILD_BIN (the binary's name in the image, default
# heartbeat), BUILD_DOCKERFILE (default Dockerfile) and BUILD_DIR (the writable
# directory the image gets beside /tmp, default data); examples/docker-build-worker.sh
# does so for the example worker.
#
# Nothing is pulled: the image is FROM scratch and the binary is compiled here
# with CGO_ENABLED=0. The build context is a throwaway directory holding just the
# binary and an empty /data, so the daemon never receives the repository.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${1:-${HEARTBEAT_IMAGE:-heartbeat:local}}
pkg=${BUILD_PKG:-./cmd/node}
bin=${BUILD_BIN:-heartbeat}
dockerfile=${BUILD_DOCKERFILE:-Dockerfile}
dir=${BUILD_DIR:-data}
goarch=${GOARCH:-$(go env GOARCH)}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -1)" ]; then
	commit="${commit}-dirty"
fi

echo "building static binary ${bin} from ${pkg} (linux/${goarch}, commit ${commit})" >&2
(
	cd "$root"
	CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" \
		go build -trimpath -ldflags "-s -w" -o "$ctx/$bin" "$pkg"
)
mkdir -p "$ctx/rootfs/$dir" "$ctx/rootfs/tmp"
chmod 0750 "$ctx/rootfs/$dir"
chmod 1777 "$ctx/rootfs/tmp"

echo "building image ${image}" >&2
# (the legacy builder's deprecation notice is noise here: print output only on failure)
if ! out=$(docker build --quiet \
	--label "org.opencontainers.image.revision=${commit}" \
	--label "org.opencontainers.image.source=github.com/heartbeat-sidecar/heartbeat" \
	-t "$image" -f "$root/$dockerfile" "$ctx" 2>&1); then
	echo "$out" >&2
	exit 1
fi
echo "$image"
