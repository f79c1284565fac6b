#!/bin/sh
# SPDX-License-Identifier: MIT
# A real VMM on uiommu: QEMU (TCG, no KVM) boots a Debian kernel with a busybox initramfs and,
# in the passthrough modes, passes a dma-test function (docs/dma-test.md) and a virtio-rng
# function (docs/virtio.md) through with -device vfio-pci, under uiommu-run. A guest program
# drives dma-test through its sysfs resource0 and checks every byte; the guest kernel's own
# virtio_pci and virtio_rng drivers take the other function and the guest reads /dev/hwrng.
# The guest's memory is QEMU's memory, which QEMU maps into the VFIO container or its IOAS, so
# every byte either device moves goes through uiommu's translation.
#
#   tests/qemu/run.sh [-b BUILD_DIR] [-m MODE] [-q QEMU] [-t SECONDS] [--topology FILE]
#                     [--bdf BDF]... [--strace FILE] [--keep]
#
#   -b BUILD_DIR    a uiommu meson build directory (default: build beside tests/)
#   -m boot         boot the guest without any VFIO device (proves the guest and this script)
#   -m vfio         (default) pass the functions through the legacy group/container path
#                   (-device vfio-pci,host=BDF) and drive them from the guest
#   -m iommufd      the same through QEMU's iommufd backend: -object iommufd,id=iommufd0 and
#                   -device vfio-pci,host=BDF,iommufd=iommufd0 (QEMU >= 9: see -q)
#   -m iommufd-fd   the same with the fds opened by QEMU's parent, as a management layer
#                   does: a shell opens /dev/iommu and each function's /dev/vfio/devices/vfioN
#                   and execs QEMU with -object iommufd,id=iommufd0,fd=N and
#                   -device vfio-pci,fd=M,iommufd=iommufd0 (QEMU is then another process
#                   than the one serving its files: docs/processes.md)
#   -q QEMU         the qemu-system-x86_64 to run (default: Debian 12's on PATH for boot and
#                   vfio; for the iommufd modes the one tools/qemu-build.sh built and cached,
#                   and without one the run is skipped, exit status 77). A QEMU other than
#                   the system's gets Debian 12's firmware (-L /usr/share/seabios
#                   -L /usr/share/qemu)
#   -t SECONDS      kill QEMU after this long (default 180) and fail
#   --topology FILE the emulated machine (default: tests/qemu/topology.json)
#   --bdf BDF       a function to pass through; once per function (default 0000:05:00.0, the
#                   dma-test, and 0000:09:00.0, the virtio-rng). The guest expects one of each
#   --strace FILE   run QEMU under strace -f (openat, ioctl, mmap, readlink...) into FILE
#   --keep          keep the work directory (initramfs, serial log) and print its path
#
# Debian's packages (the kernel image, busybox-static) are fetched with `apt-get download`
# into a cache directory ($UIOMMU_QEMU_CACHE, default ${TMPDIR:-/tmp}/uiommu-qemu-cache) and
# used from there; nothing of them enters the repository. qemu-system-x86 is installed the
# way tools/deps.sh installs everything else.
#
# The exit status is 0 when the guest printed its PASS line, 77 (skip) only when the
# downloads are impossible (the Debian mirror cannot be reached) or an iommufd mode has no
# QEMU built by tools/qemu-build.sh (this script never builds QEMU), 2 on a usage error and 1
# on any other failure: a guest FAIL line, no verdict, a timeout, a build or setup error.
set -eu

usage() {
	sed -n '/^#   tests\/qemu/,/^# Debian/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="$repo/build"
mode=vfio
limit=180
topology="$here/topology.json"
bdfs=""
qemu=""
strace_out=""
keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	-b) [ $# -ge 2 ] || usage; build=$(cd "$2" && pwd); shift 2 ;;
	-m) [ $# -ge 2 ] || usage; mode=$2; shift 2 ;;
	-q) [ $# -ge 2 ] || usage; qemu=$2; shift 2 ;;
	-t) [ $# -ge 2 ] || usage; limit=$2; shift 2 ;;
	--topology) [ $# -ge 2 ] || usage; topology=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
	--bdf) [ $# -ge 2 ] || usage; bdfs="$bdfs $2"; shift 2 ;;
	--strace) [ $# -ge 2 ] || usage; strace_out=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) usage ;;
	esac
done
case "$mode" in boot|vfio|iommufd|iommufd-fd) ;; *) usage ;; esac
[ -n "$bdfs" ] || bdfs="0000:05:00.0 0000:09:00.0"

say() { echo "qemu-test: $*"; }
die() { echo "qemu-test: FAIL: $*" >&2; exit 1; }

# A download that fails is a skip only when the mirror cannot be reached at all; anything
# else (no root, a broken package) is a failure.
skip_or_die() {
	if ! getent hosts deb.debian.org >/dev/null 2>&1; then
		echo "qemu-test: SKIP: $* and deb.debian.org cannot be resolved (no network)" >&2
		exit 77
	fi
	die "$*"
}

# QEMU itself: Debian 12's, as tools/deps.sh installs the project's other packages. Its
# package also brings the firmware (SeaBIOS, the option ROMs) that a QEMU built from Debian's
# source package, which carries none, runs with.
. "$repo/tools/deps.sh"
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	UIOMMU_DEPS="" uiommu_install_deps qemu-system-x86 ||
		skip_or_die "cannot install qemu-system-x86"
fi
case "$mode" in
iommufd*)
	if [ -z "$qemu" ]; then
		qemu=$("$repo/tools/qemu-build.sh" -q) || {
			echo "qemu-test: SKIP: mode $mode needs QEMU >= 9 and none is built;" \
				"tools/qemu-build.sh builds one (docs/qemu.md)" >&2
			exit 77
		}
	fi
	;;
esac
if [ -n "$qemu" ]; then
	[ -x "$qemu" ] || die "$qemu is not an executable"
	qemu=$(cd "$(dirname "$qemu")" && pwd)/$(basename "$qemu")
	case "$mode" in
	iommufd*)
		"$qemu" -object help 2>/dev/null | grep -qx ' *iommufd' ||
			die "$qemu has no iommufd object (QEMU >= 9 has: tools/qemu-build.sh)"
		;;
	esac
fi
command -v gcc >/dev/null 2>&1 || die "gcc is missing (tools/deps.sh installs it)"

runner="$build/tools/uiommu-run"
[ -x "$runner" ] || die "$runner is missing; build uiommu first (meson setup build && ninja -C build)"

cache=${UIOMMU_QEMU_CACHE:-${TMPDIR:-/tmp}/uiommu-qemu-cache}
mkdir -p "$cache"

# Downloads package $1 into the cache unless a .deb of it is there; prints the file's path.
fetch_deb() {
	pkg=$1
	deb=$(ls "$cache/${pkg}_"*.deb 2>/dev/null | tail -n 1 || true)
	if [ -z "$deb" ]; then
		if ! (cd "$cache" && apt-get download "$pkg" >"$cache/apt-download.log" 2>&1); then
			# A fresh machine may have no package lists yet.
			if [ "$(id -u)" = 0 ]; then
				apt-get update -qq >/dev/null 2>&1 || true
			elif command -v sudo >/dev/null 2>&1; then
				sudo apt-get update -qq >/dev/null 2>&1 || true
			fi
			(cd "$cache" && apt-get download "$pkg" >"$cache/apt-download.log" 2>&1) || {
				cat "$cache/apt-download.log" >&2
				skip_or_die "apt-get download $pkg failed"
			}
		fi
		deb=$(ls "$cache/${pkg}_"*.deb | tail -n 1)
	fi
	echo "$deb"
}

# The kernel: the image linux-image-amd64 points at today.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
	[ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 || true
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
fi
[ -n "$kpkg" ] || skip_or_die "apt-cache knows no linux-image-amd64"
kernel="$cache/$kpkg.vmlinuz"
if [ ! -s "$kernel" ]; then
	kdeb=$(fetch_deb "$kpkg")
	kx=$(mktemp -d "$cache/kx.XXXXXX")
	dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$kx" --wildcards './boot/vmlinuz-*'
	mv "$kx"/boot/vmlinuz-* "$kernel.tmp" && mv "$kernel.tmp" "$kernel"
	rm -rf "$kx"
fi
# The guest's virtio drivers are modules in Debian's kernel: the six the virtio-rng function
# needs, in load order, come from the same package.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio-rng"
kmods="$cache/$kpkg.modules"
if [ ! -f "$kmods/virtio-rng.ko" ]; then
	kdeb=$(fetch_deb "$kpkg")
	kx=$(mktemp -d "$cache/kx.XXXXXX")
	for m in $modules; do
		echo "./lib/modules/*/kernel/drivers/*/$m.ko"
		echo "./lib/modules/*/kernel/drivers/*/*/$m.ko"
	done >"$kx.list"
	dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$kx" --wildcards -T "$kx.list" 2>/dev/null || true
	mkdir -p "$kx/flat"
	find "$kx/lib" -name '*.ko' -exec cp {} "$kx/flat/" \;
	for m in $modules; do
		[ -f "$kx/flat/$m.ko" ] || die "$m.ko is not in $kdeb"
	done
	rm -rf "$kmods" && mv "$kx/flat" "$kmods"
	rm -rf "$kx" "$kx.list"
fi
busybox="$cache/busybox"
if [ ! -x "$busybox" ]; then
	bdeb=$(fetch_deb busybox-static)
	bx=$(mktemp -d "$cache/bx.XXXXXX")
	dpkg-deb -x "$bdeb" "$bx"
	mv "$bx/bin/busybox" "$busybox.tmp" && mv "$busybox.tmp" "$busybox"
	rm -rf "$bx"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/uiommu-qemu.XXXXXX")
cleanup() {
	if [ "$keep" = 1 ]; then say "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The initramfs: busybox, /init and the guest program, built now with the host's compiler.
root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules"
cp "$kmods"/*.ko "$root/lib/modules/"
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -o "$root/uiommu-guest-dma" \
	"$here/guest-dma.c" || die "the guest program does not compile"
(cd "$root" && find . | "$busybox" cpio -o -H newc >"$work/initrd.cpio" 2>/dev/null) ||
	die "packing the initramfs failed"

# The guest does the same in every passthrough mode: only how QEMU reaches the host differs.
guest_mode=vfio
[ "$mode" = boot ] && guest_mode=boot
set -- "${qemu:-qemu-system-x86_64}" -machine pc -accel tcg -cpu max -m 256M -smp 1 \
	-nographic -serial stdio -monitor none -vga none -nodefaults -no-reboot \
	-kernel "$kernel" -initrd "$work/initrd.cpio" \
	-append "console=ttyS0 panic=-1 quiet uiommu_mode=$guest_mode"
[ -n "$qemu" ] && set -- "$@" -L /usr/share/seabios -L /usr/share/qemu
case "$mode" in
vfio)
	for bdf in $bdfs; do
		set -- "$@" -device "vfio-pci,host=$bdf"
	done
	;;
iommufd)
	set -- "$@" -object iommufd,id=iommufd0
	for bdf in $bdfs; do
		set -- "$@" -device "vfio-pci,host=$bdf,iommufd=iommufd0"
	done
	;;
iommufd-fd)
	# QEMU's parent (a bash under uiommu-run, as libvirt would be) opens the nodes itself:
	# bash picks each fd number ({var} redirections: free numbers from 10 up) and QEMU
	# inherits them across exec. A function's cdev is the one its sysfs vfio-dev/ names.
	command -v bash >/dev/null 2>&1 || die "bash is missing (mode iommufd-fd opens the fds with it)"
	# shellcheck disable=SC2016 # the script is bash's, expanded there
	opener='set -e
for bdf in $UIOMMU_QEMU_BDFS; do
	node=$(ls "/sys/bus/pci/devices/$bdf/vfio-dev")
	exec {fd}<>"/dev/vfio/devices/$node"
	set -- "$@" -device "vfio-pci,fd=$fd,iommufd=iommufd0"
	echo "qemu-test: $bdf is /dev/vfio/devices/$node, fd $fd"
done
exec {iommufd}<>/dev/iommu
echo "qemu-test: /dev/iommu is fd $iommufd"
exec "$@" -object "iommufd,id=iommufd0,fd=$iommufd"'
	set -- bash -c "$opener" bash "$@"
	;;
esac
if [ -n "$strace_out" ]; then
	set -- strace -f -o "$strace_out" -e trace=openat,open,ioctl,mmap,munmap,readlink,readlinkat,stat,newfstatat,statx,access,faccessat,eventfd2,pread64,pwrite64 "$@"
fi
if [ "$mode" = boot ]; then
	say "kernel $kpkg, mode boot, limit ${limit}s"
else
	say "kernel $kpkg, mode $mode:$bdfs of $(basename "$topology"), limit ${limit}s"
fi
[ -z "$qemu" ] || say "QEMU $qemu: $("$qemu" --version | head -n 1)"
log="$work/serial.log"
start=$(date +%s)
# Bounded: a hung guest, a QEMU that waits on a device, anything, is killed at the limit
# (SIGTERM, then SIGKILL 10 s later).
status=0
UIOMMU_QEMU_BDFS=$bdfs timeout -k 10 "$limit" "$runner" --topology "$topology" "$@" \
	</dev/null >"$log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))

tr -d '\r' <"$log" >"$log.txt"
echo "---- QEMU and the guest's console ($elapsed s)"
cat "$log.txt"
echo "----"
verdict=$(grep '^UIOMMU-GUEST: \(PASS\|FAIL\)' "$log.txt" | tail -n 1 || true)
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
	die "QEMU was killed after ${limit}s; last verdict: ${verdict:-none}"
fi
if grep -q '^UIOMMU-GUEST: FAIL' "$log.txt"; then
	die "the guest failed: $(grep '^UIOMMU-GUEST: FAIL' "$log.txt" | head -n 1)"
fi
if [ "$verdict" != "UIOMMU-GUEST: PASS $guest_mode" ]; then
	die "no PASS line from the guest (QEMU exit status $status)"
fi
[ "$status" = 0 ] || die "the guest passed but QEMU exited with status $status"
say "PASS ($mode, ${elapsed}s)"
