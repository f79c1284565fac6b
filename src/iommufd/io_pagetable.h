/* SPDX-License-Identifier: MIT */
/*
 * The IO page table engine: what an IOAS is made of.
 *
 * Vocabulary: `last` is inclusive, `end` exclusive; a "page" is the host page (PAGE_SIZE).
 *
 * struct io_pagetable
 *   areas           the mapped ranges (struct iopt_area), disjoint, by IOVA: a B+tree of
 *                   eight-slot nodes (lib/rangemap.h) that also keeps, for every subtree, its
 *                   longest gap between areas. Automatic IOVA allocation is a first-fit search
 *                   over those gaps, which skips every subtree whose longest gap is too small,
 *                   so with areas packed together it costs O(log n), and a request no gap can
 *                   hold reads one node. MAP reserves the tree's nodes before it commits
 *                   (rangemap_reserve()); UNMAP never needs one, so it never fails for want
 *                   of memory.
 *   reserved_itree  IOVA that may never be mapped (struct iopt_reserved), from drivers and the
 *                   test command; may overlap each other; never overlaps an area or an allowed
 *                   range.
 *   allowed_itree   if not empty, the only IOVA automatic allocation may hand out
 *                   (IOAS_ALLOW_IOVAS); may overlap each other.
 *
 * struct iopt_area maps [iova.start, iova.last] of IOVA onto bytes [pages_byte,
 * pages_byte + length) of one struct iopt_pages. Several areas may share one iopt_pages (COPY,
 * and the pieces of a split area); each holds a reference on it.
 *
 * struct iopt_pages is one run of user memory (a VA range of an address space, or a range of a
 * file). It never touches that memory until somebody needs the pages pinned (a domain or an
 * access): then iopt_pages_pin() pins page ranges on behalf of pin users, and each user page is
 * pinned once in the mm's ledger for as long as at least one user covers it.
 *
 * Domains. Paging domains (struct iommu_domain of the IOMMU core) attached to the table with
 * iopt_table_add_domain() mirror every area: while at least one domain is attached, every area
 * holds its pages pinned through its own pin user (area->pin) and is mapped in every domain at
 * its IOVA, to the host address of the pinned memory. The pins belong to the iopt_pages, not to
 * the domains, so two domains pin a page once. Attaching fills the new domain with every area
 * (all or nothing); MAP then pins and maps eagerly, UNMAP unmaps from every domain and unpins.
 * Each domain's aperture becomes reserved IOVA (owner: the domain) and the table's alignment
 * rises to the largest of the domains' smallest page sizes.
 *
 * Accesses (iommufd_access, access.c) are the other kind of pinning user: each attached access
 * is listed in accesses (its iova_alignment counts into the table's alignment) and pins ranges
 * of areas through pin users of its own, counted in area->num_accesses. An unmap that meets an
 * area with access pins marks it prevent_access, drops its locks and tells every access to
 * let go of the range (iommufd_access_notify_unmap()), then tries again; an area with access
 * pins is never split.
 *
 * Locks (iopt_lock_iova()) are the HW queues' hold on IOVA: a locked area (num_locks) may be
 * neither unmapped (EBUSY) nor split, so the host address behind the IOVA stays what the queue
 * was given for as long as it lives. A lock does not pin by itself: the queue's parent domain
 * does (every area is pinned while a domain is attached).
 *
 * Locking, in order: iopt->domains_rwsem -> iopt->iova_rwsem -> pages->mutex -> mm->pin_lock.
 *   domains_rwsem protects domains and nr_domains. Writers: adding and removing a domain.
 *   Readers: MAP, COPY and UNMAP, which must see one stable set of domains to fill or empty.
 *   iova_rwsem protects every tree of the io_pagetable (the areas' with its spare nodes),
 *   iova_alignment and disable_large_pages. Readers (IOVA_RANGES, COPY's source walk, the
 *   accesses' pin and rw walks) take it shared: walking the areas' tree only reads it.
 *   pages->mutex protects the pin users of one iopt_pages and its file mapping.
 * An area's iova, pages, pages_byte, iommu_prot and pin change only under iova_rwsem held for
 * write. The IOMMU core's group->mutex is never held together with these locks: iommufd
 * calls the core's attach paths with no iopt lock held, and the core never calls iommufd.
 */
#ifndef UIOMMU_IOMMUFD_IO_PAGETABLE_H
#define UIOMMU_IOMMUFD_IO_PAGETABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/interval_tree.h"
#include "lib/rangemap.h"
#include "lib/lockdep.h"
#include "lib/rcu.h"
#include "mm/account.h"
#include "mm/mm.h"

struct device;

struct iommu_domain;
struct iommufd_dmabuf;
struct iopt_pages_dmabuf_track;

struct io_pagetable {
	struct uiommu_rwsem domains_rwsem; /* protects domains, nr_domains; order: 0 */
	struct iommu_domain **domains;     /* attached paging domains, not references */
	unsigned int nr_domains;
	unsigned int domains_cap;          /* allocated slots of domains */
	struct uiommu_rwsem iova_rwsem; /* protects everything below; order: 1 */
	struct rangemap areas;                    /* struct iopt_area, by iova */
	struct interval_tree_root reserved_itree; /* struct iopt_reserved::node */
	struct interval_tree_root allowed_itree;  /* struct iopt_allowed::node */
	uint64_t iova_alignment; /* every area's IOVA, length and page offset is aligned to it */
	bool disable_large_pages; /* IOMMU_OPTION_HUGE_PAGES = 0 */
	struct iopt_access **accesses; /* attached accesses, not references */
	unsigned int nr_accesses;
	unsigned int accesses_cap;
	/*
	 * What IOVA_RANGES answers, for readers that take no lock (iopt_usable_rcu()): a
	 * snapshot, valid while its gen is usable_gen. Writers of reserved_itree or
	 * iova_alignment only raise usable_gen (under iova_rwsem for write), so a change that is
	 * undone (a failed attach's reserved regions) allocates and frees nothing; the next
	 * locked reader replaces a stale snapshot (one wins the compare-exchange, under
	 * iova_rwsem shared) and the old one is freed after a grace period.
	 */
	_Atomic(struct iopt_usable *) usable;
	atomic_ulong usable_gen;
};

/* A usable IOVA range, as IOVA_RANGES reports it. */
struct iopt_usable_range {
	uint64_t start, last;
};

/* The most ranges a snapshot holds: a table with more answers through the locked walk. */
#define IOPT_USABLE_RCU_MAX 8

/*
 * An immutable snapshot of the usable IOVA ranges (the holes of reserved_itree) and the
 * alignment, as they were under iova_rwsem when it was built.
 */
struct iopt_usable {
	struct rcu_head rcu;
	unsigned long gen;       /* the usable_gen it was built at */
	uint64_t iova_alignment;
	unsigned long nr;
	struct iopt_usable_range ranges[];
};

/* An access's membership of tables: what the table needs to know of it. */
struct iopt_access {
	uint64_t iova_alignment; /* constant */
	uint32_t obj_id;         /* the access object's ID, to take a hold on it; constant */
};

enum iopt_address_type {
	IOPT_ADDRESS_USER,
	IOPT_ADDRESS_FILE,
};

struct iopt_pages {
	atomic_int refs;           /* iopt_pages_get()/iopt_pages_put(): areas, in-flight copies */
	enum iopt_address_type type;
	bool writable;             /* may be mapped with IOMMU_WRITE */
	uint64_t length;           /* bytes, from start_byte of the first page */
	uint64_t start_byte;       /* offset of the first byte in the first page */
	uint64_t npages;           /* pages spanned */
	struct uiommu_mm *source_mm; /* whose memory; a reference */
	uint64_t uptr;             /* USER: page-aligned address of the first page */
	int file_fd;               /* FILE: our own duplicate of the caller's fd */
	uint64_t file_start;       /* FILE: page-aligned offset of the first page */
	struct uiommu_file_pins *file_pins; /* FILE: the file's pin ledger (a reference) */
	/*
	 * Whom the pins are charged to (pages.c): account_mode, source_user (a reference) and
	 * source_mm. Changed only by IOAS_CHANGE_PROCESS, which holds every IOAS's iova_rwsem
	 * for write and pages->mutex; every pin and unpin holds an iova_rwsem and pages->mutex.
	 */
	enum uiommu_account_mode account_mode;
	struct uiommu_user *source_user;
	struct uiommu_mutex mutex; /* protects pin_users, pinned, file_map; order: 2 */
	struct interval_tree_root pin_users; /* struct iopt_pages_pin: page index ranges */
	uint64_t pinned;           /* pages covered by at least one pin user */
	void *file_map;            /* FILE: our shared mapping of the span while pinned, or NULL */
	struct iommufd_dmabuf *dmabuf; /* FILE: the dma-buf whose memfd it is (a reference), or NULL */
	/* dmabuf: on the dma-buf's list of pages (dmabuf.c; under the dma-buf's lock) */
	struct iopt_pages *dmabuf_next, **dmabuf_pprev;
	/* dmabuf: revoked (no domain maps it, none will; pages->mutex); forever once set */
	bool dmabuf_revoked;
	/* dmabuf: the (area, domain) pairs that map it now, for revocation (pages->mutex) */
	struct iopt_pages_dmabuf_track *dmabuf_tracks;
};

/* One pin user's hold on [node.start, node.last] page indexes of an iopt_pages. */
struct iopt_pages_pin {
	struct interval_tree_node node; /* in pages->pin_users */
};

struct iopt_area {
	struct {
		uint64_t start, last;
	} iova;                         /* the IOVA range; its key in iopt->areas */
	struct iopt_pages *pages;       /* a reference, iopt_pages_put() at area free */
	uint64_t pages_byte;            /* offset in pages (from its first page) of iova.start */
	int iommu_prot;
	struct iopt_pages_pin pin;      /* held while the table has domains */
	bool pinned;                    /* pin is in pages->pin_users */
	atomic_uint num_accesses;       /* access pins through this area */
	unsigned int num_locks;         /* HW queues holding this IOVA (iova_rwsem): no unmap */
	bool prevent_access;            /* being unmapped: no new access pins or rw (iova_rwsem) */
};

struct iopt_reserved {
	struct interval_tree_node node;
	const void *owner;
};

struct iopt_allowed {
	struct interval_tree_node node;
};

/* IOMMU protections an area may carry (the same values as iommu/iommu.h). */
#ifndef IOMMU_READ
#define IOMMU_READ (1 << 0)
#define IOMMU_WRITE (1 << 1)
#endif

/* iopt_map_*() flags. */
#define IOPT_ALLOC_IOVA 1
#define IOPT_ACCOUNT_MM 2 /* new pages charge the mm, not the user (RLIMIT_MODE = 1) */

static inline uint64_t iopt_area_length(const struct iopt_area *area)
{
	return area->iova.last - area->iova.start + 1;
}

/* Every area of @iopt that overlaps [s, l], in IOVA order. Caller holds iova_rwsem. */
#define iopt_for_each_area(area, it, iopt, s, l) rangemap_for_each(area, it, &(iopt)->areas, s, l)

void iopt_init_table(struct io_pagetable *iopt);
void iopt_destroy_table(struct io_pagetable *iopt);

int iopt_map_user_pages(struct io_pagetable *iopt, struct uiommu_mm *mm, uint64_t *iova,
			uint64_t uptr, uint64_t length, int iommu_prot, unsigned int flags);
int iopt_map_file_pages(struct io_pagetable *iopt, struct uiommu_mm *mm, uint64_t *iova,
			int fd, uint64_t start, uint64_t length, int iommu_prot,
			unsigned int flags);
int iopt_copy_iova(struct io_pagetable *dst, struct io_pagetable *src, uint64_t *dst_iova,
		   uint64_t src_iova, uint64_t length, int iommu_prot, unsigned int flags);
int iopt_unmap_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length,
		    uint64_t *unmapped);
int iopt_unmap_all(struct io_pagetable *iopt, uint64_t *unmapped);
int iopt_cut_iova(struct io_pagetable *iopt, const uint64_t *iovas, unsigned int num);
int iopt_lock_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length);
void iopt_unlock_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length);

int iopt_table_add_domain(struct io_pagetable *iopt, struct iommu_domain *domain);
void iopt_table_remove_domain(struct io_pagetable *iopt, struct iommu_domain *domain);

int iopt_set_allow_iova(struct io_pagetable *iopt, struct interval_tree_root *fresh);
void iopt_allowed_free(struct interval_tree_root *root);
int iopt_reserve_iova(struct io_pagetable *iopt, uint64_t start, uint64_t last,
		      const void *owner);
void iopt_remove_reserved_iova(struct io_pagetable *iopt, const void *owner);
int iopt_table_enforce_dev_resv_regions(struct io_pagetable *iopt, struct device *dev);
int iopt_disable_large_pages(struct io_pagetable *iopt);
void iopt_enable_large_pages(struct io_pagetable *iopt);
bool iopt_large_pages_disabled(struct io_pagetable *iopt);

/*
 * The usable IOVA ranges (the complement of the reserved ranges) written into @ranges up to
 * @max entries; returns how many there are in all. Caller holds iova_rwsem.
 */
unsigned long iopt_get_usable_ranges(struct io_pagetable *iopt,
				     struct iopt_usable_range *ranges, unsigned long max);
/*
 * Publishes the snapshot of what iopt_get_usable_ranges() and iova_alignment say now, unless
 * one is there. Best effort: without memory there is none, and lock-free readers fall back to
 * the locked walk. Caller holds iova_rwsem (shared is enough).
 */
void iopt_usable_publish(struct io_pagetable *iopt);
/*
 * The snapshot if it is current, or NULL. Caller is inside rcu_read_lock(); the snapshot lives
 * until its end. A writer raises the generation before it lets go of iova_rwsem, so a reader
 * that finds it unchanged answers what a locked reader before that writer would have.
 */
static inline const struct iopt_usable *iopt_usable_rcu(struct io_pagetable *iopt)
{
	const struct iopt_usable *usable = atomic_load_explicit(&iopt->usable,
								 memory_order_acquire);

	if (!usable || usable->gen != atomic_load_explicit(&iopt->usable_gen, memory_order_acquire))
		return NULL;
	return usable;
}
/* True if every area is a MAP_FILE area of a file (a dma-buf is not); IOAS_CHANGE_PROCESS. */
bool iopt_only_file_areas(struct io_pagetable *iopt);
/*
 * Appends the iopt_pages of every area (not references) to *@list of *@num entries, growing
 * it; 0 or -ENOMEM with the list as it was. Caller holds iova_rwsem.
 */
int iopt_collect_pages(struct io_pagetable *iopt, struct iopt_pages ***list, size_t *num);

struct iopt_pages *iopt_alloc_user_pages(struct uiommu_mm *mm, uint64_t uptr, uint64_t length,
					 bool writable);
struct iopt_pages *iopt_alloc_file_pages(struct uiommu_mm *mm, int fd, uint64_t start,
					 uint64_t length, bool writable);
struct iopt_pages *iopt_pages_get(struct iopt_pages *pages);
void iopt_pages_put(struct iopt_pages *pages);
int iopt_pages_pin(struct iopt_pages *pages, struct iopt_pages_pin *pin, uint64_t first,
		   uint64_t last);
void iopt_pages_unpin(struct iopt_pages *pages, struct iopt_pages_pin *pin);
void iopt_pages_pin_shrink(struct iopt_pages *pages, struct iopt_pages_pin *pin, uint64_t first,
			   uint64_t last);
int iopt_pages_host_addr(struct iopt_pages *pages, uint64_t index, uint64_t *addr);
bool iopt_pages_account_differs(struct iopt_pages *pages, struct uiommu_user *user,
				struct uiommu_mm *mm);
uint64_t iopt_pages_npinned(struct iopt_pages *pages);
void iopt_pages_account_move(struct iopt_pages *pages, struct uiommu_user *user,
			     struct uiommu_mm *mm);
void iopt_pages_dmabuf_revoke(struct iopt_pages *pages);
uint64_t iopt_pages_host_contig(struct iopt_pages *pages, uint64_t index, uint64_t max);

int iopt_add_access(struct io_pagetable *iopt, struct iopt_access *access);
void iopt_remove_access(struct io_pagetable *iopt, struct iopt_access *access);
/* access.c: ask every access of @iopt to unpin what it holds in [iova, last]. No lock held. */
void iommufd_access_notify_unmap(struct io_pagetable *iopt, uint64_t iova, uint64_t last);

#endif
