#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the kernel's own iommufd selftests (tools/testing/selftests/iommu/iommufd.c and
# iommufd_fail_nth.c) against uiommu's uAPI header instead of the host's, runs them under
# uiommu-run, and compares the failures with tools/kselftest-expected.txt. Nothing from the
# kernel tree is copied into this repository: the programs, their private include directory
# and the logs go to a scratch directory, the fetched sources to a cache (see docs/kselftest.md).
#
#   tools/kselftest.sh [-k] [-o DIR] [-p PROG] [KERNEL_TREE] [BUILD_DIR] [-- HARNESS_ARGS...]
#
#   KERNEL_TREE   a Linux source tree (only the selftest directory, the two kselftest headers
#                 and drivers/iommu/iommufd/iommufd_test.h are read). Without it, the newest
#                 linux-source-X.Y package of Debian (sid and experimental) is fetched with a
#                 private apt state into $UIOMMU_CACHE_DIR (default:
#                 ${XDG_CACHE_HOME:-$HOME/.cache}/uiommu) and reused by later runs; a first
#                 argument without tools/testing/selftests is taken as BUILD_DIR
#   BUILD_DIR     a uiommu meson build directory (default: build, next to this script's parent)
#   -o DIR        where to put the programs, their include directory and the logs (default: a
#                 new directory under ${TMPDIR:-/tmp}, printed at the end)
#   -p PROG       run only PROG: iommufd or iommufd_fail_nth (default: both)
#   -k            compile only; do not run
#   HARNESS_ARGS  passed to each harness: -l lists the cases, -r FIXTURE.VARIANT.TEST runs one
#                 (with -p), -f/-v/-t include and -F/-V/-T exclude a fixture/variant/test
#
# The exit status is 0 when every case that failed (or skipped) is listed as expected for this
# host in tools/kselftest-expected.txt, 1 otherwise, 2 on a usage error, 3 when a program does
# not compile and 4 when the kernel sources cannot be fetched.
set -eu

usage() {
	sed -n '/^#   tools/,/^# not compile/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tools/kselftest-lib.sh"
kselftest_parse_args "iommufd iommufd_fail_nth" "$@"
shift "$kselftest_nargs"

# ---- fetching the kernel sources ---------------------------------------------------------------
# Without a tree: Debian's newest linux-source-X.Y through a private apt state, only the files
# read extracted, cached (tools/kselftest-lib.sh, shared with tools/vfio-kselftest.sh).

[ -n "$ktree" ] || kselftest_fetch_tree iommufd tools/testing/selftests/iommu \
	tools/testing/selftests/kselftest_harness.h tools/testing/selftests/kselftest.h \
	drivers/iommu/iommufd/iommufd_test.h

for f in $(for p in $progs; do echo "$ktree/tools/testing/selftests/iommu/$p.c"; done) \
	"$ktree/tools/testing/selftests/iommu/iommufd_utils.h" \
	"$ktree/tools/testing/selftests/kselftest_harness.h" \
	"$ktree/tools/testing/selftests/kselftest.h" \
	"$ktree/drivers/iommu/iommufd/iommufd_test.h"; do
	if [ ! -f "$f" ]; then
		echo "kselftest.sh: $f is missing; KERNEL_TREE must be a Linux source tree" >&2
		exit 2
	fi
done
runner="$build/tools/uiommu-run"
if [ "$compile_only" = 0 ] && [ ! -x "$runner" ]; then
	echo "kselftest.sh: $runner is missing; build uiommu first (meson setup build && ninja -C build)" >&2
	exit 2
fi

# The selftests link libcap (the change_process fixture drops CAP_IPC_LOCK).
if ! dpkg-query -W -f='${Status}' libcap-dev 2>/dev/null | grep -q "ok installed"; then
	. "$repo/tools/deps.sh"
	uiommu_install_deps libcap-dev
fi

if [ -z "$out" ]; then
	out=$(mktemp -d "${TMPDIR:-/tmp}/uiommu-kselftest.XXXXXX")
else
	mkdir -p "$out"
	out=$(cd "$out" && pwd)
fi

# Private include directory: <linux/iommufd.h> is uiommu's header; every other <linux/...>
# (vfio.h, types.h, ioctl.h) stays the host's. The kernel tree's iommufd_test.h is reached
# through the selftest's own relative include, and it includes <linux/iommufd.h>, i.e. ours.
mkdir -p "$out/include/linux"
ln -sf "$repo/include/uiommu/iommufd.h" "$out/include/linux/iommufd.h"

# The flags of the selftest's Makefile and lib.mk: -D_GNU_SOURCE (memfd_create and friends
# are used before the harness defines it) and the selftests directory on the include path
# (newer trees include "kselftest_harness.h" without the ../).
cc=${CC:-cc}
echo "# kernel tree: $ktree"
echo "# building against $repo/include/uiommu/iommufd.h"
for p in $progs; do
	src="$ktree/tools/testing/selftests/iommu/$p.c"
	if ! $cc -Wall -O2 -Wno-unused-function -D_GNU_SOURCE= \
		-I"$out/include" -I"$ktree/tools/testing/selftests" \
		-o "$out/$p" "$src" -lcap 2>"$out/$p.compile.log"; then
		cat "$out/$p.compile.log" >&2
		echo "kselftest.sh: $p does not compile against uiommu's header (log: $out/$p.compile.log)" >&2
		exit 3
	fi
	if [ -s "$out/$p.compile.log" ]; then
		echo "# $p: compiler warnings: $(grep -c 'warning:' "$out/$p.compile.log" || true) (see $out/$p.compile.log)"
	fi
	echo "# built $out/$p"
done
[ "$compile_only" = 1 ] && exit 0

# ---- the host, for the expected list -----------------------------------------------------------
cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if [ $(( 0x${cap_eff:-0} >> 24 & 1 )) = 1 ]; then has_sys_resource=1; else has_sys_resource=0; fi
hp_free=$(sed -n 's/^HugePages_Free:[[:space:]]*//p' /proc/meminfo)
hp_free=${hp_free:-0}
# The largest MAP_HUGETLB user is the 128 MiB dirty-tracking variant: 64 pages of 2 MiB.
if [ "$hp_free" -ge 64 ]; then has_hugepages=1; else has_hugepages=0; fi
echo "# host: CAP_SYS_RESOURCE $has_sys_resource, free hugetlb pages $hp_free"
[ "$has_hugepages" = 1 ] ||
	echo "# note: fewer than 64 free hugetlb pages: the MAP_HUGETLB cases are expected to fail"

# Run each harness. Every case runs in a forked child with the harness's own timeout (30 s).
for p in $progs; do
	echo "# ---- running $p under uiommu-run"
	"$runner" "$out/$p" "$@" >"$out/$p.tap" 2>&1 || true
	cat "$out/$p.tap"
done

# A listing (-l) has no results to judge.
for a in "$@"; do
	[ "$a" = "-l" ] && exit 0
done

# ---- summary -----------------------------------------------------------------------------------
# Per fixture and variant, then each failed or skipped case checked against the expected list:
# "fail|skip GLOB CONDITION REASON", CONDITION one of always, no-cap-sys-resource, no-hugepages.
echo "#"
echo "# ---- uiommu kselftest summary ----"
conds="always"
[ "$has_sys_resource" = 1 ] || conds="$conds no-cap-sys-resource"
[ "$has_hugepages" = 1 ] || conds="$conds no-hugepages"
status=0
for p in $progs; do
	echo "# $p:"
	kselftest_judge "$out/$p.tap" "$repo/tools/kselftest-expected.txt" "$conds" || status=1
done
if [ "$status" = 0 ]; then
	echo "# KSELFTEST OK: every failure and skip is listed in tools/kselftest-expected.txt for this host"
else
	echo "# KSELFTEST FAILED: unexpected failures or skips above (logs: $out/*.tap)"
fi
echo "# logs: $out"
exit "$status"
