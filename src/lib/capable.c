// SPDX-License-Identifier: MIT
/*
 * capable(): the effective set through libcap, then the user namespace. The kernel asks for
 * the capability in the initial user namespace; any other namespace's root is not capable
 * there. The namespace is read only when the capability is held, so unprivileged callers (the
 * common case) pay one capget; a capable one adds one stat. The initial namespace is named by
 * its fixed inode number (the kernel's PROC_USER_INIT_INO, ABI since 3.8), which, unlike the
 * look of uid_map, no other namespace can have: a namespace that maps the whole uid range onto
 * itself is still not the initial one.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/capability.h>
#include <sys/stat.h>

#include "lib/capable.h"
#include "lib/sys.h"

#define USERNS_INITIAL_INO 0xEFFFFFFDul

static bool capable_in_initial_userns(void)
{
	struct stat st;

	/* Raw: the preload layer's stat() has nothing to say about /proc/self/ns. */
	if (sys_fstatat(AT_FDCWD, "/proc/self/ns/user", &st, 0))
		return errno == ENOENT; /* no user namespaces in this kernel */
	return st.st_ino == USERNS_INITIAL_INO;
}

bool uiommu_capable(int cap)
{
	cap_flag_value_t v = CAP_CLEAR;
	cap_t caps = cap_get_proc();

	if (!caps)
		return false;
	if (cap_get_flag(caps, (cap_value_t)cap, CAP_EFFECTIVE, &v))
		v = CAP_CLEAR;
	cap_free(caps);
	return v == CAP_SET && capable_in_initial_userns();
}
