// SPDX-License-Identifier: MIT
/*
 * capable(): the effective set through libcap, then the user namespace. The kernel asks for
 * the capability in the initial user namespace, which maps the whole uid range onto itself;
 * any other namespace's root is not capable there. The namespace is read only when the
 * capability is held, so unprivileged callers (the common case) pay one capget.
 */
#include <stdio.h>
#include <sys/capability.h>

#include "lib/capable.h"

static bool capable_in_initial_userns(void)
{
	unsigned long inner, outer, count;
	bool initial = false;
	FILE *f = fopen("/proc/self/uid_map", "re");

	if (!f)
		return true; /* no user namespaces in this kernel */
	if (fscanf(f, "%lu %lu %lu", &inner, &outer, &count) == 3)
		initial = inner == 0 && outer == 0 && count == 4294967295ul;
	fclose(f);
	return initial;
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
