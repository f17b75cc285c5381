#!/usr/bin/env bash
# install-deps.sh installs what building and testing aegis needs on Debian 12:
# clang/llvm and the libbpf headers for the XDP program, bpftool, xdp-tools
# (xdp-filter, the benchmark peer), iproute2 for the namespace tests, and
# the WebAssembly toolchain for the example functions and test fixtures (wabt's
# wat2wasm, wasi-libc, lld and the wasm32 compiler runtime), and bubblewrap,
# the sandbox benchmark's peer. The kernel
# matrix's own needs (QEMU, busybox) are installed by scripts/kernels/install.sh.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v bpftool >/dev/null || need+=(bpftool)
command -v xdp-filter >/dev/null || need+=(xdp-tools)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
[ -d "/usr/include/$(uname -m)-linux-gnu/asm" ] || need+=(linux-libc-dev)
command -v wat2wasm >/dev/null || need+=(wabt)
command -v bwrap >/dev/null || need+=(bubblewrap)
[ -f /usr/include/wasm32-wasi/stdio.h ] || need+=(wasi-libc)
command -v wasm-ld >/dev/null || command -v wasm-ld-14 >/dev/null || need+=(lld)
ls /usr/lib/llvm-14/lib/clang/14*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev-wasm32)

if [ ${#need[@]} -eq 0 ]; then
	exec "$(dirname "$0")/kernels/install.sh"
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${need[*]}; run as root to install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
exec "$(dirname "$0")/kernels/install.sh"
