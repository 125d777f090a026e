#!/usr/bin/env bash
# The project's test command (README, .ci/run): vet, then every package's tests
# with the race detector. Extra arguments go to `go test` (e.g. -run TestCluster).
# The docker chaos suite is separate: go test -tags chaos ./test/chaos/...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

echo "== go vet ./..."
go vet ./...
echo "== go test -race -count=1 ./..."
go test -race -count=1 -timeout "${HEARTBEAT_TEST_TIMEOUT:-15m}" "$@" ./...
