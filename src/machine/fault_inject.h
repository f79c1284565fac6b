/* SPDX-License-Identifier: MIT */
/*
 * The kernel's fault-injection interface (see fault_inject.c): the debugfs side, which the
 * virtual sysfs materialises under /sys/kernel/debug and whose stores it forwards here. The
 * /proc fail-nth entry points are public (include/uiommu/uiommu.h), for the preload layer.
 */
#ifndef UIOMMU_MACHINE_FAULT_INJECT_H
#define UIOMMU_MACHINE_FAULT_INJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Is @path /sys/kernel/debug itself or in one of our directories? (Fault-injection builds.) */
bool fault_debugfs_claims(const char *path);

/* The @i-th directory under /sys/kernel/debug ("failslab"); NULL past the last. */
const char *fault_debugfs_dir(size_t i);

/*
 * The @i-th attribute: its path below /sys/kernel/debug ("failslab/verbose") into @path and
 * its content as a read shows it ("2\n") into @buf; false past the last.
 */
bool fault_debugfs_attr(size_t i, char *path, size_t plen, char *buf, size_t blen);

/* Is @path ("failslab/verbose", below /sys/kernel/debug) an attribute? */
bool fault_debugfs_is_attr(const char *path);

/* The attribute's content as a read shows it ("2\n"); 0 or -ENOENT. */
int fault_debugfs_show(const char *path, char *buf, size_t len);

/* The attribute's store, as debugfs parses it: @count, or -EINVAL/-ERANGE (-ENOENT: no such). */
ssize_t fault_debugfs_store(const char *path, const char *buf, size_t count);

#endif
