# SPDX-License-Identifier: MIT
# shellcheck shell=sh disable=SC2034 # $ktree, $kpkg and $kver are for the sourcing script
# Sourced by the runners of the kernel's selftests (tools/kselftest.sh, tools/vfio-kselftest.sh):
# fetching Debian's newest linux-source-X.Y with a private apt state and
# extracting only the files a runner reads, the scratch directory, and judging a TAP log against
# an expected-failures list. Nothing from the kernel tree enters this repository.
#
#   kselftest_parse_args PROGS ARGS...    the runners' common command line: -o, -p, -k, -h,
#                                         then [KERNEL_TREE] [BUILD_DIR] [--]; sets $out,
#                                         $progs (default PROGS, each checked against it),
#                                         $compile_only, $ktree, $build and $kselftest_nargs
#                                         (how many ARGS it took: the caller shifts them);
#                                         calls the runner's usage() on a bad one
#   kselftest_fetch_tree NAME PATH...
#   kselftest_apt_update DIR LINE...      a private apt state in DIR, refreshed (below)
#   kselftest_need_runner RUNNER          exits 2 unless RUNNER (a build's uiommu-run) exists
#   kselftest_scratch DIR PREFIX          prints DIR made absolute (created), or a new
#                                         ${TMPDIR:-/tmp}/PREFIX.XXXXXX without DIR
#   kselftest_judge TAP EXPECTED CONDS    the summary of one harness log: per fixture and
#                                         variant, then each failed or skipped case checked
#                                         against EXPECTED; 0 when every one is listed there
#                                         under one of the space-separated CONDS
#
# EXPECTED has lines "fail|skip CASE CONDITION REASON", CASE a FIXTURE.VARIANT.TEST pattern
# (`*` for one component), CONDITION a word the runner puts in CONDS when it holds on this
# host ("always" always does). A listed case that passes is reported as a note.
#
# NAME keeps each runner's extraction apart (the runners read different files); each PATH is a
# file or directory of the kernel tree (linux-source-X.Y/PATH in the tarball). On success
# $ktree is the tree's root and $kpkg/$kver name the package; a failure ends the script with
# status 4 (kselftest_fetch_fail). The cache is $UIOMMU_CACHE_DIR (default:
# ${XDG_CACHE_HOME:-$HOME/.cache}/uiommu), shared by the runners: one apt state, one tree per
# package version and NAME, reused by later runs.
#
# The private apt state (its own sources.list, lists, cache and an empty dpkg status) leaves
# the system's apt configuration and package state alone and needs no root. The newest
# linux-source-X.Y by version wins; its tarball is streamed out of the .deb (which is then
# deleted). Each run refreshes the lists (a few seconds when nothing changed), so a new version
# is picked up the day it appears.

kselftest_cache=${UIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uiommu}

# $repo is the sourcing runner's repository root. A first positional argument without
# tools/testing/selftests is taken as BUILD_DIR.
kselftest_parse_args() {
	_allowed=$1
	shift
	out=""
	compile_only=0
	progs=$_allowed
	kselftest_nargs=0
	while [ $# -gt 0 ]; do
		case "$1" in
		-o) [ $# -ge 2 ] || usage; out=$2; shift 2; kselftest_nargs=$((kselftest_nargs + 2)) ;;
		-p) [ $# -ge 2 ] || usage; progs=$2; shift 2; kselftest_nargs=$((kselftest_nargs + 2)) ;;
		-k) compile_only=1; shift; kselftest_nargs=$((kselftest_nargs + 1)) ;;
		-h|--help) usage ;;
		--) break ;;
		-*) usage ;;
		*) break ;;
		esac
	done
	for _p in $progs; do
		case " $_allowed " in *" $_p "*) ;; *) usage ;; esac
	done
	ktree=""
	if [ $# -ge 1 ] && [ "$1" != "--" ] && [ -d "$1/tools/testing/selftests" ]; then
		ktree=$(cd "$1" && pwd)
		shift
		kselftest_nargs=$((kselftest_nargs + 1))
	fi
	build="$repo/build"
	if [ $# -ge 1 ] && [ "$1" != "--" ]; then
		[ -d "$1" ] || usage
		build=$(cd "$1" && pwd)
		shift
		kselftest_nargs=$((kselftest_nargs + 1))
	fi
	if [ $# -ge 1 ] && [ "$1" = "--" ]; then
		kselftest_nargs=$((kselftest_nargs + 1))
	fi
}

kselftest_fetch_fail() {
	me=$(basename "$0")
	echo "$me: FETCH FAILED: $*" >&2
	echo "$me: the kernel sources come from Debian's archive (deb.debian.org); run with a" >&2
	echo "$me: network, or pass a kernel tree: $0 KERNEL_TREE [BUILD_DIR]" >&2
	exit 4
}

# apt-get / apt-cache on the private state.
kselftest_papt() {
	cmd=$1
	shift
	"$cmd" -q -o Dir::Etc::SourceList="$kselftest_apt/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
		-o Dir::State::Lists="$kselftest_apt/lists" -o Dir::State::status="$kselftest_apt/status" \
		-o Dir::Cache="$kselftest_apt/cache" -o Acquire::Languages=none \
		-o APT::Sandbox::User="$(id -un)" "$@"
}

# kselftest_apt_update DIR SUITE_LINE...: the private apt state in DIR (sets $kselftest_apt),
# its sources.list the SUITE_LINEs ("deb SUITE", "deb-src SUITE": Debian's main, signed by
# the archive keyring), its lists refreshed. Also used by tools/qemu-build.sh, which redefines
# kselftest_fetch_fail for its own message.
kselftest_apt_update() {
	kselftest_apt=$1
	shift
	_keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	mkdir -p "$kselftest_apt/lists/partial" "$kselftest_apt/cache/archives/partial" ||
		kselftest_fetch_fail "cannot create $kselftest_apt"
	[ -f "$_keyring" ] ||
		kselftest_fetch_fail "$_keyring is missing (apt-get install debian-archive-keyring)"
	for _line in "$@"; do
		echo "${_line% *} [signed-by=$_keyring] http://deb.debian.org/debian ${_line#* } main"
	done >"$kselftest_apt/sources.list"
	: >"$kselftest_apt/status"
	_log="$kselftest_apt/update.log"
	kselftest_papt apt-get update >"$_log" 2>&1 ||
		{ cat "$_log" >&2; kselftest_fetch_fail "apt-get update (log: $_log)"; }
	if grep -q '^[WE]:' "$_log"; then
		cat "$_log" >&2
		kselftest_fetch_fail "apt-get update could not fetch every list (log: $_log)"
	fi
}

kselftest_fetch_tree() {
	name=$1
	shift
	cache=$kselftest_cache
	echo "# fetching the package lists of Debian sid and experimental (private apt state: $cache/apt)"
	kselftest_apt_update "$cache/apt" "deb sid" "deb experimental"
	kpkg="" kver=""
	for p in $(kselftest_papt apt-cache pkgnames linux-source- | grep -E '^linux-source-[0-9]+\.[0-9]+$'); do
		v=$(kselftest_papt apt-cache show --no-all-versions "$p" | sed -n 's/^Version: //p' | head -n 1)
		[ -n "$v" ] || continue
		if [ -z "$kver" ] || dpkg --compare-versions "$v" gt "$kver"; then
			kpkg=$p kver=$v
		fi
	done
	[ -n "$kpkg" ] || kselftest_fetch_fail "no linux-source-X.Y package in the lists"
	tree="$cache/$kpkg-$kver-$name"
	ktree="$tree/$kpkg"
	if [ -f "$tree/.complete" ]; then
		echo "# kernel sources: $kpkg $kver (cached in $tree)"
		return 0
	fi
	echo "# downloading $kpkg $kver"
	rm -rf "$cache/deb"
	mkdir -p "$cache/deb"
	(cd "$cache/deb" && kselftest_papt apt-get download "$kpkg=$kver") >"$cache/apt-download.log" 2>&1 ||
		{ cat "$cache/apt-download.log" >&2; kselftest_fetch_fail "apt-get download $kpkg=$kver"; }
	deb=$(ls "$cache/deb/${kpkg}_"*.deb | head -n 1)
	echo "# extracting the files $name reads from $kpkg $kver into $tree"
	rm -rf "$tree"
	mkdir -p "$tree"
	paths=""
	for f in "$@"; do
		paths="$paths $kpkg/$f"
	done
	# The package holds usr/src/linux-source-X.Y.tar.xz; only the files read are kept.
	# shellcheck disable=SC2086 # $paths is a list of tarball members without spaces
	if ! dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$kpkg.tar.xz" | tar -xJ -C "$tree" $paths; then
		rm -rf "$tree"
		kselftest_fetch_fail "cannot extract the files $name reads from $deb"
	fi
	rm -rf "$cache/deb"
	touch "$tree/.complete"
}

kselftest_need_runner() {
	if [ ! -x "$1" ]; then
		echo "$(basename "$0"): $1 is missing; build uiommu first (meson setup build && ninja -C build)" >&2
		exit 2
	fi
}

kselftest_scratch() {
	if [ -z "$1" ]; then
		mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX"
	else
		mkdir -p "$1" && (cd "$1" && pwd)
	fi
}

kselftest_judge() {
	awk -v expected="$2" -v conds=" $3 " '
	BEGIN {
		while ((getline line < expected) > 0) {
			if (line ~ /^[[:space:]]*(#|$)/) continue
			split(line, f, /[[:space:]]+/)
			n++; kind[n] = f[1]; cond[n] = f[3]
			re = f[2]; gsub(/\./, "\\.", re); gsub(/\*/, "[^.]*", re); rx[n] = "^" re "$"
		}
	}
	function expected_as(name, k,   i) {
		for (i = 1; i <= n; i++)
			if (kind[i] == k && name ~ rx[i] && index(conds, " " cond[i] " ")) return 1
		return 0
	}
	/^#  RUN / { body = ""; next }
	/^#/ { body = body "\n#     > " substr($0, 3); next }
	/^ok [0-9]+ / || /^not ok [0-9]+ / {
		bad = ($1 == "not")
		name = bad ? $4 : $3
		skip = (!bad && $0 ~ /# SKIP/)
		m = split(name, q, ".")
		key = (m >= 3) ? q[1] "." q[2] : q[1]
		if (!(key in seen)) { seen[key] = 1; order[++k] = key }
		if (bad) { fail[key]++; F++; fl[key] = fl[key] " " q[m] }
		else if (skip) { sk[key]++; S++ }
		else { pass[key]++; P++ }
		if (bad && !expected_as(name, "fail")) unexp[++U] = "unexpected failure: " name body
		else if (bad) XF++
		if (skip && !expected_as(name, "skip")) unexp[++U] = "unexpected skip: " name body
		if (!bad && !skip && expected_as(name, "fail")) xpass[++X] = name
		body = ""
	}
	END {
		for (i = 1; i <= k; i++) {
			key = order[i]
			printf "#   %-66s pass %3d  fail %3d  skip %3d\n", key, pass[key], fail[key], sk[key]
			if (fail[key]) printf "#       failed:%s\n", fl[key]
		}
		for (i = 1; i <= X; i++) printf "#   note: listed as expected to fail but passed: %s\n", xpass[i]
		for (i = 1; i <= U; i++) printf "#   %s\n", unexp[i]
		if (P + F + S == 0) { print "#   no case ran"; U++ }
		printf "#   total: pass %d, fail %d (%d expected), skip %d (of %d run)\n", P, F, XF, S, P + F + S
		exit U ? 1 : 0
	}' "$1"
}
