// SPDX-License-Identifier: MIT
/*
 * One iommufd across processes (docs/processes.md), through libc only, under uiommu-run: fds
 * handed over the way libvirt hands them to QEMU (SCM_RIGHTS), taken with pidfd_getfd(),
 * inherited across exec and fork; the context living until the last fd anywhere is closed; a
 * client killed with SIGKILL in the middle of its calls; a serving process that dies; a
 * client that sends garbage; two processes racing map/unmap/destroy on shared IDs.
 *
 * The other processes are this program again (fork + exec of /proc/self/exe with "--child"
 * ROLE ...): a new program image, as QEMU is to libvirt, which also keeps ThreadSanitizer
 * builds away from fork()ed copies of a multi-threaded process.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#define TEST_IOCTL ioctl /* through libc: the preload path */
#include "fd_pass.h"
#include "machine/models/dma-test.h"
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "vfio_utils.h"
#include "wire_client.h"

#define PS 4096

/* Set around a child_start(): that child runs without the preload layer. */
static bool child_bare;

/* Starts this program as "--child ROLE ARG1 ARG2" with @keep inherited (no CLOEXEC). */
static pid_t child_start(const char *role, int keep, long arg2)
{
	char a1[24], a2[24];
	pid_t pid;

	snprintf(a1, sizeof(a1), "%d", keep);
	snprintf(a2, sizeof(a2), "%ld", arg2);
	pid = fork();
	if (pid)
		return pid;
	if (keep >= 0)
		fcntl(keep, F_SETFD, 0);
	if (child_bare)
		unsetenv("LD_PRELOAD");
	execl("/proc/self/exe", "test_processes", "--child", role, a1, a2, (char *)NULL);
	_exit(127);
}

/*
 * Starts child @role with one end of a new socketpair (the other in *@sock) and, when @fd is
 * not -1, hands it @fd over that socket with @data (SCM_RIGHTS). The pid, or -1.
 */
static pid_t child_start_with(const char *role, int fd, const void *data, size_t len, int *sock)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = child_start(role, sv[1], 0);
	close(sv[1]);
	*sock = sv[0];
	if (pid > 0 && fd >= 0 && send_fd(sv[0], fd, data, len))
		return -1;
	return pid;
}

static int ioas_map(int fd, uint32_t ioas, void *buf, size_t len, uint64_t *iova)
{
	struct iommu_ioas_map map = {
		.size = sizeof(map), .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = len,
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
	};
	int rc = ioctl(fd, IOMMU_IOAS_MAP, &map);

	*iova = map.iova;
	return rc;
}

/* IOAS_UNMAP of [iova, iova + len): the length unmapped, or -1 with errno. */
static long ioas_unmap_len(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = ioas, .iova = iova,
					  .length = len };

	return ioctl(fd, IOMMU_IOAS_UNMAP, &unmap) ? -1 : (long)unmap.length;
}

static long live_contexts(void)
{
	struct uiommu_stats st;

	uiommu_stats_get(&st);
	return st.contexts;
}

/* Waits (bounded: 10 s) for the server thread to see the last close of a context. */
static long live_contexts_settle(long want)
{
	long n = live_contexts();

	for (int i = 0; i < 10000 && n != want; i++) {
		poll(NULL, 0, 1);
		n = live_contexts();
	}
	return n;
}

/* Kills @pid and reaps it: 0 once waitpid() reported it killed, -1 otherwise. */
static int child_kill_reap(pid_t pid)
{
	int status;

	if (kill(pid, SIGKILL) || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : -1;
}

/* The selftest's mock device @stdev attached to @pt instead. */
static int mock_replace_pt(int fd, uint32_t stdev, uint32_t pt)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
				      .id = stdev, .mock_domain_replace = { .pt_id = pt } };

	return ioctl(fd, IOMMU_TEST_CMD, &cmd);
}

/* What poll() shows on @fd at once (POLLIN, POLLOUT), or -1. */
static int poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };

	return poll(&p, 1, 0) < 0 ? -1 : p.revents;
}

/* ---- the other processes ---------------------------------------------------------------- */

/*
 * "mmap SOCK": makes a vEVENTQ, then maps the vIOMMU region of the iommufd it was handed
 * ({offset, length, vIOMMU ID} with the fd): the kernel's errnos for what mmap(2) of the fd refuses; a shared mapping is the same
 * memory as the serving process's (its driver's word, then our store, which it checks).
 */
static int child_mmap(int sock)
{
	struct iommu_veventq_alloc eq = { .size = sizeof(eq), .type = IOMMU_VEVENTQ_TYPE_SELFTEST,
					  .veventq_depth = 2 };
	uint64_t reg[3];
	uint32_t *p;
	char go, ev[64];
	int fd = recv_fd(sock, reg, sizeof(reg));

	if (fd < 0)
		return 1;
	/*
	 * A vEVENTQ made for us: our own event fd, empty (POLLOUT only); the kernel's EINVAL
	 * for a count below a header and for a write, 0 for an empty read; its close and
	 * destroy leave the vIOMMU free to go.
	 */
	eq.viommu_id = (uint32_t)reg[2];
	if (ioctl(fd, IOMMU_VEVENTQ_ALLOC, &eq) || !uiommu_event_is_fd((int)eq.out_veventq_fd) ||
	    poll_now((int)eq.out_veventq_fd) != POLLOUT)
		return 9;
	if (read((int)eq.out_veventq_fd, ev, 4) != -1 || errno != EINVAL ||
	    read((int)eq.out_veventq_fd, ev, sizeof(ev)) != 0 ||
	    write((int)eq.out_veventq_fd, ev, 8) != -1 || errno != EINVAL)
		return 10;
	if (close((int)eq.out_veventq_fd) || destroy(fd, eq.out_veventq_id))
		return 11;
	if (mmap(NULL, reg[1], PROT_READ, MAP_PRIVATE, fd, (off_t)reg[0]) != MAP_FAILED ||
	    errno != EINVAL)
		return 2;
	if (mmap(NULL, reg[1], PROT_READ | PROT_EXEC, MAP_SHARED, fd, (off_t)reg[0]) !=
		    MAP_FAILED || errno != EPERM)
		return 3;
	if (mmap(NULL, reg[1], PROT_READ, MAP_SHARED, fd, (off_t)(reg[0] + (1ull << 40))) !=
		    MAP_FAILED || errno != ENXIO)
		return 4;
	if (mmap(NULL, reg[1] + PS, PROT_READ, MAP_SHARED, fd, (off_t)reg[0]) != MAP_FAILED ||
	    errno != ENXIO)
		return 5;
	p = mmap(NULL, reg[1], PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)reg[0]);
	if (p == MAP_FAILED || p[0] != 0xabcdu)
		return 6;
	p[1] = 0x5eed;
	if (write(sock, &go, 1) != 1 || read(sock, &go, 1) != 1)
		return 7;
	return munmap(p, reg[1]) ? 8 : 0;
}

/*
 * "held"'s 'F': forks from two threads at once, HELD_FORKS times each, every copy exiting at
 * once. Return: 0, or an errno (-1: a copy's exit status was not 0).
 */
#define HELD_FORKS 8

static void *held_forker(void *arg)
{
	intptr_t rc = 0;

	(void)arg;
	for (int i = 0; i < HELD_FORKS && !rc; i++) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		rc = pid < 0 ? errno : test_child_wait(pid) ? -1 : 0;
	}
	return (void *)rc;
}

/* How many fds this process has open (/proc/self/fd, less the directory's own), or -1. */
static int held_fds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = -1;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2; /* ".", ".." and the directory's fd; n started at -1 */
}

/*
 * Concurrent forks of a process with a remote mapping: each fork's wait for its copy's hold is
 * its own, so none takes another's socketpair (a leak in the parent, a wait skipped) or waits
 * for an unrelated child's exit. Return: 0, an errno, or -2 when an fd was leaked.
 */
static int held_forks_concurrent(void)
{
	pthread_t t[2];
	void *r[2] = { NULL, NULL };
	int before, err;

	/* A fork first: whatever one fork opens for good is open before the count. */
	if ((err = (int)(intptr_t)held_forker(NULL)))
		return err;
	before = held_fds_open();
	for (int i = 0; i < 2; i++)
		if ((err = pthread_create(&t[i], NULL, held_forker, NULL)))
			return err;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], &r[i]);
	if (r[0] || r[1])
		return (int)(intptr_t)(r[0] ? r[0] : r[1]);
	return held_fds_open() == before ? 0 : -2;
}

/*
 * "held"'s 'T': a fork while another thread unmaps the parent's mapping. The thread starts its
 * munmap() from this test's fork prepare handler (registered before the library's, so it runs
 * after the library's own: the munmap waits for the library's fork to let go), and the
 * child's first fork handler (before the library's, which asks for the copies of the holds)
 * waits for that munmap to be done, for at most HELD_RACE_MS: a munmap that could overtake the
 * fork is done by then, one that waits for the fork never is.
 */
#define HELD_RACE_MS 300

static struct {
	bool armed;
	int start[2]; /* prepare -> unmapping thread */
	int done[2];  /* unmapping thread -> the fork's child */
	int ready[2]; /* unmapping thread -> the forking thread: it waits for start */
	void *addr;
	size_t len;
} held_race = { .start = { -1, -1 }, .done = { -1, -1 }, .ready = { -1, -1 } };

static void held_race_prepare(void)
{
	char c = 0;

	if (held_race.armed && write(held_race.start[1], &c, 1) != 1)
		abort();
}

static void held_race_child(void)
{
	struct pollfd pfd = { .fd = held_race.done[0], .events = POLLIN };

	if (held_race.armed)
		poll(&pfd, 1, HELD_RACE_MS);
	held_race.armed = false;
}

static void *held_race_unmap(void *arg)
{
	char c = 0;

	(void)arg;
	/*
	 * Started before the fork, so that its thread start's allocations are over by then: under
	 * ASan a lock of the allocator's held at the fork stays held in the child (remote.c's
	 * remote_atfork_child()), and the child's munmap allocates.
	 */
	if (write(held_race.ready[1], &c, 1) != 1 || read(held_race.start[0], &c, 1) != 1)
		return (void *)(intptr_t)EIO;
	if (munmap(held_race.addr, held_race.len))
		return (void *)(intptr_t)errno;
	return write(held_race.done[1], &c, 1) == 1 ? NULL : (void *)(intptr_t)EIO;
}

/*
 * Forks a copy of "held" that checks its copy of the mapping @p (@len bytes: the same memory),
 * waits for a byte on @go[0], unmaps and exits. With @call_fd >= 0 it first allocates an IOAS
 * on that iommufd (the reply lands in its own memory) and writes the ioctl's errno (0) as a
 * byte to @done. Return: its pid (or -1); @go[0] closed here.
 */
static pid_t held_copy(int go[2], uint32_t *p, size_t len, int call_fd, int done)
{
	pid_t copy = fork();
	uint32_t ioas;
	char c;

	if (copy == 0) {
		close(go[1]);
		if (call_fd >= 0) {
			c = (char)(ioas_alloc_id(call_fd, &ioas) ? errno : 0);
			if (write(done, &c, 1) != 1)
				_exit(4);
		}
		if (p[0] != 0xabcdu || read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(munmap(p, len) ? 3 : 0);
	}
	close(go[0]);
	return copy;
}

/* Execs this program as "--child heldexec SOCK", keeping @sock: the errno when it failed. */
static int held_exec(int sock)
{
	char a1[24];

	snprintf(a1, sizeof(a1), "%d", sock);
	if (fcntl(sock, F_SETFD, 0))
		return errno;
	execl("/proc/self/exe", "test_processes", "--child", "heldexec", a1, (char *)NULL);
	return errno;
}

/*
 * "held SOCK": maps the vIOMMU region of the iommufd it was handed ({offset, length, vIOMMU
 * ID}) as the test commands, one byte each, and answers each with an int (0 or an errno):
 * 'n' nothing (it has the fd), 'm' maps it, 'M' maps it again over the first mapping
 * (MAP_FIXED), 'p' unmaps its first page, 'q' the rest, 'u' all of it; 'r' moves all of it
 * elsewhere (mremap), 'R' only its first page, which 'w' unmaps; 'X' moves an anonymous
 * mapping onto it (mremap MREMAP_FIXED); 'A' maps anonymous memory over all of it, 'a' over
 * its first page, 'o' another file (a memfd) over its last page (mmap MAP_FIXED: each must
 * read as the new memory); 'k' maps a socket over its first page, 'z' over all of it (mmap
 * MAP_FIXED: ENODEV from the socket's mmap, after the kernel unmapped the range), 'b' maps
 * fd -1 over its first page (EBADF, before anything was unmapped: the page stays); 'G' tries
 * to grow it (the
 * answer: 0 for the kernel's EFAULT); 'f' forks a copy that
 * holds the mapping (it checks the region's word), 'l' forks such a copy that first allocates
 * an IOAS (the answer: its errno), 'y' and a byte N forks such a copy with the Nth fallible
 * step of this process failed (the answer: 0, or -2 when none was reached), 'g' has that copy
 * unmap it and exit (the
 * answer: its status), 'T' forks such a copy while another thread unmaps this process's
 * mapping (held_race), 'F' forks from two threads at once (held_forks_concurrent()), 'x' and a byte N maps it with the Nth fallible step of this process
 * failed (the answer: the errno, or -2 when it mapped and nothing failed, -3 when it mapped
 * with the failure absorbed), 'e' execs
 * this program as "--child heldexec SOCK" (the mapping goes with the old image; the new one
 * answers 0, and ends at EOF). EOF ends it.
 */
static int child_held(int sock)
{
	uint64_t reg[3];
	uint32_t *p = MAP_FAILED;
	void *moved = MAP_FAILED;
	int fd, go[2] = { -1, -1 }, rc;
	pthread_t unmapper;
	pid_t copy = -1;
	char cmd;

	/* Ours before the library's, which it registers when the fd arrives. */
	if (pthread_atfork(held_race_prepare, NULL, held_race_child))
		return 1;
	fd = recv_fd(sock, reg, sizeof(reg));
	if (fd < 0)
		return 1;
	while (read(sock, &cmd, 1) == 1) {
		void *q;

		rc = 0;
		switch (cmd) {
		case 'm':
		case 'M':
			q = mmap(cmd == 'M' ? (void *)p : NULL, reg[1], PROT_READ | PROT_WRITE,
				 MAP_SHARED | (cmd == 'M' ? MAP_FIXED : 0), fd, (off_t)reg[0]);
			if (q == MAP_FAILED)
				rc = errno;
			else if (cmd == 'M' && q != p)
				rc = -1;
			else
				p = q;
			break;
		case 'p':
		case 'q':
		case 'u':
		case 'w': {
			char *at = cmd == 'w' ? moved : (char *)p + (cmd == 'q' ? PS : 0);

			rc = munmap(at, cmd == 'u' ? reg[1] : cmd == 'q' ? reg[1] - PS : PS) ? errno : 0;
			break;
		}
		case 'r':
		case 'R':
			/* A place of our own to move to. */
			q = mmap(NULL, reg[1], PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (q != MAP_FAILED)
				q = mremap(p, cmd == 'r' ? reg[1] : PS, cmd == 'r' ? reg[1] : PS,
					   MREMAP_MAYMOVE | MREMAP_FIXED, q);
			rc = q == MAP_FAILED ? errno : 0;
			if (!rc)
				*(cmd == 'r' ? (void **)&p : &moved) = q;
			break;
		case 'X':
			/* An anonymous mapping moved onto it: the kernel unmaps what was there. */
			q = mmap(NULL, reg[1], PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (q != MAP_FAILED)
				q = mremap(q, reg[1], reg[1], MREMAP_MAYMOVE | MREMAP_FIXED, p);
			rc = q == MAP_FAILED ? errno : q == p ? 0 : -1;
			break;
		case 'A':
		case 'a':
		case 'o': {
			char *at = (char *)p + (cmd == 'o' ? reg[1] - PS : 0);
			int mfd = cmd == 'o' ? memfd_create("held-over", MFD_CLOEXEC) : -1;

			if (cmd == 'o' && (mfd < 0 || ftruncate(mfd, PS))) {
				rc = errno;
				break;
			}
			q = mmap(at, cmd == 'A' ? reg[1] : PS, PROT_READ | PROT_WRITE,
				 MAP_FIXED | (mfd >= 0 ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS),
				 mfd, 0);
			rc = q == MAP_FAILED ? errno : q == at && !*(volatile uint32_t *)q ? 0 : -1;
			if (mfd >= 0)
				close(mfd);
			break;
		}
		case 'k':
		case 'z':
		case 'b': {
			int sv[2], err, want = cmd == 'b' ? EBADF : ENODEV;
			unsigned char v;
			bool gone;

			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
				rc = errno;
				break;
			}
			q = mmap(p, cmd == 'z' ? reg[1] : PS, PROT_READ, MAP_SHARED | MAP_FIXED,
				 cmd == 'b' ? -1 : sv[0], 0);
			err = errno;
			gone = syscall(SYS_mincore, p, PS, &v) && errno == ENOMEM;
			rc = q == MAP_FAILED && err == want && gone == (cmd != 'b') ? 0 : -1;
			close(sv[0]);
			close(sv[1]);
			break;
		}
		case 'G':
			q = mremap(p, reg[1], 2 * reg[1], MREMAP_MAYMOVE);
			rc = q == MAP_FAILED && errno == EFAULT ? 0 : -1;
			break;
		case 'f':
			if (pipe2(go, O_CLOEXEC)) {
				rc = errno;
				break;
			}
			copy = held_copy(go, p, reg[1], -1, -1);
			rc = copy < 0 ? errno : 0;
			break;
		case 'l': {
			int done[2];
			char c;

			if (pipe2(go, O_CLOEXEC) || pipe2(done, O_CLOEXEC)) {
				rc = errno;
				break;
			}
			copy = held_copy(go, p, reg[1], fd, done[1]);
			close(done[1]);
			rc = copy < 0 ? errno : read(done[0], &c, 1) != 1 ? -1 : c;
			close(done[0]);
			break;
		}
		case 'y': {
			unsigned char nth;
			unsigned long left;

			if (read(sock, &nth, 1) != 1)
				return 5;
			if (pipe2(go, O_CLOEXEC)) {
				rc = errno;
				break;
			}
			uiommu_fail_nth_arm(nth);
			copy = held_copy(go, p, reg[1], -1, -1);
			left = uiommu_fail_nth_disarm();
			rc = copy < 0 ? errno : left ? -2 : 0;
			break;
		}
		case 'T': {
			void *err = NULL;
			char c;

			if (pipe2(go, O_CLOEXEC) || pipe2(held_race.start, O_CLOEXEC) ||
			    pipe2(held_race.done, O_CLOEXEC) || pipe2(held_race.ready, O_CLOEXEC)) {
				rc = errno;
				break;
			}
			held_race.addr = p;
			held_race.len = reg[1];
			if ((rc = pthread_create(&unmapper, NULL, held_race_unmap, NULL)))
				break;
			if (read(held_race.ready[0], &c, 1) != 1) {
				rc = EIO;
				break;
			}
			held_race.armed = true;
			copy = held_copy(go, p, reg[1], -1, -1);
			held_race.armed = false;
			rc = copy < 0 ? errno : 0;
			pthread_join(unmapper, &err);
			if (!rc)
				rc = (int)(intptr_t)err;
			for (int i = 0; i < 2; i++) {
				close(held_race.start[i]);
				close(held_race.done[i]);
				close(held_race.ready[i]);
			}
			break;
		}
		case 'g':
			rc = write(go[1], &cmd, 1) == 1 ? test_child_wait(copy) : errno;
			close(go[1]);
			break;
		case 'F':
			rc = held_forks_concurrent();
			break;
		case 'n':
			break;
		case 'x': {
			unsigned char nth;
			unsigned long left;

			if (read(sock, &nth, 1) != 1)
				return 5;
			uiommu_fail_nth_arm(nth);
			q = mmap(NULL, reg[1], PROT_READ, MAP_SHARED, fd, (off_t)reg[0]);
			rc = errno;
			left = uiommu_fail_nth_disarm();
			if (q != MAP_FAILED) {
				p = q;
				rc = left ? -2 : -3;
			}
			break;
		}
		case 'e':
			rc = held_exec(sock);
			break;
		default:
			rc = -1;
		}
		if (write(sock, &rc, sizeof(rc)) != sizeof(rc))
			return 4;
	}
	return 0;
}

/*
 * "fault SOCK": a VMM answering page faults through a fault fd the process serving the
 * context handed it: waits for POLLIN (bounded: 10 s), reads the group, answers it, and
 * reports the record's address.
 */
static int child_fault(int sock)
{
	struct iommu_hwpt_page_response resp = { .code = IOMMUFD_PAGE_RESP_SUCCESS };
	struct iommu_hwpt_pgfault rec;
	struct pollfd p;
	char go = 0;
	int ffd = recv_fd(sock, &go, 1);

	if (ffd < 0 || !uiommu_event_is_fd(ffd))
		return 1;
	if (poll_now(ffd) != POLLOUT)
		return 2;
	/* A fault fd has no mmap: ENODEV, as the kernel's file without the op. */
	if (mmap(NULL, PS, PROT_READ, MAP_SHARED, ffd, 0) != MAP_FAILED || errno != ENODEV)
		return 2;
	if (write(sock, &go, 1) != 1)
		return 3;
	p = (struct pollfd){ .fd = ffd, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1 || !(p.revents & POLLIN))
		return 4;
	/* The kernel's errnos, from the serving process. */
	if (read(ffd, &rec, sizeof(rec) - 1) != -1 || errno != ESPIPE)
		return 5;
	if (read(ffd, &rec, sizeof(rec)) != sizeof(rec) || !rec.cookie)
		return 6;
	/* Read: not readable any more, here too. */
	if (poll_now(ffd) != POLLOUT)
		return 7;
	resp.cookie = rec.cookie;
	if (pwrite(ffd, &resp, sizeof(resp), 8) != -1 || errno != ESPIPE)
		return 8;
	if (write(ffd, &resp, sizeof(resp)) != sizeof(resp))
		return 9;
	/* Answered once: the cookie is gone. */
	if (write(ffd, &resp, sizeof(resp)) != -1 || errno != EINVAL)
		return 10;
	if (write(sock, &rec.addr, sizeof(rec.addr)) != sizeof(rec.addr))
		return 11;
	return read(sock, &go, 1) == 1 ? 0 : 12;
}

/*
 * A holder of a fault fd @ffd, answering the test's one-byte commands on @sock with one byte:
 * 'p' what poll() shows at once, 'r' what a read of one record returns (40, 0 or -1), 'd' the
 * fd moved to a new number (dup, then close: the file held, at a number the server is told
 * of by the dup), 'x' the number given to another socket (dup2), 'c' the fd closed, 'w' its
 * writing shut down (shutdown(2) past the preload layer); 'k' or 'e' for those; 's' the fd
 * sent back (SCM_RIGHTS, with the answer). 'q' or EOF: the end.
 */
static int holder_serve(int sock, int ffd)
{
	struct iommu_hwpt_pgfault rec;
	char cmd, rep;
	int sv[2], nfd;

	while (read(sock, &cmd, 1) == 1 && cmd != 'q') {
		switch (cmd) {
		case 'p':
			rep = (char)poll_now(ffd);
			break;
		case 'r':
			rep = (char)read(ffd, &rec, sizeof(rec));
			break;
		case 'd':
			nfd = dup(ffd);
			rep = nfd >= 0 && !close(ffd) ? 'k' : 'e';
			ffd = nfd;
			break;
		case 'x':
			rep = 'e';
			if (!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
				rep = dup2(sv[0], ffd) == ffd ? 'k' : 'e';
				close(sv[0]);
			}
			break;
		case 'c':
			rep = close(ffd) ? 'e' : 'k';
			break;
		case 'w':
			/* Past the preload layer, which answers ENOTSOCK for its fds. */
			rep = syscall(SYS_shutdown, ffd, SHUT_WR) ? 'e' : 'k';
			break;
		case 's':
			if (send_fd(sock, ffd, "k", 1))
				return 3;
			continue;
		default:
			rep = 'e';
		}
		if (write(sock, &rep, 1) != 1)
			return 2;
	}
	return 0;
}

/*
 * "holder SOCK": holds the fault fd it was handed (SCM_RIGHTS): holder_serve(). Started
 * without the preload layer, it does not adopt the fd (nor tell the server that it holds it):
 * only poll() and sending it back mean anything there.
 */
static int child_holder(int sock)
{
	bool bare = !getenv("LD_PRELOAD");
	char c;
	int ffd = recv_fd(sock, &c, 1);

	if (ffd < 0 || (!bare && !uiommu_event_is_fd(ffd)))
		return 1;
	return holder_serve(sock, ffd);
}

/* "scm SOCK": libvirt's way: the fd arrives by SCM_RIGHTS; maps its own memory, reports. */
static int child_scm(int sock)
{
	struct iommu_ioas_map_file mf = { .size = sizeof(mf), .length = PS,
					  .flags = IOMMU_IOAS_MAP_READABLE };
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	uint64_t reply[3], iova;
	int mfd;
	struct stat st;
	char go;
	void *buf = mmap(NULL, 2 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t ioas;
	int fd = recv_fd(sock, &go, 1);

	if (fd < 0 || !uiommu_is_fd(fd))
		return 1;
	/* The node the kernel's fd shows, wherever it went. */
	if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(10, 257))
		return 2;
	ioas = ioas_alloc(fd);
	if (!ioas || buf == MAP_FAILED || ioas_map(fd, ioas, buf, 2 * PS, &iova))
		return 3;
	/* An fd in the argument is ours, not the server's: MAP_FILE of our own memfd. */
	mfd = memfd_create("test", MFD_CLOEXEC);
	mf.fd = mfd;
	mf.ioas_id = ioas;
	if (mfd < 0 || ftruncate(mfd, PS) || ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf))
		return 6;
	/*
	 * An event fd made for us: ours (our number in the reply), served by the parent; empty,
	 * so POLLOUT only and a read of 0; its close drops its hold on the queue.
	 */
	if (ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq) || !uiommu_event_is_fd((int)fq.out_fault_fd) ||
	    poll_now((int)fq.out_fault_fd) != POLLOUT ||
	    read((int)fq.out_fault_fd, &st, 40) != 0 || close((int)fq.out_fault_fd) ||
	    destroy(fd, fq.out_fault_id))
		return 7;
	reply[0] = ioas;
	reply[1] = iova;
	reply[2] = mf.iova;
	if (write(sock, reply, sizeof(reply)) != sizeof(reply))
		return 4;
	/* Stay until the parent has looked: the pins are of this process's memory. */
	return read(sock, &go, 1) == 1 ? 0 : 5;
}

/* "exec FD": the fd was inherited across exec (no CLOEXEC): IOAS_ALLOC on it; its ID. */
static int child_exec(int fd)
{
	return uiommu_is_fd(fd) ? (int)ioas_alloc(fd) : 100;
}

/* "pidfd PPID_FD PPID": pidfd_getfd() of the parent's fd; IOAS_ALLOC on it; its ID. */
static int child_pidfd(int target, long ppid)
{
	int pidfd = (int)syscall(SYS_pidfd_open, ppid, 0L), fd;

	if (pidfd < 0)
		return 100;
	fd = (int)syscall(SYS_pidfd_getfd, (long)pidfd, (long)target, 0L);
	if (fd < 0 || !uiommu_is_fd(fd))
		return 101;
	return (int)ioas_alloc(fd);
}

/* "loop SOCK": maps and unmaps on the IOAS it is told of, until killed (bounded). */
static int child_loop(int sock)
{
	uint32_t ioas;
	uint64_t iova, one = 1;
	void *buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = recv_fd(sock, &ioas, sizeof(ioas));

	if (fd < 0 || buf == MAP_FAILED)
		return 1;
	for (long i = 0; i < 10000000; i++) {
		if (ioas_map(fd, ioas, buf, PS, &iova))
			return 2;
		if (i == 100 && write(sock, &one, sizeof(one)) != sizeof(one))
			return 3;
		if (ioas_unmap_len(fd, ioas, iova, PS) != PS)
			return 4;
	}
	return 0;
}

/* "server SOCK": opens /dev/iommu, allocates IOAS 1, hands the fd over, waits to be killed. */
static int child_server(int sock)
{
	int fd = open("/dev/iommu", O_RDWR);
	char c = 0;

	if (fd < 0 || ioas_alloc(fd) != 1 || send_fd(sock, fd, &c, 1))
		return 1;
	close(fd);
	return read(sock, &c, 1) >= 0 ? 0 : 2;
}

/*
 * "serverfork SOCK": child_server's context, then at 'f' a fork that lives on without exec
 * (until the test's end of SOCK closes), answered 'f' once forked.
 */
static int child_serverfork(int sock)
{
	int fd = open("/dev/iommu", O_RDWR);
	char c = 0;
	pid_t copy;

	if (fd < 0 || ioas_alloc(fd) != 1 || send_fd(sock, fd, &c, 1))
		return 1;
	close(fd);
	if (read(sock, &c, 1) != 1 || c != 'f')
		return 2;
	copy = fork();
	if (copy < 0)
		return 3;
	if (!copy) {
		while (read(sock, &c, 1) > 0)
			;
		_exit(0);
	}
	if (write(sock, "f", 1) != 1)
		return 4;
	return read(sock, &c, 1) >= 0 ? 0 : 5;
}

/* The header a file's fd carries (src/iommufd/remote.h's struct wire_fd_header). */
struct peeked_header {
	uint64_t magic;
	uint32_t version;
	int32_t pid;
	char name[40];
	uint64_t token;
	uint8_t secret[16];
};

/* "garbage SOCK": talks nonsense to the server, then uses the fd as it should. */
static int child_garbage(int sock)
{
	struct peeked_header hdr;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char junk[200], c;
	int fd = recv_fd(sock, &c, 1), s;
	socklen_t len;

	if (fd < 0 || recv(fd, &hdr, sizeof(hdr), MSG_PEEK) != sizeof(hdr))
		return 1;
	hdr.name[sizeof(hdr.name) - 1] = 0;
	memcpy(sun.sun_path + 1, hdr.name, strlen(hdr.name));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(hdr.name));
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sun, len))
		return 2;
	memset(junk, 0xa5, sizeof(junk));
	if (write(s, junk, sizeof(junk)) != sizeof(junk))
		return 3;
	/* The server drops this connection (EOF, or a reset for what it left unread). */
	if (read(s, junk, sizeof(junk)) > 0)
		return 4;
	close(s);
	return ioas_alloc(fd) == 2 ? 0 : 5;
}

/* "race SOCK": IOAS alloc/map/unmap/destroy racing the parent on the same IDs. */
static int child_race(int sock)
{
	void *buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char c;
	int fd = recv_fd(sock, &c, 1);

	if (fd < 0 || buf == MAP_FAILED)
		return 1;
	for (int i = 0; i < 300; i++) {
		uint32_t ioas = ioas_alloc(fd);
		uint64_t iova;

		if (!ioas)
			return 2;
		/* Another process may destroy it first: ENOENT is all it may see. */
		if (ioas_map(fd, ioas, buf, PS, &iova)) {
			if (errno != ENOENT)
				return 3;
			continue;
		}
		if (ioas_unmap_len(fd, ioas, iova, PS) < 0 && errno != ENOENT)
			return 4;
		if (destroy(fd, ioas) && errno != ENOENT)
			return 5;
		if (destroy(fd, ioas + 1) && errno != ENOENT && errno != EBUSY)
			return 6;
	}
	return 0;
}

/*
 * "sweep SOCK": fails each fallible step of the first call on an adopted fd in turn (the
 * connection, its HELLO, the pool): each failure is a clean ENOMEM or ENODEV and leaves
 * nothing behind, and the next call works. Then a private buffer mapped while the context
 * has a domain (a window address in the server) and unmapped.
 */
static int child_sweep(int sock)
{
	void *buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned long nth, left = 0;
	unsigned int absorbed = 0;
	uint32_t ioas;
	uint64_t iova;
	int fd = recv_fd(sock, &ioas, sizeof(ioas));

	if (fd < 0 || !uiommu_is_fd(fd) || buf == MAP_FAILED)
		return 1;
	for (nth = 1; uiommu_fail_nth_available() && nth < 100 && !left; nth++) {
		struct iommu_destroy cmd = { .size = sizeof(cmd), .id = 0x12345 };
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = ioctl(fd, IOMMU_DESTROY, &cmd);
		left = uiommu_fail_nth_disarm();
		/* The call reached the server (ENOENT), or failed cleanly before it did. */
		if (rc != -1 || (left && errno != ENOENT) ||
		    (!left && errno != ENOMEM && errno != ENODEV && errno != ENOENT))
			return 2;
	}
	if (uiommu_fail_nth_available() && !left)
		return 3;
	/* Private memory under a domain: mapped through the server's window; unmapped again. */
	if (ioas_map(fd, ioas, buf, PS, &iova) || ioas_unmap_len(fd, ioas, iova, PS) != PS)
		return 4;
	/*
	 * A fault queue made for us: its fd is adopted by a CLAIM round trip and its number put
	 * in the reply. Each failure is a clean ENOMEM, ENODEV, EIO or EFAULT (the reply not
	 * put right); a success gives an event fd of ours. One failure is absorbed: the note
	 * that tells the server we hold the fd (docs/processes.md, "Event fds"), after which the
	 * fd works, only unknown to the server as a holder.
	 */
	left = 0;
	for (nth = 1; uiommu_fail_nth_available() && nth < 100 && !left; nth++) {
		struct iommu_fault_alloc fq = { .size = sizeof(fq) };
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq);
		left = uiommu_fail_nth_disarm();
		if (rc && errno != ENOMEM && errno != ENODEV && errno != EIO && errno != EFAULT)
			return 5;
		if (!left && !rc && absorbed++)
			return 6; /* a failure was injected: only the note's is absorbed */
		if (!rc && (!uiommu_event_is_fd((int)fq.out_fault_fd) ||
			    close((int)fq.out_fault_fd) || destroy(fd, fq.out_fault_id)))
			return 7;
	}
	if (uiommu_fail_nth_available() && (!left || absorbed != 1))
		return 8;
	return 0;
}

/* Is the page at @p mapped? mincore()'s ENOMEM says it is not. */
static bool page_mapped(void *p)
{
	unsigned char v;

	return !syscall(SYS_mincore, p, PS, &v) || errno != ENOMEM;
}

/* The default huge page size (/proc/meminfo's Hugepagesize), 0 if none. */
static size_t huge_page_size(void)
{
	unsigned long kb = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %lu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (size_t)kb << 10;
}

/*
 * "private SOCK": maps four pages of its private anonymous memory (0x11) into the IOAS it was
 * handed ({iova, address} back), as two mappings of two pages at consecutive IOVAs (two pins:
 * the server's window gives them two extents, and a DMA over all four crosses from one to the
 * other), then runs the test's commands, three bytes each (op, page, value): 'v' (is every
 * byte of the page the value? 'y' or 'n'), 's' (store the value in every byte), 'r' (replace
 * the page: mmap(MAP_FIXED) of new private memory holding the value), 'u' (munmap it, then map
 * new memory holding the value at the same place with the raw system call, which nothing
 * intercepts), 'm' (mremap it elsewhere, then the same), 'h' (munmap it with the raw system
 * call: a hole the server is not told of), 'H' (mmap(MAP_FIXED|MAP_HUGETLB) of one page at
 * the first page, a huge page boundary: the kernel replaces the whole huge page, all four,
 * even where it then fails for want of a free huge page; every page then holds the value, in
 * the huge page or, where the failure left a hole, in new memory the raw system call maps;
 * 's' where it failed before it replaced anything), 'R' (mmap(MAP_FIXED) of a region of the
 * iommufd it was handed over the page and those after it: the offset and length follow the
 * command), 'q' (exit, leaving the mappings in the IOAS). The rest answer 'k'. The pages start at a huge page boundary, where the host has one.
 */
static int child_private(int sock)
{
	size_t huge = huge_page_size() ? huge_page_size() : PS;
	uint8_t *area = mmap(NULL, 2 * huge, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *buf = (uint8_t *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
	uint8_t *away = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t msg[2];
	uint32_t ioas;
	int fd = recv_fd(sock, &ioas, sizeof(ioas));
	uint8_t cmd[3];
	char reply;

	if (fd < 0 || area == MAP_FAILED || away == MAP_FAILED ||
	    mmap(buf, 4 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		 -1, 0) != buf)
		return 1;
	memset(buf, 0x11, 4 * PS);
	/* Four free IOVAs in a row, then the two halves at them. */
	if (ioas_map(fd, ioas, buf, 4 * PS, &msg[0]) ||
	    ioas_unmap_len(fd, ioas, msg[0], 4 * PS) != 4 * PS ||
	    ioas_map_fixed(fd, ioas, msg[0], buf, 2 * PS) ||
	    ioas_map_fixed(fd, ioas, msg[0] + 2 * PS, buf + 2 * PS, 2 * PS))
		return 2;
	msg[1] = (uintptr_t)buf;
	if (write(sock, msg, sizeof(msg)) != sizeof(msg))
		return 3;
	while (read(sock, cmd, 3) == 3 && cmd[0] != 'q' && cmd[1] < 4) {
		uint8_t *page = buf + cmd[1] * PS;

		reply = 'k';
		if (cmd[0] == 'v') {
			reply = 'y';
			for (size_t i = 0; i < PS; i++)
				if (page[i] != cmd[2])
					reply = 'n';
		} else if (cmd[0] == 's') {
			memset(page, cmd[2], PS);
		} else if (cmd[0] == 'r') {
			if (mmap(page, PS, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != page)
				return 4;
			memset(page, cmd[2], PS);
		} else if (cmd[0] == 'u' || cmd[0] == 'm') {
			if ((cmd[0] == 'u' ? munmap(page, PS) :
					     mremap(page, PS, PS, MREMAP_MAYMOVE | MREMAP_FIXED,
						    away) != away) ||
			    (void *)syscall(SYS_mmap, page, PS, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
					    0) != page)
				return 5;
			memset(page, cmd[2], PS);
		} else if (cmd[0] == 'h') {
			if (syscall(SYS_munmap, page, PS))
				return 7;
		} else if (cmd[0] == 'H') {
			if (mmap(buf, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
				 MAP_FIXED | MAP_HUGETLB, -1, 0) == buf) {
				memset(buf, cmd[2], 4 * PS);
			} else if (page_mapped(buf)) {
				reply = 's';
			} else {
				for (uint8_t *p = buf; p < buf + 4 * PS; p += PS) {
					if ((void *)syscall(SYS_mmap, p, PS,
							    PROT_READ | PROT_WRITE,
							    MAP_PRIVATE | MAP_ANONYMOUS |
							    MAP_FIXED_NOREPLACE, -1, 0) != p)
						return 8;
					memset(p, cmd[2], PS);
				}
			}
		} else if (cmd[0] == 'R') {
			uint64_t reg[2];

			if (read(sock, reg, sizeof(reg)) != sizeof(reg) ||
			    mmap(page, reg[1], PROT_READ, MAP_SHARED | MAP_FIXED, fd,
				 (off_t)reg[0]) != page)
				return 9;
		}
		if (write(sock, &reply, 1) != 1)
			return 6;
	}
	return 0;
}

/*
 * "privexec SOCK": maps a page of its private memory into the IOAS it was handed ({iova,
 * address} back), then, at the test's word, execs itself as "privexec2 SOCK ADDRESS" ('X':
 * with the raw system call, which nothing intercepts; else libc's): the new image (same pid)
 * maps a page of its own at the same address (0x99) and says 'k', or 's' when that address is
 * taken; at the next word, 'y' when its page still holds 0x99, else 'n'.
 */
static int child_privexec(int sock)
{
	uint8_t *buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char a1[24], a2[24], c;
	uint64_t msg[2];
	uint32_t ioas;
	int fd = recv_fd(sock, &ioas, sizeof(ioas));

	if (fd < 0 || buf == MAP_FAILED)
		return 1;
	memset(buf, 0x11, PS);
	if (ioas_map(fd, ioas, buf, PS, &msg[0]))
		return 2;
	msg[1] = (uintptr_t)buf;
	if (write(sock, msg, sizeof(msg)) != sizeof(msg) || read(sock, &c, 1) != 1)
		return 3;
	snprintf(a1, sizeof(a1), "%d", sock);
	snprintf(a2, sizeof(a2), "%lu", (unsigned long)msg[1]);
	fcntl(sock, F_SETFD, 0);
	if (c == 'X') {
		char *argv[] = { "test_processes", "--child", "privexec2", a1, a2, NULL };

		syscall(SYS_execve, "/proc/self/exe", argv, environ);
		return 4;
	}
	execl("/proc/self/exe", "test_processes", "--child", "privexec2", a1, a2, (char *)NULL);
	return 4;
}

static int child_privexec2(int sock, unsigned long addr)
{
	uint8_t *page = mmap((void *)addr, PS, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	char c, reply = 'y';

	if (page != (void *)addr)
		return write(sock, "s", 1) == 1 ? 0 : 1;
	memset(page, 0x99, PS);
	if (write(sock, "k", 1) != 1 || read(sock, &c, 1) != 1)
		return 2;
	for (size_t i = 0; i < PS; i++)
		if (page[i] != 0x99)
			reply = 'n';
	return write(sock, &reply, 1) == 1 ? 0 : 3;
}

/*
 * "vfio SOCK": a VMM given an iommufd and a VFIO device cdev by its manager: binds the device
 * to the context with its own fd numbers, reads the device's info, attaches it to a new IOAS.
 * "vfioready SOCK": the same, but it reaches the iommufd's server (an IOAS) and says 'r'
 * before it waits for the cdev, so that its bind starts as soon as the cdev arrives.
 */
static int child_vfio(int sock, bool ready)
{
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint32_t ids[2];
	char c;
	int fd = recv_fd(sock, &c, 1), vfd;

	if (fd < 0 || (ready && (!ioas_alloc(fd) || write(sock, "r", 1) != 1)))
		return 1;
	vfd = recv_fd(sock, &c, 1);
	if (vfd < 0 || !uiommu_is_fd(vfd))
		return 1;
	if (vfio_bind(vfd, fd, &ids[0]))
		return 2;
	if (ioctl(vfd, VFIO_DEVICE_GET_INFO, &info) || !info.num_regions)
		return 3;
	ids[1] = attach.pt_id = ioas_alloc(fd);
	if (!attach.pt_id || ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		return 4;
	if (write(sock, ids, sizeof(ids)) != sizeof(ids))
		return 5;
	return read(sock, &c, 1) == 1 ? 0 : 6;
}

/*
 * MSI-X vector 0 of @vfd on this process's own eventfd, which its loopback trigger signals
 * before the call returns; then MSI-X off. 0, or -1.
 */
static int vmm_irqs_own_eventfd(int vfd)
{
	struct {
		struct vfio_irq_set hdr;
		int32_t fd;
	} s = { .hdr = { .argsz = sizeof(s),
			 .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			 .index = VFIO_PCI_MSIX_IRQ_INDEX, .count = 1 } };
	uint64_t n = 0;
	int rc = -1;

	s.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s.fd < 0 || ioctl(vfd, VFIO_DEVICE_SET_IRQS, &s))
		goto out;
	s.hdr.argsz = sizeof(s.hdr);
	s.hdr.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
	if (ioctl(vfd, VFIO_DEVICE_SET_IRQS, &s.hdr))
		goto out;
	if (read(s.fd, &n, sizeof(n)) != sizeof(n) || n != 1)
		goto out;
	s.hdr.count = 0;
	rc = ioctl(vfd, VFIO_DEVICE_SET_IRQS, &s.hdr);
out:
	if (s.fd >= 0)
		close(s.fd);
	return rc;
}

/*
 * "irqs SOCK": a VMM's VFIO_DEVICE_SET_IRQS names eventfds of its own process (QEMU's, with the
 * iommufd and the cdev handed to it): the MSI-X vector it binds signals this process's
 * eventfd, not whatever the serving process has at that number.
 */
static int child_irqs(int sock)
{
	uint32_t devid;
	char c;
	int fd = recv_fd(sock, &c, 1), vfd = recv_fd(sock, &c, 1);

	if (fd < 0 || vfd < 0 || vfio_bind(vfd, fd, &devid))
		return 1;
	if (vmm_irqs_own_eventfd(vfd))
		return 2;
	return write(sock, "k", 1) == 1 ? 0 : 3;
}

/*
 * "subfd SOCK": an fd made by a call from this process (the selftest's access fd) is this
 * process's fd, with this process's number in the reply; reading through it gives the
 * serving process's memory.
 */
static int child_subfd(int sock)
{
	struct iommu_test_cmd create = { .size = sizeof(create), .op = IOMMU_TEST_OP_CREATE_ACCESS };
	struct iommu_test_cmd rw = { .size = sizeof(rw), .op = IOMMU_TEST_OP_ACCESS_RW };
	uint64_t msg[2]; /* the IOAS, the IOVA of 16 bytes of 0x5a */
	uint8_t got[16];
	int fd = recv_fd(sock, msg, sizeof(msg));

	if (fd < 0)
		return 1;
	create.id = (uint32_t)msg[0];
	if (ioctl(fd, IOMMU_TEST_CMD, &create))
		return 2;
	if (!uiommu_is_fd((int)create.create_access.out_access_fd))
		return 3;
	rw.id = create.create_access.out_access_fd;
	rw.access_rw.iova = msg[1];
	rw.access_rw.length = sizeof(got);
	rw.access_rw.uptr = (uintptr_t)got;
	if (ioctl(fd, IOMMU_TEST_CMD, &rw))
		return 4;
	for (unsigned int i = 0; i < sizeof(got); i++)
		if (got[i] != 0x5a)
			return 5;
	return close((int)create.create_access.out_access_fd) ? 6 : 0;
}

/*
 * A VMM's context as QEMU's CPR wants it: a new /dev/iommu fd whose IOAS 1 maps 2 pages of a
 * memfd filled with @fill (MAP_FILE, as QEMU's memory-backend-memfd: only file mappings can
 * change process). The fd (the memfd closed: the mapping holds its file), or -1.
 */
static int cpr_context(uint8_t fill, uint64_t *iova)
{
	int fd = open("/dev/iommu", O_RDWR), mfd = memfd_create("guest", MFD_CLOEXEC);
	struct iommu_ioas_map_file mf = {
		.size = sizeof(mf), .ioas_id = 1, .length = 2 * PS,
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
	};
	void *p = MAP_FAILED;

	if (fd < 0 || mfd < 0 || ftruncate(mfd, 2 * PS))
		goto err;
	p = mmap(NULL, 2 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (p == MAP_FAILED)
		goto err;
	memset(p, fill, 2 * PS);
	munmap(p, 2 * PS);
	mf.fd = mfd;
	if (ioas_alloc(fd) != 1 || ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf))
		goto err;
	close(mfd);
	*iova = mf.iova;
	return fd;
err:
	close(mfd);
	close(fd);
	return -1;
}

/*
 * "cpr SOCK": QEMU's CPR: a VMM serving its context (handed to the test over SOCK) maps its
 * memfd guest memory, fails an exec (ENOENT: everything works on), then execs itself keeping
 * the fds.
 */
static int child_cpr(int sock)
{
	uint64_t msg[2] = { 0 };
	int fd = cpr_context(0, &msg[1]);
	char a1[24], a2[24], a3[24], c;
	uint32_t id;

	if (fd < 0)
		return 3;
	if (send_fd(sock, fd, msg, sizeof(msg)) || read(sock, &c, 1) != 1)
		return 4;
	/*
	 * A failed exec: the hand-over is undone, this process serves as before; with each of the
	 * hand-over's fallible steps failing in turn (no hand-over: the same for a failed exec).
	 */
	for (unsigned long nth = 1, left = 0; !left && nth < 100; nth++) {
		if (uiommu_fail_nth_available())
			uiommu_fail_nth_arm(nth);
		errno = 0;
		if (execl("/nonexistent/uiommu-cpr", "cpr", (char *)NULL) != -1 || errno != ENOENT)
			return 5;
		left = uiommu_fail_nth_available() ? uiommu_fail_nth_disarm() : 1;
		id = ioas_alloc(fd);
		if (id != 3 || destroy(fd, id))
			return 8;
	}
	msg[0] = ioas_alloc(fd);
	if (write(sock, msg, sizeof(msg)) != sizeof(msg) || read(sock, &c, 1) != 1)
		return 6;
	snprintf(a1, sizeof(a1), "%d", fd);
	snprintf(a2, sizeof(a2), "%d", sock);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)msg[1]);
	fcntl(sock, F_SETFD, 0);
	execl("/proc/self/exe", "test_processes", "--child", "cpr2", a1, a2, a3, (char *)NULL);
	return 7;
}

/*
 * "cpr2 FD SOCK IOVA": the new image: its kept fd reaches the context (served now by the
 * process the exec handed it to), with the IOAS and the mapping; CHANGE_PROCESS takes the pins
 * and charges; it reports an IOAS it allocates and waits for the test.
 */
static int child_cpr2(int fd, int sock, uint64_t iova)
{
	struct iommu_ioas_change_process cp = { .size = sizeof(cp) };
	uint64_t msg[2] = { 0 };
	char c;

	if (!uiommu_is_fd(fd))
		return 10;
	if (ioctl(fd, IOMMU_IOAS_CHANGE_PROCESS, &cp))
		return 11;
	if (ioas_unmap_len(fd, 1, iova, 2 * PS) != 2 * PS)
		return 12;
	/* The mapping was there, and only once. */
	if (ioas_unmap_len(fd, 1, iova, 2 * PS) != -1 || errno != ENOENT)
		return 13;
	msg[0] = ioas_alloc(fd);
	if (write(sock, msg, sizeof(msg)) != sizeof(msg) || read(sock, &c, 1) != 1)
		return 14;
	return destroy(fd, (uint32_t)msg[0]) || destroy(fd, 1) ? 15 : 0;
}

/*
 * "cprfds SOCK": a serving process that holds a pipe's write end (from the test, over SOCK)
 * and the CPR context (nothing pins its memfd yet: the first pin, after the exec, is the next
 * server's, through its own duplicate of the memfd) with a vIOMMU whose region says 0x77,
 * which it maps, then execs itself keeping the pipe (the mapping goes with the old image).
 */
static int child_cprfds(int sock)
{
	struct iommu_viommu_selftest data = { .in_data = 0x77 };
	uint64_t msg[4] = { 0 };
	int fd = cpr_context(0xa5, &msg[0]);
	char a1[24], a2[24], a3[24], c;
	int wr = recv_fd(sock, &c, 1);
	uint32_t viommu;

	if (fd < 0 || wr < 0)
		return 2;
	if (viommu_with_region(fd, &data, &viommu))
		return 3;
	msg[1] = data.out_mmap_offset;
	msg[2] = data.out_mmap_length;
	msg[3] = viommu;
	if (mmap(NULL, msg[2], PROT_READ, MAP_SHARED, fd, (off_t)msg[1]) == MAP_FAILED)
		return 4;
	if (send_fd(sock, fd, msg, sizeof(msg)) || read(sock, &c, 1) != 1)
		return 5;
	snprintf(a1, sizeof(a1), "%d", fd);
	snprintf(a2, sizeof(a2), "%d", sock);
	snprintf(a3, sizeof(a3), "%d", wr);
	if (fcntl(sock, F_SETFD, 0) || fcntl(wr, F_SETFD, 0))
		return 6;
	execl("/proc/self/exe", "test_processes", "--child", "cprfds2", a1, a2, a3, (char *)NULL);
	return 7;
}

/* "cprfds2 FD SOCK WR": the new image holds the pipe until the test lets it exit. */
static int child_cprfds2(int fd, int sock, int wr)
{
	char c = 0;

	if (!uiommu_is_fd(fd) || fcntl(wr, F_GETFD) < 0)
		return 10;
	if (write(sock, &c, 1) != 1 || read(sock, &c, 1) != 1)
		return 11;
	return 0;
}


/* ---- a VMM's own cdev bound to its manager's iommufd (the device goes where the context is) -- */

#define XBIND_NODE "/dev/vfio/devices/vfio3" /* with MSI-X */

/* The config space's vendor ID through @vfd: a function's, never 0 or all ones. */
static int xbind_config_read(int vfd)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri),
				       .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t vendor = 0;

	if (ioctl(vfd, VFIO_DEVICE_GET_REGION_INFO, &ri) || !ri.size ||
	    pread(vfd, &vendor, sizeof(vendor), (off_t)ri.offset) != sizeof(vendor))
		return -1;
	return vendor && vendor != 0xffff ? 0 : -1;
}

/*
 * "xbind SOCK": QEMU's -object iommufd,fd=N with -device vfio-pci,iommufd=...: handed its
 * manager's iommufd and an IOAS ID of it, it opens the cdev itself and binds, reads the info,
 * attaches to the IOAS, reads config space and signals its own eventfd through SET_IRQS; a
 * second bind of the device (the same file, another file here) is EINVAL. It sends the device
 * and HWPT IDs and the cdev, closes the cdev at the test's word, says so ('c') and waits for
 * EOF.
 * Exit status: 0, or the step that failed.
 */
static int child_xbind(int sock)
{
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint32_t ioas, ids[2];
	int fd = recv_fd(sock, &ioas, sizeof(ioas)), vfd, other;
	char c;

	vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
	if (fd < 0 || vfd < 0 || !uiommu_is_fd(vfd))
		return 1;
	if (vfio_bind(vfd, fd, &ids[0]) || !ids[0])
		return 2;
	if (ioctl(vfd, VFIO_DEVICE_GET_INFO, &info) || !info.num_regions || !info.num_irqs)
		return 3;
	attach.pt_id = ioas;
	if (ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) || attach.pt_id == ioas)
		return 4;
	ids[1] = attach.pt_id;
	if (xbind_config_read(vfd))
		return 5;
	if (vmm_irqs_own_eventfd(vfd))
		return 6;
	/* No BAR area maps: the file that holds the device is the manager's (ENODEV). */
	if (mmap(NULL, PS, PROT_READ, MAP_SHARED, vfd, 0) != MAP_FAILED || errno != ENODEV)
		return 11;
	/* Bound once: the same file, and another file of the device here, EINVAL as before. */
	other = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
	if (vfio_bind(vfd, fd, NULL) != -1 || errno != EINVAL || other < 0 ||
	    vfio_bind(other, fd, NULL) != -1 || errno != EINVAL || close(other))
		return 7;
	/* The test gets the IDs and a copy of the cdev, to call on as a third process. */
	if (write(sock, ids, sizeof(ids)) != sizeof(ids) || send_fd(sock, vfd, "f", 1) ||
	    read(sock, &c, 1) != 1)
		return 8;
	/* Its last close anywhere: the manager unbinds. */
	if (close(vfd) || write(sock, "c", 1) != 1)
		return 9;
	return read(sock, &c, 1) == 0 ? 0 : 10;
}

/* An errno a failed step may answer without leaving anything behind. */
static bool xsweep_errno_clean(int e)
{
	return e == ENOMEM || e == ENODEV || e == EIO || e == EFAULT;
}

/*
 * "xrev SOCK": the reverse of xbind, QEMU's -device vfio-pci,fd=N (the cdev opened by its
 * manager, served there) with a plain -object iommufd (its own): it binds the handed cdev to a
 * context of its own (the manager binds the device to it through this process), attaches to
 * its IOAS, reads the info and config space, signals its own eventfd, maps BAR 0 (the device
 * is this process's now) and checks that a second bind anywhere here is EINVAL. The data that
 * comes with the cdev is NTH: not 0, the NTH fail point of this process's own fails during the
 * bind and the first call after it (the redirect), which answers a clean errno and leaves
 * nothing: the step succeeds when made again. It says 'b' when all went through, waits for a
 * byte, and makes its calls again ('b'; the manager may be gone by then), then closes the
 * cdev and says 'c'.
 * Exit status: 0, the errno of the failed step (NTH), 99 (NTH: a failure absorbed), or 100 and
 * up for the step that went wrong.
 */
static int xrev_calls(int vfd, int fd, uint32_t ioas)
{
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	int other;
	void *p;

	if (ioctl(vfd, VFIO_DEVICE_GET_INFO, &info) || !info.num_regions || !info.num_irqs)
		return 110;
	if (ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) || attach.pt_id == ioas)
		return 111;
	if (xbind_config_read(vfd))
		return 112;
	if (vmm_irqs_own_eventfd(vfd))
		return 113;
	/* The device is this process's: its BAR maps here, as the kernel's would. */
	if (ioctl(vfd, VFIO_DEVICE_GET_REGION_INFO, &bar) || !(bar.flags & VFIO_REGION_INFO_FLAG_MMAP))
		return 114;
	p = mmap(NULL, PS, PROT_READ, MAP_SHARED, vfd, (off_t)bar.offset);
	if (p == MAP_FAILED || munmap(p, PS))
		return 115;
	/* Bound once: the same file, and another file of the device here, EINVAL. */
	other = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
	if (vfio_bind(vfd, fd, NULL) != -1 || errno != EINVAL || other < 0 ||
	    vfio_bind(other, fd, NULL) != -1 || errno != EINVAL || close(other))
		return 116;
	return 0;
}

static int child_xrev(int sock)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd, rc, e = 0, step = 0;
	unsigned long nth = 0, left = 1;
	uint32_t devid = 0, ioas;
	char c;

	vfd = recv_fd(sock, &nth, sizeof(nth));
	if (vfd < 0 || fd < 0)
		return 100;
	if (!uiommu_is_fd(vfd))
		return uiommu_fd_adopt(vfd) ? 60 : 107; /* a refused adoption (a serving sweep) */
	ioas = ioas_alloc(fd);
	if (!ioas)
		return 101;
	if (nth)
		uiommu_fail_nth_arm(nth);
	rc = vfio_bind(vfd, fd, &devid);
	if (rc) {
		e = errno;
		step = 1;
	} else if (ioctl(vfd, VFIO_DEVICE_GET_INFO, &info)) {
		e = errno;
		step = 2;
	}
	if (nth)
		left = uiommu_fail_nth_disarm();
	if (step && !xsweep_errno_clean(e))
		return 102;
	/* Nothing stayed of a failed step: made again, it goes through. */
	if (step == 1 && (vfio_bind(vfd, fd, &devid) || !devid))
		return 103;
	if (!devid)
		return 104;
	rc = xrev_calls(vfd, fd, ioas);
	if (rc)
		return rc;
	if (write(sock, "b", 1) != 1 || read(sock, &c, 1) != 1)
		return 105;
	rc = xrev_calls(vfd, fd, ioas);
	if (rc)
		return rc + 20;
	if (close(vfd) || write(sock, "c", 1) != 1 || read(sock, &c, 1) != 0)
		return 106;
	if (step)
		return e;
	return nth && !left ? 99 : 0;
}

/* A BAR0 offset of a vfio-pci device fd's regions (VFIO_PCI_OFFSET_SHIFT). */
#define XREV_BAR0(off) ((off_t)((uint64_t)VFIO_PCI_BAR0_REGION_INDEX << 40) + (off_t)(off))

/* The doorbell page of the dma-test device @vfd (MAP_FAILED and errno on failure). */
static volatile uint32_t *xrev_doorbell_map(int vfd)
{
	return mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED, vfd,
		    XREV_BAR0(DMA_TEST_DOORBELL_PAGE));
}

/*
 * @db, @vfd's doorbell page, is the device's page both ways: a store through it is what pread
 * of the BAR reads, a pwrite shows in it. Unmaps it. 0 or -1.
 */
static int xrev_doorbell_check(int vfd, volatile uint32_t *db)
{
	uint32_t v = 0;
	int rc = 0;

	db[2] = 9; /* queue 1's doorbell */
	if (pread(vfd, &v, sizeof(v), XREV_BAR0(DMA_TEST_DOORBELL(1))) != sizeof(v) || v != 9)
		rc = -1;
	v = 7;
	if (!rc && (pwrite(vfd, &v, sizeof(v), XREV_BAR0(DMA_TEST_DOORBELL(1))) != sizeof(v) ||
		    db[2] != 7))
		rc = -1;
	return munmap((void *)db, PS) ? -1 : rc;
}

/* What read() at the position finds in the dma-test device's BAR0 from 0: ID, VERSION, ... */
static const uint32_t xrev_regs[] = { 0x54414d44, 0x00010000, 4 };
#define XREV_SCRATCH 0x10
#define XREV_PATTERN 0x1122334455667788ull

/*
 * The read() at the position of a child's first call on the cdev: 4 bytes at 0, the device's
 * ID. 0, or the errno.
 */
static int xrev_read_id(int vfd)
{
	uint32_t v = 0;
	ssize_t n = read(vfd, &v, sizeof(v));

	if (n < 0)
		return errno;
	return n == sizeof(v) && v == xrev_regs[0] ? 0 : 1;
}

/*
 * A read() or write() at the position of @n bytes, made again once after a clean errno: a
 * serving sweep's failure may come at any call of the child's that the manager serves (each
 * reaches the position there), and a failed one moved nothing. Whether it did all of @n.
 */
static bool xrev_rw_pos(int vfd, void *buf, size_t n, bool wr)
{
	for (int i = 0; i < 2; i++) {
		ssize_t done = wr ? write(vfd, buf, n) : read(vfd, buf, n);

		if (done >= 0 || !xsweep_errno_clean(errno))
			return done == (ssize_t)n;
	}
	return false;
}

/*
 * The rest of the reads at the position, after the ID: VERSION and NR_QUEUES, then CAPS
 * (whatever it says), which leaves the position at SCRATCH. 0 or -1.
 */
static int xrev_read_on(int vfd)
{
	uint32_t v;

	for (unsigned int i = 1; i < sizeof(xrev_regs) / sizeof(xrev_regs[0]); i++)
		if (!xrev_rw_pos(vfd, &v, sizeof(v), false) || v != xrev_regs[i])
			return -1;
	return xrev_rw_pos(vfd, &v, sizeof(v), false) ? 0 : -1;
}

/*
 * After the manager's turn: SCRATCH holds XREV_PATTERN when it wrote it at the position (then
 * the position moved past it, to 0x18), else 0 (the position is still SCRATCH's). A write()
 * at the position lands where the position is. 0 or -1.
 */
static int xrev_write_on(int vfd)
{
	uint64_t v = 0, want;
	uint32_t lo = 0xcafef00d;
	bool written;

	if (pread(vfd, &v, sizeof(v), XREV_BAR0(XREV_SCRATCH)) != sizeof(v))
		return -1;
	written = v == XREV_PATTERN;
	if (!written && v)
		return -1;
	/* At 0x18 (INT_STATUS, write 1 to clear: nothing is set) or at SCRATCH. */
	if (!xrev_rw_pos(vfd, &lo, sizeof(lo), true))
		return -1;
	want = written ? XREV_PATTERN : lo;
	if (pread(vfd, &v, sizeof(v), XREV_BAR0(XREV_SCRATCH)) != sizeof(v) || v != want)
		return -1;
	return 0;
}

/*
 * "xrevmap SOCK", "xrevread SOCK": as xrev, but the first call on the cdev after the bind is
 * an mmap of a BAR (the redirect comes with it), or a read() at the file's position (the
 * redirect, and the position, which is the cdev file's, at its server), NTH of this
 * process's fail points failing there: a clean errno (or vfio-pci's own EMFILE for the mmap),
 * and the call made again goes through (a read at the same position: a failed one moved
 * nothing). It says 'b' (a reader at SCRATCH), waits for a byte, writes at the position
 * (where the test's own write at it may have moved it), closes the cdev and says 'c'.
 * Exit status: 0, the first call's errno (NTH), 99 (a failure absorbed), or 100 and up.
 */
static int child_xrevfirst(int sock, bool rd)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd, rc;
	volatile uint32_t *db = MAP_FAILED;
	unsigned long nth = 0, left = 1;
	uint32_t devid = 0;
	char c;

	vfd = recv_fd(sock, &nth, sizeof(nth));
	if (vfd < 0 || fd < 0)
		return 100;
	if (!uiommu_is_fd(vfd))
		return uiommu_fd_adopt(vfd) ? 60 : 107;
	/* A serving sweep may fail the bind: a clean errno, and made again it goes through. */
	if (vfio_bind(vfd, fd, &devid) && (!xsweep_errno_clean(errno) || vfio_bind(vfd, fd, &devid)))
		return 101;
	if (!devid)
		return 109;
	if (nth)
		uiommu_fail_nth_arm(nth);
	if (rd) {
		rc = xrev_read_id(vfd);
	} else {
		db = xrev_doorbell_map(vfd);
		rc = db == MAP_FAILED ? errno : 0;
	}
	if (nth)
		left = uiommu_fail_nth_disarm();
	if (rc == 1)
		return 102;
	/* vfio-pci's mmap makes an fd of its own (vfio_pci_zap.c): EMFILE is its errno too. */
	if (rc && !xsweep_errno_clean(rc) && (rd || rc != EMFILE))
		return 103;
	if (rd) {
		if ((rc && xrev_read_id(vfd)) || xrev_read_on(vfd))
			return 104;
	} else {
		if (rc)
			db = xrev_doorbell_map(vfd);
		if (db == MAP_FAILED || xrev_doorbell_check(vfd, db))
			return 105;
	}
	if (write(sock, "b", 1) != 1 || read(sock, &c, 1) != 1)
		return 106;
	if (rd && xrev_write_on(vfd))
		return 110;
	if (close(vfd) || write(sock, "c", 1) != 1 || read(sock, &c, 1) != 0)
		return 108;
	if (rc)
		return rc;
	return nth && !left ? 99 : 0;
}

/*
 * "xlast SOCK": a third process handed a copy of a cdev file whose device another process
 * binds through a delegate; its copy becomes the file's last fd anywhere. At the test's word
 * it closes it and binds the device at once, a file of its own to a context of its own:
 * the release that close starts goes from the cdev's server to the delegate's, in an order
 * the session's list need not follow. It sends the bind's result (0 or the errno) and waits
 * for EOF. Exit status: 0, or the step that failed.
 */
static int child_xlast(int sock)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), own = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
	int vfd, rc;
	char c;

	vfd = recv_fd(sock, &c, 1);
	if (vfd < 0 || fd < 0 || own < 0 || !uiommu_is_fd(vfd))
		return 1;
	if (write(sock, "r", 1) != 1 || read(sock, &c, 1) != 1)
		return 2;
	if (close(vfd))
		return 3;
	rc = vfio_bind(own, fd, NULL) ? errno : 0;
	if (write(sock, &rc, sizeof(rc)) != sizeof(rc))
		return 4;
	if (close(own) || close(fd))
		return 5;
	return read(sock, &c, 1) == 0 ? 0 : 6;
}

/*
 * "xmgr SOCK": a manager (libvirt) that opens the cdev, hands it to the test and waits to be
 * killed, with its copy open.
 */
static int child_xmgr(int sock)
{
	int vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
	char c = 0;

	if (vfd < 0 || send_fd(sock, vfd, &c, 1))
		return 1;
	return read(sock, &c, 1) == 0 ? 0 : 2;
}

/*
 * "xthird SOCK": a third process handed a cdev that another process bound to the test's
 * context (xbind), with an IOAS ID of that context and NTH: its calls on it are its own, made
 * at the test (info, config space, its own eventfd signalled through SET_IRQS, an attach to the
 * IOAS, EINVAL for a second bind). NTH not 0: the NTH fail point of its own fails during its
 * first call (the redirect and the call at the target), which answers a clean errno and, made
 * again, goes through. Exit status: 0, the errno of the failed call (NTH), 99 (a failure
 * absorbed), or 100 and up for the step that went wrong.
 */
static int child_xthird(int sock)
{
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd, rc, e = 0;
	unsigned long left = 1;
	uint64_t msg[2]; /* the IOAS, NTH */

	vfd = recv_fd(sock, msg, sizeof(msg));
	if (vfd < 0 || fd < 0 || !uiommu_is_fd(vfd))
		return 100;
	if (msg[1])
		uiommu_fail_nth_arm(msg[1]);
	rc = ioctl(vfd, VFIO_DEVICE_GET_INFO, &info);
	e = errno;
	if (msg[1])
		left = uiommu_fail_nth_disarm();
	if (rc && !xsweep_errno_clean(e))
		return 101;
	if (rc && ioctl(vfd, VFIO_DEVICE_GET_INFO, &info))
		return 102;
	if (!info.num_regions || !info.num_irqs)
		return 103;
	if (xbind_config_read(vfd))
		return 104;
	if (vmm_irqs_own_eventfd(vfd))
		return 105;
	attach.pt_id = (uint32_t)msg[0];
	if (ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) || !attach.pt_id ||
	    attach.pt_id == msg[0])
		return 106;
	if (vfio_bind(vfd, fd, NULL) != -1 || errno != EINVAL)
		return 107;
	if (close(vfd) || close(fd))
		return 108;
	if (rc)
		return e;
	return msg[1] && !left ? 99 : 0;
}

/* A third process's calls on @vfd (child_xthird()), its own step @nth failing. Its status. */
static int xthird_round(int vfd, uint32_t ioas, unsigned long nth)
{
	uint64_t msg[2] = { ioas, nth };
	int sock, rc;
	pid_t pid = child_start_with("xthird", vfd, msg, sizeof(msg), &sock);

	if (pid < 0)
		return -1;
	rc = test_child_wait(pid);
	close(sock);
	return rc;
}

/*
 * "xsweep SOCK MODE": a bind of its own cdev to the manager's iommufd while a step fails: on
 * the serving side (MODE 0, armed by the test) or here (MODE 1: each step of this process's
 * bind in turn). A failed bind answers a clean errno and leaves the file unbound: the next
 * bind of it succeeds. Exit status: 0 (nothing failed; MODE 1: never), the errno of the
 * failed bind (MODE 0), the number of failures met (MODE 1, plus 200), 60 for a refused
 * adoption of the iommufd, 100 and up for anything else.
 */
static int child_xsweep(int sock, long mode)
{
	uint32_t dummy;
	int fd = recv_fd(sock, &dummy, sizeof(dummy)), vfd, rc, e, failed = 0;
	unsigned long nth, left = 0;

	if (fd < 0)
		return 100;
	if (!uiommu_is_fd(fd))
		return uiommu_fd_adopt(fd) ? 60 : 101;
	for (nth = 1; nth < 200 && !left; nth++) {
		vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
		if (vfd < 0)
			return 102;
		if (mode)
			uiommu_fail_nth_arm(nth);
		rc = vfio_bind(vfd, fd, NULL);
		e = errno;
		left = mode ? uiommu_fail_nth_disarm() : 1;
		if (rc) {
			if (!xsweep_errno_clean(e))
				return 103;
			/* Nothing stayed of it, here or at the server: it binds now. */
			if (vfio_bind(vfd, fd, NULL) || xbind_config_read(vfd))
				return 104;
			failed++;
		} else if (mode && !left) {
			return 105; /* a failure absorbed: a bind that went through regardless */
		}
		if (close(vfd))
			return 106;
		if (!mode)
			return rc ? e : 0;
	}
	return left && failed ? 200 + (failed > 50 ? 50 : failed) : 107;
}

/* ---- a group whose container another process serves (the group goes where the context is) - */

#define XGRP_IOVA (1ull << 20)
#define XGRP_FLAGS (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET)

/* The BDF of vfio3's function (dma-test, a group of its own) into @bdf; its group's number. */
static int xgrp_bdf(char *bdf, size_t len)
{
	char link[256];
	ssize_t n = readlink("/sys/class/vfio-dev/vfio3/device", link, sizeof(link) - 1);

	if (n <= 0)
		return -1;
	link[n] = '\0';
	snprintf(bdf, len, "%s", strrchr(link, '/') + 1);
	snprintf(link, sizeof(link), "/sys/class/vfio-dev/vfio3/device/iommu_group");
	return vfio_group_id_of_link(link);
}

static int xgrp_status(int g)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };

	return ioctl(g, VFIO_GROUP_GET_STATUS, &st) ? -1 : (int)st.flags;
}

static int xgrp_map(int c, void *buf)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf, .iova = XGRP_IOVA, .size = PS,
	};

	return ioctl(c, VFIO_IOMMU_MAP_DMA, &map);
}

/*
 * SET_CONTAINER of @c on @g and the status after it (the first call, perhaps redirected):
 * *@step 0 when both went through, else the one that failed (1, 2), and its errno.
 */
static int xgrp_set(int g, int c, int *step)
{
	*step = ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) ? 1 : xgrp_status(g) != XGRP_FLAGS ? 2 : 0;
	return *step ? errno : 0;
}

/* The function's DMA in this process's machine writes @what at XGRP_IOVA + 100. */
static int xgrp_dma(const char *bdf, const char *what)
{
	struct uiommu_dma_dev *dma = uiommu_dma_dev_open(bdf);
	ssize_t n;

	if (!dma)
		return -1;
	n = uiommu_dma_write(dma, 0, XGRP_IOVA + 100, what, strlen(what), 0);
	uiommu_dma_dev_close(dma);
	return n == (ssize_t)strlen(what) ? 0 : -1;
}

/*
 * A container set on @g, ours, through another process or not: GET_STATUS, type1v2, a page of
 * @buf mapped, the device fd (its config space), a second SET_CONTAINER EINVAL. With @dma, the
 * function's DMA here lands in @buf. The device fd, or a negative step.
 */
static int xgrp_calls(int g, int c, const char *bdf, char *buf, bool dma)
{
	int d, other = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);

	if (xgrp_status(g) != XGRP_FLAGS)
		return -1;
	if (ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) || xgrp_map(c, buf))
		return -2;
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (d < 0 || xbind_config_read(d))
		return -3;
	if (dma && (xgrp_dma(bdf, "hello") || memcmp(buf + 100, "hello", 5)))
		return -4;
	/* Set once, whichever container comes next. */
	if (other < 0 || ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) != -1 || errno != EINVAL ||
	    ioctl(g, VFIO_GROUP_SET_CONTAINER, &other) != -1 || errno != EINVAL || close(other))
		return -5;
	return d;
}

/*
 * "xgrp SOCK": a VMM (or a DPDK secondary) handed its manager's group fd, with MODE and NTH,
 * that opens /dev/vfio/vfio itself: SET_CONTAINER goes to the manager, which serves the group
 * file and asks us to open the node here with our container (the reverse case); our calls on
 * the group are then in-process (xgrp_calls(), DMA included). MODE 1: the NTH fail point of
 * ours fails during the SET_CONTAINER and the first call after it (the redirect), which
 * answers a clean errno and, made again, goes through. (Our serving of the manager's ask is
 * the code the forward case's sweep of the manager's serving side runs.) It says 'b', waits for a byte, closes everything, says 'c' and waits for EOF.
 * MODE 3: after 'b' it waits to be killed. MODE 4: it keeps the device fd past its 'c' until a
 * second byte, then says 'd'.
 * Exit status: 0, the errno of the failed step, 99 (a failure absorbed), 60 (a refused
 * adoption), or 100 and up for the step that went wrong.
 */
static int child_xgrp(int sock)
{
	int c = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), g, d, e = 0, step = 0;
	unsigned long left = 1;
	uint64_t msg[2]; /* MODE, NTH */
	char bdf[64], *buf, ch;

	g = recv_fd(sock, msg, sizeof(msg));
	buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g < 0 || c < 0 || buf == MAP_FAILED || xgrp_bdf(bdf, sizeof(bdf)) < 0)
		return 100;
	if (!uiommu_is_fd(g))
		return uiommu_fd_adopt(g) ? 60 : 107;
	if (msg[0] == 1)
		uiommu_fail_nth_arm(msg[1]);
	e = xgrp_set(g, c, &step);
	if (msg[0] == 1)
		left = uiommu_fail_nth_disarm();
	if (step && !xsweep_errno_clean(e))
		return 101;
	/* Nothing stayed of a failed step: made again, it goes through. */
	if (step == 1 && ioctl(g, VFIO_GROUP_SET_CONTAINER, &c))
		return 102;
	d = xgrp_calls(g, c, bdf, buf, true);
	if (d < 0)
		return 110 - d;
	if (write(sock, "b", 1) != 1 || read(sock, &ch, 1) != 1)
		return 103;
	if (msg[0] == 3)
		return 104;
	/* MODE 4: the device fd outlives the group's and container's fds until a second byte. */
	if (msg[0] == 4 && (close(g) || close(c) || write(sock, "c", 1) != 1 ||
			    read(sock, &ch, 1) != 1 || close(d) || write(sock, "d", 1) != 1 ||
			    read(sock, &ch, 1) != 0))
		return 106;
	if (msg[0] != 4 && (close(d) || close(g) || close(c) || write(sock, "c", 1) != 1 ||
			    read(sock, &ch, 1) != 0))
		return 105;
	if (step)
		return e;
	return msg[0] == 1 && !left ? 99 : 0;
}

/*
 * "xgrpmgr SOCK": the other way round, a manager that opens /dev/vfio/vfio and hands it to
 * the test, which opens the group node itself and sets the container: the group goes where the
 * container is, here. The test sends MODE and NTH first. MODE 2: the NTH fail point of our serving
 * side fails meanwhile; at the test's byte we send what was left of it. Then we take the
 * test's group fd: our calls on it are in-process (the status, the function's DMA into the
 * test's page), say 'b' and wait for EOF. MODE 3: we wait to be killed once the container went.
 * Exit status: 0, or the step that went wrong.
 */
static int child_xgrpmgr(int sock)
{
	int c = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), g;
	uint64_t msg[2]; /* MODE, NTH */
	unsigned long left;
	char bdf[64], ch = 0;
	long mode;

	if (c < 0 || xgrp_bdf(bdf, sizeof(bdf)) < 0 ||
	    read(sock, msg, sizeof(msg)) != sizeof(msg))
		return 1;
	mode = (long)msg[0];
	if (mode == 2)
		uiommu_serve_fail_nth_arm(msg[1]);
	if (send_fd(sock, c, &ch, 1) || read(sock, &ch, 1) != 1)
		return 2;
	if (mode == 2) {
		left = uiommu_serve_fail_nth_disarm();
		if (write(sock, &left, sizeof(left)) != sizeof(left))
			return 3;
	}
	if (mode)
		return read(sock, &ch, 1) == 0 ? 0 : 4;
	g = recv_fd(sock, &ch, 1);
	if (g < 0 || !uiommu_is_fd(g) || xgrp_status(g) != XGRP_FLAGS)
		return 5;
	if (xgrp_dma(bdf, "world"))
		return 6;
	if (close(g) || close(c) || write(sock, "b", 1) != 1)
		return 7;
	return read(sock, &ch, 1) == 0 ? 0 : 8;
}

static int child_served(int sock);
static int child_memlock(int sock);

static int child_main(int argc, char **argv)
{
	int a = argc > 3 ? atoi(argv[3]) : -1;
	long b = argc > 4 ? atol(argv[4]) : 0;
	const char *role = argv[2];

	if (!strcmp(role, "scm"))
		return child_scm(a);
	if (!strcmp(role, "exec"))
		return child_exec(a);
	if (!strcmp(role, "pidfd"))
		return child_pidfd(a, b);
	if (!strcmp(role, "loop"))
		return child_loop(a);
	if (!strcmp(role, "server"))
		return child_server(a);
	if (!strcmp(role, "serverfork"))
		return child_serverfork(a);
	if (!strcmp(role, "garbage"))
		return child_garbage(a);
	if (!strcmp(role, "race"))
		return child_race(a);
	if (!strcmp(role, "sweep"))
		return child_sweep(a);
	if (!strcmp(role, "vfio"))
		return child_vfio(a, false);
	if (!strcmp(role, "vfioready"))
		return child_vfio(a, true);
	if (!strcmp(role, "keep")) {
		char c = 'k';
		int fd = recv_fd(a, &c, 1);

		/* Holds the fd it is given until the test ends it. */
		if (fd < 0 || write(a, &c, 1) != 1)
			return 1;
		return read(a, &c, 1) == 0 ? 0 : 2;
	}
	if (!strcmp(role, "irqs"))
		return child_irqs(a);
	if (!strcmp(role, "xbind"))
		return child_xbind(a);
	if (!strcmp(role, "xrev"))
		return child_xrev(a);
	if (!strcmp(role, "xrevmap"))
		return child_xrevfirst(a, false);
	if (!strcmp(role, "xrevread"))
		return child_xrevfirst(a, true);
	if (!strcmp(role, "xthird"))
		return child_xthird(a);
	if (!strcmp(role, "xmgr"))
		return child_xmgr(a);
	if (!strcmp(role, "xlast"))
		return child_xlast(a);
	if (!strcmp(role, "xsweep"))
		return child_xsweep(a, 0);
	if (!strcmp(role, "xsweepc"))
		return child_xsweep(a, 1);
	if (!strcmp(role, "xgrp"))
		return child_xgrp(a);
	if (!strcmp(role, "xgrp3")) {
		int c = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), g;
		char bdf[64], ch;

		g = recv_fd(a, &ch, 1);

		/*
		 * A third process handed the group: its calls are redirected to the VMM's file
		 * and made there with its memory (CONTAINER_SET, EINVAL for its own container, EBUSY
		 * for the function the VMM has open).
		 */
		if (g < 0 || c < 0 || !uiommu_is_fd(g) || xgrp_bdf(bdf, sizeof(bdf)) < 0)
			return 1;
		if (xgrp_status(g) != XGRP_FLAGS)
			return 2;
		if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) != -1 || errno != EINVAL)
			return 3;
		if (ioctl(g, VFIO_GROUP_GET_DEVICE_FD, bdf) != -1 || errno != EBUSY)
			return 4;
		return close(g) || close(c) ? 5 : 0;
	}
	if (!strcmp(role, "gopen")) {
		char path[32];
		int g;

		/* A third process's open of /dev/vfio/<ARG2>: its errno, or 0. */
		snprintf(path, sizeof(path), "/dev/vfio/%ld", b);
		g = open(path, O_RDWR | O_CLOEXEC);
		return g < 0 ? errno : close(g);
	}
	if (!strcmp(role, "xgrpmgr"))
		return child_xgrpmgr(a);
	if (!strcmp(role, "subfd"))
		return child_subfd(a);
	if (!strcmp(role, "cpr"))
		return child_cpr(a);
	if (!strcmp(role, "cpr2") && argc > 5)
		return child_cpr2(a, (int)b, strtoull(argv[5], NULL, 0));
	if (!strcmp(role, "cprfds"))
		return child_cprfds(a);
	if (!strcmp(role, "cprfds2") && argc > 5)
		return child_cprfds2(a, (int)b, atoi(argv[5]));
	if (!strcmp(role, "fault"))
		return child_fault(a);
	if (!strcmp(role, "holder"))
		return child_holder(a);
	if (!strcmp(role, "mmap"))
		return child_mmap(a);
	if (!strcmp(role, "held"))
		return child_held(a);
	if (!strcmp(role, "heldexec")) {
		int rc = 0;
		char c;

		if (write(a, &rc, sizeof(rc)) != sizeof(rc))
			return 1;
		return read(a, &c, 1) == 0 ? 0 : 2;
	}
	if (!strcmp(role, "private"))
		return child_private(a);
	if (!strcmp(role, "privexec"))
		return child_privexec(a);
	if (!strcmp(role, "privexec2"))
		return child_privexec2(a, (unsigned long)b);
	if (!strcmp(role, "served"))
		return child_served(a);
	if (!strcmp(role, "memlock"))
		return child_memlock(a);
	return 126;
}

/* ---- the cases ------------------------------------------------------------------------- */

TEST(scm_rights_the_libvirt_way)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint64_t reply[3];
	pid_t pid;
	char c = 0;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	pid = child_start_with("scm", fd, &c, 1, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ((ssize_t)sizeof(reply), read(sock, reply, sizeof(reply)));
	/* The child's IOAS and its mappings (of its memory, of its memfd) are our context's. */
	ASSERT_EQ(2, reply[0]);
	ASSERT_EQ(2 * PS, ioas_unmap_len(fd, (uint32_t)reply[0], reply[1], 2 * PS));
	ASSERT_EQ(PS, ioas_unmap_len(fd, (uint32_t)reply[0], reply[2], PS));
	ASSERT_EQ(0, destroy(fd, (uint32_t)reply[0]));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
	close(sock);
}

TEST(exec_without_cloexec_inherits_the_context)
{
	int fd = open("/dev/iommu", O_RDWR);
	pid_t pid;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	pid = child_start("exec", fd, 0);
	ASSERT_GE(pid, 0);
	ASSERT_EQ(2, test_child_wait(pid));
	ASSERT_EQ(0, destroy(fd, 2));
	ASSERT_EQ(0, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
}

TEST(pidfd_getfd_reaches_the_context)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	pid_t pid;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	pid = child_start("pidfd", fd, (long)getpid());
	ASSERT_GE(pid, 0);
	ASSERT_EQ(2, test_child_wait(pid));
	ASSERT_EQ(0, destroy(fd, 2));
	ASSERT_EQ(0, close(fd));
}

/*
 * A mock device (PASID-capable) of @fd's attached to a HWPT whose faults go to a new fault
 * queue: its IDs in *@r. 0, or -1 with errno.
 */
struct fault_rig {
	uint32_t ioas, dev_id, stdev, hwpt, fault;
	int ffd;
};

static int fault_rig_make(int fd, struct fault_rig *r)
{
	struct iommu_test_cmd mock = {
		.size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
		.mock_domain_flags = { .dev_flags = MOCK_FLAGS_DEVICE_PASID },
	};
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt),
					 .flags = IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_FAULT_ID_VALID };

	mock.id = r->ioas = ioas_alloc(fd);
	if (ioctl(fd, IOMMU_TEST_CMD, &mock) || ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq))
		return -1;
	hwpt.dev_id = r->dev_id = mock.mock_domain_flags.out_idev_id;
	r->stdev = mock.mock_domain_flags.out_stdev_id;
	hwpt.pt_id = r->ioas;
	hwpt.fault_id = r->fault = fq.out_fault_id;
	r->ffd = (int)fq.out_fault_fd;
	if (ioctl(fd, IOMMU_HWPT_ALLOC, &hwpt))
		return -1;
	r->hwpt = hwpt.out_hwpt_id;
	return mock_replace_pt(fd, r->stdev, r->hwpt);
}

/* A page fault of the rig's device, group @grpid at @addr. 0, or -1 with errno. */
static int fault_rig_trigger(int fd, const struct fault_rig *r, uint32_t grpid, uint64_t addr)
{
	struct iommu_test_cmd trig = {
		.size = sizeof(trig), .op = IOMMU_TEST_OP_TRIGGER_IOPF,
		.trigger_iopf = { .dev_id = r->dev_id, .grpid = grpid,
				  .perm = IOMMU_PGFAULT_PERM_READ, .addr = addr },
	};

	return ioctl(fd, IOMMU_TEST_CMD, &trig);
}

/*
 * A fault fd handed to another process (SCM_RIGHTS): POLLIN there when a group waits, read and
 * answered there; the answer reaches the device here. The fd keeps the queue held until its
 * last close anywhere.
 */
TEST(a_fault_fd_answered_by_another_process)
{
	struct iommu_test_cmd resps = { .size = sizeof(resps),
					.op = IOMMU_TEST_OP_UIOMMU_PAGE_RESPONSES };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct fault_rig r;
	uint64_t addr;
	pid_t pid;
	char c = 0;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, fault_rig_make(fd, &r));
	pid = child_start_with("fault", r.ffd, &c, 1, &sock);
	ASSERT_GT(pid, 0);
	/* Ours goes: the child's fd holds the queue now. */
	ASSERT_EQ(0, close(r.ffd));
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ(0, fault_rig_trigger(fd, &r, 7, 0xcafe000));
	ASSERT_EQ((ssize_t)sizeof(addr), read(sock, &addr, sizeof(addr)));
	ASSERT_EQ(0xcafe000u, addr);
	resps.page_responses.dev_id = r.dev_id;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &resps));
	ASSERT_EQ(1u, resps.page_responses.out_success);
	ASSERT_EQ(7u, resps.page_responses.out_last_grpid);
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
	ASSERT_EQ(0, destroy(fd, r.hwpt));
	/* The child's exit was the fd's last close anywhere: the queue is free to go. */
	ASSERT_EQ(0, destroy(fd, r.fault));
	ASSERT_EQ(0, close(fd));
}

/* Sends a holder (holder_serve()) command @cmd: its one-byte answer, or -2. */
static int holder_ask(int sock, char cmd)
{
	char rep;

	if (write(sock, &cmd, 1) != 1 || read(sock, &rep, 1) != 1)
		return -2;
	return rep;
}

/*
 * A holder of the rig's fault fd in another process, started the way @how says: 's' this
 * program again, handed the fd by SCM_RIGHTS; 'b' the same without the preload layer; 'f' a
 * fork of this process, which inherits it. Its pid, with its command socket in *@sock; -1.
 */
static pid_t holder_start(const struct fault_rig *r, char how, int *sock)
{
	int sv[2];
	pid_t pid;
	char c = 0;

	if (how == 's' || how == 'b') {
		child_bare = how == 'b';
		pid = child_start_with("holder", r->ffd, &c, 1, sock);
		child_bare = false;
		return pid;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = fork();
	if (!pid) {
		close(sv[0]);
		_exit(holder_serve(sv[1], r->ffd));
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/*
 * A fault fd held only by another process; its queue emptied here without a read, by a detach
 * (replace) and by the device's destroy, each answering the waiting group: the holder's fd is
 * not readable once the call returned, as the kernel's, and shows POLLIN again at the next
 * fault. The byte goes through a copy of the holder's fd, whether the holder was handed it
 * (SCM_RIGHTS) or forked with it.
 */
static void holder_emptied(struct __h_test *_metadata, char how)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct fault_rig r;
	pid_t pid;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, fault_rig_make(fd, &r));
	pid = holder_start(&r, how, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	/* Ours goes: no fd of the socket is left in the serving process. */
	ASSERT_EQ(0, close(r.ffd));
	ASSERT_EQ(0, fault_rig_trigger(fd, &r, 1, 0x1000));
	ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	/* Refilled: readable again; read there, not any more. */
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.hwpt));
	ASSERT_EQ(0, fault_rig_trigger(fd, &r, 2, 0x2000));
	ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ((int)sizeof(struct iommu_hwpt_pgfault), holder_ask(sock, 'r'));
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	/* Twice in a row, then the device's destroy (its detach) empties the queue. */
	ASSERT_EQ(0, fault_rig_trigger(fd, &r, 3, 0x3000));
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.hwpt));
	ASSERT_EQ(0, fault_rig_trigger(fd, &r, 4, 0x4000));
	ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(0, destroy(fd, r.stdev));
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	/* Nothing was left behind to read. */
	ASSERT_EQ(0, holder_ask(sock, 'r'));
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(1, write(sock, "q", 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, destroy(fd, r.hwpt));
	ASSERT_EQ(0, destroy(fd, r.fault));
	ASSERT_EQ(0, close(fd));
}

TEST(a_fault_fd_handed_elsewhere_is_not_readable_once_a_detach_empties_it)
{
	NEEDS_IOMMUFD_TEST();
	holder_emptied(_metadata, 's');
}

TEST(a_fault_fd_forked_elsewhere_is_not_readable_once_a_detach_empties_it)
{
	NEEDS_IOMMUFD_TEST();
	holder_emptied(_metadata, 'f');
}

/*
 * Three holders, handed the fd in turn (the newest is tried first), and a fourth without the
 * preload layer, which never tells the server that it holds the fd. Each round a fault waits
 * (POLLIN in the fourth), holders give up numbers, and a detach empties the queue: once the
 * newest gave the number it told of to another socket, the byte goes through the next one's
 * fd; once that one moved its fd with dup() (which tells the new number) and the oldest
 * closed its own, through the moved fd; every fd left shows no POLLIN. Once the moved one is
 * closed too, the fourth holds the only fd and nobody can take the byte out: it stays
 * readable until the next read anywhere (the test's, of the fd the fourth sends back), which
 * answers 0 (docs/processes.md).
 */
TEST(holders_that_gave_up_their_number_are_passed_over)
{
	static const char *const round[3] = { "2x", "1d0c", "1c" }; /* holder, command, ... */
	int sock[4], pfd, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct iommu_hwpt_pgfault rec;
	bool gone[4] = { false };
	struct fault_rig r;
	pid_t pid[4];
	char c;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, fault_rig_make(fd, &r));
	for (int i = 0; i < 4; i++) {
		pid[i] = holder_start(&r, i == 3 ? 'b' : 's', &sock[i]);
		ASSERT_GT(pid[i], 0);
		ASSERT_EQ(POLLOUT, holder_ask(sock[i], 'p'));
	}
	ASSERT_EQ(0, close(r.ffd));
	for (int k = 0; k < 3; k++) {
		if (k) {
			ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.hwpt));
		}
		ASSERT_EQ(0, fault_rig_trigger(fd, &r, (uint32_t)k + 1, 0x1000));
		for (const char *p = round[k]; *p; p += 2) {
			ASSERT_EQ('k', holder_ask(sock[p[0] - '0'], p[1]));
			gone[p[0] - '0'] = p[1] != 'd';
		}
		ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock[3], 'p'));
		ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
		for (int i = 0; i < 3 && k < 2; i++)
			if (!gone[i])
				ASSERT_EQ(POLLOUT, holder_ask(sock[i], 'p'));
		if (k < 2)
			ASSERT_EQ(POLLOUT, holder_ask(sock[3], 'p'));
	}
	/* Nobody the server knows of holds it any more. */
	ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock[3], 'p'));
	ASSERT_EQ(1, write(sock[3], "s", 1));
	pfd = recv_fd(sock[3], &c, 1);
	ASSERT_GE(pfd, 0);
	ASSERT_EQ(0, read(pfd, &rec, sizeof(rec)));
	ASSERT_EQ(POLLOUT, holder_ask(sock[3], 'p'));
	ASSERT_EQ(0, close(pfd));
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(1, write(sock[i], "q", 1));
		ASSERT_EQ(0, test_child_wait(pid[i]));
		close(sock[i]);
	}
	ASSERT_EQ(0, destroy(fd, r.hwpt));
	ASSERT_EQ(0, destroy(fd, r.fault));
	ASSERT_EQ(0, close(fd));
}

/* /proc/self/task/@task/@what into @buf, NUL-terminated. 0, or -1. */
static int task_file_read(const char *task, const char *what, char *buf, size_t len)
{
	char path[300];
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/task/%s/%s", task, what);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -1;
	n = read(f, buf, len - 1);
	close(f);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/*
 * The threads of this process asleep in epoll_pwait() (the server thread's wait, remote.c),
 * by thread ID, into @tid (up to @max). How many.
 */
static int epoll_sleepers(pid_t *tid, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)) && n < max) {
		char buf[256], *st;
		long nr;

		if (e->d_name[0] == '.' || task_file_read(e->d_name, "stat", buf, sizeof(buf)))
			continue;
		st = strrchr(buf, ')');
		if (!st || strncmp(st, ") S", 3) ||
		    task_file_read(e->d_name, "syscall", buf, sizeof(buf)))
			continue;
		if (sscanf(buf, "%ld", &nr) == 1 && nr == SYS_epoll_pwait)
			tid[n++] = atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

/* Is @tid among the @n threads of @tids? */
static bool tid_among(pid_t tid, const pid_t *tids, int n)
{
	for (int i = 0; i < n; i++)
		if (tids[i] == tid)
			return true;
	return false;
}

/*
 * A holder that shuts its fd's writing down (no close: the fd lives on) neither ends the file
 * nor keeps the server thread awake: its peer reads the end of the stream from then on, which
 * a level-triggered watch of it would report for ever. The server thread is back asleep in its
 * wait (a bounded look, 10 s of 1 ms polls: before, it never slept again), and the byte still
 * goes through the holder's fd.
 */
TEST(a_holder_shutting_its_writing_down_keeps_no_server_awake)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), n, m, tries;
	pid_t before[64], after[64];
	struct fault_rig r;
	pid_t pid;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, fault_rig_make(fd, &r));
	pid = holder_start(&r, 's', &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(0, close(r.ffd));
	/* The server thread, asleep in its wait (with nothing to do, it gets there). */
	for (tries = 0; tries < 10000 && !(n = epoll_sleepers(before, 64)); tries++)
		usleep(1000);
	ASSERT_LT(0, n);
	ASSERT_EQ('k', holder_ask(sock, 'w'));
	/* The file lives: a fault shows there, and its emptying takes the byte out there. */
	ASSERT_EQ(0, fault_rig_trigger(fd, &r, 1, 0x1000));
	ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	/* Every thread that slept in the wait before sleeps there again. */
	for (tries = 0; tries < 10000; tries++) {
		bool all = true;

		m = epoll_sleepers(after, 64);
		for (int i = 0; i < n && all; i++)
			all = tid_among(before[i], after, m);
		if (all)
			break;
		usleep(1000);
	}
	ASSERT_GT(10000, tries);
	ASSERT_EQ(1, write(sock, "q", 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, destroy(fd, r.hwpt));
	ASSERT_EQ(0, destroy(fd, r.fault));
	ASSERT_EQ(0, close(fd));
}

/*
 * A fail-nth sweep of a detach that empties a fault queue held only by another process: each
 * failure is a clean errno of the detach (which then goes through), or is absorbed by the
 * byte's taking through the holder, which is then left to the next read (a read of 0, after
 * which the fd is not readable); never a byte too few (a refill always shows POLLIN).
 */
TEST(fail_nth_of_emptying_a_fault_fd_held_elsewhere)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	unsigned long nth, left = 0, stale = 0;
	struct fault_rig r;
	pid_t pid;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_EQ(0, fault_rig_make(fd, &r));
	pid = holder_start(&r, 's', &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
	ASSERT_EQ(0, close(r.ffd));
	for (nth = 1; nth < 200 && !left; nth++) {
		int rc, ready;

		ASSERT_EQ(0, fault_rig_trigger(fd, &r, (uint32_t)nth, 0x1000));
		ASSERT_EQ(POLLIN | POLLOUT, holder_ask(sock, 'p'));
		uiommu_fail_nth_arm(nth);
		rc = mock_replace_pt(fd, r.stdev, r.ioas);
		left = uiommu_fail_nth_disarm();
		if (rc) {
			/*
			 * Refused (ENOMEM; ENOENT for a lookup the injection failed), or done
			 * with its reply not written (EFAULT): it goes through unarmed.
			 */
			ASSERT_TRUE(errno == ENOMEM || errno == ENOENT || errno == EFAULT);
			ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
		}
		ready = holder_ask(sock, 'p');
		if (ready != POLLOUT) {
			ASSERT_EQ(POLLIN | POLLOUT, ready);
			ASSERT_EQ(0, holder_ask(sock, 'r'));
			ASSERT_EQ(POLLOUT, holder_ask(sock, 'p'));
			stale++;
		}
		ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.hwpt));
	}
	ASSERT_NE(0, left);
	ASSERT_NE(0, stale);
	ASSERT_EQ(1, write(sock, "q", 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, mock_replace_pt(fd, r.stdev, r.ioas));
	ASSERT_EQ(0, destroy(fd, r.hwpt));
	ASSERT_EQ(0, destroy(fd, r.fault));
	ASSERT_EQ(0, close(fd));
}

/* A vIOMMU of @fd's with its region (*@data), mapped here (shared, read-only), or MAP_FAILED. */
static void *region_mapped(int fd, struct iommu_viommu_selftest *data, uint32_t *viommu)
{
	if (viommu_with_region(fd, data, viommu))
		return MAP_FAILED;
	return mmap(NULL, data->out_mmap_length, PROT_READ, MAP_SHARED, fd,
		    (off_t)data->out_mmap_offset);
}

/*
 * mmap(2) of an iommufd another process serves: the vIOMMU's region is handed over (its
 * memfd), the same bytes in both processes; what the kernel refuses, refused with its errno.
 */
TEST(mmap_of_the_viommu_region_from_another_process)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint64_t reg[3];
	uint32_t *p, viommu;
	pid_t pid;
	char c;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	p = region_mapped(fd, &data, &viommu);
	ASSERT_NE(MAP_FAILED, p);
	reg[0] = data.out_mmap_offset;
	reg[1] = data.out_mmap_length;
	reg[2] = viommu;
	pid = child_start_with("mmap", fd, reg, sizeof(reg), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ(0x5eedu, p[1]); /* the child's store, in our mapping of the region */
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, munmap(p, data.out_mmap_length));
	ASSERT_EQ(0, destroy(fd, viommu));
	ASSERT_EQ(0, close(fd));
}

/* ---- another process's mapping of a vIOMMU region holds it, as the kernel's VMA ---------- */

struct held {
	int fd, sock;
	uint32_t viommu;
	pid_t pid;
};

/* A vIOMMU with its region, and a "held" child that has the iommufd (0, or -1). */
static int held_start(struct held *h)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	uint64_t reg[3];

	h->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (h->fd < 0 || viommu_with_region(h->fd, &data, &h->viommu))
		return -1;
	reg[0] = data.out_mmap_offset;
	reg[1] = data.out_mmap_length;
	reg[2] = h->viommu;
	if (reg[1] != 2 * PS) /* the partial unmaps need two pages */
		return -1;
	h->pid = child_start_with("held", h->fd, reg, sizeof(reg), &h->sock);
	return h->pid > 0 ? 0 : -1;
}

/* The child's answer to @cmd: 0 or an errno (-1 when it did not answer). */
static int held_do(struct held *h, char cmd)
{
	int rc;

	if (write(h->sock, &cmd, 1) != 1 || read(h->sock, &rc, sizeof(rc)) != sizeof(rc))
		return -1;
	return rc;
}

/*
 * Runs @script: a lowercase letter is a command of the child's (child_held()), which must
 * answer 0; 'B': the vIOMMU's destroy answers EBUSY; 'D': it succeeds at once; 'K': SIGKILL
 * the child and reap it (waitpid()), as the kernel's exit has dropped its VMAs by then. Then
 * the child ends (as asked, unless killed) and the context goes.
 */
static void held_run(struct __h_test *_metadata, const char *script)
{
	struct held h;

	ASSERT_EQ(0, held_start(&h));
	for (const char *c = script; *c; c++) {
		switch (*c) {
		case 'B':
			ASSERT_EQ(-1, destroy(h.fd, h.viommu));
			ASSERT_EQ(EBUSY, errno);
			break;
		case 'D':
			ASSERT_EQ(0, destroy(h.fd, h.viommu));
			break;
		case 'K':
			ASSERT_EQ(0, kill(h.pid, SIGKILL));
			ASSERT_EQ(128 + SIGKILL, test_child_wait(h.pid));
			h.pid = -1;
			break;
		default:
			ASSERT_EQ(0, held_do(&h, *c));
		}
	}
	close(h.sock);
	if (h.pid > 0)
		ASSERT_EQ(0, test_child_wait(h.pid));
	ASSERT_EQ(0, close(h.fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

/*
 * While another process has the region mapped, the vIOMMU's destroy answers EBUSY; a partial
 * munmap keeps it so (as the kernel's split VMA keeps its reference); the munmap of the last
 * page lets it go, at once.
 */
TEST(a_remote_mapping_holds_the_viommu_until_its_last_page_goes)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mBpBqD");
}

/* A mapping over the first one (MAP_FIXED) replaces it: one hold, which its munmap lets go. */
TEST(a_remote_mapping_replaced_by_another_holds_once)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mMBuD");
}

/*
 * A client killed with its mapping: the hold goes with it. Once waitpid() has reported it, the
 * destroy succeeds at once (the serving process sees its pidfd readable and drops its holds
 * before it answers), as the kernel's exit has dropped the VMA by then.
 */
TEST(a_remote_mapping_holds_the_viommu_until_its_process_is_killed)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mBKD");
}

/*
 * An exec takes the mapping with the old image: the hold goes while the new image lives, from
 * the moment it runs (its old connections hung up at the exec; no pidfd shows an exec).
 */
TEST(a_remote_mapping_goes_with_an_exec)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mBeD");
}

/*
 * The same without the EBUSY first, 50 rounds each, so that a race between the serving
 * process's connection threads (which drop a gone client's holds when they see its hang-up)
 * and the destroy would show: right after waitpid() reported the kill, or right after the
 * new image answered, the destroy succeeds, never EBUSY.
 */
TEST(the_destroy_after_a_client_s_death_or_exec_never_waits)
{
	NEEDS_IOMMUFD_TEST();
	for (int round = 0; round < 50; round++) {
		held_run(_metadata, "mKD");
		held_run(_metadata, "meD");
	}
}

/*
 * Copies of every socket fd of process @pid (its connections to us among them: the server's
 * ends then see no hang-up when it dies), taken with pidfd_getfd() into @fds (at most @max).
 * Return: how many, or -1.
 */
static int socket_fds_copy(pid_t pid, int *fds, int max)
{
	char path[64];
	struct dirent *d;
	int n = 0, pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (pidfd < 0 || !dir) {
		if (dir)
			closedir(dir);
		return -1;
	}
	while ((d = readdir(dir)) && n < max) {
		char link[sizeof(path) + sizeof(d->d_name)], target[64];
		ssize_t len;

		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		snprintf(link, sizeof(link), "%s/%s", path, d->d_name);
		/* The raw system call: the preload layer's readlink names our own files. */
		len = syscall(SYS_readlink, link, target, sizeof(target) - 1);
		if (len < 8 || strncmp(target, "socket:[", 8))
			continue;
		fds[n] = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(d->d_name), 0);
		if (fds[n] >= 0)
			n++;
	}
	closedir(dir);
	close(pidfd);
	return n;
}

/*
 * The serving side's look for gone clients, each of its fallible steps in turn: a killed
 * client whose connections the test keeps open (copies of its fds), so that only that look
 * can find it gone, and deterministically. The look refused, the destroy answers EBUSY, as
 * before there was one; the next destroy finds the client gone and succeeds; nothing
 * failed, the first one does. Then everything goes (the copies' close ends the connections).
 */
TEST(fail_nth_of_the_look_for_a_killed_client)
{
	unsigned long nth, left = 0, busy = 0;

	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	for (nth = 1; nth < 50 && !left; nth++) {
		int copies[16], nr, rc;
		struct held h;

		ASSERT_EQ(0, held_start(&h));
		ASSERT_EQ(0, held_do(&h, 'm'));
		nr = socket_fds_copy(h.pid, copies, 16);
		ASSERT_GT(nr, 0);
		ASSERT_EQ(0, kill(h.pid, SIGKILL));
		ASSERT_EQ(128 + SIGKILL, test_child_wait(h.pid));
		uiommu_fail_nth_arm(nth);
		rc = destroy(h.fd, h.viommu);
		left = uiommu_fail_nth_disarm();
		if (rc) {
			/* EFAULT: the argument's copy-in was the step failed. */
			ASSERT_TRUE(errno == EBUSY || errno == EFAULT);
			ASSERT_EQ(0, left); /* only a failure leaves it */
			busy += errno == EBUSY;
			ASSERT_EQ(0, destroy(h.fd, h.viommu));
		}
		for (int i = 0; i < nr; i++)
			close(copies[i]);
		close(h.sock);
		ASSERT_EQ(0, close(h.fd));
		ASSERT_EQ(0, live_contexts_settle(0));
	}
	ASSERT_NE(0, left);
	ASSERT_NE(0, busy);
}

/*
 * mremap() moves the mapping's pages and their hold with them: a whole move, or one page
 * moved away (the hold lasts until the page left behind and the moved one are both gone); a
 * region's mapping does not grow (EFAULT, the kernel's VM_DONTEXPAND) and stays held.
 */
TEST(an_mremap_moves_a_remote_mapping_and_its_hold)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mrBuD");
	held_run(_metadata, "mRBuBwD");
	held_run(_metadata, "mGBuD");
	/* Another mapping moved onto it (MREMAP_FIXED) replaces it: its hold goes at once. */
	held_run(_metadata, "mXD");
}

/*
 * mmap(MAP_FIXED) of anonymous memory or of another file over a remote mapping replaces the
 * pages it covers, as an munmap of them (the kernel unmaps the old VMAs first): all of it lets
 * the hold go at once; one page keeps it until the rest goes too, by an munmap or by another
 * file mapped over it.
 */
TEST(an_mmap_fixed_over_a_remote_mapping_lets_its_pages_go)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mAD");
	held_run(_metadata, "maBqD");
	held_run(_metadata, "moBpD");
	held_run(_metadata, "maBoD");
}

/* The same for this process's own mapping of its own region. */
TEST(an_mmap_fixed_over_a_local_mapping_lets_its_pages_go)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int mfd, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint32_t viommu, *p;
	char *last;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	p = region_mapped(fd, &data, &viommu);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(2 * PS, data.out_mmap_length);
	last = (char *)p + PS;
	ASSERT_EQ((void *)p, mmap(p, PS, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
	ASSERT_EQ(0u, p[0]); /* the new memory, not the region's word */
	ASSERT_FALSE(uiommu_mmap_claims(p, PS));
	ASSERT_TRUE(uiommu_mmap_claims(last, 1));
	ASSERT_EQ(-1, destroy(fd, viommu));
	ASSERT_EQ(EBUSY, errno);
	mfd = memfd_create("over", MFD_CLOEXEC);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, ftruncate(mfd, PS));
	ASSERT_EQ((void *)last, mmap(last, PS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
				     mfd, 0));
	ASSERT_FALSE(uiommu_mmap_claims(p, 2 * PS));
	ASSERT_EQ(0, destroy(fd, viommu));
	ASSERT_EQ(0, munmap(p, 2 * PS));
	ASSERT_EQ(0, close(mfd));
	ASSERT_EQ(0, close(fd));
}

/*
 * A MAP_FIXED mmap(2) that fails after the kernel unmapped the range (a socket's mmap answers
 * ENODEV once the old pages are gone: the kernel's __mmap_setup() clears them before the
 * file's mmap runs) lets the pages it took go, as an munmap of them: the rest of a remote
 * mapping keeps the hold, all of it frees the vIOMMU at once. One that fails before (EBADF)
 * took nothing: the hold stays.
 */
TEST(a_failed_mmap_fixed_over_a_remote_mapping_lets_the_pages_it_took_go)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mkBqD");
	held_run(_metadata, "mzD");
	held_run(_metadata, "mbBuD");
}

/* The same for this process's own mapping of its own region, and a fail-nth sweep of it. */
TEST(a_failed_mmap_fixed_over_a_local_mapping_lets_the_pages_it_took_go)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int sv[2], fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	unsigned long nth, left = 0, failed = 0;
	uint32_t viommu;
	char *p;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	p = region_mapped(fd, &data, &viommu);
	ASSERT_NE(MAP_FAILED, p);
	/* Before anything is unmapped: EBADF, the hold stays. */
	ASSERT_EQ(MAP_FAILED, mmap(p, PS, PROT_READ, MAP_SHARED | MAP_FIXED, -1, 0));
	ASSERT_EQ(EBADF, errno);
	ASSERT_TRUE(page_mapped(p));
	ASSERT_TRUE(uiommu_mmap_claims(p, PS));
	/* After: the first page is gone, the second holds. */
	ASSERT_EQ(MAP_FAILED, mmap(p, PS, PROT_READ, MAP_SHARED | MAP_FIXED, sv[0], 0));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_FALSE(page_mapped(p));
	ASSERT_FALSE(uiommu_mmap_claims(p, PS));
	ASSERT_TRUE(uiommu_mmap_claims(p + PS, PS));
	ASSERT_EQ(-1, destroy(fd, viommu));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(MAP_FAILED, mmap(p, 2 * PS, PROT_READ, MAP_SHARED | MAP_FIXED, sv[0], 0));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_FALSE(uiommu_mmap_claims(p, 2 * PS));
	ASSERT_EQ(0, destroy(fd, viommu));
	/*
	 * The look at what is left fails at each of its points in turn: that page is kept (held
	 * until its munmap), never a page let go that is still mapped; the answer stays ENODEV.
	 */
	for (nth = 1; uiommu_fail_nth_available() && nth < 20 && !left; nth++) {
		p = region_mapped(fd, &data, &viommu);
		ASSERT_NE(MAP_FAILED, p);
		uiommu_fail_nth_arm(nth);
		ASSERT_EQ(MAP_FAILED, mmap(p, 2 * PS, PROT_READ, MAP_SHARED | MAP_FIXED, sv[0], 0));
		ASSERT_EQ(ENODEV, errno);
		left = uiommu_fail_nth_disarm();
		if (!left) {
			failed++;
			ASSERT_TRUE(uiommu_mmap_claims(p, 2 * PS));
			ASSERT_EQ(-1, destroy(fd, viommu));
			ASSERT_EQ(EBUSY, errno);
			ASSERT_EQ(0, munmap(p, 2 * PS));
		}
		ASSERT_FALSE(uiommu_mmap_claims(p, 2 * PS));
		ASSERT_EQ(0, destroy(fd, viommu));
	}
	/* One look per page of the two: each failure keeps its own. */
	ASSERT_EQ(uiommu_fail_nth_available() ? 2ul : 0ul, failed);
	ASSERT_EQ(uiommu_fail_nth_available(), left != 0);
	ASSERT_EQ(0, close(sv[0]));
	ASSERT_EQ(0, close(sv[1]));
	ASSERT_EQ(0, close(fd));
}

/* A ThreadSanitizer build (GCC's macro, clang's feature test). */
#if defined(__SANITIZE_THREAD__)
#define TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_UNDER_TSAN 1
#endif
#endif
#ifndef TEST_UNDER_TSAN
#define TEST_UNDER_TSAN 0
#endif

/* Address space at @a for @len, inaccessible, in place of what was there (MAP_FIXED: no gap). */
static void *reserve_at(void *a, size_t len)
{
	return mmap(a, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
		    -1, 0);
}

/*
 * One case of the test below: a region's mapping one page past a boundary of @huge, then a
 * MAP_FIXED mapping of one page at the boundary with @flags (and @hfd). NULL, or why the
 * host let only the failure be checked.
 */
static const char *hugetlb_over_region(struct __h_test *_metadata, int fd, size_t huge,
				       int flags, int hfd)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	const char *skip = NULL;
	char *area, *a, *p, *q;
	uint32_t viommu;

	/*
	 * Far below where the kernel places new mappings (top down from below the stack), so
	 * that the gap a failure leaves takes no other thread's mapping meanwhile (a malloc's
	 * mmap took it, at times only for a moment, and mincore() here or in the library saw
	 * that instead of what the failure left). Where that address cannot be had (a
	 * sanitizer's layout), anywhere; ThreadSanitizer ends a program that maps outside its
	 * application ranges, so there it is anywhere at once.
	 */
	area = MAP_FAILED;
	if (!TEST_UNDER_TSAN)
		area = mmap((void *)0x300000000000ul, 2 * huge, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1,
			    0);
	if (area == MAP_FAILED)
		area = mmap(NULL, 2 * huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			    -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	a = (char *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
	ASSERT_EQ(0, viommu_with_region(fd, &data, &viommu));
	p = mmap(a + PS, data.out_mmap_length, PROT_READ, MAP_SHARED | MAP_FIXED, fd,
		 (off_t)data.out_mmap_offset);
	ASSERT_EQ(a + PS, p);
	q = mmap(a, PS, PROT_READ | PROT_WRITE, flags, hfd, 0);
	if (q == MAP_FAILED) {
		bool gone = !page_mapped(p);

		ASSERT_TRUE(errno == ENOMEM || errno == EINVAL);
		skip = "no free huge page of a size: only the failure's hold was checked";
		ASSERT_EQ(!gone, uiommu_mmap_claims(p, data.out_mmap_length));
		if (!gone) {
			ASSERT_EQ(-1, destroy(fd, viommu));
			ASSERT_EQ(EBUSY, errno);
		}
	} else {
		ASSERT_EQ(a, q);
		/* The huge page's zeroes where the region's word was. */
		ASSERT_EQ(0u, *(volatile uint32_t *)p);
		ASSERT_FALSE(uiommu_mmap_claims(p, data.out_mmap_length));
	}
	/*
	 * The place taken back at once (a gap the kernel left could take a new thread's stack),
	 * before the destroy, which may start one.
	 */
	ASSERT_EQ((void *)a, reserve_at(a, huge));
	ASSERT_EQ(0, destroy(fd, viommu));
	ASSERT_EQ(0, munmap(area, 2 * huge));
	return skip;
}

/*
 * A MAP_FIXED|MAP_HUGETLB mapping of one page (anonymous, with the default size or
 * MAP_HUGE_SHIFT's, or of a MFD_HUGETLB memfd) at a huge page boundary replaces the whole huge
 * page, as the kernel rounds its length up: a region's mapping one page past the boundary is
 * gone, and its hold with it. Where the host has no free huge page of the size, the mapping
 * fails (ENOMEM: the kernel's reservation, made after the old pages went; EINVAL: no such
 * size, before) and the hold follows what the kernel left, which mincore() tells: 1 GiB pages,
 * which hosts seldom reserve, show it.
 */
TEST(an_mmap_fixed_hugetlb_over_a_local_mapping_replaces_the_whole_huge_page)
{
	const int anon = MAP_FIXED | MAP_HUGETLB | MAP_PRIVATE | MAP_ANONYMOUS;
	int hfd, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	size_t huge = huge_page_size();
	const char *skip, *why;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	if (!huge)
		SKIP("the host has no hugetlb");
	skip = hugetlb_over_region(_metadata, fd, huge, anon, -1);
	why = hugetlb_over_region(_metadata, fd, huge,
				  anon | __builtin_ctzl(huge) << MAP_HUGE_SHIFT, -1);
	skip = skip ? skip : why;
	hfd = memfd_create("huge", MFD_CLOEXEC | MFD_HUGETLB);
	ASSERT_GE(hfd, 0);
	ASSERT_EQ(0, ftruncate(hfd, (off_t)huge));
	why = hugetlb_over_region(_metadata, fd, huge, MAP_FIXED | MAP_SHARED, hfd);
	skip = skip ? skip : why;
	ASSERT_EQ(0, close(hfd));
	if (!access("/sys/kernel/mm/hugepages/hugepages-1048576kB", F_OK))
		hugetlb_over_region(_metadata, fd, 1ul << 30, anon | 30 << MAP_HUGE_SHIFT, -1);
	ASSERT_EQ(0, close(fd));
	if (skip)
		SKIP("%s", skip);
}

/* The same rules for this process's own mapping of its own region; MREMAP_DONTUNMAP EINVAL. */
TEST(an_mremap_moves_a_local_mapping_and_its_hold)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint32_t viommu, *p;
	void *to;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	p = region_mapped(fd, &data, &viommu);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(MAP_FAILED, mremap(p, data.out_mmap_length, 2 * data.out_mmap_length,
				     MREMAP_MAYMOVE));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(MAP_FAILED, mremap(p, data.out_mmap_length, data.out_mmap_length,
				     MREMAP_MAYMOVE | MREMAP_DONTUNMAP));
	ASSERT_EQ(EINVAL, errno);
	to = mmap(NULL, data.out_mmap_length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, to);
	ASSERT_EQ(to, mremap(p, data.out_mmap_length, data.out_mmap_length,
			     MREMAP_MAYMOVE | MREMAP_FIXED, to));
	ASSERT_EQ(0xabcdu, ((uint32_t *)to)[0]);
	ASSERT_FALSE(uiommu_mmap_claims(p, data.out_mmap_length));
	ASSERT_TRUE(uiommu_mmap_claims(to, 1));
	ASSERT_EQ(-1, destroy(fd, viommu));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, munmap(to, data.out_mmap_length));
	ASSERT_EQ(0, destroy(fd, viommu));
	ASSERT_EQ(0, close(fd));
}

/*
 * mremap(MREMAP_FIXED) of another mapping onto a region's mapping replaces it, as an munmap
 * of it would (the kernel unmaps what the target held): its hold goes at once; the moved
 * memory at that address is not the region's any more.
 */
TEST(an_mremap_onto_a_mapping_of_the_region_lets_its_hold_go)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint32_t viommu, *p;
	void *from;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST();
	p = region_mapped(fd, &data, &viommu);
	ASSERT_NE(MAP_FAILED, p);
	from = mmap(NULL, data.out_mmap_length, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, from);
	((uint32_t *)from)[0] = 0x5eed;
	ASSERT_EQ((void *)p, mremap(from, data.out_mmap_length, data.out_mmap_length,
				    MREMAP_MAYMOVE | MREMAP_FIXED, p));
	ASSERT_EQ(0x5eedu, p[0]);
	ASSERT_FALSE(uiommu_mmap_claims(p, data.out_mmap_length));
	ASSERT_EQ(0, destroy(fd, viommu));
	ASSERT_EQ(0, munmap(p, data.out_mmap_length));
	ASSERT_EQ(0, close(fd));
}

/*
 * fork() of the mapping client: the child's copy of the mapping holds too (the kernel's
 * vm_ops->open), from before fork() returns: the vIOMMU stays busy until both have unmapped
 * it, in either order.
 */
TEST(a_forked_copy_of_a_remote_mapping_holds_it_too)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mfuBgD");
	held_run(_metadata, "mfgBuD");
	/* The parent's munmap racing the fork waits for the child's copy of the hold. */
	held_run(_metadata, "mTBgD");
}

/*
 * A forked copy's hold is asked for from its fork handler, which starts no thread (the
 * allocator may be stuck in a fork child: remote.c's remote_atfork_child()), so its first
 * connection brings no life word; its first call of its own brings it on a new connection.
 * Its IOAS_ALLOC's reply then lands in its memory through the word (counted here, where it is
 * served), and its hold survives the first connection's close: the vIOMMU stays busy after
 * the parent's munmap, until the copy's.
 */
TEST(a_forked_copy_of_a_remote_mapping_brings_its_life_word_at_its_first_call)
{
	unsigned long by_life;
	struct held h;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, held_start(&h));
	ASSERT_EQ(0, held_do(&h, 'm'));
	by_life = uiommu_remote_life_copies();
	ASSERT_EQ(0, held_do(&h, 'l'));
	ASSERT_LT(by_life, uiommu_remote_life_copies());
	ASSERT_EQ(-1, destroy(h.fd, h.viommu));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, held_do(&h, 'u'));
	ASSERT_EQ(-1, destroy(h.fd, h.viommu));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, held_do(&h, 'g'));
	ASSERT_EQ(0, destroy(h.fd, h.viommu));
	close(h.sock);
	ASSERT_EQ(0, test_child_wait(h.pid));
	ASSERT_EQ(0, close(h.fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

/*
 * Two threads of the mapping client fork at once, again and again: each fork waits for its
 * own copy's hold only, and leaves no fd behind; the copies gone, the mapping holds alone.
 * Under ASan one thread's exit (its allocator cache given back under the allocator's locks)
 * while the other forks is what once left a fork child's handler waiting forever
 * (remote.c's remote_atfork_child()): about 1 run in 40 under load, pinned to one CPU.
 */
TEST(concurrent_forks_of_a_remote_mapping_keep_their_waits_apart)
{
	NEEDS_IOMMUFD_TEST();
	held_run(_metadata, "mFBuD");
}

/*
 * The spare connection record a fork's child connects in (remote.c's remote_conn_spare()),
 * made with each remote mapping and, when missing, before each fork. Refused at the mapping
 * (the one failure its sweep absorbs: the mapping holds as ever), the fork makes it: the copy
 * holds. Refused there too, the fork goes on and the copy is unheld, as after any refused
 * MMAP_FORK (docs/processes.md): the destroy succeeds once the parent has unmapped, while the
 * copy still maps it; the copy exits 0.
 */
static void held_spare_refused(struct __h_test *_metadata, bool at_fork)
{
	char cmd[2] = { 'x', 0 };
	struct held h;
	int rc = 0;

	for (int nth = 1; nth < 64 && rc != -3; nth++) {
		ASSERT_EQ(0, held_start(&h));
		ASSERT_EQ(0, held_do(&h, 'n'));
		cmd[1] = (char)nth;
		ASSERT_EQ(1, write(h.sock, cmd, 1));
		rc = held_do(&h, cmd[1]);
		if (rc == -3)
			break;
		ASSERT_TRUE(rc == ENOMEM || rc == -2);
		if (rc == -2)
			ASSERT_EQ(0, held_do(&h, 'u'));
		close(h.sock);
		ASSERT_EQ(0, test_child_wait(h.pid));
		ASSERT_EQ(0, destroy(h.fd, h.viommu));
		ASSERT_EQ(0, close(h.fd));
	}
	ASSERT_EQ(-3, rc);
	if (at_fork) {
		cmd[0] = 'y';
		ASSERT_EQ(1, write(h.sock, cmd, 1));
		ASSERT_EQ(0, held_do(&h, 1));
		ASSERT_EQ(0, held_do(&h, 'u'));
		ASSERT_EQ(0, destroy(h.fd, h.viommu));
		ASSERT_EQ(0, held_do(&h, 'g'));
	} else {
		ASSERT_EQ(0, held_do(&h, 'f'));
		ASSERT_EQ(0, held_do(&h, 'u'));
		ASSERT_EQ(-1, destroy(h.fd, h.viommu));
		ASSERT_EQ(EBUSY, errno);
		ASSERT_EQ(0, held_do(&h, 'g'));
		ASSERT_EQ(0, destroy(h.fd, h.viommu));
	}
	close(h.sock);
	ASSERT_EQ(0, test_child_wait(h.pid));
	ASSERT_EQ(0, close(h.fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

TEST(fail_nth_of_a_forks_spare_connection)
{
	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	held_spare_refused(_metadata, false);
	held_spare_refused(_metadata, true);
}

/*
 * Each fallible step of serving a mapping and its holds in turn (the MMAP request, its memfd,
 * its hold, the fd passed back; a fork's copy of the hold; the MUNMAPs), failed while a child
 * maps, forks and unmaps: a mapping that succeeded holds the vIOMMU; the child gets a clean
 * errno (a refused fork copy or MUNMAP only leaves a hold for longer); once the child is gone
 * nothing holds it.
 */
TEST(fail_nth_of_a_remote_mapping_and_its_holds)
{
	/* ENXIO: the region's lookup failed (the owner's get, as the kernel's mtree_load()). */
	static const int kinds[4] = { ENOMEM, EMFILE, EIO, ENXIO };
	unsigned long nth, left = 0, seen[4] = { 0 }, mapped = 0;
	struct held h;
	int rc, k;

	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	for (nth = 1; nth < 100 && !left; nth++) {
		ASSERT_EQ(0, held_start(&h));
		ASSERT_EQ(0, held_do(&h, 'n')); /* its connection made: the sweep starts at the MMAP */
		uiommu_serve_fail_nth_arm(nth);
		rc = held_do(&h, 'm');
		if (!rc) {
			mapped++;
			ASSERT_EQ(-1, destroy(h.fd, h.viommu));
			ASSERT_EQ(EBUSY, errno);
			ASSERT_EQ(0, held_do(&h, 'f'));
			ASSERT_EQ(0, held_do(&h, 'u'));
			ASSERT_EQ(0, held_do(&h, 'g'));
		}
		left = uiommu_serve_fail_nth_disarm();
		for (k = 0; k < 4 && kinds[k] != rc; k++)
			;
		/* On a mismatch, prints what the child said. */
		ASSERT_EQ(rc, rc ? (k < 4 ? kinds[k] : -1) : 0);
		if (rc)
			seen[k]++;
		close(h.sock);
		ASSERT_EQ(0, test_child_wait(h.pid));
		ASSERT_EQ(0, destroy(h.fd, h.viommu));
		ASSERT_EQ(0, close(h.fd));
		ASSERT_EQ(0, live_contexts_settle(0));
	}
	ASSERT_NE(0, left);
	/* A refused request or hold, a refused memfd, a lost reply; and mappings that held. */
	ASSERT_NE(0, seen[0]);
	ASSERT_NE(0, seen[1]);
	ASSERT_NE(0, seen[2]);
	ASSERT_NE(0, mapped);
}

/*
 * The mapping side's fallible steps in turn (its file's lookup, its record of the mapping):
 * a mapping that failed holds nothing (its hold given back at once), one that succeeded holds.
 */
TEST(fail_nth_of_a_remote_mapping_in_the_mapping_process)
{
	unsigned long failed = 0;
	struct held h;
	char cmd[2] = { 'x', 0 };
	int rc = 0;

	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	for (int nth = 1; nth < 64 && rc != -2; nth++) {
		ASSERT_EQ(0, held_start(&h));
		ASSERT_EQ(0, held_do(&h, 'n'));
		cmd[1] = (char)nth;
		ASSERT_EQ(1, write(h.sock, cmd, 1));
		rc = held_do(&h, cmd[1]);
		if (rc == -2 || rc == -3) {
			ASSERT_EQ(-1, destroy(h.fd, h.viommu));
			ASSERT_EQ(EBUSY, errno);
			ASSERT_EQ(0, held_do(&h, 'u'));
		} else {
			ASSERT_EQ(ENOMEM, rc); /* on a mismatch, prints what the child said */
			failed++;
		}
		/* Given back before mmap() returned (or never taken). */
		ASSERT_EQ(0, destroy(h.fd, h.viommu));
		close(h.sock);
		ASSERT_EQ(0, test_child_wait(h.pid));
		ASSERT_EQ(0, close(h.fd));
		ASSERT_EQ(0, live_contexts_settle(0));
	}
	ASSERT_EQ(-2, rc);
	ASSERT_NE(0, failed);
}

/* ---- a fork's copy of the serving process's own mapping holds it too ------------------- */

/*
 * The copy's side of local_run(): a fork of this process with its copy of the mapping @p
 * (@len bytes, the region's word first, when @mapped), answering the test's commands on @sock
 * with an int (0 or an errno) as child_held() does: 'u' unmaps all of it, 'p' its first
 * page, 'q' the rest; 'x' exits at once (status 0); 'e' execs "--child heldexec" (the copy
 * goes with the old image, whose answer is the new image's 0); 'F' forks a copy of the copy
 * (held_copy()), which 'G' has unmap it and exit (the answer: its status). EOF ends it.
 */
static __attribute__((noreturn)) void local_copy_serve(int sock, uint32_t *p, size_t len,
						      bool mapped)
{
	int go[2] = { -1, -1 }, rc;
	pid_t copy = -1;
	char cmd;

	if (mapped && p[0] != 0xabcdu)
		_exit(2);
	while (read(sock, &cmd, 1) == 1) {
		if (cmd == 'x')
			_exit(0);
		if (cmd == 'e') {
			rc = held_exec(sock);
		} else if (cmd == 'F') {
			rc = pipe2(go, O_CLOEXEC) ? errno : 0;
			if (!rc && (copy = held_copy(go, p, len, -1, -1)) < 0)
				rc = errno;
		} else if (cmd == 'G') {
			rc = write(go[1], &cmd, 1) == 1 ? test_child_wait(copy) : errno;
			close(go[1]);
		} else if (cmd == 'u' || cmd == 'p' || cmd == 'q')
			rc = munmap(cmd == 'q' ? (char *)p + PS : (char *)p,
				    cmd == 'u' ? len : cmd == 'p' ? PS : len - PS) ? errno : 0;
		else
			rc = -1;
		if (write(sock, &rc, sizeof(rc)) != sizeof(rc))
			_exit(4);
	}
	_exit(0);
}

/*
 * Runs @script on this process's own mapping of a vIOMMU region of its own (two pages) and a
 * fork's copy of it: 'f' forks the copy, 'U' unmaps our mapping, 'B' the vIOMMU's destroy
 * answers EBUSY, 'D' it succeeds at once, 'K' SIGKILLs the copy and reaps it, 'x' has it exit
 * (reaped); any other letter is a
 * command of the copy's (local_copy_serve()), which must answer 0. Then everything ends and
 * the context goes (no hold left behind, the fork's own included).
 */
/*
 * Under ThreadSanitizer a fork of this multi-threaded process that goes on running (no exec)
 * deadlocks: TSan cannot follow liburcu's helper thread across the fork (test_preload skips
 * its fork cases for that), and its report's symbolizer, in that thread, munmaps through the
 * preload layer while the fork holds the lock of the mappings.
 */
#if defined(__SANITIZE_THREAD__)
#define NEEDS_FORK_WITHOUT_EXEC() SKIP("fork of a multi-threaded process under ThreadSanitizer")
#else
#define NEEDS_FORK_WITHOUT_EXEC() do { } while (0)
#endif

static void local_run(struct __h_test *_metadata, const char *script)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	int sv[2] = { -1, -1 }, rc, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint32_t viommu, *p;
	bool mapped = true;
	pid_t copy = -1;
	char c;

	ASSERT_GE(fd, 0);
	p = region_mapped(fd, &data, &viommu);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(2 * PS, data.out_mmap_length);
	for (const char *cmd = script; *cmd; cmd++) {
		switch (*cmd) {
		case 'f':
			ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
			copy = fork();
			ASSERT_GE(copy, 0);
			if (copy == 0) {
				close(sv[0]);
				local_copy_serve(sv[1], p, 2 * PS, mapped);
			}
			close(sv[1]);
			break;
		case 'U':
			ASSERT_EQ(0, munmap(p, 2 * PS));
			mapped = false;
			break;
		case 'B':
			ASSERT_EQ(-1, destroy(fd, viommu));
			ASSERT_EQ(EBUSY, errno);
			break;
		case 'D':
			ASSERT_EQ(0, destroy(fd, viommu));
			break;
		case 'K':
			ASSERT_EQ(0, kill(copy, SIGKILL));
			ASSERT_EQ(128 + SIGKILL, test_child_wait(copy));
			copy = -1;
			break;
		case 'x':
			ASSERT_EQ(1, write(sv[0], cmd, 1));
			ASSERT_EQ(0, test_child_wait(copy));
			copy = -1;
			break;
		default:
			c = *cmd;
			ASSERT_EQ(1, write(sv[0], &c, 1));
			ASSERT_EQ((ssize_t)sizeof(rc), read(sv[0], &rc, sizeof(rc)));
			ASSERT_EQ(0, rc);
		}
	}
	close(sv[0]);
	if (copy > 0)
		ASSERT_EQ(0, test_child_wait(copy));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

/*
 * fork() of the serving process copies its own mapping of its own region, and the copy holds
 * the vIOMMU as the kernel's copied VMA does (from before fork() returns: the child takes over
 * a hold made for it): EBUSY while either has any page mapped, in either order; free at once
 * after the last page's munmap, and once the copy's process exited, was killed or exec'd.
 */
TEST(a_forked_copy_of_the_serving_process_s_own_mapping_holds_it)
{
	NEEDS_IOMMUFD_TEST();
	NEEDS_FORK_WITHOUT_EXEC();
	local_run(_metadata, "fUBuD");
	local_run(_metadata, "fuBUD");
	local_run(_metadata, "fUBpBqD");
	local_run(_metadata, "fUBxD");
	local_run(_metadata, "fUBKD");
	local_run(_metadata, "fUBeD");
	/* The copy's own fork: the copy of the copy holds at this process's server too. */
	local_run(_metadata, "fUFBuBGD");
}

/*
 * A fork of a process that has unmapped its region holds nothing; the copy's munmap lets go of
 * the hold it took over while ours still holds: free at once when ours goes.
 */
TEST(a_fork_without_the_mapping_holds_nothing)
{
	NEEDS_IOMMUFD_TEST();
	NEEDS_FORK_WITHOUT_EXEC();
	local_run(_metadata, "UfD");
	local_run(_metadata, "fuUDx");
}

/*
 * Each fallible step of a fork's hold for its copy of this process's own mapping in turn: the
 * forking side's (the fork's record, its socketpair, the hold), the copy's (its connection to
 * this process, the call that takes the hold over: the countdown goes on in the child) and,
 * in a second sweep, this process's serving of them (the accept, the HELLO, MMAP_FORK). A
 * failure leaves the copy unheld, never a hold behind: once the copy is gone the vIOMMU is
 * destroyed and the context goes.
 */
TEST(fail_nth_of_a_forks_hold_of_the_serving_process_s_mapping)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	unsigned long nth, nth_child, left, held = 0, unheld = 0;

	NEEDS_IOMMUFD_TEST();
	NEEDS_FORK_WITHOUT_EXEC();
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	for (int serving = 0; serving < 2; serving++) {
		left = 0;
		for (nth = 1; nth < 100 && !left; nth++) {
			int sv[2], rc, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
			uint32_t viommu, *p;
			pid_t copy;
			char c = 'u';

			ASSERT_GE(fd, 0);
			p = region_mapped(fd, &data, &viommu);
			ASSERT_NE(MAP_FAILED, p);
			ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
			if (serving)
				uiommu_serve_fail_nth_arm(nth);
			else
				uiommu_fail_nth_arm(nth);
			copy = fork();
			if (copy == 0) {
				/*
				 * The countdown went on in the child's fork handlers: what is left
				 * of it says whether one failed there (or before, in the parent's).
				 */
				left = uiommu_fail_nth_disarm();
				close(sv[0]);
				if (write(sv[1], &left, sizeof(left)) != sizeof(left))
					_exit(6);
				local_copy_serve(sv[1], p, 2 * PS, true);
			}
			if (serving)
				left = uiommu_serve_fail_nth_disarm();
			else
				uiommu_fail_nth_disarm();
			ASSERT_GT(copy, 0);
			close(sv[1]);
			if (serving)
				ASSERT_EQ((ssize_t)sizeof(nth), read(sv[0], &nth_child, sizeof(nth)));
			else
				ASSERT_EQ((ssize_t)sizeof(left), read(sv[0], &left, sizeof(left)));
			ASSERT_EQ(0, munmap(p, 2 * PS));
			rc = destroy(fd, viommu);
			if (rc) {
				ASSERT_EQ(EBUSY, errno);
				held++;
			} else {
				unheld++;
			}
			/* Nothing failed: the copy holds. */
			if (left)
				ASSERT_EQ(-1, rc);
			ASSERT_EQ(1, write(sv[0], &c, 1));
			ASSERT_EQ((ssize_t)sizeof(rc), read(sv[0], &rc, sizeof(rc)));
			ASSERT_EQ(0, rc);
			close(sv[0]);
			ASSERT_EQ(0, test_child_wait(copy));
			rc = destroy(fd, viommu);
			if (rc)
				ASSERT_EQ(ENOENT, errno); /* destroyed above */
			ASSERT_EQ(0, close(fd));
			ASSERT_EQ(0, live_contexts_settle(0));
		}
		ASSERT_NE(0, left);
	}
	ASSERT_NE(0, held);
	ASSERT_NE(0, unheld);
}

/*
 * open() of /proc/self/fd/N (and its other spellings) of a /dev/iommu fd opens the node anew,
 * as the kernel's: a new context. A file without a node (a fault fd) is refused as the kernel
 * refuses its anonymous files and sockets (ENXIO); O_NOFOLLOW on the link is ELOOP.
 */
TEST(proc_fd_reopen_of_dev_iommu_is_a_new_context)
{
	const char *fmts[] = { "/proc/self/fd/%d", "/dev/fd/%d", "/proc/thread-self/fd/%d" };
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), fd2;
	long contexts;
	char path[64];

	ASSERT_GE(fd, 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	contexts = live_contexts();
	for (unsigned int i = 0; i <= sizeof(fmts) / sizeof(fmts[0]); i++) {
		if (i < sizeof(fmts) / sizeof(fmts[0]))
			snprintf(path, sizeof(path), fmts[i], fd);
		else
			snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), fd);
		fd2 = open(path, O_RDWR | O_CLOEXEC);
		ASSERT_GE(fd2, 0);
		ASSERT_TRUE(uiommu_is_fd(fd2));
		ASSERT_EQ(contexts + 1, live_contexts());
		/* Its own IDs: the first is 1 again, and destroying it leaves ours. */
		ASSERT_EQ(1, ioas_alloc(fd2));
		ASSERT_EQ(0, destroy(fd2, 1));
		ASSERT_EQ(0, close(fd2));
		ASSERT_EQ(contexts, live_contexts());
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ASSERT_ERRNO(ELOOP, open(path, O_RDWR | O_NOFOLLOW));
	ASSERT_EQ(0, ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq));
	snprintf(path, sizeof(path), "/proc/self/fd/%u", fq.out_fault_fd);
	ASSERT_ERRNO(ENXIO, open(path, O_RDWR));
	ASSERT_EQ(0, close((int)fq.out_fault_fd));
	ASSERT_EQ(0, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
}

TEST(the_context_lives_until_the_last_close_anywhere)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint64_t reply[3];
	pid_t pid;
	char c = 0;

	ASSERT_GE(fd, 0);
	pid = child_start_with("scm", fd, &c, 1, &sock);
	ASSERT_GT(pid, 0);
	/* A device file is no socket: shutdown() neither answers nor ends anything. */
	ASSERT_ERRNO(ENOTSOCK, shutdown(fd, SHUT_RDWR));
	/* Our last fd goes; the child still holds one: the context stays. */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(1, live_contexts());
	ASSERT_EQ((ssize_t)sizeof(reply), read(sock, reply, sizeof(reply)));
	ASSERT_EQ(1, reply[0]);
	ASSERT_EQ(1, live_contexts());
	/* Its exit closes the last fd anywhere: the context goes, with the child's pins. */
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, live_contexts_settle(0));
	close(sock);
}

/*
 * A context whose last fd a killed process held: once waitpid() reported the death, the
 * counters no longer show it, nor its pins, as the kernel's exit released the file before the
 * parent could reap. The server thread sees the hang-up too, but may still be at it when the
 * test looks: the context pins enough of the test's memory under a mock domain that its
 * release takes longer than the counters' own wait for deferred frees.
 */
TEST(a_context_held_last_by_a_killed_process_is_gone_once_it_is_reaped)
{
	size_t len = 256ul << 20;
	void *buf;

	NEEDS_IOMMUFD_TEST();
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		   -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	for (int round = 0; round < 30; round++) {
		struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
		int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		struct uiommu_stats st;
		uint64_t iova;
		pid_t pid;
		char c = 0;

		ASSERT_GE(fd, 0);
		md.id = ioas_alloc(fd);
		ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &md));
		ASSERT_EQ(0, ioas_map(fd, md.id, buf, len, &iova));
		pid = child_start_with("keep", fd, &c, 1, &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ(1, read(sock, &c, 1));
		ASSERT_EQ(0, close(fd));
		ASSERT_EQ(1, live_contexts());
		ASSERT_EQ(0, child_kill_reap(pid));
		ASSERT_EQ(0, uiommu_stats_get(&st));
		ASSERT_EQ(0, st.contexts);
		ASSERT_EQ(0, st.pinned_pages);
		close(sock);
	}
	munmap(buf, len);
}

/*
 * A child forked (not exec'd) from a process with a live context must not spin: liburcu
 * 0.13's hash-table resize worker, re-created in a fork's child from its parent's asleep
 * state, never slept again and took half the machine's CPU (bench_procs's child). The child
 * sleeps and reports what it spent, every thread together; a spinning thread spends at least
 * its share of the sleep even on a loaded machine, an idle child a fraction of a millisecond.
 */
TEST(a_forked_child_has_no_busy_thread)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), pipefd[2];
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	long used_us = -1;
	pid_t pid;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_EQ(0, pipe(pipefd));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		struct timespec nap = { .tv_nsec = 300 * 1000 * 1000 };
		struct rusage ru;
		long us;

		while (nanosleep(&nap, &nap) && errno == EINTR)
			;
		getrusage(RUSAGE_SELF, &ru);
		us = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec +
		     ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec;
		_exit(write(pipefd[1], &us, sizeof(us)) == sizeof(us) ? 0 : 1);
	}
	close(pipefd[1]);
	ASSERT_EQ((ssize_t)sizeof(used_us), read(pipefd[0], &used_us, sizeof(used_us)));
	ASSERT_EQ(0, test_child_wait(pid));
	close(pipefd[0]);
	/* 300 ms asleep: a spinner spends 100+ ms even sharing a CPU three ways. */
	ASSERT_LT(used_us, 50 * 1000);
	close(fd);
}

/*
 * A client SIGKILLed in a loop of map/unmap calls on the IOAS, most likely inside one (the
 * server is running it, holding the IOAS): once waitpid() has reported it, the IOAS's destroy
 * succeeds at once, as the kernel's, whose killed ioctl has returned by then: the serving
 * process finds the client gone and waits for its call. 50 rounds, so that a race shows.
 */
TEST(a_client_killed_mid_ioctls_leaves_the_context_intact)
{
	for (int round = 0; round < 50; round++) {
		int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		uint32_t ioas;
		uint64_t ready;
		pid_t pid;

		ASSERT_GE(fd, 0);
		ioas = ioas_alloc(fd);
		ASSERT_EQ(1, ioas);
		pid = child_start_with("loop", fd, &ioas, sizeof(ioas), &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ((ssize_t)sizeof(ready), read(sock, &ready, sizeof(ready)));
		ASSERT_EQ(0, kill(pid, SIGKILL));
		ASSERT_EQ(128 + SIGKILL, test_child_wait(pid));
		/* What the call it died in left goes with the IOAS. */
		ASSERT_EQ(0, destroy(fd, ioas));
		ASSERT_EQ(2, ioas_alloc(fd) == 1 ? 2 : 0);
		ASSERT_EQ(0, close(fd));
		close(sock);
	}
	ASSERT_EQ(0, live_contexts_settle(0));
}

TEST(the_serving_process_dies_and_calls_fail_cleanly)
{
	int sock, fd;
	pid_t pid;
	char c;

	pid = child_start_with("server", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	fd = recv_fd(sock, &c, 1);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(uiommu_is_fd(fd));
	/* Served by the child: its IOAS 1 is there, our IOAS is its 2. */
	ASSERT_EQ(2, ioas_alloc(fd));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(128 + SIGKILL, test_child_wait(pid));
	/* No hang: the connection is gone (EIO), and so is the server (ENODEV) after that. */
	ASSERT_EQ(-1, destroy(fd, 1));
	ASSERT_TRUE(errno == EIO || errno == ENODEV);
	ASSERT_ERRNO(ENODEV, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
	close(sock);
}

/*
 * A serving process that forked a child which lives on (no exec) and then dies: the child's
 * copies of the server's accepted connections must not keep them open, or a call would wait
 * for an answer nobody gives.
 */
TEST(the_serving_process_dies_leaving_a_forked_child_and_calls_fail_cleanly)
{
	int sock, fd;
	pid_t pid;
	char c;

	pid = child_start_with("serverfork", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	fd = recv_fd(sock, &c, 1);
	ASSERT_GE(fd, 0);
	/* A call first: our connection to the server is open when it forks. */
	ASSERT_EQ(2, ioas_alloc(fd));
	ASSERT_EQ(1, write(sock, "f", 1));
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(128 + SIGKILL, test_child_wait(pid));
	ASSERT_EQ(-1, destroy(fd, 1));
	ASSERT_TRUE(errno == EIO || errno == ENODEV);
	ASSERT_ERRNO(ENODEV, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
	/* The forked child ends with its copy of the socket's other end. */
	close(sock);
}

TEST(garbage_on_the_wire_ends_only_that_connection)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	pid_t pid;
	char c = 0;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	pid = child_start_with("garbage", fd, &c, 1, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, destroy(fd, 2));
	ASSERT_EQ(0, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
	close(sock);
}

/*
 * The serving thread that first reaches each point stops there until the test lets it go
 * (uiommu_serve_point_hook()); later ones pass.
 */
static sem_t point_reached[UIOMMU_SERVE_AT_NOTES + 1], point_go[UIOMMU_SERVE_AT_NOTES + 1];
static atomic_int point_hits[UIOMMU_SERVE_AT_NOTES + 1];

static void points_init(void)
{
	for (int i = 0; i <= UIOMMU_SERVE_AT_NOTES; i++) {
		sem_init(&point_reached[i], 0, 0);
		sem_init(&point_go[i], 0, 0);
		atomic_store(&point_hits[i], 0);
	}
}

static void point_hold(int point)
{
	if (atomic_fetch_add(&point_hits[point], 1))
		return;
	sem_post(&point_reached[point]);
	sem_wait(&point_go[point]);
}

/*
 * A live client drops its only connection (broken) and connects again; a settle runs while the
 * old connection's thread has yet to see the end and the new connection's HELLO has found the
 * client but not answered. The settle must see the new connection, live: the client is not
 * gone, and its next call is served (it used to be taken for exec'd: its calls refused, the
 * connection ended).
 */
TEST(a_settle_during_a_hello_sees_the_new_connection)
{
	struct wire_req req = { .magic = WIRE_MAGIC, .op = WIRE_STATUS };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), a, b;
	struct wire_fd_header hdr;
	struct uiommu_stats st;
	struct wire_rep rep;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_GE(fd, 0);
	ASSERT_EQ((ssize_t)sizeof(hdr), recv(fd, &hdr, sizeof(hdr), MSG_PEEK));
	/* A client of our server with a cookie of its own: another process, to the server. */
	a = wire_client_connect(&hdr);
	ASSERT_GE(a, 0);
	ASSERT_EQ(0, wire_client_hello(a, 77));
	ASSERT_EQ((ssize_t)sizeof(rep), recv(a, &rep, sizeof(rep), MSG_WAITALL));
	ASSERT_EQ(0, rep.rc);
	points_init();
	uiommu_serve_point_hook(point_hold);
	close(a);
	ASSERT_EQ(0, sem_wait(&point_reached[UIOMMU_SERVE_AT_CONN_END]));
	b = wire_client_connect(&hdr);
	ASSERT_GE(b, 0);
	ASSERT_EQ(0, wire_client_hello(b, 77));
	ASSERT_EQ(0, sem_wait(&point_reached[UIOMMU_SERVE_AT_HELLO]));
	/* The settle, in the window. */
	ASSERT_EQ(0, uiommu_stats_get(&st));
	uiommu_serve_point_hook(NULL);
	sem_post(&point_go[UIOMMU_SERVE_AT_HELLO]);
	sem_post(&point_go[UIOMMU_SERVE_AT_CONN_END]);
	ASSERT_EQ((ssize_t)sizeof(rep), recv(b, &rep, sizeof(rep), MSG_WAITALL));
	ASSERT_EQ(0, rep.rc);
	ASSERT_EQ((ssize_t)sizeof(req), write(b, &req, sizeof(req)));
	ASSERT_EQ((ssize_t)sizeof(rep), recv(b, &rep, sizeof(rep), MSG_WAITALL));
	ASSERT_EQ(0, rep.rc);
	close(b);
	ASSERT_EQ(0, close(fd));
}

/*
 * At UIOMMU_SERVE_AT_NOTES only: the server thread stops there, with the event file in hand,
 * until the test lets it go or half a second has passed. The bound is for a right library,
 * whose settle waits for the server thread to let go of the file: the test cannot tell a
 * settle waiting from one not yet begun, so it cannot let go at the right moment. A wrong
 * library answers at once; only on a machine so slow that its destroy takes longer than the
 * bound does it pass. A right one never fails, whatever the machine.
 */
static void point_hold_notes(int point)
{
	struct timespec until;

	if (point != UIOMMU_SERVE_AT_NOTES || atomic_fetch_add(&point_hits[point], 1))
		return;
	sem_post(&point_reached[point]);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 500000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (sem_timedwait(&point_go[point], &until) && errno == EINTR)
		;
}

static int sem_wait_10s(sem_t *sem)
{
	struct timespec until;
	int rc;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	while ((rc = sem_timedwait(sem, &until)) && errno == EINTR)
		;
	return rc;
}

/*
 * A fault fd whose last fd is another process's, closed there while the server thread reads
 * the note that process sent when it adopted the fd: the queue's destroy here, after that
 * close, goes through, as the kernel's release has run when close() returns. It used to
 * answer EBUSY: the server thread's reference on the file, taken for the read, outlived the
 * destroy's settle, which had seen the close (fail_nth_of_the_serving_side met it, rarely).
 */
TEST(a_last_close_elsewhere_during_a_notes_read_lets_the_queue_go)
{
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	pid_t pid;
	char c = 0;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_GE(fd, 0);
	/* Started before the queue is: its fork has no fault fd to send a note for. */
	pid = child_start_with("holder", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq));
	points_init();
	uiommu_serve_point_hook(point_hold_notes);
	ASSERT_EQ(0, send_fd(sock, (int)fq.out_fault_fd, &c, 1));
	/* Ours goes: the holder's is the last fd anywhere. */
	ASSERT_EQ(0, close((int)fq.out_fault_fd));
	/* Its adoption's note (the first notes read), in the server thread's hands. */
	ASSERT_EQ(0, sem_wait_10s(&point_reached[UIOMMU_SERVE_AT_NOTES]));
	ASSERT_EQ('k', holder_ask(sock, 'c'));
	/* Its errno, if any: EBUSY was the reference held past the settle. */
	ASSERT_EQ(0, destroy(fd, fq.out_fault_id) ? errno : 0);
	uiommu_serve_point_hook(NULL);
	sem_post(&point_go[UIOMMU_SERVE_AT_NOTES]);
	ASSERT_EQ(1, write(sock, "q", 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

TEST(two_processes_race_map_unmap_destroy_on_shared_ids)
{
	void *buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct uiommu_stats st;
	pid_t pid;
	char c = 0;

	ASSERT_GE(fd, 0);
	ASSERT_TRUE(buf != MAP_FAILED);
	pid = child_start_with("race", fd, &c, 1, &sock);
	ASSERT_GT(pid, 0);
	for (int i = 0; i < 300; i++) {
		uint32_t ioas = ioas_alloc(fd);
		uint64_t iova;

		ASSERT_NE(0, ioas);
		if (ioas_map(fd, ioas, buf, PS, &iova)) {
			ASSERT_EQ(ENOENT, errno);
			continue;
		}
		if (ioas_unmap_len(fd, ioas, iova, PS) < 0)
			ASSERT_EQ(ENOENT, errno);
		if (destroy(fd, ioas))
			ASSERT_EQ(ENOENT, errno);
		if (destroy(fd, ioas + 1))
			ASSERT_TRUE(errno == ENOENT || errno == EBUSY);
	}
	ASSERT_EQ(0, test_child_wait(pid));
	/* Every IOAS was destroyed by one or the other: nothing is left in the context. */
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.objects);
	ASSERT_EQ(0, st.pinned_pages);
	ASSERT_EQ(0, close(fd));
	close(sock);
}

TEST(fail_nth_of_the_client_and_private_memory_under_a_domain)
{
	NEEDS_IOMMUFD_TEST(); /* a mock domain; the selftest access */
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct uiommu_stats st;
	uint32_t ioas;
	pid_t pid;

	ASSERT_GE(fd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_EQ(1, ioas);
	mock.id = ioas;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &mock));
	pid = child_start_with("sweep", fd, &ioas, sizeof(ioas), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, test_child_wait(pid));
	/* The MAP and UNMAP left nothing: no area, no pin. */
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.pinned_pages);
	ASSERT_EQ(0, ioas_unmap_len(fd, ioas, 0, UINT64_MAX));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
	close(sock);
}

/* Sends the child's command @op for @page with @val and returns its one-byte reply, or 0. */
static char private_cmd(int sock, char op, uint8_t page, uint8_t val)
{
	uint8_t cmd[3] = { (uint8_t)op, page, val };
	char reply;

	if (write(sock, cmd, 3) != 3 || read(sock, &reply, 1) != 1)
		return 0;
	return reply;
}

/* Whether @len bytes at @p are all @val. */
static bool all_bytes(const uint8_t *p, size_t len, uint8_t val)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != val)
			return false;
	return true;
}

/* The reason of the newest fault in @dma's log, or 0 for none. */
static uint32_t last_fault_reason(struct uiommu_dma_dev *dma)
{
	struct uiommu_dma_fault f[64];
	ssize_t n = uiommu_dma_dev_read_faults(dma, f, 64);

	return n > 0 ? f[n - 1].reason : 0;
}

/*
 * Ends the private_memory fixture's child: SIGKILL when @kill, else its 'q'. Return: whether it
 * is then a zombie that went the way asked.
 */
static bool private_child_go(pid_t pid, int sock, bool kill_it)
{
	siginfo_t info;

	if (kill_it ? kill(pid, SIGKILL) != 0 : write(sock, "q\0", 3) != 3)
		return false;
	return !waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) &&
	       info.si_code == (kill_it ? CLD_KILLED : CLD_EXITED);
}

/* The IOVA of the newest fault in @dma's log, which must be a host fault; else UINT64_MAX. */
static uint64_t last_host_fault_iova(struct uiommu_dma_dev *dma)
{
	struct uiommu_dma_fault f[64];
	ssize_t n = uiommu_dma_dev_read_faults(dma, f, 64);

	return n > 0 && f[n - 1].reason == UIOMMU_DMA_FAULT_HOST ? f[n - 1].iova : UINT64_MAX;
}

/*
 * Another process's private memory under a domain of our context (docs/processes.md, "The
 * caller's memory"): the device's DMA reads and writes the child's pages coherently (a write
 * is seen by the child at once, its store by the next read); a page it replaced or unmapped
 * faults, and the device never reaches the memory that took its place; once the child is gone
 * (exited, or killed with SIGKILL) every DMA to it faults, never stale data: the device sees
 * a fault, nothing crashes. The mapping stays until unmapped, then nothing is pinned. The
 * copies are checked by the child's life word, or (the _mem_fd variants: a child that hands
 * over none) by its mem fd.
 */
FIXTURE(private_memory) {
	int fd, sock;
	pid_t pid;
	struct uiommu_dma_dev *dma;
	uint32_t ioas;
	uint64_t iova;
};

FIXTURE_VARIANT(private_memory) {
	bool kill;    /* the child is killed with SIGKILL instead of exiting */
	bool no_life; /* the child hands over no life word: checked through its mem fd */
};

FIXTURE_VARIANT_ADD(private_memory, exit) { .kill = false };
FIXTURE_VARIANT_ADD(private_memory, sigkill) { .kill = true };
FIXTURE_VARIANT_ADD(private_memory, exit_mem_fd) { .kill = false, .no_life = true };
FIXTURE_VARIANT_ADD(private_memory, sigkill_mem_fd) { .kill = true, .no_life = true };

FIXTURE_SETUP(private_memory)
{
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	uint64_t msg[2];

	self->sock = -1;
	self->pid = -1;
	self->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->fd, 0);
	NEEDS_IOMMUFD_TEST(); /* a mock domain and device */
	self->ioas = ioas_alloc(self->fd);
	mock.id = self->ioas;
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_TEST_CMD, &mock));
	self->dma = uiommu_dma_dev_open_iommufd(self->fd, mock.mock_domain.out_idev_id);
	ASSERT_NE(NULL, self->dma);
	if (variant->no_life)
		ASSERT_EQ(0, setenv("UIOMMU_REMOTE_LIFE", "0", 1));
	self->pid = child_start_with("private", self->fd, &self->ioas, sizeof(self->ioas),
				     &self->sock);
	ASSERT_EQ(0, unsetenv("UIOMMU_REMOTE_LIFE"));
	ASSERT_GT(self->pid, 0);
	ASSERT_EQ((ssize_t)sizeof(msg), read(self->sock, msg, sizeof(msg)));
	self->iova = msg[0];
}

FIXTURE_TEARDOWN(private_memory)
{
	if (self->dma)
		uiommu_dma_dev_close(self->dma);
	if (self->sock >= 0)
		close(self->sock);
	if (self->pid > 0) {
		kill(self->pid, SIGKILL);
		waitpid(self->pid, NULL, 0);
	}
	close(self->fd);
}

TEST_F(private_memory, dma_is_coherent_until_the_owner_goes)
{
	uint8_t *out = malloc(4 * PS), *in = malloc(4 * PS);
	uint64_t p0 = self->iova, p1 = self->iova + PS, p2 = self->iova + 2 * PS;
	uint64_t p3 = self->iova + 3 * PS;
	struct uiommu_stats st;

	unsigned long by_life = uiommu_remote_life_copies();

	ASSERT_NE(NULL, out);
	ASSERT_NE(NULL, in);
	/* What the child stored before the MAP, all four pages in one transfer. */
	ASSERT_EQ(4 * PS, uiommu_dma_read(self->dma, 0, p0, in, 4 * PS, 0));
	ASSERT_TRUE(all_bytes(in, 4 * PS, 0x11));
	/* Checked by the child's life word, one load (mm_remote.c), else by its mem fd. */
	ASSERT_EQ(variant->no_life, by_life == uiommu_remote_life_copies());
	/* The device's write is the child's memory at once. */
	memset(out, 0x22, PS);
	ASSERT_EQ(PS, uiommu_dma_write(self->dma, 0, p0, out, PS, 0));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 0, 0x22));
	/* And the child's store is what the next read sees. */
	ASSERT_EQ('k', private_cmd(self->sock, 's', 0, 0x33));
	ASSERT_EQ(PS, uiommu_dma_read(self->dma, 0, p0, in, PS, 0));
	ASSERT_TRUE(all_bytes(in, PS, 0x33));

	/*
	 * The child replaces its first page (mmap MAP_FIXED): the device faults there and never
	 * reaches the new page, as the kernel's pin would keep the old one.
	 */
	ASSERT_EQ('k', private_cmd(self->sock, 'r', 0, 0x77));
	memset(in, 0x5a, PS);
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, p0, in, PS, 0));
	ASSERT_TRUE(all_bytes(in, PS, 0x5a));
	ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, last_fault_reason(self->dma));
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, p0, out, PS, 0));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 0, 0x77));
	/* It unmaps its second page and maps new memory there behind the library's back. */
	ASSERT_EQ('k', private_cmd(self->sock, 'u', 1, 0x66));
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, p1, out, PS, 0));
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, p1, in, PS, 0));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 1, 0x66));
	/* It moves its third page away (mremap), and the same. */
	ASSERT_EQ('k', private_cmd(self->sock, 'm', 2, 0x55));
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, p2, out, PS, 0));
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, p2, in, PS, 0));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 2, 0x55));
	/* The fourth page still works. */
	memset(out, 0x44, PS);
	ASSERT_EQ(PS, uiommu_dma_write(self->dma, 0, p3, out, PS, 0));
	ASSERT_EQ(PS, uiommu_dma_read(self->dma, 0, p3, in, PS, 0));
	ASSERT_TRUE(all_bytes(in, PS, 0x44));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 3, 0x44));

	/* The child goes; while it is a zombie, and after it is reaped, every DMA faults. */
	ASSERT_TRUE(private_child_go(self->pid, self->sock, variant->kill));
	memset(in, 0x5a, PS);
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, p3, in, PS, 0));
	ASSERT_TRUE(all_bytes(in, PS, 0x5a)); /* not a byte of stale data */
	ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, last_fault_reason(self->dma));
	ASSERT_EQ(variant->kill ? 128 + SIGKILL : 0, test_child_wait(self->pid));
	self->pid = -1;
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, p3, out, PS, 0));
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, p3, in, PS, 0));

	/* The mapping stays until unmapped, as the kernel's; then nothing is pinned. */
	ASSERT_EQ(4 * PS, ioas_unmap_len(self->fd, self->ioas, p0, 4 * PS));
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.pinned_pages);
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, p0, in, PS, 0));
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, last_fault_reason(self->dma));
	free(out);
	free(in);
}

/*
 * The child maps one page of hugetlb memory over its first page (MAP_FIXED|MAP_HUGETLB at a
 * huge page boundary): the kernel replaces the whole huge page, all four pages, and does so
 * even when the mapping then fails for want of a free huge page (the usual host: the
 * reservation comes after the old pages went), leaving a hole where new memory may come. The
 * server must learn of every page replaced, not only of the length asked: the device faults
 * on each and never reaches the huge page or the memory that took the hole.
 */
TEST_F(private_memory, a_hugetlb_mmap_fixed_forgets_the_whole_huge_page_even_when_it_fails)
{
	uint8_t in[4 * PS], out[PS];
	char r;

	if (!huge_page_size())
		SKIP("the host has no hugetlb");
	/* The child's pages, read through the window before. */
	ASSERT_EQ(4 * PS, uiommu_dma_read(self->dma, 0, self->iova, in, 4 * PS, 0));
	ASSERT_TRUE(all_bytes(in, 4 * PS, 0x11));
	r = private_cmd(self->sock, 'H', 0, 0x66);
	if (r == 's')
		SKIP("MAP_HUGETLB refused before it replaced anything");
	ASSERT_EQ('k', r);
	memset(out, 0x22, PS);
	for (unsigned int i = 0; i < 4; i++) {
		uint64_t iova = self->iova + i * PS;

		memset(in, 0x5a, PS);
		ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, iova, in, PS, 0));
		ASSERT_TRUE(all_bytes(in, PS, 0x5a));
		ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, last_fault_reason(self->dma));
		ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, iova, out, PS, 0));
		ASSERT_EQ('y', private_cmd(self->sock, 'v', (uint8_t)i, 0x66));
	}
}

/*
 * The child maps a vIOMMU region of the iommufd it was handed over its last two pages
 * (MAP_FIXED of the iommufd itself, which the library maps): the server learns of those pages
 * as of any other MAP_FIXED, and the device faults there, never reading the region; the first
 * two pages still work.
 */
TEST_F(private_memory, an_mmap_fixed_of_an_iommufd_over_private_pages_is_told_too)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	uint8_t cmd[3] = { 'R', 2, 0 }, in[2 * PS];
	uint64_t reg[2];
	uint32_t viommu;
	char r;

	ASSERT_EQ(0, viommu_with_region(self->fd, &data, &viommu));
	reg[0] = data.out_mmap_offset;
	reg[1] = data.out_mmap_length;
	ASSERT_EQ(2 * PS, reg[1]);
	ASSERT_EQ(2 * PS, uiommu_dma_read(self->dma, 0, self->iova + 2 * PS, in, 2 * PS, 0));
	ASSERT_TRUE(all_bytes(in, 2 * PS, 0x11));
	ASSERT_EQ(3, write(self->sock, cmd, 3));
	ASSERT_EQ((ssize_t)sizeof(reg), write(self->sock, reg, sizeof(reg)));
	ASSERT_EQ(1, read(self->sock, &r, 1));
	ASSERT_EQ('k', r);
	for (unsigned int i = 2; i < 4; i++) {
		memset(in, 0x5a, PS);
		ASSERT_ERRNO(EFAULT, uiommu_dma_read(self->dma, 0, self->iova + i * PS, in, PS, 0));
		ASSERT_TRUE(all_bytes(in, PS, 0x5a));
		ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, last_fault_reason(self->dma));
	}
	ASSERT_EQ(2 * PS, uiommu_dma_read(self->dma, 0, self->iova, in, 2 * PS, 0));
	ASSERT_TRUE(all_bytes(in, 2 * PS, 0x11));
}

/*
 * One DMA over both of the child's mappings (two pins, two extents of the window that follow
 * each other: one copy into the child, mm/window.c): every byte lands, both ways; a hole in
 * the middle that the server was not told of (the child's raw munmap of its second page) stops
 * the transfer at exactly that page, the first page written and nothing from the hole on;
 * a page the server knows the child replaced (a dead extent) stops it there too; once the
 * child is gone the whole transfer faults before its first byte.
 */
TEST_F(private_memory, a_dma_over_two_extents_moves_as_one_and_faults_at_the_exact_page)
{
	struct uiommu_dma_req req = { .op = UIOMMU_DMA_OP_WRITE, .len = 4 * PS };
	uint8_t *out = malloc(4 * PS), *in = malloc(4 * PS);
	uint64_t p0 = self->iova;

	ASSERT_NE(NULL, out);
	ASSERT_NE(NULL, in);
	memset(out, 0x21, 4 * PS);
	ASSERT_EQ(4 * PS, uiommu_dma_write(self->dma, 0, p0, out, 4 * PS, 0));
	for (uint8_t page = 0; page < 4; page++)
		ASSERT_EQ('y', private_cmd(self->sock, 'v', page, 0x21));
	ASSERT_EQ('k', private_cmd(self->sock, 's', 2, 0x23));
	ASSERT_EQ(4 * PS, uiommu_dma_read(self->dma, 0, p0, in, 4 * PS, 0));
	ASSERT_TRUE(all_bytes(in, 2 * PS, 0x21));
	ASSERT_TRUE(all_bytes(in + 2 * PS, PS, 0x23));
	ASSERT_TRUE(all_bytes(in + 3 * PS, PS, 0x21));

	/* A hole at the end of the first extent: the first page moves, nothing after it. */
	ASSERT_EQ('k', private_cmd(self->sock, 'h', 1, 0));
	memset(out, 0x31, 4 * PS);
	req.iova = p0;
	req.buf = out;
	ASSERT_EQ(-1, uiommu_dma_xfer(self->dma, &req));
	ASSERT_EQ(EFAULT, req.error);
	ASSERT_EQ(PS, req.done);
	ASSERT_EQ(p0 + PS, last_host_fault_iova(self->dma));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 0, 0x31));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 2, 0x23));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 3, 0x21));
	memset(in, 0x5a, 4 * PS);
	req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_READ, .iova = p0, .buf = in,
				       .len = 4 * PS };
	ASSERT_EQ(-1, uiommu_dma_xfer(self->dma, &req));
	ASSERT_EQ(EFAULT, req.error);
	ASSERT_EQ(PS, req.done);
	ASSERT_EQ(p0 + PS, last_host_fault_iova(self->dma));
	ASSERT_TRUE(all_bytes(in, PS, 0x31));
	ASSERT_TRUE(all_bytes(in + PS, 3 * PS, 0x5a));

	/* A page replaced (the server is told: a dead extent) past a live one: the same. */
	ASSERT_EQ('k', private_cmd(self->sock, 'r', 3, 0x77));
	req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_WRITE, .iova = p0 + 2 * PS,
				       .buf = out, .len = 2 * PS };
	ASSERT_EQ(-1, uiommu_dma_xfer(self->dma, &req));
	ASSERT_EQ(EFAULT, req.error);
	ASSERT_EQ(PS, req.done);
	ASSERT_EQ(p0 + 3 * PS, last_host_fault_iova(self->dma));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 2, 0x31));
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 3, 0x77));

	/* The child goes: nothing moves, in either direction. */
	ASSERT_TRUE(private_child_go(self->pid, self->sock, variant->kill));
	memset(in, 0x5a, 4 * PS);
	req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_READ, .iova = p0 + 2 * PS, .buf = in,
				       .len = PS };
	ASSERT_EQ(-1, uiommu_dma_xfer(self->dma, &req));
	ASSERT_EQ(EFAULT, req.error);
	ASSERT_EQ(0, req.done);
	ASSERT_EQ(p0 + 2 * PS, last_host_fault_iova(self->dma));
	ASSERT_TRUE(all_bytes(in, PS, 0x5a));
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, p0, out, PS, 0));
	ASSERT_EQ(variant->kill ? 128 + SIGKILL : 0, test_child_wait(self->pid));
	self->pid = -1;
	free(out);
	free(in);
}

/*
 * A child's private pages under a domain, then the child execs (same pid, a new address
 * space) while a thread of ours keeps the device writing to its page: the old image's pinned
 * pages are gone with it, and the device never reaches the new image's memory at the same
 * address (EFAULT), where the kernel's pins keep the old pages. Writes that raced the exec
 * either landed in the old image or failed; none after the new image stored its bytes, which
 * it finds intact. The copies check the child by its life word (mm_remote.c): an exec must
 * mark it before the new image runs, for libc's execve and for the raw system call alike.
 */
struct privexec_dma {
	struct uiommu_dma_dev *dma;
	uint64_t iova;
	atomic_bool image_new; /* the new image stored its 0x99 (the child is gone) */
	atomic_long new_ok;    /* writes that succeeded after that: must stay 0 */
	atomic_long faults;    /* writes that failed after it */
};

static void *privexec_dma_main(void *arg)
{
	struct privexec_dma *pd = arg;
	uint8_t out[PS];

	memset(out, 0x22, PS);
	/* Bounded: until 2,000 writes after the new image's word, at most 10^6 in all. */
	for (long i = 0; i < 1000000 && atomic_load(&pd->faults) + atomic_load(&pd->new_ok) < 2000;
	     i++) {
		bool after = atomic_load(&pd->image_new);
		ssize_t n = uiommu_dma_write(pd->dma, 0, pd->iova, out, PS, 0);

		if (after)
			atomic_fetch_add(n == PS ? &pd->new_ok : &pd->faults, 1);
	}
	return NULL;
}

/*
 * The child goes (exits, or is SIGKILLed) while a thread of ours keeps the device writing its
 * page: from the moment it is a zombie every write faults (the life word was marked at its
 * exit, before it was one), and after it is reaped too; none ever lands in anything else.
 */
TEST_F(private_memory, dma_throughout_the_owners_end_faults_once_it_is_gone)
{
	struct privexec_dma pd = { .dma = self->dma, .iova = self->iova + 3 * PS };
	unsigned long by_life = uiommu_remote_life_copies();
	uint8_t out[PS];
	pthread_t thread;

	memset(out, 0x22, PS);
	ASSERT_EQ(PS, uiommu_dma_write(self->dma, 0, pd.iova, out, PS, 0));
	ASSERT_EQ(by_life + !variant->no_life, uiommu_remote_life_copies());
	ASSERT_EQ('y', private_cmd(self->sock, 'v', 3, 0x22));
	ASSERT_EQ(0, pthread_create(&thread, NULL, privexec_dma_main, &pd));
	ASSERT_TRUE(private_child_go(self->pid, self->sock, variant->kill));
	atomic_store(&pd.image_new, true);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(0, atomic_load(&pd.new_ok));
	ASSERT_EQ(2000, atomic_load(&pd.faults));
	ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, last_fault_reason(self->dma));
	ASSERT_EQ(variant->kill ? 128 + SIGKILL : 0, test_child_wait(self->pid));
	self->pid = -1;
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(self->dma, 0, pd.iova, out, PS, 0));
}

static void private_memory_exec(struct __h_test *_metadata, bool raw)
{
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct privexec_dma pd = { 0 };
	unsigned long by_life;
	uint8_t out[PS], in[PS];
	struct uiommu_stats st;
	pthread_t thread;
	uint64_t msg[2];
	uint32_t ioas;
	pid_t pid;
	char c;

	ASSERT_GE(fd, 0);
	NEEDS_IOMMUFD_TEST(); /* a mock domain and device */
	ioas = ioas_alloc(fd);
	mock.id = ioas;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &mock));
	pd.dma = uiommu_dma_dev_open_iommufd(fd, mock.mock_domain.out_idev_id);
	ASSERT_NE(NULL, pd.dma);
	pid = child_start_with("privexec", fd, &ioas, sizeof(ioas), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ((ssize_t)sizeof(msg), read(sock, msg, sizeof(msg)));
	pd.iova = msg[0];
	ASSERT_EQ(PS, uiommu_dma_read(pd.dma, 0, msg[0], in, PS, 0));
	ASSERT_TRUE(all_bytes(in, PS, 0x11));
	/* The device writes the old image while it lives, checked by its life word. */
	memset(out, 0x22, PS);
	by_life = uiommu_remote_life_copies();
	ASSERT_EQ(PS, uiommu_dma_write(pd.dma, 0, msg[0], out, PS, 0));
	ASSERT_EQ(by_life + 1, uiommu_remote_life_copies());
	ASSERT_EQ(0, pthread_create(&thread, NULL, privexec_dma_main, &pd));
	ASSERT_EQ(1, write(sock, raw ? "X" : "x", 1));
	ASSERT_EQ(1, read(sock, &c, 1));
	atomic_store(&pd.image_new, true);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(0, atomic_load(&pd.new_ok));
	if (c == 'k') {
		ASSERT_EQ(2000, atomic_load(&pd.faults));
		ASSERT_ERRNO(EFAULT, uiommu_dma_write(pd.dma, 0, msg[0], out, PS, 0));
		ASSERT_ERRNO(EFAULT, uiommu_dma_read(pd.dma, 0, msg[0], in, PS, 0));
		ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, last_fault_reason(pd.dma));
		ASSERT_EQ(1, write(sock, "v", 1));
		ASSERT_EQ(1, read(sock, &c, 1));
		ASSERT_EQ('y', c);
	} else {
		ASSERT_EQ('s', c); /* the new image uses that address itself: nothing to compare */
	}
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(PS, ioas_unmap_len(fd, ioas, msg[0], PS));
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.pinned_pages);
	ASSERT_EQ(0, uiommu_dma_dev_close(pd.dma));
	ASSERT_EQ(0, close(fd));
	close(sock);
}

TEST(private_memory_of_a_process_that_execs)
{
	private_memory_exec(_metadata, false);
}

TEST(private_memory_of_a_process_that_execs_by_the_raw_system_call)
{
	private_memory_exec(_metadata, true);
}

/*
 * A VMM child in @role, handed a new iommufd (*@fd) and the cdev @node (*@vfd) the libvirt way;
 * its socket in *@sock. Return: its pid, or -1.
 */
static pid_t vmm_start(const char *role, const char *node, int *fd, int *vfd, int *sock)
{
	char c = 0;
	pid_t pid;

	*fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	*vfd = open(node, O_RDWR | O_CLOEXEC);
	if (*fd < 0 || *vfd < 0)
		return -1;
	pid = child_start_with(role, *fd, &c, 1, sock);
	if (pid > 0 && send_fd(*sock, *vfd, &c, 1))
		return -1;
	return pid;
}

TEST(vfio_cdev_and_iommufd_handed_to_a_vmm)
{
	uint32_t ids[2]; /* the device's, the IOAS's */
	int sock, fd, vfd;
	pid_t pid;
	char c = 0;

	pid = vmm_start("vfio", "/dev/vfio/devices/vfio2", &fd, &vfd, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ((ssize_t)sizeof(ids), read(sock, ids, sizeof(ids)));
	/* The child's bind made the device object in our context; the cdev owns it. */
	ASSERT_ERRNO(EBUSY, destroy(fd, ids[0]));
	/* Its IOAS is ours too, and busy with the attached device's HWPT. */
	ASSERT_ERRNO(EBUSY, destroy(fd, ids[1]));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	/* The last close of the cdev anywhere unbinds: the IOAS is free again. */
	ASSERT_EQ(0, close(vfd));
	ASSERT_ERRNO(ENOENT, destroy(fd, ids[0]));
	ASSERT_EQ(0, destroy(fd, ids[1]));
	ASSERT_EQ(0, close(fd));
	close(sock);
}

/*
 * The orchestrator's flow (docs/vfio.md): the manager hands a VMM the cdev and an iommufd and
 * closes its copies; the VMM binds; it is killed. Once waitpid() reports it, its files are
 * released, as the kernel's exit did before: the cdev the manager opens again binds in the
 * next VMM at once (EINVAL, the device bound, while the serving side had not yet seen the
 * hang-up). The next VMM is ready before the kill, connected to our server, so that its bind
 * comes as soon as it can.
 */
TEST(the_next_vmm_binds_the_device_a_killed_one_had_bound)
{
	uint32_t ids[2];
	int sock, fd, vfd, sock2, fd2;
	pid_t pid, next;
	char c = 0;

	pid = vmm_start("vfio", "/dev/vfio/devices/vfio2", &fd, &vfd, &sock);
	ASSERT_GT(pid, 0);
	for (int round = 0; round < 30; round++) {
		ASSERT_EQ((ssize_t)sizeof(ids), read(sock, ids, sizeof(ids)));
		ASSERT_EQ(0, close(vfd));
		ASSERT_EQ(0, close(fd));
		fd2 = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		ASSERT_GE(fd2, 0);
		next = child_start_with("vfioready", fd2, &c, 1, &sock2);
		ASSERT_GT(next, 0);
		ASSERT_EQ(1, read(sock2, &c, 1));
		ASSERT_EQ('r', c);
		/* The killed VMM held the only fds of the cdev and of its context. */
		ASSERT_EQ(0, child_kill_reap(pid));
		close(sock);
		vfd = open("/dev/vfio/devices/vfio2", O_RDWR | O_CLOEXEC);
		ASSERT_GE(vfd, 0);
		ASSERT_EQ(0, send_fd(sock2, vfd, &c, 1));
		pid = next;
		sock = sock2;
		fd = fd2;
	}
	ASSERT_EQ((ssize_t)sizeof(ids), read(sock, ids, sizeof(ids)));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, close(fd));
	close(sock);
}

/* The IOMMU group of the cdev vfio@n's function. */
static int cdev_group_id(int n)
{
	char path[80];

	snprintf(path, sizeof(path), "/sys/class/vfio-dev/vfio%d/device/iommu_group", n);
	return vfio_group_id_of_link(path);
}

/*
 * A killed process held the only fd of what excludes the manager's next open or bind: the
 * group node (a second open is EBUSY), or the device bound through its cdev (EINVAL for
 * another bind, EBUSY for the group node). Once waitpid() reports it, the manager's own open
 * or bind succeeds at once, as in the kernel, whose exit released the files first.
 */
TEST(the_manager_reopens_what_a_killed_process_held_last)
{
	int g = cdev_group_id(2);
	char path[32], c = 0;

	ASSERT_GE(g, 0);
	snprintf(path, sizeof(path), "/dev/vfio/%d", g);
	for (int round = 0; round < 30; round++) {
		bool group_held = round % 2;
		uint32_t ids[2];
		int sock, fd, vfd;
		pid_t pid;

		if (group_held) {
			fd = open(path, O_RDWR | O_CLOEXEC);
			ASSERT_GE(fd, 0);
			pid = child_start_with("keep", fd, &c, 1, &sock);
			ASSERT_GT(pid, 0);
			ASSERT_EQ(1, read(sock, &c, 1));
			ASSERT_EQ(0, close(fd));
			/* Still open, in the child: the node is exclusive. */
			ASSERT_ERRNO(EBUSY, open(path, O_RDWR | O_CLOEXEC));
		} else {
			pid = vmm_start("vfio", "/dev/vfio/devices/vfio2", &fd, &vfd, &sock);
			ASSERT_GT(pid, 0);
			ASSERT_EQ((ssize_t)sizeof(ids), read(sock, ids, sizeof(ids)));
			ASSERT_EQ(0, close(vfd));
			ASSERT_EQ(0, close(fd));
		}
		ASSERT_EQ(0, child_kill_reap(pid));
		close(sock);
		/* Every other round of each kind, the other path: the cross-exclusion. */
		if (round % 4 < 2) {
			fd = open(path, O_RDWR | O_CLOEXEC);
			ASSERT_GE(fd, 0);
		} else {
			fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
			vfd = open("/dev/vfio/devices/vfio2", O_RDWR | O_CLOEXEC);
			ASSERT_GE(fd, 0);
			ASSERT_GE(vfd, 0);
			ASSERT_EQ(0, vfio_bind(vfd, fd, NULL));
			ASSERT_EQ(0, close(vfd));
		}
		ASSERT_EQ(0, close(fd));
	}
}

/*
 * The group's device fd of vfio2's function, held last by a killed process: the manager's
 * next GET_DEVICE_FD makes another at once (EBUSY, the device open, a moment after before).
 */
TEST(a_group_s_device_fd_a_killed_process_held_last_is_made_again)
{
	int g, fd, d, sock, container;
	char link[256], path[32], *name, c = 0;
	ssize_t len;
	pid_t pid;

	/* The function's name: its link's basename (../../../BDF). */
	len = readlink("/sys/class/vfio-dev/vfio2/device", link, sizeof(link) - 1);
	ASSERT_GT(len, 0);
	link[len] = '\0';
	name = strrchr(link, '/') + 1;
	snprintf(path, sizeof(path), "/dev/vfio/%d", cdev_group_id(2));
	g = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_GE(g, 0);
	fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	container = fd;
	ASSERT_EQ(0, ioctl(g, VFIO_GROUP_SET_CONTAINER, &container));
	for (int round = 0; round < 30; round++) {
		d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, name);
		ASSERT_GE(d, 0);
		pid = child_start_with("keep", d, &c, 1, &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ(1, read(sock, &c, 1));
		ASSERT_EQ(0, close(d));
		ASSERT_ERRNO(EBUSY, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, name));
		ASSERT_EQ(0, child_kill_reap(pid));
		close(sock);
	}
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, name);
	ASSERT_GE(d, 0);
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(fd));
}

/* vfio3 is a dma-test function (MSI-X) of the default machine. */
TEST(a_vmm_set_irqs_names_its_own_eventfds)
{
	int sock, fd, vfd;
	pid_t pid;
	char c = 0;

	pid = vmm_start("irqs", "/dev/vfio/devices/vfio3", &fd, &vfd, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ('k', c);
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, close(fd));
	close(sock);
}


/*
 * One round of a sweep of the serving side: the @nth step fails while child @role calls on
 * @fd. Return: the child's exit status (-1: it did not start), with what was left of the
 * countdown in *@left (not 0: nothing failed).
 */
static int serve_fail_nth_round(const char *role, int fd, unsigned long nth, unsigned long *left)
{
	uint32_t dummy = 0;
	int sock, rc;
	pid_t pid;

	uiommu_serve_fail_nth_arm(nth);
	pid = child_start_with(role, fd, &dummy, sizeof(dummy), &sock);
	rc = pid > 0 ? test_child_wait(pid) : -1;
	if (pid > 0)
		close(sock);
	/* The child is gone: every unit of its serving ended before it saw a reply. */
	*left = uiommu_serve_fail_nth_disarm();
	return rc;
}

/* The device binds here now: nothing of an earlier bind elsewhere holds it. */
static int xbind_binds_here(int fd)
{
	int vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC), rc;

	if (vfd < 0)
		return -1;
	rc = vfio_bind(vfd, fd, NULL);
	close(vfd);
	return rc;
}

TEST(a_vmm_binds_a_cdev_it_opened_to_its_managers_iommufd)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint32_t ioas, ids[2]; /* the device's, the HWPT's */
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd;
	pid_t pid;
	char c = 0;

	ASSERT_GE(fd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_NE(0u, ioas);
	pid = child_start_with("xbind", fd, &ioas, sizeof(ioas), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ((ssize_t)sizeof(ids), read(sock, ids, sizeof(ids)));
	/*
	 * The child's cdev, a file it serves, bound through us: our calls on it are redirected
	 * to the file it delegates to, which is ours (in-process), and so are a third process's,
	 * made there by that process with its own memory and eventfd.
	 */
	vfd = recv_fd(sock, &c, 1);
	ASSERT_GE(vfd, 0);
	ASSERT_TRUE(uiommu_is_fd(vfd));
	ASSERT_EQ(0, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_NE(0u, info.num_regions);
	ASSERT_EQ(0, xbind_config_read(vfd));
	ASSERT_EQ(0, xthird_round(vfd, ioas, 0));
	/* Each of its own steps in turn: a clean errno, then through. */
	if (uiommu_fail_nth_available()) {
		unsigned long nth, failed = 0;
		int rc;

		for (nth = 1; nth < 200; nth++) {
			rc = xthird_round(vfd, ioas, nth);
			if (!rc)
				break;
			/* On a mismatch, says at which step and what the child said. */
			if (!xsweep_errno_clean(rc) && rc != 99)
				ASSERT_EQ(0, (long)nth * 1000 + rc);
			failed += rc != 99;
		}
		ASSERT_LT(nth, 200);
		ASSERT_NE(0, failed);
	}
	ASSERT_EQ(0, close(vfd));
	/* The device object, its HWPT and the IOAS are ours, held by the child's file. */
	ASSERT_ERRNO(EBUSY, destroy(fd, ids[0]));
	ASSERT_ERRNO(EBUSY, destroy(fd, ids[1]));
	ASSERT_ERRNO(EBUSY, destroy(fd, ioas));
	/* A second bind anywhere: EINVAL, here as in the child. */
	vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
	ASSERT_GE(vfd, 0);
	ASSERT_ERRNO(EINVAL, vfio_bind(vfd, fd, NULL));
	ASSERT_EQ(0, close(vfd));
	/* The child's close is the last of the file bound here: the IOAS is free at once. */
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ('c', c);
	ASSERT_EQ(0, destroy(fd, ioas));
	ASSERT_ERRNO(ENOENT, destroy(fd, ids[0]));
	close(sock);
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, xbind_binds_here(fd));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

/*
 * One reverse bind (child_xrev()): the cdev @vfd, ours, handed to a child that binds it to its
 * own context, with its own fail point @nth (0: none). We answer its 'b' and wait for its
 * close ('c'); @check, when not NULL, runs between the two. With @fd not -1, we then close
 * @vfd and the device must bind to @fd at once, while the child still lives (its file let go
 * when our close released the cdev); else @vfd stays open. Return: the child's exit status
 * (-1: it did not start; below: what went wrong here).
 */
static int xrev_sock = -1; /* the round's socket to the VMM, for @check */

/* Or "xrevmap", "xrevread": the VMM's first call an mmap, a read() at the position. */
static const char *xrev_role = "xrev";

static int xrev_round(int vfd, unsigned long nth, int (*check)(int vfd), int fd)
{
	int sock, rc = 0;
	char c = 0;
	pid_t pid = child_start_with(xrev_role, vfd, &nth, sizeof(nth), &sock);

	if (pid < 0)
		return -1;
	xrev_sock = sock;
	if (read(sock, &c, 1) == 1 && c == 'b') {
		rc = check ? check(vfd) : 0;
		if (write(sock, &c, 1) != 1 || read(sock, &c, 1) != 1 || c != 'c')
			rc = rc ?: -2;
		if (!rc && fd >= 0 && (close(vfd) || xbind_binds_here(fd)))
			rc = -10;
	}
	close(sock);
	return rc ?: test_child_wait(pid);
}

/* While the child has the device bound: ours binds nowhere else, and our calls reach it. */
static int xrev_bound_elsewhere(int vfd)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), rc;

	if (fd < 0)
		return -3;
	/* A second bind anywhere: EINVAL (another file here, the handed one itself). */
	rc = xbind_binds_here(fd) != -1 || errno != EINVAL ? -4 : 0;
	if (!rc && (vfio_bind(vfd, fd, NULL) != -1 || errno != EINVAL))
		rc = -5;
	/* Our own calls on the file we serve go to the child's, with our memory. */
	if (!rc && (ioctl(vfd, VFIO_DEVICE_GET_INFO, &info) || !info.num_regions))
		rc = -6;
	if (!rc && xbind_config_read(vfd))
		rc = -7;
	close(fd);
	return rc;
}

/*
 * QEMU's -device vfio-pci,fd=N (the cdev from libvirt) with a plain -object iommufd: the
 * handed cdev binds to the VMM's own context, which we, the cdev's server, reach through the
 * VMM; its calls after the bind are its own, in-process (child_xrev()). Once the VMM closed
 * the cdev and so did we, the device binds again here.
 */
TEST(a_cdev_handed_to_a_vmm_binds_to_the_vmm_s_own_context)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	/*
	 * After the VMM's close, ours is the cdev's last: its release lets go of the VMM's
	 * file, and so the device, while the VMM lives on.
	 */
	ASSERT_EQ(0, xrev_round(vfd, 0, xrev_bound_elsewhere, fd));
	ASSERT_EQ(0, close(fd));
}

/*
 * The same, the other way round: the manager (a child) is SIGKILLed once the VMM (we) bound
 * its cdev and made a call: the calls stay ours, in-process, without it (the file our calls
 * are redirected to is ours, held by our copy of its fd); our close lets go of the device.
 */
TEST(a_vmm_s_calls_after_a_reverse_bind_outlive_the_manager)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd;
	uint32_t devid = 0, ioas;
	pid_t pid;
	char c;

	ASSERT_GE(fd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_NE(0u, ioas);
	pid = child_start_with("xmgr", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	vfd = recv_fd(sock, &c, 1);
	ASSERT_GE(vfd, 0);
	ASSERT_EQ(0, vfio_bind(vfd, fd, &devid));
	ASSERT_NE(0u, devid);
	ASSERT_EQ(0, xrev_calls(vfd, fd, ioas));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, NULL, 0));
	close(sock);
	ASSERT_EQ(0, xrev_calls(vfd, fd, ioas));
	/* The device object is ours: busy until the cdev's close, which is its last anywhere. */
	ASSERT_ERRNO(EBUSY, destroy(fd, ioas));
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, destroy(fd, ioas));
	ASSERT_EQ(0, xbind_binds_here(fd));
	ASSERT_EQ(0, close(fd));
}

/*
 * A VMM that maps a BAR of the handed cdev right after its reverse bind, before any other
 * call (QEMU may map the BARs first): the mapping asks the manager, which serves the cdev,
 * and is redirected to the file the VMM serves (the device is the VMM's): it maps, and it is
 * the device's page both ways. It used to answer ENODEV until some other call had been
 * redirected.
 */
TEST(a_vmm_maps_a_bar_first_thing_after_a_reverse_bind)
{
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd;
	volatile uint32_t *db;
	uint32_t devid = 0;
	pid_t pid;
	char c;

	ASSERT_GE(fd, 0);
	pid = child_start_with("xmgr", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	vfd = recv_fd(sock, &c, 1);
	ASSERT_GE(vfd, 0);
	ASSERT_EQ(0, vfio_bind(vfd, fd, &devid));
	ASSERT_NE(0u, devid);
	db = xrev_doorbell_map(vfd);
	ASSERT_TRUE(db != MAP_FAILED);
	ASSERT_EQ(0, xrev_doorbell_check(vfd, db));
	close(sock);
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, xbind_binds_here(fd));
	ASSERT_EQ(0, close(fd));
}

/* The manager's turn: a write() at the position of the cdev it serves, at SCRATCH. */
static int xrev_pos_write(int vfd)
{
	uint64_t v = XREV_PATTERN;

	return write(vfd, &v, sizeof(v)) == sizeof(v) ? 0 : -11;
}

/*
 * read() and write() at the position of a cdev another process serves, whose calls are
 * redirected: the position is the cdev file's, one for every process that holds it, as the
 * kernel's f_pos is the open file's. The VMM reads the device's registers one after the other
 * from 0 (its calls made at its own file, at the position the manager's file has), the
 * manager (we) writes at the position it left, SCRATCH, and the VMM's next write lands past
 * that. They used to answer EOPNOTSUPP in the VMM.
 */
TEST(read_and_write_at_the_position_of_a_reverse_bound_cdev_share_it)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	xrev_role = "xrevread";
	ASSERT_EQ(0, xrev_round(vfd, 0, xrev_pos_write, fd));
	xrev_role = "xrev";
	ASSERT_EQ(0, close(fd));
}

/*
 * The last fd of the cdev file @vfd (a copy of which we hold) handed to a third process
 * (child_xlast()), @peer told to close its own copy (a byte, then its 'c'), then the third
 * process closes the last and binds at once. Return: its bind's result (0 or the errno), or
 * -1 when a step went wrong.
 */
static int xlast_round(int vfd, int peer)
{
	int sock, rc = -1;
	pid_t pid = child_start_with("xlast", vfd, "f", 1, &sock);
	char c = 'x';

	if (pid < 0)
		return -1;
	if (read(sock, &c, 1) != 1 || c != 'r' || close(vfd) || write(peer, &c, 1) != 1 ||
	    read(peer, &c, 1) != 1 || c != 'c' || write(sock, &c, 1) != 1 ||
	    read(sock, &rc, sizeof(rc)) != sizeof(rc))
		rc = -1;
	close(sock);
	return test_child_wait(pid) ? -1 : rc;
}

/*
 * A third process's bind right after it closed the last fd of a cdev file bound through a
 * delegate: the cdev's server releases it and closes the delegate's fd, whose server then
 * unbinds; the bind, refused meanwhile, asks the session's servers to settle in the order the
 * session lists them, which may be the delegate's server first. It binds at once, whichever
 * way the delegation goes: a cdev of ours bound by a VMM to its own context (the delegate is
 * the VMM's), and the VMM's own cdev bound to our context (the delegate is ours). It used to
 * answer EINVAL when the delegate's server was asked first and had yet to see the close.
 */
TEST(a_bind_right_after_the_last_close_of_a_delegating_cdev)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), sock, vfd;
	uint32_t ioas, ids[2];
	pid_t pid;
	char c;

	ASSERT_GE(fd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_NE(0u, ioas);
	for (int round = 0; round < 10; round++) {
		/* Ours, bound by the VMM to its own context: the delegate is the VMM's. */
		unsigned long nth = 0;

		vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
		ASSERT_GE(vfd, 0);
		pid = child_start_with("xrev", vfd, &nth, sizeof(nth), &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ(1, read(sock, &c, 1));
		ASSERT_EQ('b', c);
		ASSERT_EQ(0, xlast_round(vfd, sock));
		close(sock);
		ASSERT_EQ(0, test_child_wait(pid));

		/* The VMM's, bound to our context: the delegate is ours. */
		pid = child_start_with("xbind", fd, &ioas, sizeof(ioas), &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ((ssize_t)sizeof(ids), read(sock, ids, sizeof(ids)));
		vfd = recv_fd(sock, &c, 1);
		ASSERT_GE(vfd, 0);
		ASSERT_EQ(0, xlast_round(vfd, sock));
		close(sock);
		ASSERT_EQ(0, test_child_wait(pid));
	}
	ASSERT_EQ(0, xbind_binds_here(fd));
	ASSERT_EQ(0, close(fd));
}

/*
 * A forked (not exec'd) child of a VMM whose calls on a cdev were redirected: its calls go to
 * the target through its copy of the redirect (to us, who serve the target), and its close of
 * the cdev closes that copy: once the manager is gone and we closed the cdev too, the device
 * binds here while the child still lives.
 */
TEST(a_forked_child_s_close_of_a_redirected_cdev_lets_go)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd, p[2], hold[2];
	uint32_t devid = 0;
	pid_t mgr, child;
	char c;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(hold, O_CLOEXEC));
	mgr = child_start_with("xmgr", -1, NULL, 0, &sock);
	ASSERT_GT(mgr, 0);
	vfd = recv_fd(sock, &c, 1);
	ASSERT_GE(vfd, 0);
	ASSERT_EQ(0, vfio_bind(vfd, fd, &devid));
	ASSERT_EQ(0, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	child = fork();
	ASSERT_GE(child, 0);
	if (!child) {
		int rc = ioctl(vfd, VFIO_DEVICE_GET_INFO, &info) || xbind_config_read(vfd) ||
			 close(vfd);

		close(p[0]);
		close(hold[1]);
		if (write(p[1], rc ? "x" : "c", 1) != 1)
			_exit(1);
		/* Lives on, holding nothing of the device, until the test lets it go. */
		_exit(read(hold[0], &c, 1) == 0 ? 0 : 2);
	}
	close(p[1]);
	close(hold[0]);
	ASSERT_EQ(1, read(p[0], &c, 1));
	ASSERT_EQ('c', c);
	ASSERT_EQ(0, kill(mgr, SIGKILL));
	ASSERT_EQ(mgr, waitpid(mgr, NULL, 0));
	close(sock);
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, xbind_binds_here(fd));
	close(hold[1]);
	ASSERT_EQ(0, test_child_wait(child));
	close(p[0]);
	ASSERT_EQ(0, close(fd));
}

/* A forked (not exec'd) copy of us made while the VMM has the device, and a pipe it waits on. */
static pid_t xrev_fork_pid;
static int xrev_fork_hold = -1;

static int xrev_fork_check(int vfd)
{
	int p[2], done[2];
	char c;

	if (pipe2(p, O_CLOEXEC))
		return -8;
	if (pipe2(done, O_CLOEXEC)) {
		close(p[0]);
		close(p[1]);
		return -8;
	}
	xrev_fork_pid = fork();
	if (xrev_fork_pid < 0)
		return -9;
	if (!xrev_fork_pid) {
		/*
		 * Its copy of the cdev goes, and of the VMM's socket, whose EOF the VMM waits
		 * for; it says so, and lives on until the test lets it go.
		 */
		close(p[1]);
		close(done[0]);
		if (close(vfd) || close(xrev_sock) || write(done[1], "c", 1) != 1)
			_exit(1);
		_exit(read(p[0], &c, 1) == 0 ? 0 : 2);
	}
	close(p[0]);
	close(done[1]);
	xrev_fork_hold = p[1];
	/*
	 * As in the kernel, the device binds elsewhere only once every copy of its cdev file is
	 * closed: the child's close is ordered before our bind, not left to how fast it runs.
	 */
	c = 0;
	if (read(done[0], &c, 1) != 1 || c != 'c')
		c = 0;
	close(done[0]);
	return c ? 0 : -11;
}

/*
 * A forked child of ours, the cdev's server, while the cdev's delegate is the VMM's file: its
 * copy of the delegate goes at the fork (it holds the cdev, not the delegate), so that once the
 * VMM and we closed the cdev and the child closed its copy, the device binds here while the
 * child still lives, as in the kernel, where the last close of the cdev lets go.
 */
TEST(a_forked_child_of_the_cdev_s_server_holds_no_delegate)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	ASSERT_EQ(0, xrev_round(vfd, 0, xrev_fork_check, fd));
	close(xrev_fork_hold);
	ASSERT_EQ(0, test_child_wait(xrev_fork_pid));
	ASSERT_EQ(0, close(fd));
}

/*
 * A reverse bind while a step fails: each of the serving side's steps here in turn (the
 * bind served for the VMM, its bind there, the redirect), then each of the VMM's own: a clean
 * errno, nothing left (the step made again goes through; after the VMM's exit and our close,
 * the device binds here). @role "xrevmap": the redirect is the one of the VMM's mmap, its
 * first call after the bind.
 */
static void xrev_sweep(struct __h_test *_metadata, bool serving, const char *role)
{
	int rc, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), vfd;
	unsigned long nth, left = 0, failed = 0;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_GE(fd, 0);
	xrev_role = role;
	for (nth = 1; nth < 300; nth++) {
		vfd = open(XBIND_NODE, O_RDWR | O_CLOEXEC);
		ASSERT_GE(vfd, 0);
		if (serving)
			uiommu_serve_fail_nth_arm(nth);
		rc = xrev_round(vfd, serving ? 0 : nth, NULL, -1);
		/* The child is gone: every unit of its serving ended before it saw a reply. */
		left = serving ? uiommu_serve_fail_nth_disarm() : 0;
		ASSERT_EQ(0, close(vfd));
		ASSERT_EQ(0, xbind_binds_here(fd));
		/* Nothing failed: the sweep is over. */
		if ((serving && left) || (!serving && !rc)) {
			ASSERT_EQ(0, rc);
			break;
		}
		/* On a mismatch, says at which step and what the child said. */
		if (rc && !xsweep_errno_clean(rc) && rc != (serving ? 60 : 99) &&
		    !(rc == EMFILE && !strcmp(role, "xrevmap")))
			ASSERT_EQ(0, (long)nth * 1000 + rc);
		failed += rc && rc != 60 && rc != 99;
	}
	xrev_role = "xrev";
	ASSERT_LT(nth, 300);
	ASSERT_NE(0, failed);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

TEST(fail_nth_of_a_reverse_bind_on_the_serving_side)
{
	xrev_sweep(_metadata, true, "xrev");
}

TEST(fail_nth_of_a_reverse_bind_in_the_binding_process)
{
	xrev_sweep(_metadata, false, "xrev");
}

TEST(fail_nth_of_a_bar_mapped_first_after_a_reverse_bind_on_the_serving_side)
{
	xrev_sweep(_metadata, true, "xrevmap");
}

TEST(fail_nth_of_a_bar_mapped_first_after_a_reverse_bind_in_the_binding_process)
{
	xrev_sweep(_metadata, false, "xrevmap");
}

TEST(fail_nth_of_a_read_at_the_position_after_a_reverse_bind_on_the_serving_side)
{
	xrev_sweep(_metadata, true, "xrevread");
}

TEST(fail_nth_of_a_read_at_the_position_after_a_reverse_bind_in_the_binding_process)
{
	xrev_sweep(_metadata, false, "xrevread");
}

/*
 * Each step of the serving side in turn, failed while a child binds its cdev to our context:
 * a clean errno, nothing left (the child's next bind succeeds, and so does ours after it).
 */
TEST(fail_nth_of_a_bind_served_for_another_process)
{
	int rc, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	unsigned long nth, left = 0, failed = 0;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_GE(fd, 0);
	for (nth = 1; nth < 300 && !left; nth++) {
		rc = serve_fail_nth_round("xsweep", fd, nth, &left);
		ASSERT_NE(-1, rc);
		if (left) {
			ASSERT_EQ(0, rc);
			break;
		}
		/* On a mismatch, prints what the child said. */
		if (rc)
			ASSERT_TRUE(rc == ENOMEM || rc == ENODEV || rc == EIO || rc == EFAULT ||
				    rc == 60);
		failed += rc && rc != 60;
		ASSERT_EQ(0, xbind_binds_here(fd));
	}
	ASSERT_NE(0, left);
	ASSERT_NE(0, failed);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

/* The same on the binding side: each of the child's own steps in turn (child_xsweep()). */
TEST(fail_nth_of_a_bind_through_another_process_in_the_binding_process)
{
	int sock, rc, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	uint32_t dummy = 0;
	pid_t pid;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_GE(fd, 0);
	pid = child_start_with("xsweepc", fd, &dummy, sizeof(dummy), &sock);
	ASSERT_GT(pid, 0);
	rc = test_child_wait(pid);
	close(sock);
	/* Some of its steps failed, each cleanly; on a mismatch, prints what it said. */
	ASSERT_TRUE(rc > 200 && rc <= 250);
	ASSERT_EQ(0, xbind_binds_here(fd));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

TEST(an_fd_made_for_another_process_is_its_own)
{
	NEEDS_IOMMUFD_TEST(); /* a mock domain; the selftest access */
	uint8_t *buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct uiommu_stats st;
	uint64_t msg[2];
	pid_t pid;

	ASSERT_GE(fd, 0);
	ASSERT_TRUE(buf != MAP_FAILED);
	memset(buf, 0x5a, PS);
	msg[0] = ioas_alloc(fd);
	ASSERT_EQ(1, msg[0]);
	ASSERT_EQ(0, ioas_map(fd, 1, buf, PS, &msg[1]));
	pid = child_start_with("subfd", fd, msg, sizeof(msg), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(PS, ioas_unmap_len(fd, 1, msg[1], PS));
	/*
	 * Its close was the access fd's last anywhere: the server thread releases the access,
	 * which held the IOAS (EBUSY until then), and its pins.
	 */
	ASSERT_EQ(0, destroy(fd, 1));
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.pinned_pages);
	ASSERT_EQ(0, close(fd));
	close(sock);
}

/*
 * QEMU's CPR: the serving process execs itself keeping its fds; the context, its IOAS and
 * mapping live on for the new image and for the other holders (this process), served by the
 * process the exec handed them to. A failed exec before leaves everything as it was.
 */
TEST(exec_of_the_serving_process_hands_its_contexts_over)
{
	int sock, fd, status, servers = 0;
	uint64_t msg[2];
	pid_t pid;
	char c = 0;

	/* The servers the hand-overs make are reparented here, to be waited for. */
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L));
	pid = child_start_with("cpr", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	fd = recv_fd(sock, msg, sizeof(msg));
	ASSERT_GE(fd, 0);
	ASSERT_EQ(2, ioas_alloc(fd));
	/* Its exec fails (ENOENT): it serves on, to us and to itself. */
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ((ssize_t)sizeof(msg), read(sock, msg, sizeof(msg)));
	ASSERT_EQ(3, msg[0]);
	ASSERT_EQ(4, ioas_alloc(fd));
	ASSERT_EQ(0, destroy(fd, 4));
	/* Its exec succeeds: the new image and we reach the same context. */
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ((ssize_t)sizeof(msg), read(sock, msg, sizeof(msg)));
	ASSERT_EQ(4, msg[0]);
	ASSERT_EQ(5, ioas_alloc(fd));
	ASSERT_EQ(0, destroy(fd, 2));
	ASSERT_EQ(0, destroy(fd, 3));
	ASSERT_EQ(0, destroy(fd, 5));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	/* The new image destroyed IOAS 1 and 4 before it exited: the context is empty. */
	ASSERT_EQ(-1, destroy(fd, 1));
	ASSERT_EQ(ENOENT, errno);
	ASSERT_EQ(0, close(fd));
	/*
	 * That was the last fd anywhere: the server exits, as did those of the failed execs
	 * (unused). A server that never exits fails the case by its timeout.
	 */
	while (wait(&status) > 0) {
		ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		servers++;
	}
	ASSERT_EQ(ECHILD, errno);
	ASSERT_GE(servers, 2);
	close(sock);
}

/*
 * The process an exec hands the serving to is a copy of the exec'ing one, but keeps none of
 * the program's fds: a pipe the program held reaches EOF when the last program image holding
 * it exits, not when the context goes. What the library holds works on there: the memfd
 * duplicate behind a MAP_FILE (its first pin comes after the exec), this process's client
 * fds (a map of its private memory, read back through an access) and a vIOMMU region's memfd
 * (mmap from here).
 */
TEST(the_next_server_keeps_none_of_the_programs_fds)
{
	struct iommu_test_cmd create = { .size = sizeof(create), .op = IOMMU_TEST_OP_CREATE_ACCESS };
	struct iommu_test_cmd rw = { .size = sizeof(rw), .op = IOMMU_TEST_OP_ACCESS_RW };
	uint8_t *mine = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int sock, fd, pipefd[2], status;
	uint8_t got[2 * PS];
	struct pollfd pfd;
	uint64_t msg[4], iova;
	uint32_t ioas, *region;
	pid_t pid;
	char c = 0;

	NEEDS_IOMMUFD_TEST(); /* the selftest access */
	ASSERT_NE(MAP_FAILED, mine);
	memset(mine, 0x3c, PS);
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L));
	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	pid = child_start_with("cprfds", pipefd[1], &c, 1, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, close(pipefd[1]));
	fd = recv_fd(sock, msg, sizeof(msg));
	ASSERT_GE(fd, 0);
	/* Our client state at the server (our pidfd, mem, maps) is made before the hand-over. */
	ASSERT_EQ(0, ioas_alloc_id(fd, &ioas));
	ASSERT_EQ(0, ioas_map(fd, ioas, mine, PS, &iova));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(1, read(sock, &c, 1)); /* the new image runs, holding the pipe */
	pfd = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	ASSERT_EQ(0, poll(&pfd, 1, 0));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	/* Its last holder is gone: EOF at once (only a failure waits out the timeout). */
	ASSERT_EQ(1, poll(&pfd, 1, 10000));
	ASSERT_EQ(0, read(pipefd[0], &c, 1));

	/* The memfd's first pin, in the next server. */
	create.id = 1;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &create));
	rw.id = create.create_access.out_access_fd;
	rw.access_rw.iova = msg[0];
	rw.access_rw.length = sizeof(got);
	rw.access_rw.uptr = (uintptr_t)got;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &rw));
	for (unsigned int i = 0; i < sizeof(got); i++)
		ASSERT_EQ(0xa5, got[i]);
	ASSERT_EQ(0, close((int)create.create_access.out_access_fd));
	/* Our private page, through the client fds the server took at our first call. */
	create.id = ioas;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &create));
	rw.id = create.create_access.out_access_fd;
	rw.access_rw.iova = iova;
	rw.access_rw.length = PS;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &rw));
	for (unsigned int i = 0; i < PS; i++)
		ASSERT_EQ(0x3c, got[i]);
	ASSERT_EQ(0, close((int)create.create_access.out_access_fd));
	ASSERT_EQ(PS, ioas_unmap_len(fd, ioas, iova, PS));
	ASSERT_EQ(2 * PS, ioas_unmap_len(fd, 1, msg[0], 2 * PS));
	ASSERT_EQ(0, destroy(fd, ioas));
	/* The vIOMMU region's memfd, which the next server hands out for our mmap. */
	region = mmap(NULL, msg[2], PROT_READ, MAP_SHARED, fd, (off_t)msg[1]);
	ASSERT_NE(MAP_FAILED, region);
	ASSERT_EQ(0x77u, region[0]);
	ASSERT_EQ(-1, destroy(fd, (uint32_t)msg[3]));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, munmap(region, msg[2]));
	/* Nothing else holds it: the exec'ing image's own mapping went with its exec. */
	ASSERT_EQ(0, destroy(fd, (uint32_t)msg[3]));
	/* The last fd, with the device, the vIOMMU and IOAS 1 still in the context. */
	ASSERT_EQ(0, close(fd));
	/* That was the last fd: the next server exits, cleanly. */
	while (wait(&status) > 0)
		ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_EQ(ECHILD, errno);
	close(pipefd[0]);
	close(sock);
	munmap(mine, PS);
}

/* ---- the serving side under fault injection --------------------------------------------- */

/*
 * The calls of "served": an IOAS (a request the server's handler allocates for) and a fault
 * queue (whose fd the reply passes back, adopted here by a CLAIM round trip), both destroyed.
 * 0, or -errno of the first call that failed, whose place in the list goes in *@step.
 */
enum served_step {
	SERVED_IOAS, SERVED_FAULT, SERVED_CLOSE, SERVED_DESTROY_FAULT, SERVED_DESTROY_IOAS
};

static int served_calls(int fd, enum served_step *step)
{
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	uint32_t ioas;

	*step = SERVED_IOAS;
	if (ioas_alloc_id(fd, &ioas))
		return -errno;
	*step = SERVED_FAULT;
	if (ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fq))
		return -errno;
	*step = SERVED_CLOSE;
	if (!uiommu_event_is_fd((int)fq.out_fault_fd) || close((int)fq.out_fault_fd))
		return -1000;
	*step = SERVED_DESTROY_FAULT;
	if (destroy(fd, fq.out_fault_id))
		return -errno;
	*step = SERVED_DESTROY_IOAS;
	if (destroy(fd, ioas))
		return -errno;
	return 0;
}

/*
 * "served SOCK": the calls above on an adopted fd, while the server fails one step of its
 * serving. Exit status: 0 when every call went through; the errno of a call that failed
 * (ENOMEM, ENODEV, EIO, EFAULT or the fault queue's EBUSY; then
 * the same calls again must go through: the server serves on); 60 when the adoption itself was
 * refused (the fd is then a plain socket) and a second adoption and the calls went through;
 * 100 to 102 for anything else; 104 and up when the calls made again failed: 104 plus the
 * place of the call that did (enum served_step), with both failures on stderr.
 */
static int child_served(int sock)
{
	enum served_step step, again;
	uint32_t dummy;
	int fd = recv_fd(sock, &dummy, sizeof(dummy)), rc, rc2;

	if (fd < 0)
		return 100;
	if (!uiommu_is_fd(fd)) {
		if (!uiommu_fd_adopt(fd) || served_calls(fd, &step))
			return 101;
		return 60;
	}
	rc = served_calls(fd, &step);
	if (!rc)
		return 0;
	/*
	 * EFAULT: the server's reach into our memory (mm/mm_remote.c) was the step failed;
	 * EBUSY: its look for our close of the fault fd (fail_nth_of_the_serving_side).
	 */
	if (rc != -ENOMEM && rc != -ENODEV && rc != -EIO && rc != -EFAULT && rc != -EBUSY)
		return 102;
	rc2 = served_calls(fd, &again);
	if (!rc2)
		return -rc;
	fprintf(stderr, "# served: call %d failed with %d, then call %d of the same again with %d\n",
		(int)step, -rc, (int)again, -rc2);
	return 104 + (int)again;
}

/*
 * Each fallible step of the serving side in turn (accepting the child's connection and starting
 * its thread, the HELLO, each request, the fds passed back), failed while a child calls: the
 * child gets a clean errno, and the server serves on, to it and to everyone.
 */
TEST(fail_nth_of_the_serving_side)
{
	int sock, rc, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	/*
	 * What a child may say when a step failed (child_served()), and how often each came; 0:
	 * the failure was absorbed (checking or mapping the child's life word: its copies are
	 * checked through its mem fd instead, mm_remote.c; or the look for gone clients, below);
	 * EBUSY: the fault queue's destroy came before the server thread saw the child's close
	 * of its fd, and the look for such closes (iommufd_files_settle()) was the step failed:
	 * the destroy answers as it did before there was one (met or not as the threads run).
	 */
	static const int kinds[7] = { ENOMEM, ENODEV, EIO, EFAULT, 60, 0, EBUSY };
	unsigned long nth, left = 0, seen[7] = { 0 };
	enum served_step step;
	int k;
	uint32_t dummy = 0;
	pid_t pid;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_GE(fd, 0);
	for (nth = 1; nth < 300 && !left; nth++) {
		rc = serve_fail_nth_round("served", fd, nth, &left);
		ASSERT_NE(-1, rc);
		if (left) {
			ASSERT_EQ(0, rc); /* nothing failed: everything went through */
			break;
		}
		for (k = 0; k < 7 && kinds[k] != rc; k++)
			;
		/* On a mismatch, says at which step and what the child said. */
		if (k == 7)
			ASSERT_EQ(0, (long)nth * 1000 + rc);
		seen[k]++;
	}
	ASSERT_NE(0, left);
	/*
	 * Each kind of step was met: a refused call or HELLO, a lost reply, a failed reach into
	 * the child's memory, a refused adoption (where the refused connections fall: the first
	 * connection is the adoption's, ENODEV is allowed but not met).
	 */
	ASSERT_NE(0, seen[0]);
	ASSERT_NE(0, seen[2]);
	ASSERT_NE(0, seen[3]);
	ASSERT_NE(0, seen[4]);
	/*
	 * The one client's one life word: its memfd's check, its mapping; and, in the rounds
	 * whose fault queue destroy came before the server thread saw the child's close, the
	 * settle's two looks: for gone clients (which finds none: the caller lives), whose
	 * failure the look for the closed file then makes up for, and for that file, whose
	 * failure the server thread makes up for when it sees the close before the destroy's
	 * second ask (else EBUSY). Which rounds meet them is the threads' doing: each may.
	 */
	ASSERT_LE(2, seen[5]);
	ASSERT_GE(4, seen[5]);
	/* The server serves on, with nothing armed: ours and a new child's calls. */
	ASSERT_EQ(0, served_calls(fd, &step));
	pid = child_start_with("served", fd, &dummy, sizeof(dummy), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
}

/* ---- a remote caller's pins: its own RLIMIT_MEMLOCK and CAP_IPC_LOCK ------------------- */

#define MEMLOCK_PAGES 4

/* CAP_IPC_LOCK in this process's effective set: held (1), not (0), dropped now (@drop). */
static int cap_ipc_lock(bool drop)
{
	cap_value_t cap = CAP_IPC_LOCK;
	cap_flag_value_t v = CAP_CLEAR;
	cap_t caps = cap_get_proc();
	int rc;

	if (!caps || cap_get_flag(caps, cap, CAP_EFFECTIVE, &v))
		rc = -1;
	else if (drop)
		rc = cap_set_flag(caps, CAP_EFFECTIVE, 1, &cap, CAP_CLEAR) || cap_set_proc(caps) ?
			     -1 : 0;
	else
		rc = v == CAP_SET;
	cap_free(caps);
	return rc;
}

/*
 * "memlock SOCK": given the test's iommufd (its IOAS has a mock domain: a MAP pins at once) and
 * a memfd the test maps too, with RLIMIT_MEMLOCK lowered to 2 pages: a MAP of MEMLOCK_PAGES
 * pages of it goes through while this process holds CAP_IPC_LOCK (if it does), and is
 * ENOMEM once it does not, though the serving process's own limit and capability would take
 * it; one page still goes through.
 */
static int child_memlock(int sock)
{
	struct rlimit rl = { .rlim_cur = 2 * PS };
	uint32_t ioas, dummy;
	int fd = recv_fd(sock, &ioas, sizeof(ioas));
	int mfd = recv_fd(sock, &dummy, sizeof(dummy));
	uint64_t iova;
	void *buf;

	if (fd < 0 || mfd < 0 || !uiommu_is_fd(fd))
		return 1;
	buf = mmap(NULL, MEMLOCK_PAGES * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (buf == MAP_FAILED || getrlimit(RLIMIT_MEMLOCK, &rl))
		return 2;
	rl.rlim_cur = 2 * PS;
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		return 3;
	if (cap_ipc_lock(false) == 1) {
		/* Exempt, as the kernel exempts a task with CAP_IPC_LOCK: no charge at all. */
		if (ioas_map(fd, ioas, buf, MEMLOCK_PAGES * PS, &iova) ||
		    ioas_unmap_len(fd, ioas, iova, MEMLOCK_PAGES * PS) != MEMLOCK_PAGES * PS)
			return 4;
		if (cap_ipc_lock(true) || cap_ipc_lock(false))
			return 5;
	}
	if (!ioas_map(fd, ioas, buf, MEMLOCK_PAGES * PS, &iova) || errno != ENOMEM)
		return 6;
	if (ioas_map(fd, ioas, buf, PS, &iova) || ioas_unmap_len(fd, ioas, iova, PS) != PS)
		return 7;
	return 0;
}

TEST(a_remote_caller_pins_against_its_own_memlock_limit)
{
	NEEDS_IOMMUFD_TEST(); /* a mock domain: MAP pins */
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	int sock, fd = open("/dev/iommu", O_RDWR | O_CLOEXEC), mfd = memfd_create("t", MFD_CLOEXEC);
	uint32_t ioas, dummy = 0;
	struct uiommu_stats st;
	struct rlimit rl;
	uint64_t iova;
	void *buf;
	pid_t pid;

	ASSERT_GE(fd, 0);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, ftruncate(mfd, MEMLOCK_PAGES * PS));
	buf = mmap(NULL, MEMLOCK_PAGES * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ASSERT_TRUE(buf != MAP_FAILED);
	ASSERT_EQ(0, getrlimit(RLIMIT_MEMLOCK, &rl));
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < MEMLOCK_PAGES * PS && !cap_ipc_lock(false))
		SKIP("this process's own RLIMIT_MEMLOCK is below %d pages", MEMLOCK_PAGES);
	ioas = ioas_alloc(fd);
	ASSERT_EQ(1, ioas);
	mock.id = ioas;
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &mock));
	/* The serving process itself may pin the pages: its limit or its capability allow it. */
	ASSERT_EQ(0, ioas_map(fd, ioas, buf, MEMLOCK_PAGES * PS, &iova));
	ASSERT_EQ(MEMLOCK_PAGES * PS, ioas_unmap_len(fd, ioas, iova, MEMLOCK_PAGES * PS));
	pid = child_start_with("memlock", fd, &ioas, sizeof(ioas), &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, send_fd(sock, mfd, &dummy, sizeof(dummy)));
	ASSERT_EQ(0, test_child_wait(pid));
	/* The refused MAP left nothing charged nor pinned. */
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.pinned_pages);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, live_contexts_settle(0));
	ASSERT_EQ(0, munmap(buf, MEMLOCK_PAGES * PS));
	close(mfd);
	close(sock);
}

/* ---- a group whose container another process serves ------------------------------------- */

/* The node of vfio3's group into @path (its BDF in @bdf); -1 none. */
static int xgrp_path(char *path, size_t len, char *bdf, size_t bdf_len)
{
	int id = xgrp_bdf(bdf, bdf_len);

	if (id < 0)
		return -1;
	snprintf(path, len, "/dev/vfio/%d", id);
	return 0;
}

/* The node opens here now (nothing of an earlier open anywhere holds it) and closes. */
static int xgrp_opens_here(const char *path)
{
	int g = open(path, O_RDWR | O_CLOEXEC);

	return g < 0 ? -1 : close(g);
}

/*
 * One reverse round (child_xgrp()): our group node handed to a VMM with MODE and NTH; between
 * its 'b' and our byte, @check (not NULL) runs on our fd. We close the node once the VMM closed
 * its copy, and it must open here at once, while the VMM lives on. The child's status, or
 * below 0: what went wrong here.
 */
static int xgrp_round(const char *path, uint64_t mode, uint64_t nth, int (*check)(int g))
{
	uint64_t msg[2] = { mode, nth };
	int g = open(path, O_RDWR | O_CLOEXEC), sock, rc = 0;
	pid_t pid;
	char c = 0;

	if (g < 0)
		return -1;
	pid = child_start_with("xgrp", g, msg, sizeof(msg), &sock);
	if (pid < 0) {
		close(g);
		return -1;
	}
	if (read(sock, &c, 1) == 1 && c == 'b') {
		rc = check ? check(g) : 0;
		if (write(sock, &c, 1) != 1 || read(sock, &c, 1) != 1 || c != 'c')
			rc = rc ?: -2;
	}
	if (close(g) || (!rc && xgrp_opens_here(path)))
		rc = rc ?: -3;
	close(sock);
	return rc ?: test_child_wait(pid);
}

/*
 * While the VMM has the group: our calls reach its file, set once; the node is open; a third
 * process's calls are redirected there ("xgrp3").
 */
static int xgrp_set_elsewhere(int g)
{
	int own = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC), rc = 0;
	char path[32], bdf[64];

	if (own < 0 || xgrp_path(path, sizeof(path), bdf, sizeof(bdf)))
		return -4;
	if (xgrp_status(g) != XGRP_FLAGS)
		rc = -5;
	if (!rc && (ioctl(g, VFIO_GROUP_SET_CONTAINER, &own) != -1 || errno != EINVAL))
		rc = -6;
	if (!rc && (open(path, O_RDWR | O_CLOEXEC) != -1 || errno != EBUSY))
		rc = -7;
	close(own);
	if (!rc) {
		char ch = 0;
		int sock;
		pid_t pid = child_start_with("xgrp3", g, &ch, 1, &sock);

		rc = pid < 0 ? -8 : test_child_wait(pid);
		if (pid >= 0)
			close(sock);
	}
	return rc;
}

/*
 * A manager opens /dev/vfio/<G> and hands it to a VMM (or a DPDK secondary) that opened its
 * own /dev/vfio/vfio: its SET_CONTAINER reaches us, the group file's server, with a container
 * the VMM serves, so we ask the VMM to open the node in its machine with that container; the
 * VMM's calls on the group are then its own, in-process (type1v2, a map, the device fd, its
 * config space, the function's DMA into its page), ours reach its file (CONTAINER_SET, EINVAL
 * for a second container), and the node opens again once both closed it. It used to answer
 * EOPNOTSUPP.
 */
TEST(a_group_handed_to_a_vmm_takes_the_vmm_s_own_container)
{
	char path[32], bdf[64];

	ASSERT_EQ(0, xgrp_path(path, sizeof(path), bdf, sizeof(bdf)));
	ASSERT_EQ(0, xgrp_round(path, 0, 0, xgrp_set_elsewhere));
	ASSERT_EQ(0, xgrp_opens_here(path));
}

/* A third process's open of the node @path: its errno, or 0. */
static int xgrp_third_opens(const char *path)
{
	pid_t pid = child_start("gopen", -1, atol(path + strlen("/dev/vfio/")));

	return pid < 0 ? -1 : test_child_wait(pid);
}

/* Our node @path handed to a VMM with MODE @mode (child_xgrp()), once it said 'b': its pid. */
static pid_t xgrp_start(const char *path, uint64_t mode, int *g, int *sock)
{
	uint64_t msg[2] = { mode, 0 };
	pid_t pid;
	char c = 0;

	*g = open(path, O_RDWR | O_CLOEXEC);
	if (*g < 0)
		return -1;
	pid = child_start_with("xgrp", *g, msg, sizeof(msg), sock);
	if (pid > 0 && (read(*sock, &c, 1) != 1 || c != 'b'))
		return -1;
	return pid;
}

/*
 * The node stays claimed in the whole session while any file of it lives, as the kernel's
 * group file, which the device fds hold: ours and the VMM's share one claim. While the VMM has
 * the container, while its device fd alone is left (the VMM closed the group and we closed
 * ours) a third process's open is EBUSY; once the device fd closed it opens.
 */
TEST(a_group_s_node_stays_claimed_while_any_of_its_files_lives)
{
	char path[32], bdf[64], c = 0;
	int g, sock;
	pid_t pid;

	ASSERT_EQ(0, xgrp_path(path, sizeof(path), bdf, sizeof(bdf)));
	pid = xgrp_start(path, 4, &g, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(EBUSY, xgrp_third_opens(path));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ('c', c);
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(EBUSY, xgrp_third_opens(path));
	ASSERT_EQ(1, write(sock, &c, 1));
	ASSERT_EQ(1, read(sock, &c, 1));
	ASSERT_EQ('d', c);
	ASSERT_EQ(0, xgrp_third_opens(path));
	close(sock);
	ASSERT_EQ(0, test_child_wait(pid));
}

/* The same VMM SIGKILLed with the container set: our calls answer a clean errno, no hang. */
TEST(a_group_whose_container_process_is_killed_answers_cleanly)
{
	char path[32], bdf[64];
	int g, sock;
	pid_t pid;

	ASSERT_EQ(0, xgrp_path(path, sizeof(path), bdf, sizeof(bdf)));
	pid = xgrp_start(path, 3, &g, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(XGRP_FLAGS, xgrp_status(g));
	ASSERT_EQ(0, child_kill_reap(pid));
	close(sock);
	ASSERT_EQ(-1, xgrp_status(g));
	ASSERT_TRUE(errno == ENODEV || errno == EIO);
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, xgrp_opens_here(path));
}

/*
 * The forward case: we open the node and set a container our manager (a child) serves: the
 * group goes there; our calls on it are made at the manager's file (type1v2 and a map of our
 * page through the container, the device fd of the manager's machine and its config space,
 * EINVAL for a second container), the manager's own calls on our group fd are in-process, and
 * its function's DMA lands in our page. With @mode 3 the manager is killed instead.
 */
static void xgrp_forward(struct __h_test *_metadata, uint64_t mode)
{
	uint64_t msg[2] = { mode, 0 };
	char path[32], bdf[64], c = 0, *buf;
	int g, d, ct, sock;
	pid_t pid;

	ASSERT_EQ(0, xgrp_path(path, sizeof(path), bdf, sizeof(bdf)));
	buf = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(buf != MAP_FAILED);
	pid = child_start_with("xgrpmgr", -1, NULL, 0, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ((ssize_t)sizeof(msg), write(sock, msg, sizeof(msg)));
	ct = recv_fd(sock, &c, 1);
	ASSERT_GE(ct, 0);
	g = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, ioctl(g, VFIO_GROUP_SET_CONTAINER, &ct));
	d = xgrp_calls(g, ct, bdf, buf, false);
	ASSERT_GE(d, 0);
	if (mode == 3) {
		ASSERT_EQ(0, child_kill_reap(pid));
		ASSERT_EQ(-1, xgrp_status(g));
		ASSERT_TRUE(errno == ENODEV || errno == EIO);
		ASSERT_NE(0, xbind_config_read(d));
	} else {
		ASSERT_EQ(1, write(sock, &c, 1));
		ASSERT_EQ(0, send_fd(sock, g, &c, 1));
		ASSERT_EQ(1, read(sock, &c, 1));
		ASSERT_EQ('b', c);
		ASSERT_EQ(0, memcmp(buf + 100, "world", 5));
	}
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(ct));
	close(sock);
	if (mode != 3)
		ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, xgrp_opens_here(path));
	munmap(buf, PS);
}

TEST(a_group_takes_a_container_its_manager_serves)
{
	xgrp_forward(_metadata, 0);
}

TEST(a_group_whose_container_s_manager_is_killed_answers_cleanly)
{
	xgrp_forward(_metadata, 3);
}

/*
 * The reverse SET_CONTAINER while a step fails: each of our serving side's in turn (the call
 * served for the VMM, our ask, the redirect), then each of the VMM's own: a clean errno,
 * nothing left (the step made again goes through; the node opens here after both closed it).
 */
static void xgrp_sweep(struct __h_test *_metadata, uint64_t mode)
{
	unsigned long nth, left = 0, failed = 0;
	char path[32], bdf[64];
	int rc;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_EQ(0, xgrp_path(path, sizeof(path), bdf, sizeof(bdf)));
	for (nth = 1; nth < 300; nth++) {
		if (!mode)
			uiommu_serve_fail_nth_arm(nth);
		rc = xgrp_round(path, mode, nth, NULL);
		left = mode ? 0 : uiommu_serve_fail_nth_disarm();
		ASSERT_EQ(0, xgrp_opens_here(path));
		/* Nothing failed: the sweep is over. */
		if ((!mode && left) || (mode && !rc)) {
			ASSERT_EQ(0, rc);
			break;
		}
		/* On a mismatch, says at which step and what the child said. */
		if (rc && !xsweep_errno_clean(rc) && rc != 60 && rc != 99)
			ASSERT_EQ(0, (long)nth * 1000 + rc);
		failed += rc && rc != 60 && rc != 99;
	}
	ASSERT_LT(nth, 300);
	ASSERT_NE(0, failed);
}

TEST(fail_nth_of_a_group_s_container_set_by_its_vmm_on_the_serving_side)
{
	xgrp_sweep(_metadata, 0);
}

TEST(fail_nth_of_a_group_s_container_set_by_its_vmm_in_the_vmm)
{
	xgrp_sweep(_metadata, 1);
}

/*
 * The forward SET_CONTAINER while a step fails: each of ours in turn (@mode 1: the ask), or
 * each of the manager's serving side (@mode 2: the node opened there, the claim shared, the
 * container set): a clean errno, nothing left (made again it goes through; the node opens here
 * after we closed it). Returns 1 when nothing failed.
 */
static int xgrp_forward_round(const char *path, uint64_t mode, uint64_t nth)
{
	uint64_t msg[2] = { mode, nth };
	unsigned long left = 1;
	int g, ct, sock, rc, e = 0, step = 0;
	pid_t pid = child_start_with("xgrpmgr", -1, NULL, 0, &sock);
	bool refused;
	char c = 0;

	if (pid < 0 || write(sock, msg, sizeof(msg)) != sizeof(msg))
		return -1;
	ct = recv_fd(sock, &c, 1);
	g = open(path, O_RDWR | O_CLOEXEC);
	if (ct < 0 || g < 0)
		return -2;
	/* A refused adoption (the manager's INFO failed) leaves a plain socket: adopted again. */
	refused = !uiommu_is_fd(ct);
	if (refused && !uiommu_fd_adopt(ct))
		return -9;
	if (mode == 1)
		uiommu_fail_nth_arm(nth);
	e = xgrp_set(g, ct, &step);
	if (mode == 1)
		left = uiommu_fail_nth_disarm();
	if (write(sock, &c, 1) != 1 ||
	    (mode == 2 && read(sock, &left, sizeof(left)) != sizeof(left)))
		return -3;
	if (step && !xsweep_errno_clean(e))
		return -(int)(1000 + e);
	if (step == 1 && ioctl(g, VFIO_GROUP_SET_CONTAINER, &ct))
		return -4;
	if (xgrp_status(g) != XGRP_FLAGS)
		return -5;
	if (close(g) || close(ct))
		return -6;
	close(sock);
	rc = test_child_wait(pid);
	if (rc)
		return -100 - rc;
	if (xgrp_opens_here(path))
		return -7;
	/* A failure absorbed; serving, the mapping of our life word may be (processes.md). */
	if (!step && !left && !refused && mode != 2)
		return -8;
	return left ? 1 : 0;
}

static void xgrp_forward_sweep(struct __h_test *_metadata, uint64_t mode)
{
	char path[32], bdf[64];
	unsigned long nth;
	int rc = 0;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	ASSERT_EQ(0, xgrp_path(path, sizeof(path), bdf, sizeof(bdf)));
	for (nth = 1; nth < 300; nth++) {
		rc = xgrp_forward_round(path, mode, nth);
		/* On a mismatch, says at which step and what went wrong. */
		if (rc < 0)
			ASSERT_EQ(0, (long)nth * 10000 - rc);
		if (rc)
			break;
	}
	ASSERT_EQ(1, rc);
	ASSERT_LT(1, nth);
}

TEST(fail_nth_of_a_group_s_container_set_through_its_manager_in_the_asker)
{
	xgrp_forward_sweep(_metadata, 1);
}

TEST(fail_nth_of_a_group_s_container_set_through_its_manager_on_its_serving_side)
{
	xgrp_forward_sweep(_metadata, 2);
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	return __h_run_all(argc, argv);
}
