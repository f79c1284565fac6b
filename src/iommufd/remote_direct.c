// SPDX-License-Identifier: MIT
/*
 * The direct path of ACCESS_RW from another process (docs/processes.md, "The direct path").
 *
 * Why. A client's IOMMU_TEST_OP_ACCESS_RW of a context another process serves travels there
 * and back (remote.c): a round trip costs several times a 64 KiB memcpy before any byte
 * moves, so no design that copies in the server can come near memcpy. Here the client copies
 * itself, with one process_vm_writev()/readv() into the server's memory, and asks the server
 * only for the addresses: the server's translation is cached in the client and used until the
 * server invalidates it.
 *
 * Data model. Per connection (remote.c's struct wire_conn on the client, its connection thread
 * on the server) one shared page (struct wire_direct_page, remote.h), a memfd the server makes
 * at the client's first WIRE_DIRECT and maps in both processes:
 *   gen      the generation at which translations are valid; written by the server only.
 *   busy     0, or the generation a copy in flight of the client uses; the client's only.
 *   waiters  invalidators waiting for busy to change; the server's (the client wakes them).
 *   runs     WIRE_TRANSLATE's answer: the server's host runs for [iova, iova + length).
 * The server keeps one generation, direct_gen, for all its translations; WIRE_TRANSLATE reads
 * it under the locks the server's own ACCESS_RW holds (access.c) and returns it with the runs.
 * The client keeps the last translation of each connection (struct direct_client) with the
 * generation it came with; it is valid only while the page's gen is that generation.
 *
 * What is offered (access.c, iommufd_access_translate()): exactly what the server's own
 * ACCESS_RW would copy through in place, i.e. areas of the server's own user memory, with its
 * checks (IOAS bounds, gaps, IOMMU_WRITE for a write, an area being unmapped). Anything else
 * (the slow path flag, file or dma-buf areas, another process's memory behind the window, an
 * errno, a copy the host refuses) goes the round trip, which stays the reference: its answer,
 * errno included, is the call's.
 *
 * Coherence with invalidation (the hard part). The kernel's iommufd_access_rw() holds the
 * IOAS's iova_rwsem across its copy, so an unmap returns only after copies that saw the old
 * mapping. Here every change that can make a translation wrong (an area removed from an IOAS:
 * io_pagetable.c; an access leaving its IOAS: access.c; a hand-over before exec: remote.c)
 * calls iommufd_direct_invalidate() after the change and before it returns. It bumps
 * direct_gen, stores the new generation in every page, and waits while a page's busy names an
 * older generation. The client stores busy = G (its translation's generation), then loads gen,
 * and copies only when gen is still G; it stores busy = 0 after the copy. Both pairs are
 * sequentially consistent (a store, then a load of the other side's word: Dekker's pattern),
 * so either the client sees the new gen and copies nothing, or the invalidator sees busy = G
 * and waits for the copy to end. A translation made before the change carries a generation
 * the invalidation then kills (it was read under the lock the change takes); one made after
 * it sees the new state. The client's cost: two stores and two loads around the system call.
 *
 * Bounds and liveness (a client may be hostile, or stopped). The wait sleeps on the busy word
 * (a futex in the shared page, which the client wakes when waiters is set) in slices, and
 * stops when the client hung up its connection (its process is gone: no copy of it is in
 * flight) or after DIRECT_WAIT_MS. Past that bound the connection's direct path is revoked
 * (its page's gen becomes 0, which no translation has: every later copy of it goes the round
 * trip), and the copy it had in flight may land after the invalidation returned: a client
 * stopped (SIGSTOP, a debugger) between its check and its system call for that long. That is
 * the one difference from the kernel, where a copy cannot be stopped inside the system call.
 *
 * Who the client writes to. DIRECT's reply names the serving process by its pid (not the
 * socket's listen() caller, which a hand-over leaves behind; the client believes it only when
 * the kernel's SCM_CREDENTIALS on that reply say the same) and hands over its life word: a
 * robust futex in a page of its own, which a thread of the server that only waits owns (its
 * robust list has that one entry). The kernel marks the word FUTEX_OWNER_DIED when that thread
 * ends, which is at the process's exit, before it is a zombie (so before its pid can be
 * reused), and at any exec, even a raw system call's (exec ends every thread). The copy is
 * uiommu_life_copyv() (src/mm: the one copy into another process at its life word's thread,
 * which the serving side makes into its clients too): it loads the word before the call (a
 * write reaches nothing else) and after it (or a read does not count): a load where a pidfd
 * would cost a system call, and an exec is seen too, which a pidfd does not. The copy names that thread
 * by its tid, not the server by its pid (as mm_remote.c does for a client's life word): an
 * exec ends the thread before it swaps the mm, and an ended thread has no mm to copy to, so
 * an exec between the load and the system call, even a raw one, leaves the copy nowhere to
 * land (ESRCH; the round trip then answers). What is left open is that tid reused by another
 * process of the user between the load and the call (the pid space wrapping in that
 * instant), as for the pidfd checks elsewhere. The hand-over also
 * invalidates every translation first (remote.c), so a client asks the next server anew; an
 * exec the library sees but cannot hand over (uiommu_exec_handover() answers -1) shuts the
 * direct path (iommufd_direct_shut()) until uiommu_exec_failed(), so that the window is left
 * only to an exec behind the library's back.
 *
 * Security. A client gets runs only of an access fd it holds (the file's token and secret,
 * as every request: possession of the fd), only of the server's own memory that access
 * reaches, and only on its own connection's page; a hostile client can make the server wait
 * at most DIRECT_WAIT_MS once per connection, and the server never trusts a word of the page
 * it does not own (its generation is kept on its side too). The page's memfd and the life
 * word's are sealed (direct_memfd_make()): a client cannot shrink them under our mappings (a
 * SIGBUS here), and none writes the life word the others believe.
 *
 * Switch: UIOMMU_REMOTE_DIRECT=0 in a client's environment keeps its calls on the round trip.
 *
 * Locking: direct_lock protects direct_list, each direct_serve's gen and linkage, direct_life
 * and direct_shut_down. Nothing takes another lock under it but the fork handlers (remote.c), which take
 * it first and then the wire's leaf locks; an invalidation takes it with whatever its caller
 * holds (an unmap's caller's locks), none of which is taken under it, and a client's new
 * connection (its HELLO's life word, iommufd_direct_life_share()) with none. It is held across an
 * invalidation's waits, so a connection's end and a fork (which take it) wait for them:
 * bounded, and at once when the client is gone.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "lib/thread.h"
#include "mm/mm.h"

#define DIRECT_PAGE_LEN 4096
#define DIRECT_WAIT_MS 2000    /* the longest an invalidation waits for one connection */
#define DIRECT_SLICE_NS 2000000 /* between two looks at the client's liveness */
#define DIRECT_RW_MAX (16ull << 20) /* the selftest's ACCESS_RW limit */

_Static_assert(sizeof(struct wire_direct_page) <= DIRECT_PAGE_LEN, "one page");

/* Wrap-aware: is generation @a older than @b? */
static bool direct_gen_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static long direct_futex(_Atomic uint32_t *word, int op, uint32_t val,
			 const struct timespec *timeout)
{
	return sys_futex((void *)word, op, val, timeout);
}

/* ---- the server ------------------------------------------------------------------------ */

struct direct_serve {
	struct direct_serve *next;     /* in direct_list; direct_lock */
	struct wire_direct_page *page; /* shared with the client; constant */
	int conn_fd;                   /* its connection, for the client's hang-up; constant */
	uint32_t gen;                  /* what page->gen says, kept here; direct_lock */
	atomic_bool revoked;           /* set once, under direct_lock */
};

/* Protects direct_list, each one's gen, direct_life, direct_shut_down; order: after an unmap's
 * locks, before the wire's leaf locks (fork handlers only). */
UIOMMU_MUTEX_DEFINE(direct_lock);
static struct direct_serve *direct_list;

/*
 * This process's life word (the essay's "Who the client writes to"): a robust futex in a
 * page of its own that every client maps read-only, and every server this process is a client
 * of (its HELLO, iommufd_direct_life_share(): mm_remote.c copies on its thread), owned by a
 * thread that only waits. The
 * kernel marks it FUTEX_OWNER_DIED when that thread ends: at the process's exit (before it is
 * a zombie, so before its pid can be reused) and at an exec (which ends every thread).
 */
struct direct_life {
	struct robust_list_head head; /* that thread's robust list: one entry */
	struct robust_list entry;
	_Atomic uint32_t *word;       /* in the page: the thread's tid while it lives */
	int memfd;
	atomic_int forever;           /* what the thread waits on; never changes */
};
static struct direct_life *direct_life; /* made at the first need; direct_lock */
static atomic_uint direct_nr;     /* pages listed: an invalidation without any is one bump */
static _Atomic uint32_t direct_gen = 1; /* never 0: a page's gen of 0 offers nothing */
static bool direct_shut_down;     /* an exec without a hand-over is coming: none; direct_lock */

uint32_t iommufd_direct_gen(void)
{
	return atomic_load(&direct_gen);
}

/*
 * A memfd of one page for the pages DIRECT shares, sealed with @seals: a client holds its fd,
 * and one that shrank it would have us killed by SIGBUS at our next look through our mapping.
 * Its fd, or -ENOMEM, or the host's -errno.
 */
static int direct_memfd_make(const char *name, unsigned int seals)
{
	int fd, rc;

	fd = uiommu_should_fail() ? -1 : sys_memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -ENOMEM;
	if (uiommu_should_fail()) {
		rc = -ENOMEM;
		goto err_close;
	}
	if (sys_ftruncate(fd, DIRECT_PAGE_LEN) ||
	    sys_fcntl(fd, F_ADD_SEALS, (long)seals)) {
		rc = -errno;
		goto err_close;
	}
	uiommu_fd_keep(fd);
	return fd;

err_close:
	sys_close(fd);
	return rc;
}

static void *direct_life_main(void *arg)
{
	struct direct_life *life = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	life->head.list.next = &life->entry;
	life->entry.next = &life->head.list;
	life->head.futex_offset = (long)((char *)life->word - (char *)&life->entry);
	life->head.list_op_pending = NULL;
	/* This thread takes no robust mutex of libc's: the list can be ours alone. */
	if (sys_set_robust_list(&life->head, sizeof(life->head)))
		atomic_store(life->word, FUTEX_OWNER_DIED);
	else
		atomic_store(life->word, (uint32_t)sys_gettid());
	direct_futex(life->word, FUTEX_WAKE, INT_MAX, NULL);
	for (;;)
		direct_futex((_Atomic uint32_t *)&life->forever, FUTEX_WAIT_PRIVATE, 0, NULL);
	return NULL;
}

/* This process's life word, made with its thread at the first need (direct_lock). */
static struct direct_life *direct_life_get(void)
{
	struct direct_life *life = direct_life;
	pthread_attr_t attr;
	pthread_t thread;
	void *page;

	lockdep_assert_held(&direct_lock);
	if (life)
		return life;
	life = uiommu_zalloc(sizeof(*life));
	if (!life)
		return ERR_PTR(-ENOMEM);
	life->memfd = direct_memfd_make("uiommu-life", F_SEAL_SHRINK | F_SEAL_GROW);
	if (life->memfd < 0)
		goto err_free;
	page = sys_mmap(NULL, DIRECT_PAGE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, life->memfd, 0);
	if (page == MAP_FAILED)
		goto err_close;
	/* Every client believes the word: none writes it (ours is the one writable mapping). */
	if (sys_fcntl(life->memfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL))
		goto err_unmap;
	life->word = page;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (uiommu_should_fail() || uiommu_thread_create(&thread, &attr, direct_life_main, life)) {
		pthread_attr_destroy(&attr);
		goto err_unmap;
	}
	pthread_attr_destroy(&attr);
	/* Its tid, once it set its robust list (FUTEX_OWNER_DIED: it could not; kept anyway). */
	while (!atomic_load(life->word))
		direct_futex(life->word, FUTEX_WAIT, 0, NULL);
	direct_life = life;
	return life;

err_unmap:
	sys_munmap(page, DIRECT_PAGE_LEN);
err_close:
	sys_close(life->memfd);
err_free:
	uiommu_free(life);
	return ERR_PTR(-ENOMEM);
}

/**
 * iommufd_direct_life_share() - a fd of this process's life word's page, for a HELLO: the
 * serving process checks a client with one load of it (mm_remote.c)
 * Return: the fd (O_CLOEXEC), or -ENOMEM (the client's copies keep the mem fd's check; also
 * with UIOMMU_REMOTE_LIFE=0 in this process's environment, for comparisons).
 */
int iommufd_direct_life_share(void)
{
	const char *env = getenv("UIOMMU_REMOTE_LIFE");
	struct direct_life *life;
	int fd = -ENOMEM;

	if (env && !strcmp(env, "0"))
		return -ENOMEM;
	uiommu_mutex_lock(&direct_lock);
	life = direct_life_get();
	if (!IS_ERR(life) && !(atomic_load(life->word) & FUTEX_OWNER_DIED) &&
	    !uiommu_should_fail())
		fd = sys_fcntl(life->memfd, F_DUPFD_CLOEXEC, 0);
	uiommu_mutex_unlock(&direct_lock);
	return fd < 0 ? -ENOMEM : fd;
}

/* Has the client of @ds hung up its connection (its process is gone, or let it go)? */
static bool direct_client_gone(const struct direct_serve *ds)
{
	struct pollfd p = { .fd = ds->conn_fd, .events = POLLRDHUP };

	return sys_poll_now(&p) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static uint64_t direct_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A new generation, never 0 (which names none): every translation made before it is dead. */
static uint32_t direct_gen_bump(void)
{
	uint32_t gen = atomic_fetch_add(&direct_gen, 1) + 1;

	if (!gen)
		gen = atomic_fetch_add(&direct_gen, 1) + 1;
	return gen;
}

/* Revokes @ds's direct path (direct_lock): gen 0, which no translation has, from now on. */
static void direct_serve_revoke(struct direct_serve *ds)
{
	lockdep_assert_held(&direct_lock);
	atomic_store(&ds->revoked, true);
	ds->gen = 0;
	atomic_store(&ds->page->gen, 0);
}

/* Waits until @ds's client has no copy in flight at a generation older than @gen (direct_lock). */
static void direct_serve_wait(struct direct_serve *ds, uint32_t gen)
{
	struct wire_direct_page *page = ds->page;
	uint64_t deadline = 0;

	lockdep_assert_held(&direct_lock);
	/* Before the look at busy: a client that clears it after the look then wakes us. */
	atomic_fetch_add(&page->waiters, 1);
	for (;;) {
		uint32_t busy = atomic_load(&page->busy);
		struct timespec slice = { .tv_nsec = DIRECT_SLICE_NS };

		if (!busy || !direct_gen_before(busy, gen) || direct_client_gone(ds))
			break;
		if (!deadline) {
			deadline = direct_now_ns() + DIRECT_WAIT_MS * 1000000ull;
		} else if (direct_now_ns() > deadline) {
			/* Stopped or hostile: its direct path ends here (the essay's one limit). */
			direct_serve_revoke(ds);
			break;
		}
		direct_futex(&page->busy, FUTEX_WAIT, busy, &slice);
	}
	atomic_fetch_sub(&page->waiters, 1);
}

/**
 * iommufd_direct_invalidate() - every translation handed out so far dies, and every client
 * copy that used one has ended when this returns
 * Called after a change that may make one wrong (an unmap, an access leaving its IOAS, an
 * exec's hand-over), with no iommufd lock held. Waits at most DIRECT_WAIT_MS per client.
 */
void iommufd_direct_invalidate(void)
{
	uint32_t gen = direct_gen_bump();

	/* Pairs with the setup's count before its read of direct_gen: one of us sees the other. */
	if (!atomic_load(&direct_nr))
		return;
	uiommu_mutex_lock(&direct_lock);
	for (struct direct_serve *ds = direct_list; ds; ds = ds->next) {
		if (atomic_load(&ds->revoked))
			continue;
		if (direct_gen_before(ds->gen, gen)) {
			ds->gen = gen;
			atomic_store(&ds->page->gen, gen);
		}
		direct_serve_wait(ds, gen);
	}
	uiommu_mutex_unlock(&direct_lock);
}

/**
 * iommufd_direct_shut() - an exec without a hand-over comes (uiommu_exec_handover() could not
 * make one): it keeps our pid, and a client that found the life word alive just before the
 * exec would write into the new image just after. So every connection's direct path is
 * revoked now, after its copy in flight (as an invalidation), and no new one starts until
 * iommufd_direct_reopen(): the clients go the round trip, which the exec ends cleanly.
 */
void iommufd_direct_shut(void)
{
	uint32_t gen = direct_gen_bump();

	uiommu_mutex_lock(&direct_lock);
	direct_shut_down = true;
	for (struct direct_serve *ds = direct_list; ds; ds = ds->next) {
		if (atomic_load(&ds->revoked))
			continue;
		direct_serve_revoke(ds);
		direct_serve_wait(ds, gen);
	}
	uiommu_mutex_unlock(&direct_lock);
}

/* The exec after iommufd_direct_shut() failed: new connections may have a direct path again. */
void iommufd_direct_reopen(void)
{
	uiommu_mutex_lock(&direct_lock);
	direct_shut_down = false;
	uiommu_mutex_unlock(&direct_lock);
}

/**
 * iommufd_direct_serve_setup() - WIRE_DIRECT on the connection @conn_fd: its shared page
 * @dsp: the connection's state, set here (iommufd_direct_serve_end() at its end)
 * The page's memfd and the life word's go back with the reply (@new_fds); val[0] our pid,
 * val[1] the life word's value while we live.
 * Return: 0, -EEXIST (a second time), -ENOMEM, -ENOSYS (no robust futexes), -ENOTCONN (shut
 * before an exec), or the host's -errno.
 */
int iommufd_direct_serve_setup(struct direct_serve **dsp, int conn_fd, int *new_fds,
			       unsigned int *nr_new, uint64_t *val)
{
	struct direct_life *life;
	struct direct_serve *ds;
	int memfd, lifefd, rc;
	void *page;

	if (*dsp)
		return -EEXIST;
	ds = uiommu_zalloc(sizeof(*ds));
	if (!ds)
		return -ENOMEM;
	memfd = direct_memfd_make("uiommu-direct", F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	if (memfd < 0) {
		rc = memfd;
		goto err_free;
	}
	page = uiommu_should_fail() ? MAP_FAILED :
				      sys_mmap(NULL, DIRECT_PAGE_LEN, PROT_READ | PROT_WRITE,
					       MAP_SHARED, memfd, 0);
	if (page == MAP_FAILED) {
		rc = -ENOMEM;
		goto err_close_memfd;
	}
	ds->page = page;
	ds->conn_fd = conn_fd;
	uiommu_mutex_lock(&direct_lock);
	if (direct_shut_down) {
		uiommu_mutex_unlock(&direct_lock);
		rc = -ENOTCONN;
		goto err_unmap;
	}
	life = direct_life_get();
	rc = IS_ERR(life) ? PTR_ERR(life) : 0;
	if (!rc && (atomic_load(life->word) & FUTEX_OWNER_DIED))
		rc = -ENOSYS; /* no robust futexes: nothing would tell our death */
	lifefd = rc || uiommu_should_fail() ? -1 : sys_fcntl(life->memfd, F_DUPFD_CLOEXEC, 0);
	if (lifefd < 0) {
		uiommu_mutex_unlock(&direct_lock);
		rc = rc ? rc : -EMFILE;
		goto err_unmap;
	}
	val[1] = atomic_load(life->word);
	atomic_fetch_add(&direct_nr, 1);
	ds->gen = atomic_load(&direct_gen);
	atomic_store(&ds->page->gen, ds->gen);
	ds->next = direct_list;
	direct_list = ds;
	uiommu_mutex_unlock(&direct_lock);
	*dsp = ds;
	new_fds[0] = memfd;
	new_fds[1] = lifefd;
	*nr_new = 2;
	val[0] = (uint64_t)getpid();
	return 0;

err_unmap:
	sys_munmap(page, DIRECT_PAGE_LEN);
err_close_memfd:
	sys_close(memfd);
err_free:
	uiommu_free(ds);
	return rc;
}

/**
 * iommufd_direct_serve_translate() - WIRE_TRANSLATE: the runs of [@iova, @iova + @length) of
 * the access fd @token, @secret, for ACCESS_RW @flags, into @ds's page
 * Return: 0 with val[0] the generation and val[1] the number of runs; -ENOTCONN when this
 * connection has no direct path (no WIRE_DIRECT, or revoked); -EAGAIN for what only the round
 * trip does; else the errno of the server's ACCESS_RW.
 */
int iommufd_direct_serve_translate(struct direct_serve *ds, uint64_t token, const uint8_t *secret,
				   uint64_t iova, uint64_t length, uint32_t flags, uint64_t *val)
{
	unsigned int nr;
	uint32_t gen;
	int rc;

	if (!ds || atomic_load(&ds->revoked))
		return -ENOTCONN;
	rc = iommufd_test_access_translate(token, secret, iova, length, flags, &gen, ds->page->runs,
					   WIRE_DIRECT_RUNS_MAX, &nr);
	if (rc)
		return rc;
	val[0] = gen;
	val[1] = nr;
	return 0;
}

/* The connection of @ds ends (its thread, after its last request). */
void iommufd_direct_serve_end(struct direct_serve *ds)
{
	struct direct_serve **pos;

	if (!ds)
		return;
	uiommu_mutex_lock(&direct_lock);
	for (pos = &direct_list; *pos != ds; pos = &(*pos)->next)
		;
	*pos = ds->next;
	atomic_fetch_sub(&direct_nr, 1);
	uiommu_mutex_unlock(&direct_lock);
	sys_munmap(ds->page, DIRECT_PAGE_LEN);
	uiommu_free(ds);
}

void iommufd_direct_atfork_prepare(void)
{
	uiommu_mutex_lock(&direct_lock);
}

void iommufd_direct_atfork_parent(void)
{
	uiommu_mutex_unlock(&direct_lock);
}

/*
 * The pages are the parent's connections' (their threads did not come along): they go. The
 * allocator is not ours to call here (remote.c's remote_atfork_child()): freed later.
 */
void iommufd_direct_atfork_child(void)
{
	while (direct_list) {
		struct direct_serve *ds = direct_list;

		direct_list = ds->next;
		sys_munmap(ds->page, DIRECT_PAGE_LEN);
		uiommu_free_after_fork(ds);
	}
	atomic_store(&direct_nr, 0);
	/* Its thread is the parent's: the child makes its own at its first need. */
	if (direct_life) {
		sys_munmap((void *)direct_life->word, DIRECT_PAGE_LEN);
		sys_close(direct_life->memfd);
		uiommu_free_after_fork(direct_life);
		direct_life = NULL;
	}
	uiommu_mutex_unlock(&direct_lock);
}

/* ---- the client ------------------------------------------------------------------------ */

/* One connection's direct path: its page, its server, its last translation. */
struct direct_client {
	struct wire_direct_page *page; /* shared with the server */
	const _Atomic uint32_t *life;  /* the server's life word, mapped read-only */
	uint32_t life_tid;             /* its value while the server lives */
	pid_t server_pid;              /* the serving process (not the listen() caller) */
	bool off;                      /* not offered on this connection: the round trip */
	/* The last translation, valid while page->gen is gen (0: none). */
	uint32_t gen;
	uint64_t token;
	uint64_t iova, len;
	bool write;
	unsigned int nr;
	struct wire_direct_run runs[WIRE_DIRECT_RUNS_MAX];
};

static atomic_ulong direct_copies; /* uiommu_remote_direct_copies() */

/* UIOMMU_REMOTE_DIRECT=0 keeps this process on the round trip; read once. */
static bool direct_enabled(void)
{
	static atomic_int enabled = -1;
	int v = atomic_load_explicit(&enabled, memory_order_relaxed);

	if (v < 0) {
		const char *env = getenv("UIOMMU_REMOTE_DIRECT");

		v = !(env && !strcmp(env, "0"));
		atomic_store_explicit(&enabled, v, memory_order_relaxed);
	}
	return v;
}

/* @after_fork: in a forked child's fork handler (uiommu_free_after_fork()). */
void iommufd_direct_client_free(struct direct_client *dc, bool after_fork)
{
	if (!dc)
		return;
	if (dc->page)
		sys_munmap(dc->page, DIRECT_PAGE_LEN);
	if (dc->life)
		sys_munmap((void *)dc->life, DIRECT_PAGE_LEN);
	if (after_fork)
		uiommu_free_after_fork(dc);
	else
		uiommu_free(dc);
}

/*
 * WIRE_DIRECT on @conn: its direct path, in *@dcp (marked off when the server does not offer
 * one). 0, -ENOMEM, or -EIO/-EPIPE when the connection broke.
 *
 * The reply is a claim of the server's, which may lie (docs/processes.md, "The direct path"):
 * the pid it names must be the one the kernel says sent it (SCM_CREDENTIALS), the tid a live
 * thread of that pid whose word says so, and both memfds sealed pages; else the round trip.
 */
static int direct_client_setup(struct wire_conn *conn, struct direct_client **dcp)
{
	int fds[WIRE_NEW_FDS_MAX], nfds = 0, rc;
	struct direct_client *dc;
	struct wire_req req;
	struct wire_rep rep;
	void *page, *life;
	pid_t sender;

	dc = uiommu_zalloc(sizeof(*dc));
	if (!dc)
		return -ENOMEM;
	iommufd_remote_req_init(&req, WIRE_DIRECT, 0, (const uint8_t[WIRE_SECRET_LEN]){ 0 });
	rc = iommufd_remote_conn_call_from(conn, &req, &rep, fds, &nfds, &sender);
	if (rc) {
		uiommu_free(dc);
		return rc;
	}
	dc->off = true;
	if (!rep.rc && nfds == 2 && rep.val[0] && rep.val[0] == (uint64_t)sender &&
	    rep.val[1] && rep.val[1] <= FUTEX_TID_MASK &&
	    uiommu_memfd_sealed_len(fds[0], DIRECT_PAGE_LEN) &&
	    uiommu_memfd_sealed_len(fds[1], DIRECT_PAGE_LEN)) {
		page = uiommu_should_fail() ? MAP_FAILED :
					      sys_mmap(NULL, DIRECT_PAGE_LEN,
						       PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
		/*
		 * Private and read-only: it is sealed against writable shared mappings, and a
		 * page never written is the file's own, the kernel's store at the server's death
		 * included.
		 */
		life = page == MAP_FAILED ? MAP_FAILED :
					    sys_mmap(NULL, DIRECT_PAGE_LEN, PROT_READ,
						     MAP_PRIVATE, fds[1], 0);
		/*
		 * Copies go to the word's thread by its tid: it must be a live thread of the
		 * server, or a lying reply could aim them at another process of the user.
		 */
		if (life != MAP_FAILED && !uiommu_life_word_names(life, (int)rep.val[0],
								  (uint32_t)rep.val[1])) {
			sys_munmap(life, DIRECT_PAGE_LEN);
			life = MAP_FAILED;
		}
		if (life != MAP_FAILED) {
			dc->page = page;
			dc->life = life;
			dc->life_tid = (uint32_t)rep.val[1];
			dc->server_pid = (pid_t)rep.val[0];
			dc->off = false;
		} else if (page != MAP_FAILED) {
			sys_munmap(page, DIRECT_PAGE_LEN);
		}
	}
	for (int i = 0; i < nfds; i++)
		sys_close(fds[i]);
	*dcp = dc;
	return 0;
}

/*
 * WIRE_TRANSLATE of [@iova, @iova + @len) of the access @token for @write on @conn, into @dc.
 * 0; >0 when it is not to be used (the round trip answers); -EIO/-EPIPE when the connection
 * broke.
 */
static int direct_translate(struct wire_conn *conn, struct direct_client *dc, uint64_t token,
			    const uint8_t *secret, uint64_t iova, uint64_t len, bool write)
{
	struct wire_req req;
	struct wire_rep rep;
	uint64_t sum = 0;
	int rc;

	dc->gen = 0;
	iommufd_remote_req_init(&req, WIRE_TRANSLATE, token, secret);
	req.arg[0] = iova;
	req.arg[1] = len;
	req.arg[2] = write ? MOCK_ACCESS_RW_WRITE : 0;
	rc = iommufd_remote_conn_call(conn, &req, &rep, NULL, NULL);
	if (rc)
		return rc;
	if (rep.rc == -ENOTCONN)
		dc->off = true;
	if (rep.rc || !rep.val[0] || rep.val[0] > UINT32_MAX || !rep.val[1] ||
	    rep.val[1] > WIRE_DIRECT_RUNS_MAX)
		return 1;
	memcpy(dc->runs, dc->page->runs, sizeof(dc->runs[0]) * rep.val[1]);
	for (unsigned int i = 0; i < rep.val[1]; i++)
		if (check_add_overflow(sum, dc->runs[i].len, &sum))
			return 1;
	if (sum != len)
		return 1; /* not the answer asked for: not used */
	dc->nr = (unsigned int)rep.val[1];
	dc->token = token;
	dc->iova = iova;
	dc->len = len;
	dc->write = write;
	dc->gen = (uint32_t)rep.val[0];
	return 0;
}

/* Does @dc's translation cover [@iova, @iova + @len) of @token for @write, still valid? */
static bool direct_cached(const struct direct_client *dc, uint64_t token, uint64_t iova,
			  uint64_t len, bool write)
{
	return dc->gen && dc->token == token && (dc->write || !write) && iova >= dc->iova &&
	       iova - dc->iova <= dc->len && len <= dc->len - (iova - dc->iova) &&
	       atomic_load_explicit(&dc->page->gen, memory_order_relaxed) == dc->gen;
}

/*
 * The copy itself, through @dc's translation, @len bytes from byte @skip of it, to or from
 * @uptr. Return: true when every byte moved; false when nothing is to be trusted (the round
 * trip then does it all again).
 */
static bool direct_copy(struct direct_client *dc, uint64_t uptr, uint64_t skip, uint64_t len,
			bool write)
{
	struct iovec remote[WIRE_DIRECT_RUNS_MAX];
	struct wire_direct_page *page = dc->page;
	unsigned long nr = 0;
	uint64_t left = len;
	int rc;

	for (unsigned int i = 0; i < dc->nr && left; i++) {
		uint64_t run = dc->runs[i].len;

		if (skip >= run) {
			skip -= run;
			continue;
		}
		run -= skip;
		if (run > left)
			run = left;
		remote[nr].iov_base = (void *)(uintptr_t)(dc->runs[i].host + skip);
		remote[nr++].iov_len = run;
		left -= run;
		skip = 0;
	}
	/*
	 * The Dekker pair with iommufd_direct_invalidate(): busy first, then gen. The copy is at
	 * the life word's thread: it has the server's mm, or none once the server exec'd.
	 */
	atomic_store(&page->busy, dc->gen);
	rc = atomic_load(&page->gen) != dc->gen ?
		     -ESTALE :
		     uiommu_life_copyv(dc->life, dc->life_tid, (void *)(uintptr_t)uptr, len, remote,
				       nr, write);
	atomic_store(&page->busy, 0);
	if (atomic_load(&page->waiters))
		direct_futex(&page->busy, FUTEX_WAKE, INT_MAX, NULL);
	if (rc) {
		/* The host refuses (Yama's ptrace scope, seccomp): not on this connection again. */
		if (rc == -EPERM || rc == -ENOSYS)
			dc->off = true;
		return false;
	}
	atomic_fetch_add_explicit(&direct_copies, 1, memory_order_relaxed);
	return true;
}

/**
 * iommufd_direct_access_rw() - IOMMU_TEST_CMD at our @arg on a context @server serves: when
 * it is an ACCESS_RW the server offers directly, do it here
 * Return: true when done (the ioctl answers 0); false when the round trip must do it (it
 * answers whatever the server's ACCESS_RW does). errno is kept.
 */
bool iommufd_direct_access_rw(struct iommufd_server *server, uint64_t arg)
{
	struct uiommu_mm *mm = iommufd_caller_mm();
	uint8_t secret[WIRE_SECRET_LEN];
	struct iommufd_server *owner;
	struct direct_client **dcp;
	struct iommu_test_cmd cmd;
	struct wire_conn *conn;
	int saved = errno, rc;
	uint64_t token;
	bool write, done = false;

	if (!direct_enabled() || !mm || uiommu_copy_from_user(mm, &cmd, arg, sizeof(cmd)))
		goto out;
	write = cmd.access_rw.flags & MOCK_ACCESS_RW_WRITE;
	if (cmd.size != sizeof(cmd) || cmd.op != IOMMU_TEST_OP_ACCESS_RW || cmd.__reserved ||
	    (cmd.access_rw.flags & ~MOCK_ACCESS_RW_WRITE) || !cmd.access_rw.length ||
	    cmd.access_rw.length > DIRECT_RW_MAX)
		goto out;
	/* An access fd another process serves, the same one as this context. */
	if (cmd.id > INT_MAX || iommufd_file_remote_ident((int)cmd.id, &owner, &token, secret) ||
	    owner != server)
		goto out;
	conn = iommufd_remote_conn_take(server, &rc);
	if (!conn)
		goto out;
	dcp = iommufd_remote_conn_direct(conn);
	if (!*dcp) {
		rc = direct_client_setup(conn, dcp);
		if (rc)
			goto out_give;
	}
	if ((*dcp)->off)
		goto out_give;
	if (!direct_cached(*dcp, token, cmd.access_rw.iova, cmd.access_rw.length, write)) {
		rc = direct_translate(conn, *dcp, token, secret, cmd.access_rw.iova,
				      cmd.access_rw.length, write);
		if (rc)
			goto out_give;
	}
	done = direct_copy(*dcp, cmd.access_rw.uptr, cmd.access_rw.iova - (*dcp)->iova,
			   cmd.access_rw.length, write);
	rc = 0;
out_give:
	/* A connection that broke goes; the round trip then makes a new one. */
	iommufd_remote_conn_give(server, conn, rc != -EIO && rc != -EPIPE);
out:
	errno = saved;
	return done;
}

/**
 * uiommu_remote_direct_copies() - how many ACCESS_RW calls of this process on contexts other
 * processes serve were copied by this process itself (docs/processes.md, "The direct path")
 */
UIOMMU_EXPORT unsigned long uiommu_remote_direct_copies(void)
{
	return atomic_load_explicit(&direct_copies, memory_order_relaxed);
}
