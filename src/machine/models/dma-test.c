// SPDX-License-Identifier: MIT
/*
 * dma-test: a DMA engine with descriptor rings, the built-in device model for drivers and
 * tests (docs/dma-test.md has the programming interface; dma-test.h the constants).
 *
 * What it models. A simple copy engine as a data-mover accelerator presents itself: queues,
 * each a ring of 64-byte descriptors in host memory that the device fetches by DMA, a tail
 * doorbell the driver writes, a head the device advances, a completion record the device
 * writes back by DMA, and an MSI-X vector per queue. Every byte it touches goes through the
 * function's DMA (uiommu_pci_dma_*(), so through the IOMMU's translation and permissions, and
 * only while Bus Master is on). An access the IOMMU refuses stops the queue as hardware stops
 * it: STATUS.ERROR, the error code, the errno and the IOVA in the queue's registers, the head
 * left at the descriptor that faulted, and the queue's interrupt raised.
 *
 * It is written against include/uiommu/device.h only, as an out-of-tree model would be.
 *
 * Data model. struct dma_test hangs off the function (uiommu_pci_fn_set_priv()). Registers
 * live in it, except the tails: those are the doorbell page (BAR0 0x1000, a shared-memory area
 * a driver may mmap), read with atomic loads. One worker thread per function runs the
 * descriptors of all queues round-robin. It sleeps on `cond`, woken by a doorbell write that
 * goes through the library (the TAIL register, or a pwrite into the doorbell page: both reach
 * us), a Command write, or a reset; with a queue enabled it also wakes to look at the doorbell
 * page, because a store through a driver's mmap cannot tell us (the documented polling
 * doorbell). The polling is adaptive: DMA_TEST_POLL_MIN_US after a descriptor ran, doubling
 * with every look that finds nothing, up to DMA_TEST_POLL_US; so a driver that keeps ringing
 * the mapped doorbell waits tens of microseconds, not half a millisecond, and an idle queue
 * costs ~2,000 wake-ups a second, as before.
 *
 * A doorbell written through the library (the TAIL register, a pwrite into the doorbell page)
 * runs the queue's first pass at once, in the writer's thread (dma_test_doorbell()), as a VMM
 * runs a device's MMIO handler in the vCPU thread that wrote the register: a short queue
 * completes and raises its interrupt before the write returns, and nobody is woken. That pass
 * may not wait for a page response (its DMA says UIOMMU_DMA_NO_WAIT and stops with EAGAIN,
 * retried by the worker); the worker also keeps the rest of a long queue, the mapped doorbell
 * and a queue held by Bus Master off. Those the writer tells on `cond` when its passes end; a
 * worker that looks while they run goes back to its polling wait rather than wait for them
 * (woken at the end of every doorbell, it cost the writer a futex wake-up each time).
 *
 * A pass (dma_test_pass(), by the worker or a doorbell's writer) takes the pending descriptors
 * of a queue under `lock` (snapshot of the queue, busy = true: one pass at a time, whoever
 * runs it), runs them with the lock dropped (DMA may wait for a page response), and applies the
 * result under the lock only if the queue's generation has not moved. A pass fetches up to
 * DMA_TEST_BATCH descriptors with one DMA read and hands the COPYs and NOPs among them, with
 * their completion records, to the engine as one uiommu_pci_dma_batch(): a COPY is a
 * device-to-device copy (UIOMMU_DMA_OP_COPY), no bounce buffer, and the whole pass is one visit
 * to the IOMMU; FILL and COMPARE still go through the bounce buffers, one per pass. The pass
 * stops at the first descriptor that fails, as the queue does, and the head moves past exactly
 * the descriptors that completed. Disabling the queue and resetting the function bump the
 * generation, and both wait until the worker is not busy before returning, so after a
 * reset or a disable no descriptor of the old life completes or raises anything. DMA that
 * fails EPERM (Bus Master off, a reset starting) is not an error: the descriptor is retried
 * when the function may master the bus again (it is idempotent: the same bytes are moved).
 *
 * The worker thread starts at the function's first register write in a process (realize starts
 * none). Fork: worker threads do not survive fork(), so the child's copy of a function starts its
 * own worker at its first register write (a pthread_atfork handler takes every instance's lock
 * around the fork so that no copy is taken mid-update).
 *
 * Locking: `lock` protects everything in struct dma_test but the bounce buffers and batch
 * arrays (the pass's: busy gives them to one pass at a time). Order: the library's model_lock
 * (held around our callbacks) -> lock -> the function's lock (uiommu_pci_fn_command(), raising
 * and lowering interrupts). A doorbell's pass runs its DMA and raises under model_lock (read)
 * with `lock` dropped, so model_lock -> the DMA engine's locks and vfio-pci's irq_lock; reset
 * and unrealize, which take model_lock for writing, wait for it as they wait for the worker. Interrupts are raised and
 * lowered from the worker with `lock` dropped but `busy` set, so that a reset or a disable
 * (which wait for !busy) returns only after them; after the raise the worker lowers INTx again
 * if an INT_STATUS clear ran in between, so the line follows INT_STATUS.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/thread.h"
#include "machine/models/dma-test.h"
#include "uiommu/device.h"

#define DMA_TEST_CHUNK (64u << 10)     /* bytes moved per DMA transfer */
#define DMA_TEST_POLL_US 500u          /* doorbell page polling while a queue is enabled... */
#define DMA_TEST_POLL_MIN_US 20u       /* ...and just after a descriptor ran (adaptive) */
#define DMA_TEST_CMD_MASTER 0x0004     /* Command: Bus Master Enable */
#define DMA_TEST_BATCH 256u            /* descriptors fetched and run in one pass at most... */
#define DMA_TEST_BATCH_BYTES (1u << 20) /* ...and bytes copied (a reset waits for the pass) */
#define DMA_TEST_INLINE_BYTES (4u << 20) /* a doorbell's writer runs passes up to this many */

/* The built-in models' table (machine/pci.c) names this one. */
extern const struct uiommu_pci_model pci_model_dma_test;

struct dma_test_queue {
	uint64_t ring_base;
	uint32_t ring_size;
	uint32_t ctrl;
	uint32_t pasid;
	uint32_t head;
	uint32_t error;
	uint32_t err_errno;
	uint64_t error_iova;
	uint32_t completed;
	unsigned long gen;             /* bumped by disable and reset: results of older runs drop */
	/*
	 * The descriptor at head is a COPY whose copy moved and whose completion record is still
	 * to be written: a writer's pass stopped at the record with EAGAIN (a page response to
	 * wait for), so the worker's pass writes only the record (run again, an overlapping copy
	 * would move other bytes).
	 */
	bool rec_pending;
};

struct dma_test {
	struct uiommu_pci_fn *fn;
	uint32_t *doorbells;           /* the doorbell page (shared memory) */
	pthread_mutex_t lock;          /* protects everything below but the bounce buffers */
	pthread_cond_t cond;           /* work may be there (the worker waits on it) */
	pthread_cond_t idle;           /* busy went false (disable, reset wait on it) */
	struct dma_test_queue q[DMA_TEST_NR_QUEUES];
	uint64_t scratch;
	uint32_t io_scratch;
	uint32_t int_status;
	bool stop;                     /* unrealize: the worker exits */
	bool busy;                     /* a pass of queue busy_q runs (worker or doorbell) */
	unsigned int busy_q;
	unsigned int next_q;           /* round-robin start */
	pthread_t worker;
	pid_t worker_pid;              /* the process the worker runs in; 0: none */
	LIST_ENTRY(dma_test) node;     /* in dma_tests; dma_tests_lock */
	uint8_t *bounce[2];            /* the worker's: FILL's pattern, COMPARE's two sides */
	/* The worker's, for a batch: the descriptors fetched, the completion records to write
	 * back (recs[i] says where comps[i] goes: only its iova changes; of comps[i] only bytes
	 * and cookie, status being set once at realize) and the engine ops, one per descriptor,
	 * of which a pass writes only the fields the engine reads. */
	struct dma_test_desc descs[DMA_TEST_BATCH];
	struct dma_test_completion comps[DMA_TEST_BATCH];
	struct uiommu_dma_record recs[DMA_TEST_BATCH];
	struct uiommu_dma_op ops[DMA_TEST_BATCH];
};

/* The outcome of one pass: descriptors completed, then maybe the one that stopped the queue. */
struct dma_test_result {
	int err;                       /* 0, or an errno of the DMA; EPERM: retry later */
	uint32_t code;                 /* DMA_TEST_ERR_* when stopping */
	uint64_t iova;                 /* the refused IOVA */
	uint32_t flags;                /* the descriptor's */
	unsigned int done;             /* descriptors completed before it */
	unsigned int irqs;             /* of those, how many asked for an interrupt */
	uint64_t bytes;                /* of those, the bytes they moved or compared */
	bool rec_pending;              /* the next one's copy moved, its record did not */
};

/*
 * Every dma-test of the process, for fork(): the worker threads do not survive it, so the
 * child's copies get new ones, at their first register access. dma_tests_lock protects the
 * list and comes before any dt->lock; fork takes both (no copy of a held lock in the child).
 */
static pthread_mutex_t dma_tests_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, dma_test) dma_tests = LIST_HEAD_INITIALIZER(dma_tests);
static pthread_once_t dma_test_atfork_once = PTHREAD_ONCE_INIT;

static void dma_test_atfork_prepare(void)
{
	struct dma_test *dt;

	pthread_mutex_lock(&dma_tests_lock);
	LIST_FOREACH(dt, &dma_tests, node)
		pthread_mutex_lock(&dt->lock);
}

static void dma_test_atfork_parent(void)
{
	struct dma_test *dt;

	LIST_FOREACH(dt, &dma_tests, node)
		pthread_mutex_unlock(&dt->lock);
	pthread_mutex_unlock(&dma_tests_lock);
}

/* The child has no worker: a descriptor the parent's had in progress runs again (its head
 * did not move), from the worker dma_test_worker_ensure() starts. */
static void dma_test_atfork_child(void)
{
	struct dma_test *dt;

	LIST_FOREACH(dt, &dma_tests, node) {
		dt->busy = false;
		dt->worker_pid = 0;
		pthread_cond_init(&dt->cond, NULL);
		pthread_cond_init(&dt->idle, NULL);
		pthread_mutex_unlock(&dt->lock);
	}
	pthread_mutex_unlock(&dma_tests_lock);
}

static void dma_test_atfork_register(void)
{
	if (pthread_atfork(dma_test_atfork_prepare, dma_test_atfork_parent,
			   dma_test_atfork_child))
		abort();
}

/*
 * Registered when the library loads, before the virtual sysfs registers its own handler (at its
 * session's start): glibc runs prepare handlers in the reverse order of registration, so fork
 * takes our locks after the sysfs lock, the order a boot takes them in (sysfs lock, then an
 * instance's realize). Registered at the first realize instead, ours ran first: an inversion.
 */
__attribute__((constructor)) static void dma_test_atfork_early(void)
{
	pthread_once(&dma_test_atfork_once, dma_test_atfork_register);
}

static struct dma_test *to_dt(struct uiommu_pci_fn *fn)
{
	return uiommu_pci_fn_priv(fn);
}

static uint32_t dma_test_tail(struct dma_test *dt, unsigned int q)
{
	return __atomic_load_n(&dt->doorbells[2 * q], __ATOMIC_ACQUIRE);
}

static bool dma_test_queue_has_work(struct dma_test *dt, unsigned int q)
{
	struct dma_test_queue *dq = &dt->q[q];

	/* A ring resized while enabled is the driver's bug; it must not become ours. */
	if (dq->ring_size < 2 || dq->ring_size & (dq->ring_size - 1))
		return false;
	return (dq->ctrl & DMA_TEST_CTRL_ENABLE) && !dq->error &&
	       dq->head != (dma_test_tail(dt, q) & (dq->ring_size - 1));
}

/* ---- running a descriptor ---------------------------------------------------------------- */

/* One transfer; on a refusal fills @r (the IOVA the IOMMU refused). Return: 0 or the errno. */
static int dma_test_xfer(struct dma_test *dt, unsigned int op, uint32_t pasid, unsigned int flags,
			 uint64_t iova, void *buf, size_t len, struct dma_test_result *r)
{
	struct uiommu_dma_req req = {
		.op = op, .flags = flags, .pasid = pasid, .iova = iova, .buf = buf, .len = len,
	};

	if (!uiommu_pci_dma_xfer(dt->fn, &req))
		return 0;
	r->err = req.error;
	r->code = DMA_TEST_ERR_DMA;
	r->iova = iova + req.done;
	return req.error;
}

static int dma_test_run_op(struct dma_test *dt, const struct dma_test_desc *d, uint32_t pasid,
			   unsigned int flags, struct dma_test_completion *c,
			   struct dma_test_result *r)
{
	uint8_t *a = dt->bounce[0], *b = dt->bounce[1];

	if (d->op == DMA_TEST_OP_FILL)
		for (size_t i = 0; i < DMA_TEST_CHUNK; i++)
			a[i] = (uint8_t)(d->pattern >> (8 * (i % 8)));
	c->bytes = d->len;
	for (uint64_t off = 0; off < d->len; off += DMA_TEST_CHUNK) {
		size_t n = d->len - off < DMA_TEST_CHUNK ? (size_t)(d->len - off) : DMA_TEST_CHUNK;

		uint64_t src = d->src + off, dst = d->dst + off;
		const unsigned int rd = UIOMMU_DMA_OP_READ, wr = UIOMMU_DMA_OP_WRITE;

		switch (d->op) {
		case DMA_TEST_OP_FILL:
			if (dma_test_xfer(dt, wr, pasid, flags, dst, a, n, r))
				return r->err;
			break;
		case DMA_TEST_OP_COMPARE:
			if (dma_test_xfer(dt, rd, pasid, flags, src, a, n, r) ||
			    dma_test_xfer(dt, rd, pasid, flags, dst, b, n, r))
				return r->err;
			if (memcmp(a, b, n)) {
				size_t i = 0;

				while (a[i] == b[i])
					i++;
				c->result = 1;
				c->bytes = off + i;
				return 0;
			}
			break;
		}
	}
	return 0;
}

/* Descriptor @d, fetched: the one-descriptor path (FILL, COMPARE: through the bounce buffers). */
static void dma_test_run_one(struct dma_test *dt, const struct dma_test_desc *d, uint32_t pasid,
			     unsigned int flags, struct dma_test_result *r)
{
	struct dma_test_completion c = { .status = DMA_TEST_COMP_DONE };

	if (dma_test_run_op(dt, d, pasid, flags, &c, r))
		return;
	if (d->completion) {
		c.cookie = d->cookie;
		if (dma_test_xfer(dt, UIOMMU_DMA_OP_WRITE, pasid, flags, d->completion, &c,
				  sizeof(c), r))
			return;
	}
	r->done = 1;
	r->irqs = d->flags & DMA_TEST_DESC_IRQ ? 1 : 0;
	r->bytes = d->len;
}

static bool dma_test_desc_bad(const struct dma_test_desc *d)
{
	return d->op > DMA_TEST_OP_COMPARE || d->flags & ~DMA_TEST_DESC_IRQ ||
	       d->len > DMA_TEST_MAX_LEN;
}

/*
 * One pass over the ring from snap->head (the lock is not held): up to @max descriptors,
 * fetched with one DMA read; the COPYs and NOPs among them, with their completion records, go
 * to the engine as one batch (device-to-device copies: no bounce buffer, one visit to the
 * IOMMU). A FILL or COMPARE runs alone, first of its pass. The pass stops at the first
 * descriptor that fails, as the queue does. @flags: the DMA's (UIOMMU_DMA_NO_WAIT in a
 * writer's thread).
 */
static void dma_test_run(struct dma_test *dt, const struct dma_test_queue *snap, unsigned int max,
			 unsigned int flags, struct dma_test_result *r)
{
	uint32_t pasid = snap->pasid & DMA_TEST_PASID_MASK;

	uint64_t base = snap->ring_base + 64ull * snap->head, bytes = 0;
	struct uiommu_dma_req fetch = {
		.op = UIOMMU_DMA_OP_READ, .flags = flags, .pasid = pasid, .iova = base,
		.buf = dt->descs, .len = 64u * max,
	};
	unsigned int n, i, start, nops = 0, irqs = 0;
	struct uiommu_dma_op stop;
	uint64_t run_bytes;
	unsigned int run_irqs;
	ssize_t got;

	memset(r, 0, sizeof(*r));
	r->rec_pending = snap->rec_pending; /* until the pass gets past that descriptor */
	if (uiommu_pci_dma_xfer(dt->fn, &fetch) && fetch.done < 64) {
		r->err = fetch.error;
		r->code = DMA_TEST_ERR_DMA;
		r->iova = base + fetch.done;
		return;
	}
	/* Those fetched whole; a fault in the next one is met when the pass reaches it. */
	n = (unsigned int)(fetch.done / 64);
	if (dma_test_desc_bad(&dt->descs[0])) {
		r->flags = dt->descs[0].flags;
		r->code = DMA_TEST_ERR_DESC;
		return;
	}
	if (dt->descs[0].op == DMA_TEST_OP_FILL || dt->descs[0].op == DMA_TEST_OP_COMPARE) {
		r->flags = dt->descs[0].flags;
		r->rec_pending = false; /* the descriptor was rewritten under the device */
		dma_test_run_one(dt, &dt->descs[0], pasid, flags, r);
		return;
	}
	/*
	 * The leading run of COPYs with records goes to the engine straight from the fetched
	 * descriptors (uiommu_pci_dma_copy_run(): no op built, checked and walked); it stops where
	 * a copy needs the general way, and from there the pass builds ops as below.
	 */
	for (i = 0; i < n && !snap->rec_pending; i++) {
		const struct dma_test_desc *d = &dt->descs[i];

		if (d->op != DMA_TEST_OP_COPY || !d->len || !d->completion || dma_test_desc_bad(d) ||
		    (i && bytes >= DMA_TEST_BATCH_BYTES))
			break;
		dt->comps[i].bytes = d->len;
		dt->comps[i].cookie = d->cookie;
		dt->recs[i].iova = d->completion;
		bytes += d->len;
		irqs += d->flags & DMA_TEST_DESC_IRQ ? 1 : 0;
	}
	got = i ? uiommu_pci_dma_copy_run(dt->fn, pasid, flags, &dt->descs[0].src,
					  sizeof(dt->descs[0]), dt->recs, i, &stop) : 0;
	if (got < 0) {
		r->err = errno; /* EPERM: the same descriptors run again later */
		r->code = DMA_TEST_ERR_DMA;
		r->iova = base;
		return;
	}
	start = (unsigned int)got;
	if (start < i) {
		/* The run stopped short (rare): count only what it did. */
		for (i = 0, bytes = 0, irqs = 0; i < start; i++) {
			bytes += dt->descs[i].len;
			irqs += dt->descs[i].flags & DMA_TEST_DESC_IRQ ? 1 : 0;
		}
		if (stop.error) {
			/* Its copy made, its record refused: the queue stops at it, not redone. */
			r->done = start;
			r->bytes = bytes;
			r->irqs = irqs;
			r->flags = dt->descs[start].flags;
			r->err = stop.error;
			r->code = DMA_TEST_ERR_DMA;
			r->iova = stop.fault_iova;
			r->rec_pending = stop.error == EAGAIN;
			return;
		}
	}
	run_bytes = bytes;
	run_irqs = irqs;
	for (i = start; i < n; i++) {
		const struct dma_test_desc *d = &dt->descs[i];

		if (dma_test_desc_bad(d) || (d->op != DMA_TEST_OP_COPY && d->op != DMA_TEST_OP_NOP) ||
		    (i && bytes >= DMA_TEST_BATCH_BYTES))
			break; /* a pass of its own */
		irqs += d->flags & DMA_TEST_DESC_IRQ ? 1 : 0;
		if (d->completion) {
			/* status, result and reserved never change (dma_test_realize() set them). */
			dt->comps[i].bytes = d->op == DMA_TEST_OP_COPY ? d->len : 0;
			dt->comps[i].cookie = d->cookie;
			dt->recs[i].iova = d->completion;
		}
		/* Only what the engine reads: it writes each op's results itself. */
		if (d->op == DMA_TEST_OP_COPY && d->len && !(i == 0 && snap->rec_pending)) {
			struct uiommu_dma_op *op = &dt->ops[nops++];

			/* The copy and its completion record: one op (UIOMMU_DMA_RECORD). */
			op->op = UIOMMU_DMA_OP_COPY;
			op->flags = flags | (d->completion ? UIOMMU_DMA_RECORD : 0);
			op->pasid = pasid;
			op->src = d->src;
			op->iova = d->dst;
			op->len = d->len;
			op->buf = &dt->recs[i];
			bytes += d->len;
		} else if (d->completion) {
			struct uiommu_dma_op *op = &dt->ops[nops++];

			op->op = UIOMMU_DMA_OP_WRITE;
			op->flags = flags;
			op->pasid = pasid;
			op->iova = d->completion;
			op->len = sizeof(dt->comps[i]);
			op->buf = &dt->comps[i];
		}
	}
	n = i;
	got = nops ? uiommu_pci_dma_batch(dt->fn, dt->ops, nops) : 0;
	if (got < 0) {
		/*
		 * The gate closed after the run (EPERM; ENODEV): what the run did stands, its
		 * records written, so it counts, and only the rest runs again later (redone, a
		 * copy would land again in a buffer its record told the driver it may reuse).
		 */
		r->done = start;
		r->bytes = run_bytes;
		r->irqs = run_irqs;
		r->err = errno;
		r->code = DMA_TEST_ERR_DMA;
		r->iova = base + 64ull * start;
		return;
	}
	if ((size_t)got == nops) {
		/* All went: no need to walk the descriptors again (the common case). */
		r->done = n;
		r->bytes = bytes;
		r->irqs = irqs;
		r->rec_pending = false;
		return;
	}
	/* Walk the descriptors against the ops to find how far the batch went. */
	r->done = start;
	r->bytes = run_bytes;
	r->irqs = run_irqs;
	for (i = start, nops = 0; i < n; i++) {
		const struct dma_test_desc *d = &dt->descs[i];
		unsigned int need = (d->op == DMA_TEST_OP_COPY && d->len) || d->completion;

		if (nops + need > (size_t)got) {
			const struct uiommu_dma_op *op = &dt->ops[got];

			r->flags = d->flags;
			r->err = op->error;
			r->code = DMA_TEST_ERR_DMA;
			r->iova = op->fault_iova;
			/* Stopped for a page response at the record of a copy that moved whole. */
			if (op->error == EAGAIN && op->op == UIOMMU_DMA_OP_WRITE)
				r->rec_pending = i == start && snap->rec_pending;
			else
				r->rec_pending = op->error == EAGAIN && op->done == op->len;
			return;
		}
		nops += need;
		r->rec_pending = false;
		r->done++;
		r->bytes += d->op == DMA_TEST_OP_COPY ? d->len : 0;
		r->irqs += d->flags & DMA_TEST_DESC_IRQ ? 1 : 0;
	}
}

/* Raises queue @q's interrupt: its MSI-X vector, or vector 0 when fewer are enabled. */
static void dma_test_raise(struct dma_test *dt, unsigned int q)
{
	if (uiommu_pci_irq_raise(dt->fn, q) && errno == EINVAL && q)
		uiommu_pci_irq_raise(dt->fn, 0);
}

/* lock held: the worker's result for queue @q. Return: interrupts to raise. */
static unsigned int dma_test_apply(struct dma_test *dt, unsigned int q,
				   const struct dma_test_result *r)
{
	struct dma_test_queue *dq = &dt->q[q];
	unsigned int irqs = r->irqs;

	dq->head = (dq->head + r->done) & (dq->ring_size - 1);
	dq->completed += r->done;
	dq->rec_pending = r->rec_pending;
	if (r->code && r->err != EPERM && r->err != EAGAIN) {
		/*
		 * EPERM: no bus mastering now; EAGAIN: a page request to wait for, which only the
		 * worker may. Either way the same descriptor runs again later, on the worker.
		 */
		dq->error = r->code;
		dq->err_errno = r->code == DMA_TEST_ERR_DMA ? (uint32_t)r->err : 0;
		dq->error_iova = r->code == DMA_TEST_ERR_DMA ? r->iova : 0;
		irqs++;
	}
	if (!irqs || !(dq->ctrl & DMA_TEST_CTRL_IRQ))
		return 0;
	dt->int_status |= 1u << q;
	return irqs;
}

/* lock held: the queue with work to take next, or -1. */
static int dma_test_pick(struct dma_test *dt, bool *any_enabled)
{
	*any_enabled = false;
	for (unsigned int i = 0; i < DMA_TEST_NR_QUEUES; i++) {
		unsigned int q = (dt->next_q + i) % DMA_TEST_NR_QUEUES;

		*any_enabled |= dt->q[q].ctrl & DMA_TEST_CTRL_ENABLE;
		if (dma_test_queue_has_work(dt, q)) {
			dt->next_q = (q + 1) % DMA_TEST_NR_QUEUES;
			return (int)q;
		}
	}
	return -1;
}

/* lock held: sleeps @us at most; after a look that timed out the next one waits twice as long. */
static void dma_test_poll_wait(struct dma_test *dt, unsigned int *us)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += *us * 1000l;
	if (ts.tv_nsec >= 1000000000l) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000l;
	}
	if (pthread_cond_timedwait(&dt->cond, &dt->lock, &ts) == ETIMEDOUT)
		*us = *us * 2 < DMA_TEST_POLL_US ? *us * 2 : DMA_TEST_POLL_US;
}

/*
 * lock held, !busy, queue @q has work: one pass of it, by the worker or by the thread that
 * rang the doorbell (@flags: UIOMMU_DMA_NO_WAIT), with the lock dropped around the DMA and the
 * raise. Return: the result stands (the queue was neither disabled nor reset meanwhile); *@r.
 */
static bool dma_test_pass(struct dma_test *dt, unsigned int q, unsigned int flags,
			  struct dma_test_result *r)
{
	struct dma_test_queue snap = dt->q[q];
	unsigned int irqs, max;
	bool ours;

	/* The pending descriptors up to the ring's end, as many as a pass takes. */
	max = (dma_test_tail(dt, q) - snap.head) & (snap.ring_size - 1);
	max = MIN(MIN(max, snap.ring_size - snap.head), DMA_TEST_BATCH);
	flags |= snap.pasid & DMA_TEST_PASID_VALID ? 0 : UIOMMU_DMA_NO_PASID;
	dt->busy = true;
	dt->busy_q = q;
	pthread_mutex_unlock(&dt->lock);

	dma_test_run(dt, &snap, max, flags, r);

	pthread_mutex_lock(&dt->lock);
	/* Disabled or reset meanwhile: the result is void. */
	ours = snap.gen == dt->q[q].gen;
	irqs = ours ? dma_test_apply(dt, q, r) : 0;
	if (irqs) {
		/*
		 * Raised with the lock dropped: the driver the message wakes comes straight back
		 * with a register access, which would otherwise wait for our unlock (two more
		 * switches per interrupt). busy stays set, so a reset or a disable still returns
		 * only after the raise. One message per descriptor that asked, as the descriptors
		 * completed one by one.
		 */
		pthread_mutex_unlock(&dt->lock);
		while (irqs--)
			dma_test_raise(dt, q);
		pthread_mutex_lock(&dt->lock);
		/* An INT_STATUS clear between apply and raise lowered a line we then
		 * raised: INTx follows INT_STATUS. */
		if (!dt->int_status)
			uiommu_pci_irq_lower(dt->fn);
	}
	/*
	 * The caller tells `idle` (dma_test_idle()) once its passes are over: a doorbell's writer
	 * runs several with the lock held in between, so a waiter woken at every one would only
	 * find the next one busy, and each such wake-up of the worker cost the writer a futex
	 * round trip (~8% of a 4 KiB COPY descriptor, bench/README.md).
	 */
	dt->busy = false;
	return ours;
}

/* lock held, !busy: wakes those waiting for a pass to end (a disable, a reset). */
static void dma_test_idle(struct dma_test *dt)
{
	pthread_cond_broadcast(&dt->idle);
}

static void *dma_test_worker(void *arg)
{
	struct dma_test *dt = arg;
	unsigned int poll_us = DMA_TEST_POLL_US;
	bool stalled = false;

	pthread_mutex_lock(&dt->lock);
	while (!dt->stop) {
		struct dma_test_result r;
		bool any_enabled = false, master;
		int q;

		/*
		 * A doorbell's pass runs in its writer's thread: the queues are its until it ends.
		 * Not a wait on `idle`: the writer would wake us at the end of every doorbell
		 * (a futex wake-up, ~10% of a 4 KiB COPY descriptor's time, bench/README.md) only
		 * for us to find its queue empty. What it leaves to us it says on `cond`
		 * (dma_test_doorbell()); a store through the mapped page waits for our next look.
		 */
		if (dt->busy) {
			dma_test_poll_wait(dt, &poll_us);
			continue;
		}
		master = uiommu_pci_fn_command(dt->fn) & DMA_TEST_CMD_MASTER;
		q = master && !stalled ? dma_test_pick(dt, &any_enabled) : -1;
		if (q < 0) {
			if (!master || stalled || any_enabled)
				dma_test_poll_wait(dt, &poll_us);
			else
				pthread_cond_wait(&dt->cond, &dt->lock);
			stalled = false;
			continue;
		}
		poll_us = DMA_TEST_POLL_MIN_US;
		stalled = dma_test_pass(dt, (unsigned int)q, 0, &r) && r.err == EPERM;
		dma_test_idle(dt);
	}
	pthread_mutex_unlock(&dt->lock);
	return NULL;
}

/*
 * lock held: queue @q's doorbell was written through the library (the TAIL register, a
 * pwrite into the doorbell page). Its passes run here, in the writer's thread, as a VMM runs a
 * device's MMIO handler in the vCPU thread that wrote the register: a queue of up to
 * DMA_TEST_INLINE_BYTES of work completes, and its interrupts are raised, before the write
 * returns, with no wake-up of the worker. The worker keeps what may not or should not run
 * here: a pass already under way, the rest of a longer queue, a descriptor that needs a page
 * response (UIOMMU_DMA_NO_WAIT stops it with EAGAIN; the worker runs it again and waits), Bus
 * Master off. A store through the mapped page tells nobody and stays the worker's to find.
 */
static void dma_test_doorbell(struct dma_test *dt, unsigned int q)
{
	uint64_t bytes = 0;
	struct dma_test_result r;
	bool ran = false;

	while (!dt->busy && dma_test_queue_has_work(dt, q) && bytes < DMA_TEST_INLINE_BYTES &&
	       (uiommu_pci_fn_command(dt->fn) & DMA_TEST_CMD_MASTER)) {
		ran = true;
		if (!dma_test_pass(dt, q, UIOMMU_DMA_NO_WAIT, &r) || r.err == EAGAIN ||
		    r.err == EPERM)
			break;
		bytes += r.bytes + 64ull * r.done;
	}
	if (ran)
		dma_test_idle(dt);
	if (dma_test_queue_has_work(dt, q))
		pthread_cond_broadcast(&dt->cond);
}

/*
 * lock held: a worker runs in this process (a forked child starts its own). Return: 0, -errno.
 * Its callers are register writes, which cannot fail: a worker that cannot start now is tried
 * again at the next write, and until then the doorbells a writer rings run in the writer's
 * thread. So there is no failure to inject here (an injected one would be swallowed).
 */
static int dma_test_worker_ensure(struct dma_test *dt)
{
	/* The fork child's handler zeroes worker_pid: no getpid() system call per doorbell. */
	if (dt->worker_pid)
		return 0;
	if (uiommu_thread_create(&dt->worker, NULL, dma_test_worker, dt))
		return -ENOMEM;
	dt->worker_pid = getpid();
	return 0;
}

/* lock held: waits until the worker is not running a descriptor of @q (any queue: -1). */
static void dma_test_wait_idle(struct dma_test *dt, int q)
{
	while (dt->busy && (q < 0 || dt->busy_q == (unsigned int)q))
		pthread_cond_wait(&dt->idle, &dt->lock);
}

/* ---- registers ------------------------------------------------------------------------------ */

/* lock held: the 8 bytes of register space at @off (8-byte aligned). */
static uint64_t dma_test_block(struct dma_test *dt, uint64_t off)
{
	unsigned int caps = DMA_TEST_CAP_COPY | DMA_TEST_CAP_FILL | DMA_TEST_CAP_COMPARE;

	if (uiommu_pci_fn_pasid_bits(dt->fn))
		caps |= DMA_TEST_CAP_PASID;
	switch (off) {
	case DMA_TEST_REG_ID:
		return DMA_TEST_ID | (uint64_t)DMA_TEST_VERSION << 32;
	case DMA_TEST_REG_NR_QUEUES:
		return DMA_TEST_NR_QUEUES | (uint64_t)caps << 32;
	case DMA_TEST_REG_SCRATCH:
		return dt->scratch;
	case DMA_TEST_REG_INT_STATUS:
		return dt->int_status;
	}
	if (off >= DMA_TEST_QUEUE(0) && off < DMA_TEST_QUEUE(DMA_TEST_NR_QUEUES)) {
		unsigned int q = (unsigned int)(off - DMA_TEST_QUEUE(0)) / 0x40;
		struct dma_test_queue *dq = &dt->q[q];
		uint32_t status = 0;

		if ((dq->ctrl & DMA_TEST_CTRL_ENABLE) && !dq->error)
			status |= DMA_TEST_STATUS_RUNNING;
		if (!dq->ring_size || dq->head == (dma_test_tail(dt, q) & (dq->ring_size - 1)))
			status |= DMA_TEST_STATUS_IDLE;
		if (dq->error)
			status |= DMA_TEST_STATUS_ERROR;
		switch (off - DMA_TEST_QUEUE(q)) {
		case DMA_TEST_Q_RING_BASE:
			return dq->ring_base;
		case DMA_TEST_Q_RING_SIZE:
			return dq->ring_size | (uint64_t)dq->ctrl << 32;
		case DMA_TEST_Q_PASID:
			return dq->pasid | (uint64_t)dq->head << 32;
		case DMA_TEST_Q_TAIL:
			return dma_test_tail(dt, q) | (uint64_t)status << 32;
		case DMA_TEST_Q_ERROR:
			return dq->error | (uint64_t)dq->err_errno << 32;
		case DMA_TEST_Q_ERROR_IOVA:
			return dq->error_iova;
		case DMA_TEST_Q_COMPLETED:
			return dq->completed;
		}
	}
	return 0;
}

/* Merges a write of @width bytes at byte @lane of an 8-byte block into @old. */
static uint64_t dma_test_merge(uint64_t old, unsigned int lane, unsigned int width, uint64_t val)
{
	uint64_t mask = (width == 8 ? UINT64_MAX : (1ull << (8 * width)) - 1) << (8 * lane);

	return (old & ~mask) | ((val << (8 * lane)) & mask);
}

/* lock held: a queue's CTRL takes @ctrl. */
static void dma_test_ctrl(struct dma_test *dt, unsigned int q, uint32_t ctrl)
{
	struct dma_test_queue *dq = &dt->q[q];
	bool was = dq->ctrl & DMA_TEST_CTRL_ENABLE, on = ctrl & DMA_TEST_CTRL_ENABLE;

	ctrl &= DMA_TEST_CTRL_ENABLE | DMA_TEST_CTRL_IRQ;
	if (was && !on) {
		/* Stop: nothing of the old run may complete after this write returns. */
		dq->gen++;
		dma_test_wait_idle(dt, (int)q);
		dq->head = 0;
		dq->rec_pending = false;
		__atomic_store_n(&dt->doorbells[2 * q], 0, __ATOMIC_RELEASE);
		dq->error = dq->err_errno = 0;
		dq->error_iova = 0;
	} else if (!was && on) {
		dq->head = 0;
		dq->rec_pending = false;
		dq->completed = 0;
		dq->error = dq->err_errno = 0;
		dq->error_iova = 0;
		if (dq->ring_size < 2 || dq->ring_size > DMA_TEST_MAX_RING ||
		    dq->ring_size & (dq->ring_size - 1) || dq->ring_base % 64)
			dq->error = DMA_TEST_ERR_RING;
	}
	dq->ctrl = ctrl;
	pthread_cond_broadcast(&dt->cond);
}

/* lock held: a write of @new over block @off, @wmask the bits written. Return: INT_STATUS
 * became 0 (lower INTx). */
static bool dma_test_block_write(struct dma_test *dt, uint64_t off, uint64_t new, uint64_t wmask)
{
	bool lo = wmask & 0xffffffffu, hi = wmask >> 32;

	if (off == DMA_TEST_REG_SCRATCH) {
		dt->scratch = new;
		return false;
	}
	if (off == DMA_TEST_REG_INT_STATUS) {
		uint32_t clear = (uint32_t)(new & wmask);

		if (!(dt->int_status & clear))
			return false;
		dt->int_status &= ~clear;
		return !dt->int_status;
	}
	if (off >= DMA_TEST_QUEUE(0) && off < DMA_TEST_QUEUE(DMA_TEST_NR_QUEUES)) {
		unsigned int q = (unsigned int)(off - DMA_TEST_QUEUE(0)) / 0x40;
		struct dma_test_queue *dq = &dt->q[q];

		switch (off - DMA_TEST_QUEUE(q)) {
		case DMA_TEST_Q_RING_BASE:
			dq->ring_base = new;
			break;
		case DMA_TEST_Q_RING_SIZE:
			if (lo)
				dq->ring_size = (uint32_t)new;
			if (hi)
				dma_test_ctrl(dt, q, (uint32_t)(new >> 32));
			break;
		case DMA_TEST_Q_PASID:
			if (lo)
				dq->pasid = (uint32_t)new &
					    (DMA_TEST_PASID_VALID | DMA_TEST_PASID_MASK);
			break;
		case DMA_TEST_Q_TAIL:
			if (lo) {
				__atomic_store_n(&dt->doorbells[2 * q], (uint32_t)new,
						 __ATOMIC_RELEASE);
				dma_test_doorbell(dt, q);
			}
			break;
		}
	}
	return false;
}

static uint64_t dma_test_bar_read(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
				  unsigned int width)
{
	struct dma_test *dt = to_dt(fn);
	uint64_t v;

	pthread_mutex_lock(&dt->lock);
	if (bar == 2)
		v = (uint64_t)DMA_TEST_ID | (uint64_t)dt->io_scratch << 32;
	else
		v = dma_test_block(dt, offset & ~7ull);
	pthread_mutex_unlock(&dt->lock);
	return v >> (8 * (offset & 7));
}

static void dma_test_bar_write(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
			       unsigned int width, uint64_t value)
{
	struct dma_test *dt = to_dt(fn);
	unsigned int lane = (unsigned int)(offset & 7);
	uint64_t wmask = dma_test_merge(0, lane, width, UINT64_MAX);
	pthread_mutex_lock(&dt->lock);
	/* The first write in a process starts its worker; if it cannot, nothing runs yet. */
	dma_test_worker_ensure(dt);
	if (bar == 2) {
		uint64_t v = dma_test_merge((uint64_t)dt->io_scratch << 32, lane, width, value);

		if (wmask >> 32)
			dt->io_scratch = (uint32_t)(v >> 32);
	} else {
		uint64_t old = dma_test_block(dt, offset & ~7ull);

		/* Lowered under the lock, so a raise of a new bit cannot slip in between. */
		uint64_t new = dma_test_merge(old, lane, width, value);

		if (dma_test_block_write(dt, offset & ~7ull, new, wmask))
			uiommu_pci_irq_lower(fn);
	}
	pthread_mutex_unlock(&dt->lock);
}

/* A doorbell stored through the library (a pwrite into the page): its pass runs at once. */
static void dma_test_area_written(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
				  unsigned int width)
{
	struct dma_test *dt = to_dt(fn);
	uint64_t q = (offset - DMA_TEST_DOORBELL_PAGE) / 8;

	pthread_mutex_lock(&dt->lock);
	dma_test_worker_ensure(dt);
	if (bar == 0 && offset >= DMA_TEST_DOORBELL_PAGE && q < DMA_TEST_NR_QUEUES &&
	    (offset & 7) < 4) {
		dma_test_doorbell(dt, (unsigned int)q);
		pthread_mutex_unlock(&dt->lock);
		return;
	}
	pthread_mutex_unlock(&dt->lock);
	/*
	 * After the unlock: a worker woken while we still held the lock would only block on it
	 * again (a second switch before it can run). Not lost: the doorbell was stored before we
	 * took the lock, so a worker that has not reached its wait yet sees it when it checks.
	 */
	pthread_cond_broadcast(&dt->cond);
}

/* Bus Master may be back: a stalled descriptor may run. */
static void dma_test_command_written(struct uiommu_pci_fn *fn, uint16_t old_cmd, uint16_t new_cmd)
{
	dma_test_area_written(fn, 0, 0, 0);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static void dma_test_reset(struct uiommu_pci_fn *fn)
{
	struct dma_test *dt = to_dt(fn);

	pthread_mutex_lock(&dt->lock);
	for (unsigned int q = 0; q < DMA_TEST_NR_QUEUES; q++) {
		unsigned long gen = dt->q[q].gen + 1;

		memset(&dt->q[q], 0, sizeof(dt->q[q]));
		dt->q[q].gen = gen;
	}
	dt->scratch = 0;
	dt->io_scratch = 0;
	dt->int_status = 0;
	dma_test_wait_idle(dt, -1);
	pthread_mutex_unlock(&dt->lock);
}

static void dma_test_free(struct dma_test *dt)
{
	uiommu_free(dt->bounce[0]);
	uiommu_free(dt->bounce[1]);
	pthread_cond_destroy(&dt->cond);
	pthread_cond_destroy(&dt->idle);
	pthread_mutex_destroy(&dt->lock);
	uiommu_free(dt);
}

static int dma_test_realize(struct uiommu_pci_fn *fn)
{
	struct dma_test *dt;

	dt = uiommu_zalloc(sizeof(*dt));
	if (!dt)
		return -ENOMEM;
	dt->fn = fn;
	pthread_mutex_init(&dt->lock, NULL);
	pthread_cond_init(&dt->cond, NULL);
	pthread_cond_init(&dt->idle, NULL);
	dt->bounce[0] = uiommu_zalloc(DMA_TEST_CHUNK);
	dt->bounce[1] = uiommu_zalloc(DMA_TEST_CHUNK);
	dt->doorbells = uiommu_pci_fn_area(fn, 0, 0);
	for (unsigned int i = 0; i < DMA_TEST_BATCH; i++) {
		dt->comps[i].status = DMA_TEST_COMP_DONE; /* result and reserved: 0 (zalloc) */
		dt->recs[i] = (struct uiommu_dma_record){
			.buf = &dt->comps[i], .len = sizeof(dt->comps[i]),
		};
	}
	if (!dt->bounce[0] || !dt->bounce[1] || !dt->doorbells)
		goto err_free;
	uiommu_pci_fn_set_priv(fn, dt);
	/*
	 * No worker yet: the first register write starts it (a queue is enabled through the
	 * registers before any doorbell can matter), so a process that never drives the function
	 * (every `ls /sys/...` under uiommu-run) runs no thread for it.
	 */
	pthread_once(&dma_test_atfork_once, dma_test_atfork_register);
	pthread_mutex_lock(&dma_tests_lock);
	LIST_INSERT_HEAD(&dma_tests, dt, node);
	pthread_mutex_unlock(&dma_tests_lock);
	return 0;

err_free:
	dma_test_free(dt);
	return -ENOMEM;
}

static void dma_test_unrealize(struct uiommu_pci_fn *fn)
{
	struct dma_test *dt = to_dt(fn);
	bool ours;

	pthread_mutex_lock(&dma_tests_lock);
	LIST_REMOVE(dt, node);
	pthread_mutex_unlock(&dma_tests_lock);
	pthread_mutex_lock(&dt->lock);
	dt->stop = true;
	ours = dt->worker_pid == getpid();
	pthread_cond_broadcast(&dt->cond);
	pthread_mutex_unlock(&dt->lock);
	if (ours)
		pthread_join(dt->worker, NULL);
	uiommu_pci_fn_set_priv(fn, NULL);
	dma_test_free(dt);
}

/*
 * The expansion ROM: one 1 KiB image with a PCI ROM header (0x55 0xaa, its length in 512-byte
 * units, the PCI Data Structure at 0x1c naming this function's IDs and class) and no code: its
 * code type is EFI (3) without an EFI image, so no firmware runs it; drivers and VMMs read it
 * through the VFIO ROM region as they read a real one.
 */
static const uint8_t dma_test_rom[DMA_TEST_ROM_SIZE] = {
	[0x00] = 0x55, [0x01] = 0xaa, [0x02] = DMA_TEST_ROM_SIZE / 512,
	[0x18] = 0x1c, [0x19] = 0x00,
	[0x1c] = 'P', [0x1d] = 'C', [0x1e] = 'I', [0x1f] = 'R',
	[0x20] = DMA_TEST_VENDOR_ID & 0xff, [0x21] = DMA_TEST_VENDOR_ID >> 8,
	[0x22] = DMA_TEST_DEVICE_ID & 0xff, [0x23] = DMA_TEST_DEVICE_ID >> 8,
	[0x26] = 0x18,                                      /* PCIR length */
	[0x29] = (DMA_TEST_CLASS >> 0) & 0xff, [0x2a] = (DMA_TEST_CLASS >> 8) & 0xff,
	[0x2b] = (DMA_TEST_CLASS >> 16) & 0xff,
	[0x2c] = DMA_TEST_ROM_SIZE / 512,                   /* image length, 512-byte units */
	[0x30] = 0x03,                                      /* code type: EFI */
	[0x31] = 0x80,                                      /* the last image */
};

const struct uiommu_pci_model pci_model_dma_test = {
	.version = UIOMMU_PCI_MODEL_V3,
	.name = "dma-test",
	.vendor_id = DMA_TEST_VENDOR_ID,
	.device_id = DMA_TEST_DEVICE_ID,
	.subsystem_vendor_id = DMA_TEST_VENDOR_ID,
	.subsystem_id = DMA_TEST_DEVICE_ID,
	.class_code = DMA_TEST_CLASS,
	.revision = DMA_TEST_REVISION,
	.interrupt_pin = 1,
	.caps = UIOMMU_PCI_CAP_PM | UIOMMU_PCI_CAP_MSI | UIOMMU_PCI_CAP_MSIX | UIOMMU_PCI_CAP_PCIE,
	.msi_vectors = DMA_TEST_NR_QUEUES,
	.msix_vectors = DMA_TEST_NR_QUEUES,
	.msix_table_bar = 0,
	.msix_table_offset = DMA_TEST_MSIX_TABLE,
	.msix_pba_bar = 0,
	.msix_pba_offset = DMA_TEST_MSIX_PBA,
	.bars = {
		[0] = {
			.size = DMA_TEST_BAR0_SIZE,
			.flags = UIOMMU_PCI_BAR_64,
			.nr_areas = 1,
			.areas = { { .offset = DMA_TEST_DOORBELL_PAGE, .size = 0x1000 } },
		},
		[2] = { .size = DMA_TEST_BAR2_SIZE, .flags = UIOMMU_PCI_BAR_IO },
	},
	.realize = dma_test_realize,
	.unrealize = dma_test_unrealize,
	.reset = dma_test_reset,
	.command_written = dma_test_command_written,
	.bar_read = dma_test_bar_read,
	.bar_write = dma_test_bar_write,
	.area_written = dma_test_area_written,
	.rom = dma_test_rom,
	.rom_size = sizeof(dma_test_rom),
};
