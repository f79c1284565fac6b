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

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a new iommufd context, as open("/dev/iommu", flags). Only O_CLOEXEC, the access mode
 * and O_NONBLOCK are meaningful; others are ignored as the character device ignores them
 * (uiommu_dev_open() answers the flags a character device refuses). */
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
 * uiommu_ioctl() when uiommu_is_fd(@fd), in one call (the preload layer's ioctl()): what
 * uiommu_ioctl() returns; UIOMMU_FD_PASS when @fd is not one of ours (the caller hands the
 * call to the kernel; errno may have changed).
 */
#define UIOMMU_FD_PASS (-2)
int uiommu_fd_ioctl(int fd, unsigned long request, void *arg);

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
 * The VFIO nodes (include/uiommu/vfio_compat.h): /dev/vfio/vfio (the container: an iommufd
 * context), /dev/vfio/<G> (a group), /dev/vfio/devices/vfioN (a device cdev), and the
 * directories /dev/vfio and /dev/vfio/devices: open() of such a path by its canonical name,
 * as uiommu_dev_open() hands it on (the preload layer forwards every spelling there). A node's fd is one of uiommu_is_fd(): ioctl, dup and close go through
 * uiommu_ioctl(), uiommu_dup*() and uiommu_close(); a directory's is a plain fd.
 */
bool uiommu_vfio_claims(const char *path);
int uiommu_vfio_open(const char *path, int flags);

/*
 * open()/openat() of the device nodes by any name the kernel's path walk accepts ("//dev/iommu",
 * "/dev/./iommu", openat() in a directory fd of /dev, a symlink to the node, the same for
 * /dev/vfio/devices/vfioN), with the kernel's answers to flags that do not fit a character
 * device. uiommu_dev_claims() is cheap for names that contain neither "iommu" nor "vfio"
 * (false); uiommu_dev_claims_link() resolves any name, for after the host said ENOENT (a
 * symlink of another name). Both keep errno. uiommu_dev_open() opens a claimed name. The VFIO
 * nodes and directories below /dev/vfio are claimed the same way.
 */
bool uiommu_dev_claims(int dirfd, const char *path, int flags);
bool uiommu_dev_claims_link(int dirfd, const char *path, int flags);
int uiommu_dev_open(int dirfd, const char *path, int flags);

/*
 * What the nodes look like. uiommu_node_claims(): @path is a VFIO node or directory,
 * /dev/iommu, or /proc/self/fd/N (/dev/fd/N, /proc/<own pid>/fd/N) of an fd of ours. For such
 * paths: uiommu_node_stat() (@flags: AT_SYMLINK_NOFOLLOW or 0) and uiommu_node_statx() (also
 * AT_EMPTY_PATH with @dirfd one of ours) report character devices with the kernel's numbers,
 * as the sysfs `dev` files show them; uiommu_node_access() and uiommu_node_faccessat()
 * (access(2) and faccessat(2), also of any fd's link, as uiommu_fd_link_claims() spells it:
 * the node's mode bits where the host would answer for the file's socket),
 * uiommu_node_readlink() (the node a /proc/self/fd link names), uiommu_node_realpath() (also for virtual sysfs paths),
 * uiommu_node_redirect() (a directory's real place, for opendir and friends).
 * uiommu_fstat() and uiommu_fd_path() are fstat(2) and readlink("/proc/self/fd/N") of an fd
 * of ours. uiommu_read() and friends are read(2)/write(2) of one: the file's own read/write
 * where it has them (a VFIO device fd's regions), else EINVAL as the kernel's files without
 * them (a container, a group, /dev/iommu); EBADF when the fd was not opened for it first;
 * pread/pwrite with a negative offset EINVAL before anything.
 */
struct statx;
bool uiommu_node_claims(const char *path);
int uiommu_node_stat(const char *path, struct stat *st, int flags);
int uiommu_node_statx(int dirfd, const char *path, int flags, unsigned int mask,
		      struct statx *stx);
int uiommu_node_access(const char *path, int mode);
int uiommu_node_faccessat(int dirfd, const char *path, int mode, int flags);
ssize_t uiommu_node_readlink(const char *path, char *buf, size_t len);
char *uiommu_node_realpath(const char *path, char *resolved);
int uiommu_node_redirect(const char *path, char *buf, size_t len);
int uiommu_fstat(int fd, struct stat *st);
ssize_t uiommu_fd_path(int fd, char *buf, size_t len);
/*
 * Another process's uiommu fds, as /proc/<pid>/fd/N shows them (docs/processes.md): the
 * serving process of each file keeps a record of its name in a registry private to the user.
 * uiommu_fd_link_claims(): @path (relative to @dirfd) is spelled as an fd's magic link
 * (/proc/P/fd/N, /proc/P/task/T/fd/N, /dev/fd/N, or a number under such a directory fd); no
 * system call. uiommu_fd_link_readlink(): readlinkat(2) of it, with the file's name
 * ("/dev/iommu", "anon_inode:[iommufd-pgfault]", ...) in place of the "socket:[N]" the host
 * shows for a uiommu file that has a live record. uiommu_fd_link_stat() and
 * uiommu_fd_link_statx(): fstatat(2) and statx(2) of it, with the file's node's stat (as
 * uiommu_fstat() shows it in the serving process) in place of its socket's when they follow
 * the link to a uiommu file that has a live record. uiommu_fd_link_realpath(): realpath(3)
 * of such a link, as glibc resolves the name the link reads: a node's path for a node, ENOENT
 * for an anonymous file (its name is relative). uiommu_fd_registry(): the registry's
 * directory (-1 and errno when there is none this process trusts).
 */
bool uiommu_fd_link_claims(int dirfd, const char *path);
ssize_t uiommu_fd_link_readlink(int dirfd, const char *path, char *buf, size_t len);
int uiommu_fd_link_stat(int dirfd, const char *path, struct stat *st, int flags);
int uiommu_fd_link_statx(int dirfd, const char *path, int flags, unsigned int mask,
			 struct statx *stx);
char *uiommu_fd_link_realpath(const char *path, char *resolved);
int uiommu_fd_registry(char *buf, size_t len);
ssize_t uiommu_read(int fd, void *buf, size_t count);
ssize_t uiommu_write(int fd, const void *buf, size_t count);
ssize_t uiommu_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t uiommu_pwrite(int fd, const void *buf, size_t count, off_t offset);

/*
 * KVM's VFIO pseudo-device: KVM_SET_DEVICE_ATTR on a kvm-vfio device fd (KVM_CREATE_DEVICE of
 * KVM_DEV_TYPE_VFIO) naming one of our fds in KVM_DEV_VFIO_FILE_ADD/DEL: the kernel would
 * refuse our fds, so uiommu_kvm_ioctl() answers as it does for real VFIO files. It returns
 * UIOMMU_KVM_PASS when the call is not such a one (the caller hands it to the kernel).
 * uiommu_kvm_close() forgets what was added through a kvm-vfio fd about to be closed;
 * uiommu_kvm_close_range() does so for a close_range() (its arguments; nothing for what
 * close_range() refuses or for CLOSE_RANGE_CLOEXEC).
 */
#define UIOMMU_KVM_PASS (-2)
int uiommu_kvm_ioctl(int fd, unsigned long request, void *arg);
void uiommu_kvm_close(int fd);
void uiommu_kvm_close_range(unsigned int first, unsigned int last, int flags);

/* @fd no longer refers to the iommufd (it was closed or replaced without uiommu_close(), e.g.
 * dup2() of another file onto it): drop the library's reference without closing anything. */
void uiommu_fd_forget(int fd);

/*
 * One context across processes (docs/processes.md). @fd arrived from elsewhere (SCM_RIGHTS,
 * pidfd_getfd()): if it is an fd of a uiommu file, of this process or of another one, it is
 * one of uiommu_is_fd() from now on, and its calls reach the process that serves it. Returns
 * whether it is one; errno is kept. uiommu_fd_adopt_inherited() does it for every fd the
 * process has (one that a new program inherited across exec).
 */
bool uiommu_fd_adopt(int fd);
void uiommu_fd_adopt_inherited(void);
/*
 * The fd identity reports (the preload layer's calls; docs/running.md, "Identity").
 * uiommu_fd_track(): from now on every close and every new fd the caller can see is reported,
 * so uiommu_is_fd() trusts its table (one load, no system call) unless $UIOMMU_FD_CHECK is
 * "strict". uiommu_fd_note_new(): a call outside the library just returned @fd as a new file;
 * if the library held that number, its fd was closed behind its back and is forgotten (errno is
 * kept). uiommu_fd_close_by(): @close_fn(@arg) is about to close @fd or put another file on it
 * (fclose() of a stream on it, dup2() onto it): the library lets go of @fd around the call, as
 * at a close, and keeps it when the call fails with @fd untouched; returns what @close_fn
 * returned, with its errno.
 */
void uiommu_fd_track(void);
void uiommu_fd_note_new(int fd);
int uiommu_fd_close_by(int fd, int (*close_fn)(void *arg), void *arg);
/* shutdown(2) of a uiommu_is_fd() fd: -1 with ENOTSOCK, as for a device file. */
int uiommu_fd_shutdown(int fd, int how);
/*
 * Exec of a serving process (QEMU's CPR): before an execve, uiommu_exec_handover() hands the
 * serving of this process's files to a new process; a handle, or -1 when there is nothing to
 * hand over. Only when the execve fails: uiommu_exec_failed(handle) undoes it. errno is kept.
 */
int uiommu_exec_handover(void);
void uiommu_exec_failed(int handle);
/*
 * munmap(2), mremap(2) or mmap(2) with MAP_FIXED of [@addr, @addr + @len) is about to run (the
 * preload layer calls it first): a process that serves a context this process mapped memory
 * into learns it, so that a device's DMA to private pages pinned there faults instead of
 * reaching the memory that replaces them (docs/processes.md). errno is kept.
 */
void uiommu_remote_range_forget(const void *addr, size_t len);
/*
 * The same for mmap(2) with MAP_FIXED of @len bytes at @addr with @flags and @fd, of any file
 * (an iommufd's too), before it runs: the range the kernel replaces, a hugetlb mapping's
 * length rounded up to its huge page, which it may unmap even when it then fails.
 */
void uiommu_remote_mmap_fixed_forget(const void *addr, size_t len, int flags, int fd);

/*
 * sigaction(2) of SIGSEGV or SIGBUS by the program once the library's fault trap is installed
 * (the preload layer forwards it): the trap's handler stays in front, @act becomes the
 * program's disposition, which the trap applies to every fault that is not its own, and
 * *@oldact is the program's previous one. Returns false when the call is libc's to make
 * (another signal, or no trap installed yet).
 */
bool uiommu_fault_sigaction(int sig, const struct sigaction *act, struct sigaction *oldact);

/*
 * The fault trap's mask cache (the preload layer's calls): once uiommu_fault_mask_track() says
 * every change of a thread's signal mask is reported, an ioctl skips the two rt_sigprocmask()
 * calls that open the trap's window while SIGSEGV and SIGBUS are known unblocked.
 * uiommu_fault_mask_note(): a successful sigprocmask(@how, @set) on this thread found the mask
 * *@old. uiommu_fault_mask_forget(): this thread's mask changed in a way not worth computing
 * (siglongjmp() with a saved mask, setcontext(), sigsuspend() and the like).
 */
void uiommu_fault_mask_track(void);
void uiommu_fault_mask_note(int how, const sigset_t *set, const sigset_t *old);
void uiommu_fault_mask_forget(void);

/*
 * To call just before close_range(2) (or closefrom(3), as [lowfd, ~0U]): closes the library's
 * fds in [first, last] (iommufd fds, the fds its ioctls made, virtual sysfs fds) as close()
 * would, unless @flags has CLOSE_RANGE_CLOEXEC (they stay ours). Arguments close_range()
 * refuses give -1/EINVAL and close nothing. The real call is the caller's.
 */
int uiommu_fd_close_range(unsigned int first, unsigned int last, int flags);

/*
 * mmap(2) of an iommufd fd: a region an object shares with user space (the vIOMMU's
 * out_mmap_offset/length). MAP_SHARED only (EINVAL), never PROT_EXEC (EPERM), the exact
 * offset and length of a live region (ENXIO). A live mapping holds its object (IOMMU_DESTROY
 * answers EBUSY) until uiommu_munmap() of all of it. uiommu_munmap() is munmap(2) that also
 * forgets such mappings; uiommu_mmap_claims() says whether a range meets one of them.
 * uiommu_mremap() is mremap(2) of such a range (its new_addr only with MREMAP_FIXED): the
 * pages it moves stay held, those it drops are forgotten; growing one is EFAULT, and
 * MREMAP_DONTUNMAP of one EINVAL. uiommu_mmap_fixed() is mmap(2) with MAP_FIXED of anything
 * else (another file, anonymous memory) over such a range: the pages it replaces (a hugetlb
 * mapping's length rounded up to its huge page) are forgotten as an munmap of them would, and
 * when it fails, those the kernel unmapped before failing. uiommu_mmap_fixed_claims() is
 * uiommu_mmap_claims() of the range such an mmap(2) (@flags, @fd) would replace; no system
 * call while there is no mapping of ours.
 */
void *uiommu_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *uiommu_mmap_fixed(void *addr, size_t len, int prot, int flags, int fd, off_t off);
bool uiommu_mmap_fixed_claims(const void *addr, size_t len, int flags, int fd);
int uiommu_munmap(void *addr, size_t len);
void *uiommu_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
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
/*
 * The same for the serving side of this process (docs/processes.md): the n-th fallible step of
 * serving other processes' calls (accepting a connection, its HELLO, each request and the fds
 * its reply passes back), counted across the serving threads in the order a client's calls
 * make them, fails once. uiommu_serve_fail_nth_disarm() disarms and returns how many were
 * still to go (0: the armed failure happened).
 */
void uiommu_serve_fail_nth_arm(unsigned long nth);
unsigned long uiommu_serve_fail_nth_disarm(void);
/*
 * Where a serving thread of this process calls @fn (NULL: nowhere), with the point's number,
 * so that a test can hold it there and run something in a window a schedule could open
 * (docs/processes.md, "When a process is gone"): UIOMMU_SERVE_AT_HELLO once a connection's
 * HELLO has its client, before the answer; UIOMMU_SERVE_AT_CONN_END once a connection has
 * ended, before its client lets go of it; UIOMMU_SERVE_AT_NOTES once the server thread holds
 * an event file whose holders' notes it is about to read. Builds with fault injection only.
 */
enum { UIOMMU_SERVE_AT_HELLO = 1, UIOMMU_SERVE_AT_CONN_END, UIOMMU_SERVE_AT_NOTES };
void uiommu_serve_point_hook(void (*fn)(int point));
/*
 * How many ACCESS_RW calls this process made on contexts other processes serve it copied
 * itself, without a round trip (docs/processes.md, "The direct path").
 */
unsigned long uiommu_remote_direct_copies(void);
/*
 * How many copies into or out of a client's private memory (a window address: a device's DMA,
 * another process's ACCESS_RW) this serving process checked by the client's life word alone,
 * one load, instead of a read of its mem fd (docs/processes.md, "The client's life word").
 */
unsigned long uiommu_remote_life_copies(void);

struct uiommu_stats {
	long objects;        /* live iommufd objects in all contexts of the process */
	long contexts;       /* live iommufd contexts */
	long allocations;    /* live internal allocations (fault-injection builds only) */
	unsigned long pinned_pages; /* user pages pinned in this process (the pin ledger) */
	/* RLIMIT_MEMLOCK accounting, in pages (the kernel's counters of the same names): */
	unsigned long pinned_vm;      /* every pin of this process's mm, any mode (VmPin) */
	unsigned long mm_locked_vm;   /* charged to the mm: RLIMIT_MODE 1 (part of VmLck) */
	unsigned long user_locked_vm; /* charged to the caller's real uid: RLIMIT_MODE 0 */
};

/*
 * A snapshot of the library's counters, once what another process's end released (a killed
 * holder's last fd of a context) has gone and every deferred free has run.
 */
int uiommu_stats_get(struct uiommu_stats *stats);

/* Pin count of the user page holding @addr, as the kernel selftest's MD_CHECK_REFS reads it. */
unsigned int uiommu_page_pin_count(const void *addr);


/* ==== /proc/<pid>/status ========================================================================
 *
 * The calling process's status file with VmPin (and VmLck) counting the pages uiommu pins, as
 * the kernel's would (mm->pinned_vm, mm->locked_vm). The preload layer forwards opens of
 * /proc/self/status, /proc/thread-self/status, /proc/<own pid>/status and their task/<tid>
 * forms here; the fd is a snapshot of the real file taken at open, with those lines corrected.
 */
bool uiommu_proc_status_claims(const char *path);
int uiommu_proc_status_open(const char *path, int flags);
FILE *uiommu_proc_status_fopen(const char *path, const char *mode);

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
/*
 * openat(@dirfd, @path) with @path relative and @dirfd a directory of the virtual sysfs (from
 * an earlier opendir or O_DIRECTORY open): writes the /sys path it names into @buf and says
 * whether it is ours. One readlink of the fd: the preload layer asks only for write opens, the
 * ones a store must see.
 */
bool uiommu_sysfs_claims_at(int dirfd, const char *path, char *buf, size_t len);

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
/*
 * Called by the preload layer before main(), after uiommu_sysfs_session_begin(): the attribute
 * fds this program inherited across exec (a shell's `> /sys/.../type` before exec) are tracked
 * again, as uiommu_sysfs_open() tracks its own; stdout or stderr on one becomes a stream whose
 * fflush() and fclose() report the store's errno.
 */
void uiommu_sysfs_adopt(void);
/* fdopen(3) of a tracked fd: a stream whose writes are the store (errno at fflush/fclose). */
FILE *uiommu_sysfs_fdopen(int fd, const char *mode);

/* ==== the kernel's fault-injection files ========================================================
 *
 * /proc/self/task/<tid>/fail-nth (also /proc/thread-self/fail-nth, /proc/self/fail-nth and the
 * same under /proc/<pid> for this process) over the fault-injection hook: a write of N arms
 * the N-th fallible step of that thread (0 disarms), a read shows what is left ("0\n" once it
 * failed), with the kernel's errnos. The preload layer forwards opens of such paths and the
 * read/write/close/dup calls on their fds here. (The debugfs side, /sys/kernel/debug/fail*,
 * is part of the virtual sysfs.) Same convention as above: -1 and errno on failure.
 */
bool uiommu_fail_nth_claims(const char *path);
int uiommu_fail_nth_open(const char *path, int flags);
bool uiommu_fail_nth_is_fd(int fd);
ssize_t uiommu_fail_nth_read(int fd, void *buf, size_t count);
ssize_t uiommu_fail_nth_pread(int fd, void *buf, size_t count, off_t off);
ssize_t uiommu_fail_nth_write(int fd, const void *buf, size_t count);
ssize_t uiommu_fail_nth_pwrite(int fd, const void *buf, size_t count, off_t off);
int uiommu_fail_nth_close(int fd);
/* After a successful dup of @oldfd to @newfd; and before @fd is replaced by another file. */
int uiommu_fail_nth_fd_dup(int oldfd, int newfd);
void uiommu_fail_nth_fd_forget(int fd);

/* ==== control socket ============================================================================
 *
 * With $UIOMMU_CTL_SOCKET set, the preload layer starts a listener on that Unix socket path
 * (uiommu_ctl_start_env()); `uiommuctl --socket PATH ...` then shows and changes this
 * process's machine. uiommu_ctl_start() does the same for a given path. 0 or -1 and errno.
 */
int uiommu_ctl_start(const char *path);
int uiommu_ctl_start_env(void);

/* ==== device DMA engine (docs/dma-engine.md) =====================================================
 *
 * For device emulators: a device's DMA through the emulated IOMMU, as the hardware does it. A
 * request names (PASID, IOVA, length); the IOMMU translates it through the domain attached to
 * the device at that PASID (its IOTLB first, then a page-table walk), checks the mapping's
 * permissions and copies to or from the memory mapped there (in this model a "physical
 * address" is an address of this process). No byte ever lands outside mapped memory, and a
 * read-only mapping is never written: every page is translated and checked before any byte of
 * it moves, and pages move in IOVA order, so a transfer that faults has moved exactly the pages
 * before the faulting one (req->done says how many bytes) and nothing after.
 *
 * A miss in a fault-capable domain (one with an I/O page fault handler, e.g. an iommufd HWPT
 * allocated with a fault object, or an SVA domain) raises a page request and waits for its
 * response (uiommu_dma_dev_set_timeout()); SUCCESS retries the page once, a second miss faults.
 *
 * Errors (errno, and req->error): EFAULT an unmapped IOVA, a blocked device, an INVALID page
 * response, or memory behind a mapping that this process no longer has; EACCES an access the
 * mapping does not permit (a write through a read-only mapping, a read through a write-only
 * one); ENODEV nothing attached at that PASID, or the device is gone (unplugged, unbound);
 * ETIMEDOUT a page request not answered in time; EIO a FAILURE page response; EINVAL bad
 * arguments (unknown op or flags, a PASID the device cannot emit, a range that wraps);
 * ECANCELED an asynchronous request still waiting at uiommu_dma_dev_close(). Each fault is also
 * recorded in the device's fault log (uiommu_dma_dev_read_faults()).
 */
struct uiommu_dma_dev;

/* Opens the DMA engine of the emulated machine's device @bdf ("0000:00:03.0"); NULL + errno
 * (ENOENT: no such device in the topology; ENODEV: not plugged). */
struct uiommu_dma_dev *uiommu_dma_dev_open(const char *bdf);
/* ... of the device bound to iommufd @iommufd as @dev_id (selftest mock devices, VFIO cdev
 * devices); EBADF / EBADFD (not an iommufd) / ENOENT. The handle stays valid after unbind: the
 * device then translates through whatever its IOMMU group is attached to, as hardware would
 * (the blocking or default domain, or the domain a remaining member of its group holds), and
 * its DMA fails ENODEV once the device itself is gone (unplugged, or a mock device destroyed). */
struct uiommu_dma_dev *uiommu_dma_dev_open_iommufd(int iommufd, uint32_t dev_id);
/* Waits for the asynchronous requests (those waiting for a page response complete with
 * ECANCELED) and frees @dev. No other call on @dev may be running or start. */
int uiommu_dma_dev_close(struct uiommu_dma_dev *dev);
/* How long a request waits for a page response; 0: forever. Default 1000 ms. */
int uiommu_dma_dev_set_timeout(struct uiommu_dma_dev *dev, unsigned int timeout_ms);

#define UIOMMU_DMA_OP_READ 0u  /* the device reads memory into @buf */
#define UIOMMU_DMA_OP_WRITE 1u /* the device writes @buf to memory */

#define UIOMMU_DMA_NO_PASID (1u << 0) /* a request without PASID (the RID): @pasid is ignored */
#define UIOMMU_DMA_NO_PRI (1u << 1)   /* never raise a page request: a miss faults at once */
/*
 * Never wait: where a page request would be sent (and waited for), stop instead with EAGAIN,
 * send nothing and record no fault; @done as for a fault there. For a caller that must not
 * block (a model running a doorbell in the writer's thread), which retries elsewhere.
 */
#define UIOMMU_DMA_NO_WAIT (1u << 2)

struct uiommu_dma_req {
	unsigned int op;        /* UIOMMU_DMA_OP_* */
	unsigned int flags;     /* UIOMMU_DMA_* */
	uint32_t pasid;         /* 0 (IOMMU_NO_PASID): the RID */
	uint64_t iova;
	void *buf;
	size_t len;
	void (*complete)(struct uiommu_dma_req *req); /* uiommu_dma_submit() only */
	void *priv;             /* the caller's */
	/* Results. */
	size_t done;            /* bytes moved, all of them before the faulting page */
	int error;              /* 0 or an errno as above */
};

/* Synchronous: returns @len, or -1 with errno (the pages before the faulting one were moved;
 * uiommu_dma_xfer() says how many bytes). A PASID of 0 means the RID. */
ssize_t uiommu_dma_read(struct uiommu_dma_dev *dev, uint32_t pasid, uint64_t iova, void *buf,
			size_t len, unsigned int flags);
ssize_t uiommu_dma_write(struct uiommu_dma_dev *dev, uint32_t pasid, uint64_t iova,
			 const void *buf, size_t len, unsigned int flags);
/* Synchronous, with the exact result in @req: 0, or -1 with errno == req->error. */
int uiommu_dma_xfer(struct uiommu_dma_dev *dev, struct uiommu_dma_req *req);
/* Asynchronous: 0 and req->complete(req) runs exactly once, later, on the engine's thread (it
 * may submit again); or -1 with errno (EINVAL, ENOMEM) and it never runs. @req and @buf must
 * stay valid until then. A request waiting for a page response does not hold up the others. */
int uiommu_dma_submit(struct uiommu_dma_dev *dev, struct uiommu_dma_req *req);

/*
 * Batches (UIOMMU_DMA_0.4). uiommu_dma_batch() runs @n operations in order as one visit of the
 * device to its IOMMU: the domain is resolved once, and a page translated for one operation
 * serves the next ones as long as no invalidation ran meanwhile (a device's own translation
 * cache), so a model that moves many small buffers pays one entry, not one per buffer.
 *
 * UIOMMU_DMA_OP_COPY moves @len bytes from IOVA @src to IOVA @iova, both through the IOMMU,
 * directly between the pages mapped there (no buffer of the caller in between): pages are
 * taken in IOVA order on both sides, each source page checked for read and each destination
 * page for write before a byte of either moves. A fault on either side stops the copy there:
 * @done counts the bytes written at @iova (every one before the faulting page), @fault_op says
 * which side (UIOMMU_DMA_OP_READ: the source, _WRITE: the destination) and @fault_iova the
 * first byte refused, as a read or write of the same range would report it; the fault log
 * records it with that op. The destination's pages are marked dirty and DMA-logged as for a
 * write. Overlapping ranges are copied as ascending single bytes would be.
 */
#define UIOMMU_DMA_OP_COPY 2u  /* uiommu_dma_batch() only: from @src to @iova */

struct uiommu_dma_op {
	unsigned int op;        /* UIOMMU_DMA_OP_READ, _WRITE or _COPY */
	unsigned int flags;     /* UIOMMU_DMA_NO_PASID | _NO_PRI | _NO_WAIT; COPY: | _RECORD */
	uint32_t pasid;         /* 0 (IOMMU_NO_PASID): the RID */
	uint64_t iova;          /* READ: the memory read; WRITE: written; COPY: the destination */
	uint64_t src;           /* COPY: the source; otherwise ignored */
	void *buf;              /* READ, WRITE: the device's side; COPY: a record, or ignored */
	size_t len;
	/* Results. */
	size_t done;            /* bytes moved (COPY: written at @iova), all before the fault */
	int error;              /* 0 or an errno as for uiommu_dma_xfer() */
	unsigned int fault_op;  /* with @error: UIOMMU_DMA_OP_READ or _WRITE, the refused access */
	uint64_t fault_iova;    /* with @error: its first byte */
};

/*
 * UIOMMU_DMA_RECORD (a COPY's flag; libraries before it refuse it with EINVAL): the copy's
 * completion record, as a copy engine writes one when an operation ends. @buf points to a
 * struct uiommu_dma_record, and once all @len bytes are copied its @len bytes from its @buf are
 * written at its @iova (same PASID and flags), under the rules of a WRITE: so one op per
 * descriptor where a model would queue a COPY and a WRITE. A fault writing the record leaves
 * @done = @len (the copy is whole) with @error, @fault_op = UIOMMU_DMA_OP_WRITE and
 * @fault_iova the record's first refused byte; a fault of the copy writes no record.
 */
#define UIOMMU_DMA_RECORD (1u << 3)

struct uiommu_dma_record {
	uint64_t iova;          /* where the record goes */
	const void *buf;        /* its bytes */
	size_t len;
};

/* One copy of a run (uiommu_pci_dma_copy_run() of device.h, UIOMMU_DMA_0.5). */
struct uiommu_dma_copy {
	uint64_t src;           /* IOVA read */
	uint64_t dst;           /* IOVA written */
	uint64_t len;           /* bytes; 0 stops the run */
};

/*
 * Runs @ops[0..n) in order; stops at the first that fails. Returns how many completed (@n when
 * all did; the one at that index has @error set, those after it are untouched but for done = 0
 * and error = 0), or -1 with errno EINVAL (an op as uiommu_dma_xfer() would refuse it, a COPY
 * whose source wraps, a record without a buffer or that wraps, @n > 4096: nothing ran). Page
 * requests work as for uiommu_dma_xfer().
 */
#define UIOMMU_DMA_BATCH_MAX 4096u
ssize_t uiommu_dma_batch(struct uiommu_dma_dev *dev, struct uiommu_dma_op *ops, size_t n);

/* Fault reasons. */
#define UIOMMU_DMA_FAULT_UNMAPPED 1u    /* no translation (EFAULT) */
#define UIOMMU_DMA_FAULT_PERM 2u        /* the mapping does not permit the access (EACCES) */
#define UIOMMU_DMA_FAULT_BLOCKED 3u     /* the device is on a blocking domain (EFAULT) */
#define UIOMMU_DMA_FAULT_NO_DOMAIN 4u   /* nothing attached at the PASID, device gone (ENODEV) */
#define UIOMMU_DMA_FAULT_PRQ_INVALID 5u /* page response INVALID (EFAULT) */
#define UIOMMU_DMA_FAULT_PRQ_FAILURE 6u /* page response FAILURE, or none could be sent (EIO) */
#define UIOMMU_DMA_FAULT_PRQ_TIMEOUT 7u /* no page response in time (ETIMEDOUT) */
#define UIOMMU_DMA_FAULT_HOST 8u        /* the memory behind the mapping is gone (EFAULT) */

#define UIOMMU_DMA_FAULT_PASID_VALID (1u << 0) /* the request had a PASID */
#define UIOMMU_DMA_FAULT_LOST (1u << 1)        /* older events were overwritten before this one */

struct uiommu_dma_fault {
	uint64_t iova;          /* the first byte of the access the IOMMU refused */
	uint32_t pasid;
	uint32_t op;            /* UIOMMU_DMA_OP_* */
	uint32_t reason;        /* UIOMMU_DMA_FAULT_* */
	uint32_t flags;         /* UIOMMU_DMA_FAULT_PASID_VALID | _LOST */
};

/* Takes up to @n recorded faults, oldest first, out of @dev's log (it keeps the last 64). */
ssize_t uiommu_dma_dev_read_faults(struct uiommu_dma_dev *dev, struct uiommu_dma_fault *buf,
				   size_t n);

/*
 * Shared virtual addressing: bind the device to this process's address space. *@pasid gets the
 * process's PASID (the same for every device and every bind, for the life of the process); DMA
 * at that PASID then uses this process's virtual addresses as IOVAs, with its mappings'
 * permissions, and a page the process has not touched yet is brought in through a page request
 * the core answers itself. Each bind is undone by one unbind (or by closing the handle).
 * Errors: EBUSY (another address space or a non-SVA domain holds that PASID on the device),
 * EOVERFLOW (the process's PASID is beyond the device's PASID width), EINVAL (the device has no
 * PASIDs), EOPNOTSUPP (its IOMMU cannot do SVA), ENOSPC; unbind without a bind: ENOENT.
 */
int uiommu_dma_dev_sva_bind(struct uiommu_dma_dev *dev, uint32_t *pasid);
int uiommu_dma_dev_sva_unbind(struct uiommu_dma_dev *dev);

#ifdef __cplusplus
}
#endif

#endif
