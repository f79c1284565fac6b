// SPDX-License-Identifier: MIT
/*
 * The user's locked_vm, one count across every process of the user that runs the library.
 *
 * The kernel's user_struct::locked_vm is one counter per user: the USER accounting mode limits
 * the pins of all of a user's processes together against the charging process's
 * RLIMIT_MEMLOCK. Our processes share no memory by birth, so the count lives in a small file
 * they all map: "uiommu-locked_vm" in a directory private to the user (0700, the user's own),
 * $UIOMMU_LOCKED_VM_DIR if set (empty: none, count alone), else $XDG_RUNTIME_DIR, else
 * ${TMPDIR:-/tmp}/uiommu-<euid>, made 0700 when missing. The file is 0600 and holds a header and UIOMMU_LOCKED_VM_SLOTS
 * slots; a process that charges takes one slot and keeps in it its own count for the user
 * (the slot's pages), so the user's total is the sum of the slots.
 *
 * Who is alive: each slot has a byte of the file (offset 1 + its index) that its process
 * holds an open-file-description lock on (F_OFD_SETLK) for as long as the slot is its. The
 * kernel drops the lock when the last descriptor of that open file goes, so a process that
 * dies, however (SIGKILL), leaves a slot whose byte nobody holds: a dead slot. (A pid in
 * the slot could name a new process after reuse; a robust futex belongs to a thread, which
 * may exit while its process pins on; the lock belongs to the process's open file.) Its
 * pages are given back when a charge would otherwise fail and when a process opens the file;
 * no process has to exit cleanly. A forked child closes its copy of the descriptor at once (the
 * atfork handler), so the parent's slot dies with the parent, and takes a slot of its own at
 * its first charge.
 *
 * What a forked child inherited: its copy of the library holds copies of the parent's
 * contexts and of their charges, but the parent keeps serving those contexts (the child's
 * calls on their fds go to the parent, charged in the parent's slot: processes.md), so the
 * copies pin nothing the kernel would count twice. The child's slot therefore holds its local
 * count less what it had at its first charge (share.inherited); a child's unpin is taken from
 * its own charges first, and the inherited part only shrinks when the local count drops
 * below it. (The next server of an exec hand-over does serve its copies: their charges are
 * in no slot once the old image is gone, docs/accounting.md.)
 *
 * One step: every charge, claim and reclaim holds the file's lock (an OFD write lock on byte
 * 0), so a check of the total against the limit and the update of the slot cannot interleave
 * with another process's; lv_lock (below) does the same for the threads of this process,
 * which share one open file description and so one set of OFD locks. An uncharge lowers the
 * local count (account.c) and then its own slot to match, one atomic store under lv_lock.
 * Every slot field is a single aligned word written with one store, so a process killed
 * inside its critical section leaves the file consistent: no total is stored anywhere to go
 * stale.
 *
 * Invariant (between calls): the slot of this process holds exactly the local count of the
 * user it was opened for (struct uiommu_user::locked_vm of account.c) less share.inherited;
 * inside an uncharge it may be higher for a moment, never lower, so a charge is never let
 * past the limit.
 *
 * Where the file cannot be had (no such directory, read-only, someone else's, a file of
 * another layout, every slot taken) the process counts alone, as the library did before, and
 * says so once on stderr; a charge that finds no memory to open the file fails with ENOMEM
 * and the next one tries again. The shared count is for the user whose real and effective
 * uids are the process's (the file is the effective user's); another real uid (a process that
 * changed only its real uid) is counted by this process alone.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/lockdep.h"
#include "lib/sys.h"
#include "mm/locked_vm.h"

#define LV_MAGIC 0x31766d6b636f6c75ull /* "ulockmv1" */
#define LV_VERSION 1u

struct lv_slot {
	_Atomic int32_t pid;     /* the owner, 0 when free; the lock byte says whether it lives */
	uint32_t reserved;
	_Atomic uint64_t pages;  /* the owner's charges for the user */
};

struct lv_file {
	_Atomic uint64_t magic;  /* written last at creation: 0 means not yet laid out */
	uint32_t version;
	uint32_t nslots;
	uint64_t reserved[6];
	struct lv_slot slot[UIOMMU_LOCKED_VM_SLOTS];
};

struct lv_share {
	int fd;                  /* the open file, -1 when this process has none */
	struct lv_file *file;    /* its mapping */
	unsigned int slot;       /* ours */
	uid_t uid;               /* whose count: the effective uid at the open */
	dev_t dev;               /* the file, to see that fd still names it */
	ino_t ino;
	int alone;               /* why this process counts alone (-errno), 0 while it may share */
	bool forked;             /* a forked child that has not charged yet */
	uint64_t inherited;      /* pages of the local count that are a fork's copies */
};

/* Protects share and orders this process's charges; a leaf (only the file's lock is under it). */
UIOMMU_MUTEX_DEFINE(lv_lock);
static struct lv_share share = { .fd = -1 };

/* The lock byte of slot @i. */
static off_t lv_slot_byte(unsigned int i)
{
	return 1 + (off_t)i;
}

static int lv_ofd(int fd, int cmd, short type, off_t start, struct flock *out)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = 1 };
	int rc;

	do
		rc = sys_fcntl(fd, cmd, (long)(uintptr_t)&fl);
	while (rc && errno == EINTR);
	if (rc)
		return -errno;
	if (out)
		*out = fl;
	return 0;
}

static int lv_file_lock(int fd)
{
	return lv_ofd(fd, F_OFD_SETLKW, F_WRLCK, 0, NULL);
}

static void lv_file_unlock(int fd)
{
	lv_ofd(fd, F_OFD_SETLK, F_UNLCK, 0, NULL);
}

/* Does a process (another open file) hold slot @i's byte? An unanswerable test says yes. */
static bool lv_slot_alive(int fd, unsigned int i)
{
	struct flock fl;

	if (lv_ofd(fd, F_OFD_GETLK, F_WRLCK, lv_slot_byte(i), &fl))
		return true;
	return fl.l_type != F_UNLCK;
}

/* Frees the slots of dead processes, with their pages; under the file's lock. */
static void lv_reclaim(int fd, struct lv_file *f, unsigned int own)
{
	unsigned int i;

	for (i = 0; i != UIOMMU_LOCKED_VM_SLOTS; i++) {
		struct lv_slot *s = &f->slot[i];

		if (i == own || (!atomic_load(&s->pid) && !atomic_load(&s->pages)))
			continue;
		if (lv_slot_alive(fd, i))
			continue;
		atomic_store(&s->pages, 0);
		atomic_store(&s->pid, 0);
	}
}

/* The pages of every slot but @own (UIOMMU_LOCKED_VM_SLOTS: all); saturates. */
static uint64_t lv_sum(struct lv_file *f, unsigned int own)
{
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i != UIOMMU_LOCKED_VM_SLOTS; i++)
		if (i != own && check_add_overflow(sum, atomic_load(&f->slot[i].pages), &sum))
			return UINT64_MAX;
	return sum;
}

/*
 * The directory of the file, opened: the user's own and closed to others, or -EPERM (another
 * user's directory could hand us a file they can rewrite).
 */
static int lv_dir_open(void)
{
	const char *env = getenv(UIOMMU_LOCKED_VM_DIR_ENV), *xdg = getenv("XDG_RUNTIME_DIR");
	const char *tmpdir = getenv("TMPDIR");
	char path[PATH_MAX];
	struct stat st;
	int dfd;

	if (env) {
		if (!*env)
			return -ECANCELED; /* turned off: count alone, quietly */
		snprintf(path, sizeof(path), "%s", env);
	} else if (xdg && *xdg) {
		snprintf(path, sizeof(path), "%s", xdg);
	} else {
		if (!tmpdir || !*tmpdir)
			tmpdir = "/tmp";
		if (snprintf(path, sizeof(path), "%s/uiommu-%u", tmpdir, (unsigned int)geteuid()) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
	}
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	dfd = sys_openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	if (sys_fstat(dfd, &st)) {
		int rc = -errno;

		sys_close(dfd);
		return rc;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 0077)) {
		sys_close(dfd);
		return -EPERM;
	}
	return dfd;
}

/* Lays out a new file, or checks one made before; under the file's lock. */
static int lv_file_prepare(int fd, struct lv_file **out)
{
	struct lv_file *f;
	struct stat st;

	if (sys_fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077))
		return -EPERM;
	if (!st.st_size && sys_ftruncate(fd, sizeof(*f)))
		return -errno;
	else if (st.st_size && st.st_size != sizeof(*f))
		return -EPROTO;
	if (uiommu_should_fail())
		return -ENOMEM;
	f = sys_mmap(NULL, sizeof(*f), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (f == MAP_FAILED)
		return -ENOMEM;
	if (!atomic_load(&f->magic)) {
		/* New, or its maker died before the magic: the slots are still the zeroes of
		 * ftruncate() or, at worst, counts nobody's lock byte holds (reclaimed). */
		f->version = LV_VERSION;
		f->nslots = UIOMMU_LOCKED_VM_SLOTS;
		atomic_store(&f->magic, LV_MAGIC);
	} else if (atomic_load(&f->magic) != LV_MAGIC || f->version != LV_VERSION ||
		   f->nslots != UIOMMU_LOCKED_VM_SLOTS) {
		sys_munmap(f, sizeof(*f));
		return -EPROTO;
	}
	*out = f;
	return 0;
}

/* Takes a free slot (dead ones reclaimed first); under the file's lock. */
static int lv_slot_claim(int fd, struct lv_file *f, unsigned int *out)
{
	unsigned int i;

	lv_reclaim(fd, f, UIOMMU_LOCKED_VM_SLOTS);
	for (i = 0; i != UIOMMU_LOCKED_VM_SLOTS; i++) {
		if (atomic_load(&f->slot[i].pid))
			continue;
		/* Free yet locked: the pid and the lock are set together under the file's lock,
		 * so only a file someone wrote by hand; skip the slot rather than share it. */
		if (lv_ofd(fd, F_OFD_SETLK, F_WRLCK, lv_slot_byte(i), NULL))
			continue;
		atomic_store(&f->slot[i].pages, 0);
		atomic_store(&f->slot[i].pid, (int32_t)getpid());
		*out = i;
		return 0;
	}
	return -ENOSPC;
}

static void lv_atfork_prepare(void)
{
	uiommu_mutex_lock(&lv_lock);
}

static void lv_atfork_parent(void)
{
	uiommu_mutex_unlock(&lv_lock);
}

/*
 * The child's descriptor is the parent's open file: its locks are the parent's slot, which
 * must die with the parent. The child takes its own slot at its first charge.
 */
static void lv_atfork_child(void)
{
	if (share.fd >= 0) {
		sys_munmap(share.file, sizeof(*share.file));
		sys_close(share.fd);
		share.fd = -1;
		share.file = NULL;
	}
	share.forked = true;
	uiommu_mutex_unlock(&lv_lock);
}

static void lv_atfork_register(void)
{
	if (pthread_atfork(lv_atfork_prepare, lv_atfork_parent, lv_atfork_child))
		die("pthread_atfork");
}

/* Opens the file and takes a slot for the effective user: 0 or -errno, nothing kept. */
static int lv_share_open(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct lv_file *f = NULL;
	unsigned int slot;
	struct stat st;
	int dfd, fd, rc;

	lockdep_assert_held(&lv_lock);
	pthread_once(&once, lv_atfork_register);
	if (uiommu_should_fail())
		return -ENOMEM;
	dfd = lv_dir_open();
	if (dfd < 0)
		return dfd;
	fd = sys_openat(dfd, UIOMMU_LOCKED_VM_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			0600);
	rc = -errno;
	sys_close(dfd);
	if (fd < 0)
		return rc;
	rc = sys_fstat(fd, &st) ? -errno : lv_file_lock(fd);
	if (rc)
		goto out_close;
	rc = lv_file_prepare(fd, &f);
	if (rc)
		goto out_unlock;
	rc = lv_slot_claim(fd, f, &slot);
	if (rc)
		goto out_unmap;
	lv_file_unlock(fd);
	uiommu_fd_keep(fd);
	share.fd = fd;
	share.file = f;
	share.slot = slot;
	share.uid = geteuid();
	share.dev = st.st_dev;
	share.ino = st.st_ino;
	return 0;

out_unmap:
	sys_munmap(f, sizeof(*f));
out_unlock:
	lv_file_unlock(fd);
out_close:
	sys_close(fd);
	return rc;
}

/*
 * Does share.fd still name our file? A program that closes the fds it did not open
 * (closefrom(3)) closes it, and its number may name a file of the program's by now.
 */
static bool lv_share_intact(void)
{
	struct stat st;

	return !sys_fstat(share.fd, &st) && st.st_dev == share.dev && st.st_ino == share.ino;
}

/*
 * Forgets a share whose fd is gone: its slot died with the fd (nobody holds its lock), the
 * fd number is no longer ours to close. The next charge opens the file anew.
 */
static void lv_share_forget(void)
{
	uiommu_fd_unkeep(share.fd);
	sys_munmap(share.file, sizeof(*share.file));
	share.fd = -1;
	share.file = NULL;
}

/*
 * The share for @uid, opened at its first use: 0; -ENOENT when this process counts @uid
 * alone; -ENOMEM to retry later.
 */
static int lv_share_get(uid_t uid)
{
	int rc;

	lockdep_assert_held(&lv_lock);
	if (share.fd >= 0 && !lv_share_intact())
		lv_share_forget();
	if (share.fd >= 0)
		return share.uid == uid ? 0 : -ENOENT;
	if (share.alone || uid != getuid() || uid != geteuid())
		return -ENOENT;
	rc = lv_share_open();
	if (!rc || rc == -ENOMEM)
		return rc;
	share.alone = rc;
	if (rc != -ECANCELED)
		fprintf(stderr, "uiommu: the user's locked_vm cannot be shared (%s): this process counts "
			"its own pins only\n", strerror(-rc));
	return -ENOENT;
}

/* The slot's value for the local count @cur: its own pins, not a fork's copies. */
static uint64_t lv_own(uint64_t cur)
{
	lockdep_assert_held(&lv_lock);
	if (share.inherited > cur)
		share.inherited = cur;
	return cur - share.inherited;
}

/*
 * Takes lv_lock and the file's lock for user @uid's share: 0; or -errno with neither held
 * (-ENOENT: this process counts @uid alone).
 */
static int lv_enter(uid_t uid)
{
	int rc;

	uiommu_mutex_lock(&lv_lock);
	rc = lv_share_get(uid);
	if (!rc && lv_file_lock(share.fd))
		rc = -ENOMEM;
	if (rc)
		uiommu_mutex_unlock(&lv_lock);
	return rc;
}

static void lv_leave(void)
{
	lv_file_unlock(share.fd);
	uiommu_mutex_unlock(&lv_lock);
}

int uiommu_locked_vm_charge(uid_t uid, _Atomic uint64_t *local, uint64_t npages, uint64_t limit)
{
	uint64_t cur, next, total;
	int rc;

	rc = lv_enter(uid);
	if (rc)
		return rc;
	cur = atomic_load_explicit(local, memory_order_relaxed);
	if (share.forked) {
		share.inherited = cur;
		share.forked = false;
	}
	rc = -ENOMEM;
	if (check_add_overflow(cur, npages, &next))
		goto out_leave;
	next = lv_own(cur) + npages; /* no more than cur + npages */
	if (check_add_overflow(lv_sum(share.file, share.slot), next, &total) || total > limit) {
		lv_reclaim(share.fd, share.file, share.slot);
		if (check_add_overflow(lv_sum(share.file, share.slot), next, &total) ||
		    total > limit)
			goto out_leave;
	}
	/* An uncharge (account.c) may lower *local meanwhile: add, then sync the slot to it. */
	cur = atomic_fetch_add_explicit(local, npages, memory_order_relaxed) + npages;
	atomic_store(&share.file->slot[share.slot].pages, lv_own(cur));
	rc = 0;
out_leave:
	lv_leave();
	return rc;
}

void uiommu_locked_vm_sync(uid_t uid, _Atomic uint64_t *local)
{
	uiommu_mutex_lock(&lv_lock);
	/* A slot whose fd is gone may be another process's by now: never write it. */
	if (share.fd >= 0 && !lv_share_intact())
		lv_share_forget();
	if (share.fd >= 0 && share.uid == uid)
		atomic_store(&share.file->slot[share.slot].pages,
			     lv_own(atomic_load_explicit(local, memory_order_relaxed)));
	uiommu_mutex_unlock(&lv_lock);
}

int uiommu_locked_vm_total(uid_t uid, uint64_t *total)
{
	int rc;

	rc = lv_enter(uid);
	if (rc)
		return rc;
	lv_reclaim(share.fd, share.file, share.slot);
	*total = lv_sum(share.file, UIOMMU_LOCKED_VM_SLOTS);
	lv_leave();
	return 0;
}
