#!/usr/bin/env bash
# Builds the example worker's static binary on the host and its FROM-scratch image.
#
#   examples/docker-build-worker.sh [IMAGE]   # default: ${HEARTBEAT_WORKER_IMAGE:-heartbeat-worker:local}
#
# scripts/docker-build.sh does the work (nothing is pulled; the build context is a
# throwaway directory holding the binary, an empty /ledger and /tmp). The node image
# comes from scripts/docker-build.sh without arguments.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_PKG=./examples/worker BUILD_BIN=worker BUILD_DOCKERFILE=examples/Dockerfile.worker BUILD_DIR=ledger \
	exec "$root/scripts/docker-build.sh" "${1:-${HEARTBEAT_WORKER_IMAGE:-heartbeat-worker:local}}"
