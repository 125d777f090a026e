#!/usr/bin/env bash
# Runs every Go fuzz target of the module (found with go test -list '^Fuzz')
# for a while each, one after the other, with one worker: the fuzz targets
# of the gateway and rpc/api each run a 1-node cluster per worker process.
# CI does not run this; `go test` runs each target's seed corpus as an
# ordinary test.
#
#   scripts/fuzz.sh                  every target, 3 minutes each
#   scripts/fuzz.sh 10m              every target, 10 minutes each
#   scripts/fuzz.sh 1m FuzzHTTP      the targets whose name matches
#
# HEARTBEAT_FUZZ_PARALLEL sets the workers (-parallel; default 1). A failing
# input is written to <package>/testdata/fuzz/<target>/ and the script
# stops: rerun it with go test -run '<target>/<file>' ./<package>/, fix the
# bug, and keep the file as a seed (it is then part of CI's run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

time="${1:-3m}"
match="${2:-.}"
parallel="${HEARTBEAT_FUZZ_PARALLEL:-1}"

mapfile -t pkgs < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
ran=0
for pkg in "${pkgs[@]}"; do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		if ! grep -Eq -- "$match" <<<"$target"; then
			continue
		fi
		echo "== $target ($pkg) for $time"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -parallel "$parallel" "$pkg"
		ran=$((ran + 1))
	done
done
if [ "$ran" = 0 ]; then
	echo "no fuzz target matches $match" >&2
	exit 1
fi
echo "== $ran fuzz targets ran for $time each"
