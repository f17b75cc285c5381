#!/usr/bin/env bash
# hop-ab.sh - two aegis builds against each other and the naive wazero
# server, alternating in one run, with the CPU time and context switches
# per request of each node and its workers (issue 16's process hop).
#
#   sudo scripts/bench/hop-ab.sh OLD_BINARY NEW_BINARY [MODULE]
#
# MODULE is wat (default) or c. Each round drives old, new and wazero in
# turn with internal/loadgen (C clients, D each) and reads, before and after,
# the node's and its descendants' CPU time (/proc/PID/stat) and voluntary
# plus involuntary context switches of every thread (/proc/PID/task/*/status).
# Environment: C (default 16), D (default 4s), ROUNDS (default 5), PORT
# (default 18180; three ports from it).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 OLD NEW [wat|c]" >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2") mod=${3:-wat}
C=${C:-16}
D=${D:-4s}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-18180}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
[ "$(id -u)" -eq 0 ] || { echo "hop-ab: run as root" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf /sys/fs/bpf/aegis-ab-$$-* "$tmp"
}
trap cleanup EXIT INT TERM

go build -o "$tmp/loadgen" ./internal/loadgen/cmd/loadgen
go build -o "$tmp/wazero-peer" ./scripts/bench/wazero-peer

declare -A nodepid=()
start() { # name binary port
	local d=$tmp/$1
	mkdir -p "$d"
	cat >"$d/aegis.yaml" <<YAML
state_dir: $d/state
admin: {socket: $d/admin.sock}
shield: {pin_path: /sys/fs/bpf/aegis-ab-$$-$1}
gateway: {listen: 127.0.0.1:$3}
YAML
	"$2" node --config "$d/aegis.yaml" 2>"$d/node.log" &
	nodepid[$1]=$!
	pids+=($!)
	for _ in $(seq 100); do
		"$2" --socket "$d/admin.sock" shield status >/dev/null 2>&1 && break
		sleep 0.1
	done
	"$2" --socket "$d/admin.sock" fn deploy "$mod" "examples/hello-$mod/hello.wasm" --route "/$mod" >/dev/null
}
start old "$old" "$PORT"
start new "$new" $((PORT + 1))
"$tmp/wazero-peer" "examples/hello-$mod/hello.wasm" 127.0.0.1:$((PORT + 2)) 2>/dev/null &
nodepid[wazero]=$!
pids+=($!)
sleep 1

# tree PID: the process and its descendants.
tree() {
	local p=$1
	echo "$p"
	for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}
# counters PID: CPU ticks and context switches of the tree.
counters() {
	local ticks=0 cs=0 p t
	for p in $(tree "$1"); do
		t=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)
		ticks=$((ticks + t))
		t=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')
		cs=$((cs + t))
	done
	echo "$ticks $cs"
}
hz=$(getconf CLK_TCK)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A rps=() cpu=() csw=()
for _ in $(seq "$ROUNDS"); do
	for srv in old new wazero; do
		case $srv in old) port=$PORT ;; new) port=$((PORT + 1)) ;; wazero) port=$((PORT + 2)) ;; esac
		read -r t0 c0 < <(counters "${nodepid[$srv]}")
		out=$("$tmp/loadgen" -url "http://127.0.0.1:$port/$mod" -c "$C" -d "$D" -json)
		read -r t1 c1 < <(counters "${nodepid[$srv]}")
		r=$(echo "$out" | sed -E 's/.*"rps":([0-9.]+).*/\1/')
		n=$(awk -v r="$r" -v d="${D%s}" 'BEGIN {print r * d}')
		rps[$srv]+="$r "
		cpu[$srv]+="$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}') "
		csw[$srv]+="$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {printf "%.2f", c / n}') "
	done
done
echo "module $mod; $C clients, $D per round, $ROUNDS rounds, medians; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %10s %12s %12s   %s\n' server req/s cpu_us/req switches/req "rounds (req/s)"
for srv in old new wazero; do
	printf '%-8s %10.0f %12s %12s   %s\n' "$srv" "$(echo ${rps[$srv]} | tr ' ' '\n' | median)" \
		"$(echo ${cpu[$srv]} | tr ' ' '\n' | median)" "$(echo ${csw[$srv]} | tr ' ' '\n' | median)" "${rps[$srv]}"
done
# Ratios per round, then their median: the rounds share the machine's load.
paste <(echo ${rps[new]} | tr ' ' '\n') <(echo ${rps[old]} | tr ' ' '\n') <(echo ${rps[wazero]} | tr ' ' '\n') |
	awk '{print $1 / $2, $1 / $3, $2 / $3}' >"$tmp/ratios"
printf 'new/old %s   new/wazero %s   old/wazero %s (medians of per-round ratios)\n' \
	"$(cut -d' ' -f1 "$tmp/ratios" | median)" "$(cut -d' ' -f2 "$tmp/ratios" | median)" "$(cut -d' ' -f3 "$tmp/ratios" | median)"
