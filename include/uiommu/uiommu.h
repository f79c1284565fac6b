/* SPDX-License-Identifier: MIT */
/*
 * libuiommu: the Linux iommufd (/dev/iommu) as a library.
 *
 * A program either runs under `uiommu-run`, where open("/dev/iommu") and the ioctls on that fd
 * are served by this library through LD_PRELOAD, or links libuiommu and calls the functions
 * below directly. Both reach the same implementation with the same results.
 *
 * Every function follows the system-call convention: on failure it returns -1 and sets errno,
 * with the errnos the kernel gives for the same call. The fds handed out are real fd numbers of
 * the calling process (close-on-exec if asked); they must be closed with uiommu_close() when
 * the library is used without the preload layer.
 *
 * State is per process: a forked child gets a copy of its parent's iommufd contexts, as it gets
 * a copy of the rest of its memory; the two copies then live separate lives.
 *
 * All functions are thread-safe. Threads need no registration of any kind.
 */
#ifndef UIOMMU_UIOMMU_H
#define UIOMMU_UIOMMU_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a new iommufd context, as open("/dev/iommu", flags). Only O_CLOEXEC, O_RDWR,
 * O_RDONLY, O_WRONLY, O_NONBLOCK and O_NOCTTY are meaningful; others are ignored as the
 * character device ignores them. */
int uiommu_open(int flags);

/* ioctl(2) on an iommufd fd. The request and argument are those of <linux/iommufd.h>. */
int uiommu_ioctl(int fd, unsigned long request, void *arg);

/* close(2) of an iommufd fd; the context is destroyed at its last close. */
int uiommu_close(int fd);

/* dup(2), dup3(2) and fcntl(F_DUPFD/F_DUPFD_CLOEXEC) on an iommufd fd. */
int uiommu_dup(int fd);
int uiommu_dup3(int oldfd, int newfd, int flags);
int uiommu_dupfd(int fd, int minfd, bool cloexec);

/* Is @fd an iommufd fd of this library? */
bool uiommu_is_fd(int fd);

/* @fd no longer refers to the iommufd (it was closed or replaced without uiommu_close(), e.g.
 * dup2() of another file onto it): drop the library's reference without closing anything. */
void uiommu_fd_forget(int fd);

/*
 * Test support (meaningful in builds with fault injection, the default for debug builds;
 * no-ops in release builds).
 *
 * uiommu_fail_nth_arm(n): the n-th fallible step this thread runs from now fails once, as the
 * kernel's /proc/self/task/<tid>/fail-nth. 0 disarms. uiommu_fail_nth_disarm() disarms and
 * returns how many steps were still to go (0 means the armed failure happened).
 * uiommu_fail_points_seen(): fallible steps this thread passed since the last arm.
 */
bool uiommu_fail_nth_available(void); /* false in release builds: the hook is compiled out */
void uiommu_fail_nth_arm(unsigned long nth);
unsigned long uiommu_fail_nth_disarm(void);
unsigned long uiommu_fail_points_seen(void);

struct uiommu_stats {
	long objects;        /* live iommufd objects in all contexts of the process */
	long contexts;       /* live iommufd contexts */
	long allocations;    /* live internal allocations (fault-injection builds only) */
	unsigned long pinned_pages; /* user pages pinned in this process (the pin ledger) */
};

/* A snapshot of the library's counters, after every deferred free has run. */
int uiommu_stats_get(struct uiommu_stats *stats);

/* Pin count of the user page holding @addr, as the kernel selftest's MD_CHECK_REFS reads it. */
unsigned int uiommu_page_pin_count(const void *addr);

#ifdef __cplusplus
}
#endif

#endif
