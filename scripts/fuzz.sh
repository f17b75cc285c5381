#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target in the module for a short run each. The
# budget is an execution count, not a duration: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a duration expires
# (go.dev/issue/75804).
set -euo pipefail
fuzztime="${1:-200000x}"
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz: $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
