#!/bin/sh
# SPDX-License-Identifier: MIT
# The preload layer only intercepts and forwards: everything it exports must be a libc entry
# point it wraps (a libc name: no "uiommu", no internal helper). A helper that leaks out of it
# as a global symbol, or logic that grows into it, shows up here. The output is TAP (one case).
set -eu
lib=$1
bad=0
echo "1..1"
for sym in $(nm -D --defined-only "$lib" | awk '{print $3}'); do
	case "$sym" in
	*uiommu*|*sysfs*|*iommufd*)
		echo "# preload exports an internal symbol: $sym"
		bad=1
		;;
	esac
	# Every exported name must be one the C library itself defines.
	if ! nm -D --defined-only /lib/x86_64-linux-gnu/libc.so.6 2>/dev/null |
		awk '{print $3}' | sed 's/@.*//' | grep -qx "$sym"; then
		echo "# preload exports $sym, which is not a libc function"
		bad=1
	fi
done
n=$(nm -D --defined-only "$lib" | wc -l)
if [ "$bad" = 0 ]; then
	echo "ok 1 preload exports only libc wrappers ($n symbols)"
else
	echo "not ok 1 preload exports only libc wrappers ($n symbols)"
fi
exit $bad
