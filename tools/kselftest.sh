#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the kernel's own iommufd selftest (tools/testing/selftests/iommu/iommufd.c) from a
# kernel tree you supply, against uiommu's uAPI header instead of the host's, and runs it
# under uiommu-run. Nothing from the kernel tree is copied into this repository: the program
# and its private include directory go to a scratch directory (see docs/kselftest.md).
#
#   tools/kselftest.sh [-k] [-o DIR] KERNEL_TREE [BUILD_DIR] [-- HARNESS_ARGS...]
#
#   KERNEL_TREE   a Linux source tree of the v7.0 era (only the selftest directory, the two
#                 kselftest headers and drivers/iommu/iommufd/iommufd_test.h are read)
#   BUILD_DIR     a uiommu meson build directory (default: build, next to this script's parent)
#   -o DIR        where to put the program, its include directory and the log (default: a new
#                 directory under ${TMPDIR:-/tmp}, printed at the end)
#   -k            compile only; do not run
#   HARNESS_ARGS  passed to the harness: -l lists the cases, -r FIXTURE.VARIANT.TEST runs one,
#                 -f/-v/-t include and -F/-V/-T exclude a fixture/variant/test (the first
#                 filter that matches a case decides)
#
# The exit status is the harness's (0 when every case passed or was skipped), 2 on a usage
# error and 3 when the program does not compile.
set -eu

usage() {
	sed -n '/^#   tools/,/^# The exit/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

out=""
compile_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	-o) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	-k) compile_only=1; shift ;;
	-h|--help) usage ;;
	--) break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] && [ "$1" != "--" ] || usage
ktree=$(cd "$1" && pwd)
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
	build=$(cd "$1" && pwd)
	shift
fi
[ $# -ge 1 ] && [ "$1" = "--" ] && shift

src="$ktree/tools/testing/selftests/iommu/iommufd.c"
for f in "$src" \
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

# The selftest links libcap (it drops CAP_IPC_LOCK in the change_process fixture).
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
echo "# building $src"
echo "#   against $repo/include/uiommu/iommufd.h"
if ! $cc -Wall -O2 -Wno-unused-function -D_GNU_SOURCE= \
	-I"$out/include" -I"$ktree/tools/testing/selftests" \
	-o "$out/iommufd" "$src" -lcap 2>"$out/compile.log"; then
	cat "$out/compile.log" >&2
	echo "kselftest.sh: the selftest does not compile against uiommu's header (log: $out/compile.log)" >&2
	exit 3
fi
if [ -s "$out/compile.log" ]; then
	echo "# compiler warnings: $(grep -c 'warning:' "$out/compile.log" || true) (see $out/compile.log)"
fi
echo "# built $out/iommufd"
[ "$compile_only" = 1 ] && exit 0

hp=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$hp" -lt 64 ]; then
	echo "# note: vm.nr_hugepages is $hp; the MAP_HUGETLB cases fail without about 64 free 2 MiB pages"
fi

# Run the harness. Every case runs in a forked child with the harness's own timeout (30 s).
log="$out/iommufd.tap"
status=0
"$runner" "$out/iommufd" "$@" >"$log" 2>&1 || status=$?
cat "$log"

# Summary: totals, then per fixture and variant.
echo "#"
echo "# ---- uiommu kselftest summary ----"
awk '
/^ok [0-9]+ / || /^not ok [0-9]+ / {
	bad = ($1 == "not")
	name = bad ? $4 : $3
	skip = (!bad && $0 ~ /# SKIP/)
	n = split(name, p, ".")
	key = (n >= 3) ? p[1] "." p[2] : p[1]
	if (!(key in seen)) { seen[key] = 1; order[++k] = key }
	if (bad) { fail[key]++; F++; fl[key] = fl[key] " " p[n] }
	else if (skip) { sk[key]++; S++ }
	else { pass[key]++; P++ }
}
END {
	for (i = 1; i <= k; i++) {
		key = order[i]
		printf "# %-45s pass %3d  fail %3d  skip %3d\n", key, pass[key], fail[key], sk[key]
		if (fail[key]) printf "#     failed:%s\n", fl[key]
	}
	printf "# total: pass %d, fail %d, skip %d (of %d run)\n", P, F, S, P + F + S
}' "$log"
echo "# TAP log: $log"
exit "$status"
