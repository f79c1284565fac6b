// SPDX-License-Identifier: MIT
/*
 * The kernel's fault-injection interface, served over uiommu's one should-fail hook
 * (lib/fail.c), so that programs written for a CONFIG_FAULT_INJECTION kernel (the kernel's
 * iommufd_fail_nth selftest) drive uiommu's error paths under uiommu-run.
 *
 *   /proc/self/task/<tid>/fail-nth      rw  a thread's countdown (lib/fail.h fail_nth_*)
 *   /proc/<pid>/task/<tid>/fail-nth     rw  the same, <pid> being this process
 *   /proc/thread-self/fail-nth          rw  the calling thread's (at open time)
 *   /proc/self/fail-nth, /proc/<pid>/fail-nth   the main thread's (the kernel's tgid entry)
 *   /sys/kernel/debug/{failslab,fail_page_alloc,fail_usercopy,fail_iommufd}/<attr>   rw
 *
 * fail-nth follows fs/proc/base.c: a write parses the number as kstrtouint_from_user() does
 * (base 0, at most 22 bytes, one trailing newline; EINVAL, ERANGE), ignores the file position
 * and arms the thread (0 disarms); a read gives "%u\n" of what is left from the file position
 * (pread from its offset), 0 once the failure happened. A thread that is gone is ESRCH; opening
 * the file of a thread that is not ours-and-alive is ENOENT. Other pids are not claimed: the
 * host's /proc answers.
 *
 * Model of an open fail-nth file: a memfd (so fstat, lseek, poll, close and fork behave as on a
 * regular file, and the file position is shared by dups, as the kernel's struct file is) that
 * is recorded in a table fd -> (thread id, access mode). The preload layer forwards read,
 * pread, write, pwrite, close and the dups of a recorded fd here. The memfd's content is never
 * used: a read formats the live countdown and moves the memfd's position. The table is read
 * locklessly by uiommu_fail_nth_is_fd(), which the wrappers call on every fd; a count of
 * entries keeps that one relaxed load while nothing is open.
 *
 * The debugfs directories hold the attributes fault_create_debugfs_attr() creates (probability,
 * interval, times, space, verbose, the verbose rate limit, task-filter) plus each user's own
 * (failslab: ignore-gfp-wait, cache-filter; fail_page_alloc: ignore-gfp-wait,
 * ignore-gfp-highmem, min-order), with the kernel's defaults and parsers (kstrtoull/kstrtoll
 * base 0 for numbers, kstrtobool for booleans, truncation to the field's width). They are
 * shown and stored, and nothing else: only fail-nth drives injection here, because every
 * fallible step of uiommu is one kind of point, with no slab/page/usercopy distinction to
 * filter on. The virtual sysfs (sysfs.c) materialises them under sys/kernel/debug and sends
 * their stores here; it journals them, so the processes of a session see the same values.
 * Only /sys/kernel/debug itself and these directories are claimed: the rest of the host's
 * debugfs stays reachable, though a listing of /sys/kernel/debug shows only ours.
 *
 * Release builds, which have no hook, serve none of this, as a kernel built without
 * CONFIG_FAULT_INJECTION: the paths go to the host (the kernel's selftest then skips).
 *
 * Locking: fault_attr_lock protects the attribute values (a leaf). fail_nth_fd_lock serialises
 * the fd table's updates (a leaf, never held across I/O).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "lib/sys.h"
#include "machine/fault_inject.h"
#include "mm/mm.h"
#include "uiommu/uiommu.h"

/* ---- debugfs attributes ----------------------------------------------------------------------- */

enum fault_attr_kind {
	FAULT_ATTR_UL,     /* unsigned long, "%llu\n" */
	FAULT_ATTR_U32,    /* u32, "%llu\n" */
	FAULT_ATTR_ATOMIC, /* atomic_t (int), "%lld\n" */
	FAULT_ATTR_BOOL,   /* "Y\n" / "N\n" */
};

struct fault_attr_desc {
	const char *dir;   /* NULL: in every directory */
	const char *name;
	enum fault_attr_kind kind;
	long long def;
};

static const char *const fault_dirs[] = {
	"failslab", "fail_page_alloc", "fail_usercopy", "fail_iommufd",
};

static const struct fault_attr_desc fault_attrs[] = {
	{ NULL, "probability", FAULT_ATTR_UL, 0 },
	{ NULL, "interval", FAULT_ATTR_UL, 1 },
	{ NULL, "times", FAULT_ATTR_ATOMIC, 1 },
	{ NULL, "space", FAULT_ATTR_ATOMIC, 0 },
	{ NULL, "verbose", FAULT_ATTR_UL, 2 },
	{ NULL, "verbose_ratelimit_interval_ms", FAULT_ATTR_U32, 0 },
	{ NULL, "verbose_ratelimit_burst", FAULT_ATTR_U32, 10 },
	{ NULL, "task-filter", FAULT_ATTR_BOOL, 0 },
	{ "failslab", "ignore-gfp-wait", FAULT_ATTR_BOOL, 1 },
	{ "failslab", "cache-filter", FAULT_ATTR_BOOL, 0 },
	{ "fail_page_alloc", "ignore-gfp-wait", FAULT_ATTR_BOOL, 1 },
	{ "fail_page_alloc", "ignore-gfp-highmem", FAULT_ATTR_BOOL, 1 },
	{ "fail_page_alloc", "min-order", FAULT_ATTR_U32, 1 },
};

#define FAULT_NR_DIRS ARRAY_SIZE(fault_dirs)
#define FAULT_NR_ATTRS ARRAY_SIZE(fault_attrs)

/* Protects fault_attr_vals and fault_attr_set; a leaf lock. */
UIOMMU_MUTEX_DEFINE(fault_attr_lock);
static long long fault_attr_vals[FAULT_NR_DIRS][FAULT_NR_ATTRS];
static bool fault_attr_set[FAULT_NR_DIRS][FAULT_NR_ATTRS]; /* false: still the default */

static bool fault_attr_in(const struct fault_attr_desc *a, const char *dir)
{
	return !a->dir || !strcmp(a->dir, dir);
}

/* "failslab/verbose" -> its directory and attribute indexes; false if no such attribute. */
static bool fault_attr_lookup(const char *path, size_t *d, size_t *a)
{
	const char *slash = strchr(path, '/');
	size_t n;

	if (!slash)
		return false;
	n = (size_t)(slash - path);
	for (*d = 0; *d < FAULT_NR_DIRS; (*d)++) {
		if (strlen(fault_dirs[*d]) == n && !strncmp(path, fault_dirs[*d], n))
			break;
	}
	if (*d == FAULT_NR_DIRS)
		return false;
	for (*a = 0; *a < FAULT_NR_ATTRS; (*a)++) {
		if (fault_attr_in(&fault_attrs[*a], fault_dirs[*d]) &&
		    !strcmp(slash + 1, fault_attrs[*a].name))
			return true;
	}
	return false;
}

const char *fault_debugfs_dir(size_t i)
{
	return uiommu_fail_nth_available() && i < FAULT_NR_DIRS ? fault_dirs[i] : NULL;
}

bool fault_debugfs_claims(const char *path)
{
	static const char root[] = "/sys/kernel/debug";
	const char *p;
	size_t i, n;

	if (!uiommu_fail_nth_available() || strncmp(path, root, sizeof(root) - 1))
		return false;
	p = path + sizeof(root) - 1;
	if (!strcmp(p, "") || !strcmp(p, "/"))
		return true;
	for (i = 0; i < FAULT_NR_DIRS; i++) {
		n = strlen(fault_dirs[i]);
		if (p[0] == '/' && !strncmp(p + 1, fault_dirs[i], n) &&
		    (p[1 + n] == '\0' || p[1 + n] == '/'))
			return true;
	}
	return false;
}

static void fault_attr_format(size_t d, size_t a, char *buf, size_t len)
{
	long long v;

	uiommu_mutex_lock(&fault_attr_lock);
	v = fault_attr_set[d][a] ? fault_attr_vals[d][a] : fault_attrs[a].def;
	uiommu_mutex_unlock(&fault_attr_lock);
	switch (fault_attrs[a].kind) {
	case FAULT_ATTR_BOOL:
		snprintf(buf, len, "%c\n", v ? 'Y' : 'N');
		break;
	case FAULT_ATTR_ATOMIC:
		snprintf(buf, len, "%lld\n", v);
		break;
	default:
		snprintf(buf, len, "%llu\n", (unsigned long long)v);
		break;
	}
}

bool fault_debugfs_attr(size_t i, char *path, size_t plen, char *buf, size_t blen)
{
	size_t d, a;

	if (!uiommu_fail_nth_available())
		return false;
	for (d = 0; d < FAULT_NR_DIRS; d++) {
		for (a = 0; a < FAULT_NR_ATTRS; a++) {
			if (!fault_attr_in(&fault_attrs[a], fault_dirs[d]) || i--)
				continue;
			snprintf(path, plen, "%s/%s", fault_dirs[d], fault_attrs[a].name);
			fault_attr_format(d, a, buf, blen);
			return true;
		}
	}
	return false;
}

bool fault_debugfs_is_attr(const char *path)
{
	size_t d, a;

	return fault_attr_lookup(path, &d, &a);
}

int fault_debugfs_show(const char *path, char *buf, size_t len)
{
	size_t d, a;

	if (!fault_attr_lookup(path, &d, &a))
		return -ENOENT;
	fault_attr_format(d, a, buf, len);
	return 0;
}

/*
 * kstrtoull()/kstrtoll() with base 0 on a NUL-terminated @s: an optional sign ('-' only when
 * @is_signed), a C integer literal, one optional newline, the end.
 */
static int fault_parse_int(const char *s, bool is_signed, long long *val)
{
	bool neg = false;
	unsigned long long u;
	char *end;

	if (*s == '+') {
		s++;
	} else if (*s == '-' && is_signed) {
		neg = true;
		s++;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	u = strtoull(s, &end, 0);
	if (errno)
		return -ERANGE;
	if (*end == '\n')
		end++;
	if (*end)
		return -EINVAL;
	if (is_signed && u > (neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX))
		return -ERANGE;
	*val = neg ? (long long)(0 - u) : (long long)u;
	return 0;
}

/* kstrtobool(): the first one or two characters decide. */
static int fault_parse_bool(const char *s, long long *val)
{
	switch (s[0]) {
	case 'y': case 'Y': case 't': case 'T': case '1':
		*val = 1;
		return 0;
	case 'n': case 'N': case 'f': case 'F': case '0':
		*val = 0;
		return 0;
	case 'o': case 'O':
		if (s[1] == 'n' || s[1] == 'N') {
			*val = 1;
			return 0;
		}
		if (s[1] == 'f' || s[1] == 'F') {
			*val = 0;
			return 0;
		}
		return -EINVAL;
	default:
		return -EINVAL;
	}
}

ssize_t fault_debugfs_store(const char *path, const char *buf, size_t count)
{
	/* simple_attr_write() and debugfs_write_file_bool() read at most 23 and 3 bytes. */
	char s[24];
	size_t d, a, n;
	long long v;
	int rc;

	if (!fault_attr_lookup(path, &d, &a))
		return -ENOENT;
	n = fault_attrs[a].kind == FAULT_ATTR_BOOL ? 3 : sizeof(s) - 1;
	if (count < n)
		n = count;
	memcpy(s, buf, n);
	s[n] = '\0';
	switch (fault_attrs[a].kind) {
	case FAULT_ATTR_BOOL:
		rc = fault_parse_bool(s, &v);
		break;
	case FAULT_ATTR_ATOMIC:
		rc = fault_parse_int(s, true, &v);
		v = (int)v; /* atomic_set() of an int */
		break;
	case FAULT_ATTR_U32:
		rc = fault_parse_int(s, false, &v);
		v = (unsigned int)v;
		break;
	default:
		rc = fault_parse_int(s, false, &v);
		v = (long long)(unsigned long)v;
		break;
	}
	if (rc)
		return rc;
	uiommu_mutex_lock(&fault_attr_lock);
	fault_attr_vals[d][a] = v;
	fault_attr_set[d][a] = true;
	uiommu_mutex_unlock(&fault_attr_lock);
	return (ssize_t)count;
}

/* ---- /proc fail-nth: paths -------------------------------------------------------------------- */

/* Is @tid a live thread of this process? */
static bool fail_nth_thread_alive(pid_t tid)
{
	char path[64];
	struct stat st;

	if (tid == getpid())
		return true;
	snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
	/* The raw call: stat() is the preload layer's. */
	return !sys_fstatat(AT_FDCWD, path, &st, 0);
}

/* A decimal pid at @s, ended by '/'; *end after it. */
static bool parse_pid(const char *s, pid_t *pid, const char **end)
{
	long v = 0;

	if (*s < '1' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (*s++ - '0');
		if (v > INT_MAX)
			return false;
	}
	*pid = (pid_t)v;
	*end = s;
	return true;
}

/*
 * The thread whose fail-nth @path names (see the top of the file), or 0 when @path is not one
 * of ours. The thread need not be alive: the caller decides.
 */
static pid_t fail_nth_path_tid(const char *path)
{
	static const char leaf[] = "fail-nth";
	const char *p;
	pid_t pid, tid;

	if (!path || strncmp(path, "/proc/", 6))
		return 0;
	p = path + 6;
	if (!strncmp(p, "thread-self/", 12))
		return strcmp(p + 12, leaf) ? 0 : gettid();
	if (!strncmp(p, "self/", 5)) {
		p += 5;
	} else {
		if (!parse_pid(p, &pid, &p) || *p != '/' || pid != getpid())
			return 0;
		p++;
	}
	if (!strcmp(p, leaf))
		return getpid();
	if (strncmp(p, "task/", 5) || !parse_pid(p + 5, &tid, &p) || *p != '/' ||
	    strcmp(p + 1, leaf))
		return 0;
	return tid;
}

UIOMMU_EXPORT bool uiommu_fail_nth_claims(const char *path)
{
	/* Like a kernel without CONFIG_FAULT_INJECTION, a release build has no such files. */
	return uiommu_fail_nth_available() && fail_nth_path_tid(path) != 0;
}

/* ---- /proc fail-nth: the fd table ------------------------------------------------------------- */

#define FAIL_NTH_MAX_FDS 4096
/* Mode bits kept beside the thread id in a table slot. */
#define FAIL_NTH_READ 1L
#define FAIL_NTH_WRITE 2L
#define FAIL_NTH_SHIFT 2

/* fd -> (tid << FAIL_NTH_SHIFT | mode), 0 when not ours; written under fail_nth_fd_lock. */
static atomic_long fail_nth_fds[FAIL_NTH_MAX_FDS];
static atomic_int fail_nth_nr_fds;
/* Serialises updates of fail_nth_fds and fail_nth_nr_fds; a leaf lock. */
UIOMMU_MUTEX_DEFINE(fail_nth_fd_lock);

static int rc_errno(int rc)
{
	errno = -rc;
	return -1;
}

static void fail_nth_fd_set(int fd, long slot)
{
	long old;

	uiommu_mutex_lock(&fail_nth_fd_lock);
	old = atomic_exchange_explicit(&fail_nth_fds[fd], slot, memory_order_acq_rel);
	if (!old && slot)
		atomic_fetch_add_explicit(&fail_nth_nr_fds, 1, memory_order_relaxed);
	else if (old && !slot)
		atomic_fetch_sub_explicit(&fail_nth_nr_fds, 1, memory_order_relaxed);
	uiommu_mutex_unlock(&fail_nth_fd_lock);
}

static long fail_nth_fd_get(int fd)
{
	if (fd < 0 || fd >= FAIL_NTH_MAX_FDS)
		return 0;
	return atomic_load_explicit(&fail_nth_fds[fd], memory_order_acquire);
}

UIOMMU_EXPORT bool uiommu_fail_nth_is_fd(int fd)
{
	if (!atomic_load_explicit(&fail_nth_nr_fds, memory_order_relaxed))
		return false;
	return fail_nth_fd_get(fd) != 0;
}

UIOMMU_EXPORT int uiommu_fail_nth_open(const char *path, int flags)
{
	pid_t tid = fail_nth_path_tid(path);
	long mode = 0;
	int fd;

	if (!tid || !fail_nth_thread_alive(tid))
		return rc_errno(-ENOENT);
	if (flags & O_DIRECTORY)
		return rc_errno(-ENOTDIR);
	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
		return rc_errno(-EEXIST);
	if (!(flags & O_PATH)) {
		if ((flags & O_ACCMODE) != O_WRONLY)
			mode |= FAIL_NTH_READ;
		if ((flags & O_ACCMODE) != O_RDONLY)
			mode |= FAIL_NTH_WRITE;
	}
	if (uiommu_should_fail())
		return rc_errno(-EMFILE);
	fd = memfd_create("uiommu-fail-nth", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	if (fd >= FAIL_NTH_MAX_FDS) {
		sys_close(fd);
		return rc_errno(-EMFILE);
	}
	fail_nth_fd_set(fd, (long)tid << FAIL_NTH_SHIFT | mode);
	return fd;
}

/* The thread of @fd, checked for @need (FAIL_NTH_READ/WRITE); 0 or -EBADF/-ESRCH. */
static int fail_nth_fd_thread(int fd, long need, pid_t *tid)
{
	long slot = fail_nth_fd_get(fd);

	if (!slot || !(slot & need))
		return -EBADF;
	*tid = (pid_t)(slot >> FAIL_NTH_SHIFT);
	return fail_nth_thread_alive(*tid) ? 0 : -ESRCH;
}

/* simple_read_from_buffer() of the countdown from @pos. */
static ssize_t fail_nth_show_at(pid_t tid, void *buf, size_t count, off_t pos)
{
	char num[32];
	size_t len;

	len = (size_t)snprintf(num, sizeof(num), "%lu\n", fail_nth_show(tid));
	if (pos < 0)
		return -EINVAL;
	if ((size_t)pos >= len || !count)
		return 0;
	if (count > len - (size_t)pos)
		count = len - (size_t)pos;
	if (uiommu_host_copy(buf, num + pos, count))
		return -EFAULT;
	return (ssize_t)count;
}

UIOMMU_EXPORT ssize_t uiommu_fail_nth_pread(int fd, void *buf, size_t count, off_t off)
{
	ssize_t n;
	pid_t tid;
	int rc;

	rc = fail_nth_fd_thread(fd, FAIL_NTH_READ, &tid);
	if (rc)
		return rc_errno(rc);
	n = fail_nth_show_at(tid, buf, count, off);
	return n < 0 ? rc_errno((int)n) : n;
}

UIOMMU_EXPORT ssize_t uiommu_fail_nth_read(int fd, void *buf, size_t count)
{
	off_t pos;
	ssize_t n;

	/* The memfd keeps the file position: shared by dups, as the kernel's struct file. */
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos < 0)
		return -1;
	n = uiommu_fail_nth_pread(fd, buf, count, pos);
	if (n > 0 && lseek(fd, pos + n, SEEK_SET) < 0)
		return -1;
	return n;
}

/* kstrtouint_from_user(buf, count, 0): at most 22 bytes, base 0, one trailing newline. */
static int fail_nth_parse(const void *buf, size_t count, unsigned long *val)
{
	char s[23];
	long long v;
	int rc;

	if (count > sizeof(s) - 1)
		count = sizeof(s) - 1;
	if (uiommu_host_copy(s, buf, count))
		return -EFAULT;
	s[count] = '\0';
	rc = fault_parse_int(s, false, &v);
	if (rc)
		return rc;
	if ((unsigned long long)v > UINT_MAX)
		return -ERANGE;
	*val = (unsigned long)(unsigned long long)v;
	return 0;
}

UIOMMU_EXPORT ssize_t uiommu_fail_nth_write(int fd, const void *buf, size_t count)
{
	unsigned long nth;
	pid_t tid;
	int rc;

	rc = fail_nth_fd_thread(fd, FAIL_NTH_WRITE, &tid);
	rc = rc ?: fail_nth_parse(buf, count, &nth);
	rc = rc ?: fail_nth_store(tid, nth);
	return rc ? rc_errno(rc) : (ssize_t)count;
}

UIOMMU_EXPORT ssize_t uiommu_fail_nth_pwrite(int fd, const void *buf, size_t count, off_t off)
{
	if (off < 0)
		return rc_errno(-EINVAL);
	return uiommu_fail_nth_write(fd, buf, count);
}

UIOMMU_EXPORT int uiommu_fail_nth_fd_dup(int oldfd, int newfd)
{
	long slot = fail_nth_fd_get(oldfd);

	if (!slot)
		return rc_errno(-EBADF);
	if (newfd < 0 || newfd >= FAIL_NTH_MAX_FDS)
		return rc_errno(-EMFILE);
	fail_nth_fd_set(newfd, slot);
	return 0;
}

UIOMMU_EXPORT void uiommu_fail_nth_fd_forget(int fd)
{
	if (fd >= 0 && fd < FAIL_NTH_MAX_FDS && fail_nth_fd_get(fd))
		fail_nth_fd_set(fd, 0);
}

UIOMMU_EXPORT int uiommu_fail_nth_close(int fd)
{
	uiommu_fail_nth_fd_forget(fd);
	return (int)sys_close(fd);
}
