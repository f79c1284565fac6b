// SPDX-License-Identifier: MIT
/*
 * White-box tests of the virtio-pci models (src/machine/models/virtio.c) driven by a minimal
 * virtio driver written here from the virtio 1.x spec, doing what Linux's virtio_pci_modern
 * does: find the vendor-specific capabilities, reset, negotiate features, set up the split
 * virtqueue in memory mapped through a real IOMMU domain, post buffers, notify, take the MSI-X
 * vector (a notifier standing in for VFIO's) and read the used ring. virtio-rng fills buffers;
 * virtio-blk writes and reads back a backing file, answers GET_ID and FLUSH and refuses what
 * is out of range. IOVAs the IOMMU refuses (ring or buffer) put the device in NEEDS_RESET with
 * a configuration interrupt; Bus Master off holds requests; resets race notifications (TSan);
 * a fail-nth sweep boots the models.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "lib/fail.h"
#include "machine/models/virtio.h"
#include "pci_test.h"
#include "uiommu/device.h"

#define RNG_BDF "0000:09:00.0"
#define BLK_BDF "0000:0a:00.0"
#define DISK_SECTORS 2048u           /* a 1 MiB backing file */

#define RING_IOVA 0x100000ull        /* desc page, avail page, used page */
#define BUF_IOVA 0x400000ull         /* BUF_PAGES pages */
#define RO_IOVA 0x800000ull          /* one page, read-only to the device */
#define HOLE_IOVA 0x900000ull        /* never mapped */
#define BUF_PAGES 16u
#define QSZ 16u

#define VEC_CONFIG 0u
#define VEC_QUEUE 1u

static char disk_path[] = "/tmp/uiommu-virtio-disk-XXXXXX";

static int topo_load(void)
{
	char json[512];

	snprintf(json, sizeof(json),
		 "{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
		 "  \"devices\": [\n"
		 "    { \"bdf\": \"" RNG_BDF "\", \"iommu\": \"iommu0\", \"model\": \"virtio-rng\" },\n"
		 "    { \"bdf\": \"" BLK_BDF "\", \"iommu\": \"iommu0\", \"model\": \"virtio-blk\",\n"
		 "      \"backing\": \"%s\" }\n"
		 "  ] }\n", disk_path);
	return pt_load(json);
}

/* The disk: sector s holds bytes (s + i) & 0xff. */
static int disk_create(void)
{
	uint8_t sec[512];
	int fd = mkstemp(disk_path);

	if (fd < 0)
		return -errno;
	for (unsigned int s = 0; s < DISK_SECTORS; s++) {
		for (unsigned int i = 0; i < sizeof(sec); i++)
			sec[i] = (uint8_t)(s + i);
		if (write(fd, sec, sizeof(sec)) != (ssize_t)sizeof(sec)) {
			close(fd);
			return -EIO;
		}
	}
	close(fd);
	return 0;
}

/* ---- the driver ------------------------------------------------------------------------------ */

struct vdrv {
	struct uiommu_pci_fn *fn;
	uint8_t *ring;                   /* 3 pages: desc, avail, used */
	uint16_t avail_idx, used_seen;
	uint16_t qsize;
};

static uint64_t vr(struct vdrv *d, uint64_t off, unsigned int width)
{
	return pt_bar(d->fn, VIO_BAR, off, width);
}

static void vw(struct vdrv *d, uint64_t off, unsigned int width, uint64_t v)
{
	if (pci_fn_bar_write(d->fn, VIO_BAR, off, width, v))
		abort();
}

#define COMMON(r) (VIO_COMMON_OFF + VIRTIO_PCI_COMMON_##r)

static uint8_t status(struct vdrv *d)
{
	return (uint8_t)vr(d, COMMON(STATUS), 1);
}

static uint64_t device_features(struct vdrv *d)
{
	vw(d, COMMON(DFSELECT), 4, 0);
	uint64_t lo = vr(d, COMMON(DF), 4);

	vw(d, COMMON(DFSELECT), 4, 1);
	return lo | vr(d, COMMON(DF), 4) << 32;
}

static void reset(struct vdrv *d)
{
	vw(d, COMMON(STATUS), 1, 0);
	d->avail_idx = d->used_seen = 0;
	memset(d->ring, 0, 3 * 4096);
}

/* Reset, features, FEATURES_OK. Returns the status read back. */
static uint8_t negotiate(struct vdrv *d, uint64_t features)
{
	reset(d);
	vw(d, COMMON(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vw(d, COMMON(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	vw(d, COMMON(GFSELECT), 4, 0);
	vw(d, COMMON(GF), 4, (uint32_t)features);
	vw(d, COMMON(GFSELECT), 4, 1);
	vw(d, COMMON(GF), 4, (uint32_t)(features >> 32));
	vw(d, COMMON(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	   VIRTIO_CONFIG_S_FEATURES_OK);
	return status(d);
}

/* The whole bring-up, as Linux's virtio_pci_modern does it (queue 0 of @qsize entries). */
static int bring_up(struct vdrv *d, uint64_t extra, uint16_t qsize, uint64_t avail_iova)
{
	uint64_t f = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_ACCESS_PLATFORM | extra;

	if (!(negotiate(d, f) & VIRTIO_CONFIG_S_FEATURES_OK))
		return -1;
	vw(d, COMMON(MSIX), 2, VEC_CONFIG);
	if (vr(d, COMMON(MSIX), 2) != VEC_CONFIG)
		return -2;
	vw(d, COMMON(Q_SELECT), 2, 0);
	if (vr(d, COMMON(Q_SIZE), 2) != VIO_QUEUE_SIZE_MAX || vr(d, COMMON(Q_ENABLE), 2))
		return -3;
	vw(d, COMMON(Q_SIZE), 2, qsize);
	/* 64-bit addresses as Linux writes them: two 32-bit halves. */
	vw(d, COMMON(Q_DESCLO), 4, (uint32_t)RING_IOVA);
	vw(d, COMMON(Q_DESCHI), 4, RING_IOVA >> 32);
	vw(d, COMMON(Q_AVAILLO), 4, (uint32_t)avail_iova);
	vw(d, COMMON(Q_AVAILHI), 4, avail_iova >> 32);
	vw(d, COMMON(Q_USEDLO), 8, RING_IOVA + 2 * 4096);
	vw(d, COMMON(Q_MSIX), 2, VEC_QUEUE);
	if (vr(d, COMMON(Q_MSIX), 2) != VEC_QUEUE || vr(d, COMMON(Q_NOFF), 2) != 0)
		return -4;
	vw(d, COMMON(Q_ENABLE), 2, 1);
	vw(d, COMMON(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	d->qsize = qsize;
	return 0;
}

static struct vring_desc *descs(struct vdrv *d)
{
	return (struct vring_desc *)d->ring;
}

static struct vring_avail *avail(struct vdrv *d)
{
	return (struct vring_avail *)(d->ring + 4096);
}

static struct vring_used *used(struct vdrv *d)
{
	return (struct vring_used *)(d->ring + 2 * 4096);
}

struct seg {
	uint64_t iova;
	uint32_t len;
	bool write;
};

/* Posts a chain at descriptor @first, makes it available; returns the head. */
static uint16_t post(struct vdrv *d, uint16_t first, const struct seg *s, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		struct vring_desc *dd = &descs(d)[first + i];

		dd->addr = s[i].iova;
		dd->len = s[i].len;
		dd->flags = (uint16_t)((s[i].write ? VRING_DESC_F_WRITE : 0) |
				       (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		dd->next = (uint16_t)(first + i + 1);
	}
	avail(d)->ring[d->avail_idx % d->qsize] = first;
	__atomic_store_n(&avail(d)->idx, (uint16_t)(d->avail_idx + 1), __ATOMIC_RELEASE);
	d->avail_idx++;
	return first;
}

static void notify(struct vdrv *d)
{
	vw(d, VIO_NOTIFY_OFF, 2, 0);
}

static uint16_t used_idx(struct vdrv *d)
{
	return __atomic_load_n(&used(d)->idx, __ATOMIC_ACQUIRE);
}

/* ---- the fixture ----------------------------------------------------------------------------- */

FIXTURE(vio)
{
	struct vdrv rng, blk;
	struct pt_domain drng, dblk;
	struct pt_irqs irng, iblk;
	uint8_t *ring_rng, *ring_blk, *buf, *ro;
};

static void fn_up(struct uiommu_pci_fn *fn, struct pt_domain *dom, struct pt_irqs *irqs,
		  uint8_t *ring, uint8_t *buf, uint8_t *ro, int *err)
{
	*err = -1;
	pt_irqs_init(irqs);
	if (pci_fn_irq_register(fn, &pt_irq_ops, irqs) || pt_domain_attach(dom, pci_fn_device(fn)) ||
	    pt_map(dom, RING_IOVA, ring, 3 * 4096, IOMMU_READ | IOMMU_WRITE) ||
	    pt_map(dom, BUF_IOVA, buf, BUF_PAGES * 4096, IOMMU_READ | IOMMU_WRITE) ||
	    pt_map(dom, RO_IOVA, ro, 4096, IOMMU_READ))
		return;
	if (pci_fn_config_write_reg(fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY | PCI_CMD_MASTER) ||
	    pci_fn_irq_enable(fn, PCI_IRQ_MSIX, VIO_MSIX_VECTORS))
		return;
	*err = 0;
}

FIXTURE_SETUP(vio)
{
	int err;

	ASSERT_EQ(0, disk_create());
	ASSERT_EQ(0, topo_load());
	self->rng.fn = pci_fn_get_by_bdf(RNG_BDF);
	self->blk.fn = pci_fn_get_by_bdf(BLK_BDF);
	ASSERT_TRUE(self->rng.fn && self->blk.fn);
	self->ring_rng = pt_pages(3);
	self->ring_blk = pt_pages(3);
	self->buf = pt_pages(BUF_PAGES);
	self->ro = pt_pages(1);
	ASSERT_TRUE(self->ring_rng && self->ring_blk && self->buf && self->ro);
	self->rng.ring = self->ring_rng;
	self->blk.ring = self->ring_blk;
	fn_up(self->rng.fn, &self->drng, &self->irng, self->ring_rng, self->buf, self->ro, &err);
	ASSERT_EQ(0, err);
	fn_up(self->blk.fn, &self->dblk, &self->iblk, self->ring_blk, self->buf, self->ro, &err);
	ASSERT_EQ(0, err);
}

FIXTURE_TEARDOWN(vio)
{
	struct uiommu_pci_fn *fns[] = { self->rng.fn, self->blk.fn };
	struct pt_domain *doms[] = { &self->drng, &self->dblk };

	for (unsigned int i = 0; i < 2; i++) {
		if (!fns[i])
			continue;
		pci_fn_reset(fns[i]);
		pci_fn_irq_unregister(fns[i]);
		pt_domain_detach(doms[i]);
		pci_fn_put(fns[i]);
	}
	topology_unload();
	unlink(disk_path);
	strcpy(disk_path, "/tmp/uiommu-virtio-disk-XXXXXX");
}

/* ---- identity and transport ----------------------------------------------------------------- */

/* What virtio_pci_modern's probe reads: IDs, then each vendor capability's type, BAR,
 * offset and length (and the notify multiplier). */
TEST_F(vio, identity_and_capabilities)
{
	struct uiommu_pci_fn *fns[] = { self->rng.fn, self->blk.fn };
	unsigned int types[] = { VIO_TYPE_RNG, VIO_TYPE_BLK };

	for (unsigned int f = 0; f < 2; f++) {
		struct uiommu_pci_fn *fn = fns[f];
		unsigned int seen = 0, pos = pci_fn_find_cap(fn, PCI_CAP_ID_VNDR);
		struct pci_fn_bar_info bi;

		ASSERT_EQ(VIO_VENDOR_ID, pt_cfg16(fn, 0x00));
		ASSERT_EQ(0x1040 + types[f], pt_cfg16(fn, 0x02));
		ASSERT_EQ(VIO_REVISION, pt_cfg32(fn, 0x08) & 0xff);
		ASSERT_EQ(VIO_VENDOR_ID, pt_cfg16(fn, 0x2c));
		ASSERT_EQ(0xa4u, pos);
		for (unsigned int ttl = 0; pos && ttl < 8; ttl++) {
			uint32_t cfg = pt_cfg32(fn, pos);
			unsigned int type = cfg >> 24, len = (cfg >> 16) & 0xff;
			uint32_t off = pt_cfg32(fn, pos + 8), length = pt_cfg32(fn, pos + 12);

			ASSERT_EQ(PCI_CAP_ID_VNDR, cfg & 0xff);
			ASSERT_EQ(VIO_BAR, pt_cfg32(fn, pos + 4) & 0xff);
			switch (type) {
			case VIRTIO_PCI_CAP_COMMON_CFG:
				ASSERT_EQ(16u, len);
				ASSERT_EQ(VIO_COMMON_OFF, off);
				ASSERT_EQ(VIO_COMMON_LEN, length);
				break;
			case VIRTIO_PCI_CAP_NOTIFY_CFG:
				ASSERT_EQ(20u, len);
				ASSERT_EQ(VIO_NOTIFY_OFF, off);
				ASSERT_EQ(VIO_NOTIFY_MULT, pt_cfg32(fn, pos + 16));
				break;
			case VIRTIO_PCI_CAP_ISR_CFG:
				ASSERT_EQ(16u, len);
				ASSERT_EQ(VIO_ISR_OFF, off);
				break;
			case VIRTIO_PCI_CAP_DEVICE_CFG:
				ASSERT_EQ(16u, len);
				ASSERT_EQ(VIO_DEVICE_OFF, off);
				ASSERT_EQ(VIO_DEVICE_LEN, length);
				break;
			default:
				ASSERT_TRUE(false);
			}
			seen |= 1u << type;
			/* Read-only: a config write leaves the capability as it was. */
			ASSERT_EQ(0, pci_fn_config_write_reg(fn, pos + 8, 4, 0x12345678));
			ASSERT_EQ(off, pt_cfg32(fn, pos + 8));
			pos = (cfg >> 8) & 0xfc;
		}
		ASSERT_EQ(types[f] == VIO_TYPE_BLK ? 0x1eu : 0x0eu, seen);
		ASSERT_EQ(0, pci_fn_bar_info(fn, VIO_BAR, &bi));
		ASSERT_EQ(VIO_BAR_SIZE, bi.size);
		ASSERT_EQ(0, pci_fn_bar_info(fn, VIO_MSIX_BAR, &bi));
		ASSERT_EQ(VIO_MSIX_BAR_SIZE, bi.size);
	}
}

TEST_F(vio, features_and_status)
{
	struct vdrv *d = &self->rng;
	uint64_t base = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_ACCESS_PLATFORM;

	ASSERT_EQ(base, device_features(d));
	ASSERT_EQ(base | 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_FLUSH,
		  device_features(&self->blk));
	vw(d, COMMON(DFSELECT), 4, 2);
	ASSERT_EQ(0u, vr(d, COMMON(DF), 4));
	ASSERT_EQ(1u, vr(d, COMMON(NUMQ), 2));
	/* FEATURES_OK: refused without VERSION_1 and with a feature not offered. */
	ASSERT_EQ(0, negotiate(d, 0) & VIRTIO_CONFIG_S_FEATURES_OK);
	ASSERT_EQ(0, negotiate(d, base | 1ull << VIRTIO_RING_F_INDIRECT_DESC) &
		     VIRTIO_CONFIG_S_FEATURES_OK);
	ASSERT_EQ(VIRTIO_CONFIG_S_FEATURES_OK,
		  negotiate(d, 1ull << VIRTIO_F_VERSION_1) & VIRTIO_CONFIG_S_FEATURES_OK);
	vw(d, COMMON(GFSELECT), 4, 1);
	ASSERT_EQ(1u, vr(d, COMMON(GF), 4));
	/* Reset: status and the driver's features back to 0. */
	reset(d);
	ASSERT_EQ(0, status(d));
	vw(d, COMMON(GFSELECT), 4, 1);
	ASSERT_EQ(0u, vr(d, COMMON(GF), 4));
	/* Vectors the function does not have read back NO_VECTOR. */
	vw(d, COMMON(MSIX), 2, VIO_MSIX_VECTORS);
	ASSERT_EQ(VIRTIO_MSI_NO_VECTOR, vr(d, COMMON(MSIX), 2));
	vw(d, COMMON(Q_MSIX), 2, VIO_MSIX_VECTORS - 1);
	ASSERT_EQ(VIO_MSIX_VECTORS - 1, vr(d, COMMON(Q_MSIX), 2));
	/* A queue that does not exist has size 0. */
	vw(d, COMMON(Q_SELECT), 2, 1);
	ASSERT_EQ(0u, vr(d, COMMON(Q_SIZE), 2));
	/* Sizes must be powers of two up to the maximum. */
	vw(d, COMMON(Q_SELECT), 2, 0);
	vw(d, COMMON(Q_SIZE), 2, 12);
	ASSERT_EQ(VIO_QUEUE_SIZE_MAX, vr(d, COMMON(Q_SIZE), 2));
	vw(d, COMMON(Q_SIZE), 2, 2 * VIO_QUEUE_SIZE_MAX);
	ASSERT_EQ(VIO_QUEUE_SIZE_MAX, vr(d, COMMON(Q_SIZE), 2));
	vw(d, COMMON(Q_SIZE), 2, 8);
	ASSERT_EQ(8u, vr(d, COMMON(Q_SIZE), 2));
	/* A 64-bit register read whole. */
	vw(d, COMMON(Q_DESCLO), 4, 0x89abc000);
	vw(d, COMMON(Q_DESCHI), 4, 0x1);
	ASSERT_EQ(0x189abc000ull, vr(d, COMMON(Q_DESCLO), 8));
	/* A write of the queue select does not touch the status byte beside it. */
	vw(d, COMMON(STATUS), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vw(d, COMMON(Q_SELECT), 2, 0);
	ASSERT_EQ(VIRTIO_CONFIG_S_ACKNOWLEDGE, status(d));
}

/* ---- virtio-rng ----------------------------------------------------------------------------- */

static bool nonzero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return true;
	return false;
}

TEST_F(vio, rng_fills_buffers_and_interrupts)
{
	struct vdrv *d = &self->rng;
	struct seg s[2] = { { BUF_IOVA + 8, 100, true }, { BUF_IOVA + 4096 - 3, 4096 + 3, true } };
	uint16_t head;

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	memset(self->buf, 0, 3 * 4096);
	head = post(d, 5, s, 2);
	notify(d);
	ASSERT_TRUE(pt_irqs_wait_msix(&self->irng, VEC_QUEUE, 1));
	ASSERT_EQ(1, used_idx(d));
	ASSERT_EQ(head, used(d)->ring[0].id);
	ASSERT_EQ(4199u, used(d)->ring[0].len);
	ASSERT_TRUE(nonzero(self->buf + 8, 100));
	ASSERT_TRUE(nonzero(self->buf + 4096 - 3, 16));
	ASSERT_TRUE(nonzero(self->buf + 2 * 4096 - 16, 16));
	/* Nothing outside the buffers. */
	ASSERT_FALSE(nonzero(self->buf, 8));
	ASSERT_FALSE(nonzero(self->buf + 108, 4096 - 3 - 108));
	ASSERT_FALSE(nonzero(self->buf + 2 * 4096, 4096));
	ASSERT_EQ(0u, pt_irqs_msix(&self->irng, VEC_CONFIG));
	/* ISR shows the queue interrupt, and reading clears it. */
	ASSERT_EQ(1u, vr(d, VIO_ISR_OFF, 1));
	ASSERT_EQ(0u, vr(d, VIO_ISR_OFF, 1));
	/* A notification with nothing new does nothing. */
	notify(d);
	ASSERT_EQ(1, used_idx(d));
	ASSERT_EQ(1u, pt_irqs_msix(&self->irng, VEC_QUEUE));
	/* VRING_AVAIL_F_NO_INTERRUPT: the buffer is used, no vector. */
	avail(d)->flags = VRING_AVAIL_F_NO_INTERRUPT;
	post(d, 0, s, 1);
	notify(d);
	ASSERT_EQ(2, used_idx(d));
	ASSERT_EQ(100u, used(d)->ring[1].len);
	ASSERT_EQ(1u, pt_irqs_msix(&self->irng, VEC_QUEUE));
}

/* Many requests through a 4-entry ring: the indices wrap in the rings and in u16. */
TEST_F(vio, rng_ring_wraps)
{
	struct vdrv *d = &self->rng;

	ASSERT_EQ(0, bring_up(d, 0, 4, RING_IOVA + 4096));
	for (unsigned int i = 0; i < 70; i++) {
		struct seg s = { BUF_IOVA + 64 * (i % 8), 1 + i, true };

		post(d, (uint16_t)(i % 4), &s, 1);
		if (i % 3 == 2 || i == 69) {
			notify(d);
			ASSERT_EQ(d->avail_idx, used_idx(d));
		}
	}
	ASSERT_EQ(70, used_idx(d));
	ASSERT_EQ(69u % 4, used(d)->ring[69 % 4].id);
	ASSERT_EQ(70u, used(d)->ring[69 % 4].len);
	ASSERT_EQ(0, status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* ---- errors: NEEDS_RESET -------------------------------------------------------------------- */

static void expect_needs_reset(struct __h_test *_metadata, struct vdrv *d,
			       struct pt_irqs *irqs)
{
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	ASSERT_TRUE(pt_irqs_wait_msix(irqs, VEC_CONFIG, 1));
	ASSERT_EQ(2u, vr(d, VIO_ISR_OFF, 1) & 2u);
}

TEST_F(vio, unmapped_ring_needs_reset)
{
	struct vdrv *d = &self->rng;
	struct seg s = { BUF_IOVA, 64, true };

	ASSERT_EQ(0, bring_up(d, 0, QSZ, HOLE_IOVA));
	notify(d);
	expect_needs_reset(_metadata, d, &self->irng);
	ASSERT_EQ(0, used_idx(d));
	/* The status bit is the device's: the driver cannot clear it but by a reset. */
	vw(d, COMMON(STATUS), 1, status(d) & ~VIRTIO_CONFIG_S_NEEDS_RESET);
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* After a reset and a proper ring it works. */
	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	ASSERT_EQ(0, status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	post(d, 0, &s, 1);
	notify(d);
	ASSERT_EQ(1, used_idx(d));
}

TEST_F(vio, unmapped_or_read_only_buffer_needs_reset)
{
	struct vdrv *d = &self->rng;
	struct seg hole = { HOLE_IOVA, 64, true }, ro = { RO_IOVA, 64, true };

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	post(d, 0, &hole, 1);
	notify(d);
	expect_needs_reset(_metadata, d, &self->irng);
	ASSERT_EQ(0, used_idx(d));
	/* Later notifications do nothing until the reset. */
	notify(d);
	ASSERT_EQ(0, used_idx(d));

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	memset(self->ro, 0, 64);
	post(d, 0, &ro, 1);
	notify(d);
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	ASSERT_FALSE(nonzero(self->ro, 64));
	ASSERT_EQ(0, used_idx(d));
}

TEST_F(vio, broken_rings_need_reset)
{
	struct vdrv *d = &self->rng;
	struct seg s = { BUF_IOVA, 64, true };

	/* A descriptor index beyond the queue. */
	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	post(d, QSZ, &s, 1);
	notify(d);
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* A chain that loops. */
	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	post(d, 3, &s, 1);
	descs(d)[3].flags |= VRING_DESC_F_NEXT;
	descs(d)[3].next = 3;
	notify(d);
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* An indirect descriptor (not offered). */
	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	post(d, 0, &s, 1);
	descs(d)[0].flags |= VRING_DESC_F_INDIRECT;
	notify(d);
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* An avail idx more than a queue ahead. */
	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	avail(d)->idx = QSZ + 1;
	notify(d);
	ASSERT_TRUE(status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	ASSERT_EQ(0, used_idx(d));
}

/* Before DRIVER_OK, or without the queue enabled, a notification does nothing. */
TEST_F(vio, notify_before_driver_ok_is_ignored)
{
	struct vdrv *d = &self->rng;
	struct seg s = { BUF_IOVA, 64, true };

	ASSERT_EQ(VIRTIO_CONFIG_S_FEATURES_OK,
		  negotiate(d, 1ull << VIRTIO_F_VERSION_1) & VIRTIO_CONFIG_S_FEATURES_OK);
	d->qsize = QSZ;
	vw(d, COMMON(Q_SIZE), 2, QSZ);
	vw(d, COMMON(Q_DESCLO), 8, RING_IOVA);
	vw(d, COMMON(Q_AVAILLO), 8, RING_IOVA + 4096);
	vw(d, COMMON(Q_USEDLO), 8, RING_IOVA + 2 * 4096);
	post(d, 0, &s, 1);
	notify(d);
	ASSERT_EQ(0, used_idx(d));
	vw(d, COMMON(STATUS), 1, status(d) | VIRTIO_CONFIG_S_DRIVER_OK);
	notify(d);
	ASSERT_EQ(0, used_idx(d));          /* queue not enabled */
	vw(d, COMMON(Q_ENABLE), 2, 1);
	ASSERT_EQ(1u, vr(d, COMMON(Q_ENABLE), 2));
	/* Enabled: its size and addresses are fixed now. */
	vw(d, COMMON(Q_SIZE), 2, 4);
	ASSERT_EQ(QSZ, vr(d, COMMON(Q_SIZE), 2));
	notify(d);
	ASSERT_EQ(1, used_idx(d));
}

/* Bus Master off: the request waits in the ring (no error) and runs when it comes back. */
TEST_F(vio, bus_master_off_holds_requests)
{
	struct vdrv *d = &self->rng;
	struct seg s = { BUF_IOVA, 64, true };

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	ASSERT_EQ(0, pci_fn_config_write_reg(d->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	post(d, 0, &s, 1);
	notify(d);
	ASSERT_EQ(0, used_idx(d));
	ASSERT_EQ(0, status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
	ASSERT_EQ(0, pci_fn_config_write_reg(d->fn, PCI_CFG_COMMAND, 2,
					     PCI_CMD_MEMORY | PCI_CMD_MASTER));
	ASSERT_EQ(1, used_idx(d));
	ASSERT_TRUE(pt_irqs_wait_msix(&self->irng, VEC_QUEUE, 1));
}

/* FLR: the transport back to power-on, the queue gone. */
TEST_F(vio, flr_resets_the_device)
{
	struct vdrv *d = &self->rng;

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	ASSERT_EQ(0, pci_fn_reset(d->fn));
	/* Memory decode is off after FLR: the BAR reads all-ones. */
	ASSERT_EQ(0xff, status(d));
	ASSERT_EQ(0, pci_fn_config_write_reg(d->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(0, status(d));
	vw(d, COMMON(Q_SELECT), 2, 0);
	ASSERT_EQ(0u, vr(d, COMMON(Q_ENABLE), 2));
	ASSERT_EQ(VIO_QUEUE_SIZE_MAX, vr(d, COMMON(Q_SIZE), 2));
	ASSERT_EQ(VIRTIO_MSI_NO_VECTOR, vr(d, COMMON(MSIX), 2));
}

/* ---- virtio-blk ----------------------------------------------------------------------------- */

struct blk_req {
	struct virtio_blk_outhdr hdr;
	uint8_t status;
};

#define HDR_IOVA (BUF_IOVA + 0x0000)     /* the header at buf + 0, status at buf + 16 */
#define DATA_IOVA (BUF_IOVA + 0x1000)

/* One request with @len bytes of data at DATA_IOVA; returns the status byte (or 0xee). */
static uint8_t blk_do(FIXTURE_DATA(vio) *self, uint32_t type, uint64_t sector, uint32_t len,
		      uint32_t *used_len)
{
	struct vdrv *d = &self->blk;
	struct blk_req *r = (struct blk_req *)self->buf;
	struct seg s[3] = {
		{ HDR_IOVA, sizeof(r->hdr), false },
		{ DATA_IOVA, len, type != VIRTIO_BLK_T_OUT },
		{ HDR_IOVA + offsetof(struct blk_req, status), 1, true },
	};
	uint16_t before = used_idx(d);

	r->hdr = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	r->status = 0xee;
	if (len)
		post(d, 0, s, 3);
	else
		post(d, 0, (struct seg[]){ s[0], s[2] }, 2);
	notify(d);
	if (used_idx(d) != (uint16_t)(before + 1))
		return 0xdd;
	*used_len = used(d)->ring[before % d->qsize].len;
	return r->status;
}

TEST_F(vio, blk_config_write_read_id_flush)
{
	struct vdrv *d = &self->blk;
	uint8_t *data = self->buf + 0x1000;
	uint8_t sec[512];
	uint32_t n = 0;
	int fd;

	ASSERT_EQ(DISK_SECTORS, vr(d, VIO_DEVICE_OFF + 0, 8));
	ASSERT_EQ(DISK_SECTORS, vr(d, VIO_DEVICE_OFF + 0, 4));
	ASSERT_EQ(VIO_BLK_SEG_MAX, vr(d, VIO_DEVICE_OFF + 12, 4));
	ASSERT_EQ(0, bring_up(d, 1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_SEG_MAX, QSZ,
			      RING_IOVA + 4096));
	/* Read sectors 10-17 (4 KiB): the disk's pattern; used len is data + status. */
	ASSERT_EQ(VIRTIO_BLK_S_OK, blk_do(self, VIRTIO_BLK_T_IN, 10, 4096, &n));
	ASSERT_EQ(4097u, n);
	for (unsigned int i = 0; i < 4096; i++)
		ASSERT_EQ((uint8_t)(10 + i / 512 + i % 512), data[i]);
	ASSERT_TRUE(pt_irqs_wait_msix(&self->iblk, VEC_QUEUE, 1));
	/* Write sectors 100-101, read them back, and the file has them. */
	for (unsigned int i = 0; i < 1024; i++)
		data[i] = (uint8_t)(i * 7 + 1);
	ASSERT_EQ(VIRTIO_BLK_S_OK, blk_do(self, VIRTIO_BLK_T_OUT, 100, 1024, &n));
	ASSERT_EQ(1u, n);
	memset(data, 0, 1024);
	ASSERT_EQ(VIRTIO_BLK_S_OK, blk_do(self, VIRTIO_BLK_T_IN, 100, 1024, &n));
	for (unsigned int i = 0; i < 1024; i++)
		ASSERT_EQ((uint8_t)(i * 7 + 1), data[i]);
	fd = open(disk_path, O_RDONLY);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(512, pread(fd, sec, 512, 101 * 512));
	close(fd);
	ASSERT_EQ(0, memcmp(sec, data + 512, 512));
	/* The last sector is readable, one past it is not, nor a partial sector. */
	ASSERT_EQ(VIRTIO_BLK_S_OK, blk_do(self, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 512, &n));
	ASSERT_EQ(VIRTIO_BLK_S_IOERR, blk_do(self, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 1024, &n));
	ASSERT_EQ(VIRTIO_BLK_S_IOERR, blk_do(self, VIRTIO_BLK_T_OUT, DISK_SECTORS, 512, &n));
	ASSERT_EQ(VIRTIO_BLK_S_IOERR, blk_do(self, VIRTIO_BLK_T_IN, 0, 100, &n));
	/* GET_ID, FLUSH, and an unknown type. */
	memset(data, 0xff, VIRTIO_BLK_ID_BYTES);
	ASSERT_EQ(VIRTIO_BLK_S_OK, blk_do(self, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, &n));
	ASSERT_EQ(0, memcmp(data, VIO_BLK_ID, sizeof(VIO_BLK_ID)));
	ASSERT_EQ(0, data[VIRTIO_BLK_ID_BYTES - 1]);
	ASSERT_EQ(VIRTIO_BLK_S_OK, blk_do(self, VIRTIO_BLK_T_FLUSH, 0, 0, &n));
	ASSERT_EQ(1u, n);
	ASSERT_EQ(VIRTIO_BLK_S_UNSUPP, blk_do(self, 0x77, 0, 0, &n));
	ASSERT_EQ(0, status(d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* A chain without a status byte, or a header that is writable, is a broken request. */
TEST_F(vio, blk_malformed_request_needs_reset)
{
	struct vdrv *d = &self->blk;
	struct seg s[2] = { { HDR_IOVA, 16, false }, { DATA_IOVA, 512, false } };

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	post(d, 0, s, 2);
	notify(d);
	expect_needs_reset(_metadata, d, &self->iblk);
	ASSERT_EQ(0, used_idx(d));
}

/* ---- topologies ------------------------------------------------------------------------------ */

TEST(topology_backing_rules)
{
	static const char *const bad[] = {
		/* virtio-blk needs a backing file that exists */
		"{ \"iommus\": [ { \"name\": \"i\" } ], \"devices\": [ { \"bdf\": \"0000:01:00.0\","
		" \"iommu\": \"i\", \"model\": \"virtio-blk\" } ] }",
		"{ \"iommus\": [ { \"name\": \"i\" } ], \"devices\": [ { \"bdf\": \"0000:01:00.0\","
		" \"iommu\": \"i\", \"model\": \"virtio-blk\", \"backing\": \"/nonexistent/x\" } ] }",
		/* "backing" is a model's option */
		"{ \"iommus\": [ { \"name\": \"i\" } ], \"devices\": [ { \"bdf\": \"0000:01:00.0\","
		" \"iommu\": \"i\", \"backing\": \"/dev/null\" } ] }",
		"{ \"iommus\": [ { \"name\": \"i\" } ], \"devices\": [ { \"bdf\": \"0000:01:00.0\","
		" \"iommu\": \"i\", \"model\": \"virtio-blk\", \"backing\": 3 } ] }",
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		ASSERT_NE(0, pt_load(bad[i]));
		ASSERT_FALSE(topology_loaded());
	}
}

/* Vendor capabilities in a model description: registration checks them. */
static const uint8_t cap_bytes[89];

TEST(vendor_capability_registration)
{
	struct uiommu_pci_vendor_cap caps[2] = { { cap_bytes, 89 }, { cap_bytes, 1 } };
	struct uiommu_pci_model m = {
		.version = UIOMMU_PCI_MODEL_V2, .name = "vcap", .vendor_id = 0x1234,
		.nr_vendor_caps = 1, .vendor_caps = caps,
	};

	/* 89 bytes fill 0xa4-0xff exactly; one more capability does not fit. */
	ASSERT_EQ(0, uiommu_pci_model_register(&m));
	ASSERT_EQ(0, uiommu_pci_model_unregister("vcap"));
	m.nr_vendor_caps = 2;
	ASSERT_EQ(-1, uiommu_pci_model_register(&m));
	ASSERT_EQ(EINVAL, errno);
	caps[0].len = 0;
	m.nr_vendor_caps = 1;
	ASSERT_EQ(-1, uiommu_pci_model_register(&m));
	ASSERT_EQ(EINVAL, errno);
	m.vendor_caps = NULL;
	ASSERT_EQ(-1, uiommu_pci_model_register(&m));
	ASSERT_EQ(EINVAL, errno);
	/* A V1 description has no vendor capabilities, whatever follows it. */
	m.version = UIOMMU_PCI_MODEL_V1;
	ASSERT_EQ(0, uiommu_pci_model_register(&m));
	ASSERT_EQ(0, uiommu_pci_model_unregister("vcap"));
}

/* ---- races ----------------------------------------------------------------------------------- */

struct racer {
	struct vdrv *d;
	atomic_bool stop;
};

static void *notifier_thread(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->stop)) {
		notify(r->d);
		(void)vr(r->d, VIO_ISR_OFF, 1);
	}
	return NULL;
}

/* Device resets (status 0) and FLRs racing notifications: when the reset returns, no request
 * of the old life runs (the used idx stays where it was). Run under TSan too. */
TEST_F_TIMEOUT(vio, reset_races_notifications, 120)
{
	struct vdrv *d = &self->rng;
	struct racer r = { .d = d };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, notifier_thread, &r));
	for (unsigned int i = 0; i < 150; i++) {
		uint16_t u;

		if (bring_up(d, 0, QSZ, RING_IOVA + 4096))
			break;
		for (unsigned int k = 0; k < 8; k++) {
			struct seg s = { BUF_IOVA + 512 * k, 512, true };

			post(d, (uint16_t)k, &s, 1);
		}
		if (i % 2) {
			vw(d, COMMON(STATUS), 1, 0);
		} else {
			ASSERT_EQ(0, pci_fn_reset(d->fn));
			ASSERT_EQ(0, pci_fn_config_write_reg(d->fn, PCI_CFG_COMMAND, 2,
							     PCI_CMD_MEMORY | PCI_CMD_MASTER));
			ASSERT_EQ(0, pci_fn_irq_enable(d->fn, PCI_IRQ_MSIX, VIO_MSIX_VECTORS));
		}
		ASSERT_EQ(0, status(d));
		u = used_idx(d);
		ASSERT_TRUE(u <= 8);
		for (unsigned int k = 0; k < 4; k++)
			notify(d);
		ASSERT_EQ(u, used_idx(d));
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	/* And the device still works. */
	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	post(d, 0, (struct seg[]){ { BUF_IOVA, 32, true } }, 1);
	notify(d);
	ASSERT_EQ(1, used_idx(d));
}

/* A forked child's copy of the device works on its own, from reset to a used buffer, and the
 * parent's is untouched by it. (The library's own locks are not taken around fork, so a fork
 * racing an access from another thread is not tested: see docs/virtio.md.) */
TEST_F_TIMEOUT(vio, forked_child_uses_its_copy, 120)
{
	struct vdrv *d = &self->rng;

	ASSERT_EQ(0, bring_up(d, 0, QSZ, RING_IOVA + 4096));
	for (unsigned int i = 0; i < 4; i++) {
		int st = -1;
		pid_t pid = fork();

		ASSERT_TRUE(pid >= 0);
		if (!pid) {
			alarm(20);
			if (bring_up(d, 0, QSZ, RING_IOVA + 4096))
				_exit(2);
			post(d, 0, (struct seg[]){ { BUF_IOVA, 32, true } }, 1);
			notify(d);
			_exit(used_idx(d) == 1 && used(d)->ring[0].len == 32 ? 0 : 3);
		}
		ASSERT_EQ(pid, waitpid(pid, &st, 0));
		ASSERT_TRUE(WIFEXITED(st));
		ASSERT_EQ(0, WEXITSTATUS(st));
	}
	/* The parent's device is where it was: up, nothing used. */
	ASSERT_EQ(VIRTIO_CONFIG_S_DRIVER_OK, status(d) & VIRTIO_CONFIG_S_DRIVER_OK);
	ASSERT_EQ(0, used_idx(d));
	post(d, 0, (struct seg[]){ { BUF_IOVA, 32, true } }, 1);
	notify(d);
	ASSERT_EQ(1, used_idx(d));
}

/* ---- fault injection ------------------------------------------------------------------------ */

TEST(fail_nth_boot_virtio)
{
	long live0 = uiommu_alloc_live();

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, disk_create());
	/* realize's allocations and the backing file's open are among the steps. */
	ASSERT_EQ(0ul, pt_fail_nth_boot(topo_load));
	ASSERT_TRUE(topology_loaded());
	topology_unload();
	ASSERT_EQ(live0, uiommu_alloc_live());
	unlink(disk_path);
	strcpy(disk_path, "/tmp/uiommu-virtio-disk-XXXXXX");
}

TEST_HARNESS_MAIN
