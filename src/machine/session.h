/* SPDX-License-Identifier: MIT */
/*
 * Claims shared by the processes of a uiommu-run session (see session.c for the design).
 *
 * A claim is a name ("group.5", "owner.5", "device.0000:07:00.0") that one process of the
 * session holds exclusively, or several hold shared: an flock on <session>/claim.<name>. The
 * handle is the fd of the open file description the flock sits on; -1 stands for "no session,
 * nothing to claim" and is dropped as a no-op.
 */
#ifndef UIOMMU_MACHINE_SESSION_H
#define UIOMMU_MACHINE_SESSION_H

#include <stdbool.h>

/**
 * session_claim_take() - take the claim @name for this process
 * @exclusive: LOCK_EX (nobody else may hold it) rather than LOCK_SH (nobody may hold it
 *             exclusively)
 * @fd: out: the handle, -1 when this process runs in no session (nothing is claimed then)
 *
 * Never waits. Return: 0; -EBUSY when another open of the claim holds it in a conflicting
 * mode (another process, or another handle of this one); -ENOMEM (injected), or the -errno of
 * making the session directory or the claim file (-EMFILE ...).
 */
int session_claim_take(const char *name, bool exclusive, int *fd);

/*
 * session_claim_drop() - let go of a claim @fd (-1: nothing). Unlocks before closing, so
 * that copies of the fd a forked child inherited do not keep the claim: only the process
 * whose file holds the claim calls this, the child's copies only ever close.
 */
void session_claim_drop(int fd);

/*
 * session_claim_remove_unheld() - in the session directory @dir, unlink the claim files @name
 * ("claim.*") that nobody holds; 0, or -EBUSY when one is held (it stays). For the session's
 * end (sysfs.c), which removes the directory only once it is empty.
 */
int session_claim_remove_unheld(const char *dir, const char *name);

#endif
