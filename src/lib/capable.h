/* SPDX-License-Identifier: MIT */
/*
 * The kernel's capable(): does the calling thread hold @cap (a CAP_* of <sys/capability.h>) in
 * its effective set, in the initial user namespace? Root inside an unprivileged container does
 * not. Asked through libcap. Not a fault-injection point by itself: callers whose kernel
 * counterpart can be made to fail add their own uiommu_should_fail().
 */
#ifndef UIOMMU_LIB_CAPABLE_H
#define UIOMMU_LIB_CAPABLE_H

#include <stdbool.h>
#include <sys/types.h>

bool uiommu_capable(int cap);
/*
 * The same of the permitted set: what the kernel's access(2) counts for a caller whose real
 * uid is root (access_override_creds()).
 */
bool uiommu_capable_permitted(int cap);
/*
 * The same for process @pid (its effective set, its user namespace): whoever calls must make
 * sure @pid still names the process meant once the answer is in (a pidfd).
 */
bool uiommu_capable_pid(pid_t pid, int cap);

#endif
