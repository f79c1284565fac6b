/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the white-box PCI function tests (test_pci.c, test_dma_test.c): a machine with
 * dma-test functions, an interrupt recorder standing in for VFIO's notifier, and the domain a
 * VFIO user would attach (DMA ownership claimed, a paging domain, memory mapped page by page).
 */
#ifndef UIOMMU_TESTS_PCI_TEST_H
#define UIOMMU_TESTS_PCI_TEST_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "iommu/iommu.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "machine/models/dma-test.h"
#include "machine/pci.h"
#include "machine/topology.h"
#include "topology_file.h"

#define PT_UNUSED __attribute__((unused))

/* 05:00.0 a dma-test with PASID/PRI, 06:00.0 a generic NIC-class function, 07:00.0 a plain
 * dma-test. */
#define PT_DMA_TEST "0000:05:00.0"
#define PT_GENERIC "0000:06:00.0"
#define PT_DMA_TEST2 "0000:07:00.0"

static const char pt_topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\", \"max_pasids\": 1048576 } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"" PT_DMA_TEST "\", \"iommu\": \"iommu0\", \"model\": \"dma-test\",\n"
	"      \"pasid_bits\": 20, \"pri\": true },\n"
	"    { \"bdf\": \"" PT_GENERIC "\", \"iommu\": \"iommu0\", \"class\": \"0x020000\" },\n"
	"    { \"bdf\": \"" PT_DMA_TEST2 "\", \"iommu\": \"iommu0\", \"model\": \"dma-test\" }\n"
	"  ] }\n";

/* Loads @json as the machine's topology (through a temporary file). 0 or -errno. */
static PT_UNUSED int pt_load(const char *json)
{
	char path[] = "/tmp/uiommu-pci-test-XXXXXX";
	int rc = topology_file_write(path, json);

	if (rc)
		return rc;
	rc = topology_load(path);
	unlink(path);
	return rc;
}

/*
 * Boots with @load, failing the 1st, 2nd, ... fallible step, until a boot needs no failure (the
 * topology is then left loaded). Every failed boot must leave no topology and no allocation.
 * Returns 0, or the nth after which that did not hold (ULONG_MAX: no end in sight).
 */
static PT_UNUSED unsigned long pt_fail_nth_boot(int (*load)(void))
{
	long live0 = uiommu_alloc_live_settled();

	for (unsigned long nth = 1; nth < 5000; nth++) {
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = load();
		if (uiommu_fail_nth_disarm())
			return rc || !topology_loaded() ? nth : 0;
		if (!rc && topology_loaded())
			topology_unload();
		if (topology_loaded() || uiommu_alloc_live_settled() != live0)
			return nth;
	}
	return ULONG_MAX;
}

/* ---- an interrupt recorder ------------------------------------------------------------------- */

struct pt_irqs {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int msix[64], msi[32];
	unsigned int intx_changes;
	bool intx_level;
};

static PT_UNUSED void pt_irqs_msi(void *priv, enum pci_irq_type type, unsigned int vector)
{
	struct pt_irqs *r = priv;

	pthread_mutex_lock(&r->lock);
	if (type == PCI_IRQ_MSIX && vector < 64)
		r->msix[vector]++;
	else if (type == PCI_IRQ_MSI && vector < 32)
		r->msi[vector]++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static PT_UNUSED void pt_irqs_intx(void *priv, bool asserted)
{
	struct pt_irqs *r = priv;

	pthread_mutex_lock(&r->lock);
	r->intx_changes++;
	r->intx_level = asserted;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static const struct pci_irq_ops pt_irq_ops = {
	.msi = pt_irqs_msi,
	.intx = pt_irqs_intx,
};

static PT_UNUSED void pt_irqs_init(struct pt_irqs *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
}

static PT_UNUSED unsigned int pt_irqs_msix(struct pt_irqs *r, unsigned int v)
{
	unsigned int n;

	pthread_mutex_lock(&r->lock);
	n = r->msix[v];
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* Waits (at most 20 s: a bound, not a synchronisation) for MSI-X vector @v to reach @count. */
static PT_UNUSED bool pt_irqs_wait_msix(struct pt_irqs *r, unsigned int v, unsigned int count)
{
	struct timespec deadline;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 20;
	pthread_mutex_lock(&r->lock);
	while (r->msix[v] < count &&
	       pthread_cond_timedwait(&r->cond, &r->lock, &deadline) != ETIMEDOUT)
		;
	ok = r->msix[v] >= count;
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* ---- the user's side: ownership, a domain, mappings ------------------------------------------ */

struct pt_domain {
	struct device *dev;
	struct iommu_domain *dom;
	int owner;
};

static PT_UNUSED int pt_domain_attach(struct pt_domain *d, struct device *dev)
{
	int rc;

	d->dev = dev;
	rc = iommu_device_claim_dma_owner(dev, &d->owner);
	if (rc)
		return rc;
	d->dom = iommu_paging_domain_alloc(dev);
	if (IS_ERR_OR_NULL(d->dom))
		return -ENOMEM;
	return iommu_attach_device(d->dom, dev);
}

static PT_UNUSED void pt_domain_detach(struct pt_domain *d)
{
	if (IS_ERR_OR_NULL(d->dom))
		return;
	iommu_detach_device(d->dom, d->dev);
	iommu_domain_free(d->dom);
	iommu_device_release_dma_owner(d->dev);
	d->dom = NULL;
}

static PT_UNUSED int pt_map(struct pt_domain *d, uint64_t iova, void *host, size_t len, int prot)
{
	return iommu_map(d->dom, iova, (phys_addr_t)(uintptr_t)host, len, prot);
}

static PT_UNUSED void *pt_pages(size_t n)
{
	void *p = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ---- register access ------------------------------------------------------------------------ */

static PT_UNUSED uint32_t pt_cfg32(struct uiommu_pci_fn *fn, unsigned int off)
{
	uint32_t v = 0xdeadbeef;

	if (pci_fn_config_read_reg(fn, off, 4, &v))
		return 0xdeadbeef;
	return v;
}

static PT_UNUSED uint16_t pt_cfg16(struct uiommu_pci_fn *fn, unsigned int off)
{
	uint32_t v = 0xdead;

	if (pci_fn_config_read_reg(fn, off, 2, &v))
		return 0xdead;
	return (uint16_t)v;
}

static PT_UNUSED uint64_t pt_bar(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off,
				 unsigned int width)
{
	uint64_t v = 0xdeadbeefdeadbeefull;

	if (pci_fn_bar_read(fn, bar, off, width, &v))
		return 0xdeadbeefdeadbeefull;
	return v;
}

#endif
