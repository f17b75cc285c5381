#!/usr/bin/env bash
# bench-shield.sh - time the shield's XDP data path side by side with xdp-filter.
#
# Run as root from anywhere:  sudo scripts/bench-shield.sh
#
# The script re-executes itself in new network and mount namespaces of its
# own (unshare), so nothing it does is visible to the host: there it creates
# a veth pair, mounts a private bpffs at /sys/fs/bpf, loads xdp-filter (from
# xdp-tools) in native mode on the veth ends, fills its src lists, and runs
#
#   AEGIS_PEER_PROG_ID=<ids> go test -run '^$' \
#     -bench 'BenchmarkDataPath|BenchmarkPeerXDPFilter|BenchmarkEmptyXDP|BenchmarkLookupFloor' \
#     -benchtime=<N>x -count=<k> ./internal/shield/
#
# so that every figure comes from one harness (BPF_PROG_TEST_RUN) in one run.
# It prints the median ns per packet of every case and the ratio
# aegis / xdp-filter for the same packet. Everything is torn down on exit,
# also on failure or interruption (and the namespaces die with the process).
#
# Environment:
#   BENCHTIME         runs per measurement (default 1000000x)
#   COUNT             measurements per case, for the median (default 7)
#   XDPF_FEATURES     xdp-filter feature sets to compare, one load each
#                     (default "all ipv4,ipv6": xdp-filter's default variant
#                     and its leanest one that still filters IPv4 and IPv6)
#   XDPF_ENTRIES      addresses per family in xdp-filter's src lists, at most
#                     10000, the size of its maps (default 10000)
#   OUT               also write the raw go test output here
#   COLD              1 (default): then the cache-cold cases, each packet from
#                     another of about a million sources, one BPF_PROG_TEST_RUN
#                     call per packet (BenchmarkDataPathCold and its peers;
#                     COLD_BENCHTIME packets, default 1000000x, COLD_COUNT runs,
#                     default 3), and a spoofed flood of FLOOD_N distinct
#                     sources through the limiter (BenchmarkFlood, default
#                     10000000); 0 skips them
set -euo pipefail

BENCHTIME=${BENCHTIME:-1000000x}
COUNT=${COUNT:-7}
XDPF_FEATURES=${XDPF_FEATURES:-"all ipv4,ipv6"}
XDPF_ENTRIES=${XDPF_ENTRIES:-10000}
BENCH_RE=${BENCH_RE:-'BenchmarkDataPath$|BenchmarkPeerXDPFilter$|BenchmarkEmptyXDP$|BenchmarkLookupFloor$'}
COLD=${COLD:-1}
COLD_BENCHTIME=${COLD_BENCHTIME:-1000000x}
COLD_COUNT=${COLD_COUNT:-3}
FLOOD_N=${FLOOD_N:-10000000}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self="$repo/scripts/bench-shield.sh"

die() { echo "bench-shield: $*" >&2; exit 1; }

if [[ -z ${AEGIS_BENCH_INNER:-} ]]; then
	[[ $EUID -eq 0 ]] || die "must run as root (it loads XDP programs)"
	for cmd in go xdp-filter bpftool unshare ip awk; do
		command -v "$cmd" >/dev/null || die "$cmd not found (xdp-filter: apt-get install xdp-tools)"
	done
	# Build the test binary here: the private network namespace has no
	# network for fetching modules, and this warms the build cache.
	(cd "$repo" && go test -c -o /dev/null ./internal/shield/) || die "building the shield tests failed"
	exec unshare --net --mount --propagation private env AEGIS_BENCH_INNER=1 bash "$self" "$@"
fi

# --- inside the private namespaces --------------------------------------

tmp=$(mktemp -d /tmp/aegis-bench.XXXXXX)
ifaces=()
cleanup() {
	set +e
	xdp-filter unload --all >/dev/null 2>&1
	for i in "${ifaces[@]}"; do ip link del "$i" 2>/dev/null; done
	mountpoint -q /sys/fs/bpf && umount /sys/fs/bpf
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Load xdp-filter's program itself, not behind libxdp's multi-program
# dispatcher: BPF_PROG_TEST_RUN cannot run the freplace component, and the
# dispatcher's extra call would flatter the comparison.
export LIBXDP_SKIP_DISPATCHER=1

# A bpffs of our own for xdp-filter's pins; it shadows the host's only in
# this mount namespace.
mount -t bpf bpf /sys/fs/bpf
ip link set lo up

# Random src entries, seeded. None is in 192.0.2.0/24, 203.0.113.0/24 or
# 2001:db8::/32, where the benchmark frames' sources are.
gen_entries() { # family count
	awk -v fam="$1" -v n="$2" -v seed=4242 'BEGIN {
		srand(seed)
		while (made < n) {
			if (fam == 4) {
				a = 1 + int(rand() * 190); if (a == 127) continue
				k = a " " int(rand()*256) " " int(rand()*256) " " int(rand()*256)
			} else {
				k = "36 " int(rand()*256)
				for (i = 2; i < 16; i++) k = k " " int(rand()*256)
			}
			if (k in seen) continue
			seen[k] = 1; made++
			print k
		}
	}'
}

# The benchmark's drop sources (see bench_test.go): its exact address and the
# one address of its prefix case, as xdp-filter has no prefixes.
drop4=(192.0.2.66 203.0.113.9)
drop6=(2001:db8:bad::66 2001:db8:dead:2::5)

fill_xdp_filter() {
	local a batch="$tmp/batch"
	for a in "${drop4[@]}" "${drop6[@]}"; do
		xdp-filter ip -m src "$a"
	done
	local extra4=$((XDPF_ENTRIES - ${#drop4[@]})) extra6=$((XDPF_ENTRIES - ${#drop6[@]}))
	# The value is xdp-filter's per-CPU flag word, MAP_FLAG_SRC = 1, which
	# bpftool replicates to every CPU.
	{
		gen_entries 4 "$extra4" | sed 's|^|map update pinned /sys/fs/bpf/xdp-filter/filter_ipv4 key |; s|$| value 1 0 0 0 0 0 0 0|'
		gen_entries 6 "$extra6" | sed 's|^|map update pinned /sys/fs/bpf/xdp-filter/filter_ipv6 key |; s|$| value 1 0 0 0 0 0 0 0|'
	} >"$batch"
	bpftool batch file "$batch" >/dev/null
}

# One veth end per xdp-filter variant: the variants share xdp-filter's maps.
ids=()
n=0
for feats in $XDPF_FEATURES; do
	a=aegb$n b=aegp$n
	ip link add "$a" type veth peer name "$b"
	ifaces+=("$a")
	ip link set "$a" up
	ip link set "$b" up
	ip addr add "192.0.2.$((250 - n))/24" dev "$b"
	ip addr add "2001:db8:ffff::$((250 - n))/64" dev "$b" nodad
	xdp-filter load -m native -f "$feats" "$a" 2>&1 | sed 's/^/  xdp-filter: /'
	id=$(ip -o link show dev "$a" | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p')
	[[ -n $id ]] || die "no XDP program found on $a after loading xdp-filter"
	mode=$(bpftool net show dev "$a" | awk '/driver|generic|offload/ {print $2; exit}')
	[[ $mode == driver ]] || die "xdp-filter on $a is not in native (driver) mode: ${mode:-none}"
	name=$(bpftool prog show id "$id" | awk 'NR==1 {for (i = 1; i < NF; i++) if ($i == "name") print $(i+1)}')
	type=$(bpftool prog show id "$id" | awk 'NR==1 {print $2}')
	[[ $type == xdp && $name != xdp_dispatcher ]] || die "program $id on $a is $type $name, not xdp-filter's own xdp program"
	echo "xdp-filter -f $feats on $a: program id $id, variant $name, native mode"
	ids+=("$id")
	n=$((n + 1))
done
fill_xdp_filter
echo "xdp-filter src lists: $(bpftool map dump pinned /sys/fs/bpf/xdp-filter/filter_ipv4 | grep -c '"key"') IPv4, $(bpftool map dump pinned /sys/fs/bpf/xdp-filter/filter_ipv6 | grep -c '"key":') IPv6 (maps hold at most 10000 each; no prefixes)"

peer_ids=$(IFS=,; echo "${ids[*]}")
cmd=(go test -run '^$' -bench "$BENCH_RE" -benchtime="$BENCHTIME" -count="$COUNT" ./internal/shield/)
echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "running: AEGIS_PEER_PROG_ID=$peer_ids go test -run '^\$' -bench '$BENCH_RE' -benchtime=$BENCHTIME -count=$COUNT ./internal/shield/"
echo
start=$(date +%s)
raw="$tmp/raw.txt"
(cd "$repo" && AEGIS_PEER_PROG_ID=$peer_ids "${cmd[@]}") | tee "$raw" | grep -E '^(Benchmark|ok|FAIL|---)' | sed 's/^/  /' || true
[[ -n ${OUT:-} ]] && cp "$raw" "$OUT"
grep -q '^ok' "$raw" || die "go test failed (output above)"
echo "(benchmarks took $(( $(date +%s) - start )) s)"
echo

# Medians of ns/pkt per case, then the table.
# medians is the awk both tables start with: the ns/pkt figures of each
# benchmark gathered by name, and their median.
medians='
	/ns\/pkt/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i+1) == "ns/pkt") v = $i
		vals[name] = vals[name] " " v
	}
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
'
awk "$medians"'
	END {
		for (k in vals) {
			m[k] = median(vals[k])
			if (k ~ /^BenchmarkPeerXDPFilter\//) {
				split(k, parts, "/"); peers[parts[2]] = 1
			}
		}
		np = 0
		for (pn in peers) plist[++np] = pn
		for (i = 1; i <= np; i++) for (j = i + 1; j <= np; j++) if (plist[j] < plist[i]) { t = plist[i]; plist[i] = plist[j]; plist[j] = t }
		printf "%-20s %10s", "case (median ns/pkt)", "aegis"
		for (i = 1; i <= np; i++) printf " %16s %7s", plist[i], "ratio"
		printf "\n"
		split("ipv4/pass ipv4/pass-tcp ipv4/drop-exact ipv4/drop-prefix ipv4/rate-limited ipv6/pass ipv6/pass-tcp ipv6/drop-exact ipv6/drop-prefix ipv6/rate-limited", cases, " ")
		for (c = 1; c <= 10; c++) {
			a = m["BenchmarkDataPath/" cases[c]]
			printf "%-20s %10s", cases[c], a
			for (i = 1; i <= np; i++) {
				x = m["BenchmarkPeerXDPFilter/" plist[i] "/" cases[c]]
				printf " %16s %7s", x, (x > 0 ? sprintf("%.2f", a / x) : "-")
			}
			printf "\n"
		}
		for (f = 4; f <= 6; f += 2) {
			e = m["BenchmarkEmptyXDP/ipv" f]
			if (e != "") printf "%-20s %10s   (empty XDP program: the BPF_PROG_TEST_RUN floor in every figure)\n", "empty/ipv" f, e
		}
		printf "\none operation alone (BenchmarkLookupFloor, median ns/pkt, floor included):\n"
		nops = split("empty array array-source table-exact-v4 hash-exact-v4 table-prefix-v4 hash-prefix-v4 lpm-trie-v4 ktime-boot-ns jiffies64", ops, " ")
		for (o = 1; o <= nops; o++) {
			x = m["BenchmarkLookupFloor/" ops[o]]
			if (x != "") printf "  %-18s %8s\n", ops[o], x
		}
	}' "$raw"
echo
echo "targets: every aegis path <= 0.5 x xdp-filter on the same packet, and < 67 ns (14.88 Mpps on one core)."
echo "xdp-filter drops the drop-prefix packet by its one listed address (no prefixes) and passes the rate-limited SYN (no rate limits)."

[[ $COLD == 1 ]] || exit 0
echo
cold=(go test -run '^$' -bench 'Cold$' -benchtime="$COLD_BENCHTIME" -count="$COLD_COUNT" ./internal/shield/)
echo "running: AEGIS_PEER_PROG_ID=$peer_ids ${cold[*]}"
rawc="$tmp/cold.txt"
(cd "$repo" && AEGIS_PEER_PROG_ID=$peer_ids "${cold[@]}") | tee "$rawc" | grep -E '^(Benchmark|ok|FAIL|---)' | sed 's/^/  /' || true
grep -q '^ok' "$rawc" || die "go test failed (output above)"
flood=(go test -run '^$' -bench 'BenchmarkFlood$' -benchtime="${FLOOD_N}x" -count=1 ./internal/shield/)
echo "running: ${flood[*]}"
(cd "$repo" && "${flood[@]}") | tee -a "$rawc" | grep -E '^(Benchmark|ok|FAIL|---)' | sed 's/^/  /' || true
[[ -n ${OUT:-} ]] && cat "$rawc" >>"$OUT"
echo
awk "$medians"'
	END {
		for (k in vals) {
			m[k] = median(vals[k])
			if (k ~ /^BenchmarkPeerXDPFilterCold\//) { split(k, parts, "/"); peers[parts[2]] = 1 }
		}
		np = 0
		for (pn in peers) plist[++np] = pn
		for (i = 1; i <= np; i++) for (j = i + 1; j <= np; j++) if (plist[j] < plist[i]) { t = plist[i]; plist[i] = plist[j]; plist[j] = t }
		printf "%-26s %10s", "cold case (median ns/pkt)", "aegis"
		for (i = 1; i <= np; i++) printf " %16s %7s", plist[i], "ratio"
		printf "\n"
		split("ipv4/pass-one-source ipv4/pass ipv4/drop-exact ipv4/drop-prefix ipv6/pass-one-source ipv6/pass ipv6/drop-exact ipv6/drop-prefix", cases, " ")
		for (c = 1; c <= 8; c++) {
			a = m["BenchmarkDataPathCold/" cases[c]]
			printf "%-26s %10s", cases[c], a
			for (i = 1; i <= np; i++) {
				x = m["BenchmarkPeerXDPFilterCold/" plist[i] "/" cases[c]]
				printf " %16s %7s", x, (x > 0 ? sprintf("%.2f", a / x) : "-")
			}
			printf "\n"
		}
		for (f = 4; f <= 6; f += 2) {
			e = m["BenchmarkEmptyXDPCold/ipv" f]
			if (e != "") printf "%-26s %10s   (empty program, one repeat a call: the floor of every cold figure)\n", "empty/ipv" f, e
		}
		if (m["BenchmarkFlood"] != "") printf "%-26s %10s   (distinct IPv4 sources through the limiter)\n", "flood", m["BenchmarkFlood"]
	}' "$rawc"
