#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target in the module for a short run each. The
# budget is an execution count, not a duration: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a duration expires
# (go.dev/issue/75804). A target whose inputs are expensive (compiling a Wasm
# module, say) sets its own count with a comment in its test file:
#   // fuzzcount: FuzzName 5000x
set -euo pipefail
fuzztime="${1:-200000x}"
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		count=$(grep -ho "^// fuzzcount: ${target} [0-9]*x\$" "$dir"/*_test.go 2>/dev/null | awk '{print $4}' | head -1 || true)
		count="${count:-$fuzztime}"
		echo "fuzz: $pkg $target ($count)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$count" "$pkg"
	done
done
