// SPDX-License-Identifier: MIT
/*
 * The kernel's fault-injection interface under uiommu-run (meson runs this program so):
 * /proc/.../fail-nth and /sys/kernel/debug/fail*, reached only through libc as the kernel's
 * iommufd_fail_nth selftest reaches them. Links libuiommu only to ask whether fault injection
 * is compiled in (release builds parse and answer the same errnos but never arm anything).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* An unmapped address the compiler cannot see through. */
static void *volatile bad_ptr = (void *)16;

static int nth_open_tid(pid_t tid, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/fail-nth", (int)tid);
	return open(path, flags);
}

/* What a pread at 0 shows, as a number; -1 if it is not "%u\n". */
static long nth_show(int fd)
{
	char buf[32] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	char *end;
	long v;

	if (n < 2 || buf[n - 1] != '\n')
		return -1;
	v = strtol(buf, &end, 10);
	return end == buf + n - 1 ? v : -1;
}

static ssize_t nth_store(int fd, const char *s)
{
	return pwrite(fd, s, strlen(s), 0);
}

/* One fallible ioctl of the calling thread: 0, or -1 with errno. */
static int ioas_alloc(int iommufd)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	return ioctl(iommufd, IOMMU_IOAS_ALLOC, &cmd);
}

TEST(fail_nth_arms_counts_down_and_fires)
{
	int fd, iommufd;
	long left;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	iommufd = open("/dev/iommu", O_RDWR);
	ASSERT_TRUE(iommufd >= 0);
	fd = nth_open_tid(gettid(), O_RDWR);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(0, nth_show(fd)); /* never armed */

	/* Far enough: the ioctl succeeds and the countdown moves. */
	ASSERT_EQ(4, nth_store(fd, "1000"));
	ASSERT_EQ(1000, nth_show(fd));
	ASSERT_EQ(0, ioas_alloc(iommufd));
	left = nth_show(fd);
	ASSERT_TRUE(left > 0 && left < 1000);

	/* The first step fails: the ioctl fails and "0\n" says the failure happened. */
	ASSERT_EQ(1, nth_store(fd, "1"));
	ASSERT_EQ(-1, ioas_alloc(iommufd));
	ASSERT_EQ(0, nth_show(fd));
	ASSERT_EQ(0, ioas_alloc(iommufd)); /* once only */

	/* 0 disarms. */
	ASSERT_EQ(1, nth_store(fd, "5"));
	ASSERT_EQ(1, nth_store(fd, "0"));
	ASSERT_EQ(0, ioas_alloc(iommufd));
	ASSERT_EQ(0, nth_show(fd));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(iommufd));
}

TEST(fail_nth_every_path_names_the_thread)
{
	const char *paths[] = { "/proc/thread-self/fail-nth", "/proc/self/fail-nth", NULL, NULL, NULL };
	char own_task[64], pid_task[64], pid_leader[64];
	int ref, i;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	/* The harness runs each case in a child's main thread: tid == pid. */
	ASSERT_EQ(getpid(), gettid());
	snprintf(own_task, sizeof(own_task), "/proc/self/task/%d/fail-nth", (int)gettid());
	snprintf(pid_task, sizeof(pid_task), "/proc/%d/task/%d/fail-nth", (int)getpid(), (int)gettid());
	snprintf(pid_leader, sizeof(pid_leader), "/proc/%d/fail-nth", (int)getpid());
	paths[2] = own_task;
	paths[3] = pid_task;
	paths[4] = pid_leader;
	ref = nth_open_tid(gettid(), O_RDWR);
	ASSERT_TRUE(ref >= 0);
	for (i = 0; i < 5; i++) {
		char val[16];
		int fd = open(paths[i], O_RDWR);

		ASSERT_TRUE(fd >= 0);
		snprintf(val, sizeof(val), "%d", 100 + i);
		ASSERT_EQ((ssize_t)strlen(val), nth_store(fd, val));
		ASSERT_EQ(100 + i, nth_show(ref));
		ASSERT_EQ(0, close(fd));
	}
	ASSERT_EQ(1, nth_store(ref, "0"));
	ASSERT_EQ(0, close(ref));
}

TEST(fail_nth_read_follows_the_file_position)
{
	char buf[16];
	int fd, dupfd;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	fd = open("/proc/thread-self/fail-nth", O_RDWR);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(2, nth_store(fd, "42"));
	/* simple_read_from_buffer(): the rest from the position, then end of file. */
	ASSERT_EQ(2, read(fd, buf, 2));
	ASSERT_EQ(0, memcmp(buf, "42", 2));
	dupfd = dup(fd);
	ASSERT_TRUE(dupfd >= 0);
	ASSERT_EQ(1, read(dupfd, buf, sizeof(buf))); /* the position is shared */
	ASSERT_EQ('\n', buf[0]);
	ASSERT_EQ(0, read(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, lseek(fd, 0, SEEK_SET));
	ASSERT_EQ(3, read(dupfd, buf, sizeof(buf)));
	ASSERT_EQ(0, memcmp(buf, "42\n", 3));
	ASSERT_EQ(1, pread(fd, buf, sizeof(buf), 2));
	ASSERT_EQ(0, pread(fd, buf, sizeof(buf), 3));
	/* A write ignores the position. */
	ASSERT_EQ(1, pwrite(fd, "7", 1, 1000));
	ASSERT_EQ(7, nth_show(fd));
	ASSERT_EQ(1, write(dupfd, "0", 1));
	ASSERT_EQ(0, close(dupfd));
	ASSERT_EQ(0, close(fd));
}

TEST(fail_nth_bad_writes_get_the_kernels_errnos)
{
	static const struct {
		const char *s;
		int err;       /* 0: accepted */
		long shows;
	} cases[] = {
		{ "", EINVAL, 0 },
		{ "abc", EINVAL, 0 },
		{ "-1", EINVAL, 0 },
		{ " 7", EINVAL, 0 },
		{ "7\n\n", EINVAL, 0 },
		{ "7x", EINVAL, 0 },
		{ "4294967296", ERANGE, 0 },
		{ "99999999999999999999999", ERANGE, 0 },
		{ "4294967295", 0, 4294967295L },
		{ "0x10", 0, 16 },
		{ "010", 0, 8 },
		{ "+7", 0, 7 },
		{ "9\n", 0, 9 },
	};
	char buf[8];
	size_t i;
	int fd, ro, wo;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	fd = open("/proc/thread-self/fail-nth", O_RDWR);
	ASSERT_TRUE(fd >= 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		ASSERT_EQ(1, nth_store(fd, "0"));
		if (cases[i].err) {
			ASSERT_ERRNO(cases[i].err, nth_store(fd, cases[i].s));
			continue;
		}
		ASSERT_EQ((ssize_t)strlen(cases[i].s), nth_store(fd, cases[i].s));
		ASSERT_EQ(cases[i].shows, nth_show(fd));
	}
	ASSERT_EQ(1, nth_store(fd, "0"));
	ASSERT_ERRNO(EFAULT, write(fd, bad_ptr, 2));
	ASSERT_ERRNO(EFAULT, read(fd, bad_ptr, 2));
	ASSERT_ERRNO(EINVAL, pwrite(fd, "1", 1, -1));
	ASSERT_ERRNO(EINVAL, pread(fd, buf, sizeof(buf), -1));
	ASSERT_EQ(0, close(fd));

	ro = open("/proc/thread-self/fail-nth", O_RDONLY);
	ASSERT_TRUE(ro >= 0);
	ASSERT_ERRNO(EBADF, write(ro, "1", 1));
	ASSERT_EQ(0, close(ro));
	wo = open("/proc/thread-self/fail-nth", O_WRONLY);
	ASSERT_TRUE(wo >= 0);
	ASSERT_ERRNO(EBADF, read(wo, buf, sizeof(buf)));
	ASSERT_EQ(0, close(wo));

	ASSERT_ERRNO(ENOTDIR, open("/proc/thread-self/fail-nth", O_RDONLY | O_DIRECTORY));
	ASSERT_ERRNO(EEXIST, open("/proc/thread-self/fail-nth", O_RDWR | O_CREAT | O_EXCL, 0644));
	/* No such thread in this process (pid_max is at most 2^22). */
	ASSERT_ERRNO(ENOENT, nth_open_tid(0x7fffffff, O_RDWR));
}

/* A second thread: its own countdown, armed by the main thread through its tid. */
struct nth_thread {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int step;           /* main -> thread: 1 go; thread -> main: 2 tid known, 3 done */
	pid_t tid;
	int iommufd;
	int own_before;     /* its own fail-nth before the main thread armed it */
	int alloc_rc;       /* its ioctl once armed */
	long own_after;
};

static void nth_thread_wait(struct nth_thread *t, int step)
{
	pthread_mutex_lock(&t->lock);
	while (t->step < step)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

static void nth_thread_post(struct nth_thread *t, int step)
{
	pthread_mutex_lock(&t->lock);
	t->step = step;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static void *nth_thread_fn(void *arg)
{
	struct nth_thread *t = arg;
	int fd = open("/proc/thread-self/fail-nth", O_RDWR);

	t->tid = gettid();
	t->own_before = fd >= 0 ? (int)nth_show(fd) : -2;
	nth_thread_post(t, 2);
	nth_thread_wait(t, 4);
	t->alloc_rc = ioas_alloc(t->iommufd);
	t->own_after = fd >= 0 ? nth_show(fd) : -2;
	if (fd >= 0)
		close(fd);
	nth_thread_post(t, 5);
	return NULL;
}

TEST(fail_nth_counters_are_per_thread)
{
	struct nth_thread t = {
		.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
	};
	pthread_t th;
	int own, other;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	t.iommufd = open("/dev/iommu", O_RDWR);
	ASSERT_TRUE(t.iommufd >= 0);
	own = open("/proc/thread-self/fail-nth", O_RDWR);
	ASSERT_TRUE(own >= 0);
	ASSERT_EQ(0, pthread_create(&th, NULL, nth_thread_fn, &t));
	nth_thread_wait(&t, 2);
	EXPECT_EQ(0, t.own_before);
	ASSERT_NE(t.tid, gettid());

	/* Arm the other thread's first step through its tid, then let it run. */
	other = nth_open_tid(t.tid, O_RDWR); /* a fallible step of ours, as the kernel's open */
	ASSERT_TRUE(other >= 0);
	/* The main thread armed far away: not the other thread's business. */
	ASSERT_EQ(4, nth_store(own, "1000"));
	ASSERT_EQ(1, nth_store(other, "1"));
	ASSERT_EQ(1, nth_show(other));
	nth_thread_post(&t, 4);
	nth_thread_wait(&t, 5);
	ASSERT_EQ(0, pthread_join(th, NULL));
	EXPECT_EQ(-1, t.alloc_rc);
	EXPECT_EQ(0, t.own_after);

	/* The main thread's countdown did not move for the other thread's steps. */
	ASSERT_EQ(1000, nth_show(own));
	ASSERT_EQ(0, ioas_alloc(t.iommufd));
	ASSERT_EQ(1, nth_store(own, "0"));
	ASSERT_EQ(0, close(other));
	ASSERT_EQ(0, close(own));
	ASSERT_EQ(0, close(t.iommufd));
}

static int debugfs_read(const char *attr, char *buf, size_t len)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s", attr);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static ssize_t debugfs_write(const char *attr, const char *val)
{
	char path[128];
	ssize_t n;
	int fd, err;

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s", attr);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	err = errno;
	close(fd);
	errno = err;
	return n;
}

#define ASSERT_DEBUGFS(attr, want)                                      \
	do {                                                            \
		char _b[64];                                            \
		ASSERT_EQ(0, debugfs_read(attr, _b, sizeof(_b)));       \
		ASSERT_STREQ(want, _b);                                 \
	} while (0)

/* One case: the values are the session's, so a case that changes one puts it back. */
TEST(debugfs_fail_directories)
{
	static const char *const dirs[] = {
		"failslab", "fail_page_alloc", "fail_usercopy", "fail_iommufd",
	};
	struct dirent *de;
	unsigned int seen = 0;
	char buf[16];
	size_t i;
	int rw;
	DIR *d;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	d = opendir("/sys/kernel/debug/");
	ASSERT_TRUE(d != NULL);
	while ((de = readdir(d))) {
		for (i = 0; i < ARRAY_SIZE(dirs); i++)
			if (!strcmp(de->d_name, dirs[i]))
				seen |= 1u << i;
	}
	closedir(d);
	ASSERT_EQ(0xfu, seen);

	/* The kernel's defaults. */
	for (i = 0; i < ARRAY_SIZE(dirs); i++) {
		char attr[64];

		snprintf(attr, sizeof(attr), "%s/verbose", dirs[i]);
		ASSERT_DEBUGFS(attr, "2\n");
		snprintf(attr, sizeof(attr), "%s/times", dirs[i]);
		ASSERT_DEBUGFS(attr, "1\n");
		snprintf(attr, sizeof(attr), "%s/task-filter", dirs[i]);
		ASSERT_DEBUGFS(attr, "N\n");
	}
	ASSERT_DEBUGFS("failslab/ignore-gfp-wait", "Y\n");
	ASSERT_DEBUGFS("fail_page_alloc/ignore-gfp-highmem", "Y\n");
	/* Opened for reading and writing, the value reads back too. */
	rw = open("/sys/kernel/debug/fail_usercopy/interval", O_RDWR);
	ASSERT_TRUE(rw >= 0);
	ASSERT_EQ(2, read(rw, buf, sizeof(buf)));
	ASSERT_EQ(0, memcmp(buf, "1\n", 2));
	ASSERT_EQ(0, close(rw));
	ASSERT_DEBUGFS("fail_page_alloc/min-order", "1\n");
	ASSERT_ERRNO(ENOENT, open("/sys/kernel/debug/fail_usercopy/ignore-gfp-wait", O_RDONLY));

	/* The selftest's writes, then read back. */
	ASSERT_EQ(1, debugfs_write("failslab/ignore-gfp-wait", "N"));
	ASSERT_EQ(1, debugfs_write("fail_page_alloc/ignore-gfp-wait", "N"));
	ASSERT_EQ(2, debugfs_write("fail_iommufd/verbose", "0\n"));
	ASSERT_EQ(2, debugfs_write("fail_iommufd/times", "-1"));
	ASSERT_DEBUGFS("failslab/ignore-gfp-wait", "N\n");
	ASSERT_DEBUGFS("fail_page_alloc/ignore-gfp-wait", "N\n");
	ASSERT_DEBUGFS("fail_iommufd/verbose", "0\n");
	ASSERT_DEBUGFS("fail_iommufd/times", "-1\n");
	ASSERT_DEBUGFS("failslab/verbose", "2\n"); /* one directory's, not every one's */

	/* Bad writes: kstrtobool() and kstrtoull() errnos; nothing changes. */
	ASSERT_ERRNO(EINVAL, debugfs_write("failslab/ignore-gfp-wait", "x"));
	ASSERT_ERRNO(EINVAL, debugfs_write("fail_iommufd/verbose", "abc"));
	ASSERT_ERRNO(EINVAL, debugfs_write("fail_iommufd/verbose", "-1"));
	ASSERT_ERRNO(ERANGE, debugfs_write("fail_iommufd/verbose", "99999999999999999999"));
	ASSERT_DEBUGFS("failslab/ignore-gfp-wait", "N\n");
	ASSERT_DEBUGFS("fail_iommufd/verbose", "0\n");
	/* debugfs creates nothing. */
	ASSERT_ERRNO(EACCES, open("/sys/kernel/debug/failslab/new", O_WRONLY | O_CREAT, 0600));

	/* Relative to the directory's fd, as the selftest writes: the store runs (EINVAL). */
	d = opendir("/sys/kernel/debug/");
	ASSERT_TRUE(d != NULL);
	rw = openat(dirfd(d), "failslab/verbose", O_WRONLY);
	ASSERT_TRUE(rw >= 0);
	ASSERT_ERRNO(EINVAL, write(rw, "x", 1));
	ASSERT_EQ(1, write(rw, "0", 1));
	ASSERT_EQ(0, close(rw));
	closedir(d);
	ASSERT_DEBUGFS("failslab/verbose", "0\n");
	ASSERT_EQ(1, debugfs_write("failslab/verbose", "2"));

	ASSERT_EQ(1, debugfs_write("failslab/ignore-gfp-wait", "Y"));
	ASSERT_EQ(1, debugfs_write("fail_page_alloc/ignore-gfp-wait", "Y"));
	ASSERT_EQ(1, debugfs_write("fail_iommufd/verbose", "2"));
	ASSERT_EQ(1, debugfs_write("fail_iommufd/times", "1"));
}

/* As a kernel without CONFIG_FAULT_INJECTION, a release build has none of these files. */
TEST(fault_injection_files_exist_only_with_the_hook)
{
	static const char *const paths[] = {
		"/proc/self/fail-nth", "/proc/thread-self/fail-nth", "/sys/kernel/debug",
		"/sys/kernel/debug/failslab/verbose", "/sys/kernel/debug/fail_iommufd",
	};
	bool hook = uiommu_fail_nth_available();
	size_t i;

	for (i = 0; i < ARRAY_SIZE(paths); i++)
		EXPECT_EQ(hook, uiommu_fail_nth_claims(paths[i]) || uiommu_sysfs_claims(paths[i]));
	/* The rest of the host's debugfs and other processes' files are never ours. */
	EXPECT_FALSE(uiommu_sysfs_claims("/sys/kernel/debug/tracing"));
	EXPECT_FALSE(uiommu_sysfs_claims("/sys/kernel/debugfoo"));
	EXPECT_FALSE(uiommu_fail_nth_claims("/proc/1/fail-nth"));
	EXPECT_FALSE(uiommu_fail_nth_claims("/proc/self/task/1x/fail-nth"));
	EXPECT_FALSE(uiommu_fail_nth_claims("/proc/self/fail-nth/x"));
}

TEST_HARNESS_MAIN
