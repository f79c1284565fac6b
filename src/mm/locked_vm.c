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
 * kernel drops the lock when the open file goes, with the last descriptor and the last
 * mapping of it, so a process that dies, however (SIGKILL), leaves a slot whose byte nobody
 * holds: a dead slot. (A pid in the slot could name a new process after reuse; a robust futex
 * belongs to a thread, which may exit while its process pins on; the lock belongs to the
 * process's open file.) Its pages are given back when a charge would otherwise fail and when
 * a process opens the file; no process has to exit cleanly. A forked child drops its copies
 * of the descriptor and the mapping at once (the atfork handler), so the parent's slot dies
 * with the parent, and takes a slot of its own at its first charge. Our mapping holds the
 * file too: a program that closes our fd (closefrom(3)) leaves our slot alive and ours, so
 * the charges and uncharges, which only touch the mapping, need not ask whether the fd is
 * still ours; the calls that use the fd (a reclaim, the fork's close) check it (fstat) and,
 * when it is gone, drop the mapping (the slot dies) and open the file anew.
 *
 * What a forked child inherited: its copy of the library holds copies of the parent's
 * contexts and of their charges, but the parent keeps serving those contexts (the child's
 * calls on their fds go to the parent, charged in the parent's slot: processes.md), so the
 * copies pin nothing the kernel would count twice. The child's slot therefore holds its local
 * count less what it had at its first charge (share.inherited); a child's unpin is taken from
 * its own charges first, and the inherited part only shrinks when the local count drops
 * below it.
 *
 * The next server of an exec hand-over (remote.c) is a fork copy too, but it does serve its
 * copies, after the exec'ing image is gone: their charges move to a slot of its own. Before
 * the fork, uiommu_locked_vm_handover() opens the file anew (a second open file of this
 * process), claims a slot there and raises it to our slot's pages (its total first): from then
 * the total counts them twice, high, never low. The fork hands that open file to the child
 * and our handler closes our copy of it, so its slot's lock is the child's alone (and then the
 * grandchild's: it is kept across the next fork, as the next server is the middle process's
 * child); the child's slot holds what ours did, its share.inherited stays ours, so its slot is
 * again its local count less its inherited part. Our slot drops the pages when the exec drops
 * our descriptor and mapping: the slot dies and the next reclaim (the new image's first
 * charge, any slow path) gives them back; if the exec fails, the next server exits and its
 * slot dies instead. A SIGKILL anywhere leaves at worst both slots counted. A failed step
 * (no memory, no file) leaves the copy as any forked child's (its pins then in no slot).
 *
 * One step: the file's header holds a robust process-shared mutex, the user's total and a
 * high-water mark (the slots past it are free). Every charge, uncharge, claim and reclaim
 * holds the mutex, so a check of the total against the limit and the update of the slot and
 * the total cannot interleave with another process's; lv_lock (below) orders this process's
 * threads around it and keeps a fork from copying it held. Uncontended, both are a compare-
 * and-swap in userspace: the common charge and uncharge make no system call and touch one
 * slot and the total (the kernel's charge is one atomic on user->locked_vm). A charge the
 * total would refuse takes the slow path: dead slots are reclaimed (an fcntl each, up to the
 * mark), the total is recomputed from the slots, and the check is made again.
 *
 * Dying inside: every field is one aligned word written with one store, and the total is
 * raised before a slot grows and lowered after it shrinks, so at every instruction the total
 * is at or above the sum of the slots below the mark: a holder SIGKILLed anywhere leaves at
 * worst a total too high (a charge refused too early goes to the slow path, which recomputes
 * it) and the mutex "owner died", on which the next locker recomputes the total before it
 * marks the mutex consistent. A holder stopped (SIGSTOP, a debugger) inside blocks the other
 * processes' charges and uncharges until it goes on or dies, as a held lock does.
 *
 * Invariant (between calls, under the mutex): the total is the sum of the slots below the
 * mark; the slot of this process holds exactly the local count of the user it was opened for
 * (struct uiommu_user::locked_vm of account.c) less share.inherited; inside an uncharge it may
 * be higher for a moment, never lower, so a charge is never let past the limit.
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
#define LV_VERSION 2u /* 2: the robust mutex, the stored total and the mark */

struct lv_slot {
	_Atomic int32_t pid;     /* the owner, 0 when free; the lock byte says whether it lives */
	uint32_t reserved;
	_Atomic uint64_t pages;  /* the owner's charges for the user */
};

struct lv_file {
	_Atomic uint64_t magic;  /* written last at creation: 0 means not yet laid out */
	uint32_t version;
	uint32_t nslots;
	/*
	 * Protects total, hiwater and the slots (robust, process-shared); under lv_lock and,
	 * at an open, under the OFD lock of byte 0. A holder that dies leaves it to the next
	 * locker with EOWNERDEAD (lv_file_enter() recomputes the total).
	 */
	pthread_mutex_t lock;
	_Atomic uint64_t total;  /* the sum of the slots below hiwater; never below it */
	_Atomic uint32_t hiwater; /* the slots at and past it are free */
	uint32_t reserved;
	struct lv_slot slot[UIOMMU_LOCKED_VM_SLOTS];
};

struct lv_share {
	int fd;                  /* the open file, -1 when this process has none */
	struct lv_file *file;    /* its mapping: holds the file, and so our slot's lock */
	unsigned int slot;       /* ours */
	uid_t uid;               /* whose count: the effective uid at the open */
	dev_t dev;               /* the file, to see that fd still names it */
	ino_t ino;
	int alone;               /* why this process counts alone (-errno), 0 while it may share */
	bool forked;             /* a forked child that has not charged yet */
	bool handover;           /* the next server's share: kept across the next fork */
	uint64_t inherited;      /* pages of the local count that are a fork's copies */
};

/* The slot made for the next server of a hand-over, until the fork hands it over. */
struct lv_next {
	int fd;                  /* -1: none pending */
	struct lv_file *file;
	unsigned int slot;
};

/*
 * Protects share and orders this process's calls; lock order: lv_lock, then the OFD lock of
 * byte 0 (opens only), then the file's robust mutex. Nothing is taken under it but those.
 */
UIOMMU_MUTEX_DEFINE(lv_lock);
static struct lv_share share = { .fd = -1 };
static struct lv_next next_server = { .fd = -1 }; /* under lv_lock */

void (*_Atomic uiommu_locked_vm_test_park)(void);

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

/* The OFD lock of byte 0 orders the opens: a file's layout, and claims, one at a time. */
static int lv_open_lock(int fd)
{
	return lv_ofd(fd, F_OFD_SETLKW, F_WRLCK, 0, NULL);
}

static void lv_open_unlock(int fd)
{
	lv_ofd(fd, F_OFD_SETLK, F_UNLCK, 0, NULL);
}

static uint64_t lv_pages(struct lv_file *f, unsigned int i)
{
	return atomic_load_explicit(&f->slot[i].pages, memory_order_relaxed);
}

static unsigned int lv_hiwater(struct lv_file *f)
{
	unsigned int hw = atomic_load_explicit(&f->hiwater, memory_order_relaxed);

	return hw < UIOMMU_LOCKED_VM_SLOTS ? hw : UIOMMU_LOCKED_VM_SLOTS;
}

/* The pages of the slots below the high-water mark; saturates. Under the file's mutex. */
static uint64_t lv_sum(struct lv_file *f)
{
	unsigned int i, hw = lv_hiwater(f);
	uint64_t sum = 0;

	for (i = 0; i != hw; i++)
		if (check_add_overflow(sum, lv_pages(f, i), &sum))
			return UINT64_MAX;
	return sum;
}

/*
 * Slot @i's pages become @pages, the total following. The order keeps the total at or above
 * the sum at every instruction (up first when it grows, last when it shrinks): a holder
 * killed between the two stores leaves a total too high, which only sends the next charge
 * that it would refuse to the slow path, where it is recomputed. Under the file's mutex.
 */
static void lv_slot_set(struct lv_file *f, unsigned int i, uint64_t pages)
{
	uint64_t old = lv_pages(f, i);
	void (*park)(void);

	if (pages > old) {
		atomic_fetch_add_explicit(&f->total, pages - old, memory_order_relaxed);
		park = atomic_load_explicit(&uiommu_locked_vm_test_park, memory_order_relaxed);
		if (unlikely(park))
			park();
		atomic_store_explicit(&f->slot[i].pages, pages, memory_order_relaxed);
	} else if (pages < old) {
		atomic_store_explicit(&f->slot[i].pages, pages, memory_order_relaxed);
		atomic_fetch_sub_explicit(&f->total, old - pages, memory_order_relaxed);
	}
}

/*
 * Takes the file's mutex. A holder that died inside (SIGKILL at any instruction) left at
 * worst a total above the sum of the slots or a claim half made past the high-water mark:
 * the total is recomputed and the mutex marked consistent. 0, or -EIO for a mutex nobody can
 * recover (only a file written by hand).
 */
static int lv_file_enter(struct lv_file *f)
{
	int rc = pthread_mutex_lock(&f->lock);

	if (rc == EOWNERDEAD) {
		atomic_store_explicit(&f->total, lv_sum(f), memory_order_relaxed);
		rc = pthread_mutex_consistent(&f->lock);
	}
	return rc ? -EIO : 0;
}

static void lv_file_leave(struct lv_file *f)
{
	pthread_mutex_unlock(&f->lock);
}

/* Does a process (another open file) hold slot @i's byte? An unanswerable test says yes. */
static bool lv_slot_alive(int fd, unsigned int i)
{
	struct flock fl = { .l_type = F_WRLCK };

	if (lv_ofd(fd, F_OFD_GETLK, F_WRLCK, lv_slot_byte(i), &fl))
		return true;
	return fl.l_type != F_UNLCK;
}

/*
 * Frees the slots of dead processes, with their pages, and lowers the high-water mark over
 * the free slots at its top; under the file's mutex, @fd naming the file.
 */
static void lv_reclaim(int fd, struct lv_file *f, unsigned int own)
{
	unsigned int i, hw = lv_hiwater(f);

	for (i = 0; i != hw; i++) {
		struct lv_slot *s = &f->slot[i];

		if (i == own || (!atomic_load_explicit(&s->pid, memory_order_relaxed) &&
				 !lv_pages(f, i)))
			continue;
		if (lv_slot_alive(fd, i))
			continue;
		lv_slot_set(f, i, 0);
		atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
	}
	while (hw && hw - 1 != own && !atomic_load_explicit(&f->slot[hw - 1].pid,
							    memory_order_relaxed))
		hw--;
	atomic_store_explicit(&f->hiwater, hw, memory_order_relaxed);
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

/* Lays out the file's mutex: robust, so that a holder's death is seen; shared. */
static int lv_file_mutex_init(struct lv_file *f)
{
	pthread_mutexattr_t attr;
	int rc;

	if (uiommu_should_fail() || pthread_mutexattr_init(&attr))
		return -ENOMEM;
	rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!rc)
		rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (!rc)
		rc = pthread_mutex_init(&f->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return -rc;
}

/* Lays out a new file, or checks one made before; under the OFD lock of byte 0. */
static int lv_file_prepare(int fd, struct lv_file **out)
{
	struct lv_file *f;
	struct stat st;
	int rc;

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
		/* New, or its maker died before the magic: nobody has taken the mutex nor a slot
		 * yet (both wait for the magic), so all is still the zeroes of ftruncate(). */
		rc = lv_file_mutex_init(f);
		if (rc)
			goto out_unmap;
		f->version = LV_VERSION;
		f->nslots = UIOMMU_LOCKED_VM_SLOTS;
		atomic_store(&f->magic, LV_MAGIC);
	} else if (atomic_load(&f->magic) != LV_MAGIC || f->version != LV_VERSION ||
		   f->nslots != UIOMMU_LOCKED_VM_SLOTS) {
		rc = -EPROTO;
		goto out_unmap;
	}
	*out = f;
	return 0;

out_unmap:
	sys_munmap(f, sizeof(*f));
	return rc;
}

/*
 * Takes a free slot (dead ones reclaimed first), below the high-water mark if one is free,
 * else at it; under the OFD lock of byte 0 and the file's mutex.
 */
static int lv_slot_claim(int fd, struct lv_file *f, unsigned int *out)
{
	unsigned int i, hw;

	lv_reclaim(fd, f, UIOMMU_LOCKED_VM_SLOTS);
	hw = lv_hiwater(f);
	for (i = 0; i != UIOMMU_LOCKED_VM_SLOTS; i++) {
		/* Past the mark a slot is free whatever it holds (a claim cut short there). */
		if (i < hw && atomic_load_explicit(&f->slot[i].pid, memory_order_relaxed))
			continue;
		/* Free yet locked: the pid and the lock are set together under the mutex, so
		 * only a file someone wrote by hand; skip the slot rather than share it. */
		if (lv_ofd(fd, F_OFD_SETLK, F_WRLCK, lv_slot_byte(i), NULL))
			continue;
		/* A free slot below the mark holds no pages (reclaim zeroes them first); one
		 * past it is outside the total: zero it before the mark takes it in. */
		atomic_store_explicit(&f->slot[i].pages, 0, memory_order_relaxed);
		atomic_store_explicit(&f->slot[i].pid, (int32_t)getpid(), memory_order_relaxed);
		if (i >= hw)
			atomic_store_explicit(&f->hiwater, i + 1, memory_order_relaxed);
		*out = i;
		return 0;
	}
	return -ENOSPC;
}

static void lv_atfork_prepare(void)
{
	uiommu_mutex_lock(&lv_lock);
}

/* Lets go of the next server's open file in this process (its slot lives on in the child). */
static void lv_next_drop(void)
{
	if (next_server.fd < 0)
		return;
	sys_munmap(next_server.file, sizeof(*next_server.file));
	uiommu_fd_unkeep(next_server.fd);
	sys_close(next_server.fd);
	next_server.fd = -1;
	next_server.file = NULL;
}

static void lv_atfork_parent(void)
{
	lv_next_drop();
	uiommu_mutex_unlock(&lv_lock);
}

/*
 * Does share.fd still name our file? A program that closes the fds it did not open
 * (closefrom(3)) closes it, and its number may name a file of the program's by now. Our
 * mapping still holds the file, so our slot (its lock) lives on meanwhile: only the calls
 * that need the fd (a reclaim, a fork's close) ask.
 */
static bool lv_share_intact(void)
{
	struct stat st;

	return !sys_fstat(share.fd, &st) && st.st_dev == share.dev && st.st_ino == share.ino;
}

/*
 * The child's descriptor and mapping are the parent's open file: its locks are the parent's
 * slot, which must die with the parent. The child takes its own slot at its first charge.
 * (No thread of the parent was inside the file's mutex: lv_lock is held across the fork.)
 */
static void lv_atfork_child(void)
{
	if (share.handover) {
		/* The next server, forked by the middle process: the share is its own. */
		share.handover = false;
		atomic_store_explicit(&share.file->slot[share.slot].pid, (int32_t)getpid(),
				      memory_order_relaxed);
		uiommu_mutex_unlock(&lv_lock);
		return;
	}
	if (share.fd >= 0) {
		sys_munmap(share.file, sizeof(*share.file));
		if (lv_share_intact())
			sys_close(share.fd);
		else
			uiommu_fd_unkeep(share.fd);
		share.fd = -1;
		share.file = NULL;
	}
	if (next_server.fd >= 0) {
		/* The middle process of a hand-over: the slot made for it, its charges in it. */
		share.fd = next_server.fd;
		share.file = next_server.file;
		share.slot = next_server.slot;
		share.handover = true;
		next_server.fd = -1;
		next_server.file = NULL;
		atomic_store_explicit(&share.file->slot[share.slot].pid, (int32_t)getpid(),
				      memory_order_relaxed);
	} else {
		share.forked = true;
	}
	uiommu_mutex_unlock(&lv_lock);
}

static void lv_atfork_register(void)
{
	if (pthread_atfork(lv_atfork_prepare, lv_atfork_parent, lv_atfork_child))
		die("pthread_atfork");
}

/*
 * Opens the file and takes a slot in it for the effective user: 0 with *@fdp (kept), *@fp,
 * *@slotp and the file's identity in *@st; or -errno, nothing kept.
 */
static int lv_file_open(int *fdp, struct lv_file **fp, unsigned int *slotp, struct stat *st)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct lv_file *f = NULL;
	unsigned int slot;
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
	rc = sys_fstat(fd, st) ? -errno : lv_open_lock(fd);
	if (rc)
		goto out_close;
	rc = lv_file_prepare(fd, &f);
	if (rc)
		goto out_unlock;
	rc = lv_file_enter(f);
	if (rc)
		goto out_unmap;
	rc = lv_slot_claim(fd, f, &slot);
	lv_file_leave(f);
	if (rc)
		goto out_unmap;
	lv_open_unlock(fd);
	uiommu_fd_keep(fd);
	*fdp = fd;
	*fp = f;
	*slotp = slot;
	return 0;

out_unmap:
	sys_munmap(f, sizeof(*f));
out_unlock:
	lv_open_unlock(fd);
out_close:
	sys_close(fd);
	return rc;
}

/* Opens the file and takes a slot for the effective user: 0 or -errno, nothing kept. */
static int lv_share_open(void)
{
	struct stat st;
	int rc;

	rc = lv_file_open(&share.fd, &share.file, &share.slot, &st);
	if (rc)
		return rc;
	share.uid = geteuid();
	share.dev = st.st_dev;
	share.ino = st.st_ino;
	return 0;
}

/*
 * Forgets a share whose fd is gone: the fd number is no longer ours to close; unmapping lets
 * go of the file, so the slot dies (the next reclaim gives its pages back). The next charge
 * opens the file anew.
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

/*
 * The share for @uid with an fd that names the file, for a reclaim: a share whose fd the
 * program closed is forgotten and opened anew (a new slot). As lv_share_get().
 */
static int lv_share_get_fd(uid_t uid)
{
	lockdep_assert_held(&lv_lock);
	if (share.fd >= 0 && !lv_share_intact())
		lv_share_forget();
	return lv_share_get(uid);
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
 * Takes lv_lock and the file's mutex for user @uid's share (@fd: with an fd that names the
 * file): 0; or -errno with neither held (-ENOENT: this process counts @uid alone).
 */
static int lv_enter(uid_t uid, bool fd)
{
	int rc;

	uiommu_mutex_lock(&lv_lock);
	rc = fd ? lv_share_get_fd(uid) : lv_share_get(uid);
	if (!rc && lv_file_enter(share.file))
		rc = -ENOMEM;
	if (rc)
		uiommu_mutex_unlock(&lv_lock);
	return rc;
}

static void lv_leave(void)
{
	lv_file_leave(share.file);
	uiommu_mutex_unlock(&lv_lock);
}

/*
 * Would our slot at @own leave the user's total within @limit? Under the file's mutex; the
 * total is at or above the true sum, so a yes is never wrong.
 */
static bool lv_fits(uint64_t own, uint64_t limit)
{
	uint64_t total = atomic_load_explicit(&share.file->total, memory_order_relaxed);
	uint64_t mine = lv_pages(share.file, share.slot);
	uint64_t others = total > mine ? total - mine : 0;

	return !check_add_overflow(others, own, &total) && total <= limit;
}

int uiommu_locked_vm_charge(uid_t uid, _Atomic uint64_t *local, uint64_t npages, uint64_t limit)
{
	uint64_t cur, next;
	int rc;

	rc = lv_enter(uid, false);
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
	if (unlikely(!lv_fits(next, limit))) {
		/*
		 * The slow path: dead processes' pages are given back and the total recomputed
		 * from the live slots, with an fd checked to name the file (the share may be new
		 * after it: its slot holds nothing yet, and share.inherited stays). lv_lock is
		 * kept: another thread's charge in between would make next stale.
		 */
		lv_file_leave(share.file);
		rc = lv_share_get_fd(uid);
		if (!rc && lv_file_enter(share.file))
			rc = -ENOMEM;
		if (rc) {
			uiommu_mutex_unlock(&lv_lock);
			return rc;
		}
		lv_reclaim(share.fd, share.file, share.slot);
		atomic_store_explicit(&share.file->total, lv_sum(share.file), memory_order_relaxed);
		rc = -ENOMEM;
		if (!lv_fits(next, limit))
			goto out_leave;
	}
	/* An uncharge (account.c) may lower *local meanwhile: add, then sync the slot to it. */
	cur = atomic_fetch_add_explicit(local, npages, memory_order_relaxed) + npages;
	lv_slot_set(share.file, share.slot, lv_own(cur));
	rc = 0;
out_leave:
	lv_leave();
	return rc;
}

void uiommu_locked_vm_sync(uid_t uid, _Atomic uint64_t *local)
{
	uiommu_mutex_lock(&lv_lock);
	/* The slot is ours while our mapping holds the file, whatever became of the fd. */
	if (share.fd >= 0 && share.uid == uid && !lv_file_enter(share.file)) {
		lv_slot_set(share.file, share.slot,
			    lv_own(atomic_load_explicit(local, memory_order_relaxed)));
		lv_file_leave(share.file);
	}
	uiommu_mutex_unlock(&lv_lock);
}

int uiommu_locked_vm_total(uid_t uid, uint64_t *total)
{
	int rc;

	rc = lv_enter(uid, true);
	if (rc)
		return rc;
	/* The stored total, not a new sum: what a charge checks, the dead taken out of it. */
	lv_reclaim(share.fd, share.file, share.slot);
	*total = atomic_load_explicit(&share.file->total, memory_order_relaxed);
	lv_leave();
	return 0;
}

int uiommu_locked_vm_handover(void)
{
	struct lv_file *f;
	unsigned int slot;
	struct stat st;
	int fd, rc;

	uiommu_mutex_lock(&lv_lock);
	lv_next_drop(); /* one that no fork took (a fork that failed drops it too) */
	rc = 0;
	if (share.fd < 0)
		goto out_unlock; /* no slot: nothing of ours is counted, nothing to move */
	rc = lv_file_open(&fd, &f, &slot, &st);
	if (rc)
		goto out_unlock;
	/* The same file as our slot's (not one made anew in its place since). */
	rc = -ESTALE;
	if (st.st_dev != share.dev || st.st_ino != share.ino)
		goto out_close;
	rc = lv_file_enter(f);
	if (rc)
		goto out_close;
	/* Raised before ours drops (at the exec): the total is never below the slots' sum. */
	lv_slot_set(f, slot, lv_pages(f, share.slot));
	lv_file_leave(f);
	next_server.fd = fd;
	next_server.file = f;
	next_server.slot = slot;
	uiommu_mutex_unlock(&lv_lock);
	return 0;

out_close:
	/* The slot holds nothing yet, or the file is not ours: dies with the open file. */
	sys_munmap(f, sizeof(*f));
	uiommu_fd_unkeep(fd);
	sys_close(fd);
out_unlock:
	uiommu_mutex_unlock(&lv_lock);
	return rc;
}
