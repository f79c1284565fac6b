/* SPDX-License-Identifier: MIT */
/*
 * Raw system calls, typed.
 *
 * The library cannot call libc's close()/mmap()/read()... for its own descriptors: under the
 * preload those symbols are ours and would route the call back into uiommu. It goes to the
 * kernel through syscall(), which is variadic and reads each of its six arguments as a long.
 * An int passed there is UB: its upper half is whatever the register or, for the sixth
 * argument, the stack slot held (clang builds mapped the vIOMMU region at a garbage offset this
 * way). Every raw call therefore goes through one of these wrappers, whose prototypes widen
 * each argument to long before it reaches the varargs.
 */
#ifndef UIOMMU_LIB_SYS_H
#define UIOMMU_LIB_SYS_H

#include <stddef.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static inline void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, (long)len, (long)prot, (long)flags, (long)fd,
			       (long)off);
}

static inline int sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, (long)len);
}

static inline int sys_close(int fd)
{
	return (int)syscall(SYS_close, (long)fd);
}

static inline ssize_t sys_read(int fd, void *buf, size_t len)
{
	return syscall(SYS_read, (long)fd, buf, (long)len);
}

static inline ssize_t sys_write(int fd, const void *buf, size_t len)
{
	return syscall(SYS_write, (long)fd, buf, (long)len);
}

static inline ssize_t sys_pread(int fd, void *buf, size_t len, off_t off)
{
	return syscall(SYS_pread64, (long)fd, buf, (long)len, (long)off);
}

static inline ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return syscall(SYS_pwrite64, (long)fd, buf, (long)len, (long)off);
}

static inline int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, (long)dirfd, path, (long)flags, (long)mode);
}

static inline int sys_fcntl(int fd, int cmd, long arg)
{
	return (int)syscall(SYS_fcntl, (long)fd, (long)cmd, arg);
}

static inline int sys_dup3(int oldfd, int newfd, int flags)
{
	return (int)syscall(SYS_dup3, (long)oldfd, (long)newfd, (long)flags);
}

static inline ssize_t sys_readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
	return syscall(SYS_readlinkat, (long)dirfd, path, buf, (long)len);
}

static inline int sys_fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	return (int)syscall(SYS_newfstatat, (long)dirfd, path, st, (long)flags);
}

/*
 * The fstat system call itself: glibc's fstat() is fstatat(fd, "", AT_EMPTY_PATH), which reads
 * the empty path from user memory first (~10% dearer; the fd identity check runs per ioctl).
 */
static inline int sys_fstat(int fd, struct stat *st)
{
#ifdef SYS_fstat
	return (int)syscall(SYS_fstat, (long)fd, st);
#else
	return sys_fstatat(fd, "", st, AT_EMPTY_PATH);
#endif
}

static inline int sys_memfd_create(const char *name, unsigned int flags)
{
	return (int)syscall(SYS_memfd_create, name, (long)flags);
}

#endif
