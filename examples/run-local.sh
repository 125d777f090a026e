#!/usr/bin/env bash
# Walk-through of the example worker (examples/worker) on a local 3-node cluster:
#
#   examples/run-local.sh [--keep-cluster]
#
#  1. scripts/local-cluster.sh start 3 (ports 74I0/74I1/74I2; refuses if a cluster runs);
#  2. registers shard-0 .. shard-11 with bin/heartbeat;
#  3. starts one worker per node in the background (logs: data/example/worker-nI.log,
#     fenced ledgers: data/example/ledger, and one per shard in data/example/ledger.shards);
#  4. waits until the workers own all 12 shards between them, one owner each;
#  5. SIGKILLs the node beside the worker that runs the leader-only job (the leader);
#  6. waits for the hand-off and prints it: the dead node's worker releases its shards, the
#     others acquire them with new epochs, the new leader's worker writes to the ledger
#     with a larger fencing token; checks every ledger (tokens and epochs never go down);
#  7. stops the workers. The cluster is then STOPPED (scripts/local-cluster.sh stop; data
#     kept in data/local-cluster) unless --keep-cluster is given, which leaves the two
#     surviving nodes running (scripts/local-cluster.sh restart nX brings the third back).
#
# Needs ports 7410-7432 free on 127.0.0.1. Finishes in well under a minute. Remove all
# data afterwards with: scripts/local-cluster.sh clean; rm -rf data/example
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/local/go/bin"
lc=$root/scripts/local-cluster.sh
hb=$root/bin/heartbeat
worker=$root/bin/example-worker
ex=$root/data/example
ledger=$ex/ledger
shards=12
keep=0
timeout=25 # seconds per wait

case ${1:-} in
--keep-cluster) keep=1 ;;
"") ;;
*) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

start=$SECONDS
say() { printf '\n[%3ds] %s\n' $((SECONDS - start)) "$*"; }
die() { echo "run-local: $*" >&2; exit 1; }
client() { echo "127.0.0.1:74${1}1"; }

# ---- cleanup: always stop the workers; stop the cluster unless --keep-cluster
cluster_started=0
cleanup() {
	local i pid
	for i in 1 2 3; do
		pid=$(cat "$ex/worker-n$i.pid" 2>/dev/null || true)
		[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
	done
	for i in 1 2 3; do
		pid=$(cat "$ex/worker-n$i.pid" 2>/dev/null || true)
		[[ -n $pid ]] || continue
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$ex/worker-n$i.pid"
	done
	if ((cluster_started && !keep)); then
		"$lc" stop >/dev/null
		echo "cluster stopped (data kept in data/local-cluster; 'scripts/local-cluster.sh clean' removes it)"
	elif ((cluster_started)); then
		echo "cluster left running (--keep-cluster): scripts/local-cluster.sh status"
	fi
}
trap cleanup EXIT

# last_round I: the last "working on N resources: a@e b@e" line of worker nI's log
# after byte offset ${2:-0}, reduced to "N a@e b@e ...".
last_round() {
	tail -c +"$((${2:-0} + 1))" "$ex/worker-n$1.log" 2>/dev/null |
		sed -n 's/.*working on \([0-9]*\) resources\(: \(.*\)\)\{0,1\}.*/\1 \3/p' | tail -n 1
}

# owned_by I OFFSET: the shard ids (without epochs) in worker nI's last round.
owned_by() { last_round "$1" "${2:-0}" | cut -d' ' -f2- | tr ' ' '\n' | sed -n 's/@.*//p'; }

# partition I:OFFSET...: true when the last rounds of the listed workers (each after
# its log offset) hold all $shards shards, each exactly once.
partition() {
	local w ids total
	ids=$(for w in "$@"; do owned_by "${w%%:*}" "${w#*:}"; done)
	total=$(grep -c . <<<"$ids" || true)
	[[ $total == "$shards" && $(sort -u <<<"$ids" | grep -c .) == "$shards" ]]
}

wait_until() { # wait_until WHAT CMD...
	local what=$1 deadline=$((SECONDS + timeout))
	shift
	until "$@"; do
		((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what (logs in $ex)"
		sleep 0.2
	done
}

ledger_last() { tail -n 1 "$ledger" 2>/dev/null; }
ledger_field() { ledger_last | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# ---- 1. cluster
say "starting a 3-node cluster"
[[ -z $(ls "$ex"/worker-n*.pid 2>/dev/null) ]] || die "workers of an earlier run may still run (see $ex/*.pid)"
"$lc" start 3
cluster_started=1
echo "building $worker ..."
(cd "$root" && go build -o "$worker" ./examples/worker) || die "worker build failed"

# ---- 2. resources
say "registering $shards resources"
for ((s = 0; s < shards; s++)); do
	"$hb" resources put "shard-$s" --addr "$(client 1)" >/dev/null
done
"$hb" resources list --addr "$(client 1)"

# ---- 3. workers (a fresh ledger: a new cluster's tokens start low again)
say "starting one worker per node"
rm -rf "$ex"
mkdir -p "$ex"
for i in 1 2 3; do
	peers=$(for j in 1 2 3; do ((j == i)) || printf '%s,' "$(client "$j")"; done)
	nohup "$worker" --sidecar "$(client "$i")" --peers "${peers%,}" --ledger "$ledger" \
		--work-interval 1s >"$ex/worker-n$i.log" 2>&1 </dev/null &
	echo $! >"$ex/worker-n$i.pid"
	echo "worker beside n$i: pid $!, log $ex/worker-n$i.log"
done

# ---- 4. ownership
wait_until "the workers to own all $shards shards" partition 1:0 2:0 3:0
ledger_has() { [[ $(wc -l <"$ledger" 2>/dev/null || echo 0) -ge $1 ]]; }
wait_until "the leader job to write 3 ledger records" ledger_has 3
say "the workers own every shard, each once:"
for i in 1 2 3; do printf '  worker n%s: %s\n' "$i" "$(last_round "$i")"; done
leader=$(ledger_field node)
token=$(ledger_field token)
echo "leader-only job: worker beside $leader, fencing token $token; ledger: $(ledger_last)"

# ---- 5. crash the leader's node
declare -A mark
for i in 1 2 3; do mark[$i]=$(stat -c %s "$ex/worker-n$i.log"); done
say "killing $leader, the node beside the leader's worker"
"$lc" kill "$leader"
dead=${leader#n}
survivors=()
for i in 1 2 3; do ((i == dead)) || survivors+=("$i"); done

# ---- 6. hand-off
new_token() { [[ $(ledger_field token) -gt $token ]]; }
dropped() { [[ $(last_round "$dead" "${mark[$dead]}") == "0 "* ]]; }
wait_until "a new leader's job to write with a larger token" new_token
wait_until "the dead node's worker to drop its shards" dropped
wait_until "the surviving workers to own all $shards shards" \
	partition "${survivors[0]}:${mark[${survivors[0]}]}" "${survivors[1]}:${mark[${survivors[1]}]}"

say "hand-off after killing $leader:"
for i in 1 2 3; do
	echo "  worker n$i:"
	tail -c +"$((mark[$i] + 1))" "$ex/worker-n$i.log" |
		grep -E 'acquired|released|leader job' | sed 's/^[^ ]* /    /' || true
done
for i in "${survivors[@]}"; do printf '  worker n%s now works on: %s\n' "$i" "$(last_round "$i" "${mark[$i]}")"; done
echo "cluster's view (bin/heartbeat resources list):"
"$hb" resources list --addr "$(client "${survivors[0]}")"
echo "ledger: token $token by $leader, then $(ledger_field token) by $(ledger_field node); last records:"
tail -n 3 "$ledger" | sed 's/^/  /'
# tokens (epochs) never go down, and each has one writer: the leader's ledger and each shard's
fenced() {
	awk '{ split($1, t, "="); split($2, n, "=");
		if (t[2] + 0 < prev) bad = 1; prev = t[2] + 0;
		if ((t[2] in w) && w[t[2]] != n[2]) bad = 1; w[t[2]] = n[2] } END { exit bad }' "$1"
}
fenced "$ledger" || die "ledger check FAILED: see $ledger"
echo "ledger check: $(wc -l <"$ledger") records, tokens never go down, one writer per token"
for f in "$ledger.shards"/*; do
	fenced "$f" || die "shard ledger check FAILED: see $f"
done
echo "shard ledgers: $(ls "$ledger.shards" | wc -l) files, $(cat "$ledger.shards"/* | wc -l) records, epochs never go down, one writer per epoch"

say "done in $((SECONDS - start)) s; stopping the workers"
