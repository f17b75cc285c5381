#!/usr/bin/env bash
# install-deps.sh installs what building and testing aegis needs on Debian 12:
# clang/llvm and the libbpf headers for the XDP program, bpftool, xdp-tools
# (xdp-filter, the benchmark peer) and iproute2 for the namespace tests.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v bpftool >/dev/null || need+=(bpftool)
command -v xdp-filter >/dev/null || need+=(xdp-tools)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
[ -d "/usr/include/$(uname -m)-linux-gnu/asm" ] || need+=(linux-libc-dev)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${need[*]}; run as root to install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
