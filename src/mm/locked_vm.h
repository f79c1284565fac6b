/* SPDX-License-Identifier: MIT */
/*
 * The user's locked_vm shared by every process of the user that runs the library (locked_vm.c
 * has the model): the one count the USER accounting mode is limited by, as the kernel's
 * user_struct::locked_vm is one count per user, whichever of its processes pinned.
 */
#ifndef UIOMMU_MM_LOCKED_VM_H
#define UIOMMU_MM_LOCKED_VM_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

/* The environment variable naming the directory of the shared file (tests; empty: none). */
#define UIOMMU_LOCKED_VM_DIR_ENV "UIOMMU_LOCKED_VM_DIR"
#define UIOMMU_LOCKED_VM_FILE "uiommu-locked_vm"
#define UIOMMU_LOCKED_VM_SLOTS 1024u /* processes of one user with pins at once */

/*
 * Charges @npages to user @uid's shared count unless the user's total (every live process's
 * share, this one's being *@local) would pass @limit pages; on success *@local, this process's
 * own count for @uid, grows by @npages. 0; -ENOMEM past the limit or when the shared file
 * could not be opened for want of memory, nothing charged; -ENOENT when this process counts
 * @uid on its own (no shared file: the caller charges *@local alone, as before).
 */
int uiommu_locked_vm_charge(uid_t uid, _Atomic uint64_t *local, uint64_t npages, uint64_t limit);
/*
 * After an uncharge lowered *@local, user @uid's count in this process: the user's share
 * follows it (nothing when this process counts @uid alone).
 */
void uiommu_locked_vm_sync(uid_t uid, _Atomic uint64_t *local);
/*
 * User @uid's total over every live process, dead processes' shares reclaimed first: 0, or
 * -ENOENT when this process has no shared count for @uid.
 */
int uiommu_locked_vm_total(uid_t uid, uint64_t *total);

/*
 * Before the fork of an exec hand-over's next server (remote.c): a slot of its own, holding
 * this process's share of the user's count, which the next fork hands to the child (and it
 * keeps across its own fork, the next server's); this process's slot keeps its pages until
 * the exec drops it (locked_vm.c has the order). 0 (nothing to move included); -errno with
 * nothing made: the child then counts as any forked child.
 */
int uiommu_locked_vm_handover(void);

/*
 * Tests only: when set, called inside a charge that raises a slot, with the shared file's
 * mutex held and the total raised but not yet the slot (a test parks there to SIGKILL the
 * holder).
 */
extern void (*_Atomic uiommu_locked_vm_test_park)(void);

#endif
