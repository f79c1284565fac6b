// SPDX-License-Identifier: MIT
/*
 * The device DMA engine: a device emulator's DMA through the emulated IOMMU.
 *
 * What it models. A PCIe function emits memory requests tagged with its RID and, optionally, a
 * PASID. The IOMMU picks the domain attached at (RID, PASID), translates the address (its IOTLB
 * first, the page table on a miss), checks the leaf's permissions and either lets the request
 * through or faults. A device with PRI, behind a domain that can take I/O page faults, answers a
 * translation fault by sending a page request and waiting for the page response; SUCCESS means
 * "try again". Here the request is uiommu_dma_{read,write,xfer,submit}(), the memory is this
 * process's (a "physical address" is a host address), and the copy runs under the fault trap of
 * src/mm/ so that memory the emulator has since unmapped gives EFAULT instead of a crash.
 *
 * Data model. A handle (struct uiommu_dma_dev) holds a reference on a core struct device and
 * on the group it was in when opened; after the device leaves that group (unplug, selftest mock
 * destroy) every request fails ENODEV. A handle keeps its outstanding page requests, its fault
 * log (a ring of DMA_ENGINE_FAULT_LOG events, newest kept) and, from its first asynchronous
 * request on, a worker thread with a run queue.
 *
 * A transfer, step by step (dma_xfer_run()). Under the group mutex (so that no detach, replace
 * or domain free completes while the transfer reads through the domain: the drain of in-flight
 * DMA a real detach implies; the DMA never calls the core's attach paths, so this cannot
 * deadlock), the domain at the request's PASID is resolved, then pages are taken in IOVA order:
 * each page is translated and its permission checked before any byte of it is copied, and
 * physically contiguous pages are gathered into one run copied with one memcpy. A page that
 * fails stops the transfer there: the run before it is copied first, so `done` counts exactly
 * the bytes of every page before the faulting one, and no byte of the faulting page or beyond
 * moves. The translation itself:
 *   - paging domains with pages of 4 KiB or more: the IOTLB model of the device's instance
 *     (iotlb.c): a hit needs no walk, even if stale (that is the IOTLB's semantics, and what
 *     strict invalidation prevents); a miss walks and fills (a write's walk sets the leaf's
 *     dirty bit in a tracking domain, and a write through an entry cached clean walks again);
 *   - domains that translate per requester (the dma_walk_dev op: SMMUv3 nested domains, whose
 *     walk needs the device's StreamID and PASID): that walk, whatever the domain's type;
 *   - paging domains whose driver walks for devices (the dma_walk domain op) and that the
 *     IOTLB cannot serve (the selftest mock's 2 KiB pages, which an IOTLB of 4 KiB entries
 *     cannot hold; the mock's domains when the instance has no IOTLB): that walk, which also
 *     reports the leaf's permissions and size and marks it dirty on a write (its dma_walk_run
 *     op, where the driver has it, walks a run of leaves of one permission and contiguous
 *     output under one hold of its lock, and stops before the leaf that differs);
 *   - other paging domains: iova_to_phys() per smallest page, read-write;
 *   - nested domains whose driver walks both stages (VT-d: a pgsize_bitmap of 4 KiB): the
 *     IOTLB too, whose walker is the two-stage walk and whose entries stay until the user's
 *     invalidation (or a change of the parent) removes them;
 *   - identity: the IOVA is the address; SVA: likewise, the process's own address space (a
 *     trap while copying is then a translation miss, which the SVA handler may resolve);
 *   - blocked and anything else: every access faults.
 *
 * Batches and copies (uiommu_dma_batch()). A batch runs its ops in order under one hold of the
 * group mutex: the domain at a PASID is resolved once, and each direction's dma_ctx keeps the
 * pages it translated (DMA_CTX_SLOTS of them), each reused while the IOTLB's entry for it is
 * unchanged (iotlb_stamp(): the entry's set's sequence count, which a removal or an eviction
 * moves, checked inline with one load; taken only while the entry still says what the
 * translation kept), so no translation outlives an invalidation. The caches of the last batch
 * are kept for copy runs (struct dma_warm), under the same rule.
 * Each op runs as a dma_xfer through a shadow request, so the fault log, page requests and the
 * retry rule are the single transfers'; a page request drops the mutex and the batch resumes
 * at the same op. A COPY (dma_copy_step()) walks source and destination together in steps
 * that end at the nearer page end of either side, checks the source page for read and the
 * destination page for write before the step moves, and copies runs contiguous on both sides
 * with one host copy; x->op names the side of a fault (READ: the source) for the log, the page
 * request's permission and the caller's fault_op. A COPY with UIOMMU_DMA_RECORD then writes its
 * completion record as a WRITE through a second shadow request.
 *
 * The batch's fast path (dma_batch_fast()): an op whose pages, on every side, are all in the
 * translation caches, valid, permitted and contiguous in host memory, runs as one host copy per
 * side with its results written at once; any other op runs the general way above from its
 * first byte. All or nothing, so the general way meets exactly the faults it would have met.
 *
 * Page requests. A miss (or a permission miss) in a domain with an iopf_handler, unless the
 * request says UIOMMU_DMA_NO_PRI, drops the group mutex and sends a page request: a one-fault
 * group (LAST_PAGE, PASID_VALID when it has a PASID, the access's permission, a grpid unique
 * among the device's outstanding requests) through iommu_report_device_fault(). The fault layer
 * hands every page response to the sink we register with it (iopf_response_sink_register(),
 * at the first open), dma_engine_page_response(), which finds the request by (device, PASID,
 * grpid), records the code and wakes the waiter: a synchronous caller sleeping on the handle's
 * condition variable, or, for an asynchronous request, the worker (the request goes back on its
 * run queue). SUCCESS retries from the faulting page; the same page missing again after a
 * SUCCESS is a fault, so a handler that answers SUCCESS without mapping cannot make us loop.
 * INVALID gives EFAULT, FAILURE EIO, no answer before the deadline ETIMEDOUT (the request is
 * then forgotten: a late answer matches nothing). The request is registered before it is
 * reported, so an answer given inside iommu_report_device_fault() (a handler that responds at
 * once) is not lost.
 *
 * Locking. dma_engine_lock (global, a plain mutex because condition variables wait on it) is a
 * leaf: it protects the list of handles and, in each handle, the page requests, the fault log,
 * the run queue and the worker's state; nothing is called with it held except the condition
 * variables. The group mutex is held over a transfer's translation and copy, never with
 * dma_engine_lock and never while waiting for a page response. Order where both appear:
 * group->mutex -> (driver and IOTLB locks); dma_engine_lock alone.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/queue.h>
#include <time.h>

#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/lockdep.h"
#include "lib/fail.h"
#include "lib/thread.h"
#include "machine/dma-engine.h"
#include "machine/sysfs.h"
#include "machine/topology.h"
#include "mm/mm.h"

enum dma_prq_state {
	DMA_PRQ_NONE,
	DMA_PRQ_WAITING,   /* sent, in the handle's prqs list */
	DMA_PRQ_ANSWERED,  /* code holds the response */
	DMA_PRQ_TIMEDOUT,
	DMA_PRQ_CANCELLED, /* the handle is closing */
};

struct dma_xfer;

/* A page request in flight. Everything under dma_engine_lock. */
struct dma_prq {
	TAILQ_ENTRY(dma_prq) node; /* in uiommu_dma_dev::prqs while WAITING */
	uint32_t pasid;
	uint32_t grpid;
	enum dma_prq_state state;
	uint32_t code;             /* enum iommu_page_response_code, once ANSWERED */
	uint64_t deadline_ns;      /* CLOCK_MONOTONIC; 0: none */
	struct dma_xfer *async;    /* requeued on an answer; NULL: a synchronous waiter */
};

/* A transfer in progress: the caller's request and where it stands. */
struct dma_xfer {
	struct uiommu_dma_req *req;
	struct uiommu_dma_dev *e;
	uint32_t pasid;            /* IOMMU_NO_PASID for the RID */
	unsigned int op;           /* the access under way (a COPY's READ or WRITE side) */
	uint64_t fault_iova;       /* where it stopped, once req->error is a fault */
	uint64_t copy_src;         /* a COPY's source IOVA (req->iova is its destination) */
	uint64_t retry_page;       /* answered SUCCESS: a second miss here faults; or UINT64_MAX */
	uint64_t miss_iova;        /* where the page request was for */
	unsigned int miss_reason;  /* UIOMMU_DMA_FAULT_UNMAPPED or _PERM */
	bool trapped;              /* a batch's host trap is armed: copies go under it */
	struct dma_prq prq;
	TAILQ_ENTRY(dma_xfer) node; /* in uiommu_dma_dev::runq; dma_engine_lock */
};

struct uiommu_dma_dev {
	struct device *dev;          /* device_get() at open; constant */
	struct iommu_group *group;   /* iommu_group_get() at open; constant */
	/* The IOTLB of the device's IOMMU instance (NULL: none could be had); constant. IOTLBs
	 * live as long as the process, so the handle may keep the pointer. */
	struct iotlb *tlb;
	_Atomic unsigned int timeout_ms;
	LIST_ENTRY(uiommu_dma_dev) node; /* in dma_engine_devs; dma_engine_lock */
	/* dma_engine_lock protects everything below. */
	struct uiommu_cond cond;         /* page responses, run queue changes, completions */
	TAILQ_HEAD(, dma_prq) prqs;
	unsigned int nr_prqs;
	struct uiommu_dma_fault faults[DMA_ENGINE_FAULT_LOG];
	unsigned int fault_head;     /* oldest; free-running, modulo DMA_ENGINE_FAULT_LOG */
	unsigned int fault_tail;
	bool fault_lost;
	TAILQ_HEAD(, dma_xfer) runq;
	unsigned int nr_async;       /* submitted and not yet completed */
	bool worker_started;
	bool stopping;
	pthread_t worker;
	/*
	 * The device's SVA bond with this process (uiommu_dma_dev_sva_bind()) and the binds made
	 * through this handle. sva_lock protects both; order: sva_lock -> iommu_sva_lock ->
	 * group->mutex. Never taken with dma_engine_lock.
	 */
	struct uiommu_mutex sva_lock;
	struct iommu_sva *sva;
	unsigned int sva_binds;
	/*
	 * The translation caches of the last batch that ran in IOTLB mode (dma_warm_save()), for
	 * dma_engine_copy_run(). The group mutex protects it (its place in the order: after
	 * sva_lock, never held with dma_engine_lock); allocated at the first save, freed at close.
	 */
	struct dma_warm *warm;
};

UIOMMU_MUTEX_DEFINE(dma_engine_lock); /* a leaf; see the top */
static LIST_HEAD(, uiommu_dma_dev) dma_engine_devs = LIST_HEAD_INITIALIZER(dma_engine_devs);
static uint32_t dma_engine_next_grpid; /* dma_engine_lock */

#define DMA_PRQ_GRPID_MASK 0x1ffu /* PCIe PRI: 9-bit page request group index */

static uint64_t dma_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- handles ------------------------------------------------------------------------------ */

static void dma_engine_page_response(struct device *dev, const struct iommu_page_response *msg);

static pthread_once_t dma_engine_sink_once = PTHREAD_ONCE_INIT;
static int dma_engine_sink_err;

static void dma_engine_sink_register(void)
{
	dma_engine_sink_err = iopf_response_sink_register(dma_engine_page_response);
}

struct uiommu_dma_dev *dma_engine_dev_open(struct device *dev)
{
	struct uiommu_dma_dev *e;
	struct iommu_group *group;
	int ret;

	/* Before the first handle, so before any page request of ours: no answer is missed. */
	pthread_once(&dma_engine_sink_once, dma_engine_sink_register);
	if (dma_engine_sink_err)
		return ERR_PTR(dma_engine_sink_err);
	group = iommu_group_get(dev);
	if (!group)
		return ERR_PTR(-ENODEV);
	e = uiommu_zalloc(sizeof(*e));
	if (!e) {
		ret = -ENOMEM;
		goto err_put_group;
	}
	if (uiommu_should_fail()) {
		ret = -ENOMEM;
		goto err_free;
	}
	uiommu_cond_init(&e->cond);
	device_get(dev); /* Pairs with device_put() in uiommu_dma_dev_close(). */
	uiommu_mutex_init(&e->sva_lock);
	e->dev = dev;
	if (dev->iommu) {
		e->tlb = iotlb_for_iommu(dev->iommu);
		if (IS_ERR(e->tlb))
			e->tlb = NULL; /* translations then walk every time */
	}
	e->group = group; /* The reference moves into the handle. */
	atomic_init(&e->timeout_ms, DMA_ENGINE_DEFAULT_TIMEOUT_MS);
	TAILQ_INIT(&e->prqs);
	TAILQ_INIT(&e->runq);
	uiommu_mutex_lock(&dma_engine_lock);
	LIST_INSERT_HEAD(&dma_engine_devs, e, node);
	uiommu_mutex_unlock(&dma_engine_lock);
	return e;

err_free:
	uiommu_free(e);
err_put_group:
	iommu_group_put(group);
	return ERR_PTR(ret);
}

static struct uiommu_dma_dev *dma_engine_ret_ptr(struct uiommu_dma_dev *e)
{
	if (IS_ERR(e)) {
		errno = (int)-PTR_ERR(e);
		return NULL;
	}
	return e;
}

UIOMMU_EXPORT struct uiommu_dma_dev *uiommu_dma_dev_open(const char *bdf)
{
	struct device *dev;
	int ret;

	if (!bdf) {
		errno = EINVAL;
		return NULL;
	}
	ret = sysfs_machine_boot();
	if (ret) {
		errno = -ret;
		return NULL;
	}
	dev = topology_find_device(bdf);
	if (!dev) {
		errno = ENOENT;
		return NULL;
	}
	return dma_engine_ret_ptr(dma_engine_dev_open(dev));
}

UIOMMU_EXPORT int uiommu_dma_dev_set_timeout(struct uiommu_dma_dev *e, unsigned int timeout_ms)
{
	if (!e) {
		errno = EINVAL;
		return -1;
	}
	atomic_store_explicit(&e->timeout_ms, timeout_ms, memory_order_relaxed);
	return 0;
}

/* ---- the fault log ------------------------------------------------------------------------ */

static int dma_fault_errno(unsigned int reason)
{
	switch (reason) {
	case UIOMMU_DMA_FAULT_PERM:
		return EACCES;
	case UIOMMU_DMA_FAULT_NO_DOMAIN:
		return ENODEV;
	case UIOMMU_DMA_FAULT_PRQ_FAILURE:
		return EIO;
	case UIOMMU_DMA_FAULT_PRQ_TIMEOUT:
		return ETIMEDOUT;
	default:
		return EFAULT;
	}
}

/* The transfer stops at @iova for @reason: the request's error, and an event in the log. */
static void dma_xfer_fault(struct dma_xfer *x, uint64_t iova, unsigned int reason)
{
	struct uiommu_dma_dev *e = x->e;
	struct uiommu_dma_fault *f;

	x->req->error = dma_fault_errno(reason);
	x->fault_iova = iova;
	uiommu_mutex_lock(&dma_engine_lock);
	if (e->fault_tail - e->fault_head == DMA_ENGINE_FAULT_LOG) {
		e->fault_head++;
		e->fault_lost = true;
	}
	f = &e->faults[e->fault_tail++ % DMA_ENGINE_FAULT_LOG];
	*f = (struct uiommu_dma_fault){
		.iova = iova,
		.pasid = x->pasid,
		.op = x->op,
		.reason = reason,
		.flags = x->pasid != IOMMU_NO_PASID ? UIOMMU_DMA_FAULT_PASID_VALID : 0,
	};
	uiommu_mutex_unlock(&dma_engine_lock);
}

UIOMMU_EXPORT ssize_t uiommu_dma_dev_read_faults(struct uiommu_dma_dev *e,
						 struct uiommu_dma_fault *buf, size_t n)
{
	size_t i = 0;

	if (!e || (n && !buf) || n > SSIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&dma_engine_lock);
	for (; i < n && e->fault_head != e->fault_tail; i++) {
		buf[i] = e->faults[e->fault_head++ % DMA_ENGINE_FAULT_LOG];
		if (e->fault_lost) {
			buf[i].flags |= UIOMMU_DMA_FAULT_LOST;
			e->fault_lost = false;
		}
	}
	uiommu_mutex_unlock(&dma_engine_lock);
	return (ssize_t)i;
}

/* ---- translation and copy ----------------------------------------------------------------- */

enum dma_mode {
	DMA_MODE_IOTLB,    /* paging, pages >= 4 KiB: the instance's IOTLB */
	DMA_MODE_DMA_WALK, /* the IOTLB cannot serve: the domain's dma_walk op */
	DMA_MODE_DEV_WALK, /* the domain translates per requester: its dma_walk_dev op */
	DMA_MODE_WALK,     /* other paging domains: iova_to_phys() */
	DMA_MODE_DIRECT,   /* identity, SVA: the IOVA is the address */
	DMA_MODE_BLOCKED,
};

/*
 * A direction's device translation cache: DMA_CTX_SLOTS pages, direct-mapped by page number.
 * A device running a queue touches a few pages in turn (a copy's source or destination, the
 * page of the completion records), and a 64 KiB copy sixteen on each side, so one entry missed
 * at every switch and every page.
 */
#define DMA_CTX_SLOTS 64

struct dma_ctx_way {
	uint64_t page;             /* IOVA page; UINT64_MAX: empty */
	phys_addr_t phys;          /* its physical page */
	struct iotlb_stamp stamp;  /* of its IOTLB entry: checked inline, one load */
	int prot;
};

/*
 * How one direction of one visit translates. In IOTLB mode it keeps the pages it fetched (the
 * device's own translation cache, DMA_CTX_SLOTS entries, a page in the slot of its number):
 * the next access to one of them needs no IOTLB lookup while its IOTLB entry is unchanged
 * (iotlb_stamp()), so a batch of transfers through the same pages costs one lookup per page,
 * not one per access.
 */
struct dma_ctx {
	struct iommu_domain *domain;
	struct iotlb *tlb;
	enum dma_mode mode;
	uint64_t granule;          /* DMA_MODE_WALK */
	struct device *dev;        /* DMA_MODE_DEV_WALK: the requester */
	uint32_t pasid;
	bool write;
	bool cached;               /* DMA_MODE_IOTLB: some slot holds a page */
	struct dma_ctx_way ways[DMA_CTX_SLOTS];
};

/*
 * A batch's two translation caches kept past its visit, with the domain and PASID they are of.
 * Each page in them still says by its stamp whether its IOTLB entry is unchanged, so keeping
 * them is safe as long as the domain is the one now attached at @pasid (checked at each use).
 * "The one" is told by its id, not by its address: a domain freed without an invalidation
 * (nothing flushes a domain at its free: its entries linger under an id no domain will have
 * again) and another allocated at the same address would match the pointer while the stamps
 * of the old one's lingering entries still hold. Ids are never reused (iommu.c).
 */
struct dma_warm {
	struct iommu_domain *domain; /* for the refills' walks, once @domid matched */
	uint32_t domid;
	uint32_t pasid;
	struct dma_ctx rd, wr;
};

/* The domain at @pasid of the handle's device; the group mutex is held. NULL: none. */
static struct iommu_domain *dma_engine_domain(struct uiommu_dma_dev *e, uint32_t pasid)
{
	struct iommu_domain *rid = __iommu_group_domain_for_dev(e->group, e->dev);

	struct iommu_domain *domain;

	if (!rid || pasid == IOMMU_NO_PASID)
		return rid;
	/* PASID attach and detach run under the group mutex too: stable while we hold it. */
	domain = iommu_get_domain_for_dev_pasid(e->dev, pasid, 0);
	return IS_ERR(domain) ? NULL : domain;
}

static void dma_ctx_init(struct dma_ctx *c, struct uiommu_dma_dev *e, struct iommu_domain *domain,
			 uint32_t pasid, bool write)
{
	unsigned int type = iommu_domain_type(domain);
	uint64_t min_pg = domain->pgsize_bitmap & -domain->pgsize_bitmap;

	c->domain = domain;
	c->write = write;
	c->tlb = NULL;
	c->cached = false;
	if (type == IOMMU_DOMAIN_IDENTITY || (type & __IOMMU_DOMAIN_SVA)) {
		c->mode = DMA_MODE_DIRECT;
		return;
	}
	if (domain->ops && domain->ops->dma_walk_dev) {
		c->mode = DMA_MODE_DEV_WALK;
		c->dev = e->dev;
		c->pasid = pasid;
		return;
	}
	/*
	 * A nested domain translates through its IOTLB when its driver walks both stages for it
	 * (its pgsize_bitmap says what an IOTLB entry may hold); else it translates nothing here.
	 */
	if (type == IOMMU_DOMAIN_NESTED && min_pg >= IOTLB_PAGE_SIZE && e->tlb) {
		c->tlb = e->tlb;
		c->mode = DMA_MODE_IOTLB;
		return;
	}
	if (!(type & __IOMMU_DOMAIN_PAGING)) {
		c->mode = DMA_MODE_BLOCKED; /* blocked, or a nested stage that translates nothing */
		return;
	}
	/* The common case first: a paging domain whose pages an IOTLB entry can hold. */
	if (min_pg >= IOTLB_PAGE_SIZE && e->tlb) {
		c->tlb = e->tlb;
		c->mode = DMA_MODE_IOTLB;
		return;
	}
	if (domain->ops->dma_walk) {
		c->mode = DMA_MODE_DMA_WALK;
		return;
	}
	c->mode = DMA_MODE_WALK;
	c->granule = min_pg ? min_pg : IOTLB_PAGE_SIZE;
}

/*
 * The cached page @page of @c (IOTLB mode), if it is still good for @access: its host page in
 * *@phys. The hit path of every translation in a batch, so kept to a slot index, two compares
 * and the stamp's one load.
 */
static inline bool dma_ctx_hit(const struct dma_ctx *c, uint64_t page, int access,
			       phys_addr_t *phys)
{
	const struct dma_ctx_way *w = &c->ways[(page >> IOTLB_PAGE_SHIFT) % DMA_CTX_SLOTS];

	if (w->page != page || (w->prot & access) != access || !iotlb_stamp_valid(&w->stamp))
		return false;
	*phys = w->phys;
	return true;
}

/*
 * Is all of [@iova, @iova + @len) (len > 0, not wrapping) in @c's cached pages, good for
 * @access and one run of host memory? Then *@phys is @iova's host address. Touches nothing on
 * a miss: the caller then goes the general way (dma_translate(), faults, page requests).
 */
static inline bool dma_ctx_span(const struct dma_ctx *c, uint64_t iova, size_t len, int access,
				phys_addr_t *phys)
{
	const uint64_t mask = IOTLB_PAGE_SIZE - 1;
	uint64_t page = iova & ~mask;
	uint64_t pages = ((iova + (len - 1)) & ~mask) - page; /* bytes past the first page */
	phys_addr_t base, next;

	if (!c->cached || !dma_ctx_hit(c, page, access, &base))
		return false;
	for (uint64_t off = IOTLB_PAGE_SIZE; off <= pages; off += IOTLB_PAGE_SIZE)
		if (!dma_ctx_hit(c, page + off, access, &next) || next != base + off)
			return false;
	*phys = base | (iova & mask);
	return true;
}

/*
 * One translation: *@phys for @iova, *@span the bytes from @iova that it covers (to the end of
 * its page), *@prot the mapping's IOMMU_READ | IOMMU_WRITE. -EFAULT when unmapped.
 */
static int dma_translate(struct dma_ctx *c, uint64_t iova, size_t left, phys_addr_t *phys,
			 uint64_t *span, int *prot)
{
	uint64_t size;

	switch (c->mode) {
	case DMA_MODE_IOTLB: {
		uint64_t page = iova & ~(IOTLB_PAGE_SIZE - 1);
		int access = c->write ? IOMMU_WRITE : IOMMU_READ, ret;
		struct dma_ctx_way *w = &c->ways[(iova >> IOTLB_PAGE_SHIFT) % DMA_CTX_SLOTS];

		*span = IOTLB_PAGE_SIZE - (iova & (IOTLB_PAGE_SIZE - 1));
		if (!c->cached) {
			/* Emptied at the first use, not at init: most visits translate one way. */
			for (unsigned int i = 0; i < DMA_CTX_SLOTS; i++)
				c->ways[i].page = UINT64_MAX;
			c->cached = true;
		}
		if (dma_ctx_hit(c, page, 0, phys)) {
			*phys |= iova & (IOTLB_PAGE_SIZE - 1);
			*prot = w->prot;
			return 0;
		}
		ret = iotlb_fetch(c->tlb, c->domain, iova, access, phys, prot);
		/*
		 * Kept only while the IOTLB holds the entry unchanged: an invalidation that removes
		 * it, or a fill that evicts it, moves the stamp. A fill that was dropped (it raced
		 * an invalidation) leaves no entry, so no copy either.
		 */
		w->page = ret || !iotlb_stamp(c->tlb, c->domain->id, page, access,
					      *phys & ~(IOTLB_PAGE_SIZE - 1), *prot, &w->stamp) ?
				  UINT64_MAX : page;
		w->phys = *phys & ~(IOTLB_PAGE_SIZE - 1);
		w->prot = *prot;
		return ret;
	}
	case DMA_MODE_DMA_WALK:
		/* A run of leaves in one call where the driver can (its lock taken once). */
		if (c->domain->ops->dma_walk_run) {
			*phys = c->domain->ops->dma_walk_run(c->domain, iova, left, c->write, prot,
							     span);
			return *phys ? 0 : -EFAULT;
		}
		*phys = c->domain->ops->dma_walk(c->domain, iova, c->write, prot, &size);
		if (!*phys)
			return -EFAULT;
		*span = size - (iova & (size - 1));
		return 0;
	case DMA_MODE_DEV_WALK:
		*phys = c->domain->ops->dma_walk_dev(c->domain, c->dev, c->pasid, iova, c->write,
						     prot, &size);
		if (!*phys)
			return -EFAULT;
		*span = size - (iova & (size - 1));
		return 0;
	case DMA_MODE_WALK:
		*phys = iommu_iova_to_phys(c->domain, iova);
		*prot = IOMMU_READ | IOMMU_WRITE;
		*span = c->granule - (iova & (c->granule - 1));
		return *phys ? 0 : -EFAULT;
	case DMA_MODE_DIRECT:
		*phys = iova;
		*prot = IOMMU_READ | IOMMU_WRITE;
		*span = left; /* one run; a trap is narrowed down to its page afterwards */
		return 0;
	default:
		return -EFAULT;
	}
}

/* A run of IOVA-contiguous, physically contiguous bytes checked and ready to copy. */
struct dma_run {
	uint64_t iova;
	phys_addr_t phys;
	size_t len;
};

/*
 * The write-log hooks (dma_engine_write_log_set()). dma_log_lock, a reader-writer lock, protects
 * the table: a DMA write reads it (and calls the hook) under the read side, so clearing a hook
 * under the write side waits for the calls in flight. dma_log_count lets writes skip the lock
 * while no hook is set. Order: group->mutex -> dma_log_lock -> the hook's own leaf lock.
 */
struct dma_log_hook {
	struct device *dev;
	dma_engine_write_log_fn fn;
	void *priv;
};

/* Protects dma_log_hooks; the hooks run under it, so it comes before their locks. */
UIOMMU_RWSEM_DEFINE(dma_log_lock);
static struct dma_log_hook dma_log_hooks[DMA_ENGINE_MAX_LOG_HOOKS];
static atomic_uint dma_log_count;

int dma_engine_write_log_set(struct device *dev, dma_engine_write_log_fn fn, void *priv)
{
	struct dma_log_hook *free_slot = NULL;
	int rc = 0;

	uiommu_down_write(&dma_log_lock);
	for (unsigned int i = 0; i < DMA_ENGINE_MAX_LOG_HOOKS; i++) {
		if (dma_log_hooks[i].dev == dev) {
			rc = -EBUSY;
			goto out_unlock;
		}
		if (!dma_log_hooks[i].dev && !free_slot)
			free_slot = &dma_log_hooks[i];
	}
	if (!free_slot) {
		rc = -ENOSPC;
		goto out_unlock;
	}
	*free_slot = (struct dma_log_hook){ .dev = dev, .fn = fn, .priv = priv };
	atomic_fetch_add_explicit(&dma_log_count, 1, memory_order_release);
out_unlock:
	uiommu_up_write(&dma_log_lock);
	return rc;
}

void dma_engine_write_log_clear(struct device *dev)
{
	uiommu_down_write(&dma_log_lock);
	for (unsigned int i = 0; i < DMA_ENGINE_MAX_LOG_HOOKS; i++) {
		if (dma_log_hooks[i].dev == dev) {
			dma_log_hooks[i] = (struct dma_log_hook){};
			atomic_fetch_sub_explicit(&dma_log_count, 1, memory_order_relaxed);
		}
	}
	uiommu_up_write(&dma_log_lock);
}

/* Is any hook set? One load: the fast path asks once per op, not once per range. */
static inline bool dma_log_on(void)
{
	return atomic_load_explicit(&dma_log_count, memory_order_acquire);
}

/* Tells @dev's hook, if any, that [@iova, @iova + @len) was written. */
static void dma_log_written(struct device *dev, uint32_t pasid, uint64_t iova, uint64_t len)
{
	if (likely(!dma_log_on()))
		return;
	uiommu_down_read(&dma_log_lock);
	for (unsigned int i = 0; i < DMA_ENGINE_MAX_LOG_HOOKS; i++)
		if (dma_log_hooks[i].dev == dev)
			dma_log_hooks[i].fn(dma_log_hooks[i].priv, pasid, iova, len);
	uiommu_up_read(&dma_log_lock);
}

static int dma_copy(struct dma_xfer *x, phys_addr_t phys, size_t off, size_t len)
{
	char *buf = (char *)x->req->buf + off;

	int (*copy)(void *, const void *, size_t) =
		x->trapped ? uiommu_host_copy_trapped : uiommu_host_copy;

	if (x->req->op == UIOMMU_DMA_OP_WRITE)
		return copy((void *)(uintptr_t)phys, buf, len);
	return copy(buf, (const void *)(uintptr_t)phys, len);
}

/*
 * Copies @run and advances req->done past it. On a trap, copies it again host page by host page
 * to find the first page that traps: done then ends exactly there and *@bad is its IOVA.
 */
static int dma_run_flush(struct dma_xfer *x, struct dma_run *run, uint64_t *bad)
{
	struct uiommu_dma_req *req = x->req;
	size_t off = 0;

	if (!run->len)
		return 0;
	/* The one copy of the run; the narrowing below arms per page (a trap of its own). */
	if (likely(!dma_copy(x, run->phys, req->done, run->len))) {
		if (req->op == UIOMMU_DMA_OP_WRITE)
			dma_log_written(x->e->dev, x->pasid, run->iova, run->len);
		req->done += run->len;
		run->len = 0;
		return 0;
	}
	while (off < run->len) {
		phys_addr_t phys = run->phys + off;
		size_t chunk = uiommu_page_size - (phys & (uiommu_page_size - 1));

		if (chunk > run->len - off)
			chunk = run->len - off;
		if (x->req->op == UIOMMU_DMA_OP_WRITE ?
			    uiommu_host_copy((void *)(uintptr_t)phys,
					     (char *)req->buf + req->done, chunk) :
			    uiommu_host_copy((char *)req->buf + req->done,
					     (const void *)(uintptr_t)phys, chunk)) {
			*bad = run->iova + off;
			run->len = 0;
			return -EFAULT;
		}
		if (req->op == UIOMMU_DMA_OP_WRITE)
			dma_log_written(x->e->dev, x->pasid, run->iova + off, chunk);
		req->done += chunk;
		off += chunk;
	}
	run->len = 0;
	return 0; /* the trap was transient (the memory came back) */
}

/* May a miss at @iova raise a page request? (Else it is a fault.) */
static bool dma_xfer_may_prq(struct dma_xfer *x, struct iommu_domain *domain, uint64_t iova)
{
	return domain->iopf_handler && !(x->req->flags & UIOMMU_DMA_NO_PRI) &&
	       (iova & ~(IOTLB_PAGE_SIZE - 1)) != x->retry_page;
}

/*
 * The transfer stopped at @iova for @reason (x->op the access): a page request to send (1, the
 * caller sends it for x->miss_iova) or a fault recorded (0).
 */
static int dma_xfer_stop(struct dma_xfer *x, struct iommu_domain *domain, uint64_t iova,
			 unsigned int reason)
{
	/* In the process's own address space (SVA), a trap is the CPU page table's miss. */
	if (reason == UIOMMU_DMA_FAULT_HOST && (iommu_domain_type(domain) & __IOMMU_DOMAIN_SVA))
		reason = UIOMMU_DMA_FAULT_UNMAPPED;
	if (reason != UIOMMU_DMA_FAULT_HOST && dma_xfer_may_prq(x, domain, iova)) {
		if (x->req->flags & UIOMMU_DMA_NO_WAIT) {
			/* Not a fault: the caller runs it again where it may wait. */
			x->req->error = EAGAIN;
			x->fault_iova = iova;
			return 0;
		}
		x->miss_iova = iova;
		x->miss_reason = reason;
		return 1;
	}
	dma_xfer_fault(x, iova, reason);
	return 0;
}

/*
 * The domain at x->pasid, for a visit; the group mutex is held. NULL when the transfer ends
 * here (no domain, a blocking one: the fault is recorded).
 */
static struct iommu_domain *dma_xfer_domain(struct dma_xfer *x, uint64_t iova)
{
	struct iommu_domain *domain = dma_engine_domain(x->e, x->pasid);
	unsigned int type;

	if (!domain) {
		dma_xfer_fault(x, iova, UIOMMU_DMA_FAULT_NO_DOMAIN);
		return NULL;
	}
	type = iommu_domain_type(domain);
	/* A nested domain goes on: dma_ctx_init() knows whether its driver walks both stages. */
	if (type != IOMMU_DOMAIN_IDENTITY &&
	    !(type & (__IOMMU_DOMAIN_SVA | __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_NESTED))) {
		dma_xfer_fault(x, iova, UIOMMU_DMA_FAULT_BLOCKED);
		return NULL;
	}
	return domain;
}

/*
 * Moves what it can of a READ or WRITE, from req->done on, through @c (the group mutex held).
 * Return: 0 when finished (req->error set on a fault), 1 when a page request must be sent for
 * x->miss_iova first.
 */
static int dma_xfer_step(struct dma_xfer *x, struct iommu_domain *domain, struct dma_ctx *c)
{
	struct uiommu_dma_req *req = x->req;
	int access = c->write ? IOMMU_WRITE : IOMMU_READ;
	struct dma_run run = { .len = 0 };
	unsigned int reason = 0;
	uint64_t iova, bad;
	size_t left;

	x->op = req->op;
	iova = req->iova + req->done;
	left = req->len - req->done;
	while (left) {
		phys_addr_t phys;
		uint64_t span;
		int prot;

		if (dma_translate(c, iova, left, &phys, &span, &prot))
			reason = UIOMMU_DMA_FAULT_UNMAPPED;
		else if ((prot & access) != access)
			reason = UIOMMU_DMA_FAULT_PERM;
		if (unlikely(reason))
			break;
		if (span > left)
			span = left;
		if (run.len && run.phys + run.len == phys) {
			run.len += span;
		} else {
			if (dma_run_flush(x, &run, &bad)) {
				iova = bad;
				reason = UIOMMU_DMA_FAULT_HOST;
				break;
			}
			run = (struct dma_run){ .iova = iova, .phys = phys, .len = span };
		}
		iova += span;
		left -= span;
	}
	/* Every page before the faulting one moves; nothing from it on. */
	if (dma_run_flush(x, &run, &bad)) {
		iova = bad;
		reason = UIOMMU_DMA_FAULT_HOST;
	}
	if (!reason)
		return 0;
	return dma_xfer_stop(x, domain, iova, reason);
}

/*
 * Moves what it can of the request, from req->done on. Return: 0 when finished (req->error set
 * on a fault), 1 when a page request must be sent for x->miss_iova first.
 */
static int dma_xfer_run(struct dma_xfer *x)
{
	struct uiommu_dma_req *req = x->req;
	struct iommu_domain *domain;
	struct dma_ctx c;
	int ret = 0;

	iommu_group_mutex_lock(x->e->group);
	domain = dma_xfer_domain(x, req->iova + req->done);
	if (domain) {
		dma_ctx_init(&c, x->e, domain, x->pasid, req->op == UIOMMU_DMA_OP_WRITE);
		ret = dma_xfer_step(x, domain, &c);
	}
	iommu_group_mutex_unlock(x->e->group);
	return ret;
}

/* ---- device-to-device copies -------------------------------------------------------------- */

/*
 * A copy's run: source and destination both contiguous in host memory over @len bytes. The
 * shadow request of a COPY (dma_batch) keeps the destination in iova and the bytes written in
 * done; x->copy_src is the source IOVA.
 */
struct dma_copy_run {
	uint64_t dst_iova;
	phys_addr_t src, dst;
	size_t len;
};

/*
 * Copies @run and advances req->done past it. On a trap, copies it again page by page (a page
 * of either side) to find the first piece that traps and which side did: *@bad, *@bad_op.
 */
static int dma_copy_flush(struct dma_xfer *x, struct dma_copy_run *run, uint64_t *bad,
			  unsigned int *bad_op)
{
	struct uiommu_dma_req *req = x->req;
	size_t off = 0;

	if (!run->len)
		return 0;
	/* One copy; only a trap makes it go again piece by piece. */
	if (likely(!(x->trapped ? uiommu_host_copy_trapped : uiommu_host_copy)(
		    (void *)(uintptr_t)run->dst, (const void *)(uintptr_t)run->src, run->len)))
		off = run->len;
	while (off < run->len) {
		phys_addr_t s = run->src + off, d = run->dst + off;
		size_t chunk = uiommu_page_size - (s & (uiommu_page_size - 1));
		unsigned char probe;

		chunk = MIN(chunk, uiommu_page_size - (d & (uiommu_page_size - 1)));
		chunk = MIN(chunk, run->len - off);
		if (uiommu_host_copy((void *)(uintptr_t)d, (const void *)(uintptr_t)s, chunk)) {
			/* Which side is gone: the source if a byte of it cannot be read. */
			*bad_op = uiommu_host_copy(&probe, (const void *)(uintptr_t)s, 1) ?
					  UIOMMU_DMA_OP_READ : UIOMMU_DMA_OP_WRITE;
			*bad = *bad_op == UIOMMU_DMA_OP_READ ? x->copy_src + req->done + off :
							      run->dst_iova + off;
			if (off)
				dma_log_written(x->e->dev, x->pasid, run->dst_iova, off);
			req->done += off;
			run->len = 0;
			return -EFAULT;
		}
		off += chunk;
	}
	dma_log_written(x->e->dev, x->pasid, run->dst_iova, run->len);
	req->done += run->len;
	run->len = 0;
	return 0;
}

/*
 * Moves what it can of a COPY from req->done on: source pages through @rd, destination pages
 * through @wr, a step the size of the smaller of the two pages' remainders. Return as
 * dma_xfer_step().
 */
static int dma_copy_step(struct dma_xfer *x, struct iommu_domain *domain, struct dma_ctx *rd,
			 struct dma_ctx *wr)
{
	struct uiommu_dma_req *req = x->req;
	struct dma_copy_run run = { .len = 0 };
	unsigned int reason = 0, op = UIOMMU_DMA_OP_READ;
	uint64_t bad = 0;
	size_t left = req->len - req->done;
	uint64_t src = x->copy_src + req->done, dst = req->iova + req->done;
	/* What a walk of the source found past the last step (DMA_MODE_DMA_WALK), kept. */
	uint64_t src_rest = 0;
	phys_addr_t src_next = 0;
	int src_prot = 0;

	while (left) {
		phys_addr_t sp, dp;
		uint64_t sspan, dspan, span;
		int sprot, dprot;

		op = UIOMMU_DMA_OP_READ;
		bad = src;
		if (src_rest) {
			sp = src_next;
			sspan = src_rest;
			sprot = src_prot;
		} else if (dma_translate(rd, src, left, &sp, &sspan, &sprot)) {
			reason = UIOMMU_DMA_FAULT_UNMAPPED;
		} else if (!(sprot & IOMMU_READ)) {
			reason = UIOMMU_DMA_FAULT_PERM;
		}
		if (unlikely(reason))
			break;
		op = UIOMMU_DMA_OP_WRITE;
		bad = dst;
		/* No further than the source goes: a run walk marks what it covers dirty. */
		if (dma_translate(wr, dst, MIN(sspan, (uint64_t)left), &dp, &dspan, &dprot))
			reason = UIOMMU_DMA_FAULT_UNMAPPED;
		else if (!(dprot & IOMMU_WRITE))
			reason = UIOMMU_DMA_FAULT_PERM;
		if (unlikely(reason))
			break;
		span = MIN(MIN(sspan, dspan), (uint64_t)left);
		/*
		 * A walk's source run longer than this step serves the next ones: walked again
		 * from each step's start, a run over a scattered destination costs its square.
		 */
		src_rest = rd->mode == DMA_MODE_DMA_WALK && sspan > span ? sspan - span : 0;
		src_next = sp + span;
		src_prot = sprot;
		if (run.len && run.src + run.len == sp && run.dst + run.len == dp) {
			run.len += span;
		} else {
			if (dma_copy_flush(x, &run, &bad, &op)) {
				reason = UIOMMU_DMA_FAULT_HOST;
				break;
			}
			run = (struct dma_copy_run){ .dst_iova = dst, .src = sp, .dst = dp,
						     .len = span };
		}
		src += span;
		dst += span;
		left -= span;
	}
	/* Every piece before the faulting one moves; nothing from it on. */
	if (dma_copy_flush(x, &run, &bad, &op))
		reason = UIOMMU_DMA_FAULT_HOST;
	if (!reason)
		return 0;
	x->op = op;
	return dma_xfer_stop(x, domain, bad, reason);
}

/* ---- page requests ------------------------------------------------------------------------ */

/* A grpid no outstanding request of @dev uses. dma_engine_lock held. */
static int dma_prq_grpid_alloc(struct device *dev, uint32_t *grpid)
{
	unsigned int tries;

	for (tries = 0; tries <= DMA_PRQ_GRPID_MASK; tries++) {
		uint32_t id = dma_engine_next_grpid++ & DMA_PRQ_GRPID_MASK;
		struct uiommu_dma_dev *e;
		bool used = false;

		LIST_FOREACH(e, &dma_engine_devs, node) {
			struct dma_prq *p;

			if (e->dev != dev)
				continue;
			TAILQ_FOREACH(p, &e->prqs, node)
				used |= p->grpid == id;
		}
		if (!used) {
			*grpid = id;
			return 0;
		}
	}
	return -EBUSY;
}

/*
 * Registers the page request for x->miss_iova, then reports it. Once this returns 0 an async
 * transfer may already be running again on the worker: the caller must not touch it.
 */
static int dma_prq_send(struct dma_xfer *x, bool async)
{
	struct uiommu_dma_dev *e = x->e;
	unsigned int timeout = atomic_load_explicit(&e->timeout_ms, memory_order_relaxed);
	struct iopf_fault evt = { 0 };
	struct dma_prq *p = &x->prq;
	int ret;

	uiommu_mutex_lock(&dma_engine_lock);
	if (e->stopping) {
		ret = -ECANCELED;
		goto out_unlock;
	}
	if (e->nr_prqs == DMA_ENGINE_MAX_PRQ) {
		ret = -EBUSY;
		goto out_unlock;
	}
	ret = dma_prq_grpid_alloc(e->dev, &p->grpid);
	if (ret)
		goto out_unlock;
	p->pasid = x->pasid;
	p->state = DMA_PRQ_WAITING;
	p->deadline_ns = timeout ? dma_now_ns() + (uint64_t)timeout * 1000000u : 0;
	p->async = async ? x : NULL;
	TAILQ_INSERT_TAIL(&e->prqs, p, node);
	e->nr_prqs++;
	if (async)
		uiommu_cond_broadcast(&e->cond); /* the worker's next deadline */
out_unlock:
	uiommu_mutex_unlock(&dma_engine_lock);
	if (ret)
		return ret;

	evt.fault.type = IOMMU_FAULT_PAGE_REQ;
	evt.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	if (x->pasid != IOMMU_NO_PASID)
		evt.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
	evt.fault.prm.pasid = x->pasid;
	evt.fault.prm.grpid = p->grpid;
	evt.fault.prm.perm = x->op == UIOMMU_DMA_OP_WRITE ? IOMMU_FAULT_PERM_WRITE :
							     IOMMU_FAULT_PERM_READ;
	evt.fault.prm.addr = x->miss_iova & ~(IOTLB_PAGE_SIZE - 1);
	ret = iommu_report_device_fault(e->dev, &evt);
	if (!ret)
		return 0;
	/*
	 * Not sent: nobody will answer, forget it. If it was answered all the same, the answer
	 * stands (and an async transfer is on the run queue already, the worker's now).
	 */
	uiommu_mutex_lock(&dma_engine_lock);
	if (p->state == DMA_PRQ_WAITING) {
		TAILQ_REMOVE(&e->prqs, p, node);
		e->nr_prqs--;
		p->state = DMA_PRQ_NONE;
	} else {
		ret = 0;
	}
	uiommu_mutex_unlock(&dma_engine_lock);
	return ret;
}

/* No page request could be sent (dma_prq_send()'s @err): the transfer ends at the miss. */
static void dma_prq_send_failed(struct dma_xfer *x, int err)
{
	if (err == -ECANCELED)
		x->req->error = ECANCELED; /* closing: not a fault of the device */
	else
		dma_xfer_fault(x, x->miss_iova, UIOMMU_DMA_FAULT_PRQ_FAILURE);
}

/* A WAITING request leaves the list as @state. dma_engine_lock held. */
static void dma_prq_finish(struct uiommu_dma_dev *e, struct dma_prq *p, enum dma_prq_state state)
{
	TAILQ_REMOVE(&e->prqs, p, node);
	e->nr_prqs--;
	p->state = state;
	if (p->async)
		TAILQ_INSERT_TAIL(&e->runq, p->async, node);
}

/*
 * The engine's page-response sink (iopf_response_sink_register()): the fault layer calls it with
 * every answer a driver sends, possibly under its own locks; we take only our leaf lock.
 */
static void dma_engine_page_response(struct device *dev, const struct iommu_page_response *msg)
{
	struct uiommu_dma_dev *e;

	uiommu_mutex_lock(&dma_engine_lock);
	LIST_FOREACH(e, &dma_engine_devs, node) {
		struct dma_prq *p;

		if (e->dev != dev)
			continue;
		TAILQ_FOREACH(p, &e->prqs, node) {
			if (p->grpid != msg->grpid || p->pasid != msg->pasid)
				continue;
			p->code = msg->code;
			dma_prq_finish(e, p, DMA_PRQ_ANSWERED);
			uiommu_cond_broadcast(&e->cond);
			goto out_unlock;
		}
	}
out_unlock:
	uiommu_mutex_unlock(&dma_engine_lock);
}

/*
 * The page request of @x has its outcome: true to run again from the faulting page, false when
 * the transfer ends here (req->error set).
 */
static bool dma_prq_outcome(struct dma_xfer *x)
{
	struct dma_prq *p = &x->prq;
	enum dma_prq_state state = p->state;

	p->state = DMA_PRQ_NONE;
	switch (state) {
	case DMA_PRQ_ANSWERED:
		if (p->code == IOMMU_PAGE_RESP_SUCCESS) {
			x->retry_page = x->miss_iova & ~(IOTLB_PAGE_SIZE - 1);
			return true;
		}
		dma_xfer_fault(x, x->miss_iova, p->code == IOMMU_PAGE_RESP_INVALID ?
							UIOMMU_DMA_FAULT_PRQ_INVALID :
							UIOMMU_DMA_FAULT_PRQ_FAILURE);
		return false;
	case DMA_PRQ_TIMEDOUT:
		dma_xfer_fault(x, x->miss_iova, UIOMMU_DMA_FAULT_PRQ_TIMEOUT);
		return false;
	case DMA_PRQ_CANCELLED:
		x->req->error = ECANCELED;
		return false;
	default:
		return true; /* nothing was pending */
	}
}

/* The synchronous wait: until answered or the deadline. */
static void dma_prq_wait(struct dma_xfer *x)
{
	struct uiommu_dma_dev *e = x->e;
	struct dma_prq *p = &x->prq;

	uiommu_mutex_lock(&dma_engine_lock);
	while (p->state == DMA_PRQ_WAITING) {
		struct timespec ts;

		if (!p->deadline_ns) {
			uiommu_cond_wait(&e->cond, &dma_engine_lock);
			continue;
		}
		ts.tv_sec = (time_t)(p->deadline_ns / 1000000000u);
		ts.tv_nsec = (long)(p->deadline_ns % 1000000000u);
		if (uiommu_cond_timedwait(&e->cond, &dma_engine_lock, &ts) == -ETIMEDOUT &&
		    p->state == DMA_PRQ_WAITING)
			dma_prq_finish(e, p, DMA_PRQ_TIMEDOUT);
	}
	uiommu_mutex_unlock(&dma_engine_lock);
}

/* ---- transfers ---------------------------------------------------------------------------- */

static int dma_req_check(struct uiommu_dma_dev *e, struct uiommu_dma_req *req, uint32_t *pasid)
{
	uint64_t last;

	if (!e || !req || req->op > UIOMMU_DMA_OP_WRITE ||
	    (req->flags & ~(UIOMMU_DMA_NO_PASID | UIOMMU_DMA_NO_PRI | UIOMMU_DMA_NO_WAIT)) ||
	    req->len > SSIZE_MAX || (req->len && !req->buf))
		return -EINVAL;
	if (req->len && check_add_overflow(req->iova, (uint64_t)req->len - 1, &last))
		return -EINVAL;
	*pasid = (req->flags & UIOMMU_DMA_NO_PASID) ? IOMMU_NO_PASID : req->pasid;
	if (*pasid != IOMMU_NO_PASID &&
	    (!e->dev->pasid_bits || e->dev->pasid_bits > 20 ||
	     *pasid >= (UINT32_C(1) << e->dev->pasid_bits)))
		return -EINVAL;
	return 0;
}

static void dma_xfer_init(struct dma_xfer *x, struct uiommu_dma_dev *e,
			  struct uiommu_dma_req *req, uint32_t pasid)
{
	*x = (struct dma_xfer){
		.req = req, .e = e, .pasid = pasid, .op = req->op, .retry_page = UINT64_MAX,
	};
	req->done = 0;
	req->error = 0;
}

UIOMMU_EXPORT int uiommu_dma_xfer(struct uiommu_dma_dev *e, struct uiommu_dma_req *req)
{
	struct dma_xfer x;
	uint32_t pasid;
	int ret;

	ret = dma_req_check(e, req, &pasid);
	if (ret) {
		if (req)
			req->error = -ret;
		errno = -ret;
		return -1;
	}
	dma_xfer_init(&x, e, req, pasid);
	while (dma_xfer_run(&x)) {
		ret = dma_prq_send(&x, false);
		if (ret) {
			dma_prq_send_failed(&x, ret);
			break;
		}
		dma_prq_wait(&x);
		if (!dma_prq_outcome(&x))
			break;
	}
	if (req->error) {
		errno = req->error;
		return -1;
	}
	return 0;
}

static ssize_t dma_rw(struct uiommu_dma_dev *e, unsigned int op, uint32_t pasid, uint64_t iova,
		      void *buf, size_t len, unsigned int flags)
{
	struct uiommu_dma_req req = {
		.op = op, .flags = flags, .pasid = pasid, .iova = iova, .buf = buf, .len = len,
	};

	if (uiommu_dma_xfer(e, &req))
		return -1;
	return (ssize_t)req.done;
}

UIOMMU_EXPORT ssize_t uiommu_dma_read(struct uiommu_dma_dev *e, uint32_t pasid, uint64_t iova,
				      void *buf, size_t len, unsigned int flags)
{
	return dma_rw(e, UIOMMU_DMA_OP_READ, pasid, iova, buf, len, flags);
}

UIOMMU_EXPORT ssize_t uiommu_dma_write(struct uiommu_dma_dev *e, uint32_t pasid, uint64_t iova,
				       const void *buf, size_t len, unsigned int flags)
{
	return dma_rw(e, UIOMMU_DMA_OP_WRITE, pasid, iova, (void *)(uintptr_t)buf, len, flags);
}

/* ---- batches ------------------------------------------------------------------------------ */

/*
 * A batch in progress: the op at @cur runs as a dma_xfer through a shadow request (a COPY's
 * has the destination in iova and x.copy_src the source), so page requests, the fault log and
 * the retry rule are the single transfers' own. An op that dma_batch_fast() runs whole needs no
 * shadow; @loaded says the shadow holds ops[cur] (a general step of it has begun). A COPY's
 * record (UIOMMU_DMA_RECORD) is a second shadow request, a WRITE that x.req points to once
 * the copy is whole (@in_rec), so its faults and page requests are a WRITE's too. @copied: the
 * fast path made ops[cur]'s copy and then failed (or trapped) at its record, so the general way
 * takes the op up at the record, never copying again (an overlapping copy run twice would move
 * other bytes).
 */
struct dma_batch {
	struct dma_xfer x;
	struct uiommu_dma_req shadow;
	struct uiommu_dma_req rec;
	struct uiommu_dma_op *ops;
	size_t n, cur;
	bool loaded;
	bool in_rec;
	bool copied;
};

static void dma_batch_load(struct dma_batch *b)
{
	struct uiommu_dma_op *op = &b->ops[b->cur];

	b->shadow = (struct uiommu_dma_req){
		.op = op->op, .flags = op->flags, .pasid = op->pasid, .iova = op->iova,
		.buf = op->buf, .len = op->len,
	};
	b->x.pasid = (op->flags & UIOMMU_DMA_NO_PASID) ? IOMMU_NO_PASID : op->pasid;
	b->x.op = op->op == UIOMMU_DMA_OP_COPY ? UIOMMU_DMA_OP_READ : op->op;
	b->x.copy_src = op->src;
	b->x.retry_page = UINT64_MAX;
	b->x.fault_iova = 0;
	b->x.req = &b->shadow;
	b->loaded = true;
	b->in_rec = false;
}

/* The COPY at b->cur is whole: its record's WRITE runs next, through b->rec. */
static void dma_batch_load_record(struct dma_batch *b)
{
	const struct uiommu_dma_record *r = b->shadow.buf;

	b->rec = (struct uiommu_dma_req){
		.op = UIOMMU_DMA_OP_WRITE, .flags = b->shadow.flags & ~UIOMMU_DMA_RECORD,
		.pasid = b->shadow.pasid, .iova = r->iova, .buf = (void *)(uintptr_t)r->buf,
		.len = r->len,
	};
	b->x.op = UIOMMU_DMA_OP_WRITE;
	b->x.retry_page = UINT64_MAX;
	b->x.fault_iova = 0;
	b->x.req = &b->rec;
	b->in_rec = true;
}

/*
 * The shadow for ops[cur] (dma_batch_load()), taken up where the fast path left it: at the
 * record when its copy was made (@copied).
 */
static void dma_batch_resume(struct dma_batch *b)
{
	dma_batch_load(b);
	if (likely(!b->copied))
		return;
	b->copied = false;
	b->shadow.done = b->shadow.len;
	dma_batch_load_record(b);
}

/* The op's results: a record's fault is the op's, with done the whole copy. */
static void dma_batch_store(struct dma_batch *b)
{
	struct uiommu_dma_op *op = &b->ops[b->cur];

	op->done = b->shadow.done;
	op->error = b->in_rec ? b->rec.error : b->shadow.error;
	op->fault_op = op->error ? b->x.op : 0;
	op->fault_iova = op->error ? b->x.fault_iova : 0;
}

/*
 * A COPY of @len bytes (> 0) from @src_iova to @dst_iova with its record @rec (NULL: none) on
 * the fast path: true when it went whole, false when nothing happened (dma_batch_fast()) --
 * or, with *@copied set, when the copy was made and only its record failed or trapped.
 * Always inlined, for the copy run's loop: as a call, its nine arguments and saved registers
 * were ~27 of the ~183 instructions a copy run spent per copy (the refill, rare, stays out).
 */
static inline __attribute__((always_inline)) bool
dma_copy_fast(struct uiommu_dma_dev *e, uint32_t pasid, uint64_t src_iova, uint64_t dst_iova,
	      size_t len, const struct uiommu_dma_record *rec, struct dma_ctx *rd,
	      struct dma_ctx *wr, bool *copied)
{
	phys_addr_t src, dst, rec_dst = 0;

	if (!dma_ctx_span(rd, src_iova, len, IOMMU_READ, &src) ||
	    !dma_ctx_span(wr, dst_iova, len, IOMMU_WRITE, &dst) ||
	    (rec && !dma_ctx_span(wr, rec->iova, rec->len, IOMMU_WRITE, &rec_dst)))
		return false;
	/*
	 * -EFAULT only for an address no process maps: the general way reports it and logs what
	 * it writes, so nothing is logged here before the copy it logs went. Once the data is
	 * copied, a record that fails is all the general way must redo (*@copied): running the
	 * copy twice would change an overlapping copy's bytes, and log it twice. So the copy is
	 * logged before its record is tried: a record that traps jumps out of here, and the
	 * general way logs only the record.
	 */
	if (uiommu_host_copy_trapped((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len))
		return false;
	if (unlikely(dma_log_on()))
		dma_log_written(e->dev, pasid, dst_iova, len);
	if (rec) {
		*copied = true;
		if (uiommu_host_copy_trapped((void *)(uintptr_t)rec_dst, rec->buf, rec->len))
			return false;
		*copied = false;
		if (unlikely(dma_log_on()))
			dma_log_written(e->dev, pasid, rec->iova, rec->len);
	}
	return true;
}

/*
 * The fast path of an op (the batch's trap armed, both directions in IOTLB mode): when every
 * page of each side it touches is in its direction's cache, good for the access and contiguous
 * in host memory, the op is one host copy and its results are set here (true). Otherwise
 * (false) nothing has happened, and the op goes the general way from its first byte, which
 * meets the same pages in the same order and so the same faults and page requests. All or
 * nothing keeps the transfer rule: nothing moves before every page of the op is checked (a
 * COPY's record too). A trap in a copy jumps back to dma_batch_run() with nothing counted, and
 * the general way runs the op again from its start; but once a COPY's copy is made, *@copied
 * says so first, and a trap or failure at its record leaves the general way only the record
 * (dma_batch_resume()). The copies go through
 * uiommu_host_copy_trapped() like every other (src/mm/ decides how a host address is reached).
 */
static bool dma_batch_fast(struct uiommu_dma_dev *e, uint32_t pasid, struct uiommu_dma_op *op,
			   struct dma_ctx *rd, struct dma_ctx *wr, bool *copied)
{
	const struct uiommu_dma_record *rec = NULL;
	phys_addr_t src, dst;
	size_t len = op->len;

	if (unlikely(!len))
		return false;
	switch (op->op) {
	case UIOMMU_DMA_OP_COPY:
		if (op->flags & UIOMMU_DMA_RECORD) {
			rec = op->buf;
			if (!rec->len)
				rec = NULL; /* no record */
		}
		if (!dma_copy_fast(e, pasid, op->src, op->iova, len, rec, rd, wr, copied))
			return false;
		goto done;
	case UIOMMU_DMA_OP_WRITE:
		if (!dma_ctx_span(wr, op->iova, len, IOMMU_WRITE, &dst))
			return false;
		src = (uintptr_t)op->buf;
		break;
	default:
		if (!dma_ctx_span(rd, op->iova, len, IOMMU_READ, &src))
			return false;
		dst = (uintptr_t)op->buf;
		break;
	}
	/* As dma_copy_fast(): -EFAULT is the general way's to report. */
	if (uiommu_host_copy_trapped((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len))
		return false;
	if (unlikely(dma_log_on()) && op->op == UIOMMU_DMA_OP_WRITE)
		dma_log_written(e->dev, pasid, op->iova, len);
done:
	op->done = len;
	op->error = 0;
	op->fault_op = 0;
	op->fault_iova = 0;
	return true;
}

/*
 * Keeps a batch's caches for dma_engine_copy_run() (group mutex held). The copy is a few KiB
 * once per batch; without a buffer (allocation refused) there is simply nothing kept, and
 * copy runs find nothing warm and go the general way.
 */
static void dma_warm_save(struct uiommu_dma_dev *e, struct iommu_domain *domain, uint32_t pasid,
			  const struct dma_ctx *rd, const struct dma_ctx *wr)
{
	if (!e->warm) {
		e->warm = uiommu_zalloc(sizeof(*e->warm));
		if (!e->warm)
			return;
	}
	e->warm->domain = domain;
	e->warm->domid = domain->id;
	e->warm->pasid = pasid;
	e->warm->rd = *rd;
	e->warm->wr = *wr;
}

/*
 * Runs the ops from b->cur on (the group mutex held): one domain lookup, and the two
 * directions' translation caches shared by every op at the same PASID. Return: 0 when the
 * batch is over (all done, or b->cur failed), 1 when b->x needs a page request first.
 */
static __attribute__((noinline)) int dma_batch_ops(struct dma_batch *b)
{
	struct iommu_domain *domain = NULL;
	struct dma_xfer *x = &b->x;
	struct dma_ctx rd, wr;
	uint32_t pasid = 0;
	bool fast = false; /* dma_batch_fast() may run ops of @pasid */
	int ret = 0;

	while (b->cur < b->n) {
		struct uiommu_dma_req *req = &b->shadow;
		struct uiommu_dma_op *op = &b->ops[b->cur];
		bool copy;

		if (fast && !b->loaded &&
		    ((op->flags & UIOMMU_DMA_NO_PASID) ? IOMMU_NO_PASID : op->pasid) == pasid &&
		    dma_batch_fast(x->e, pasid, op, &rd, &wr, &b->copied)) {
			b->cur++;
			continue;
		}
		if (!b->loaded)
			dma_batch_resume(b);
		copy = req->op == UIOMMU_DMA_OP_COPY;
		if (!domain || x->pasid != pasid) {
			pasid = x->pasid;
			domain = dma_xfer_domain(x, b->in_rec ? b->rec.iova + b->rec.done :
						    copy    ? x->copy_src + req->done :
							      req->iova + req->done);
			if (!domain) {
				dma_batch_store(b);
				break;
			}
			dma_ctx_init(&rd, x->e, domain, x->pasid, false);
			dma_ctx_init(&wr, x->e, domain, x->pasid, true);
			fast = x->trapped && rd.mode == DMA_MODE_IOTLB && wr.mode == DMA_MODE_IOTLB;
		}
		if (b->in_rec)
			ret = dma_xfer_step(x, domain, &wr);
		else if (copy)
			ret = dma_copy_step(x, domain, &rd, &wr);
		else
			ret = dma_xfer_step(x, domain, req->op == UIOMMU_DMA_OP_WRITE ? &wr : &rd);
		if (ret)
			break; /* the page request first; then the same op goes on */
		if (copy && !b->in_rec && !req->error && (req->flags & UIOMMU_DMA_RECORD)) {
			dma_batch_load_record(b);
			continue; /* the copy is whole: its record next */
		}
		dma_batch_store(b);
		if (op->error)
			break;
		b->cur++;
		b->loaded = false;
	}
	if (fast && domain)
		dma_warm_save(x->e, domain, pasid, &rd, &wr);
	return ret;
}

/*
 * dma_batch_ops() under one hold of the group mutex and one arming of the host fault trap
 * (not one per copy). A trap jumps back here from inside a copy: the op at b->cur had not
 * counted the run it was copying (done moves after a copy), so it runs again from where it
 * stood, every copy now arming for itself, which narrows the trap down to its page and side
 * as a single transfer does. Return as dma_batch_ops().
 */
static int dma_batch_run(struct dma_batch *b)
{
	struct uiommu_host_trap trap;
	int ret;

	iommu_group_mutex_lock(b->x.e->group);
	b->x.trapped = true;
	if (UIOMMU_HOST_TRAP_SET(&trap))
		b->x.trapped = false; /* caught: still armed, now behind every copy's own */
	else
		uiommu_host_trap_arm(&trap);
	ret = dma_batch_ops(b);
	uiommu_host_trap_disarm(&trap);
	iommu_group_mutex_unlock(b->x.e->group);
	return ret;
}

/*
 * What dma_req_check() refuses, for every op, before any runs. A pass over ops the caller has
 * just written, so kept to loads and compares: the PASID's range is checked again only when it
 * differs from the last one found good (a queue's ops mostly share one).
 */
static int dma_batch_check(struct uiommu_dma_dev *e, const struct uiommu_dma_op *ops, size_t n)
{
	const unsigned int flags_ok = UIOMMU_DMA_NO_PASID | UIOMMU_DMA_NO_PRI | UIOMMU_DMA_NO_WAIT |
				      UIOMMU_DMA_RECORD;
	uint32_t good_pasid = IOMMU_NO_PASID;
	unsigned int pasid_bits;

	if (!e || (n && !ops) || n > UIOMMU_DMA_BATCH_MAX)
		return -EINVAL;
	pasid_bits = e->dev->pasid_bits;
	for (size_t i = 0; i < n; i++) {
		const struct uiommu_dma_op *op = &ops[i];
		uint32_t pasid = (op->flags & UIOMMU_DMA_NO_PASID) ? IOMMU_NO_PASID : op->pasid;
		uint64_t last;

		if (op->op > UIOMMU_DMA_OP_COPY || (op->flags & ~flags_ok) || op->len > SSIZE_MAX)
			return -EINVAL;
		if (op->len && ((op->op != UIOMMU_DMA_OP_COPY && !op->buf) ||
				check_add_overflow(op->iova, (uint64_t)op->len - 1, &last) ||
				(op->op == UIOMMU_DMA_OP_COPY &&
				 check_add_overflow(op->src, (uint64_t)op->len - 1, &last))))
			return -EINVAL;
		if (op->flags & UIOMMU_DMA_RECORD) {
			const struct uiommu_dma_record *r = op->buf;

			if (op->op != UIOMMU_DMA_OP_COPY || !r || r->len > SSIZE_MAX ||
			    (r->len && (!r->buf ||
					check_add_overflow(r->iova, (uint64_t)r->len - 1, &last))))
				return -EINVAL;
		}
		if (pasid == good_pasid)
			continue;
		if (!pasid_bits || pasid_bits > 20 || pasid >= (UINT32_C(1) << pasid_bits))
			return -EINVAL;
		good_pasid = pasid;
	}
	return 0;
}

/* Runs @b's ops (checked) to the end or the first that fails, page requests and all. */
static void dma_batch_go(struct uiommu_dma_dev *e, struct dma_batch *b)
{
	int ret;

	b->x = (struct dma_xfer){ .req = &b->shadow, .e = e };
	while (dma_batch_run(b)) {
		ret = dma_prq_send(&b->x, false);
		if (ret) {
			dma_prq_send_failed(&b->x, ret);
			dma_batch_store(b);
			break;
		}
		dma_prq_wait(&b->x);
		if (!dma_prq_outcome(&b->x)) {
			dma_batch_store(b);
			break;
		}
	}
}

UIOMMU_EXPORT ssize_t uiommu_dma_batch(struct uiommu_dma_dev *e, struct uiommu_dma_op *ops,
				       size_t n)
{
	struct dma_batch b = { .ops = ops, .n = n };
	int ret;

	ret = dma_batch_check(e, ops, n);
	if (ret) {
		errno = -ret;
		return -1;
	}
	if (!n)
		return 0;
	dma_batch_go(e, &b);
	/*
	 * Every op that ran had all its results written by dma_batch_store(); only those after a
	 * failed one are cleared here, not every op up front (a pass over the whole array that a
	 * batch of small copies paid per op).
	 */
	for (size_t i = b.cur + 1; i < n; i++) {
		ops[i].done = 0;
		ops[i].error = 0;
		ops[i].fault_op = 0;
		ops[i].fault_iova = 0;
	}
	return (ssize_t)b.cur;
}

/*
 * A run of plain COPYs, each with its record or none, on the fast path alone: the caches the
 * last batch left (struct dma_warm) if the domain at @pasid is still theirs, one hold of the
 * group mutex and one arming of the trap for the run, and per copy only dma_copy_fast(). The
 * run stops at the first copy that is not whole in the caches (or that a general pass would
 * judge: zero length, a range that wraps) with nothing of it done; the caller sends that one
 * and the rest through uiommu_dma_batch(), which meets its faults, page requests and log
 * entries as it always did. A trap in a copy stops the run there too (the batch redoes it).
 * But a copy made whose record then failed or trapped (its host memory gone) is past redoing
 * (an overlapping copy run twice moves other bytes): the run takes it up at its record the
 * general way, as a batch would (dma_batch_resume()), and either counts it or stops there with
 * its results in *@stop.
 * Return: how many went, or -EINVAL.
 */

/* A copy run in progress (dma_engine_copy_run()): what its loop reads, and how far it went. */
struct dma_copy_run_state {
	struct uiommu_dma_dev *e;
	uint32_t pasid;
	const char *copies;
	size_t stride;
	const struct uiommu_dma_record *recs;
	size_t n;
	struct dma_warm *w;
	size_t done;               /* copies whole; a trap stops the count at the copy it hit */
	bool copied;               /* the copy at @done was made, its record was not */
};

/*
 * Fills @c's cache with the pages of [@iova, @iova + @len) (IOTLB mode; the range checked not
 * to wrap). Only translations: no fault is recorded and no page request sent, a failure just
 * says "not here". It stops at a page the access may not use, as the general way stops there:
 * going on would walk the destination (and set dirty bits in it) behind a source the general
 * way refuses, or the record behind a destination it refuses.
 * Return: 0, or the failed translation's -errno (-EACCES: not permitted).
 */
static int dma_ctx_warm(struct dma_ctx *c, uint64_t iova, size_t len)
{
	const int access = c->write ? IOMMU_WRITE : IOMMU_READ;
	uint64_t end = iova + (len - 1), span;
	phys_addr_t phys;
	int prot, ret;

	for (;;) {
		ret = dma_translate(c, iova, end - iova + 1, &phys, &span, &prot);
		if (!ret && (prot & access) != access)
			ret = -EACCES;
		if (ret || span > end - iova)
			return ret;
		iova += span;
	}
}

/*
 * A copy that missed the caches: its pages fetched into them (the reads', then the writes',
 * then the record's: a prefix of the translations the general way makes before it could fail,
 * so nothing is touched that it would not touch) and the fast path tried again.
 */
static __attribute__((noinline, cold)) bool
dma_copy_run_refill(struct dma_copy_run_state *st, const struct uiommu_dma_copy *c,
		    const struct uiommu_dma_record *rec)
{
	struct dma_warm *w = st->w;

	if (dma_ctx_warm(&w->rd, c->src, c->len) || dma_ctx_warm(&w->wr, c->dst, c->len) ||
	    (rec && dma_ctx_warm(&w->wr, rec->iova, rec->len)))
		return false;
	return dma_copy_fast(st->e, st->pasid, c->src, c->dst, c->len, rec, &w->rd, &w->wr,
			     &st->copied);
}

/* dma_engine_copy_run()'s loop, the trap armed. */
static void dma_copy_run_ops(struct dma_copy_run_state *st)
{
	for (size_t i = 0; i < st->n; i++) {
		const struct uiommu_dma_copy *c = (const void *)(st->copies + i * st->stride);
		const struct uiommu_dma_record *rec =
			st->recs && st->recs[i].len ? &st->recs[i] : NULL;
		uint64_t last;

		if (!c->len || c->len > SSIZE_MAX || check_add_overflow(c->src, c->len - 1, &last) ||
		    check_add_overflow(c->dst, c->len - 1, &last) ||
		    (rec && (rec->len > SSIZE_MAX || !rec->buf ||
			     check_add_overflow(rec->iova, (uint64_t)rec->len - 1, &last))) ||
		    (!dma_copy_fast(st->e, st->pasid, c->src, c->dst, c->len, rec, &st->w->rd,
				    &st->w->wr, &st->copied) &&
		     (st->copied || !dma_copy_run_refill(st, c, rec))))
			return; /* made but its record refused (copied): never tried again */
		st->done = i + 1;
	}
}

/* The run under the group mutex and one arming of the trap; @st->done says how far it went. */
static void dma_copy_run_locked(struct dma_copy_run_state *st)
{
	struct uiommu_host_trap trap;
	struct iommu_domain *domain;

	iommu_group_mutex_lock(st->e->group);
	st->w = st->e->warm;
	domain = dma_engine_domain(st->e, st->pasid);
	if (!st->w || !domain || st->w->domid != domain->id || st->w->domain != domain ||
	    st->w->pasid != st->pasid)
		goto out_unlock;
	if (!UIOMMU_HOST_TRAP_SET(&trap)) {
		uiommu_host_trap_arm(&trap);
		dma_copy_run_ops(st);
	} /* else the copy at st->done moved part of its bytes: the batch redoes it */
	uiommu_host_trap_disarm(&trap);
out_unlock:
	iommu_group_mutex_unlock(st->e->group);
}

/*
 * The copy at @st->done was made and its record was not (@st->copied): the record alone, the
 * general way (a one-op batch taken up at its record), outside the run's hold of the mutex.
 * Counted when it went; else its results are the caller's, in *@stop.
 */
static void dma_copy_run_finish(struct dma_copy_run_state *st, unsigned int flags,
				struct uiommu_dma_op *stop)
{
	const struct uiommu_dma_copy *c = (const void *)(st->copies + st->done * st->stride);
	struct dma_batch b = { .ops = stop, .n = 1, .copied = true };

	*stop = (struct uiommu_dma_op){
		.op = UIOMMU_DMA_OP_COPY, .flags = flags | UIOMMU_DMA_RECORD, .pasid = st->pasid,
		.src = c->src, .iova = c->dst, .len = c->len,
		.buf = (void *)(uintptr_t)&st->recs[st->done], /* only read */
	};
	dma_batch_go(st->e, &b);
	if (!stop->error) {
		st->done++;
		*stop = (struct uiommu_dma_op){};
	}
}

ssize_t dma_engine_copy_run(struct uiommu_dma_dev *e, uint32_t pasid, unsigned int flags,
			    const void *copies, size_t stride, const struct uiommu_dma_record *recs,
			    size_t n, struct uiommu_dma_op *stop)
{
	const unsigned int flags_ok = UIOMMU_DMA_NO_PASID | UIOMMU_DMA_NO_PRI | UIOMMU_DMA_NO_WAIT;
	const size_t align = _Alignof(struct uiommu_dma_copy);
	struct dma_copy_run_state st = {
		.e = e, .pasid = (flags & UIOMMU_DMA_NO_PASID) ? IOMMU_NO_PASID : pasid,
		.copies = copies, .stride = stride, .recs = recs, .n = n,
	};

	/* Misaligned copies would be read through a misaligned pointer: refused, not guessed at. */
	if (!e || (n && !copies) || !stop || stride < sizeof(struct uiommu_dma_copy) ||
	    stride % align || (uintptr_t)copies % align || (flags & ~flags_ok) ||
	    n > UIOMMU_DMA_BATCH_MAX)
		return -EINVAL;
	if (st.pasid != IOMMU_NO_PASID &&
	    (!e->dev->pasid_bits || e->dev->pasid_bits > 20 ||
	     st.pasid >= (UINT32_C(1) << e->dev->pasid_bits)))
		return -EINVAL;
	*stop = (struct uiommu_dma_op){};
	if (n)
		dma_copy_run_locked(&st);
	if (unlikely(st.copied))
		dma_copy_run_finish(&st, flags, stop);
	return (ssize_t)st.done;
}

/* ---- the asynchronous engine -------------------------------------------------------------- */

static void dma_async_complete(struct dma_xfer *x)
{
	struct uiommu_dma_dev *e = x->e;
	struct uiommu_dma_req *req = x->req;

	uiommu_free(x);
	if (req->complete)
		req->complete(req);
	/* After the callback: close waits for it too. */
	uiommu_mutex_lock(&dma_engine_lock);
	e->nr_async--;
	uiommu_cond_broadcast(&e->cond);
	uiommu_mutex_unlock(&dma_engine_lock);
}

/* Runs @x until it completes or parks on a page request. Worker thread, no lock held. */
static void dma_async_step(struct dma_xfer *x)
{
	int ret;

	if (!dma_prq_outcome(x))
		goto complete;
	if (!dma_xfer_run(x))
		goto complete;
	ret = dma_prq_send(x, true);
	if (!ret)
		return; /* parked (or already requeued): no longer ours */
	dma_prq_send_failed(x, ret);
complete:
	dma_async_complete(x);
}

/*
 * Times out what passed its deadline, cancels what waits when closing; returns the earliest
 * deadline still pending (0: none). dma_engine_lock held.
 */
static uint64_t dma_async_expire(struct uiommu_dma_dev *e)
{
	uint64_t now = dma_now_ns(), next = 0;
	struct dma_prq *p, *tmp;

	for (p = TAILQ_FIRST(&e->prqs); p; p = tmp) {
		tmp = TAILQ_NEXT(p, node);
		if (!p->async)
			continue;
		if (e->stopping) {
			dma_prq_finish(e, p, DMA_PRQ_CANCELLED);
		} else if (p->deadline_ns && p->deadline_ns <= now) {
			dma_prq_finish(e, p, DMA_PRQ_TIMEDOUT);
		} else if (p->deadline_ns && (!next || p->deadline_ns < next)) {
			next = p->deadline_ns;
		}
	}
	return next;
}

static void *dma_async_worker(void *arg)
{
	struct uiommu_dma_dev *e = arg;

	/* Our own thread: one trap span for its life, not one system call per copy. */
	uiommu_uaccess_begin();
	uiommu_mutex_lock(&dma_engine_lock);
	for (;;) {
		struct dma_xfer *x = TAILQ_FIRST(&e->runq);
		uint64_t next;

		if (x) {
			TAILQ_REMOVE(&e->runq, x, node);
			uiommu_mutex_unlock(&dma_engine_lock);
			dma_async_step(x);
			uiommu_mutex_lock(&dma_engine_lock);
			continue;
		}
		next = dma_async_expire(e);
		if (!TAILQ_EMPTY(&e->runq))
			continue;
		if (e->stopping && !e->nr_async)
			break;
		if (next) {
			struct timespec ts = {
				.tv_sec = (time_t)(next / 1000000000u),
				.tv_nsec = (long)(next % 1000000000u),
			};

			uiommu_cond_timedwait(&e->cond, &dma_engine_lock, &ts);
		} else {
			uiommu_cond_wait(&e->cond, &dma_engine_lock);
		}
	}
	uiommu_mutex_unlock(&dma_engine_lock);
	return NULL;
}

UIOMMU_EXPORT int uiommu_dma_submit(struct uiommu_dma_dev *e, struct uiommu_dma_req *req)
{
	struct dma_xfer *x;
	uint32_t pasid;
	int ret;

	ret = dma_req_check(e, req, &pasid);
	if (ret)
		goto err;
	x = uiommu_zalloc(sizeof(*x));
	if (!x) {
		ret = -ENOMEM;
		goto err;
	}
	dma_xfer_init(x, e, req, pasid);
	uiommu_mutex_lock(&dma_engine_lock);
	if (e->stopping) {
		ret = -EINVAL;
		goto err_unlock;
	}
	if (!e->worker_started) {
		if (uiommu_should_fail()) {
			ret = -ENOMEM;
			goto err_unlock;
		}
		ret = -uiommu_thread_create(&e->worker, NULL, dma_async_worker, e);
		if (ret)
			goto err_unlock;
		e->worker_started = true;
	}
	e->nr_async++;
	TAILQ_INSERT_TAIL(&e->runq, x, node);
	uiommu_cond_broadcast(&e->cond);
	uiommu_mutex_unlock(&dma_engine_lock);
	return 0;

err_unlock:
	uiommu_mutex_unlock(&dma_engine_lock);
	uiommu_free(x);
err:
	errno = -ret;
	return -1;
}

UIOMMU_EXPORT int uiommu_dma_dev_close(struct uiommu_dma_dev *e)
{
	bool started;

	if (!e) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&dma_engine_lock);
	e->stopping = true;
	uiommu_cond_broadcast(&e->cond);
	started = e->worker_started;
	uiommu_mutex_unlock(&dma_engine_lock);
	if (started)
		pthread_join(e->worker, NULL);

	uiommu_mutex_lock(&dma_engine_lock);
	WARN_ON(e->nr_async || !TAILQ_EMPTY(&e->prqs));
	LIST_REMOVE(e, node);
	uiommu_mutex_unlock(&dma_engine_lock);
	/* Binds the caller did not undo go with the handle. */
	while (e->sva_binds) {
		e->sva_binds--;
		iommu_sva_unbind_device(e->sva);
	}
	uiommu_mutex_destroy(&e->sva_lock);
	uiommu_cond_destroy(&e->cond);
	iommu_group_put(e->group);
	device_put(e->dev);
	uiommu_free(e->warm);
	uiommu_free(e);
	return 0;
}

/* ---- shared virtual addressing -------------------------------------------------------------- */

UIOMMU_EXPORT int uiommu_dma_dev_sva_bind(struct uiommu_dma_dev *e, uint32_t *pasid)
{
	struct iommu_sva *sva;
	struct uiommu_mm *mm;

	if (!e || !pasid) {
		errno = EINVAL;
		return -1;
	}
	mm = uiommu_mm_self();
	if (IS_ERR(mm)) {
		errno = (int)-PTR_ERR(mm);
		return -1;
	}
	uiommu_mutex_lock(&e->sva_lock);
	sva = iommu_sva_bind_device(e->dev, mm);
	uiommu_mm_put(mm); /* The SVA domain holds its own reference. */
	if (IS_ERR(sva)) {
		uiommu_mutex_unlock(&e->sva_lock);
		errno = (int)-PTR_ERR(sva);
		return -1;
	}
	/* Every bind of this (device, mm) returns the same bond, its count raised. */
	WARN_ON(e->sva && e->sva != sva);
	e->sva = sva;
	e->sva_binds++;
	*pasid = iommu_sva_get_pasid(sva);
	uiommu_mutex_unlock(&e->sva_lock);
	return 0;
}

UIOMMU_EXPORT int uiommu_dma_dev_sva_unbind(struct uiommu_dma_dev *e)
{
	if (!e) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&e->sva_lock);
	if (!e->sva_binds) {
		uiommu_mutex_unlock(&e->sva_lock);
		errno = ENOENT;
		return -1;
	}
	iommu_sva_unbind_device(e->sva);
	if (!--e->sva_binds)
		e->sva = NULL;
	uiommu_mutex_unlock(&e->sva_lock);
	return 0;
}
