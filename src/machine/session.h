/* SPDX-License-Identifier: MIT */
/*
 * Claims shared by the processes of a uiommu-run session (see session.c for the design).
 *
 * A claim is a name ("group.5", "owner.5", "device.0000:07:00.0") that one process of the
 * session holds exclusively, or several hold shared: an flock on <session>/claim.<name>. The
 * handle is the fd of the open file description the flock sits on, with the file's identity;
 * fd -1 (SESSION_CLAIM_NONE) stands for "no session, nothing claimed" and is dropped as a no-op.
 */
#ifndef UIOMMU_MACHINE_SESSION_H
#define UIOMMU_MACHINE_SESSION_H

#include <stdbool.h>
#include <sys/types.h>

struct session_claim {
	int fd;     /* holds the flock; -1: nothing held */
	dev_t dev;  /* the claim file, so that a number the program closed and reused */
	ino_t ino;  /* behind our back is never closed by us */
	/*
	 * Another process holds a copy of the same description (session_claim_adopt()): the
	 * claim lasts until the last copy closes, so a drop only closes ours.
	 */
	bool shared;
};

#define SESSION_CLAIM_NONE ((struct session_claim){ .fd = -1 })

/*
 * The names, one vocabulary for the layer that takes the claims (src/vfio/claim.c, which says
 * what holds each and in which mode) and the virtual sysfs, whose stores test them (sysfs.c):
 * a group's number or a device's BDF in the session's topology.
 */
#define SESSION_CLAIM_GROUP "group.%d"   /* the group's node is open, or a device bound by cdev */
#define SESSION_CLAIM_OWNER "owner.%d"   /* a user (an iommufd context) owns the group's DMA */
#define SESSION_CLAIM_DEVICE "device.%s" /* the device is bound through its cdev */
#define SESSION_CLAIM_OPEN "open.%s"     /* VFIO has the device open (a cdev file, a device fd) */

/**
 * session_claim_take() - take the claim @name for this process
 * @exclusive: LOCK_EX (nobody else may hold it) rather than LOCK_SH (nobody may hold it
 *             exclusively)
 * @claim: out: the handle, SESSION_CLAIM_NONE when this process runs in no session (nothing
 *         is claimed then)
 *
 * Never waits. Return: 0; -EBUSY when another open of the claim holds it in a conflicting
 * mode (another process, or another handle of this one); -ENOMEM (injected), or the -errno of
 * making the session directory or the claim file (-EMFILE ...).
 */
int session_claim_take(const char *name, bool exclusive, struct session_claim *claim);

/*
 * session_claim_drop() - let go of @claim (SESSION_CLAIM_NONE: nothing), which becomes
 * SESSION_CLAIM_NONE. Unlocks before closing, so that copies of the fd a forked child
 * inherited do not keep the claim: only the process whose file holds the claim calls this, the
 * child's copies only ever close. An fd that is no longer the claim file (the program closed
 * it behind our back: the claim went with it) is left alone. A shared claim is only closed:
 * the other process's copy holds it on.
 */
void session_claim_drop(struct session_claim *claim);

/**
 * session_claim_adopt() - make @fd, a copy of another process's handle of the claim @name
 * (pidfd_getfd()), this process's handle of it too: one claim held by two processes, which
 * lasts until both let go, with no moment free between them. @fd is consumed.
 * Return: 0 with *@claim set and shared, -EBADF when @fd is not that claim file, -EBUSY when
 * the description does not hold it and another does (a stale handle), -ENOMEM (injected).
 */
int session_claim_adopt(const char *name, int fd, bool exclusive, struct session_claim *claim);

/*
 * session_claim_remove_unheld() - in the session directory @dir, unlink the claim files @name
 * ("claim.*") that nobody holds; 0, or -EBUSY when one is held (it stays). For the session's
 * end (sysfs.c), which removes the directory only once it is empty.
 */
int session_claim_remove_unheld(const char *dir, const char *name);

/*
 * The serving processes of a session (src/iommufd/remote.c): each one that listens records
 * itself as an empty file "server.<pid>.<name>" in the session directory, its listening
 * socket's abstract name and the pid that socket's SO_PEERCRED shows (an exec hand-over keeps
 * both), so that a process whose VFIO answer another's claim decides can ask the others to
 * let go of what the dead left (docs/processes.md, "When a process is gone").
 */
#define SESSION_SERVER "server."

/*
 * session_server_note() - record the server @name of process @pid. 0 (also when this process
 * runs in no session: nothing is recorded), -ENOMEM (injected), or the -errno of making it.
 */
int session_server_note(pid_t pid, const char *name);

/* session_server_forget() - remove that record, if it is there. */
void session_server_forget(pid_t pid, const char *name);

/*
 * session_server_exit() - at the exit of server @name of this process (@pid): its record goes,
 * and with it the session directory if the session has ended meanwhile (the owner's end kept
 * the directory for the record).
 */
void session_server_exit(pid_t pid, const char *name);

/*
 * session_servers_each() - @fn(pid, name, @arg) for each recorded server but (@self_pid,
 * @self_name), whose records may come and go meanwhile; stops at a nonzero return of @fn,
 * which it returns. 0 in no session; -ENOMEM (injected), or the -errno of reading the
 * directory. No allocation: a process may call it anywhere but in a fork child's handler.
 */
int session_servers_each(pid_t self_pid, const char *self_name,
			 int (*fn)(pid_t pid, const char *name, void *arg), void *arg);

/*
 * session_settle_register() - @fn lets go of what processes that are gone left behind, here
 * and in the session's other serving processes, whose claims may be for files whose last fd a
 * dead process had (src/iommufd/remote.c registers it: the claims are the serving processes').
 * session_settle() runs it, outside every lock; for the virtual sysfs's stores that a claim
 * refuses, which then try once more. Nothing before it is registered.
 */
void session_settle_register(void (*fn)(void));
void session_settle(void);

#endif
