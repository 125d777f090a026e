#!/usr/bin/env bash
# Runs a Heartbeat cluster of N local processes on 127.0.0.1.
#
#   scripts/local-cluster.sh start [N]   build bin/heartbeat, start N nodes (1..7, default 3),
#                                        wait for a leader, print the nodes and the
#                                        export HEARTBEAT_ADDR=... line for the CLI
#   scripts/local-cluster.sh status      show each node: pid, ports, role, leader
#   scripts/local-cluster.sh stop        stop every node gracefully (SIGTERM; SIGKILL after 15 s)
#   scripts/local-cluster.sh kill ID     SIGKILL one node (a crash), e.g. kill n1
#   scripts/local-cluster.sh restart ID  stop one node (if running) and start it again
#   scripts/local-cluster.sh logs ID [-f]  print (or follow) one node's log
#   scripts/local-cluster.sh clean       stop everything and delete the data directory
#
# Node nI listens on peer 74I0, client gRPC 74I1, HTTP 74I2 (n1: 7410, 7411, 7412).
# Data and logs live in $HEARTBEAT_LOCAL_DIR (default <repo>/data/local-cluster):
# nI/ (raft data), nI.log, nI.pid, and size (the N the cluster was created with).
# Extra run flags for every node can be given in HEARTBEAT_LOCAL_FLAGS.
#
# HEARTBEAT_LOCAL_TLS=1 scripts/local-cluster.sh start [N] runs the cluster with
# mutual TLS: certificates from 'heartbeat tls init' in <data dir>/tls (made once,
# reused), every node started with --cacert, --cert, --key, and the export line
# gains HEARTBEAT_CACERT, HEARTBEAT_CERT, HEARTBEAT_KEY (client.pem, role admin).
# The mode is kept in <data dir>/mode: status, restart and the rest follow it.
# Plaintext is the default. Works from any directory.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${HEARTBEAT_LOCAL_DIR:-$root/data/local-cluster}
bin=$root/bin/heartbeat
export PATH="$PATH:/usr/local/go/bin"

die() { echo "local-cluster: $*" >&2; exit 1; }
usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

# The script says itself how its nodes and its CLI calls secure themselves:
# variables exported for the CLI (the export line) must not reach them.
unset HEARTBEAT_CACERT HEARTBEAT_CERT HEARTBEAT_KEY HEARTBEAT_TOKEN

tls_dir=$dir/tls
# cluster_id is run's default --cluster-id, which the certificates must name.
cluster_id=heartbeat

# tls_on: the cluster in $dir runs with TLS (the mode recorded at start).
tls_on() { [[ $(cat "$dir/mode" 2>/dev/null) == tls ]]; }

# cli_tls: the CLI's TLS flags for this cluster (as the client "client", admin).
cli_tls() {
	if tls_on; then
		echo "--cacert $tls_dir/ca.pem --cert $tls_dir/client.pem --key $tls_dir/client-key.pem"
	fi
}

# make_certs N: the CA, n1..nN and client (admin) in $tls_dir, made by
# 'heartbeat tls init' unless they are all there already (it keeps what is
# there and adds what is missing).
make_certs() {
	local n=$1 i nodes="" missing=0
	for ((i = 1; i <= n; i++)); do
		nodes+="${nodes:+,}n$i"
		[[ -f $tls_dir/n$i.pem && -f $tls_dir/n$i-key.pem ]] || missing=1
	done
	[[ -f $tls_dir/ca.pem && -f $tls_dir/client.pem && -f $tls_dir/client-key.pem ]] || missing=1
	if ((missing)); then
		"$bin" tls init --out "$tls_dir" --cluster-id "$cluster_id" --nodes "$nodes" --clients client:admin >/dev/null ||
			die "tls init failed"
		echo "certificates in $tls_dir"
	else
		echo "reusing the certificates in $tls_dir"
	fi
}

peer_port()   { echo "74${1}0"; }
client_port() { echo "74${1}1"; }
http_port()   { echo "74${1}2"; }

# index n3 -> 3; dies on a bad id.
index_of() {
	[[ $1 =~ ^n([1-7])$ ]] || die "bad node id '$1' (want n1..n7)"
	echo "${BASH_REMATCH[1]}"
}

size() { cat "$dir/size" 2>/dev/null || echo 0; }

# pid of a running node, or nothing.
pid_of() {
	local f="$dir/n$1.pid" pid
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--node-id n$1 "; then
		echo "$pid"
	fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

initial_cluster() {
	local n=$1 i out=""
	for ((i = 1; i <= n; i++)); do
		out+="${out:+,}n$i=127.0.0.1:$(peer_port "$i")"
	done
	echo "$out"
}

build() {
	echo "building $bin ..."
	(cd "$root" && go build -o "$bin" ./cmd/node) || die "build failed"
}

# start_node I: starts node nI in the background.
start_node() {
	local i=$1 n
	n=$(size)
	for p in "$(peer_port "$i")" "$(client_port "$i")" "$(http_port "$i")"; do
		port_busy "$p" && die "port $p (for n$i) is already in use by another process"
	done
	mkdir -p "$dir/n$i"
	local tls=()
	if tls_on; then
		tls=(--cacert "$tls_dir/ca.pem" --cert "$tls_dir/n$i.pem" --key "$tls_dir/n$i-key.pem")
	fi
	# shellcheck disable=SC2086 # HEARTBEAT_LOCAL_FLAGS is split on purpose
	nohup "$bin" run --node-id "n$i" \
		--data-dir "$dir/n$i" \
		--peer-addr "127.0.0.1:$(peer_port "$i")" \
		--client-addr "127.0.0.1:$(client_port "$i")" \
		--http-addr "127.0.0.1:$(http_port "$i")" \
		--initial-cluster "$(initial_cluster "$n")" \
		${tls[@]+"${tls[@]}"} \
		${HEARTBEAT_LOCAL_FLAGS:-} \
		>>"$dir/n$i.log" 2>&1 </dev/null &
	echo $! >"$dir/n$i.pid"
}

# leader_seen_by I: prints the leader id node nI knows, or nothing.
leader_seen_by() {
	# shellcheck disable=SC2046 # the paths have no spaces ($dir may not either)
	"$bin" leader --addr "127.0.0.1:$(client_port "$1")" $(cli_tls) --stale --timeout 1s 2>/dev/null |
		sed -n 's/^leader=\(n[0-9]*\) .*/\1/p'
}

role_of() {
	# shellcheck disable=SC2046 # as in leader_seen_by
	"$bin" status --addr "127.0.0.1:$(client_port "$1")" $(cli_tls) --stale --json --timeout 1s 2>/dev/null |
		sed -n 's/^  "state": "\(.*\)",$/\1/p'
}

# wait_leader: waits until every running node names the same leader.
wait_leader() {
	local n deadline leader i l ok
	n=$(size)
	deadline=$((SECONDS + 60))
	printf 'waiting for a leader '
	while ((SECONDS < deadline)); do
		leader="" ok=1
		for ((i = 1; i <= n; i++)); do
			[[ -n $(pid_of "$i") ]] || continue
			l=$(leader_seen_by "$i")
			if [[ -z $l || (-n $leader && $l != "$leader") ]]; then ok=0; break; fi
			leader=$l
		done
		if ((ok)) && [[ -n $leader ]]; then
			echo " $leader"
			return 0
		fi
		printf '.'
		sleep 0.2
	done
	echo
	die "no leader after 60 s; see the logs in $dir"
}

print_table() {
	local n i pid role
	n=$(size)
	printf '%-4s %-7s %-5s %-6s %-5s %-10s %s\n' NODE PID PEER CLIENT HTTP ROLE LOG
	for ((i = 1; i <= n; i++)); do
		pid=$(pid_of "$i")
		role="-"
		if [[ -n $pid ]]; then role=$(role_of "$i"); role=${role:-?}; else pid="down"; fi
		printf '%-4s %-7s %-5s %-6s %-5s %-10s %s\n' "n$i" "$pid" "$(peer_port "$i")" "$(client_port "$i")" \
			"$(http_port "$i")" "$role" "$dir/n$i.log"
	done
	echo "data: $dir"
	if tls_on; then echo "tls: on (certificates in $tls_dir)"; fi
}

running_count() {
	local n i c=0
	n=$(size)
	for ((i = 1; i <= 7; i++)); do [[ -n $(pid_of "$i") ]] && c=$((c + 1)); done
	echo "$c"
}

cmd_start() {
	local n=${1:-3} i
	[[ $n =~ ^[1-7]$ ]] || die "N must be 1..7, got '$n'"
	(($(running_count) == 0)) || die "a cluster is already running in $dir (scripts/local-cluster.sh status; stop first)"
	if [[ -f $dir/size && $(size) != "$n" ]]; then
		die "$dir holds a $(size)-node cluster; start $(size), or 'clean' it first"
	fi
	build
	mkdir -p "$dir"
	echo "$n" >"$dir/size"
	if [[ ${HEARTBEAT_LOCAL_TLS:-} == 1 ]]; then
		[[ $dir != *[[:space:]]* ]] || die "HEARTBEAT_LOCAL_TLS needs a data directory without spaces: $dir"
		make_certs "$n"
		echo tls >"$dir/mode"
	else
		echo plain >"$dir/mode"
	fi
	echo "starting $n nodes; data and logs in $dir"
	for ((i = 1; i <= n; i++)); do start_node "$i"; done
	sleep 0.3
	for ((i = 1; i <= n; i++)); do
		[[ -n $(pid_of "$i") ]] || { tail -n 20 "$dir/n$i.log" >&2; die "n$i exited at start (log above)"; }
	done
	wait_leader
	print_table
	print_export
}

# print_export prints the line that makes every CLI command ask this
# cluster: n1 first, the other nodes as fallbacks (a watch or a read moves to
# them when n1 is down).
print_export() {
	local n i addrs=""
	n=$(size)
	for ((i = 1; i <= n; i++)); do
		addrs+="${addrs:+,}127.0.0.1:$(client_port "$i")"
	done
	echo
	echo "to point the CLI at this cluster (bin/heartbeat status, members, leader --watch, ...):"
	if tls_on; then
		echo "  export HEARTBEAT_ADDR=$addrs HEARTBEAT_CACERT=$tls_dir/ca.pem HEARTBEAT_CERT=$tls_dir/client.pem HEARTBEAT_KEY=$tls_dir/client-key.pem"
		echo "and HTTP: curl --cacert $tls_dir/ca.pem --cert $tls_dir/client.pem --key $tls_dir/client-key.pem https://127.0.0.1:$(http_port 1)/v1/status"
	else
		echo "  export HEARTBEAT_ADDR=$addrs"
	fi
}

cmd_stop() {
	local i pid pids=() deadline
	for ((i = 1; i <= 7; i++)); do
		pid=$(pid_of "$i")
		[[ -n $pid ]] || continue
		kill -TERM "$pid" && pids+=("$pid") && echo "stopping n$i (pid $pid)"
	done
	((${#pids[@]})) || { echo "no node running"; return 0; }
	deadline=$((SECONDS + 15))
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && { echo "pid $pid still running: SIGKILL"; kill -KILL "$pid"; }
	done
	echo "stopped"
}

cmd_kill() {
	local i pid
	i=$(index_of "${1:-}")
	pid=$(pid_of "$i")
	[[ -n $pid ]] || die "n$i is not running"
	kill -KILL "$pid"
	echo "killed n$i (pid $pid) with SIGKILL"
}

cmd_restart() {
	local i pid deadline
	i=$(index_of "${1:-}")
	((i <= $(size))) || die "n$i is not part of the $(size)-node cluster in $dir"
	pid=$(pid_of "$i")
	if [[ -n $pid ]]; then
		kill -TERM "$pid"
		deadline=$((SECONDS + 15))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		echo "stopped n$i (pid $pid)"
	fi
	[[ -x $bin ]] || build
	start_node "$i"
	sleep 0.3
	[[ -n $(pid_of "$i") ]] || { tail -n 20 "$dir/n$i.log" >&2; die "n$i exited at start (log above)"; }
	echo "started n$i (pid $(cat "$dir/n$i.pid"))"
	wait_leader
	print_table
	print_export
}

cmd_status() {
	[[ -f $dir/size ]] || { echo "no cluster in $dir"; return 0; }
	local i l
	print_table
	for ((i = 1; i <= $(size); i++)); do
		[[ -n $(pid_of "$i") ]] || continue
		l=$(leader_seen_by "$i")
		echo "leader: ${l:-(none known)} (as seen by n$i)"
		return 0
	done
	echo "leader: (no node running)"
}

cmd_logs() {
	local i
	i=$(index_of "${1:-}")
	[[ -f $dir/n$i.log ]] || die "no log for n$i in $dir"
	if [[ ${2:-} == -f ]]; then tail -n 50 -f "$dir/n$i.log"; else cat "$dir/n$i.log"; fi
}

cmd_clean() {
	cmd_stop
	rm -rf "$dir"
	echo "removed $dir"
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) cmd_stop ;;
status) cmd_status ;;
kill) shift; cmd_kill "$@" ;;
restart) shift; cmd_restart "$@" ;;
logs) shift; cmd_logs "$@" ;;
clean) cmd_clean ;;
*) usage ;;
esac
