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

bool uiommu_capable(int cap);

#endif
