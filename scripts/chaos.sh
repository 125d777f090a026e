#!/usr/bin/env bash
# Runs the chaos suite against a docker-compose cluster.
#
#   scripts/chaos.sh quick     # every fault once (~5-10 min on 2 cores)
#   scripts/chaos.sh full      # every fault CHAOS_RUNS times (default 5)
#
# Needs root (nsenter, iptables in the containers' namespaces), Docker, and
# docker compose or docker-compose; iptables and tc on the host. Other
# CHAOS_* variables pass through (see test/chaos/README.md), e.g.
# CHAOS_SEED=7 CHAOS_NODES=3 scripts/chaos.sh quick.
#
# The test builds the binary and the image, brings the cluster up under the
# compose project ${CHAOS_PROJECT:-heartbeat-chaos} (its own subnet and
# ports, so it never touches a cluster you run yourself) and removes it at
# the end; this script removes it again on exit or Ctrl-C, whatever happened.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. scripts/compose.sh

mode=${1:-quick}
case "$mode" in
quick) export CHAOS_QUICK=1 ;;
full) export CHAOS_QUICK=0 CHAOS_RUNS=${CHAOS_RUNS:-5} ;;
*)
	echo "usage: $0 quick|full" >&2
	exit 2
	;;
esac

for tool in docker iptables tc nsenter go; do
	command -v "$tool" >/dev/null || {
		echo "chaos.sh: $tool is missing (iptables and tc: apt-get install -y iptables iproute2)" >&2
		exit 1
	}
done
[ "$(id -u)" = 0 ] || {
	echo "chaos.sh: run as root (nsenter into container namespaces)" >&2
	exit 1
}

project=${CHAOS_PROJECT:-heartbeat-chaos}
cleanup() {
	# The test removes the cluster itself; this catches an interrupted run.
	HEARTBEAT_SUBNET=${CHAOS_SUBNET:-172.28.6} HEARTBEAT_PORT_PREFIX=${CHAOS_PORT_PREFIX:-76} \
		compose -p "$project" -f docker-compose.yml down -v --remove-orphans --timeout 1 >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

out=${CHAOS_OUT:-out}
mkdir -p "test/chaos/$out"
log="test/chaos/$out/chaos.log"

echo "== checker unit tests" >&2
go test -count=1 ./test/chaos/

echo "== chaos suite ($mode), log: $log" >&2
set +e
go test -tags chaos -count=1 -v -timeout 120m ./test/chaos/ -run TestChaos 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo >&2
echo "report:   $root/test/chaos/$out/report.md" >&2
echo "timeline: $root/test/chaos/$out/timeline.svg" >&2
if [ "$status" != 0 ]; then
	echo "FAILED: histories and node logs kept in $root/test/chaos/$out/ (history.json, logs/)" >&2
fi
exit "$status"
