// SPDX-License-Identifier: MIT
/*
 * One device for every process of a uiommu-run session (src/vfio/claim.c, docs/vfio.md): each
 * process boots its own copy of the machine, yet a group node open in one answers EBUSY to an
 * open in another, a device bound through its cdev in one is EINVAL to bind in another, the two
 * paths exclude each other (EBUSY) and a group a context of one process owns is EPERM to the
 * others, as in the kernel. Each rule lets go at the close, and at a SIGKILL of the holder.
 * A forked child's copy of the parent's claim neither ends it nor keeps it after the parent's
 * close; a process of another session is another machine; a fail-nth sweep of the new steps
 * leaves no claim behind. A claim held by a third process for a file whose last fd a killed
 * process had is gone for the next bind or open at once (it asks the session's servers to
 * settle); a dead server's record is removed by whoever finds it; a fail-nth sweep of the
 * asking and of the answering.
 *
 * The virtual sysfs's stores meet the same state (src/machine/sysfs.c, "what the other
 * processes of the session hold"): while the holder has a device open through VFIO (a cdev
 * file, bound or not, or a group's device fd), vfio-pci's unbind and the device's remove answer
 * EBUSY at the write(); while a context of the holder owns the group, a DMA-API driver's bind
 * answers EBUSY and a type switch EPERM, the kernel's errnos. A refused store writes nothing to
 * the session's journal, and each store goes through once the holder let go.
 *
 * The other process is this program again (fork + exec of /proc/self/exe "--child holder"), a
 * holder that opens, binds and closes as told over a socket and answers each order with 0 or
 * the errno. The machine (every process loads it from $UIOMMU_TOPOLOGY, kept for the run):
 *   vfio0 = 0000:03:00.0, alone in group "a"
 *   vfio1 = 0000:08:00.0 and vfio2 = 0000:08:00.1, together in group "g"
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd_pass.h"
#include "harness.h"
#include "uiommu_test.h"
#include "vfio_utils.h"
#include "uiommu/uiommu.h"

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:03:00.0\", \"iommu\": \"iommu0\", \"group\": \"a\" },\n"
	"    { \"bdf\": \"0000:08:00.0\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:08:00.1\", \"iommu\": \"iommu0\", \"group\": \"g\" } ] }\n";

/* ---- the holder ------------------------------------------------------------------------- */

enum holder_op {
	HOLD_GROUP,  /* open /dev/vfio/<arg> and keep it */
	HOLD_BIND,   /* open vfio<arg> and a new /dev/iommu, bind, keep both */
	HOLD_CLOSE,  /* close everything kept */
	HOLD_EXEC,   /* exec this program again, keeping everything kept (QEMU's CPR) */
	HOLD_DIR,    /* answer, then send the session directory (PATH_MAX bytes) */
	HOLD_OPEN,   /* open vfio<arg> and keep it, unbound */
	HOLD_GROUP_DEVICE, /* vfio<arg>'s group node, a container, its device fd: keep all three */
	HOLD_RECV,   /* receive one fd over the socket after the order and keep it */
	HOLD_RECV_BIND, /* receive a cdev's fd and an iommufd's, bind them, keep both */
	HOLD_GIVE,   /* open vfio<arg> and a new /dev/iommu, send both back after the answer */
	HOLD_PREPARE, /* open vfio<arg> and a new /dev/iommu and keep them, unbound */
	HOLD_BIND_KEPT, /* bind the last two fds kept (a cdev, an iommufd) */
	HOLD_UNBIND_OPEN, /* open vfio-pci's unbind for writing, for the next HOLD_UNBIND */
	HOLD_UNBIND, /* store vfio<arg>'s function into it (opened before: one write()) */
};

/* vfio<N>'s function (the topology below). */
static const char *const vfio_bdfs[] = { "0000:03:00.0", "0000:08:00.0", "0000:08:00.1" };

struct holder_msg {
	int op, arg;
};

#define HOLDER_FDS 8

static int holder_fds[HOLDER_FDS], holder_nr, holder_unbind = -1;

static void holder_keep(int fd)
{
	if (holder_nr < HOLDER_FDS)
		holder_fds[holder_nr++] = fd;
	else
		close(fd);
}

/* Opens @dir followed by @n and keeps it (*@fd): 0 or the errno. */
static int holder_open(const char *dir, int n, int *fd)
{
	char path[64];

	if (n < 0)
		snprintf(path, sizeof(path), "%s", dir); /* the whole path */
	else
		snprintf(path, sizeof(path), "%s%d", dir, n);
	*fd = open(path, O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return errno;
	holder_keep(*fd);
	return 0;
}

static int holder_do(int sock, const struct holder_msg *m)
{
	char path[64], c;
	int fd, vfd, rc;

	switch (m->op) {
	case HOLD_RECV:
		fd = recv_fd(sock, &c, 1);
		if (fd < 0)
			return EIO;
		holder_keep(fd);
		return 0;
	case HOLD_RECV_BIND:
		vfd = recv_fd(sock, &c, 1);
		fd = recv_fd(sock, &c, 1);
		if (vfd < 0 || fd < 0)
			return EIO;
		holder_keep(vfd);
		holder_keep(fd);
		return vfio_bind(vfd, fd, NULL) ? errno : 0;
	case HOLD_GIVE:
	case HOLD_PREPARE:
		snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", m->arg);
		return holder_open(path, -1, &vfd) ?: holder_open("/dev/iommu", -1, &fd);
	case HOLD_BIND_KEPT:
		if (holder_nr < 2)
			return EIO;
		return vfio_bind(holder_fds[holder_nr - 2], holder_fds[holder_nr - 1], NULL) ? errno : 0;
	case HOLD_GROUP:
		return holder_open("/dev/vfio/", m->arg, &fd);
	case HOLD_BIND:
		snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", m->arg);
		vfd = open(path, O_RDWR | O_CLOEXEC);
		fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		if (vfd < 0 || fd < 0)
			return EIO;
		if (vfio_bind(vfd, fd, NULL)) {
			int e = errno;

			close(vfd);
			close(fd);
			return e;
		}
		holder_keep(vfd);
		holder_keep(fd);
		return 0;
	case HOLD_OPEN:
		return holder_open("/dev/vfio/devices/vfio", m->arg, &vfd);
	case HOLD_GROUP_DEVICE:
		rc = holder_open("/dev/vfio/", vfio_group_id(vfio_bdfs[m->arg]), &fd);
		if (rc)
			return rc;
		vfd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		if (vfd < 0)
			return errno;
		holder_keep(vfd);
		if (ioctl(fd, VFIO_GROUP_SET_CONTAINER, &vfd))
			return errno;
		fd = ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, vfio_bdfs[m->arg]);
		if (fd < 0)
			return errno;
		holder_keep(fd);
		return 0;
	case HOLD_UNBIND_OPEN:
		holder_unbind = open("/sys/bus/pci/drivers/vfio-pci/unbind", O_WRONLY | O_CLOEXEC);
		return holder_unbind < 0 ? errno : 0;
	case HOLD_UNBIND:
		rc = write(holder_unbind, vfio_bdfs[m->arg], strlen(vfio_bdfs[m->arg])) < 0 ? errno : 0;
		close(holder_unbind);
		holder_unbind = -1;
		return rc;
	case HOLD_CLOSE:
		while (holder_nr)
			close(holder_fds[--holder_nr]);
		return 0;
	case HOLD_DIR:
		return 0;
	default:
		return EINVAL;
	}
}

/*
 * HOLD_EXEC: the new image gets the socket and the kept fds (no CLOEXEC) as its arguments and
 * answers the order itself; an exec that fails answers here.
 */
static int holder_exec(int sock)
{
	char *argv[4 + HOLDER_FDS + 1] = { "test_vfio_session", "--child", "holder" };
	char nums[1 + HOLDER_FDS][16];
	int i;

	snprintf(nums[0], sizeof(nums[0]), "%d", sock);
	argv[3] = nums[0];
	fcntl(sock, F_SETFD, 0);
	for (i = 0; i < holder_nr; i++) {
		snprintf(nums[1 + i], sizeof(nums[1 + i]), "%d", holder_fds[i]);
		argv[4 + i] = nums[1 + i];
		fcntl(holder_fds[i], F_SETFD, 0);
	}
	execv("/proc/self/exe", argv);
	return errno;
}

/*
 * "--child holder SOCK [FD...]": answers each order; at EOF closes what it holds and ends. The
 * FDs: what the image before an exec kept, whose HOLD_EXEC this image answers.
 */
static int child_holder(int argc, char **argv)
{
	int sock = atoi(argv[3]), rc = 0;
	struct holder_msg m;

	if (argc > 4) {
		for (int i = 4; i < argc; i++)
			holder_keep(atoi(argv[i]));
		if (write(sock, &rc, sizeof(rc)) != sizeof(rc))
			return 1;
	}
	while (read(sock, &m, sizeof(m)) == sizeof(m)) {
		char dir[PATH_MAX] = "";

		rc = m.op == HOLD_EXEC ? holder_exec(sock) : holder_do(sock, &m);
		if (write(sock, &rc, sizeof(rc)) != sizeof(rc))
			return 1;
		/* The cdev and the iommufd it just opened, then its copies go: the last fds are ours. */
		if (m.op == HOLD_GIVE && !rc) {
			char c = 0;

			if (send_fd(sock, holder_fds[holder_nr - 2], &c, 1) ||
			    send_fd(sock, holder_fds[holder_nr - 1], &c, 1))
				return 1;
			close(holder_fds[--holder_nr]);
			close(holder_fds[--holder_nr]);
		}
		if (m.op == HOLD_DIR && getenv("UIOMMU_SYSFS_DIR"))
			snprintf(dir, sizeof(dir), "%s", getenv("UIOMMU_SYSFS_DIR"));
		if (m.op == HOLD_DIR && write(sock, dir, sizeof(dir)) != sizeof(dir))
			return 1;
	}
	m.op = HOLD_CLOSE;
	return holder_do(sock, &m);
}

/*
 * Starts the holder; its pid, the socket to it in *@sock. @own_session: not in ours; @dir:
 * in that session instead, whose owner is @owner.
 */
static pid_t holder_start_in(int *sock, bool own_session, const char *dir, pid_t owner)
{
	char a[16];
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = fork();
	if (pid == 0) {
		fcntl(sv[1], F_SETFD, 0);
		snprintf(a, sizeof(a), "%d", sv[1]);
		if (own_session) {
			/* uiommu-run's preload names a new session for a process without one. */
			unsetenv("UIOMMU_SYSFS_DIR");
			unsetenv("UIOMMU_SYSFS_OWNER");
		}
		if (dir) {
			char o[16];

			snprintf(o, sizeof(o), "%d", (int)owner);
			setenv("UIOMMU_SYSFS_DIR", dir, 1);
			setenv("UIOMMU_SYSFS_OWNER", o, 1);
		}
		execl("/proc/self/exe", "test_vfio_session", "--child", "holder", a, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

static pid_t holder_start(int *sock, bool own_session)
{
	return holder_start_in(sock, own_session, NULL, 0);
}

/* One order to the holder: its answer (0 or an errno), or -1 if it is gone. */
static int holder(int sock, int op, int arg)
{
	struct holder_msg m = { .op = op, .arg = arg };
	int rc;

	if (write(sock, &m, sizeof(m)) != sizeof(m) || read(sock, &rc, sizeof(rc)) != sizeof(rc))
		return -1;
	return rc;
}

/* An order that takes @nr fds (HOLD_RECV, HOLD_RECV_BIND): its answer, or -1. */
static int holder_fds_give(int sock, int op, const int *fds, int nr)
{
	struct holder_msg m = { .op = op };
	char c = 0;
	int rc;

	if (write(sock, &m, sizeof(m)) != sizeof(m))
		return -1;
	for (int i = 0; i < nr; i++)
		if (send_fd(sock, fds[i], &c, 1))
			return -1;
	return read(sock, &rc, sizeof(rc)) == sizeof(rc) ? rc : -1;
}

/* Ends the holder: EOF, then its exit status. */
static int holder_stop(int sock, pid_t pid)
{
	close(sock);
	return test_child_wait(pid);
}

/* ---- this process's side ------------------------------------------------------------------ */

static int group_open(int id)
{
	char path[32];

	snprintf(path, sizeof(path), "/dev/vfio/%d", id);
	return open(path, O_RDWR | O_CLOEXEC);
}

static int cdev_open(int n)
{
	char path[48];

	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", n);
	return open(path, O_RDWR | O_CLOEXEC);
}

/* Opens vfio<n> and a new iommufd and binds them: 0 (both fds out), or -1 with the bind's errno. */
static int cdev_bind(int n, int *vfd, int *ifd)
{
	int e;

	*vfd = cdev_open(n);
	*ifd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (*vfd >= 0 && *ifd >= 0 && !vfio_bind(*vfd, *ifd, NULL))
		return 0;
	e = errno;
	if (*vfd >= 0)
		close(*vfd);
	if (*ifd >= 0)
		close(*ifd);
	*vfd = *ifd = -1;
	errno = e;
	return -1;
}

static void cdev_unbind(int vfd, int ifd)
{
	close(vfd);
	close(ifd);
}

/* ---- the cases ---------------------------------------------------------------------------- */

/* Group "a" (vfio0 alone), group "g" (vfio1, vfio2), and a holder in our session. */
FIXTURE(session)
{
	int a, g, sock;
	pid_t pid; /* 0 once the case ended it */
};

FIXTURE_SETUP(session)
{
	self->a = vfio_group_id("0000:03:00.0");
	self->g = vfio_group_id("0000:08:00.0");
	ASSERT_GE(self->a, 0);
	ASSERT_GE(self->g, 0);
	ASSERT_NE(self->a, self->g);
	ASSERT_EQ(self->g, vfio_group_id("0000:08:00.1"));
	self->pid = holder_start(&self->sock, false);
	ASSERT_GT(self->pid, 0);
}

FIXTURE_TEARDOWN(session)
{
	if (self->pid > 0)
		EXPECT_EQ(0, holder_stop(self->sock, self->pid));
}

/* The holder ends by SIGKILL, in the middle of whatever it holds. */
static int session_kill(FIXTURE_DATA(session) *self)
{
	pid_t pid = self->pid;

	self->pid = 0;
	kill(pid, SIGKILL);
	close(self->sock);
	return test_child_wait(pid);
}

TEST_F(session, group_node_open_is_exclusive_across_processes)
{
	int g, v, i;

	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
	/* Our machine knows nothing of the holder's open: the session does. */
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	/* The group path against the cdev path: the cdev opens, its bind is refused. */
	ASSERT_ERRNO(EBUSY, cdev_bind(0, &v, &i));
	/* ... and back: with the holder's group closed, we open it; now the holder is refused. */
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	g = group_open(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_BIND, 0));
	ASSERT_EQ(0, close(g));
	/* A SIGKILLed holder lets go too. */
	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	ASSERT_EQ(128 + SIGKILL, session_kill(self));
	g = group_open(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, close(g));
}

TEST_F(session, cdev_bind_is_exclusive_across_processes)
{
	int g, v, i;

	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 0));
	/* The kernel's open_count: one bound file of a device, whatever the process. */
	ASSERT_ERRNO(EINVAL, cdev_bind(0, &v, &i));
	/* A bound device blocks its group's node elsewhere. */
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	/* Unbound (closed) there, bound here; then the holder is refused. */
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	ASSERT_EQ(0, cdev_bind(0, &v, &i));
	ASSERT_EQ(EINVAL, holder(self->sock, HOLD_BIND, 0));
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
	cdev_unbind(v, i);
	/* A SIGKILLed holder lets go too. */
	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 0));
	ASSERT_ERRNO(EINVAL, cdev_bind(0, &v, &i));
	ASSERT_EQ(128 + SIGKILL, session_kill(self));
	ASSERT_EQ(0, cdev_bind(0, &v, &i));
	cdev_unbind(v, i);
	g = group_open(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, close(g));
}

/* Two devices of one group: the holder's context owns the group, ours is another owner. */
TEST_F(session, group_ownership_stays_in_one_process)
{
	int v, i, v2, i2;

	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 1));
	ASSERT_ERRNO(EPERM, cdev_bind(2, &v, &i)); /* iommu_device_claim_dma_owner() */
	ASSERT_ERRNO(EINVAL, cdev_bind(1, &v, &i));
	ASSERT_ERRNO(EBUSY, group_open(self->g));
	/* The holder's own second iommufd is another owner too, in its own machine. */
	ASSERT_EQ(EPERM, holder(self->sock, HOLD_BIND, 2));
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	/* Now ours: both devices bind to our one iommufd, and the holder meets the same rules. */
	ASSERT_EQ(0, cdev_bind(1, &v, &i));
	v2 = cdev_open(2);
	ASSERT_GE(v2, 0);
	ASSERT_EQ(0, vfio_bind(v2, i, NULL));
	ASSERT_EQ(EINVAL, holder(self->sock, HOLD_BIND, 1));
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->g));
	/* One unbound, the other still owns the group for us. */
	ASSERT_EQ(0, close(v2));
	ASSERT_EQ(EPERM, holder(self->sock, HOLD_BIND, 2));
	cdev_unbind(v, i);
	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 2));
	ASSERT_EQ(0, holder_stop(self->sock, self->pid));
	self->pid = 0;
	ASSERT_EQ(0, cdev_bind(2, &v2, &i2));
	cdev_unbind(v2, i2);
}

/* One process as before: the local rules answer first, with the same errnos. */
TEST_F(session, within_one_process_as_before)
{
	int g, v, i, v2, i2;

	g = group_open(self->a);
	ASSERT_GE(g, 0);
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	ASSERT_ERRNO(EBUSY, cdev_bind(0, &v, &i));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, cdev_bind(0, &v, &i));
	ASSERT_ERRNO(EINVAL, cdev_bind(0, &v2, &i2));
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	cdev_unbind(v, i);
	g = group_open(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, close(g));
}

/*
 * A forked child has a copy of our claim's fd: its exit must not end our claim (no unlock
 * there), and our close must end it although the child's copy of the claim is still open. (A
 * child that keeps its copy of the group fd keeps the group open, as the kernel's file.)
 */
TEST_F(session, a_forked_child_neither_ends_nor_keeps_the_claim)
{
	int g, go[2], ready[2];
	pid_t child;
	char c = 0;

	ASSERT_EQ(0, pipe2(go, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(ready, O_CLOEXEC));
	g = group_open(self->a);
	ASSERT_GE(g, 0);
	/* The first child exits at once, its copies of everything open. */
	child = fork();
	if (child == 0)
		_exit(0);
	ASSERT_EQ(0, test_child_wait(child));
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
	/* The second one closes its copy of the group fd and lives on past our close. */
	child = fork();
	if (child == 0) {
		if (close(go[1]) || close(g) || write(ready[1], &c, 1) != 1)
			_exit(1);
		_exit(read(go[0], &c, 1) == 0 ? 0 : 1);
	}
	ASSERT_EQ(0, close(go[0]));
	ASSERT_EQ(0, close(ready[1]));
	ASSERT_EQ(1, read(ready[0], &c, 1));
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	ASSERT_EQ(0, close(go[1]));
	ASSERT_EQ(0, test_child_wait(child));
	ASSERT_EQ(0, close(ready[0]));
}

/* The fd of this process that holds a claim file named @name, or -1. */
static int claim_fd_find(const char *name)
{
	char path[64], link[PATH_MAX];
	ssize_t n;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strstr(link, name))
			return fd;
	}
	return -1;
}

/*
 * A program that closes the claim's fd behind our back (closefrom() in itself) ends the claim,
 * and a file it opens on that number afterwards is never closed by our release.
 */
TEST_F(session, a_claim_fd_closed_behind_our_back_is_left_alone)
{
	char name[32];
	int g, fd, p[2];

	g = group_open(self->a);
	ASSERT_GE(g, 0);
	snprintf(name, sizeof(name), "/claim.group.%d", self->a);
	fd = claim_fd_find(name);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_EQ(0, pipe(p)); /* before the close: neither end takes the number */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a)); /* the claim went with it */
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	ASSERT_EQ(fd, dup2(p[0], fd));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, fcntl(fd, F_GETFD)); /* still the pipe, ours to close */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(p[0]));
	ASSERT_EQ(0, close(p[1]));
	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
}

/* Our group open, retried while EBUSY (bounded: 10 s): the fd, or -1 with errno. */
static int group_open_settle(int id)
{
	int g = group_open(id);

	for (int i = 0; i < 10000 && g < 0 && errno == EBUSY; i++) {
		poll(NULL, 0, 1);
		g = group_open(id);
	}
	return g;
}

/*
 * QEMU's CPR: the holder execs itself keeping its group fd, and the process that serves the
 * file from then on (the exec hand-over's, docs/processes.md) keeps the claim until the new
 * image closes the fd. That release runs in the server's loop, after the close returned:
 * hence the bounded retry.
 */
TEST_F(session, the_claim_follows_the_file_across_an_exec)
{
	int g, v, i;

	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_EQ(0, holder(self->sock, HOLD_EXEC, 0));
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	ASSERT_ERRNO(EBUSY, cdev_bind(0, &v, &i));
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	g = group_open_settle(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, close(g));
	/* The same for a bound cdev, with a second exec. */
	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 0));
	ASSERT_EQ(0, holder(self->sock, HOLD_EXEC, 0));
	ASSERT_ERRNO(EINVAL, cdev_bind(0, &v, &i));
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	g = group_open_settle(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, cdev_bind(0, &v, &i));
	cdev_unbind(v, i);
}

/*
 * Another uiommu-run session is another machine: nothing of ours is claimed there. Its end
 * removes its directory with the claim files nobody holds; one still held keeps it.
 */
TEST_F(session, another_session_is_another_machine)
{
	char dir[PATH_MAX], mine[PATH_MAX + 32];
	struct stat st;
	int g, sock;
	pid_t pid;

	g = group_open(self->a);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 1));
	pid = holder_start(&sock, true);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, holder(sock, HOLD_GROUP, self->a));
	ASSERT_EQ(0, holder(sock, HOLD_BIND, 1));
	ASSERT_EQ(0, holder(sock, HOLD_DIR, 0));
	ASSERT_EQ((ssize_t)sizeof(dir), read(sock, dir, sizeof(dir)));
	ASSERT_NE(0, strcmp(dir, getenv("UIOMMU_SYSFS_DIR")));
	snprintf(mine, sizeof(mine), "%s/claim.group.%d", dir, self->a);
	ASSERT_EQ(0, stat(mine, &st));
	ASSERT_EQ(0600, st.st_mode & 0777);
	ASSERT_EQ(0, holder_stop(sock, pid)); /* it closes everything first */
	ASSERT_ERRNO(ENOENT, stat(dir, &st));
	/* Our session's claim files stay while we hold ours. */
	snprintf(mine, sizeof(mine), "%s/claim.group.%d", getenv("UIOMMU_SYSFS_DIR"), self->a);
	ASSERT_EQ(0, stat(mine, &st));
	ASSERT_EQ(0, close(g));
}

/*
 * Each fallible step of a group open and of a cdev bind failed once, in turn: an open or bind
 * that failed leaves no claim behind (the holder takes the same group or device at once); one
 * that succeeded all the same (a step with a fallback) holds its claim.
 */
TEST_F(session, fail_nth_leaves_no_claim)
{
	bool failed = true;
	unsigned long n;
	int g, v, i, rc;

	if (!uiommu_fail_nth_available())
		SKIP("a build without fault injection");
	for (n = 1; n < 1000 && failed; n++) {
		uiommu_fail_nth_arm(n);
		g = group_open(self->a);
		failed = !uiommu_fail_nth_disarm();
		if (g >= 0) {
			ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
			ASSERT_EQ(0, close(g));
		} else {
			ASSERT_TRUE(failed);
			ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
			ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
		}
	}
	ASSERT_FALSE(failed);
	for (n = 1, failed = true; n < 1000 && failed; n++) {
		v = cdev_open(0);
		i = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		ASSERT_GE(v, 0);
		ASSERT_GE(i, 0);
		uiommu_fail_nth_arm(n);
		rc = vfio_bind(v, i, NULL);
		failed = !uiommu_fail_nth_disarm();
		if (!rc) {
			ASSERT_EQ(EINVAL, holder(self->sock, HOLD_BIND, 0));
			ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
		} else {
			/* Neither the group's claim (a group open takes it) nor the device's. */
			ASSERT_TRUE(failed);
			ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
			ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
			ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 0));
			ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
		}
		cdev_unbind(v, i);
	}
	ASSERT_FALSE(failed);
	ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 0));
}

/* ---- a claim a third process holds, for a file a dead one held last -------------------------- */

/* Kills the holder @pid (its socket @sock) and reaps it: its exit status. */
static int holder_kill(int sock, pid_t pid)
{
	kill(pid, SIGKILL);
	close(sock);
	return test_child_wait(pid);
}

/* vfio0 and a new /dev/iommu, ours (we serve them): 0, or -1. */
static int cdev_and_iommufd_open(int fds[2])
{
	fds[0] = cdev_open(0);
	fds[1] = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	return fds[0] >= 0 && fds[1] >= 0 ? 0 : -1;
}

/* The same, but the holder's (it serves them; its own copies are closed): 0, or -1. */
static int cdev_and_iommufd_of_holder(int sock, int fds[2])
{
	char c;

	if (holder(sock, HOLD_GIVE, 0))
		return -1;
	fds[0] = recv_fd(sock, &c, 1);
	fds[1] = recv_fd(sock, &c, 1);
	return fds[0] >= 0 && fds[1] >= 0 ? 0 : -1;
}

/*
 * A VMM binds the cdev @fds[0] to the iommufd @fds[1] handed to it, which we close then, and
 * is killed: 0 once reaped, -1 otherwise.
 */
static int vmm_binds_and_dies(int fds[2])
{
	int sock;
	pid_t vmm = holder_start(&sock, false);

	if (vmm <= 0 || holder_fds_give(sock, HOLD_RECV_BIND, fds, 2) || close(fds[0]) ||
	    close(fds[1]))
		return -1;
	return holder_kill(sock, vmm) == 128 + SIGKILL ? 0 : -1;
}

/*
 * The orchestrator with a third process (docs/vfio.md): we open vfio0 and /dev/iommu and hand
 * both to a VMM, closing our copies; it binds (served here: the claims are ours); it is
 * killed. Once waitpid() reported it, the holder, which opens vfio0 itself and binds it to an
 * iommufd of its own, succeeds the first time: its refused bind asked us to settle, and our
 * settle released the cdev the dead VMM held last, and with it the claims (EINVAL a moment
 * after the death, before).
 */
TEST_F(session, a_bind_meets_no_claim_a_third_process_held_for_the_dead)
{
	for (int round = 0; round < 30; round++) {
		int sock, fds[2];
		pid_t vmm;

		vmm = holder_start(&sock, false);
		ASSERT_GT(vmm, 0);
		ASSERT_EQ(0, cdev_and_iommufd_open(fds));
		ASSERT_EQ(0, holder_fds_give(sock, HOLD_RECV_BIND, fds, 2));
		ASSERT_EQ(0, close(fds[0]));
		ASSERT_EQ(0, close(fds[1]));
		if (!round) /* bound by the live VMM: the session's claim, ours, says so */
			ASSERT_EQ(EINVAL, holder(self->sock, HOLD_BIND, 0));
		/* Its own cdev and iommufd open already: the bind comes as soon as it can. */
		ASSERT_EQ(0, holder(self->sock, HOLD_PREPARE, 0));
		ASSERT_EQ(128 + SIGKILL, holder_kill(sock, vmm));
		ASSERT_EQ(0, holder(self->sock, HOLD_BIND_KEPT, 0));
		ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	}
}

/*
 * The refused bind served for another process: the holder opens vfio0 and an iommufd and hands
 * them over (it serves them), a VMM binds them and dies; then a VMM binds a cdev and an iommufd
 * we serve. Its bind runs here, a call served for it, which asks the holder to settle, and
 * succeeds the first time; a settle it sends can wait for nothing that waits for it (remote.c).
 */
TEST_F(session, a_bind_served_for_another_process_meets_no_claim_held_for_the_dead)
{
	for (int round = 0; round < 30; round++) {
		int sock, fds[2], ours[2];
		pid_t vmm;

		/* The next VMM with what it binds, ready before the first one dies. */
		vmm = holder_start(&sock, false);
		ASSERT_GT(vmm, 0);
		ASSERT_EQ(0, cdev_and_iommufd_open(ours));
		ASSERT_EQ(0, holder_fds_give(sock, HOLD_RECV, &ours[0], 1));
		ASSERT_EQ(0, holder_fds_give(sock, HOLD_RECV, &ours[1], 1));
		ASSERT_EQ(0, close(ours[0]));
		ASSERT_EQ(0, close(ours[1]));
		ASSERT_EQ(0, cdev_and_iommufd_of_holder(self->sock, fds));
		ASSERT_EQ(0, vmm_binds_and_dies(fds));
		ASSERT_EQ(0, holder(sock, HOLD_BIND_KEPT, 0));
		ASSERT_EQ(0, holder_stop(sock, vmm));
	}
}

/* The same with the group node: we open it, the VMM holds the only fd, and dies. */
TEST_F(session, a_group_open_meets_no_claim_a_third_process_held_for_the_dead)
{
	for (int round = 0; round < 30; round++) {
		int sock, g;
		pid_t vmm;

		vmm = holder_start(&sock, false);
		ASSERT_GT(vmm, 0);
		g = group_open(self->a);
		ASSERT_GE(g, 0);
		ASSERT_EQ(0, holder_fds_give(sock, HOLD_RECV, &g, 1));
		ASSERT_EQ(0, close(g));
		if (!round)
			ASSERT_EQ(EBUSY, holder(self->sock, HOLD_GROUP, self->a));
		ASSERT_EQ(128 + SIGKILL, holder_kill(sock, vmm));
		ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
		ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	}
}

/* Is there a record of a server of process @pid in the session directory? */
static bool server_recorded(pid_t pid)
{
	char prefix[32];
	struct dirent *de;
	bool found = false;
	DIR *dir = opendir(getenv("UIOMMU_SYSFS_DIR"));

	if (!dir)
		return false;
	snprintf(prefix, sizeof(prefix), "server.%d.", (int)pid);
	while ((de = readdir(dir)))
		found |= !strncmp(de->d_name, prefix, strlen(prefix));
	closedir(dir);
	return found;
}

/*
 * A serving process killed leaves its record in the session directory (no exit handler ran):
 * the next refusal that asks the session's servers finds nobody listening under that name (a
 * connect to a dead abstract name is refused at once), removes the record and answers. So
 * does a record naming a name nobody ever had.
 */
TEST_F(session, a_dead_server_s_record_is_removed_by_whoever_finds_it)
{
	char fake[PATH_MAX];
	int sock, fd, ours;
	pid_t pid;

	ours = open("/dev/iommu", O_RDWR | O_CLOEXEC); /* we serve too */
	ASSERT_GE(ours, 0);
	pid = holder_start(&sock, false);
	ASSERT_GT(pid, 0);
	ASSERT_EQ(0, holder(sock, HOLD_OPEN, 2)); /* it serves the cdev: a server of its own */
	ASSERT_TRUE(server_recorded(pid));
	ASSERT_EQ(128 + SIGKILL, holder_kill(sock, pid));
	ASSERT_TRUE(server_recorded(pid));
	snprintf(fake, sizeof(fake), "%s/server.%d.uiommu-%032d", getenv("UIOMMU_SYSFS_DIR"),
		 (int)getpid(), 0);
	fd = open(fake, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, close(fd));
	/* The holder's group open: our refusal asks every server, the holder's live one too. */
	ASSERT_EQ(0, holder(self->sock, HOLD_GROUP, self->a));
	ASSERT_ERRNO(EBUSY, group_open(self->a));
	ASSERT_FALSE(server_recorded(pid));
	ASSERT_ERRNO(ENOENT, access(fake, F_OK));
	ASSERT_TRUE(server_recorded(self->pid));
	ASSERT_TRUE(server_recorded(getpid()));
	ASSERT_EQ(0, close(ours));
}

/*
 * A serving process that outlives its session: the owner's end keeps the directory for the
 * server's record (it lives), and the server's exit removes both, the session being over.
 */
TEST_F(session, a_server_that_outlives_its_session_takes_the_directory_with_it)
{
	char dir[PATH_MAX], rec[32];
	struct dirent *de;
	struct stat st;
	pid_t owner, server;
	int so, ss;
	DIR *d;

	owner = holder_start(&so, true);
	ASSERT_GT(owner, 0);
	ASSERT_EQ(0, holder(so, HOLD_DIR, 0));
	ASSERT_EQ((ssize_t)sizeof(dir), read(so, dir, sizeof(dir)));
	ASSERT_NE(0, dir[0]);
	server = holder_start_in(&ss, false, dir, owner);
	ASSERT_GT(server, 0);
	ASSERT_EQ(0, holder(ss, HOLD_OPEN, 0)); /* it serves the cdev */
	ASSERT_EQ(0, holder_stop(so, owner));
	/* The session is over; the directory stays for the live server's record. */
	snprintf(rec, sizeof(rec), "server.%d.", (int)server);
	d = opendir(dir);
	ASSERT_TRUE(d != NULL);
	while ((de = readdir(d)) && strncmp(de->d_name, rec, strlen(rec)))
		;
	ASSERT_TRUE(de != NULL);
	closedir(d);
	ASSERT_EQ(0, holder_stop(ss, server));
	ASSERT_ERRNO(ENOENT, stat(dir, &st));
}

/*
 * Each fallible step of the session's settle failed once, in turn. Asking: the holder serves
 * vfio0 and an iommufd, which a VMM binds and dies with; our bind either succeeds (the holder
 * settled) or, the step failed, answers as without asking (EINVAL, or the errno of the step
 * when it was the cdev's open or the bind's own), and an unarmed bind then succeeds at once.
 * Answering: we serve them, and the holder's bind asks us.
 */
TEST_F(session, fail_nth_of_the_session_settle)
{
	bool failed = true;
	unsigned long n;
	int v, i, rc;

	if (!uiommu_fail_nth_available())
		SKIP("a build without fault injection");
	for (n = 1; n < 1000 && failed; n++) {
		int fds[2];

		ASSERT_EQ(0, cdev_and_iommufd_of_holder(self->sock, fds));
		ASSERT_EQ(0, vmm_binds_and_dies(fds));
		uiommu_fail_nth_arm(n);
		rc = cdev_bind(0, &v, &i);
		failed = !uiommu_fail_nth_disarm();
		if (rc) {
			ASSERT_TRUE(failed);
			ASSERT_EQ(0, cdev_bind(0, &v, &i));
		}
		cdev_unbind(v, i);
	}
	ASSERT_FALSE(failed);
	for (n = 1, failed = true; n < 1000 && failed; n++) {
		int fds[2];

		ASSERT_EQ(0, cdev_and_iommufd_open(fds));
		ASSERT_EQ(0, vmm_binds_and_dies(fds));
		uiommu_serve_fail_nth_arm(n);
		rc = holder(self->sock, HOLD_BIND, 0);
		failed = !uiommu_serve_fail_nth_disarm();
		/* A failed SETTLE leaves the release to our server thread, a moment later. */
		if (rc) {
			ASSERT_TRUE(failed);
			ASSERT_EQ(EINVAL, rc);
			ASSERT_EQ(0, holder(self->sock, HOLD_BIND, 0));
		}
		ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	}
	ASSERT_FALSE(failed);
}

/* ---- the virtual sysfs's stores against the holder ---------------------------------------- */

#define VFIO_PCI_DRV "/sys/bus/pci/drivers/vfio-pci/"
#define DMA_DRV "/sys/bus/pci/drivers/uiommu-dma/"

/* The size of the session's journal: what a store that went through adds to. */
static off_t journal_size(void)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/journal", getenv("UIOMMU_SYSFS_DIR"));
	return stat(path, &st) ? 0 : st.st_size;
}

/* Nobody holds the session's claim @name (not even this process): its file takes LOCK_EX. */
static bool claim_free(const char *name)
{
	char path[PATH_MAX];
	bool free_;
	int fd;

	snprintf(path, sizeof(path), "%s/claim.%s", getenv("UIOMMU_SYSFS_DIR"), name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	free_ = !flock(fd, LOCK_EX | LOCK_NB);
	close(fd);
	return free_;
}

/* The first line of @path, into @buf ("" when it cannot be read). */
static const char *cat_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = '\0';
		fclose(f);
	}
	return buf;
}

/* Hands @bdf back to vfio-pci after a case unbound it; 0 or -1. */
static int vfio_pci_rebind(const char *bdf)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	if (sysfs_store(path, "vfio-pci") || sysfs_store(VFIO_PCI_DRV "bind", bdf))
		return -1;
	return sysfs_store(path, "\n");
}

/*
 * The store's side of a claim a third process holds for a file a killed one held last: we
 * open vfio0 (its open.BDF is ours) and hand the fd to a VMM, which dies with it; the
 * holder's vfio-pci unbind of the function goes through the first time (EBUSY a moment after
 * the death, before: its refusal now asks the session's servers to settle).
 */
TEST_F(session, a_store_meets_no_claim_a_third_process_held_for_the_dead)
{
	for (int round = 0; round < 30; round++) {
		int sock, v;
		pid_t vmm;

		vmm = holder_start(&sock, false);
		ASSERT_GT(vmm, 0);
		v = cdev_open(0);
		ASSERT_GE(v, 0);
		ASSERT_EQ(0, holder_fds_give(sock, HOLD_RECV, &v, 1));
		ASSERT_EQ(0, close(v));
		if (!round) {
			ASSERT_EQ(0, holder(self->sock, HOLD_UNBIND_OPEN, 0));
			ASSERT_EQ(EBUSY, holder(self->sock, HOLD_UNBIND, 0));
		}
		ASSERT_EQ(0, holder(self->sock, HOLD_UNBIND_OPEN, 0));
		ASSERT_EQ(128 + SIGKILL, holder_kill(sock, vmm));
		ASSERT_EQ(0, holder(self->sock, HOLD_UNBIND, 0));
		ASSERT_EQ(0, vfio_pci_rebind(vfio_bdfs[0]));
	}
}

/*
 * vfio-pci's unbind and the device's remove while the holder has vfio0 open, unbound, bound
 * through the cdev, or as a group's device fd: EBUSY at the write (the kernel's would wait for
 * the holder), nothing journalled, the device still vfio-pci's here. Then both go through.
 */
TEST_F(session, a_store_meets_a_device_open_in_another_process)
{
	static const int ways[] = { HOLD_OPEN, HOLD_BIND, HOLD_GROUP_DEVICE };
	const char *remove = "/sys/bus/pci/devices/0000:03:00.0/remove";
	off_t j;

	for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
		ASSERT_EQ(0, holder(self->sock, ways[w], 0));
		j = journal_size();
		ASSERT_ERRNO(EBUSY, sysfs_store(VFIO_PCI_DRV "unbind", vfio_bdfs[0]));
		ASSERT_ERRNO(EBUSY, sysfs_store(remove, "1"));
		ASSERT_EQ(j, journal_size());
		ASSERT_EQ(0, access("/dev/vfio/devices/vfio0", F_OK));
		ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	}
	ASSERT_TRUE(claim_free("open.0000:03:00.0"));
	j = journal_size();
	ASSERT_EQ(0, sysfs_store(VFIO_PCI_DRV "unbind", vfio_bdfs[0]));
	ASSERT_LT(j, journal_size());
	ASSERT_ERRNO(ENOENT, access("/dev/vfio/devices/vfio0", F_OK));
	ASSERT_EQ(0, vfio_pci_rebind(vfio_bdfs[0]));
	j = journal_size();
	ASSERT_EQ(0, sysfs_store(remove, "1"));
	ASSERT_LT(j, journal_size());
	ASSERT_ERRNO(ENOENT, access("/dev/vfio/devices/vfio0", F_OK));
	ASSERT_EQ(0, sysfs_store("/sys/bus/pci/rescan", "1"));
	ASSERT_EQ(0, access("/dev/vfio/devices/vfio0", F_OK));
}

/*
 * While a context of the holder owns group g (vfio1 bound through its cdev, or its group's
 * device fd), a DMA-API driver's bind of the group's other function answers EBUSY and a type
 * switch EPERM (iommu_device_use_default_domain(), iommu_group_store_type()); nothing is
 * journalled and the type stays. Then both go through.
 */
TEST_F(session, a_store_meets_a_group_owned_in_another_process)
{
	static const int ways[] = { HOLD_BIND, HOLD_GROUP_DEVICE };
	char type[64], was[32], now[32], name[32];
	off_t j;

	snprintf(type, sizeof(type), "/sys/kernel/iommu_groups/%d/type", self->g);
	snprintf(name, sizeof(name), "owner.%d", self->g);
	cat_line(type, was, sizeof(was));
	ASSERT_NE(0, strcmp("", was));
	ASSERT_NE(0, strcmp("identity\n", was));
	ASSERT_EQ(0, setenv("UIOMMU_SYSFS_PRIVILEGED", "1", 1));
	/* vfio2 leaves vfio-pci (nobody has it open): a DMA-API driver may have it. */
	ASSERT_EQ(0, sysfs_store(VFIO_PCI_DRV "unbind", vfio_bdfs[2]));
	for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
		ASSERT_EQ(0, holder(self->sock, ways[w], 1));
		ASSERT_FALSE(claim_free(name));
		j = journal_size();
		ASSERT_ERRNO(EBUSY, sysfs_store(DMA_DRV "bind", vfio_bdfs[2]));
		ASSERT_ERRNO(EPERM, sysfs_store(type, "identity"));
		ASSERT_EQ(j, journal_size());
		ASSERT_STREQ(was, cat_line(type, now, sizeof(now)));
		ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	}
	ASSERT_TRUE(claim_free(name));
	ASSERT_EQ(0, sysfs_store(type, "identity"));
	ASSERT_STREQ("identity\n", cat_line(type, now, sizeof(now)));
	ASSERT_EQ(0, sysfs_store(type, was));
	ASSERT_EQ(0, sysfs_store(DMA_DRV "bind", vfio_bdfs[2]));
	ASSERT_EQ(0, sysfs_store(DMA_DRV "unbind", vfio_bdfs[2]));
	ASSERT_EQ(0, vfio_pci_rebind(vfio_bdfs[2]));
	ASSERT_EQ(0, unsetenv("UIOMMU_SYSFS_PRIVILEGED"));
}

/*
 * Each fallible step of a store that tests the session's claims, and of the opens that take
 * the new ones, failed once in turn: a refused store answers EBUSY or the failure's ENOMEM and
 * journals nothing; one that goes through journals its entry; a failed one leaves no claim of
 * ours behind (the store's test, a cdev file's open.BDF, a device fd's owner.N).
 */
TEST_F(session, fail_nth_of_the_stores_and_opens_leaves_no_claim)
{
	bool failed = true;
	unsigned long n;
	int rc, e, v, g, c;
	off_t j;

	if (!uiommu_fail_nth_available())
		SKIP("a build without fault injection");
	ASSERT_EQ(0, holder(self->sock, HOLD_OPEN, 0));
	for (n = 1; n < 1000 && failed; n++) {
		j = journal_size();
		uiommu_fail_nth_arm(n);
		rc = sysfs_store(VFIO_PCI_DRV "unbind", vfio_bdfs[0]);
		e = errno;
		failed = !uiommu_fail_nth_disarm();
		ASSERT_EQ(-1, rc);
		/* An injected failure to make an fd (the attribute's open) is EMFILE. */
		ASSERT_TRUE(e == EBUSY || (failed && (e == ENOMEM || e == EMFILE)));
		ASSERT_EQ(j, journal_size());
	}
	ASSERT_FALSE(failed);
	ASSERT_EQ(0, holder(self->sock, HOLD_CLOSE, 0));
	for (n = 1, failed = true; n < 1000 && failed; n++) {
		j = journal_size();
		uiommu_fail_nth_arm(n);
		rc = sysfs_store(VFIO_PCI_DRV "unbind", vfio_bdfs[0]);
		e = errno;
		failed = !uiommu_fail_nth_disarm();
		ASSERT_TRUE(claim_free("open.0000:03:00.0"));
		if (rc) {
			ASSERT_TRUE(failed);
			ASSERT_TRUE(e == ENOMEM || e == EMFILE);
			ASSERT_EQ(j, journal_size());
			ASSERT_EQ(0, access("/dev/vfio/devices/vfio0", F_OK));
		} else {
			ASSERT_LT(j, journal_size());
			ASSERT_EQ(0, vfio_pci_rebind(vfio_bdfs[0]));
		}
	}
	ASSERT_FALSE(failed);
	for (n = 1, failed = true; n < 1000 && failed; n++) {
		uiommu_fail_nth_arm(n);
		v = cdev_open(0);
		failed = !uiommu_fail_nth_disarm();
		ASSERT_EQ(v < 0, claim_free("open.0000:03:00.0"));
		if (v >= 0)
			ASSERT_EQ(0, close(v));
		else
			ASSERT_TRUE(failed);
		ASSERT_TRUE(claim_free("open.0000:03:00.0"));
	}
	ASSERT_FALSE(failed);
	for (n = 1, failed = true; n < 1000 && failed; n++) {
		char owner[32];

		snprintf(owner, sizeof(owner), "owner.%d", self->a);
		g = group_open(self->a);
		c = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		ASSERT_GE(g, 0);
		ASSERT_GE(c, 0);
		ASSERT_EQ(0, ioctl(g, VFIO_GROUP_SET_CONTAINER, &c));
		uiommu_fail_nth_arm(n);
		v = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, vfio_bdfs[0]);
		failed = !uiommu_fail_nth_disarm();
		ASSERT_EQ(v < 0, claim_free("open.0000:03:00.0"));
		ASSERT_EQ(v < 0, claim_free(owner));
		if (v >= 0)
			ASSERT_EQ(0, close(v));
		else
			ASSERT_TRUE(failed);
		ASSERT_EQ(0, close(g));
		ASSERT_EQ(0, close(c));
		ASSERT_TRUE(claim_free("open.0000:03:00.0"));
		ASSERT_TRUE(claim_free(owner));
	}
	ASSERT_FALSE(failed);
}

int main(int argc, char **argv)
{
	char path[] = "/tmp/uiommu-session-topo-XXXXXX";
	int rc;

	if (argc > 3 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "holder"))
		return child_holder(argc, argv);
	/* Every process of the run, the holders too, boots this machine. */
	if (topology_file_env(path, topology))
		return 1;
	rc = __h_run_all(argc, argv);
	unlink(path);
	return rc;
}
