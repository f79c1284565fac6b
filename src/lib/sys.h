/* SPDX-License-Identifier: MIT */
/*
 * Raw system calls, typed.
 *
 * The library cannot call libc's close()/mmap()/read()... for its own descriptors: under the
 * preload those symbols are ours and would route the call back into uiommu. It goes to the
 * kernel through libc's syscall() (its own definition, not the preload layer's: lib/sys.c),
 * which is variadic and reads each of its six arguments as a long.
 * An int passed there is UB: its upper half is whatever the register or, for the sixth
 * argument, the stack slot held (clang builds mapped the vIOMMU region at a garbage offset this
 * way). Every raw call therefore goes through one of these wrappers, whose prototypes widen
 * each argument to long before it reaches the varargs.
 */
#ifndef UIOMMU_LIB_SYS_H
#define UIOMMU_LIB_SYS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/fdkeep.h"

typedef long (*sys_syscall_fn)(long nr, ...);
/* libc's syscall(), past any interposer (lib/sys.c). */
sys_syscall_fn sys_libc_syscall(void);
#define sys_syscall(...) (sys_libc_syscall()(__VA_ARGS__))

static inline void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)sys_syscall(SYS_mmap, addr, (long)len, (long)prot, (long)flags, (long)fd,
			       (long)off);
}

static inline int sys_munmap(void *addr, size_t len)
{
	return (int)sys_syscall(SYS_munmap, addr, (long)len);
}

static inline void *sys_mremap(void *old, size_t old_len, size_t new_len, int flags,
			       void *new_addr)
{
	return (void *)sys_syscall(SYS_mremap, old, (long)old_len, (long)new_len, (long)flags,
				   new_addr);
}

/* mincore(2): ENOMEM for a page that nothing maps. */
static inline int sys_mincore(void *addr, size_t len, unsigned char *vec)
{
	return (int)sys_syscall(SYS_mincore, addr, (long)len, vec);
}

/* The number stops being the library's before it is free for anyone else (lib/fdkeep.h). */
static inline int sys_close(int fd)
{
	uiommu_fd_unkeep(fd);
	return (int)sys_syscall(SYS_close, (long)fd);
}

/* Closes [@first, @last]; only for a fork child's clean-up (lib/fdkeep.c), which keeps count. */
static inline int sys_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
	return (int)sys_syscall(SYS_close_range, (long)first, (long)last, (long)flags);
}

static inline ssize_t sys_read(int fd, void *buf, size_t len)
{
	return sys_syscall(SYS_read, (long)fd, buf, (long)len);
}

static inline ssize_t sys_write(int fd, const void *buf, size_t len)
{
	return sys_syscall(SYS_write, (long)fd, buf, (long)len);
}

static inline ssize_t sys_pread(int fd, void *buf, size_t len, off_t off)
{
	return sys_syscall(SYS_pread64, (long)fd, buf, (long)len, (long)off);
}

static inline ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return sys_syscall(SYS_pwrite64, (long)fd, buf, (long)len, (long)off);
}

static inline int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)sys_syscall(SYS_openat, (long)dirfd, path, (long)flags, (long)mode);
}

/*
 * A small file read whole (one read: /proc records are made at once) into @buf and ended with a
 * NUL: its length, or <= 0 when it cannot be opened or read or is empty.
 */
static inline ssize_t sys_read_small_file(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd;

	fd = sys_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	n = sys_read(fd, buf, size - 1);
	sys_close(fd);
	if (n > 0)
		buf[n] = '\0';
	return n;
}

static inline int sys_fcntl(int fd, int cmd, long arg)
{
	return (int)sys_syscall(SYS_fcntl, (long)fd, (long)cmd, arg);
}

static inline int sys_ftruncate(int fd, off_t len)
{
	return (int)sys_syscall(SYS_ftruncate, (long)fd, (long)len);
}

static inline pid_t sys_gettid(void)
{
	return (pid_t)sys_syscall(SYS_gettid);
}

/* @head is a struct robust_list_head; void here, so that this header needs no linux/futex.h. */
static inline int sys_set_robust_list(void *head, size_t len)
{
	return (int)sys_syscall(SYS_set_robust_list, head, (long)len);
}

static inline long sys_futex(void *word, int op, uint32_t val, const struct timespec *timeout)
{
	return sys_syscall(SYS_futex, word, (long)op, (long)val, timeout, NULL, 0L);
}

static inline int sys_dup3(int oldfd, int newfd, int flags)
{
	return (int)sys_syscall(SYS_dup3, (long)oldfd, (long)newfd, (long)flags);
}

static inline ssize_t sys_readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
	return sys_syscall(SYS_readlinkat, (long)dirfd, path, buf, (long)len);
}

static inline int sys_fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	return (int)sys_syscall(SYS_newfstatat, (long)dirfd, path, st, (long)flags);
}

/* faccessat2(2), which takes flags; the older call where the kernel has none and none are asked. */
static inline int sys_faccessat(int dirfd, const char *path, int mode, int flags)
{
	int rc = (int)sys_syscall(SYS_faccessat2, (long)dirfd, path, (long)mode, (long)flags);

	if (rc && errno == ENOSYS && !flags)
		rc = (int)sys_syscall(SYS_faccessat, (long)dirfd, path, (long)mode);
	return rc;
}

static inline int sys_statx(int dirfd, const char *path, int flags, unsigned int mask,
			    struct statx *stx)
{
	return (int)sys_syscall(SYS_statx, (long)dirfd, path, (long)flags, (long)mask, stx);
}

/*
 * The fstat system call itself: glibc's fstat() is fstatat(fd, "", AT_EMPTY_PATH), which reads
 * the empty path from user memory first (~10% dearer; the fd identity check runs per ioctl).
 */
static inline int sys_fstat(int fd, struct stat *st)
{
#ifdef SYS_fstat
	return (int)sys_syscall(SYS_fstat, (long)fd, st);
#else
	return sys_fstatat(fd, "", st, AT_EMPTY_PATH);
#endif
}

/*
 * Sockets and epoll of the library's own (src/iommufd/remote.c). Raw like the closes of them:
 * ThreadSanitizer follows an fd from the libc call that made it to the one that closes it, and
 * a raw close it cannot see makes the number's next owner look like a race.
 */
struct sockaddr;
struct msghdr;
struct epoll_event;

static inline int sys_socket(int domain, int type, int protocol)
{
	return (int)sys_syscall(SYS_socket, (long)domain, (long)type, (long)protocol);
}

static inline int sys_socketpair(int domain, int type, int protocol, int sv[2])
{
	return (int)sys_syscall(SYS_socketpair, (long)domain, (long)type, (long)protocol, sv);
}

static inline int sys_bind(int fd, const struct sockaddr *addr, unsigned int len)
{
	return (int)sys_syscall(SYS_bind, (long)fd, addr, (long)len);
}

static inline int sys_getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	return (int)sys_syscall(SYS_getpeername, (long)fd, addr, len);
}

static inline int sys_listen(int fd, int backlog)
{
	return (int)sys_syscall(SYS_listen, (long)fd, (long)backlog);
}

static inline int sys_accept4(int fd, int flags)
{
	return (int)sys_syscall(SYS_accept4, (long)fd, NULL, NULL, (long)flags);
}

static inline int sys_connect(int fd, const struct sockaddr *addr, unsigned int len)
{
	return (int)sys_syscall(SYS_connect, (long)fd, addr, (long)len);
}

static inline ssize_t sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	return sys_syscall(SYS_sendmsg, (long)fd, msg, (long)flags);
}

static inline ssize_t sys_recvmsg(int fd, struct msghdr *msg, int flags)
{
	return sys_syscall(SYS_recvmsg, (long)fd, msg, (long)flags);
}

static inline ssize_t sys_send(int fd, const void *buf, size_t len, int flags)
{
	return sys_syscall(SYS_sendto, (long)fd, buf, (long)len, (long)flags, NULL, 0L);
}

static inline ssize_t sys_recv(int fd, void *buf, size_t len, int flags)
{
	return sys_syscall(SYS_recvfrom, (long)fd, buf, (long)len, (long)flags, NULL, NULL);
}

static inline int sys_getsockopt(int fd, int level, int name, void *val, unsigned int *len)
{
	return (int)sys_syscall(SYS_getsockopt, (long)fd, (long)level, (long)name, val, len);
}

static inline int sys_setsockopt(int fd, int level, int name, const void *val, unsigned int len)
{
	return (int)sys_syscall(SYS_setsockopt, (long)fd, (long)level, (long)name, val, (long)len);
}

static inline int sys_epoll_create1(int flags)
{
	return (int)sys_syscall(SYS_epoll_create1, (long)flags);
}

static inline int sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	return (int)sys_syscall(SYS_epoll_ctl, (long)epfd, (long)op, (long)fd, ev);
}

static inline int sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return (int)sys_syscall(SYS_epoll_pwait, (long)epfd, ev, (long)max, (long)timeout, NULL, 0L);
}

/* poll() of @n fds with a zero timeout: how many show an event, their revents set; or -1. */
struct pollfd;
static inline int sys_poll_many_now(struct pollfd *p, unsigned long n)
{
	static const long zero[2] = { 0, 0 }; /* a struct timespec of 0 */

	return (int)sys_syscall(SYS_ppoll, p, (long)n, zero, NULL, 0L);
}

/* poll() of one fd with a zero timeout: 1 with p->revents set when it shows an event. */
static inline int sys_poll_now(struct pollfd *p)
{
	return sys_poll_many_now(p, 1);
}

static inline int sys_memfd_create(const char *name, unsigned int flags)
{
	return (int)sys_syscall(SYS_memfd_create, name, (long)flags);
}

/* Process fds (src/iommufd/remote.c, src/mm/mm_remote.c): glibc 2.36 has no wrappers for all. */
static inline int sys_pidfd_open(pid_t pid, unsigned int flags)
{
	return (int)sys_syscall(SYS_pidfd_open, (long)pid, (long)flags);
}

static inline int sys_pidfd_getfd(int pidfd, int fd, unsigned int flags)
{
	return (int)sys_syscall(SYS_pidfd_getfd, (long)pidfd, (long)fd, (long)flags);
}

/* Signal 0 through a pidfd: 0 while the process (or its zombie) exists. */
static inline int sys_pidfd_alive(int pidfd)
{
	return (int)sys_syscall(SYS_pidfd_send_signal, (long)pidfd, 0L, NULL, 0L);
}

/* The directory's entries as struct linux_dirent64 records; raw, as the fds it lists. */
static inline ssize_t sys_getdents64(int dirfd, void *buf, size_t len)
{
	return sys_syscall(SYS_getdents64, (long)dirfd, buf, (long)len);
}

#endif
