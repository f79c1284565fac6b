// SPDX-License-Identifier: MIT
/*
 * What another process sees of a uiommu fd through /proc/<pid>/fd/N: the name the kernel's
 * readlink() gives ("/dev/iommu", "/dev/vfio/devices/vfio0", "anon_inode:[iommufd-pgfault]")
 * and, for a file opened through a node, an open() that opens that node anew.
 *
 * Every fd of a uiommu file is a socket here (file.c), so the host answers "socket:[INO]" for
 * its link and ENXIO for an open of it, in every process. For the fds of its own table a
 * process knows the file (uiommu_fd_path()); for anyone else's, the only thing the link shows
 * is the socket's inode number. So the process that serves a file publishes a record per file,
 * named by that inode number, in a directory private to the user (the registry):
 *
 *	/run/user/<euid>/uiommu-fds when /run/user/<euid> is a directory of ours closed to
 *	others (logind's runtime directory), else /tmp/uiommu-fds.<euid>
 *
 * chosen without looking at the environment ($XDG_RUNTIME_DIR, $TMPDIR), so that the holder
 * and a reader started from another shell, a service or a test harness agree. The directory is made 0700 and must be ours, a directory, and
 * closed to group and others, or nothing is written to it nor believed from it (another user
 * cannot plant records). A record is one line, "uiommu-fd 1 PID START MODE MAJOR MINOR NAME":
 * the serving process (its pid and the start time /proc/PID/stat shows, which a reused pid does
 * not have) and the node (file.c's struct iommufd_node). It is written under a temporary name
 * and renamed into place, so a reader sees a whole record or none.
 *
 * stat() following the link (uiommu_fd_link_stat(), uiommu_fd_link_statx()) answers the same
 * way: the host's stat of the link's target, which for a uiommu file is its socket, gives the
 * inode number the record is named by; a live record's node replaces it with what the serving
 * process's fstat() shows (a node's character device, an anonymous file's 0600). Everything
 * else, lstat() of the link itself included, is the host's answer.
 *
 * Invariants. A record exists from before the file's fd is handed out until its release,
 * which removes it: a reader that finds a record whose
 * process still lives finds a file that lives, because socket inode numbers come from a
 * 32-bit counter that is not reused before it wraps. A process that dies without releasing
 * (SIGKILL) leaves records that name a dead pid, or a pid with another start time: they count
 * as absent, and the first publish of every process sweeps them away; a process that exits
 * normally removes its own (its files end with it). A record only ever gives
 * a name; what a reader does with it is the reader's: a node name is opened anew, in the
 * reader's process and with its own rights, as a plain open() of that node (devnode.c checks
 * that it is one of the nodes it serves), so a record can make nobody reach a context it was
 * not given. The readlink() of the other process's fd, which the reader makes first, is the
 * host's own check that the reader may look at that process's fds at all.
 *
 * The registry is kept only where the preload layer runs (uiommu_fd_track()): only its
 * wrappers read it. A process that uses the library directly publishes nothing, and its fds
 * show as sockets to everyone else; so does a process that finds no directory it can trust.
 * Where there is a registry, a file's record is part of making the file, written before the
 * fd is handed out (before an ioctl's reply, for a sub-fd): a failure to write it (out of
 * space, out of fds, an injected failure) fails the open or the ioctl as an allocation would,
 * and the unwind removes it. So a file without its record never exists there.
 *
 * Locking: the directory is found once (pthread_once) and constant after; records are each
 * written whole and renamed. The one lock is the registry's own flock() (procfd_dir_lock()),
 * a leaf taken by no one who waits for anything else while holding it, which orders a sweep's
 * read-then-unlink against a rename into place. A release, which may run under fdt_lock and
 * gone_lock (file.c), removes its own live record by name without taking it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"

#define PROCFD_MAGIC "uiommu-fd 1"

/* Set by uiommu_fd_track(): records are written from then on. */
static atomic_bool procfd_enabled;

/* The registry's directory and whether it is usable (0 or -errno): found once, then constant. */
static pthread_once_t procfd_dir_once = PTHREAD_ONCE_INIT;
static int procfd_dir_err;
static char procfd_dir[PATH_MAX - 32];

void iommufd_procfd_enable(void)
{
	atomic_store(&procfd_enabled, true);
}

/* Is @path a directory of ours that no other user can write, list or read? */
static int procfd_dir_check(const char *path)
{
	struct stat st;

	if (sys_fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW))
		return -errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077))
		return -EPERM;
	return 0;
}

/* The registry's directory, made if missing; -errno when there is none to trust. */
static int procfd_dir_find(char *dir, size_t len)
{
	char run[40];

	snprintf(run, sizeof(run), "/run/user/%u", (unsigned int)geteuid());
	if (!procfd_dir_check(run))
		snprintf(dir, len, "%s/uiommu-fds", run);
	else
		snprintf(dir, len, "/tmp/uiommu-fds.%u", (unsigned int)geteuid());
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	return procfd_dir_check(dir);
}

static void procfd_dir_init(void)
{
	procfd_dir_err = procfd_dir_find(procfd_dir, sizeof(procfd_dir));
}

/*
 * The directory's name in @dir (PATH_MAX bytes), or -errno. Looked up once: a fork's child has
 * the same user and environment, so the same directory.
 */
static int procfd_dir_get(char *dir)
{
	pthread_once(&procfd_dir_once, procfd_dir_init);
	snprintf(dir, PATH_MAX, "%s", procfd_dir);
	return procfd_dir_err;
}

/*
 * The start time of @pid (field 22 of /proc/PID/stat) in *@start. Return: 0, -ESRCH when the
 * process does not exist, another -errno when it cannot be told (out of fds: a sweep must
 * not take a live process for a dead one).
 */
static int procfd_start_time(pid_t pid, unsigned long long *start)
{
	char path[40], buf[512], *p;
	ssize_t n;

	*start = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = sys_read_small_file(path, buf, sizeof(buf));
	if (n < 0)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : -errno;
	if (!n)
		return -ESRCH;
	/* The command may hold spaces and parentheses: fields count from the last ')'. */
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -EIO;
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

struct procfd_record {
	pid_t pid;
	unsigned long long start;
	struct iommufd_node node;
};

/* Parses one record; false for anything that is not exactly one. */
static bool procfd_record_parse(char *buf, struct procfd_record *rec)
{
	unsigned int mode, major, minor;
	int pid, name = 0;

	if (strncmp(buf, PROCFD_MAGIC " ", sizeof(PROCFD_MAGIC)) ||
	    sscanf(buf + sizeof(PROCFD_MAGIC), "%d %llu %o %u %u %n", &pid, &rec->start, &mode,
		   &major, &minor, &name) != 5 || !name || pid <= 0)
		return false;
	buf += sizeof(PROCFD_MAGIC) + name;
	buf[strcspn(buf, "\n")] = '\0';
	if (!*buf || strlen(buf) >= sizeof(rec->node.path))
		return false;
	rec->pid = pid;
	snprintf(rec->node.path, sizeof(rec->node.path), "%s", buf);
	rec->node.mode = mode;
	rec->node.major = major;
	rec->node.minor = minor;
	return true;
}

/*
 * Reads the record @name of @dir; -ENOENT for none, a malformed one, or one not ours; another
 * -errno when it could not be read (out of fds): nothing is known of it then.
 */
static int procfd_record_read(const char *dir, const char *name, struct procfd_record *rec)
{
	char path[PATH_MAX], buf[256];
	struct stat st;
	ssize_t n;
	int fd, rc;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENOENT;
	fd = sys_openat(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0)
		return errno == EMFILE || errno == ENFILE || errno == ENOMEM ? -errno : -ENOENT;
	n = 0;
	if (!sys_fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !(st.st_mode & 0077))
		n = sys_read(fd, buf, sizeof(buf) - 1);
	rc = n < 0 ? -errno : 0;
	sys_close(fd);
	if (rc)
		return rc;
	if (!n)
		return -ENOENT;
	buf[n] = '\0';
	return procfd_record_parse(buf, rec) ? 0 : -ENOENT;
}

/* 1: @rec's process lives; 0: it is gone (or its pid is another's now); -errno: unknown. */
static int procfd_record_live(const struct procfd_record *rec)
{
	unsigned long long start;
	int rc = procfd_start_time(rec->pid, &start);

	if (rc)
		return rc == -ESRCH ? 0 : rc;
	return start == rec->start;
}

/*
 * The registry's lock, so that a sweep removes only the stale record it read: between its read
 * and its unlink another process may rename a live record into place under the same name (a
 * socket inode number come round again, a test's forgery), and an unlink by name would take
 * that one. A sweep holds the lock exclusive from its first read to its last unlink; a writer
 * holds it shared while it renames a record into place. flock() of the directory: per open
 * file description, so it orders the threads of one process as it orders processes, and a
 * process's death lets go of it. Return: the fd that holds it, or -errno.
 */
static int procfd_dir_lock(const char *dir, int how)
{
	int fd = sys_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0), rc;

	if (fd < 0)
		return -errno;
	while (flock(fd, how)) {
		if (errno == EINTR)
			continue;
		rc = -errno;
		sys_close(fd);
		return rc;
	}
	return fd;
}

/*
 * Removes what processes that are gone left: records naming a dead process (or one that is
 * no record at all: the directory is ours alone) and a crashed writer's temporary file
 * (".INO.PID"); at @exiting, also this process's own records (its files end with it, and
 * their other holders' calls answer ENODEV from then on). Once per process at its first
 * publish, and at its exit.
 */
static void procfd_sweep(const char *dir, bool exiting)
{
	struct procfd_record rec;
	struct dirent *de;
	int lock = procfd_dir_lock(dir, LOCK_EX);
	DIR *d;

	/* Not sure what it would remove (out of fds): nothing goes. */
	if (lock < 0)
		return;
	d = opendir(dir);
	if (!d)
		goto out_unlock;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		unsigned long long ino, start;
		int pid, rc;

		/* Only what is known to be gone goes: a record not read (EMFILE) may be live. */
		if (de->d_name[0] >= '0' && de->d_name[0] <= '9') {
			rc = procfd_record_read(dir, de->d_name, &rec);
			if (rc == -ENOENT)
				rc = 0;
			else if (!rc)
				rc = procfd_record_live(&rec) && !(exiting && rec.pid == getpid());
			if (rc)
				continue;
		} else if (sscanf(de->d_name, ".%llu.%d", &ino, &pid) != 2 || pid <= 0 ||
			   procfd_start_time(pid, &start) != -ESRCH) {
			continue;
		}
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
			unlink(path);
	}
	closedir(d);
out_unlock:
	sys_close(lock);
}

/* A process that exits (not by exec) takes its records with it. */
static void procfd_atexit(void)
{
	char dir[PATH_MAX];

	if (!procfd_dir_get(dir))
		procfd_sweep(dir, true);
}

static pthread_once_t procfd_atexit_once = PTHREAD_ONCE_INIT;

static void procfd_atexit_register(void)
{
	atexit(procfd_atexit);
}

int iommufd_procfd_publish(ino_t ino, const struct iommufd_node *node)
{
	static _Atomic unsigned long long self_start;
	static _Atomic pid_t self_pid, swept;
	char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], line[160];
	pid_t pid = getpid();
	unsigned long long start;
	int fd, len, lock, rc = 0;

	/* No registry to keep (no preload layer, or no directory we trust): nothing to do. */
	if (!atomic_load_explicit(&procfd_enabled, memory_order_relaxed) || procfd_dir_get(dir))
		return 0;
	if (uiommu_should_fail())
		return -ENOMEM;
	if (atomic_exchange(&swept, pid) != pid) {
		pthread_once(&procfd_atexit_once, procfd_atexit_register);
		procfd_sweep(dir, false);
	}
	/*
	 * Our own start time, read once per process (a fork's child reads its own); not
	 * remembered when it could not be read (out of fds), so the next open tries again.
	 */
	if (atomic_load(&self_pid) != pid) {
		rc = procfd_start_time(pid, &start);
		if (rc)
			return rc == -ESRCH ? -EIO : rc;
		atomic_store(&self_start, start);
		atomic_store(&self_pid, pid);
	}
	start = atomic_load(&self_start);
	len = snprintf(line, sizeof(line), PROCFD_MAGIC " %d %llu %o %u %u %s\n", (int)pid, start,
		       (unsigned int)node->mode, node->major, node->minor, node->path);
	if (len >= (int)sizeof(line) ||
	    snprintf(tmp, sizeof(tmp), "%s/.%ju.%d", dir, (uintmax_t)ino, (int)pid) >=
		    (int)sizeof(tmp) ||
	    snprintf(path, sizeof(path), "%s/%ju", dir, (uintmax_t)ino) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = sys_openat(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			0600);
	if (fd < 0)
		return -errno;
	if (sys_write(fd, line, (size_t)len) != len)
		rc = errno ? -errno : -ENOSPC;
	sys_close(fd);
	lock = rc ? -1 : procfd_dir_lock(dir, LOCK_SH);
	if (lock < 0 && !rc)
		rc = lock;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (lock >= 0)
		sys_close(lock);
	if (rc)
		unlink(tmp);
	return rc;
}

void iommufd_procfd_forget(ino_t ino)
{
	char dir[PATH_MAX], path[PATH_MAX];

	if (!atomic_load_explicit(&procfd_enabled, memory_order_relaxed) || procfd_dir_get(dir) ||
	    snprintf(path, sizeof(path), "%s/%ju", dir, (uintmax_t)ino) >= (int)sizeof(path))
		return;
	unlink(path);
}

int iommufd_procfd_lookup(unsigned long ino, struct iommufd_node *node)
{
	struct procfd_record rec;
	char dir[PATH_MAX], name[24];

	if (procfd_dir_get(dir))
		return -ENOENT;
	snprintf(name, sizeof(name), "%lu", ino);
	if (procfd_record_read(dir, name, &rec) || procfd_record_live(&rec) != 1)
		return -ENOENT;
	*node = rec.node;
	return 0;
}

int iommufd_procfd_lookup_link(const char *link, struct iommufd_node *node)
{
	unsigned long ino;
	char *end;

	if (strncmp(link, "socket:[", 8) || link[8] < '0' || link[8] > '9')
		return -ENOENT;
	ino = strtoul(link + 8, &end, 10);
	if (strcmp(end, "]"))
		return -ENOENT;
	return iommufd_procfd_lookup(ino, node);
}

/* A decimal fd or pid number, the whole of [@s, @end). */
static bool procfd_digits(const char *s, const char *end)
{
	if (s == end || end - s > 10)
		return false;
	for (; s < end; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/*
 * "/dev/fd/N", "/proc/P/fd/N" or "/proc/P/task/T/fd/N" with P a number, "self" or
 * "thread-self": the spellings of an fd's magic link. Only the text is looked at; *@pid is
 * this process or 0 for another, *@fd the number.
 */
static bool procfd_path_parse(const char *path, pid_t *pid, int *fd)
{
	const char *p, *slash;

	if (!path)
		return false;
	*pid = getpid();
	if (!strncmp(path, "/dev/fd/", 8)) {
		p = path + 8;
		goto number;
	}
	if (strncmp(path, "/proc/", 6))
		return false;
	p = path + 6;
	slash = strchr(p, '/');
	if (!slash)
		return false;
	if (procfd_digits(p, slash)) {
		if (strtol(p, NULL, 10) != *pid)
			*pid = 0;
	} else if (strncmp(p, "self/", 5) && strncmp(p, "thread-self/", 12)) {
		return false;
	}
	p = slash + 1;
	if (!strncmp(p, "task/", 5)) {
		p += 5;
		slash = strchr(p, '/');
		if (!slash || !procfd_digits(p, slash))
			return false;
		p = slash + 1;
	}
	if (strncmp(p, "fd/", 3))
		return false;
	p += 3;
number:
	if (!procfd_digits(p, p + strlen(p)))
		return false;
	*fd = (int)strtol(p, NULL, 10);
	return true;
}

static bool procfd_path_is_link(const char *path)
{
	pid_t pid;
	int fd;

	return procfd_path_parse(path, &pid, &fd);
}

/* @path relative to @dirfd, when @dirfd is a /proc/.../fd directory: the whole path in @out. */
static bool procfd_path_at(int dirfd, const char *path, char *out, size_t len)
{
	char proc[40];
	ssize_t n;

	if (path[0] == '/')
		return snprintf(out, len, "%s", path) < (int)len;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	n = sys_readlinkat(AT_FDCWD, proc, out, len - 1);
	if (n < 9)
		return false;
	out[n] = '\0';
	if (strncmp(out, "/proc/", 6) || strcmp(out + n - 3, "/fd"))
		return false;
	return snprintf(out + n, len - (size_t)n, "/%s", path) < (int)(len - (size_t)n);
}

UIOMMU_EXPORT bool uiommu_fd_link_claims(int dirfd, const char *path)
{
	/* No system call for the common case: every readlink() of the program asks. */
	if (!path)
		return false;
	if (path[0] == '/')
		return path[1] == 'p' || path[1] == 'd' ? procfd_path_is_link(path) : false;
	return dirfd != AT_FDCWD && procfd_digits(path, path + strlen(path));
}

UIOMMU_EXPORT ssize_t uiommu_fd_link_readlink(int dirfd, const char *path, char *buf, size_t len)
{
	char whole[PATH_MAX], link[PATH_MAX];
	struct iommufd_node node;
	bool is_link;
	int fd, saved;
	ssize_t n;
	size_t out;
	pid_t pid;

	is_link = procfd_path_at(dirfd, path, whole, sizeof(whole)) &&
		  procfd_path_parse(whole, &pid, &fd);
	/* One of our own fds in a spelling the node layer does not take: the table knows it. */
	if (is_link && pid && uiommu_is_fd(fd))
		return uiommu_fd_path(fd, buf, len);
	n = sys_readlinkat(dirfd, path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = '\0';
	saved = errno; /* a successful readlink leaves it be, whatever the lookup met */
	if (is_link && !iommufd_procfd_lookup_link(link, &node))
		snprintf(link, sizeof(link), "%s", node.path);
	errno = saved;
	/* readlink(2): no NUL, truncated to @len. */
	out = strlen(link);
	if (out > len)
		out = len;
	memcpy(buf, link, out);
	return (ssize_t)out;
}

int iommufd_procfd_link_stat(int dirfd, const char *path, unsigned long ino, struct stat *st)
{
	char whole[PATH_MAX];
	struct iommufd_node node;
	pid_t pid;
	int fd;

	if (!procfd_path_at(dirfd, path, whole, sizeof(whole)) ||
	    !procfd_path_parse(whole, &pid, &fd))
		return -ENOENT;
	/* One of our own fds in a spelling the node layer does not take: the table knows it. */
	if (pid && uiommu_is_fd(fd))
		return uiommu_fstat(fd, st) ? -ENOENT : 0;
	if (iommufd_procfd_lookup(ino, &node))
		return -ENOENT;
	iommufd_node_stat(&node, st);
	return 0;
}

UIOMMU_EXPORT int uiommu_fd_link_stat(int dirfd, const char *path, struct stat *st, int flags)
{
	struct stat node;
	int saved = errno;

	/* The host's answer first: its check that we may look at that process's fds at all. */
	if (sys_fstatat(dirfd, path, st, flags))
		return -1;
	if (!(flags & AT_SYMLINK_NOFOLLOW) && S_ISSOCK(st->st_mode) &&
	    !iommufd_procfd_link_stat(dirfd, path, (unsigned long)st->st_ino, &node))
		*st = node;
	errno = saved; /* a successful stat leaves it be, whatever the lookup met */
	return 0;
}

int iommufd_procfd_node_of_path(const char *path, struct iommufd_node *node)
{
	char link[PATH_MAX];
	ssize_t n;

	if (!procfd_path_is_link(path))
		return -ENOENT;
	n = sys_readlinkat(AT_FDCWD, path, link, sizeof(link) - 1);
	if (n < 0)
		return -ENOENT;
	link[n] = '\0';
	return iommufd_procfd_lookup_link(link, node);
}

UIOMMU_EXPORT int uiommu_fd_registry(char *buf, size_t len)
{
	char dir[PATH_MAX];
	int rc = procfd_dir_get(dir);

	if (rc) {
		errno = -rc;
		return -1;
	}
	if (snprintf(buf, len, "%s", dir) >= (int)len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}
