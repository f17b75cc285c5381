#!/usr/bin/env bash
# test.sh runs the privileged test packages on each kernel of the matrix:
# every kernel is booted under QEMU (TCG) once per test package by the
# `go test -exec` wrapper internal/vmtest/cmd/vmexec. It prints one summary
# line per kernel and fails if any package failed on any kernel.
#
# Environment:
#   KERNELS            kernel series to boot (default "6.1 6.12")
#   KERNEL_PKGS        packages to run; those that do not exist yet are left
#                      out with a note (default: every package that loads
#                      eBPF, uses namespaces or seccomp)
#   KERNEL_TEST_FLAGS  extra go test flags, e.g. -run or -short
#   KERNEL_SYSCTLS     key=value kernel settings for the guests (default none:
#                      Debian's own defaults, e.g. kernel.perf_event_paranoid=3)
#   AEGIS_KERNEL_CACHE where fetch.sh keeps the kernels
set -euo pipefail
cd "$(dirname "$0")/../.."

kernels=(${KERNELS:-6.1 6.12})
candidates=(${KERNEL_PKGS:-./internal/shield ./internal/testutil ./internal/features ./internal/bpfguard ./internal/privilege ./internal/sandbox})
flags=(${KERNEL_TEST_FLAGS:-})
sysctls=""
for kv in ${KERNEL_SYSCTLS:-}; do
	sysctls+=" -sysctl $kv"
done

pkgs=()
for p in "${candidates[@]}"; do
	if ls "$p"/*_test.go >/dev/null 2>&1; then
		pkgs+=("$p")
	else
		echo "test-kernels: $p has no tests yet; left out"
	fi
done
[ ${#pkgs[@]} -gt 0 ] || { echo "test-kernels: no package to run" >&2; exit 1; }

./scripts/kernels/install.sh
dirs=($(./scripts/kernels/fetch.sh "${kernels[@]}"))

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Static: vmexec is the guest's init as well as the wrapper.
CGO_ENABLED=0 go build -o "$tmp/vmexec" ./internal/vmtest/cmd/vmexec

summary=()
failed=0
for i in "${!kernels[@]}"; do
	k=${kernels[$i]} dir=${dirs[$i]}
	release=$(ls "$dir/lib/modules")
	echo "test-kernels: kernel $k ($release): ${pkgs[*]}"
	start=$(date +%s)
	# -p 1: one guest at a time, each emulating two CPUs on this 2-core
	# machine. The wrapper's bound sits above go test's own -timeout.
	if CGO_ENABLED=0 go test -count=1 -p 1 -timeout 10m \
		-exec "$tmp/vmexec -kernel $dir -timeout 12m$sysctls" "${flags[@]}" "${pkgs[@]}"; then
		result=PASS
	else
		result=FAIL failed=1
	fi
	summary+=("kernel $k ($release): $result, ${#pkgs[@]} packages in $(($(date +%s) - start))s")
done
printf 'test-kernels: %s\n' "${summary[@]}"
exit $failed
