/* SPDX-License-Identifier: MIT */
/*
 * RLIMIT_MEMLOCK and CAP_IPC_LOCK for the accounting tests (test_memacct, test_lockedvm): a
 * case lowers its own soft limit and drops CAP_IPC_LOCK from its effective set, so that its
 * pins are charged (a case runs in a child of its own: nothing leaks to the next). Include
 * after harness.h.
 */
#ifndef UIOMMU_TESTS_MEMLOCK_UTILS_H
#define UIOMMU_TESTS_MEMLOCK_UTILS_H

#include <stdint.h>
#include <sys/capability.h>
#include <sys/resource.h>

/* The soft RLIMIT_MEMLOCK of this process to @pages pages (SKIP past the hard limit). */
static __H_UNUSED void memlock_limit_set(struct __h_test *_metadata, uint64_t pages)
{
	struct rlimit rl;

	ASSERT_EQ(0, getrlimit(RLIMIT_MEMLOCK, &rl));
	rl.rlim_cur = pages * PS;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < rl.rlim_cur)
		SKIP("RLIMIT_MEMLOCK hard limit below %llu pages", (unsigned long long)pages);
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &rl));
}

static __H_UNUSED void cap_ipc_lock_drop(struct __h_test *_metadata)
{
	cap_value_t cap = CAP_IPC_LOCK;
	cap_t caps = cap_get_proc();

	ASSERT_TRUE(caps != NULL);
	ASSERT_EQ(0, cap_set_flag(caps, CAP_EFFECTIVE, 1, &cap, CAP_CLEAR));
	ASSERT_EQ(0, cap_set_proc(caps));
	cap_free(caps);
}

static __H_UNUSED bool cap_ipc_lock_held(void)
{
	cap_flag_value_t v = CAP_CLEAR;
	cap_t caps = cap_get_proc();

	if (caps && cap_get_flag(caps, CAP_IPC_LOCK, CAP_EFFECTIVE, &v))
		v = CAP_CLEAR;
	cap_free(caps);
	return v == CAP_SET;
}

#endif
