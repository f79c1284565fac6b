// SPDX-License-Identifier: MIT
/*
 * The drop-in path. This program runs under uiommu-run (meson runs it so) and reaches
 * /dev/iommu only through libc: open/openat/open64, ioctl, dup/dup2/dup3/fcntl, mmap, munmap,
 * close. It links libuiommu only to read its counters, which are the same instance the preload
 * layer uses.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <linux/close_range.h>
#include <linux/fs.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#define TEST_IOCTL ioctl /* through libc: the preload path */
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

int __open_2(const char *path, int flags);

static long live_contexts(void)
{
	struct uiommu_stats st;

	uiommu_stats_get(&st);
	return st.contexts;
}

TEST(preloaded)
{
	/* Guard: without the preload this whole file tests nothing. */
	ASSERT_TRUE(getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "uiommu"));
}

TEST(every_open_entry_point)
{
	int fds[5], i;

	fds[0] = open("/dev/iommu", O_RDWR);
	fds[1] = openat(AT_FDCWD, "/dev/iommu", O_RDWR | O_CLOEXEC);
	fds[2] = open64("/dev/iommu", O_RDWR);
	fds[3] = __open_2("/dev/iommu", O_RDWR);
	fds[4] = (int)syscall(SYS_openat, (long)AT_FDCWD, "/dev/null", (long)O_RDONLY); /* not ours */
	for (i = 0; i < 4; i++) {
		ASSERT_TRUE(fds[i] >= 0);
		ASSERT_TRUE(uiommu_is_fd(fds[i]));
		/* Each open is its own context: IDs start at 1 in each. */
		ASSERT_EQ(1, ioas_alloc(fds[i]));
	}
	ASSERT_EQ(FD_CLOEXEC, fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(4, live_contexts());
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, close(fds[i]));
	ASSERT_EQ(0, live_contexts());
	/*
	 * A closed iommufd is no longer ours, and EBADF like any closed fd, unless something else in
	 * the process (a sanitizer's runtime, say) has been given the number meanwhile.
	 */
	ASSERT_FALSE(uiommu_is_fd(fds[0]));
	if (fcntl(fds[0], F_GETFD) < 0)
		ASSERT_ERRNO(EBADF, ioctl(fds[0], IOMMU_IOAS_ALLOC, NULL));
	ASSERT_EQ(0, close(fds[4]));
}

TEST(foreign_fds_pass_through)
{
	int fd = open("/dev/null", O_RDWR);
	int n = -1, dupfd;

	ASSERT_TRUE(fd >= 0);
	ASSERT_FALSE(uiommu_is_fd(fd));
	/* A real ioctl on a real device: /dev/null has no FIONREAD. */
	ASSERT_ERRNO(ENOTTY, ioctl(fd, FIONREAD, &n));
	/* Not even an iommufd number reaches the library on a foreign fd. */
	ASSERT_ERRNO(ENOTTY, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	dupfd = dup(fd);
	ASSERT_TRUE(dupfd >= 0);
	ASSERT_FALSE(uiommu_is_fd(dupfd));
	ASSERT_EQ(0, close(dupfd));
	ASSERT_EQ(0, close(fd));
	ASSERT_ERRNO(ENOENT, open("/dev/iommu-not", O_RDWR));
}

TEST(dups_share_the_context)
{
	int fd = open("/dev/iommu", O_RDWR);
	int d1, d2, d3, d4;
	uint32_t id;

	ASSERT_TRUE(fd >= 0);
	id = ioas_alloc(fd);
	ASSERT_EQ(1, id);
	d1 = dup(fd);
	d2 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	d3 = dup3(fd, 200, O_CLOEXEC);
	d4 = 201;
	ASSERT_EQ(201, dup2(fd, d4));
	ASSERT_TRUE(d1 >= 0);
	ASSERT_TRUE(d2 >= 100);
	ASSERT_EQ(200, d3);
	ASSERT_EQ(FD_CLOEXEC, fcntl(d2, F_GETFD) & FD_CLOEXEC);
	/* Objects made through one fd are seen through the others. */
	ASSERT_EQ(2, ioas_alloc(d1));
	ASSERT_EQ(0, destroy(d2, 1));
	ASSERT_EQ(1, ioas_alloc(d3));
	ASSERT_EQ(1, live_contexts());
	/* The context lives until the last fd that refers to it is closed. */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(d1));
	ASSERT_EQ(0, close(d2));
	ASSERT_EQ(0, close(d3));
	ASSERT_EQ(1, live_contexts());
	ASSERT_EQ(0, destroy(d4, 2));
	ASSERT_EQ(0, close(d4));
	ASSERT_EQ(0, live_contexts());
}

TEST(dup2_over_an_iommufd_releases_it)
{
	int fd = open("/dev/iommu", O_RDWR);
	int other = open("/dev/null", O_RDONLY);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(1, live_contexts());
	/* Another file put on the iommufd's number: that was its last fd. */
	ASSERT_EQ(fd, dup2(other, fd));
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_EQ(0, live_contexts());
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(other));
}

TEST(fork_shares_the_context_with_the_child)
{
	int fd;
	int status;
	pid_t pid;

#if defined(__SANITIZE_THREAD__)
	/* TSan cannot follow liburcu re-creating its helper thread in a forked child. */
	SKIP("fork of a multi-threaded process under ThreadSanitizer");
#endif
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* One context, as the kernel's: the child sees IOAS 1 and changes it for both. */
		int ok = ioas_alloc(fd) == 2 && destroy(fd, 1) == 0 &&
			 destroy(fd, 1) == -1 && errno == ENOENT && close(fd) == 0;

		_exit(ok ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* The child's IOAS 2 is the parent's, and its destroy of 1 freed the lowest ID. */
	ASSERT_ERRNO(ENOENT, destroy(fd, 1));
	ASSERT_EQ(1, ioas_alloc(fd));
	ASSERT_EQ(0, destroy(fd, 2));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts());
}

TEST(bad_argument_pointer_is_efault)
{
	int fd = open("/dev/iommu", O_RDWR);
	void *hole = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(hole != MAP_FAILED && ro != MAP_FAILED);
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, hole));
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, (void *)~0ul));
	/* Readable but not writable: the reply cannot be written, and no IOAS is left behind. */
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ | PROT_WRITE));
	*(uint32_t *)ro = sizeof(struct iommu_ioas_alloc);
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ));
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, ro));
	ASSERT_EQ(1, ioas_alloc(fd));
	ASSERT_EQ(0, close(fd));
}

/* mmap(2) of the iommufd fd reaches the library, and munmap(2) lets the vIOMMU go. */
TEST(mmap_of_the_viommu_region)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int fd = open("/dev/iommu", O_RDWR);
	uint32_t *p, viommu;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, viommu_with_region(fd, &data, &viommu));
	errno = 0;
	ASSERT_EQ(MAP_FAILED, mmap(NULL, data.out_mmap_length, PROT_READ, MAP_PRIVATE, fd,
				   (off_t)data.out_mmap_offset));
	ASSERT_EQ(EINVAL, errno);
	p = mmap(NULL, data.out_mmap_length, PROT_READ, MAP_SHARED, fd,
		 (off_t)data.out_mmap_offset);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0xabcdu, p[0]);
	ASSERT_NE(0, destroy(fd, viommu));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, munmap(p, data.out_mmap_length));
	ASSERT_EQ(0, destroy(fd, viommu));
	ASSERT_EQ(0, close(fd));
}

/*
 * DMABUF_GET answers with the new fd as ioctl(2)'s own return value, which the preload layer
 * must pass through unchanged (the v7.2 selftest's helper takes it from there).
 */
TEST(dmabuf_get_returns_the_fd)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_DMABUF_GET,
				      .dmabuf_get = { .length = 4096, .open_flags = O_CLOEXEC } };
	int fd = open("/dev/iommu", O_RDWR), dfd;
	struct stat st;

	ASSERT_GE(fd, 0);
	dfd = ioctl(fd, IOMMU_TEST_CMD, &cmd);
	ASSERT_GE(dfd, 0);
	ASSERT_NE(fd, dfd);
	ASSERT_EQ(0, fstat(dfd, &st));
	ASSERT_EQ(FD_CLOEXEC, fcntl(dfd, F_GETFD) & FD_CLOEXEC);
	cmd.dmabuf_get.length = 0;
	ASSERT_ERRNO(EINVAL, ioctl(fd, IOMMU_TEST_CMD, &cmd));
	ASSERT_EQ(0, close(dfd));
	ASSERT_EQ(0, close(fd));
}

/* The selftest mock's bus is there, as the selftests since v7.3 check before every case. */
TEST(iommufd_mock_bus_exists)
{
	struct stat st;

	ASSERT_EQ(0, access("/sys/bus/iommufd_mock", F_OK));
	ASSERT_EQ(0, stat("/sys/bus/iommufd_mock/devices", &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_ERRNO(ENOENT, access("/sys/bus/iommufd_mock/nothing", F_OK));
}

/* syscall(SYS_close): the preload's syscall() closes ours as close() does. */
TEST(syscall_close_closes_ours)
{
	int low = open("/dev/iommu", O_RDWR);
	int other = open("/dev/null", O_RDONLY);
	int fd;

	ASSERT_TRUE(low >= 0 && other >= 0);
	/*
	 * Ours on a number far above the lowest free one, where the test puts a foreign file
	 * after the close: a file another thread makes meanwhile takes the lowest free number,
	 * never this one (ThreadSanitizer's symbolizer opens files on the thread that meets a
	 * suppressed race, which the context's release can be; once it took the closed number,
	 * the dup3 below replaced its file, and its close of it closed ours).
	 */
	fd = fcntl(low, F_DUPFD_CLOEXEC, 900);
	ASSERT_GE(fd, 900);
	ASSERT_EQ(0, close(low));
	ASSERT_TRUE(uiommu_is_fd(fd));
	ASSERT_EQ(1, ioas_alloc(fd));
	ASSERT_EQ(0, (int)syscall(SYS_close, (long)fd));
	/* That was its last fd: the context went at the close, as the kernel's release. */
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_EQ(0, live_contexts());
	/* A foreign file on the number, placed by the raw system call too. */
	ASSERT_EQ(fd, (int)syscall(SYS_dup3, (long)other, (long)fd, 0L));
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_ERRNO(ENOTTY, ioctl(fd, IOMMU_IOAS_ALLOC, NULL)); /* /dev/null's own answer */
	ASSERT_EQ(0, close(fd));
	ASSERT_ERRNO(EBADF, (int)syscall(SYS_close, (long)fd));
	ASSERT_EQ(0, close(other));
}

/* dup2(), dup3() and their system calls onto ours: a close of ours there. */
TEST(dups_onto_ours_close_it)
{
	int other = open("/dev/null", O_RDONLY);
	int fd, d;

	ASSERT_TRUE(other >= 0);
	for (int how = 0; how < 4; how++) {
		fd = open("/dev/iommu", O_RDWR);
		ASSERT_TRUE(fd >= 0);
		d = dup(fd);
		ASSERT_TRUE(d >= 0);
		/* A refused dup2 (a bad old fd) leaves ours as it was. */
		ASSERT_ERRNO(EBADF, dup2(-1, fd));
		ASSERT_ERRNO(EBADF, (int)syscall(SYS_dup3, -1L, (long)fd, 0L));
		ASSERT_TRUE(uiommu_is_fd(fd));
		ASSERT_EQ(1, ioas_alloc(fd));
		switch (how) {
		case 0:
			ASSERT_EQ(fd, dup2(other, fd));
			break;
		case 1:
			ASSERT_EQ(fd, dup3(other, fd, O_CLOEXEC));
			break;
#ifdef SYS_dup2
		case 2:
			ASSERT_EQ(fd, (int)syscall(SYS_dup2, (long)other, (long)fd));
			break;
#endif
		default:
			ASSERT_EQ(fd, (int)syscall(SYS_dup3, (long)other, (long)fd, 0L));
			break;
		}
		ASSERT_FALSE(uiommu_is_fd(fd));
		ASSERT_ERRNO(ENOTTY, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
		/* d still holds the context; its close is the last. */
		ASSERT_EQ(1, live_contexts());
		ASSERT_EQ(2, ioas_alloc(d)); /* the same context: the next ID */
		ASSERT_EQ(0, close(d));
		ASSERT_EQ(0, live_contexts());
		ASSERT_EQ(0, close(fd));
	}
	ASSERT_EQ(0, close(other));
}

/* fclose() of a stream fdopen()ed on an iommufd closes it inside libc: a close of ours. */
TEST(fclose_of_an_fdopened_iommufd)
{
	int fd = open("/dev/iommu", O_RDWR);
	int d = dup(fd);
	FILE *f;

	ASSERT_TRUE(fd >= 0 && d >= 0);
	f = fdopen(fd, "r+");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(fd, fileno(f));
	ASSERT_EQ(0, fclose(f));
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_EQ(1, live_contexts()); /* d still holds it */
	if (fcntl(fd, F_GETFD) < 0) /* unless a runtime took the number meanwhile */
		ASSERT_ERRNO(EBADF, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	f = fdopen(d, "r");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(0, fclose(f));
	ASSERT_FALSE(uiommu_is_fd(d));
	ASSERT_EQ(0, live_contexts()); /* the last fd: released before fclose() returned */
}

/*
 * A close the preload cannot see: the system call made inline (as Go's runtime or hand-written
 * assembly does), the way a raw syscall instruction reaches the kernel. -errno or the result.
 */
static long inline_syscall3(long nr, long a, long b, long c)
{
#if defined(__x86_64__)
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;

	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
#else
	(void)nr, (void)a, (void)b, (void)c;
	return -ENOSYS;
#endif
}

/* The fd-making calls the preload sees; each returns one new fd (its other one in *extra). */
static int make_open(int *extra) { (void)extra; return open("/dev/null", O_RDONLY); }
static int make_socket(int *extra) { (void)extra; return socket(AF_UNIX, SOCK_STREAM, 0); }
static int make_eventfd(int *extra) { (void)extra; return eventfd(0, 0); }
static int make_epoll(int *extra) { (void)extra; return epoll_create1(0); }
static int make_memfd(int *extra) { (void)extra; return memfd_create("t", 0); }
static int make_dupfd(int *extra) { (void)extra; return fcntl(0, F_DUPFD, 0); }
static int make_dup(int *extra) { (void)extra; return dup(0); }
static int make_sys_openat(int *extra)
{
	(void)extra;
	return (int)syscall(SYS_openat, (long)AT_FDCWD, "/dev/null", (long)O_RDONLY);
}

static int make_pipe(int *extra)
{
	int p[2];

	if (pipe(p))
		return -1;
	*extra = p[1];
	return p[0];
}

static FILE *made_streams[64];
static int nr_made_streams;

static int make_fopen(int *extra)
{
	FILE *f = fopen("/dev/null", "r");

	(void)extra;
	if (!f)
		return -1;
	made_streams[nr_made_streams++] = f;
	return fileno(f);
}

/*
 * A copy of @fd in flight: sent over a new socketpair (*@sv) and never received, it holds the
 * file as another process's fd would, until both ends are closed. Without it an inline close
 * of the last fd would be seen by the server thread (the file's peer hangs up) and undone at
 * once; with it, only what the preload layer sees can tell the library.
 */
static int hold_in_flight(int fd, int sv[2])
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sv[0], &msg, 0) == 1 ? 0 : -1;
}

/* The live contexts once the serving thread has released what it saw go (at most 10 s). */
static long live_contexts_released(void)
{
	for (int i = 0; i < 10000 && live_contexts(); i++)
		poll(NULL, 0, 1);
	return live_contexts();
}

/*
 * Our fd closed behind the preload's back (an inline close_range), then the number reused by
 * any fd-making call the preload sees: that call tells the library, and the new file is not
 * ours. Each maker takes the lowest free number, so a bounded run of them reaches ours.
 */
TEST(inline_close_then_any_new_fd_is_not_ours)
{
	static int (*const makers[])(int *) = { make_open,   make_socket,     make_eventfd,
						  make_epoll,  make_memfd,      make_dupfd,
						  make_dup,    make_sys_openat, make_pipe,
						  make_fopen };

	for (unsigned int m = 0; m < sizeof(makers) / sizeof(makers[0]); m++) {
		int fd = open("/dev/iommu", O_RDWR);
		int made[64], n = 0, hit = -1, err, sv[2];

		ASSERT_TRUE(fd >= 0);
		ASSERT_EQ(0, hold_in_flight(fd, sv));
		ASSERT_EQ(1, ioas_alloc(fd));
		if (inline_syscall3(SYS_close_range, fd, fd, 0) == -ENOSYS)
			SKIP("no inline system call on this architecture");
		/* Still in the table: nothing the preload saw has reused the number yet. */
		ASSERT_TRUE(uiommu_is_fd(fd) || getenv("UIOMMU_FD_CHECK"));
		/*
		 * Until a new file takes the number. Another thread may hold it a while first
		 * (ThreadSanitizer's symbolizer opens files on the thread that meets a suppressed
		 * race): a file made above the number goes at once, so that the number is the lowest
		 * free one again when that thread lets go; one made below it fills a hole and stays.
		 */
		for (long tries = 0; hit < 0 && tries < 1000000; tries++) {
			int got[2] = { -1, -1 };

			got[0] = makers[m](&got[1]);
			ASSERT_TRUE(got[0] >= 0);
			for (int k = 0; k < 2; k++) {
				if (got[k] < 0)
					continue;
				if (got[k] == fd)
					hit = fd;
				if (got[k] <= fd) {
					ASSERT_TRUE(n < 64);
					made[n++] = got[k];
				} else if (makers[m] == make_fopen) {
					ASSERT_EQ(0, fclose(made_streams[--nr_made_streams]));
				} else {
					ASSERT_EQ(0, close(got[k]));
				}
			}
		}
		ASSERT_EQ(fd, hit);
		ASSERT_FALSE(uiommu_is_fd(fd));
		/* The new file's own answer, as the system call gives it past the preload. */
		ASSERT_EQ(-1, (int)syscall(SYS_ioctl, (long)fd, (long)IOMMU_IOAS_ALLOC, 0L));
		err = errno;
		ASSERT_ERRNO(err, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
		/* Forgotten as at a close; the copy in flight holds the context, until it goes. */
		ASSERT_EQ(1, live_contexts());
		ASSERT_EQ(0, close(sv[0]));
		ASSERT_EQ(0, close(sv[1]));
		ASSERT_EQ(0, live_contexts_released());
		for (int i = 0; i < nr_made_streams; i++)
			ASSERT_EQ(0, fclose(made_streams[i]));
		for (int i = 0; makers[m] != make_fopen && i < n; i++)
			ASSERT_EQ(0, close(made[i]));
		nr_made_streams = 0;
	}
}

/*
 * The hole the default leaves: an inline close and an inline reuse, with no call the preload
 * sees in between, while another holder keeps the file open. Once no fd of it is left
 * anywhere, the server thread sees the file's peer hang up and drops the stale slot.
 */
TEST(inline_close_and_inline_reuse)
{
	int fd = open("/dev/iommu", O_RDWR);
	int other = open("/dev/null", O_RDONLY);
	int sv[2];

	ASSERT_TRUE(fd >= 0 && other >= 0);
	ASSERT_EQ(0, hold_in_flight(fd, sv));
	if (inline_syscall3(SYS_close_range, fd, fd, 0) == -ENOSYS)
		SKIP("no inline system call on this architecture");
	ASSERT_EQ(fd, inline_syscall3(SYS_dup3, other, fd, 0));
	/* The strict check looks at the file itself on every call; the default does not. */
	ASSERT_EQ(!getenv("UIOMMU_FD_CHECK"), uiommu_is_fd(fd));
	/* So does the preload's one call: /dev/null's to answer, or (the hole) still ours. */
	if (getenv("UIOMMU_FD_CHECK"))
		ASSERT_EQ(UIOMMU_FD_PASS, uiommu_fd_ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	else
		ASSERT_ERRNO(EFAULT, uiommu_fd_ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	ASSERT_EQ(1, live_contexts());
	/* The last holder lets go: the context goes, and the stale slot with it. */
	ASSERT_EQ(0, close(sv[0]));
	ASSERT_EQ(0, close(sv[1]));
	ASSERT_EQ(0, live_contexts_released());
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_ERRNO(ENOTTY, ioctl(fd, IOMMU_IOAS_ALLOC, NULL)); /* /dev/null's own answer */
	ASSERT_EQ(0, close(fd));
	ASSERT_ERRNO(EBADF, fcntl(fd, F_GETFD));
	ASSERT_EQ(0, close(other));
}

/*
 * uiommu_fd_ioctl(), the preload's ioctl() in one call: our fds get uiommu_ioctl()'s answers,
 * results and errnos; any other fd, open or not, is passed back untouched.
 */
TEST(fd_ioctl_answers_or_passes)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_destroy destroy = { .size = sizeof(destroy), .id = 0x12345 };
	int fd = open("/dev/iommu", O_RDWR), null_fd = open("/dev/null", O_RDONLY), n = 0;

	ASSERT_TRUE(fd >= 0 && null_fd >= 0);
	ASSERT_EQ(0, uiommu_fd_ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_NE(0, alloc.out_ioas_id);
	ASSERT_ERRNO(ENOENT, uiommu_fd_ioctl(fd, IOMMU_DESTROY, &destroy));
	destroy.id = alloc.out_ioas_id;
	ASSERT_EQ(0, uiommu_fd_ioctl(fd, IOMMU_DESTROY, &destroy));
	ASSERT_ERRNO(EFAULT, uiommu_fd_ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	ASSERT_EQ(UIOMMU_FD_PASS, uiommu_fd_ioctl(null_fd, FIONREAD, &n));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(UIOMMU_FD_PASS, uiommu_fd_ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_EQ(UIOMMU_FD_PASS, uiommu_fd_ioctl(-1, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_EQ(0, close(null_fd));
}

/*
 * $UIOMMU_FD_CHECK=strict: the inline cases again, in this program re-run with the strict
 * check (posix_spawn(): no fork()ed copy of this multi-threaded process runs any code).
 */
TEST(strict_check_by_environment)
{
	char *argv[] = { "test_preload", "inline_close", NULL };
	posix_spawn_file_actions_t fa;
	char **envp;
	int status;
	size_t n;
	pid_t pid;

	if (getenv("UIOMMU_FD_CHECK"))
		SKIP("already the strict run");
	for (n = 0; environ[n]; n++)
		;
	envp = calloc(n + 2, sizeof(*envp));
	ASSERT_TRUE(envp != NULL);
	memcpy(envp, environ, n * sizeof(*envp));
	envp[n] = "UIOMMU_FD_CHECK=strict";
	/* Its own TAP lines would mix into ours: only its exit status counts. */
	ASSERT_EQ(0, posix_spawn_file_actions_init(&fa));
	ASSERT_EQ(0, posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0));
	ASSERT_EQ(0, posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, envp));
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

static int fault_queue_alloc(int fd, uint32_t *id)
{
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd) };

	if (ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd))
		return -1;
	*id = cmd.out_fault_id;
	return (int)cmd.out_fault_fd;
}

TEST(close_range_closes_ours)
{
	int fd = open("/dev/iommu", O_RDWR);
	int d, qfd;
	uint32_t qid;

	ASSERT_TRUE(fd >= 0);
	d = dup(fd);
	ASSERT_TRUE(d >= 0);
	qfd = fault_queue_alloc(fd, &qid);
	ASSERT_TRUE(qfd >= 0);
	ASSERT_TRUE(uiommu_event_is_fd(qfd));
	ASSERT_ERRNO(EBUSY, destroy(fd, qid)); /* its fd holds it */
	/* Refused arguments close nothing. */
	ASSERT_ERRNO(EINVAL, close_range((unsigned int)fd, (unsigned int)fd - 1, 0));
	ASSERT_ERRNO(EINVAL, close_range((unsigned int)fd, (unsigned int)fd, 0x80));
	ASSERT_TRUE(uiommu_is_fd(fd));
	ASSERT_EQ(0, close_range((unsigned int)fd, (unsigned int)fd, 0));
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_EQ(1, live_contexts()); /* d still holds it */
	ASSERT_EQ(0, close_range((unsigned int)qfd, (unsigned int)qfd, 0));
	ASSERT_FALSE(uiommu_event_is_fd(qfd));
	ASSERT_EQ(0, destroy(d, qid));
	/* CLOSE_RANGE_CLOEXEC only marks: the fd stays ours. */
	ASSERT_EQ(0, close_range((unsigned int)d, (unsigned int)d, CLOSE_RANGE_CLOEXEC));
	ASSERT_TRUE(uiommu_is_fd(d));
	ASSERT_EQ(FD_CLOEXEC, fcntl(d, F_GETFD) & FD_CLOEXEC);
	ASSERT_NE(0, ioas_alloc(d));
	/* The raw system call, as programs built for an older libc make it. */
	ASSERT_EQ(0, (int)syscall(SYS_close_range, (long)d, (long)d, 0L));
	ASSERT_FALSE(uiommu_is_fd(d));
	ASSERT_EQ(0, live_contexts());
}

TEST(closefrom_closes_ours)
{
	int fd, status;
	pid_t pid;

#if defined(__SANITIZE_THREAD__)
	SKIP("fork of a multi-threaded process under ThreadSanitizer");
#endif
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_TRUE(fd >= 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		int sfd = open("/sys/kernel/iommu_groups/0/type", O_RDWR);
		int high = dup(fd), lo = fd;

		/* The numbers the child gets are whatever is free: close from the lowest. */
		if (sfd < 0 || !uiommu_sysfs_is_fd(sfd) || high < 0 || high == fd)
			_exit(1);
		lo = sfd < lo ? sfd : lo;
		lo = high < lo ? high : lo;
		closefrom(lo);
		if (uiommu_is_fd(fd) || uiommu_is_fd(high) || uiommu_sysfs_is_fd(sfd))
			_exit(2);
		_exit(fcntl(fd, F_GETFD) < 0 && errno == EBADF ? 0 : 4);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(0, close(fd));
}

/* fs/ioctl.c answers these for every file before the driver sees them. */
TEST(generic_fd_ioctls)
{
	int fd = open("/dev/iommu", O_RDWR);
	int on = 1, off = 0, bsz = 0;
	loff_t qsize;

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(0, ioctl(fd, FIOCLEX));
	ASSERT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, ioctl(fd, FIONCLEX));
	ASSERT_EQ(0, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, ioctl(fd, FIONBIO, &on));
	ASSERT_EQ(O_NONBLOCK, fcntl(fd, F_GETFL) & O_NONBLOCK);
	ASSERT_EQ(0, ioctl(fd, FIONBIO, &off));
	ASSERT_EQ(0, fcntl(fd, F_GETFL) & O_NONBLOCK);
	ASSERT_ERRNO(EFAULT, ioctl(fd, FIONBIO, NULL));
	if (uiommu_fail_nth_available()) {
		/* The copy of the argument is the request's one fallible step: nothing changes. */
		uiommu_fail_nth_arm(1);
		ASSERT_ERRNO(EFAULT, ioctl(fd, FIONBIO, &on));
		ASSERT_EQ(0, uiommu_fail_nth_disarm());
		ASSERT_EQ(0, fcntl(fd, F_GETFL) & O_NONBLOCK);
	}
	/* No fasync in the driver: turning it on is ENOTTY, leaving it off is fine. */
	ASSERT_EQ(0, ioctl(fd, FIOASYNC, &off));
	ASSERT_ERRNO(ENOTTY, ioctl(fd, FIOASYNC, &on));
	ASSERT_ERRNO(EFAULT, ioctl(fd, FIOASYNC, NULL));
	ASSERT_EQ(0, fcntl(fd, F_GETFL) & O_ASYNC);
	/* A character device has no size; the file system's block size it has. */
	ASSERT_ERRNO(ENOTTY, ioctl(fd, FIOQSIZE, &qsize));
	ASSERT_EQ(0, ioctl(fd, FIGETBSZ, &bsz));
	ASSERT_EQ(sysconf(_SC_PAGESIZE), bsz);
	/* Still the driver's for everything else, FIONREAD included. */
	ASSERT_ERRNO(ENOTTY, ioctl(fd, FIONREAD, &on));
	ASSERT_EQ(1, ioas_alloc(fd));
	ASSERT_EQ(0, close(fd));
}

/* glibc's fortified entry points; its headers declare them only under _FORTIFY_SOURCE. */
ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset, size_t buflen);

TEST(read_write_are_einval)
{
	int rw = open("/dev/iommu", O_RDWR), ro = open("/dev/iommu", O_RDONLY);
	int wo = open("/dev/iommu", O_WRONLY), none = open("/dev/iommu", O_ACCMODE);
	char b[8] = { 0 };

	ASSERT_TRUE(rw >= 0 && ro >= 0 && wo >= 0 && none >= 0);
	ASSERT_ERRNO(EINVAL, read(rw, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, write(rw, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, pread(rw, b, sizeof(b), 0));
	ASSERT_ERRNO(EINVAL, pwrite(rw, b, sizeof(b), 0));
	ASSERT_ERRNO(EINVAL, pread(rw, b, sizeof(b), -1));
	/* The fortified entry points (_FORTIFY_SOURCE programs, Debian's QEMU) answer the same,
	 * not the host's: an iommufd fd's read is EINVAL, not the backing file's. */
	ASSERT_ERRNO(EINVAL, __read_chk(rw, b, sizeof(b), sizeof(b)));
	ASSERT_ERRNO(EINVAL, __pread_chk(rw, b, sizeof(b), 0, sizeof(b)));
	ASSERT_ERRNO(EINVAL, __pread64_chk(rw, b, sizeof(b), 0, sizeof(b)));
	ASSERT_ERRNO(EBADF, __read_chk(wo, b, sizeof(b), sizeof(b)));
	ASSERT_ERRNO(EBADF, __pread64_chk(wo, b, sizeof(b), 0, sizeof(b)));
	/* Without the access mode: EBADF first. */
	ASSERT_ERRNO(EINVAL, read(ro, b, sizeof(b)));
	ASSERT_ERRNO(EBADF, write(ro, b, sizeof(b)));
	ASSERT_ERRNO(EBADF, read(wo, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, write(wo, b, sizeof(b)));
	ASSERT_ERRNO(EBADF, read(none, b, sizeof(b)));
	ASSERT_ERRNO(EBADF, write(none, b, sizeof(b)));
	/* Every mode still has its ioctls. */
	ASSERT_EQ(1, ioas_alloc(none));
	ASSERT_EQ(0, close(rw));
	ASSERT_EQ(0, close(ro));
	ASSERT_EQ(0, close(wo));
	ASSERT_EQ(0, close(none));
}

/* Opens @path, checks it is an iommufd, closes it. */
static bool opens_iommufd(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_RDWR);
	bool ok = fd >= 0 && uiommu_is_fd(fd) && ioas_alloc(fd) == 1;

	if (fd >= 0)
		close(fd);
	return ok;
}

TEST(every_name_of_the_node)
{
	char link[64], rel[80];
	int dev = open("/dev", O_RDONLY | O_DIRECTORY);

	ASSERT_TRUE(dev >= 0);
	ASSERT_TRUE(opens_iommufd(AT_FDCWD, "//dev/iommu"));
	ASSERT_TRUE(opens_iommufd(AT_FDCWD, "/dev/./iommu"));
	ASSERT_TRUE(opens_iommufd(AT_FDCWD, "/dev/../dev/iommu"));
	ASSERT_TRUE(opens_iommufd(AT_FDCWD, "/dev//iommu"));
	ASSERT_TRUE(opens_iommufd(dev, "iommu"));
	ASSERT_TRUE(opens_iommufd(dev, "./iommu"));
	ASSERT_TRUE(opens_iommufd(dev, "/dev/iommu")); /* absolute: the dirfd does not count */
	/* A symlink of another name: the host says ENOENT for it, the library knows better. */
	snprintf(link, sizeof(link), "/tmp/uiommu-test-link-%d", getpid());
	ASSERT_EQ(0, symlink("/dev/iommu", link));
	ASSERT_TRUE(opens_iommufd(AT_FDCWD, link));
	ASSERT_ERRNO(ELOOP, open(link, O_RDWR | O_NOFOLLOW));
	snprintf(rel, sizeof(rel), "%s-rel", link);
	ASSERT_EQ(0, symlink("../dev/iommu", rel));
	ASSERT_TRUE(opens_iommufd(AT_FDCWD, rel));
	ASSERT_EQ(0, unlink(rel));
	ASSERT_EQ(0, unlink(link));
	/* Below the node, the walk meets a character device. */
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu/", O_RDWR));
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu/.", O_RDWR));
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu/x", O_RDWR));
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu/../iommu", O_RDWR));
	ASSERT_ERRNO(EISDIR, open("/dev/iommu/", O_RDWR | O_CREAT, 0600));
	/* Names that only look alike stay the host's. */
	ASSERT_ERRNO(ENOENT, open("/dev/iommu0", O_RDWR));
	ASSERT_ERRNO(ENOENT, openat(dev, "iommu-not", O_RDWR));
	ASSERT_EQ(0, close(dev));
}

TEST(open_flags_a_character_device_refuses)
{
	struct stat st;
	int fd;

	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu", O_RDWR | O_DIRECTORY));
	/* O_DIRECTORY alone is no O_TMPFILE (glibc's O_TMPFILE includes it): ENOTDIR too. */
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu", O_RDONLY | O_DIRECTORY));
	ASSERT_ERRNO(EEXIST, open("/dev/iommu", O_RDWR | O_CREAT | O_EXCL, 0600));
	ASSERT_ERRNO(EINVAL, open("/dev/iommu", O_RDWR | O_CREAT | O_DIRECTORY, 0600));
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu", O_RDWR | O_TMPFILE, 0600));
	ASSERT_ERRNO(EINVAL, open("/dev/iommu", O_RDONLY | O_TMPFILE, 0600));
	/* O_CREAT alone opens the existing node. */
	fd = open("/dev/iommu", O_RDWR | O_CREAT, 0600);
	ASSERT_TRUE(fd >= 0 && uiommu_is_fd(fd));
	ASSERT_EQ(0, close(fd));
	/* O_PATH: a path-only fd, on which ioctl is EBADF. */
	fd = open("/dev/iommu", O_PATH | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_ERRNO(EBADF, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	ASSERT_EQ(0, fstat(fd, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(0, close(fd));
	ASSERT_ERRNO(ENOTDIR, open("/dev/iommu", O_PATH | O_DIRECTORY));
	ASSERT_EQ(0, live_contexts());
}

static char *own_page;
static volatile sig_atomic_t own_faults;

static void own_handler(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)uc;
	if (info->si_addr == own_page)
		own_faults++;
	mprotect(own_page, 4096, PROT_READ | PROT_WRITE);
}

/* The program's SIGSEGV handler set after uiommu's trap: the trap stays in front of it. */
TEST(own_handler_set_after_the_trap)
{
	struct sigaction sa, old, before;
	int fd = open("/dev/iommu", O_RDWR), status;
	pid_t pid;

	ASSERT_TRUE(fd >= 0);
	/* What the program had (SIG_DFL, or a sanitizer runtime's handler). */
	ASSERT_EQ(0, sigaction(SIGSEGV, NULL, &before));
	own_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(own_page != MAP_FAILED);
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, own_page)); /* the trap is in place */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = own_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGSEGV, &sa, &old));
	ASSERT_TRUE(old.sa_handler == before.sa_handler); /* not the trap's */
	ASSERT_EQ(before.sa_flags & SA_SIGINFO, old.sa_flags & SA_SIGINFO);
	/* The program reads back its own handler. */
	ASSERT_EQ(0, sigaction(SIGSEGV, NULL, &old));
	ASSERT_TRUE((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == own_handler);
	/* A bad pointer is still EFAULT, and the program's own fault reaches its handler. */
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, own_page));
	ASSERT_EQ(0, own_faults);
	*(volatile char *)own_page = 1;
	ASSERT_EQ(1, own_faults);
	/* signal() back to SIG_DFL: the next own fault is fatal, EFAULT still works before it. */
	ASSERT_EQ(0, mprotect(own_page, 4096, PROT_NONE));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		if (ioctl(fd, IOMMU_IOAS_ALLOC, own_page) != -1 || errno != EFAULT)
			_exit(3);
		*(volatile char *)own_page = 1;
		_exit(4);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(SIGSEGV, WTERMSIG(status));
	ASSERT_EQ(0, close(fd));
}

/*
 * The fault trap's mask cache: an ioctl opens its window without a system call while the
 * thread's mask is known to let SIGSEGV and SIGBUS through. Every way a mask can come to block
 * them again must be seen, else a bad pointer kills the process (a blocked synchronous SIGSEGV
 * is fatal). Each step below would die without the wrapper it exercises; the child reports
 * which step went wrong by its exit status.
 */
static int mask_fd = -1;
static void *mask_bad;
static volatile int mask_handler_errno;

static bool mask_efault(void)
{
	return ioctl(mask_fd, IOMMU_IOAS_ALLOC, mask_bad) == -1 && errno == EFAULT;
}

static bool mask_blocks(int sig)
{
	sigset_t now;

	return !pthread_sigmask(SIG_BLOCK, NULL, &now) && sigismember(&now, sig) == 1;
}

static void mask_handler(int sig)
{
	(void)sig;
	mask_handler_errno = mask_efault() ? EFAULT : -1;
}

static int mask_child(void)
{
	sigset_t segv, bus;
	struct sigaction sa;
	sigjmp_buf env;

	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	/* Nothing blocked: the cache learns the mask is open. */
	if (!mask_efault() || !mask_efault())
		return 10;
	/* pthread_sigmask() and sigprocmask() in every mode; the trap leaves the mask as it was. */
	if (pthread_sigmask(SIG_BLOCK, &segv, NULL) || !mask_efault() || !mask_blocks(SIGSEGV))
		return 11;
	if (sigprocmask(SIG_UNBLOCK, &segv, NULL) || !mask_efault() || mask_blocks(SIGSEGV))
		return 12;
	if (sigprocmask(SIG_SETMASK, &bus, NULL) || !mask_efault() || !mask_blocks(SIGBUS))
		return 13;
	if (pthread_sigmask(SIG_SETMASK, &segv, NULL) || !mask_efault() || mask_blocks(SIGBUS))
		return 14;
	/* siglongjmp() back to a mask saved with SIGSEGV blocked. */
	if (sigsetjmp(env, 1) == 0) {
		if (pthread_sigmask(SIG_UNBLOCK, &segv, NULL) || !mask_efault())
			return 15;
		siglongjmp(env, 1);
	}
	/* First the ioctl: asking for the mask would teach the cache the answer. */
	if (!mask_efault() || !mask_blocks(SIGSEGV))
		return 16;
	if (pthread_sigmask(SIG_UNBLOCK, &segv, NULL) || !mask_efault())
		return 17;
	/* The System V calls, which change the mask inside libc. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	if (sighold(SIGSEGV) || !mask_efault() || !mask_blocks(SIGSEGV))
		return 25;
	if (sigrelse(SIGSEGV) || !mask_efault() || mask_blocks(SIGSEGV))
		return 26;
#pragma GCC diagnostic pop
	/* A handler whose sa_mask blocks SIGSEGV, entered while the cache says open. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = mask_handler;
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return 18;
	mask_handler_errno = 0;
	raise(SIGUSR1);
	if (mask_handler_errno != EFAULT || !mask_efault())
		return 19;
	return 0;
}

/* sigsuspend() runs a handler under its temporary mask, which blocks SIGSEGV here. */
static int mask_child_suspend(void)
{
	sigset_t usr2, all_but_usr2;
	struct sigaction sa;

	if (!mask_efault())
		return 20;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = mask_handler;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	if (sigaction(SIGUSR2, &sa, NULL) || pthread_sigmask(SIG_BLOCK, &usr2, NULL))
		return 21;
	if (!mask_efault())
		return 22;
	raise(SIGUSR2); /* pending until sigsuspend() */
	sigfillset(&all_but_usr2);
	sigdelset(&all_but_usr2, SIGUSR2);
	mask_handler_errno = 0;
	if (sigsuspend(&all_but_usr2) != -1 || errno != EINTR || mask_handler_errno != EFAULT)
		return 23;
	if (mask_blocks(SIGSEGV) || !mask_efault())
		return 24;
	return 0;
}

/* The child's exit status, or 128 + the signal that killed it (a blocked SIGSEGV). */
static int mask_run(int (*child)(void))
{
	int status;
	pid_t pid;

	pid = fork();
	if (pid == 0)
		_exit(child());
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(fault_mask_cache_follows_every_mask_change)
{
#if defined(__SANITIZE_THREAD__)
	/* Its runtime defers handlers (the steps' raise()), and the trap is not built there. */
	SKIP("no fault trap under ThreadSanitizer (user accesses via process_vm_*)");
#endif
	mask_fd = open("/dev/iommu", O_RDWR);
	ASSERT_TRUE(mask_fd >= 0);
	mask_bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(mask_bad != MAP_FAILED);
	ASSERT_EQ(0, mask_run(mask_child));
	ASSERT_EQ(0, mask_run(mask_child_suspend));
	ASSERT_EQ(0, munmap(mask_bad, 4096));
	ASSERT_EQ(0, close(mask_fd));
}

TEST_HARNESS_MAIN
