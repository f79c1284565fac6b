// SPDX-License-Identifier: MIT
/*
 * The lock wrappers of src/lib/lockdep.h: the owner tracking behind lockdep_assert_held(), the
 * condition variable that keeps it right across a wait, and (debug builds) the lock-order
 * checker: a consistent order is silent, an inversion, direct or through a third class, kills
 * the process naming the classes of both stacks, before it can deadlock.
 *
 * The inversions run in a forked child whose stderr is read back. The order graph is shared
 * by every process forked from the program (the harness forks each case), so the cases use
 * distinct classes where they must not see each other's orders.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "lib/lockdep.h"

UIOMMU_MUTEX_DEFINE(lk_outer);
UIOMMU_MUTEX_DEFINE(lk_middle);
UIOMMU_MUTEX_DEFINE(lk_inner);

/*
 * Runs fn in a child with stderr captured into buf; returns the child's wait status.
 */
static int run_child(void (*fn)(void), char *buf, size_t len)
{
	int pipefd[2], status = 0;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		signal(SIGABRT, SIG_DFL);
		fn();
		_exit(0);
	}
	close(pipefd[1]);
	while (got + 1 < len && (n = read(pipefd[0], buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = 0;
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static void take_pair(struct uiommu_mutex *first, struct uiommu_mutex *second)
{
	uiommu_mutex_lock(first);
	uiommu_mutex_lock(second);
	uiommu_mutex_unlock(second);
	uiommu_mutex_unlock(first);
}

static void consistent_order(void)
{
	for (int i = 0; i < 3; i++) {
		take_pair(&lk_outer, &lk_middle);
		take_pair(&lk_middle, &lk_inner);
		take_pair(&lk_outer, &lk_inner);
		/* Released out of order: the held stack is not a strict stack. */
		uiommu_mutex_lock(&lk_outer);
		uiommu_mutex_lock(&lk_middle);
		uiommu_mutex_unlock(&lk_outer);
		uiommu_mutex_unlock(&lk_middle);
	}
}

static void direct_inversion(void)
{
	take_pair(&lk_outer, &lk_inner);
	take_pair(&lk_inner, &lk_outer);
}

static void transitive_inversion(void)
{
	take_pair(&lk_outer, &lk_middle);
	take_pair(&lk_middle, &lk_inner);
	take_pair(&lk_inner, &lk_outer);
}

UIOMMU_MUTEX_DEFINE(lk_first);
UIOMMU_MUTEX_DEFINE(lk_second);

static void first_then_second(void)
{
	take_pair(&lk_first, &lk_second);
}

static void second_then_first(void)
{
	take_pair(&lk_second, &lk_first);
}

static struct uiommu_rwsem sem;

static void rwsem_inversion(void)
{
	uiommu_rwsem_init(&sem);
	uiommu_down_read(&sem);
	uiommu_mutex_lock(&lk_inner);
	uiommu_mutex_unlock(&lk_inner);
	uiommu_up_read(&sem);
	uiommu_mutex_lock(&lk_inner);
	uiommu_down_write(&sem);
}

struct one_class {
	struct uiommu_mutex lock;
};

static void one_class_nested(void)
{
	struct one_class objs[2];

	for (int i = 0; i < 2; i++)
		uiommu_mutex_init(&objs[i].lock); /* one init site: one class */
	/* Nested within the class, as a group's lock taken under another group's (ThreadSanitizer
	 * checks the order of the instances; the lockdep classes do not see it). */
	for (int i = 0; i < 3; i++)
		take_pair(&objs[0].lock, &objs[1].lock);
}

TEST(lockdep_consistent_order_is_silent)
{
	char err[4096];
	int status = run_child(consistent_order, err, sizeof(err));

	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	ASSERT_STREQ(err, "");
}

TEST(lockdep_one_class_nested_is_silent)
{
	char err[4096];
	int status = run_child(one_class_nested, err, sizeof(err));

	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

#ifdef UIOMMU_DEBUG
static const bool order_checked = true;
#else
static const bool order_checked = false;
#endif

static void expect_report(struct __h_test *_metadata, void (*fn)(void), const char *taking,
			  const char *holding)
{
	char err[8192], want[128];
	int status = run_child(fn, err, sizeof(err));

	snprintf(want, sizeof(want), "possible deadlock: taking %s while holding %s", taking,
		 holding);
	if (!WIFSIGNALED(status) || !strstr(err, want)) {
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			TH_LOG("child: %s", line);
	}
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGABRT);
	ASSERT_TRUE(strstr(err, want) != NULL);
	ASSERT_TRUE(strstr(err, "but the opposite order was seen before") != NULL);
}

TEST(lockdep_direct_inversion_dies_naming_both_stacks)
{
	if (!order_checked)
		SKIP("the order checker exists in debug builds only");
	expect_report(_metadata, direct_inversion, "lk_outer", "lk_inner");
}

TEST(lockdep_transitive_inversion_dies)
{
	if (!order_checked)
		SKIP("the order checker exists in debug builds only");
	expect_report(_metadata, transitive_inversion, "lk_outer", "lk_inner");
}

TEST(lockdep_rwsem_read_side_counts)
{
	if (!order_checked)
		SKIP("the order checker exists in debug builds only");
	expect_report(_metadata, rwsem_inversion, "&sem", "lk_inner");
}

/* One process records first -> second and exits; a later one takes them the other way. */
TEST(lockdep_inversion_across_forked_processes_dies)
{
	char err[4096];
	int status;

	if (!order_checked)
		SKIP("the order checker exists in debug builds only");
#if defined(UIOMMU_LOCKDEP_PER_PROCESS) && UIOMMU_LOCKDEP_PER_PROCESS
	SKIP("ThreadSanitizer builds keep a graph per process");
#endif
	status = run_child(first_then_second, err, sizeof(err));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	expect_report(_metadata, second_then_first, "lk_first", "lk_second");
}

/* ---- the condition variable --------------------------------------------------------------- */

/* Release builds do not track owners: there the cases check only that the waits work. */
#ifdef UIOMMU_DEBUG
#define held_by_me(m) uiommu_mutex_held(m)
#define ASSERT_HELD(m, want) ASSERT_EQ(held_by_me(m), (want))
#else
#define held_by_me(m) true
#define ASSERT_HELD(m, want) ((void)(m))
#endif

static struct uiommu_mutex cv_lock;
static struct uiommu_cond cv;
static bool cv_go, cv_waiter_held_after;

static void *cv_waiter(void *arg)
{
	uiommu_mutex_lock(&cv_lock);
	while (!cv_go)
		uiommu_cond_wait(&cv, &cv_lock);
	cv_waiter_held_after = held_by_me(&cv_lock);
	uiommu_mutex_unlock(&cv_lock);
	return NULL;
}

TEST(cond_wait_hands_the_mutex_over_and_back)
{
	pthread_t t;

	uiommu_mutex_init(&cv_lock);
	uiommu_cond_init(&cv);
	uiommu_mutex_lock(&cv_lock);
	ASSERT_EQ(pthread_create(&t, NULL, cv_waiter, NULL), 0);
	/* The waiter can only take the lock once we drop it; it then drops it in its wait. */
	uiommu_mutex_unlock(&cv_lock);
	uiommu_mutex_lock(&cv_lock);
	ASSERT_HELD(&cv_lock, true);
	cv_go = true;
	uiommu_cond_broadcast(&cv);
	uiommu_mutex_unlock(&cv_lock);
	ASSERT_HELD(&cv_lock, false);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_TRUE(cv_waiter_held_after);
	uiommu_cond_destroy(&cv);
	uiommu_mutex_destroy(&cv_lock);
}

TEST(cond_timedwait_past_deadline_is_etimedout)
{
	struct timespec now;

	uiommu_mutex_init(&cv_lock);
	uiommu_cond_init(&cv);
	ASSERT_EQ(clock_gettime(CLOCK_MONOTONIC, &now), 0);
	uiommu_mutex_lock(&cv_lock);
	ASSERT_EQ(uiommu_cond_timedwait(&cv, &cv_lock, &now), -ETIMEDOUT);
	ASSERT_HELD(&cv_lock, true);
	uiommu_mutex_unlock(&cv_lock);
	uiommu_cond_destroy(&cv);
	uiommu_mutex_destroy(&cv_lock);
}

TEST_HARNESS_MAIN
