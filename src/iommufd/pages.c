// SPDX-License-Identifier: MIT
/*
 * struct iopt_pages: a run of user memory, and the pins held on it.
 *
 * An iopt_pages names memory without touching it. MAP creates one and hangs it on an area; COPY
 * and area splits hang more areas on the same one. Only when something needs the pages present
 * (a domain to fill, an access to read through: later layers) is a range pinned, by a pin user
 * (struct iopt_pages_pin) that covers a range of page indexes.
 *
 * Invariant: a page of the iopt_pages is pinned in its mm's ledger exactly once while at least
 * one pin user covers it, and not at all otherwise. So two areas sharing one iopt_pages (COPY)
 * give one pin per page, while two separate MAPs of the same memory give two, as page
 * refcounts do in the kernel. Pinning computes the gaps in the current coverage and pins only
 * those; unpinning computes the gaps that open and unpins only those.
 *
 * File-backed pages (MAP_FILE) hold their own duplicate of the caller's fd so the file lives as
 * long as the mapping. They have no user address, so the mm's ledger (which counts user pages)
 * does not see them; pinning them checks the file still covers the range and counts them in
 * the file's own ledger (mm.c), where a check of the caller's mmap of the file finds them. While anything of them is
 * pinned the library keeps its own shared mapping of the whole span (file_map): that is the
 * "physical" address a domain translates to, as the host address of a user page is for user
 * memory (iopt_pages_host_addr()). A dma-buf (dmabuf.c) maps as its memfd; the pages also hold
 * a reference on the dma-buf, so that its memory outlives its fd while mapped.
 *
 * Accounting (mm/account.h). Every page the iopt_pages pins is charged once, when it becomes
 * pinned (after the pin succeeded: bad memory is EFAULT before it is ENOMEM), and uncharged when
 * it stops being pinned, to the account the pages name: account_mode, source_user and
 * source_mm. The mode is fixed at creation (NONE for a creator with CAP_IPC_LOCK and for
 * dma-bufs, else USER, which the map turns into MM when the context asks for it) and so is
 * the account, except that IOAS_CHANGE_PROCESS moves it (ioas.c). So the charge of an
 * iopt_pages is always exactly its `pinned` count, and every path that undoes a pin (unpin,
 * shrink, the unwind of a failed pin) undoes its charge with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iommufd/dmabuf.h"
#include "iommufd/io_pagetable.h"
#include "iommufd/iommufd_private.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"

static struct iopt_pages *iopt_alloc_pages(struct uiommu_mm *mm, uint64_t start_byte,
					   uint64_t length, bool writable)
{
	struct iopt_pages *pages;
	uint64_t span;

	/* The span must stay computable in pages after adding the offset into the first page. */
	if (length == 0 || length > SIZE_MAX - uiommu_page_size)
		return ERR_PTR(-EINVAL);
	pages = uiommu_zalloc(sizeof(*pages));
	if (!pages)
		return ERR_PTR(-ENOMEM);
	pages->source_user = uiommu_user_current();
	if (IS_ERR(pages->source_user)) {
		uiommu_free(pages);
		return ERR_PTR(-ENOMEM);
	}
	/* The kernel's rule: CAP_IPC_LOCK (of the caller, whose mm it is) pins without a charge. */
	pages->account_mode = uiommu_account_exempt(mm) ? UIOMMU_ACCOUNT_NONE : UIOMMU_ACCOUNT_USER;
	atomic_init(&pages->refs, 1);
	pages->writable = writable;
	pages->length = length;
	pages->start_byte = start_byte;
	span = start_byte + length;
	pages->npages = span / uiommu_page_size + !!(span % uiommu_page_size);
	pages->source_mm = uiommu_mm_get(mm);
	pages->file_fd = -1;
	uiommu_mutex_init(&pages->mutex);
	interval_tree_init(&pages->pin_users);
	return pages;
}

/**
 * iopt_alloc_user_pages() - name @length bytes of @mm at @uptr, without touching them
 * Return: the pages with one reference, or ERR_PTR(-EINVAL) for a zero or oversized length,
 * -EOVERFLOW when the range wraps, -ENOMEM.
 */
struct iopt_pages *iopt_alloc_user_pages(struct uiommu_mm *mm, uint64_t uptr, uint64_t length,
					 bool writable)
{
	struct iopt_pages *pages;
	uint64_t end;

	if (check_add_overflow(uptr, length, &end))
		return ERR_PTR(-EOVERFLOW);
	pages = iopt_alloc_pages(mm, uptr % uiommu_page_size, length, writable);
	if (IS_ERR(pages))
		return pages;
	pages->type = IOPT_ADDRESS_USER;
	pages->uptr = uptr - pages->start_byte;
	return pages;
}

/**
 * iopt_alloc_file_pages() - name @length bytes of the file @fd from byte @start
 * The file must be a regular file (a memfd) that covers the range now.
 * Return: the pages with one reference, or ERR_PTR(-EBADF), -EINVAL (zero length, range past
 * the end of the file), -EOVERFLOW, -ENOMEM.
 */
struct iopt_pages *iopt_alloc_file_pages(struct uiommu_mm *mm, int fd, uint64_t start,
					 uint64_t length, bool writable)
{
	struct iommufd_dmabuf *dmabuf = iommufd_dmabuf_get(fd);
	struct iopt_pages *pages;
	struct stat st;
	uint64_t end;
	int flags, dup_fd, rc;

	/* A dma-buf of ours: its own checks, then its memfd is the file (dmabuf.c). */
	if (dmabuf) {
		rc = iommufd_dmabuf_check_map(dmabuf, start, length);
		if (rc)
			goto err_put_dmabuf;
		fd = iommufd_dmabuf_memfd(dmabuf);
	}
	rc = -EBADF;
	if (uiommu_should_fail())
		goto err_put_dmabuf;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fstat(fd, &st))
		goto err_put_dmabuf;
	rc = -EOPNOTSUPP;
	if (!S_ISREG(st.st_mode))
		goto err_put_dmabuf;
	rc = -EOVERFLOW;
	if (check_add_overflow(start, length, &end))
		goto err_put_dmabuf;
	rc = -EINVAL;
	if (!length || end > (uint64_t)st.st_size)
		goto err_put_dmabuf;
	/* A writable mapping of a file opened read-only cannot be honoured. */
	rc = -EPERM;
	if (writable && (flags & O_ACCMODE) == O_RDONLY)
		goto err_put_dmabuf;

	pages = iopt_alloc_pages(mm, start % uiommu_page_size, length, writable);
	if (IS_ERR(pages)) {
		rc = PTR_ERR(pages);
		goto err_put_dmabuf;
	}
	pages->type = IOPT_ADDRESS_FILE;
	pages->dmabuf = dmabuf; /* the pages own the reference now */
	/* A dma-buf's memory is the exporter's: its pins are charged to nobody, as in the kernel. */
	if (dmabuf)
		pages->account_mode = UIOMMU_ACCOUNT_NONE;
	if (dmabuf) {
		rc = iommufd_dmabuf_attach_pages(dmabuf, pages);
		if (rc) {
			iopt_pages_put(pages);
			return ERR_PTR(rc);
		}
	}
	pages->file_start = start - pages->start_byte;
	pages->file_pins = uiommu_file_pins_get(uiommu_maps_dev(st.st_dev), st.st_ino);
	if (IS_ERR(pages->file_pins)) {
		pages->file_pins = NULL;
		iopt_pages_put(pages);
		return ERR_PTR(-ENOMEM);
	}
	dup_fd = uiommu_should_fail() ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0) {
		iopt_pages_put(pages);
		return ERR_PTR(-ENOMEM);
	}
	pages->file_fd = dup_fd;
	uiommu_fd_keep(dup_fd);
	return pages;

err_put_dmabuf:
	if (dmabuf)
		iommufd_dmabuf_put(dmabuf);
	return ERR_PTR(rc);
}

struct iopt_pages *iopt_pages_get(struct iopt_pages *pages)
{
	atomic_fetch_add_explicit(&pages->refs, 1, memory_order_relaxed);
	return pages;
}

void iopt_pages_put(struct iopt_pages *pages)
{
	if (atomic_fetch_sub_explicit(&pages->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Pin users hold an area, and an area holds a reference: none can be left. */
	WARN_ON(!interval_tree_empty(&pages->pin_users) || pages->pinned || pages->file_map);
	if (pages->file_fd >= 0) {
		uiommu_fd_unkeep(pages->file_fd);
		close(pages->file_fd);
	}
	if (pages->file_pins)
		uiommu_file_pins_put(pages->file_pins);
	/* Every area that mapped it has untracked itself on its way out. */
	WARN_ON(pages->dmabuf_tracks);
	if (pages->dmabuf) {
		iommufd_dmabuf_detach_pages(pages->dmabuf, pages);
		iommufd_dmabuf_put(pages->dmabuf);
	}
	uiommu_user_put(pages->source_user);
	uiommu_mm_put(pages->source_mm);
	uiommu_mutex_destroy(&pages->mutex);
	uiommu_free(pages);
}

/*
 * Calls @fn on each maximal run of [first, last] that no pin user covers, in order, and stops
 * at the first error. Caller holds pages->mutex.
 */
static int iopt_pages_for_each_gap(struct iopt_pages *pages, uint64_t first, uint64_t last,
				   int (*fn)(struct iopt_pages *, uint64_t, uint64_t, void *),
				   void *arg)
{
	struct interval_tree_node *n;
	uint64_t next = first;
	int rc;

	lockdep_assert_held(&pages->mutex);
	interval_tree_for_each(n, &pages->pin_users, first, last) {
		if (n->start > next) {
			rc = fn(pages, next, n->start - 1, arg);
			if (rc)
				return rc;
		}
		if (n->last >= last)
			return 0;
		if (n->last + 1 > next)
			next = n->last + 1;
	}
	return fn(pages, next, last, arg);
}

/* Progress of a pin: the last page index pinned so far, if any. */
struct iopt_pin_progress {
	bool any;
	uint64_t upto;
};

/* Gives back the ledger's pins of [first, last], which nobody covers any more. */
static void iopt_pages_release_gap(struct iopt_pages *pages, uint64_t first, uint64_t last)
{
	if (pages->type == IOPT_ADDRESS_USER)
		uiommu_mm_unpin(pages->source_mm, (pages->uptr >> uiommu_page_shift) + first,
				last - first + 1);
	else
		uiommu_file_unpin(pages->file_pins,
				  (pages->file_start >> uiommu_page_shift) + first,
				  last - first + 1);
}

static int iopt_pages_pin_gap(struct iopt_pages *pages, uint64_t first, uint64_t last, void *arg)
{
	struct iopt_pin_progress *prog = arg;
	int rc = 0;

	if (pages->type == IOPT_ADDRESS_USER) {
		uint64_t start = ((pages->uptr >> uiommu_page_shift) + first) << uiommu_page_shift;

		/*
		 * A vfio-pci BAR's mmap is VM_PFNMAP | VM_IO in the kernel, and pin_user_pages()
		 * refuses it: QEMU's peer-to-peer MAP of a BAR area fails there with EFAULT (QEMU
		 * warns and goes on). Here that page is a shared mapping of the function's memfd,
		 * which would pin like any other; the owner's records say it is device memory.
		 * Only this process's records mean anything for its own addresses.
		 */
		if (pages->source_mm->ops->host_linear &&
		    iommufd_mmap_owner_claims(start, start + ((last - first + 1) << uiommu_page_shift)))
			return -EFAULT;
		rc = uiommu_mm_pin(pages->source_mm, (pages->uptr >> uiommu_page_shift) + first,
				   last - first + 1, pages->writable);
	} else {
		struct stat st;

		if (uiommu_should_fail() || fstat(pages->file_fd, &st) ||
		    (uint64_t)st.st_size < pages->file_start + (last + 1) * uiommu_page_size)
			rc = -EFAULT;
		else
			rc = uiommu_file_pin(pages->file_pins,
					     (pages->file_start >> uiommu_page_shift) + first,
					     last - first + 1);
	}
	if (rc)
		return rc;
	rc = uiommu_account_charge(pages->account_mode, pages->source_user, pages->source_mm,
				   last - first + 1);
	if (rc) {
		iopt_pages_release_gap(pages, first, last);
		return rc;
	}
	pages->pinned += last - first + 1;
	prog->any = true;
	prog->upto = last;
	return 0;
}

static int iopt_pages_unpin_gap(struct iopt_pages *pages, uint64_t first, uint64_t last,
				void *arg)
{
	const struct iopt_pin_progress *prog = arg;

	/* Undoing a half-done pin stops after the last gap it pinned. */
	if (!prog->any || first > prog->upto)
		return 1;
	iopt_pages_release_gap(pages, first, last);
	uiommu_account_uncharge(pages->account_mode, pages->source_user, pages->source_mm,
				last - first + 1);
	pages->pinned -= last - first + 1;
	return 0;
}

/* Maps the file's span into the library before the first pin. Caller holds pages->mutex. */
static int iopt_pages_file_map(struct iopt_pages *pages)
{
	void *p;

	lockdep_assert_held(&pages->mutex);
	if (pages->type != IOPT_ADDRESS_FILE || pages->file_map)
		return 0;
	if (uiommu_should_fail())
		return -ENOMEM;
	p = mmap(NULL, pages->npages * uiommu_page_size,
		 PROT_READ | (pages->writable ? PROT_WRITE : 0), MAP_SHARED, pages->file_fd,
		 (off_t)pages->file_start);
	if (p == MAP_FAILED)
		return -ENOMEM;
	pages->file_map = p;
	return 0;
}

/* Drops the file mapping once nothing is pinned any more. Caller holds pages->mutex. */
static void iopt_pages_file_unmap(struct iopt_pages *pages)
{
	lockdep_assert_held(&pages->mutex);
	if (!pages->file_map || pages->pinned)
		return;
	munmap(pages->file_map, pages->npages * uiommu_page_size);
	pages->file_map = NULL;
}

/**
 * iopt_pages_pin() - hold page indexes [first, last] of @pages pinned through @pin
 * Pins the pages no other pin user covers yet. All or nothing.
 * Return: 0, -EINVAL for a range outside the pages, -EFAULT for memory that cannot be pinned,
 * -ENOMEM.
 */
int iopt_pages_pin(struct iopt_pages *pages, struct iopt_pages_pin *pin, uint64_t first,
		   uint64_t last)
{
	struct iopt_pin_progress prog = { 0 };
	int rc;

	if (first > last || last >= pages->npages)
		return -EINVAL;
	uiommu_mutex_lock(&pages->mutex);
	rc = iopt_pages_file_map(pages);
	if (rc)
		goto out_unlock;
	rc = iopt_pages_for_each_gap(pages, first, last, iopt_pages_pin_gap, &prog);
	if (rc) {
		iopt_pages_for_each_gap(pages, first, last, iopt_pages_unpin_gap, &prog);
		iopt_pages_file_unmap(pages);
		goto out_unlock;
	}
	pin->node.start = first;
	pin->node.last = last;
	interval_tree_insert(&pages->pin_users, &pin->node);
out_unlock:
	uiommu_mutex_unlock(&pages->mutex);
	return rc;
}

/* Drops @pin's hold; unpins what no other user covers. Never fails. */
void iopt_pages_unpin(struct iopt_pages *pages, struct iopt_pages_pin *pin)
{
	struct iopt_pin_progress all = { .any = true, .upto = UINT64_MAX };

	uiommu_mutex_lock(&pages->mutex);
	interval_tree_remove(&pages->pin_users, &pin->node);
	iopt_pages_for_each_gap(pages, pin->node.start, pin->node.last, iopt_pages_unpin_gap,
				&all);
	iopt_pages_file_unmap(pages);
	uiommu_mutex_unlock(&pages->mutex);
}

/**
 * iopt_pages_pin_shrink() - narrow @pin to [first, last], a subrange of what it holds
 * Unpins what no other user covers any more. Never fails (an area split uses it after the other
 * half took its own pin).
 */
void iopt_pages_pin_shrink(struct iopt_pages *pages, struct iopt_pages_pin *pin, uint64_t first,
			   uint64_t last)
{
	struct iopt_pin_progress all = { .any = true, .upto = UINT64_MAX };
	uint64_t old_first = pin->node.start, old_last = pin->node.last;

	if (WARN_ON(first < old_first || last > old_last || first > last))
		return;
	uiommu_mutex_lock(&pages->mutex);
	interval_tree_remove(&pages->pin_users, &pin->node);
	pin->node.start = first;
	pin->node.last = last;
	interval_tree_insert(&pages->pin_users, &pin->node);
	if (old_first < first)
		iopt_pages_for_each_gap(pages, old_first, first - 1, iopt_pages_unpin_gap, &all);
	if (last < old_last)
		iopt_pages_for_each_gap(pages, last + 1, old_last, iopt_pages_unpin_gap, &all);
	uiommu_mutex_unlock(&pages->mutex);
}

/**
 * iopt_pages_host_addr() - the host address of page @index, which a pin user holds pinned
 * The pin keeps the answer valid (the file mapping stays while anything is pinned).
 * Return: 0, or -EFAULT when the memory is not addressable from this process.
 */
int iopt_pages_host_addr(struct iopt_pages *pages, uint64_t index, uint64_t *addr)
{
	void *p;

	if (pages->type == IOPT_ADDRESS_FILE) {
		if (WARN_ON(!pages->file_map))
			return -EFAULT;
		*addr = (uint64_t)(uintptr_t)pages->file_map + index * uiommu_page_size;
		return 0;
	}
	p = pages->source_mm->ops->host_ptr(pages->source_mm,
					    pages->uptr + index * uiommu_page_size);
	if (!p)
		return -EFAULT;
	*addr = (uint64_t)(uintptr_t)p;
	return 0;
}

/**
 * iopt_pages_host_contig() - how many pages from @index on (at most @max, all pinned by the
 * caller's pin user) lie one after the other in host memory
 * A file's pages are one mapping, and so are user pages of an mm whose host pointers are the
 * user addresses; only other mms need a look at each page.
 * Return: at least 1 when page @index is addressable, 0 when it is not.
 */
uint64_t iopt_pages_host_contig(struct iopt_pages *pages, uint64_t index, uint64_t max)
{
	uint64_t first, next, n;

	if (!max)
		return 0;
	if (pages->type == IOPT_ADDRESS_FILE || pages->source_mm->ops->host_linear)
		return iopt_pages_host_addr(pages, index, &first) ? 0 : max;
	if (iopt_pages_host_addr(pages, index, &first))
		return 0;
	for (n = 1; n != max; n++)
		if (iopt_pages_host_addr(pages, index + n, &next) ||
		    next != first + n * uiommu_page_size)
			break;
	return n;
}

/*
 * Would IOAS_CHANGE_PROCESS by @user in @mm move the charge of @pages? Not for the uncharged;
 * for the MM mode when the mm differs; for the USER mode when the user or the mm differs (the
 * mm's pinned_vm counts every mode's pins). Caller holds an iova_rwsem of every IOAS.
 */
bool iopt_pages_account_differs(struct iopt_pages *pages, struct uiommu_user *user,
				struct uiommu_mm *mm)
{
	switch (pages->account_mode) {
	case UIOMMU_ACCOUNT_MM:
		return pages->source_mm != mm;
	case UIOMMU_ACCOUNT_USER:
		return pages->source_user != user || pages->source_mm != mm;
	default:
		return false;
	}
}

/* The pages @pages holds pinned, each charged once. */
uint64_t iopt_pages_npinned(struct iopt_pages *pages)
{
	uint64_t n;

	uiommu_mutex_lock(&pages->mutex);
	n = pages->pinned;
	uiommu_mutex_unlock(&pages->mutex);
	return n;
}

/*
 * Gives the old charge back and names @user and @mm as whom @pages charges from now on. The
 * caller charged them the same count already, and holds every IOAS's iova_rwsem for write so
 * the count cannot change in between. Never fails.
 */
void iopt_pages_account_move(struct iopt_pages *pages, struct uiommu_user *user,
			     struct uiommu_mm *mm)
{
	struct uiommu_user *old_user;
	struct uiommu_mm *old_mm;

	uiommu_mutex_lock(&pages->mutex);
	uiommu_account_uncharge(pages->account_mode, pages->source_user, pages->source_mm,
				pages->pinned);
	old_user = pages->source_user;
	old_mm = pages->source_mm;
	pages->source_user = uiommu_user_get(user);
	pages->source_mm = uiommu_mm_get(mm);
	uiommu_mutex_unlock(&pages->mutex);
	uiommu_user_put(old_user);
	uiommu_mm_put(old_mm);
}
