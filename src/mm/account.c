// SPDX-License-Identifier: MIT
/*
 * Pinned-memory accounting (account.h has the model). The limit is read at each charge, as
 * the kernel reads task_rlimit() at each charge: lowering RLIMIT_MEMLOCK refuses new pins and
 * leaves the pins already charged alone. A charge checks and adds in one step (a
 * compare-and-swap, or for the user's count shared with its other processes one step under
 * the shared file's lock: locked_vm.c), so two racing charges can never both slip under the
 * limit.
 *
 * Whose limit and whose capability: the kernel's are those of the task that made the pages
 * (pages->source_task, current at the MAP), whichever process pins them later. Here that is
 * the owner of the pages' mm: for another process's calls served here (mm/mm_remote.c) the
 * client's own RLIMIT_MEMLOCK and CAP_IPC_LOCK, read by the server from the client process
 * itself (prlimit(), its capability sets), never taken from what the client says: a client
 * can only raise them as far as it could for itself.
 */
#include <pthread.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lib/capable.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "mm/account.h"
#include "mm/locked_vm.h"
#include "mm/mm.h"

UIOMMU_MUTEX_DEFINE(users_lock); /* protects users; a leaf */
static struct uiommu_user *users;

struct uiommu_user *uiommu_user_current(void)
{
	uid_t uid = getuid();
	struct uiommu_user *user;

	uiommu_mutex_lock(&users_lock);
	for (user = users; user; user = user->next)
		if (user->uid == uid)
			break;
	if (user) {
		atomic_fetch_add_explicit(&user->refs, 1, memory_order_relaxed);
		goto out_unlock;
	}
	user = uiommu_zalloc(sizeof(*user));
	if (!user) {
		user = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	user->uid = uid;
	atomic_init(&user->refs, 1);
	atomic_init(&user->locked_vm, 0);
	user->next = users;
	users = user;
out_unlock:
	uiommu_mutex_unlock(&users_lock);
	return user;
}

struct uiommu_user *uiommu_user_get(struct uiommu_user *user)
{
	atomic_fetch_add_explicit(&user->refs, 1, memory_order_relaxed);
	return user;
}

void uiommu_user_put(struct uiommu_user *user)
{
	struct uiommu_user **p;

	/* The list finds users by uid, so the last put unlinks under the lock a lookup takes. */
	uiommu_mutex_lock(&users_lock);
	if (atomic_fetch_sub_explicit(&user->refs, 1, memory_order_acq_rel) != 1) {
		uiommu_mutex_unlock(&users_lock);
		return;
	}
	for (p = &users; *p != user; p = &(*p)->next)
		;
	*p = user->next;
	uiommu_mutex_unlock(&users_lock);
	/* Every charge was undone by the iopt_pages that held this reference. */
	WARN_ON(atomic_load_explicit(&user->locked_vm, memory_order_relaxed));
	uiommu_free(user);
}

uint64_t uiommu_user_locked_vm(uid_t uid)
{
	struct uiommu_user *user;
	uint64_t n = 0;

	uiommu_mutex_lock(&users_lock);
	for (user = users; user; user = user->next)
		if (user->uid == uid)
			n = atomic_load_explicit(&user->locked_vm, memory_order_relaxed);
	uiommu_mutex_unlock(&users_lock);
	return n;
}

/*
 * The soft RLIMIT_MEMLOCK of @mm's process in pages (the calling process's for our own mm);
 * unlimited is every page there can be.
 */
static uint64_t account_limit_pages(struct uiommu_mm *mm)
{
	struct rlimit rl;

	if (mm->ops->memlock_limit)
		rl.rlim_cur = mm->ops->memlock_limit(mm);
	else if (getrlimit(RLIMIT_MEMLOCK, &rl))
		rl.rlim_cur = RLIM_INFINITY;
	if (rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	return (uint64_t)rl.rlim_cur >> uiommu_page_shift;
}

bool uiommu_account_exempt(struct uiommu_mm *mm)
{
	if (mm->ops->capable)
		return mm->ops->capable(mm, CAP_IPC_LOCK);
	return uiommu_capable(CAP_IPC_LOCK);
}

/* Adds @npages to @counter unless that passes @limit pages: 0 or -ENOMEM. */
static int account_counter_add(uint64_t limit, _Atomic uint64_t *counter, uint64_t npages)
{
	uint64_t cur = atomic_load_explicit(counter, memory_order_relaxed), next;

	do {
		if (check_add_overflow(cur, npages, &next) || next > limit)
			return -ENOMEM;
	} while (!atomic_compare_exchange_weak_explicit(counter, &cur, next, memory_order_relaxed,
							memory_order_relaxed));
	return 0;
}

static void account_counter_sub(_Atomic uint64_t *counter, uint64_t npages)
{
	uint64_t cur = atomic_load_explicit(counter, memory_order_relaxed);

	/* An uncharge larger than the charges is a bookkeeping bug: never wrap below zero. */
	do {
		if (WARN_ON(cur < npages))
			return;
	} while (!atomic_compare_exchange_weak_explicit(counter, &cur, cur - npages,
							memory_order_relaxed, memory_order_relaxed));
}

int uiommu_account_charge(enum uiommu_account_mode mode, struct uiommu_user *user,
			  struct uiommu_mm *mm, uint64_t npages)
{
	uint64_t limit;
	int rc = 0;

	if (!npages)
		return 0;
	if (mode != UIOMMU_ACCOUNT_NONE)
		limit = account_limit_pages(mm);
	if (mode == UIOMMU_ACCOUNT_USER) {
		/* The user's count shared with its other processes, or this process's alone. */
		rc = uiommu_locked_vm_charge(user->uid, &user->locked_vm, npages, limit);
		if (rc == -ENOENT)
			rc = account_counter_add(limit, &user->locked_vm, npages);
	} else if (mode == UIOMMU_ACCOUNT_MM) {
		rc = account_counter_add(limit, &mm->locked_vm, npages);
	}
	if (rc)
		return rc;
	atomic_fetch_add_explicit(&mm->pinned_vm, npages, memory_order_relaxed);
	return 0;
}

void uiommu_account_uncharge(enum uiommu_account_mode mode, struct uiommu_user *user,
			     struct uiommu_mm *mm, uint64_t npages)
{
	if (!npages)
		return;
	if (mode == UIOMMU_ACCOUNT_USER) {
		account_counter_sub(&user->locked_vm, npages);
		uiommu_locked_vm_sync(user->uid, &user->locked_vm);
	} else if (mode == UIOMMU_ACCOUNT_MM)
		account_counter_sub(&mm->locked_vm, npages);
	account_counter_sub(&mm->pinned_vm, npages);
}
