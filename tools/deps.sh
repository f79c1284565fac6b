#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages uiommu needs, if any is missing. Sourced by the Quick start
# scripts; safe to run again.
UIOMMU_DEPS="gcc meson ninja-build pkg-config liburcu-dev libbsd-dev libcap-dev libjson-c-dev"
uiommu_install_deps() {
	missing=""
	for p in $UIOMMU_DEPS "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "Installing Debian packages:$missing"
	if [ "$(id -u)" = 0 ]; then
		SUDO=""
	elif command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "Need root (or sudo) to install:$missing" >&2
		return 1
	fi
	$SUDO apt-get update -qq || true
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}
