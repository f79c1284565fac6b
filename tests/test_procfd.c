// SPDX-License-Identifier: MIT
/*
 * What /proc/<pid>/fd/N shows of a uiommu fd, under uiommu-run (docs/processes.md, "What an
 * fd looks like in /proc"): readlink() gives the kernel's name for every kind of file
 * (/dev/iommu, fault queue, vEVENTQ, access, dma-buf, the VFIO container, a cdev, a group and
 * its device fd), in
 * this process through every spelling and in another process through the registry; another
 * process's open() of the link opens a node anew (a new context, none of the holder's objects)
 * and refuses an anonymous file (ENXIO); the record goes with the file; records that lie (a
 * dead process's, a reused pid's, a name that is no node) open nothing; a process without the
 * preload layer sees the host's socket:[N]; another process's stat() following the link
 * (stat, fstatat, statx, in every spelling) answers what fstat() of the fd answers here, while
 * the record is live, and the host's socket otherwise; realpath(), access() and statx() of
 * the link here and from another process answer from the node as the kernel's (a node's path
 * or ENOENT; the mode's bits, not the socket's 0777; devtmpfs's birth time, mount ID and
 * attributes mask); fail-nth sweeps of the calls that write a record and of access() by a
 * member of many groups.
 *
 * The other processes are this program again (fork + exec of /proc/self/exe with "--child"),
 * driven over a socketpair one request at a time.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdlib.h>
#include <grp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/securebits.h>

#include "harness.h"
#define TEST_IOCTL ioctl /* through libc: the preload path */
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

/* A call's result: success, or a failure that is the injected ENOMEM. */
#define ASSERT_ERRNO_OR_OK(rc) ASSERT_TRUE((rc) >= 0 || errno == ENOMEM)

struct req {
	/*
	 * 'L' readlink, 'O' open, 'N' open /dev/iommu and keep it, 'G' take the fd
	 * (pidfd_getfd(), adopted) and readlink the copy, 'S' stat, 'R' realpath, 'A' access,
	 * 'X' statx, 'Q' quit
	 */
	char op;
	int pid, fd;
	uint32_t id;   /* 'O': an ID of the holder's to destroy through the new fd */
};

struct rep {
	int rc, err;
	uint32_t ioas;     /* 'O': the first IOAS the new fd allocated */
	int destroy_err;   /* 'O': errno of IOMMU_DESTROY of req.id there */
	char text[128];
	/* 'S': stat() of /proc/<pid>/fd/N; text "mismatch" when another spelling differs */
	unsigned int mode;
	unsigned long long rdev, dev, ino;
	int acc[4];      /* 'A': errno of access() for F_OK, R_OK, W_OK, X_OK (0: granted) */
	struct statx x;  /* 'X': statx() asked for everything */
};

/* Every statx() field a node has, and the two kinds of mount ID. */
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000U
#endif
#define STATX_EVERYTHING (STATX_BASIC_STATS | STATX_BTIME | STATX_MNT_ID)

/* stx_mnt_id: after stx_dev_minor in the kernel's struct (glibc 2.36 calls it padding). */
static uint64_t mnt_id_of(const struct statx *x)
{
	uint64_t id;

	memcpy(&id, (const char *)x + offsetof(struct statx, stx_dev_minor) + sizeof(uint32_t),
	       sizeof(id));
	return id;
}

static const int access_modes[4] = { F_OK, R_OK, W_OK, X_OK };

/*
 * access() of @path for each mode, as 0 or the errno, in @out; every other spelling of the
 * call (euidaccess(), faccessat() with and without AT_EACCESS, and faccessat() of "N" in the
 * link's fd directory when @dir is one) must agree: false when one does not.
 */
static bool access_errnos(const char *path, int dir, const char *num, int out[4])
{
	bool same = true;

	for (int i = 0; i < 4; i++) {
		int m = access_modes[i], e[5];

		e[0] = access(path, m) ? errno : 0;
		e[1] = euidaccess(path, m) ? errno : 0;
		e[2] = faccessat(AT_FDCWD, path, m, 0) ? errno : 0;
		e[3] = faccessat(AT_FDCWD, path, m, AT_EACCESS) ? errno : 0;
		e[4] = dir < 0 ? e[0] : faccessat(dir, num, m, 0) ? errno : 0;
		out[i] = e[0];
		for (int j = 1; j < 5; j++)
			same = same && e[j] == e[0];
	}
	return same;
}

/* readlink() of @path as a string ("" on failure, errno kept). */
static const char *link_of(const char *path, char *buf, size_t len)
{
	ssize_t n = readlink(path, buf, len - 1);

	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

/* The host's answer, past the preload layer: the raw system call. */
static const char *raw_link_of(const char *path, char *buf, size_t len)
{
	long n = syscall(SYS_readlinkat, AT_FDCWD, path, buf, len - 1);

	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

/* The child's answer to 'L': the same name through every spelling, or "mismatch". */
static void child_readlink(const struct req *q, struct rep *r)
{
	char path[96], a[128], b[128], c[128], d[16];
	int dir;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", q->pid, q->fd);
	link_of(path, a, sizeof(a));
	r->err = errno;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/fd/%d", q->pid, q->pid, q->fd);
	link_of(path, b, sizeof(b));
	snprintf(path, sizeof(path), "/proc/%d/fd", q->pid);
	dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(d, sizeof(d), "%d", q->fd);
	c[0] = '\0';
	if (dir >= 0) {
		ssize_t n = readlinkat(dir, d, c, sizeof(c) - 1);

		c[n < 0 ? 0 : n] = '\0';
		close(dir);
	}
	snprintf(r->text, sizeof(r->text), "%s", strcmp(a, b) || strcmp(a, c) ? "mismatch" : a);
	r->rc = a[0] ? 0 : -1;
}

static void child_open(const struct req *q, struct rep *r)
{
	char path[64], self[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", q->pid, q->fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	r->rc = fd < 0 ? -1 : 0;
	r->err = fd < 0 ? errno : 0;
	if (fd < 0)
		return;
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	link_of(self, r->text, sizeof(r->text));
	if (!strcmp(r->text, "/dev/iommu")) {
		int ioas = ioas_alloc(fd);

		r->ioas = ioas < 0 ? 0 : (uint32_t)ioas;
		r->destroy_err = destroy(fd, q->id) ? errno : 0;
	}
	close(fd);
}

static bool stat_same(const struct stat *a, const struct stat *b)
{
	return a->st_mode == b->st_mode && a->st_rdev == b->st_rdev && a->st_dev == b->st_dev &&
	       a->st_ino == b->st_ino;
}

static bool statx_same(const struct stat *a, const struct statx *x)
{
	return x->stx_mode == a->st_mode && x->stx_ino == a->st_ino &&
	       makedev(x->stx_rdev_major, x->stx_rdev_minor) == a->st_rdev &&
	       makedev(x->stx_dev_major, x->stx_dev_minor) == a->st_dev;
}

/*
 * The child's answer to 'S': stat() of /proc/<pid>/fd/N, checked against
 * /proc/<pid>/task/<pid>/fd/N, fstatat() and statx() of "N" in the fd directory (its lstat()
 * must be the link itself).
 */
static void child_stat(const struct req *q, struct rep *r)
{
	char path[96], num[16];
	struct stat a, b, c, l;
	struct statx x;
	bool same;
	int dir;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", q->pid, q->fd);
	r->rc = stat(path, &a);
	r->err = errno;
	if (r->rc)
		return;
	r->mode = a.st_mode;
	r->rdev = a.st_rdev;
	r->dev = a.st_dev;
	r->ino = a.st_ino;
	same = !lstat(path, &l) && S_ISLNK(l.st_mode);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/fd/%d", q->pid, q->pid, q->fd);
	same = same && !stat(path, &b) && stat_same(&a, &b);
	snprintf(path, sizeof(path), "/proc/%d/fd", q->pid);
	snprintf(num, sizeof(num), "%d", q->fd);
	dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	same = same && dir >= 0 && !fstatat(dir, num, &c, 0) && stat_same(&a, &c);
	same = same && !statx(dir, num, 0, STATX_BASIC_STATS, &x) && statx_same(&a, &x);
	if (dir >= 0)
		close(dir);
	snprintf(r->text, sizeof(r->text), "%s", same ? "" : "mismatch");
}

/* The child's answer to 'R': realpath() of /proc/<pid>/fd/N in its three forms, or "mismatch". */
static void child_realpath(const struct req *q, struct rep *r)
{
	char path[96], buf[PATH_MAX], *a, *b, *c;
	int ea, eb, ec;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", q->pid, q->fd);
	a = realpath(path, NULL);
	ea = errno;
	b = canonicalize_file_name(path);
	eb = errno;
	c = realpath(path, buf);
	ec = errno;
	r->rc = a ? 0 : -1;
	r->err = a ? 0 : ea;
	if (!a != !b || !a != !c || (a && (strcmp(a, b) || strcmp(a, c))) ||
	    (!a && (ea != eb || ea != ec)))
		snprintf(r->text, sizeof(r->text), "mismatch");
	else
		snprintf(r->text, sizeof(r->text), "%s", a ? a : "");
	free(a);
	free(b);
}

/* The child's answer to 'A': access() of /proc/<pid>/fd/N, "mismatch" if a spelling differs. */
static void child_access(const struct req *q, struct rep *r)
{
	char path[96], num[16];
	bool same;
	int dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", q->pid);
	dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(num, sizeof(num), "%d", q->fd);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", q->pid, q->fd);
	same = access_errnos(path, dir, num, r->acc);
	if (dir >= 0)
		close(dir);
	snprintf(r->text, sizeof(r->text), "%s", same ? "" : "mismatch");
}

/*
 * The child's answer to 'X': statx() of /proc/<pid>/fd/N asked for everything; "mismatch"
 * when its times are not those its stat() shows (a node's times are each process's first look).
 */
static void child_statx(const struct req *q, struct rep *r)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", q->pid, q->fd);
	r->rc = statx(AT_FDCWD, path, 0, STATX_EVERYTHING, &r->x);
	r->err = errno;
	if (stat(path, &st) || st.st_atim.tv_sec != r->x.stx_atime.tv_sec ||
	    st.st_atim.tv_nsec != (long)r->x.stx_atime.tv_nsec ||
	    st.st_mtim.tv_nsec != (long)r->x.stx_mtime.tv_nsec ||
	    st.st_ctim.tv_sec != r->x.stx_ctime.tv_sec ||
	    st.st_ctim.tv_nsec != (long)r->x.stx_ctime.tv_nsec)
		snprintf(r->text, sizeof(r->text), "mismatch");
}

/* The child's answer to 'G': the name of its own copy of the holder's fd. */
static void child_getfd(const struct req *q, struct rep *r)
{
	int pidfd = (int)syscall(SYS_pidfd_open, (long)q->pid, 0L), fd = -1;
	char self[64];

	if (pidfd >= 0)
		fd = (int)syscall(SYS_pidfd_getfd, (long)pidfd, (long)q->fd, 0L);
	r->rc = fd >= 0 && uiommu_is_fd(fd) ? 0 : -1;
	r->err = errno;
	if (fd >= 0) {
		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		link_of(self, r->text, sizeof(r->text));
		close(fd);
	}
	if (pidfd >= 0)
		close(pidfd);
}

static int child_main(int sock)
{
	struct req q;
	struct rep r;

	while (read(sock, &q, sizeof(q)) == (ssize_t)sizeof(q) && q.op != 'Q') {
		memset(&r, 0, sizeof(r));
		if (q.op == 'L')
			child_readlink(&q, &r);
		else if (q.op == 'O')
			child_open(&q, &r);
		else if (q.op == 'G')
			child_getfd(&q, &r);
		else if (q.op == 'S')
			child_stat(&q, &r);
		else if (q.op == 'R')
			child_realpath(&q, &r);
		else if (q.op == 'A')
			child_access(&q, &r);
		else if (q.op == 'X')
			child_statx(&q, &r);
		else if (q.op == 'N')
			r.rc = open("/dev/iommu", O_RDWR | O_CLOEXEC); /* kept until the end */
		if (write(sock, &r, sizeof(r)) != (ssize_t)sizeof(r))
			return 1;
	}
	return 0;
}

struct reader {
	pid_t pid;
	int sock;
};

/* Starts the reader: this program again, with the preload layer unless @bare. */
static int reader_start(struct reader *rd, bool bare)
{
	int sv[2];
	char a[16];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	rd->pid = fork();
	if (!rd->pid) {
		snprintf(a, sizeof(a), "%d", sv[1]);
		fcntl(sv[1], F_SETFD, 0);
		if (bare)
			unsetenv("LD_PRELOAD");
		execl("/proc/self/exe", "test_procfd", "--child", a, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	rd->sock = sv[0];
	return rd->pid > 0 ? 0 : -1;
}

static int reader_stop(struct reader *rd)
{
	struct req q = { .op = 'Q' };

	if (write(rd->sock, &q, sizeof(q)) != (ssize_t)sizeof(q))
		return -1;
	close(rd->sock);
	return test_child_wait(rd->pid);
}

static struct rep reader_ask(struct reader *rd, char op, int fd, uint32_t id)
{
	struct req q = { .op = op, .pid = (int)getpid(), .fd = fd, .id = id };
	struct rep r = { .rc = -2 };

	if (write(rd->sock, &q, sizeof(q)) != (ssize_t)sizeof(q) ||
	    read(rd->sock, &r, sizeof(r)) != (ssize_t)sizeof(r))
		r.rc = -2;
	return r;
}

/* The name every spelling of this process's fd @fd gives here ("mismatch" if they differ). */
static const char *own_name(int fd)
{
	static char a[128];
	char path[64], b[128], c[128], d[128], e[128], num[16];
	int dir;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	link_of(path, a, sizeof(a));
	snprintf(path, sizeof(path), "/proc/thread-self/fd/%d", fd);
	link_of(path, b, sizeof(b));
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), fd);
	link_of(path, c, sizeof(c));
	snprintf(path, sizeof(path), "/dev/fd/%d", fd);
	link_of(path, d, sizeof(d));
	dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(num, sizeof(num), "%d", fd);
	e[0] = '\0';
	if (dir >= 0) {
		ssize_t n = readlinkat(dir, num, e, sizeof(e) - 1);

		e[n < 0 ? 0 : n] = '\0';
		close(dir);
	}
	if (strcmp(a, b) || strcmp(a, c) || strcmp(a, d) || strcmp(a, e))
		return "mismatch";
	return a;
}

/* Where the registry keeps the record of @fd's socket: 0, or -1 (not a socket, no registry). */
static int record_path(int fd, char *path, size_t len)
{
	char dir[256], proc[64], link[64];
	unsigned long ino;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	raw_link_of(proc, link, sizeof(link));
	if (sscanf(link, "socket:[%lu]", &ino) != 1 || uiommu_fd_registry(dir, sizeof(dir)))
		return -1;
	snprintf(path, len, "%s/%lu", dir, ino);
	return 0;
}

/* The registry's record of @fd's file exists? */
static bool record_exists(int fd)
{
	char path[320];

	return !record_path(fd, path, sizeof(path)) && !access(path, F_OK);
}

/* Writes a record by hand for @fd's socket: what a liar or a dead process would leave. */
static int record_forge(int fd, int pid, unsigned long long start, const char *mode,
			const char *name)
{
	char path[320], tmp[340], *slash;
	int lock;
	FILE *f;

	/*
	 * Written as the registry writes its own (a whole record renamed into place, under its
	 * lock), so a sweep by any other process, which removes only the stale record it read,
	 * leaves it.
	 */
	if (record_path(fd, path, sizeof(path)))
		return -1;
	/* A writer's temporary name (".INO.PID"), which no sweep takes while we live. */
	slash = strrchr(path, '/');
	snprintf(tmp, sizeof(tmp), "%.*s.%s.%d", (int)(slash + 1 - path), path, slash + 1,
		 (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f)
		return -1;
	fprintf(f, "uiommu-fd 1 %d %llu %s 10 257 %s\n", pid, start, mode, name);
	if (fclose(f)) {
		unlink(tmp);
		return -1;
	}
	/* Under the registry's lock, shared, as its writers rename (procfd.c). */
	*slash = '\0';
	lock = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	*slash = '/';
	if (lock < 0 || flock(lock, LOCK_SH) || rename(tmp, path)) {
		if (lock >= 0)
			close(lock);
		unlink(tmp);
		return -1;
	}
	close(lock);
	return 0;
}

static void record_drop(int fd)
{
	char path[320];

	if (!record_path(fd, path, sizeof(path)))
		unlink(path);
}

static unsigned long long start_time(pid_t pid)
{
	char path[40], buf[512], *p;
	unsigned long long start = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
			      "%*d %*d %*d %llu", &start);
	fclose(f);
	return start;
}

/* The first entry of @dir whose name starts with @first (a digit: any digit), as a path. */
static const char *first_entry(const char *dir, const char *first)
{
	static char path[300];
	struct dirent *de;
	DIR *d = opendir(dir);

	path[0] = '\0';
	while (d && (de = readdir(d)) && !path[0]) {
		bool digit = first[0] >= '0' && first[0] <= '9';

		if (digit ? de->d_name[0] >= '0' && de->d_name[0] <= '9' :
			    !strncmp(de->d_name, first, strlen(first)))
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
	}
	if (d)
		closedir(d);
	return path;
}

/* The last path component of the link @path ("" if none). */
static const char *link_base(const char *path, char *buf, size_t len)
{
	const char *slash;

	link_of(path, buf, len);
	slash = strrchr(buf, '/');
	return slash ? slash + 1 : buf;
}

/*
 * A VFIO group of one device, bound to vfio-pci, other than the device of cdev @not: its id
 * and the device's BDF in @bdf; -1 if none.
 */
static int single_group(const char *not, char *bdf, size_t len)
{
	char path[600], buf[256], group[256];

	for (int m = 0; m < 32; m++) {
		struct dirent *de;
		int n = 0;
		DIR *d;

		snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", m);
		if (!strcmp(path, not) || access(path, F_OK))
			continue;
		snprintf(path, sizeof(path), "/sys/class/vfio-dev/vfio%d/device", m);
		snprintf(bdf, len, "%s", link_base(path, buf, sizeof(buf)));
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
		snprintf(group, sizeof(group), "%s", link_base(path, buf, sizeof(buf)));
		snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%s/devices", group);
		d = opendir(path);
		while (d && (de = readdir(d)))
			n += de->d_name[0] != '.';
		if (d)
			closedir(d);
		if (n == 1)
			return atoi(group);
	}
	return -1;
}

struct kinds {
	int fds[10];
	const char *names[10];
	unsigned int n;
};

static void kind_add(struct kinds *k, int fd, const char *name)
{
	k->fds[k->n] = fd;
	k->names[k->n++] = name;
}

/* One fd of every kind, with the kernel's name for it. */
static void kinds_open(struct __h_test *_metadata, struct kinds *k, int iommufd)
{
	struct iommu_viommu_selftest data = { .in_data = 1 };
	struct iommu_veventq_alloc eq = { .size = sizeof(eq), .type = IOMMU_VEVENTQ_TYPE_SELFTEST,
					  .veventq_depth = 2 };
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	struct iommu_test_cmd acc = { .size = sizeof(acc), .op = IOMMU_TEST_OP_CREATE_ACCESS };
	struct iommu_test_cmd dmabuf = { .size = sizeof(dmabuf), .op = IOMMU_TEST_OP_DMABUF_GET,
					 .dmabuf_get = { .length = 4096, .open_flags = O_RDWR } };
	static char cdev[300], group[300];
	char bdf[256];
	uint32_t viommu;
	int fd, gid, c;

	memset(k, 0, sizeof(*k));
	kind_add(k, iommufd, "/dev/iommu");
	ASSERT_EQ(0, ioctl(iommufd, IOMMU_FAULT_QUEUE_ALLOC, &fq));
	kind_add(k, (int)fq.out_fault_fd, "anon_inode:[iommufd-pgfault]");
	ASSERT_EQ(0, viommu_with_region(iommufd, &data, &viommu));
	eq.viommu_id = viommu;
	ASSERT_EQ(0, ioctl(iommufd, IOMMU_VEVENTQ_ALLOC, &eq));
	kind_add(k, (int)eq.out_veventq_fd, "anon_inode:[iommufd-viommu-event]");
	acc.id = (uint32_t)ioas_alloc(iommufd);
	ASSERT_EQ(0, ioctl(iommufd, IOMMU_TEST_CMD, &acc));
	kind_add(k, (int)acc.create_access.out_access_fd, "anon_inode:[iommufd_test_staccess]");
	fd = ioctl(iommufd, IOMMU_TEST_CMD, &dmabuf);
	ASSERT_GE(fd, 0);
	kind_add(k, fd, "/dmabuf:");
	c = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	ASSERT_GE(c, 0);
	kind_add(k, c, "/dev/vfio/vfio");
	snprintf(cdev, sizeof(cdev), "%s", first_entry("/dev/vfio/devices", "vfio"));
	ASSERT_NE(0, cdev[0]);
	fd = open(cdev, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	kind_add(k, fd, cdev);
	/* A group of another device, in the container, and its device fd. */
	gid = single_group(cdev, bdf, sizeof(bdf));
	ASSERT_GE(gid, 0);
	snprintf(group, sizeof(group), "/dev/vfio/%d", gid);
	fd = open(group, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	kind_add(k, fd, group);
	ASSERT_EQ(0, ioctl(fd, VFIO_GROUP_SET_CONTAINER, &c));
	ASSERT_EQ(0, ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	fd = ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, bdf);
	ASSERT_GE(fd, 0);
	kind_add(k, fd, "anon_inode:[vfio-device]");
}

/*
 * A new /dev/iommu fd (returned), kinds_open() of it, and two readers of them: one under the
 * preload layer, one without (@bare).
 */
static int kinds_open_readers(struct __h_test *_metadata, struct kinds *k, struct reader *rd,
			      struct reader *bare)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	kinds_open(_metadata, k, fd);
	ASSERT_EQ(0, reader_start(rd, false));
	ASSERT_EQ(0, reader_start(bare, true));
	return fd;
}

static void kinds_close(struct kinds *k)
{
	/* The sub-fds first, the context's fd last. */
	for (unsigned int i = k->n; i-- > 0;)
		close(k->fds[i]);
}

/*
 * readlink() of every spelling of this process's fds: the kernel's names ("/dev/iommu", the
 * VFIO nodes, "anon_inode:[...]" for a fault queue, a vEVENTQ, an access, "/dmabuf:" for a
 * dma-buf), where the host says socket:[N] for all of them.
 */
TEST(names_of_every_kind_in_this_process)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	char path[64], raw[64];
	struct kinds k;
	struct stat st;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	kinds_open(_metadata, &k, fd);
	for (unsigned int i = 0; i < k.n; i++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", k.fds[i]);
		ASSERT_EQ(0, strncmp(raw_link_of(path, raw, sizeof(raw)), "socket:[", 8));
		ASSERT_STREQ(k.names[i], own_name(k.fds[i]));
		/* fstat() agrees: a node's character device, or an anonymous inode's 0600. */
		ASSERT_EQ(0, fstat(k.fds[i], &st));
		if (k.names[i][0] == '/' && strcmp(k.names[i], "/dmabuf:"))
			ASSERT_TRUE(S_ISCHR(st.st_mode));
		else
			ASSERT_EQ(0600u, st.st_mode);
	}
	/* readlink(2)'s truncation: no NUL, at most the buffer. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ASSERT_EQ(4, readlink(path, raw, 4));
	ASSERT_EQ(0, memcmp(raw, "/dev", 4));
	kinds_close(&k);
}

/*
 * Another process's readlink() of /proc/<pid>/fd/N (also /proc/<pid>/task/<tid>/fd/N and
 * readlinkat() in the fd directory) gives the same names, and so does its own copy of each
 * fd (taken with pidfd_getfd(), adopted: an event fd by CLAIM, the others by INFO); one
 * without the preload layer sees what the host shows, socket:[N].
 */
TEST(names_of_every_kind_from_another_process)
{
	struct reader rd, bare;
	char path[64], raw[64];
	struct kinds k;
	struct rep r;

	NEEDS_IOMMUFD_TEST();
	kinds_open_readers(_metadata, &k, &rd, &bare);
	for (unsigned int i = 0; i < k.n; i++) {
		r = reader_ask(&rd, 'L', k.fds[i], 0);
		ASSERT_EQ(0, r.rc);
		ASSERT_STREQ(k.names[i], r.text);
		r = reader_ask(&rd, 'G', k.fds[i], 0);
		ASSERT_EQ(0, r.rc);
		ASSERT_STREQ(k.names[i], r.text);
		r = reader_ask(&bare, 'L', k.fds[i], 0);
		ASSERT_EQ(0, r.rc);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", k.fds[i]);
		ASSERT_STREQ(raw_link_of(path, raw, sizeof(raw)), r.text);
	}
	/* Not a uiommu fd: the host's name, whoever asks. */
	r = reader_ask(&rd, 'L', rd.sock, 0);
	ASSERT_EQ(0, strncmp(r.text, "socket:[", 8));
	ASSERT_EQ(0, reader_stop(&bare));
	ASSERT_EQ(0, reader_stop(&rd));
	kinds_close(&k);
}

/*
 * Another process's stat() of /proc/<pid>/fd/N, following the link, in every spelling
 * (stat, /proc/<pid>/task/<tid>/fd/N, fstatat and statx in the fd directory), answers what
 * fstat() of the fd answers here: a node's character device (mode, numbers, inode), an
 * anonymous file's 0600 on the anon inode; lstat() is the link itself. One without the
 * preload layer sees the host's socket, and so does anyone for a socket that is no uiommu file.
 */
TEST(stat_from_another_process_is_the_fstat_here)
{
	struct reader rd, bare;
	struct stat st;
	struct kinds k;
	struct rep r;

	NEEDS_IOMMUFD_TEST();
	kinds_open_readers(_metadata, &k, &rd, &bare);
	for (unsigned int i = 0; i < k.n; i++) {
		char path[96];
		struct stat own;

		ASSERT_EQ(0, fstat(k.fds[i], &st));
		/* Here too, in a spelling the node layer does not take. */
		snprintf(path, sizeof(path), "/proc/%d/task/%d/fd/%d", (int)getpid(),
			 (int)syscall(SYS_gettid), k.fds[i]);
		ASSERT_EQ(0, stat(path, &own));
		ASSERT_TRUE(stat_same(&st, &own));
		r = reader_ask(&rd, 'S', k.fds[i], 0);
		ASSERT_EQ(0, r.rc);
		ASSERT_STREQ("", r.text);
		ASSERT_EQ(st.st_mode, r.mode);
		ASSERT_EQ((unsigned long long)st.st_rdev, r.rdev);
		ASSERT_EQ((unsigned long long)st.st_dev, r.dev);
		ASSERT_EQ((unsigned long long)st.st_ino, r.ino);
		r = reader_ask(&bare, 'S', k.fds[i], 0);
		ASSERT_EQ(0, r.rc);
		ASSERT_TRUE(S_ISSOCK(r.mode));
	}
	r = reader_ask(&rd, 'S', rd.sock, 0);
	ASSERT_EQ(0, r.rc);
	ASSERT_TRUE(S_ISSOCK(r.mode));
	/* The host's errno where the host refuses: no such fd. */
	r = reader_ask(&rd, 'S', 1000000, 0);
	ASSERT_EQ(-1, r.rc);
	ASSERT_EQ(ENOENT, r.err);
	ASSERT_EQ(0, reader_stop(&bare));
	ASSERT_EQ(0, reader_stop(&rd));
	kinds_close(&k);
}

/* A node's name (a character device), as opposed to an anonymous file's or a dma-buf's. */
static bool is_node_name(const char *name)
{
	return name[0] == '/' && strcmp(name, "/dmabuf:");
}

char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);

/*
 * realpath() of an fd's link (canonicalize_file_name(), realpath() into a buffer and its
 * fortified __realpath_chk() too), here in every spelling and in another process: the node's
 * path for a node, as glibc resolves the kernel's link to it; ENOENT for an anonymous file or a
 * dma-buf, whose names resolve to nothing (as for a socket, a pipe); the host's answer for an
 * fd that is no uiommu file. Without the preload layer every uiommu fd is the host's socket.
 */
TEST(realpath_of_every_kind_here_and_from_another_process)
{
	char path[96], buf[PATH_MAX], *a, *b, *c;
	struct reader rd, bare;
	struct kinds k;
	struct rep r;
	int null;

	NEEDS_IOMMUFD_TEST();
	kinds_open_readers(_metadata, &k, &rd, &bare);
	for (unsigned int i = 0; i < k.n; i++) {
		bool node = is_node_name(k.names[i]);

		for (int spell = 0; spell < 3; spell++) {
			if (spell == 0)
				snprintf(path, sizeof(path), "/proc/self/fd/%d", k.fds[i]);
			else if (spell == 1)
				snprintf(path, sizeof(path), "/proc/%d/task/%d/fd/%d",
					 (int)getpid(), (int)syscall(SYS_gettid), k.fds[i]);
			else
				snprintf(path, sizeof(path), "/proc/thread-self/fd/%d", k.fds[i]);
			errno = 0;
			a = realpath(path, NULL);
			ASSERT_EQ(node ? 0 : ENOENT, errno);
			b = canonicalize_file_name(path);
			c = __realpath_chk(path, buf, sizeof(buf));
			if (node) {
				ASSERT_STREQ(k.names[i], a);
				ASSERT_STREQ(k.names[i], b);
				ASSERT_STREQ(k.names[i], c);
			} else {
				ASSERT_TRUE(!a && !b && !c);
				ASSERT_EQ(ENOENT, errno);
			}
			free(a);
			free(b);
		}
		r = reader_ask(&rd, 'R', k.fds[i], 0);
		ASSERT_NE(0, strcmp("mismatch", r.text));
		ASSERT_EQ(node ? 0 : -1, r.rc);
		if (node)
			ASSERT_STREQ(k.names[i], r.text);
		else
			ASSERT_EQ(ENOENT, r.err);
		r = reader_ask(&bare, 'R', k.fds[i], 0);
		ASSERT_EQ(-1, r.rc);
		ASSERT_EQ(ENOENT, r.err);
	}
	/* No uiommu file: the host's answer, a file's path or ENOENT for a socket. */
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_GE(null, 0);
	r = reader_ask(&rd, 'R', null, 0);
	ASSERT_EQ(0, r.rc);
	ASSERT_STREQ("/dev/null", r.text);
	r = reader_ask(&rd, 'R', rd.sock, 0);
	ASSERT_EQ(-1, r.rc);
	ASSERT_EQ(ENOENT, r.err);
	r = reader_ask(&rd, 'R', 1000000, 0);
	ASSERT_EQ(-1, r.rc);
	ASSERT_EQ(ENOENT, r.err);
	ASSERT_EQ(0, close(null));
	ASSERT_EQ(0, reader_stop(&bare));
	ASSERT_EQ(0, reader_stop(&rd));
	kinds_close(&k);
}

/*
 * What access() of an fd's link answers for a file named @name, for a caller of real uid
 * @uid: a node is the caller's (0600, 0660 or 0666, no x bit); an anonymous file is the
 * kernel's one anon inode, root's 0600; a dma-buf's own inode its maker's 0600. Without an x
 * bit even root may not execute.
 */
static void access_expected(const char *name, uid_t uid, int out[4])
{
	bool anon = !strncmp(name, "anon_inode:", 11);

	out[0] = 0;
	out[1] = out[2] = anon && uid ? EACCES : 0;
	out[3] = EACCES;
}

/*
 * access() of an fd's link for F_OK, R_OK, W_OK and X_OK (access, euidaccess, faccessat with
 * and without AT_EACCESS and relative to the fd directory, all alike), here and from another
 * process: the node's mode decides where the host answers for the file's socket (0777: even
 * X_OK granted, which the reader without the preload layer shows); an anonymous file is
 * root's 0600, which a user who is not root may not read or write (a child that became
 * nobody shows it, where the test runs as root). AT_SYMLINK_NOFOLLOW asks about the link
 * itself: the host's answer. A mode outside F_OK..X_OK is EINVAL.
 */
TEST(access_of_every_kind_here_and_from_another_process)
{
	char path[96], num[16];
	int acc[4], want[4];
	struct reader rd, bare;
	struct kinds k;
	struct rep r;
	int dir;

	NEEDS_IOMMUFD_TEST();
	kinds_open_readers(_metadata, &k, &rd, &bare);
	dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_GE(dir, 0);
	for (unsigned int i = 0; i < k.n; i++) {
		access_expected(k.names[i], getuid(), want);
		snprintf(num, sizeof(num), "%d", k.fds[i]);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", k.fds[i]);
		ASSERT_TRUE(access_errnos(path, dir, num, acc));
		for (int m = 0; m < 4; m++)
			ASSERT_EQ(want[m], acc[m]);
		ASSERT_EQ(-1, access(path, 8));
		ASSERT_EQ(EINVAL, errno);
		for (int m = 0; m < 4; m++)
			ASSERT_EQ(syscall(SYS_faccessat2, AT_FDCWD, path, access_modes[m],
					  AT_SYMLINK_NOFOLLOW),
				  faccessat(AT_FDCWD, path, access_modes[m], AT_SYMLINK_NOFOLLOW));
		snprintf(path, sizeof(path), "/proc/%d/task/%d/fd/%d", (int)getpid(),
			 (int)syscall(SYS_gettid), k.fds[i]);
		ASSERT_TRUE(access_errnos(path, -1, NULL, acc));
		for (int m = 0; m < 4; m++)
			ASSERT_EQ(want[m], acc[m]);
		r = reader_ask(&rd, 'A', k.fds[i], 0);
		ASSERT_STREQ("", r.text);
		for (int m = 0; m < 4; m++)
			ASSERT_EQ(want[m], r.acc[m]);
		r = reader_ask(&bare, 'A', k.fds[i], 0);
		for (int m = 0; m < 4; m++)
			ASSERT_EQ(0, r.acc[m]);
	}
	/* Not a uiommu file: the host's answer (a socket's 0777). */
	r = reader_ask(&rd, 'A', rd.sock, 0);
	for (int m = 0; m < 4; m++)
		ASSERT_EQ(0, r.acc[m]);
	ASSERT_EQ(0, close(dir));
	if (geteuid() == 0) {
		/* The same links seen by a user who is not root. */
		pid_t pid = fork();

		ASSERT_GE(pid, 0);
		if (!pid) {
			if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
			    setresuid(65534, 65534, 65534))
				_exit(100);
			for (unsigned int i = 0; i < k.n; i++) {
				access_expected(k.names[i], 65534, want);
				snprintf(path, sizeof(path), "/proc/self/fd/%d", k.fds[i]);
				if (!access_errnos(path, -1, NULL, acc))
					_exit(101);
				for (int m = 0; m < 4; m++)
					if (acc[m] != want[m])
						_exit(1 + (int)i);
			}
			_exit(0);
		}
		ASSERT_EQ(0, test_child_wait(pid));
	}
	ASSERT_EQ(0, reader_stop(&bare));
	ASSERT_EQ(0, reader_stop(&rd));
	kinds_close(&k);
}

/*
 * access() by a caller whose real ids are not the node's owner but who is in its group
 * through one of many supplementary groups (more than the library keeps on its stack): the
 * list's allocation fails cleanly (ENOMEM) at each point of a fail-nth sweep, and the answer
 * is the group's bits (read and write, no execute) once it goes through. Needs root to set
 * such ids.
 */
TEST(fail_nth_of_access_for_a_member_of_many_groups)
{
	pid_t pid;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	if (geteuid() != 0)
		SKIP("setting another user's ids needs root");
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		gid_t groups[41];
		unsigned long nth, left = 0, failed = 0;

		for (int i = 0; i < 40; i++)
			groups[i] = (gid_t)(1000 + i);
		groups[40] = 65534;
		/* Real ids 2 and 1, effective nobody: the node is the effective user's. */
		if (setgroups(41, groups) || setresgid(1, 65534, 65534) ||
		    setresuid(2, 65534, 65534))
			_exit(100);
		for (nth = 1; nth < 50 && !left; nth++) {
			int rc;

			uiommu_fail_nth_arm(nth);
			rc = access("/dev/iommu", R_OK | W_OK);
			left = uiommu_fail_nth_disarm();
			if (rc) {
				if (errno != ENOMEM || left)
					_exit(1);
				failed++;
				continue;
			}
			if (!left)
				_exit(2);
		}
		if (!left || !failed)
			_exit(3);
		if (access("/dev/iommu", X_OK) != -1 || errno != EACCES)
			_exit(4);
		_exit(0);
	}
	ASSERT_EQ(0, test_child_wait(pid));
}

/* access() of /dev/iommu for @mode (AT_EACCESS in @flags or not): 0, or its errno. */
static int node_access(int mode, int flags)
{
	return faccessat(AT_FDCWD, "/dev/iommu", mode, flags) ? errno : 0;
}

/* @cap dropped from the set @set of this process (raised if @raise); 0 or -1. */
static int cap_put(cap_value_t cap, cap_flag_t set, bool raise)
{
	cap_t caps = cap_get_proc();
	int rc = -1;

	if (caps && !cap_set_flag(caps, set, 1, &cap, raise ? CAP_SET : CAP_CLEAR))
		rc = cap_set_proc(caps);
	cap_free(caps);
	return rc;
}

/*
 * The ids given, /dev/iommu (0660, the effective user's and group's) denies the real ids its
 * bits, so that only CAP_DAC_OVERRIDE grants access() reading and writing. 0, or the step
 * that went wrong.
 */
static int access_caps_child(bool real_root, bool no_fixup)
{
	/* Real root, effective nobody: the effective set is cleared, the permitted one kept. */
	uid_t r = real_root ? 0 : 65534, e = real_root ? 65534 : 0;

	if (no_fixup && prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP))
		return 100;
	if (setgroups(0, NULL) || setresgid(r, e, 0) || setresuid(r, e, 0))
		return 101;
	/* AT_EACCESS: the effective user owns the node. Never X_OK. */
	if (node_access(R_OK | W_OK, AT_EACCESS) || node_access(X_OK, 0) != EACCES)
		return 102;
	if (real_root && !no_fixup) {
		/* access(): a real root checks with its permitted set, which has it. */
		if (node_access(R_OK | W_OK, 0))
			return 1;
		/* Gone from the permitted set too: CAP_DAC_READ_SEARCH still reads. */
		if (cap_put(CAP_DAC_OVERRIDE, CAP_PERMITTED, false) || node_access(W_OK, 0) != EACCES ||
		    node_access(R_OK, 0))
			return 2;
		if (cap_put(CAP_DAC_READ_SEARCH, CAP_PERMITTED, false) ||
		    node_access(R_OK, 0) != EACCES)
			return 3;
		return 0;
	}
	if (!no_fixup)
		/* Not root really: no capability counts, though the effective set has them all. */
		return node_access(R_OK, 0) == EACCES && node_access(W_OK, 0) == EACCES ? 0 : 4;
	/*
	 * SECBIT_NO_SETUID_FIXUP: the effective set as it is, whatever the real uid; a real root
	 * kept it whole through the change of its effective uid.
	 */
	if (node_access(R_OK | W_OK, 0))
		return 5;
	/* Out of the effective set, still permitted: not counted. */
	if (cap_put(CAP_DAC_OVERRIDE, CAP_EFFECTIVE, false) || node_access(W_OK, 0) != EACCES ||
	    node_access(R_OK, 0))
		return 6;
	if (cap_put(CAP_DAC_OVERRIDE, CAP_EFFECTIVE, true) || node_access(R_OK | W_OK, 0))
		return 7;
	return 0;
}

/*
 * access() checks with the capabilities the kernel's access_override_creds() gives it: the
 * permitted set for a real root (whose effective set a change of its effective uid cleared),
 * none for a caller who is not root really (though its effective set holds them all), and
 * the effective set as it is under SECBIT_NO_SETUID_FIXUP, whatever the real uid; AT_EACCESS
 * the effective ids. Each in a child of its own; needs root to set such ids.
 */
TEST(access_counts_the_capabilities_the_kernel_s_access_does)
{
	if (geteuid() != 0)
		SKIP("setting another user's ids and capabilities needs root");
	for (int i = 0; i < 4; i++) {
		pid_t pid = fork();

		ASSERT_GE(pid, 0);
		if (!pid)
			_exit(access_caps_child(i & 1, i & 2));
		ASSERT_EQ(0, test_child_wait(pid));
	}
}

/*
 * statx() of a node and of an fd's link, here (the node's path, every spelling of the link,
 * AT_EMPTY_PATH) and from another process: what stat() shows, to the nanosecond, and what the
 * kernel adds for a devtmpfs character device: its birth time when asked (the time it was
 * made: its ctime), the mount ID of /dev (STATX_MNT_ID, or STATX_MNT_ID_UNIQUE when that is
 * asked, as the host's /dev answers it) and shmem's attributes mask; an anonymous file has
 * no birth time, the VFS's attributes mask only, and a mount ID.
 */
TEST(statx_of_a_node_is_its_stat_with_what_devtmpfs_adds)
{
	struct statx dev, devu, x;
	char path[96], num[16];
	struct reader rd, bare;
	struct kinds k;
	struct stat st;
	struct rep r;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, syscall(SYS_statx, AT_FDCWD, "/dev", 0, STATX_MNT_ID, &dev));
	ASSERT_EQ(0, syscall(SYS_statx, AT_FDCWD, "/dev", 0, STATX_MNT_ID_UNIQUE, &devu));
	kinds_open_readers(_metadata, &k, &rd, &bare);
	for (unsigned int i = 0; i < k.n; i++) {
		bool node = S_ISCHR(fstat(k.fds[i], &st) ? 0 : st.st_mode);

		ASSERT_EQ(node, is_node_name(k.names[i]));
		for (int spell = 0; spell < 5; spell++) {
			int dir = -1, rc;

			if (spell == 0) {
				snprintf(path, sizeof(path), "/proc/self/fd/%d", k.fds[i]);
				rc = statx(AT_FDCWD, path, 0, STATX_EVERYTHING, &x);
			} else if (spell == 1) {
				snprintf(path, sizeof(path), "/proc/%d/task/%d/fd/%d",
					 (int)getpid(), (int)syscall(SYS_gettid), k.fds[i]);
				rc = statx(AT_FDCWD, path, 0, STATX_EVERYTHING, &x);
			} else if (spell == 2) {
				rc = statx(k.fds[i], "", AT_EMPTY_PATH, STATX_EVERYTHING, &x);
			} else if (spell == 3) {
				dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				snprintf(num, sizeof(num), "%d", k.fds[i]);
				rc = statx(dir, num, 0, STATX_EVERYTHING, &x);
				close(dir);
			} else {
				r = reader_ask(&rd, 'X', k.fds[i], 0);
				ASSERT_STREQ("", r.text);
				rc = r.rc;
				x = r.x;
				/* Its times are its own: stat() there agrees with them. */
				x.stx_atime = (struct statx_timestamp){ st.st_atim.tv_sec,
									(uint32_t)st.st_atim.tv_nsec };
				x.stx_mtime = (struct statx_timestamp){ st.st_mtim.tv_sec,
									(uint32_t)st.st_mtim.tv_nsec };
				if (node)
					ASSERT_EQ(r.x.stx_ctime.tv_nsec, r.x.stx_btime.tv_nsec);
				x.stx_ctime = x.stx_btime = x.stx_mtime;
			}
			ASSERT_EQ(0, rc);
			ASSERT_EQ(st.st_mode, (mode_t)x.stx_mode);
			ASSERT_EQ((unsigned long long)st.st_ino, (unsigned long long)x.stx_ino);
			ASSERT_EQ((long long)st.st_atim.tv_sec, (long long)x.stx_atime.tv_sec);
			ASSERT_EQ(st.st_atim.tv_nsec, (long)x.stx_atime.tv_nsec);
			ASSERT_EQ(st.st_mtim.tv_nsec, (long)x.stx_mtime.tv_nsec);
			ASSERT_EQ((long long)st.st_ctim.tv_sec, (long long)x.stx_ctime.tv_sec);
			ASSERT_EQ(st.st_ctim.tv_nsec, (long)x.stx_ctime.tv_nsec);
			ASSERT_EQ((unsigned)st.st_uid, x.stx_uid);
			ASSERT_NE(0u, x.stx_mask & STATX_MNT_ID);
			if (node) {
				ASSERT_EQ(STATX_EVERYTHING, x.stx_mask);
				ASSERT_EQ(x.stx_ctime.tv_sec, x.stx_btime.tv_sec);
				ASSERT_EQ(x.stx_ctime.tv_nsec, x.stx_btime.tv_nsec);
				ASSERT_EQ(mnt_id_of(&dev), mnt_id_of(&x));
				ASSERT_EQ(0x203070ull, (unsigned long long)x.stx_attributes_mask);
			} else {
				ASSERT_EQ(STATX_BASIC_STATS | STATX_MNT_ID, x.stx_mask);
				ASSERT_EQ(0x203000ull, (unsigned long long)x.stx_attributes_mask);
			}
			ASSERT_EQ(0ull, (unsigned long long)x.stx_attributes);
		}
		if (!node)
			continue;
		/* The node's own path; birth time only when asked; the unique mount ID. */
		ASSERT_EQ(0, statx(AT_FDCWD, k.names[i], 0, STATX_BASIC_STATS, &x));
		ASSERT_EQ(STATX_BASIC_STATS | STATX_MNT_ID, x.stx_mask);
		ASSERT_EQ(st.st_ctim.tv_nsec, (long)x.stx_ctime.tv_nsec);
		ASSERT_EQ(0, statx(AT_FDCWD, k.names[i], 0, STATX_MNT_ID_UNIQUE, &x));
		ASSERT_EQ(STATX_BASIC_STATS |
			  (devu.stx_mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE)), x.stx_mask);
		ASSERT_EQ(mnt_id_of(&devu), mnt_id_of(&x));
	}
	ASSERT_EQ(0, reader_stop(&bare));
	ASSERT_EQ(0, reader_stop(&rd));
	kinds_close(&k);
}

/*
 * Another process's open() of /proc/<pid>/fd/N: a /dev/iommu fd opens a new context there
 * (IOAS_ALLOC works and gives its own first ID; the holder's IOAS is not in it: ENOENT), and
 * leaves ours as it was; a VFIO node opens that node anew (our open group node: EBUSY, one open
 * in the session); an anonymous file is ENXIO, as the kernel answers.
 */
TEST(open_from_another_process_is_the_node_anew)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint32_t mine[2];
	struct reader rd;
	struct kinds k;
	struct rep r;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	mine[0] = (uint32_t)ioas_alloc(fd);
	mine[1] = (uint32_t)ioas_alloc(fd);
	ASSERT_EQ(2u, mine[1]);
	kinds_open(_metadata, &k, fd);
	ASSERT_EQ(0, reader_start(&rd, false));
	r = reader_ask(&rd, 'O', fd, mine[1]);
	ASSERT_EQ(0, r.rc);
	ASSERT_STREQ("/dev/iommu", r.text);
	ASSERT_EQ(1u, r.ioas);
	ASSERT_EQ(ENOENT, r.destroy_err);
	/* Ours is untouched: the second IOAS is still there to destroy. */
	ASSERT_EQ(0, destroy(fd, mine[1]));
	for (unsigned int i = 1; i < k.n; i++) {
		r = reader_ask(&rd, 'O', k.fds[i], 0);
		if (!strncmp(k.names[i], "/dev/vfio/", 10) && k.names[i][10] >= '0' &&
		    k.names[i][10] <= '9') {
			/* A group node opens once in the session, as in the kernel: ours is open. */
			ASSERT_EQ(-1, r.rc);
			ASSERT_EQ(EBUSY, r.err);
		} else if (k.names[i][0] == '/' && strcmp(k.names[i], "/dmabuf:")) {
			/* A node: opened anew, in the reader's own machine. */
			ASSERT_EQ(0, r.rc);
			ASSERT_STREQ(k.names[i], r.text);
		} else {
			ASSERT_EQ(-1, r.rc);
			ASSERT_EQ(ENXIO, r.err);
		}
	}
	ASSERT_EQ(0, reader_stop(&rd));
	kinds_close(&k);
}

/* The record goes with the file: at the last close here, and at one made elsewhere. */
TEST(the_record_goes_with_the_last_close)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), fd2;
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	char dir[256];

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, uiommu_fd_registry(dir, sizeof(dir)));
	ASSERT_TRUE(record_exists(fd));
	ASSERT_EQ(0, ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq));
	ASSERT_TRUE(record_exists((int)fq.out_fault_fd));
	/* A dup is the same file: the record stays until the last of them. */
	fd2 = dup((int)fq.out_fault_fd);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(0, close((int)fq.out_fault_fd));
	ASSERT_TRUE(record_exists(fd2));
	{
		char path[64], raw[64], again[320];
		unsigned long ino;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd2);
		ASSERT_EQ(1, sscanf(raw_link_of(path, raw, sizeof(raw)), "socket:[%lu]", &ino));
		ASSERT_EQ(0, close(fd2));
		snprintf(again, sizeof(again), "%s/%lu", dir, ino);
		ASSERT_ERRNO(ENOENT, access(again, F_OK));
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ASSERT_EQ(1, sscanf(raw_link_of(path, raw, sizeof(raw)), "socket:[%lu]", &ino));
		ASSERT_EQ(0, close(fd));
		snprintf(again, sizeof(again), "%s/%lu", dir, ino);
		ASSERT_ERRNO(ENOENT, access(again, F_OK));
	}
	/* The directory is the user's alone. */
	{
		struct stat st;

		ASSERT_EQ(0, lstat(dir, &st));
		ASSERT_TRUE(S_ISDIR(st.st_mode));
		ASSERT_EQ(0700u, st.st_mode & 07777);
		ASSERT_EQ(geteuid(), st.st_uid);
	}
}

/*
 * A holder killed with its files open leaves their records: they count for nothing (the
 * process is gone), and the next process that writes a record sweeps them away. One that
 * exits normally removes its own.
 */
TEST(a_killed_holders_records_are_swept)
{
	char dir[256], path[320], proc[64], raw[64];
	struct reader holder, next;
	unsigned long ino;
	struct rep r;

	ASSERT_EQ(0, uiommu_fd_registry(dir, sizeof(dir)));
	ASSERT_EQ(0, reader_start(&holder, false));
	r = reader_ask(&holder, 'N', 0, 0);
	ASSERT_GE(r.rc, 0);
	snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", (int)holder.pid, r.rc);
	ASSERT_EQ(1, sscanf(raw_link_of(proc, raw, sizeof(raw)), "socket:[%lu]", &ino));
	snprintf(path, sizeof(path), "%s/%lu", dir, ino);
	ASSERT_EQ(0, access(path, F_OK));
	ASSERT_EQ(0, kill(holder.pid, SIGKILL));
	ASSERT_EQ(128 + SIGKILL, test_child_wait(holder.pid));
	close(holder.sock);
	ASSERT_EQ(0, access(path, F_OK)); /* nobody removed it */
	ASSERT_EQ(0, reader_start(&next, false));
	r = reader_ask(&next, 'N', 0, 0);
	ASSERT_GE(r.rc, 0);
	ASSERT_ERRNO(ENOENT, access(path, F_OK));
	/* A holder that exits normally takes its records with it. */
	snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", (int)next.pid, r.rc);
	ASSERT_EQ(1, sscanf(raw_link_of(proc, raw, sizeof(raw)), "socket:[%lu]", &ino));
	snprintf(path, sizeof(path), "%s/%lu", dir, ino);
	ASSERT_EQ(0, access(path, F_OK));
	ASSERT_EQ(0, reader_stop(&next));
	ASSERT_ERRNO(ENOENT, access(path, F_OK));
}

/*
 * In a fork child: fills every free fd number below the highest open one, then lets @free
 * more numbers be had (RLIMIT_NOFILE) and opens /dev/iommu, the child's first record and so
 * its first sweep of the registry: it fails with EMFILE or succeeds. With the limit back, the
 * next open succeeds (nothing of the failed one is remembered). Exits 0, or the step that
 * went wrong.
 */
static int child_open_short_of_fds(unsigned int free)
{
	struct rlimit rl, old;
	int top = -1, fd;
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");

	while (d && (de = readdir(d)))
		if (atoi(de->d_name) > top)
			top = atoi(de->d_name);
	if (!d || closedir(d))
		return 1;
	/* Every hole below the top taken: exactly @free numbers are left under the limit. */
	while ((fd = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0 && fd < top)
		;
	if (fd < 0)
		return 2;
	close(fd);
	if (getrlimit(RLIMIT_NOFILE, &old))
		return 3;
	rl.rlim_cur = (rlim_t)top + 1 + free;
	rl.rlim_max = old.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return 3;
	fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno != EMFILE)
		return 4;
	if (setrlimit(RLIMIT_NOFILE, &old))
		return 3;
	return open("/dev/iommu", O_RDWR | O_CLOEXEC) < 0 ? 5 : 0;
}

/*
 * A process short of fds when it writes its first record sweeps the registry: what it
 * cannot read (EMFILE) is not a dead process's record, and another process's live record
 * stays, at every number of fds left. Its open fails with EMFILE, and once it has fds again
 * its next open succeeds.
 */
TEST(a_sweep_short_of_fds_leaves_live_records)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	ASSERT_TRUE(record_exists(fd));
	for (unsigned int free = 0; free < 12; free++) {
		pid_t pid = fork();

		ASSERT_GE(pid, 0);
		if (pid == 0)
			_exit(child_open_short_of_fds(free));
		ASSERT_EQ(0, test_child_wait(pid));
		ASSERT_TRUE(record_exists(fd));
	}
	ASSERT_EQ(0, close(fd));
}

/*
 * Records that lie open nothing: a dead process's (its pid gone), a reused pid's (another
 * start time), and one of a live process naming something that is not a node this library
 * serves (/etc/passwd): the reader sees the host's socket:[N] and open() is the host's ENXIO.
 * A record that names /dev/iommu for a socket that is no uiommu file does give a new context:
 * what anyone may open anyway, never the holder's.
 */
TEST(records_that_lie_open_nothing)
{
	unsigned long long me = start_time(getpid());
	int sv[2], status;
	struct reader rd;
	struct rep r;
	pid_t dead;

	ASSERT_NE(0ull, me);
	dead = fork();
	if (!dead)
		_exit(0);
	ASSERT_EQ(dead, waitpid(dead, &status, 0));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	ASSERT_EQ(0, reader_start(&rd, false));

	ASSERT_EQ(0, record_forge(sv[0], dead, me, "20660", "/dev/iommu"));
	r = reader_ask(&rd, 'L', sv[0], 0);
	ASSERT_EQ(0, strncmp(r.text, "socket:[", 8));
	r = reader_ask(&rd, 'O', sv[0], 0);
	ASSERT_EQ(ENXIO, r.err);
	r = reader_ask(&rd, 'S', sv[0], 0); /* a dead process's record: the host's stat */
	ASSERT_EQ(0, r.rc);
	ASSERT_TRUE(S_ISSOCK(r.mode));

	ASSERT_EQ(0, record_forge(sv[0], getpid(), me + 1, "20660", "/dev/iommu"));
	r = reader_ask(&rd, 'O', sv[0], 0);
	ASSERT_EQ(ENXIO, r.err);
	r = reader_ask(&rd, 'S', sv[0], 0); /* a reused pid's: the same */
	ASSERT_EQ(0, r.rc);
	ASSERT_TRUE(S_ISSOCK(r.mode));

	ASSERT_EQ(0, record_forge(sv[0], getpid(), me, "20644", "/etc/passwd"));
	r = reader_ask(&rd, 'L', sv[0], 0);
	ASSERT_STREQ("/etc/passwd", r.text); /* a name is only a name */
	r = reader_ask(&rd, 'O', sv[0], 0);
	ASSERT_EQ(-1, r.rc);
	ASSERT_EQ(ENXIO, r.err);

	ASSERT_EQ(0, record_forge(sv[0], getpid(), me, "20660", "/dev/iommu"));
	r = reader_ask(&rd, 'S', sv[0], 0); /* a live record: its node */
	ASSERT_EQ(0, r.rc);
	ASSERT_EQ(020660u, r.mode);
	ASSERT_EQ((unsigned long long)makedev(10, 257), r.rdev);
	r = reader_ask(&rd, 'O', sv[0], 7);
	ASSERT_EQ(0, r.rc);
	ASSERT_EQ(1u, r.ioas);
	ASSERT_EQ(ENOENT, r.destroy_err);

	record_drop(sv[0]);
	ASSERT_EQ(0, reader_stop(&rd));
	close(sv[0]);
	close(sv[1]);
}

/*
 * Fail-nth sweeps of what writes a record: open("/dev/iommu") and FAULT_QUEUE_ALLOC (the
 * record before the ioctl's reply). Each failure is a clean ENOMEM that leaves nothing behind
 * (no fd, no stray record: the registry holds what this process had there before; the
 * ioctl's copy of its argument fails as EFAULT); the sweep ends with an untouched call whose
 * file has its record, named for another process.
 */
/*
 * The registry's entries that this process wrote: its records and its temporary files. The
 * registry is the user's, shared with every other test program running at the same time.
 */
static unsigned long registry_entries(void)
{
	char dir[256], path[600], buf[128];
	unsigned long n = 0;
	struct dirent *de;
	int pid, len;
	FILE *f;
	DIR *d;

	if (uiommu_fd_registry(dir, sizeof(dir)))
		return 0;
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.') {
			/* ".INO.PID" */
			const char *dot = strrchr(de->d_name, '.');

			n += dot != de->d_name && atoi(dot + 1) == getpid();
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "re");
		len = 0;
		if (f && fgets(buf, sizeof(buf), f) &&
		    sscanf(buf, "uiommu-fd 1 %d %n", &pid, &len) == 1 && len && pid == getpid())
			n++;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

TEST(fail_nth_of_the_calls_that_write_a_record)
{
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	unsigned long nth, left = 0, failed = 0, before;
	struct reader rd;
	struct rep r;
	int fd;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	ASSERT_EQ(0, reader_start(&rd, false));
	/* What a process sets up at its first open (its server, its mm) is not this sweep's. */
	ASSERT_EQ(0, close(open("/dev/iommu", O_RDWR | O_CLOEXEC)));
	before = registry_entries();
	for (nth = 1; nth < 200 && !left; nth++) {
		uiommu_fail_nth_arm(nth);
		fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		ASSERT_ERRNO_OR_OK(fd);
		left = uiommu_fail_nth_disarm();
		if (fd < 0) {
			ASSERT_EQ(0ul, left);
			ASSERT_EQ(before, registry_entries());
			failed++;
			continue;
		}
		ASSERT_NE(0ul, left);
		ASSERT_TRUE(record_exists(fd));
		r = reader_ask(&rd, 'L', fd, 0);
		ASSERT_STREQ("/dev/iommu", r.text);
		ASSERT_EQ(0, close(fd));
	}
	ASSERT_NE(0ul, left);
	ASSERT_NE(0ul, failed);

	fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	before = registry_entries();
	for (nth = 1, left = 0, failed = 0; nth < 200 && !left; nth++) {
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq);
		/* A failed copy of the argument is the copy's EFAULT. */
		ASSERT_TRUE(rc >= 0 || errno == ENOMEM || errno == EFAULT);
		left = uiommu_fail_nth_disarm();
		if (rc) {
			ASSERT_EQ(0ul, left);
			ASSERT_EQ(before, registry_entries());
			failed++;
			continue;
		}
		ASSERT_NE(0ul, left);
		ASSERT_TRUE(record_exists((int)fq.out_fault_fd));
		r = reader_ask(&rd, 'L', (int)fq.out_fault_fd, 0);
		ASSERT_STREQ("anon_inode:[iommufd-pgfault]", r.text);
		ASSERT_EQ(0, close((int)fq.out_fault_fd));
	}
	ASSERT_NE(0ul, left);
	ASSERT_NE(0ul, failed);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, reader_stop(&rd));
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--child"))
		return child_main(atoi(argv[2]));
	return __h_run_all(argc, argv);
}
