#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start, command 1: build uiommu and run the tour client under the drop-in /dev/iommu.
set -eu
cd "$(dirname "$0")/.."
. tools/deps.sh
uiommu_install_deps
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet when it builds; the whole compiler output when it does not.
if { [ -f build/build.ninja ] || meson setup build >"$log" 2>&1; } && ninja -C build >"$log" 2>&1; then
	:
else
	cat "$log"
	echo "tour.sh: building uiommu failed (output above)" >&2
	exit 1
fi
# The emulated drivers keep doing DMA through the whole tour (type switches, hot unplug). The
# machine is the embedded default plus a dma-test function, the device of chapter 14.
UIOMMU_DRIVER_DMA=1 build/tools/uiommu-run --topology examples/tour.json build/examples/tour
