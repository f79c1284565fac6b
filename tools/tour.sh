#!/bin/sh
# SPDX-License-Identifier: MIT
# Quick start, command 1: build uiommu and run the tour client under the drop-in /dev/iommu.
set -eu
cd "$(dirname "$0")/.."
. tools/deps.sh
uiommu_install_deps
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
# The emulated drivers keep doing DMA through the whole tour (type switches, hot unplug).
UIOMMU_DRIVER_DMA=1 exec build/tools/uiommu-run build/examples/tour
