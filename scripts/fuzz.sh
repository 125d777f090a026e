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
# inputs counts the files of a corpus directory (0 when there is none).
inputs() {
	if [ -d "$1" ]; then
		find "$1" -type f | wc -l
	else
		echo 0
	fi
}

ran=0
flaked=0
for pkg in "${pkgs[@]}"; do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		if ! grep -Eq -- "$match" <<<"$target"; then
			continue
		fi
		echo "== $target ($pkg) for $time"
		dir="$(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$target"
		before="$(inputs "$dir")"
		log="$(mktemp)"
		status=0
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -parallel "$parallel" "$pkg" 2>&1 | tee "$log" || status=$?
		after="$(inputs "$dir")"
		if [ "$status" != 0 ]; then
			# Go before 1.27 may end a run with a bare "context deadline
			# exceeded" when -fuzztime runs out under load (golang/go#75804):
			# no input fails then and none is written. Anything else stops.
			if [ "$after" = "$before" ] && grep -q '^    context deadline exceeded$' "$log"; then
				echo "== $target: the fuzz coordinator's deadline race (golang/go#75804), no failing input: not a finding"
				flaked=$((flaked + 1))
			else
				rm -f "$log"
				echo "== $target failed; a failing input is in $dir" >&2
				exit 1
			fi
		fi
		rm -f "$log"
		ran=$((ran + 1))
	done
done
if [ "$ran" = 0 ]; then
	echo "no fuzz target matches $match" >&2
	exit 1
fi
echo "== $ran fuzz targets ran for $time each ($flaked ended by the deadline race)"
