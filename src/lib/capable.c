// SPDX-License-Identifier: MIT
/*
 * capable(): the effective set through libcap (the permitted one where access(2) counts it:
 * uiommu_capable_permitted()), then the user namespace. The kernel asks for
 * the capability in the initial user namespace; any other namespace's root is not capable
 * there. The namespace is read only when the capability is held, so unprivileged callers (the
 * common case) pay one capget; a capable one adds one stat. The initial namespace is named by
 * its fixed inode number (the kernel's PROC_USER_INIT_INO, ABI since 3.8), which, unlike the
 * look of uid_map, no other namespace can have: a namespace that maps the whole uid range onto
 * itself is still not the initial one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/capability.h>
#include <sys/stat.h>

#include "lib/capable.h"
#include "lib/sys.h"

#define USERNS_INITIAL_INO 0xEFFFFFFDul

/* @ns_path: /proc/<pid>/ns/user of the process asked about. */
static bool capable_in_initial_userns(const char *ns_path)
{
	struct stat st;

	/* Raw: the preload layer's stat() has nothing to say about /proc/<pid>/ns. */
	if (sys_fstatat(AT_FDCWD, ns_path, &st, 0))
		return errno == ENOENT; /* no user namespaces in this kernel (or no such process) */
	return st.st_ino == USERNS_INITIAL_INO;
}

/* @caps (taken): does its set @set hold @cap, in the initial user namespace? */
static bool capable_in(cap_t caps, cap_flag_t set, int cap, const char *ns_path)
{
	cap_flag_value_t v = CAP_CLEAR;

	if (!caps)
		return false;
	if (cap_get_flag(caps, (cap_value_t)cap, set, &v))
		v = CAP_CLEAR;
	cap_free(caps);
	return v == CAP_SET && capable_in_initial_userns(ns_path);
}

bool uiommu_capable(int cap)
{
	return capable_in(cap_get_proc(), CAP_EFFECTIVE, cap, "/proc/self/ns/user");
}

bool uiommu_capable_permitted(int cap)
{
	return capable_in(cap_get_proc(), CAP_PERMITTED, cap, "/proc/self/ns/user");
}

bool uiommu_capable_pid(pid_t pid, int cap)
{
	char ns_path[48];

	snprintf(ns_path, sizeof(ns_path), "/proc/%d/ns/user", (int)pid);
	return capable_in(cap_get_pid(pid), CAP_EFFECTIVE, cap, ns_path);
}
