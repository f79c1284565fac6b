// SPDX-License-Identifier: MIT
/*
 * mmap on the iommufd fd: uiommu_mmap() and uiommu_munmap(), the library's side of a program's
 * mmap(2) of /dev/iommu (the preload layer forwards to them).
 *
 * Some objects own a region of memory a driver shares with user space (the selftest vIOMMU's
 * 2-page page; a real vIOMMU's command-queue window). The region is a memfd of ours, mapped
 * MAP_SHARED in the library too (iommufd_mmap_region_alloc()), so the driver's writes and the
 * program's are the same bytes. The object hands out an offset and a length (VIOMMU_ALLOC's
 * out_mmap_offset/length); an offset is the owner's object ID shifted by
 * IOMMUFD_MMAP_ID_SHIFT, so it names the owner without a table of its own and two live
 * objects never share one (an ID is not reused while its object lives).
 *
 * uiommu_mmap() applies the kernel's rules, in its order: a zero length or an offset off a
 * page is EINVAL (mmap(2)'s own checks), the mapping must be MAP_SHARED (EINVAL) and not
 * executable (EPERM), and offset and length (rounded up to pages) must be exactly a live
 * region's (ENXIO). It then maps the region's memfd where the program asked, and records the
 * mapping (struct iommufd_mmap). As the kernel's VMA does, a live mapping holds a users
 * reference on its owner (IOMMU_DESTROY of it answers EBUSY until the munmap) and a reference
 * on the context's file (closing the fd does not free the context under the mapping).
 *
 * uiommu_munmap() unmaps, then forgets the pages of every recorded mapping inside the range;
 * a mapping whose last page is gone drops its references. A partial munmap leaves the rest
 * recorded, as a split VMA keeps its reference. A record keeps where each page is mapped now:
 * uiommu_mremap() moves them (a region's mapping does not grow: EFAULT, as the kernel's
 * VM_DONTEXPAND), and forgets the ones it shrinks away or replaces. uiommu_mmap() with
 * MAP_FIXED over one of our mappings forgets the pages it replaces the same way, and so does
 * the program's own mmap(MAP_FIXED) of anonymous memory or another file over one
 * (uiommu_mmap_fixed(): the preload layer sends those that meet a mapping of ours here), over
 * the range the kernel replaces (a hugetlb mapping's length rounded up to its huge page). A
 * MAP_FIXED mapping that fails may have unmapped the range all the same (the kernel clears
 * the old pages before the new mapping's file or reservation can fail): mincore(), asked only
 * on that failure path, tells which recorded pages are gone, and those are forgotten.
 *
 * A layer above whose sub-fds map on their own (VFIO's BAR areas) registers as the mmap owner
 * (iommufd_mmap_owner_register()): uiommu_mmap_claims() also asks it, and uiommu_munmap() lets
 * it unmap a range that touches its mappings, so it can forget them in the same step (it maps
 * over them later to revoke them, and must never do that to memory that is no longer its own).
 *
 * Another process's mapping (remote.c, WIRE_MMAP) is held here as the kernel's VMA holds its
 * owner: the serving side keeps a hold (struct iommufd_mmap_hold: the owner's users reference,
 * the context's file, a random secret) per mapping, tagged with the client that asked
 * (the holder, an opaque pointer of remote.c's), and answers EBUSY to the owner's destroy until
 * the hold goes. The mapping side records it in the same list as its own mappings (owner NULL,
 * the server and the hold's name instead), so its munmap forgets the pages in the same way, and
 * the mapping's last page going sends WIRE_MUNMAP. A holder's holds all go with its last
 * connection (the client died, exec'd, or every connection broke) or when the server forgets
 * it. A fork copies the mappings: before fork() returns in the parent, the child asks for a
 * copy of each hold (WIRE_MMAP_FORK, the secret shows it comes from a holder of the hold), as
 * the kernel's vm_ops->open raises the owner's users for the child's VMA; the parent waits for
 * it (iommufd_mmap_atfork_*()), and a MUNMAP of the parent's other threads waits for that
 * (iommufd_mmap_forks_wait()), so no munmap of the parent's can overtake it. The serving
 * process's own mappings are copied by a fork too, and the child, a client of its parent's
 * server from then on, holds them there: the fork's prepare makes a hold of each owner at our
 * own server for the child (pending), which the child takes over with the same WIRE_MMAP_FORK
 * (its record keeps the owner's copy, marked copy, and the hold); what it does not take goes
 * when the server thread sees the child's end of the fork's socketpair close.
 *
 * The library maps and unmaps with raw syscalls: its own mmap()/munmap() calls would come back
 * through the preload layer.
 *
 * Locking: mmap_lock (a leaf) protects the list of mappings, the list of holds, the next
 * hold's ID and the forks' holds for their children (fork_list). References are dropped
 * outside it.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <linux/magic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"

#define IOMMUFD_MMAP_MAX_PAGES 64u /* the pages of one mapping */

struct iommufd_mmap {
	struct iommufd_mmap *next;    /* mmap_list; mmap_lock */
	/*
	 * Where each page of the region is mapped now (0: unmapped): an mremap moves pages, a
	 * munmap ends them. mmap_lock
	 */
	uintptr_t page[IOMMUFD_MMAP_MAX_PAGES];
	unsigned int npages;          /* constant */
	unsigned int live;            /* pages mapped; mmap_lock */
	struct iommufd_object *owner; /* a users reference; NULL: another process's region */
	struct iommufd_ctx *ictx;     /* its file: a reference (owner set) */
	/* The region's server (owner NULL; a fork's copy: the parent's, once it holds there) */
	struct iommufd_server *server;
	struct wire_hold hold;        /* our hold there (id 0: none); mmap_lock */
	/*
	 * A forked child's copy of its parent's own mapping: the owner is the child's copy of
	 * the object, which nobody serves; what holds the parent's is the hold at the parent's
	 * server. Set in the child's fork handler.
	 */
	bool copy;
	struct wire_hold fork; /* a fork in progress: the hold made for its child; mmap_lock */
};

/* The serving side's record of another process's mapping of a region (see the essay). */
struct iommufd_mmap_hold {
	struct iommufd_mmap_hold *next; /* hold_list; mmap_lock */
	/* The client (remote.c's); NULL: a forked server's copy; a fork's (pending): mmap_lock */
	const void *holder;
	bool pending;                   /* made by a fork for its child to take over; mmap_lock */
	struct wire_hold name;          /* constant */
	struct iommufd_object *owner;   /* a users reference */
	struct iommufd_ctx *ictx;       /* its file: a reference */
};

/* Protects mmap_list, hold_list, hold_next, fork_list and fork_next; a leaf. */
UIOMMU_MUTEX_DEFINE(mmap_lock);
/*
 * Forks waiting for their child's copies of our remote holds (mmap_lock). A MUNMAP of ours
 * waits for them (mmap_forks_done): one sent first would drop a hold the child has yet to copy.
 */
static unsigned int mmap_forks;
static struct uiommu_cond mmap_forks_done = { .c = PTHREAD_COND_INITIALIZER };
static struct iommufd_mmap *mmap_list;
static atomic_long mmap_count; /* entries of mmap_list: a lock-free "none" for the preload */
static struct iommufd_mmap_hold *hold_list;
static uint64_t hold_next = 1; /* 0 names no hold */

/*
 * A fork of a process with mappings of its own regions: the holds it made for its child
 * (pending, holder: this) wait for the child to take them over (WIRE_MMAP_FORK) until the
 * child's end of a socketpair closes, which the server thread sees on @fd.
 */
struct iommufd_mmap_fork {
	struct iommufd_mmap_fork *next; /* fork_list; mmap_lock */
	uint64_t id;                    /* constant */
	int fd;                         /* our end, watched by the server thread; constant */
};

static struct iommufd_mmap_fork *fork_list; /* mmap_lock */
/*
 * Held by whoever ends forks (iommufd_mmap_fork_gone(), iommufd_mmap_forks_settle()) from the
 * unlink to the drop of their holds: a settle that finds a fork already unlinked by the server
 * thread waits for its holds to be gone before it answers. Before mmap_lock and every lock a
 * hold's drop takes (a context's release).
 */
UIOMMU_MUTEX_DEFINE(fork_end_lock);
static uint64_t fork_next = 1;              /* mmap_lock */
/* This thread's fork in progress (prepare to the handlers), and the child's end of its pair. */
static __thread struct iommufd_mmap_fork *mmap_fork_own;
static __thread int mmap_fork_child_end = -1;

/**
 * iommufd_mmap_region_alloc() - a shared region of @len bytes (whole pages, at most 64)
 * Return: 0 with *@fdp (the memfd) and *@mapp (our own shared mapping of it, zeroed), or
 * -ENOMEM / the failing call's errno. Free with iommufd_mmap_region_free().
 */
int iommufd_mmap_region_alloc(size_t len, int *fdp, void **mapp)
{
	void *map;
	int fd, rc;

	if (WARN_ON(!len || len % uiommu_page_size ||
		    len / uiommu_page_size > IOMMUFD_MMAP_MAX_PAGES))
		return -EINVAL;
	fd = uiommu_should_fail() ? -1 : sys_memfd_create("uiommu-mmap-region", MFD_CLOEXEC);
	if (fd < 0)
		return errno && fd != -1 ? -errno : -ENOMEM;
	uiommu_fd_keep(fd);
	if (uiommu_should_fail() || ftruncate(fd, (off_t)len)) {
		rc = -ENOMEM;
		goto err_close;
	}
	map = uiommu_should_fail() ? MAP_FAILED :
				     sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -ENOMEM;
		goto err_close;
	}
	*fdp = fd;
	*mapp = map;
	return 0;

err_close:
	sys_close(fd);
	return rc;
}

void iommufd_mmap_region_free(int fd, void *map, size_t len)
{
	sys_munmap(map, len);
	sys_close(fd);
}

static void *iommufd_mmap_ret(int rc)
{
	errno = -rc;
	return MAP_FAILED;
}

/* The region behind @off: its owner held for the caller (iommufd_put_object()), memfd, length. */
static struct iommufd_object *iommufd_mmap_region_find(struct iommufd_ctx *ictx, uint64_t off,
						       int *fdp, size_t *lenp)
{
	struct iommufd_viommu *viommu;
	struct iommufd_object *obj;

	if (off & ((1ull << IOMMUFD_MMAP_ID_SHIFT) - 1) ||
	    (off >> IOMMUFD_MMAP_ID_SHIFT) > IOMMUFD_ID_LIMIT)
		return ERR_PTR(-ENXIO);
	obj = iommufd_get_object(ictx, (uint32_t)(off >> IOMMUFD_MMAP_ID_SHIFT),
				 IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(obj))
		return ERR_PTR(-ENXIO);
	viommu = container_of(obj, struct iommufd_viommu, obj);
	if (!viommu->region) {
		iommufd_put_object(ictx, obj);
		return ERR_PTR(-ENXIO);
	}
	*fdp = viommu->region_fd;
	*lenp = viommu->region_len;
	return obj;
}

/* Page @i of @m is gone (mmap_lock). */
static void iommufd_mmap_page_gone(struct iommufd_mmap *m, unsigned int i)
{
	if (m->page[i]) {
		m->page[i] = 0;
		m->live--;
	}
}

/* Unlinks the recorded mappings without a page left onto *@dead (mmap_lock). */
static void iommufd_mmap_reap(struct iommufd_mmap **dead)
{
	struct iommufd_mmap **pos, *m;

	for (pos = &mmap_list; (m = *pos);) {
		if (m->live) {
			pos = &m->next;
			continue;
		}
		*pos = m->next;
		m->next = *dead;
		*dead = m;
		atomic_fetch_sub_explicit(&mmap_count, 1, memory_order_relaxed);
	}
}

/* Drops what emptied mappings held (outside mmap_lock). */
/*
 * Until no fork of ours is waiting for its child's copies: the child names our holds to copy
 * them (the kernel's fork copies the VMAs under the parent's mmap lock: no munmap between).
 */
static void iommufd_mmap_forks_wait(void)
{
	uiommu_mutex_lock(&mmap_lock);
	while (mmap_forks)
		uiommu_cond_wait(&mmap_forks_done, &mmap_lock);
	uiommu_mutex_unlock(&mmap_lock);
}

static void iommufd_mmap_put(struct iommufd_mmap *dead)
{
	struct iommufd_mmap *m;

	while ((m = dead)) {
		dead = m->next;
		/* The last page of a region another process serves (our parent's, for a copy). */
		if (m->hold.id) {
			iommufd_mmap_forks_wait();
			iommufd_remote_munmap(m->server, m->hold.id);
		}
		/* Pairs with the references taken in uiommu_mmap(). */
		if (m->owner) {
			iommufd_object_unref_users(m->owner);
			iommufd_ctx_file_put(m->ictx);
		}
		uiommu_free(m);
	}
}

/* Forgets the pages in [addr, addr + len) of every recorded mapping; drops emptied ones. */
static void iommufd_mmap_forget(uintptr_t addr, size_t len)
{
	struct iommufd_mmap *dead = NULL, *m;

	if (!atomic_load_explicit(&mmap_count, memory_order_acquire))
		return;
	uiommu_mutex_lock(&mmap_lock);
	for (m = mmap_list; m; m = m->next)
		for (unsigned int i = 0; i < m->npages; i++)
			if (m->page[i] - addr < len)
				iommufd_mmap_page_gone(m, i);
	iommufd_mmap_reap(&dead);
	uiommu_mutex_unlock(&mmap_lock);
	iommufd_mmap_put(dead);
}

/* Records @m, mapped at @p for @len bytes (whole pages). */
static void iommufd_mmap_insert(struct iommufd_mmap *m, void *p, size_t len)
{
	m->npages = m->live = (unsigned int)(len / uiommu_page_size);
	for (unsigned int i = 0; i < m->npages; i++)
		m->page[i] = (uintptr_t)p + i * uiommu_page_size;
	uiommu_mutex_lock(&mmap_lock);
	m->next = mmap_list;
	mmap_list = m;
	atomic_fetch_add_explicit(&mmap_count, 1, memory_order_release);
	uiommu_mutex_unlock(&mmap_lock);
}

/**
 * iommufd_mmap_remote_note() - record our mapping at @p of @len bytes of a region another
 * process serves, held there by @hold (its WIRE_MMAP's answer)
 * Pages of ours it replaced (MAP_FIXED) are forgotten first. Its munmap drops the hold.
 * Return: 0, or -ENOMEM (nothing recorded: the caller unmaps and lets the hold go).
 */
int iommufd_mmap_remote_note(void *p, size_t len, struct iommufd_server *server,
			     const struct wire_hold *hold)
{
	struct iommufd_mmap *m;

	len = (len + uiommu_page_size - 1) & ~(uiommu_page_size - 1);
	if (WARN_ON(!len || len / uiommu_page_size > IOMMUFD_MMAP_MAX_PAGES))
		return -EINVAL;
	m = uiommu_zalloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	/* Before it is listed: a fork from now on copies its hold in this spare (remote.c). */
	iommufd_remote_spare_make(server);
	iommufd_mmap_forget((uintptr_t)p, len);
	m->server = server;
	m->hold = *hold;
	iommufd_mmap_insert(m, p, len);
	return 0;
}

/* mmap(2)'s own checks, then the region's rules: EINVAL, EPERM (executable), or 0. */
static int iommufd_mmap_check(size_t len, int prot, int flags, off_t off)
{
	if (!len || off < 0 || (uint64_t)off % uiommu_page_size)
		return -EINVAL;
	if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
		return -EINVAL;
	if (prot & PROT_EXEC)
		return -EPERM;
	return 0;
}

/* A hold of @owner for @holder, not yet listed (iommufd_mmap_hold_link()); NULL: no memory. */
static struct iommufd_mmap_hold *iommufd_mmap_hold_alloc(struct iommufd_ctx *ictx,
							  struct iommufd_object *owner,
							  const void *holder)
{
	struct iommufd_mmap_hold *h = uiommu_zalloc(sizeof(*h));

	if (!h)
		return NULL;
	h->holder = holder;
	iommufd_secret_new(h->name.secret);
	h->owner = owner;
	h->ictx = ictx;
	/* Pair with the puts in iommufd_mmap_holds_put(). */
	iommufd_object_ref_users(owner);
	iommufd_ctx_file_get(ictx);
	return h;
}

/* Lists @h under its ID, named in *@name (mmap_lock). */
static void iommufd_mmap_hold_link(struct iommufd_mmap_hold *h, struct wire_hold *name)
{
	lockdep_assert_held(&mmap_lock);
	h->name.id = hold_next++;
	h->next = hold_list;
	hold_list = h;
	*name = h->name;
}

/*
 * A new hold of @owner (held by the caller) for the client @holder, named in *@name; takes
 * mmap_lock. NULL: no memory, or @holder is gone (a call of a dead client that was still
 * running: its mapping would never exist, as its VMAs are gone with it).
 */
static struct iommufd_mmap_hold *iommufd_mmap_hold_new(struct iommufd_ctx *ictx,
							struct iommufd_object *owner,
							const void *holder, struct wire_hold *name)
{
	struct iommufd_mmap_hold *h = iommufd_mmap_hold_alloc(ictx, owner, holder);
	bool gone;

	if (!h)
		return NULL;
	uiommu_mutex_lock(&mmap_lock);
	gone = iommufd_remote_holder_gone(holder);
	if (!gone)
		iommufd_mmap_hold_link(h, name);
	uiommu_mutex_unlock(&mmap_lock);
	if (gone) {
		iommufd_mmap_holds_put(h);
		return NULL;
	}
	return h;
}

/**
 * iommufd_mmap_region_dup() - for another process's mmap(2) of @ictx's fd: the same checks as
 * uiommu_mmap(), then a copy of the region's memfd (O_CLOEXEC), which it maps at offset 0,
 * and a hold of the region's owner for @holder (named in *@hold), which answers EBUSY to its
 * destroy until iommufd_mmap_hold_drop() or the holder's end (iommufd_mmap_holds_take()).
 * Return: the fd, or -EINVAL / -EPERM / -ENXIO / -EMFILE / -ENOMEM (nothing held).
 */
int iommufd_mmap_region_dup(struct iommufd_ctx *ictx, size_t len, int prot, int flags,
			    off_t off, const void *holder, struct wire_hold *hold)
{
	struct iommufd_object *owner;
	struct iommufd_mmap_hold *h;
	size_t region_len;
	int region_fd, rc;

	rc = iommufd_mmap_check(len, prot, flags, off);
	if (rc)
		return rc;
	owner = iommufd_mmap_region_find(ictx, (uint64_t)off, &region_fd, &region_len);
	if (IS_ERR(owner))
		return PTR_ERR(owner);
	if ((len + uiommu_page_size - 1) / uiommu_page_size * uiommu_page_size != region_len) {
		rc = -ENXIO;
		goto out_put_owner;
	}
	if (uiommu_should_fail())
		rc = -EMFILE;
	else if ((rc = sys_fcntl(region_fd, F_DUPFD_CLOEXEC, 0)) < 0)
		rc = -EMFILE;
	if (rc < 0)
		goto out_put_owner;
	h = iommufd_mmap_hold_new(ictx, owner, holder, hold);
	if (!h) {
		sys_close(rc);
		rc = -ENOMEM;
	}
out_put_owner:
	iommufd_put_object(ictx, owner);
	return rc;
}

/**
 * iommufd_mmap_hold_copy() - a forked child's copy of a mapping: a new hold for @holder of
 * the owner that the hold @from names (its secret must match), named in *@to; a hold that a
 * fork of ours made for its child (pending) is @holder's from now on instead, with a new secret
 * Return: 0, -ENOENT (no such hold), -ENOMEM.
 */
int iommufd_mmap_hold_copy(const void *holder, const struct wire_hold *from, struct wire_hold *to)
{
	struct iommufd_object *owner = NULL;
	struct iommufd_ctx *ictx = NULL;
	struct iommufd_mmap_hold *h;
	uint8_t diff;
	int rc = 0;

	uiommu_mutex_lock(&mmap_lock);
	for (h = hold_list; h; h = h->next) {
		if (h->name.id != from->id || !h->holder)
			continue;
		diff = 0;
		for (unsigned int i = 0; i < WIRE_SECRET_LEN; i++)
			diff |= h->name.secret[i] ^ from->secret[i];
		if (diff)
			break;
		/* A gone client takes nothing over: the fork's end drops it (fork_gone). */
		if (h->pending && iommufd_remote_holder_gone(holder))
			break;
		if (h->pending) {
			h->pending = false;
			h->holder = holder;
			iommufd_secret_new(h->name.secret);
			*to = h->name;
			uiommu_mutex_unlock(&mmap_lock);
			return 0;
		}
		/* The hold's references keep both while we make the copy's own. */
		owner = h->owner;
		ictx = h->ictx;
		iommufd_object_ref_users(owner);
		iommufd_ctx_file_get(ictx);
		break;
	}
	uiommu_mutex_unlock(&mmap_lock);
	if (!owner)
		return -ENOENT;
	if (!iommufd_mmap_hold_new(ictx, owner, holder, to))
		rc = -ENOMEM;
	iommufd_object_unref_users(owner);
	iommufd_ctx_file_put(ictx);
	return rc;
}

/* Unlinks @holder's hold @id (0: all of its holds) onto a list for iommufd_mmap_holds_put(). */
static struct iommufd_mmap_hold *iommufd_mmap_holds_unlink(const void *holder, uint64_t id)
{
	struct iommufd_mmap_hold *dead = NULL, **pos, *h;

	uiommu_mutex_lock(&mmap_lock);
	for (pos = &hold_list; (h = *pos);) {
		if (h->holder != holder || (id && h->name.id != id)) {
			pos = &h->next;
			continue;
		}
		*pos = h->next;
		h->next = dead;
		dead = h;
		if (id)
			break;
	}
	uiommu_mutex_unlock(&mmap_lock);
	return dead;
}

/**
 * iommufd_mmap_hold_drop() - @holder's mapping that @id holds is gone (WIRE_MUNMAP)
 * Return: 0, or -ENOENT (no such hold of @holder's).
 */
int iommufd_mmap_hold_drop(const void *holder, uint64_t id)
{
	struct iommufd_mmap_hold *dead;

	if (!id || !holder)
		return -ENOENT;
	dead = iommufd_mmap_holds_unlink(holder, id);
	if (!dead)
		return -ENOENT;
	iommufd_mmap_holds_put(dead);
	return 0;
}

/**
 * iommufd_mmap_holds_take() - every hold of @holder (it is gone), unlinked: the caller drops
 * them with iommufd_mmap_holds_put() outside its own locks (a put may free the context). Takes
 * mmap_lock, a leaf: callable under remote.c's clients_lock.
 */
struct iommufd_mmap_hold *iommufd_mmap_holds_take(const void *holder)
{
	return holder ? iommufd_mmap_holds_unlink(holder, 0) : NULL;
}

void iommufd_mmap_holds_put(struct iommufd_mmap_hold *dead)
{
	struct iommufd_mmap_hold *h;

	while ((h = dead)) {
		dead = h->next;
		/* Pairs with the references taken in iommufd_mmap_hold_new(). */
		iommufd_object_unref_users(h->owner);
		iommufd_ctx_file_put(h->ictx);
		uiommu_free(h);
	}
}

/*
 * Fork. A forked server serves none of its parent's clients: their holds stay in its copy,
 * named by nobody (holder NULL), as the objects they hold are copies it never serves. A
 * forked client's mappings are its own: its copy of each hold is asked for before fork()
 * returns in the parent (see the essay), with a socketpair whose EOF says the child is done.
 * The pair is the forking thread's: two threads may fork at once, and one's prepare runs while
 * the other's parent handler waits (mmap_lock is let go before the wait).
 *
 * The serving process's own mappings are copied too: the child is a client of its parent's
 * server from then on, and the kernel's copied VMA holds the owner. So the prepare makes, for
 * each, a hold at our own server that the child takes over (WIRE_MMAP_FORK, after its copies
 * of remote holds, so that a parent waiting for those never waits for its own server): it
 * holds from before the fork, and the parent waits for nothing (its own server thread, which
 * answers the child, may need a lock that another library's prepare took for the fork). The
 * holds the child did not take (it died first, its call failed, fork() failed) go when the
 * server thread sees the child's end of the fork's socketpair close
 * (iommufd_mmap_fork_gone()).
 */
static __thread int mmap_fork_wait[2] = { -1, -1 };

/*
 * A fork's holds for its child of our own mappings (mmap_lock): a socketpair whose other end
 * the child closes when it took them over, watched by our server thread, and a pending hold
 * per mapping (named in its fork). Nothing of it when we serve nothing (no server thread to
 * see the close); a hold not made leaves the child's copy of that mapping unheld.
 */
static void iommufd_mmap_fork_prepare(void)
{
	struct iommufd_mmap_fork *f;
	struct iommufd_mmap_hold *h;
	int sv[2];

	lockdep_assert_held(&mmap_lock);
	f = uiommu_zalloc(sizeof(*f));
	if (!f)
		return;
	if (uiommu_should_fail() || sys_socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		goto err_free;
	f->id = fork_next++;
	f->fd = sv[0];
	/* A hand-over's next server watches it too: it keeps the holds. */
	uiommu_fd_keep(sv[0]);
	if (iommufd_server_watch(sv[0], WIRE_WATCH_FORK | f->id, false))
		goto err_close;
	for (struct iommufd_mmap *m = mmap_list; m; m = m->next) {
		if (!m->owner || m->copy || !m->live)
			continue;
		h = iommufd_mmap_hold_alloc(m->ictx, m->owner, f);
		if (!h)
			continue;
		h->pending = true;
		iommufd_mmap_hold_link(h, &m->fork);
	}
	f->next = fork_list;
	fork_list = f;
	mmap_fork_own = f;
	mmap_fork_child_end = sv[1];
	return;

err_close:
	sys_close(sv[0]);
	sys_close(sv[1]);
err_free:
	uiommu_free(f);
}

static void iommufd_mmap_fork_end(struct iommufd_mmap_fork *f);

/*
 * The child of fork @id is done with it (the server thread saw its end close): the holds it
 * did not take over go.
 */
void iommufd_mmap_fork_gone(uint64_t id)
{
	struct iommufd_mmap_fork **pos, *f;

	uiommu_mutex_lock(&fork_end_lock);
	uiommu_mutex_lock(&mmap_lock);
	for (pos = &fork_list; (f = *pos) && f->id != id; pos = &f->next)
		;
	if (f)
		*pos = f->next;
	uiommu_mutex_unlock(&mmap_lock);
	if (f)
		iommufd_mmap_fork_end(f);
	uiommu_mutex_unlock(&fork_end_lock);
}

/**
 * iommufd_mmap_forks_settle() - the forks whose child is done with them (its end of the pair
 * hung up: it exited, was killed or exec'd before it took its holds over) drop what it did not
 * take, now rather than when the server thread sees it. One poll() per fork waiting; none when
 * no fork is. Each fork ends once: whoever unlinks it ends it, and an end under way in the
 * server thread is done when this returns (fork_end_lock).
 */
void iommufd_mmap_forks_settle(void)
{
	struct iommufd_mmap_fork **pos, *f, *done = NULL;

	uiommu_mutex_lock(&fork_end_lock);
	uiommu_mutex_lock(&mmap_lock);
	/* Under the lock: an end closes its fd only once it unlinked it, so the numbers hold. */
	for (pos = &fork_list; (f = *pos);) {
		struct pollfd p = { .fd = f->fd, .events = POLLRDHUP };

		if (uiommu_should_fail() || sys_poll_now(&p) != 1 ||
		    !(p.revents & (POLLHUP | POLLRDHUP))) {
			pos = &f->next;
			continue;
		}
		*pos = f->next;
		f->next = done;
		done = f;
	}
	uiommu_mutex_unlock(&mmap_lock);
	while ((f = done)) {
		done = f->next;
		iommufd_mmap_fork_end(f);
	}
	uiommu_mutex_unlock(&fork_end_lock);
}

/* Fork @f, unlinked from fork_list, is over: its fd and the holds its child did not take go. */
static void iommufd_mmap_fork_end(struct iommufd_mmap_fork *f)
{
	/*
	 * A later fork's child may still have a copy of the fd, which keeps the socket, and our
	 * watch of it, alive past our close: the watch goes first.
	 */
	iommufd_server_unwatch(f->fd);
	sys_close(f->fd);
	/* f names the holds until they are unlinked: freed after. */
	iommufd_mmap_holds_put(iommufd_mmap_holds_unlink(f, 0));
	uiommu_free(f);
}

/*
 * A hand-over's next server, once the exec succeeded: every mapping recorded was the exec'ing
 * image's and went with it, as the kernel's exec drops the old mm's VMAs, so their holds go:
 * those of our own regions here; those at other servers went with that image's connections
 * (close-on-exec), so no MUNMAP is sent for them.
 */
void iommufd_mmap_handover_forget(void)
{
	struct iommufd_mmap *dead;

	uiommu_mutex_lock(&mmap_lock);
	dead = mmap_list;
	mmap_list = NULL;
	atomic_store_explicit(&mmap_count, 0, memory_order_relaxed);
	for (struct iommufd_mmap *m = dead; m; m = m->next)
		memset(&m->hold, 0, sizeof(m->hold));
	uiommu_mutex_unlock(&mmap_lock);
	iommufd_mmap_put(dead);
}

/* A hand-over's next server: its new epoll set watches the forks whose children it waits for. */
void iommufd_mmap_forks_rewatch(void)
{
	uiommu_mutex_lock(&mmap_lock);
	for (struct iommufd_mmap_fork *f = fork_list; f; f = f->next)
		iommufd_server_watch(f->fd, WIRE_WATCH_FORK | f->id, false);
	uiommu_mutex_unlock(&mmap_lock);
}

/*
 * Will a fork's child connect to a server for its holds: have we a mapping that holds another
 * process's region (the child copies the hold there), or a live one of our own (the child
 * takes its pending hold over at our server)?
 */
bool iommufd_mmap_fork_connects(void)
{
	bool remote = false;

	if (!atomic_load_explicit(&mmap_count, memory_order_acquire))
		return false;
	uiommu_mutex_lock(&mmap_lock);
	for (struct iommufd_mmap *m = mmap_list; m && !remote; m = m->next)
		remote = m->hold.id || (m->owner && !m->copy && m->live);
	uiommu_mutex_unlock(&mmap_lock);
	return remote;
}

/* After remote.c's own prepare: mmap_lock is a leaf. @handover: a hand-over's fork. */
void iommufd_mmap_atfork_prepare(bool handover)
{
	bool remote = false, own = false;

	uiommu_mutex_lock(&mmap_lock);
	for (struct iommufd_mmap *m = mmap_list; m; m = m->next) {
		remote |= m->hold.id != 0;
		own |= m->owner && !m->copy;
	}
	/* Without it the child's copies are asked for, only not waited for. */
	if (remote && !handover &&
	    sys_socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, mmap_fork_wait))
		mmap_fork_wait[0] = mmap_fork_wait[1] = -1;
	if (mmap_fork_wait[0] >= 0)
		mmap_forks++;
	if (own && !handover)
		iommufd_mmap_fork_prepare();
}

void iommufd_mmap_atfork_parent(void)
{
	char c;

	/*
	 * Our write end goes before mmap_lock does: a fork that another thread's prepare lets
	 * through next would copy it, and our wait would last as long as that child. So does the
	 * child's end of our own holds' pair, and their names (the child has its copies).
	 */
	if (mmap_fork_wait[0] >= 0)
		sys_close(mmap_fork_wait[1]);
	if (mmap_fork_own) {
		sys_close(mmap_fork_child_end);
		for (struct iommufd_mmap *m = mmap_list; m; m = m->next)
			memset(&m->fork, 0, sizeof(m->fork));
		mmap_fork_own = NULL;
		mmap_fork_child_end = -1;
	}
	uiommu_mutex_unlock(&mmap_lock);
	if (mmap_fork_wait[0] < 0)
		return;
	/* EOF: the child asked for its copies (or died, or fork() failed: no child). */
	while (sys_recv(mmap_fork_wait[0], &c, 1, 0) < 0 && errno == EINTR)
		;
	sys_close(mmap_fork_wait[0]);
	mmap_fork_wait[0] = mmap_fork_wait[1] = -1;
	uiommu_mutex_lock(&mmap_lock);
	if (!--mmap_forks)
		uiommu_cond_broadcast(&mmap_forks_done);
	uiommu_mutex_unlock(&mmap_lock);
}

/* Unlocks; remote.c calls iommufd_mmap_atfork_child_hold() once it can make calls again. */
void iommufd_mmap_atfork_child(bool handover)
{
	struct iommufd_mmap_fork *f;

	/* The parent's waiting forks (and their waiters) are not ours. */
	mmap_forks = 0;
	uiommu_cond_init(&mmap_forks_done);
	/* Another thread may have been ending a fork: none of the child's is. */
	uiommu_mutex_init(&fork_end_lock);
	uiommu_mutex_unlock(&mmap_lock);
	if (handover)
		return;
	for (struct iommufd_mmap_hold *h = hold_list; h; h = h->next) {
		h->holder = NULL;
		h->pending = false;
	}
	/* The parent's forks in flight are its server's to finish: our copies of their fds go. */
	while ((f = fork_list)) {
		fork_list = f->next;
		sys_close(f->fd);
		/* No allocator call in a fork handler (remote.c's remote_atfork_child()). */
		uiommu_free_after_fork(f);
	}
}

/* @parent: the server of the process that forked us (NULL: it served nothing). */
void iommufd_mmap_atfork_child_hold(struct iommufd_server *parent)
{
	int saved = errno;

	if (mmap_fork_wait[0] >= 0)
		sys_close(mmap_fork_wait[0]);
	/* Single-threaded: the list cannot change under the calls. */
	for (struct iommufd_mmap *m = mmap_list; m; m = m->next) {
		struct wire_hold copy;

		if (!m->hold.id)
			continue;
		/* A copy not had leaves our mapping unheld (docs/processes.md). */
		if (iommufd_remote_mmap_fork(m->server, &m->hold, &copy))
			memset(&m->hold, 0, sizeof(m->hold));
		else
			m->hold = copy;
	}
	if (mmap_fork_wait[1] >= 0)
		sys_close(mmap_fork_wait[1]);
	mmap_fork_wait[0] = mmap_fork_wait[1] = -1;
	/*
	 * Our copies of the parent's own mappings: we are its client now, and take over the
	 * holds it made for us (the parent waits for none of this).
	 */
	for (struct iommufd_mmap *m = mmap_list; m; m = m->next) {
		struct wire_hold mine;

		if (!m->owner || m->copy)
			continue;
		m->copy = true;
		if (m->fork.id && parent && !iommufd_remote_mmap_fork(parent, &m->fork, &mine)) {
			m->server = parent;
			m->hold = mine;
		}
		memset(&m->fork, 0, sizeof(m->fork));
	}
	if (mmap_fork_child_end >= 0)
		sys_close(mmap_fork_child_end);
	mmap_fork_own = NULL;
	mmap_fork_child_end = -1;
	errno = saved;
}

UIOMMU_EXPORT void *uiommu_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct iommufd_object *owner;
	struct iommufd_ctx *ictx;
	struct iommufd_mmap *m;
	size_t region_len;
	int region_fd, rc;
	void *p;

	/* A sub-fd that maps on its own (the VFIO device fd's BAR areas). */
	if (off >= 0 && iommufd_subfd_mmap(fd, addr, len, prot, flags, (uint64_t)off, &p))
		return p;
	ictx = iommufd_ctx_from_fd(fd);
	/* One of our other files (an access, event or dma-buf fd) has nothing to map: ENODEV. */
	if (IS_ERR(ictx))
		return iommufd_mmap_ret(PTR_ERR(ictx) == -EBADFD ? -ENODEV : PTR_ERR(ictx));
	rc = iommufd_mmap_check(len, prot, flags, off);
	if (rc)
		goto out_put_file;
	owner = iommufd_mmap_region_find(ictx, (uint64_t)off, &region_fd, &region_len);
	if (IS_ERR(owner)) {
		rc = PTR_ERR(owner);
		goto out_put_file;
	}
	if ((len + uiommu_page_size - 1) / uiommu_page_size * uiommu_page_size != region_len) {
		rc = -ENXIO;
		goto out_put_owner;
	}
	m = uiommu_zalloc(sizeof(*m));
	if (!m) {
		rc = -ENOMEM;
		goto out_put_owner;
	}
	p = uiommu_should_fail() ? (errno = ENOMEM, MAP_FAILED) :
				   sys_mmap(addr, len, prot, flags, region_fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		if (flags & MAP_FIXED)
			iommufd_mmap_fixed_failed(addr, region_len);
		goto err_free;
	}
	/* MAP_FIXED may have replaced pages of ours. */
	iommufd_mmap_forget((uintptr_t)p, region_len);
	m->owner = owner;
	m->ictx = ictx;
	/* Pair with the puts in iommufd_mmap_forget(). */
	iommufd_object_ref_users(owner);
	iommufd_ctx_file_get(ictx);
	iommufd_mmap_insert(m, p, region_len);
	iommufd_put_object(ictx, owner);
	iommufd_ctx_file_put(ictx);
	return p;

err_free:
	uiommu_free(m);
out_put_owner:
	iommufd_put_object(ictx, owner);
out_put_file:
	iommufd_ctx_file_put(ictx);
	return iommufd_mmap_ret(rc);
}

/* The layer above that maps on its own (iommufd_mmap_owner_register()); set once. */
static _Atomic(const struct iommufd_mmap_owner *) mmap_owner;

int iommufd_mmap_owner_register(const struct iommufd_mmap_owner *owner)
{
	const struct iommufd_mmap_owner *none = NULL;

	if (!atomic_compare_exchange_strong(&mmap_owner, &none, owner) && none != owner)
		return -EBUSY;
	return 0;
}

bool iommufd_mmap_owner_claims(uintptr_t start, uintptr_t end)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);

	return owner && owner->claims(start, end);
}

UIOMMU_EXPORT int uiommu_munmap(void *addr, size_t len)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);
	int rc;

	if (owner && owner->claims((uintptr_t)addr, (uintptr_t)addr + len)) {
		rc = owner->munmap(addr, len); /* unmaps all of it, and forgets its own */
		if (rc) {
			errno = -rc;
			return -1;
		}
	} else if (sys_munmap(addr, len)) {
		return -1;
	}
	iommufd_mmap_forget((uintptr_t)addr, (len + uiommu_page_size - 1) & ~(uiommu_page_size - 1));
	return 0;
}

/*
 * The pages of [@old, @old + @old_len) moved to @new (an mremap): those past @new_len are gone;
 * pages of ours that were at the new place and did not move were replaced.
 */
static void iommufd_mmap_moved(uintptr_t old, size_t old_len, uintptr_t new, size_t new_len)
{
	struct iommufd_mmap *dead = NULL, *m;

	uiommu_mutex_lock(&mmap_lock);
	for (m = mmap_list; m; m = m->next) {
		for (unsigned int i = 0; i < m->npages; i++) {
			uintptr_t a = m->page[i];

			if (a && a - old < old_len && a - old < new_len)
				m->page[i] = new + (a - old);
			else if (a && (a - old < old_len || a - new < new_len))
				iommufd_mmap_page_gone(m, i);
		}
	}
	iommufd_mmap_reap(&dead);
	uiommu_mutex_unlock(&mmap_lock);
	iommufd_mmap_put(dead);
}

UIOMMU_EXPORT void *uiommu_mremap(void *old, size_t old_len, size_t new_len, int flags,
				  void *new_addr)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);
	uintptr_t o = (uintptr_t)old;
	void *p;

	/* The owner's mappings are its own (as before it registered). */
	if (owner && owner->claims(o, o + (old_len ? old_len : 1)))
		return sys_mremap(old, old_len, new_len, flags, new_addr);
	/*
	 * A region's mapping is the kernel's VM_DONTEXPAND (io_remap_pfn_range()): no growing,
	 * and no MREMAP_DONTUNMAP (its check refuses such a VMA).
	 */
	if (uiommu_mmap_claims(old, old_len ? old_len : 1) &&
	    (new_len > old_len || (flags & MREMAP_DONTUNMAP))) {
		errno = flags & MREMAP_DONTUNMAP ? EINVAL : EFAULT; /* the kernel's order */
		return MAP_FAILED;
	}
	p = sys_mremap(old, old_len, new_len, flags, new_addr);
	if (p != MAP_FAILED)
		iommufd_mmap_moved(o, old_len, (uintptr_t)p, new_len);
	return p;
}

/* The default huge page size (/proc/meminfo's Hugepagesize), read once; 0: no hugetlb. */
static size_t iommufd_mmap_default_huge(void)
{
	static _Atomic size_t huge; /* 1: read, and there is none */
	size_t h = atomic_load_explicit(&huge, memory_order_relaxed);
	char buf[4096], *line;
	unsigned long kb;

	if (!h) {
		h = 1;
		if (sys_read_small_file("/proc/meminfo", buf, sizeof(buf)) > 0 &&
		    (line = strstr(buf, "\nHugepagesize:")) &&
		    sscanf(line, "\nHugepagesize: %lu kB", &kb) == 1 && kb)
			h = (size_t)kb << 10;
		atomic_store_explicit(&huge, h, memory_order_relaxed);
	}
	return h == 1 ? 0 : h;
}

/*
 * The length mmap(2) of @len with @flags (and @fd) replaces: the kernel's ksys_mmap_pgoff()
 * rounds a hugetlb mapping up to its huge page size, anonymous MAP_HUGETLB's (MAP_HUGE_SHIFT's
 * bits, or the default size) or a hugetlbfs file's (a MAP_HUGETLB memfd's); else whole pages.
 * A size that cannot be told makes the mapping fail before it replaces anything (EINVAL).
 */
size_t iommufd_mmap_replaced_len(size_t len, int flags, int fd)
{
	unsigned int shift = ((unsigned int)flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
	size_t huge = 0;
	struct statfs fs;

	if (flags & MAP_ANONYMOUS) {
		if (flags & MAP_HUGETLB)
			huge = shift ? (size_t)1 << shift : iommufd_mmap_default_huge();
	} else if (fd >= 0 && !fstatfs(fd, &fs) && fs.f_type == HUGETLBFS_MAGIC) {
		huge = (size_t)fs.f_bsize;
	}
	if (!huge || huge & (huge - 1))
		huge = uiommu_page_size;
	return (len + huge - 1) & ~(huge - 1);
}

UIOMMU_EXPORT bool uiommu_mmap_fixed_claims(const void *addr, size_t len, int flags, int fd)
{
	/* No mapping of ours: one load, no system call (the preload layer asks at each MAP_FIXED). */
	if (!atomic_load_explicit(&mmap_count, memory_order_acquire) &&
	    !atomic_load(&mmap_owner))
		return false;
	return uiommu_mmap_claims(addr, iommufd_mmap_replaced_len(len, flags, fd));
}

/*
 * A MAP_FIXED mmap(2) of [@addr, @addr + @len) failed: the kernel may have unmapped the old
 * range first (since its __mmap_setup() clears the old pages before the new mapping's file,
 * a hugetlb reservation or the VMA's allocation can fail: the failure leaves a gap), or not
 * (a check before that: EINVAL, RLIMIT_AS's ENOMEM, the old pages put back). mincore() tells:
 * ENOMEM for a page nothing maps. The pages of ours that are gone are forgotten, and a mapping
 * whose last page went lets go, as after an munmap; those that cannot be told (another error,
 * an injected failure) stay held. A mapping another thread put in the gap meanwhile looks like
 * ours still there: held until its munmap, as before. errno is kept.
 */
void iommufd_mmap_fixed_failed(void *addr, size_t len)
{
	struct iommufd_mmap *dead = NULL, *m;
	uintptr_t a = (uintptr_t)addr;
	int saved = errno;
	unsigned char vec;

	if (!atomic_load_explicit(&mmap_count, memory_order_acquire))
		return;
	uiommu_mutex_lock(&mmap_lock);
	for (m = mmap_list; m; m = m->next)
		for (unsigned int i = 0; i < m->npages; i++)
			if (m->page[i] && m->page[i] - a < len && !uiommu_should_fail() &&
			    sys_mincore((void *)m->page[i], uiommu_page_size, &vec) &&
			    errno == ENOMEM)
				iommufd_mmap_page_gone(m, i);
	iommufd_mmap_reap(&dead);
	uiommu_mutex_unlock(&mmap_lock);
	iommufd_mmap_put(dead);
	errno = saved;
}

/*
 * Another mapping put over ours: MAP_FIXED of another file or of anonymous memory replaces
 * what was in the range (rounded up to a huge page for hugetlb), as an munmap of it would (the
 * kernel unmaps the old VMAs first), so the pages it replaced are forgotten once it succeeded,
 * and a mapping whose last page went lets its hold go before this returns. A failed one
 * forgets those the kernel unmapped anyway (iommufd_mmap_fixed_failed()).
 */
UIOMMU_EXPORT void *uiommu_mmap_fixed(void *addr, size_t len, int prot, int flags, int fd,
				      off_t off)
{
	size_t replaced = iommufd_mmap_replaced_len(len, flags, fd);
	void *p = sys_mmap(addr, len, prot, flags, fd, off);

	if (p != MAP_FAILED)
		iommufd_mmap_forget((uintptr_t)p, replaced);
	else if (flags & MAP_FIXED)
		iommufd_mmap_fixed_failed(addr, replaced);
	return p;
}

UIOMMU_EXPORT bool uiommu_mmap_claims(const void *addr, size_t len)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);
	uintptr_t s = (uintptr_t)addr, e = s + len;
	struct iommufd_mmap *m;
	bool found = false;

	if (owner && owner->claims(s, e))
		return true;
	if (!atomic_load_explicit(&mmap_count, memory_order_acquire))
		return false;
	uiommu_mutex_lock(&mmap_lock);
	for (m = mmap_list; m && !found; m = m->next)
		for (unsigned int i = 0; i < m->npages && !found; i++)
			found = m->page[i] && m->page[i] < e && s < m->page[i] + uiommu_page_size;
	uiommu_mutex_unlock(&mmap_lock);
	return found;
}
