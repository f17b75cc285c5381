#!/usr/bin/env bash
# fetch.sh downloads the Debian kernels the matrix boots and unpacks each into
# the cache directory (default /var/cache/aegis-kernels, or $AEGIS_KERNEL_CACHE):
#
#   $cache/<package version>/vmlinuz            the kernel image
#   $cache/<package version>/config             the kernel's build configuration
#   $cache/<package version>/lib/modules/<r>/   its modules and modules.dep
#   $cache/<series> -> <package version>        6.1, 6.12: the current one
#
# The exact package is resolved from Debian's meta-packages at each run, so a
# security update moves the matrix to the new kernel without an edit here.
# Packages are downloaded with apt-get download and unpacked with dpkg-deb:
# nothing is installed on the host.
#
# Usage: fetch.sh [series...]   (default: 6.1 6.12); prints one cache
# directory per series.
set -euo pipefail

cache="${AEGIS_KERNEL_CACHE:-/var/cache/aegis-kernels}"
series=("$@")
[ ${#series[@]} -gt 0 ] || series=(6.1 6.12)

# meta names the Debian meta-package that tracks a kernel series on the
# cloud flavour (bookworm: 6.1 is the release kernel, 6.12 comes as a
# separate series).
meta() {
	case "$1" in
	6.1) echo linux-image-cloud-amd64 ;;
	*) echo "linux-image-$1-cloud-amd64" ;;
	esac
}

# resolve prints the versioned image package the meta-package depends on,
# preferring its -unsigned twin (same kernel, without the signed-EFI wrapper
# that secure boot needs and QEMU does not).
resolve() {
	local pkg
	pkg=$(apt-cache depends "$(meta "$1")" 2>/dev/null |
		awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$pkg" ]; then
		return 1
	fi
	case "$pkg" in
	"linux-image-$1"[.-]*) ;;
	*)
		echo "kernels/fetch: $(meta "$1") depends on $pkg, not a $1 kernel" >&2
		return 1
		;;
	esac
	if apt-cache show "$pkg-unsigned" >/dev/null 2>&1; then
		pkg="$pkg-unsigned"
	fi
	echo "$pkg"
}

mkdir -p "$cache"
for s in "${series[@]}"; do
	pkg=$(resolve "$s") || {
		# The package lists may be missing or stale on a fresh machine.
		apt-get update -qq
		pkg=$(resolve "$s") || { echo "kernels/fetch: no Debian package for kernel $s" >&2; exit 1; }
	}
	version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
	dir="$cache/${pkg}_${version}"
	if [ ! -f "$dir/vmlinuz" ]; then
		tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		# The download lands in a root-only directory: no _apt sandbox. Stale
		# package lists name a version the mirror no longer has: refresh once.
		download() { (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$version" >/dev/null); }
		if ! download; then
			apt-get update -qq
			version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
			dir="$cache/${pkg}_${version}"
			download
		fi
		dpkg-deb -x "$tmp"/*.deb "$tmp/root"
		mkdir -p "$tmp/out/lib"
		mv "$tmp"/root/boot/vmlinuz-* "$tmp/out/vmlinuz"
		mv "$tmp"/root/boot/config-* "$tmp/out/config"
		mv "$tmp/root/lib/modules" "$tmp/out/lib/modules"
		# The package leaves modules.dep to depmod at install time.
		release=$(ls "$tmp/out/lib/modules")
		busybox depmod -b "$tmp/out" "$release"
		rm -rf "$dir"
		mv "$tmp/out" "$dir"
		rm -rf "$tmp"
		trap - EXIT
	fi
	ln -sfn "$(basename "$dir")" "$cache/$s"
	echo "$cache/$s"
done
