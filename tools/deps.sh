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
	# sudo resets the environment: the frontend goes on apt-get's own command line.
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
	if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing \
		>"${TMPDIR:-/tmp}/uiommu-apt.log" 2>&1; then
		cat "${TMPDIR:-/tmp}/uiommu-apt.log" >&2
		echo "apt-get install$missing failed (log above)" >&2
		return 1
	fi
}
