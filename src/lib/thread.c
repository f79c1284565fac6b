// SPDX-License-Identifier: MIT
/*
 * Threads of the library, started whole before a fork (lib/thread.h).
 *
 * Why. A thread's start is not only its function: the C library sets up its stack and TLS,
 * and a sanitizer runtime (AddressSanitizer's, in GCC 12) registers the thread and allocates
 * for it, under locks of its own allocator that it does not take around fork(). A fork in
 * another thread at that moment copies such a lock held, and in the child the first thread
 * that allocates from that size class (the child's own server thread, at its first file)
 * waits on it for ever. The library starts threads right where programs fork: the serving
 * thread with a process's first file, a connection thread per client, and test programs (the
 * kernel's selftests too) open and fork straight after. Seen: test_lockedvm's forked child
 * hung in one run of about twenty under load in the ASan build.
 *
 * Data model. thread_start_lock is a reader-writer lock: a creator holds it for read from
 * before pthread_create() until the new thread has said it runs (its own semaphore, on the
 * creator's stack), and the fork's prepare handler takes it for write. So a fork waits for
 * the threads being started, and a start waits for a fork under way; starts run side by side.
 *
 * Invariants. No lock of the library is needed for a thread to reach its function, so the
 * wait is bounded whatever locks the creator or the forking thread hold. The started thread
 * posts before it runs anything of its own; the creator destroys the semaphore only after
 * its wait returned (glibc's sem_post() touches nothing after the waiter may go on).
 * The child gets the lock anew (only the forking thread exists there).
 */
#include <errno.h>
#include <semaphore.h>
#include "lib/compiler.h"
#include "lib/thread.h"

/* A start under way (read) excludes a fork (write). Taken before nothing, after everything. */
static pthread_rwlock_t thread_start_lock = PTHREAD_RWLOCK_INITIALIZER;

struct thread_start {
	void *(*fn)(void *);
	void *arg;
	sem_t running;
};

static void *thread_trampoline(void *p)
{
	struct thread_start *start = p;
	void *(*fn)(void *) = start->fn;
	void *arg = start->arg;

	sem_post(&start->running); /* @start is gone once the creator sees this */
	return fn(arg);
}

int uiommu_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
			 void *arg)
{
	struct thread_start start = { .fn = fn, .arg = arg };
	int rc;

	if (sem_init(&start.running, 0, 0))
		return errno;
	pthread_rwlock_rdlock(&thread_start_lock);
	rc = pthread_create(thread, attr, thread_trampoline, &start);
	if (!rc)
		while (sem_wait(&start.running) && errno == EINTR)
			;
	pthread_rwlock_unlock(&thread_start_lock);
	sem_destroy(&start.running);
	return rc;
}

static void thread_atfork_prepare(void)
{
	pthread_rwlock_wrlock(&thread_start_lock);
}

static void thread_atfork_parent(void)
{
	pthread_rwlock_unlock(&thread_start_lock);
}

static void thread_atfork_child(void)
{
	pthread_rwlock_init(&thread_start_lock, NULL);
}

__attribute__((constructor)) static void thread_init(void)
{
	if (pthread_atfork(thread_atfork_prepare, thread_atfork_parent, thread_atfork_child))
		die("pthread_atfork");
}
