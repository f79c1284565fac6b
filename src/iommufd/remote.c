// SPDX-License-Identifier: MIT
/*
 * One context across processes: the wire between a process that serves its files and the
 * processes that hold fds of them (docs/processes.md).
 *
 * Where a context lives. The process that created a file (an open of /dev/iommu, a sub-fd, a
 * VFIO file) serves it for as long as any process holds an fd of it. Its calls are made
 * in-process as before; another process's calls on the same file travel here.
 *
 * What an fd carries. Every file's fd is one end of a socketpair (file.c): the other end, the
 * peer, stays with the server, which wrote a header into it at creation (struct
 * wire_fd_header: the server's socket name and pid, the file's token and a 128-bit random
 * secret). Any holder of the fd can peek at it (recv(MSG_PEEK)); nobody else can: possession of
 * the fd is the credential, as in the kernel. An event fd's peer carries no header (its
 * readiness is a byte in that socket, file.c): it is bound to an abstract name that says the
 * server and the token, and a holder that shows the server its fd (WIRE_CLAIM: the server
 * takes a copy with pidfd_getfd() and compares the socket) learns the secret. A holder of an
 * event fd also writes a note into it (iommufd_event_note(), after adopting it and in a fork
 * child), which the server thread reads from the peer with the sender's pid: that is where the
 * server reaches the socket to take its readiness byte out when no reader does (file.c).
 * The peer is also how the server learns of the
 * last close anywhere: when every fd of the socket is closed, in every process, the kernel
 * releases it and the peer sees POLLHUP. The server checks at each of its own closes
 * (synchronous, as the kernel's release is) and watches the peers with epoll for the closes of
 * others (the server thread).
 *
 * How a holder reaches it. A process meets a file it does not serve in three ways: a forked
 * child finds its parent's files in its copy of the fd table (each names its server); an fd
 * that arrives by SCM_RIGHTS, pidfd_getfd() or exec is adopted (iommufd_remote_adopt(): the
 * preload layer asks, the header is peeked). Its calls then go over a connection to the
 * server's listening socket, an abstract AF_UNIX name of 128 random bits: the kernel checks no
 * permission on abstract names, so each side checks the other's user (SO_PEERCRED), and every
 * request carries the file's token and secret (a name alone opens nothing). Connections are
 * per process and per server, pooled: a thread takes an idle one or makes one, so concurrent
 * calls of one process do not wait for each other.
 *
 * The caller's memory. The first message of a connection (HELLO) hands the server a pidfd of
 * the client and the client's own /proc/self/mem and /proc/self/maps; the server keeps one
 * uiommu_mm per client process (mm/mm_remote.c) and runs each call with it as the caller's
 * mm, so a MAP pins the client's pages, as the kernel's current->mm.
 *
 * Protocol. Fixed-size messages (struct wire_req, struct wire_rep), one reply per request, on
 * a SOCK_STREAM connection read with MSG_WAITALL. A request the server cannot parse, or whose
 * secret does not match, ends that connection (or answers EBADF); nothing else is touched.
 *
 * Mappings. MMAP hands over a vIOMMU region's memfd and makes a hold for the calling client
 * (mmap.c: the owner's users reference, the context's file, an ID and a secret), which answers
 * EBUSY to the vIOMMU's destroy as the kernel's VMA does. The client records its mapping with
 * the hold's name; its munmap/mremap of the last page sends MUNMAP. A client's holds all go
 * when its last connection closes (it died or exec'd: its connections are close-on-exec) or
 * when it is forgotten.
 *
 * The dead let go before anyone can see them dead. The kernel's exit closes a process's files
 * and drops its VMAs before its parent's waitpid() reports it (an exec, before the new image
 * runs), and a killed process's ioctl has returned by then. Here its connections' threads see
 * the hang-up a moment later, and a call of its may still be running. So before an answer
 * that what it left could change (a destroy's EBUSY, VFIO's exclusions: iommufd_remote_settle()),
 * the serving side looks: one poll() of every connected client's pidfd (readable once it exited)
 * and connections (all hung up: it exec'd, which a pidfd does not show). A client found gone is
 * marked so (no call of its starts, no hold is made for it from then on), its holds go, and the
 * calls it had running (a connection's end counts as one) are waited for. A fork's holds
 * for its child and the files whose last fd was another process's go the same way (mmap.c,
 * file.c). Nothing is looked at, and no system call made, where no other process is served.
 * A VFIO claim of the session (vfio/claim.c) that still refuses after that may be held by a
 * third, live process for a file whose last fd the dead one had: in a session each serving
 * process records its socket's name in the session directory (machine/session.c), and the
 * refused process asks each of the others to settle (SETTLE, the first message of a connection
 * that makes no client: iommufd_remote_settle_session()), then asks again. A server runs one
 * settle at a time for them, shared by the requests that came while another ran, so a flood
 * costs it two settles. A settle waits for the calls of gone clients, but not for one that is
 * asking (a call served for another process asks too): no settle waits for one that waits
 * for it.
 *
 * A forked child asks for its own copy of each hold (MMAP_FORK, the secret showing it had the
 * parent's) before fork() returns in the parent (mmap.c's fork handlers).
 * A forked child of ours takes over, with the same MMAP_FORK, the holds our fork made for its
 * copies of our own mappings (the fork's socketpair, watched by the server thread, tells when
 * the ones it did not take go).
 *
 * Threads. The server thread (one per serving process, started with its first file) accepts
 * connections and watches the peers; each connection gets a detached thread of its own (at
 * most REMOTE_CONNS_MAX), with every signal blocked. A client that dies mid-call leaves its
 * thread to finish the call and find the connection gone. A server that dies closes every
 * connection: its clients' calls answer EIO, new connections ENODEV; nothing waits forever.
 *
 * Fork. The child is a new process: it serves nothing of its parent's (its copies of the
 * parent's files name the parent as their server), so the child handler forgets the server
 * state (listening socket, epoll set, peers, export table in file.c, the holds it made for its
 * parent's clients; the session directory's record names the parent) and the connection
 * pools, and draws a new cookie; the child's own files
 * get a new server at its first open. Last, it asks the servers of its mappings for its holds,
 * which the parent's handler waits for, then takes over at its parent's server the holds made
 * for its copies of the parent's own mappings (which nobody waits for: the parent serves them).
 *
 * Exec (QEMU's CPR). A serving process that execs would take its server with it; its fds live
 * on in the new image and elsewhere. uiommu_exec_handover() (the preload layer's execve
 * wrappers call it) forks a server first, which inherits the whole library state (contexts,
 * machine, the pinned memory as it was: what the kernel's pins give after exec) and the
 * listening socket. The socket keeps its abstract name, and its SO_PEERCRED pid is that of
 * its listen() caller, the exec'ing process, whose pid the new image keeps: the headers in
 * the fds stay true, and the new image reaches the server as any adopter does (and the
 * server's record in the session directory stays true too; the server removes it at its end,
 * and a server the new image starts is another name). The server is
 * a grandchild (the middle process exits at once), so the new image gets no child of ours.
 * The copy closes every fd but the library's own (lib/fdkeep.c: each is registered where it is
 * made), so that none of the program's pipes or sockets stays open for as long as it serves.
 * It serves only once the exec succeeded: a close-on-exec pipe reaches EOF at exec, while a
 * failed execve writes a byte down it, the server exits unused and the process goes on
 * serving. serve_gate stops this process's serving (the server thread, every call of
 * another process) from before the fork until the exec is over, so that the copy is
 * consistent and nothing is served by an image about to go. The server exits with the last
 * file it serves.
 *
 * Fault injection. Each step of serving goes through the should-fail hook: accepting a
 * connection and starting its thread, the HELLO and the client it makes, each request (before
 * it runs, and the handler's own points), and the fds a reply passes back. A failure there
 * gives the client a clean errno (ENOMEM in the reply; ENODEV for a connection refused; EIO for
 * a reply that never left) and touches nothing else. The countdown is per thread, but serving
 * one client's calls runs on two (the server thread accepts, the connection's thread does the
 * rest), so a sweep arms the serving side as a whole (uiommu_serve_fail_nth_arm()): each unit of
 * serving work (an accept, a HELLO, a request, a SETTLE) takes the countdown into its thread and hands
 * back what is left before it answers, so the units count in the order the client's calls make
 * them.
 *
 * Locking: serve_gate (read: one served call, one batch of the server thread's events; write:
 * a hand-over) comes before every other lock. servers_lock protects the list of known
 * servers (a leaf); each server's pool_lock protects its idle connections (a leaf);
 * clients_lock protects the list of client mms (a leaf but for conns_lock and mmap.c's
 * mmap_lock, taken under it to poll the connections and to unlink a client's holds); conns_lock
 * the accepted connections' fds and owners (a leaf). None is held across a system call that
 * waits (a settle's poll() has a zero timeout; its wait for a gone client's calls lets
 * clients_lock go). settle_lock orders the SETTLEs served (a leaf, never held across a
 * settle). The fork handlers take remote_direct.c's direct_lock before all of them, settle_lock
 * after conns_lock, and mmap_lock last.
 *
 * The direct path (remote_direct.c): a client's ACCESS_RW of the server's own memory is copied
 * by the client itself through a translation it asked for once (WIRE_DIRECT, WIRE_TRANSLATE);
 * the connection's thread answers those like any request.
 *
 * A VFIO cdev of a client bound to a context of ours (WIRE_VFIO_BIND): the device goes where
 * the context is. We open the same node in our machine and bind the new file, through the
 * callback VFIO registered with file.c (we lie below it), and hand the file back as any call's
 * new fd; the client's cdev file makes its calls on it from then on (device_cdev.c). A served
 * call may make that request too (the reverse bind: the caller's own context): its client is
 * marked asking meanwhile, as for a SETTLE, since the bind there may ask us to settle.
 * A group node whose container is a context of ours (WIRE_VFIO_GROUP) goes the same way: we
 * open the node in our machine, sharing the asker's claim of it (a copy of its handle, taken
 * with pidfd_getfd(): no moment free for a third process), and set the container.
 *
 * Redirects. Such a cdev file's server must not make another process's call on it with its
 * own memory: to a request with WIRE_REQ_REDIRECT it answers WIRE_RC_REDIRECT with a copy of
 * the delegate's fd (file.c, ops->delegate), only ever the delegate of the file the request
 * named. The caller keeps the fd per file (file.c) and makes the call, and its later ones on
 * that file, at the target: in-process when it serves the target itself. An IOCTL, an MMAP
 * (the device's BARs are where the target is), a READ or a WRITE may be redirected; one at the
 * file's position reads that position here and moves it by what the call did at the target
 * (WIRE_POS), since the position is the open file's. The call at the target carries no flag,
 * so a redirect is one hop; a redirect a request did not ask for is EIO.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "lib/thread.h"
#include "machine/session.h"
#include "mm/locked_vm.h"
#include "mm/mm.h"

#define REMOTE_CONNS_MAX 64

struct wire_conn {
	struct wire_conn *next; /* in the server's idle list; pool_lock */
	int fd;
	bool fresh;             /* made for this call, not taken from the idle list */
	bool lifeless;          /* made in a fork child's handler: its HELLO had no life word */
	struct direct_client *direct; /* its direct path (remote_direct.c), or NULL */
};

/*
 * Set while this thread runs a forked child's fork handler (remote_atfork_child()): the
 * allocator is not ours to call there (uiommu_free_after_fork()), nor can a thread be started
 * (our life word's), and the child's first connections are made with the spares its parent
 * made before the fork (remote_atfork_prepare()).
 */
static __thread bool remote_fork_child;

static void wire_conn_free(struct wire_conn *conn)
{
	sys_close(conn->fd);
	iommufd_direct_client_free(conn->direct, remote_fork_child);
	if (remote_fork_child)
		uiommu_free_after_fork(conn);
	else
		uiommu_free(conn);
}

struct iommufd_server {
	struct iommufd_server *next; /* in servers; servers_lock */
	char name[WIRE_NAME_LEN];    /* abstract socket name; constant */
	pid_t pid;                   /* constant */
	struct uiommu_mutex pool_lock; /* protects idle and spare; a leaf */
	struct wire_conn *idle;
	struct wire_conn *spare; /* made before a fork for the child's first connection */
};

/* Protects additions to servers, which is append-only (readers walk it without the lock). */
UIOMMU_MUTEX_DEFINE(servers_lock);
static _Atomic(struct iommufd_server *) servers;

/* This process's own server; NULL until its first file (and again in a forked child). */
_Atomic(struct iommufd_server *) iommufd_self_server;
static int listen_fd = -1, epoll_fd = -1; /* the server thread's; set before it starts */
static atomic_int conns_live;
/*
 * The accepted connections' fds, for a hand-over's server to close (their threads are the
 * exec'ing image's), and the client each serves from the moment its HELLO found it (in
 * remote_client_get()), for remote_clients_settle() to poll. Protects conn_fds and conn_owner, and the fds themselves:
 * a connection's fd is closed under it, so that a poll under it never meets a number reused.
 * A leaf, after clients_lock.
 */
UIOMMU_MUTEX_DEFINE(conns_lock);
static int conn_fds[REMOTE_CONNS_MAX];
static struct remote_client *conn_owner[REMOTE_CONNS_MAX];
/*
 * Read: a served call or a batch of server events; write: a hand-over. Before every lock.
 * A plain rwlock, not lockdep's: the hand-over holds it across fork(), and the child, whose
 * thread has a new tid, cannot unlock it (glibc tells a writer by its tid): it initialises
 * its copy again.
 */
static pthread_rwlock_t serve_gate = PTHREAD_RWLOCK_INITIALIZER;
/*
 * Set by the thread that hands over, for the fork handlers (which run in the forking thread):
 * its child keeps the server. Per thread: another thread's fork meanwhile is an ordinary one.
 */
static __thread bool remote_handover;
static uint64_t client_cookie; /* names this process's mm at a server; new in each child */

/* ---- plumbing -------------------------------------------------------------------------- */

static void remote_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("getrandom");
		p += n;
		len -= (size_t)n;
	}
}

static socklen_t remote_addr(struct sockaddr_un *sun, const char *name, size_t max)
{
	size_t len = strnlen(name, max);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path + 1, name, len); /* abstract: a leading NUL */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

/* Sends all of @buf, with @fds attached to the first byte when @nfds. 0 or -errno. */
static int wire_send(int fd, const void *buf, size_t len, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds) {
		struct cmsghdr *c;

		memset(cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	while (iov.iov_len) {
		n = sys_sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= (size_t)n;
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
	}
	return 0;
}

/*
 * The sender of one received part, from its SCM_CREDENTIALS (the kernel's word: a process can
 * name no pid but its own), into *@sender: the first part's pid; -1 when a part has none or
 * another one.
 */
static void wire_sender_note(const struct msghdr *msg, pid_t *sender)
{
	pid_t pid = -1;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		struct ucred cred;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS ||
		    c->cmsg_len != CMSG_LEN(sizeof(cred)))
			continue;
		memcpy(&cred, CMSG_DATA(c), sizeof(cred));
		pid = cred.pid > 0 ? cred.pid : -1;
	}
	if (!*sender)
		*sender = pid;
	else if (*sender != pid)
		*sender = -1;
}

/*
 * Receives exactly @len bytes; fds that came with them (at most @maxfds) in @fds, the count
 * in *@nfds (extra ones closed); with @sender (SO_PASSCRED set), the sending process's pid
 * (wire_sender_note()). 0, -EIO at EOF or short read, or -errno.
 */
static int wire_recv_from(int fd, void *buf, size_t len, int *fds, int maxfds, int *nfds,
			  pid_t *sender)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds)
		*nfds = 0;
	if (sender)
		*sender = 0;
	while (iov.iov_len) {
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		n = sys_recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0 && sender)
			wire_sender_note(&msg, sender);
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n > 0 && c; c = CMSG_NXTHDR(&msg, c)) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int got[8];

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || k > 8)
				continue;
			memcpy(got, CMSG_DATA(c), sizeof(int) * (size_t)k);
			for (int i = 0; i < k; i++) {
				if (nfds && *nfds < maxfds)
					fds[(*nfds)++] = got[i];
				else
					sys_close(got[i]);
			}
		}
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= (size_t)n;
	}
	return 0;
}

static int wire_recv(int fd, void *buf, size_t len, int *fds, int maxfds, int *nfds)
{
	return wire_recv_from(fd, buf, len, fds, maxfds, nfds, NULL);
}

/* The peer's credentials: it must be our user; *@pid is its pid. */
static int wire_peer_check(int fd, pid_t *pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (sys_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.uid != geteuid())
		return -EPERM;
	*pid = cred.pid;
	return 0;
}

static void remote_block_signals(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

static void remote_atfork_register(void);
static pthread_once_t remote_atfork_once = PTHREAD_ONCE_INIT;

/* The serving side's fail-nth countdown between two units of serving work (see the essay). */
static atomic_ulong serve_fail_nth;
static __thread bool serve_unit_armed;

static void remote_unit_begin(void)
{
	unsigned long nth = atomic_exchange(&serve_fail_nth, 0);

	serve_unit_armed = nth != 0;
	if (nth)
		uiommu_fail_nth_arm(nth);
}

/* Before the client can see the unit's outcome: the next unit may be its next call's. */
static void remote_unit_end(void)
{
	unsigned long left;

	if (!serve_unit_armed)
		return;
	serve_unit_armed = false;
	left = uiommu_fail_nth_disarm();
	if (left)
		atomic_store(&serve_fail_nth, left);
}

UIOMMU_EXPORT void uiommu_serve_fail_nth_arm(unsigned long nth)
{
	atomic_store(&serve_fail_nth, nth);
}

/* A test's function at the serving side's named points (uiommu_serve_point_hook()). */
static void (*_Atomic serve_point_fn)(int point);

UIOMMU_EXPORT void uiommu_serve_point_hook(void (*fn)(int point))
{
	atomic_store(&serve_point_fn, fn);
}

void iommufd_serve_point(int point)
{
#ifdef UIOMMU_FAULT_INJECT
	void (*fn)(int point) = atomic_load(&serve_point_fn);

	if (unlikely(fn))
		fn(point);
#else
	(void)point;
#endif
}

UIOMMU_EXPORT unsigned long uiommu_serve_fail_nth_disarm(void)
{
	return atomic_exchange(&serve_fail_nth, 0);
}

/* ---- the server ------------------------------------------------------------------------ */

/*
 * One client process's mm, shared by its connections. It stays listed while its pins hold the
 * mm after the last connection closed, so that the client's next connection gets the same mm
 * back: its FORGET must reach the window addresses of the pins it made before.
 */
struct remote_client {
	struct remote_client *next; /* in clients; clients_lock */
	pid_t pid;
	uint64_t cookie;
	unsigned int conns;         /* connections using it; clients_lock */
	struct uiommu_mm *mm;       /* one reference, the list's */
	/*
	 * Its process is gone, as remote_clients_settle() found: exited, or every connection
	 * hung up (an exec closed them). Set once, under clients_lock; from then on no call of
	 * its starts and no hold is made for it (iommufd_remote_holder_gone()).
	 */
	atomic_bool gone;
	atomic_uint calls;          /* its calls running now (remote_client_call_begin()) */
	/*
	 * Of those, the ones asking the session's other servers to settle
	 * (iommufd_remote_settle_session()), which no settle waits for; clients_lock.
	 */
	unsigned int asking;
};

/*
 * Protects clients and each one's conns, and is the lock of clients_calls_done (a gone
 * client's last call ended); a leaf but for conns_lock and mmap.c's mmap_lock.
 */
UIOMMU_MUTEX_DEFINE(clients_lock);
static struct uiommu_cond clients_calls_done = { .c = PTHREAD_COND_INITIALIZER };
static struct remote_client *clients;
/* The client whose call this thread runs (remote_conn_main()), or NULL. */
static __thread struct remote_client *remote_serving;

static void remote_client_call_end(struct remote_client *c);
static void remote_conn_owner_set(int fd, struct remote_client *client);

/*
 * Unlinks the clients nothing uses any more (no connection, no call, no pin) onto *@gone
 * (clients_lock).
 */
static void remote_clients_prune(struct remote_client **gone)
{
	struct remote_client **pos = &clients, *c;

	lockdep_assert_held(&clients_lock);
	while ((c = *pos)) {
		if (c->conns || atomic_load(&c->calls) || atomic_load(&c->mm->refs) > 1) {
			pos = &c->next;
			continue;
		}
		*pos = c->next;
		c->next = *gone;
		*gone = c;
	}
}

static void remote_clients_free(struct remote_client *gone)
{
	while (gone) {
		struct remote_client *c = gone;

		gone = c->next;
		/* Unlinked: no call of its can make a hold any more. */
		iommufd_mmap_holds_put(iommufd_mmap_holds_take(c));
		uiommu_mm_put(c->mm);
		uiommu_free(c);
	}
}

/*
 * The client of (@pid, @cookie), made with @fds (pidfd, mem, maps and, when @nfds is 4, its
 * life word's memfd: taken) if it is new, and connection @conn_fd its own from now on. One
 * marked gone is not reused: a settle that met every connection of a live process hung up (it
 * closed its only one, broken, and connects again) took it for exec'd, and its calls would all
 * be refused for as long as its pins keep it listed; the process gets a new one.
 *
 * Counted and owned in one step under clients_lock, which a settle's look takes: no settle
 * sees the client with its new connection uncounted among those it polls (it used to be
 * owned just after, and a settle in between met only the broken one, all hung up, and took
 * a live client for exec'd).
 */
static struct remote_client *remote_client_get(pid_t pid, uint64_t cookie, int *fds, int nfds,
					       int conn_fd)
{
	struct remote_client *c, *gone = NULL;
	struct uiommu_mm *mm;

	uiommu_mutex_lock(&clients_lock);
	remote_clients_prune(&gone);
	uiommu_mutex_unlock(&clients_lock);
	remote_clients_free(gone);
	uiommu_mutex_lock(&clients_lock);
	for (c = clients; c; c = c->next) {
		if (c->pid == pid && c->cookie == cookie && !atomic_load(&c->gone)) {
			c->conns++;
			remote_conn_owner_set(conn_fd, c);
			uiommu_mutex_unlock(&clients_lock);
			for (int i = 0; i < 3; i++)
				sys_close(fds[i]);
			/* A client's first HELLO, from its fork handler, had no word to bring. */
			if (nfds == 4)
				uiommu_mm_remote_life_late(c->mm, fds[3]);
			return c;
		}
	}
	c = uiommu_zalloc(sizeof(*c));
	if (!c) {
		uiommu_mutex_unlock(&clients_lock);
		for (int i = 0; i < nfds; i++)
			sys_close(fds[i]);
		return ERR_PTR(-ENOMEM);
	}
	mm = uiommu_mm_remote_new(pid, fds[0], fds[1], fds[2], nfds == 4 ? fds[3] : -1);
	if (IS_ERR(mm)) {
		uiommu_mutex_unlock(&clients_lock);
		uiommu_free(c);
		return ERR_CAST(mm);
	}
	c->pid = pid;
	c->cookie = cookie;
	c->conns = 1;
	c->mm = mm;
	c->next = clients;
	clients = c;
	remote_conn_owner_set(conn_fd, c);
	uiommu_mutex_unlock(&clients_lock);
	return c;
}

/* The end of @c's connection @fd, whose thread calls this before it closes @fd. */
static void remote_client_put(struct remote_client *c, int fd)
{
	struct iommufd_mmap_hold *holds = NULL;
	struct remote_client *gone = NULL;

	/*
	 * Counted as a call until its holds are dropped: a settle that finds @c gone meanwhile
	 * (this connection still hung up and noted) waits for that (remote_clients_settle()).
	 */
	atomic_fetch_add(&c->calls, 1);
	uiommu_mutex_lock(&clients_lock);
	/*
	 * Without a connection it maps nothing of ours any more (it died or exec'd): its holds
	 * go, as its VMAs did.
	 */
	if (!--c->conns)
		holds = iommufd_mmap_holds_take(c);
	uiommu_mutex_unlock(&clients_lock);
	iommufd_mmap_holds_put(holds);
	remote_conn_owner_set(fd, NULL);
	remote_client_call_end(c);
	/* Without connections and pins, it goes (and any other such one). */
	uiommu_mutex_lock(&clients_lock);
	remote_clients_prune(&gone);
	uiommu_mutex_unlock(&clients_lock);
	remote_clients_free(gone);
}

/*
 * A call of @c's about to run: counted, unless @c is gone (false: it must not run). Paired with
 * remote_clients_settle()'s mark, in the other order: either the call sees the mark, or the
 * settling thread sees the call and waits for it.
 */
static bool remote_client_call_begin(struct remote_client *c)
{
	atomic_fetch_add(&c->calls, 1);
	if (!atomic_load(&c->gone))
		return true;
	remote_client_call_end(c);
	return false;
}

/*
 * The last call's end is counted under clients_lock: once @c has neither call nor connection
 * (the end of its last connection, remote_client_put()), another thread's prune may free it,
 * so @c is not looked at again after the count reaches 0 outside the lock.
 */
static void remote_client_call_end(struct remote_client *c)
{
	unsigned int n = atomic_load(&c->calls);

	while (n > 1)
		if (atomic_compare_exchange_weak(&c->calls, &n, n - 1))
			return;
	uiommu_mutex_lock(&clients_lock);
	if (atomic_fetch_sub(&c->calls, 1) == 1 && atomic_load(&c->gone))
		uiommu_cond_broadcast(&clients_calls_done);
	uiommu_mutex_unlock(&clients_lock);
}

/**
 * iommufd_remote_holder_gone() - is @holder (a client, mmap.c's holds' tag) gone? A hold made
 * for it now would outlive it: mmap.c asks under mmap_lock, after which a settle's unlink of
 * its holds (under the same lock, after the mark) cannot miss a hold it made.
 */
bool iommufd_remote_holder_gone(const void *holder)
{
	return atomic_load(&((const struct remote_client *)holder)->gone);
}

/*
 * Does a gone client other than our own caller have a call running that a settle waits for?
 * Not one that asks the session's other servers to settle: a settle there may be waiting for
 * a call of ours, which would close the circle; it holds nothing a settle here needs but the
 * files it names, and those go when it returns. (clients_lock)
 */
static bool remote_clients_gone_calling(void)
{
	lockdep_assert_held(&clients_lock);
	for (struct remote_client *c = clients; c; c = c->next)
		if (c != remote_serving && atomic_load(&c->gone) && atomic_load(&c->calls) > c->asking)
			return true;
	return false;
}

/* The call of @c this thread runs asks other servers to settle (@asking), or is done asking. */
static void remote_client_asking(struct remote_client *c, bool asking)
{
	uiommu_mutex_lock(&clients_lock);
	if (asking) {
		c->asking++;
		/* A settle waiting for this call waits no more. */
		uiommu_cond_broadcast(&clients_calls_done);
	} else {
		c->asking--;
	}
	uiommu_mutex_unlock(&clients_lock);
}

/*
 * Which clients are gone, from one poll() (under both locks: the fds stay the ones they were)
 * of each connected client's pidfd (POLLIN: it exited; from its zombie on) and of its
 * connections (all hung up: its exec closed them, which no pidfd shows). Those found are
 * marked, their holds unlinked onto @dead (at most REMOTE_CONNS_MAX lists). Return: how many.
 */
static unsigned int remote_clients_mark_gone(struct iommufd_mmap_hold **dead)
{
	struct pollfd pfd[2 * REMOTE_CONNS_MAX];
	struct remote_client *who[2 * REMOTE_CONNS_MAX];
	unsigned int n = 0, nr_clients, nr_dead = 0;

	lockdep_assert_held(&clients_lock);
	uiommu_mutex_lock(&conns_lock);
	/*
	 * A client with no connection and no call (its last connection's end counts as one:
	 * remote_client_put()) has no hold.
	 */
	for (struct remote_client *c = clients; c && n < REMOTE_CONNS_MAX; c = c->next) {
		if ((!c->conns && !atomic_load(&c->calls)) || atomic_load(&c->gone))
			continue;
		pfd[n] = (struct pollfd){ .fd = uiommu_mm_remote_pidfd(c->mm), .events = POLLIN };
		who[n++] = c;
	}
	nr_clients = n;
	for (unsigned int i = 0; i < REMOTE_CONNS_MAX && nr_clients; i++) {
		if (!conn_owner[i] || atomic_load(&conn_owner[i]->gone))
			continue;
		pfd[n] = (struct pollfd){ .fd = conn_fds[i] - 1, .events = POLLRDHUP };
		who[n++] = conn_owner[i];
	}
	/* A poll refused leaves everyone as they were: the connections' ends drop the holds. */
	if (!nr_clients || uiommu_should_fail() || sys_poll_many_now(pfd, n) < 0)
		goto out_unlock;
	for (unsigned int i = 0; i < nr_clients; i++) {
		struct remote_client *c = who[i];
		unsigned int conns = 0, hung = 0;

		for (unsigned int j = nr_clients; j < n; j++) {
			if (who[j] != c)
				continue;
			conns++;
			hung += !!(pfd[j].revents & (POLLHUP | POLLRDHUP));
		}
		if (!(pfd[i].revents & POLLIN) && (!conns || hung < conns))
			continue;
		atomic_store(&c->gone, true);
		dead[nr_dead++] = iommufd_mmap_holds_take(c);
	}
out_unlock:
	uiommu_mutex_unlock(&conns_lock);
	return nr_dead;
}

/*
 * The clients whose process is gone let go now, as the kernel's exit (or exec) has let go of
 * everything by the time anyone can tell: their holds go, and the calls they had running are
 * waited for (bounded by those calls: a gone client starts none; the end of a connection,
 * which drops the holds, counts as one), unless this thread runs one of them itself. A call of
 * a client found gone by another settle counts too. No two waits can wait for each other: a
 * thread waits only for clients found gone after its own client's last look found it alive.
 */
static void remote_clients_settle(void)
{
	struct iommufd_mmap_hold *dead[REMOTE_CONNS_MAX];
	unsigned int nr_dead = 0;

	uiommu_mutex_lock(&clients_lock);
	if (clients)
		nr_dead = remote_clients_mark_gone(dead);
	if (!remote_serving || !atomic_load(&remote_serving->gone))
		while (remote_clients_gone_calling())
			uiommu_cond_wait(&clients_calls_done, &clients_lock);
	uiommu_mutex_unlock(&clients_lock);
	for (unsigned int i = 0; i < nr_dead; i++)
		iommufd_mmap_holds_put(dead[i]);
}

/**
 * iommufd_remote_settle() - before an answer that what another process left behind would make
 * (a destroy's EBUSY; a VFIO bind or open refused because of another file): what the kernel's exit
 * or exec would have released by the time anyone can see the process gone goes now, synchronously:
 * the holds and the running calls of the clients that are gone (remote_clients_settle()), the
 * holds a fork of ours made for a child that is gone (mmap.c) and the files whose last fd anywhere
 * was closed (file.c). Each is dropped once, whoever sees the end first (the connections' threads,
 * the server thread or this), and one under way elsewhere is done when this returns. Costs no
 * system call while nothing of ours reaches another process (no client, no fork waiting, no file
 * held only elsewhere).
 */
void iommufd_remote_settle(void)
{
	remote_clients_settle();
	iommufd_mmap_forks_settle();
	iommufd_files_settle();
}

/*
 * Another process's SETTLE (remote.h) runs one settle of ours at a time: a request waits for a
 * settle begun after it came, and the requests that come while one runs share the next. So a
 * flood of them costs one settle running and one to come, whatever their number. settle_lock
 * protects settle_begun, settle_done and settle_running and is the lock of settle_ended; a
 * leaf, never held across the settle.
 */
UIOMMU_MUTEX_DEFINE(settle_lock);
static struct uiommu_cond settle_ended = { .c = PTHREAD_COND_INITIALIZER };
static uint64_t settle_begun, settle_done;
static bool settle_running;

static void remote_settle_shared(void)
{
	uint64_t mine;

	uiommu_mutex_lock(&settle_lock);
	mine = settle_begun + 1;
	while (settle_done < mine) {
		if (settle_running) {
			uiommu_cond_wait(&settle_ended, &settle_lock);
			continue;
		}
		settle_running = true;
		settle_begun++;
		uiommu_mutex_unlock(&settle_lock);
		iommufd_remote_settle();
		uiommu_mutex_lock(&settle_lock);
		settle_running = false;
		settle_done = settle_begun;
		uiommu_cond_broadcast(&settle_ended);
	}
	uiommu_mutex_unlock(&settle_lock);
}

/*
 * In a fork child, under settle_lock (the fork handlers take it): a settle another thread of
 * the parent ran, and the requests that waited for it, are none of ours.
 */
static void remote_settle_shared_forget(void)
{
	settle_begun = settle_done = 0;
	settle_running = false;
	uiommu_cond_init(&settle_ended);
}

/*
 * Answers a SETTLE on @fd once a settle begun after it is done. It waits only for the calls
 * of our clients that are gone and are not asking anyone to settle
 * (iommufd_remote_settle_session()), so never for a call that waits for a SETTLE, its
 * asker's or another.
 */
static void remote_settle_serve(int fd)
{
	struct wire_rep rep;

	memset(&rep, 0, sizeof(rep));
	remote_unit_begin();
	if (uiommu_should_fail()) {
		rep.rc = -ENOMEM; /* the asker answers as it would have without asking */
	} else {
		pthread_rwlock_rdlock(&serve_gate);
		remote_settle_shared();
		pthread_rwlock_unlock(&serve_gate);
	}
	remote_unit_end();
	wire_send(fd, &rep, sizeof(rep), NULL, 0);
}

/*
 * The virtual sysfs's stores that a claim refuses (machine/sysfs.c) settle everywhere: here
 * (the claim may be this process's, for a file a dead one held last) and in the session's
 * other servers. Registered at load: the writer may never have touched a file of ours.
 */
static void remote_settle_everywhere(void)
{
	iommufd_remote_settle();
	iommufd_remote_settle_session();
}

__attribute__((constructor)) static void remote_settle_everywhere_register(void)
{
	session_settle_register(remote_settle_everywhere);
}

/* The hold @h as a reply's val[0..2]. */
static void remote_hold_reply(struct wire_rep *rep, const struct wire_hold *h)
{
	rep->val[0] = h->id;
	memcpy(&rep->val[1], h->secret, WIRE_SECRET_LEN);
}

/* Runs one request; the fds a call made for the client are in @new_fds (*@nr_new). */
static void remote_serve_one(struct remote_client *client, const struct wire_req *req,
			     struct wire_rep *rep, int *new_fds, unsigned int *nr_new,
			     struct direct_serve **ds, int conn_fd)
{
	struct uiommu_mm *mm = client->mm;
	struct wire_hold hold, from;
	struct iommufd_node node;
	bool redirect = false;
	uint64_t v[4];
	int rc;

	memset(rep, 0, sizeof(*rep));
	*nr_new = 0;
	switch (req->op) {
	case WIRE_IOCTL:
		redirect = req->flags & WIRE_REQ_REDIRECT;
		rep->rc = iommufd_file_serve_ioctl(req->token, req->secret, mm,
						   (unsigned int)req->arg[0], req->arg[1], &redirect,
						   new_fds, nr_new);
		break;
	case WIRE_READ:
	case WIRE_WRITE: {
		unsigned int owed;

		redirect = req->flags & WIRE_REQ_REDIRECT;
		rep->rc = iommufd_file_serve_rw(req->token, req->secret, mm, req->arg[0],
						req->arg[1], (int64_t)req->arg[2],
						req->op == WIRE_WRITE, &owed, &redirect, new_fds,
						nr_new);
		rep->val[0] = owed;
		break;
	}
	case WIRE_MMAP:
		redirect = req->flags & WIRE_REQ_REDIRECT;
		rc = iommufd_file_serve_mmap(req->token, req->secret, (size_t)req->arg[0],
					     (int)req->arg[1], (int)req->arg[2], req->arg[3],
					     client, &hold, &redirect, new_fds, nr_new);
		rep->rc = rc < 0 ? rc : 0;
		if (rc >= 0 && !redirect) {
			new_fds[0] = rc;
			*nr_new = 1;
			remote_hold_reply(rep, &hold);
		}
		break;
	case WIRE_MUNMAP:
		/* Only the caller's own holds: the secret is not needed. */
		rep->rc = iommufd_mmap_hold_drop(client, req->arg[0]);
		break;
	case WIRE_MMAP_FORK:
		from.id = req->arg[0];
		memcpy(from.secret, req->secret, WIRE_SECRET_LEN);
		rep->rc = iommufd_mmap_hold_copy(client, &from, &hold);
		if (!rep->rc)
			remote_hold_reply(rep, &hold);
		break;
	case WIRE_CLAIM:
		if (req->arg[0] > INT32_MAX) {
			rep->rc = -EBADF;
			break;
		}
		rep->rc = iommufd_file_serve_claim(req->token, mm, (int)req->arg[0],
						   (uint8_t *)rep->val);
		break;
	case WIRE_INFO:
		rc = iommufd_file_serve_info(req->token, req->secret, &node, v);
		rep->rc = rc;
		if (rc)
			break;
		memcpy(rep->path, node.path, sizeof(rep->path));
		rep->val[0] = node.major;
		rep->val[1] = node.minor;
		rep->val[2] = node.mode;
		rep->val[3] = v[0];
		break;
	case WIRE_FORGET:
		/* Only the caller's own memory: no file, no secret. */
		uiommu_mm_remote_forget(mm, req->arg[0], req->arg[1]);
		break;
	case WIRE_DIRECT:
		rep->rc = iommufd_direct_serve_setup(ds, conn_fd, new_fds, nr_new, rep->val);
		break;
	case WIRE_TRANSLATE:
		rep->rc = iommufd_direct_serve_translate(*ds, req->token, req->secret, req->arg[0],
							 req->arg[1], (uint32_t)req->arg[2],
							 rep->val);
		break;
	case WIRE_VFIO_BIND: {
		uint32_t devid = 0;

		rep->rc = req->arg[0] > UINT32_MAX ?
				  -ENOENT :
				  iommufd_file_serve_vfio_bind(req->token, req->secret, mm,
							       (unsigned int)req->arg[0], &devid,
							       new_fds, nr_new);
		rep->val[0] = devid;
		break;
	}
	case WIRE_POS:
		rep->rc = iommufd_file_serve_pos(req->token, req->secret, req->arg[0]);
		break;
	case WIRE_VFIO_GROUP:
		rep->rc = req->arg[0] > INT32_MAX ?
				  -ENOENT :
				  iommufd_file_serve_vfio_group(req->token, req->secret, mm,
								(unsigned int)req->arg[0],
								(int64_t)req->arg[1], new_fds, nr_new);
		break;
	case WIRE_STATUS:
		uiommu_mm_self_vm(&rep->val[0], &rep->val[1]);
		rep->val[2] = atomic_load_explicit(&mm->pinned_vm, memory_order_relaxed);
		rep->val[3] = atomic_load_explicit(&mm->locked_vm, memory_order_relaxed);
		break;
	default:
		rep->rc = -EINVAL;
	}
	if (redirect)
		rep->rc = WIRE_RC_REDIRECT;
	/* The numbers of the fds the call made, or of the redirect's target (remote.h). */
	if (req->op == WIRE_IOCTL || redirect) {
		for (unsigned int i = 0; i < *nr_new; i++)
			rep->val[i] = (uint64_t)new_fds[i];
		rep->val[3] = *nr_new;
	}
}

static void remote_conn_note(int fd)
{
	uiommu_mutex_lock(&conns_lock);
	for (int i = 0; i < REMOTE_CONNS_MAX; i++) {
		if (!conn_fds[i]) {
			conn_fds[i] = fd + 1; /* 0: a free slot */
			break;
		}
	}
	uiommu_mutex_unlock(&conns_lock);
}

/* @fd's connection serves @client from now on (NULL: no more), for remote_clients_settle(). */
static void remote_conn_owner_set(int fd, struct remote_client *client)
{
	uiommu_mutex_lock(&conns_lock);
	for (int i = 0; i < REMOTE_CONNS_MAX; i++)
		if (conn_fds[i] == fd + 1)
			conn_owner[i] = client;
	uiommu_mutex_unlock(&conns_lock);
}

/* The end of an accepted connection: forgotten and closed, under conns_lock (see there). */
static void remote_conn_close(int fd)
{
	uiommu_mutex_lock(&conns_lock);
	for (int i = 0; i < REMOTE_CONNS_MAX; i++) {
		if (conn_fds[i] == fd + 1) {
			conn_fds[i] = 0;
			conn_owner[i] = NULL;
		}
	}
	sys_close(fd);
	uiommu_mutex_unlock(&conns_lock);
}

/* In a fork child: our copies of the parent's accepted connections, which its threads serve. */
static void remote_conn_fds_close(void)
{
	for (int i = 0; i < REMOTE_CONNS_MAX; i++) {
		if (conn_fds[i])
			sys_close(conn_fds[i] - 1);
		conn_fds[i] = 0;
		conn_owner[i] = NULL;
	}
}

static void *remote_conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg, fds[4], nfds;
	struct direct_serve *direct = NULL;
	struct remote_client *client;
	struct wire_hello hello;
	struct wire_req req;
	struct wire_rep rep;
	pid_t pid;
	int rc;

	rc = wire_peer_check(fd, &pid);
	if (!rc)
		rc = wire_recv(fd, &hello, sizeof(hello), fds, 4, &nfds);
	if (rc)
		goto out_close;
	if (hello.magic == WIRE_SETTLE_MAGIC && hello.version == WIRE_VERSION &&
	    hello.pid == pid && !nfds) {
		remote_settle_serve(fd);
		goto out_close;
	}
	if (hello.magic != WIRE_MAGIC || hello.version != WIRE_VERSION || hello.pid != pid ||
	    nfds < 3) {
		for (int i = 0; i < nfds; i++)
			sys_close(fds[i]);
		goto out_close;
	}
	remote_unit_begin();
	if (uiommu_should_fail()) {
		/* The HELLO's fds taken in: refused as if its client could not be made. */
		for (int i = 0; i < nfds; i++)
			sys_close(fds[i]);
		client = ERR_PTR(-ENOMEM);
	} else {
		/* Owned before the answer: the client closes an older one only once it has it. */
		client = remote_client_get(pid, hello.cookie, fds, nfds, fd);
	}
	remote_unit_end();
	if (!IS_ERR(client))
		iommufd_serve_point(UIOMMU_SERVE_AT_HELLO);
	memset(&rep, 0, sizeof(rep));
	rep.rc = IS_ERR(client) ? PTR_ERR(client) : 0;
	if (wire_send(fd, &rep, sizeof(rep), NULL, 0) || IS_ERR(client))
		goto out_put;
	while (!wire_recv(fd, &req, sizeof(req), NULL, 0, NULL)) {
		int new_fds[WIRE_NEW_FDS_MAX];
		unsigned int nr_new;

		if (req.magic != WIRE_MAGIC)
			break; /* garbage: this connection ends, nothing else is touched */
		/* Its process is gone (remote_clients_settle()): what it sent last does not run. */
		if (!remote_client_call_begin(client))
			break;
		remote_unit_begin();
		if (uiommu_should_fail()) {
			/* Refused before it ran: nothing was done for it. */
			memset(&rep, 0, sizeof(rep));
			rep.rc = -ENOMEM;
			nr_new = 0;
		} else {
			pthread_rwlock_rdlock(&serve_gate);
			uiommu_mm_remote_calling(client->mm);
			remote_serving = client;
			remote_serve_one(client, &req, &rep, new_fds, &nr_new, &direct, fd);
			remote_serving = NULL;
			uiommu_mm_remote_calling(NULL);
			pthread_rwlock_unlock(&serve_gate);
		}
		/* The fds passed back: a reply that cannot carry them never leaves (EIO there). */
		rc = nr_new && uiommu_should_fail() ? -ENOMEM : 0;
		remote_unit_end();
		/*
		 * The fds travel with the reply's first byte, the rest follows our closes of them:
		 * the caller, which waits for all of it, then holds the only fds, as the kernel's
		 * caller does when its ioctl returns (its close is the last anywhere).
		 */
		if (!rc)
			rc = wire_send(fd, &rep, nr_new ? 1 : sizeof(rep), new_fds, (int)nr_new);
		/*
		 * The fds are the caller's now (or nobody's, if it is gone): ours go. The message
		 * in flight holds the files, so this is not their last close anywhere.
		 */
		for (unsigned int i = 0; i < nr_new; i++)
			if (uiommu_close(new_fds[i])) /* not a file of ours: a region's memfd */
				sys_close(new_fds[i]);
		if (!rc && nr_new)
			rc = wire_send(fd, (const char *)&rep + 1, sizeof(rep) - 1, NULL, 0);
		/*
		 * Only now: a gone client's files that the call made were released in those
		 * closes, as the kernel's exit closes the fds its ioctl installed.
		 */
		remote_client_call_end(client);
		if (rc)
			break;
	}
	/* Before the fd goes: an invalidation may be polling it for the client's hang-up. */
	iommufd_direct_serve_end(direct);
out_put:
	if (!IS_ERR(client)) {
		iommufd_serve_point(UIOMMU_SERVE_AT_CONN_END);
		remote_client_put(client, fd);
	}
out_close:
	remote_conn_close(fd);
	atomic_fetch_sub(&conns_live, 1);
	return NULL;
}

static void remote_accept(void)
{
	pthread_attr_t attr;
	pthread_t thread;
	int fd = sys_accept4(listen_fd, SOCK_CLOEXEC);
	bool refused;

	if (fd < 0)
		return;
	uiommu_fd_keep(fd);
	/*
	 * Two fallible steps: taking the connection in, and starting its thread (counted here, as
	 * the unit must end before the thread starts on the client's HELLO).
	 */
	remote_unit_begin();
	refused = uiommu_should_fail() || uiommu_should_fail();
	remote_unit_end();
	if (refused) {
		sys_close(fd); /* the client sees ENODEV */
		return;
	}
	if (atomic_fetch_add(&conns_live, 1) >= REMOTE_CONNS_MAX)
		goto err_close;
	remote_conn_note(fd);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (uiommu_thread_create(&thread, &attr, remote_conn_main, (void *)(intptr_t)fd)) {
		pthread_attr_destroy(&attr);
		goto err_close;
	}
	pthread_attr_destroy(&attr);
	return;

err_close:
	remote_conn_close(fd);
	atomic_fetch_sub(&conns_live, 1);
}

/*
 * Accepts connections and sees last closes; @until_empty (a hand-over's server): returns when
 * no file is left to serve.
 */
static void remote_server_loop(bool until_empty)
{
	struct epoll_event ev[16];
	int n;

	for (;;) {
		n = sys_epoll_wait(epoll_fd, ev, 16, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return;
		/* A hand-over in progress: the events are the next server's (listen_fd is
		 * non-blocking, so an accept it took first costs nothing here). */
		pthread_rwlock_rdlock(&serve_gate);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == 0)
				remote_accept();
			else if (ev[i].data.u64 & WIRE_WATCH_FORK)
				iommufd_mmap_fork_gone(ev[i].data.u64 & ~WIRE_WATCH_FORK);
			else if (ev[i].events & (EPOLLHUP | EPOLLERR))
				iommufd_file_gone_anywhere(ev[i].data.u64);
			else
				iommufd_file_notes_read(ev[i].data.u64);
		}
		pthread_rwlock_unlock(&serve_gate);
		if (until_empty && !iommufd_files_served())
			return;
	}
}

static void *remote_server_main(void *arg)
{
	(void)arg;
	remote_server_loop(false);
	return NULL;
}

/*
 * Watches @peer for the last close of its fd anywhere; @token names its file (or a fork:
 * WIRE_WATCH_FORK); @notes: an event file's, whose holders' notes (remote.h) are read as they
 * come, so that they never pile up in the socket (where they would count against the
 * holders' POLLOUT). The last close is EPOLLHUP, which epoll reports unasked; EPOLLRDHUP is
 * not asked for: a holder's shutdown(SHUT_WR), which is no close, would show it, and the
 * level-triggered watch would wake the server thread for it without end.
 * 0, or -ENODEV when we do not serve (no server thread), -errno.
 */
int iommufd_server_watch(int peer, uint64_t token, bool notes)
{
	struct epoll_event ev = { .events = notes ? EPOLLIN : 0, .data.u64 = token };

	if (epoll_fd < 0)
		return -ENODEV;
	return sys_epoll_ctl(epoll_fd, EPOLL_CTL_ADD, peer, &ev) ? -errno : 0;
}

/*
 * No note can come into @peer any more (a holder shut its writing down: the peer reads the
 * end of the stream, readable for ever): only its last close is watched from now on.
 */
void iommufd_server_watch_notes_end(int peer, uint64_t token)
{
	struct epoll_event ev = { .events = 0, .data.u64 = token };

	if (epoll_fd >= 0)
		sys_epoll_ctl(epoll_fd, EPOLL_CTL_MOD, peer, &ev);
}

void iommufd_server_unwatch(int peer)
{
	if (epoll_fd >= 0)
		sys_epoll_ctl(epoll_fd, EPOLL_CTL_DEL, peer, NULL);
}

/*
 * At our exit our listening socket goes: so does its record in the session directory, and the
 * directory, which the session's end kept for it, if we outlived the session. Not in a forked
 * child, whose server (if any) is its own, nor after a hand-over, whose next server is a
 * process of its own (remote_handover_serve()); an exec runs no exit handler.
 */
static void remote_server_exit(void)
{
	struct iommufd_server *self = atomic_load(&iommufd_self_server);

	if (self && self->pid == getpid() && listen_fd >= 0)
		session_server_exit(self->pid, self->name);
}

static pthread_once_t remote_server_exit_once = PTHREAD_ONCE_INIT;

static void remote_server_exit_register(void)
{
	atexit(remote_server_exit);
}

/*
 * In a session, the other processes learn of our server from the session directory, to ask it
 * to settle (iommufd_remote_settle_session()). A record that cannot be made leaves only that:
 * a claim of ours that a dead process's file held lets go when our server thread sees the
 * hang-up, as before.
 */
static void remote_server_note(struct iommufd_server *self)
{
	if (session_server_note(self->pid, self->name))
		return;
	pthread_once(&remote_server_exit_once, remote_server_exit_register);
}

/*
 * Starts listening and the server thread. A failure leaves this process's files unshared
 * (another process's calls on them answer ENODEV), not unusable.
 */
static void remote_server_start(struct iommufd_server *self)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
	struct sockaddr_un sun;
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t old;
	int rc;

	if (uiommu_should_fail())
		return;
	listen_fd = sys_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	epoll_fd = sys_epoll_create1(EPOLL_CLOEXEC);
	if (listen_fd < 0 || epoll_fd < 0)
		goto err_close;
	uiommu_fd_keep(listen_fd);
	uiommu_fd_keep(epoll_fd);
	if (sys_bind(listen_fd, (struct sockaddr *)&sun, remote_addr(&sun, self->name, WIRE_NAME_LEN)) ||
	    sys_listen(listen_fd, 64) || sys_epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev))
		goto err_close;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	remote_block_signals(&old);
	rc = uiommu_thread_create(&thread, &attr, remote_server_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (!rc) {
		remote_server_note(self);
		return;
	}
err_close:
	if (listen_fd >= 0)
		sys_close(listen_fd);
	if (epoll_fd >= 0)
		sys_close(epoll_fd);
	listen_fd = epoll_fd = -1;
}

/**
 * iommufd_server_self() - this process's server, made (and started) with its first file
 * Return: it, or ERR_PTR(-ENOMEM).
 */
struct iommufd_server *iommufd_server_self(void)
{
	struct iommufd_server *self = atomic_load_explicit(&iommufd_self_server,
							   memory_order_acquire);
	uint8_t rnd[16];

	if (self)
		return self;
	pthread_once(&remote_atfork_once, remote_atfork_register);
	uiommu_mutex_lock(&servers_lock);
	self = atomic_load_explicit(&iommufd_self_server, memory_order_relaxed);
	if (self)
		goto out_unlock;
	self = uiommu_zalloc(sizeof(*self));
	if (!self) {
		self = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	remote_random(rnd, sizeof(rnd));
	snprintf(self->name, sizeof(self->name), "uiommu-");
	for (int i = 0; i < 16; i++)
		snprintf(self->name + 7 + 2 * i, 3, "%02x", rnd[i]);
	self->pid = getpid();
	uiommu_mutex_init(&self->pool_lock);
	remote_server_start(self);
	self->next = atomic_load_explicit(&servers, memory_order_relaxed);
	atomic_store_explicit(&servers, self, memory_order_release);
	atomic_store_explicit(&iommufd_self_server, self, memory_order_release);
out_unlock:
	uiommu_mutex_unlock(&servers_lock);
	return self;
}

void iommufd_server_header(struct iommufd_server *server, uint64_t token,
			   const uint8_t *secret, struct wire_fd_header *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->magic = WIRE_MAGIC;
	hdr->version = WIRE_VERSION;
	hdr->pid = server->pid;
	memcpy(hdr->name, server->name, sizeof(hdr->name));
	hdr->token = token;
	memcpy(hdr->secret, secret, WIRE_SECRET_LEN);
}

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

/*
 * Binds an event fd's @peer to its name (remote.h), which its holders read, and has the kernel
 * say who sent each of their notes: the pid always, a pidfd too where the kernel has
 * SO_PASSPIDFD (6.5), which no reuse of the pid can fool. 0 or -errno.
 */
int iommufd_server_name_peer(struct iommufd_server *server, int peer, uint64_t token)
{
	char name[WIRE_PEER_NAME_LEN];
	struct sockaddr_un sun;
	int on = 1;

	snprintf(name, sizeof(name), "%s.%016llx", server->name, (unsigned long long)token);
	if (sys_bind(peer, (struct sockaddr *)&sun, remote_addr(&sun, name, sizeof(name))) ||
	    sys_setsockopt(peer, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)))
		return -errno;
	sys_setsockopt(peer, SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on));
	return 0;
}

/*
 * This process holds an event fd of another process's file at @fd (it adopted it, or a fork
 * made it the child's): the note tells the server (remote.h). Best effort: a note that cannot
 * go leaves this process unknown to the server, which then leaves the readiness byte it no
 * longer means to the fd's next reader (docs/processes.md, "Event fds"). No allocation, no
 * lock, no fail point (whose first check in a thread allocates its record, lib/fail.c): a
 * fork child's handler sends it; iommufd_event_note() is the fail point's way in elsewhere.
 */
void iommufd_event_note_send(int fd)
{
	struct wire_holder_note note = { .magic = WIRE_NOTE_MAGIC, .fd = fd };

	sys_send(fd, &note, sizeof(note), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* iommufd_event_note_send(), a fallible step of an adoption or a dup(). */
void iommufd_event_note(int fd)
{
	if (!uiommu_should_fail())
		iommufd_event_note_send(fd);
}

void iommufd_secret_new(uint8_t *secret)
{
	remote_random(secret, WIRE_SECRET_LEN);
}

/* ---- the client ------------------------------------------------------------------------ */

/* The server named @name (pid @pid), known from now on; ERR_PTR(-ENOMEM). */
static struct iommufd_server *remote_server_find(const char *name, pid_t pid)
{
	struct iommufd_server *s;

	pthread_once(&remote_atfork_once, remote_atfork_register);
	uiommu_mutex_lock(&servers_lock);
	for (s = atomic_load_explicit(&servers, memory_order_relaxed); s; s = s->next)
		if (!strncmp(s->name, name, WIRE_NAME_LEN))
			goto out_unlock;
	s = uiommu_zalloc(sizeof(*s));
	if (!s) {
		s = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	memcpy(s->name, name, WIRE_NAME_LEN);
	s->name[WIRE_NAME_LEN - 1] = 0;
	s->pid = pid;
	uiommu_mutex_init(&s->pool_lock);
	s->next = atomic_load_explicit(&servers, memory_order_relaxed);
	atomic_store_explicit(&servers, s, memory_order_release);
out_unlock:
	uiommu_mutex_unlock(&servers_lock);
	return s;
}

/*
 * Opens what HELLO hands over: a pidfd of ours, our /proc/self/mem and maps, and, with @life,
 * our life word's page when it can be had (without it the server checks us by the mem fd:
 * slower, and with that check's race against an exec, mm_remote.c; a later connection's
 * HELLO may still bring it). Return: how many (3 or 4), or -EIO.
 */
static int remote_hello_fds(int *fds, bool life)
{
	fds[0] = sys_pidfd_open(getpid(), 0);
	fds[1] = sys_openat(AT_FDCWD, "/proc/self/mem", O_RDWR | O_CLOEXEC, 0);
	fds[2] = sys_openat(AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
	if (fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0) {
		fds[3] = life ? iommufd_direct_life_share() : -ENOMEM;
		return fds[3] >= 0 ? 4 : 3;
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			sys_close(fds[i]);
	return -EIO;
}

/*
 * A connection to the listening socket @name, which must be @pid's: the fd, or -errno of the
 * socket, or -ENODEV when nobody listens there (*@refused, when not NULL: the connect was
 * refused, nobody has the name any more) or somebody else does.
 */
static int remote_dial(const char *name, pid_t pid, bool *refused)
{
	struct sockaddr_un sun;
	pid_t peer;
	int fd;

	fd = sys_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	uiommu_fd_keep(fd);
	if (sys_connect(fd, (struct sockaddr *)&sun, remote_addr(&sun, name, WIRE_NAME_LEN))) {
		if (refused)
			*refused = errno == ECONNREFUSED;
		goto err_close; /* the serving process is gone */
	}
	/* Someone else may hold the name of a server that died: it must be our user's. */
	if (!wire_peer_check(fd, &peer) && peer == pid)
		return fd;
err_close:
	sys_close(fd);
	return -ENODEV;
}

/* A new connection to @server, its HELLO answered; @life: with our life word. fd or -errno. */
static int remote_connect(struct iommufd_server *server, bool life)
{
	struct wire_hello hello = { .magic = WIRE_MAGIC, .version = WIRE_VERSION };
	struct wire_rep rep;
	int fd, fds[4], nfds, rc;

	if (uiommu_should_fail())
		return -ENOMEM;
	fd = remote_dial(server->name, server->pid, NULL);
	if (fd < 0)
		return fd;
	nfds = remote_hello_fds(fds, life);
	if (nfds < 0) {
		rc = nfds;
		goto err_close;
	}
	hello.pid = getpid();
	hello.cookie = client_cookie;
	rc = wire_send(fd, &hello, sizeof(hello), fds, nfds);
	for (int i = 0; i < nfds; i++)
		sys_close(fds[i]);
	if (!rc)
		rc = wire_recv(fd, &rep, sizeof(rep), NULL, 0, NULL);
	if (rc) {
		rc = -ENODEV;
		goto err_close;
	}
	if (rep.rc) {
		rc = (int)rep.rc;
		goto err_close;
	}
	return fd;

err_close:
	sys_close(fd);
	return rc;
}

/*
 * One SETTLE to the server @name of @pid (remote.h), answered once it settled. A failure only
 * leaves the asker's answer as it was; one that finds nobody listening under the name (a
 * connect to a dead abstract name is refused at once) removes the record: whoever finds a
 * record stale removes it.
 */
static int remote_settle_ask(pid_t pid, const char *name, void *arg)
{
	struct wire_hello req = { .magic = WIRE_SETTLE_MAGIC, .version = WIRE_VERSION };
	struct wire_rep rep;
	bool refused = false;
	int fd;

	(void)arg;
	if (uiommu_should_fail())
		return 0;
	fd = remote_dial(name, pid, &refused);
	if (fd < 0) {
		if (refused)
			session_server_forget(pid, name);
		return 0;
	}
	req.pid = getpid();
	if (!wire_send(fd, &req, sizeof(req), NULL, 0))
		wire_recv(fd, &rep, sizeof(rep), NULL, 0, NULL);
	sys_close(fd);
	return 0;
}

/**
 * iommufd_remote_settle_session() - before an answer that another process's claim in the
 * session gives (claim.c): every other serving process of the session settles, as
 * iommufd_remote_settle() does here. A claim is held by the process serving the file that
 * holds it, which lets go once it finds the file's last fd gone: when that fd was a dead
 * process's, only that process's settle releases it before its server thread sees the hang-up.
 * The servers are asked one after the other (SETTLE, remote.h), each answering once it is done;
 * a stale record is removed, a failed request skipped (the answer stays the one it was).
 *
 * Call it outside every lock the settles take (serve_gate's read side aside). A call served for
 * another process asks too, marked as asking meanwhile: a settle here waits for the calls of
 * gone clients, but not for one that asks (remote_clients_gone_calling()), which may be
 * waiting for a settle elsewhere that waits for a call of ours. So no settle waits, through
 * any number of servers, for one that waits for it. The caller settles locally first.
 */
void iommufd_remote_settle_session(void)
{
	struct iommufd_server *self = atomic_load(&iommufd_self_server);
	struct remote_client *serving = remote_serving;

	if (serving)
		remote_client_asking(serving, true);
	session_servers_each(getpid(), self ? self->name : "", remote_settle_ask, NULL);
	if (serving)
		remote_client_asking(serving, false);
}

/**
 * iommufd_remote_settle_again() - after iommufd_remote_settle_session(), when a claim still
 * refuses: one more pass, here first. A release that pass made in one server may have closed
 * the last fd of a file another server (or we) serve, one asked before it: a cdev file's
 * release closes its delegate's fd (device_cdev.c: a cdev bound through another process), and
 * the session's order is not the delegation's. A delegation goes one hop and a delegate
 * delegates nothing, so after this pass nothing such a release left is held.
 */
void iommufd_remote_settle_again(void)
{
	iommufd_remote_settle();
	iommufd_remote_settle_session();
}

/*
 * In a forked child's fork handler: a connection made in the spare its parent made before the
 * fork, its HELLO without our life word (whose thread cannot be started here). NULL with *@rc
 * -ENOMEM (no spare: its allocation failed) or the connection's errno.
 */
static struct wire_conn *remote_conn_spare(struct iommufd_server *server, int *rc)
{
	struct wire_conn *conn;
	int fd;

	uiommu_mutex_lock(&server->pool_lock);
	conn = server->spare;
	server->spare = NULL;
	uiommu_mutex_unlock(&server->pool_lock);
	if (!conn) {
		*rc = -ENOMEM;
		return NULL;
	}
	fd = remote_connect(server, false);
	if (fd < 0) {
		uiommu_mutex_lock(&server->pool_lock);
		server->spare = conn;
		uiommu_mutex_unlock(&server->pool_lock);
		*rc = fd;
		return NULL;
	}
	conn->fd = fd;
	conn->fresh = true;
	conn->lifeless = true;
	return conn;
}

/**
 * iommufd_remote_spare_make() - a spare connection record for @server, unless it has one: a
 * forked child's handler connects in it (remote_conn_spare()). Made before each fork with
 * holds to copy and with each mapping those holds come from (mmap.c), so that a mapping made
 * while another thread forks finds one too. Without it (ENOMEM) the child's copies are unheld.
 */
void iommufd_remote_spare_make(struct iommufd_server *server)
{
	uiommu_mutex_lock(&server->pool_lock);
	if (!server->spare)
		server->spare = uiommu_zalloc(sizeof(*server->spare));
	uiommu_mutex_unlock(&server->pool_lock);
}

/*
 * A connection a fork handler made brings our life word now that its thread can be started:
 * a new connection's HELLO hands it over (the server takes a word it did not have yet,
 * remote_client_get()), then the old one goes, our holds there staying with the new one
 * (they are the client's, not a connection's). Once only: without it the server keeps the mem
 * fd's check, as for any client without a word.
 */
static void remote_conn_revive(struct iommufd_server *server, struct wire_conn *conn)
{
	int fd = remote_connect(server, true);

	conn->lifeless = false;
	if (fd < 0)
		return;
	sys_close(conn->fd);
	conn->fd = fd;
	conn->fresh = true;
}

/**
 * iommufd_remote_conn_take() - a connection to @server for this thread's next requests: an
 * idle one of the pool, or a new one
 * Return: it (give it back with iommufd_remote_conn_give()), or NULL with *@rc -ENODEV,
 * -ENOMEM.
 */
struct wire_conn *iommufd_remote_conn_take(struct iommufd_server *server, int *rc)
{
	struct wire_conn *conn;

	uiommu_mutex_lock(&server->pool_lock);
	conn = server->idle;
	if (conn)
		server->idle = conn->next;
	uiommu_mutex_unlock(&server->pool_lock);
	if (conn && conn->lifeless && !remote_fork_child)
		remote_conn_revive(server, conn);
	if (conn)
		return conn;
	if (remote_fork_child)
		return remote_conn_spare(server, rc);
	conn = uiommu_zalloc(sizeof(*conn));
	if (!conn) {
		*rc = -ENOMEM;
		return NULL;
	}
	conn->fd = remote_connect(server, true);
	if (conn->fd < 0) {
		*rc = conn->fd;
		uiommu_free(conn);
		return NULL;
	}
	conn->fresh = true;
	return conn;
}

/* Back to the pool when @ok, else closed (it broke). */
void iommufd_remote_conn_give(struct iommufd_server *server, struct wire_conn *conn, bool ok)
{
	if (!ok) {
		wire_conn_free(conn);
		return;
	}
	uiommu_mutex_lock(&server->pool_lock);
	conn->next = server->idle;
	server->idle = conn;
	uiommu_mutex_unlock(&server->pool_lock);
}

/*
 * One request on @conn: @req out, *@rep back, with the fds it carries in @fds (*@nfds; @fds
 * NULL: none expected, any closed). 0; -EPIPE when an idle connection's server end was gone
 * before the request left (nothing ran: the serving process exec'd and handed over, and the
 * name now reaches the next server, or it died); -EIO when it broke in the call. The
 * connection is unusable after an error.
 */
int iommufd_remote_conn_call(struct wire_conn *conn, struct wire_req *req, struct wire_rep *rep,
			     int *fds, int *nfds)
{
	return iommufd_remote_conn_call_from(conn, req, rep, fds, nfds, NULL);
}

/*
 * iommufd_remote_conn_call() that also tells, with @sender non-NULL, which process sent the
 * reply (its pid, or -1 when the kernel did not say): the serving process may not be the
 * listening socket's (a hand-over), and its reply's word about itself is only a claim.
 */
int iommufd_remote_conn_call_from(struct wire_conn *conn, struct wire_req *req,
				  struct wire_rep *rep, int *fds, int *nfds, pid_t *sender)
{
	bool fresh = conn->fresh;
	int on = 1, off = 0, rc;

	req->magic = WIRE_MAGIC;
	conn->fresh = false;
	/* Set before the request leaves, so that the reply carries it; off again after. */
	if (sender && (uiommu_should_fail() ||
		       sys_setsockopt(conn->fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)))) {
		*sender = -1;
		sender = NULL;
	}
	rc = wire_send(conn->fd, req, sizeof(*req), NULL, 0);
	if (rc == -EPIPE && !fresh)
		return -EPIPE;
	if (!rc)
		rc = wire_recv_from(conn->fd, rep, sizeof(*rep), fds, fds ? WIRE_NEW_FDS_MAX : 0,
				    nfds, sender);
	if (sender)
		sys_setsockopt(conn->fd, SOL_SOCKET, SO_PASSCRED, &off, sizeof(off));
	return rc ? -EIO : 0;
}

struct direct_client **iommufd_remote_conn_direct(struct wire_conn *conn)
{
	return &conn->direct;
}

/*
 * One round trip with @server: @req out, *@rep back, with the fds it carries in @fds (*@nfds;
 * @fds NULL: none expected, any closed). 0, or -EIO/-ENODEV/-ENOMEM.
 */
static int remote_call_fds(struct iommufd_server *server, struct wire_req *req,
			   struct wire_rep *rep, int *fds, int *nfds)
{
	struct wire_conn *conn;
	int rc;

again:
	conn = iommufd_remote_conn_take(server, &rc);
	if (!conn)
		return rc;
	rc = iommufd_remote_conn_call(conn, req, rep, fds, nfds);
	iommufd_remote_conn_give(server, conn, !rc);
	if (rc == -EPIPE)
		goto again; /* a stale idle connection: a new one */
	return rc;
}

static int remote_call(struct iommufd_server *server, struct wire_req *req, struct wire_rep *rep)
{
	return remote_call_fds(server, req, rep, NULL, NULL);
}

/*
 * An event queue's ALLOC made its fd for us: its out field says the server's number @theirs,
 * which becomes @ours. Return: 1 when @cmd is one and the field is ours, 0 when @cmd is none,
 * -EFAULT when the field cannot be put right (the caller must not see the server's number).
 */
static int remote_event_fd_fix(struct uiommu_mm *mm, unsigned int cmd, uint64_t arg,
			       uint32_t theirs, uint32_t ours)
{
	uint64_t off;
	uint32_t v;

	if (cmd == IOMMU_FAULT_QUEUE_ALLOC)
		off = offsetof(struct iommu_fault_alloc, out_fault_fd);
	else if (cmd == IOMMU_VEVENTQ_ALLOC)
		off = offsetof(struct iommu_veventq_alloc, out_veventq_fd);
	else
		return 0;
	if (!mm || uiommu_copy_from_user(mm, &v, arg + off, sizeof(v)) || v != theirs ||
	    uiommu_copy_to_user(mm, arg + off, &ours, sizeof(ours)))
		return -EFAULT;
	return 1;
}

/*
 * The fds a remote call made for us arrived as @fds: ours from now on (adopted). Where the
 * server's number for one shows, the reply is ours to correct: the call's return value (a
 * DMABUF_GET, a GET_DEVICE_FD), or the out field of the one struct that carries one
 * (the selftest's CREATE_ACCESS, the event queues' ALLOCs).
 */
static int remote_new_fds(const struct wire_rep *rep, const int *fds, int nfds, unsigned int cmd,
			  uint64_t arg, int rc)
{
	struct uiommu_mm *mm = iommufd_caller_mm();

	for (int i = 0; i < nfds; i++) {
		uint64_t off = offsetof(struct iommu_test_cmd, create_access.out_access_fd);
		int fix;
		struct iommu_test_cmd tc;
		uint32_t theirs = (uint32_t)rep->val[i], ours = (uint32_t)fds[i];

		/*
		 * An fd we cannot make ours would be read and written as a plain socket: it
		 * goes (its close elsewhere releases the file), and the call answers ENOMEM.
		 */
		if (!uiommu_fd_adopt(fds[i])) {
			sys_close(fds[i]);
			if (rc >= 0)
				rc = -ENOMEM;
			continue;
		}
		if (rc == (int)theirs) {
			rc = fds[i];
			continue;
		}
		fix = remote_event_fd_fix(mm, cmd, arg, theirs, ours);
		if (fix < 0) {
			/* As for an fd we cannot adopt: it goes, the caller learns of no fd. */
			uiommu_close(fds[i]);
			if (rc >= 0)
				rc = fix;
		}
		if (fix)
			continue;
		if (cmd == IOMMU_TEST_CMD && mm &&
		    !uiommu_copy_from_user(mm, &tc, arg, offsetof(struct iommu_test_cmd, id)) &&
		    tc.op == IOMMU_TEST_OP_CREATE_ACCESS)
			uiommu_copy_to_user(mm, arg + off, &ours, sizeof(ours));
	}
	return rc;
}

void iommufd_remote_req_init(struct wire_req *req, enum wire_op op, uint64_t token,
			     const uint8_t *secret)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	req->token = token;
	memcpy(req->secret, secret, WIRE_SECRET_LEN);
}

/*
 * The user memory this process has mapped through contexts other processes serve, as one
 * hull [lo, hi): only there can a server hold pins of ours with window addresses
 * (mm/window.c), so only a remap that meets it needs a notice (uiommu_remote_range_forget()).
 * It only grows (a conservative hull); a forked child starts empty.
 */
static _Atomic uint64_t remote_mapped_lo = UINT64_MAX, remote_mapped_hi;

/* Widens the hull by the user range that @cmd (a MAP) at our address @arg names, if any. */
static void remote_mapped_note(unsigned int cmd, uint64_t arg)
{
	struct iommu_ioas_map map;
	struct vfio_iommu_type1_dma_map dma;
	struct uiommu_mm *mm;
	uint64_t va, len, end, cur;
	int rc;

	if (cmd != IOMMU_IOAS_MAP && cmd != VFIO_IOMMU_MAP_DMA)
		return;
	mm = uiommu_mm_self();
	rc = IS_ERR(mm) ? PTR_ERR(mm) : 0;
	if (!rc && cmd == IOMMU_IOAS_MAP) {
		rc = mm->ops->copy_from(mm, &map, arg, sizeof(map));
		va = map.user_va;
		len = map.length;
	} else if (!rc) {
		rc = mm->ops->copy_from(mm, &dma, arg, sizeof(dma));
		va = dma.vaddr;
		len = dma.size;
	}
	if (!IS_ERR(mm))
		uiommu_mm_put(mm);
	/* Unread (the argument may change before the server reads it): all of memory. */
	if (rc || check_add_overflow(va, len, &end)) {
		va = 0;
		end = UINT64_MAX;
	}
	cur = atomic_load(&remote_mapped_lo);
	while (va < cur && !atomic_compare_exchange_weak(&remote_mapped_lo, &cur, va))
		;
	cur = atomic_load(&remote_mapped_hi);
	while (end > cur && !atomic_compare_exchange_weak(&remote_mapped_hi, &cur, end))
		;
}

/**
 * uiommu_remote_range_forget() - this process is about to unmap or replace its memory at
 * [@addr, @addr + @len) (the preload layer's munmap(), mremap(), mmap(MAP_FIXED))
 * Every server this process has called, where the range meets what it mapped, learns it before
 * the change (a round trip each): private pages pinned there stop being reachable (EFAULT),
 * where the kernel's pins would keep the old pages; never the new memory. errno is kept.
 */
UIOMMU_EXPORT void uiommu_remote_range_forget(const void *addr, size_t len)
{
	struct iommufd_server *s, *self;
	uint64_t lo = (uintptr_t)addr;
	struct wire_req req;
	struct wire_rep rep;
	int saved;

	if (!len || lo >= atomic_load_explicit(&remote_mapped_hi, memory_order_relaxed) ||
	    lo + len <= atomic_load_explicit(&remote_mapped_lo, memory_order_relaxed))
		return;
	saved = errno;
	self = atomic_load(&iommufd_self_server);
	for (s = atomic_load_explicit(&servers, memory_order_acquire); s; s = s->next) {
		if (s == self)
			continue;
		iommufd_remote_req_init(&req, WIRE_FORGET, 0, (const uint8_t[WIRE_SECRET_LEN]){ 0 });
		req.arg[0] = lo;
		req.arg[1] = len;
		/* A server we cannot reach holds nothing of ours any more (it is gone). */
		remote_call(s, &req, &rep);
	}
	errno = saved;
}

/**
 * uiommu_remote_mmap_fixed_forget() - mmap(2) with MAP_FIXED of @len bytes at @addr (@flags,
 * @fd) is about to run (the preload layer's, whatever it maps): the servers learn of the range
 * it replaces, a hugetlb mapping's whole huge pages, as uiommu_remote_range_forget(). Before the
 * call, so a failure after the kernel unmapped the range (a hugetlb reservation, a file's mmap)
 * has been told too: never the memory a later mapping puts there. No look at the file while
 * nothing at or above @addr was mapped through another process. errno is kept.
 */
UIOMMU_EXPORT void uiommu_remote_mmap_fixed_forget(const void *addr, size_t len, int flags,
						   int fd)
{
	int saved;

	if (!len || (uintptr_t)addr >= atomic_load_explicit(&remote_mapped_hi,
							     memory_order_relaxed))
		return;
	saved = errno;
	len = iommufd_mmap_replaced_len(len, flags, fd);
	errno = saved;
	uiommu_remote_range_forget(addr, len);
}

/*
 * A reply that redirects the call (remote.h) to the file whose fd it carries: that fd in
 * *@redirect, for a caller that asked for redirects (@redirect not NULL); anything else, a
 * server's lie or a reply we did not ask for, is -EIO and no fd stays.
 */
static int remote_redirect_take(const struct wire_rep *rep, int *fds, int nfds, int *redirect)
{
	if (redirect && nfds == 1 && rep->val[3] == 1) {
		*redirect = fds[0];
		return 0;
	}
	for (int i = 0; i < nfds; i++)
		sys_close(fds[i]);
	return -EIO;
}

/*
 * @cmd on the file @token of @server. @redirect not NULL: a server may redirect the call
 * (remote.h), whose target's fd, ours now, is then in *@redirect (else -1) and the call is
 * not made: the caller makes it there.
 */
int iommufd_remote_ioctl(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			 unsigned int cmd, uint64_t arg, int *redirect)
{
	int fds[WIRE_NEW_FDS_MAX], nfds = 0, rc;
	struct wire_req req;
	struct wire_rep rep;

	if (redirect)
		*redirect = -1;
	/* ACCESS_RW copied by this process itself, where the server offers it. */
	if (cmd == IOMMU_TEST_CMD && iommufd_direct_access_rw(server, arg))
		return 0;
	/* Before the call: a pin exists only once the server has run it. */
	remote_mapped_note(cmd, arg);
	iommufd_remote_req_init(&req, WIRE_IOCTL, token, secret);
	req.flags = redirect ? WIRE_REQ_REDIRECT : 0;
	req.arg[0] = cmd;
	req.arg[1] = arg;
	rc = remote_call_fds(server, &req, &rep, fds, &nfds);
	if (rc)
		return rc;
	if (rep.rc == WIRE_RC_REDIRECT)
		return remote_redirect_take(&rep, fds, nfds, redirect);
	return remote_new_fds(&rep, fds, nfds, cmd, arg, (int)rep.rc);
}

/**
 * iommufd_remote_fd_ident() - the name of the file behind @fd, from its header as any holder
 * reads it (remote.h): its server (known from now on), token and secret
 * Return: 0; -EBADF for an fd without a header (not a file of a server, or an event fd);
 * -ENOMEM.
 */
int iommufd_remote_fd_ident(int fd, struct iommufd_server **server, uint64_t *token,
			    uint8_t *secret)
{
	struct wire_fd_header hdr;
	struct iommufd_server *s;

	if (sys_recv(fd, &hdr, sizeof(hdr), MSG_PEEK | MSG_DONTWAIT) != sizeof(hdr) ||
	    hdr.magic != WIRE_MAGIC || hdr.version != WIRE_VERSION)
		return -EBADF;
	hdr.name[WIRE_NAME_LEN - 1] = 0;
	s = remote_server_find(hdr.name, hdr.pid);
	if (IS_ERR(s))
		return PTR_ERR(s);
	*server = s;
	*token = hdr.token;
	memcpy(secret, hdr.secret, WIRE_SECRET_LEN);
	return 0;
}

/*
 * A VFIO file of ours that goes where the context @token is (WIRE_VFIO_BIND or
 * WIRE_VFIO_GROUP, @req's): the file @server opened for it, with its name there.
 */
static int remote_vfio_open(struct iommufd_server *server, struct wire_req *req,
			    struct wire_rep *rep, uint64_t *g_token, uint8_t *g_secret)
{
	struct remote_client *serving = remote_serving;
	int fds[WIRE_NEW_FDS_MAX], nfds = 0, rc;
	struct iommufd_server *named = NULL;

	/*
	 * For a call we serve (a bind of our cdev to its caller's context, a group's
	 * SET_CONTAINER of it): asking, as a SETTLE's asker is, since the open there may ask us
	 * to settle.
	 */
	if (serving)
		remote_client_asking(serving, true);
	rc = remote_call_fds(server, req, rep, fds, &nfds);
	if (serving)
		remote_client_asking(serving, false);
	if (!rc)
		rc = (int)rep->rc;
	if (!rc && nfds != 1)
		rc = -EIO;
	/*
	 * Its name, from its own header as any holder reads it, and at the server we asked. A
	 * file we cannot name goes: its close is the last anywhere, its server lets go.
	 */
	if (!rc && uiommu_should_fail())
		rc = -ENOMEM;
	if (!rc && (iommufd_remote_fd_ident(fds[0], &named, g_token, g_secret) || named != server))
		rc = -EIO;
	for (int i = rc ? 0 : 1; i < nfds; i++)
		sys_close(fds[i]);
	if (rc)
		return rc;
	uiommu_fd_keep(fds[0]);
	return fds[0];
}

/**
 * iommufd_remote_vfio_bind() - the VFIO cdev with @minor, opened anew at @server and bound
 * there to the context @token names (WIRE_VFIO_BIND): a bind of a cdev of ours to a context
 * another process serves, whose device must be that process's (device_cdev.c).
 * Return: the new file's fd, the library's (kept; in no table, so no call of the program
 * reaches it), with its name at @server in *@g_token and @g_secret and the device ID in
 * *@devid; or -errno (the bind's, or -EIO/-ENODEV/-ENOMEM of the wire).
 */
int iommufd_remote_vfio_bind(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			     unsigned int minor, uint32_t *devid, uint64_t *g_token,
			     uint8_t *g_secret)
{
	struct wire_req req;
	struct wire_rep rep;
	int fd;

	iommufd_remote_req_init(&req, WIRE_VFIO_BIND, token, secret);
	req.arg[0] = minor;
	fd = remote_vfio_open(server, &req, &rep, g_token, g_secret);
	if (fd >= 0)
		*devid = (uint32_t)rep.val[0];
	return fd;
}

/**
 * iommufd_remote_vfio_group() - the VFIO group node @group_id, opened anew at @server with its
 * container the context @token names (WIRE_VFIO_GROUP): a group file of ours whose container
 * another process serves (group.c). @claim_fd: our handle of the node's claim, which the new
 * file shares (-1: none).
 * Return: as iommufd_remote_vfio_bind(), without a device ID.
 */
int iommufd_remote_vfio_group(struct iommufd_server *server, uint64_t token,
			      const uint8_t *secret, unsigned int group_id, int claim_fd,
			      uint64_t *g_token, uint8_t *g_secret)
{
	struct wire_req req;
	struct wire_rep rep;

	iommufd_remote_req_init(&req, WIRE_VFIO_GROUP, token, secret);
	req.arg[0] = group_id;
	req.arg[1] = claim_fd < 0 ? UINT64_MAX : (uint64_t)claim_fd;
	return remote_vfio_open(server, &req, &rep, g_token, g_secret);
}

/*
 * mmap(2) of a file another process serves: where its memory is shareable (a vIOMMU's region,
 * a memfd), the server hands the memfd over and we map it, and the mapping is recorded with
 * the hold the server made for it (mmap.c: its munmap lets go); else the server's errno.
 * @redirect as iommufd_remote_ioctl()'s: a file whose calls are made elsewhere (a cdev bound
 * through another process) hands us that file instead, nothing mapped (MAP_FAILED, errno 0),
 * so that a mapping made before any other call goes where the device is.
 */
void *iommufd_remote_mmap(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			  void *addr, size_t len, int prot, int flags, uint64_t off, int *redirect)
{
	int fds[WIRE_NEW_FDS_MAX], nfds = 0, rc;
	struct wire_hold hold;
	struct wire_req req;
	struct wire_rep rep;
	void *p = MAP_FAILED;

	if (redirect)
		*redirect = -1;
	iommufd_remote_req_init(&req, WIRE_MMAP, token, secret);
	req.flags = redirect ? WIRE_REQ_REDIRECT : 0;
	req.arg[0] = len;
	req.arg[1] = (uint64_t)prot;
	req.arg[2] = (uint64_t)flags;
	req.arg[3] = off;
	rc = remote_call_fds(server, &req, &rep, fds, &nfds);
	if (!rc && rep.rc == WIRE_RC_REDIRECT) {
		rc = remote_redirect_take(&rep, fds, nfds, redirect);
		errno = -rc;
		return MAP_FAILED;
	}
	if (!rc)
		rc = (int)rep.rc;
	if (!rc && nfds != 1)
		rc = -EIO;
	if (rc)
		goto out_close;
	hold.id = rep.val[0];
	memcpy(hold.secret, &rep.val[1], WIRE_SECRET_LEN);
	p = sys_mmap(addr, len, prot, flags, fds[0], 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		if (flags & MAP_FIXED)
			iommufd_mmap_fixed_failed(addr, len);
		goto err_drop_hold;
	}
	rc = iommufd_mmap_remote_note(p, len, server, &hold);
	if (rc)
		goto err_unmap;
out_close:
	for (int i = 0; i < nfds; i++)
		sys_close(fds[i]);
	if (rc)
		errno = -rc;
	return p;

err_unmap:
	sys_munmap(p, len);
	p = MAP_FAILED;
err_drop_hold:
	if (hold.id)
		iommufd_remote_munmap(server, hold.id);
	goto out_close;
}

/**
 * iommufd_remote_munmap() - our mapping that @server's hold @hold names is gone: it lets go
 * (the owner's destroy no longer answers EBUSY for it). A server we cannot reach holds nothing
 * of ours any more. errno is kept.
 */
void iommufd_remote_munmap(struct iommufd_server *server, uint64_t hold)
{
	struct wire_req req;
	struct wire_rep rep;
	int saved = errno;

	iommufd_remote_req_init(&req, WIRE_MUNMAP, 0, (const uint8_t[WIRE_SECRET_LEN]){ 0 });
	req.arg[0] = hold;
	remote_call(server, &req, &rep);
	errno = saved;
}

/**
 * iommufd_remote_mmap_fork() - in a forked child: @server's copy of our parent's hold @from for
 * us, named in *@to (our copy of the parent's mapping holds the owner too)
 * Return: 0, or -errno (the server's: -ENOENT, -ENOMEM; or the call's).
 */
int iommufd_remote_mmap_fork(struct iommufd_server *server, const struct wire_hold *from,
			     struct wire_hold *to)
{
	struct wire_req req;
	struct wire_rep rep;
	int rc;

	iommufd_remote_req_init(&req, WIRE_MMAP_FORK, 0, from->secret);
	req.arg[0] = from->id;
	rc = remote_call(server, &req, &rep);
	if (!rc)
		rc = (int)rep.rc;
	if (rc)
		return rc;
	to->id = rep.val[0];
	memcpy(to->secret, &rep.val[1], WIRE_SECRET_LEN);
	return 0;
}

/* READ or WRITE; @redirect as iommufd_remote_ioctl()'s (only at an offset: @pos >= 0). */
ssize_t iommufd_remote_rw(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			  uint64_t buf, size_t count, int64_t pos, bool write, unsigned int *owed,
			  int *redirect)
{
	int fds[WIRE_NEW_FDS_MAX], nfds = 0, rc;
	struct wire_req req;
	struct wire_rep rep;

	if (redirect)
		*redirect = -1;
	iommufd_remote_req_init(&req, write ? WIRE_WRITE : WIRE_READ, token, secret);
	req.flags = redirect ? WIRE_REQ_REDIRECT : 0;
	req.arg[0] = buf;
	req.arg[1] = count;
	req.arg[2] = (uint64_t)pos;
	rc = remote_call_fds(server, &req, &rep, redirect ? fds : NULL, &nfds);
	/* What the server owes the fd's socket is bounded by its queue's transitions. */
	*owed = rc ? 0 : (unsigned int)(rep.val[0] > 4096 ? 4096 : rep.val[0]);
	if (!rc && rep.rc == WIRE_RC_REDIRECT) {
		*owed = 0;
		return remote_redirect_take(&rep, fds, nfds, redirect);
	}
	for (int i = 0; i < nfds; i++)
		sys_close(fds[i]);
	return rc ? rc : (ssize_t)rep.rc;
}

/**
 * iommufd_remote_pos() - the read/write position of the file @token of @server, before it
 * moves by @move (WIRE_POS: a read or write at the position that its server redirected)
 * Return: the position, or -errno (the server's, or the call's).
 */
int64_t iommufd_remote_pos(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			   uint64_t move)
{
	struct wire_req req;
	struct wire_rep rep;
	int rc;

	iommufd_remote_req_init(&req, WIRE_POS, token, secret);
	req.arg[0] = move;
	rc = remote_call(server, &req, &rep);
	return rc ? rc : rep.rc;
}

/*
 * The counters of this process's pins at the servers it talks to (@pid our own: the mm each
 * holds for us), or a server's own (@pid that server's).
 * Return: true when @pid is ours or a server we know, with the sums in *@pinned, *@locked
 * (@pinned NULL: only whether it is known, without a call).
 */
static bool remote_status(pid_t pid, uint64_t *pinned, uint64_t *locked)
{
	struct iommufd_server *s, *self = atomic_load(&iommufd_self_server);
	bool own = pid == getpid(), known = own;
	struct wire_req req;
	struct wire_rep rep;

	if (pinned)
		*pinned = *locked = 0;
	for (s = atomic_load_explicit(&servers, memory_order_acquire); s; s = s->next) {
		bool used;

		if (s == self || (!own && s->pid != pid))
			continue;
		known = true;
		if (!pinned)
			break;
		uiommu_mutex_lock(&s->pool_lock);
		used = s->idle != NULL;
		uiommu_mutex_unlock(&s->pool_lock);
		/* Without a connection it holds no mm of ours. */
		if (own && !used)
			continue;
		iommufd_remote_req_init(&req, WIRE_STATUS, 0, (const uint8_t[WIRE_SECRET_LEN]){ 0 });
		if (remote_call(s, &req, &rep))
			continue;
		*pinned += own ? rep.val[2] : rep.val[0];
		*locked += own ? rep.val[3] : rep.val[1];
		if (!own)
			break;
	}
	return known;
}

/*
 * An event fd has no header (remote.h): its peer's name says the server and the token, and the
 * server gives the secret to a process that shows it the fd.
 */
static int remote_adopt_event(int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	char name[WIRE_PEER_NAME_LEN], *dot;
	unsigned long long token;
	struct iommufd_server *server;
	struct wire_req req;
	struct wire_rep rep;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	size_t n;
	int rc;

	if (sys_getpeername(fd, (struct sockaddr *)&sun, &len) ||
	    len <= offsetof(struct sockaddr_un, sun_path) + 1 || sun.sun_path[0])
		return -EBADF;
	n = len - offsetof(struct sockaddr_un, sun_path) - 1;
	if (n != WIRE_PEER_NAME_LEN - 1)
		return -EBADF;
	memcpy(name, sun.sun_path + 1, n);
	name[n] = 0;
	dot = strchr(name, '.');
	if (strncmp(name, "uiommu-", 7) || !dot || dot - name != WIRE_NAME_LEN - 1)
		return -EBADF;
	*dot = 0;
	token = strtoull(dot + 1, NULL, 16);
	/* The socketpair's credentials are its maker's: the server, of our user. */
	if (sys_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || cred.uid != geteuid())
		return -EBADF;
	server = remote_server_find(name, cred.pid);
	if (IS_ERR(server))
		return PTR_ERR(server);
	if (server == atomic_load(&iommufd_self_server))
		return iommufd_file_adopt_local(fd, token, NULL);
	iommufd_remote_req_init(&req, WIRE_CLAIM, token, (const uint8_t[WIRE_SECRET_LEN]){ 0 });
	req.arg[0] = (uint64_t)fd;
	rc = remote_call(server, &req, &rep);
	if (!rc)
		rc = (int)rep.rc;
	if (rc)
		return rc;
	memcpy(req.secret, rep.val, WIRE_SECRET_LEN);
	memset(&rep, 0, sizeof(rep));
	rep.val[3] = WIRE_INFO_READABLE | WIRE_INFO_WRITABLE | WIRE_INFO_EVENT;
	rc = iommufd_file_adopt_remote(fd, server, token, req.secret, &rep);
	if (!rc)
		iommufd_event_note(fd);
	return rc;
}

/* What uiommu_is_fd() asks of an fd we do not know: one of ours that came another way? */
int iommufd_remote_adopt(int fd)
{
	uint8_t secret[WIRE_SECRET_LEN];
	struct iommufd_server *server = NULL;
	struct wire_req req;
	struct wire_rep rep;
	struct stat st;
	uint64_t token = 0;
	int rc;

	if (sys_fstat(fd, &st) || !S_ISSOCK(st.st_mode))
		return -EBADF;
	rc = iommufd_remote_fd_ident(fd, &server, &token, secret);
	if (rc == -EBADF)
		return remote_adopt_event(fd);
	if (rc)
		return rc;
	if (server == atomic_load(&iommufd_self_server))
		return iommufd_file_adopt_local(fd, token, secret);
	iommufd_remote_req_init(&req, WIRE_INFO, token, secret);
	rc = remote_call(server, &req, &rep);
	if (!rc)
		rc = (int)rep.rc;
	if (rc)
		return rc;
	rep.path[sizeof(rep.path) - 1] = 0;
	return iommufd_file_adopt_remote(fd, server, token, secret, &rep);
}

/* ---- fork ----------------------------------------------------------------------------- */

/*
 * The lists are copied whole: no thread is in the middle of changing one. Before the locks:
 * a spare connection for each server, in which the child's handler makes its first connection
 * there when it has holds to copy (remote_conn_spare()); the spare stays for the next fork.
 */
static void remote_atfork_prepare(void)
{
	if (iommufd_mmap_fork_connects())
		for (struct iommufd_server *s = atomic_load(&servers); s; s = s->next)
			iommufd_remote_spare_make(s);
	iommufd_direct_atfork_prepare();
	uiommu_mutex_lock(&servers_lock);
	iommufd_files_atfork_prepare();
	uiommu_mutex_lock(&clients_lock);
	uiommu_mutex_lock(&conns_lock);
	uiommu_mutex_lock(&settle_lock);
	iommufd_mmap_atfork_prepare(remote_handover);
}

static void remote_atfork_parent(void)
{
	uiommu_mutex_unlock(&settle_lock);
	uiommu_mutex_unlock(&conns_lock);
	uiommu_mutex_unlock(&clients_lock);
	iommufd_files_atfork_parent();
	uiommu_mutex_unlock(&servers_lock);
	iommufd_direct_atfork_parent();
	/* Last: it waits for the child's copies of our mappings' holds. */
	iommufd_mmap_atfork_parent();
}

/* Our connections to other servers are the parent's: the copies go. */
static void remote_atfork_child_pools(void)
{
	for (struct iommufd_server *s = servers; s; s = s->next) {
		uiommu_mutex_init(&s->pool_lock);
		while (s->idle) {
			struct wire_conn *conn = s->idle;

			s->idle = conn->next;
			wire_conn_free(conn);
		}
	}
}

/*
 * Nothing here calls the allocator or starts a thread (remote_fork_child): at the fork another
 * thread of the parent may have been inside the allocator, holding a lock that nothing in the
 * child lets go. Under GCC 12's ASan, whose allocator does not reset its locks in a fork child,
 * the MMAP_FORK's connection once started our life word's thread here, which waited forever
 * for such a lock (the first allocation of a new thread), and the parent, waiting for its
 * child's EOF before its fork() returns (iommufd_mmap_atfork_parent()), with it.
 */
static void remote_atfork_child(void)
{
	struct iommufd_server *parent;

	remote_fork_child = true;
	/* The served connections' pages are the parent's threads' (a hand-over's too). */
	iommufd_direct_atfork_child();
	iommufd_mmap_atfork_child(remote_handover);
	remote_atfork_child_pools();
	/* The child mapped nothing yet: its memory is its own copy, pinned by nobody. */
	atomic_store(&remote_mapped_lo, UINT64_MAX);
	atomic_store(&remote_mapped_hi, 0);
	remote_random(&client_cookie, sizeof(client_cookie));
	remote_settle_shared_forget();
	uiommu_mutex_unlock(&settle_lock);
	if (remote_handover) {
		/*
		 * The next server: it keeps the listening socket, the clients' mms and the files.
		 * The accepted connections' threads are the parent's: their fds go (their clients
		 * see EIO for a call in flight, which the gate kept from starting). Its epoll set
		 * would be shared with the parent's: it makes its own.
		 */
		remote_conn_fds_close();
		for (struct remote_client *c = clients; c; c = c->next) {
			c->conns = 0;
			atomic_store(&c->calls, 0);
			c->asking = 0;
		}
		if (epoll_fd >= 0)
			sys_close(epoll_fd);
		epoll_fd = -1;
		atomic_store(&conns_live, 0);
		uiommu_mutex_unlock(&conns_lock);
		uiommu_mutex_unlock(&clients_lock);
		iommufd_files_atfork_parent();
		uiommu_mutex_unlock(&servers_lock);
		remote_fork_child = false;
		return;
	}
	/*
	 * The parent's threads are not ours: its connections and server stay its own. Our
	 * copies of its accepted connections go, or a child that lives on without exec would
	 * keep them open after the parent died, and their clients would wait for an answer
	 * instead of seeing the hang-up (EIO).
	 */
	parent = atomic_load(&iommufd_self_server);
	remote_conn_fds_close();
	if (listen_fd >= 0)
		sys_close(listen_fd);
	if (epoll_fd >= 0)
		sys_close(epoll_fd);
	listen_fd = epoll_fd = -1;
	atomic_store(&conns_live, 0);
	atomic_store(&iommufd_self_server, NULL);
	clients = NULL; /* the parent's clients */
	uiommu_mutex_unlock(&conns_lock);
	uiommu_mutex_unlock(&clients_lock);
	iommufd_files_atfork_child();
	uiommu_mutex_unlock(&servers_lock);
	/*
	 * Our copies of the parent's mappings of other processes' regions hold them too, and so
	 * do those of its own regions, at its server (whose entry in servers is a client's now).
	 */
	iommufd_mmap_atfork_child_hold(parent);
	remote_fork_child = false;
}

static void remote_atfork_register(void)
{
	remote_random(&client_cookie, sizeof(client_cookie));
	if (pthread_atfork(remote_atfork_prepare, remote_atfork_parent, remote_atfork_child))
		die("pthread_atfork");
	uiommu_mm_remote_status_set(remote_status);
}

/* ---- exec: the hand-over ----------------------------------------------------------------- */

/*
 * The next server, in the grandchild: waits for the exec's outcome on @go (EOF: it succeeded;
 * a byte: it failed), then serves until its last file is gone. Never returns.
 */
static __attribute__((noreturn)) void remote_handover_serve(int go)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
	struct iommufd_server *self;
	sigset_t old;
	char c;
	ssize_t n;

	/* The program's handlers are not for this process: nothing but SIGKILL reaches it. */
	remote_block_signals(&old);
	do
		n = sys_recv(go, &c, 1, 0);
	while (n < 0 && errno == EINTR);
	sys_close(go);
	if (n != 0)
		_exit(0); /* the exec failed: the process that called it serves on */
	epoll_fd = sys_epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0 || sys_epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev))
		_exit(1);
	uiommu_fd_keep(epoll_fd);
	iommufd_files_rewatch();
	iommufd_mmap_forks_rewatch();
	iommufd_mmap_handover_forget();
	remote_server_loop(true);
	/*
	 * The name goes with us: the exec'd image that shares our pid has servers of its own. So
	 * does the session directory if the session ended while we served.
	 */
	self = atomic_load(&iommufd_self_server);
	session_server_exit(self->pid, self->name);
	_exit(0);
}

/**
 * uiommu_exec_handover() - before an execve: hand this process's serving to a new process
 * Called by the preload layer's exec wrappers. When this process serves files, forks their
 * next server, which starts serving when the exec succeeds; this process serves nothing until
 * uiommu_exec_failed() (which only a failed exec reaches).
 * Return: a handle for uiommu_exec_failed(), or -1 (nothing served, or no hand-over possible:
 * the exec goes on as before, and this process's clients get ENODEV after it; their direct
 * copies end here, remote_direct.c's iommufd_direct_shut()).
 */
UIOMMU_EXPORT int uiommu_exec_handover(void)
{
	int saved_errno = errno, go[2], rc = -1;
	pid_t mid;

	if (!atomic_load(&iommufd_self_server) || listen_fd < 0 || !iommufd_files_served())
		return -1;
	if (uiommu_should_fail() || sys_socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go))
		goto out;
	/* The next server's end: the copy keeps it through its clean-up of the program's fds. */
	uiommu_fd_keep(go[0]);
	pthread_rwlock_wrlock(&serve_gate);
	/*
	 * The exec keeps our pid: a client's direct copy must not reach the new image. Every
	 * translation dies (and every copy in flight ends) here; the clients then ask again,
	 * which the gate holds until the hand-over is done.
	 */
	iommufd_direct_invalidate();
	remote_handover = true;
	/* The user's count of the pins we serve goes to the next server (locked_vm.c). */
	(void)uiommu_locked_vm_handover();
	mid = fork();
	if (mid == 0) {
		pid_t server;

		sys_close(go[1]);
		iommufd_files_handover_child();
		/*
		 * Of the program's other fds (its pipes, sockets, files) the copy keeps none: a
		 * reader waiting for EOF on them must not wait for the last file to go.
		 */
		uiommu_fds_close_unkept();
		/* The fork handlers keep the server in the grandchild too. */
		server = fork();
		if (server)
			_exit(server < 0);
		remote_handover = false;
		pthread_rwlock_init(&serve_gate, NULL);
		remote_handover_serve(go[0]);
	}
	remote_handover = false;
	sys_close(go[0]);
	if (mid > 0) {
		int status = 0;
		pid_t w;

		do
			w = waitpid(mid, &status, 0);
		while (w < 0 && errno == EINTR);
		/*
		 * The middle process made the server unless it says otherwise (reaped by the
		 * program's own SIGCHLD handling: assume it did; an undo then finds nobody).
		 */
		if (w < 0 || (WIFEXITED(status) && !WEXITSTATUS(status)))
			rc = go[1];
	}
	if (rc < 0) {
		sys_close(go[1]);
		pthread_rwlock_unlock(&serve_gate);
	}
out:
	/* The exec goes on without a hand-over, keeping our pid: no client copies into it. */
	if (rc < 0)
		iommufd_direct_shut();
	errno = saved_errno;
	return rc;
}

/**
 * uiommu_exec_failed() - the execve after uiommu_exec_handover() failed: undo the hand-over
 * The next server exits unused (this returns once it has let go of everything); this process
 * serves on as before.
 */
UIOMMU_EXPORT void uiommu_exec_failed(int handle)
{
	int saved_errno = errno;
	char c;

	if (handle < 0) {
		/* A hand-over that could not be made shut the direct path (or nothing was served). */
		iommufd_direct_reopen();
		return;
	}
	/* EOF: the next server closed its end, on its way out. */
	if (sys_send(handle, "x", 1, MSG_NOSIGNAL) == 1)
		while (sys_recv(handle, &c, 1, 0) < 0 && errno == EINTR)
			;
	sys_close(handle);
	pthread_rwlock_unlock(&serve_gate);
	errno = saved_errno;
}
