#!/usr/bin/env bash
# The project's test command (README, .ci/run): lint, vet, then every package's tests
# with the race detector. Extra arguments go to `go test` (e.g. -run TestCluster).
# The docker chaos suite is separate: go test -tags chaos ./test/chaos/...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

# Static checks first: buf lint, generated code up to date, golangci-lint
# (scripts/lint.sh; HEARTBEAT_SKIP_LINT=1 skips them, e.g. offline).
if [ "${HEARTBEAT_SKIP_LINT:-0}" != 1 ]; then
	scripts/lint.sh
fi
echo "== go vet ./..."
go vet ./...
echo "== go test -race -count=1 ./..."
go test -race -count=1 -timeout "${HEARTBEAT_TEST_TIMEOUT:-15m}" "$@" ./...
