#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the kernel's own VFIO selftests (tools/testing/selftests/vfio/: vfio_iommufd_setup_test,
# vfio_pci_device_test, vfio_dma_mapping_test, with their libvfio) against uiommu's iommufd uAPI
# header, runs them under uiommu-run against the dma-test functions of examples/dma-test.json,
# and compares the failures and skips with tools/vfio-kselftest-expected.txt. Nothing from the
# kernel tree is copied into this repository: the programs, their private include directory and
# the logs go to a scratch directory, the fetched sources to a cache (see docs/kselftest.md).
#
#   tools/vfio-kselftest.sh [-k] [-o DIR] [-p PROG] [KERNEL_TREE] [BUILD_DIR] [-- HARNESS_ARGS...]
#
#   KERNEL_TREE   a Linux source tree (tools/testing/selftests/vfio, the kselftest headers,
#                 tools/include, tools/arch/x86/include, include/uapi/linux/{vfio,idxd,stddef}.h,
#                 include/linux/pci_ids.h and the idxd/ioat register headers are read). Without
#                 it, the newest linux-source-X.Y package of Debian (sid and experimental) is
#                 fetched with a private apt state (tools/kselftest-lib.sh); a first argument
#                 without tools/testing/selftests is taken as BUILD_DIR
#   BUILD_DIR     a uiommu meson build directory (default: build, next to this script's parent)
#   -o DIR        where to put the programs, their include directory and the logs (default: a
#                 new directory under ${TMPDIR:-/tmp}, printed at the end)
#   -p PROG       run only PROG: vfio_iommufd_setup_test, vfio_pci_device_test or
#                 vfio_dma_mapping_test (default: all three)
#   -k            compile only; do not run
#   HARNESS_ARGS  passed to each harness: -l lists the cases, -r FIXTURE.VARIANT.TEST runs one
#                 (with -p), -f/-v/-t include and -F/-V/-T exclude a fixture/variant/test
#
# Each program runs once per device: 0000:07:00.0 (a plain dma-test) given as the trailing
# argument, and 0000:05:00.0 (dma-test with ATS, PRI and PASID) through $VFIO_SELFTESTS_BDF, the
# two ways libvfio takes a BDF.
#
# The exit status is 0 when every case that failed (or skipped) is listed as expected for this
# host in tools/vfio-kselftest-expected.txt, 1 otherwise, 2 on a usage error, 3 when a program
# does not compile and 4 when the kernel sources cannot be fetched.
set -eu

usage() {
	sed -n '/^#   tools/,/^# does not compile/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tools/kselftest-lib.sh"
kselftest_parse_args "vfio_iommufd_setup_test vfio_pci_device_test vfio_dma_mapping_test" "$@"
shift "$kselftest_nargs"

if [ -z "$ktree" ]; then
	kselftest_fetch_tree vfio \
		tools/testing/selftests/vfio \
		tools/testing/selftests/kselftest_harness.h \
		tools/testing/selftests/kselftest.h \
		tools/include \
		tools/arch/x86/include \
		include/uapi/linux/vfio.h \
		include/uapi/linux/idxd.h \
		include/uapi/linux/stddef.h \
		include/linux/pci_ids.h \
		drivers/dma/idxd/registers.h \
		drivers/dma/ioat/hw.h \
		drivers/dma/ioat/registers.h \
		drivers/net/ethernet/intel/igb/e1000_regs.h \
		drivers/net/ethernet/intel/igb/e1000_82575.h \
		drivers/net/ethernet/intel/igb/e1000_defines.h
fi

st="$ktree/tools/testing/selftests"
lib="$st/vfio/lib"
for f in $(for p in $progs; do echo "$st/vfio/$p.c"; done) "$lib/libvfio.c" \
	"$st/kselftest_harness.h" "$ktree/include/uapi/linux/vfio.h" "$ktree/tools/include/linux/sizes.h"; do
	if [ ! -f "$f" ]; then
		echo "vfio-kselftest.sh: $f is missing; KERNEL_TREE must be a Linux source tree" >&2
		exit 2
	fi
done
runner="$build/tools/uiommu-run"
[ "$compile_only" = 1 ] || kselftest_need_runner "$runner"

# libvfio links libuuid (the VF token).
if ! dpkg-query -W -f='${Status}' uuid-dev 2>/dev/null | grep -q "ok installed"; then
	. "$repo/tools/deps.sh"
	uiommu_install_deps uuid-dev
fi

out=$(kselftest_scratch "$out" uiommu-vfio-kselftest)

# Private include directory, searched as the selftests' Makefile searches the kernel's
# installed headers (-isystem, after -I): <linux/iommufd.h> is uiommu's header; <linux/vfio.h>,
# <linux/idxd.h> and <linux/stddef.h> (its __counted_by) the tree's uAPI, which the host's
# headers may predate; every other <linux/...> comes from tools/include or the host.
mkdir -p "$out/include/linux" "$out/obj"
ln -sf "$repo/include/uiommu/iommufd.h" "$out/include/linux/iommufd.h"
for h in vfio idxd stddef; do
	ln -sf "$ktree/include/uapi/linux/$h.h" "$out/include/linux/$h.h"
done

# Some trees call calloc_assert() without defining it (Debian's 7.2: the helper's definition
# was not backported); the same helper, ours, is forced in only when the tree lacks it.
shim=""
if ! grep -rqs 'calloc_assert(size_t\|define calloc_assert' "$lib"; then
	cat >"$out/calloc_assert.h" <<-'EOF'
	/* uiommu's stand-in for libvfio's calloc_assert(): calloc or abort. */
	#include <stdlib.h>
	static inline void *calloc_assert(size_t nmemb, size_t size)
	{
		void *p = calloc(nmemb, size);

		if (!p)
			abort();
		return p;
	}
	EOF
	shim="-include $out/calloc_assert.h"
	echo "# this tree lacks calloc_assert(): built with $out/calloc_assert.h"
fi

# The flags of the selftests' Makefile, lib.mk and libvfio.mk; libvfio's sources are the
# LIBVFIO_C of libvfio.mk (on x86 every one: the arch-conditional drivers are x86's), so a tree
# that adds a driver builds it too.
cc=${CC:-cc}
cflags="-O2 -Wall -D_GNU_SOURCE $shim -isystem $out/include -I$lib/include -I$ktree/tools/include
	-I$ktree/tools/arch/x86/include -I$st"
echo "# kernel tree: $ktree"
echo "# building libvfio and $progs against $repo/include/uiommu/iommufd.h"
objs=""
rm -f "$out/libvfio.compile.log"
for c in $(sed -n 's/^LIBVFIO_C[[:space:]]*[:+]\{0,1\}=[[:space:]]*\([^[:space:]]*\)\.c.*/\1/p' "$lib/libvfio.mk"); do
	o="$out/obj/$(basename "$c").o"
	# shellcheck disable=SC2086 # $cflags is a list of flags
	if ! $cc $cflags -c "$lib/$c.c" -o "$o" 2>>"$out/libvfio.compile.log"; then
		cat "$out/libvfio.compile.log" >&2
		echo "vfio-kselftest.sh: libvfio's $c.c does not compile (log: $out/libvfio.compile.log)" >&2
		exit 3
	fi
	objs="$objs $o"
done
for p in $progs; do
	# shellcheck disable=SC2086 # $cflags and $objs are lists
	if ! $cc $cflags -pthread -o "$out/$p" "$st/vfio/$p.c" $objs -luuid 2>"$out/$p.compile.log"; then
		cat "$out/$p.compile.log" >&2
		echo "vfio-kselftest.sh: $p does not compile (log: $out/$p.compile.log)" >&2
		exit 3
	fi
	if [ -s "$out/$p.compile.log" ]; then
		echo "# $p: compiler warnings: $(grep -c 'warning:' "$out/$p.compile.log" || true) (see $out/$p.compile.log)"
	fi
	echo "# built $out/$p"
done
[ "$compile_only" = 1 ] && exit 0

# ---- the host, for the expected list -----------------------------------------------------------
hp_free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
gp_free=$(cat /sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages 2>/dev/null || echo 0)
# vfio_dma_mapping_test maps one huge page per hugetlb case.
if [ "$hp_free" -ge 1 ]; then has_hugepages=1; else has_hugepages=0; fi
if [ "$gp_free" -ge 1 ]; then has_1g_hugepages=1; else has_1g_hugepages=0; fi
echo "# host: free hugetlb pages: $hp_free of 2 MiB, $gp_free of 1 GiB"

# Run each harness on each device. Every case runs in a forked child with the harness's own
# timeout; the machine boots in each process from examples/dma-test.json.
topology="$repo/examples/dma-test.json"
# A sanitizer build's preload library follows the uninstrumented program's libc: the options
# of the test suite (meson.build) let ASan start anyway.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allow_user_segv_handler=1:verify_asan_link_order=0}"
rm -f "$out"/*.tap
for p in $progs; do
	echo "# ---- running $p under uiommu-run on 0000:07:00.0 (argument)"
	"$runner" --topology "$topology" "$out/$p" "$@" 0000:07:00.0 >"$out/$p.0000:07:00.0.tap" 2>&1 || true
	cat "$out/$p.0000:07:00.0.tap"
	echo "# ---- running $p under uiommu-run on 0000:05:00.0 (VFIO_SELFTESTS_BDF)"
	VFIO_SELFTESTS_BDF=0000:05:00.0 "$runner" --topology "$topology" "$out/$p" "$@" \
		>"$out/$p.0000:05:00.0.tap" 2>&1 || true
	cat "$out/$p.0000:05:00.0.tap"
done

# A listing (-l) has no results to judge.
for a in "$@"; do
	[ "$a" = "-l" ] && exit 0
done

# ---- summary -----------------------------------------------------------------------------------
echo "#"
echo "# ---- uiommu VFIO kselftest summary ----"
conds="always"
[ "$has_hugepages" = 1 ] || conds="$conds no-hugepages"
[ "$has_1g_hugepages" = 1 ] || conds="$conds no-1g-hugepages"
status=0
for tap in "$out"/*.tap; do
	echo "# $(basename "$tap" .tap):"
	kselftest_judge "$tap" "$repo/tools/vfio-kselftest-expected.txt" "$conds" || status=1
done
if [ "$status" = 0 ]; then
	echo "# VFIO KSELFTEST OK: every failure and skip is listed in tools/vfio-kselftest-expected.txt for this host"
else
	echo "# VFIO KSELFTEST FAILED: unexpected failures or skips above (logs: $out/*.tap)"
fi
echo "# logs: $out"
exit "$status"
