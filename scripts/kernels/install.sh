#!/usr/bin/env bash
# install.sh installs what the kernel matrix (make test-kernels) needs on the
# host: QEMU for x86 and a static busybox for the guest's shell tools. The
# kernels themselves are not installed on the host: fetch.sh downloads and
# unpacks them into a cache directory.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx nsenter || need+=(busybox-static)
command -v dpkg-deb >/dev/null || need+=(dpkg)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "kernels/install: missing ${need[*]}; run as root to install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
