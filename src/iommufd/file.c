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
 * The fd numbers are real: each iommufd fd is an open description of a memfd that we own, so
 * the number cannot be taken by anything else while it is open, and close-on-exec, fork
 * inheritance and the process's fd limit behave as for any fd.
 *
 * Identity. A close that bypasses us (close_range() from an old libc, fclose() of an fdopen()ed
 * iommufd, a raw system call) frees the number, and the next file given it must not have its
 * ioctls answered by us. Each backing memfd has an inode of its own, recorded in the file
 * (dev, ino); uiommu_is_fd(), the preload layer's gate, compares it with fstat() of the fd and
 * drops a slot whose fd now names another file, as if that fd had been closed. One fstat
 * system call per call on an fd the table holds (~1.9x a null ioctl, the one system call left
 * on an ioctl's path; kcmp() is dearer, lseek()/fcntl() do not name the file: bench/README.md);
 * fds the table does not hold cost nothing. close_range() and closefrom() go through uiommu_fd_close_range(), which closes
 * ours in the range first.
 *
 * What the VFS answers before any driver (fs/ioctl.c's generic requests such as FIOCLEX and
 * FIONBIO, read/write on a file without those ops, fs/read_write.c's EBADF for the wrong access
 * mode) is answered here for every file of the table, on the backing fd where it takes effect.
 * A file whose ops have read/write (a VFIO device fd: its regions) gets them after those
 * checks, at the file's own position for read()/write().
 *
 * Nodes. A file opened through a device node carries that node (struct iommufd_node: path,
 * numbers, mode) for uiommu_fstat() and uiommu_fd_path(); the identity check above looks at
 * the backing memfd with the raw system call, since the preload layer's fstat() answers our
 * fds with their node.
 *
 * The fd -> file map is a two-level table of atomic pointers: the ioctl path reads it without a
 * lock under RCU; changes are made under fdt_lock.
 *
 * Sub-fds. Some ioctls hand out an fd of their own (the selftest's access fd, later vEVENTQ and
 * dma-buf fds). Such a file is an iommufd_file too, with ops: it lives in the same table (so
 * close() through the preload layer or uiommu_close() finds it, and dup() shares it), holds a
 * reference on the file of the context it was made in (the context outlives it, as the
 * kernel's sub-files pin the iommufd file), answers ENOTTY to ioctls, and at its last reference
 * calls ops->release() on what it stands for. Making one is split so that nothing can fail
 * after the ioctl's reply is written: iommufd_subfd_alloc() reserves the fd number and every
 * allocation, iommufd_subfd_install() only publishes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <linux/close_range.h>
#include <linux/fs.h>

#include "machine/sysfs.h"
#include "iommufd/iommufd_private.h"
#include "mm/account.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"

struct iommufd_file {
	atomic_long refs;          /* fds referring to it + ioctls in flight */
	struct iommufd_ctx *ictx;  /* constant; NULL for a sub-fd */
	const struct iommufd_subfd_ops *ops; /* a sub-fd's; NULL for /dev/iommu; constant */
	void *priv;                /* a sub-fd's object; constant */
	struct iommufd_file *parent; /* a sub-fd: its context's file, a reference; constant */
	dev_t dev;                 /* the backing memfd's identity (fstat()); constant */
	ino_t ino;
	bool readable, writable;   /* the open's access mode, as the kernel's f_mode; constant */
	/* Set once before the fd is handed out (iommufd_file_set_node()), then constant. */
	struct iommufd_node node;
	bool has_node;
	_Atomic off_t pos;         /* read(2)/write(2) position (the kernel's f_pos) */
	struct rcu_head rcu;
};

#define FDT_CHUNK_SHIFT 10
#define FDT_CHUNK (1u << FDT_CHUNK_SHIFT)
#define FDT_CHUNKS 4096u /* fds up to 4M */

typedef _Atomic(struct iommufd_file *) fdt_slot;

static _Atomic(fdt_slot *) fdt[FDT_CHUNKS];
UIOMMU_MUTEX_DEFINE(fdt_lock); /* protects fdt updates; before ictx->objects_lock */

/* The address space of every caller: this process. Taken once and kept. */
static struct uiommu_mm *file_mm;
static pthread_once_t file_mm_once = PTHREAD_ONCE_INIT;

static void file_mm_init(void)
{
	struct uiommu_mm *mm = uiommu_mm_self();

	if (IS_ERR(mm))
		return;
	file_mm = mm;
}

struct uiommu_mm *iommufd_caller_mm(void)
{
	pthread_once(&file_mm_once, file_mm_init);
	return file_mm;
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

static void iommufd_file_put(struct iommufd_file *file)
{
	/* A sub-fd's release puts its parent: the recursion is one level deep. */
	if (atomic_fetch_sub_explicit(&file->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (file->ops) {
		file->ops->release(file->priv);
		if (file->parent)
			iommufd_file_put(file->parent);
	} else {
		iommufd_ctx_release(file->ictx);
	}
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

/* The file behind @fd with a reference (pairs with iommufd_file_put()), or NULL. */
static struct iommufd_file *iommufd_file_get(int fd)
{
	struct iommufd_file *file = NULL;
	fdt_slot *slot;

	rcu_read_lock();
	slot = fdt_slot_get(fd, false);
	if (slot)
		file = atomic_load_explicit(slot, memory_order_acquire);
	if (file) {
		long v = atomic_load_explicit(&file->refs, memory_order_relaxed);

		do {
			if (!v) {
				file = NULL;
				break;
			}
		} while (!atomic_compare_exchange_weak_explicit(&file->refs, &v, v + 1,
								memory_order_acquire,
								memory_order_relaxed));
	}
	rcu_read_unlock();
	return file;
}

/* Installs @file at @fd (taking a reference); drops whatever was there. fdt_lock held. */
static int fdt_install(int fd, struct iommufd_file *file)
{
	fdt_slot *slot = fdt_slot_get(fd, true);
	struct iommufd_file *old;

	if (!slot)
		return -EMFILE;
	if (file)
		atomic_fetch_add_explicit(&file->refs, 1, memory_order_relaxed);
	old = atomic_exchange_explicit(slot, file, memory_order_acq_rel);
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

/* A new backing fd for @file (O_CLOEXEC and O_NONBLOCK of @flags); records its identity. */
static int iommufd_raw_open(struct iommufd_file *file, int flags)
{
	struct stat st;
	int fd, err;

	if (uiommu_should_fail())
		return -ENOMEM;
	fd = memfd_create("iommufd", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -errno;
	if (((flags & O_NONBLOCK) && sys_fcntl(fd, F_SETFL, O_NONBLOCK)) || sys_fstat(fd, &st)) {
		err = errno;
		sys_close(fd);
		return -err;
	}
	file->dev = st.st_dev;
	file->ino = st.st_ino;
	/* The kernel's OPEN_FMODE(): O_RDONLY reads, O_WRONLY writes, 3 does neither. */
	file->readable = ((flags & O_ACCMODE) + 1) & 1;
	file->writable = ((flags & O_ACCMODE) + 1) & 2;
	return fd;
}

UIOMMU_EXPORT int uiommu_open(int flags)
{
	struct iommufd_file *file;
	struct uiommu_mm *mm = iommufd_caller_mm();
	int fd, rc;

	if (!mm)
		return uiommu_ret(-ENOMEM);
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return uiommu_ret(-ENOMEM);
	file->ictx = iommufd_ctx_alloc(mm);
	if (IS_ERR(file->ictx)) {
		rc = PTR_ERR(file->ictx);
		goto err_free;
	}
	file->ictx->file = file;
	file->node = (struct iommufd_node){ .path = "/dev/iommu", .major = IOMMUFD_NODE_MAJOR,
					    .minor = IOMMUFD_NODE_MINOR, .mode = S_IFCHR | 0660 };
	file->has_node = true;
	fd = iommufd_raw_open(file, flags);
	if (fd < 0) {
		rc = fd;
		goto err_release;
	}
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_install(fd, file);
	uiommu_mutex_unlock(&fdt_lock);
	if (rc) {
		sys_close(fd);
		goto err_release;
	}
	return fd;

err_release:
	iommufd_ctx_release(file->ictx);
err_free:
	uiommu_free(file);
	return uiommu_ret(rc);
}

/* @fd no longer names @file (closed behind our back): drop the slot if it still holds @file. */
static void fdt_forget_stale(int fd, struct iommufd_file *file)
{
	fdt_slot *slot;

	uiommu_mutex_lock(&fdt_lock);
	slot = fdt_slot_get(fd, false);
	if (slot && atomic_load_explicit(slot, memory_order_relaxed) == file)
		fdt_install(fd, NULL);
	uiommu_mutex_unlock(&fdt_lock);
}

UIOMMU_EXPORT bool uiommu_is_fd(int fd)
{
	fdt_slot *slot = fdt_slot_get(fd, false);
	struct iommufd_file *file;
	struct stat st;
	bool same;

	if (!slot || !atomic_load_explicit(slot, memory_order_relaxed))
		return false;
	file = iommufd_file_get(fd);
	if (!file)
		return false;
	/* Raw: the preload layer's fstat() answers our fds with their node. */
	same = !sys_fstat(fd, &st) && st.st_dev == file->dev && st.st_ino == file->ino;
	if (!same)
		fdt_forget_stale(fd, file);
	iommufd_file_put(file);
	return same;
}

/*
 * The requests fs/ioctl.c's do_vfs_ioctl() answers for every file before its driver sees them,
 * as they come out for a character device; VFS_IOCTL_DRIVER for the driver's.
 */
#define VFS_IOCTL_DRIVER 1

static int iommufd_file_vfs_ioctl(int fd, unsigned int cmd, uint64_t arg)
{
	struct uiommu_mm *mm = iommufd_caller_mm();
	int on, flags, rc;

	switch (cmd) {
	case FIOCLEX:
	case FIONCLEX:
		return sys_fcntl(fd, F_SETFD, cmd == FIOCLEX ? FD_CLOEXEC : 0) ? -errno : 0;
	case FIONBIO:
	case FIOASYNC:
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
		return uiommu_copy_to_user(mm, arg, &on, sizeof(on));
	default:
		return VFS_IOCTL_DRIVER;
	}
}

UIOMMU_EXPORT int uiommu_ioctl(int fd, unsigned long request, void *arg)
{
	struct iommufd_file *file = iommufd_file_get(fd);
	int rc;

	if (!file)
		return uiommu_ret(-EBADF);
	/* One fault-safe window for every user access of the ioctl (mm/mm.h). */
	uiommu_uaccess_begin();
	rc = iommufd_file_vfs_ioctl(fd, (unsigned int)request, (uint64_t)(uintptr_t)arg);
	if (rc != VFS_IOCTL_DRIVER)
		goto out_end;
	if (file->ops)
		rc = file->ops->ioctl ? file->ops->ioctl(file->priv, iommufd_caller_mm(),
							(unsigned int)request,
							(uint64_t)(uintptr_t)arg) :
					-ENOTTY;
	else
		rc = iommufd_ctx_ioctl(file->ictx, iommufd_caller_mm(), (unsigned int)request,
				       (uint64_t)(uintptr_t)arg);
out_end:
	uiommu_uaccess_end();
	iommufd_file_put(file);
	return uiommu_ret(rc);
}

UIOMMU_EXPORT int uiommu_close(int fd)
{
	struct iommufd_file *file;
	fdt_slot *slot;
	int rc;

	uiommu_mutex_lock(&fdt_lock);
	slot = fdt_slot_get(fd, false);
	file = slot ? atomic_exchange_explicit(slot, NULL, memory_order_acq_rel) : NULL;
	if (!file) {
		uiommu_mutex_unlock(&fdt_lock);
		/* Not /dev/iommu: perhaps an fd one of its ioctls made. */
		return uiommu_ret(iommufd_event_fd_close(fd));
	}
	rc = sys_close(fd);
	uiommu_mutex_unlock(&fdt_lock);
	iommufd_file_put(file);
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
	iommufd_event_fds_close_range(first, last);
	sysfs_fds_forget_range(first, last);
	return 0;
}

bool iommufd_subfd_mmap(int fd, void *addr, size_t len, int prot, int flags, uint64_t off,
			void **ret)
{
	struct iommufd_file *file = iommufd_file_get(fd);

	if (!file)
		return false;
	if (!file->ops || !file->ops->mmap) {
		iommufd_file_put(file);
		return false;
	}
	*ret = file->ops->mmap(file->priv, addr, len, prot, flags, off);
	iommufd_file_put(file);
	return true;
}

/* ---- sub-fds -------------------------------------------------------------------------------- */

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
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return ERR_PTR(-ENOMEM);
	*fd = iommufd_raw_open(file, O_CLOEXEC | O_RDWR); /* as anon_inode_getfile() */
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
	atomic_fetch_add_explicit(&ictx->file->refs, 1, memory_order_relaxed);
	file->parent = ictx->file;
	return file;

err_close:
	sys_close(*fd);
err_free:
	uiommu_free(file);
	return ERR_PTR(rc);
}

/* Publishes a sub-fd made by iommufd_subfd_alloc(); the fd's reference is the only one. */
void iommufd_subfd_install(struct iommufd_file *file, int fd)
{
	uiommu_mutex_lock(&fdt_lock);
	WARN_ON(fdt_install(fd, file));
	uiommu_mutex_unlock(&fdt_lock);
}

/* Undoes iommufd_subfd_alloc(): closes the fd; ops->release is not called. */
void iommufd_subfd_abort(struct iommufd_file *file, int fd)
{
	sys_close(fd);
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
	struct iommufd_file *file = iommufd_file_get(fd);

	if (!file)
		return ERR_PTR(-EBADFD);
	if (file->ops != ops) {
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

/**
 * iommufd_file_open_ops() - a new fd standing for @priv, made by an open() of a device node
 * (the VFIO device cdev) rather than by an ioctl: no parent context. ops->release(@priv) runs at
 * its last close; on failure nothing is called.
 * Return: the fd, or -ENOMEM / -EMFILE / the open's -errno.
 */
int iommufd_file_open_ops(const struct iommufd_subfd_ops *ops, void *priv, int flags)
{
	struct iommufd_file *file;
	int fd, rc;

	if (!iommufd_caller_mm())
		return -ENOMEM;
	file = uiommu_zalloc(sizeof(*file));
	if (!file)
		return -ENOMEM;
	fd = iommufd_raw_open(file, flags);
	if (fd < 0) {
		rc = fd;
		goto err_free;
	}
	file->ops = ops;
	file->priv = priv;
	uiommu_mutex_lock(&fdt_lock);
	rc = fdt_install(fd, file);
	uiommu_mutex_unlock(&fdt_lock);
	if (rc)
		goto err_close;
	return fd;

err_close:
	sys_close(fd);
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
	struct iommufd_file *file = iommufd_file_get(fd);

	if (!file)
		return ERR_PTR(sys_fcntl(fd, F_GETFD, 0) < 0 ? -EBADF : -EBADFD);
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
	uiommu_mutex_lock(&fdt_lock);
	if (fdt_slot_get(fd, false))
		fdt_install(fd, NULL);
	uiommu_mutex_unlock(&fdt_lock);
}

UIOMMU_EXPORT int uiommu_stats_get(struct uiommu_stats *stats)
{
	struct uiommu_mm *mm = iommufd_caller_mm();

	/* Let every deferred free run so the counters are exact. */
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

int iommufd_file_set_node(int fd, const struct iommufd_node *node)
{
	struct iommufd_file *file = iommufd_file_get(fd);

	if (!file)
		return -EBADF;
	file->node = *node;
	file->has_node = true;
	iommufd_file_put(file);
	return 0;
}

/*
 * The times a node shows: the library's first look, as devtmpfs shows the time a node was
 * made at boot. Owner: the caller, as a udev rule hands VFIO nodes to the user of a VM.
 */
static void iommufd_node_fill_stat(const struct iommufd_node *node, struct stat *st)
{
	static _Atomic time_t boot;
	time_t t = atomic_load_explicit(&boot, memory_order_relaxed), expected = 0;

	if (!t) {
		t = time(NULL);
		if (!atomic_compare_exchange_strong(&boot, &expected, t))
			t = expected;
	}
	memset(st, 0, sizeof(*st));
	st->st_mode = node->mode;
	st->st_nlink = 1;
	st->st_uid = geteuid();
	st->st_gid = getegid();
	st->st_blksize = 4096;
	st->st_atime = st->st_mtime = st->st_ctime = t;
	if (S_ISCHR(node->mode)) {
		st->st_dev = makedev(0, 5); /* devtmpfs */
		st->st_rdev = makedev(node->major, node->minor);
		/* A stable inode number per node, as devtmpfs keeps one per node. */
		st->st_ino = 1000 + ((unsigned long)node->major << 20 | node->minor);
	} else {
		st->st_dev = makedev(0, 14); /* the anon_inode mount */
		st->st_ino = 1;              /* every anonymous file shares its one inode */
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
 * read()/write() and their p* forms, as fs/read_write.c orders its checks: the p* forms refuse
 * a negative offset before looking at the fd; then EBADF without the access mode; then EINVAL
 * for a file without the op (/dev/iommu, a container, a group, a sub-fd without it); else the
 * file's own op (a VFIO device fd's regions). @pos NULL: the file's position, advanced by what
 * was done.
 */
static ssize_t uiommu_rw(int fd, void *buf, size_t count, const off_t *pos, bool write)
{
	struct iommufd_file *file;
	ssize_t ret;
	off_t off;

	if (pos && *pos < 0)
		return uiommu_ret(-EINVAL);
	file = iommufd_file_get(fd);
	if (!file)
		return uiommu_ret(-EBADF);
	off = pos ? *pos : atomic_load(&file->pos);
	if (!(write ? file->writable : file->readable))
		ret = -EBADF;
	else if (!file->ops || (write ? !file->ops->write : !file->ops->read))
		ret = -EINVAL; /* no read or write in the file's operations */
	else if (write)
		ret = file->ops->write(file->priv, iommufd_caller_mm(), buf, count, off);
	else
		ret = file->ops->read(file->priv, iommufd_caller_mm(), buf, count, off);
	if (!pos && ret > 0)
		atomic_fetch_add(&file->pos, ret);
	iommufd_file_put(file);
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
	return iommufd_file_get(fd);
}

void iommufd_file_unhold(struct iommufd_file *file)
{
	iommufd_file_put(file);
}
