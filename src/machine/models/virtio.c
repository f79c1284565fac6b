// SPDX-License-Identifier: MIT
/*
 * virtio-rng and virtio-blk over the modern virtio-pci transport (virtio 1.x), the built-in
 * models "virtio-rng" and "virtio-blk" (docs/virtio.md; virtio.h has the layout).
 *
 * What it models. A virtio 1.x PCI function as Linux's virtio_pci_modern driver finds it:
 * vendor 0x1af4, device 0x1040 + the device type, vendor-specific capabilities pointing at
 * the common configuration, the ISR byte, the notification registers and (virtio-blk) the
 * device configuration in BAR4; MSI-X in BAR1 (no INTx: a driver must use MSI-X). One split
 * virtqueue per device; no indirect descriptors, no event index. Every access to the rings and
 * the buffers is DMA of the function (uiommu_pci_dma_*()), so it goes through the IOMMU: an
 * IOVA the IOMMU refuses, or a ring that breaks the rules (an index beyond the queue, a chain
 * longer than the queue, an indirect descriptor), sets DEVICE_NEEDS_RESET in device_status and
 * raises the configuration vector, as the spec asks of a device in an error state; the device
 * then does nothing until the driver resets it. DMA refused for want of Bus Master (EPERM) is
 * not an error: the request stays in the avail ring and runs at the next notification or when
 * Bus Master comes back.
 *
 * It is written against include/uiommu/device.h only, as an out-of-tree model would be.
 *
 * Data model. struct vio hangs off the function. The common configuration is registers in it
 * (the selected feature words, status, the queue select and, per queue, size, vector, enable,
 * the three ring addresses and the device's own indices: last_avail, the next avail entry to
 * take, and used_idx, what the used ring's idx says). A notification processes the queue
 * synchronously, in the thread that wrote the notify register (the VFIO region write of a
 * VMM's vCPU, a test): take avail entries until the avail idx is reached, walk each chain,
 * do the request, write the used element and then the used idx, raise the queue's vector
 * unless the driver suppressed interrupts. No thread of our own, so reset and unrealize have
 * nothing to stop.
 *
 * Locking: `lock` protects all of struct vio and is held across a queue's processing, so a
 * device reset (status 0) or a FLR waits for the request in flight, and the driver's read of
 * status 0 means no request runs any more. Order: the library's model_lock (around our
 * callbacks) -> vios_lock -> lock -> the function's lock (DMA gate, interrupts: leaves).
 *
 * Fork: a forked child gets a copy of every instance; a pthread_atfork handler takes every
 * instance's lock around the fork, so no copy is of a lock held by a thread the child lacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "machine/models/virtio.h"
#include "uiommu/device.h"

#define VIO_CHUNK 4096u                /* bytes moved per DMA transfer */
#define VIO_SECTOR 512u
#define VIO_ISR_QUEUE 0x1u            /* ISR status: a used buffer notification */
#define VIO_ISR_CONFIG 0x2u           /* ISR status: a configuration change */
#define VIO_CMD_MASTER 0x0004          /* Command: Bus Master Enable */

/* The built-in models' table (machine/pci.c) names these. */
extern const struct uiommu_pci_model pci_model_virtio_rng;
extern const struct uiommu_pci_model pci_model_virtio_blk;

struct vio_queue {
	uint16_t size;
	uint16_t msix;
	uint16_t enable;
	uint64_t desc, avail, used;
	uint16_t last_avail;           /* the next avail ring entry to take */
	uint16_t used_idx;             /* the used ring's idx as we last wrote it */
};

/* A descriptor chain, flattened. */
struct vio_seg {
	uint64_t addr;
	uint32_t len;
	bool write;                    /* device-writable */
};

struct vio;

struct vio_type {
	unsigned int id;               /* the virtio device type */
	uint64_t features;             /* beyond VERSION_1 and ACCESS_PLATFORM */
	/* Does a request; 0 with *written set, or a negative errno (-EPERM: retry later, else
	 * the device needs a reset). */
	int (*request)(struct vio *v, struct vio_seg *segs, unsigned int n, uint32_t *written);
};

struct vio {
	struct uiommu_pci_fn *fn;
	const struct vio_type *type;
	pthread_mutex_t lock;          /* protects everything below; held while a queue runs */
	uint64_t features;             /* offered */
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint16_t msix_config;
	uint8_t status;
	uint8_t isr;
	uint16_t queue_select;
	struct vio_queue q[1];
	uint8_t devcfg[VIO_DEVICE_LEN];
	struct vio_seg *segs;          /* VIO_QUEUE_SIZE_MAX of them, for the chain being run */
	uint8_t *bounce;               /* VIO_CHUNK */
	int backing_fd;                /* virtio-blk: -1 otherwise */
	uint64_t capacity;             /* virtio-blk: 512-byte sectors */
	LIST_ENTRY(vio) node;          /* in vios; vios_lock */
};

/* Every instance of the process, for fork(). vios_lock protects the list; it comes before any
 * instance's lock. */
static pthread_mutex_t vios_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, vio) vios = LIST_HEAD_INITIALIZER(vios);
static pthread_once_t vio_atfork_once = PTHREAD_ONCE_INIT;

static void vio_atfork_prepare(void)
{
	struct vio *v;

	pthread_mutex_lock(&vios_lock);
	LIST_FOREACH(v, &vios, node)
		pthread_mutex_lock(&v->lock);
}

/* Parent and child alike: no thread of ours to restart, the registers are whole. */
static void vio_atfork_release(void)
{
	struct vio *v;

	LIST_FOREACH(v, &vios, node)
		pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&vios_lock);
}

static void vio_atfork_register(void)
{
	if (pthread_atfork(vio_atfork_prepare, vio_atfork_release, vio_atfork_release))
		abort();
}

/*
 * Registered when the library loads, before the virtual sysfs registers its own handler (at its
 * session's start): glibc runs prepare handlers in the reverse order of registration, so fork
 * takes our locks after the sysfs lock, the order a boot takes them in (sysfs lock, then an
 * instance's realize). Registered at the first realize instead, ours ran first: an inversion.
 */
__attribute__((constructor)) static void vio_atfork_early(void)
{
	pthread_once(&vio_atfork_once, vio_atfork_register);
}

static struct vio *to_vio(struct uiommu_pci_fn *fn)
{
	return uiommu_pci_fn_priv(fn);
}

static uint64_t vio_get_le(const uint8_t *p, unsigned int width)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void vio_put_le(uint8_t *p, unsigned int width, uint64_t v)
{
	for (unsigned int i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- interrupts and errors ------------------------------------------------------------------ */

static void vio_irq(struct vio *v, uint16_t vector, uint8_t isr_bit)
{
	v->isr |= isr_bit;
	/* No INTx: without MSI-X enabled the raise fails, and NO_VECTOR means "no interrupt". */
	if (vector != VIRTIO_MSI_NO_VECTOR)
		uiommu_pci_irq_raise(v->fn, vector);
}

static void vio_needs_reset(struct vio *v)
{
	if (v->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	v->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	vio_irq(v, v->msix_config, VIO_ISR_CONFIG);
}

static void vio_reset_locked(struct vio *v)
{
	v->dfselect = v->gfselect = 0;
	v->driver_features = 0;
	v->msix_config = VIRTIO_MSI_NO_VECTOR;
	v->status = 0;
	v->isr = 0;
	v->queue_select = 0;
	for (unsigned int i = 0; i < ARRAY_SIZE(v->q); i++)
		v->q[i] = (struct vio_queue){ .size = VIO_QUEUE_SIZE_MAX,
					      .msix = VIRTIO_MSI_NO_VECTOR };
}

/* ---- DMA ------------------------------------------------------------------------------------ */

/* 0, -EPERM (no Bus Master: retry later), or another negative errno (the device is broken). */
static int vio_dma(struct vio *v, bool write, uint64_t iova, void *buf, size_t len)
{
	ssize_t n = write ? uiommu_pci_dma_write(v->fn, 0, iova, buf, len, UIOMMU_DMA_NO_PASID) :
			    uiommu_pci_dma_read(v->fn, 0, iova, buf, len, UIOMMU_DMA_NO_PASID);

	if (n == (ssize_t)len)
		return 0;
	if (n < 0 && (errno == EPERM || errno == ENODEV))
		return -EPERM;
	return n < 0 ? -errno : -EIO;
}

static int vio_read16(struct vio *v, uint64_t iova, uint16_t *val)
{
	uint8_t b[2];
	int rc = vio_dma(v, false, iova, b, sizeof(b));

	*val = (uint16_t)vio_get_le(b, 2);
	return rc;
}

static int vio_write16(struct vio *v, uint64_t iova, uint16_t val)
{
	uint8_t b[2];

	vio_put_le(b, 2, val);
	return vio_dma(v, true, iova, b, sizeof(b));
}

/* ---- the split virtqueue -------------------------------------------------------------------- */

/* Flattens the chain at @head into v->segs. 0, -EPERM, or -EINVAL/-EFAULT... (broken). */
static int vio_chain(struct vio *v, struct vio_queue *q, uint16_t head, unsigned int *nsegs)
{
	unsigned int n = 0;
	uint16_t i = head;

	for (;;) {
		uint8_t d[16];
		uint16_t flags;
		int rc;

		/* A chain longer than the queue loops: the driver's bug, our error state. */
		if (i >= q->size || n >= q->size)
			return -EINVAL;
		rc = vio_dma(v, false, q->desc + 16ull * i, d, sizeof(d));
		if (rc)
			return rc;
		flags = (uint16_t)vio_get_le(d + 12, 2);
		if (flags & VRING_DESC_F_INDIRECT)
			return -EINVAL;  /* VIRTIO_RING_F_INDIRECT_DESC is not offered */
		v->segs[n++] = (struct vio_seg){ .addr = vio_get_le(d, 8),
						 .len = (uint32_t)vio_get_le(d + 8, 4),
						 .write = flags & VRING_DESC_F_WRITE };
		if (!(flags & VRING_DESC_F_NEXT))
			break;
		i = (uint16_t)vio_get_le(d + 14, 2);
	}
	*nsegs = n;
	return 0;
}

/* Runs what the driver made available. 0, or -EPERM (stopped for want of Bus Master). */
static int vio_queue_run(struct vio *v, unsigned int qi)
{
	struct vio_queue *q = &v->q[qi];
	bool raise = false;
	int rc = 0;

	if (!(v->status & VIRTIO_CONFIG_S_DRIVER_OK) || v->status & VIRTIO_CONFIG_S_NEEDS_RESET ||
	    !q->enable)
		return 0;
	for (;;) {
		uint16_t avail_idx, head, flags;
		uint32_t written = 0;
		unsigned int n;
		uint8_t elem[8];

		rc = vio_read16(v, q->avail + 2, &avail_idx);
		if (rc)
			break;
		if ((uint16_t)(avail_idx - q->last_avail) > q->size) {
			rc = -EINVAL;
			break;
		}
		if (avail_idx == q->last_avail) {
			rc = vio_read16(v, q->avail, &flags);
			if (!rc && raise && !(flags & VRING_AVAIL_F_NO_INTERRUPT))
				vio_irq(v, q->msix, VIO_ISR_QUEUE);
			break;
		}
		rc = vio_read16(v, q->avail + 4 + 2ull * (q->last_avail % q->size), &head);
		if (!rc)
			rc = vio_chain(v, q, head, &n);
		if (!rc)
			rc = v->type->request(v, v->segs, n, &written);
		if (rc)
			break;
		vio_put_le(elem, 4, head);
		vio_put_le(elem + 4, 4, written);
		rc = vio_dma(v, true, q->used + 4 + 8ull * (q->used_idx % q->size), elem,
			     sizeof(elem));
		if (!rc)
			rc = vio_write16(v, q->used + 2, (uint16_t)(q->used_idx + 1));
		if (rc)
			break;
		q->used_idx++;
		q->last_avail++;
		raise = true;
	}
	if (rc && rc != -EPERM)
		vio_needs_reset(v);
	return rc;
}

/* Produces (device-writable buffers) or consumes (readable ones) @len bytes at @pos. */
typedef int (*vio_io_fn)(struct vio *v, uint64_t pos, uint8_t *buf, size_t len);

/* Runs @io over the data of @segs[0..n) (the writable ones when @write, else the readable
 * ones), @pos advancing from @start. Return: 0 or a negative errno; *@done the bytes moved. */
static int vio_segs_io(struct vio *v, const struct vio_seg *segs, unsigned int n, bool write,
		       uint64_t start, vio_io_fn io, uint32_t *done)
{
	uint64_t pos = start;

	*done = 0;
	for (unsigned int i = 0; i < n; i++) {
		if (segs[i].write != write)
			continue;
		for (uint32_t off = 0; off < segs[i].len; off += VIO_CHUNK) {
			size_t len = segs[i].len - off < VIO_CHUNK ? segs[i].len - off : VIO_CHUNK;
			int rc;

			if (!write) {
				rc = vio_dma(v, false, segs[i].addr + off, v->bounce, len);
				if (!rc)
					rc = io(v, pos, v->bounce, len);
			} else {
				rc = io(v, pos, v->bounce, len);
				if (!rc)
					rc = vio_dma(v, true, segs[i].addr + off, v->bounce, len);
			}
			if (rc)
				return rc;
			pos += len;
			*done += (uint32_t)len;
		}
	}
	return 0;
}

/* ---- virtio-rng ----------------------------------------------------------------------------- */

static int vio_rng_fill(struct vio *v, uint64_t pos, uint8_t *buf, size_t len)
{
	(void)v;
	(void)pos;
	for (size_t got = 0; got < len;) {
		ssize_t n = getrandom(buf + got, len - got, 0);

		if (n < 0 && errno != EINTR)
			return -EIO;
		if (n > 0)
			got += (size_t)n;
	}
	return 0;
}

/* Every device-writable buffer is filled with random bytes; readable ones are ignored. */
static int vio_rng_request(struct vio *v, struct vio_seg *segs, unsigned int n, uint32_t *written)
{
	return vio_segs_io(v, segs, n, true, 0, vio_rng_fill, written);
}

static const struct vio_type vio_rng = {
	.id = VIO_TYPE_RNG,
	.request = vio_rng_request,
};

/* ---- virtio-blk ----------------------------------------------------------------------------- */

static int vio_blk_pread(struct vio *v, uint64_t pos, uint8_t *buf, size_t len)
{
	ssize_t n = pread(v->backing_fd, buf, len, (off_t)pos);

	if (n < 0)
		return -EIO;
	memset(buf + n, 0, len - (size_t)n);
	return 0;
}

static int vio_blk_pwrite(struct vio *v, uint64_t pos, uint8_t *buf, size_t len)
{
	return pwrite(v->backing_fd, buf, len, (off_t)pos) == (ssize_t)len ? 0 : -EIO;
}

static int vio_blk_id(struct vio *v, uint64_t pos, uint8_t *buf, size_t len)
{
	(void)v;
	memset(buf, 0, len);
	if (pos < sizeof(VIO_BLK_ID))
		memcpy(buf, &VIO_BLK_ID[pos], len < sizeof(VIO_BLK_ID) - pos ? len : sizeof(VIO_BLK_ID) - pos);
	return 0;
}

/* The data of a request: segs[1..n-1], the first one's bytes after the header included, the
 * last one's status byte excluded. Returns the status. -EPERM/-EFAULT... from DMA. */
static int vio_blk_data(struct vio *v, struct vio_seg *segs, unsigned int n, uint32_t type,
			uint64_t sector, uint32_t *moved)
{
	uint64_t bytes = 0, pos = sector * VIO_SECTOR;
	bool write = type != VIRTIO_BLK_T_OUT;
	vio_io_fn io = type == VIRTIO_BLK_T_IN ? vio_blk_pread :
		       type == VIRTIO_BLK_T_OUT ? vio_blk_pwrite : vio_blk_id;
	int rc;

	for (unsigned int i = 0; i < n; i++)
		if (segs[i].write == write)
			bytes += segs[i].len;
	if (type != VIRTIO_BLK_T_GET_ID &&
	    (bytes % VIO_SECTOR || sector > v->capacity || bytes / VIO_SECTOR > v->capacity - sector))
		return VIRTIO_BLK_S_IOERR;
	if (type == VIRTIO_BLK_T_OUT && v->features & (1ull << VIO_BLK_F_RO))
		return VIRTIO_BLK_S_IOERR;
	rc = vio_segs_io(v, segs, n, write, type == VIRTIO_BLK_T_GET_ID ? 0 : pos, io, moved);
	if (rc == -EIO)
		return VIRTIO_BLK_S_IOERR;
	return rc ? rc : VIRTIO_BLK_S_OK;
}

/*
 * A request is a readable header (struct virtio_blk_outhdr: type, reserved, sector), the data
 * buffers and a writable status byte, the last byte of the chain. The header's descriptor may
 * carry data after it, and the status's descriptor data before it, as the spec allows.
 */
static int vio_blk_request(struct vio *v, struct vio_seg *segs, unsigned int n, uint32_t *written)
{
	struct vio_seg last = segs[n - 1], first = segs[0];
	uint8_t hdr[16], status;
	uint32_t type, moved = 0;
	uint64_t sector;
	int rc;

	if (n < 2 || first.write || first.len < sizeof(hdr) || !last.write || !last.len)
		return -EINVAL;
	rc = vio_dma(v, false, first.addr, hdr, sizeof(hdr));
	if (rc)
		return rc;
	type = (uint32_t)vio_get_le(hdr, 4);
	sector = vio_get_le(hdr + 8, 8);
	segs[0].addr += sizeof(hdr);
	segs[0].len -= (uint32_t)sizeof(hdr);
	segs[n - 1].len--;

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
	case VIRTIO_BLK_T_GET_ID:
		rc = vio_blk_data(v, segs, n, type, sector, &moved);
		break;
	case VIRTIO_BLK_T_FLUSH:
		rc = fdatasync(v->backing_fd) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	default:
		rc = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (rc < 0)
		return rc;
	status = (uint8_t)rc;
	rc = vio_dma(v, true, last.addr + last.len - 1, &status, 1);
	/* What the device wrote into the driver's buffers: data read in, and the status. */
	*written = (type == VIRTIO_BLK_T_OUT ? 0 : moved) + 1;
	return rc;
}

static const struct vio_type vio_blk = {
	.id = VIO_TYPE_BLK,
	.features = 1ull << VIO_BLK_F_SEG_MAX | 1ull << VIO_BLK_F_FLUSH,
	.request = vio_blk_request,
};

/* ---- the common configuration --------------------------------------------------------------- */

/* Whether an access of [@off, @off + @width) touches the field [@reg, @reg + @size). */
static bool vio_hits(uint64_t off, unsigned int width, unsigned int reg, unsigned int size)
{
	return off < reg + size && reg < off + width;
}

/* The common configuration as bytes, for reads of any width. */
static void vio_common_image(struct vio *v, uint8_t *img)
{
	struct vio_queue *q = v->queue_select < ARRAY_SIZE(v->q) ? &v->q[v->queue_select] : NULL;

	memset(img, 0, VIO_COMMON_LEN);
	vio_put_le(img + VIRTIO_PCI_COMMON_DFSELECT, 4, v->dfselect);
	vio_put_le(img + VIRTIO_PCI_COMMON_DF, 4,
		   v->dfselect < 2 ? (uint32_t)(v->features >> (32 * v->dfselect)) : 0);
	vio_put_le(img + VIRTIO_PCI_COMMON_GFSELECT, 4, v->gfselect);
	vio_put_le(img + VIRTIO_PCI_COMMON_GF, 4,
		   v->gfselect < 2 ? (uint32_t)(v->driver_features >> (32 * v->gfselect)) : 0);
	vio_put_le(img + VIRTIO_PCI_COMMON_MSIX, 2, v->msix_config);
	vio_put_le(img + VIRTIO_PCI_COMMON_NUMQ, 2, ARRAY_SIZE(v->q));
	img[VIRTIO_PCI_COMMON_STATUS] = v->status;
	img[VIRTIO_PCI_COMMON_CFGGENERATION] = 0;   /* the device config never changes */
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_SELECT, 2, v->queue_select);
	if (!q) {
		/* No such queue: size 0 says so (and nothing else of it exists). */
		vio_put_le(img + VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
		return;
	}
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_SIZE, 2, q->size);
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_MSIX, 2, q->msix);
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_ENABLE, 2, q->enable);
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_NOFF, 2, v->queue_select);
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_DESCLO, 8, q->desc);
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_AVAILLO, 8, q->avail);
	vio_put_le(img + VIRTIO_PCI_COMMON_Q_USEDLO, 8, q->used);
}

static void vio_status_write(struct vio *v, uint8_t status)
{
	uint64_t must = 1ull << VIO_F_VERSION_1;

	if (!status) {
		vio_reset_locked(v);
		return;
	}
	/* FEATURES_OK sticks only for a subset of what we offer that includes VERSION_1. */
	if (status & VIRTIO_CONFIG_S_FEATURES_OK && !(v->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    ((v->driver_features & ~v->features) || !(v->driver_features & must)))
		status &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
	/* NEEDS_RESET is the device's: only a reset clears it. */
	v->status = (uint8_t)((status & ~VIRTIO_CONFIG_S_NEEDS_RESET) |
			      (v->status & VIRTIO_CONFIG_S_NEEDS_RESET));
}

static bool vio_is_pow2(unsigned int x)
{
	return x && !(x & (x - 1));
}

static void vio_common_write(struct vio *v, uint64_t off, unsigned int width, uint64_t val)
{
	struct vio_queue *q = v->queue_select < ARRAY_SIZE(v->q) ? &v->q[v->queue_select] : NULL;
	uint8_t img[VIO_COMMON_LEN];
	bool fs = v->status & VIRTIO_CONFIG_S_FEATURES_OK;

	/* Merge the written bytes into the current image; each touched field takes its part. */
	vio_common_image(v, img);
	vio_put_le(img + off, width, val);

#define HIT(reg, size) vio_hits(off, width, (reg), (size))
#define GET(reg, size) vio_get_le(img + (reg), (size))
	if (HIT(VIRTIO_PCI_COMMON_DFSELECT, 4))
		v->dfselect = (uint32_t)GET(VIRTIO_PCI_COMMON_DFSELECT, 4);
	if (HIT(VIRTIO_PCI_COMMON_GFSELECT, 4))
		v->gfselect = (uint32_t)GET(VIRTIO_PCI_COMMON_GFSELECT, 4);
	/* Feature words beyond the second: none offered, so a non-zero word fails FEATURES_OK. */
	if (HIT(VIRTIO_PCI_COMMON_GF, 4) && !fs) {
		uint64_t w = GET(VIRTIO_PCI_COMMON_GF, 4);

		if (v->gfselect < 2) {
			unsigned int sh = 32 * v->gfselect;

			v->driver_features = (v->driver_features & ~(0xffffffffull << sh)) | w << sh;
		} else if (w) {
			v->driver_features |= 1ull << 63;    /* never offered */
		}
	}
	if (HIT(VIRTIO_PCI_COMMON_MSIX, 2)) {
		uint16_t vec = (uint16_t)GET(VIRTIO_PCI_COMMON_MSIX, 2);

		/* A vector we do not have reads back NO_VECTOR: that is how a driver learns. */
		v->msix_config = vec < VIO_MSIX_VECTORS ? vec : VIRTIO_MSI_NO_VECTOR;
	}
	if (HIT(VIRTIO_PCI_COMMON_Q_SELECT, 2))
		v->queue_select = (uint16_t)GET(VIRTIO_PCI_COMMON_Q_SELECT, 2);
	if (q && HIT(VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
		uint16_t vec = (uint16_t)GET(VIRTIO_PCI_COMMON_Q_MSIX, 2);

		q->msix = vec < VIO_MSIX_VECTORS ? vec : VIRTIO_MSI_NO_VECTOR;
	}
	/* The queue's size and addresses are the driver's until it enables the queue. */
	if (q && !q->enable) {
		if (HIT(VIRTIO_PCI_COMMON_Q_SIZE, 2)) {
			unsigned int size = (unsigned int)GET(VIRTIO_PCI_COMMON_Q_SIZE, 2);

			if (vio_is_pow2(size) && size <= VIO_QUEUE_SIZE_MAX)
				q->size = (uint16_t)size;
		}
		if (HIT(VIRTIO_PCI_COMMON_Q_DESCLO, 8))
			q->desc = GET(VIRTIO_PCI_COMMON_Q_DESCLO, 8);
		if (HIT(VIRTIO_PCI_COMMON_Q_AVAILLO, 8))
			q->avail = GET(VIRTIO_PCI_COMMON_Q_AVAILLO, 8);
		if (HIT(VIRTIO_PCI_COMMON_Q_USEDLO, 8))
			q->used = GET(VIRTIO_PCI_COMMON_Q_USEDLO, 8);
		/* Writing 0 is not allowed to the driver; only 1 means something. */
		if (HIT(VIRTIO_PCI_COMMON_Q_ENABLE, 2) && GET(VIRTIO_PCI_COMMON_Q_ENABLE, 2) == 1)
			q->enable = 1;
	}
	/* Last: a reset written with other fields must not be undone by them. */
	if (HIT(VIRTIO_PCI_COMMON_STATUS, 1))
		vio_status_write(v, img[VIRTIO_PCI_COMMON_STATUS]);
#undef HIT
#undef GET
}

/* ---- BAR accesses --------------------------------------------------------------------------- */

static uint64_t vio_bar_read(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off,
			     unsigned int width)
{
	struct vio *v = to_vio(fn);
	uint8_t img[VIO_COMMON_LEN];
	uint64_t val = 0;

	if (bar != VIO_BAR)
		return 0;
	pthread_mutex_lock(&v->lock);
	if (off + width <= VIO_COMMON_OFF + VIO_COMMON_LEN) {
		vio_common_image(v, img);
		val = vio_get_le(img + (off - VIO_COMMON_OFF), width);
	} else if (off == VIO_ISR_OFF) {
		/* Reading the ISR status clears it. */
		val = v->isr;
		v->isr = 0;
	} else if (v->type->id == VIO_TYPE_BLK && off >= VIO_DEVICE_OFF &&
		   off + width <= VIO_DEVICE_OFF + VIO_DEVICE_LEN) {
		val = vio_get_le(v->devcfg + (off - VIO_DEVICE_OFF), width);
	}
	pthread_mutex_unlock(&v->lock);
	return val;
}

static void vio_bar_write(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off,
			  unsigned int width, uint64_t val)
{
	struct vio *v = to_vio(fn);

	if (bar != VIO_BAR)
		return;
	pthread_mutex_lock(&v->lock);
	if (off + width <= VIO_COMMON_OFF + VIO_COMMON_LEN)
		vio_common_write(v, off - VIO_COMMON_OFF, width, val);
	else if (off >= VIO_NOTIFY_OFF && off < VIO_NOTIFY_OFF + VIO_NOTIFY_MULT * ARRAY_SIZE(v->q))
		vio_queue_run(v, (unsigned int)((off - VIO_NOTIFY_OFF) / VIO_NOTIFY_MULT));
	/* The device configuration of virtio-blk has nothing writable we offer. */
	pthread_mutex_unlock(&v->lock);
}

/* Bus Master back on: what a refused DMA left in the rings runs now. */
static void vio_command_written(struct uiommu_pci_fn *fn, uint16_t old_cmd, uint16_t new_cmd)
{
	struct vio *v = to_vio(fn);

	if (!(new_cmd & VIO_CMD_MASTER) || old_cmd & VIO_CMD_MASTER)
		return;
	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < ARRAY_SIZE(v->q); i++)
		vio_queue_run(v, i);
	pthread_mutex_unlock(&v->lock);
}

static void vio_reset(struct uiommu_pci_fn *fn)
{
	struct vio *v = to_vio(fn);

	pthread_mutex_lock(&v->lock);
	vio_reset_locked(v);
	pthread_mutex_unlock(&v->lock);
}

/* ---- life ----------------------------------------------------------------------------------- */

static void vio_free(struct vio *v)
{
	if (v->backing_fd >= 0) {
		uiommu_fd_unkeep(v->backing_fd);
		close(v->backing_fd);
	}
	uiommu_free(v->segs);
	uiommu_free(v->bounce);
	pthread_mutex_destroy(&v->lock);
	uiommu_free(v);
}

/* virtio-blk's backing file, read-write if it can be; its size in sectors in the config. */
static int vio_blk_open(struct vio *v)
{
	const char *path = uiommu_pci_fn_backing(v->fn);
	struct stat st;

	if (!path)
		return -EINVAL;
	if (uiommu_should_fail())
		return -EIO;
	v->backing_fd = open(path, O_RDWR | O_CLOEXEC);
	if (v->backing_fd < 0 && (errno == EACCES || errno == EROFS)) {
		v->backing_fd = open(path, O_RDONLY | O_CLOEXEC);
		v->features |= 1ull << VIO_BLK_F_RO;
	}
	if (v->backing_fd < 0)
		return -errno;
	uiommu_fd_keep(v->backing_fd);
	if (fstat(v->backing_fd, &st))
		return -errno;
	v->capacity = (uint64_t)st.st_size / VIO_SECTOR;
	vio_put_le(v->devcfg + offsetof(struct virtio_blk_config, capacity), 8, v->capacity);
	vio_put_le(v->devcfg + offsetof(struct virtio_blk_config, seg_max), 4, VIO_BLK_SEG_MAX);
	return 0;
}

static int vio_realize(struct uiommu_pci_fn *fn, const struct vio_type *type)
{
	struct vio *v;
	int rc = -ENOMEM;

	v = uiommu_zalloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->fn = fn;
	v->type = type;
	v->backing_fd = -1;
	v->features = 1ull << VIO_F_VERSION_1 | 1ull << VIO_F_ACCESS_PLATFORM | type->features;
	pthread_mutex_init(&v->lock, NULL);
	v->segs = uiommu_calloc(VIO_QUEUE_SIZE_MAX, sizeof(*v->segs));
	v->bounce = uiommu_zalloc(VIO_CHUNK);
	if (!v->segs || !v->bounce)
		goto err_free;
	if (type->id == VIO_TYPE_BLK) {
		rc = vio_blk_open(v);
		if (rc)
			goto err_free;
	}
	vio_reset_locked(v);
	pthread_once(&vio_atfork_once, vio_atfork_register);
	pthread_mutex_lock(&vios_lock);
	LIST_INSERT_HEAD(&vios, v, node);
	pthread_mutex_unlock(&vios_lock);
	uiommu_pci_fn_set_priv(fn, v);
	return 0;

err_free:
	vio_free(v);
	return rc;
}

static int vio_rng_realize(struct uiommu_pci_fn *fn)
{
	return vio_realize(fn, &vio_rng);
}

static int vio_blk_realize(struct uiommu_pci_fn *fn)
{
	return vio_realize(fn, &vio_blk);
}

static void vio_unrealize(struct uiommu_pci_fn *fn)
{
	struct vio *v = to_vio(fn);

	pthread_mutex_lock(&vios_lock);
	LIST_REMOVE(v, node);
	pthread_mutex_unlock(&vios_lock);
	uiommu_pci_fn_set_priv(fn, NULL);
	vio_free(v);
}

/* ---- the descriptions ----------------------------------------------------------------------- */

/* The bytes of a struct virtio_pci_cap from cfg_type on (the library writes ID, next, len). */
#define VIO_CAP_BYTES(type, off, len)                                                          \
	(type), VIO_BAR, 0, 0, 0, (uint8_t)(off), (uint8_t)((off) >> 8), 0, 0,                  \
	(uint8_t)(len), (uint8_t)((len) >> 8), 0, 0

static const uint8_t vio_cap_common[] = { VIO_CAP_BYTES(VIRTIO_PCI_CAP_COMMON_CFG,
							VIO_COMMON_OFF, VIO_COMMON_LEN) };
static const uint8_t vio_cap_notify[] = { VIO_CAP_BYTES(VIRTIO_PCI_CAP_NOTIFY_CFG,
							VIO_NOTIFY_OFF, VIO_NOTIFY_MULT),
					  VIO_NOTIFY_MULT, 0, 0, 0 };
static const uint8_t vio_cap_isr[] = { VIO_CAP_BYTES(VIRTIO_PCI_CAP_ISR_CFG, VIO_ISR_OFF,
						     VIO_ISR_LEN) };
static const uint8_t vio_cap_device[] = { VIO_CAP_BYTES(VIRTIO_PCI_CAP_DEVICE_CFG,
							VIO_DEVICE_OFF, VIO_DEVICE_LEN) };

#define VIO_VCAP(a) { .data = (a), .len = sizeof(a) }

static const struct uiommu_pci_vendor_cap vio_rng_caps[] = {
	VIO_VCAP(vio_cap_common), VIO_VCAP(vio_cap_notify), VIO_VCAP(vio_cap_isr),
};

static const struct uiommu_pci_vendor_cap vio_blk_caps[] = {
	VIO_VCAP(vio_cap_common), VIO_VCAP(vio_cap_notify), VIO_VCAP(vio_cap_isr),
	VIO_VCAP(vio_cap_device),
};

#define VIO_MODEL(model_name, type, class, vcaps, realize_fn)                                   \
	{                                                                                      \
		.version = UIOMMU_PCI_MODEL_V2,                                                \
		.name = (model_name),                                                          \
		.vendor_id = VIO_VENDOR_ID,                                                    \
		.device_id = VIO_DEVICE_ID_BASE + (type),                                      \
		.subsystem_vendor_id = VIO_VENDOR_ID,                                          \
		.subsystem_id = 0x1100,                                                        \
		.class_code = (class),                                                         \
		.revision = VIO_REVISION,                                                      \
		.caps = UIOMMU_PCI_CAP_PM | UIOMMU_PCI_CAP_MSIX | UIOMMU_PCI_CAP_PCIE,         \
		.msix_vectors = VIO_MSIX_VECTORS,                                              \
		.msix_table_bar = VIO_MSIX_BAR,                                                \
		.msix_table_offset = VIO_MSIX_TABLE,                                           \
		.msix_pba_bar = VIO_MSIX_BAR,                                                  \
		.msix_pba_offset = VIO_MSIX_PBA,                                               \
		.bars = {                                                                      \
			[VIO_MSIX_BAR] = { .size = VIO_MSIX_BAR_SIZE },                        \
			[VIO_BAR] = { .size = VIO_BAR_SIZE,                                    \
				      .flags = UIOMMU_PCI_BAR_64 | UIOMMU_PCI_BAR_PREFETCH },  \
		},                                                                             \
		.realize = (realize_fn),                                                       \
		.unrealize = vio_unrealize,                                                    \
		.reset = vio_reset,                                                            \
		.command_written = vio_command_written,                                        \
		.bar_read = vio_bar_read,                                                      \
		.bar_write = vio_bar_write,                                                    \
		.nr_vendor_caps = ARRAY_SIZE(vcaps),                                            \
		.vendor_caps = (vcaps),                                                         \
	}

/* Class codes as QEMU gives them: "other" (0xff0000) for the rng, SCSI storage for blk. */
const struct uiommu_pci_model pci_model_virtio_rng =
	VIO_MODEL("virtio-rng", VIO_TYPE_RNG, 0xff0000, vio_rng_caps, vio_rng_realize);
const struct uiommu_pci_model pci_model_virtio_blk =
	VIO_MODEL("virtio-blk", VIO_TYPE_BLK, 0x010000, vio_blk_caps, vio_blk_realize);
