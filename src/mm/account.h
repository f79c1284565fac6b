/* SPDX-License-Identifier: MIT */
/*
 * Pinned-memory accounting: the charges RLIMIT_MEMLOCK limits, as the kernel keeps them.
 *
 * Three counters, each in pages, each the counterpart of a kernel field:
 *   user->locked_vm  (struct user_struct::locked_vm) pages charged to a user, whichever of its
 *                    processes pinned them; the USER mode (iommufd's default, io_uring's way).
 *   mm->locked_vm    (mm_struct::locked_vm) pages charged to an address space; the MM mode
 *                    (VFIO's way, IOMMU_OPTION_RLIMIT_MODE = 1). /proc/<pid>/status shows it
 *                    as part of VmLck.
 *   mm->pinned_vm    (mm_struct::pinned_vm) every pinned page of an address space whatever the
 *                    mode, also those nobody is charged for; VmPin shows it.
 * A charge of the USER or MM mode fails with -ENOMEM when it would take its counter past the
 * soft RLIMIT_MEMLOCK of the process whose mm is charged (the kernel's pages->source_task: the
 * calling process, or the client of a call served for another process); the NONE mode (a
 * creator with CAP_IPC_LOCK, the same process's, or a dma-buf) is never refused. An uncharge never fails and must name what its charge named.
 *
 * A struct uiommu_user is this process's part of a user's count: locked_vm is what this
 * process charged for the uid. The USER limit is checked against the user's total over all of
 * its processes, the shared count of mm/locked_vm.c, where this process's slot follows
 * locked_vm; where there is none (no shared file, another real than effective uid) against
 * locked_vm alone.
 *
 * Locking: the mm counters, and a user's counter without a shared count, are atomics updated
 * by compare-and-swap (the check against the limit and the update are one step); a shared
 * count's check and update are one step under locked_vm.c's locks. users_lock (account.c)
 * protects the list of users; a leaf.
 */
#ifndef UIOMMU_MM_ACCOUNT_H
#define UIOMMU_MM_ACCOUNT_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

struct uiommu_mm;

enum uiommu_account_mode {
	UIOMMU_ACCOUNT_NONE = 0,
	UIOMMU_ACCOUNT_USER = 1,
	UIOMMU_ACCOUNT_MM = 2,
	UIOMMU_ACCOUNT_MODES,
};

struct uiommu_user {
	uid_t uid;                       /* the real uid, as the kernel's current_user(); constant */
	atomic_int refs;                 /* uiommu_user_get()/uiommu_user_put() */
	_Atomic uint64_t locked_vm;      /* pages charged in the USER mode */
	struct uiommu_user *next;        /* on the list of users (users_lock) */
};

/* The calling thread's user, a new reference; ERR_PTR(-ENOMEM). */
struct uiommu_user *uiommu_user_current(void);
struct uiommu_user *uiommu_user_get(struct uiommu_user *user);
void uiommu_user_put(struct uiommu_user *user);
/* Pages charged to @uid in the USER mode by this process (0 for a user never seen). */
uint64_t uiommu_user_locked_vm(uid_t uid);

/*
 * Does @mm's process hold CAP_IPC_LOCK (the kernel's capable() of the task that makes the
 * pages)? Then its pages are charged in the NONE mode.
 */
bool uiommu_account_exempt(struct uiommu_mm *mm);

/*
 * Charge @npages pinned pages of @mm in @mode (to @user for the USER mode): 0, or -ENOMEM past
 * RLIMIT_MEMLOCK with nothing charged. uiommu_account_uncharge() undoes exactly one charge.
 */
int uiommu_account_charge(enum uiommu_account_mode mode, struct uiommu_user *user,
			  struct uiommu_mm *mm, uint64_t npages);
void uiommu_account_uncharge(enum uiommu_account_mode mode, struct uiommu_user *user,
			     struct uiommu_mm *mm, uint64_t npages);

#endif
