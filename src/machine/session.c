// SPDX-License-Identifier: MIT
/*
 * Claims across the processes of a session.
 *
 * Each process of a uiommu-run session boots its own copy of the machine (sysfs.c, "One machine
 * per session": the sysfs stores reach every copy through the journal), but some state of the
 * kernel's machine is exclusive by nature and a journal cannot make it so: a group node open in
 * one process must answer EBUSY to an open in another, a device bound through its cdev in one
 * process must not be bound in another. Such a state is a *claim*: a name that the process
 * whose file holds the state holds in the session directory, as an flock on the file
 * "claim.<name>" there (made 0600 on first use, in the 0700 directory). The VFIO layer names
 * and takes its claims around its own calls into the core (src/vfio/claim.c); this file only
 * knows names, files and locks. The virtual sysfs only tests them, for the stores that another
 * process's VFIO state forbids: an exclusive take, which makes the file where nobody ever
 * claimed the name (a test that only looked would let a first claimer of another process in
 * behind the store's back), held until the store is journalled.
 *
 * Why flock. It is held by an open file description, never waits here (LOCK_NB: a conflict is
 * EBUSY at once, as the kernel's open and bind answer), and the kernel drops it when the last
 * fd of that description closes: a process that dies, SIGKILL included, lets go of every claim
 * with nothing left to clean up, and the next process to ask gets it. A claim's fd is
 * close-on-exec: an exec'ing process drops its copies with its memory, which knew of them. It
 * is one of the library's own fds (lib/fdkeep.h), which an exec hand-over's server keeps.
 *
 * Fork. A forked child shares the description (its copy of the fd), so it must never unlock
 * (that would end the parent's claim) and need not: a claim belongs to the file that holds the
 * state, and only the process serving that file releases it (docs/processes.md: a file's
 * release runs in its serving process). The release unlocks before it closes, so the child's
 * copies do not keep a released claim. The child's copies do keep the claim of a parent that
 * died without a release, until the child execs or exits: the kernel's forked child keeps the
 * parent's files open too, but here the child keeps the claim even if it closed its copy of
 * the file. The serving process after an exec hand-over (a fork of the exec'ing one) keeps the
 * fds, so the claims stay with the files it serves, and it releases them as their owner.
 *
 * Names are stable across the processes because they share one machine: the group number and
 * the BDF of the session's topology. Processes of one session that load different topologies
 * would see each other's claims on unrelated groups of the same number.
 *
 * Handed over. A file whose state moves to another process without a moment free (a VFIO group
 * whose container another process serves: its file there holds the node too, group.c) shares
 * the description: that process takes a copy of the fd (pidfd_getfd()) and adopts it
 * (session_claim_adopt()); both handles are then shared and only ever closed, so the claim
 * lasts until the last of the two goes, and a forked child's copies keep it until they close
 * too (an unlock by either would end the other's).
 *
 * The handle keeps the claim file's identity (st_dev, st_ino): the fd is an ordinary fd of the
 * program, which may close it behind our back (closefrom() in itself), ending the claim, and
 * open something else on its number; the release then leaves that number alone.
 *
 * The session's end (sysfs.c) removes the claim files nobody holds; one that a process still
 * holds stays, and with it the directory, for a later session's sweep (the owner's own claims
 * too, when it exits with a group open: its exit handler runs before its fds close). A claimer that opened a
 * file just before the end unlinked it finds its lock on a nameless file (st_nlink 0) and takes
 * the name again; the remover unlinks only under its own exclusive lock, so a held claim is
 * never unlinked.
 *
 * Servers. The directory also lists the processes of the session that serve files
 * (session.h: "server.<pid>.<name>", an empty file each, made whole by one O_EXCL open), so
 * that a process that a claim refuses can ask the others to let go of what the dead left
 * (src/iommufd/remote.c). A record goes with its server's exit handler, or with the next
 * asker that finds nobody listening there (a killed server runs no handler); the session's
 * end removes those of processes that are gone. A live server's record keeps the directory
 * past the session's end; that server's exit, finding the owner gone, removes the directory
 * as the owner would have (session_server_exit(), sysfs_session_left()). The settle itself is iommufd's, which
 * registers it here (session_settle_register()) for the virtual sysfs's stores.
 *
 * No lock of ours: the state is the files and the fds the callers keep.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "machine/session.h"
#include "machine/sysfs.h"

/* What getdents64 returns (struct linux_dirent64), which no libc header declares. */
struct session_dirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Rounds of "the session's end unlinked it between our open and our lock" before giving up. */
#define SESSION_CLAIM_TRIES 4

static int session_claim_path(char *path, size_t len, const char *dir, const char *name)
{
	return snprintf(path, len, "%s/claim.%s", dir, name) >= (int)len ? -ENAMETOOLONG : 0;
}

int session_claim_take(const char *name, bool exclusive, struct session_claim *claim)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;
	int fd, rc, tries;

	*claim = SESSION_CLAIM_NONE;
	rc = sysfs_session_dir(dir, sizeof(dir));
	if (rc == -ENOENT)
		return 0; /* no session: the machine is this process's alone */
	rc = rc ?: session_claim_path(path, sizeof(path), dir, name);
	if (rc)
		return rc;
	for (tries = 0; tries < SESSION_CLAIM_TRIES; tries++) {
		if (uiommu_should_fail())
			return -ENOMEM;
		fd = sys_openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB)) {
			rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
			goto err_close;
		}
		if (sys_fstat(fd, &st)) {
			rc = -errno;
			goto err_close;
		}
		if (st.st_nlink) {
			/* The library's fd: an exec hand-over's server keeps it (lib/fdkeep.h). */
			uiommu_fd_keep(fd);
			*claim = (struct session_claim){ .fd = fd, .dev = st.st_dev, .ino = st.st_ino };
			return 0;
		}
		/* The session's end unlinked it under us: the name is a new file now. */
		sys_close(fd);
	}
	return -EAGAIN;

err_close:
	sys_close(fd);
	return rc;
}

void session_claim_drop(struct session_claim *claim)
{
	struct session_claim c = *claim;
	struct stat st;

	*claim = SESSION_CLAIM_NONE;
	if (c.fd < 0)
		return;
	if (sys_fstat(c.fd, &st) || st.st_dev != c.dev || st.st_ino != c.ino) {
		uiommu_fd_unkeep(c.fd); /* the program's number now, not ours */
		return;
	}
	if (!c.shared)
		flock(c.fd, LOCK_UN);
	sys_close(c.fd);
}

int session_claim_adopt(const char *name, int fd, bool exclusive, struct session_claim *claim)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st, named;
	int rc;

	*claim = SESSION_CLAIM_NONE;
	rc = sysfs_session_dir(dir, sizeof(dir));
	if (rc == -ENOENT) {
		sys_close(fd);
		return 0; /* no session here: nothing to share */
	}
	rc = rc ?: session_claim_path(path, sizeof(path), dir, name);
	if (!rc && uiommu_should_fail())
		rc = -ENOMEM;
	/* That very file, by its identity: the name may be a new file since (the session's end). */
	if (!rc && (sys_fstat(fd, &st) ||
		    sys_fstatat(AT_FDCWD, path, &named, AT_SYMLINK_NOFOLLOW) ||
		    st.st_dev != named.st_dev || st.st_ino != named.st_ino || !S_ISREG(st.st_mode)))
		rc = -EBADF;
	/* A description that holds the lock keeps it (no wait, no gap); another's refuses. */
	if (!rc && flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB))
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (rc) {
		sys_close(fd);
		return rc;
	}
	uiommu_fd_keep(fd);
	*claim = (struct session_claim){ .fd = fd, .dev = st.st_dev, .ino = st.st_ino,
					 .shared = true };
	return 0;
}

int session_claim_remove_unheld(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int fd, rc;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = sys_openat(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	/* Unlinked only under our own exclusive lock: never a claim somebody holds. */
	rc = flock(fd, LOCK_EX | LOCK_NB) ? -EBUSY : 0;
	if (!rc && unlink(path))
		rc = -errno;
	sys_close(fd);
	return rc;
}

/* ---- the session's servers ------------------------------------------------------------------ */

static _Atomic(void (*)(void)) session_settle_fn;

void session_settle_register(void (*fn)(void))
{
	atomic_store(&session_settle_fn, fn);
}

void session_settle(void)
{
	void (*fn)(void) = atomic_load(&session_settle_fn);

	if (fn)
		fn();
}

/*
 * The session directory's path as it is, never made: a record is removed, and the records
 * read, where the directory exists (an exit handler that runs after the session's end removed
 * it must not make it again). 0, or -ENOENT in no session.
 */
static int session_dir_peek(char *dir, size_t len)
{
	const char *env = getenv(SYSFS_DIR_ENV);

	if (!env || !*env)
		return -ENOENT;
	return snprintf(dir, len, "%s", env) >= (int)len ? -ENAMETOOLONG : 0;
}

/* The record's path in @dir (made: sysfs_session_dir(); else peeked). */
static int session_server_path(char *path, size_t len, pid_t pid, const char *name, bool make)
{
	char dir[PATH_MAX];
	int rc = make ? sysfs_session_dir(dir, sizeof(dir)) : session_dir_peek(dir, sizeof(dir));

	if (rc)
		return rc;
	return snprintf(path, len, "%s/" SESSION_SERVER "%d.%s", dir, (int)pid, name) >= (int)len ?
		       -ENAMETOOLONG : 0;
}

/*
 * The record is its name alone: an empty file, made whole by one open (O_EXCL), so a reader
 * never meets half of one and no temporary name is needed.
 */
int session_server_note(pid_t pid, const char *name)
{
	char path[PATH_MAX];
	int fd, rc;

	if (uiommu_should_fail())
		return -ENOMEM;
	rc = session_server_path(path, sizeof(path), pid, name, true);
	if (rc)
		return rc == -ENOENT ? 0 : rc; /* no session: nobody to tell */
	fd = sys_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	sys_close(fd);
	return 0;
}

void session_server_forget(pid_t pid, const char *name)
{
	char path[PATH_MAX];

	if (!session_server_path(path, sizeof(path), pid, name, false))
		unlink(path);
}

void session_server_exit(pid_t pid, const char *name)
{
	session_server_forget(pid, name);
	sysfs_session_left();
}

/* Calls @fn for the records in the getdents64 buffer @buf (@len bytes); its nonzero return. */
static int session_servers_batch(const char *buf, size_t len, pid_t self_pid,
				 const char *self_name,
				 int (*fn)(pid_t pid, const char *name, void *arg), void *arg)
{
	size_t off = 0;

	while (off + offsetof(struct session_dirent, d_name) < len) {
		const struct session_dirent *de = (const void *)(buf + off);
		int pid, end = 0, rc;

		off += de->d_reclen;
		if (!de->d_reclen)
			break;
		if (strncmp(de->d_name, SESSION_SERVER, strlen(SESSION_SERVER)) ||
		    sscanf(de->d_name + strlen(SESSION_SERVER), "%d.%n", &pid, &end) != 1 || !end ||
		    pid <= 0)
			continue;
		end += (int)strlen(SESSION_SERVER);
		if (pid == self_pid && !strcmp(de->d_name + end, self_name))
			continue;
		rc = fn(pid, de->d_name + end, arg);
		if (rc)
			return rc;
	}
	return 0;
}

int session_servers_each(pid_t self_pid, const char *self_name,
			 int (*fn)(pid_t pid, const char *name, void *arg), void *arg)
{
	char dir[PATH_MAX], buf[4096] __attribute__((aligned(8)));
	struct stat st;
	ssize_t n;
	int fd, rc;

	if (uiommu_should_fail())
		return -ENOMEM;
	rc = session_dir_peek(dir, sizeof(dir));
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	fd = sys_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno; /* nobody made it: nobody serves */
	/* Only a directory of ours, closed to others, names servers (sysfs_session_dir()). */
	if (sys_fstat(fd, &st) || st.st_uid != geteuid() || (st.st_mode & 0077)) {
		sys_close(fd);
		return -EPERM;
	}
	while ((n = sys_getdents64(fd, buf, sizeof(buf))) > 0) {
		rc = session_servers_batch(buf, (size_t)n, self_pid, self_name, fn, arg);
		if (rc)
			break;
	}
	if (n < 0)
		rc = -errno;
	sys_close(fd);
	return rc;
}
