#!/usr/bin/env bash
# bench-functions.sh - edge functions through the gateway, side by side with
# two peers in the same run: the same module served by a minimal Node.js
# server using node:wasi (scripts/bench/node-wasi-server.mjs, V8), and by a
# naive in-process wazero server (scripts/bench/wazero-peer: compile once,
# fresh instance per request, no fuel, no sandbox, no limits).
#
# Run as root (the node loads the shield):  sudo scripts/bench-functions.sh
#
# It builds bin/aegis, starts `aegis node` with a private state directory,
# admin socket and bpffs pin path and no protected interface, deploys
# examples/hello-wat and examples/hello-c, starts one Node.js and one wazero
# peer per module, and drives each server with internal/loadgen (closed
# loop, C clients, D per round), alternating aegis and the peers ROUNDS
# times. It prints the median requests/s and p50/p99 of each and the ratios.
# Everything is stopped and removed on exit.
#
# Environment: C (clients, default 16), D (duration per round, default 5s),
# ROUNDS (default 3), PORT (gateway port, default 18080; the peers use the
# next four).
set -euo pipefail

C=${C:-16}
D=${D:-5s}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18080}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[ "$(id -u)" -eq 0 ] || { echo "bench-functions: run as root" >&2; exit 1; }
command -v node >/dev/null || { echo "bench-functions: node (Node.js) is needed for the peer" >&2; exit 1; }

tmp=$(mktemp -d)
pin=/sys/fs/bpf/aegis-bench-$$
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$pin" "$tmp"
}
trap cleanup EXIT INT TERM

make -s build >/dev/null
go build -o "$tmp/loadgen" ./internal/loadgen/cmd/loadgen
go build -o "$tmp/wazero-peer" ./scripts/bench/wazero-peer
cat >"$tmp/aegis.yaml" <<YAML
state_dir: $tmp/state
admin: {socket: $tmp/admin.sock}
shield: {pin_path: $pin}
gateway: {listen: 127.0.0.1:$PORT}
YAML
bin/aegis node --config "$tmp/aegis.yaml" 2>"$tmp/node.log" &
pids+=($!)
for _ in $(seq 100); do
	bin/aegis --socket "$tmp/admin.sock" shield status >/dev/null 2>&1 && break
	sleep 0.1
done
aegis() { bin/aegis --socket "$tmp/admin.sock" "$@"; }
aegis fn deploy wat examples/hello-wat/hello.wasm --route /wat >/dev/null
aegis fn deploy c examples/hello-c/hello.wasm --route /c >/dev/null

node scripts/bench/node-wasi-server.mjs examples/hello-wat/hello.wasm $((PORT + 1)) 2>/dev/null &
pids+=($!)
node scripts/bench/node-wasi-server.mjs examples/hello-c/hello.wasm $((PORT + 2)) 2>/dev/null &
pids+=($!)
"$tmp/wazero-peer" examples/hello-wat/hello.wasm 127.0.0.1:$((PORT + 3)) 2>/dev/null &
pids+=($!)
"$tmp/wazero-peer" examples/hello-c/hello.wasm 127.0.0.1:$((PORT + 4)) 2>/dev/null &
pids+=($!)
sleep 1

run() { "$tmp/loadgen" -url "$1" -c "$C" -d "$D" -json; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "machine: $(nproc) CPUs, $(uname -r); $C clients, $D per round, $ROUNDS rounds, medians; load at start $(cut -d" " -f1-3 /proc/loadavg)"
printf '%-10s %-10s %10s %10s %10s\n' module server req/s p50_us p99_us
for mod in wat c; do
	declare -A rps=() p50=() p99=()
	for _ in $(seq "$ROUNDS"); do
		for srv in aegis wazero node; do
			off=0
			case $srv in
			node) off=1 ;;
			wazero) off=3 ;;
			esac
			if [ $srv != aegis ] && [ $mod = c ]; then off=$((off + 1)); fi
			url=http://127.0.0.1:$((PORT + off))/$mod
			out=$(run "$url")
			rps[$srv]+="$(echo "$out" | sed -E 's/.*"rps":([0-9.]+).*/\1/') "
			p50[$srv]+="$(echo "$out" | sed -E 's/.*"p50_us":([0-9]+).*/\1/') "
			p99[$srv]+="$(echo "$out" | sed -E 's/.*"p99_us":([0-9]+).*/\1/') "
		done
	done
	for srv in aegis wazero node; do
		r=$(echo ${rps[$srv]} | tr ' ' '\n' | median)
		a=$(echo ${p50[$srv]} | tr ' ' '\n' | median)
		b=$(echo ${p99[$srv]} | tr ' ' '\n' | median)
		printf '%-10s %-10s %10.0f %10s %10s\n' "$mod" "$srv" "$r" "$a" "$b"
		eval "last_$srv=$r"
	done
	awk -v a="$last_aegis" -v w="$last_wazero" -v n="$last_node" -v m="$mod" \
		'BEGIN {printf "%-10s aegis/wazero %.2f   aegis/node %.2f\n", m, a / w, a / n}'
	# The same ratios round by round, then their median: the servers of
	# one round share the machine's load, which on a shared machine moves
	# more between rounds than between servers.
	paste <(echo ${rps[aegis]} | tr ' ' '\n') <(echo ${rps[wazero]} | tr ' ' '\n') <(echo ${rps[node]} | tr ' ' '\n') |
		awk '{print $1 / $2, $1 / $3}' >"$tmp/ratios"
	printf '%-10s per round: aegis/wazero %.2f (%s)   aegis/node %.2f\n' "$mod" \
		"$(cut -d' ' -f1 "$tmp/ratios" | median)" "$(cut -d' ' -f1 "$tmp/ratios" | xargs printf '%.2f ' | sed 's/ $//')" \
		"$(cut -d' ' -f2 "$tmp/ratios" | median)"
	unset rps p50 p99
done
echo "load at end $(cut -d" " -f1-3 /proc/loadavg)"
