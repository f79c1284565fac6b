// SPDX-License-Identifier: MIT
/*
 * The machine's PCI functions: the object behind include/uiommu/device.h (what a device model
 * sees) and src/machine/pci.h (what VFIO and sysfs see).
 *
 * Data model. Every function of the topology gets a struct uiommu_pci_fn at boot
 * (pci_fn_create(), from topology.c): the model the topology names, or a generic function of
 * the topology's class with no BARs. The object holds the function's config space
 * (pci_config.c), the MSI-X table and PBA, the shared-memory areas of its BARs (one memfd), the
 * INTx level, the interrupt notifier of whoever drives the function, and its DMA gate. It lives
 * in a list (pci_fns) from creation to pci_fn_destroy(), and in memory while a reference is
 * held: VFIO keeps one per open device.
 *
 * Life of a function: created (power-on config) -> realized (the model's realize()) -> alive,
 * plugged or not -> unrealized at unload (alive false: every access answers -ENODEV, the model
 * is never called again) -> freed at the last put. Reset (FLR, plug) returns config space and
 * the MSI-X table to power-on, zeroes the shared areas and calls the model's reset().
 *
 * The DMA gate. A function may send memory requests only with Bus Master set, and a driver
 * that clears Bus Master, resets or removes the function relies on no request coming after.
 * Every DMA of a model passes the gate (uiommu_pci_dma_*()): under the function's lock it
 * checks dma_enabled (Bus Master, plugged, not resetting, alive) and counts itself in
 * dma_active; whatever closes the gate then waits until dma_active is 0. So when a Command
 * write that clears Bus Master returns, no DMA of the function is in flight and none will
 * start: the fence the VFIO layer needs for "a disabled device does no DMA". The engine handle
 * is opened at the first DMA after a plug and closed at unplug or unrealize, with the gate
 * closed and drained.
 *
 * Interrupts. uiommu_pci_irq_raise() looks at config space as hardware does: MSI-X (table,
 * function mask, PBA), else MSI (Multiple Message Enable, per-vector mask and pending bits),
 * else INTx (a level, shown in Status, gated by Command's INTx Disable). A message goes to the
 * notifier the upper layer registered (pci_fn_irq_register()); a masked one becomes pending and
 * goes out when a config or table write unmasks it. The notifier is called with no lock held;
 * irq_busy counts the calls running so that unregistering waits for them.
 *
 * Locking (details in pci_priv.h): model_lock (an rwsem: the model's callbacks read, realize,
 * reset and unrealize write) -> fn->lock (a leaf: never held calling the model, the notifier or
 * the DMA engine, except dma_engine_dev_open() and its close, which take only the engine's
 * leaf lock). pci_models_lock -> pci_fns_lock, both leaves otherwise. The topology calls in
 * under topology_lock, so a model's realize/reset/unrealize run under it too: a model must
 * not call topology functions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "machine/dma-engine.h"
#include "machine/pci_priv.h"

#define PCI_MAX_MODELS 32u
#define PCI_PAGE_SIZE 4096u

/* Models registered by programs. pci_models_lock protects the table; it comes before
 * pci_fns_lock. A registered model with users > 0 cannot be unregistered. */
struct pci_model_entry {
	const struct uiommu_pci_model *model;
	unsigned int users;
};
static struct uiommu_mutex pci_models_lock = { .m = PTHREAD_MUTEX_INITIALIZER };
static struct pci_model_entry pci_models[PCI_MAX_MODELS];

static const struct uiommu_pci_model *const pci_builtin_models[] = {
	&pci_model_dma_test,
	&pci_model_virtio_rng,
	&pci_model_virtio_blk,
};

/* Every function from creation to destroy. pci_fns_lock (a leaf) protects the list. */
static struct uiommu_mutex pci_fns_lock = { .m = PTHREAD_MUTEX_INITIALIZER };
static LIST_HEAD(, uiommu_pci_fn) pci_fns = LIST_HEAD_INITIALIZER(pci_fns);

/* ---- models ---------------------------------------------------------------------------------- */

static bool pci_is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static int pci_model_check_bars(const struct uiommu_pci_model *m)
{
	for (unsigned int i = 0; i < UIOMMU_PCI_NUM_BARS; i++) {
		const struct uiommu_pci_bar *b = &m->bars[i];

		if (!b->size) {
			if (b->flags || b->nr_areas)
				return -EINVAL;
			continue;
		}
		if (!pci_is_pow2(b->size) || b->flags & ~(UIOMMU_PCI_BAR_IO | UIOMMU_PCI_BAR_64 |
							  UIOMMU_PCI_BAR_PREFETCH))
			return -EINVAL;
		if (b->flags & UIOMMU_PCI_BAR_IO) {
			if (b->size < 4 || b->size > 256 || b->flags != UIOMMU_PCI_BAR_IO ||
			    b->nr_areas)
				return -EINVAL;
			continue;
		}
		if (b->size < 16 ||
		    b->size > (b->flags & UIOMMU_PCI_BAR_64 ? 1ull << 40 : 1ull << 31))
			return -EINVAL;
		if (b->flags & UIOMMU_PCI_BAR_64) {
			if (i == UIOMMU_PCI_NUM_BARS - 1 || m->bars[i + 1].size ||
			    m->bars[i + 1].flags || m->bars[i + 1].nr_areas)
				return -EINVAL;
		}
		if (b->nr_areas > UIOMMU_PCI_MAX_AREAS)
			return -EINVAL;
		for (unsigned int a = 0; a < b->nr_areas; a++) {
			const struct uiommu_pci_area *ar = &b->areas[a];

			if (!ar->size || ar->offset % PCI_PAGE_SIZE || ar->size % PCI_PAGE_SIZE ||
			    ar->offset >= b->size || ar->size > b->size - ar->offset)
				return -EINVAL;
			for (unsigned int o = 0; o < a; o++)
				if (ar->offset < b->areas[o].offset + b->areas[o].size &&
				    b->areas[o].offset < ar->offset + ar->size)
					return -EINVAL;
		}
	}
	return 0;
}

/* Is [off, off + len) of @bar free of shared areas, and inside a memory BAR? */
static bool pci_model_range_ok(const struct uiommu_pci_model *m, unsigned int bar, uint64_t off,
			       uint64_t len)
{
	const struct uiommu_pci_bar *b;

	if (bar >= UIOMMU_PCI_NUM_BARS)
		return false;
	b = &m->bars[bar];
	if (!b->size || b->flags & UIOMMU_PCI_BAR_IO || off % 8 || off >= b->size ||
	    len > b->size - off)
		return false;
	for (unsigned int a = 0; a < b->nr_areas; a++)
		if (off < b->areas[a].offset + b->areas[a].size && b->areas[a].offset < off + len)
			return false;
	return true;
}

/* V2's vendor-specific capabilities: each non-empty, all of them below 0x100. */
static int pci_model_check_vendor_caps(const struct uiommu_pci_model *m)
{
	unsigned int off = PCI_CFG_OFF_VNDR;

	if (m->version < UIOMMU_PCI_MODEL_V2)
		return 0;
	if (m->nr_vendor_caps && !m->vendor_caps)
		return -EINVAL;
	for (unsigned int i = 0; i < m->nr_vendor_caps; i++) {
		const struct uiommu_pci_vendor_cap *c = &m->vendor_caps[i];

		if (!c->len || !c->data || off + 3 + c->len > PCI_CFG_SPACE_SIZE)
			return -EINVAL;
		off = ALIGN_UP(off + 3 + c->len, 4u);
	}
	return 0;
}

static int pci_model_check(const struct uiommu_pci_model *m)
{
	unsigned int caps = UIOMMU_PCI_CAP_PM | UIOMMU_PCI_CAP_MSI | UIOMMU_PCI_CAP_MSIX |
			    UIOMMU_PCI_CAP_PCIE;

	if (!m || m->version < UIOMMU_PCI_MODEL_V1 || m->version > UIOMMU_PCI_MODEL_V3 ||
	    !m->name || !m->name[0] ||
	    strlen(m->name) > 31 || m->caps & ~caps || m->interrupt_pin > 4 ||
	    m->class_code >> 24)
		return -EINVAL;
	if (m->caps & UIOMMU_PCI_CAP_MSI) {
		if (!pci_is_pow2(m->msi_vectors) || m->msi_vectors > UIOMMU_PCI_MSI_MAX_VECTORS)
			return -EINVAL;
	} else if (m->msi_vectors) {
		return -EINVAL;
	}
	if (pci_model_check_bars(m) || pci_model_check_vendor_caps(m))
		return -EINVAL;
	if (m->version >= UIOMMU_PCI_MODEL_V3 &&
	    (!m->rom != !m->rom_size || m->rom_size > UIOMMU_PCI_ROM_MAX))
		return -EINVAL;
	if (m->caps & UIOMMU_PCI_CAP_MSIX) {
		uint64_t table = 16ull * m->msix_vectors;
		uint64_t pba = 8ull * ((m->msix_vectors + 63) / 64);

		if (!m->msix_vectors || m->msix_vectors > UIOMMU_PCI_MSIX_MAX_VECTORS ||
		    !pci_model_range_ok(m, m->msix_table_bar, m->msix_table_offset, table) ||
		    !pci_model_range_ok(m, m->msix_pba_bar, m->msix_pba_offset, pba))
			return -EINVAL;
		if (m->msix_table_bar == m->msix_pba_bar &&
		    m->msix_table_offset < m->msix_pba_offset + pba &&
		    m->msix_pba_offset < m->msix_table_offset + table)
			return -EINVAL;
	} else if (m->msix_vectors) {
		return -EINVAL;
	}
	return 0;
}

static const struct uiommu_pci_model *pci_builtin_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(pci_builtin_models); i++)
		if (!strcmp(pci_builtin_models[i]->name, name))
			return pci_builtin_models[i];
	return NULL;
}

static struct pci_model_entry *pci_model_entry_find(const char *name)
{
	lockdep_assert_held(&pci_models_lock);
	for (unsigned int i = 0; i < PCI_MAX_MODELS; i++)
		if (pci_models[i].model && !strcmp(pci_models[i].model->name, name))
			return &pci_models[i];
	return NULL;
}

bool pci_model_exists(const char *name)
{
	bool found;

	if (pci_builtin_find(name))
		return true;
	uiommu_mutex_lock(&pci_models_lock);
	found = pci_model_entry_find(name);
	uiommu_mutex_unlock(&pci_models_lock);
	return found;
}

/* The model named @name with a user counted (built-ins are not counted); NULL if unknown. */
static const struct uiommu_pci_model *pci_model_get(const char *name)
{
	const struct uiommu_pci_model *m = pci_builtin_find(name);
	struct pci_model_entry *e;

	if (m)
		return m;
	uiommu_mutex_lock(&pci_models_lock);
	e = pci_model_entry_find(name);
	if (e) {
		e->users++;
		m = e->model;
	}
	uiommu_mutex_unlock(&pci_models_lock);
	return m;
}

static void pci_model_put(const struct uiommu_pci_model *m)
{
	struct pci_model_entry *e;

	if (pci_builtin_find(m->name))
		return;
	uiommu_mutex_lock(&pci_models_lock);
	e = pci_model_entry_find(m->name);
	if (!WARN_ON(!e || !e->users))
		e->users--;
	uiommu_mutex_unlock(&pci_models_lock);
}

UIOMMU_EXPORT int uiommu_pci_model_register(const struct uiommu_pci_model *model)
{
	struct pci_model_entry *free_slot = NULL;
	int rc;

	rc = pci_model_check(model);
	if (rc)
		goto out;
	if (pci_builtin_find(model->name)) {
		rc = -EEXIST;
		goto out;
	}
	uiommu_mutex_lock(&pci_models_lock);
	if (pci_model_entry_find(model->name)) {
		rc = -EEXIST;
		goto out_unlock;
	}
	for (unsigned int i = 0; i < PCI_MAX_MODELS && !free_slot; i++)
		if (!pci_models[i].model)
			free_slot = &pci_models[i];
	if (!free_slot || uiommu_should_fail()) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	free_slot->model = model;
	free_slot->users = 0;
out_unlock:
	uiommu_mutex_unlock(&pci_models_lock);
out:
	if (rc) {
		errno = -rc;
		return -1;
	}
	return 0;
}

UIOMMU_EXPORT int uiommu_pci_model_unregister(const char *name)
{
	struct pci_model_entry *e;
	int rc = 0;

	if (!name) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&pci_models_lock);
	e = pci_model_entry_find(name);
	if (!e)
		rc = ENOENT;
	else if (e->users)
		rc = EBUSY;
	else
		e->model = NULL;
	uiommu_mutex_unlock(&pci_models_lock);
	if (rc) {
		errno = rc;
		return -1;
	}
	return 0;
}

/* ---- the generic function ------------------------------------------------------------------- */

/* A function the topology names no model for: an identity, config space, nothing else.
 * 0x1234 is the vendor ID emulators use for their own test devices (not a registered one). */
#define PCI_GENERIC_VENDOR 0x1234
#define PCI_GENERIC_DEVICE 0x0001

static void pci_generic_model(struct uiommu_pci_model *m, uint32_t class_code)
{
	memset(m, 0, sizeof(*m));
	m->version = UIOMMU_PCI_MODEL_V1;
	m->name = "";
	m->vendor_id = PCI_GENERIC_VENDOR;
	m->device_id = PCI_GENERIC_DEVICE;
	m->subsystem_vendor_id = PCI_GENERIC_VENDOR;
	m->subsystem_id = PCI_GENERIC_DEVICE;
	m->class_code = class_code & 0xffffff;
	m->caps = UIOMMU_PCI_CAP_PM | UIOMMU_PCI_CAP_PCIE;
}

/* ---- waiting under the function's lock ---------------------------------------------------- */

/* fn->lock held: waits for fn->cond (DMA drained, notifier calls finished). */
static void pci_fn_wait(struct uiommu_pci_fn *fn)
{
	lockdep_assert_held(&fn->lock);
	uiommu_cond_wait(&fn->cond, &fn->lock);
}

/* ---- the DMA gate ---------------------------------------------------------------------------- */

static void pci_fn_gate_update(struct uiommu_pci_fn *fn)
{
	lockdep_assert_held(&fn->lock);
	fn->dma_enabled = fn->alive && fn->present && !fn->resetting &&
			  (pci_config_get16(fn, PCI_CFG_COMMAND) & PCI_CMD_MASTER);
}

/* fn->lock held: waits until no transfer is past the gate, unless the gate opened again. */
static void pci_fn_gate_drain(struct uiommu_pci_fn *fn)
{
	lockdep_assert_held(&fn->lock);
	while (fn->dma_active && !fn->dma_enabled)
		pci_fn_wait(fn);
}

/* fn->lock held, the gate closed and drained: lets the engine handle go. */
static void pci_fn_dma_close(struct uiommu_pci_fn *fn)
{
	lockdep_assert_held(&fn->lock);
	if (fn->dma && !fn->dma_active) {
		uiommu_dma_dev_close(fn->dma);
		fn->dma = NULL;
	}
}

/* Passes the gate: the engine handle to use, or ERR_PTR(-EPERM / -ENODEV / -ENOMEM). */
static struct uiommu_dma_dev *pci_fn_dma_begin(struct uiommu_pci_fn *fn)
{
	struct uiommu_dma_dev *e;

	uiommu_mutex_lock(&fn->lock);
	if (!fn->dma_enabled) {
		e = ERR_PTR(fn->alive && !fn->present ? -ENODEV : -EPERM);
		goto out_unlock;
	}
	if (!fn->dma) {
		e = dma_engine_dev_open(fn->dev);
		if (IS_ERR(e))
			goto out_unlock;
		fn->dma = e;
	}
	e = fn->dma;
	fn->dma_active++;
out_unlock:
	uiommu_mutex_unlock(&fn->lock);
	return e;
}

static void pci_fn_dma_end(struct uiommu_pci_fn *fn)
{
	uiommu_mutex_lock(&fn->lock);
	if (!--fn->dma_active)
		uiommu_cond_broadcast(&fn->cond);
	uiommu_mutex_unlock(&fn->lock);
}

UIOMMU_EXPORT int uiommu_pci_dma_xfer(struct uiommu_pci_fn *fn, struct uiommu_dma_req *req)
{
	struct uiommu_dma_dev *e;
	int rc;

	if (!fn || !req) {
		errno = EINVAL;
		return -1;
	}
	e = pci_fn_dma_begin(fn);
	if (IS_ERR(e)) {
		req->done = 0;
		req->error = (int)-PTR_ERR(e);
		errno = req->error;
		return -1;
	}
	rc = uiommu_dma_xfer(e, req);
	pci_fn_dma_end(fn);
	if (rc)
		errno = req->error;
	return rc;
}

static ssize_t pci_fn_dma_rw(struct uiommu_pci_fn *fn, unsigned int op, uint32_t pasid,
			     uint64_t iova, void *buf, size_t len, unsigned int flags)
{
	struct uiommu_dma_req req = {
		.op = op, .flags = flags, .pasid = pasid, .iova = iova, .buf = buf, .len = len,
	};

	if (uiommu_pci_dma_xfer(fn, &req))
		return -1;
	return (ssize_t)len;
}

UIOMMU_EXPORT ssize_t uiommu_pci_dma_read(struct uiommu_pci_fn *fn, uint32_t pasid,
					  uint64_t iova, void *buf, size_t len,
					  unsigned int flags)
{
	return pci_fn_dma_rw(fn, UIOMMU_DMA_OP_READ, pasid, iova, buf, len, flags);
}

UIOMMU_EXPORT ssize_t uiommu_pci_dma_write(struct uiommu_pci_fn *fn, uint32_t pasid,
					   uint64_t iova, const void *buf, size_t len,
					   unsigned int flags)
{
	return pci_fn_dma_rw(fn, UIOMMU_DMA_OP_WRITE, pasid, iova, (void *)buf, len, flags);
}

/* pci_fn_dma_begin() at the public boundary: the handle, or NULL and errno (EINVAL, EPERM...). */
static struct uiommu_dma_dev *pci_fn_dma_enter(struct uiommu_pci_fn *fn)
{
	struct uiommu_dma_dev *e;

	if (!fn) {
		errno = EINVAL;
		return NULL;
	}
	e = pci_fn_dma_begin(fn);
	if (IS_ERR(e)) {
		errno = (int)-PTR_ERR(e);
		return NULL;
	}
	return e;
}

UIOMMU_EXPORT ssize_t uiommu_pci_dma_batch(struct uiommu_pci_fn *fn, struct uiommu_dma_op *ops,
					   size_t n)
{
	struct uiommu_dma_dev *e = pci_fn_dma_enter(fn);
	ssize_t got;
	int err;

	if (!e)
		return -1;
	got = uiommu_dma_batch(e, ops, n);
	err = errno;
	pci_fn_dma_end(fn);
	errno = err;
	return got;
}

UIOMMU_EXPORT ssize_t uiommu_pci_dma_copy_run(struct uiommu_pci_fn *fn, uint32_t pasid,
					      unsigned int flags, const void *copies, size_t stride,
					      const struct uiommu_dma_record *recs, size_t n,
					      struct uiommu_dma_op *stop)
{
	struct uiommu_dma_dev *e = pci_fn_dma_enter(fn);
	ssize_t got;

	if (!e)
		return -1;
	got = dma_engine_copy_run(e, pasid, flags, copies, stride, recs, n, stop);
	pci_fn_dma_end(fn);
	if (got < 0) {
		errno = (int)-got;
		return -1;
	}
	return got;
}

UIOMMU_EXPORT ssize_t uiommu_pci_dma_read_faults(struct uiommu_pci_fn *fn,
						 struct uiommu_dma_fault *buf, size_t n)
{
	struct uiommu_dma_dev *e;
	ssize_t got;

	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	/* The log lives in the engine handle; without one (never DMAed since plug) it is empty.
	 * Hold the handle as a transfer would, so an unplug cannot close it under us. */
	uiommu_mutex_lock(&fn->lock);
	e = fn->dma;
	if (e)
		fn->dma_active++;
	uiommu_mutex_unlock(&fn->lock);
	if (!e)
		return 0;
	got = uiommu_dma_dev_read_faults(e, buf, n);
	pci_fn_dma_end(fn);
	return got;
}

/* ---- interrupts ------------------------------------------------------------------------------ */

enum pci_irq_msg_kind { PCI_MSG_NONE, PCI_MSG_MSI, PCI_MSG_MSIX, PCI_MSG_INTX };

/* Calls the notifier for one event (a message, or the INTx line's new level), lock not held. */
static void pci_fn_notify(struct uiommu_pci_fn *fn, enum pci_irq_msg_kind kind,
			  unsigned int vector, bool level)
{
	const struct pci_irq_ops *ops;
	void *priv;

	uiommu_mutex_lock(&fn->lock);
	ops = fn->irq_ops;
	priv = fn->irq_priv;
	if (ops)
		fn->irq_busy++;
	uiommu_mutex_unlock(&fn->lock);
	if (!ops)
		return;
	if (kind == PCI_MSG_INTX) {
		if (ops->intx)
			ops->intx(priv, level);
	} else if (ops->msi) {
		ops->msi(priv, kind == PCI_MSG_MSIX ? PCI_IRQ_MSIX : PCI_IRQ_MSI, vector);
	}
	uiommu_mutex_lock(&fn->lock);
	if (!--fn->irq_busy)
		uiommu_cond_broadcast(&fn->cond);
	uiommu_mutex_unlock(&fn->lock);
}

static uint32_t pci_fn_msix_ctrl(struct uiommu_pci_fn *fn, unsigned int v)
{
	const uint8_t *e = fn->msix_table + (size_t)v * PCI_MSIX_ENTRY_SIZE;

	return (uint32_t)e[12] | (uint32_t)e[13] << 8 | (uint32_t)e[14] << 16 |
	       (uint32_t)e[15] << 24;
}

static bool pci_fn_msix_enabled(struct uiommu_pci_fn *fn)
{
	return fn->cap_msix &&
	       (pci_config_get16(fn, fn->cap_msix + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_ENABLE);
}

static bool pci_fn_msi_enabled(struct uiommu_pci_fn *fn)
{
	return fn->cap_msi &&
	       (pci_config_get16(fn, fn->cap_msi + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_ENABLE);
}

static unsigned int pci_fn_msi_nvec(struct uiommu_pci_fn *fn)
{
	uint16_t flags = pci_config_get16(fn, fn->cap_msi + PCI_MSI_FLAGS);

	return 1u << ((flags & PCI_MSI_FLAGS_QSIZE) >> 4);
}

static bool pci_fn_msix_masked(struct uiommu_pci_fn *fn, unsigned int v)
{
	return (pci_config_get16(fn, fn->cap_msix + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_MASKALL) ||
	       (pci_fn_msix_ctrl(fn, v) & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* The INTx line as an interrupt controller sees it: asserted and not disabled. */
static bool pci_fn_intx_line(struct uiommu_pci_fn *fn)
{
	return fn->intx_asserted && !pci_fn_msi_enabled(fn) && !pci_fn_msix_enabled(fn) &&
	       !(pci_config_get16(fn, PCI_CFG_COMMAND) & PCI_CMD_INTX_DISABLE);
}

/* fn->lock held: has the line changed since the notifier was last told? */
static bool pci_fn_intx_sync(struct uiommu_pci_fn *fn, bool *level)
{
	bool line = pci_fn_intx_line(fn);
	uint16_t sts = pci_config_get16(fn, PCI_CFG_STATUS);

	lockdep_assert_held(&fn->lock);
	pci_config_set16(fn, PCI_CFG_STATUS, fn->intx_asserted ? sts | PCI_STS_INTERRUPT :
					     sts & ~PCI_STS_INTERRUPT);
	if (line == fn->intx_line)
		return false;
	fn->intx_line = line;
	*level = line;
	return true;
}

/*
 * fn->lock held: takes one pending message that may go out now (enabled, unmasked, Bus
 * Master on), clearing its pending bit. Return: its kind (PCI_MSG_NONE: none).
 */
static enum pci_irq_msg_kind pci_fn_take_pending(struct uiommu_pci_fn *fn, unsigned int *vector)
{
	bool master = pci_config_get16(fn, PCI_CFG_COMMAND) & PCI_CMD_MASTER;

	lockdep_assert_held(&fn->lock);
	if (!master)
		return PCI_MSG_NONE;
	if (pci_fn_msix_enabled(fn)) {
		for (unsigned int v = 0; v < fn->msix_vectors; v++) {
			if (!(fn->msix_pba[v / 64] & (1ull << (v % 64))) ||
			    pci_fn_msix_masked(fn, v))
				continue;
			fn->msix_pba[v / 64] &= ~(1ull << (v % 64));
			*vector = v;
			return PCI_MSG_MSIX;
		}
	} else if (pci_fn_msi_enabled(fn)) {
		unsigned int c = fn->cap_msi;
		uint32_t pending = pci_config_get32(fn, c + PCI_MSI_PENDING_64);
		uint32_t mask = pci_config_get32(fn, c + PCI_MSI_MASK_64);

		for (unsigned int v = 0; v < pci_fn_msi_nvec(fn); v++) {
			if (!(pending & (1u << v)) || mask & (1u << v))
				continue;
			pci_config_set32(fn, c + PCI_MSI_PENDING_64, pending & ~(1u << v));
			*vector = v;
			return PCI_MSG_MSI;
		}
	}
	return PCI_MSG_NONE;
}

/* After a write that may have unmasked or changed the INTx line: send what may go now. */
static void pci_fn_irq_flush(struct uiommu_pci_fn *fn)
{
	for (;;) {
		enum pci_irq_msg_kind kind;
		unsigned int vector = 0;
		bool level = false;

		uiommu_mutex_lock(&fn->lock);
		if (pci_fn_intx_sync(fn, &level)) {
			uiommu_mutex_unlock(&fn->lock);
			pci_fn_notify(fn, PCI_MSG_INTX, 0, level);
			continue;
		}
		kind = pci_fn_take_pending(fn, &vector);
		uiommu_mutex_unlock(&fn->lock);
		if (kind == PCI_MSG_NONE)
			return;
		pci_fn_notify(fn, kind, vector, false);
	}
}

UIOMMU_EXPORT int uiommu_pci_irq_raise(struct uiommu_pci_fn *fn, unsigned int vector)
{
	enum pci_irq_msg_kind kind = PCI_MSG_NONE;
	bool intx = false;
	int rc = 0;

	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&fn->lock);
	if (!fn->alive) {
		rc = ENODEV;
	} else if (pci_fn_msix_enabled(fn)) {
		if (vector >= fn->msix_vectors)
			rc = EINVAL;
		else if (pci_fn_msix_masked(fn, vector))
			fn->msix_pba[vector / 64] |= 1ull << (vector % 64);
		else if (pci_config_get16(fn, PCI_CFG_COMMAND) & PCI_CMD_MASTER)
			kind = PCI_MSG_MSIX;
	} else if (pci_fn_msi_enabled(fn)) {
		unsigned int c = fn->cap_msi;

		if (vector >= pci_fn_msi_nvec(fn))
			rc = EINVAL;
		else if (pci_config_get32(fn, c + PCI_MSI_MASK_64) & (1u << vector))
			pci_config_set32(fn, c + PCI_MSI_PENDING_64, 1u << vector |
					 pci_config_get32(fn, c + PCI_MSI_PENDING_64));
		else if (pci_config_get16(fn, PCI_CFG_COMMAND) & PCI_CMD_MASTER)
			kind = PCI_MSG_MSI;
	} else if (vector) {
		rc = EINVAL;
	} else if (!fn->cfg[PCI_CFG_INT_PIN]) {
		rc = ENODEV;
	} else {
		fn->intx_asserted = true;
		intx = true;
	}
	uiommu_mutex_unlock(&fn->lock);
	if (rc) {
		errno = rc;
		return -1;
	}
	if (kind != PCI_MSG_NONE)
		pci_fn_notify(fn, kind, vector, false);
	if (intx)
		pci_fn_irq_flush(fn);
	return 0;
}

UIOMMU_EXPORT int uiommu_pci_irq_lower(struct uiommu_pci_fn *fn)
{
	if (!fn) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&fn->lock);
	fn->intx_asserted = false;
	uiommu_mutex_unlock(&fn->lock);
	pci_fn_irq_flush(fn);
	return 0;
}

int pci_fn_irq_register(struct uiommu_pci_fn *fn, const struct pci_irq_ops *ops, void *priv)
{
	int rc = 0;

	uiommu_mutex_lock(&fn->lock);
	if (fn->irq_ops) {
		rc = -EBUSY;
	} else {
		fn->irq_ops = ops;
		fn->irq_priv = priv;
		/* The new listener learns the line's level from its next change. */
		fn->intx_line = false;
	}
	uiommu_mutex_unlock(&fn->lock);
	if (!rc)
		pci_fn_irq_flush(fn);
	return rc;
}

void pci_fn_irq_unregister(struct uiommu_pci_fn *fn)
{
	uiommu_mutex_lock(&fn->lock);
	fn->irq_ops = NULL;
	fn->irq_priv = NULL;
	while (fn->irq_busy)
		pci_fn_wait(fn);
	uiommu_mutex_unlock(&fn->lock);
}

unsigned int pci_fn_irq_count(struct uiommu_pci_fn *fn, enum pci_irq_type type)
{
	unsigned int n = 0;

	uiommu_mutex_lock(&fn->lock);
	switch (type) {
	case PCI_IRQ_INTX:
		n = fn->cfg[PCI_CFG_INT_PIN] ? 1 : 0;
		break;
	case PCI_IRQ_MSI:
		if (fn->cap_msi)
			n = 1u << ((pci_config_get16(fn, fn->cap_msi + PCI_MSI_FLAGS) &
				    PCI_MSI_FLAGS_QMASK) >> 1);
		break;
	case PCI_IRQ_MSIX:
		n = fn->msix_vectors;
		break;
	default:
		break;
	}
	uiommu_mutex_unlock(&fn->lock);
	return n;
}

static void pci_fn_msix_set_mask(struct uiommu_pci_fn *fn, unsigned int v, bool mask)
{
	uint8_t *ctrl = fn->msix_table + (size_t)v * PCI_MSIX_ENTRY_SIZE +
			PCI_MSIX_ENTRY_VECTOR_CTRL;

	*ctrl = (uint8_t)(mask ? *ctrl | PCI_MSIX_ENTRY_CTRL_MASKBIT :
				 *ctrl & ~PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* fn->lock held: the interrupt mode registers for "@type with @nvec vectors" (NONE: none). */
static void pci_fn_irq_program(struct uiommu_pci_fn *fn, enum pci_irq_type type,
			       unsigned int nvec)
{
	uint16_t cmd = pci_config_get16(fn, PCI_CFG_COMMAND);

	lockdep_assert_held(&fn->lock);
	if (fn->cap_msix) {
		unsigned int c = fn->cap_msix + PCI_MSIX_FLAGS;
		uint16_t f = pci_config_get16(fn, c) &
			     ~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);

		if (type == PCI_IRQ_MSIX) {
			f |= PCI_MSIX_FLAGS_ENABLE;
			for (unsigned int v = 0; v < fn->msix_vectors; v++)
				pci_fn_msix_set_mask(fn, v, v >= nvec);
		}
		pci_config_set16(fn, c, f);
	}
	if (fn->cap_msi) {
		unsigned int c = fn->cap_msi;
		uint16_t f = pci_config_get16(fn, c + PCI_MSI_FLAGS) &
			     ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);

		if (type == PCI_IRQ_MSI) {
			unsigned int mme = 0;

			while ((1u << mme) < nvec)
				mme++;
			f |= (uint16_t)(PCI_MSI_FLAGS_ENABLE | mme << 4);
			pci_config_set32(fn, c + PCI_MSI_MASK_64,
					 pci_config_get32(fn, c + PCI_MSI_MASK_64) &
					 ~(nvec >= 32 ? 0xffffffffu : (1u << nvec) - 1));
		}
		pci_config_set16(fn, c + PCI_MSI_FLAGS, f);
	}
	if (fn->cfg[PCI_CFG_INT_PIN])
		cmd = type == PCI_IRQ_INTX ? cmd & ~PCI_CMD_INTX_DISABLE :
					     cmd | PCI_CMD_INTX_DISABLE;
	pci_config_set16(fn, PCI_CFG_COMMAND, cmd);
}

int pci_fn_irq_enable(struct uiommu_pci_fn *fn, enum pci_irq_type type, unsigned int nvec)
{
	unsigned int max = pci_fn_irq_count(fn, type);
	int rc = 0;

	if (type != PCI_IRQ_INTX && type != PCI_IRQ_MSI && type != PCI_IRQ_MSIX)
		return -EINVAL;
	if (!max)
		return -ENODEV;
	if (!nvec || nvec > max)
		return -EINVAL;
	uiommu_mutex_lock(&fn->lock);
	if (!fn->alive)
		rc = -ENODEV;
	else
		pci_fn_irq_program(fn, type, nvec);
	uiommu_mutex_unlock(&fn->lock);
	if (!rc)
		pci_fn_irq_flush(fn);
	return rc;
}

int pci_fn_irq_disable(struct uiommu_pci_fn *fn)
{
	int rc = 0;

	uiommu_mutex_lock(&fn->lock);
	if (!fn->alive)
		rc = -ENODEV;
	else
		pci_fn_irq_program(fn, PCI_IRQ_NONE, 0);
	uiommu_mutex_unlock(&fn->lock);
	if (!rc)
		pci_fn_irq_flush(fn);
	return rc;
}

int pci_fn_irq_mask(struct uiommu_pci_fn *fn, enum pci_irq_type type, unsigned int vector,
		    bool mask)
{
	int rc = 0;

	uiommu_mutex_lock(&fn->lock);
	if (!fn->alive) {
		rc = -ENODEV;
	} else if (type == PCI_IRQ_MSIX && vector < fn->msix_vectors) {
		pci_fn_msix_set_mask(fn, vector, mask);
	} else if (type == PCI_IRQ_MSI && fn->cap_msi && vector < fn->model->msi_vectors) {
		unsigned int c = fn->cap_msi + PCI_MSI_MASK_64;
		uint32_t m = pci_config_get32(fn, c);

		pci_config_set32(fn, c, mask ? m | 1u << vector : m & ~(1u << vector));
	} else if (type == PCI_IRQ_INTX && !vector && fn->cfg[PCI_CFG_INT_PIN]) {
		uint16_t cmd = pci_config_get16(fn, PCI_CFG_COMMAND);

		pci_config_set16(fn, PCI_CFG_COMMAND, mask ? cmd | PCI_CMD_INTX_DISABLE :
							     cmd & ~PCI_CMD_INTX_DISABLE);
	} else {
		rc = -EINVAL;
	}
	uiommu_mutex_unlock(&fn->lock);
	if (!rc && !mask)
		pci_fn_irq_flush(fn);
	return rc;
}

bool pci_fn_irq_pending(struct uiommu_pci_fn *fn, enum pci_irq_type type, unsigned int vector)
{
	bool pending = false;

	uiommu_mutex_lock(&fn->lock);
	if (type == PCI_IRQ_MSIX && vector < fn->msix_vectors)
		pending = fn->msix_pba[vector / 64] & (1ull << (vector % 64));
	else if (type == PCI_IRQ_MSI && fn->cap_msi && vector < 32)
		pending = pci_config_get32(fn, fn->cap_msi + PCI_MSI_PENDING_64) & (1u << vector);
	else if (type == PCI_IRQ_INTX && !vector)
		pending = fn->intx_asserted;
	uiommu_mutex_unlock(&fn->lock);
	return pending;
}

/* ---- reset ----------------------------------------------------------------------------------- */

/* fn->lock held: MSI-X table and PBA to power-on (every vector masked, nothing pending). */
static void pci_fn_msix_init(struct uiommu_pci_fn *fn)
{
	lockdep_assert_held(&fn->lock);
	if (!fn->msix_vectors)
		return;
	memset(fn->msix_table, 0, (size_t)fn->msix_vectors * PCI_MSIX_ENTRY_SIZE);
	memset(fn->msix_pba, 0, sizeof(uint64_t) * ((fn->msix_vectors + 63) / 64));
	for (unsigned int v = 0; v < fn->msix_vectors; v++)
		pci_fn_msix_set_mask(fn, v, true);
}

/*
 * Closes the gate for a reset or an unrealize and waits for the transfers past it.
 * Return: false when the function is not alive (nothing to do).
 */
static bool pci_fn_quiesce(struct uiommu_pci_fn *fn)
{
	bool alive;

	uiommu_mutex_lock(&fn->lock);
	alive = fn->alive;
	fn->resetting = true;
	pci_fn_gate_update(fn);
	pci_fn_gate_drain(fn);
	uiommu_mutex_unlock(&fn->lock);
	return alive;
}

/* model_lock held for writing: everything a reset does after the model's reset(). */
static void pci_fn_reset_state(struct uiommu_pci_fn *fn)
{
	uiommu_mutex_lock(&fn->lock);
	pci_config_init(fn);
	pci_fn_msix_init(fn);
	fn->intx_asserted = false;
	/* Word by word, atomically: a driver's mapping and the model may be reading. */
	for (size_t i = 0; i < fn->shm_size; i += sizeof(uint64_t))
		__atomic_store_n((uint64_t *)(fn->shm + i), 0, __ATOMIC_RELAXED);
	fn->resetting = false;
	pci_fn_gate_update(fn);
	uiommu_mutex_unlock(&fn->lock);
	pci_fn_irq_flush(fn);
}

int pci_fn_reset(struct uiommu_pci_fn *fn)
{
	int rc = 0;

	uiommu_down_write(&fn->model_lock);
	if (!pci_fn_quiesce(fn)) {
		rc = -ENODEV;
		goto out_unlock;
	}
	if (fn->model->reset)
		fn->model->reset(fn);
	pci_fn_reset_state(fn);
out_unlock:
	uiommu_up_write(&fn->model_lock);
	return rc;
}

/* ---- config space ---------------------------------------------------------------------------- */

unsigned int pci_fn_config_size(const struct uiommu_pci_fn *fn)
{
	return fn->cfg_size; /* fixed by the model */
}

int pci_fn_config_read(struct uiommu_pci_fn *fn, unsigned int off, void *buf, size_t len)
{
	int rc = 0;

	if (off > fn->cfg_size || len > fn->cfg_size - off)
		return -EINVAL;
	uiommu_mutex_lock(&fn->lock);
	if (fn->alive)
		memcpy(buf, fn->cfg + off, len);
	else
		rc = -ENODEV;
	uiommu_mutex_unlock(&fn->lock);
	return rc;
}

int pci_fn_config_write(struct uiommu_pci_fn *fn, unsigned int off, const void *buf, size_t len)
{
	const struct uiommu_pci_model *m = fn->model;
	struct pci_cfg_effects eff;

	if (off > fn->cfg_size || len > fn->cfg_size - off)
		return -EINVAL;
	uiommu_mutex_lock(&fn->lock);
	if (!fn->alive || fn->resetting) {
		/* A config cycle during a reset gets no answer; after unrealize, no function. */
		bool alive = fn->alive;

		uiommu_mutex_unlock(&fn->lock);
		return alive ? 0 : -ENODEV;
	}
	pci_config_write_locked(fn, off, buf, len, &eff);
	pci_fn_gate_update(fn);
	pci_fn_gate_drain(fn);
	uiommu_mutex_unlock(&fn->lock);

	if (eff.flr)
		return pci_fn_reset(fn);
	pci_fn_irq_flush(fn);
	if (eff.cmd_written && m->command_written) {
		uiommu_down_read(&fn->model_lock);
		if (pci_fn_alive(fn))
			m->command_written(fn, eff.old_cmd, eff.new_cmd);
		uiommu_up_read(&fn->model_lock);
	}
	return 0;
}

int pci_fn_config_read_reg(struct uiommu_pci_fn *fn, unsigned int off, unsigned int width,
			   uint32_t *val)
{
	uint8_t b[4] = { 0 };
	int rc;

	if ((width != 1 && width != 2 && width != 4) || off % width)
		return -EINVAL;
	rc = pci_fn_config_read(fn, off, b, width);
	if (!rc)
		*val = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		       (uint32_t)b[3] << 24;
	return rc;
}

int pci_fn_config_write_reg(struct uiommu_pci_fn *fn, unsigned int off, unsigned int width,
			    uint32_t val)
{
	uint8_t b[4] = { (uint8_t)val, (uint8_t)(val >> 8), (uint8_t)(val >> 16),
			 (uint8_t)(val >> 24) };

	if ((width != 1 && width != 2 && width != 4) || off % width)
		return -EINVAL;
	return pci_fn_config_write(fn, off, b, width);
}

unsigned int pci_fn_find_cap(struct uiommu_pci_fn *fn, uint8_t id)
{
	unsigned int pos;

	uiommu_mutex_lock(&fn->lock);
	pos = pci_config_find_cap_locked(fn, id);
	uiommu_mutex_unlock(&fn->lock);
	return pos;
}

unsigned int pci_fn_find_ext_cap(struct uiommu_pci_fn *fn, uint16_t id)
{
	unsigned int pos;

	uiommu_mutex_lock(&fn->lock);
	pos = pci_config_find_ext_cap_locked(fn, id);
	uiommu_mutex_unlock(&fn->lock);
	return pos;
}

/* ---- BARs ------------------------------------------------------------------------------------ */

/* The ROM BAR's size for @m's image: the power of two holding it, 2 KiB at least; 0: none. */
static uint64_t pci_model_rom_size(const struct uiommu_pci_model *m)
{
	uint64_t size = 2048;

	if (m->version < UIOMMU_PCI_MODEL_V3 || !m->rom_size)
		return 0;
	while (size < m->rom_size)
		size <<= 1;
	return size;
}

size_t pci_fn_rom(const struct uiommu_pci_fn *fn, const void **image, size_t *image_size)
{
	*image = fn->rom_size ? fn->model->rom : NULL;
	*image_size = fn->rom_size ? fn->model->rom_size : 0;
	return fn->rom_size;
}

/*
 * A read of the ROM as the function answers it: only while it decodes the ROM (Memory in
 * Command, the ROM BAR's enable bit, D0, not resetting); else a master abort, all-ones.
 */
int pci_fn_rom_read(struct uiommu_pci_fn *fn, uint64_t offset, void *buf, size_t len)
{
	const struct uiommu_pci_model *m = fn->model;
	bool decoded;
	size_t n;

	if (!fn->rom_size || offset > fn->rom_size || len > fn->rom_size - offset)
		return -EINVAL;
	uiommu_mutex_lock(&fn->lock);
	if (!fn->alive) {
		uiommu_mutex_unlock(&fn->lock);
		return -ENODEV;
	}
	decoded = (pci_config_get16(fn, PCI_CFG_COMMAND) & PCI_CMD_MEMORY) &&
		  (pci_config_get32(fn, PCI_CFG_ROM) & PCI_ROM_ENABLE) && !fn->resetting &&
		  (!fn->cap_pm || !(pci_config_get16(fn, fn->cap_pm + PCI_PM_CTRL) &
				    PCI_PM_CTRL_STATE_MASK));
	uiommu_mutex_unlock(&fn->lock);
	if (!decoded) {
		memset(buf, 0xff, len);
		return 0;
	}
	/* The image is the model's, constant while it is registered: no lock needed. */
	n = offset >= m->rom_size ? 0 : len < m->rom_size - offset ? len : m->rom_size - offset;
	memcpy(buf, (const uint8_t *)m->rom + offset, n);
	memset((uint8_t *)buf + n, 0xff, len - n);
	return 0;
}

int pci_fn_bar_info(struct uiommu_pci_fn *fn, unsigned int bar, struct pci_fn_bar_info *info)
{
	const struct uiommu_pci_model *m = fn->model;

	if (bar >= UIOMMU_PCI_NUM_BARS)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->size = fn->bar_size[bar];
	info->flags = fn->bar_flags[bar];
	info->nr_areas = m->bars[bar].nr_areas;
	for (unsigned int a = 0; a < info->nr_areas; a++) {
		info->areas[a].offset = m->bars[bar].areas[a].offset;
		info->areas[a].size = m->bars[bar].areas[a].size;
		info->areas[a].fd = fn->memfd;
		info->areas[a].fd_offset = fn->area_fd_offset[bar][a];
	}
	if (fn->msix_vectors && m->msix_table_bar == bar) {
		info->msix_table = true;
		info->msix_table_offset = m->msix_table_offset;
		info->msix_table_size = (uint64_t)fn->msix_vectors * PCI_MSIX_ENTRY_SIZE;
	}
	if (fn->msix_vectors && m->msix_pba_bar == bar) {
		info->msix_pba = true;
		info->msix_pba_offset = m->msix_pba_offset;
		info->msix_pba_size = 8ull * ((fn->msix_vectors + 63) / 64);
	}
	return 0;
}

/* The area of @bar holding [off, off + width), or -1. */
static int pci_fn_area_at(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off)
{
	const struct uiommu_pci_bar *b = &fn->model->bars[bar];

	for (unsigned int a = 0; a < b->nr_areas; a++)
		if (off >= b->areas[a].offset && off - b->areas[a].offset < b->areas[a].size)
			return (int)a;
	return -1;
}

static uint64_t pci_shm_load(const uint8_t *p, unsigned int width)
{
	switch (width) {
	case 1: return __atomic_load_n(p, __ATOMIC_ACQUIRE);
	case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
	case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
	default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
	}
}

static void pci_shm_store(uint8_t *p, unsigned int width, uint64_t v)
{
	switch (width) {
	case 1: __atomic_store_n(p, (uint8_t)v, __ATOMIC_RELEASE); break;
	case 2: __atomic_store_n((uint16_t *)p, (uint16_t)v, __ATOMIC_RELEASE); break;
	case 4: __atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELEASE); break;
	default: __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); break;
	}
}

static uint64_t pci_bytes_get(const uint8_t *p, unsigned int width)
{
	uint64_t v = 0;

	for (unsigned int i = width; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static void pci_bytes_put(uint8_t *p, unsigned int width, uint64_t v)
{
	for (unsigned int i = 0; i < width; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

enum pci_bar_target { PCI_BAR_MODEL, PCI_BAR_AREA, PCI_BAR_MSIX_TABLE, PCI_BAR_MSIX_PBA };

static enum pci_bar_target pci_fn_bar_target(struct uiommu_pci_fn *fn, unsigned int bar,
					     uint64_t off, int *area)
{
	const struct uiommu_pci_model *m = fn->model;

	if (fn->msix_vectors && bar == m->msix_table_bar && off >= m->msix_table_offset &&
	    off - m->msix_table_offset < (uint64_t)fn->msix_vectors * PCI_MSIX_ENTRY_SIZE)
		return PCI_BAR_MSIX_TABLE;
	if (fn->msix_vectors && bar == m->msix_pba_bar && off >= m->msix_pba_offset &&
	    off - m->msix_pba_offset < 8ull * ((fn->msix_vectors + 63) / 64))
		return PCI_BAR_MSIX_PBA;
	*area = pci_fn_area_at(fn, bar, off);
	return *area >= 0 ? PCI_BAR_AREA : PCI_BAR_MODEL;
}

/* Checks an access; fn->lock held. Return: 0, -EINVAL, -ENODEV; *@decoded: the space is on. */
static int pci_fn_bar_check(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off,
			    unsigned int width, bool *decoded)
{
	uint16_t cmd;
	bool io;

	lockdep_assert_held(&fn->lock);
	if (bar >= UIOMMU_PCI_NUM_BARS || !fn->bar_size[bar] ||
	    (width != 1 && width != 2 && width != 4 && width != 8) || off % width ||
	    off >= fn->bar_size[bar] || width > fn->bar_size[bar] - off)
		return -EINVAL;
	io = fn->bar_flags[bar] & UIOMMU_PCI_BAR_IO;
	if (io && width == 8)
		return -EINVAL;
	if (!fn->alive)
		return -ENODEV;
	cmd = pci_config_get16(fn, PCI_CFG_COMMAND);
	*decoded = (cmd & (io ? PCI_CMD_IO : PCI_CMD_MEMORY)) && !fn->resetting &&
		   (!fn->cap_pm || !(pci_config_get16(fn, fn->cap_pm + PCI_PM_CTRL) &
				     PCI_PM_CTRL_STATE_MASK));
	return 0;
}

int pci_fn_bar_read(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
		    unsigned int width, uint64_t *val)
{
	const struct uiommu_pci_model *m = fn->model;
	enum pci_bar_target target;
	bool decoded = false;
	int area = -1, rc;

	uiommu_mutex_lock(&fn->lock);
	rc = pci_fn_bar_check(fn, bar, offset, width, &decoded);
	if (rc || !decoded) {
		uiommu_mutex_unlock(&fn->lock);
		/* A master abort reads all-ones. */
		*val = width == 8 ? UINT64_MAX : (1ull << (8 * width)) - 1;
		return rc;
	}
	target = pci_fn_bar_target(fn, bar, offset, &area);
	if (target == PCI_BAR_MSIX_TABLE) {
		*val = pci_bytes_get(fn->msix_table + offset - m->msix_table_offset, width);
	} else if (target == PCI_BAR_MSIX_PBA) {
		*val = pci_bytes_get((const uint8_t *)fn->msix_pba + offset - m->msix_pba_offset,
				     width);
	}
	uiommu_mutex_unlock(&fn->lock);
	if (target == PCI_BAR_MSIX_TABLE || target == PCI_BAR_MSIX_PBA)
		return 0;
	if (target == PCI_BAR_AREA) {
		*val = pci_shm_load(fn->shm + fn->area_fd_offset[bar][area] + offset -
				    m->bars[bar].areas[area].offset, width);
		return 0;
	}
	*val = 0;
	uiommu_down_read(&fn->model_lock);
	if (m->bar_read && pci_fn_alive(fn))
		*val = m->bar_read(fn, bar, offset, width);
	uiommu_up_read(&fn->model_lock);
	if (width < 8)
		*val &= (1ull << (8 * width)) - 1;
	return 0;
}

int pci_fn_bar_write(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
		     unsigned int width, uint64_t val)
{
	const struct uiommu_pci_model *m = fn->model;
	enum pci_bar_target target;
	bool decoded = false;
	int area = -1, rc;

	if (width < 8)
		val &= (1ull << (8 * width)) - 1;
	uiommu_mutex_lock(&fn->lock);
	rc = pci_fn_bar_check(fn, bar, offset, width, &decoded);
	if (rc || !decoded) {
		uiommu_mutex_unlock(&fn->lock);
		return rc; /* not decoded: the write goes nowhere */
	}
	target = pci_fn_bar_target(fn, bar, offset, &area);
	if (target == PCI_BAR_MSIX_TABLE) {
		uint64_t rel = offset - m->msix_table_offset;

		pci_bytes_put(fn->msix_table + rel, width, val);
		/* Bits of Vector Control other than Mask are reserved: they read 0. */
		for (uint64_t b = rel; b < rel + width; b++)
			if (b % PCI_MSIX_ENTRY_SIZE == PCI_MSIX_ENTRY_VECTOR_CTRL)
				fn->msix_table[b] &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
			else if (b % PCI_MSIX_ENTRY_SIZE > PCI_MSIX_ENTRY_VECTOR_CTRL)
				fn->msix_table[b] = 0;
	}
	uiommu_mutex_unlock(&fn->lock);
	switch (target) {
	case PCI_BAR_MSIX_TABLE:
		pci_fn_irq_flush(fn);
		return 0;
	case PCI_BAR_MSIX_PBA:
		return 0; /* read-only */
	case PCI_BAR_AREA:
		pci_shm_store(fn->shm + fn->area_fd_offset[bar][area] + offset -
			      m->bars[bar].areas[area].offset, width, val);
		if (m->area_written) {
			uiommu_down_read(&fn->model_lock);
			if (pci_fn_alive(fn))
				m->area_written(fn, bar, offset, width);
			uiommu_up_read(&fn->model_lock);
		}
		return 0;
	case PCI_BAR_MODEL:
		break;
	}
	uiommu_down_read(&fn->model_lock);
	if (m->bar_write && pci_fn_alive(fn))
		m->bar_write(fn, bar, offset, width, val);
	uiommu_up_read(&fn->model_lock);
	return 0;
}

/* ---- the model's view ---------------------------------------------------------------------- */

UIOMMU_EXPORT void uiommu_pci_fn_set_priv(struct uiommu_pci_fn *fn, void *priv)
{
	__atomic_store_n(&fn->priv, priv, __ATOMIC_RELEASE);
}

UIOMMU_EXPORT void *uiommu_pci_fn_priv(const struct uiommu_pci_fn *fn)
{
	return __atomic_load_n(&fn->priv, __ATOMIC_ACQUIRE);
}

UIOMMU_EXPORT const char *uiommu_pci_fn_name(const struct uiommu_pci_fn *fn)
{
	return fn->dev->name;
}

UIOMMU_EXPORT const struct uiommu_pci_model *uiommu_pci_fn_model(const struct uiommu_pci_fn *fn)
{
	return fn->model;
}

UIOMMU_EXPORT uint16_t uiommu_pci_fn_command(const struct uiommu_pci_fn *fn)
{
	struct uiommu_pci_fn *f = (struct uiommu_pci_fn *)fn;
	uint16_t cmd;

	uiommu_mutex_lock(&f->lock);
	cmd = pci_config_get16(f, PCI_CFG_COMMAND);
	uiommu_mutex_unlock(&f->lock);
	return cmd;
}

UIOMMU_EXPORT unsigned int uiommu_pci_fn_pasid_bits(const struct uiommu_pci_fn *fn)
{
	return fn->dev->pasid_bits;
}

UIOMMU_EXPORT const char *uiommu_pci_fn_backing(const struct uiommu_pci_fn *fn)
{
	return fn->backing;
}

UIOMMU_EXPORT void *uiommu_pci_fn_area(struct uiommu_pci_fn *fn, unsigned int bar,
				       unsigned int index)
{
	if (!fn || bar >= UIOMMU_PCI_NUM_BARS || index >= fn->model->bars[bar].nr_areas) {
		errno = EINVAL;
		return NULL;
	}
	return fn->shm + fn->area_fd_offset[bar][index];
}

/* ---- lookup and references ------------------------------------------------------------------- */

void pci_fn_ref(struct uiommu_pci_fn *fn)
{
	atomic_fetch_add_explicit(&fn->refs, 1, memory_order_relaxed);
}

static void pci_fn_free(struct uiommu_pci_fn *fn)
{
	if (fn->shm)
		sys_munmap(fn->shm, fn->shm_size);
	if (fn->memfd >= 0)
		sys_close(fn->memfd);
	uiommu_free(fn->msix_table);
	uiommu_free(fn->msix_pba);
	uiommu_free(fn->backing);
	uiommu_cond_destroy(&fn->cond);
	uiommu_mutex_destroy(&fn->lock);
	uiommu_rwsem_destroy(&fn->model_lock);
	if (fn->model != &fn->generic)
		pci_model_put(fn->model);
	device_put(fn->dev);
	uiommu_free(fn);
}

void pci_fn_put(struct uiommu_pci_fn *fn)
{
	if (fn && atomic_fetch_sub_explicit(&fn->refs, 1, memory_order_acq_rel) == 1)
		pci_fn_free(fn);
}

struct uiommu_pci_fn *pci_fn_get(struct device *dev)
{
	struct uiommu_pci_fn *fn;

	uiommu_mutex_lock(&pci_fns_lock);
	LIST_FOREACH(fn, &pci_fns, node)
		if (fn->dev == dev)
			break;
	if (fn)
		pci_fn_ref(fn);
	uiommu_mutex_unlock(&pci_fns_lock);
	return fn;
}

struct uiommu_pci_fn *pci_fn_get_by_bdf(const char *bdf)
{
	struct uiommu_pci_fn *fn;

	uiommu_mutex_lock(&pci_fns_lock);
	LIST_FOREACH(fn, &pci_fns, node)
		if (!strcmp(fn->dev->name, bdf))
			break;
	if (fn)
		pci_fn_ref(fn);
	uiommu_mutex_unlock(&pci_fns_lock);
	return fn;
}

struct device *pci_fn_device(const struct uiommu_pci_fn *fn)
{
	return fn->dev;
}

void pci_fn_get_ids(const struct uiommu_pci_fn *fn, struct pci_fn_ids *ids)
{
	const struct uiommu_pci_model *m = fn->model;

	/* The identity registers are read-only: the model's values, whatever happened since. */
	ids->vendor = m->vendor_id;
	ids->device = m->device_id;
	ids->subsystem_vendor = m->subsystem_vendor_id;
	ids->subsystem_device = m->subsystem_id;
	ids->class_code = m->class_code;
	ids->revision = m->revision;
	ids->interrupt_pin = m->interrupt_pin;
}

const char *pci_fn_model_name(const struct uiommu_pci_fn *fn)
{
	return fn->model->name;
}

bool pci_fn_alive(const struct uiommu_pci_fn *fn)
{
	struct uiommu_pci_fn *f = (struct uiommu_pci_fn *)fn;
	bool alive;

	uiommu_mutex_lock(&f->lock);
	alive = f->alive;
	uiommu_mutex_unlock(&f->lock);
	return alive;
}

/* ---- creation and destruction ------------------------------------------------------------ */

/* The memfd behind every shared area of the function, mapped once for the model. */
static int pci_fn_shm_alloc(struct uiommu_pci_fn *fn)
{
	const struct uiommu_pci_model *m = fn->model;
	size_t total = 0;
	void *map;
	int fd;

	for (unsigned int b = 0; b < UIOMMU_PCI_NUM_BARS; b++)
		for (unsigned int a = 0; a < m->bars[b].nr_areas; a++) {
			fn->area_fd_offset[b][a] = total;
			total += m->bars[b].areas[a].size;
		}
	if (!total)
		return 0;
	fd = uiommu_should_fail() ? -1 : sys_memfd_create("uiommu-pci-bar", MFD_CLOEXEC);
	if (fd < 0)
		return -ENOMEM;
	if (uiommu_should_fail() || ftruncate(fd, (off_t)total))
		goto err_close;
	map = uiommu_should_fail() ? MAP_FAILED :
				     sys_mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto err_close;
	fn->memfd = fd;
	uiommu_fd_keep(fd);
	fn->shm = map;
	fn->shm_size = total;
	return 0;

err_close:
	sys_close(fd);
	return -ENOMEM;
}

static int pci_fn_msix_alloc(struct uiommu_pci_fn *fn)
{
	if (!(fn->model->caps & UIOMMU_PCI_CAP_MSIX))
		return 0;
	fn->msix_table = uiommu_calloc(fn->model->msix_vectors, PCI_MSIX_ENTRY_SIZE);
	fn->msix_pba = uiommu_calloc((fn->model->msix_vectors + 63) / 64, sizeof(uint64_t));
	if (!fn->msix_table || !fn->msix_pba)
		return -ENOMEM;
	fn->msix_vectors = fn->model->msix_vectors;
	return 0;
}

static int pci_fn_backing_copy(struct uiommu_pci_fn *fn, const char *backing)
{
	size_t len;

	if (!backing || !*backing)
		return 0;
	len = strlen(backing);
	fn->backing = uiommu_zalloc(len + 1);
	if (!fn->backing)
		return -ENOMEM;
	memcpy(fn->backing, backing, len);
	return 0;
}

struct uiommu_pci_fn *pci_fn_create(struct device *dev, const char *model, uint32_t class_code,
				    const char *backing)
{
	struct uiommu_pci_fn *fn;
	int rc;

	fn = uiommu_zalloc(sizeof(*fn));
	if (!fn)
		return ERR_PTR(-ENOMEM);
	atomic_init(&fn->refs, 1);
	fn->memfd = -1;
	uiommu_rwsem_init(&fn->model_lock);
	uiommu_mutex_init(&fn->lock);
	uiommu_cond_init(&fn->cond);
	device_get(dev);
	fn->dev = dev;
	if (model && *model) {
		fn->model = pci_model_get(model);
		if (!fn->model) {
			fn->model = &fn->generic; /* nothing to put */
			rc = -EINVAL;
			goto err_free;
		}
	} else {
		pci_generic_model(&fn->generic, class_code);
		fn->model = &fn->generic;
	}
	for (unsigned int i = 0; i < UIOMMU_PCI_NUM_BARS; i++) {
		fn->bar_size[i] = fn->model->bars[i].size;
		fn->bar_flags[i] = fn->model->bars[i].flags;
	}
	fn->rom_size = pci_model_rom_size(fn->model);
	rc = pci_fn_shm_alloc(fn);
	if (!rc)
		rc = pci_fn_msix_alloc(fn);
	if (!rc)
		rc = pci_fn_backing_copy(fn, backing);
	if (rc)
		goto err_free;

	fn->cfg_size = fn->model->caps & UIOMMU_PCI_CAP_PCIE ? PCI_CFG_SPACE_EXP_SIZE :
							       PCI_CFG_SPACE_SIZE;
	uiommu_mutex_lock(&fn->lock);
	pci_config_init(fn);
	pci_fn_msix_init(fn);
	fn->alive = true;
	uiommu_mutex_unlock(&fn->lock);
	if (fn->model->realize) {
		uiommu_down_write(&fn->model_lock);
		rc = fn->model->realize(fn);
		uiommu_up_write(&fn->model_lock);
		if (rc)
			goto err_free;
	}
	uiommu_mutex_lock(&pci_fns_lock);
	LIST_INSERT_HEAD(&pci_fns, fn, node);
	uiommu_mutex_unlock(&pci_fns_lock);
	return fn;

err_free:
	/* Nobody else can hold it yet: the creation's reference is the only one. */
	pci_fn_put(fn);
	return ERR_PTR(rc);
}

void pci_fn_destroy(struct uiommu_pci_fn *fn)
{
	uiommu_mutex_lock(&pci_fns_lock);
	LIST_REMOVE(fn, node);
	uiommu_mutex_unlock(&pci_fns_lock);

	uiommu_down_write(&fn->model_lock);
	pci_fn_quiesce(fn);
	if (fn->model->unrealize)
		fn->model->unrealize(fn);
	uiommu_mutex_lock(&fn->lock);
	fn->alive = false;
	pci_fn_gate_update(fn);
	pci_fn_dma_close(fn);
	uiommu_mutex_unlock(&fn->lock);
	uiommu_up_write(&fn->model_lock);
	/* Pairs with pci_fn_create(): the topology's reference. */
	pci_fn_put(fn);
}

void pci_fn_unplug(struct uiommu_pci_fn *fn)
{
	uiommu_mutex_lock(&fn->lock);
	fn->present = false;
	pci_fn_gate_update(fn);
	pci_fn_gate_drain(fn);
	pci_fn_dma_close(fn);
	uiommu_mutex_unlock(&fn->lock);
}

void pci_fn_plug(struct uiommu_pci_fn *fn)
{
	uiommu_mutex_lock(&fn->lock);
	fn->present = true;
	uiommu_mutex_unlock(&fn->lock);
	/* A function that arrives is in its power-on state. */
	pci_fn_reset(fn);
}
