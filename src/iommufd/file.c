// SPDX-License-Identifier: MIT
/*
 * The /dev/iommu file and its fds: the library's public entry points.
 *
 * A struct iommufd_file stands for the kernel's struct file of an open /dev/iommu: one context,
 * shared by every fd that dup() made from the first. Each fd of the process that refers to it
 * holds a reference, and so does every ioctl in flight on it, so a close() racing an ioctl on
 * another thread leaves the context alive until that ioctl returns, as the kernel's fdget()
 * does. The last reference releases the context (iommufd_ctx_release()).
 *
 * The ioctls of main.c's RCU dispatch (DESTROY of a missing ID, IOVA_RANGES) take no reference:
 * uiommu_ioctl() finds the file and runs their lookups inside rcu_read_lock(), and the release
 * of a /dev/iommu file waits a grace period (synchronize_rcu()) before it tears the context
 * down. That is enough because a count of 0 means no slot holds the file any more (every slot
 * holds a reference), so no new reader can find it, and the grace period outlasts every reader
 * that found it before. The rule that keeps the wait short and deadlock-free: such a handler
 * takes no lock, never sleeps, never touches user memory (its copy-in runs before the section,
 * its reply after) and never drops a file reference. The release still runs before the last
 * close() returns, but for one case: a signal handler that closes the last fd while its thread
 * is inside such a section (the grace period would wait for that thread, which cannot go on
 * until the handler returns). iommufd_file_put() sees the section (rcu_read_ongoing()) and
 * leaves the release to a call_rcu() callback, after the interrupted ioctl is done.
 *
 * The fd numbers are real: each iommufd fd is one end of a socketpair that we own, so the
 * number cannot be taken by anything else while it is open, and close-on-exec, fork
 * inheritance and the process's fd limit behave as for any fd. The other end (the peer) stays
 * with us: it carries what another process that gets the fd needs to reach the file, and its
 * POLLHUP is the last close of the fd anywhere (remote.c has the model; docs/processes.md).
 * A file of another process's (inherited across fork, or adopted) names its server and is
 * served there: only its identity, access mode and node are used here, and, once its server
 * redirected a call (remote.h: a VFIO cdev bound through another process), the file our calls
 * on it go to from then on (struct iommufd_redirect: in-process when that file is ours).
 *
 * Identity. A close that bypasses us (close_range() from an old libc, fclose() of an fdopen()ed
 * iommufd, a raw system call) frees the number, and the next file given it must not have its
 * ioctls answered by us. Each backing socket has an inode of its own, recorded in the file
 * (dev, ino), which names the file exactly: fstat() of the fd says whether the number still
 * names it (fdt_check()). That costs a system call (~1.9x a null ioctl: bench/README.md), too
 * much for the ioctl path, so it runs where numbers change hands instead of where they are used.
 * Under the preload layer, which says so with uiommu_fd_track(), every close the layer can see
 * reaches us before the number is free (close, close_range, closefrom, dup2/dup3 onto ours,
 * syscall(SYS_close / SYS_close_range / SYS_dup2 / SYS_dup3), fclose() of a stream on ours:
 * uiommu_fd_close_by() closes through the caller's function under fdt_lock, so no file of ours
 * can be installed at the number in between), and every fd-creating call it can see reports
 * the number it returned (uiommu_fd_note_new()): a number the table holds there was closed
 * behind our back, and the check drops it. uiommu_is_fd() then trusts the table: one load. What
 * is left is a close the layer cannot see (an inline system call, a close inside libc) followed
 * by a reuse it cannot see either, before the next call on the number (docs/running.md lists
 * them); when that close was the file's last fd anywhere, the server thread, which sees the
 * peer hang up, drops such stale slots too (iommufd_file_gone_anywhere()). Without the layer, or with $UIOMMU_FD_CHECK=strict, uiommu_is_fd() checks every time,
 * as it did before. Adoption (uiommu_fd_adopt()) always checks: it is itself the report of a
 * new number. fds the table does not hold cost nothing either way.
 * close_range() and closefrom() go through uiommu_fd_close_range(), which closes ours in the
 * range first.
 *
 * What the VFS answers before any driver (fs/ioctl.c's generic requests such as FIOCLEX and
 * FIONBIO, read/write on a file without those ops, fs/read_write.c's EBADF for the wrong access
 * mode) is answered here for every file of the table, on the backing fd where it takes effect.
 * A file whose ops have read/write (a VFIO device fd: its regions) gets them after those
 * checks, at the file's own position for read()/write().
 *
 * Nodes. A file opened through a device node carries that node (struct iommufd_node: path,
 * numbers, mode) for uiommu_fstat() and uiommu_fd_path(); the identity check above looks at
 * the backing socket with the raw system call, since the preload layer's fstat() answers our
 * fds with their node.
 *
 * The fd -> file map is a two-level table of atomic pointers: the ioctl path reads it without a
 * lock under RCU; changes are made under fdt_lock.
 *
 * Sub-fds. Some ioctls hand out an fd of their own (the selftest's access fd, vEVENTQ, fault
 * queue and dma-buf fds). An event sub-fd (ops->event: a queue's) is a stream whose POLLIN is
 * a byte kept in its socket while the queue holds something (iommufd_subfd_ready()). The byte
 * leaves when the queue empties: the reader or writer whose call emptied it takes it out of
 * its fd (the owed count of its reply); any other emptying takes it through a private copy of
 * an fd of the socket, here or in a holder that said it holds one (a note it wrote into the
 * fd, remote.h), checked to be that socket (iommufd_file_ready_take()). Such a file is an
 * iommufd_file too, with ops: it lives in the same table (so
 * close() through the preload layer or uiommu_close() finds it, and dup() shares it), holds a
 * reference on the file of the context it was made in (the context outlives it, as the
 * kernel's sub-files pin the iommufd file), answers ENOTTY to ioctls, and at its last reference
 * calls ops->release() on what it stands for. Making one is split so that nothing can fail
 * after the ioctl's reply is written: iommufd_subfd_alloc() reserves the fd number and every
 * allocation, iommufd_subfd_install() only publishes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <linux/close_range.h>
#include <linux/fs.h>

#include "machine/sysfs.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "mm/account.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"

/*
 * A process that holds an fd of an event file of ours, as its note said: a pidfd of it (ours,
 * kept) and its number of the fd, which may have been closed or reused since.
 */
struct iommufd_holder {
	int pidfd;
	int fd;
	pid_t pid;
};

/*
 * Holders remembered per event file. More are rarely needed: the newest is tried first, and
 * one that still holds the fd is enough; a dead one makes room.
 */
#define FILE_HOLDERS_MAX 8

struct iommufd_file {
	atomic_long refs;          /* fds referring to it + ioctls in flight */
	struct iommufd_ctx *ictx;  /* constant; NULL for a sub-fd */
	const struct iommufd_subfd_ops *ops; /* a sub-fd's; NULL for /dev/iommu; constant */
	void *priv;                /* a sub-fd's object; constant */
	struct iommufd_file *parent; /* a sub-fd: its context's file, a reference; constant */
	dev_t dev;                 /* the backing socket's identity (fstat()); constant */
	ino_t ino;
	bool readable, writable;   /* the open's access mode, as the kernel's f_mode; constant */
	bool event;                /* another process's event fd (ours: ops->event); constant */
	/* Set before the fd is handed out (the open's node, a sub-fd's name), then constant. */
	struct iommufd_node node;
	bool has_node;
	_Atomic off_t pos;         /* read(2)/write(2) position (the kernel's f_pos) */
	/*
	 * Who serves it (remote.c): iommufd_self_server for a file of ours; another process's
	 * server for one inherited across fork or adopted, whose every other field above but
	 * the identity, the access mode and the node is not ours to use. Constant.
	 */
	struct iommufd_server *server;
	uint64_t token;            /* its name at its server; constant */
	uint8_t secret[WIRE_SECRET_LEN]; /* what proves a caller holds an fd of it; constant */
	int peer;                  /* ours: the other end of the fds' socket; closed at release */
	atomic_bool held;          /* ours: the fds anywhere hold one reference, until HUP */
	/*
	 * An event fd's readiness (ops->event): whether the byte that makes the fd POLLIN is in
	 * its socket, under the queue's own lock (iommufd_subfd_ready()); and how many bytes
	 * sent are no longer meant, for the next reader or writer to take out of the socket.
	 */
	bool ready;
	atomic_uint ready_owed;
	/*
	 * An event file of ours: the processes whose notes (remote.h) said they hold an fd of it,
	 * oldest first, to take the byte out through when the queue empties with no reader and
	 * no fd of it is left here (iommufd_file_ready_take_held()). holders_lock protects them
	 * and the reads of the peer; a leaf, taken after the queue's lock.
	 */
	struct uiommu_mutex holders_lock;
	struct iommufd_holder holders[FILE_HOLDERS_MAX];
	unsigned int nr_holders;
	atomic_int local_fd;       /* ours: the last fd installed for it here, a hint (may be stale) */
	struct iommufd_file *export_next; /* in export_table; export_lock */
	/*
	 * Ours, held by fds of other processes only, as far as we know: a close here was not
	 * the last anywhere (files_away). gone_lock
	 */
	bool away;
	struct iommufd_file *away_next;
	/*
	 * Another process's file whose calls its server redirected (remote.h): where we make
	 * them ourselves from then on. Set once, let go with the file (iommufd_file_put()).
	 */
	_Atomic(struct iommufd_redirect *) redirect;
	struct rcu_head rcu;
};

/*
 * The target of a redirect: the file the server of one of ours delegates to, held open by our
 * copy of its fd, a library fd (kept, in no table: no call of the program reaches it). Its
 * last fd anywhere is the last of the delegating file's release and of every such copy.
 */
struct iommufd_redirect {
	int fd;
	struct iommufd_server *server;
	uint64_t token;
	uint8_t secret[WIRE_SECRET_LEN];
	struct iommufd_file *local; /* the target is a file we serve: it, a reference; or NULL */
};

/*
 * Our files by token, for the wire (remote.c) and adoption: a hash of chains. Protects
 * export_table and every file's export_next; a leaf, after fdt_lock.
 */
#define EXPORT_BUCKETS 256u
UIOMMU_MUTEX_DEFINE(export_lock);
/*
 * Serialises the last-close checks of our own closes with the server thread's and a destroy's
 * (iommufd_files_settle()), so that when a close here was the last anywhere this thread drops
 * the last reference (the release is done when close() returns, as the kernel's), and a
 * release another thread started is done when the lock is let go. The server thread's reads
 * of an event file's notes hold their reference under it too (iommufd_file_notes_read()), so
 * that none outlives a settle that saw the last close. Protects files_away and
 * each file's away and away_next. After fdt_lock, before every lock a release takes
 * (vfio_cdev_lock among them) and export_lock: never taken under those.
 */
UIOMMU_MUTEX_DEFINE(gone_lock);
/*
 * The files of ours whose fds, after a close here, live on only elsewhere (gone_lock): their
 * last close anywhere may come from another process's exit, which iommufd_files_settle()
 * looks for. A file is listed while held (the fds' reference keeps it), and leaves the list
 * when that reference goes. files_away_nr counts them, for a lock-free "none", until the
 * gone_lock section that unlisted one ends (gone_unlock(): its release is done by then), so
 * that a settle that finds none has none to wait for either.
 */
static struct iommufd_file *files_away;
static long files_unlisted; /* gone_lock */
static atomic_long files_away_nr;

/* gone_lock goes: what this section unlisted has been released (if it was the last). */
static void gone_unlock(void)
{
	if (files_unlisted)
		atomic_fetch_sub_explicit(&files_away_nr, files_unlisted, memory_order_release);
	files_unlisted = 0;
	uiommu_mutex_unlock(&gone_lock);
}
static struct iommufd_file *export_table[EXPORT_BUCKETS];
static _Atomic uint64_t export_tokens = 1;

/*
 * Who dropped the last reference of a file of ours, for leak reports (iommufd_files_dump()):
 * the server thread at a hang-up it saw, and call_rcu()'s thread for a signal handler's close.
 */
static _Thread_local bool file_put_by_server;
static atomic_ulong files_released_by_server, files_released_by_rcu;

static bool iommufd_file_is_local(const struct iommufd_file *file)
{
	return file->server == atomic_load_explicit(&iommufd_self_server, memory_order_relaxed);
}

/* The address space of the caller a server thread runs a call for (remote.c), if any. */
static __thread struct uiommu_mm *file_remote_caller;
/*
 * The fds that call made here (sub-fds, VFIO files): the server hands them to the caller with
 * the reply and closes its own (remote.c). At most WIRE_NEW_FDS_MAX per call.
 */
static __thread int file_remote_new_fds[WIRE_NEW_FDS_MAX];
static __thread unsigned int file_remote_nr_new;

/* A file for @fd was published during a call of another process: note it for the reply. */
static void iommufd_file_note_new(int fd)
{
	if (file_remote_caller && !WARN_ON(file_remote_nr_new == WIRE_NEW_FDS_MAX))
		file_remote_new_fds[file_remote_nr_new++] = fd;
}

/* Room for one more fd made for another process's call? (No caller of ours: always.) */
static bool iommufd_file_new_room(void)
{
	return !file_remote_caller || file_remote_nr_new < WIRE_NEW_FDS_MAX;
}

#define FDT_CHUNK_SHIFT 10
#define FDT_CHUNK (1u << FDT_CHUNK_SHIFT)
#define FDT_CHUNKS 4096u /* fds up to 4M */

typedef _Atomic(struct iommufd_file *) fdt_slot;

static _Atomic(fdt_slot *) fdt[FDT_CHUNKS];
UIOMMU_MUTEX_DEFINE(fdt_lock); /* protects fdt updates; before ictx->objects_lock */

/*
 * The address space of every caller: this process. Taken at first use and kept; a forked
 * child takes its own (iommufd_files_atfork_child()).
 */
static _Atomic(struct uiommu_mm *) file_mm;

struct uiommu_mm *iommufd_caller_mm(void)
{
	struct uiommu_mm *mm, *expected = NULL;

	if (file_remote_caller)
		return file_remote_caller;
	mm = atomic_load_explicit(&file_mm, memory_order_acquire);
	if (mm)
		return mm;
	mm = uiommu_mm_self();
	if (IS_ERR(mm))
		return NULL;
	if (!atomic_compare_exchange_strong(&file_mm, &expected, mm)) {
		uiommu_mm_put(mm);
		mm = expected;
	}
	return mm;
}

static fdt_slot *fdt_slot_get(int fd, bool create)
{
	fdt_slot *chunk;
	unsigned int c;

	if (fd < 0 || (unsigned int)fd >= FDT_CHUNKS * FDT_CHUNK)
		return NULL;
	c = (unsigned int)fd >> FDT_CHUNK_SHIFT;
	chunk = atomic_load_explicit(&fdt[c], memory_order_acquire);
	if (!chunk && create) {
		chunk = uiommu_calloc(FDT_CHUNK, sizeof(*chunk));
		if (!chunk)
			return NULL;
		/* Chunks live as long as the process; published once, under fdt_lock. */
		atomic_store_explicit(&fdt[c], chunk, memory_order_release);
	}
	return chunk ? &chunk[fd & (FDT_CHUNK - 1)] : NULL;
}

static void iommufd_file_free_rcu(struct rcu_head *head)
{
	iommufd_rcu_callback_begin();
	uiommu_free_deferred(container_of(head, struct iommufd_file, rcu));
}

static void export_del(struct iommufd_file *file)
{
	struct iommufd_file **pos;

	uiommu_mutex_lock(&export_lock);
	for (pos = &export_table[file->token % EXPORT_BUCKETS]; *pos; pos = &(*pos)->export_next) {
		if (*pos == file) {
			*pos = file->export_next;
			break;
		}
	}
	uiommu_mutex_unlock(&export_lock);
}

static bool iommufd_file_is_event(const struct iommufd_file *file)
{
	return file->ops ? file->ops->event : file->event;
}

/* An event file's holders go (its release, or a fork child's copy of a file it does not serve). */
static void iommufd_file_holders_forget(struct iommufd_file *file)
{
	while (file->nr_holders)
		sys_close(file->holders[--file->nr_holders].pidfd);
}

/* The last of a released file of ours: its record for /proc readers, then its peer. */
static void iommufd_file_let_go(struct iommufd_file *file)
{
	if (file->has_node)
		iommufd_procfd_forget(file->ino);
	if (file->ops && file->ops->event) {
		iommufd_file_holders_forget(file);
		uiommu_mutex_destroy(&file->holders_lock);
	}
	sys_close(file->peer);
}

/*
 * The last close of a context's file that ran inside a read-side section of its own thread (a
 * signal handler's close on top of an ioctl of the RCU dispatch): the release, one grace
 * period later, on liburcu's call_rcu thread.
 */
static void iommufd_file_release_rcu(struct rcu_head *head)
{
	struct iommufd_file *file = container_of(head, struct iommufd_file, rcu);

	iommufd_rcu_callback_begin();
	atomic_fetch_add_explicit(&files_released_by_rcu, 1, memory_order_relaxed);
	iommufd_ctx_release(file->ictx);
	iommufd_file_let_go(file);
	/* The grace period that ran this is the one the file's memory waits for. */
	uiommu_free_deferred(file);
}

static void iommufd_redirect_free(struct iommufd_redirect *r);

static void iommufd_file_put(struct iommufd_file *file)
{
	/* A sub-fd's release puts its parent: the recursion is one level deep. */
	if (atomic_fetch_sub_explicit(&file->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (!iommufd_file_is_local(file)) {
		/* Another process's file (or our copy of one): only where its calls went. */
		iommufd_redirect_free(atomic_load_explicit(&file->redirect, memory_order_acquire));
		call_rcu(&file->rcu, iommufd_file_free_rcu);
		return;
	}
	if (file_put_by_server)
		atomic_fetch_add_explicit(&files_released_by_server, 1, memory_order_relaxed);
	export_del(file);
	/* The release first: an event queue signals through the peer until it lets go. */
	if (file->ops) {
		file->ops->release(file->priv);
		if (file->parent)
			iommufd_file_put(file->parent);
	} else if (unlikely(rcu_read_ongoing())) {
		/*
		 * This thread is itself a reader: a signal handler closed the last fd on top of
		 * an ioctl of the RCU dispatch, which reads the context once the handler returns.
		 * A grace period waited for here would wait for this very thread, for ever; the
		 * release waits for it after the close instead.
		 */
		call_rcu(&file->rcu, iommufd_file_release_rcu);
		return;
	} else {
		/*
		 * An ioctl of the RCU dispatch (main.c) may still be reading the context: it
		 * found the file before its last slot was emptied, holding no reference. Once
		 * the count is 0 no slot holds the file, so none can find it any more; the grace
		 * period waits for those that did.
		 */
		uiommu_synchronize_rcu();
		iommufd_ctx_release(file->ictx);
	}
	iommufd_file_let_go(file);
	call_rcu(&file->rcu, iommufd_file_free_rcu);
}

void iommufd_ctx_file_get(struct iommufd_ctx *ictx)
{
	atomic_fetch_add_explicit(&ictx->file->refs, 1, memory_order_relaxed);
}

void iommufd_ctx_file_put(struct iommufd_ctx *ictx)
{
	iommufd_file_put(ictx->file);
}

/* A reference on @file unless its count already reached 0 (a release is under way). */
static bool iommufd_file_tryget(struct iommufd_file *file)
{
	long v = atomic_load_explicit(&file->refs, memory_order_relaxed);

	do {
		if (!v)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&file->refs, &v, v + 1,
							memory_order_acquire,
							memory_order_relaxed));
	return true;
}

/* The file behind @fd with a reference (pairs with iommufd_file_put()), or NULL. */
static struct iommufd_file *iommufd_file_get(int fd)
{
	struct iommufd_file *file = NULL;
	fdt_slot *slot;

	rcu_read_lock();
	slot = fdt_slot_get(fd, false);
	if (slot)
		file = atomic_load_explicit(slot, memory_order_acquire);
	if (file && !iommufd_file_tryget(file))
		file = NULL;
	rcu_read_unlock();
	return file;
}

/*
 * Our file named @token, with a reference (iommufd_file_put()), when @secret is its secret
 * (NULL: no proof asked, for our own watcher); else NULL.
 */
static struct iommufd_file *export_lookup(uint64_t token, const uint8_t *secret)
{
	struct iommufd_file *file;
	uint8_t diff = 0;

	uiommu_mutex_lock(&export_lock);
	for (file = export_table[token % EXPORT_BUCKETS]; file; file = file->export_next)
		if (file->token == token)
			break;
	if (file && secret)
		for (unsigned int i = 0; i < WIRE_SECRET_LEN; i++)
			diff |= file->secret[i] ^ secret[i];
	/* A release may be on its way to export_del(): only a live count is raised. */
	if (file && (diff || !iommufd_file_tryget(file)))
		file = NULL;
	uiommu_mutex_unlock(&export_lock);
	return file;
}

/*
 * Publishes a new file of ours to other processes: its token in the table, and the reference
 * the fds hold wherever they are, dropped when the last one anywhere is closed.
 */
static void iommufd_file_export(struct iommufd_file *file)
{
	atomic_fetch_add_explicit(&file->refs, 1, memory_order_relaxed);
	atomic_store(&file->held, true);
	uiommu_mutex_lock(&export_lock);
	file->export_next = export_table[file->token % EXPORT_BUCKETS];
	export_table[file->token % EXPORT_BUCKETS] = file;
	uiommu_mutex_unlock(&export_lock);
	iommufd_server_watch(file->peer, file->token, iommufd_file_is_event(file));
}

/*
 * @file's fds live on elsewhere only: listed for iommufd_files_settle(). Under gone_lock, or
 * in a hand-over's single-threaded child.
 */
static void iommufd_file_away(struct iommufd_file *file)
{
	if (file->away)
		return;
	file->away = true;
	file->away_next = files_away;
	files_away = file;
	atomic_fetch_add_explicit(&files_away_nr, 1, memory_order_relaxed);
}

/* The fds of @file are all closed, in every process: drop their reference, once. */
static void iommufd_file_unhold_anywhere(struct iommufd_file *file)
{
	lockdep_assert_held(&gone_lock);
	if (!atomic_exchange(&file->held, false))
		return;
	if (file->away) {
		struct iommufd_file **pos = &files_away;

		while (*pos != file)
			pos = &(*pos)->away_next;
		*pos = file->away_next;
		file->away = false;
		files_unlisted++;
	}
	iommufd_server_unwatch(file->peer);
	iommufd_file_put(file);
}

/*
 * After a close of one of its fds here: was it the last anywhere? The kernel released the
 * socket in that close, so the peer already shows POLLHUP: the context goes now, as the
 * kernel's release runs at the last close.
 */
static void iommufd_file_check_gone_locked(struct iommufd_file *file)
{
	struct pollfd p = { .fd = file->peer, .events = 0 };

	lockdep_assert_held(&gone_lock);
	if (!iommufd_file_is_local(file) || !atomic_load(&file->held))
		return;
	if (sys_poll_now(&p) == 1 && (p.revents & POLLHUP))
		iommufd_file_unhold_anywhere(file);
}

/*
 * Drops the reference of an fd of @file that was just closed here, after checking whether that
 * close was the last anywhere. Both under gone_lock, so that the server thread, which may have
 * seen the same hang-up, cannot take a reference in between and release in our stead: when the
 * close was the last, the release is done before close() returns.
 */
static void iommufd_file_put_closed(struct iommufd_file *file)
{
	/*
	 * Even when the server thread dropped the hold already: it may still hold its own
	 * reference, until it lets go of gone_lock.
	 */
	if (!iommufd_file_is_local(file)) {
		iommufd_file_put(file);
		return;
	}
	uiommu_mutex_lock(&gone_lock);
	iommufd_file_check_gone_locked(file);
	/* Not the last close anywhere: another process's may be, at its exit. */
	if (atomic_load(&file->held))
		iommufd_file_away(file);
	iommufd_file_put(file);
	gone_unlock();
}

/**
 * iommufd_files_settle() - the files whose last fd anywhere is closed by now (another
 * process's close, or its exit) are released now, rather than when the server thread sees
 * their peers hang up: as the kernel's release has run before the exit is reported. One
 * poll() per batch of files whose fds live elsewhere only; none when there are none. Each is
 * released once (iommufd_file_unhold_anywhere()), whoever sees its end first; a release
 * under way in another thread is done when this returns (gone_lock).
 */
void iommufd_files_settle(void)
{
	struct iommufd_file *batch[32], *f, *next;
	struct pollfd p[32];
	unsigned int n;

	/* Acquire: a release that unlisted the last one is seen done. */
	if (!atomic_load_explicit(&files_away_nr, memory_order_acquire))
		return;
	uiommu_mutex_lock(&gone_lock);
	/*
	 * Under gone_lock a listed file stays listed and alive, and only what this batch
	 * releases leaves the list: the next file to look at (outside the batch) stays there.
	 */
	for (f = files_away; f; f = next) {
		for (n = 0; f && n < ARRAY_SIZE(batch); f = f->away_next) {
			p[n] = (struct pollfd){ .fd = f->peer, .events = 0 };
			batch[n++] = f;
		}
		next = f;
		if (uiommu_should_fail() || sys_poll_many_now(p, n) <= 0)
			continue;
		for (unsigned int i = 0; i < n; i++) {
			if (!(p[i].revents & POLLHUP))
				continue;
			iommufd_file_unhold_anywhere(batch[i]);
		}
	}
	gone_unlock();
}

/* The server thread saw the peer of @token hang up: a close elsewhere was the last. */
void iommufd_file_gone_anywhere(uint64_t token)
{
	struct iommufd_file *file, *stale = NULL;
	unsigned long n = 0;

	file_put_by_server = true;
	uiommu_mutex_lock(&gone_lock);
	file = export_lookup(token, NULL);
	if (file) {
		iommufd_file_check_gone_locked(file);
		/* The last reference only if no fd of ours and no call holds it. */
		iommufd_file_put(file);
	}
	gone_unlock();
	/*
	 * No fd of it is left anywhere, so a slot of ours that still holds it lost its fd behind
	 * our back (an inline close: "Identity" above). It goes now, and the file with it, rather
	 * than at the next use of its number. The slots' references keep such a file alive, and
	 * fdt_lock keeps the slots still while we look at their files.
	 */
	uiommu_mutex_lock(&fdt_lock);
	for (unsigned int c = 0; c < FDT_CHUNKS; c++) {
		fdt_slot *chunk = atomic_load_explicit(&fdt[c], memory_order_acquire);

		for (unsigned int i = 0; chunk && i < FDT_CHUNK; i++) {
			struct iommufd_file *f = atomic_load_explicit(&chunk[i], memory_order_relaxed);

			if (!f || f->token != token || !iommufd_file_is_local(f))
				continue;
			if (!stale) {
				struct pollfd p = { .fd = f->peer, .events = 0 };

				if (sys_poll_now(&p) != 1 || !(p.revents & POLLHUP))
					goto out_unlock;
				stale = f;
			}
			atomic_store_explicit(&chunk[i], NULL, memory_order_release);
			n++;
		}
	}
out_unlock:
	uiommu_mutex_unlock(&fdt_lock);
	while (n--)
		iommufd_file_put(stale);
	file_put_by_server = false;
}

/* Installs @file at @fd (taking a reference); drops whatever was there. fdt_lock held. */
static int fdt_install(int fd, struct iommufd_file *file)
{
	fdt_slot *slot = fdt_slot_get(fd, true);
	struct iommufd_file *old;

	if (!slot)
		return -EMFILE;
	if (file) {
		atomic_fetch_add_explicit(&file->refs, 1, memory_order_relaxed);
		atomic_store_explicit(&file->local_fd, fd, memory_order_relaxed);
	}
	old = atomic_exchange_explicit(slot, file, memory_order_acq_rel);
	/*
	 * A stale slot (its fd closed behind our back): if that was the last close anywhere, the
	 * server thread sees it (gone_lock is not for under fdt_lock).
	 */
	if (old)
		iommufd_file_put(old);
	return 0;
}

static int uiommu_ret(int rc)
{
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return rc;
}

/*
 * A new backing fd for @file (O_CLOEXEC and O_NONBLOCK of @flags): one end of a socketpair
 * whose other end (file->peer) carries the header another holder reads (remote.c), or, for an
 * event fd (@named), is bound to the name a holder finds with getpeername(). Records its
 * identity, its token and secret.
 */
static int iommufd_raw_open(struct iommufd_file *file, int flags, bool named)
{
	struct iommufd_server *server;
	struct wire_fd_header hdr;
	struct stat st;
	int sv[2], err;

	if (uiommu_should_fail())
		return -ENOMEM;
	server = iommufd_server_self();
	if (IS_ERR(server))
		return PTR_ERR(server);
	if (sys_socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	file->server = server;
	file->token = atomic_fetch_add(&export_tokens, 1);
	iommufd_secret_new(file->secret);
	iommufd_server_header(server, file->token, file->secret, &hdr);
	if ((!(flags & O_CLOEXEC) && sys_fcntl(sv[0], F_SETFD, 0)) ||
	    ((flags & O_NONBLOCK) && sys_fcntl(sv[0], F_SETFL, O_NONBLOCK)) ||
	    sys_fstat(sv[0], &st) ||
	    (named ? iommufd_server_name_peer(server, sv[1], file->token) :
		     sys_send(sv[1], &hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT) !=
			     sizeof(hdr))) {
		err = errno;
		sys_close(sv[0]);
		sys_close(sv[1]);
		return -err;
	}
	file->peer = sv[1];
	uiommu_fd_keep(file->peer);
	atomic_init(&file->local_fd, -1);
	file->dev = st.st_dev;
	file->ino = st.st_ino;
	/* The kernel's OPEN_FMODE(): O_RDONLY reads, O_WRONLY writes, 3 does neither. */
	file->readable = ((flags & O_ACCMODE) + 1) & 1;
	file->writable = ((flags & O_ACCMODE) + 1) & 2;
	return sv[0];
}

/* Undoes iommufd_raw_open() for a file that was never published. */
static void iommufd_raw_close(struct iommufd_file *file, int fd)
{
	sys_close(fd);
	sys_close(file->peer);
}

/* The record of a new file of ours for other processes' /proc readers (procfd.c). */
static int iommufd_file_publish(struct iommufd_file *file)
{
	return file->has_node ? iommufd_procfd_publish(file->ino, &file->node) : 0;
}

static void iommufd_file_unpublish(struct iommufd_file *file)
{
	if (file->has_node)
		iommufd_procfd_forget(file->ino);
}

/**
 * iommufd_file_open_ctx() - a new context's file, opened through @node (/dev/iommu, or the
 * VFIO container, which is one too)
 * Return: the fd, or -ENOMEM / -EMFILE / the open's -errno.
 */
int iommufd_file_open_ctx(int flags, const struct iommufd_node *node)
{
	struct iommufd_file *file;
	struct uiommu_mm *mm = iommufd_caller_mm();
	int fd, rc;

	if (!mm)
		return -ENOMEM;
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return -ENOMEM;
	file->ictx = iommufd_ctx_alloc(mm);
	if (IS_ERR(file->ictx)) {
		rc = PTR_ERR(file->ictx);
		goto err_free;
	}
	file->ictx->file = file;
	file->node = *node;
	file->has_node = true;
	fd = iommufd_raw_open(file, flags, false);
	if (fd < 0) {
		rc = fd;
		goto err_release;
	}
	rc = iommufd_file_publish(file);
	if (rc)
		goto err_close;
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_install(fd, file);
	uiommu_mutex_unlock(&fdt_lock);
	if (rc)
		goto err_unpublish;
	iommufd_file_export(file);
	return fd;

err_unpublish:
	iommufd_file_unpublish(file);
err_close:
	iommufd_raw_close(file, fd);
err_release:
	iommufd_ctx_release(file->ictx);
err_free:
	uiommu_free(file);
	return rc;
}

UIOMMU_EXPORT int uiommu_open(int flags)
{
	static const struct iommufd_node node = {
		.path = "/dev/iommu", .major = IOMMUFD_NODE_MAJOR, .minor = IOMMUFD_NODE_MINOR,
		.mode = S_IFCHR | 0660,
	};

	return uiommu_ret(iommufd_file_open_ctx(flags, &node));
}

/*
 * Is @fd an fd of @file? The socket itself is the proof an event fd's holder gives (its peer
 * has no header to peek). Raw: the preload layer's fstat() answers our fds with their node.
 */
static bool iommufd_file_same(struct iommufd_file *file, int fd)
{
	struct stat st;

	return !sys_fstat(fd, &st) && st.st_dev == file->dev && st.st_ino == file->ino;
}

/*
 * @fd no longer names @file (closed behind our back): drop the slot if it still holds @file
 * (@file NULL: whatever it holds).
 */
static void fdt_forget_stale(int fd, struct iommufd_file *file)
{
	struct iommufd_file *old = NULL;
	fdt_slot *slot;

	uiommu_mutex_lock(&fdt_lock);
	slot = fdt_slot_get(fd, false);
	if (slot && (!file || atomic_load_explicit(slot, memory_order_relaxed) == file))
		old = atomic_exchange_explicit(slot, NULL, memory_order_acq_rel);
	uiommu_mutex_unlock(&fdt_lock);
	/* The close behind our back may have been the last anywhere. */
	if (old)
		iommufd_file_put_closed(old);
}

/*
 * Whether uiommu_is_fd() trusts the table: set once by the preload layer (uiommu_fd_track()),
 * unless $UIOMMU_FD_CHECK is "strict".
 */
static atomic_bool fdt_trusted;

/*
 * The exact check: does @fd still name the file its slot holds? Drops the slot, as a close
 * would, when it does not. A system call; the slot's file held across it. Out of line: the
 * trusting callers' fast paths must not pay for its frame.
 */
static __attribute__((noinline)) bool fdt_check(int fd)
{
	struct iommufd_file *file = iommufd_file_get(fd);
	bool same;

	if (!file)
		return false;
	same = iommufd_file_same(file, fd);
	if (!same)
		fdt_forget_stale(fd, file);
	iommufd_file_put(file);
	return same;
}

static bool fdt_held(int fd)
{
	fdt_slot *slot = fdt_slot_get(fd, false);

	return slot && atomic_load_explicit(slot, memory_order_relaxed);
}

UIOMMU_EXPORT bool uiommu_is_fd(int fd)
{
	if (!fdt_held(fd))
		return false;
	if (atomic_load_explicit(&fdt_trusted, memory_order_relaxed))
		return true;
	return fdt_check(fd);
}

UIOMMU_EXPORT void uiommu_fd_track(void)
{
	const char *check = getenv("UIOMMU_FD_CHECK");

	atomic_store(&fdt_trusted, !check || strcmp(check, "strict"));
	/* Other processes' readers are the preload layer's: the registry is for them. */
	iommufd_procfd_enable();
}

UIOMMU_EXPORT void uiommu_fd_note_new(int fd)
{
	int saved_errno;

	/* The usual case, a number that was never ours or whose close we saw: one load. */
	if (!fdt_held(fd))
		return;
	saved_errno = errno;
	fdt_check(fd);
	errno = saved_errno;
}

/*
 * The requests fs/ioctl.c's do_vfs_ioctl() answers for every file before its driver sees them,
 * as they come out for a character device; VFS_IOCTL_DRIVER for the driver's.
 */
#define VFS_IOCTL_DRIVER 1

static int iommufd_file_vfs_ioctl(int fd, unsigned int cmd, uint64_t arg)
{
	struct uiommu_mm *mm;
	int on, flags, rc;

	/* Every driver request passes here: the caller's mm only for the few that copy. */
	switch (cmd) {
	case FIOCLEX:
	case FIONCLEX:
		return sys_fcntl(fd, F_SETFD, cmd == FIOCLEX ? FD_CLOEXEC : 0) ? -errno : 0;
	case FIONBIO:
	case FIOASYNC:
		mm = iommufd_caller_mm();
		rc = uiommu_copy_from_user(mm, &on, arg, sizeof(on));
		if (rc)
			return rc;
		flags = sys_fcntl(fd, F_GETFL, 0);
		if (flags < 0)
			return -errno;
		if (cmd == FIOASYNC)
			/* No fasync in the driver: only a request that changes nothing succeeds. */
			return !!on != !!(flags & O_ASYNC) ? -ENOTTY : 0;
		flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
		return sys_fcntl(fd, F_SETFL, flags) ? -errno : 0;
	case FIOQSIZE:
		return -ENOTTY; /* only directories, regular files and symlinks have a size */
	case FIGETBSZ:
		/* The block size of the file system the node lives on (devtmpfs: a page). */
		on = (int)uiommu_page_size;
		mm = iommufd_caller_mm();
		return uiommu_copy_to_user(mm, arg, &on, sizeof(on));
	default:
		return VFS_IOCTL_DRIVER;
	}
}

/* What the file's driver answers (after the VFS's own requests); @mm is the caller's. */
static int iommufd_file_driver_ioctl(struct iommufd_file *file, struct uiommu_mm *mm,
				     unsigned int cmd, uint64_t arg)
{
	if (file->ops)
		return file->ops->ioctl ? file->ops->ioctl(file->priv, mm, cmd, arg) : -ENOTTY;
	return iommufd_ctx_ioctl(file->ictx, mm, cmd, arg);
}

/* ---- redirects (remote.h): calls of ours made at the file another process delegates to ---- */

/*
 * Our last use of @r: the copy of the target's fd goes; a target we serve ourselves is checked
 * for its last close anywhere, as after any close of ours.
 */
static void iommufd_redirect_free(struct iommufd_redirect *r)
{
	if (!r)
		return;
	sys_close(r->fd);
	if (r->local)
		iommufd_file_put_closed(r->local);
	uiommu_free(r);
}

/*
 * @file's server redirected a call of ours to the file behind @fd (ours now): where that call
 * and every later one on @file are made. Another thread may have set it first: then its.
 * Return: the target, or an ERR_PTR (-ENOMEM; -EIO for an fd that names no file), @fd gone.
 */
static struct iommufd_redirect *iommufd_file_redirect_set(struct iommufd_file *file, int fd)
{
	struct iommufd_redirect *r = uiommu_zalloc(sizeof(*r)), *old = NULL;
	int rc;

	if (!r) {
		sys_close(fd);
		return ERR_PTR(-ENOMEM);
	}
	r->fd = fd;
	uiommu_fd_keep(fd);
	rc = iommufd_remote_fd_ident(fd, &r->server, &r->token, r->secret);
	if (rc == -EBADF)
		rc = -EIO;
	/* A file of ours: its calls are in-process from now on. */
	if (!rc && r->server == atomic_load(&iommufd_self_server)) {
		r->local = export_lookup(r->token, r->secret);
		rc = r->local ? 0 : -EIO;
	}
	if (rc) {
		iommufd_redirect_free(r);
		return ERR_PTR(rc);
	}
	if (!atomic_compare_exchange_strong_explicit(&file->redirect, &old, r,
						     memory_order_acq_rel, memory_order_acquire)) {
		iommufd_redirect_free(r);
		return old;
	}
	return r;
}

/* Where @file's calls go: NULL its server, until that server redirects one. */
static struct iommufd_redirect *iommufd_file_redirect(struct iommufd_file *file)
{
	return atomic_load_explicit(&file->redirect, memory_order_acquire);
}

/*
 * A target we serve ourselves, as a file of ours: in a forked child it is its parent's again
 * (served there, as every file the child inherited).
 */
static struct iommufd_file *iommufd_redirect_local(struct iommufd_redirect *r)
{
	return r->local && iommufd_file_is_local(r->local) ? r->local : NULL;
}

/* An ioctl on another process's @file: at its server, or where that server redirected us. */
static int iommufd_file_remote_ioctl(struct iommufd_file *file, unsigned int cmd, uint64_t arg)
{
	struct iommufd_redirect *r = iommufd_file_redirect(file);
	struct iommufd_file *local;
	int rc, fd;

	if (!r) {
		rc = iommufd_remote_ioctl(file->server, file->token, file->secret, cmd, arg, &fd);
		if (fd < 0)
			return rc;
		r = iommufd_file_redirect_set(file, fd);
		if (IS_ERR(r))
			return (int)PTR_ERR(r);
	}
	local = iommufd_redirect_local(r);
	if (local)
		return iommufd_file_driver_ioctl(local, iommufd_caller_mm(), cmd, arg);
	return iommufd_remote_ioctl(r->server, r->token, r->secret, cmd, arg, NULL);
}

/* An ioctl on @fd, whose @slot held a file a moment ago. */
static int iommufd_slot_ioctl(int fd, fdt_slot *slot, unsigned int cmd, uint64_t uarg)
{
	struct iommufd_ucmd_rcu rcmd;
	struct iommufd_file *file;
	bool rcu_ok, direct;
	int rc;

	/* One trap span for every user access of the ioctl (mm/mm.h). */
	uiommu_uaccess_begin();
	/* The argument comes in before the file is looked at: no user access under RCU. */
	rcu_ok = iommufd_ioctl_rcu_prepare(&rcmd, iommufd_caller_mm(), cmd, uarg);
	rcu_read_lock();
	/* No reference: the file is ours until rcu_read_unlock() (the release waits for it). */
	file = atomic_load_explicit(slot, memory_order_acquire);
	if (!file) {
		rcu_read_unlock();
		rc = -EBADF;
		goto out_end;
	}
	direct = rcu_ok && !file->ops && iommufd_file_is_local(file);
	if (direct) {
		rc = iommufd_ctx_ioctl_rcu(file->ictx, &rcmd);
		if (rc != IOMMUFD_IOCTL_REF) {
			rcu_read_unlock();
			rc = iommufd_ioctl_rcu_finish(&rcmd, rc);
			goto out_end;
		}
	}
	/* A release under way: the ioctl comes after the close that started it. */
	if (!iommufd_file_tryget(file)) {
		rcu_read_unlock();
		rc = -EBADF;
		goto out_end;
	}
	rcu_read_unlock();
	if (direct) {
		rc = iommufd_ctx_ioctl_ref(file->ictx, &rcmd);
		goto out_put;
	}
	rc = iommufd_file_vfs_ioctl(fd, cmd, uarg);
	if (rc != VFS_IOCTL_DRIVER)
		goto out_put;
	if (!iommufd_file_is_local(file))
		rc = iommufd_file_remote_ioctl(file, cmd, uarg);
	else
		rc = iommufd_file_driver_ioctl(file, iommufd_caller_mm(), cmd, uarg);
out_put:
	iommufd_file_put(file);
out_end:
	uiommu_uaccess_end();
	return uiommu_ret(rc);
}

UIOMMU_EXPORT int uiommu_ioctl(int fd, unsigned long request, void *arg)
{
	fdt_slot *slot = fdt_slot_get(fd, false);

	/* Not ours at all: no copy-in for nothing (a racing open is a later call). */
	if (!slot || !atomic_load_explicit(slot, memory_order_relaxed))
		return uiommu_ret(-EBADF);
	return iommufd_slot_ioctl(fd, slot, (unsigned int)request, (uint64_t)(uintptr_t)arg);
}

/*
 * uiommu_is_fd() and uiommu_ioctl() in one call, for the preload layer's ioctl(): one look at
 * the slot where the two calls made two, and one call into the library for every ioctl().
 */
UIOMMU_EXPORT int uiommu_fd_ioctl(int fd, unsigned long request, void *arg)
{
	fdt_slot *slot = fdt_slot_get(fd, false);

	if (!slot || !atomic_load_explicit(slot, memory_order_relaxed))
		return UIOMMU_FD_PASS;
	/* Not trusting the table: the two calls, the first with its system call. */
	if (unlikely(!atomic_load_explicit(&fdt_trusted, memory_order_relaxed)))
		return uiommu_is_fd(fd) ? uiommu_ioctl(fd, request, arg) : UIOMMU_FD_PASS;
	return iommufd_slot_ioctl(fd, slot, (unsigned int)request, (uint64_t)(uintptr_t)arg);
}

/* Empties @fd's slot, under fdt_lock; what it held, or NULL. */
static struct iommufd_file *fdt_take_locked(int fd)
{
	fdt_slot *slot = fdt_slot_get(fd, false);

	lockdep_assert_held(&fdt_lock);
	return slot ? atomic_exchange_explicit(slot, NULL, memory_order_acq_rel) : NULL;
}

UIOMMU_EXPORT int uiommu_close(int fd)
{
	struct iommufd_file *file;
	int rc;

	uiommu_mutex_lock(&fdt_lock);
	file = fdt_take_locked(fd);
	if (!file) {
		uiommu_mutex_unlock(&fdt_lock);
		return uiommu_ret(-EBADF);
	}
	rc = sys_close(fd);
	uiommu_mutex_unlock(&fdt_lock);
	iommufd_file_put_closed(file);
	return rc;
}

UIOMMU_EXPORT int uiommu_fd_close_by(int fd, int (*close_fn)(void *arg), void *arg)
{
	struct iommufd_file *file;
	int rc, err;

	/* Under fdt_lock: no file of ours can be given the number between the close and here. */
	uiommu_mutex_lock(&fdt_lock);
	file = fdt_take_locked(fd);
	rc = close_fn(arg);
	err = errno;
	if (file && rc < 0 && iommufd_file_same(file, fd)) {
		/* Refused before it closed anything (dup2()'s EBADF, EINTR): still ours. */
		atomic_store_explicit(fdt_slot_get(fd, false), file, memory_order_release);
		file = NULL;
	}
	uiommu_mutex_unlock(&fdt_lock);
	/* Its release, if that was the last fd anywhere, is done before we return. */
	if (file)
		iommufd_file_put_closed(file);
	errno = err;
	return rc;
}

/* close()s every /dev/iommu fd and sub-fd of ours in [@first, @last]. */
static void fdt_close_range(unsigned int first, unsigned int last)
{
	unsigned int c, i;

	if (first >= FDT_CHUNKS * FDT_CHUNK)
		return;
	if (last >= FDT_CHUNKS * FDT_CHUNK)
		last = FDT_CHUNKS * FDT_CHUNK - 1;
	for (c = first >> FDT_CHUNK_SHIFT; c <= last >> FDT_CHUNK_SHIFT; c++) {
		fdt_slot *chunk = atomic_load_explicit(&fdt[c], memory_order_acquire);

		if (!chunk)
			continue;
		for (i = 0; i < FDT_CHUNK; i++) {
			unsigned int fd = (c << FDT_CHUNK_SHIFT) | i;

			if (fd >= first && fd <= last &&
			    atomic_load_explicit(&chunk[i], memory_order_relaxed))
				uiommu_close((int)fd);
		}
	}
}

UIOMMU_EXPORT int uiommu_fd_close_range(unsigned int first, unsigned int last, int flags)
{
	/* What close_range() refuses closes nothing. */
	if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return uiommu_ret(-EINVAL);
	/* Marking them close-on-exec leaves them ours. */
	if (flags & CLOSE_RANGE_CLOEXEC)
		return 0;
	fdt_close_range(first, last);
	sysfs_fds_forget_range(first, last);
	return 0;
}

/*
 * mmap(2) of another process's @file: at its server, which may redirect it (the first call on
 * a cdev bound through another process may be this one), or where its server redirected us
 * (@r): a file of ours maps its own memory (a device bound here), another process's answers as
 * its server does.
 */
static void *iommufd_file_remote_mmap(struct iommufd_file *file, struct iommufd_redirect *r,
				      void *addr, size_t len, int prot, int flags, uint64_t off)
{
	struct iommufd_file *local;
	void *p;
	int fd;

	if (!r) {
		p = iommufd_remote_mmap(file->server, file->token, file->secret, addr, len, prot,
					flags, off, &fd);
		if (fd < 0)
			return p;
		r = iommufd_file_redirect_set(file, fd);
		if (IS_ERR(r)) {
			errno = (int)-PTR_ERR(r);
			return MAP_FAILED;
		}
	}
	local = iommufd_redirect_local(r);
	if (local && local->ops && local->ops->mmap)
		return local->ops->mmap(local->priv, addr, len, prot, flags, off);
	if (local) {
		errno = ENODEV;
		return MAP_FAILED;
	}
	return iommufd_remote_mmap(r->server, r->token, r->secret, addr, len, prot, flags, off,
				   NULL);
}

bool iommufd_subfd_mmap(int fd, void *addr, size_t len, int prot, int flags, uint64_t off,
			void **ret)
{
	struct iommufd_file *file = iommufd_file_get(fd);

	if (!file)
		return false;
	if (!iommufd_file_is_local(file)) {
		struct iommufd_redirect *r = iommufd_file_redirect(file);

		/* Its server hands over the memory where it can (a vIOMMU's region). */
		*ret = iommufd_file_remote_mmap(file, r, addr, len, prot, flags, off);
		iommufd_file_put(file);
		return true;
	}
	if (!file->ops || !file->ops->mmap) {
		iommufd_file_put(file);
		return false;
	}
	*ret = file->ops->mmap(file->priv, addr, len, prot, flags, off);
	iommufd_file_put(file);
	return true;
}

/* ---- sub-fds -------------------------------------------------------------------------------- */

/*
 * An anonymous file's name, as the kernel's anon_inode_getfile() gives it ("anon_inode:[NAME]",
 * mode 0600 without a file type, as its getattr() shows) or a dma-buf's: what fstat() and
 * readlink("/proc/self/fd/N") show of it here and, through the INFO answer and the registry
 * (procfd.c), in other processes.
 */
static void iommufd_subfd_name(struct iommufd_file *file, const struct iommufd_subfd_ops *ops)
{
	if (!ops->name)
		return;
	snprintf(file->node.path, sizeof(file->node.path), "%s", ops->name);
	file->node.mode = 0600;
	file->has_node = true;
}

/**
 * iommufd_subfd_alloc() - reserve a new fd (O_CLOEXEC) that will stand for @priv
 * @ictx: the context whose ioctl makes it; called from inside that ioctl, so its file is alive
 * @ops: ops->release(@priv) runs at the fd's last close
 *
 * Nothing is visible yet: publish with iommufd_subfd_install(), or undo with
 * iommufd_subfd_abort() (which does not call release).
 * Return: the file with *@fd set, or ERR_PTR(-ENOMEM / -EMFILE / the open's error).
 */
struct iommufd_file *iommufd_subfd_alloc(struct iommufd_ctx *ictx,
					 const struct iommufd_subfd_ops *ops, void *priv, int *fd)
{
	struct iommufd_file *file;
	int rc;

	if (WARN_ON(!ictx->file))
		return ERR_PTR(-EINVAL);
	if (!iommufd_file_new_room())
		return ERR_PTR(-EMFILE);
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return ERR_PTR(-ENOMEM);
	if (ops->event)
		uiommu_mutex_init(&file->holders_lock);
	/* As anon_inode_getfile(); the kernel's event fds are O_RDWR too. */
	*fd = iommufd_raw_open(file, O_CLOEXEC | O_RDWR, ops->event);
	if (*fd < 0) {
		rc = *fd;
		goto err_free;
	}
	/* The slot's chunk now, so that the install cannot fail. */
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_slot_get(*fd, true) ? 0 : -EMFILE;
	uiommu_mutex_unlock(&fdt_lock);
	if (rc)
		goto err_close;
	file->ops = ops;
	file->priv = priv;
	iommufd_subfd_name(file, ops);
	/* The record now: nothing may fail once the ioctl's reply is written. */
	rc = iommufd_file_publish(file);
	if (rc)
		goto err_close;
	atomic_fetch_add_explicit(&ictx->file->refs, 1, memory_order_relaxed);
	file->parent = ictx->file;
	return file;

err_close:
	iommufd_raw_close(file, *fd);
err_free:
	if (ops->event)
		uiommu_mutex_destroy(&file->holders_lock);
	uiommu_free(file);
	return ERR_PTR(rc);
}

/* Publishes a sub-fd made by iommufd_subfd_alloc(); the fd's reference is the only one. */
void iommufd_subfd_install(struct iommufd_file *file, int fd)
{
	uiommu_mutex_lock(&fdt_lock);
	WARN_ON(fdt_install(fd, file));
	uiommu_mutex_unlock(&fdt_lock);
	iommufd_file_export(file);
	iommufd_file_note_new(fd);
}

/* Undoes iommufd_subfd_alloc(): closes the fd; ops->release is not called. */
void iommufd_subfd_abort(struct iommufd_file *file, int fd)
{
	iommufd_file_unpublish(file);
	iommufd_raw_close(file, fd);
	if (file->ops->event)
		uiommu_mutex_destroy(&file->holders_lock);
	iommufd_file_put(file->parent);
	uiommu_free(file);
}

/**
 * iommufd_subfd_get() - what the sub-fd @fd of kind @ops stands for, held for one ioctl
 * Return: its priv with *@filep set (drop with iommufd_subfd_put()), or ERR_PTR(-EBADFD) for
 * an fd that is not such a sub-fd, as the kernel answers.
 */
void *iommufd_subfd_get(int fd, const struct iommufd_subfd_ops *ops, struct iommufd_file **filep)
{
	int local = iommufd_caller_fd_get(fd);
	struct iommufd_file *file = iommufd_file_get(local);

	iommufd_caller_fd_put(local);
	if (!file)
		return ERR_PTR(-EBADFD);
	if (!iommufd_file_is_local(file) || file->ops != ops) {
		iommufd_file_put(file);
		return ERR_PTR(-EBADFD);
	}
	*filep = file;
	return file->priv;
}

void iommufd_subfd_put(struct iommufd_file *file)
{
	iommufd_file_put(file);
}

/*
 * As iommufd_subfd_get(), for a sub-fd of ours that another process names by its token and
 * secret (remote_direct.c: its holder proves it holds the fd, as every wire request does).
 */
void *iommufd_subfd_get_exported(uint64_t token, const uint8_t *secret,
				 const struct iommufd_subfd_ops *ops, struct iommufd_file **filep)
{
	struct iommufd_file *file = export_lookup(token, secret);

	if (!file)
		return ERR_PTR(-EBADFD);
	if (file->ops != ops) {
		iommufd_file_put(file);
		return ERR_PTR(-EBADFD);
	}
	*filep = file;
	return file->priv;
}

/*
 * Who serves @fd, when another process does: its server, token and secret (what a wire
 * request about it carries). 0, or -EBADF for an fd that is not such a file.
 */
int iommufd_file_remote_ident(int fd, struct iommufd_server **server, uint64_t *token,
			      uint8_t *secret)
{
	struct iommufd_file *file = iommufd_file_get(fd);
	int rc = -EBADF;

	if (!file)
		return rc;
	if (!iommufd_file_is_local(file)) {
		*server = file->server;
		*token = file->token;
		memcpy(secret, file->secret, WIRE_SECRET_LEN);
		rc = 0;
	}
	iommufd_file_put(file);
	return rc;
}

/**
 * iommufd_file_open_ops() - a new fd standing for @priv, made by an open() of @node (the VFIO
 * device cdev, a group) rather than by an ioctl, or an anonymous file of a node's (a group's
 * device fd): no parent context. ops->release(@priv) runs at its last close; on failure
 * nothing is called.
 * Return: the fd, or -ENOMEM / -EMFILE / the open's -errno.
 */
int iommufd_file_open_ops(const struct iommufd_subfd_ops *ops, void *priv, int flags,
			  const struct iommufd_node *node)
{
	struct iommufd_file *file;
	int fd, rc;

	if (!iommufd_file_new_room())
		return -EMFILE;
	if (!iommufd_caller_mm())
		return -ENOMEM;
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return -ENOMEM;
	fd = iommufd_raw_open(file, flags, false);
	if (fd < 0) {
		rc = fd;
		goto err_free;
	}
	file->ops = ops;
	file->priv = priv;
	file->node = *node;
	file->has_node = true;
	rc = iommufd_file_publish(file);
	if (rc)
		goto err_close;
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_install(fd, file);
	uiommu_mutex_unlock(&fdt_lock);
	if (rc)
		goto err_unpublish;
	iommufd_file_export(file);
	iommufd_file_note_new(fd);
	return fd;

err_unpublish:
	iommufd_file_unpublish(file);
err_close:
	iommufd_raw_close(file, fd);
err_free:
	uiommu_free(file);
	return rc;
}

/**
 * iommufd_ctx_from_fd() - the context of the /dev/iommu fd @fd, as the kernel's
 * iommufd_ctx_from_fd(): the file is held until iommufd_ctx_file_put().
 * Return: the context, ERR_PTR(-EBADF) when @fd is not open, -EBADFD when it is another file.
 */
struct iommufd_ctx *iommufd_ctx_from_fd(int fd)
{
	int local = iommufd_caller_fd_get(fd);
	struct iommufd_file *file = iommufd_file_get(local);

	if (!file) {
		int bad = local < 0 || sys_fcntl(local, F_GETFD, 0) < 0;

		iommufd_caller_fd_put(local);
		return ERR_PTR(bad ? -EBADF : -EBADFD);
	}
	iommufd_caller_fd_put(local);
	if (!iommufd_file_is_local(file)) {
		/* Served by another process: its objects cannot be bound to ours. */
		iommufd_file_put(file);
		return ERR_PTR(-EOPNOTSUPP);
	}
	if (file->ops) {
		iommufd_file_put(file);
		return ERR_PTR(-EBADFD);
	}
	return file->ictx;
}

/* dup3()-like: @newfd < 0 means "lowest free >= minfd" (dup, F_DUPFD). */
static int uiommu_dup_common(int oldfd, int newfd, int minfd, int flags)
{
	struct iommufd_file *file;
	fdt_slot *slot;
	int fd, rc;

	uiommu_mutex_lock(&fdt_lock);
	slot = fdt_slot_get(oldfd, false);
	file = slot ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
	if (!file) {
		uiommu_mutex_unlock(&fdt_lock);
		return uiommu_ret(-EBADF);
	}
	if (newfd < 0)
		fd = sys_fcntl(oldfd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, minfd);
	else if (newfd == oldfd)
		fd = newfd;
	else
		fd = sys_dup3(oldfd, newfd, flags & O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		uiommu_mutex_unlock(&fdt_lock);
		return uiommu_ret(rc);
	}
	if (fd != oldfd) {
		rc = fdt_install(fd, file);
		if (rc) {
			sys_close(fd);
			uiommu_mutex_unlock(&fdt_lock);
			return uiommu_ret(rc);
		}
		/*
		 * Another process's event file: its server may need the new number, should the
		 * old one be closed (ours it knows by its hint). Under fdt_lock: no close through
		 * us can give the number to another file before the note is in.
		 */
		if (!iommufd_file_is_local(file) && file->event)
			iommufd_event_note(fd);
	}
	uiommu_mutex_unlock(&fdt_lock);
	return fd;
}

UIOMMU_EXPORT int uiommu_dup(int fd)
{
	return uiommu_dup_common(fd, -1, 0, 0);
}

UIOMMU_EXPORT int uiommu_dup3(int oldfd, int newfd, int flags)
{
	if (newfd < 0)
		return uiommu_ret(-EBADF);
	if (oldfd == newfd)
		return uiommu_ret(-EINVAL);
	return uiommu_dup_common(oldfd, newfd, 0, flags);
}

UIOMMU_EXPORT int uiommu_dupfd(int fd, int minfd, bool cloexec)
{
	if (minfd < 0)
		return uiommu_ret(-EINVAL);
	return uiommu_dup_common(fd, -1, minfd, cloexec ? O_CLOEXEC : 0);
}

/**
 * uiommu_fd_forget() - @fd was closed or replaced behind our back (dup2() of another file onto
 * it): drop our reference without closing anything.
 */
UIOMMU_EXPORT void uiommu_fd_forget(int fd)
{
	fdt_forget_stale(fd, NULL);
}

/*
 * For a leak report (the fuzz harness's): every file of ours still published, with what could
 * keep it: its count, whether the fds anywhere still hold it, and what its peer shows now.
 */
void iommufd_files_dump(FILE *out)
{
	fprintf(out, "files released by the server thread %lu, by call_rcu %lu\n",
		atomic_load(&files_released_by_server), atomic_load(&files_released_by_rcu));
	uiommu_mutex_lock(&export_lock);
	for (unsigned int b = 0; b < EXPORT_BUCKETS; b++) {
		for (struct iommufd_file *f = export_table[b]; f; f = f->export_next) {
			struct pollfd p = { .fd = f->peer, .events = 0 };
			int n = sys_poll_now(&p);

			fprintf(out,
				"file token %llu refs %ld held %d %s local_fd %d peer %d poll %d revents %#x\n",
				(unsigned long long)f->token, atomic_load(&f->refs),
				(int)atomic_load(&f->held), f->ops ? "sub-fd" : "context",
				atomic_load(&f->local_fd), f->peer, n, (unsigned int)p.revents);
		}
	}
	uiommu_mutex_unlock(&export_lock);
}

UIOMMU_EXPORT int uiommu_stats_get(struct uiommu_stats *stats)
{
	struct uiommu_mm *mm = iommufd_caller_mm();

	/*
	 * What another process's end released (its last fd of a context, a call it had running)
	 * goes first, as the kernel's exit had released it before anyone could see the process
	 * gone; then every deferred free runs, so that the counters are exact.
	 */
	iommufd_remote_settle();
	rcu_barrier();
	memset(stats, 0, sizeof(*stats));
	stats->objects = iommufd_objects_live();
	stats->contexts = iommufd_contexts_live();
	stats->allocations = uiommu_alloc_live();
	stats->pinned_pages = mm ? uiommu_mm_pinned_pages(mm) : 0;
	stats->pinned_vm = mm ? atomic_load_explicit(&mm->pinned_vm, memory_order_relaxed) : 0;
	stats->mm_locked_vm = mm ? atomic_load_explicit(&mm->locked_vm, memory_order_relaxed) : 0;
	stats->user_locked_vm = uiommu_user_locked_vm(getuid());
	return 0;
}

UIOMMU_EXPORT unsigned int uiommu_page_pin_count(const void *addr)
{
	struct uiommu_mm *mm = iommufd_caller_mm();

	if (!mm)
		return 0;
	return uiommu_mm_pin_count(mm, (uint64_t)(uintptr_t)addr >> uiommu_page_shift);
}

/* ---- what the fd looks like, and read/write ------------------------------------------------ */

/*
 * The times a node shows: the library's first look, to the nanosecond, as devtmpfs shows the
 * time a node was made at boot (statx's birth time is the same: vfio/nodes.c). Owner: the
 * caller, as a udev rule hands VFIO nodes to the user of a VM. An anonymous file's inode is
 * the one the kernel made at boot for all of them (anon_inode_getfile()): root's, 0600, so
 * access() of its link by another user is EACCES for reading and writing, as the kernel's.
 * A dma-buf has an inode of its own, its maker's.
 */
static void iommufd_node_fill_stat(const struct iommufd_node *node, struct stat *st)
{
	static _Atomic int64_t boot_ns;
	int64_t t = atomic_load_explicit(&boot_ns, memory_order_relaxed), expected = 0;
	struct timespec now;

	if (!t) {
		clock_gettime(CLOCK_REALTIME, &now);
		t = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
		if (!atomic_compare_exchange_strong(&boot_ns, &expected, t))
			t = expected;
	}
	memset(st, 0, sizeof(*st));
	st->st_mode = node->mode;
	st->st_nlink = 1;
	st->st_uid = geteuid();
	st->st_gid = getegid();
	st->st_blksize = 4096;
	st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = (time_t)(t / 1000000000);
	st->st_atim.tv_nsec = st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = (long)(t % 1000000000);
	if (S_ISCHR(node->mode)) {
		st->st_dev = makedev(0, 5); /* devtmpfs */
		st->st_rdev = makedev(node->major, node->minor);
		/* A stable inode number per node, as devtmpfs keeps one per node. */
		st->st_ino = 1000 + ((unsigned long)node->major << 20 | node->minor);
	} else {
		st->st_dev = makedev(0, 14); /* the anon_inode mount */
		st->st_ino = 1;              /* every anonymous file shares its one inode */
		if (!strncmp(node->path, "anon_inode:", 11))
			st->st_uid = st->st_gid = 0;
	}
}

void iommufd_node_stat(const struct iommufd_node *node, struct stat *st)
{
	iommufd_node_fill_stat(node, st);
}

UIOMMU_EXPORT int uiommu_fstat(int fd, struct stat *st)
{
	struct iommufd_file *file = iommufd_file_get(fd);
	int rc = 0;

	if (!file)
		return uiommu_ret(-EBADF);
	if (file->has_node)
		iommufd_node_fill_stat(&file->node, st);
	else
		rc = sys_fstat(fd, st);
	iommufd_file_put(file);
	return rc;
}

UIOMMU_EXPORT ssize_t uiommu_fd_path(int fd, char *buf, size_t len)
{
	struct iommufd_file *file = iommufd_file_get(fd);
	struct iommufd_node node;
	char path[64];
	size_t n;

	if (!file)
		return uiommu_ret(-EBADF);
	if (file->has_node) {
		snprintf(path, sizeof(path), "%s", file->node.path);
	} else {
		char proc[32];
		ssize_t r;

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		r = sys_readlinkat(AT_FDCWD, proc, path, sizeof(path) - 1);
		if (r < 0) {
			iommufd_file_put(file);
			return -1;
		}
		path[r] = '\0';
		/*
		 * Another process's event fd (adopted by CLAIM, which tells no node): its
		 * server's record names it.
		 */
		if (!iommufd_file_is_local(file) && !iommufd_procfd_lookup_link(path, &node))
			snprintf(path, sizeof(path), "%s", node.path);
	}
	iommufd_file_put(file);
	/* readlink(2): no NUL, truncated to @len. */
	n = strlen(path);
	if (n > len)
		n = len;
	memcpy(buf, path, n);
	return (ssize_t)n;
}

/*
 * The event file whose read or write this thread is running: a queue that empties in it leaves
 * its byte to that caller, who holds an fd of the socket and takes it out after the call (the
 * owed count), rather than to iommufd_file_ready_take().
 */
static __thread struct iommufd_file *file_rw_stream;

static ssize_t iommufd_file_rw(struct iommufd_file *file, struct uiommu_mm *mm, void *buf,
			       size_t count, const off_t *pos, bool write, unsigned int *owed);

/* A read or write at @off of the target of the redirect @r (iommufd_file_remote_rw()). */
static ssize_t iommufd_redirect_rw(struct iommufd_redirect *r, struct uiommu_mm *mm, void *buf,
				   size_t count, off_t off, bool write, unsigned int *owed)
{
	struct iommufd_file *local = iommufd_redirect_local(r);

	if (local)
		return iommufd_file_rw(local, mm, buf, count, &off, write, owed);
	return iommufd_remote_rw(r->server, r->token, r->secret, (uint64_t)(uintptr_t)buf, count,
				 off, write, owed, NULL);
}

/*
 * A read or write of another process's @file: at its server, or where that server redirected
 * us. At the file's position (@pos NULL) the position stays @file's, at its server, as the
 * kernel's f_pos is the open file's, shared by every process holding it: once redirected, the
 * call reads the position there, is made at the target at that offset, and moves the position
 * by what it did. Two steps, as the kernel's read() of a character device, which takes no
 * f_pos_lock either: concurrent reads at the position may read the same offset. A failed
 * move answers its errno, the position left where it was.
 */
static ssize_t iommufd_file_remote_rw(struct iommufd_file *file, struct uiommu_mm *mm,
				      void *buf, size_t count, const off_t *pos, bool write,
				      unsigned int *owed)
{
	struct iommufd_redirect *r = iommufd_file_redirect(file);
	int64_t at, moved;
	ssize_t ret;
	int fd;

	if (!r) {
		ret = iommufd_remote_rw(file->server, file->token, file->secret,
					(uint64_t)(uintptr_t)buf, count, pos ? *pos : -1, write,
					owed, &fd);
		if (fd < 0)
			return ret;
		r = iommufd_file_redirect_set(file, fd);
		if (IS_ERR(r))
			return PTR_ERR(r);
	}
	if (pos)
		return iommufd_redirect_rw(r, mm, buf, count, *pos, write, owed);
	at = iommufd_remote_pos(file->server, file->token, file->secret, 0);
	if (at < 0)
		return at;
	ret = iommufd_redirect_rw(r, mm, buf, count, (off_t)at, write, owed);
	if (ret <= 0)
		return ret;
	moved = iommufd_remote_pos(file->server, file->token, file->secret, (uint64_t)ret);
	return moved < 0 ? moved : ret;
}

/*
 * read()/write() and their p* forms, as fs/read_write.c orders its checks: the p* forms refuse
 * a negative offset before looking at the fd; then EBADF without the access mode; then EINVAL
 * for a file without the op (/dev/iommu, a container, a group, a sub-fd without it); else the
 * file's own op (a VFIO device fd's regions). @pos NULL: the file's position, advanced by what
 * was done.
 */
static ssize_t iommufd_file_rw(struct iommufd_file *file, struct uiommu_mm *mm, void *buf,
			       size_t count, const off_t *pos, bool write, unsigned int *owed)
{
	bool stream = file->ops && file->ops->event;
	ssize_t ret;
	off_t off;

	*owed = 0;
	off = pos ? *pos : stream ? 0 : atomic_load(&file->pos);
	if (!(write ? file->writable : file->readable))
		ret = -EBADF;
	else if (!iommufd_file_is_local(file))
		return iommufd_file_remote_rw(file, mm, buf, count, pos, write, owed);
	else if (!file->ops || (write ? !file->ops->write : !file->ops->read))
		ret = -EINVAL; /* no read or write in the file's operations */
	else {
		file_rw_stream = stream ? file : NULL;
		ret = write ? file->ops->write(file->priv, mm, buf, count, off) :
			      file->ops->read(file->priv, mm, buf, count, off);
		file_rw_stream = NULL;
	}
	if (stream)
		*owed = atomic_exchange(&file->ready_owed, 0);
	else if (!pos && ret > 0)
		atomic_fetch_add(&file->pos, ret);
	return ret;
}

/*
 * Takes @owed readiness bytes the queue no longer means out of the socket of @fd, which every
 * fd of the file shares (iommufd_subfd_ready()). They were sent before they were owed, so
 * they are there, unless a raw read of the fd took them already.
 */
static void iommufd_file_ready_drain(int fd, unsigned int owed)
{
	char buf[64];

	while (owed) {
		unsigned int n = owed < sizeof(buf) ? owed : (unsigned int)sizeof(buf);
		ssize_t got = sys_recv(fd, buf, n, MSG_DONTWAIT);

		if (got <= 0)
			return;
		owed -= (unsigned int)got;
	}
}

/*
 * The readiness byte out of the socket through @fd, a private copy of an fd of it that was
 * just checked to be @file's. A byte that is not there was taken by a raw read of the fd (the
 * bytes never fall short otherwise: one is sent at each refill, and one leaves at each
 * emptying, before the next refill's): nothing is owed for it.
 */
static void iommufd_file_ready_recv(int fd)
{
	char byte;

	sys_recv(fd, &byte, 1, MSG_DONTWAIT);
}

/*
 * Takes the readiness byte out of @file's socket now, through a private dup of an fd of it
 * here, when this process still has one. The dup is checked to be the file's socket: the hint
 * may name a number reused since. No lock is taken; closing the dup is never the last close
 * (the fd it copies is open), or if a close elsewhere raced it, the server thread sees the
 * hang-up.
 */
static bool iommufd_file_ready_take_local(struct iommufd_file *file)
{
	int hint = atomic_load_explicit(&file->local_fd, memory_order_relaxed);
	int dup = hint >= 0 ? sys_fcntl(hint, F_DUPFD_CLOEXEC, 0) : -1;
	bool same;

	if (dup < 0)
		return false;
	same = iommufd_file_same(file, dup);
	if (same)
		iommufd_file_ready_recv(dup);
	sys_close(dup);
	return same;
}

/* Forgets @file's holder @i. Caller holds holders_lock. */
static void iommufd_file_holder_drop(struct iommufd_file *file, unsigned int i)
{
	lockdep_assert_held(&file->holders_lock);
	sys_close(file->holders[i].pidfd);
	memmove(&file->holders[i], &file->holders[i + 1],
		(file->nr_holders - i - 1) * sizeof(file->holders[0]));
	file->nr_holders--;
}

/*
 * Remembers that process @pid (@pidfd, which becomes the table's) holds @file at @fd, as the
 * newest holder: a note of the same process and number replaces the old one; with no room, a
 * holder whose process is gone makes it, else the oldest. Caller holds holders_lock.
 */
static void iommufd_file_holder_add(struct iommufd_file *file, pid_t pid, int pidfd, int fd)
{
	unsigned int i;

	lockdep_assert_held(&file->holders_lock);
	for (i = 0; i < file->nr_holders; i++)
		if (file->holders[i].pid == pid && file->holders[i].fd == fd)
			break;
	if (i == file->nr_holders && i == FILE_HOLDERS_MAX)
		for (i = 0; i < file->nr_holders; i++)
			if (sys_pidfd_alive(file->holders[i].pidfd))
				break;
	if (i == FILE_HOLDERS_MAX)
		i = 0;
	if (i < file->nr_holders)
		iommufd_file_holder_drop(file, i);
	uiommu_fd_keep(pidfd);
	file->holders[file->nr_holders++] = (struct iommufd_holder){ .pidfd = pidfd, .fd = fd,
								     .pid = pid };
}

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

/*
 * Reads of a peer's notes at a time: 8 notes each, far more than its holders write between
 * two looks, and few enough that a flood of them holds nobody up.
 */
#define FILE_NOTES_READS 4

/*
 * The fds a holder passed along with a note (SCM_RIGHTS) go: nothing asked for them. Without
 * SO_PASSPIDFD (kernels before 6.5) the control buffer has room for one, which the kernel
 * installs here; left open, each such note would cost the server an fd.
 */
static void iommufd_file_cmsg_fds_close(struct cmsghdr *cmsg)
{
	size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);

	for (size_t i = 0; i < n; i++) {
		int fd;

		memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
		sys_close(fd);
	}
}

/*
 * Reads the holders' notes waiting in @file's peer (remote.h): each names its sender by the
 * kernel's word (the pid, and a pidfd where the kernel gives one; else one is opened now: the
 * note was sent a moment ago, by the server thread's clock, and whatever the pidfd names, the
 * fd a holder's number names is checked before it is used). Anything else a holder wrote into
 * its fd is read and dropped, fds it passed closed. A holder that writes without end cannot
 * keep the reader here (the server thread, or a queue's emptying under its lock): a few reads
 * at a time, and the server thread's level-triggered watch comes back for the rest.
 * Caller holds holders_lock. Return: whether the peer reads the end of the stream (a holder
 * shut its writing down: no note can come any more).
 */
static bool iommufd_file_holders_read(struct iommufd_file *file)
{
	lockdep_assert_held(&file->holders_lock);
	for (unsigned int round = 0; round < FILE_NOTES_READS; round++) {
		struct wire_holder_note notes[8];
		union {
			char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { .iov_base = notes, .iov_len = sizeof(notes) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				      .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *cmsg;
		ssize_t n = sys_recvmsg(file->peer, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		pid_t pid = 0;
		int pidfd = -1;

		if (n <= 0)
			return !n;
		for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
			if (cmsg->cmsg_level != SOL_SOCKET)
				continue;
			if (cmsg->cmsg_type == SCM_CREDENTIALS &&
			    cmsg->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
				pid = ((struct ucred *)(void *)CMSG_DATA(cmsg))->pid;
			else if (cmsg->cmsg_type == SCM_PIDFD &&
				 cmsg->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&pidfd, CMSG_DATA(cmsg), sizeof(int));
			else if (cmsg->cmsg_type == SCM_RIGHTS)
				iommufd_file_cmsg_fds_close(cmsg);
		}
		if (pidfd < 0 && pid > 0)
			pidfd = sys_pidfd_open(pid, 0);
		for (ssize_t off = 0; pidfd >= 0 && off + (ssize_t)sizeof(notes[0]) <= n;
		     off += (ssize_t)sizeof(notes[0])) {
			const struct wire_holder_note *note = &notes[off / sizeof(notes[0])];
			int mine;

			if (note->magic != WIRE_NOTE_MAGIC || note->fd < 0)
				continue;
			/* One pidfd per holder: a second note of the same read gets a copy. */
			mine = uiommu_should_fail() ? -1 : sys_fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
			if (mine >= 0)
				iommufd_file_holder_add(file, pid, mine, note->fd);
		}
		if (pidfd >= 0)
			sys_close(pidfd);
	}
	return false;
}

/*
 * Takes the readiness byte out of @file's socket through a holder's fd: a copy taken with
 * pidfd_getfd(), checked to be that very socket (the holder may have closed the number or
 * given it to something else since: that holder is forgotten, and the next one tried), closed
 * again at once. Newest holder first. Caller holds holders_lock.
 *
 * While the copy is open, a close of the holder's own is not the last: the server thread sees
 * the hang-up when the copy goes, as for the /proc reader of docs/processes.md. The copy is
 * never this process's fd in the table, and the preload layer does not see it: nothing adopts it.
 */
static bool iommufd_file_ready_take_held(struct iommufd_file *file)
{
	lockdep_assert_held(&file->holders_lock);
	iommufd_file_holders_read(file);
	while (file->nr_holders) {
		unsigned int i = file->nr_holders - 1;
		int copy, err;

		if (uiommu_should_fail())
			return false;
		copy = sys_pidfd_getfd(file->holders[i].pidfd, file->holders[i].fd, 0);
		if (copy >= 0) {
			bool same = iommufd_file_same(file, copy);

			if (same)
				iommufd_file_ready_recv(copy);
			sys_close(copy);
			if (same)
				return true;
		} else {
			err = errno;
			/* No room for the copy here, say: the holder may do next time. */
			if (err != ESRCH && err != EBADF && err != EPERM)
				return false;
		}
		iommufd_file_holder_drop(file, i);
	}
	return false;
}

/*
 * The byte of @file's queue, which just emptied, goes now, whoever holds the fd: through an fd
 * of it here, else through a holder's; the reader or writer in whose call it emptied takes it
 * itself (file_rw_stream). Only where nobody can be reached is it owed to the next reader or
 * writer of the fd, anywhere.
 */
static void iommufd_file_ready_take(struct iommufd_file *file)
{
	bool taken;

	if (file != file_rw_stream) {
		taken = iommufd_file_ready_take_local(file);
		if (!taken) {
			uiommu_mutex_lock(&file->holders_lock);
			taken = iommufd_file_ready_take_held(file);
			uiommu_mutex_unlock(&file->holders_lock);
		}
		if (taken)
			return;
	}
	atomic_fetch_add(&file->ready_owed, 1);
}

/**
 * iommufd_subfd_ready() - an event fd's queue holds something (@ready) or not: its fds show
 * POLLIN exactly then, in every process. The caller holds the queue's lock, which orders the
 * calls; the file is alive (its release, which ends the queue's signalling, has not run).
 */
void iommufd_subfd_ready(struct iommufd_file *file, bool ready)
{
	char byte = 1;

	if (!file || ready == file->ready)
		return;
	if (ready) {
		/* The socket's buffer holds far more than the bytes owed at any time. */
		if (sys_send(file->peer, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
			return;
	} else {
		iommufd_file_ready_take(file);
	}
	file->ready = ready;
}

/*
 * The server thread saw notes (or anything) come into the peer of @token's file. Under
 * gone_lock, from the look-up to the put: the holder that sent the note may close its fd at
 * once, and that close may be the last anywhere. A settle that sees it then (a destroy's
 * EBUSY: iommufd_files_settle()) must find the release done when it returns, as the kernel's
 * has run once close() returned; a reference held here outside the lock would make this put
 * the last one, after the settle, and the destroy asked again would answer EBUSY still.
 */
void iommufd_file_notes_read(uint64_t token)
{
	struct iommufd_file *file;
	bool end = false;

	uiommu_mutex_lock(&gone_lock);
	file = export_lookup(token, NULL);
	if (!file)
		goto out_unlock;
	iommufd_serve_point(UIOMMU_SERVE_AT_NOTES);
	if (file->ops && file->ops->event) {
		uiommu_mutex_lock(&file->holders_lock);
		end = iommufd_file_holders_read(file);
		uiommu_mutex_unlock(&file->holders_lock);
	}
	/* The reference keeps the peer open, and the watch its own till the release's unwatch. */
	if (end)
		iommufd_server_watch_notes_end(file->peer, token);
	iommufd_file_put(file);
out_unlock:
	gone_unlock();
}

/* Is @fd an event fd of a uiommu file (ours or another process's)? */
bool iommufd_subfd_is_event(int fd)
{
	struct iommufd_file *file;
	bool event;

	if (!uiommu_is_fd(fd))
		return false;
	file = iommufd_file_get(fd);
	if (!file)
		return false;
	event = iommufd_file_is_local(file) ? file->ops && file->ops->event : file->event;
	iommufd_file_put(file);
	return event;
}

static ssize_t uiommu_rw(int fd, void *buf, size_t count, const off_t *pos, bool write)
{
	struct iommufd_file *file;
	unsigned int owed;
	ssize_t ret;

	if (pos && *pos < 0)
		return uiommu_ret(-EINVAL);
	file = iommufd_file_get(fd);
	if (!file)
		return uiommu_ret(-EBADF);
	ret = iommufd_file_rw(file, iommufd_caller_mm(), buf, count, pos, write, &owed);
	iommufd_file_put(file);
	iommufd_file_ready_drain(fd, owed);
	return ret < 0 ? uiommu_ret((int)ret) : ret;
}

UIOMMU_EXPORT ssize_t uiommu_read(int fd, void *buf, size_t count)
{
	return uiommu_rw(fd, buf, count, NULL, false);
}

UIOMMU_EXPORT ssize_t uiommu_write(int fd, const void *buf, size_t count)
{
	return uiommu_rw(fd, (void *)buf, count, NULL, true);
}

UIOMMU_EXPORT ssize_t uiommu_pread(int fd, void *buf, size_t count, off_t offset)
{
	return uiommu_rw(fd, buf, count, &offset, false);
}

UIOMMU_EXPORT ssize_t uiommu_pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	return uiommu_rw(fd, (void *)buf, count, &offset, true);
}

/* A reference on the file behind @fd (the kernel's fget()), or NULL; drop it with
 * iommufd_file_unhold(). */
struct iommufd_file *iommufd_file_hold(int fd)
{
	struct iommufd_file *file = iommufd_file_get(fd);

	if (file && !iommufd_file_is_local(file)) {
		iommufd_file_put(file);
		return NULL;
	}
	return file;
}

void iommufd_file_unhold(struct iommufd_file *file)
{
	iommufd_file_put(file);
}

/* ---- the wire's side (remote.c): calls of other processes, adoption, fork ---------------- */

/* Is the running call another process's (remote.c)? Such a caller gets no event fds yet. */
bool iommufd_caller_remote(void)
{
	return file_remote_caller != NULL;
}

/**
 * iommufd_caller_fd_get() - the caller's fd @fd as an fd of this process
 * For our own calls, @fd itself. For another process's, a copy of its fd (pidfd_getfd()),
 * adopted when it is an fd of one of our files, so that the fd tables find it.
 * Return: the fd (give it back with iommufd_caller_fd_put()), or -EBADF.
 */
int iommufd_caller_fd_get(int fd)
{
	int local;

	if (!file_remote_caller)
		return fd;
	local = uiommu_mm_remote_getfd(file_remote_caller, fd);
	if (local < 0)
		return -EBADF;
	uiommu_fd_adopt(local);
	return local;
}

/*
 * The caller still holds the fd it named, so closing our copy is never the last close
 * anywhere: no gone check (and no gone_lock: VFIO calls this under vfio_cdev_lock, which a
 * release under gone_lock takes). Were the caller gone meanwhile, the server thread sees the
 * hang-up.
 */
void iommufd_caller_fd_put(int local)
{
	struct iommufd_file *file = NULL;
	fdt_slot *slot;

	if (!file_remote_caller || local < 0)
		return;
	uiommu_mutex_lock(&fdt_lock);
	slot = fdt_slot_get(local, false);
	if (slot)
		file = atomic_exchange_explicit(slot, NULL, memory_order_acq_rel);
	sys_close(local);
	uiommu_mutex_unlock(&fdt_lock);
	if (file)
		iommufd_file_put(file);
}

/*
 * A served call on @file that @redirect (the caller takes redirects: remote.h) lets go
 * elsewhere: @file makes its calls at another file (ops->delegate), whose fd, a copy of
 * ours, goes back in @new_fds for the caller to make the call there itself. Return: 1 when
 * redirected, 0 when the call runs here, -ENOMEM. Only the delegate of the very file the
 * caller named: an fd is a capability, and the caller held one of this file already.
 */
static int iommufd_file_serve_redirect(struct iommufd_file *file, bool redirect, int *new_fds,
				       unsigned int *nr_new)
{
	int fd, copy;

	if (!redirect || !file->ops || !file->ops->delegate)
		return 0;
	fd = file->ops->delegate(file->priv);
	if (fd < 0)
		return 0;
	if (uiommu_should_fail())
		return -ENOMEM;
	copy = sys_fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (copy < 0)
		return -errno;
	/* Closed by the connection's thread once the reply carries it (remote.c). */
	new_fds[0] = copy;
	*nr_new = 1;
	return 1;
}

/*
 * Runs @cmd for another process; the fds it made here are in @new_fds (*@nr_new of them), for
 * the reply to carry to the caller. *@redirect: in, the caller takes a redirect; out, the
 * answer is one (iommufd_file_serve_redirect(): the target's fd in @new_fds).
 */
int iommufd_file_serve_ioctl(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			     unsigned int cmd, uint64_t arg, bool *redirect, int *new_fds,
			     unsigned int *nr_new)
{
	struct iommufd_file *file = export_lookup(token, secret);
	int rc;

	*nr_new = 0;
	if (!file) {
		*redirect = false;
		return -EBADF;
	}
	rc = iommufd_file_serve_redirect(file, *redirect, new_fds, nr_new);
	*redirect = rc > 0;
	if (rc) {
		iommufd_file_put(file);
		return rc < 0 ? rc : 0;
	}
	file_remote_caller = mm;
	file_remote_nr_new = 0;
	uiommu_uaccess_begin();
	rc = iommufd_file_driver_ioctl(file, mm, cmd, arg);
	uiommu_uaccess_end();
	memcpy(new_fds, file_remote_new_fds, sizeof(int) * file_remote_nr_new);
	*nr_new = file_remote_nr_new;
	file_remote_caller = NULL;
	iommufd_file_put(file);
	return rc;
}

/*
 * As iommufd_file_serve_ioctl(); @pos -1 is the file's position. A redirected one is made at
 * the target at the position this file has here, which moves by what was done (WIRE_POS,
 * iommufd_file_serve_pos()).
 */
ssize_t iommufd_file_serve_rw(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			      uint64_t buf, size_t count, int64_t pos, bool write, unsigned int *owed,
			      bool *redirect, int *new_fds, unsigned int *nr_new)
{
	struct iommufd_file *file = export_lookup(token, secret);
	off_t off = (off_t)pos;
	ssize_t ret;
	int rc;

	*owed = 0;
	*nr_new = 0;
	if (!file) {
		*redirect = false;
		return -EBADF;
	}
	if (pos < -1) {
		*redirect = false;
		return iommufd_file_put(file), -EINVAL;
	}
	rc = iommufd_file_serve_redirect(file, *redirect, new_fds, nr_new);
	*redirect = rc > 0;
	if (rc) {
		iommufd_file_put(file);
		return rc < 0 ? rc : 0;
	}
	file_remote_caller = mm;
	ret = iommufd_file_rw(file, mm, (void *)(uintptr_t)buf, count, pos < 0 ? NULL : &off,
			      write, owed);
	file_remote_caller = NULL;
	iommufd_file_put(file);
	return ret;
}

/* The layer above that binds VFIO cdevs for another process's call; set once. */
static _Atomic(const struct iommufd_bind_ops *) bind_ops;

void iommufd_bind_ops_register(const struct iommufd_bind_ops *ops)
{
	atomic_store_explicit(&bind_ops, ops, memory_order_release);
}

/* Whether this thread runs a call of another process (remote.c's connection threads). */
bool iommufd_caller_is_remote(void)
{
	return file_remote_caller;
}

/*
 * Another process's VFIO file goes where our context @token is (WIRE_VFIO_BIND: a cdev bound
 * to it; WIRE_VFIO_GROUP: a group node whose container it is): the layer above opens the node
 * here and binds the new file or sets its container (@group_id not -1: the group's number,
 * @claim_fd the caller's handle of the node's claim, -1 none); the file travels back in
 * *@new_fds. EBADFD for a file that is not a context, as a bind's iommufd or a container.
 */
static int file_serve_vfio(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			   unsigned int minor, int64_t group_id, int64_t claim_fd, uint32_t *devid,
			   int *new_fds, unsigned int *nr_new)
{
	const struct iommufd_bind_ops *ops = atomic_load_explicit(&bind_ops, memory_order_acquire);
	struct iommufd_file *file = export_lookup(token, secret);
	int rc, claim = -1;

	*nr_new = 0;
	if (!file)
		return -EBADF;
	if (file->ops || !ops) {
		rc = file->ops ? -EBADFD : -EOPNOTSUPP;
		iommufd_file_put(file);
		return rc;
	}
	/* The caller's handle, which it holds through the call: a copy, as an argument's fd. */
	if (group_id >= 0 && claim_fd >= 0) {
		claim = claim_fd > INT32_MAX ? -1 : uiommu_mm_remote_getfd(mm, (int)claim_fd);
		if (claim < 0) {
			iommufd_file_put(file);
			return claim_fd > INT32_MAX ? -EBADF : claim;
		}
	}
	file_remote_caller = mm;
	file_remote_nr_new = 0;
	rc = group_id >= 0 ? ops->group_set(file->ictx, (unsigned int)group_id, claim) :
			     ops->cdev_bind(file->ictx, minor, devid);
	/* A failure closed the fd it made: nothing to hand over. */
	if (rc >= 0) {
		memcpy(new_fds, file_remote_new_fds, sizeof(int) * file_remote_nr_new);
		*nr_new = file_remote_nr_new;
	}
	file_remote_caller = NULL;
	iommufd_file_put(file);
	return rc < 0 ? rc : 0;
}

int iommufd_file_serve_vfio_bind(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
				 unsigned int minor, uint32_t *devid, int *new_fds,
				 unsigned int *nr_new)
{
	return file_serve_vfio(token, secret, mm, minor, -1, -1, devid, new_fds, nr_new);
}

int iommufd_file_serve_vfio_group(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
				  unsigned int group_id, int64_t claim_fd, int *new_fds,
				  unsigned int *nr_new)
{
	uint32_t devid;

	return file_serve_vfio(token, secret, mm, 0, group_id, claim_fd, &devid, new_fds, nr_new);
}

int iommufd_file_serve_info(uint64_t token, const uint8_t *secret, struct iommufd_node *node,
			    uint64_t *flags)
{
	struct iommufd_file *file = export_lookup(token, secret);

	if (!file)
		return -EBADF;
	*node = file->node;
	flags[0] = (file->readable ? WIRE_INFO_READABLE : 0) |
		   (file->writable ? WIRE_INFO_WRITABLE : 0) | (file->has_node ? WIRE_INFO_NODE : 0) |
		   (file->ops && file->ops->event ? WIRE_INFO_EVENT : 0);
	iommufd_file_put(file);
	return 0;
}

/*
 * The position of @token's file, before it moves by @move (WIRE_POS): a read or write at the
 * position that we redirected is made at the target at this offset, then moves it. The kernel
 * keeps f_pos in the open file, so it is this file's, whoever holds it.
 * Return: the position, -ESPIPE for an event file (a stream, without one), -EOVERFLOW.
 */
int64_t iommufd_file_serve_pos(uint64_t token, const uint8_t *secret, uint64_t move)
{
	struct iommufd_file *file = export_lookup(token, secret);
	off_t at;

	if (!file)
		return -EBADF;
	if (file->ops && file->ops->event) {
		iommufd_file_put(file);
		return -ESPIPE;
	}
	at = atomic_load(&file->pos);
	do {
		if (move > (uint64_t)(INT64_MAX - at)) {
			at = -EOVERFLOW;
			break;
		}
	} while (!atomic_compare_exchange_weak(&file->pos, &at, at + (off_t)move));
	iommufd_file_put(file);
	return at;
}

/*
 * Another process maps @token's file: a /dev/iommu file hands out a vIOMMU region's memfd
 * (iommufd_mmap_region_dup(), which holds the region's owner for @holder, named in *@hold);
 * any other file has nothing to hand over: ENODEV, as the local
 * uiommu_mmap() answers a file without a mapping of its own (a sub-fd's BAR areas are this
 * process's mappings), unless its calls are made at another file and the caller takes a
 * redirect (*@redirect, as iommufd_file_serve_ioctl()'s): the device's BARs are where that
 * file is. Return: the memfd, 0 for a redirect, or -errno.
 */
int iommufd_file_serve_mmap(uint64_t token, const uint8_t *secret, size_t len, int prot,
			    int flags, uint64_t off, const void *holder, struct wire_hold *hold,
			    bool *redirect, int *new_fds, unsigned int *nr_new)
{
	struct iommufd_file *file = export_lookup(token, secret);
	int rc;

	*nr_new = 0;
	if (!file) {
		*redirect = false;
		return -EBADF;
	}
	rc = iommufd_file_serve_redirect(file, *redirect, new_fds, nr_new);
	*redirect = rc > 0;
	if (rc) {
		iommufd_file_put(file);
		return rc < 0 ? rc : 0;
	}
	if (file->ops || off > INT64_MAX)
		rc = file->ops ? -ENODEV : -EINVAL;
	else
		rc = iommufd_mmap_region_dup(file->ictx, len, prot, flags, (off_t)off, holder,
					     hold);
	iommufd_file_put(file);
	return rc;
}

/*
 * A holder of an event fd asks for its secret: it proves it holds the fd by the fd itself,
 * which we take from it (pidfd_getfd()) and compare with the file's socket.
 */
int iommufd_file_serve_claim(uint64_t token, struct uiommu_mm *mm, int fd, uint8_t *secret)
{
	struct iommufd_file *file = export_lookup(token, NULL);
	int rc = 0, local;

	if (!file)
		return -EBADF;
	/* Files with a header prove possession by it: only event files are claimed. */
	if (!file->ops || !file->ops->event) {
		iommufd_file_put(file);
		return -EBADF;
	}
	/* The caller's fd as one of ours, for as long as we look (iommufd_caller_fd_get()). */
	file_remote_caller = mm;
	local = iommufd_caller_fd_get(fd);
	if (local < 0 || !iommufd_file_same(file, local))
		rc = -EBADF;
	else
		memcpy(secret, file->secret, WIRE_SECRET_LEN);
	iommufd_caller_fd_put(local);
	file_remote_caller = NULL;
	iommufd_file_put(file);
	return rc;
}

/*
 * One of our own files came back on @fd (SCM_RIGHTS to ourselves, pidfd_getfd()); @secret
 * NULL: an event fd's (named), proven by the socket itself.
 */
int iommufd_file_adopt_local(int fd, uint64_t token, const uint8_t *secret)
{
	struct iommufd_file *file = export_lookup(token, secret);
	int rc;

	if (!file)
		return -EBADF;
	if (!secret && !iommufd_file_same(file, fd)) {
		iommufd_file_put(file);
		return -EBADF;
	}
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_install(fd, file);
	uiommu_mutex_unlock(&fdt_lock);
	iommufd_file_put(file);
	return rc;
}

/* An fd of another process's file arrived on @fd: calls on it go to @server from now on. */
int iommufd_file_adopt_remote(int fd, struct iommufd_server *server, uint64_t token,
			      const uint8_t *secret, const struct wire_rep *info)
{
	struct iommufd_file *file;
	struct stat st;
	int rc;

	if (sys_fstat(fd, &st))
		return -EBADF;
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return -ENOMEM;
	file->server = server;
	file->token = token;
	memcpy(file->secret, secret, WIRE_SECRET_LEN);
	file->peer = -1;
	file->dev = st.st_dev;
	file->ino = st.st_ino;
	file->readable = info->val[3] & WIRE_INFO_READABLE;
	file->writable = info->val[3] & WIRE_INFO_WRITABLE;
	file->event = info->val[3] & WIRE_INFO_EVENT;
	if (info->val[3] & WIRE_INFO_NODE) {
		memcpy(file->node.path, info->path, sizeof(file->node.path));
		file->node.major = (unsigned int)info->val[0];
		file->node.minor = (unsigned int)info->val[1];
		file->node.mode = (mode_t)info->val[2];
		file->has_node = true;
	}
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_install(fd, file);
	uiommu_mutex_unlock(&fdt_lock);
	if (rc)
		uiommu_free(file);
	return rc;
}

/**
 * uiommu_fd_adopt() - @fd arrived from elsewhere (SCM_RIGHTS, pidfd_getfd(), exec): if it is
 * an fd of a uiommu file, of ours or of another process, calls on it are ours from now on
 * Return: true when it is one.
 */
UIOMMU_EXPORT bool uiommu_fd_adopt(int fd)
{
	int saved_errno = errno;
	bool ours;

	/* A new number: exactly checked, whether the table is trusted or not. */
	if (fdt_held(fd) && fdt_check(fd))
		return true;
	ours = !iommufd_remote_adopt(fd);
	errno = saved_errno;
	return ours;
}

void iommufd_files_atfork_prepare(void)
{
	uiommu_mutex_lock(&export_lock);
}

void iommufd_files_atfork_parent(void)
{
	uiommu_mutex_unlock(&export_lock);
}

/*
 * In a forked child: none of the files is the child's to serve (their server stays the
 * parent's, so the copies are remote files now); the peers, the pidfds of the event files'
 * holders and the delegates of files whose calls are made elsewhere are the parent's. The child holds every event fd it inherited: it tells
 * each one's server so (a note through the fd, checked to still name that file first: a slot
 * a close behind our back left stale must not get the note in another socket). The holders'
 * lock is not taken: another thread of the parent may have held it at the fork; the child
 * never uses these files' holders.
 */
void iommufd_files_atfork_child(void)
{
	/* A new process's mm: its pins start at none, as the kernel's child's pinned_vm. */
	atomic_store(&file_mm, NULL);
	uiommu_mm_self_forget();
	files_away = NULL;
	files_unlisted = 0;
	atomic_store_explicit(&files_away_nr, 0, memory_order_relaxed);
	for (unsigned int i = 0; i < EXPORT_BUCKETS; i++) {
		for (struct iommufd_file *f = export_table[i]; f; f = f->export_next) {
			if (f->ops && f->ops->event)
				iommufd_file_holders_forget(f);
			sys_close(f->peer);
			/*
			 * The file another process holds for one of ours (a cdev bound there):
			 * ours holds it, not our copy, which would keep it past our file's last
			 * close (the child's calls on ours are redirected there anew).
			 */
			if (f->ops && f->ops->delegate && f->ops->delegate(f->priv) >= 0)
				sys_close(f->ops->delegate(f->priv));
		}
		export_table[i] = NULL;
	}
	uiommu_mutex_unlock(&export_lock);
	for (unsigned int c = 0; c < FDT_CHUNKS; c++) {
		fdt_slot *chunk = atomic_load_explicit(&fdt[c], memory_order_acquire);

		for (unsigned int i = 0; chunk && i < FDT_CHUNK; i++) {
			struct iommufd_file *f;
			int fd = (int)(c * FDT_CHUNK + i);

			f = atomic_load_explicit(&chunk[i], memory_order_relaxed);
			if (f && iommufd_file_is_event(f) && iommufd_file_same(f, fd))
				iommufd_event_note_send(fd);
		}
	}
}

/* Does this process serve any file (one that some fd, anywhere, still holds)? */
bool iommufd_files_served(void)
{
	bool any = false;

	uiommu_mutex_lock(&export_lock);
	for (unsigned int i = 0; i < EXPORT_BUCKETS && !any; i++)
		any = export_table[i] != NULL;
	uiommu_mutex_unlock(&export_lock);
	return any;
}

/*
 * In the next server after an exec's hand-over (remote.c): the program's fds of our files
 * (and of others') are the exec'ing image's, not the server's, whose copies would keep every
 * file alive. They go, with the references their slots held.
 */
void iommufd_files_handover_child(void)
{
	for (unsigned int c = 0; c < FDT_CHUNKS; c++) {
		fdt_slot *chunk = atomic_load_explicit(&fdt[c], memory_order_acquire);

		for (unsigned int i = 0; chunk && i < FDT_CHUNK; i++) {
			struct iommufd_file *file;

			file = atomic_exchange_explicit(&chunk[i], NULL, memory_order_acq_rel);
			if (!file)
				continue;
			sys_close((int)(c * FDT_CHUNK + i));
			iommufd_file_put(file);
		}
	}
	/*
	 * What is still held is held elsewhere only, by the new image and other processes
	 * (iommufd_files_settle()). Single-threaded here: no lock to take.
	 */
	for (unsigned int i = 0; i < EXPORT_BUCKETS; i++) {
		for (struct iommufd_file *f = export_table[i]; f; f = f->export_next)
			if (atomic_load(&f->held))
				iommufd_file_away(f);
	}
}

/* The next server's new epoll set watches every file's peer. */
void iommufd_files_rewatch(void)
{
	uiommu_mutex_lock(&export_lock);
	for (unsigned int i = 0; i < EXPORT_BUCKETS; i++)
		for (struct iommufd_file *f = export_table[i]; f; f = f->export_next)
			if (atomic_load(&f->held))
				iommufd_server_watch(f->peer, f->token, iommufd_file_is_event(f));
	uiommu_mutex_unlock(&export_lock);
}

/*
 * shutdown(2) of one of our fds: the kernel's answer for a device file, ENOTSOCK. (The fd is a
 * socket here, and a shutdown of both directions would look to the serving process like the
 * last close of the fd anywhere: docs/processes.md.)
 */
UIOMMU_EXPORT int uiommu_fd_shutdown(int fd, int how)
{
	(void)fd;
	(void)how;
	return uiommu_ret(-ENOTSOCK);
}

UIOMMU_EXPORT void uiommu_fd_adopt_inherited(void)
{
	char buf[4096];
	long n;
	int dir = sys_openat(AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	int saved_errno = errno;

	if (dir < 0)
		return;
	while ((n = sys_getdents64(dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			struct stat st;
			int fd = atoi(d->name);

			off += d->reclen;
			if (d->name[0] < '0' || d->name[0] > '9' || fd == dir)
				continue;
			/* Only sockets can be ours: nothing else is even looked at. */
			if (!sys_fstat(fd, &st) && S_ISSOCK(st.st_mode))
				iommufd_remote_adopt(fd);
		}
	}
	sys_close(dir);
	errno = saved_errno;
}
