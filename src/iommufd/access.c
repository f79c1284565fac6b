// SPDX-License-Identifier: MIT
/*
 * Access objects (IOMMUFD_OBJ_ACCESS): in-library users of an IOAS that reach its memory by
 * IOVA without an IOMMU, the way an emulated (mdev-like) device driver does in the kernel, and
 * the selftest's access fd that drives one from userspace (IOMMU_TEST_CMD CREATE_ACCESS,
 * ACCESS_PAGES, DESTROY_ACCESS_PAGES, ACCESS_RW, ACCESS_REPLACE_IOAS, SET_TEMP_MEMORY_LIMIT).
 *
 * An access is owned by whoever created it (its driver): it is published so the object model
 * counts it, but the owner holds an extra users reference, so IOMMU_DESTROY of its ID answers
 * EBUSY; iommufd_access_destroy() removes it. While attached it holds a users reference on its
 * IOAS (which then cannot be destroyed) and is listed in the IOAS's io_pagetable, where its
 * alignment (PAGE_SIZE for an access that pins pages, else 1) joins the table's.
 *
 * Pinning. iommufd_access_pin_pages() pins the pages behind an IOVA range, which must be mapped
 * without a gap, through one pin user per area it crosses (struct iommufd_access_pin), so the
 * pins belong to the iopt_pages and a page an access and a domain both hold is pinned once.
 * The caller gets a token (struct iommufd_access_pins) that gives the pages' host addresses and
 * that iommufd_access_unpin_pages() takes back. An area with access pins cannot be split, and
 * unmapping it first calls every access's unmap op (iommufd_access_notify_unmap()), which must
 * unpin whatever it holds in the range before it returns; the unmap then proceeds.
 *
 * Reading and writing. iommufd_access_rw() copies between a buffer and IOVA. User memory of
 * the caller's own address space is copied in place (the kernel's fast path through the mm);
 * with IOMMUFD_ACCESS_RW_SLOW_PATH, or for file-backed areas, each page is pinned for the copy
 * and unpinned after. Any alignment is fine; a range that crosses areas is copied area by area.
 * iommufd_access_translate() walks a range with the same checks and answers the host runs
 * instead, for another process that copies itself (remote_direct.c): only where the copy
 * would be a plain one in our own memory.
 *
 * The selftest access (struct selftest_access) is the driver: it keeps a list of pinned items
 * by ID, and its unmap op drops the items that meet the range. Its fd is a sub-fd of the
 * context (file.c): a real fd of the caller's table whose last close destroys the access. It
 * is built with the test command (meson option iommufd_test); without it the access API has
 * no caller (__maybe_unused), as the kernel's has none without an emulated VFIO device.
 *
 * Locking, in order:
 *   staccess->lock        the selftest's items; held across a pin, so an unmap's notify that
 *                         wants the same lock waits for the pin to finish and then drops it.
 *   access->ioas_lock     which IOAS the access is on; held across a pin or rw so the IOAS cannot
 *                         change under it. Never held while calling the unmap op.
 *   iopt->domains_rwsem -> iova_rwsem -> pages->mutex (io_pagetable.h).
 */
#include <errno.h>
#include <string.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "lib/fail.h"
#include "mm/mm.h"

/* What a driver gives iommufd_access_create(). */
struct iommufd_access_ops {
	bool needs_pin_pages;
	/* Unpin everything held in [iova, last]; called with no iommufd lock held. */
	void (*unmap)(void *data, uint64_t iova, uint64_t last);
};

struct iommufd_access {
	struct iommufd_object obj;
	struct iommufd_ctx *ictx;             /* constant */
	const struct iommufd_access_ops *ops; /* constant */
	void *data;                           /* the driver's; constant */
	struct iopt_access iopt_access;       /* listed in ioas->iopt while attached */
	struct uiommu_mutex ioas_lock;        /* protects ioas; order: after staccess->lock */
	struct iommufd_ioas *ioas;            /* a users reference, or NULL */
};

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_access, obj);

/* One area's share of a pin. */
struct iommufd_access_pin {
	struct iopt_area *area;     /* kept alive by num_accesses */
	struct iopt_pages *pages;   /* a reference */
	struct iopt_pages_pin pin;  /* page indexes of pages */
};

/* A pin_pages() result: what unpin_pages() takes back. */
struct iommufd_access_pins {
	struct io_pagetable *iopt;
	unsigned int nr;
	struct iommufd_access_pin pin[]; /* in IOVA order */
};

#define IOMMUFD_ACCESS_RW_WRITE 1u
#define IOMMUFD_ACCESS_RW_SLOW_PATH 4u

/* ---- the object ------------------------------------------------------------------------------ */

void iommufd_access_destroy_object(struct iommufd_object *obj)
{
	struct iommufd_access *access = container_of(obj, struct iommufd_access, obj);

	/* The owner detaches before it destroys. */
	WARN_ON(access->ioas);
	uiommu_mutex_destroy(&access->ioas_lock);
}

static __maybe_unused struct iommufd_access *
iommufd_access_create(struct iommufd_ctx *ictx, const struct iommufd_access_ops *ops, void *data)
{
	struct iommufd_access *access;

	access = iommufd_object_alloc(ictx, access, IOMMUFD_OBJ_ACCESS);
	if (IS_ERR(access))
		return access;
	access->ictx = ictx;
	access->ops = ops;
	access->data = data;
	access->iopt_access.iova_alignment = ops->needs_pin_pages ? uiommu_page_size : 1;
	access->iopt_access.obj_id = iommufd_object_id(&access->obj);
	uiommu_mutex_init(&access->ioas_lock);
	/*
	 * The owner's hold: IOMMU_DESTROY answers EBUSY. Dropped by iommufd_access_destroy().
	 * Taken before publication, so that no racing IOMMU_DESTROY finds users at one.
	 */
	iommufd_object_ref_users(&access->obj);
	iommufd_object_finalize(ictx, &access->obj);
	return access;
}

/*
 * Moves @access to @new_ioas (NULL: detach). The access's pins in the old IOAS are dropped
 * through its unmap op first. Takes ioas_lock; the caller holds none of our locks.
 * Return: 0, -EADDRINUSE (an area of the new IOAS breaks the alignment), -ENOMEM.
 */
static int iommufd_access_change_ioas(struct iommufd_access *access,
				      struct iommufd_ioas *new_ioas)
{
	struct iommufd_ioas *cur_ioas;
	int rc;

	uiommu_mutex_lock(&access->ioas_lock);
	cur_ioas = access->ioas;
	if (cur_ioas == new_ioas) {
		uiommu_mutex_unlock(&access->ioas_lock);
		return 0;
	}
	if (new_ioas) {
		rc = iopt_add_access(&new_ioas->iopt, &access->iopt_access);
		if (rc) {
			uiommu_mutex_unlock(&access->ioas_lock);
			return rc;
		}
		/* Pairs with the unref below at the next change. */
		iommufd_object_ref_users(&new_ioas->obj);
	}
	/* New pins find no IOAS (ENOENT) while the old one's are dropped. */
	access->ioas = NULL;
	uiommu_mutex_unlock(&access->ioas_lock);

	if (cur_ioas) {
		/* Another process's copies through the old IOAS end before this returns. */
		iommufd_direct_invalidate();
		access->ops->unmap(access->data, 0, UINT64_MAX);
		iopt_remove_access(&cur_ioas->iopt, &access->iopt_access);
		iommufd_object_unref_users(&cur_ioas->obj);
	}
	uiommu_mutex_lock(&access->ioas_lock);
	access->ioas = new_ioas;
	uiommu_mutex_unlock(&access->ioas_lock);
	return 0;
}

/* Attach or move @access to IOAS @ioas_id. Return: 0, -ENOENT, or a change error. */
static __maybe_unused int iommufd_access_replace(struct iommufd_access *access, uint32_t ioas_id)
{
	struct iommufd_ioas *ioas = iommufd_get_ioas(access->ictx, ioas_id);
	int rc;

	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	rc = iommufd_access_change_ioas(access, ioas);
	iommufd_put_object(access->ictx, &ioas->obj);
	return rc;
}

/* Detaches (dropping every pin through the unmap op) and removes @access. */
static __maybe_unused void iommufd_access_destroy(struct iommufd_access *access)
{
	WARN_ON(iommufd_access_change_ioas(access, NULL));
	WARN_ON(iommufd_object_remove(access->ictx, &access->obj, 0, REMOVE_WAIT));
}

/**
 * iommufd_access_notify_unmap() - every access of @iopt must let go of [iova, last]
 * Called by the unmap path with no lock held. Each access is held for its call; one that is
 * being destroyed is skipped (its destroy drops all its pins anyway).
 */
void iommufd_access_notify_unmap(struct io_pagetable *iopt, uint64_t iova, uint64_t last)
{
	struct iommufd_ioas *ioas = container_of(iopt, struct iommufd_ioas, iopt);
	unsigned int i = 0;

	for (;;) {
		struct iommufd_access *access;
		struct iommufd_object *obj;
		uint32_t id;

		uiommu_down_read(&iopt->iova_rwsem);
		if (i >= iopt->nr_accesses) {
			uiommu_up_read(&iopt->iova_rwsem);
			return;
		}
		id = iopt->accesses[i++]->obj_id;
		uiommu_up_read(&iopt->iova_rwsem);

		obj = iommufd_get_object(ioas->obj.ictx, id, IOMMUFD_OBJ_ACCESS);
		if (IS_ERR(obj))
			continue;
		access = container_of(obj, struct iommufd_access, obj);
		access->ops->unmap(access->data, iova, last);
		iommufd_put_object(ioas->obj.ictx, obj);
	}
}

/* ---- pinning ----------------------------------------------------------------------------------- */

static uint64_t iopt_area_index(const struct iopt_area *area, uint64_t iova)
{
	return (area->pages_byte + (iova - area->iova.start)) / uiommu_page_size;
}

/* Drops the first @nr pins of @pins. Caller holds iova_rwsem for read. */
static void iommufd_access_pins_drop(struct iommufd_access_pins *pins, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i != nr; i++) {
		struct iommufd_access_pin *p = &pins->pin[i];

		iopt_pages_unpin(p->pages, &p->pin);
		iopt_pages_put(p->pages);
		atomic_fetch_sub_explicit(&p->area->num_accesses, 1, memory_order_release);
	}
}

/**
 * iommufd_access_pin_pages() - pin the pages behind [iova, iova + length) for @access
 * @write: the pages will be written (the areas must be writable)
 *
 * Return: 0 with *@out (give it back with iommufd_access_unpin_pages()); -EINVAL (zero length,
 * an area being unmapped), -EOVERFLOW, -ENOENT (no IOAS, or a gap in the range), -EPERM (a
 * read-only area and @write), -EFAULT (memory that cannot be pinned), -ENOMEM.
 */
static __maybe_unused int iommufd_access_pin_pages(struct iommufd_access *access, uint64_t iova,
						   uint64_t length, bool write,
						   struct iommufd_access_pins **out)
{
	struct iommufd_access_pins *pins;
	struct rangemap_iter it;
	struct iopt_area *area;
	struct io_pagetable *iopt;
	uint64_t last, expect = iova;
	bool covered = false;
	unsigned int nr = 0;
	int rc = 0;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;
	if (WARN_ON(!access->ops->needs_pin_pages))
		return -EINVAL;

	uiommu_mutex_lock(&access->ioas_lock);
	if (!access->ioas) {
		rc = -ENOENT;
		goto out_unlock_ioas;
	}
	iopt = &access->ioas->iopt;
	uiommu_down_read(&iopt->iova_rwsem);
	iopt_for_each_area(area, &it, iopt, iova, last) {
		if (area->iova.start > expect)
			break;
		nr++;
		if (area->iova.last >= last) {
			covered = true;
			break;
		}
		expect = area->iova.last + 1;
	}
	if (!covered) {
		rc = -ENOENT;
		goto out_unlock_iova;
	}
	pins = uiommu_zalloc(sizeof(*pins) + nr * sizeof(pins->pin[0]));
	if (!pins) {
		rc = -ENOMEM;
		goto out_unlock_iova;
	}
	pins->iopt = iopt;
	iopt_for_each_area(area, &it, iopt, iova, last) {
		struct iommufd_access_pin *p = &pins->pin[pins->nr];
		uint64_t first = area->iova.start > iova ? area->iova.start : iova;
		uint64_t end = area->iova.last < last ? area->iova.last : last;

		if (area->prevent_access) {
			rc = -EINVAL;
			goto err_unpin;
		}
		if (write && !(area->iommu_prot & IOMMU_WRITE)) {
			rc = -EPERM;
			goto err_unpin;
		}
		/* Nothing but a domain may reach a dma-buf's memory, as in the kernel. */
		if (area->pages->dmabuf) {
			rc = -EINVAL;
			goto err_unpin;
		}
		rc = iopt_pages_pin(area->pages, &p->pin, iopt_area_index(area, first),
				    iopt_area_index(area, end));
		if (rc)
			goto err_unpin;
		p->area = area;
		p->pages = iopt_pages_get(area->pages);
		atomic_fetch_add_explicit(&area->num_accesses, 1, memory_order_relaxed);
		if (++pins->nr == nr)
			break;
	}
	uiommu_up_read(&iopt->iova_rwsem);
	uiommu_mutex_unlock(&access->ioas_lock);
	*out = pins;
	return 0;

err_unpin:
	iommufd_access_pins_drop(pins, pins->nr);
	uiommu_free(pins);
out_unlock_iova:
	uiommu_up_read(&iopt->iova_rwsem);
out_unlock_ioas:
	uiommu_mutex_unlock(&access->ioas_lock);
	return rc;
}

/* Gives back what iommufd_access_pin_pages() pinned. Never fails. */
static __maybe_unused void iommufd_access_unpin_pages(struct iommufd_access_pins *pins)
{
	struct io_pagetable *iopt = pins->iopt;

	uiommu_down_read(&iopt->iova_rwsem);
	iommufd_access_pins_drop(pins, pins->nr);
	uiommu_up_read(&iopt->iova_rwsem);
	uiommu_free(pins);
}

/*
 * Calls @fn with the host address of each pinned page of @pins, in IOVA order; stops at the
 * first non-zero answer.
 */
static __maybe_unused int
iommufd_access_pins_for_each_page(struct iommufd_access_pins *pins,
				  int (*fn)(uint64_t host, void *arg), void *arg)
{
	unsigned int i;
	int rc;

	for (i = 0; i != pins->nr; i++) {
		struct iommufd_access_pin *p = &pins->pin[i];
		uint64_t index, host;

		for (index = p->pin.node.start; index <= p->pin.node.last; index++) {
			rc = iopt_pages_host_addr(p->pages, index, &host);
			if (!rc)
				rc = fn(host, arg);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- reading and writing ---------------------------------------------------------------------- */

/* Copies through one page of @pages held pinned for the copy (the slow path). */
static int iopt_pages_rw_page(struct iopt_pages *pages, uint64_t byte, void *buf, uint64_t len,
			      bool write)
{
	struct iopt_pages_pin pin;
	uint64_t index = byte / uiommu_page_size, host;
	int rc;

	rc = iopt_pages_pin(pages, &pin, index, index);
	if (rc)
		return rc;
	rc = iopt_pages_host_addr(pages, index, &host);
	if (!rc) {
		void *p = (void *)(uintptr_t)(host + byte % uiommu_page_size);

		/*
		 * The page is the user's memory, not ours: whatever the program did with it (freed
		 * it to its allocator, unmapped it since the pin) is no error of the library's.
		 * uiommu_host_copy() neither lets a sanitizer vet it (ASan called the program's
		 * freed heap a library bug: found by fuzzing) nor dies on a fault.
		 */
		rc = write ? uiommu_host_copy(p, buf, len) : uiommu_host_copy(buf, p, len);
	}
	iopt_pages_unpin(pages, &pin);
	return rc;
}

/* Copies @len bytes at byte offset @byte of @pages (from its first page). */
static int iopt_pages_rw(struct iopt_pages *pages, uint64_t byte, void *buf, uint64_t len,
			 unsigned int flags)
{
	bool write = flags & IOMMUFD_ACCESS_RW_WRITE;

	if (pages->type == IOPT_ADDRESS_USER && !(flags & IOMMUFD_ACCESS_RW_SLOW_PATH)) {
		int rc = write ? uiommu_copy_to_user(pages->source_mm, pages->uptr + byte, buf, len) :
				 uiommu_copy_from_user(pages->source_mm, buf, pages->uptr + byte,
						       len);

		/*
		 * Another process's memory (docs/processes.md) that it no longer maps, or that is
		 * gone with it: the kernel then reads the pinned pages, and so do we.
		 */
		if (rc != -EFAULT || pages->source_mm->ops->host_linear)
			return rc;
	}
	while (len) {
		uint64_t chunk = uiommu_page_size - byte % uiommu_page_size;
		int rc;

		if (chunk > len)
			chunk = len;
		rc = iopt_pages_rw_page(pages, byte, buf, chunk, write);
		if (rc)
			return rc;
		byte += chunk;
		buf = (char *)buf + chunk;
		len -= chunk;
	}
	return 0;
}

/* What iommufd_access_walk() calls for each area of a range: [cur, end] of @area, @off bytes in. */
typedef int (*iommufd_access_area_fn)(struct iopt_area *area, uint64_t cur, uint64_t end,
				      uint64_t off, void *arg);

/*
 * Calls @fn for each area of [iova, iova + length) of @access's IOAS, in IOVA order, with
 * the checks of a copy through it, under the locks of one: ioas_lock and iova_rwsem for read,
 * held across every call, so that the IOAS and its areas stay as @fn sees them.
 * Return: 0, @fn's -errno, -EINVAL (zero length, an area being unmapped, a dma-buf area),
 * -EOVERFLOW, -ENOENT (no IOAS, or a gap), -EPERM (IOMMUFD_ACCESS_RW_WRITE to a read-only area).
 */
static __maybe_unused int iommufd_access_walk(struct iommufd_access *access, uint64_t iova,
					      uint64_t length, unsigned int flags,
					      iommufd_access_area_fn fn, void *arg)
{
	struct rangemap_iter it;
	struct iopt_area *area;
	struct io_pagetable *iopt;
	uint64_t last, cur = iova;
	int rc = 0;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;

	uiommu_mutex_lock(&access->ioas_lock);
	if (!access->ioas) {
		rc = -ENOENT;
		goto out_unlock_ioas;
	}
	iopt = &access->ioas->iopt;
	uiommu_down_read(&iopt->iova_rwsem);
	iopt_for_each_area(area, &it, iopt, iova, last) {
		uint64_t end = area->iova.last < last ? area->iova.last : last;

		if (area->iova.start > cur)
			break;
		if (area->prevent_access) {
			rc = -EINVAL;
			goto out_unlock_iova;
		}
		if ((flags & IOMMUFD_ACCESS_RW_WRITE) && !(area->iommu_prot & IOMMU_WRITE)) {
			rc = -EPERM;
			goto out_unlock_iova;
		}
		if (area->pages->dmabuf) {
			rc = -EINVAL;
			goto out_unlock_iova;
		}
		rc = fn(area, cur, end, cur - iova, arg);
		if (rc)
			goto out_unlock_iova;
		if (end == last)
			goto out_unlock_iova;
		cur = end + 1;
	}
	/* The range ran into a gap (or past the last area). */
	rc = -ENOENT;
out_unlock_iova:
	uiommu_up_read(&iopt->iova_rwsem);
out_unlock_ioas:
	uiommu_mutex_unlock(&access->ioas_lock);
	return rc;
}

struct iommufd_access_rw_arg {
	void *buf;
	unsigned int flags;
};

static int iommufd_access_rw_area(struct iopt_area *area, uint64_t cur, uint64_t end,
				  uint64_t off, void *arg)
{
	struct iommufd_access_rw_arg *rw = arg;

	return iopt_pages_rw(area->pages, area->pages_byte + (cur - area->iova.start),
			     (char *)rw->buf + off, end - cur + 1, rw->flags);
}

/**
 * iommufd_access_rw() - copy between @buf and [iova, iova + length) of @access's IOAS
 * @flags: IOMMUFD_ACCESS_RW_WRITE (buf -> IOVA), IOMMUFD_ACCESS_RW_SLOW_PATH
 * Return: 0, -EINVAL (zero length, an area being unmapped), -EOVERFLOW, -ENOENT (no IOAS, or a
 * gap), -EPERM (a write to a read-only area), -EFAULT, -ENOMEM.
 */
static __maybe_unused int iommufd_access_rw(struct iommufd_access *access, uint64_t iova,
					    void *buf, uint64_t length, unsigned int flags)
{
	struct iommufd_access_rw_arg rw = { .buf = buf, .flags = flags };

	return iommufd_access_walk(access, iova, length, flags, iommufd_access_rw_area, &rw);
}

struct iommufd_access_translate_arg {
	uint32_t *gen;
	struct wire_direct_run *runs;
	unsigned int max, *nr;
};

static int iommufd_access_translate_area(struct iopt_area *area, uint64_t cur, uint64_t end,
					 uint64_t off, void *arg)
{
	struct iommufd_access_translate_arg *tr = arg;
	struct iopt_pages *pages = area->pages;
	struct wire_direct_run *prev = *tr->nr ? &tr->runs[*tr->nr - 1] : NULL;
	uint64_t host;

	/* Under the locks an unmap takes for write: it bumps the generation after it. */
	if (!off)
		*tr->gen = iommufd_direct_gen();
	if (pages->type != IOPT_ADDRESS_USER || !pages->source_mm->ops->host_linear)
		return -EAGAIN;
	host = pages->uptr + area->pages_byte + (cur - area->iova.start);
	if (uiommu_host_is_window(host))
		return -EAGAIN;
	if (prev && prev->host + prev->len == host) {
		prev->len += end - cur + 1;
		return 0;
	}
	if (*tr->nr == tr->max)
		return -EAGAIN;
	tr->runs[*tr->nr].host = host;
	tr->runs[(*tr->nr)++].len = end - cur + 1;
	return 0;
}

/*
 * The direct path of another process's ACCESS_RW (remote_direct.c): the host runs that
 * iommufd_access_rw() would copy through, for a client that copies itself. Only what the
 * fast path reaches by a plain user copy of our own memory is offered: areas of this
 * process's user memory (host_linear: the address is the page), in full. Everything else
 * (the slow path, file areas, another process's memory behind the window, more runs than
 * @max) is -EAGAIN: the caller asks for the round trip, which stays the reference, errnos
 * included.
 * Return: 0 with *@nr runs in @runs and the generation they are valid at in *@gen; or -errno
 * as iommufd_access_rw() answers.
 */
static __maybe_unused int iommufd_access_translate(struct iommufd_access *access, uint64_t iova,
						   uint64_t length, unsigned int flags,
						   uint32_t *gen, struct wire_direct_run *runs,
						   unsigned int max, unsigned int *nr)
{
	struct iommufd_access_translate_arg tr = { .gen = gen, .runs = runs, .max = max, .nr = nr };

	*nr = 0;
	if (flags & IOMMUFD_ACCESS_RW_SLOW_PATH)
		return -EAGAIN;
	return iommufd_access_walk(access, iova, length, flags, iommufd_access_translate_area,
				   &tr);
}

#ifdef UIOMMU_IOMMUFD_TEST
/* ---- the selftest's access fd ------------------------------------------------------------------ */

/* The byte budget of internal batch buffers (SET_TEMP_MEMORY_LIMIT): a stress knob, kept. */
static atomic_uint iommufd_test_memory_limit = 65536;

/* The largest length ACCESS_PAGES and ACCESS_RW take, as the kernel's selftest. */
#define SELFTEST_ACCESS_MAX (16ull << 20)

struct selftest_access_item {
	struct selftest_access_item *next;
	unsigned int id;
	uint64_t iova;
	uint64_t last;
	struct iommufd_access_pins *pins;
};

struct selftest_access {
	struct iommufd_access *access;      /* set once the fd is installed; constant then */
	struct uiommu_mutex lock;           /* protects items, next_id; order: first */
	struct selftest_access_item *items;
	unsigned int next_id;
};

static void selftest_access_unmap(void *data, uint64_t iova, uint64_t last)
{
	struct selftest_access *staccess = data;
	struct selftest_access_item **pos, *item;

	uiommu_mutex_lock(&staccess->lock);
	for (pos = &staccess->items; (item = *pos);) {
		if (iova > item->last || last < item->iova) {
			pos = &item->next;
			continue;
		}
		*pos = item->next;
		iommufd_access_unpin_pages(item->pins);
		uiommu_free(item);
	}
	uiommu_mutex_unlock(&staccess->lock);
}

static const struct iommufd_access_ops selftest_access_ops_pin = {
	.needs_pin_pages = true,
	.unmap = selftest_access_unmap,
};

static const struct iommufd_access_ops selftest_access_ops = {
	.unmap = selftest_access_unmap,
};

static void selftest_access_free(struct selftest_access *staccess)
{
	uiommu_mutex_destroy(&staccess->lock);
	uiommu_free(staccess);
}

/* The access fd's last close. */
static void selftest_access_release(void *priv)
{
	struct selftest_access *staccess = priv;

	/* Every item goes through the unmap op on the way out of the IOAS. */
	iommufd_access_destroy(staccess->access);
	WARN_ON(staccess->items);
	selftest_access_free(staccess);
}

static const struct iommufd_subfd_ops selftest_access_fops = {
	.release = selftest_access_release,
	.name = "anon_inode:[iommufd_test_staccess]",
};

static int iommufd_test_create_access(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	uint32_t flags = cmd->create_access.flags;
	struct selftest_access *staccess;
	struct iommufd_access *access;
	struct iommufd_file *file;
	int fd, rc;

	if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)
		return -EOPNOTSUPP;
	staccess = uiommu_zalloc(sizeof(*staccess));
	if (!staccess)
		return -ENOMEM;
	uiommu_mutex_init(&staccess->lock);
	file = iommufd_subfd_alloc(ucmd->ictx, &selftest_access_fops, staccess, &fd);
	if (IS_ERR(file)) {
		rc = PTR_ERR(file);
		goto err_free_staccess;
	}
	access = iommufd_access_create(ucmd->ictx,
				       (flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) ?
					       &selftest_access_ops_pin :
					       &selftest_access_ops,
				       staccess);
	if (IS_ERR(access)) {
		rc = PTR_ERR(access);
		goto err_abort_fd;
	}
	rc = iommufd_access_replace(access, cmd->id);
	if (rc)
		goto err_destroy_access;
	cmd->create_access.out_access_fd = (uint32_t)fd;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_destroy_access;
	staccess->access = access;
	iommufd_subfd_install(file, fd);
	return 0;

err_destroy_access:
	iommufd_access_destroy(access);
err_abort_fd:
	iommufd_subfd_abort(file, fd);
err_free_staccess:
	selftest_access_free(staccess);
	return rc;
}

/* The access fd @fd, held for this ioctl. Return: it, or ERR_PTR(-EBADFD). */
static struct selftest_access *selftest_access_get(int fd, struct iommufd_file **file)
{
	return iommufd_subfd_get(fd, &selftest_access_fops, file);
}

static int iommufd_test_access_replace_ioas(struct iommufd_ucmd *ucmd,
					    struct iommu_test_cmd *cmd)
{
	struct selftest_access *staccess;
	struct iommufd_file *file;
	int rc;

	staccess = selftest_access_get((int)cmd->id, &file);
	if (IS_ERR(staccess))
		return PTR_ERR(staccess);
	rc = iommufd_access_replace(staccess->access, cmd->access_replace_ioas.ioas_id);
	iommufd_subfd_put(file);
	return rc;
}

/*
 * The pinned pages must be the user's pages from @arg onwards, one page at a time: the same
 * host address, or the same page of the same file (mm/maps.c; loaded at the first mismatch).
 * The caller faults the whole user range in once beforehand: a check is not allowed a fallible
 * step per page (a fail-nth sweep of a 2 MiB ACCESS_PAGES would need over a thousand runs).
 */
struct selftest_check_pages {
	struct uiommu_mm *mm;
	uint64_t uptr;
	struct uiommu_maps *maps;
};

static int selftest_check_page(uint64_t host, void *arg)
{
	struct selftest_check_pages *chk = arg;
	void *want;

	want = chk->mm->ops->host_ptr(chk->mm, chk->uptr);
	if (!want)
		return -EFAULT;
	if ((uint64_t)(uintptr_t)want != host) {
		int rc = chk->maps ? 0 : uiommu_maps_load(&chk->maps);

		if (rc)
			return rc;
		if (!uiommu_maps_same_page(chk->maps, host, (uint64_t)(uintptr_t)want))
			return -EBADE;
	}
	chk->uptr += uiommu_page_size;
	return 0;
}

static int iommufd_test_access_pages(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	uint64_t iova = cmd->access_pages.iova, length = cmd->access_pages.length;
	uint32_t flags = cmd->access_pages.flags;
	struct selftest_access_item *item;
	struct selftest_access *staccess;
	struct iommufd_access_pins *pins;
	struct iommufd_file *file;
	int rc;

	if (length > SELFTEST_ACCESS_MAX)
		return -ENOMEM;
	/* The syzkaller IOVA encoding is not offered. */
	if (flags & ~MOCK_FLAGS_ACCESS_WRITE)
		return -EOPNOTSUPP;
	staccess = selftest_access_get((int)cmd->id, &file);
	if (IS_ERR(staccess))
		return PTR_ERR(staccess);
	if (staccess->access->ops != &selftest_access_ops_pin) {
		rc = -EOPNOTSUPP;
		goto out_put;
	}
	item = uiommu_zalloc(sizeof(*item));
	if (!item) {
		rc = -ENOMEM;
		goto out_put;
	}

	uiommu_mutex_lock(&staccess->lock);
	rc = iommufd_access_pin_pages(staccess->access, iova, length,
				      flags & MOCK_FLAGS_ACCESS_WRITE, &pins);
	if (rc)
		goto err_unlock;
	/* A NULL uptr skips the check (the kernel's allowance for syzkaller). */
	if (cmd->access_pages.uptr) {
		struct selftest_check_pages chk = {
			.mm = ucmd->mm,
			.uptr = (cmd->access_pages.uptr - iova % uiommu_page_size) &
				~(uiommu_page_size - 1),
		};
		uint64_t npages = (iova + length - 1) / uiommu_page_size -
				  iova / uiommu_page_size + 1;

		/* One fallible step for the range, none per page. */
		rc = chk.mm->ops->fault_in(chk.mm, chk.uptr, npages, false);
		if (!rc)
			rc = iommufd_access_pins_for_each_page(pins, selftest_check_page, &chk);
		uiommu_maps_free(chk.maps);
		if (rc)
			goto err_unpin;
	}
	item->id = staccess->next_id;
	item->iova = iova;
	item->last = iova + length - 1;
	item->pins = pins;
	cmd->access_pages.out_access_pages_id = item->id;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_unpin;
	staccess->next_id++;
	item->next = staccess->items;
	staccess->items = item;
	uiommu_mutex_unlock(&staccess->lock);
	iommufd_subfd_put(file);
	return 0;

err_unpin:
	iommufd_access_unpin_pages(pins);
err_unlock:
	uiommu_mutex_unlock(&staccess->lock);
	uiommu_free(item);
out_put:
	iommufd_subfd_put(file);
	return rc;
}

static int iommufd_test_access_item_destroy(struct iommufd_ucmd *ucmd,
					    struct iommu_test_cmd *cmd)
{
	struct selftest_access_item **pos, *item;
	struct selftest_access *staccess;
	struct iommufd_file *file;
	int rc = -ENOENT;

	staccess = selftest_access_get((int)cmd->id, &file);
	if (IS_ERR(staccess))
		return PTR_ERR(staccess);
	uiommu_mutex_lock(&staccess->lock);
	for (pos = &staccess->items; (item = *pos); pos = &item->next) {
		if (item->id != cmd->destroy_access_pages.access_pages_id)
			continue;
		*pos = item->next;
		iommufd_access_unpin_pages(item->pins);
		uiommu_free(item);
		rc = 0;
		break;
	}
	uiommu_mutex_unlock(&staccess->lock);
	iommufd_subfd_put(file);
	return rc;
}

static int iommufd_test_access_rw(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	uint64_t length = cmd->access_rw.length, uptr = cmd->access_rw.uptr;
	uint32_t flags = cmd->access_rw.flags;
	struct selftest_access *staccess;
	struct iommufd_file *file;
	void *tmp;
	int rc;

	if (length > SELFTEST_ACCESS_MAX)
		return -ENOMEM;
	if (flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH))
		return -EOPNOTSUPP;
	staccess = selftest_access_get((int)cmd->id, &file);
	if (IS_ERR(staccess))
		return PTR_ERR(staccess);
	tmp = uiommu_zalloc(length ? length : 1);
	if (!tmp) {
		rc = -ENOMEM;
		goto out_put;
	}
	if (flags & MOCK_ACCESS_RW_WRITE) {
		rc = uiommu_copy_from_user(ucmd->mm, tmp, uptr, length);
		if (rc)
			goto out_free;
	}
	rc = iommufd_access_rw(staccess->access, cmd->access_rw.iova, tmp, length,
			       ((flags & MOCK_ACCESS_RW_WRITE) ? IOMMUFD_ACCESS_RW_WRITE : 0) |
				       ((flags & MOCK_ACCESS_RW_SLOW_PATH) ?
						IOMMUFD_ACCESS_RW_SLOW_PATH : 0));
	if (rc)
		goto out_free;
	if (!(flags & MOCK_ACCESS_RW_WRITE))
		rc = uiommu_copy_to_user(ucmd->mm, uptr, tmp, length);
out_free:
	uiommu_free(tmp);
out_put:
	iommufd_subfd_put(file);
	return rc;
}

/**
 * iommufd_test_access_translate() - TRANSLATE for the access fd named @token, @secret
 * (remote_direct.c): the runs ACCESS_RW with @flags (MOCK_ACCESS_RW_*) would copy through.
 * Return: 0, -EBADFD (no such access fd), what iommufd_access_translate() answers, or -EAGAIN
 * for what the round trip must do (a length ACCESS_RW refuses, unknown flags).
 */
int iommufd_test_access_translate(uint64_t token, const uint8_t *secret, uint64_t iova,
				  uint64_t length, uint32_t flags, uint32_t *gen,
				  struct wire_direct_run *runs, unsigned int max, unsigned int *nr)
{
	struct selftest_access *staccess;
	struct iommufd_file *file;
	int rc;

	*nr = 0;
	if (length > SELFTEST_ACCESS_MAX || (flags & ~MOCK_ACCESS_RW_WRITE))
		return -EAGAIN;
	staccess = iommufd_subfd_get_exported(token, secret, &selftest_access_fops, &file);
	if (IS_ERR(staccess))
		return PTR_ERR(staccess);
	rc = iommufd_access_translate(staccess->access, iova, length,
				      (flags & MOCK_ACCESS_RW_WRITE) ? IOMMUFD_ACCESS_RW_WRITE : 0,
				      gen, runs, max, nr);
	iommufd_subfd_put(file);
	return rc;
}

static int iommufd_test_set_memory_limit(struct iommu_test_cmd *cmd)
{
	/* At least one element of a batch: an unsigned long and a u32. */
	if (cmd->memory_limit.limit < sizeof(unsigned long) + sizeof(uint32_t))
		return -EINVAL;
	atomic_store_explicit(&iommufd_test_memory_limit, cmd->memory_limit.limit,
			      memory_order_relaxed);
	return 0;
}

/**
 * iommufd_test_access() - IOMMU_TEST_CMD's access ops
 * Return: the op's answer, or -EOPNOTSUPP for an op that is not an access op.
 */
int iommufd_test_access(struct iommufd_ucmd *ucmd)
{
	struct iommu_test_cmd *cmd = ucmd->cmd;

	switch (cmd->op) {
	case IOMMU_TEST_OP_CREATE_ACCESS:
		return iommufd_test_create_access(ucmd, cmd);
	case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
		return iommufd_test_access_item_destroy(ucmd, cmd);
	case IOMMU_TEST_OP_ACCESS_PAGES:
		return iommufd_test_access_pages(ucmd, cmd);
	case IOMMU_TEST_OP_ACCESS_RW:
		return iommufd_test_access_rw(ucmd, cmd);
	case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
		return iommufd_test_set_memory_limit(cmd);
	case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS:
		return iommufd_test_access_replace_ioas(ucmd, cmd);
	default:
		return -EOPNOTSUPP;
	}
}

#else /* !UIOMMU_IOMMUFD_TEST */

int iommufd_test_access_translate(uint64_t token, const uint8_t *secret, uint64_t iova,
				  uint64_t length, uint32_t flags, uint32_t *gen,
				  struct wire_direct_run *runs, unsigned int max, unsigned int *nr)
{
	(void)token, (void)secret, (void)iova, (void)length, (void)flags, (void)gen, (void)runs;
	(void)max;
	*nr = 0;
	return -EOPNOTSUPP;
}

#endif /* UIOMMU_IOMMUFD_TEST */
