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
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

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

/*
 * Event fds that iommufd ioctls return (VEVENTQ_ALLOC's out_veventq_fd, FAULT_QUEUE_ALLOC's
 * out_fault_fd): real eventfds, so poll/select/epoll work as they are (POLLIN while something
 * waits; a fault fd is always POLLOUT); read and write through these, close with
 * uiommu_close(). A fault fd reads 40-byte struct iommu_hwpt_pgfault records and takes 8-byte
 * struct iommu_hwpt_page_response records; a vEVENTQ fd cannot be written (EINVAL).
 */
bool uiommu_event_is_fd(int fd);
ssize_t uiommu_event_read(int fd, void *buf, size_t count);
ssize_t uiommu_event_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t uiommu_event_write(int fd, const void *buf, size_t count);
ssize_t uiommu_event_pwrite(int fd, const void *buf, size_t count, off_t offset);

/*
 * The VFIO device cdev, /dev/vfio/devices/vfioN (include/uiommu/vfio_compat.h): open() of such
 * a path, as the preload layer forwards it. The fd is one of uiommu_is_fd(): ioctl, dup and
 * close go through uiommu_ioctl(), uiommu_dup*() and uiommu_close().
 */
bool uiommu_vfio_claims(const char *path);
int uiommu_vfio_open(const char *path, int flags);

/* @fd no longer refers to the iommufd (it was closed or replaced without uiommu_close(), e.g.
 * dup2() of another file onto it): drop the library's reference without closing anything. */
void uiommu_fd_forget(int fd);

/*
 * mmap(2) of an iommufd fd: a region an object shares with user space (the vIOMMU's
 * out_mmap_offset/length). MAP_SHARED only (EINVAL), never PROT_EXEC (EPERM), the exact
 * offset and length of a live region (ENXIO). A live mapping holds its object (IOMMU_DESTROY
 * answers EBUSY) until uiommu_munmap() of all of it. uiommu_munmap() is munmap(2) that also
 * forgets such mappings; uiommu_mmap_claims() says whether a range meets one of them.
 */
void *uiommu_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int uiommu_munmap(void *addr, size_t len);
bool uiommu_mmap_claims(const void *addr, size_t len);

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


/* ==== virtual sysfs =============================================================================
 *
 * The IOMMU part of /sys (/sys/kernel/iommu_groups, /sys/bus/pci/devices, /sys/class/iommu and
 * the device directories they link to) as the kernel lays it out, for the emulated machine
 * (the topology: $UIOMMU_TOPOLOGY or the embedded default, loaded on first use). The preload
 * layer forwards every libc call naming such a path here, so that cat, ls, readlink and
 * `echo DMA-FQ > /sys/kernel/iommu_groups/N/type` work under uiommu-run; a program linking
 * libuiommu may call these directly. Same convention as above: -1 and errno on failure.
 *
 * The tree is written to a private directory and the paths are redirected there; only writes to
 * the writable attributes are intercepted: a group's `type` (the kernel's type store: EACCES
 * without CAP_SYS_ADMIN and CAP_SYS_RAWIO, EINVAL, EPERM ...), a device's `remove`,
 * /sys/bus/pci/rescan, and the emulated driver's /sys/bus/pci/drivers/uiommu-dma/{bind,unbind}.
 * The fd uiommu_sysfs_open() returns for writing one of them is tracked, and
 * uiommu_sysfs_write() on it runs the store with the kernel's errnos. $UIOMMU_SYSFS_PRIVILEGED=1
 * (or 0) overrides the capability check: a test hook. The processes of one uiommu-run share a
 * machine ($UIOMMU_SYSFS_DIR): their stores are journalled and replayed by each.
 */

/* Is @path (absolute) inside the virtual sysfs? No I/O, no lock: cheap enough for every call. */
bool uiommu_sysfs_claims(const char *path);

/* Brings the tree up to date and writes into @buf the real path that stands for @path. */
int uiommu_sysfs_redirect(const char *path, char *buf, size_t len);

/* open(2) of a virtual sysfs path. */
int uiommu_sysfs_open(const char *path, int flags, mode_t mode);
/* fopen(3) of a virtual sysfs path; a `type` opened for writing stores at fflush/fclose. */
FILE *uiommu_sysfs_fopen(const char *path, const char *mode);

/* Is @fd a writable attribute opened for writing? (write() and close() wrappers ask each call.) */
bool uiommu_sysfs_is_fd(int fd);
/* write(2) on such an fd: the attribute's store; returns @count or -1 with the kernel's errno. */
ssize_t uiommu_sysfs_write(int fd, const void *buf, size_t count);
/* close(2) of such an fd. */
int uiommu_sysfs_close(int fd);
/* After a successful dup of @oldfd to @newfd: @newfd writes to the same attribute. */
int uiommu_sysfs_fd_dup(int oldfd, int newfd);
/* @fd is about to be replaced (dup2 onto it) or was closed behind the library's back. */
void uiommu_sysfs_fd_forget(int fd);

/* stat(2), lstat(2), readlink(2) and access(2) of virtual sysfs paths. */
int uiommu_sysfs_stat(const char *path, struct stat *st);
int uiommu_sysfs_lstat(const char *path, struct stat *st);
ssize_t uiommu_sysfs_readlink(const char *path, char *buf, size_t len);
int uiommu_sysfs_access(const char *path, int mode);

/* Called by the preload layer before main(): names the session directory that the processes
 * started from this one share ($UIOMMU_SYSFS_DIR), made on first use, removed at exit. */
void uiommu_sysfs_session_begin(void);

/* ==== control socket ============================================================================
 *
 * With $UIOMMU_CTL_SOCKET set, the preload layer starts a listener on that Unix socket path
 * (uiommu_ctl_start_env()); `uiommuctl --socket PATH ...` then shows and changes this
 * process's machine. uiommu_ctl_start() does the same for a given path. 0 or -1 and errno.
 */
int uiommu_ctl_start(const char *path);
int uiommu_ctl_start_env(void);

#ifdef __cplusplus
}
#endif

#endif
