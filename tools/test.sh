#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start, command 2: build and run every test.
#
#   1. the default build (debug checks and fault injection on): every test, the tour, and a
#      quick run of the benchmarks so they cannot rot;
#   2. the same suite built with AddressSanitizer and UBSan;
#   3. the concurrency and unit tests built with ThreadSanitizer;
#   4. a release build (fault injection compiled out) with its tests, and the public headers
#      compiled as C++.
# UIOMMU_STRESS_SECONDS sets the length of the concurrency test (default 3 s per build).
set -eu
cd "$(dirname "$0")/.."
. tools/deps.sh
uiommu_install_deps g++

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Runs `meson test` in build dir $1 with the remaining arguments; adds up its counts.
run_suite() {
	dir=$1
	shift
	echo "== meson test -C $dir $*"
	if meson test -C "$dir" --print-errorlogs "$@" >"$log" 2>&1; then :; fi
	grep -E '^ *[0-9]+/[0-9]+ ' "$log" || true
	ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	bad=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	ok=${ok:-0}; bad=${bad:-0}; to=${to:-0}
	if [ "$ok" = 0 ] && [ "$bad" = 0 ]; then
		cat "$log"
		bad=1
	fi
	if [ "$bad" != 0 ] || [ "$to" != 0 ]; then
		# Each failed test's own output (meson's --print-errorlogs section, passing cases
		# left out), then where everything is kept.
		awk '/^Summary of Failures/ { exit }
		     /^ *[0-9]+\/[0-9]+ .* (FAIL|TIMEOUT) / { keep = 1 }
		     keep && /^―/ && !/✀/ { print; keep = 0; next }
		     keep && !/^ok [0-9]/ { print }' "$log" | head -n 400
		cp "$log" "$dir/test-output.txt"
		echo "-- failed in $dir; full output: $dir/test-output.txt," \
			"every test's log: $dir/meson-logs/testlog.txt"
	fi
	passed=$((passed + ok))
	failed=$((failed + bad + to))
}

setup() {
	dir=$1
	shift
	# Quiet when it works; the whole compiler output when it does not.
	if [ ! -f "$dir/build.ninja" ] && ! meson setup "$dir" "$@" >"$log" 2>&1; then
		cat "$log"
		echo "meson setup $dir failed" >&2
		exit 1
	fi
	if ! ninja -C "$dir" >"$log" 2>&1; then
		cat "$log"
		echo "building $dir failed" >&2
		exit 1
	fi
}

setup build
run_suite build
echo "== benchmarks (quick)"
if bench/run build --quick >"$log" 2>&1; then
	tail -n 30 "$log"
	passed=$((passed + 1))
else
	cat "$log"
	failed=$((failed + 1))
fi

setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
run_suite build-asan

setup build-tsan -Db_sanitize=thread -Db_lundef=false
run_suite build-tsan --suite unit --suite abi --suite preload --suite vfio

setup build-release --buildtype=release
run_suite build-release

echo "== public headers as C++"
for h in uiommu.h iommufd.h iommufd_test.h vfio_compat.h device.h; do
	if printf '#include <uiommu/%s>\nint main() { return 0; }\n' "$h" |
		g++ -std=c++17 -Wall -Werror -Iinclude -x c++ -fsyntax-only -; then
		passed=$((passed + 1))
	else
		echo "  $h does not compile as C++"
		failed=$((failed + 1))
	fi
done

# ---- the kernel's VFIO selftests ---------------------------------------------------------------
# Needs the network. tools/vfio-kselftest.sh fetches Debian's newest linux-source (cached:
# tools/kselftest-lib.sh), builds vfio_iommufd_setup_test, vfio_pci_device_test and
# vfio_dma_mapping_test with their libvfio and runs them on two dma-test functions, on the
# default and the ASan builds; it fails on any case outside tools/vfio-kselftest-expected.txt.
for b in build build-asan; do
	echo "== kernel VFIO selftests on $b (tools/vfio-kselftest.sh)"
	if tools/vfio-kselftest.sh -o "$b/vfio-kselftest" "$b" >"$log" 2>&1; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
	sed -n '/^# kernel sources/p;/^# host:/p;/VFIO kselftest summary/,$p' "$log" |
		grep -E '^# (kernel sources|host:|vfio_[a-z_]*\.[0-9a-f:.]*:$|VFIO KSELFTEST|logs)|^#   (total|unexpected|note)|^#     > ' ||
		tail -n 30 "$log" # no summary: the fetch or the build failed
done

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
