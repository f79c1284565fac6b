#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start, command 2: build and run every test.
#
#   1. the default build (debug checks and fault injection on): every test, the tour, the QEMU
#      guest test (suite qemu: Debian's QEMU boots a guest that drives a passed-through
#      dma-test and virtio-rng, docs/qemu.md), and a
#      quick run of the benchmarks so they cannot rot;
#   2. the same suite built with AddressSanitizer and UBSan;
#   3. the concurrency and unit tests built with ThreadSanitizer;
#   4. a release build (fault injection compiled out) with its tests, a build without the test
#      command and the selftest mock (-Diommufd_test=false) with the suites that do not need
#      them, and the public headers compiled as C++;
#   5. the unit and ABI suites built with clang, ASan and UBSan (clang removes accesses and
#      passes variadic arguments where gcc happened not to: bugs only a clang build shows);
#   6. the libFuzzer harnesses: fuzz_ioctl for 60 s from the seed corpus, fuzz_wire for 30 s
#      (docs/fuzzing.md).
# UIOMMU_STRESS_SECONDS sets the length of the concurrency test (default 3 s per build).
set -eu
cd "$(dirname "$0")/.."
. tools/deps.sh
uiommu_install_deps g++ clang libclang-rt-14-dev qemu-system-x86

passed=0
failed=0
skipped=0
log=$(mktemp)
# What failed, a line each with its first failed cases, repeated at the very end: a CI report
# that keeps only the tail of the output still names them.
failures=$(mktemp)
trap 'rm -f "$log" "$failures"' EXIT

# Records a failure for the closing summary: $1 the stage, $2 what to say.
note_failure() {
	printf '  %s: %s\n' "$1" "$2" >>"$failures"
}

# Runs `meson test` in build dir $1 with the remaining arguments; adds up its counts. The test
# programs speak TAP, so a result line reads "OK ... 76 subtests passed" or "FAIL ... 70/76
# subtests passed" and every case counts; a program without subtests (or one that crashed or
# timed out) counts once. Skipped cases are the "# SKIP" lines of the full log.
run_suite() {
	dir=$1
	shift
	echo "== meson test -C $dir $*"
	if meson test -C "$dir" --print-errorlogs "$@" >"$log" 2>&1; then :; fi
	grep -E '^ *[0-9]+/[0-9]+ ' "$log" || true
	# (meson repeats each failed line under "Summary of Failures": counted once.)
	counts=$(awk '/^Summary of Failures/ { exit }
	/^ *[0-9]+\/[0-9]+ / {
		if (match($0, /[0-9]+\/[0-9]+ subtests passed/)) {
			split(substr($0, RSTART, RLENGTH), n, /[\/ ]/); ok += n[1]; bad += n[2] - n[1]
		} else if (match($0, /[0-9]+ subtests passed/)) {
			split(substr($0, RSTART, RLENGTH), n, / /); ok += n[1]
		} else if ($0 ~ / OK /) ok++
		else if ($0 !~ / SKIP /) bad++
	} END { print ok + 0, bad + 0 }' "$log")
	ok=${counts% *}; bad=${counts#* }; to=0
	skip=$(grep -Ec '^ok [0-9]+ .*# SKIP' "$dir/meson-logs/testlog.txt" || true)
	skipped=$((skipped + ${skip:-0}))
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
		awk '/^Summary of Failures/ { exit }
		     /^ *[0-9]+\/[0-9]+ .* (FAIL|TIMEOUT|ERROR) / { print }' "$log" |
			while IFS= read -r line; do note_failure "$dir" "$line"; done
		# The failed cases by name (TAP), and sanitizer verdicts, from the kept log.
		grep -E '^not ok [0-9]+|^(==[0-9]+==ERROR|SUMMARY: [A-Za-z]+Sanitizer|WARNING: ThreadSanitizer)' \
			"$dir/meson-logs/testlog.txt" | head -n 8 |
			while IFS= read -r line; do note_failure "$dir" "    $line"; done
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
	if [ ! -f "$dir/build.ninja" ] && ! meson setup "$dir" -Dwerror=true "$@" >"$log" 2>&1; then
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
	note_failure benchmarks "bench/run build --quick failed"
fi

setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
run_suite build-asan

setup build-tsan -Db_sanitize=thread -Db_lundef=false
# TSan runs the multi-process tests at a fifth of their speed (test_processes: about 400 s
# at session 12's first CI, more than 500 s with the group's tests added, run as two tests of
# half its cases each, tests/meson.build): twice the time before a suite counts as hung. Each
# case still dies at its own alarm (harness.h).
run_suite build-tsan --timeout-multiplier 2 --suite unit --suite abi --suite preload --suite vfio

setup build-release --buildtype=release
run_suite build-release --no-suite qemu

# The kernel's CONFIG_IOMMUFD_TEST=n: IOMMU_TEST_CMD and the selftest mock compiled out (meson
# option iommufd_test); every suite that does not drive the mock is built and must pass.
setup build-notest -Diommufd_test=false
run_suite build-notest --no-suite qemu

echo "== public headers as C++"
for h in uiommu.h iommufd.h iommufd_test.h vfio_compat.h device.h; do
	if printf '#include <uiommu/%s>\nint main() { return 0; }\n' "$h" |
		g++ -std=c++17 -Wall -Werror -Iinclude -x c++ -fsyntax-only -; then
		passed=$((passed + 1))
	else
		echo "  $h does not compile as C++"
		failed=$((failed + 1))
		note_failure c++ "$h does not compile as C++"
	fi
done

# ---- the kernel's iommufd selftests --------------------------------------------------------------
# Needs the network. tools/kselftest.sh fetches Debian's newest linux-source (cached; see
# docs/kselftest.md), builds `iommufd` and `iommufd_fail_nth` against our header and runs both on
# the default build; it fails on any case outside tools/kselftest-expected.txt, and when the
# sources cannot be fetched. As root, 128 hugetlb pages are reserved for the MAP_HUGETLB cases
# (the old count is put back); otherwise those cases run without and are expected to fail.
echo "== kernel selftests (tools/kselftest.sh)"
hp_old=""
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/nr_hugepages ]; then
	hp_old=$(cat /proc/sys/vm/nr_hugepages)
	[ "$hp_old" -ge 128 ] || echo 128 >/proc/sys/vm/nr_hugepages || true
fi
if tools/kselftest.sh -o build/kselftest build >"$log" 2>&1; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	note_failure kselftest "tools/kselftest.sh failed (logs: build/kselftest)"
fi
sed -n '/^# kernel sources/p;/^# host:/p;/kselftest summary/,$p' "$log" |
	grep -E '^# (kernel sources|host:|iommufd[a-z_]*:$|KSELFTEST|logs)|^#   (total|unexpected|note)|^#     > ' ||
	tail -n 30 "$log" # no summary: the fetch or the build failed
if [ -n "$hp_old" ] && [ "$hp_old" -lt 128 ]; then
	echo "$hp_old" >/proc/sys/vm/nr_hugepages || true
fi

# ---- 5. clang ----------------------------------------------------------------------------------
(export CC=clang; setup build-clang -Db_sanitize=address,undefined -Db_lundef=false)
run_suite build-clang --suite unit --suite abi

# The library's raw system calls go through src/lib/sys.h, whose prototypes widen every
# argument for the variadic syscall() (an int there broke the clang build's mmap offset).
echo "== raw syscall() only in src/lib/sys.h"
if grep -rn --include='*.c' --include='*.h' 'syscall(SYS_' src | grep -v '^src/lib/sys.h:' |
	grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)'; then
	echo "  call the typed wrapper of src/lib/sys.h instead"
	failed=$((failed + 1))
	note_failure syscalls "raw syscall() outside src/lib/sys.h"
else
	passed=$((passed + 1))
fi

# ---- 6. fuzzing ---------------------------------------------------------------------------------
# 60 s of tests/fuzz/fuzz_ioctl over a scratch copy of the seed corpus (the corpus in the tree
# stays as it is), then 30 s of tests/fuzz/fuzz_wire (the wire between processes) from its own
# seeds (tests/fuzz/corpus_wire: one per kind of request, and a SETTLE).
# A crash, a sanitizer report, a leak or a 10 s input fails; the input that did it is kept in
# the scratch directory, named in the output.
(export CC=clang; setup build-fuzz -Dfuzz=true)
for fz in fuzz_ioctl:60 fuzz_wire:30; do
	name=${fz%%:*} secs=${fz##*:}
	echo "== $name, $secs s"
	fuzzdir=$(mktemp -d)
	mkdir "$fuzzdir/corpus"
	[ "$name" = fuzz_ioctl ] && cp tests/fuzz/corpus/* "$fuzzdir/corpus/"
	[ "$name" = fuzz_wire ] && cp tests/fuzz/corpus_wire/* "$fuzzdir/corpus/"
	if (cd "$fuzzdir" && ASAN_OPTIONS=allow_user_segv_handler=1 \
		"$OLDPWD/build-fuzz/tests/fuzz/$name" -max_total_time="$secs" -detect_leaks=0 \
		-timeout=10 -print_final_stats=1 corpus) >"$fuzzdir/log" 2>&1; then
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec|late_releases)' "$fuzzdir/log" || true
		rm -rf "$fuzzdir"
		passed=$((passed + 1))
	else
		grep -E -A 40 '^==[0-9]+==|runtime error|^leak:' "$fuzzdir/log" | head -n 80
		echo "  $name failed: full log $fuzzdir/log, the input: $(ls "$fuzzdir" | grep -E '^(crash|leak|timeout|oom)-' | sed "s|^|$fuzzdir/|")"
		echo "  replay it: build-fuzz/tests/fuzz/$name INPUT (FUZZ_TRACE=1 shows each operation)"
		failed=$((failed + 1))
		note_failure "$name" "failed: full log $fuzzdir/log"
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
		note_failure vfio-kselftest "tools/vfio-kselftest.sh on $b failed (logs: $b/vfio-kselftest)"
	fi
	sed -n '/^# kernel sources/p;/^# host:/p;/VFIO kselftest summary/,$p' "$log" |
		grep -E '^# (kernel sources|host:|vfio_[a-z_]*\.[0-9a-f:.]*:$|VFIO KSELFTEST|logs)|^#   (total|unexpected|note)|^#     > ' ||
		tail -n 30 "$log" # no summary: the fetch or the build failed
done

echo
if [ -s "$failures" ]; then
	echo "== what failed (each failed stage's full output is above)"
	cat "$failures"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
