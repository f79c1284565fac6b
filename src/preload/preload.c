// SPDX-License-Identifier: MIT
/*
 * The LD_PRELOAD layer: it intercepts the libc calls that can touch /dev/iommu and forwards
 * them to libuiommu. It holds no state and implements no semantics of its own: an open of
 * /dev/iommu becomes uiommu_open(), and calls on an fd that uiommu_is_fd() claims go to the
 * matching uiommu_*() call. Every other call goes to the real libc function untouched.
 *
 * The real functions are looked up lazily with dlsym(RTLD_NEXT) (libc_func()).
 */
/* We define both the plain and the 64 names ourselves: no redirection of one to the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

static const char iommu_path[] = "/dev/iommu";

static int is_iommu_path(int dirfd, const char *path)
{
	/* Only the absolute path: the device has no other name a program would use. */
	(void)dirfd;
	return path && !strcmp(path, iommu_path);
}

static int open_flags_mode(int flags)
{
	return flags & O_CLOEXEC;
}

/* glibc's fortified open entry points, which its headers do not declare. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
int fcntl64(int fd, int cmd, ...);

/* ---- Overridden libc wrappers -------------------------------------------------------------- */

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
		if (is_iommu_path(AT_FDCWD, path))                                        \
			return uiommu_open(open_flags_mode(flags));                       \
		return _##name(path, flags, mode);                                        \
	}

#define WRAP_OPENAT(name)                                                                 \
	UIOMMU_EXPORT int name(int dirfd, const char *path, int flags, ...)               \
	{                                                                                 \
		mode_t mode = 0;                                                          \
		libc_func(name, int, int, const char *, int, ...);                        \
		if (flags & (O_CREAT | O_TMPFILE)) {                                      \
			va_list ap;                                                       \
			va_start(ap, flags);                                              \
			mode = va_arg(ap, mode_t);                                        \
			va_end(ap);                                                       \
		}                                                                         \
		if (is_iommu_path(dirfd, path))                                           \
			return uiommu_open(open_flags_mode(flags));                       \
		return _##name(dirfd, path, flags, mode);                                 \
	}

#define WRAP_OPEN_2(name)                                                                 \
	UIOMMU_EXPORT int name(const char *path, int flags)                               \
	{                                                                                 \
		libc_func(name, int, const char *, int);                                  \
		if (is_iommu_path(AT_FDCWD, path))                                        \
			return uiommu_open(open_flags_mode(flags));                       \
		return _##name(path, flags);                                              \
	}

#define WRAP_OPENAT_2(name)                                                               \
	UIOMMU_EXPORT int name(int dirfd, const char *path, int flags)                    \
	{                                                                                 \
		libc_func(name, int, int, const char *, int);                             \
		if (is_iommu_path(dirfd, path))                                           \
			return uiommu_open(open_flags_mode(flags));                       \
		return _##name(dirfd, path, flags);                                       \
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

	libc_func(ioctl, int, int, unsigned long, ...);
	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (uiommu_is_fd(fd))
		return uiommu_ioctl(fd, request, arg);
	return _ioctl(fd, request, arg);
}

UIOMMU_EXPORT int close(int fd)
{
	libc_func(close, int, int);
	if (uiommu_is_fd(fd))
		return uiommu_close(fd);
	return _close(fd);
}

UIOMMU_EXPORT int dup(int fd)
{
	libc_func(dup, int, int);
	if (uiommu_is_fd(fd))
		return uiommu_dup(fd);
	return _dup(fd);
}

UIOMMU_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int rc;

	libc_func(dup3, int, int, int, int);
	if (uiommu_is_fd(oldfd))
		return uiommu_dup3(oldfd, newfd, flags);
	rc = _dup3(oldfd, newfd, flags);
	/* Another file now sits on what was an iommufd fd. */
	if (rc >= 0 && uiommu_is_fd(newfd))
		uiommu_fd_forget(newfd);
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
	rc = _dup2(oldfd, newfd);
	if (rc >= 0 && uiommu_is_fd(newfd))
		uiommu_fd_forget(newfd);
	return rc;
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
		return _##name(fd, cmd, arg);                                             \
	}

WRAP_FCNTL(fcntl)
WRAP_FCNTL(fcntl64)
