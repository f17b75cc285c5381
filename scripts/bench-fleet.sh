#!/usr/bin/env bash
# bench-fleet.sh - the fleet's measured figures (issue 14) in their full form,
# on this machine: hubs and edges as processes and goroutines on loopback.
#
# Run as root (the edges load their shields):  sudo scripts/bench-fleet.sh
#
# It runs, with AEGIS_FLEET_FULL=1, the tests whose short forms run in
# make test, and prints each one's measured line:
#   - propagation: 10,000 single changes at 100/s, hub ack -> entry synced
#     into each of 3 real edges' BPF maps, p50/p99   (node.TestFleetPropagation)
#   - partition: 60 s cut (TCP proxy) with 2,000 adds and 500 removals on the
#     hub; time for the edge to match the hub after healing
#                                                    (node.TestEdgeRidesOutAPartition)
#   - 100 lightweight edges (follower + recorder), 10,000 changes, p50/p99
#                                                    (follow.TestManyEdgesConverge)
#   - 100 edges reconnecting after a 60 s outage     (follow.TestManyEdgesReconnectAfterOutage)
#   - a 100,000-entry batch-signed import to 3 lightweight edges
#                                                    (follow.TestImportReachesEdges)
#   - the same import to 3 real edges (shield maps, store, audit)
#                                                    (node.TestFleetImportReachesRealEdges)
#   - the same import as the operator runs it: `aegis fleet block import` and
#     3 `aegis node` edges as processes, with each side's CPU; then again
#     with one Go scheduler thread per process (AEGIS_FLEET_GOMAXPROCS=1)
#                                                    (cmd/aegis TestFleetImportReachesEdgeProcesses)
#   - three-hub R3 cluster losing its leader         (hub.TestClusterSurvivesLeaderLoss)
#   - an edge SIGKILLed during a stream              (cmd/aegis TestEdgeKilledDuringAStream)
# Takes about 8 minutes. ONLY=regexp narrows the set.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[ "$(id -u)" -eq 0 ] || { echo "bench-fleet: run as root" >&2; exit 1; }
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

export AEGIS_FLEET_FULL=1
run() {
	local pkg=$1 test=$2
	if [ -n "${ONLY:-}" ] && ! [[ $test =~ $ONLY ]]; then return; fi
	echo "== $test ($pkg)"
	go test -count=1 -timeout 30m -v -run "^${test}\$" "$pkg" 2>&1 |
		grep -E '^\s+\S+_test\.go:[0-9]+: |^(--- |ok|FAIL)' || true
}
echo "machine: $(nproc) CPUs, $(uname -r), $(date -u +%FT%TZ)"
run ./internal/node TestFleetPropagation
run ./internal/node TestEdgeRidesOutAPartition
run ./internal/fleet/follow TestManyEdgesConverge
run ./internal/fleet/follow TestManyEdgesReconnectAfterOutage
run ./internal/fleet/follow TestImportReachesEdges
run ./internal/node TestFleetImportReachesRealEdges
run ./cmd/aegis TestFleetImportReachesEdgeProcesses
# The same with one Go scheduler thread per process: the five processes
# share two cores here (docs/BENCHMARKS.md gives both).
AEGIS_FLEET_GOMAXPROCS=1 run ./cmd/aegis TestFleetImportReachesEdgeProcesses
run ./internal/fleet/hub TestClusterSurvivesLeaderLoss
run ./cmd/aegis TestEdgeKilledDuringAStream
