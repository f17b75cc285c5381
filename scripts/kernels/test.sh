#!/usr/bin/env bash
# test.sh runs the privileged test packages on each kernel of the matrix,
# the kernels side by side: every kernel is booted under QEMU (TCG) once per
# test package by the `go test -exec` wrapper internal/vmtest/cmd/vmexec. It
# prints one summary line per kernel and fails if any package failed on any
# kernel.
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
#   KERNEL_BUDGET      minutes the whole matrix may take (default 60): a
#                      kernel still running when it is spent is stopped and
#                      fails, so a hang cannot push CI past its hard limit
#   KERNEL_DEADLINE    epoch seconds by which the matrix must end, if sooner
#                      (make test passes its start plus TEST_MINUTES)
#   KERNEL_SEQUENTIAL  1: boot the kernels one after the other instead of
#                      side by side (e.g. on a machine shared with benchmarks)
#   AEGIS_TEST_TIMESCALE  fixes the time scale instead of measuring it (see
#                      internal/testutil/timescale); it reaches the guests
#
# The timeouts scale with this host's speed (`vmexec -timescale`: about 1 on
# an idle machine of the CI class, more on a slower or busier one): each
# package's go test -timeout is 10 minutes times the scale, within 10 to 30
# minutes; the guest's bound is 2 minutes more. Inside the guest the tests
# scale their own budgets by the guest's speed (docs/KERNELS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

kernels=(${KERNELS:-6.1 6.12})
candidates=(${KERNEL_PKGS:-./internal/shield ./internal/testutil ./internal/kernelprobe ./internal/bpfguard ./internal/privilege ./internal/sandbox ./internal/executor})
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

scale=$("$tmp/vmexec" -timescale)
pkg_timeout=$(awk -v s="$scale" 'BEGIN { m = 10 * s; if (m < 10) m = 10; if (m > 30) m = 30; printf "%d", m }')
budget=$((${KERNEL_BUDGET:-60} * 60))
matrix_start=$(date +%s)
if [ -n "${KERNEL_DEADLINE:-}" ] && [ $((KERNEL_DEADLINE - matrix_start)) -lt $budget ]; then
	budget=$((KERNEL_DEADLINE - matrix_start))
fi
echo "test-kernels: time scale $scale here: go test -timeout ${pkg_timeout}m a package, the matrix within $((budget / 60))m"

# run_kernel runs the packages on kernel i and writes its summary line to
# $tmp/summary.i and its status (0 or 1) to $tmp/status.i.
run_kernel() {
	local i=$1 k=${kernels[$1]} dir=${dirs[$1]} release start left result status
	release=$(ls "$dir/lib/modules")
	echo "test-kernels: kernel $k ($release): ${pkgs[*]}"
	start=$(date +%s)
	left=$((budget - (start - matrix_start)))
	# -p 1: one guest at a time per kernel, each emulating two CPUs. The
	# wrapper's bound sits above go test's own -timeout; timeout(1) stops
	# the whole process group (go test, vmexec, QEMU) when the matrix's
	# budget is spent.
	if [ "$left" -le 0 ]; then
		echo "test-kernels: kernel $k: the matrix's budget of $((budget / 60))m is spent" >&2
		result="FAIL (budget spent)" status=1
	elif CGO_ENABLED=0 timeout -k 30s "${left}s" go test -count=1 -p 1 -timeout "${pkg_timeout}m" \
		-exec "$tmp/vmexec -kernel $dir -timeout $((pkg_timeout + 2))m$sysctls" "${flags[@]}" "${pkgs[@]}"; then
		result=PASS status=0
	else
		status=$?
		result=FAIL
		if [ $status -eq 124 ] || [ $status -eq 137 ]; then
			result="FAIL (stopped: the matrix's budget of $((budget / 60))m is spent)"
		fi
		status=1
	fi
	echo "kernel $k ($release): $result, ${#pkgs[@]} packages in $(($(date +%s) - start))s" >"$tmp/summary.$i"
	echo $status >"$tmp/status.$i"
}

# The kernels run side by side (KERNEL_SEQUENTIAL=1: one after the other),
# each line of output prefixed with its kernel. A guest's tests keep one
# emulated CPU busy most of the time, so on the 2-core CI machine two
# guests at once end the matrix in about 8 minutes where one after the
# other took 11 or more (docs/KERNELS.md, "Cost").
if [ "${KERNEL_SEQUENTIAL:-0}" = 1 ] || [ ${#kernels[@]} -eq 1 ]; then
	for i in "${!kernels[@]}"; do
		run_kernel "$i"
	done
else
	pids=()
	for i in "${!kernels[@]}"; do
		run_kernel "$i" 2>&1 | sed -u "s/^/[${kernels[$i]}] /" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || true
	done
fi
failed=0
for i in "${!kernels[@]}"; do
	if [ -f "$tmp/summary.$i" ]; then
		echo "test-kernels: $(cat "$tmp/summary.$i")"
	else
		echo "test-kernels: kernel ${kernels[$i]}: FAIL (no result)"
	fi
	[ "$(cat "$tmp/status.$i" 2>/dev/null)" = 0 ] || failed=1
done
exit $failed
