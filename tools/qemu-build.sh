#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds a QEMU new enough for `-object iommufd` (QEMU >= 9) from Debian's own source package,
# for the guest test's iommufd modes (tests/qemu/run.sh -m iommufd, docs/qemu.md). Debian 12
# ships QEMU 7.2, which only knows the legacy group/container path.
#
#   tools/qemu-build.sh [-u] [-q]
#
#   -u    look for a newer source package even when a build is cached, and build it if there is
#   -q    only print the path of the cached binary (exit 1 when there is none); fetches nothing
#
# What it does, all outside the repository, in $UIOMMU_CACHE_DIR (default:
# ${XDG_CACHE_HOME:-$HOME/.cache}/uiommu), the cache tools/kselftest-lib.sh uses too:
#
#   qemu-apt/      a private apt state (its own sources.list with Debian 13's deb and deb-src
#                  lines, lists, cache, an empty dpkg status): the system's apt configuration is
#                  left alone and no source line is added to /etc/apt
#   qemu-VERSION/  the source package of `qemu` from trixie, fetched with `apt-get source
#                  --download-only` (apt checks each file's hash against the signed Sources
#                  index) and unpacked with dpkg-source (Debian's patches applied); inside it
#                  .uiommu-meson/ holds trixie's meson (QEMU 10 needs meson >= 1.5, bookworm has
#                  1.0; Debian's tarball has no bundled meson wheel) and build/ the build
#
# The build is a minimal qemu-system-x86_64: TCG only, every optional feature off
# (--without-default-features), and only the i440fx PC and vfio-pci as devices
# (--without-default-devices plus a three-line device list: those two and the iommufd
# backend). Debian's tarball carries no firmware: the binary runs with Debian 12's SeaBIOS and
# option ROMs (`-L /usr/share/seabios -L /usr/share/qemu`, packages seabios and
# qemu-system-data). The build runs under `nice ninja -j2`; about 1,300 steps.
#
# A finished build is marked with qemu-VERSION/.uiommu-complete and reused by later runs
# without any network (a run with -u refreshes the lists first). The last line printed is the
# binary's path. The exit status is 0 on success, 1 when the build fails, 2 on a usage error
# and 4 when the sources cannot be fetched.
set -eu

usage() {
	sed -n '/^#   tools\/qemu-build/,/^#   -q/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

update=0
query=0
while [ $# -gt 0 ]; do
	case "$1" in
	-u) update=1; shift ;;
	-q) query=1; shift ;;
	*) usage ;;
	esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uiommu}
apt_dir="$cache/qemu-apt"
me=$(basename "$0")

say() { echo "# $*"; }
fetch_fail() {
	echo "$me: FETCH FAILED: $*" >&2
	echo "$me: the QEMU sources come from Debian's archive (deb.debian.org); run with a network" >&2
	exit 4
}
build_fail() {
	echo "$me: BUILD FAILED: $*" >&2
	exit 1
}

# The newest finished build in the cache, by package version.
cached_build() {
	best="" bestv=""
	for d in "$cache"/qemu-*/; do
		d=${d%/}
		if [ ! -f "$d/.uiommu-complete" ] || [ ! -x "$d/build/qemu-system-x86_64" ]; then
			continue
		fi
		v=$(cat "$d/.uiommu-complete")
		if [ -z "$bestv" ] || dpkg --compare-versions "$v" gt "$bestv"; then
			best=$d bestv=$v
		fi
	done
	[ -n "$best" ] && echo "$best/build/qemu-system-x86_64"
}

if [ "$query" = 1 ]; then
	cached_build || exit 1
	exit 0
fi
if [ "$update" = 0 ] && bin=$(cached_build); then
	say "QEMU: $("$bin" --version | head -n 1) (cached)"
	echo "$bin"
	exit 0
fi

# The build's packages, from Debian 12, as the project's other scripts install theirs.
. "$repo/tools/deps.sh"
# (meson's package depends on python3-setuptools; QEMU needs glib and zlib, and libfdt for
# the PC machines' device trees.)
UIOMMU_DEPS="" uiommu_install_deps gcc pkg-config ninja-build python3-venv python3-setuptools \
	libglib2.0-dev zlib1g-dev flex bison libfdt-dev dpkg-dev xz-utils debian-archive-keyring \
	seabios qemu-system-data ||
	build_fail "cannot install the build dependencies"

# The private apt state, made and refreshed as the kernel selftests' runners make theirs (a
# state of its own: theirs lists sid and experimental).
. "$repo/tools/kselftest-lib.sh"
kselftest_fetch_fail() { fetch_fail "$@"; }
papt() { kselftest_papt "$@"; }
say "fetching the package lists of Debian 13 (private apt state: $apt_dir)"
kselftest_apt_update "$apt_dir" "deb trixie" "deb-src trixie"

# The newest source version of qemu (a suite may list more than one).
ver=""
for v in $(papt apt-cache showsrc qemu | sed -n 's/^Version: //p'); do
	if [ -z "$ver" ] || dpkg --compare-versions "$v" gt "$ver"; then
		ver=$v
	fi
done
[ -n "$ver" ] || fetch_fail "no qemu source package in trixie's lists"
src="$cache/qemu-${ver#*:}"
if [ -f "$src/.uiommu-complete" ] && [ -x "$src/build/qemu-system-x86_64" ]; then
	say "QEMU $ver is built already"
	echo "$src/build/qemu-system-x86_64"
	exit 0
fi

dl="$cache/qemu-dl"
rm -rf "$dl" "$src"
mkdir -p "$dl"
say "downloading the source package qemu $ver and meson from trixie"
(cd "$dl" && papt apt-get source --download-only "qemu=$ver" && papt apt-get download meson) \
	>"$dl/download.log" 2>&1 ||
	{ cat "$dl/download.log" >&2; fetch_fail "apt-get source qemu=$ver / apt-get download meson"; }
# The .dsc's own signature needs debian-keyring, which is not installed; its hash, like the
# tarballs', was checked by apt against the archive's signed Sources index.
say "unpacking into $src"
# --no-copy: dpkg-source would otherwise leave a copy of the 40 MB orig tarball in $cache.
dpkg-source --no-copy -x "$dl"/qemu_*.dsc "$src" >"$dl/unpack.log" 2>&1 ||
	{ cat "$dl/unpack.log" >&2; build_fail "dpkg-source -x"; }
dpkg-deb -x "$dl"/meson_*.deb "$src/.uiommu-meson" || build_fail "cannot unpack meson"
meson_py="$src/.uiommu-meson/usr/lib/python3/dist-packages"
[ -d "$meson_py/mesonbuild" ] || build_fail "trixie's meson has no mesonbuild module"
rm -rf "$dl"

# The machine the guest test needs: the i440fx PC (its own selects bring the ISA serial port
# and the interrupt controllers), vfio-pci and the iommufd backend (only implied by the PC
# machines, and implies are off without default devices).
printf 'CONFIG_I440FX=y\nCONFIG_VFIO_PCI=y\nCONFIG_IOMMUFD=y\n' \
	>"$src/configs/devices/x86_64-softmmu/uiommu.mak"
mkdir -p "$src/build"
say "configuring (log: $src/build/configure.log)"
# configure's Python venv finds meson through PYTHONPATH (it accepts a system meson >= 1.5).
(cd "$src/build" && PYTHONPATH="$meson_py" ../configure --python=/usr/bin/python3 \
	--disable-download --disable-install-blobs --disable-werror --disable-docs \
	--target-list=x86_64-softmmu --without-default-features --enable-tcg \
	--without-default-devices --with-devices-x86_64=uiommu \
	--disable-tools --disable-guest-agent) >"$src/build/configure.log" 2>&1 ||
	{ tail -n 30 "$src/build/configure.log" >&2; build_fail "configure (log: $src/build/configure.log)"; }
# ninja re-runs meson (and meson's own helpers) from the venv: make trixie's meson part of it.
for sp in "$src"/build/pyvenv/lib/python3*/site-packages; do
	echo "$meson_py" >"$sp/uiommu-meson.pth"
done
say "building qemu-system-x86_64 (nice ninja -j2; log: $src/build/build.log)"
start=$(date +%s)
(cd "$src/build" && nice ninja -j2 qemu-system-x86_64) >"$src/build/build.log" 2>&1 ||
	{ tail -n 30 "$src/build/build.log" >&2; build_fail "ninja (log: $src/build/build.log)"; }
"$src/build/qemu-system-x86_64" -object help | grep -qx '  *iommufd' ||
	build_fail "the binary has no iommufd object"
echo "$ver" >"$src/.uiommu-complete"
say "QEMU: $("$src/build/qemu-system-x86_64" --version | head -n 1), built in $(( $(date +%s) - start )) s"
echo "$src/build/qemu-system-x86_64"
