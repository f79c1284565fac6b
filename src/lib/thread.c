// SPDX-License-Identifier: MIT
/*
 * Threads of the library, running before their creator goes on (lib/thread.h).
 *
 * Why. A thread's start is not only its function: the C library sets up its stack and TLS,
 * and a sanitizer runtime (AddressSanitizer's, in GCC 12) registers the thread and allocates
 * for it, under locks of its own allocator that it does not take around fork(). A fork at
 * that moment copies such a lock held, and in the child the first thread that allocates from
 * that size class (the child's own server thread, at its first file) waits on it for ever.
 * The library starts threads right where programs fork next: the serving thread with a
 * process's first file, and test programs (the kernel's selftests too) open and fork straight
 * after. Seen: test_lockedvm's forked child hung in about one run in twenty under load in the
 * ASan build, the parent's server thread made just before the fork. So the creator goes on
 * only once the new thread runs its own code: a fork the creator makes next finds it started.
 *
 * What it does not do: exclude a fork made meanwhile by another thread. A lock that a fork's
 * prepare handler took against starts under way would deadlock with the sanitizers' own fork
 * handling, which holds their thread registry (which a starting thread needs) across the
 * prepare handlers. Programs that fork from one thread while another opens their first file
 * keep the sanitizer runtime's own window.
 *
 * Invariants. The started thread posts before it runs anything of its own, and the creator
 * destroys the semaphore (on its stack) only after its wait returned: glibc's sem_post()
 * touches nothing after the waiter may go on. Nothing the start waits for can be held by the
 * creator, so the wait is bounded whatever locks the creator holds.
 */
#include <errno.h>
#include <semaphore.h>

#include "lib/thread.h"

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
	rc = pthread_create(thread, attr, thread_trampoline, &start);
	if (!rc)
		while (sem_wait(&start.running) && errno == EINTR)
			;
	sem_destroy(&start.running);
	return rc;
}
