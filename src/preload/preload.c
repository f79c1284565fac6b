// SPDX-License-Identifier: MIT
/*
 * The LD_PRELOAD layer: it intercepts the libc calls that can touch /dev/iommu and forwards
 * them to libuiommu. It holds no state and implements no semantics of its own: an open of
 * /dev/iommu becomes uiommu_open(), and calls on an fd that uiommu_is_fd() claims go to the
 * matching uiommu_*() call (ioctl() asks and calls at once: uiommu_fd_ioctl()). Every other
 * call goes to the real libc function untouched.
 *
 * The virtual sysfs (the library's machine/sysfs.c) is forwarded the same way: a call naming a
 * path that uiommu_sysfs_claims() (/sys/kernel/iommu_groups, /sys/bus/pci/devices, ...) gets
 * the library's redirected path (uiommu_sysfs_redirect()) and goes on to libc with it; opens
 * go to uiommu_sysfs_open()/uiommu_sysfs_fopen(), and write, close, fdopen and the dups of an
 * fd that uiommu_sysfs_is_fd() claims go to the library. The constructor lets the library name
 * the session directory before main(), take back the attribute fds inherited across exec
 * (uiommu_sysfs_adopt()) and start the control socket if $UIOMMU_CTL_SOCKET is set.
 *
 * The calling process's /proc status file goes the same way: an open or fopen of a path
 * uiommu_proc_status_claims() becomes uiommu_proc_status_open()/_fopen() (VmPin, VmLck).
 *
 * The device nodes (/dev/iommu and the VFIO device cdevs /dev/vfio/devices/vfioN), by any name
 * (asked after the virtual sysfs, whose paths contain "iommu" but never name a node):
 * an open that uiommu_dev_claims() becomes uiommu_dev_open(), and one the host answers ENOENT
 * gets a second look with uiommu_dev_claims_link() (a symlink to a node). Their fds are
 * uiommu_is_fd() fds; read and write on them go to the library too.
 *
 * The kernel's fault-injection files go the same way: an open of a path uiommu_fail_nth_claims()
 * (/proc/self/task/<tid>/fail-nth ...) becomes uiommu_fail_nth_open(), and read, pread, write,
 * pwrite, close and the dups of an fd uiommu_fail_nth_is_fd() claims go to the library.
 *
 * The fault trap's mask cache (the library's mm/mm_self.c): every call that changes a thread's
 * signal mask (sigprocmask, pthread_sigmask) is reported with uiommu_fault_mask_note(), and
 * those that change it where libc's wrappers do not see it (siglongjmp/longjmp with a saved
 * mask, setcontext, swapcontext, sigsuspend, pselect, ppoll, epoll_pwait, the System V and BSD
 * sighold, sigrelse, sigset, sigblock, sigsetmask, sigpause) clear the cache
 * with uiommu_fault_mask_forget(); the constructor says the reports are complete
 * (uiommu_fault_mask_track()).
 *
 * fds that arrive from another process (recvmsg/recvmmsg's SCM_RIGHTS, pidfd_getfd() and
 * syscall(SYS_pidfd_getfd), and at start the fds inherited across exec) are handed to
 * uiommu_fd_adopt(): the library decides whether they are its files' (docs/processes.md). The
 * exec family (execve, execv, execvp, execvpe, execl, execlp, execle, fexecve, execveat) first
 * asks the library to hand its serving over (uiommu_exec_handover()) and undoes that when the
 * exec returns (uiommu_exec_failed()).
 *
 * The fd identity reports (the library's iommufd/file.c, "Identity"): the layer tells the library
 * of every close it can see before the number is free (close, the dups onto one of its fds,
 * close_range, closefrom, fclose() of a stream on one: uiommu_fd_close_by(); the same calls made
 * through syscall()), and of every fd that a call outside the library returns (the open family,
 * socket, accept, pipe, the dups, eventfd, memfd_create, timerfd, signalfd, epoll, inotify,
 * fanotify, mkstemp, openpty, the stdio opens, opendir, and their syscall() numbers:
 * uiommu_fd_note_new()); the constructor says the reports are complete (uiommu_fd_track()), and
 * the library's fd check costs no system call from then on.
 *
 * The real functions are looked up lazily with dlsym(RTLD_NEXT) (libc_func()).
 */
/* We define both the plain and the 64 names ourselves: no redirection of one to the other. */
#undef _FILE_OFFSET_BITS
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/xattr.h>
#include <ucontext.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "uiommu/uiommu.h"

/*
 * Declares _name, the next definition of libc's `name`, looked up on first use. Threads may race
 * to look it up: they all find the same pointer, and the atomic keeps the race well defined.
 */
#define libc_func(name, rettype, ...)                                                      \
	static _Atomic(rettype(*)(__VA_ARGS__)) _##name##_ptr;                              \
	rettype (*_##name)(__VA_ARGS__) =                                                  \
		atomic_load_explicit(&_##name##_ptr, memory_order_relaxed);                \
	if (!_##name) {                                                                    \
		_##name = (rettype(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);                \
		if (!_##name) {                                                            \
			fprintf(stderr, "uiommu-preload: cannot find libc's %s\n", #name); \
			abort();                                                           \
		}                                                                          \
		atomic_store_explicit(&_##name##_ptr, _##name, memory_order_relaxed);      \
	}

/*
 * Replaces @path by its place in the virtual sysfs tree when the library claims it; on failure
 * returns @err from the wrapper with the library's errno. errno is kept on success.
 */
#define SYSFS_REDIRECT(path, err)                                                         \
	char _sysfs_buf[PATH_MAX];                                                        \
	if (uiommu_sysfs_claims(path)) {                                                  \
		int _saved_errno = errno;                                                 \
		if (uiommu_sysfs_redirect(path, _sysfs_buf, sizeof(_sysfs_buf)))          \
			return err;                                                       \
		errno = _saved_errno;                                                     \
		path = _sysfs_buf;                                                        \
	} else if (uiommu_node_claims(path)) {                                            \
		int _saved_errno = errno;                                                 \
		if (uiommu_node_redirect(path, _sysfs_buf, sizeof(_sysfs_buf)))           \
			return err;                                                       \
		errno = _saved_errno;                                                     \
		path = _sysfs_buf;                                                        \
	}

/*
 * A write open relative to a directory fd (openat(dirfd(opendir("/sys/kernel/debug")), ...),
 * as the kernel's iommufd_fail_nth does): the library says whether the directory is in the
 * virtual sysfs, so that the store runs instead of a write to the tree's file. Read opens go
 * to the tree directly: its files hold the attributes' content.
 */
static bool sysfs_write_open_at(int dirfd, const char *path, int flags, char *buf, size_t len)
{
	if (dirfd == AT_FDCWD || (!(flags & (O_WRONLY | O_RDWR | O_TRUNC | O_CREAT))))
		return false;
	return uiommu_sysfs_claims_at(dirfd, path, buf, len);
}

/* glibc's fortified open entry points, which its headers do not declare. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
int fcntl64(int fd, int cmd, ...);
void __longjmp_chk(struct __jmp_buf_tag env[1], int val);
int __sigpause(int sig_or_mask, int is_sig);
int __xpg_sigpause(int sig);
int sigblock(int mask);
int sigsetmask(int mask);
/* The pre-2.33 stat entry points, still called by programs built against older glibc. */
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);
ssize_t __readlink_chk(const char *path, char *buf, size_t len, size_t buflen);
ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t len, size_t buflen);
/* The fortified read entry points (_FORTIFY_SOURCE builds, Debian's QEMU among them, call
 * these instead of read/pread). */
ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset, size_t buflen);

/* ---- Overridden libc wrappers -------------------------------------------------------------- */

/* @fd (or -1) is a new fd that a call outside the library returned: the library's to hear. */
static int fd_made(int fd)
{
	if (fd >= 0)
		uiommu_fd_note_new(fd);
	return fd;
}

static FILE *stream_made(FILE *stream)
{
	if (stream)
		fd_made(fileno(stream));
	return stream;
}

/*
 * @fd is what the host's open answered: on ENOENT for a name the library resolves to one of its
 * device nodes (a symlink of another name), the library's open instead.
 */
static int open_or_link(int fd, int dirfd, const char *path, int flags)
{
	if (fd < 0 && errno == ENOENT && uiommu_dev_claims_link(dirfd, path, flags))
		return uiommu_dev_open(dirfd, path, flags);
	return fd_made(fd);
}

#define WRAP_OPEN(name)                                                                   \
	UIOMMU_EXPORT int name(const char *path, int flags, ...)                          \
	{                                                                                 \
		mode_t mode = 0;                                                          \
		libc_func(name, int, const char *, int, ...);                             \
		if (flags & (O_CREAT | O_TMPFILE)) {                                      \
			va_list ap;                                                       \
			va_start(ap, flags);                                              \
			mode = va_arg(ap, mode_t);                                        \
			va_end(ap);                                                       \
		}                                                                         \
		if (uiommu_proc_status_claims(path))                                      \
			return fd_made(uiommu_proc_status_open(path, flags));             \
		if (uiommu_fail_nth_claims(path))                                         \
			return fd_made(uiommu_fail_nth_open(path, flags));                \
		if (uiommu_sysfs_claims(path))                                            \
			return fd_made(uiommu_sysfs_open(path, flags, mode));             \
		if (uiommu_dev_claims(AT_FDCWD, path, flags))                             \
			return uiommu_dev_open(AT_FDCWD, path, flags);                    \
		return open_or_link(_##name(path, flags, mode), AT_FDCWD, path, flags);   \
	}

#define WRAP_OPENAT(name)                                                                 \
	UIOMMU_EXPORT int name(int dirfd, const char *path, int flags, ...)               \
	{                                                                                 \
		char _at[PATH_MAX];                                                       \
		mode_t mode = 0;                                                          \
		libc_func(name, int, int, const char *, int, ...);                        \
		if (flags & (O_CREAT | O_TMPFILE)) {                                      \
			va_list ap;                                                       \
			va_start(ap, flags);                                              \
			mode = va_arg(ap, mode_t);                                        \
			va_end(ap);                                                       \
		}                                                                         \
		if (uiommu_proc_status_claims(path))                                      \
			return fd_made(uiommu_proc_status_open(path, flags));             \
		if (uiommu_fail_nth_claims(path))                                         \
			return fd_made(uiommu_fail_nth_open(path, flags));                \
		if (uiommu_sysfs_claims(path))                                            \
			return fd_made(uiommu_sysfs_open(path, flags, mode));             \
		if (sysfs_write_open_at(dirfd, path, flags, _at, sizeof(_at)))            \
			return fd_made(uiommu_sysfs_open(_at, flags, mode));              \
		if (uiommu_dev_claims(dirfd, path, flags))                                \
			return uiommu_dev_open(dirfd, path, flags);                       \
		return open_or_link(_##name(dirfd, path, flags, mode), dirfd, path, flags); \
	}

#define WRAP_OPEN_2(name)                                                                 \
	UIOMMU_EXPORT int name(const char *path, int flags)                               \
	{                                                                                 \
		libc_func(name, int, const char *, int);                                  \
		if (uiommu_proc_status_claims(path))                                      \
			return fd_made(uiommu_proc_status_open(path, flags));             \
		if (uiommu_fail_nth_claims(path))                                         \
			return fd_made(uiommu_fail_nth_open(path, flags));                \
		if (uiommu_sysfs_claims(path))                                            \
			return fd_made(uiommu_sysfs_open(path, flags, 0));                \
		if (uiommu_dev_claims(AT_FDCWD, path, flags))                             \
			return uiommu_dev_open(AT_FDCWD, path, flags);                    \
		return open_or_link(_##name(path, flags), AT_FDCWD, path, flags);         \
	}

#define WRAP_OPENAT_2(name)                                                               \
	UIOMMU_EXPORT int name(int dirfd, const char *path, int flags)                    \
	{                                                                                 \
		char _at[PATH_MAX];                                                       \
		libc_func(name, int, int, const char *, int);                             \
		if (uiommu_proc_status_claims(path))                                      \
			return fd_made(uiommu_proc_status_open(path, flags));             \
		if (uiommu_fail_nth_claims(path))                                         \
			return fd_made(uiommu_fail_nth_open(path, flags));                \
		if (uiommu_sysfs_claims(path))                                            \
			return fd_made(uiommu_sysfs_open(path, flags, 0));                \
		if (sysfs_write_open_at(dirfd, path, flags, _at, sizeof(_at)))            \
			return fd_made(uiommu_sysfs_open(_at, flags, 0));                 \
		if (uiommu_dev_claims(dirfd, path, flags))                                \
			return uiommu_dev_open(dirfd, path, flags);                       \
		return open_or_link(_##name(dirfd, path, flags), dirfd, path, flags);     \
	}

WRAP_OPEN(open)
WRAP_OPEN(open64)
WRAP_OPENAT(openat)
WRAP_OPENAT(openat64)
WRAP_OPEN_2(__open_2)
WRAP_OPEN_2(__open64_2)
WRAP_OPENAT_2(__openat_2)
WRAP_OPENAT_2(__openat64_2)

UIOMMU_EXPORT int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;
	int rc;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	rc = uiommu_fd_ioctl(fd, request, arg);
	if (rc != UIOMMU_FD_PASS)
		return rc;
	/* libc's only now: an iommufd ioctl does not look for it. */
	libc_func(ioctl, int, int, unsigned long, ...);
	/* KVM's VFIO device told of one of our fds: the library answers for the kernel. */
	rc = uiommu_kvm_ioctl(fd, request, arg);
	if (rc != UIOMMU_KVM_PASS)
		return rc;
	return _ioctl(fd, request, arg);
}

UIOMMU_EXPORT int close(int fd)
{
	libc_func(close, int, int);
	if (uiommu_is_fd(fd) || uiommu_event_is_fd(fd))
		return uiommu_close(fd);
	if (uiommu_sysfs_is_fd(fd))
		return uiommu_sysfs_close(fd);
	if (uiommu_fail_nth_is_fd(fd))
		return uiommu_fail_nth_close(fd);
	uiommu_kvm_close(fd);
	return _close(fd);
}

UIOMMU_EXPORT int dup(int fd)
{
	int rc;

	libc_func(dup, int, int);
	if (uiommu_is_fd(fd))
		return uiommu_dup(fd);
	rc = fd_made(_dup(fd));
	if (rc >= 0 && uiommu_sysfs_is_fd(fd))
		uiommu_sysfs_fd_dup(fd, rc);
	if (rc >= 0 && uiommu_fail_nth_is_fd(fd))
		uiommu_fail_nth_fd_dup(fd, rc);
	return rc;
}

/* The real dup2() or dup3() of another file onto one of ours, for uiommu_fd_close_by(). */
struct fd_dup_onto {
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int oldfd, newfd, flags;
};

static int fd_dup_onto_call(void *arg)
{
	struct fd_dup_onto *d = arg;

	return d->dup3 ? d->dup3(d->oldfd, d->newfd, d->flags) : d->dup2(d->oldfd, d->newfd);
}

/* Another file onto @d->newfd: a close of ours there, if it is one. */
static int fd_dup_onto(struct fd_dup_onto *d)
{
	if (d->oldfd != d->newfd && uiommu_is_fd(d->newfd))
		return uiommu_fd_close_by(d->newfd, fd_dup_onto_call, d);
	return fd_dup_onto_call(d);
}

UIOMMU_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int rc;

	libc_func(dup3, int, int, int, int);
	if (uiommu_is_fd(oldfd))
		return uiommu_dup3(oldfd, newfd, flags);
	if (oldfd != newfd && uiommu_sysfs_is_fd(newfd))
		uiommu_sysfs_fd_forget(newfd);
	if (oldfd != newfd && uiommu_fail_nth_is_fd(newfd))
		uiommu_fail_nth_fd_forget(newfd);
	rc = fd_dup_onto(&(struct fd_dup_onto){ .dup3 = _dup3, .oldfd = oldfd, .newfd = newfd,
					  .flags = flags });
	if (rc >= 0 && uiommu_sysfs_is_fd(oldfd))
		uiommu_sysfs_fd_dup(oldfd, newfd);
	if (rc >= 0 && uiommu_fail_nth_is_fd(oldfd))
		uiommu_fail_nth_fd_dup(oldfd, newfd);
	return rc;
}

UIOMMU_EXPORT int dup2(int oldfd, int newfd)
{
	int rc;

	libc_func(dup2, int, int, int);
	if (uiommu_is_fd(oldfd)) {
		if (oldfd == newfd)
			return newfd;
		return uiommu_dup3(oldfd, newfd, 0);
	}
	if (oldfd != newfd && uiommu_sysfs_is_fd(newfd))
		uiommu_sysfs_fd_forget(newfd);
	if (oldfd != newfd && uiommu_fail_nth_is_fd(newfd))
		uiommu_fail_nth_fd_forget(newfd);
	rc = fd_dup_onto(&(struct fd_dup_onto){ .dup2 = _dup2, .oldfd = oldfd, .newfd = newfd });
	if (rc >= 0 && oldfd != newfd && uiommu_sysfs_is_fd(oldfd))
		uiommu_sysfs_fd_dup(oldfd, newfd);
	if (rc >= 0 && oldfd != newfd && uiommu_fail_nth_is_fd(oldfd))
		uiommu_fail_nth_fd_dup(oldfd, newfd);
	return rc;
}

/* close_range() and closefrom() close our fds too: the library's go first, then libc's call. */
UIOMMU_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	libc_func(close_range, int, unsigned int, unsigned int, int);
	if (uiommu_fd_close_range(first, last, flags))
		return -1;
	uiommu_kvm_close_range(first, last, flags);
	return _close_range(first, last, flags);
}

UIOMMU_EXPORT void closefrom(int lowfd)
{
	libc_func(closefrom, void, int);
	uiommu_fd_close_range(lowfd < 0 ? 0 : (unsigned int)lowfd, ~0u, 0);
	uiommu_kvm_close_range(lowfd < 0 ? 0 : (unsigned int)lowfd, ~0u, 0);
	_closefrom(lowfd);
}

/* System calls whose result is a new fd (syscall()'s, for uiommu_fd_note_new()). */
static bool syscall_makes_fd(long nr)
{
	switch (nr) {
#define NEWFD_NR(name) case SYS_##name:
#ifdef SYS_open
	NEWFD_NR(open)
#endif
#ifdef SYS_creat
	NEWFD_NR(creat)
#endif
#ifdef SYS_eventfd
	NEWFD_NR(eventfd)
#endif
#ifdef SYS_signalfd
	NEWFD_NR(signalfd)
#endif
#ifdef SYS_epoll_create
	NEWFD_NR(epoll_create)
#endif
#ifdef SYS_inotify_init
	NEWFD_NR(inotify_init)
#endif
#ifdef SYS_memfd_secret
	NEWFD_NR(memfd_secret)
#endif
	NEWFD_NR(openat)
	NEWFD_NR(openat2)
	NEWFD_NR(open_by_handle_at)
	NEWFD_NR(socket)
	NEWFD_NR(accept)
	NEWFD_NR(accept4)
	NEWFD_NR(eventfd2)
	NEWFD_NR(memfd_create)
	NEWFD_NR(timerfd_create)
	NEWFD_NR(signalfd4)
	NEWFD_NR(epoll_create1)
	NEWFD_NR(inotify_init1)
	NEWFD_NR(fanotify_init)
	NEWFD_NR(pidfd_open)
	NEWFD_NR(userfaultfd)
	NEWFD_NR(perf_event_open)
	NEWFD_NR(io_uring_setup)
	NEWFD_NR(open_tree)
	NEWFD_NR(fsopen)
	NEWFD_NR(fsmount)
	NEWFD_NR(fspick)
	NEWFD_NR(mq_open)
#undef NEWFD_NR
		return true;
	default:
		return false;
	}
}

/*
 * syscall(): the numbers that close, replace or dup an fd go to the wrappers above, as programs
 * built for a libc without the wrapper (close_range) or bypassing libc (close, dup2, dup3) make
 * them; those that make fds report them (uiommu_fd_note_new()); pidfd_getfd and recvmsg adopt
 * what arrives. Every other number goes on untouched with the six argument registers as they
 * came. (The library's own raw calls do not come here: lib/sys.c.)
 *
 * Not instrumented: liburcu's constructor calls syscall() (membarrier) before a sanitizer
 * runtime loaded beside an uninstrumented program has set up its shadow memory, and an
 * instrumented stack access here would fault.
 */
__attribute__((no_sanitize_address, no_sanitize("undefined")))
UIOMMU_EXPORT long syscall(long nr, ...)
{
	long a[6], rc;
	va_list ap;
	int i;

	libc_func(syscall, long, long, ...);
	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	switch (nr) {
	case SYS_close:
		return close((int)a[0]);
	case SYS_close_range:
		if (uiommu_fd_close_range((unsigned int)a[0], (unsigned int)a[1], (int)a[2]))
			return -1;
		uiommu_kvm_close_range((unsigned int)a[0], (unsigned int)a[1], (int)a[2]);
		break;
#ifdef SYS_dup2
	case SYS_dup2:
		return dup2((int)a[0], (int)a[1]);
#endif
	case SYS_dup3:
		return dup3((int)a[0], (int)a[1], (int)a[2]);
	case SYS_dup:
		return dup((int)a[0]);
	case SYS_fcntl:
		if (a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC)
			return fcntl((int)a[0], (int)a[1], a[2]);
		break;
	case SYS_recvmsg:
		return recvmsg((int)a[0], (struct msghdr *)a[1], (int)a[2]);
	case SYS_pidfd_getfd:
		rc = _syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		if (rc >= 0)
			uiommu_fd_adopt((int)rc);
		return rc;
	case SYS_socketpair:
#ifdef SYS_pipe
	case SYS_pipe:
#endif
	case SYS_pipe2:
		rc = _syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		if (!rc) {
			int *fds = (int *)(nr == SYS_socketpair ? a[3] : a[0]);

			fd_made(fds[0]);
			fd_made(fds[1]);
		}
		return rc;
	default:
		if (!syscall_makes_fd(nr))
			break;
		rc = _syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		return rc >= 0 ? fd_made((int)rc) : rc;
	}
	return _syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- fds made outside the library: a number of ours there was closed behind our back ------- */

#define WRAP_NEWFD(name, args, ...)                                                       \
	UIOMMU_EXPORT int name(__VA_ARGS__)                                               \
	{                                                                                 \
		libc_func(name, int, __VA_ARGS__);                                        \
		return fd_made(_##name args);                                              \
	}

int pidfd_open(pid_t pid, unsigned int flags);

WRAP_NEWFD(creat, (path, mode), const char *path, mode_t mode)
WRAP_NEWFD(creat64, (path, mode), const char *path, mode_t mode)
WRAP_NEWFD(socket, (domain, type, protocol), int domain, int type, int protocol)
WRAP_NEWFD(accept, (fd, addr, len), int fd, __SOCKADDR_ARG addr, socklen_t *len)
WRAP_NEWFD(accept4, (fd, addr, len, flags), int fd, __SOCKADDR_ARG addr, socklen_t *len,
	   int flags)
WRAP_NEWFD(eventfd, (count, flags), unsigned int count, int flags)
WRAP_NEWFD(memfd_create, (name, flags), const char *name, unsigned int flags)
WRAP_NEWFD(timerfd_create, (clock, flags), clockid_t clock, int flags)
WRAP_NEWFD(signalfd, (fd, mask, flags), int fd, const sigset_t *mask, int flags)
WRAP_NEWFD(epoll_create, (size), int size)
WRAP_NEWFD(epoll_create1, (flags), int flags)
WRAP_NEWFD(inotify_init, (), void)
WRAP_NEWFD(inotify_init1, (flags), int flags)
WRAP_NEWFD(fanotify_init, (flags, event_flags), unsigned int flags, unsigned int event_flags)
WRAP_NEWFD(pidfd_open, (pid, flags), pid_t pid, unsigned int flags)
WRAP_NEWFD(mkstemp, (tmpl), char *tmpl)
WRAP_NEWFD(mkstemp64, (tmpl), char *tmpl)
WRAP_NEWFD(mkostemp, (tmpl, flags), char *tmpl, int flags)
WRAP_NEWFD(mkostemp64, (tmpl, flags), char *tmpl, int flags)
WRAP_NEWFD(mkstemps, (tmpl, len), char *tmpl, int len)
WRAP_NEWFD(mkostemps, (tmpl, len, flags), char *tmpl, int len, int flags)
WRAP_NEWFD(posix_openpt, (flags), int flags)
WRAP_NEWFD(getpt, (), void)

#define WRAP_NEWFD_PAIR(name, fds, args, ...)                                             \
	UIOMMU_EXPORT int name(__VA_ARGS__)                                               \
	{                                                                                 \
		int _rc;                                                                  \
		libc_func(name, int, __VA_ARGS__);                                        \
		_rc = _##name args;                                                       \
		if (!_rc) {                                                               \
			fd_made(fds[0]);                                                   \
			fd_made(fds[1]);                                                   \
		}                                                                         \
		return _rc;                                                               \
	}

WRAP_NEWFD_PAIR(pipe, fds, (fds), int fds[2])
WRAP_NEWFD_PAIR(pipe2, fds, (fds, flags), int fds[2], int flags)
WRAP_NEWFD_PAIR(socketpair, sv, (domain, type, protocol, sv), int domain, int type, int protocol,
		int sv[2])

/* openpty() opens both ends inside libc. */
UIOMMU_EXPORT int openpty(int *master, int *slave, char *name, const struct termios *termp,
			  const struct winsize *winp)
{
	int rc;

	libc_func(openpty, int, int *, int *, char *, const struct termios *,
		  const struct winsize *);
	rc = _openpty(master, slave, name, termp, winp);
	if (!rc) {
		fd_made(*master);
		fd_made(*slave);
	}
	return rc;
}

#define WRAP_NEWSTREAM(name, args, ...)                                                   \
	UIOMMU_EXPORT FILE *name(__VA_ARGS__)                                             \
	{                                                                                 \
		libc_func(name, FILE *, __VA_ARGS__);                                     \
		return stream_made(_##name args);                                          \
	}

/* freopen() closes the stream's fd and opens the new file on the same number, inside libc. */
WRAP_NEWSTREAM(freopen, (path, mode, stream), const char *path, const char *mode, FILE *stream)
WRAP_NEWSTREAM(freopen64, (path, mode, stream), const char *path, const char *mode,
	       FILE *stream)
WRAP_NEWSTREAM(tmpfile, (), void)
WRAP_NEWSTREAM(tmpfile64, (), void)
WRAP_NEWSTREAM(popen, (cmd, mode), const char *cmd, const char *mode)

/* The real fclose() of a stream on one of ours, for uiommu_fd_close_by(). */
struct stream_close {
	int (*fclose)(FILE *);
	FILE *stream;
};

static int stream_close_call(void *arg)
{
	struct stream_close *c = arg;

	return c->fclose(c->stream);
}

/* fclose() of an fdopen()ed iommufd closes it inside libc: a close of ours, told first. */
UIOMMU_EXPORT int fclose(FILE *stream)
{
	int fd;

	libc_func(fclose, int, FILE *);
	fd = stream ? fileno(stream) : -1;
	if (fd >= 0 && uiommu_is_fd(fd))
		return uiommu_fd_close_by(fd, stream_close_call,
					  &(struct stream_close){ _fclose, stream });
	return _fclose(stream);
}

/* ---- fds that arrive from other processes: the library adopts those of its files -------- */

/* shutdown() of one of our fds: the library answers (its sockets are no program's business). */
UIOMMU_EXPORT int shutdown(int fd, int how)
{
	libc_func(shutdown, int, int, int);
	if (uiommu_is_fd(fd))
		return uiommu_fd_shutdown(fd, how);
	return _shutdown(fd, how);
}

/* Every fd an SCM_RIGHTS message of @msg brought. */
static void adopt_rights(const struct msghdr *msg)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			uiommu_fd_adopt(fd);
		}
	}
}

UIOMMU_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t n;

	libc_func(recvmsg, ssize_t, int, struct msghdr *, int);
	n = _recvmsg(fd, msg, flags);
	if (n >= 0 && msg->msg_controllen)
		adopt_rights(msg);
	return n;
}

UIOMMU_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
			   struct timespec *timeout)
{
	int n;

	libc_func(recvmmsg, int, int, struct mmsghdr *, unsigned int, int, struct timespec *);
	n = _recvmmsg(fd, vec, vlen, flags, timeout);
	for (int i = 0; i < n; i++)
		if (vec[i].msg_hdr.msg_controllen)
			adopt_rights(&vec[i].msg_hdr);
	return n;
}

int pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
UIOMMU_EXPORT int pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
	int fd;

	libc_func(pidfd_getfd, int, int, int, unsigned int);
	fd = _pidfd_getfd(pidfd, targetfd, flags);
	if (fd >= 0)
		uiommu_fd_adopt(fd);
	return fd;
}

/*
 * exec: a process that serves uiommu files hands their serving to a new process first
 * (uiommu_exec_handover(): QEMU's CPR execs itself keeping its fds); an exec that returns
 * failed, and the hand-over is undone. posix_spawn() does not replace its caller: untouched.
 */
#define EXEC_HANDOVER(call)                                                                \
	do {                                                                               \
		int _handle = uiommu_exec_handover();                                      \
		int _rc = (call);                                                          \
		uiommu_exec_failed(_handle);                                               \
		return _rc;                                                                \
	} while (0)

UIOMMU_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	libc_func(execve, int, const char *, char *const[], char *const[]);
	EXEC_HANDOVER(_execve(path, argv, envp));
}

UIOMMU_EXPORT int execv(const char *path, char *const argv[])
{
	libc_func(execv, int, const char *, char *const[]);
	EXEC_HANDOVER(_execv(path, argv));
}

UIOMMU_EXPORT int execvp(const char *file, char *const argv[])
{
	libc_func(execvp, int, const char *, char *const[]);
	EXEC_HANDOVER(_execvp(file, argv));
}

int execvpe(const char *file, char *const argv[], char *const envp[]);
UIOMMU_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	libc_func(execvpe, int, const char *, char *const[], char *const[]);
	EXEC_HANDOVER(_execvpe(file, argv, envp));
}

UIOMMU_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	libc_func(fexecve, int, int, char *const[], char *const[]);
	EXEC_HANDOVER(_fexecve(fd, argv, envp));
}

int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags);
UIOMMU_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
			   int flags)
{
	libc_func(execveat, int, int, const char *, char *const[], char *const[], int);
	EXEC_HANDOVER(_execveat(dirfd, path, argv, envp, flags));
}

/* execl, execlp, execle: their list becomes an argv (and envp) for the v forms above. */
#define EXEC_LIST_ARGV(arg, ap, argv, envp_out)                                            \
	size_t _n = 1;                                                                     \
	va_start(ap, arg);                                                                 \
	while (va_arg(ap, char *))                                                         \
		_n++;                                                                      \
	va_end(ap);                                                                        \
	char *argv[_n + 1];                                                                \
	argv[0] = (char *)arg;                                                             \
	va_start(ap, arg);                                                                 \
	for (size_t _i = 1; _i <= _n; _i++)                                                \
		argv[_i] = va_arg(ap, char *);                                             \
	envp_out;                                                                          \
	va_end(ap)

extern char **environ;

UIOMMU_EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;

	EXEC_LIST_ARGV(arg, ap, argv, (void)0);
	return execve(path, argv, environ);
}

UIOMMU_EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;

	EXEC_LIST_ARGV(arg, ap, argv, (void)0);
	return execvp(file, argv);
}

UIOMMU_EXPORT int execle(const char *path, const char *arg, ...)
{
	char **envp;
	va_list ap;

	EXEC_LIST_ARGV(arg, ap, argv, envp = va_arg(ap, char **));
	return execve(path, argv, envp);
}

/*
 * The program's own dispositions of SIGSEGV and SIGBUS, once the library's fault trap is in
 * place, are the library's to keep (uiommu_fault_sigaction()): the trap stays in front of them.
 */
UIOMMU_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	libc_func(sigaction, int, int, const struct sigaction *, struct sigaction *);
	if (uiommu_fault_sigaction(sig, act, oldact))
		return 0;
	return _sigaction(sig, act, oldact);
}

/* glibc's signal(): BSD semantics (SA_RESTART, the signal blocked in its handler). */
UIOMMU_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction act, old;

	libc_func(signal, sighandler_t, int, sighandler_t);
	memset(&act, 0, sizeof(act));
	act.sa_handler = handler;
	sigemptyset(&act.sa_mask);
	sigaddset(&act.sa_mask, sig);
	act.sa_flags = SA_RESTART;
	if (uiommu_fault_sigaction(sig, &act, &old))
		return old.sa_handler;
	return _signal(sig, handler);
}

/*
 * The thread's signal mask, for the fault trap's mask cache: every call that changes it for
 * good is reported to the library (uiommu_fault_mask_note()). The cache is cleared before the
 * call, so that a handler running in between cannot use what the call is about to change.
 */
#define WRAP_SIGMASK(name)                                                                \
	UIOMMU_EXPORT int name(int how, const sigset_t *set, sigset_t *oldset)            \
	{                                                                                 \
		sigset_t _prev;                                                           \
		int _rc;                                                                  \
		libc_func(name, int, int, const sigset_t *, sigset_t *);                  \
		uiommu_fault_mask_forget();                                               \
		_rc = _##name(how, set, &_prev);                                          \
		if (_rc == 0) {                                                           \
			uiommu_fault_mask_note(how, set, &_prev);                         \
			if (oldset)                                                       \
				*oldset = _prev;                                          \
		}                                                                         \
		return _rc;                                                               \
	}

WRAP_SIGMASK(sigprocmask)
WRAP_SIGMASK(pthread_sigmask)

/*
 * Calls that run handlers under a temporary mask and restore the thread's on return: a handler
 * in between may have seen (and noted) the temporary one. (Clearing the flag keeps errno.)
 */
#define UNDER_TEMPORARY_MASK(call)                                                        \
	({                                                                                \
		__typeof__(call) _rc;                                                     \
		uiommu_fault_mask_forget();                                               \
		_rc = (call);                                                             \
		uiommu_fault_mask_forget();                                               \
		_rc;                                                                      \
	})

/*
 * Calls that leave the thread with a mask the library did not see set: siglongjmp() to a
 * sigsetjmp(env, 1) restores the saved mask, setcontext() the context's. The real functions
 * are found in the constructor: the fault trap's own siglongjmp() leaves a signal handler,
 * where dlsym() must not run.
 */
static void (*libc_siglongjmp)(struct __jmp_buf_tag *, int);
static void (*libc_longjmp)(struct __jmp_buf_tag *, int);
static void (*libc___longjmp_chk)(struct __jmp_buf_tag *, int); /* _FORTIFY_SOURCE's longjmp */
static int (*libc_setcontext)(const ucontext_t *);
static int (*libc_swapcontext)(ucontext_t *, const ucontext_t *);

#define WRAP_LONGJMP(name)                                                                \
	UIOMMU_EXPORT void name(struct __jmp_buf_tag env[1], int val)                     \
	{                                                                                 \
		if (env[0].__mask_was_saved)                                              \
			uiommu_fault_mask_forget();                                       \
		libc_##name(env, val);                                                    \
		abort();                                                                  \
	}

WRAP_LONGJMP(siglongjmp)
WRAP_LONGJMP(longjmp)
WRAP_LONGJMP(__longjmp_chk)

UIOMMU_EXPORT int setcontext(const ucontext_t *ucp)
{
	uiommu_fault_mask_forget();
	return libc_setcontext(ucp);
}

UIOMMU_EXPORT int swapcontext(ucontext_t *oucp, const ucontext_t *ucp)
{
	/* Back here by a later swap or set of @oucp: its saved mask is in force again. */
	return UNDER_TEMPORARY_MASK(libc_swapcontext(oucp, ucp));
}

/*
 * The System V and BSD calls change the mask through libc's internal sigprocmask(), unseen:
 * what the thread knows is cleared on both sides (__sigpause and __xpg_sigpause are also
 * temporary masks, as sigsuspend()).
 */
#define WRAP_SIGMASK_INT(name)                                                            \
	UIOMMU_EXPORT int name(int arg)                                                   \
	{                                                                                 \
		libc_func(name, int, int);                                                \
		return UNDER_TEMPORARY_MASK(_##name(arg));                                \
	}

WRAP_SIGMASK_INT(sighold)
WRAP_SIGMASK_INT(sigrelse)
WRAP_SIGMASK_INT(sigblock)
WRAP_SIGMASK_INT(sigsetmask)
WRAP_SIGMASK_INT(__xpg_sigpause)

UIOMMU_EXPORT sighandler_t sigset(int sig, sighandler_t disp)
{
	libc_func(sigset, sighandler_t, int, sighandler_t);
	return UNDER_TEMPORARY_MASK(_sigset(sig, disp));
}

UIOMMU_EXPORT int __sigpause(int sig_or_mask, int is_sig)
{
	libc_func(__sigpause, int, int, int);
	return UNDER_TEMPORARY_MASK(___sigpause(sig_or_mask, is_sig));
}

UIOMMU_EXPORT int sigsuspend(const sigset_t *mask)
{
	libc_func(sigsuspend, int, const sigset_t *);
	return UNDER_TEMPORARY_MASK(_sigsuspend(mask));
}

UIOMMU_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t,
			  const sigset_t *mask)
{
	libc_func(pselect, int, int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		  const sigset_t *);
	return mask ? UNDER_TEMPORARY_MASK(_pselect(nfds, r, w, e, t, mask)) :
		      _pselect(nfds, r, w, e, t, mask);
}

UIOMMU_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t,
			const sigset_t *mask)
{
	libc_func(ppoll, int, struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	return mask ? UNDER_TEMPORARY_MASK(_ppoll(fds, n, t, mask)) : _ppoll(fds, n, t, mask);
}

UIOMMU_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			      const sigset_t *mask)
{
	libc_func(epoll_pwait, int, int, struct epoll_event *, int, int, const sigset_t *);
	return mask ? UNDER_TEMPORARY_MASK(_epoll_pwait(epfd, ev, max, timeout, mask)) :
		      _epoll_pwait(epfd, ev, max, timeout, mask);
}

UIOMMU_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
			       const struct timespec *t, const sigset_t *mask)
{
	libc_func(epoll_pwait2, int, int, struct epoll_event *, int, const struct timespec *,
		  const sigset_t *);
	return mask ? UNDER_TEMPORARY_MASK(_epoll_pwait2(epfd, ev, max, t, mask)) :
		      _epoll_pwait2(epfd, ev, max, t, mask);
}

/* Only the dup commands concern us; every other fcntl goes to libc with its argument. */
#define WRAP_FCNTL(name)                                                                  \
	UIOMMU_EXPORT int name(int fd, int cmd, ...)                                      \
	{                                                                                 \
		va_list ap;                                                               \
		long arg;                                                                 \
		libc_func(name, int, int, int, ...);                                      \
		va_start(ap, cmd);                                                        \
		arg = va_arg(ap, long);                                                   \
		va_end(ap);                                                               \
		if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && uiommu_is_fd(fd))      \
			return uiommu_dupfd(fd, (int)arg, cmd == F_DUPFD_CLOEXEC);        \
		if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) &&                          \
		    (uiommu_sysfs_is_fd(fd) || uiommu_fail_nth_is_fd(fd))) {              \
			int rc = _##name(fd, cmd, arg);                                   \
			if (rc >= 0 && uiommu_sysfs_is_fd(fd))                            \
				uiommu_sysfs_fd_dup(fd, rc);                              \
			if (rc >= 0 && uiommu_fail_nth_is_fd(fd))                         \
				uiommu_fail_nth_fd_dup(fd, rc);                           \
			return rc;                                                        \
		}                                                                         \
		if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)                              \
			return fd_made(_##name(fd, cmd, arg));                             \
		return _##name(fd, cmd, arg);                                             \
	}

WRAP_FCNTL(fcntl)
WRAP_FCNTL(fcntl64)

/* ---- the virtual sysfs: paths ---------------------------------------------------------------- */

UIOMMU_EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
	libc_func(write, ssize_t, int, const void *, size_t);
	if (uiommu_sysfs_is_fd(fd))
		return uiommu_sysfs_write(fd, buf, count);
	if (uiommu_event_is_fd(fd))
		return uiommu_event_write(fd, buf, count);
	if (uiommu_is_fd(fd))
		return uiommu_write(fd, buf, count);
	if (uiommu_fail_nth_is_fd(fd))
		return uiommu_fail_nth_write(fd, buf, count);
	return _write(fd, buf, count);
}

#define WRAP_PWRITE(name, offtype)                                                        \
	UIOMMU_EXPORT ssize_t name(int fd, const void *buf, size_t count, offtype offset) \
	{                                                                                 \
		libc_func(name, ssize_t, int, const void *, size_t, offtype);             \
		if (uiommu_event_is_fd(fd))                                               \
			return uiommu_event_pwrite(fd, buf, count, (off_t)offset);        \
		if (uiommu_is_fd(fd))                                                     \
			return uiommu_pwrite(fd, buf, count, (off_t)offset);              \
		if (uiommu_fail_nth_is_fd(fd))                                            \
			return uiommu_fail_nth_pwrite(fd, buf, count, (off_t)offset);     \
		return _##name(fd, buf, count, offset);                                   \
	}

WRAP_PWRITE(pwrite, off_t)
WRAP_PWRITE(pwrite64, off64_t)

/* Event fds of iommufd (vEVENTQ, fault): reads and writes are ours, poll works on the eventfd. */
UIOMMU_EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	libc_func(read, ssize_t, int, void *, size_t);
	if (uiommu_event_is_fd(fd))
		return uiommu_event_read(fd, buf, count);
	if (uiommu_is_fd(fd))
		return uiommu_read(fd, buf, count);
	if (uiommu_fail_nth_is_fd(fd))
		return uiommu_fail_nth_read(fd, buf, count);
	return _read(fd, buf, count);
}

#define WRAP_PREAD(name, offtype)                                                         \
	UIOMMU_EXPORT ssize_t name(int fd, void *buf, size_t count, offtype offset)       \
	{                                                                                 \
		libc_func(name, ssize_t, int, void *, size_t, offtype);                   \
		if (uiommu_event_is_fd(fd))                                               \
			return uiommu_event_pread(fd, buf, count, (off_t)offset);         \
		if (uiommu_is_fd(fd))                                                     \
			return uiommu_pread(fd, buf, count, (off_t)offset);               \
		if (uiommu_fail_nth_is_fd(fd))                                            \
			return uiommu_fail_nth_pread(fd, buf, count, (off_t)offset);      \
		return _##name(fd, buf, count, offset);                                   \
	}

WRAP_PREAD(pread, off_t)
WRAP_PREAD(pread64, off64_t)

/* An overflowing count is libc's to refuse (it aborts before any system call). */
UIOMMU_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	libc_func(__read_chk, ssize_t, int, void *, size_t, size_t);
	if (count <= buflen && (uiommu_event_is_fd(fd) || uiommu_is_fd(fd)))
		return read(fd, buf, count);
	return ___read_chk(fd, buf, count, buflen);
}

#define WRAP_PREAD_CHK(name, plain, offtype)                                                   \
	UIOMMU_EXPORT ssize_t name(int fd, void *buf, size_t count, offtype offset, size_t buflen) \
	{                                                                                      \
		libc_func(name, ssize_t, int, void *, size_t, offtype, size_t);                \
		if (count <= buflen && (uiommu_event_is_fd(fd) || uiommu_is_fd(fd)))          \
			return plain(fd, buf, count, offset);                                  \
		return _##name(fd, buf, count, offset, buflen);                                \
	}

WRAP_PREAD_CHK(__pread_chk, pread, off_t)
WRAP_PREAD_CHK(__pread64_chk, pread64, off64_t)

/*
 * mmap of an iommufd fd, and the munmap and mremap of what it mapped: the library's. Anonymous mappings
 * (fd -1) never enter the library: ThreadSanitizer's runtime maps memory through here before
 * instrumented code may run. A MAP_FIXED one of any file (an iommufd's too), which replaces
 * what was there (whole huge pages for hugetlb) even when it then fails, and every munmap and
 * mremap first tell the library (uiommu_remote_mmap_fixed_forget(),
 * uiommu_remote_range_forget()); the runtime's early mappings are not MAP_FIXED. A MAP_FIXED
 * one over a region's mapping (anonymous or another file) is the library's too, which lets the
 * replaced pages' hold go (uiommu_mmap_fixed_claims() knows the range): one load without a
 * system call where there is none, one branch without MAP_FIXED.
 */
#define WRAP_MMAP(name, offtype)                                                          \
	UIOMMU_EXPORT void *name(void *addr, size_t len, int prot, int flags, int fd,     \
				 offtype off)                                             \
	{                                                                                 \
		libc_func(name, void *, void *, size_t, int, int, int, offtype);          \
		if (flags & MAP_FIXED)                                                    \
			uiommu_remote_mmap_fixed_forget(addr, len, flags, fd);            \
		if (fd >= 0 && uiommu_is_fd(fd))                                          \
			return uiommu_mmap(addr, len, prot, flags, fd, (off_t)off);       \
		if ((flags & MAP_FIXED) && len &&                                         \
		    uiommu_mmap_fixed_claims(addr, len, flags, fd))                       \
			return uiommu_mmap_fixed(addr, len, prot, flags, fd, (off_t)off); \
		return _##name(addr, len, prot, flags, fd, off);                          \
	}

WRAP_MMAP(mmap, off_t)
WRAP_MMAP(mmap64, off64_t)

UIOMMU_EXPORT int munmap(void *addr, size_t len)
{
	libc_func(munmap, int, void *, size_t);
	if (uiommu_mmap_claims(addr, len))
		return uiommu_munmap(addr, len);
	uiommu_remote_range_forget(addr, len);
	return _munmap(addr, len);
}

UIOMMU_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	libc_func(mremap, void *, void *, size_t, size_t, int, ...);
	void *new_addr = NULL;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
		uiommu_remote_range_forget(new_addr, new_len);
	}
	uiommu_remote_range_forget(old, old_len);
	/* A region's mapping at either end: the one moved, or the one MREMAP_FIXED replaces. */
	if (uiommu_mmap_claims(old, old_len ? old_len : 1) ||
	    ((flags & MREMAP_FIXED) && new_len && uiommu_mmap_claims(new_addr, new_len)))
		return uiommu_mremap(old, old_len, new_len, flags, new_addr);
	return _mremap(old, old_len, new_len, flags, new_addr);
}

#define WRAP_FOPEN(name)                                                                  \
	UIOMMU_EXPORT FILE *name(const char *path, const char *mode)                      \
	{                                                                                 \
		libc_func(name, FILE *, const char *, const char *);                      \
		if (uiommu_sysfs_claims(path))                                            \
			return stream_made(uiommu_sysfs_fopen(path, mode));                \
		if (uiommu_proc_status_claims(path))                                      \
			return stream_made(uiommu_proc_status_fopen(path, mode));          \
		return stream_made(_##name(path, mode));                                   \
	}

WRAP_FOPEN(fopen)
WRAP_FOPEN(fopen64)

/* A stream on an attribute's fd: the library's, whose writes are the store. */
UIOMMU_EXPORT FILE *fdopen(int fd, const char *mode)
{
	libc_func(fdopen, FILE *, int, const char *);
	if (uiommu_sysfs_is_fd(fd))
		return uiommu_sysfs_fdopen(fd, mode);
	return _fdopen(fd, mode);
}

/* A call that names a path (the parameter `path`): redirect it, then libc. */
#define WRAP_PATH(name, rettype, err, args, ...)                                          \
	UIOMMU_EXPORT rettype name(__VA_ARGS__)                                           \
	{                                                                                 \
		libc_func(name, rettype, __VA_ARGS__);                                    \
		SYSFS_REDIRECT(path, err);                                                \
		return _##name args;                                                      \
	}

UIOMMU_EXPORT DIR *opendir(const char *path)
{
	DIR *dir;

	libc_func(opendir, DIR *, const char *);
	SYSFS_REDIRECT(path, NULL);
	dir = _opendir(path);
	if (dir)
		fd_made(dirfd(dir));
	return dir;
}
WRAP_PATH(chdir, int, -1, (path),
	  const char *path)
/*
 * Calls that look at a node (stat in all its spellings, access, readlink): the library answers
 * for the VFIO nodes, /dev/iommu and /proc/self/fd/N of our fds, and stat and readlink for
 * another process's fd links (/proc/<pid>/fd/N: the registry's name); the rest as WRAP_PATH.
 */
#define WRAP_STAT(name, stattype, nofollow)                                               \
	UIOMMU_EXPORT int name(const char *path, stattype *st)                            \
	{                                                                                 \
		libc_func(name, int, const char *, stattype *);                           \
		if (uiommu_node_claims(path))                                             \
			return uiommu_node_stat(path, (struct stat *)st, nofollow);       \
		if (uiommu_fd_link_claims(AT_FDCWD, path))                                \
			return uiommu_fd_link_stat(AT_FDCWD, path, (struct stat *)st,     \
						   nofollow);                             \
		SYSFS_REDIRECT(path, -1);                                                 \
		return _##name(path, st);                                                 \
	}

WRAP_STAT(stat, struct stat, 0)
WRAP_STAT(stat64, struct stat64, 0)
WRAP_STAT(lstat, struct stat, AT_SYMLINK_NOFOLLOW)
WRAP_STAT(lstat64, struct stat64, AT_SYMLINK_NOFOLLOW)

#define WRAP_XSTAT(name, stattype, nofollow)                                              \
	UIOMMU_EXPORT int name(int ver, const char *path, stattype *st)                   \
	{                                                                                 \
		libc_func(name, int, int, const char *, stattype *);                      \
		if (uiommu_node_claims(path))                                             \
			return uiommu_node_stat(path, (struct stat *)st, nofollow);       \
		if (uiommu_fd_link_claims(AT_FDCWD, path))                                \
			return uiommu_fd_link_stat(AT_FDCWD, path, (struct stat *)st,     \
						   nofollow);                             \
		SYSFS_REDIRECT(path, -1);                                                 \
		return _##name(ver, path, st);                                            \
	}

WRAP_XSTAT(__xstat, struct stat, 0)
WRAP_XSTAT(__xstat64, struct stat64, 0)
WRAP_XSTAT(__lxstat, struct stat, AT_SYMLINK_NOFOLLOW)
WRAP_XSTAT(__lxstat64, struct stat64, AT_SYMLINK_NOFOLLOW)

#define WRAP_FSTAT(name, stattype)                                                        \
	UIOMMU_EXPORT int name(int fd, stattype *st)                                      \
	{                                                                                 \
		libc_func(name, int, int, stattype *);                                    \
		if (uiommu_is_fd(fd))                                                     \
			return uiommu_fstat(fd, (struct stat *)st);                       \
		return _##name(fd, st);                                                   \
	}

WRAP_FSTAT(fstat, struct stat)
WRAP_FSTAT(fstat64, struct stat64)

#define WRAP_FXSTAT(name, stattype)                                                       \
	UIOMMU_EXPORT int name(int ver, int fd, stattype *st)                             \
	{                                                                                 \
		libc_func(name, int, int, int, stattype *);                               \
		if (uiommu_is_fd(fd))                                                     \
			return uiommu_fstat(fd, (struct stat *)st);                       \
		return _##name(ver, fd, st);                                              \
	}

WRAP_FXSTAT(__fxstat, struct stat)
WRAP_FXSTAT(__fxstat64, struct stat64)

/* fstatat(fd, "", st, AT_EMPTY_PATH) of one of our fds is its fstat. */
#define IS_EMPTY_PATH_FD(dirfd, path, flags)                                              \
	(((flags) & AT_EMPTY_PATH) && !*(path) && uiommu_is_fd(dirfd))

/* The library's answer for an fstatat() of a node or of one of our fds, if it is one. */
#define NODE_STATAT(dirfd, path, st, flags)                                               \
	if (IS_EMPTY_PATH_FD(dirfd, path, flags))                                         \
		return uiommu_fstat(dirfd, (struct stat *)(st));                          \
	if (uiommu_node_claims(path))                                                     \
		return uiommu_node_stat(path, (struct stat *)(st), (flags) & AT_SYMLINK_NOFOLLOW); \
	if (uiommu_fd_link_claims(dirfd, path))                                           \
		return uiommu_fd_link_stat(dirfd, path, (struct stat *)(st), flags)

#define WRAP_FSTATAT(name, stattype)                                                      \
	UIOMMU_EXPORT int name(int dirfd, const char *path, stattype *st, int flags)      \
	{                                                                                 \
		libc_func(name, int, int, const char *, stattype *, int);                 \
		NODE_STATAT(dirfd, path, st, flags);                                      \
		SYSFS_REDIRECT(path, -1);                                                 \
		return _##name(dirfd, path, st, flags);                                   \
	}

WRAP_FSTATAT(fstatat, struct stat)
WRAP_FSTATAT(fstatat64, struct stat64)

UIOMMU_EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask,
			struct statx *st)
{
	libc_func(statx, int, int, const char *, int, unsigned int, struct statx *);
	if (IS_EMPTY_PATH_FD(dirfd, path, flags) || uiommu_node_claims(path))
		return uiommu_node_statx(dirfd, path, flags, mask, st);
	if (uiommu_fd_link_claims(dirfd, path))
		return uiommu_fd_link_statx(dirfd, path, flags, mask, st);
	SYSFS_REDIRECT(path, -1);
	return _statx(dirfd, path, flags, mask, st);
}

/*
 * access() of a node, or of an fd's link in any spelling: the library's, which answers from
 * the node's mode where the host would answer for the file's socket.
 */
#define WRAP_ACCESS(name, flags)                                                          \
	UIOMMU_EXPORT int name(const char *path, int mode)                                \
	{                                                                                 \
		libc_func(name, int, const char *, int);                                  \
		if (uiommu_node_claims(path) || uiommu_fd_link_claims(AT_FDCWD, path))    \
			return uiommu_node_faccessat(AT_FDCWD, path, mode, flags);        \
		SYSFS_REDIRECT(path, -1);                                                 \
		return _##name(path, mode);                                               \
	}

WRAP_ACCESS(access, 0)
WRAP_ACCESS(euidaccess, AT_EACCESS)
WRAP_ACCESS(eaccess, AT_EACCESS)

UIOMMU_EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	libc_func(faccessat, int, int, const char *, int, int);
	if (uiommu_node_claims(path) || uiommu_fd_link_claims(dirfd, path))
		return uiommu_node_faccessat(dirfd, path, mode, flags);
	SYSFS_REDIRECT(path, -1);
	return _faccessat(dirfd, path, mode, flags);
}

UIOMMU_EXPORT ssize_t readlink(const char *path, char *buf, size_t len)
{
	libc_func(readlink, ssize_t, const char *, char *, size_t);
	if (uiommu_node_claims(path))
		return uiommu_node_readlink(path, buf, len);
	if (uiommu_fd_link_claims(AT_FDCWD, path))
		return uiommu_fd_link_readlink(AT_FDCWD, path, buf, len);
	SYSFS_REDIRECT(path, -1);
	return _readlink(path, buf, len);
}

UIOMMU_EXPORT ssize_t __readlink_chk(const char *path, char *buf, size_t len, size_t buflen)
{
	libc_func(__readlink_chk, ssize_t, const char *, char *, size_t, size_t);
	if (uiommu_node_claims(path))
		return uiommu_node_readlink(path, buf, len < buflen ? len : buflen);
	if (uiommu_fd_link_claims(AT_FDCWD, path))
		return uiommu_fd_link_readlink(AT_FDCWD, path, buf, len < buflen ? len : buflen);
	SYSFS_REDIRECT(path, -1);
	return ___readlink_chk(path, buf, len, buflen);
}

UIOMMU_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
	libc_func(readlinkat, ssize_t, int, const char *, char *, size_t);
	if (uiommu_node_claims(path))
		return uiommu_node_readlink(path, buf, len);
	if (uiommu_fd_link_claims(dirfd, path))
		return uiommu_fd_link_readlink(dirfd, path, buf, len);
	SYSFS_REDIRECT(path, -1);
	return _readlinkat(dirfd, path, buf, len);
}

UIOMMU_EXPORT ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t len,
				       size_t buflen)
{
	libc_func(__readlinkat_chk, ssize_t, int, const char *, char *, size_t, size_t);
	if (uiommu_node_claims(path))
		return uiommu_node_readlink(path, buf, len < buflen ? len : buflen);
	if (uiommu_fd_link_claims(dirfd, path))
		return uiommu_fd_link_readlink(dirfd, path, buf, len < buflen ? len : buflen);
	SYSFS_REDIRECT(path, -1);
	return ___readlinkat_chk(dirfd, path, buf, len, buflen);
}

/*
 * realpath resolves inside libc, out of our reach: the library resolves our paths whole, and
 * an fd's link by the name it reads (the host's readlink inside libc would say socket:[N]).
 */
UIOMMU_EXPORT char *realpath(const char *path, char *resolved)
{
	libc_func(realpath, char *, const char *, char *);
	if (uiommu_node_claims(path) || uiommu_sysfs_claims(path))
		return uiommu_node_realpath(path, resolved);
	if (uiommu_fd_link_claims(AT_FDCWD, path))
		return uiommu_fd_link_realpath(path, resolved);
	return _realpath(path, resolved);
}

/* realpath's fortified entry point (_FORTIFY_SOURCE builds: Debian's QEMU). */
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);
UIOMMU_EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
	libc_func(__realpath_chk, char *, const char *, char *, size_t);
	if (resolvedlen >= PATH_MAX && (uiommu_node_claims(path) || uiommu_sysfs_claims(path)))
		return uiommu_node_realpath(path, resolved);
	if (resolvedlen >= PATH_MAX && uiommu_fd_link_claims(AT_FDCWD, path))
		return uiommu_fd_link_realpath(path, resolved);
	return ___realpath_chk(path, resolved, resolvedlen);
}

UIOMMU_EXPORT char *canonicalize_file_name(const char *path)
{
	libc_func(canonicalize_file_name, char *, const char *);
	if (uiommu_node_claims(path) || uiommu_sysfs_claims(path))
		return uiommu_node_realpath(path, NULL);
	if (uiommu_fd_link_claims(AT_FDCWD, path))
		return uiommu_fd_link_realpath(path, NULL);
	return _canonicalize_file_name(path);
}

WRAP_PATH(getxattr, ssize_t, -1, (path, name, value, size),
	  const char *path, const char *name, void *value, size_t size)
WRAP_PATH(lgetxattr, ssize_t, -1, (path, name, value, size),
	  const char *path, const char *name, void *value, size_t size)
WRAP_PATH(listxattr, ssize_t, -1, (path, list, size),
	  const char *path, char *list, size_t size)
WRAP_PATH(llistxattr, ssize_t, -1, (path, list, size),
	  const char *path, char *list, size_t size)
WRAP_PATH(scandir, int, -1, (path, list, sel, cmp),
	  const char *path, struct dirent ***list, int (*sel)(const struct dirent *),
	  int (*cmp)(const struct dirent **, const struct dirent **))
WRAP_PATH(scandir64, int, -1, (path, list, sel, cmp),
	  const char *path, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
	  int (*cmp)(const struct dirent64 **, const struct dirent64 **))

#define WRAP_FXSTATAT(name, stattype)                                                     \
	UIOMMU_EXPORT int name(int ver, int dirfd, const char *path, stattype *st, int flags) \
	{                                                                                 \
		libc_func(name, int, int, int, const char *, stattype *, int);            \
		NODE_STATAT(dirfd, path, st, flags);                                      \
		SYSFS_REDIRECT(path, -1);                                                 \
		return _##name(ver, dirfd, path, st, flags);                              \
	}

WRAP_FXSTATAT(__fxstatat, struct stat)
WRAP_FXSTATAT(__fxstatat64, struct stat64)

/* ---- setup ---------------------------------------------------------------------------------- */

static void __attribute__((constructor)) preload_init(void)
{
	int saved_errno = errno;
	sigset_t mask;

	uiommu_sysfs_session_begin();
	uiommu_sysfs_adopt();
	uiommu_ctl_start_env();
	/* fds of uiommu files this program inherited across exec reach their server. */
	uiommu_fd_adopt_inherited();
	libc_siglongjmp = (void (*)(struct __jmp_buf_tag *, int))dlsym(RTLD_NEXT, "siglongjmp");
	libc_longjmp = (void (*)(struct __jmp_buf_tag *, int))dlsym(RTLD_NEXT, "longjmp");
	libc___longjmp_chk = (void (*)(struct __jmp_buf_tag *, int))dlsym(RTLD_NEXT,
									  "__longjmp_chk");
	libc_setcontext = (int (*)(const ucontext_t *))dlsym(RTLD_NEXT, "setcontext");
	libc_swapcontext = (int (*)(ucontext_t *, const ucontext_t *))dlsym(RTLD_NEXT,
									    "swapcontext");
	if (!libc_siglongjmp || !libc_longjmp || !libc___longjmp_chk || !libc_setcontext ||
	    !libc_swapcontext) {
		fprintf(stderr, "uiommu-preload: cannot find libc's siglongjmp/setcontext\n");
		abort();
	}
	/*
	 * Look the mask wrappers' libc functions up now: a signal handler (the trap's chaining,
	 * or the program's) may be the first to call them, and dlsym() is no call for a handler.
	 */
	sigprocmask(SIG_BLOCK, NULL, &mask);
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	/* From here on every change of a thread's mask comes through the wrappers above. */
	uiommu_fault_mask_track();
	/* From here on every close and every new fd outside the library comes through here. */
	uiommu_fd_track();
	errno = saved_errno;
}
