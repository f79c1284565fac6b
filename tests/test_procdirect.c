// SPDX-License-Identifier: MIT
/*
 * ACCESS_RW from another process, copied by that process (docs/processes.md, "The direct
 * path"; src/iommufd/remote_direct.c), through libc under uiommu-run.
 *
 * The test process serves a context: an IOAS with 64 KiB of its own private memory mapped and
 * a selftest access on it. A client is this program again (fork + exec of /proc/self/exe with
 * "--child ROLE", the fds inherited, adopted by the new image), so ThreadSanitizer builds
 * never run a fork()ed copy of a threaded process. Each case checks behaviour: where the
 * bytes land and when, the errnos, and uiommu_remote_direct_copies() in the client, which
 * says whether the client copied itself (a case the round trip alone would pass must not
 * count as the direct path's).
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "wire_client.h"
#define TEST_IOCTL ioctl /* through libc: the preload path */
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#define LEN (64 * 1024)
#define RACE_ROUNDS 100
#define RACE_MAX_TRIES 2000000 /* a client copy that never sees the unmap fails the case */

/* ---- both sides ------------------------------------------------------------------------ */

static int access_rw(int fd, int access, uint64_t iova, void *buf, uint64_t len, uint32_t flags)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)access,
		.access_rw = { .iova = iova, .length = len, .uptr = (uintptr_t)buf,
			       .flags = flags },
	};

	return ioctl(fd, IOMMU_TEST_CMD, &cmd) ? -errno : 0;
}

static bool all_bytes(const void *buf, size_t len, unsigned char v)
{
	for (size_t i = 0; i < len; i++)
		if (((const unsigned char *)buf)[i] != v)
			return false;
	return true;
}

static int xfer(int sock, void *buf, size_t len, bool out)
{
	ssize_t n = out ? write(sock, buf, len) : read(sock, buf, len);

	return n == (ssize_t)len ? 0 : -1;
}

/* ---- the serving side --------------------------------------------------------------------- */

struct served {
	int fd, access;
	uint32_t ioas;
	unsigned char *buf;
	uint64_t iova;
};

static int map_at(int fd, uint32_t ioas, void *buf, size_t len, uint64_t *iova, uint32_t flags)
{
	struct iommu_ioas_map map = { .size = sizeof(map), .ioas_id = ioas,
				      .user_va = (uintptr_t)buf, .length = len, .iova = *iova,
				      .flags = flags };
	int rc = ioctl(fd, IOMMU_IOAS_MAP, &map);

	*iova = map.iova;
	return rc;
}

static int unmap_at(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = ioas, .iova = iova,
					  .length = len };

	return ioctl(fd, IOMMU_IOAS_UNMAP, &unmap);
}

/* The context: an IOAS, LEN bytes of our private memory mapped read-write, an access. */
static int served_make(struct served *s)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_test_cmd create = { .size = sizeof(create),
					 .op = IOMMU_TEST_OP_CREATE_ACCESS };

	s->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	s->buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->fd < 0 || s->buf == MAP_FAILED || ioctl(s->fd, IOMMU_IOAS_ALLOC, &alloc))
		return -1;
	s->ioas = alloc.out_ioas_id;
	s->iova = 0;
	if (map_at(s->fd, s->ioas, s->buf, LEN, &s->iova,
		   IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE))
		return -1;
	create.id = s->ioas;
	if (ioctl(s->fd, IOMMU_TEST_CMD, &create))
		return -1;
	s->access = (int)create.create_access.out_access_fd;
	return 0;
}

static void served_drop(struct served *s)
{
	close(s->access);
	close(s->fd);
	munmap(s->buf, LEN);
}

/*
 * Starts "--child ROLE FD ACCESS IOVA SOCK" with those fds inherited; @direct false: with
 * UIOMMU_REMOTE_DIRECT=0. The pid, with our end of its control socket in *@sock; or -1.
 */
static pid_t client_start(const char *role, int fd, int access, uint64_t iova, bool direct,
			  int *sock)
{
	char a[4][24];
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	snprintf(a[0], sizeof(a[0]), "%d", fd);
	snprintf(a[1], sizeof(a[1]), "%d", access);
	snprintf(a[2], sizeof(a[2]), "%llu", (unsigned long long)iova);
	snprintf(a[3], sizeof(a[3]), "%d", sv[1]);
	pid = fork();
	if (pid == 0) {
		char *env[] = { "UIOMMU_REMOTE_DIRECT=0", NULL };
		int keep[] = { fd, access, sv[1] };

		for (int i = 0; i < 3; i++)
			if (keep[i] >= 0)
				fcntl(keep[i], F_SETFD, 0);
		if (!direct)
			putenv(env[0]);
		execl("/proc/self/exe", "test_procdirect", "--child", role, a[0], a[1], a[2],
		      a[3], (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/* ---- the clients ------------------------------------------------------------------------- */

struct client {
	int fd, access, sock;
	uint64_t iova;
};

/* Writes 0x11 through the access, says 'w' and waits for the server's answer. 0 or -1. */
static int client_write_first(struct client *c, unsigned char *buf)
{
	char b;

	memset(buf, 0x11, LEN);
	if (access_rw(c->fd, c->access, c->iova, buf, LEN, MOCK_ACCESS_RW_WRITE))
		return -1;
	return xfer(c->sock, "w", 1, true) || xfer(c->sock, &b, 1, false) ? -1 : 0;
}

/* Sends the count of our direct copies; the client's exit status. */
static int client_report(struct client *c)
{
	uint64_t copies = uiommu_remote_direct_copies();

	return xfer(c->sock, &copies, sizeof(copies), true) ? 6 : 0;
}

/*
 * "rw": a write lands in the server's memory, which then changes and is read back at once,
 * whole and in part; every copy was the client's own.
 */
static int client_rw(struct client *c)
{
	static unsigned char buf[LEN];

	if (client_write_first(c, buf))
		return 2;
	/* The server stored 0x22 over all of it before answering. */
	if (access_rw(c->fd, c->access, c->iova, buf, LEN, 0) || !all_bytes(buf, LEN, 0x22))
		return 4;
	memset(buf, 0, LEN);
	if (access_rw(c->fd, c->access, c->iova + 4096 + 3, buf, 100, 0) ||
	    !all_bytes(buf, 100, 0x22) || !all_bytes(buf + 100, LEN - 100, 0))
		return 5;
	return client_report(c);
}

/*
 * "replace": writes 0x11 through the access, then (after the server's answer) 0x12: the server
 * moved the access to another IOAS in between, so the second write must land there.
 */
static int client_replace(struct client *c)
{
	static unsigned char buf[LEN];

	if (client_write_first(c, buf))
		return 2;
	memset(buf, 0x12, LEN);
	if (access_rw(c->fd, c->access, c->iova, buf, LEN, MOCK_ACCESS_RW_WRITE))
		return 4;
	return client_report(c);
}

/*
 * "errnos": the answers of a row of calls, each the errno (0: success), then the direct copies;
 * the server mapped a read-only page right after its LEN bytes.
 */
static int client_errnos(struct client *c)
{
	static unsigned char buf[LEN + 4096];
	int32_t rc[9];
	uint64_t copies;

	memset(buf, 0x33, sizeof(buf));
	rc[0] = access_rw(c->fd, c->access, c->iova, buf, LEN, MOCK_ACCESS_RW_WRITE);
	/* A write into the read-only page, alone and crossing into it. */
	rc[1] = access_rw(c->fd, c->access, c->iova + LEN, buf, 16, MOCK_ACCESS_RW_WRITE);
	rc[2] = access_rw(c->fd, c->access, c->iova + LEN - 8, buf, 16, MOCK_ACCESS_RW_WRITE);
	/* Reading it is fine. */
	rc[3] = access_rw(c->fd, c->access, c->iova + LEN, buf, 16, 0);
	/* Past the read-only page: a gap. */
	rc[4] = access_rw(c->fd, c->access, c->iova + LEN, buf, 4096 + 1, 0);
	/* Our own buffer is not mapped. */
	rc[5] = access_rw(c->fd, c->access, c->iova, (void *)(uintptr_t)4096, 16,
			  MOCK_ACCESS_RW_WRITE);
	rc[6] = access_rw(c->fd, c->access, c->iova, (void *)(uintptr_t)4096, 16, 0);
	/* Not an access fd: the context's own. */
	rc[7] = access_rw(c->fd, c->fd, c->iova, buf, 16, 0);
	/* The slow path is the round trip's. */
	rc[8] = access_rw(c->fd, c->access, c->iova, buf, 16, MOCK_ACCESS_RW_SLOW_PATH);
	copies = uiommu_remote_direct_copies();
	if (xfer(c->sock, rc, sizeof(rc), true) || xfer(c->sock, &copies, sizeof(copies), true))
		return 2;
	return 0;
}

/*
 * "race": per round, after the server's 'g', write 0x44 through the access until a write
 * fails (the server unmapped after our first success, 's'), which must be ENOENT, as must the
 * next ten; then 'd' and how many copies were ours. 'q' ends it.
 */
static int client_race(struct client *c)
{
	static unsigned char buf[LEN];
	uint64_t copies;
	char b;

	memset(buf, 0x44, LEN);
	while (!xfer(c->sock, &b, 1, false) && b == 'g') {
		long i;
		int rc = 0;

		for (i = 0; i < RACE_MAX_TRIES; i++) {
			rc = access_rw(c->fd, c->access, c->iova, buf, LEN, MOCK_ACCESS_RW_WRITE);
			if (rc)
				break;
			if (!i && xfer(c->sock, "s", 1, true))
				return 2;
		}
		if (rc != -ENOENT || !i)
			return 3;
		for (i = 0; i < 10; i++)
			if (access_rw(c->fd, c->access, c->iova, buf, LEN, MOCK_ACCESS_RW_WRITE) !=
			    -ENOENT)
				return 4;
		copies = uiommu_remote_direct_copies();
		if (xfer(c->sock, "d", 1, true) || xfer(c->sock, &copies, sizeof(copies), true))
			return 5;
	}
	return b == 'q' ? 0 : 6;
}

/*
 * "own": our own private memory mapped into the server's IOAS has no address there (the
 * window, mm/window.c): ACCESS_RW reaches it through the round trip, never directly.
 */
static int client_own(struct client *c)
{
	unsigned char *mine = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static unsigned char buf[LEN];
	uint64_t iova = 0;

	if (mine == MAP_FAILED)
		return 2;
	memset(mine, 0, LEN);
	memset(buf, 0x55, LEN);
	if (map_at(c->fd, (uint32_t)c->iova, mine, LEN, &iova,
		   IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE))
		return 3;
	if (access_rw(c->fd, c->access, iova, buf, LEN, MOCK_ACCESS_RW_WRITE) ||
	    !all_bytes(mine, LEN, 0x55))
		return 4;
	memset(mine, 0x66, LEN);
	if (access_rw(c->fd, c->access, iova, buf, LEN, 0) || !all_bytes(buf, LEN, 0x66))
		return 5;
	if (uiommu_remote_direct_copies())
		return 6;
	return unmap_at(c->fd, (uint32_t)c->iova, iova, LEN) ? 7 : 0;
}

/* "sweep": one write; 0 when it went through, 10 + errno's class when it answered cleanly. */
static int client_sweep(struct client *c)
{
	static unsigned char buf[LEN];
	int rc;

	/* An adoption the sweep refused leaves a plain socket; asking again adopts it or not. */
	if (!uiommu_is_fd(c->fd) || !uiommu_is_fd(c->access))
		return 10;
	memset(buf, 0x77, LEN);
	rc = access_rw(c->fd, c->access, c->iova, buf, LEN, MOCK_ACCESS_RW_WRITE);
	if (!rc)
		return 0;
	if (rc == -ENOMEM || rc == -EIO || rc == -EFAULT || rc == -ENODEV)
		return 10;
	return 11;
}

/*
 * Speaks the wire itself on a connection of its own to the server of @fd: HELLO, then DIRECT,
 * whose reply carries the page's memfd and the life word's (in @fds). The socket, or -1.
 */
static int wire_direct_connect(int fd, int fds[2])
{
	struct wire_req req = { .magic = WIRE_MAGIC, .op = WIRE_DIRECT };
	char cbuf[CMSG_SPACE(3 * sizeof(int))] = { 0 };
	struct wire_rep rep;
	struct iovec iov = { .iov_base = &rep, .iov_len = sizeof(rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct wire_fd_header hdr;
	struct cmsghdr *cm;
	ssize_t n;
	int s;

	if (recv(fd, &hdr, sizeof(hdr), MSG_PEEK) != (ssize_t)sizeof(hdr))
		return -1;
	s = wire_client_connect(&hdr);
	if (s < 0)
		return -1;
	if (wire_client_hello(s, 7) || xfer(s, &rep, sizeof(rep), false) || rep.rc ||
	    xfer(s, &req, sizeof(req), true))
		goto err_close;
	/* The fds come with the reply's first byte, the rest after (the server's copies closed). */
	n = recvmsg(s, &msg, MSG_WAITALL);
	if (n <= 0 || (n < (ssize_t)sizeof(rep) &&
		       xfer(s, (char *)&rep + n, sizeof(rep) - (size_t)n, false)) || rep.rc)
		goto err_close;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_len != CMSG_LEN(2 * sizeof(int)))
		goto err_close;
	memcpy(fds, CMSG_DATA(cm), 2 * sizeof(int));
	return s;

err_close:
	close(s);
	return -1;
}

/*
 * "hostile" (and "dies"): on a connection of its own, says a copy is in flight at the page's
 * generation and never ends it. "hostile" then waits for 'c' and checks that the server
 * revoked its page (gen 0) instead of waiting forever; "dies" exits with it set.
 */
static int client_hostile(struct client *c, bool dies)
{
	struct wire_direct_page *page;
	int fds[2];
	char b;

	if (wire_direct_connect(c->fd, fds) < 0)
		return 3;
	page = mmap(NULL, sizeof(*page), PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (page == MAP_FAILED || !atomic_load(&page->gen))
		return 7;
	atomic_store(&page->busy, atomic_load(&page->gen));
	if (dies)
		return xfer(c->sock, "r", 1, true) ? 8 : 0;
	if (xfer(c->sock, "r", 1, true) || xfer(c->sock, &b, 1, false))
		return 9;
	return atomic_load(&page->gen) == 0 ? 0 : 10;
}

/*
 * "lifelie": on connections of its own, HELLOs whose life word is an empty memfd, then one
 * the client shrinks after the HELLO, each followed by an IOAS_ALLOC (whose argument the
 * server reads from us, checking our life word if it took it): the server must not take
 * either (an empty page would kill it by SIGBUS at its first look) and serves on.
 */
static int client_lifelie(struct client *c)
{
	struct wire_req req = { .magic = WIRE_MAGIC, .op = WIRE_IOCTL, .arg[0] = IOMMU_IOAS_ALLOC };
	struct iommu_ioas_alloc alloc;
	struct wire_fd_header hdr;
	struct wire_rep rep;

	if (recv(c->fd, &hdr, sizeof(hdr), MSG_PEEK) != (ssize_t)sizeof(hdr))
		return 2;
	req.token = hdr.token;
	memcpy(req.secret, hdr.secret, sizeof(req.secret));
	req.arg[1] = (uintptr_t)&alloc;
	for (int shrink = 0; shrink < 2; shrink++) {
		int life = memfd_create("lifelie", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		int s = wire_client_connect(&hdr);

		if (life < 0 || s < 0 || ftruncate(life, shrink ? 4096 : 0) ||
		    (!shrink && fcntl(life, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)))
			return 3;
		if (wire_client_hello_life(s, 9, life) || xfer(s, &rep, sizeof(rep), false) ||
		    rep.rc)
			return 4;
		if (shrink && ftruncate(life, 0))
			return 5;
		alloc = (struct iommu_ioas_alloc){ .size = sizeof(alloc) };
		if (xfer(s, &req, sizeof(req), true) || xfer(s, &rep, sizeof(rep), false) ||
		    rep.rc || !alloc.out_ioas_id)
			return 6;
		close(s);
		close(life);
	}
	return 0;
}

/*
 * "csweep": the n-th fallible step (n from the test) of this process's own side of its first
 * direct write fails: the connection, DIRECT and the mapping of its pages, TRANSLATE, then
 * the copy or the round trip it falls back to. Answers the call's result and what was left of
 * the countdown.
 */
static int client_csweep(struct client *c)
{
	static unsigned char buf[LEN];
	uint64_t n, msg[2];

	memset(buf, 0x77, LEN);
	if (xfer(c->sock, &n, sizeof(n), false))
		return 2;
	uiommu_fail_nth_arm((unsigned long)n);
	msg[0] = (uint64_t)(int64_t)access_rw(c->fd, c->access, c->iova, buf, LEN,
					      MOCK_ACCESS_RW_WRITE);
	msg[1] = uiommu_fail_nth_disarm();
	return xfer(c->sock, msg, sizeof(msg), true) ? 3 : 0;
}

static int child_main(int argc, char **argv)
{
	struct client c;
	const char *role = argv[2];

	if (argc < 7)
		return 100;
	c.fd = atoi(argv[3]);
	c.access = atoi(argv[4]);
	c.iova = strtoull(argv[5], NULL, 0);
	c.sock = atoi(argv[6]);
	if (!strcmp(role, "rw"))
		return client_rw(&c);
	if (!strcmp(role, "replace"))
		return client_replace(&c);
	if (!strcmp(role, "errnos"))
		return client_errnos(&c);
	if (!strcmp(role, "race"))
		return client_race(&c);
	if (!strcmp(role, "own"))
		return client_own(&c);
	if (!strcmp(role, "sweep"))
		return client_sweep(&c);
	if (!strcmp(role, "csweep"))
		return client_csweep(&c);
	if (!strcmp(role, "lifelie"))
		return client_lifelie(&c);
	if (!strcmp(role, "hostile") || !strcmp(role, "dies"))
		return client_hostile(&c, !strcmp(role, "dies"));
	return 101;
}

/* ---- the cases ------------------------------------------------------------------------------ */

TEST(a_client_write_lands_in_the_server_memory_and_reads_see_it_at_once)
{
	struct served s;
	uint64_t copies;
	int sock;
	pid_t pid;
	char b;

	NEEDS_IOMMUFD_TEST(); /* the selftest access */
	ASSERT_EQ(0, served_make(&s));
	pid = client_start("rw", s.fd, s.access, s.iova, true, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, xfer(sock, &b, 1, false));
	EXPECT_TRUE(all_bytes(s.buf, LEN, 0x11));
	memset(s.buf, 0x22, LEN);
	ASSERT_EQ(0, xfer(sock, "r", 1, true));
	ASSERT_EQ(0, xfer(sock, &copies, sizeof(copies), false));
	/* Every one of its three calls was the client's own copy. */
	EXPECT_EQ(3, copies);
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	served_drop(&s);
}

/* An access moved to another IOAS: a translation of the old one is never used again. */
TEST(a_translation_dies_when_its_access_moves_to_another_ioas)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_test_cmd replace = { .size = sizeof(replace),
					  .op = IOMMU_TEST_OP_ACCESS_REPLACE_IOAS };
	unsigned char *other;
	struct served s;
	uint64_t copies, iova;
	pid_t pid;
	int sock;
	char b;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, served_make(&s));
	other = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, other);
	ASSERT_EQ(0, ioctl(s.fd, IOMMU_IOAS_ALLOC, &alloc));
	iova = s.iova;
	ASSERT_EQ(0, map_at(s.fd, alloc.out_ioas_id, other, LEN, &iova,
			    IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
				    IOMMU_IOAS_MAP_FIXED_IOVA));
	pid = client_start("replace", s.fd, s.access, s.iova, true, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, xfer(sock, &b, 1, false));
	EXPECT_TRUE(all_bytes(s.buf, LEN, 0x11));
	replace.id = (uint32_t)s.access;
	replace.access_replace_ioas.ioas_id = alloc.out_ioas_id;
	ASSERT_EQ(0, ioctl(s.fd, IOMMU_TEST_CMD, &replace));
	ASSERT_EQ(0, xfer(sock, "r", 1, true));
	ASSERT_EQ(0, xfer(sock, &copies, sizeof(copies), false));
	ASSERT_EQ(0, test_child_wait(pid));
	EXPECT_TRUE(all_bytes(other, LEN, 0x12));
	EXPECT_TRUE(all_bytes(s.buf, LEN, 0x11));
	/* Both writes were the client's own copies, the second through a new translation. */
	EXPECT_EQ(2, copies);
	close(sock);
	served_drop(&s);
	munmap(other, LEN);
}

/*
 * An exec whose hand-over could not be made (uiommu_exec_handover() answers -1: here its first
 * fallible step fails) goes on all the same, keeping our pid: the new image must never be
 * written through a translation of the old one. The life word cannot close that alone (a
 * client that looked at it just before the exec writes just after), so no client copies
 * directly any more once the hand-over answered: the second write is the round trip's.
 */
TEST(no_direct_copy_after_a_hand_over_that_failed)
{
	struct served s;
	uint64_t copies;
	pid_t pid;
	int sock, handle;
	char b;

	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, served_make(&s));
	pid = client_start("replace", s.fd, s.access, s.iova, true, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, xfer(sock, &b, 1, false));
	EXPECT_TRUE(all_bytes(s.buf, LEN, 0x11));
	uiommu_fail_nth_arm(1);
	handle = uiommu_exec_handover();
	uiommu_fail_nth_disarm();
	ASSERT_EQ(-1, handle);
	ASSERT_EQ(0, xfer(sock, "r", 1, true));
	ASSERT_EQ(0, xfer(sock, &copies, sizeof(copies), false));
	ASSERT_EQ(0, test_child_wait(pid));
	/* The exec "failed": this process serves on. */
	uiommu_exec_failed(handle);
	EXPECT_TRUE(all_bytes(s.buf, LEN, 0x12));
	/* Only the first write was the client's own copy. */
	EXPECT_EQ(1, copies);
	close(sock);
	served_drop(&s);
}

TEST(errnos_are_the_round_trips)
{
	int32_t rc[2][9];
	uint64_t copies[2];
	struct served s;
	void *ro;
	uint64_t ro_iova;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, served_make(&s));
	ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, ro);
	ro_iova = s.iova + LEN;
	ASSERT_EQ(0, map_at(s.fd, s.ioas, ro, 4096, &ro_iova,
			    IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA));
	/* The same row with the direct path and without it (UIOMMU_REMOTE_DIRECT=0). */
	for (int d = 0; d < 2; d++) {
		int sock;
		pid_t pid = client_start("errnos", s.fd, s.access, s.iova, d == 0, &sock);

		ASSERT_GT(pid, 0);
		ASSERT_EQ(0, xfer(sock, rc[d], sizeof(rc[d]), false));
		ASSERT_EQ(0, xfer(sock, &copies[d], sizeof(copies[d]), false));
		ASSERT_EQ(0, test_child_wait(pid));
		close(sock);
	}
	for (int i = 0; i < 9; i++)
		EXPECT_EQ(rc[1][i], rc[0][i]);
	EXPECT_EQ(0, rc[0][0]);
	EXPECT_EQ(-EPERM, rc[0][1]);
	EXPECT_EQ(-EPERM, rc[0][2]);
	EXPECT_EQ(0, rc[0][3]);
	EXPECT_EQ(-ENOENT, rc[0][4]);
	EXPECT_EQ(-EFAULT, rc[0][5]);
	EXPECT_EQ(-EFAULT, rc[0][6]);
	EXPECT_EQ(-EBADFD, rc[0][7]);
	EXPECT_EQ(0, rc[0][8]);
	/* The two successes of the fast kind (a write, the read-only page's read) were direct. */
	EXPECT_EQ(2, copies[0]);
	EXPECT_EQ(0, copies[1]);
	EXPECT_TRUE(all_bytes(s.buf, LEN, 0x33));
	EXPECT_TRUE(all_bytes(ro, 4096, 0));
	served_drop(&s);
	munmap(ro, 4096);
}

/*
 * The coherence the kernel's iova_rwsem gives: once IOAS_UNMAP returned, no client copy that
 * used the old translation lands. The client writes in a loop; we unmap after its first
 * write, then clear the page: whatever it does afterwards, the page stays clear.
 */
TEST(no_client_copy_lands_after_the_unmap_returned)
{
	uint64_t copies, iova;
	struct served s;
	int sock;
	pid_t pid;
	char b;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, served_make(&s));
	iova = s.iova;
	pid = client_start("race", s.fd, s.access, iova, true, &sock);
	ASSERT_GT(pid, 0);
	for (int round = 0; round < RACE_ROUNDS; round++) {
		if (round) {
			uint64_t at = iova;

			ASSERT_EQ(0, map_at(s.fd, s.ioas, s.buf, LEN, &at,
					    IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
						    IOMMU_IOAS_MAP_FIXED_IOVA));
		}
		ASSERT_EQ(0, xfer(sock, "g", 1, true));
		ASSERT_EQ(0, xfer(sock, &b, 1, false));
		ASSERT_EQ('s', b);
		ASSERT_EQ(0, unmap_at(s.fd, s.ioas, iova, LEN));
		memset(s.buf, 0, LEN);
		ASSERT_EQ(0, xfer(sock, &b, 1, false));
		ASSERT_EQ('d', b);
		ASSERT_EQ(0, xfer(sock, &copies, sizeof(copies), false));
		ASSERT_TRUE(all_bytes(s.buf, LEN, 0));
	}
	ASSERT_EQ(0, xfer(sock, "q", 1, true));
	ASSERT_EQ(0, test_child_wait(pid));
	/* At least the first write of each round was the client's own copy. */
	EXPECT_GE(copies, RACE_ROUNDS);
	close(sock);
	/* The access still holds the IOAS: the served memory is ours again, nothing mapped. */
	served_drop(&s);
}

TEST(the_clients_own_private_memory_goes_the_round_trip)
{
	struct served s;
	int sock;
	pid_t pid;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, served_make(&s));
	/* The role takes the IOAS ID where the others take an IOVA. */
	pid = client_start("own", s.fd, s.access, s.ioas, true, &sock);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	served_drop(&s);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A client that says a copy is in flight and never ends it cannot hold an unmap forever: the
 * wait is bounded (then its direct path is revoked), and ends at once when it is gone.
 */
TEST(a_hostile_or_dead_client_cannot_hold_an_unmap)
{
	unsigned char *extra;
	struct served s;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, served_make(&s));
	extra = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, extra);
	for (int dies = 0; dies < 2; dies++) {
		uint64_t iova = 0, t0;
		int sock;
		pid_t pid;
		char b;

		ASSERT_EQ(0, map_at(s.fd, s.ioas, extra, 4096, &iova, IOMMU_IOAS_MAP_READABLE));
		pid = client_start(dies ? "dies" : "hostile", s.fd, s.access, s.iova, true, &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ(0, xfer(sock, &b, 1, false));
		if (dies)
			ASSERT_EQ(0, test_child_wait(pid));
		t0 = now_ms();
		ASSERT_EQ(0, unmap_at(s.fd, s.ioas, iova, 4096));
		/* Gone: its hang-up ends the wait (well inside the 2 s bound). */
		if (dies)
			EXPECT_LT(now_ms() - t0, 1500);
		if (!dies) {
			ASSERT_EQ(0, xfer(sock, "c", 1, true));
			ASSERT_EQ(0, test_child_wait(pid));
		}
		close(sock);
	}
	munmap(extra, 4096);
	served_drop(&s);
}

/* Starts this program as "--ROLE SOCK": its pid, our end of the socket in *@sock. */
static pid_t helper_start(const char *role, int *sock)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = fork();
	if (pid == 0) {
		char a[24];

		snprintf(a, sizeof(a), "%d", sv[1]);
		fcntl(sv[1], F_SETFD, 0);
		execl("/proc/self/exe", "test_procdirect", role, a, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

static char helper_ask(int sock, char cmd)
{
	char b;

	return xfer(sock, &cmd, 1, true) || xfer(sock, &b, 1, false) ? 0 : b;
}

/* Answers each byte on @sock with whether @mem still holds @v all over, until EOF. 0 or -1. */
static int mem_answer(int sock, const unsigned char *mem, unsigned char v)
{
	char b;

	while (!xfer(sock, &b, 1, false)) {
		b = all_bytes(mem, LEN, v) ? 'y' : 'n';
		if (xfer(sock, &b, 1, true))
			return -1;
	}
	return 0;
}

/*
 * The server's side of "gone": serves a context until killed; its fds go to the test with
 * pidfd_getfd() (their numbers over @sock, with the IOVA and our buffer's address); 'c' asks
 * whether its memory holds 0x88; 'x' execs this program anew by the raw system call, which
 * the library cannot see, as "--newimage SOCK ADDR".
 */
static int server_main(int sock)
{
	struct served s;
	uint64_t msg[4];
	char b;

	if (served_make(&s))
		return 2;
	msg[0] = (uint64_t)s.fd;
	msg[1] = (uint64_t)s.access;
	msg[2] = s.iova;
	msg[3] = (uintptr_t)s.buf;
	if (xfer(sock, msg, sizeof(msg), true))
		return 3;
	while (!xfer(sock, &b, 1, false)) {
		if (b == 'x') {
			char a[2][24], *argv[] = { "test_procdirect", "--newimage", a[0], a[1], NULL };

			snprintf(a[0], sizeof(a[0]), "%d", sock);
			snprintf(a[1], sizeof(a[1]), "%llu", (unsigned long long)msg[3]);
			fcntl(sock, F_SETFD, 0);
			syscall(SYS_execve, "/proc/self/exe", argv, environ);
			return 5;
		}
		b = all_bytes(s.buf, LEN, 0x88) ? 'y' : 'n';
		if (xfer(sock, &b, 1, true))
			return 4;
	}
	return 0;
}

/*
 * The server's new image: memory of its own where the old image's buffer was, 0x99; 'm' when
 * it is there, then 'y' or 'n' for each 'c': whether it still holds 0x99.
 */
static int newimage_main(int sock, uint64_t addr)
{
	unsigned char *mem = mmap((void *)(uintptr_t)addr, LEN, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (mem != (void *)(uintptr_t)addr)
		return 2;
	memset(mem, 0x99, LEN);
	if (xfer(sock, "m", 1, true))
		return 3;
	return mem_answer(sock, mem, 0x99) ? 4 : 0;
}

struct remote_server {
	pid_t pid;
	int sock, pidfd, fd, access;
	uint64_t iova;
	uint64_t copies; /* our direct copies after the first write */
};

/* Sends @cmd to the server (or its new image); its one-byte answer, or 0. */
static char remote_server_ask(struct remote_server *r, char cmd)
{
	return helper_ask(r->sock, cmd);
}

/*
 * Starts "--server", takes its iommufd and access fd, and writes @buf (0x88) through the
 * access: the server's memory holds it, and the copy was ours. 0 or -1.
 */
static int remote_server_start(struct remote_server *r, unsigned char *buf)
{
	uint64_t before = uiommu_remote_direct_copies();
	uint64_t msg[4];

	r->pid = helper_start("--server", &r->sock);
	if (r->pid < 0 || xfer(r->sock, msg, sizeof(msg), false))
		return -1;
	r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	r->fd = (int)syscall(SYS_pidfd_getfd, r->pidfd, (int)msg[0], 0);
	r->access = (int)syscall(SYS_pidfd_getfd, r->pidfd, (int)msg[1], 0);
	r->iova = msg[2];
	if (r->pidfd < 0 || r->fd < 0 || r->access < 0 || !uiommu_is_fd(r->fd) ||
	    !uiommu_is_fd(r->access))
		return -1;
	memset(buf, 0x88, LEN);
	if (access_rw(r->fd, r->access, r->iova, buf, LEN, MOCK_ACCESS_RW_WRITE))
		return -1;
	r->copies = uiommu_remote_direct_copies();
	return r->copies == before + 1 && remote_server_ask(r, 'c') == 'y' ? 0 : -1;
}

static void remote_server_drop(struct remote_server *r)
{
	close(r->access);
	close(r->fd);
	close(r->pidfd);
	close(r->sock);
}

/*
 * The memfds DIRECT hands out are the server's mappings too: a client that shrinks them (or
 * grows them, or writes the life word every client believes) must not get the server killed
 * by SIGBUS at its next look at them (the TRANSLATE here writes the runs into the page, a
 * second DIRECT reads the life word), nor mislead the other clients.
 */
TEST(a_client_cannot_shrink_or_forge_the_direct_pages)
{
	static unsigned char buf[LEN];
	struct wire_req req = { .magic = WIRE_MAGIC, .op = WIRE_TRANSLATE };
	struct wire_fd_header ahdr;
	struct remote_server r;
	struct wire_rep rep;
	uint32_t alive = 1;
	int s, s2, fds[2], fds2[2];

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, remote_server_start(&r, buf));
	ASSERT_EQ((ssize_t)sizeof(ahdr), recv(r.access, &ahdr, sizeof(ahdr), MSG_PEEK));
	s = wire_direct_connect(r.fd, fds);
	ASSERT_LE(0, s);
	EXPECT_EQ(-1, ftruncate(fds[0], 0));
	EXPECT_EQ(-1, ftruncate(fds[1], 0));
	req.token = ahdr.token;
	memcpy(req.secret, ahdr.secret, sizeof(req.secret));
	req.arg[0] = r.iova;
	req.arg[1] = 4096;
	ASSERT_EQ(0, xfer(s, &req, sizeof(req), true));
	ASSERT_EQ(0, xfer(s, &rep, sizeof(rep), false));
	EXPECT_EQ(0, rep.rc);
	EXPECT_EQ(1, rep.val[1]);
	s2 = wire_direct_connect(r.fd, fds2);
	ASSERT_LE(0, s2);
	EXPECT_EQ(-1, ftruncate(fds[0], 1 << 20));
	/* The life word: no client writes it, by write(2) or by a writable mapping. */
	EXPECT_EQ(-1, pwrite(fds[1], &alive, sizeof(alive), 0));
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0));
	/* The server lives, and the library's own direct path works on. */
	EXPECT_EQ('y', remote_server_ask(&r, 'c'));
	ASSERT_EQ(0, access_rw(r.fd, r.access, r.iova, buf, LEN, MOCK_ACCESS_RW_WRITE));
	EXPECT_EQ(r.copies + 1, uiommu_remote_direct_copies());
	for (int i = 0; i < 2; i++) {
		close(fds[i]);
		close(fds2[i]);
	}
	close(s);
	close(s2);
	ASSERT_EQ(0, kill(r.pid, SIGKILL));
	EXPECT_EQ(128 + SIGKILL, test_child_wait(r.pid));
	remote_server_drop(&r);
}

TEST(a_server_gone_is_an_error_never_a_hang)
{
	static unsigned char buf[LEN];
	struct remote_server r;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, remote_server_start(&r, buf));
	ASSERT_EQ(0, kill(r.pid, SIGKILL));
	ASSERT_EQ(128 + SIGKILL, test_child_wait(r.pid));
	/* The translation is cached, its process gone: an error, whatever the pid names now. */
	ASSERT_NE(0, access_rw(r.fd, r.access, r.iova, buf, LEN, MOCK_ACCESS_RW_WRITE));
	ASSERT_NE(0, access_rw(r.fd, r.access, r.iova, buf, LEN, 0));
	EXPECT_EQ(r.copies, uiommu_remote_direct_copies());
	remote_server_drop(&r);
}

/*
 * A raw exec keeps the server's pid (and a pidfd's answer) but not its memory: a translation
 * cached before it must never reach the new image, which maps memory of its own at the very
 * address the old translation names.
 */
TEST(a_server_that_execs_behind_the_librarys_back_is_never_written)
{
	static unsigned char buf[LEN];
	struct remote_server r;

	NEEDS_IOMMUFD_TEST();
	ASSERT_EQ(0, remote_server_start(&r, buf));
	ASSERT_EQ('m', remote_server_ask(&r, 'x'));
	ASSERT_NE(0, access_rw(r.fd, r.access, r.iova, buf, LEN, MOCK_ACCESS_RW_WRITE));
	EXPECT_EQ(r.copies, uiommu_remote_direct_copies());
	EXPECT_EQ('y', remote_server_ask(&r, 'c'));
	shutdown(r.sock, SHUT_WR);
	ASSERT_EQ(0, test_child_wait(r.pid));
	remote_server_drop(&r);
}

/*
 * Every fallible step of serving a client's direct ACCESS_RW (its connection, the HELLO, the
 * page's WIRE_DIRECT, the TRANSLATE, the round trip it falls back to) fails once in turn: the
 * call then either went through (the bytes are here) or answered a clean errno.
 */
TEST(fail_nth_of_the_serving_side_of_the_direct_path)
{
	struct served s;
	unsigned long left = 0;
	int n;

	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, served_make(&s));
	for (n = 1; n < 200 && !left; n++) {
		int sock, rc;
		pid_t pid;

		memset(s.buf, 0, LEN);
		uiommu_serve_fail_nth_arm((unsigned long)n);
		pid = client_start("sweep", s.fd, s.access, s.iova, true, &sock);
		ASSERT_GT(pid, 0);
		rc = test_child_wait(pid);
		left = uiommu_serve_fail_nth_disarm();
		close(sock);
		ASSERT_TRUE(rc == 0 || rc == 10);
		if (rc == 0)
			ASSERT_TRUE(all_bytes(s.buf, LEN, 0x77));
	}
	/* The sweep ran out of steps to fail before the bound. */
	ASSERT_NE(0, left);
	ASSERT_GT(n, 4);
	served_drop(&s);
}

/*
 * The client's own side of its first direct write, each fallible step failing once in turn:
 * the call goes through (the bytes are here) or answers a clean errno, never a wrong byte.
 */
TEST(fail_nth_of_the_clients_side_of_the_direct_path)
{
	uint64_t left = 0, msg[2];
	struct served s;
	unsigned long n;

	NEEDS_IOMMUFD_TEST();
	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, served_make(&s));
	for (n = 1; n < 200 && !left; n++) {
		uint64_t nth = n;
		int sock;
		pid_t pid;

		memset(s.buf, 0, LEN);
		pid = client_start("csweep", s.fd, s.access, s.iova, true, &sock);
		ASSERT_GT(pid, 0);
		ASSERT_EQ(0, xfer(sock, &nth, sizeof(nth), true));
		ASSERT_EQ(0, xfer(sock, msg, sizeof(msg), false));
		ASSERT_EQ(0, test_child_wait(pid));
		close(sock);
		left = msg[1];
		if (!msg[0])
			ASSERT_TRUE(all_bytes(s.buf, LEN, 0x77));
		else
			ASSERT_TRUE(msg[0] == (uint64_t)-ENOMEM || msg[0] == (uint64_t)-EFAULT ||
				    msg[0] == (uint64_t)-ENODEV || msg[0] == (uint64_t)-EIO);
	}
	/* Its steps ran out before the bound, and there were some (the direct path's own). */
	ASSERT_NE(0, left);
	ASSERT_GT(n, 3);
	served_drop(&s);
}

/* ---- a lying server ---------------------------------------------------------------------- */

/*
 * "--liar SOCK": this program speaks the server's side of the wire itself, and lies in its
 * DIRECT reply as the test asks (enum lie), to aim the client's own copies at another process
 * (a "victim" child of the test, or the test itself) or to hand it memfds that would kill it
 * by SIGBUS. It is honest otherwise: TRANSLATE's run is the target's buffer, and the round
 * trip (WIRE_IOCTL of ACCESS_RW) copies to and from its own buffer through the client's mem
 * fd, as a server's context would. The test sends struct liar_order, gets the pid and name
 * back, then asks 'c' (does the liar's buffer hold the client's 0x5a?) and 'q'.
 */
enum lie {
	LIE_NONE,         /* the control: the client's direct copy lands in the liar */
	LIE_THIRD,        /* the victim's pid, tid and word: a third process */
	LIE_CLIENT,       /* the client's own pid and tid */
	LIE_FOREIGN_TID,  /* the liar's pid, the victim's tid */
	LIE_DEAD_TID,     /* the liar's pid, the tid of a reaped child */
	LIE_ZERO_TID,     /* 0 */
	LIE_PAGE_UNSEALED,/* the page's memfd can shrink */
	LIE_PAGE_SMALL,   /* the page's memfd is empty */
	LIE_LIFE_UNSEALED,/* the life word's memfd can shrink */
	LIE_LIFE_SMALL,   /* the life word's memfd is empty */
};

struct liar_order {
	uint32_t lie;
	int32_t pid, tid; /* the target's, for the lies that name one */
	uint64_t addr;    /* its buffer: TRANSLATE's run (LIE_NONE: the liar's own) */
};

struct liar_conn {
	int sock, mem;
	struct wire_direct_page *page;
};

static unsigned char liar_buf[LEN];

/* A memfd of @len bytes holding @word first, with @seals. Its fd, or -1. */
static int liar_memfd(uint64_t len, uint32_t word, unsigned int seals)
{
	int fd = memfd_create("liar", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)len) ||
	    (len && pwrite(fd, &word, sizeof(word), 0) != sizeof(word)) ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int liar_reply(int s, struct wire_rep *rep, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(2 * sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = rep, .iov_len = sizeof(*rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *c;

		msg.msg_control = cbuf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(s, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(*rep) ? 0 : -1;
}

/* DIRECT, with the lie of @o. */
static int liar_direct(struct liar_conn *lc, const struct liar_order *o, struct wire_rep *rep)
{
	unsigned int page_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	unsigned int life_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	uint64_t page_len = 4096, life_len = 4096;
	uint32_t pid = (uint32_t)getpid(), tid = (uint32_t)gettid();
	int fds[2], rc;

	switch (o->lie) {
	case LIE_THIRD:
	case LIE_CLIENT:
		pid = (uint32_t)o->pid;
		tid = (uint32_t)o->tid;
		break;
	case LIE_FOREIGN_TID:
	case LIE_DEAD_TID:
		tid = (uint32_t)o->tid;
		break;
	case LIE_ZERO_TID:
		tid = 0;
		break;
	case LIE_PAGE_UNSEALED:
		page_seals = 0;
		break;
	case LIE_PAGE_SMALL:
		page_len = 0;
		break;
	case LIE_LIFE_UNSEALED:
		life_seals = 0;
		break;
	case LIE_LIFE_SMALL:
		life_len = 0;
		break;
	}
	fds[0] = liar_memfd(4096, 0, 0);
	fds[1] = liar_memfd(life_len, tid, life_seals);
	if (fds[0] < 0 || fds[1] < 0)
		return -1;
	lc->page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (lc->page == MAP_FAILED)
		return -1;
	atomic_store(&lc->page->gen, 1);
	if (ftruncate(fds[0], (off_t)page_len) || (page_seals && fcntl(fds[0], F_ADD_SEALS, page_seals)))
		return -1;
	if (!page_len)
		lc->page = NULL; /* gone with the file's pages: never looked at again */
	rep->val[0] = pid;
	rep->val[1] = tid;
	rc = liar_reply(lc->sock, rep, fds, 2);
	close(fds[0]);
	close(fds[1]);
	return rc;
}

/* The round trip of ACCESS_RW: through the client's mem fd, with our own buffer. */
static int64_t liar_ioctl(struct liar_conn *lc, const struct wire_req *req)
{
	struct iommu_test_cmd cmd;
	ssize_t n;

	if (req->arg[0] != IOMMU_TEST_CMD ||
	    pread(lc->mem, &cmd, sizeof(cmd), (off_t)req->arg[1]) != sizeof(cmd) ||
	    cmd.op != IOMMU_TEST_OP_ACCESS_RW || cmd.access_rw.iova > LEN ||
	    cmd.access_rw.length > LEN - cmd.access_rw.iova)
		return -EINVAL;
	if (cmd.access_rw.flags & MOCK_ACCESS_RW_WRITE)
		n = pread(lc->mem, liar_buf + cmd.access_rw.iova, cmd.access_rw.length,
			  (off_t)cmd.access_rw.uptr);
	else
		n = pwrite(lc->mem, liar_buf + cmd.access_rw.iova, cmd.access_rw.length,
			   (off_t)cmd.access_rw.uptr);
	return n == (ssize_t)cmd.access_rw.length ? 0 : -EFAULT;
}

/* One request of @lc: 0, or -1 when the connection ends. */
static int liar_serve(struct liar_conn *lc, const struct liar_order *o)
{
	struct wire_rep rep = { 0 };
	struct wire_req req;

	if (recv(lc->sock, &req, sizeof(req), MSG_WAITALL) != sizeof(req))
		return -1;
	switch (req.op) {
	case WIRE_INFO:
		rep.val[3] = WIRE_INFO_READABLE | WIRE_INFO_WRITABLE;
		break;
	case WIRE_DIRECT:
		return liar_direct(lc, o, &rep);
	case WIRE_TRANSLATE:
		if (!lc->page || req.arg[0] || req.arg[1] > LEN) {
			rep.rc = -EAGAIN;
			break;
		}
		lc->page->runs[0].host = o->addr;
		lc->page->runs[0].len = req.arg[1];
		rep.val[0] = 1;
		rep.val[1] = 1;
		break;
	case WIRE_IOCTL:
		rep.rc = liar_ioctl(lc, &req);
		break;
	default:
		rep.rc = -EOPNOTSUPP;
	}
	return liar_reply(lc->sock, &rep, NULL, 0);
}

/* A new connection's HELLO: keeps the client's mem fd. 0 or -1. */
static int liar_hello(struct liar_conn *lc)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct wire_hello hello;
	struct iovec iov = { .iov_base = &hello, .iov_len = sizeof(hello) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct wire_rep rep = { 0 };
	struct cmsghdr *c;
	int fds[4], k;

	if (recvmsg(lc->sock, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC) != sizeof(hello))
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	if (k < 3 || k > 4)
		return -1;
	memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)k);
	lc->mem = fds[1];
	close(fds[0]);
	close(fds[2]);
	if (k == 4)
		close(fds[3]);
	return liar_reply(lc->sock, &rep, NULL, 0);
}

static int liar_main(int ctl)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct liar_conn conns[8];
	struct pollfd p[10];
	struct liar_order o;
	char name[WIRE_NAME_LEN] = { 0 };
	int lis, nr = 0;
	char b;

	if (xfer(ctl, &o, sizeof(o), false))
		return 2;
	if (o.lie == LIE_DEAD_TID) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) != pid)
			return 3;
		o.tid = pid;
	}
	if (o.lie == LIE_NONE)
		o.addr = (uintptr_t)liar_buf;
	snprintf(name, sizeof(name), "uiommu-%016llx%016llx", (unsigned long long)getpid(),
		 (unsigned long long)o.lie + 0x11abull);
	memcpy(sun.sun_path + 1, name, WIRE_NAME_LEN - 1);
	lis = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lis < 0 ||
	    bind(lis, (struct sockaddr *)&sun, offsetof(struct sockaddr_un, sun_path) + WIRE_NAME_LEN) ||
	    listen(lis, 8) || xfer(ctl, name, sizeof(name), true))
		return 4;
	for (;;) {
		p[0] = (struct pollfd){ .fd = ctl, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = lis, .events = POLLIN };
		for (int i = 0; i < nr; i++)
			p[2 + i] = (struct pollfd){ .fd = conns[i].sock, .events = POLLIN };
		if (poll(p, (nfds_t)(2 + nr), -1) < 0)
			return 5;
		if (p[0].revents) {
			if (xfer(ctl, &b, 1, false) || b == 'q')
				return 0;
			b = all_bytes(liar_buf, LEN, 0x5a) ? 'y' : 'n';
			if (xfer(ctl, &b, 1, true))
				return 6;
		}
		if ((p[1].revents & POLLIN) && nr < 8) {
			conns[nr] = (struct liar_conn){ .sock = accept4(lis, NULL, NULL, SOCK_CLOEXEC),
							.mem = -1 };
			if (conns[nr].sock >= 0 && !liar_hello(&conns[nr]))
				nr++;
		}
		for (int i = nr - 1; i >= 0; i--) {
			if (!p[2 + i].revents || liar_serve(&conns[i], &o) == 0)
				continue;
			close(conns[i].sock);
			close(conns[i].mem);
			conns[i] = conns[--nr];
		}
	}
}

/* "--victim SOCK": a third process; its pid, tid and buffer's address, then for each byte
 * whether its buffer is still all zero. */
static int victim_main(int ctl)
{
	static unsigned char buf[LEN];
	struct liar_order me = { .pid = getpid(), .tid = gettid(), .addr = (uintptr_t)buf };

	if (xfer(ctl, &me, sizeof(me), true))
		return 2;
	return mem_answer(ctl, buf, 0) ? 3 : 0;
}

/*
 * An fd of the liar's file @token, as one that came by SCM_RIGHTS: a socket whose first
 * bytes are the header naming its server. Adopted; the fd, or -1. Its other end in *@keep.
 */
static int liar_fd(pid_t liar, const char *name, uint64_t token, int *keep)
{
	struct wire_fd_header hdr = { .magic = WIRE_MAGIC, .version = WIRE_VERSION, .pid = liar,
				      .token = token };
	int sv[2];

	memcpy(hdr.name, name, WIRE_NAME_LEN);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	*keep = sv[1];
	if (xfer(sv[1], &hdr, sizeof(hdr), true) || !uiommu_fd_adopt(sv[0])) {
		close(sv[0]);
		return -1;
	}
	return sv[0];
}

/*
 * A liar telling @lie: the client (this process) writes 0x5a and reads it back through the
 * liar's "access". Only LIE_NONE may be copied by the client itself; every other lie goes
 * the round trip, so the bytes land in the liar's buffer and never in the victim's nor in
 * ours (@mine, where LIE_CLIENT aims).
 */
static void liar_case(struct __h_test *_metadata, enum lie lie)
{
	static unsigned char buf[LEN], mine[LEN];
	unsigned long before = uiommu_remote_direct_copies();
	int vsock, lsock, fd, access, keep[2];
	struct liar_order o = { .lie = lie };
	char name[WIRE_NAME_LEN];
	pid_t victim, liar;

	victim = helper_start("--victim", &vsock);
	ASSERT_LT(0, victim);
	ASSERT_EQ(0, xfer(vsock, &o, sizeof(o), false));
	o.lie = lie;
	if (lie == LIE_CLIENT) {
		o.pid = getpid();
		o.tid = gettid();
		o.addr = (uintptr_t)mine;
	}
	memset(mine, 0, LEN);
	liar = helper_start("--liar", &lsock);
	ASSERT_LT(0, liar);
	ASSERT_EQ(0, xfer(lsock, &o, sizeof(o), true));
	ASSERT_EQ(0, xfer(lsock, name, sizeof(name), false));
	fd = liar_fd(liar, name, 1, &keep[0]);
	ASSERT_LE(0, fd);
	access = liar_fd(liar, name, 2, &keep[1]);
	ASSERT_LE(0, access);

	memset(buf, 0x5a, LEN);
	ASSERT_EQ(0, access_rw(fd, access, 0, buf, LEN, MOCK_ACCESS_RW_WRITE));
	EXPECT_EQ('y', helper_ask(lsock, 'c'));
	memset(buf, 0, LEN);
	ASSERT_EQ(0, access_rw(fd, access, 0, buf, LEN, 0));
	EXPECT_TRUE(all_bytes(buf, LEN, 0x5a));
	EXPECT_EQ(lie == LIE_NONE ? before + 2 : before, uiommu_remote_direct_copies());
	EXPECT_EQ('y', helper_ask(vsock, 'c'));
	EXPECT_TRUE(all_bytes(mine, LEN, 0));

	close(access);
	close(fd);
	close(keep[0]);
	close(keep[1]);
	ASSERT_EQ(0, xfer(lsock, "q", 1, true));
	ASSERT_EQ(0, test_child_wait(liar));
	close(lsock);
	close(vsock);
	ASSERT_EQ(0, test_child_wait(victim));
}

TEST(a_server_telling_the_truth_is_copied_to_directly)
{
	liar_case(_metadata, LIE_NONE);
}

TEST(a_life_word_of_a_third_process_is_refused)
{
	liar_case(_metadata, LIE_THIRD);
}

TEST(a_life_word_of_the_clients_own_thread_is_refused)
{
	liar_case(_metadata, LIE_CLIENT);
}

TEST(a_tid_of_another_process_under_the_servers_pid_is_refused)
{
	liar_case(_metadata, LIE_FOREIGN_TID);
}

TEST(a_dead_tid_is_refused)
{
	liar_case(_metadata, LIE_DEAD_TID);
}

TEST(a_tid_of_0_is_refused)
{
	liar_case(_metadata, LIE_ZERO_TID);
}

/*
 * The serving side's half of the same: a client's life word is its claim too. An empty one,
 * or one it shrinks after its HELLO, is not taken (the mem fd's check serves that client),
 * and the server is not killed by SIGBUS.
 */
TEST(a_clients_empty_or_shrinkable_life_word_is_refused_without_a_sigbus)
{
	struct served s;
	int sock;
	pid_t pid;

	NEEDS_IOMMUFD_TEST(); /* the selftest access */
	ASSERT_EQ(0, served_make(&s));
	pid = client_start("lifelie", s.fd, s.access, s.iova, true, &sock);
	ASSERT_LT(0, pid);
	ASSERT_EQ(0, test_child_wait(pid));
	close(sock);
	served_drop(&s);
}

/* The memfds: one the liar could shrink under our mapping, or empty (a SIGBUS at our look). */
TEST(an_unsealed_page_is_refused)
{
	liar_case(_metadata, LIE_PAGE_UNSEALED);
}

TEST(an_empty_page_is_refused_without_a_sigbus)
{
	liar_case(_metadata, LIE_PAGE_SMALL);
}

TEST(an_unsealed_life_word_is_refused)
{
	liar_case(_metadata, LIE_LIFE_UNSEALED);
}

TEST(an_empty_life_word_is_refused_without_a_sigbus)
{
	liar_case(_metadata, LIE_LIFE_SMALL);
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	if (argc > 2 && !strcmp(argv[1], "--server"))
		return server_main(atoi(argv[2]));
	if (argc > 3 && !strcmp(argv[1], "--newimage"))
		return newimage_main(atoi(argv[2]), strtoull(argv[3], NULL, 0));
	if (argc > 2 && !strcmp(argv[1], "--liar"))
		return liar_main(atoi(argv[2]));
	if (argc > 2 && !strcmp(argv[1], "--victim"))
		return victim_main(atoi(argv[2]));
	return __h_run_all(argc, argv);
}
