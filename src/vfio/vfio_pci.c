// SPDX-License-Identifier: MIT
/*
 * vfio-pci: the device fd of a PCI function of the emulated machine, as the kernel's
 * drivers/vfio/pci/vfio_pci_core.c, vfio_pci_rdwr.c and vfio_pci_intrs.c show it to userspace
 * (the spec's sections 2 and 6; docs/vfio.md lists what differs). The code is ours.
 *
 * Data model. One struct vfio_pci_core per opened struct device (vfio_pci_cores), shared by
 * every file that has the device open: the one bound cdev file, or the group-mode files of
 * VFIO_GROUP_GET_DEVICE_FD. It holds a reference on the machine's function, the virtual config
 * space (pci_config.c), the interrupt mode with the eventfds the machine's notifier signals,
 * and the DMA logging state the DMA engine's write-log hook feeds.
 *
 * Regions: index << 40 in the fd's offsets. BARs are accessed through the function
 * (pci_fn_bar_read/write) in naturally aligned pieces of 8, 4, 2 or 1 bytes; the MSI-X table
 * is never reached (reads 0xff, writes dropped); a memory BAR is EIO while the virtual Memory
 * bit is off or the function is in D3hot. Config space is region 7. Only the shared-memory
 * areas a model declares are memory a mapping can reach: GET_REGION_INFO lists them in a
 * sparse mmap capability, and mmap() maps the function's memfd at the area, so the driver and
 * the model share the pages; a mapping of more of such a BAR (the whole BAR, as the kernel
 * allows) has its other pages PROT_NONE. The area mappings are followed and revoked while
 * memory decode is off (vfio_pci_zap.c). The ROM (region 6) is the model's image, read-only.
 *
 * Interrupts: SET_IRQS programs the function through pci_fn_irq_enable() and friends, as the
 * host kernel's MSI code programs a real one; the function's messages come back through the
 * notifier registered at open (vfio_pci_irq_ops) and become eventfd signals. INTx is
 * automasked virtually: a signal masks it until UNMASK, which signals again at once if the
 * line is still asserted; the unmask irqfd (KVM's resampler) is an UNMASK for every signal of
 * its eventfd, seen by a watcher thread. VFIO_DEVICE_IOEVENTFD is vfio_pci_ioeventfd.c's.
 *
 * Reset: VFIO_DEVICE_RESET, PCIe Initiate FLR, PCI_HOT_RESET: the function's FLR with the
 * header saved before and restored after (the PCI core's save/restore), the interrupt mode
 * re-programmed, the BAR mappings revoked while it runs. The model stops its work in its
 * reset(), so no DMA follows.
 *
 * Locking: see vfio.h. vfio_pci_lock protects the list and the open counts; core->lock the
 * device's state; core->irq_lock the eventfds (the notifier's only lock, taken from whatever
 * thread the function raised from, so it may call into the function: irq_lock -> fn lock);
 * core->log_lock the dirty log (the DMA engine's hook takes only it). Nothing is called with
 * irq_lock or log_lock held that could take core->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "lib/thread.h"
#include "machine/dma-engine.h"
#include "machine/topology.h"
#include "mm/mm.h"
#include "vfio/vfio_pci_priv.h"

/* The uAPI numbers and layouts (include/uapi/linux/vfio.h), private so that any host header
 * works. */
#define VFIO_IOCTL(n) _IO(';', 100 + (n))
#define VFIO_CMD_GET_INFO VFIO_IOCTL(7)
#define VFIO_CMD_GET_REGION_INFO VFIO_IOCTL(8)
#define VFIO_CMD_GET_IRQ_INFO VFIO_IOCTL(9)
#define VFIO_CMD_SET_IRQS VFIO_IOCTL(10)
#define VFIO_CMD_RESET VFIO_IOCTL(11)
#define VFIO_CMD_HOT_RESET_INFO VFIO_IOCTL(12)
#define VFIO_CMD_HOT_RESET VFIO_IOCTL(13)
#define VFIO_CMD_IOEVENTFD VFIO_IOCTL(16)
#define VFIO_CMD_FEATURE VFIO_IOCTL(17)

#define INFO_FLAG_RESET (1u << 0)
#define INFO_FLAG_PCI (1u << 1)
#define INFO_FLAG_CAPS (1u << 7)
#define REGION_READ (1u << 0)
#define REGION_WRITE (1u << 1)
#define REGION_MMAP (1u << 2)
#define REGION_CAPS (1u << 3)
#define REGION_CAP_SPARSE_MMAP 1u
#define IRQ_EVENTFD (1u << 0)
#define IRQ_MASKABLE (1u << 1)
#define IRQ_AUTOMASKED (1u << 2)
#define IRQ_NORESIZE (1u << 3)
#define SET_DATA_NONE (1u << 0)
#define SET_DATA_BOOL (1u << 1)
#define SET_DATA_EVENTFD (1u << 2)
#define SET_DATA_MASK 0x7u
#define SET_ACTION_MASK (1u << 3)
#define SET_ACTION_UNMASK (1u << 4)
#define SET_ACTION_TRIGGER (1u << 5)
#define SET_ACTION_ALL 0x38u
#define HOT_RESET_DEV_ID (1u << 0)
#define HOT_RESET_DEV_ID_OWNED (1u << 1)
#define DEVID_OWNED 0u
#define DEVID_NOT_OWNED 0xffffffffu
#define FEATURE_MASK 0xffffu
#define FEATURE_GET (1u << 16)
#define FEATURE_SET (1u << 17)
#define FEATURE_PROBE (1u << 18)
#define FEATURE_LOW_POWER_ENTRY 3u
#define FEATURE_LOW_POWER_ENTRY_WAKEUP 4u
#define FEATURE_LOW_POWER_EXIT 5u
#define FEATURE_LOG_START 6u
#define FEATURE_LOG_STOP 7u
#define FEATURE_LOG_REPORT 8u
#define FEATURE_MIG_PRECOPY_INFOV2 12u
#define LOG_MAX_RANGES 256u /* a page of ranges, as the kernel */

struct vfio_info {
	uint32_t argsz, flags, num_regions, num_irqs, cap_offset, pad;
};

struct vfio_region_info {
	uint32_t argsz, flags, index, cap_offset;
	uint64_t size, offset;
};

struct vfio_irq_info {
	uint32_t argsz, flags, index, count;
};

struct vfio_irq_set {
	uint32_t argsz, flags, index, start, count;
};

struct vfio_hot_reset_info {
	uint32_t argsz, flags, count;
};

struct vfio_dependent_device {
	uint32_t id;
	uint16_t segment;
	uint8_t bus, devfn;
};

struct vfio_hot_reset {
	uint32_t argsz, flags, count;
};

struct vfio_feature {
	uint32_t argsz, flags;
};

struct vfio_log_control {
	uint64_t page_size;
	uint32_t num_ranges, reserved;
	uint64_t ranges;
};

struct vfio_log_range {
	uint64_t iova, length;
};

struct vfio_log_report {
	uint64_t iova, length, page_size, bitmap;
};

#define minsz_of(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* Protects vfio_pci_cores; first in the order of vfio.h. */
UIOMMU_MUTEX_DEFINE(vfio_pci_lock);
static LIST_HEAD(, vfio_pci_core) vfio_pci_cores = LIST_HEAD_INITIALIZER(vfio_pci_cores);

/* ---- eventfds ------------------------------------------------------------------------------- */

/*
 * Our own reference on the caller's eventfd @fd (the kernel's eventfd_ctx_fdget()): a
 * duplicate, so that the caller's close does not end it. These are the user's eventfds, not
 * files of the library, so dup(), eventfd_write() and close() of libc are right here: through
 * them ThreadSanitizer sees the signal as the release the reader's read() acquires.
 * Return: the duplicate, -EBADF, -EINVAL (not an eventfd), -EMFILE.
 */
int vfio_efd_get(int fd)
{
	char path[32], link[32];
	ssize_t n;
	int local, dup_fd;

	if (fd < 0)
		return -EBADF;
	/* Another process's call names its own fd: a copy of it here (docs/processes.md). */
	local = iommufd_caller_fd_get(fd);
	if (local < 0)
		return local;
	dup_fd = uiommu_should_fail() ? (errno = EMFILE, -1) : dup(local);
	if (dup_fd < 0)
		dup_fd = -errno;
	iommufd_caller_fd_put(local);
	if (dup_fd < 0)
		return dup_fd;
	uiommu_fd_keep(dup_fd);
	if (sys_fcntl(dup_fd, F_SETFD, FD_CLOEXEC) < 0)
		goto err_close;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", dup_fd);
	n = sys_readlinkat(AT_FDCWD, path, link, sizeof(link) - 1);
	if (n < 0 || (link[n] = 0, strcmp(link, "anon_inode:[eventfd]")))
		goto err_close;
	return dup_fd;

err_close:
	uiommu_fd_unkeep(dup_fd);
	close(dup_fd);
	return -EINVAL;
}

/*
 * Takes what @fd (one of our duplicates) has counted, without blocking: our duplicate shares
 * the caller's file, whose O_NONBLOCK is the caller's, and the caller may read it too, so a
 * plain read() after poll() could sleep for good. Return: 0 when there was a count, -EAGAIN.
 */
int vfio_efd_consume(int fd)
{
	eventfd_t cnt;
	struct iovec iov = { .iov_base = &cnt, .iov_len = sizeof(cnt) };

	return preadv2(fd, &iov, 1, -1, RWF_NOWAIT) == sizeof(cnt) ? 0 : -EAGAIN;
}

/* The kernel's identity of the eventfd behind @fd ("eventfd-id" of its fdinfo); 0 if unknown. */
uint64_t vfio_efd_id(int fd)
{
	char path[48], buf[512];
	unsigned long long id = 0;
	ssize_t n;
	char *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	n = sys_read_small_file(path, buf, sizeof(buf));
	if (n <= 0)
		return 0;
	p = strstr(buf, "eventfd-id:");
	if (p)
		sscanf(p + 11, "%llu", &id);
	return id;
}

void vfio_efd_put(int fd)
{
	if (fd >= 0) {
		uiommu_fd_unkeep(fd);
		close(fd);
	}
}

static void efd_signal(int fd)
{
	if (fd >= 0)
		eventfd_write(fd, 1);
}

/* ---- the function's interrupts ---------------------------------------------------------------- */

static void vfio_pci_irq_msi(void *priv, enum pci_irq_type type, unsigned int vector)
{
	struct vfio_pci_core *core = priv;
	unsigned int want = type == PCI_IRQ_MSIX ? VFIO_PCI_MSIX : VFIO_PCI_MSI;

	uiommu_mutex_lock(&core->irq_lock);
	if (core->trig && core->irq_type == want && vector < core->ntrig)
		efd_signal(core->trig[vector]);
	uiommu_mutex_unlock(&core->irq_lock);
}

static void vfio_pci_irq_intx(void *priv, bool asserted)
{
	struct vfio_pci_core *core = priv;

	if (!asserted)
		return;
	uiommu_mutex_lock(&core->irq_lock);
	if (core->irq_type == VFIO_PCI_INTX && !core->intx_masked && !core->intx_vdisabled) {
		core->intx_masked = true; /* automasked until UNMASK */
		efd_signal(core->intx_trig);
	}
	uiommu_mutex_unlock(&core->irq_lock);
}

static const struct pci_irq_ops vfio_pci_irq_ops = {
	.msi = vfio_pci_irq_msi,
	.intx = vfio_pci_irq_intx,
};

/* INTx unmasked by the user or by the virtual DisINTx: a line still asserted signals again. */
static void vfio_pci_intx_recheck(struct vfio_pci_core *core)
{
	if (core->irq_type != VFIO_PCI_INTX || core->intx_masked || core->intx_vdisabled)
		return;
	if (pci_fn_irq_pending(core->fn, PCI_IRQ_INTX, 0)) {
		core->intx_masked = true;
		efd_signal(core->intx_trig);
	}
}

void vfio_pci_intx_vdisable(struct vfio_pci_core *core, bool disabled)
{
	uiommu_mutex_lock(&core->irq_lock);
	core->intx_vdisabled = disabled;
	vfio_pci_intx_recheck(core);
	uiommu_mutex_unlock(&core->irq_lock);
}

/* ---- the INTx unmask irqfd ------------------------------------------------------------------- */

/* INTx unmasked by the user, the unmask irqfd or the virtual DisINTx; irq_lock held. */
static void vfio_pci_intx_unmask_locked(struct vfio_pci_core *core)
{
	core->intx_masked = false;
	vfio_pci_intx_recheck(core);
}

/*
 * The watcher of the unmask irqfd: each signal (its count consumed, as the kernel's virqfd
 * consumes it) unmasks INTx, which signals the trigger again at once if the line is still
 * asserted. A signal pending when it starts counts. It ends when unmask_stop is signalled.
 */
static void *vfio_pci_unmask_watch(void *arg)
{
	struct vfio_pci_core *core = arg;
	struct pollfd pfd[2] = {
		{ .fd = core->unmask_fd, .events = POLLIN },
		{ .fd = core->unmask_stop, .events = POLLIN },
	};

	for (;;) {
		/* The user's eventfd and ours. */
		if (poll(pfd, 2, -1) < 0)
			continue; /* EINTR */
		if (pfd[1].revents)
			return NULL;
		if (!(pfd[0].revents & POLLIN) || vfio_efd_consume(core->unmask_fd))
			continue;
		uiommu_mutex_lock(&core->irq_lock);
		vfio_pci_intx_unmask_locked(core);
		uiommu_mutex_unlock(&core->irq_lock);
	}
}

int vfio_watcher_start(int *kick, pthread_t *thread, void *(*fn)(void *), void *arg)
{
	int rc;

	*kick = uiommu_should_fail() ? (errno = EMFILE, -1) : eventfd(0, EFD_CLOEXEC);
	if (*kick < 0)
		return -errno;
	uiommu_fd_keep(*kick);
	rc = uiommu_should_fail() ? EAGAIN : uiommu_thread_create(thread, NULL, fn, arg);
	if (rc) {
		sys_close(*kick);
		*kick = -1;
		return -rc;
	}
	return 0;
}

/* Removes the unmask irqfd, if any: when it returns, no unmask of it runs. core->lock. */
static void vfio_pci_unmask_stop(struct vfio_pci_core *core)
{
	lockdep_assert_held(&core->lock);
	if (!core->unmask_running)
		return;
	sys_write(core->unmask_stop, &(eventfd_t){ 1 }, sizeof(eventfd_t));
	/* The watcher takes only irq_lock, never core->lock: joining it here cannot deadlock. */
	pthread_join(core->unmask_thread, NULL);
	core->unmask_running = false;
	vfio_efd_put(core->unmask_fd);
	sys_close(core->unmask_stop);
	core->unmask_fd = core->unmask_stop = -1;
}

/* Installs @fd as the unmask irqfd: -EBADF, -EINVAL (not an eventfd), -EBUSY (one is set). */
static int vfio_pci_unmask_start(struct vfio_pci_core *core, int fd)
{
	int efd, rc;

	lockdep_assert_held(&core->lock);
	efd = vfio_efd_get(fd);
	if (efd < 0)
		return efd;
	if (core->unmask_running) {
		rc = -EBUSY;
		goto err_put;
	}
	core->unmask_fd = efd;
	rc = vfio_watcher_start(&core->unmask_stop, &core->unmask_thread, vfio_pci_unmask_watch,
				core);
	if (rc) {
		core->unmask_fd = -1;
		goto err_put;
	}
	core->unmask_running = true;
	return 0;

err_put:
	vfio_efd_put(efd);
	return rc;
}

/* Drops the eventfds of the active mode and disables the function's interrupts. core->lock. */
static void vfio_pci_irq_disable(struct vfio_pci_core *core)
{
	int *trig;
	unsigned int n;
	int intx;

	if (core->irq_type == VFIO_PCI_NUM_IRQS)
		return;
	vfio_pci_unmask_stop(core); /* as the kernel's INTx disable drops its unmask virqfd */
	pci_fn_irq_disable(core->fn);
	uiommu_mutex_lock(&core->irq_lock);
	trig = core->trig;
	n = core->ntrig;
	intx = core->intx_trig;
	core->trig = NULL;
	core->ntrig = 0;
	core->intx_trig = -1;
	core->irq_type = VFIO_PCI_NUM_IRQS;
	uiommu_mutex_unlock(&core->irq_lock);
	for (unsigned int i = 0; trig && i < n; i++)
		vfio_efd_put(trig[i]);
	uiommu_free(trig);
	vfio_efd_put(intx);
	core->num_ctx = 0;
}

/* ---- reset ---------------------------------------------------------------------------------------- */

/*
 * The reset itself, as the PCI core does one for vfio-pci: the header and the PCIe Device
 * Control saved, the FLR, both restored, the interrupt mode programmed again. core->lock.
 */
static int vfio_pci_function_reset_saved(struct vfio_pci_core *core)
{
	uint8_t hdr[0x40];                 /* the type 0 header */
	uint32_t devctl = 0;
	int rc;

	rc = pci_fn_config_read(core->fn, 0, hdr, sizeof(hdr));
	if (rc)
		return rc;
	if (core->pcie_cap)
		pci_fn_config_read_reg(core->fn, core->pcie_cap + 8, 2, &devctl);
	rc = pci_fn_reset(core->fn);
	if (rc)
		return rc;
	/* Restore: BARs, ROM BAR, interrupt line, Device Control, then Command last. */
	pci_fn_config_write(core->fn, PCI_CFG_BAR0, hdr + PCI_CFG_BAR0, 24);
	pci_fn_config_write(core->fn, PCI_CFG_ROM, hdr + PCI_CFG_ROM, 4);
	pci_fn_config_write(core->fn, PCI_CFG_INT_LINE, hdr + PCI_CFG_INT_LINE, 1);
	if (core->pcie_cap)
		pci_fn_config_write_reg(core->fn, core->pcie_cap + 8, 2, devctl & 0x7fff);
	core->power_state = 0;
	switch (core->irq_type) {
	case VFIO_PCI_INTX:
		pci_fn_irq_enable(core->fn, PCI_IRQ_INTX, 1);
		break;
	case VFIO_PCI_MSI:
		pci_fn_irq_enable(core->fn, PCI_IRQ_MSI, core->num_ctx);
		break;
	case VFIO_PCI_MSIX:
		pci_fn_irq_enable(core->fn, PCI_IRQ_MSIX, core->num_ctx);
		break;
	default:
		break;
	}
	return pci_fn_config_write_reg(core->fn, PCI_CFG_COMMAND, 2,
				       (uint32_t)hdr[PCI_CFG_COMMAND] | hdr[PCI_CFG_COMMAND + 1] << 8);
}

/*
 * A function reset with the BAR mappings revoked from before it starts until its state is
 * back (vfio_pci_zap.c): no access through them sees the function half reset. They come back
 * when memory decode is on afterwards: the virtual Command is the user's, kept across the
 * reset, and the reset leaves the function in D0. core->lock.
 */
int vfio_pci_function_reset(struct vfio_pci_core *core)
{
	int rc;

	lockdep_assert_held(&core->lock);
	vfio_pci_maps_revoke(core);
	rc = vfio_pci_function_reset_saved(core);
	vfio_pci_maps_update(core);
	return rc;
}

/* ---- DMA logging: the DMA engine's hook ---------------------------------------------------- */

static void vfio_pci_log_write(void *priv, uint32_t pasid, uint64_t iova, uint64_t len)
{
	struct vfio_pci_core *core = priv;
	uint64_t last;

	if (pasid != IOMMU_NO_PASID || !len)
		return; /* device logging tracks the RID's IOVA space */
	last = iova + len - 1;
	if (last < iova)
		last = UINT64_MAX;
	uiommu_mutex_lock(&core->log_lock);
	for (unsigned int r = 0; core->logging && r < core->nr_ranges; r++) {
		struct vfio_pci_dirty_range *d = &core->ranges[r];
		uint64_t s, e;

		if (last < d->iova || iova > d->iova + d->length - 1)
			continue;
		s = (iova > d->iova ? iova : d->iova) - d->iova;
		e = (last < d->iova + d->length - 1 ? last : d->iova + d->length - 1) - d->iova;
		for (uint64_t g = s / core->log_granule; g <= e / core->log_granule; g++)
			d->bits[g / 64] |= 1ull << (g % 64);
	}
	uiommu_mutex_unlock(&core->log_lock);
}

/* Stops logging and frees the log. core->lock held. */
static void vfio_pci_log_stop(struct vfio_pci_core *core)
{
	struct vfio_pci_dirty_range *ranges;
	unsigned int n;

	if (!core->logging)
		return;
	dma_engine_write_log_clear(core->dev);
	uiommu_mutex_lock(&core->log_lock);
	ranges = core->ranges;
	n = core->nr_ranges;
	core->ranges = NULL;
	core->nr_ranges = 0;
	core->logging = false;
	uiommu_mutex_unlock(&core->log_lock);
	for (unsigned int i = 0; i < n; i++)
		uiommu_free(ranges[i].bits);
	uiommu_free(ranges);
}

/* ---- open and close ------------------------------------------------------------------------------ */

static void vfio_pci_core_free(struct vfio_pci_core *core)
{
	uiommu_mutex_destroy(&core->lock);
	uiommu_mutex_destroy(&core->irq_lock);
	uiommu_mutex_destroy(&core->log_lock);
	uiommu_mutex_destroy(&core->ioev_lock);
	uiommu_cond_destroy(&core->ioev_cond);
	pci_fn_put(core->fn);
	device_put(core->dev);
	uiommu_free(core);
}

/* vfio-pci's first open. */
static int vfio_pci_core_enable(struct vfio_pci_core *core)
{
	const void *rom;                   /* read through the function (vfio_pci_rom_read()) */
	uint32_t cmd;
	int rc;

	for (unsigned int i = 0; i < 6; i++) {
		rc = pci_fn_bar_info(core->fn, i, &core->bar_info[i]);
		if (rc)
			return rc;
		core->bar_size[i] = core->bar_info[i].size;
		core->bar_flags[i] = core->bar_info[i].flags;
	}
	core->bar_size[VFIO_PCI_ROM] = pci_fn_rom(core->fn, &rom, &core->rom_len);
	/* Bus Master off, then a reset whose success says whether resets work. */
	rc = pci_fn_config_read_reg(core->fn, PCI_CFG_COMMAND, 2, &cmd);
	if (rc)
		return rc;
	rc = pci_fn_config_write_reg(core->fn, PCI_CFG_COMMAND, 2, cmd & ~(uint32_t)PCI_CMD_MASTER);
	if (rc)
		return rc;
	core->reset_works = !pci_fn_reset(core->fn);
	/* pci_enable_device(): decode for the BARs the function has. */
	cmd = 0;
	for (unsigned int i = 0; i < 6; i++)
		if (core->bar_size[i])
			cmd |= core->bar_flags[i] & UIOMMU_PCI_BAR_IO ? PCI_CMD_IO : PCI_CMD_MEMORY;
	rc = pci_fn_config_write_reg(core->fn, PCI_CFG_COMMAND, 2, cmd);
	if (rc)
		return rc;
	core->power_state = 0;
	core->irq_type = VFIO_PCI_NUM_IRQS;
	core->intx_trig = core->err_trig = core->req_trig = -1;
	core->unmask_fd = core->unmask_stop = -1;
	rc = vfio_config_init(core);
	if (rc)
		return rc;
	core->maps_live = vfio_pci_memory_enabled(core);
	return pci_fn_irq_register(core->fn, &vfio_pci_irq_ops, core);
}

/* vfio-pci's last close. core->lock held. */
static void vfio_pci_core_disable(struct vfio_pci_core *core)
{
	vfio_pci_maps_forget(core);
	vfio_pci_log_stop(core);
	vfio_pci_irq_disable(core);
	pci_fn_irq_unregister(core->fn);
	vfio_efd_put(core->err_trig);
	vfio_efd_put(core->req_trig);
	core->err_trig = core->req_trig = -1;
	/* Command = DisINTx only (Bus Master off: DMA fenced), then a reset. */
	pci_fn_config_write_reg(core->fn, PCI_CFG_COMMAND, 2, PCI_CMD_INTX_DISABLE);
	if (core->reset_works)
		pci_fn_reset(core->fn);
}

struct vfio_pci_core *vfio_pci_core_open(struct device *dev, struct iommufd_ctx *ictx,
					 uint32_t devid)
{
	struct vfio_pci_core *core;
	int rc;

	uiommu_mutex_lock(&vfio_pci_lock);
	LIST_FOREACH(core, &vfio_pci_cores, node) {
		if (core->dev == dev) {
			core->open_count++;
			uiommu_mutex_unlock(&vfio_pci_lock);
			return core;
		}
	}
	core = uiommu_zalloc(sizeof(*core));
	if (!core) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	core->fn = pci_fn_get(dev);
	if (!core->fn || !pci_fn_alive(core->fn)) {
		rc = -ENODEV;
		goto err_free;
	}
	device_get(dev);
	core->dev = dev;
	core->ictx = ictx;
	core->devid = devid;
	uiommu_mutex_init(&core->lock);
	uiommu_mutex_init(&core->irq_lock);
	uiommu_mutex_init(&core->log_lock);
	vfio_pci_ioeventfd_init(core);
	uiommu_mutex_lock(&core->lock);
	rc = vfio_pci_core_enable(core);
	uiommu_mutex_unlock(&core->lock);
	if (rc)
		goto err_core;
	core->open_count = 1;
	LIST_INSERT_HEAD(&vfio_pci_cores, core, node);
	uiommu_mutex_unlock(&vfio_pci_lock);
	return core;

err_core:
	vfio_pci_core_free(core);
	uiommu_mutex_unlock(&vfio_pci_lock);
	return ERR_PTR(rc);
err_free:
	if (core->fn)
		pci_fn_put(core->fn);
	uiommu_free(core);
out_unlock:
	uiommu_mutex_unlock(&vfio_pci_lock);
	return ERR_PTR(rc);
}

void vfio_pci_core_close(struct vfio_pci_core *core)
{
	uiommu_mutex_lock(&vfio_pci_lock);
	if (--core->open_count) {
		uiommu_mutex_unlock(&vfio_pci_lock);
		return;
	}
	LIST_REMOVE(core, node);
	/* Before core->lock: the ioeventfd watcher's writes take it. */
	vfio_pci_ioeventfd_release(core);
	uiommu_mutex_lock(&core->lock);
	vfio_pci_core_disable(core);
	uiommu_mutex_unlock(&core->lock);
	uiommu_mutex_unlock(&vfio_pci_lock);
	vfio_pci_core_free(core);
}

bool vfio_device_is_open(struct device *dev)
{
	struct vfio_pci_core *core;
	bool open = false;

	uiommu_mutex_lock(&vfio_pci_lock);
	LIST_FOREACH(core, &vfio_pci_cores, node)
		open |= core->dev == dev;
	uiommu_mutex_unlock(&vfio_pci_lock);
	return open;
}

/* ---- GET_INFO, GET_REGION_INFO, GET_IRQ_INFO ---------------------------------------------------- */

static int vfio_pci_get_info(struct vfio_pci_core *core, struct uiommu_mm *mm, uint64_t arg)
{
	size_t minsz = minsz_of(struct vfio_info, num_irqs);
	struct vfio_info info = {};
	int rc;

	rc = uiommu_copy_from_user(mm, &info, arg, minsz);
	if (rc)
		return rc;
	if (info.argsz < minsz)
		return -EINVAL;
	if (info.argsz < sizeof(info))
		minsz = info.argsz;
	else
		minsz = sizeof(info);
	/* No device capabilities: an emulated function offers no AtomicOp completion. */
	info.flags = INFO_FLAG_PCI | (core->reset_works ? INFO_FLAG_RESET : 0);
	info.num_regions = VFIO_PCI_NUM_REGIONS;
	info.num_irqs = VFIO_PCI_NUM_IRQS;
	info.cap_offset = 0;
	info.pad = 0;
	return uiommu_copy_to_user(mm, arg, &info, minsz);
}

/* The sparse mmap capability of a BAR with shared-memory areas: its size, 0 if none. */
static size_t vfio_pci_sparse_cap(struct vfio_pci_core *core, unsigned int bar, uint8_t *buf)
{
	const struct pci_fn_bar_info *bi = &core->bar_info[bar];
	size_t size = 16 + 16 * (size_t)bi->nr_areas;

	if (!bi->nr_areas || (bi->flags & UIOMMU_PCI_BAR_IO))
		return 0;
	if (buf) {
		uint16_t id = REGION_CAP_SPARSE_MMAP, ver = 1;
		uint32_t nr = bi->nr_areas;

		memset(buf, 0, size);
		memcpy(buf, &id, 2);
		memcpy(buf + 2, &ver, 2);
		memcpy(buf + 8, &nr, 4);
		for (unsigned int i = 0; i < bi->nr_areas; i++) {
			memcpy(buf + 16 + 16 * i, &bi->areas[i].offset, 8);
			memcpy(buf + 24 + 16 * i, &bi->areas[i].size, 8);
		}
	}
	return size;
}

static int vfio_pci_get_region_info(struct vfio_pci_core *core, struct uiommu_mm *mm,
				    uint64_t arg)
{
	const size_t minsz = sizeof(struct vfio_region_info);
	uint8_t cap[16 + 16 * UIOMMU_PCI_MAX_AREAS];
	struct vfio_region_info info;
	size_t cap_size = 0;
	int rc;

	rc = uiommu_copy_from_user(mm, &info, arg, minsz);
	if (rc)
		return rc;
	if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	info.offset = (uint64_t)info.index << VFIO_PCI_OFFSET_SHIFT;
	switch (info.index) {
	case VFIO_PCI_CONFIG:
		info.size = core->cfg_size;
		info.flags = REGION_READ | REGION_WRITE;
		break;
	case VFIO_PCI_ROM:
		/* The BAR's size, read-only; 0 and no flags for a function without a ROM. */
		info.size = core->bar_size[VFIO_PCI_ROM];
		info.flags = info.size ? REGION_READ : 0;
		break;
	case VFIO_PCI_VGA:
		return -EINVAL; /* not a VGA function */
	default:
		info.size = core->bar_size[info.index];
		info.flags = info.size ? REGION_READ | REGION_WRITE : 0;
		cap_size = info.size ? vfio_pci_sparse_cap(core, info.index, cap) : 0;
		if (cap_size)
			info.flags |= REGION_MMAP;
		break;
	}
	if (cap_size) {
		info.flags |= REGION_CAPS;
		if (info.argsz < minsz + cap_size) {
			info.argsz = (uint32_t)(minsz + cap_size);
			info.cap_offset = 0;
		} else {
			rc = uiommu_copy_to_user(mm, arg + minsz, cap, cap_size);
			if (rc)
				return rc;
			info.cap_offset = (uint32_t)minsz;
		}
	}
	return uiommu_copy_to_user(mm, arg, &info, minsz);
}

/* The number of interrupts of @index: the kernel's vfio_pci_get_irq_count(). core->lock. */
static unsigned int vfio_pci_irq_count(struct vfio_pci_core *core, unsigned int index)
{
	uint32_t flags = 0;

	switch (index) {
	case VFIO_PCI_INTX:
		return core->vconfig[PCI_CFG_INT_PIN] ? 1 : 0;
	case VFIO_PCI_MSI:
		if (!core->msi_cap || pci_fn_config_read_reg(core->fn, core->msi_cap + 2, 2, &flags))
			return 0;
		return 1u << ((flags & 0x0e) >> 1);
	case VFIO_PCI_MSIX:
		if (!core->msix_cap || pci_fn_config_read_reg(core->fn, core->msix_cap + 2, 2, &flags))
			return 0;
		return (flags & 0x7ff) + 1;
	case VFIO_PCI_ERR:
		return core->pcie_cap ? 1 : 0;
	case VFIO_PCI_REQ:
		return 1;
	default:
		return 0;
	}
}

static int vfio_pci_get_irq_info(struct vfio_pci_core *core, struct uiommu_mm *mm, uint64_t arg)
{
	const size_t minsz = sizeof(struct vfio_irq_info);
	struct vfio_irq_info info;
	int rc;

	rc = uiommu_copy_from_user(mm, &info, arg, minsz);
	if (rc)
		return rc;
	if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS)
		return -EINVAL;
	if (info.index == VFIO_PCI_ERR && !core->pcie_cap)
		return -EINVAL;
	info.flags = IRQ_EVENTFD;
	info.count = vfio_pci_irq_count(core, info.index);
	if (info.index == VFIO_PCI_INTX)
		info.flags |= IRQ_MASKABLE | IRQ_AUTOMASKED;
	else
		info.flags |= IRQ_NORESIZE; /* no dynamic MSI-X */
	return uiommu_copy_to_user(mm, arg, &info, minsz);
}

/* ---- SET_IRQS ----------------------------------------------------------------------------------- */

static bool irq_is(struct vfio_pci_core *core, unsigned int index)
{
	return core->irq_type == index;
}

static bool irq_none(struct vfio_pci_core *core)
{
	return core->irq_type == VFIO_PCI_NUM_IRQS;
}

static int vfio_intx_mask(struct vfio_pci_core *core, const struct vfio_irq_set *hdr,
			  const void *data, bool mask)
{
	int32_t fd;

	if (!irq_is(core, VFIO_PCI_INTX) || hdr->start || hdr->count != 1)
		return -EINVAL;
	if (hdr->flags & SET_DATA_EVENTFD) {
		if (mask)
			return -ENOTTY;
		/* The unmask irqfd (KVM's resampler): fd >= 0 installs it, -1 removes it. */
		memcpy(&fd, data, sizeof(fd));
		if (fd >= 0)
			return vfio_pci_unmask_start(core, fd);
		vfio_pci_unmask_stop(core);
		return 0;
	}
	if ((hdr->flags & SET_DATA_BOOL) && !*(const uint8_t *)data)
		return 0;
	uiommu_mutex_lock(&core->irq_lock);
	if (mask)
		core->intx_masked = true;
	else
		vfio_pci_intx_unmask_locked(core);
	uiommu_mutex_unlock(&core->irq_lock);
	return 0;
}

static int vfio_intx_trigger(struct vfio_pci_core *core, const struct vfio_irq_set *hdr,
			     const void *data)
{
	int32_t fd;
	int efd = -1, old, rc;

	if (irq_is(core, VFIO_PCI_INTX) && !hdr->count && (hdr->flags & SET_DATA_NONE)) {
		vfio_pci_irq_disable(core);
		return 0;
	}
	if (!(irq_is(core, VFIO_PCI_INTX) || irq_none(core)) || hdr->start || hdr->count != 1)
		return -EINVAL;
	if (hdr->flags & SET_DATA_EVENTFD) {
		memcpy(&fd, data, sizeof(fd));
		if (fd >= 0) {
			efd = vfio_efd_get(fd);
			if (efd < 0)
				return efd;
		}
		if (irq_none(core)) {
			rc = pci_fn_irq_enable(core->fn, PCI_IRQ_INTX, 1);
			if (rc) {
				vfio_efd_put(efd);
				return rc;
			}
		}
		uiommu_mutex_lock(&core->irq_lock);
		old = core->intx_trig;
		core->intx_trig = efd;
		if (irq_none(core)) {
			core->intx_masked = false;
			core->irq_type = VFIO_PCI_INTX;
			core->num_ctx = 1;
			vfio_pci_intx_recheck(core);
		}
		uiommu_mutex_unlock(&core->irq_lock);
		vfio_efd_put(old);
		return 0;
	}
	if (!irq_is(core, VFIO_PCI_INTX))
		return -EINVAL;
	if ((hdr->flags & SET_DATA_NONE) || *(const uint8_t *)data) {
		uiommu_mutex_lock(&core->irq_lock);
		if (!core->intx_vdisabled)
			efd_signal(core->intx_trig);
		uiommu_mutex_unlock(&core->irq_lock);
	}
	return 0;
}

/* Binds @fds to vectors [start, start + count) of the active MSI/MSI-X mode; undone on error. */
static int vfio_msi_set_block(struct vfio_pci_core *core, unsigned int start, unsigned int count,
			      const int32_t *fds)
{
	unsigned int i;
	int rc = 0;

	for (i = 0; i < count; i++) {
		unsigned int v = start + i;
		int efd = -1, old;

		if (v >= core->ntrig) {
			rc = -EINVAL; /* past the enabled vectors, and no dynamic MSI-X */
			break;
		}
		if (fds[i] >= 0) {
			efd = vfio_efd_get(fds[i]);
			if (efd < 0) {
				rc = efd;
				break;
			}
		}
		uiommu_mutex_lock(&core->irq_lock);
		old = core->trig[v];
		core->trig[v] = efd;
		uiommu_mutex_unlock(&core->irq_lock);
		vfio_efd_put(old);
	}
	if (rc) {
		for (unsigned int j = start; j < start + i; j++) {
			int old;

			uiommu_mutex_lock(&core->irq_lock);
			old = core->trig[j];
			core->trig[j] = -1;
			uiommu_mutex_unlock(&core->irq_lock);
			vfio_efd_put(old);
		}
	}
	return rc;
}

static int vfio_msi_enable(struct vfio_pci_core *core, unsigned int index, unsigned int nvec)
{
	enum pci_irq_type type = index == VFIO_PCI_MSIX ? PCI_IRQ_MSIX : PCI_IRQ_MSI;
	int *trig;
	int rc;

	trig = uiommu_calloc(nvec, sizeof(*trig));
	if (!trig)
		return -ENOMEM;
	for (unsigned int i = 0; i < nvec; i++)
		trig[i] = -1;
	rc = pci_fn_irq_enable(core->fn, type, nvec);
	if (rc) {
		uiommu_free(trig);
		return rc;
	}
	uiommu_mutex_lock(&core->irq_lock);
	core->trig = trig;
	core->ntrig = nvec;
	core->irq_type = index;
	uiommu_mutex_unlock(&core->irq_lock);
	core->num_ctx = nvec;
	if (index == VFIO_PCI_MSI) {
		unsigned int q = 0;

		while ((1u << q) < nvec)
			q++;
		core->msi_qmax = q;
	}
	return 0;
}

static int vfio_msi_trigger(struct vfio_pci_core *core, const struct vfio_irq_set *hdr,
			    const void *data)
{
	int rc;

	if (irq_is(core, hdr->index) && !hdr->count && (hdr->flags & SET_DATA_NONE)) {
		vfio_pci_irq_disable(core);
		return 0;
	}
	if (!(irq_is(core, hdr->index) || irq_none(core)))
		return -EINVAL;
	if (hdr->flags & SET_DATA_EVENTFD) {
		if (irq_is(core, hdr->index))
			return vfio_msi_set_block(core, hdr->start, hdr->count, data);
		rc = vfio_msi_enable(core, hdr->index, hdr->start + hdr->count);
		if (rc)
			return rc;
		rc = vfio_msi_set_block(core, hdr->start, hdr->count, data);
		if (rc)
			vfio_pci_irq_disable(core);
		return rc;
	}
	if (!irq_is(core, hdr->index))
		return -EINVAL;
	uiommu_mutex_lock(&core->irq_lock);
	for (unsigned int i = hdr->start; i < hdr->start + hdr->count && i < core->ntrig; i++) {
		if ((hdr->flags & SET_DATA_NONE) || ((const uint8_t *)data)[i - hdr->start])
			efd_signal(core->trig[i]);
	}
	uiommu_mutex_unlock(&core->irq_lock);
	return 0;
}

/* ERR and REQ: one eventfd each, the kernel's vfio_pci_set_ctx_trigger_single(). */
static int vfio_ctx_trigger(struct vfio_pci_core *core, const struct vfio_irq_set *hdr,
			    const void *data, int *ctx)
{
	int32_t fd;
	int efd;

	if (hdr->flags & SET_DATA_NONE) {
		if (*ctx < 0)
			return -EINVAL;
		if (hdr->count) {
			efd_signal(*ctx);
		} else {
			vfio_efd_put(*ctx);
			*ctx = -1;
		}
		return 0;
	}
	if (!hdr->count)
		return -EINVAL;
	if (hdr->flags & SET_DATA_BOOL) {
		if (*(const uint8_t *)data && *ctx >= 0)
			efd_signal(*ctx);
		return 0;
	}
	memcpy(&fd, data, sizeof(fd));
	if (fd == -1) {
		vfio_efd_put(*ctx);
		*ctx = -1;
		return 0;
	}
	if (fd < 0)
		return -EINVAL;
	efd = vfio_efd_get(fd);
	if (efd < 0)
		return efd;
	vfio_efd_put(*ctx);
	*ctx = efd;
	return 0;
}

static int vfio_pci_set_irqs(struct vfio_pci_core *core, struct uiommu_mm *mm, uint64_t arg)
{
	const size_t minsz = sizeof(struct vfio_irq_set);
	unsigned int max, action;
	struct vfio_irq_set hdr;
	size_t size = 0;
	void *data = NULL;
	uint8_t none = 1;
	int rc;

	rc = uiommu_copy_from_user(mm, &hdr, arg, minsz);
	if (rc)
		return rc;
	if (hdr.argsz < minsz || hdr.index >= VFIO_PCI_NUM_IRQS ||
	    hdr.count >= UINT32_MAX - hdr.start || (hdr.flags & ~(SET_DATA_MASK | SET_ACTION_ALL)))
		return -EINVAL;
	max = vfio_pci_irq_count(core, hdr.index);
	if (hdr.start >= max || hdr.start + hdr.count > max)
		return -EINVAL;
	switch (hdr.flags & SET_DATA_MASK) {
	case SET_DATA_NONE:
		size = 0;
		break;
	case SET_DATA_BOOL:
		size = 1;
		break;
	case SET_DATA_EVENTFD:
		size = 4;
		break;
	default:
		return -EINVAL;
	}
	if (size) {
		if (hdr.argsz - minsz < (uint64_t)hdr.count * size)
			return -EINVAL;
		data = uiommu_zalloc(hdr.count * size + 1);
		if (!data)
			return -ENOMEM;
		rc = uiommu_copy_from_user(mm, data, arg + minsz, hdr.count * size);
		if (rc)
			goto out_free;
	}
	action = hdr.flags & SET_ACTION_ALL;
	rc = -ENOTTY;
	switch (hdr.index) {
	case VFIO_PCI_INTX:
		if (action == SET_ACTION_MASK || action == SET_ACTION_UNMASK)
			rc = vfio_intx_mask(core, &hdr, data ? data : &none,
					    action == SET_ACTION_MASK);
		else if (action == SET_ACTION_TRIGGER)
			rc = vfio_intx_trigger(core, &hdr, data ? data : &none);
		break;
	case VFIO_PCI_MSI:
	case VFIO_PCI_MSIX:
		if (action == SET_ACTION_TRIGGER)
			rc = vfio_msi_trigger(core, &hdr, data ? data : &none);
		break;
	case VFIO_PCI_ERR:
	case VFIO_PCI_REQ:
		if (action == SET_ACTION_TRIGGER)
			rc = vfio_ctx_trigger(core, &hdr, data ? data : &none,
					      hdr.index == VFIO_PCI_ERR ? &core->err_trig :
									  &core->req_trig);
		break;
	}
out_free:
	uiommu_free(data);
	return rc;
}

/* ---- hot reset ---------------------------------------------------------------------------------- */

/* A function of the reset set (every function on the caller's bus, present now). */
struct hot_reset_fn {
	struct device *dev;
	bool vfio;            /* handed to vfio-pci (not the DMA-API driver's) */
	uint16_t segment;
	uint8_t bus, devfn;
};

struct hot_reset_set {
	unsigned int seg, bus;
	unsigned int n, cap;
	struct hot_reset_fn *fns;
	int err;
};

static int bdf_parse(const char *bdf, unsigned int *seg, unsigned int *bus, unsigned int *devfn)
{
	unsigned int d, f;

	if (sscanf(bdf, "%x:%x:%x.%x", seg, bus, &d, &f) != 4)
		return -EINVAL;
	*devfn = (d << 3) | (f & 7);
	return 0;
}

static int hot_reset_collect(const struct topology_device_info *info, void *arg)
{
	struct hot_reset_set *set = arg;
	unsigned int seg, bus, devfn;

	if (!info->present || bdf_parse(info->bdf, &seg, &bus, &devfn) || seg != set->seg ||
	    bus != set->bus)
		return 0;
	if (set->n == set->cap) {
		set->err = -ENOMEM;
		return 1;
	}
	device_get(info->dev);
	set->fns[set->n++] = (struct hot_reset_fn){
		.dev = info->dev,
		.vfio = info->vfio,
		.segment = (uint16_t)seg, .bus = (uint8_t)bus, .devfn = (uint8_t)devfn,
	};
	return 0;
}

static void hot_reset_set_free(struct hot_reset_set *set)
{
	for (unsigned int i = 0; i < set->n; i++)
		device_put(set->fns[i].dev);
	uiommu_free(set->fns);
}

static int hot_reset_set_get(struct vfio_pci_core *core, struct hot_reset_set *set)
{
	unsigned int devfn;
	int rc;

	memset(set, 0, sizeof(*set));
	rc = bdf_parse(core->dev->name, &set->seg, &set->bus, &devfn);
	if (rc)
		return -ENODEV;
	set->cap = topology_nr_devices();
	set->fns = uiommu_calloc(set->cap ? set->cap : 1, sizeof(*set->fns));
	if (!set->fns)
		return -ENOMEM;
	topology_for_each_device(hot_reset_collect, set);
	if (set->err) {
		hot_reset_set_free(set);
		return set->err;
	}
	return 0;
}

/* The open core of @dev, or NULL. vfio_pci_lock held. */
static struct vfio_pci_core *core_find(struct device *dev)
{
	struct vfio_pci_core *c;

	LIST_FOREACH(c, &vfio_pci_cores, node)
		if (c->dev == dev)
			return c;
	return NULL;
}

/* Does @ictx have a device of @dev's group open through VFIO (iommufd_ctx_has_group)? */
static bool ictx_has_group(struct iommufd_ctx *ictx, struct device *dev)
{
	struct iommu_group *grp = iommu_group_get(dev);
	struct vfio_pci_core *c;
	bool found = false;

	if (!grp || !ictx)
		goto out;
	LIST_FOREACH(c, &vfio_pci_cores, node) {
		struct iommu_group *g = c->ictx == ictx ? iommu_group_get(c->dev) : NULL;

		found |= g == grp;
		if (g)
			iommu_group_put(g);
	}
out:
	if (grp)
		iommu_group_put(grp);
	return found;
}

static int vfio_pci_hot_reset_info(struct vfio_pci_core *core,
				   const struct vfio_pci_caller *caller, struct uiommu_mm *mm,
				   uint64_t arg)
{
	const size_t minsz = sizeof(struct vfio_hot_reset_info);
	struct vfio_dependent_device *devs = NULL;
	struct vfio_hot_reset_info hdr;
	struct hot_reset_set set;
	bool owned = true;
	int rc;

	rc = uiommu_copy_from_user(mm, &hdr, arg, minsz);
	if (rc)
		return rc;
	if (hdr.argsz < minsz)
		return -EINVAL;
	hdr.flags = 0;
	rc = hot_reset_set_get(core, &set);
	if (rc)
		return rc;
	if ((hdr.argsz - minsz) / sizeof(*devs) < set.n) {
		hdr.count = set.n;
		rc = -ENOSPC;
		goto out_header;
	}
	devs = uiommu_calloc(set.n ? set.n : 1, sizeof(*devs));
	if (!devs) {
		rc = -ENOMEM;
		goto out_set;
	}
	uiommu_mutex_lock(&vfio_pci_lock);
	for (unsigned int i = 0; i < set.n; i++) {
		struct hot_reset_fn *f = &set.fns[i];

		devs[i].segment = f->segment;
		devs[i].bus = f->bus;
		devs[i].devfn = f->devfn;
		if (caller->mode == VFIO_FILE_GROUP) {
			struct iommu_group *g = iommu_group_get(f->dev);

			if (!g) {
				rc = -EPERM;
				break;
			}
			devs[i].id = (uint32_t)iommu_group_id(g);
			iommu_group_put(g);
		} else {
			struct vfio_pci_core *c = f->vfio ? core_find(f->dev) : NULL;

			if (!f->vfio)
				devs[i].id = DEVID_NOT_OWNED;
			else if (c && c->ictx == caller->ictx && caller->ictx && c->devid)
				devs[i].id = c->devid;
			else if (ictx_has_group(caller->ictx, f->dev))
				devs[i].id = DEVID_OWNED;
			else
				devs[i].id = DEVID_NOT_OWNED;
			owned &= devs[i].id != DEVID_NOT_OWNED;
		}
	}
	uiommu_mutex_unlock(&vfio_pci_lock);
	if (rc)
		goto out_free;
	if (caller->mode == VFIO_FILE_CDEV)
		hdr.flags = HOT_RESET_DEV_ID | (owned ? HOT_RESET_DEV_ID_OWNED : 0);
	hdr.count = set.n;
	rc = uiommu_copy_to_user(mm, arg + minsz, devs, set.n * sizeof(*devs));
out_free:
	uiommu_free(devs);
out_header:
	if (!rc || rc == -ENOSPC) {
		int r = uiommu_copy_to_user(mm, arg, &hdr, minsz);

		if (r)
			rc = r;
	}
out_set:
	hot_reset_set_free(&set);
	return rc;
}

static int vfio_pci_hot_reset(struct vfio_pci_core *core, const struct vfio_pci_caller *caller,
			      struct uiommu_mm *mm, uint64_t arg)
{
	const size_t minsz = sizeof(struct vfio_hot_reset);
	struct iommu_group **groups = NULL;
	struct vfio_hot_reset hdr;
	struct hot_reset_set set;
	unsigned int ngroups = 0;
	int32_t *fds = NULL;
	int rc;

	rc = uiommu_copy_from_user(mm, &hdr, arg, minsz);
	if (rc)
		return rc;
	if (hdr.argsz < minsz || hdr.flags)
		return -EINVAL;
	if ((caller->mode == VFIO_FILE_CDEV) != !hdr.count)
		return -EINVAL;
	rc = hot_reset_set_get(core, &set);
	if (rc)
		return rc;
	if (hdr.count) {
		if (hdr.count > set.n) {
			rc = -EINVAL;
			goto out_set;
		}
		fds = uiommu_calloc(hdr.count, sizeof(*fds));
		groups = uiommu_calloc(hdr.count, sizeof(*groups));
		if (!fds || !groups) {
			rc = -ENOMEM;
			goto out_free;
		}
		rc = uiommu_copy_from_user(mm, fds, arg + minsz, hdr.count * sizeof(*fds));
		if (rc)
			goto out_free;
		for (; ngroups < hdr.count; ngroups++) {
			struct iommu_group *g = caller->group_of_fd ?
							caller->group_of_fd(fds[ngroups]) :
							ERR_PTR(-EINVAL);

			if (IS_ERR(g)) {
				rc = PTR_ERR(g);
				goto out_free;
			}
			groups[ngroups] = g;
		}
	}
	uiommu_mutex_lock(&vfio_pci_lock);
	/* Every function of the bus must be vfio-pci's, and every one owned by the caller. */
	for (unsigned int i = 0; i < set.n && !rc; i++) {
		struct hot_reset_fn *f = &set.fns[i];
		bool owned = false;

		if (!f->vfio) {
			rc = -EINVAL;
			break;
		}
		if (caller->mode == VFIO_FILE_GROUP) {
			struct iommu_group *g = iommu_group_get(f->dev);

			for (unsigned int j = 0; g && j < ngroups; j++)
				owned |= groups[j] == g;
			if (g)
				iommu_group_put(g);
		} else {
			owned = ictx_has_group(caller->ictx, f->dev);
		}
		if (!owned)
			rc = -EINVAL;
	}
	for (unsigned int i = 0; i < set.n && !rc; i++) {
		struct vfio_pci_core *c = core_find(set.fns[i].dev);
		struct uiommu_pci_fn *fn;

		if (c) {
			uiommu_mutex_lock(&c->lock);
			rc = vfio_pci_function_reset(c);
			uiommu_mutex_unlock(&c->lock);
			continue;
		}
		fn = pci_fn_get(set.fns[i].dev);
		if (fn) {
			rc = pci_fn_reset(fn);
			pci_fn_put(fn);
		}
	}
	uiommu_mutex_unlock(&vfio_pci_lock);
out_free:
	for (unsigned int j = 0; j < ngroups; j++)
		iommu_group_put(groups[j]);
	uiommu_free(groups);
	uiommu_free(fds);
out_set:
	hot_reset_set_free(&set);
	return rc;
}

/* ---- DEVICE_FEATURE ------------------------------------------------------------------------------ */

/* The kernel's vfio_check_feature(): 1 to do it, 0 for a PROBE that passed, or -EINVAL. */
static int feature_check(uint32_t flags, size_t argsz, uint32_t ops, size_t minsz)
{
	if ((flags & FEATURE_GET) && !(ops & FEATURE_GET))
		return -EINVAL;
	if ((flags & FEATURE_SET) && !(ops & FEATURE_SET))
		return -EINVAL;
	if (flags & FEATURE_PROBE)
		return 0;
	if (!(flags & (FEATURE_GET | FEATURE_SET)))
		return -EINVAL;
	if (argsz < minsz)
		return -EINVAL;
	return 1;
}

static int range_cmp(const void *a, const void *b)
{
	const struct vfio_log_range *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int vfio_pci_log_start(struct vfio_pci_core *core, struct uiommu_mm *mm, uint32_t flags,
			      uint64_t data, size_t argsz)
{
	struct vfio_pci_dirty_range *ranges = NULL;
	struct vfio_log_range *in = NULL;
	struct vfio_log_control ctl;
	uint64_t granule = 4096;
	unsigned int n = 0;
	int rc;

	rc = feature_check(flags, argsz, FEATURE_SET, sizeof(ctl));
	if (rc != 1)
		return rc;
	rc = uiommu_copy_from_user(mm, &ctl, data, sizeof(ctl));
	if (rc)
		return rc;
	if (!ctl.num_ranges)
		return -EINVAL;
	if (ctl.num_ranges > LOG_MAX_RANGES)
		return -E2BIG;
	in = uiommu_calloc(ctl.num_ranges, sizeof(*in));
	if (!in)
		return -ENOMEM;
	for (unsigned int i = 0; i < ctl.num_ranges; i++) {
		uint64_t end;

		rc = uiommu_copy_from_user(mm, &in[i], ctl.ranges + i * sizeof(*in), sizeof(*in));
		if (rc)
			goto out_free;
		if ((in[i].iova & (ctl.page_size - 1)) || (in[i].length & (ctl.page_size - 1))) {
			rc = -EINVAL;
			goto out_free;
		}
		if (__builtin_add_overflow(in[i].iova, in[i].length, &end)) {
			rc = -EOVERFLOW;
			goto out_free;
		}
	}
	qsort(in, ctl.num_ranges, sizeof(*in), range_cmp);
	for (unsigned int i = 1; i < ctl.num_ranges; i++) {
		/* Ranges are [iova, iova + length - 1]; an empty one overlaps nothing. */
		if (in[i - 1].length && in[i].iova <= in[i - 1].iova + in[i - 1].length - 1 &&
		    in[i].iova >= in[i - 1].iova) {
			rc = -EINVAL;
			goto out_free;
		}
	}
	/* Our granularity: the page size asked for, at least 4 KiB, a power of two. */
	while (granule < ctl.page_size && granule < (1ull << 62))
		granule <<= 1;
	if (core->logging) {
		rc = -EINVAL; /* as mlx5 and pds: one START at a time */
		goto out_free;
	}
	ranges = uiommu_calloc(ctl.num_ranges, sizeof(*ranges));
	if (!ranges) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (n = 0; n < ctl.num_ranges; n++) {
		uint64_t s = in[n].iova & ~(granule - 1);
		uint64_t e = in[n].length ? in[n].iova + in[n].length - 1 : in[n].iova;
		uint64_t bits = ((e | (granule - 1)) - s) / granule + 1;

		if (bits > (1ull << 32)) {
			rc = -E2BIG; /* beyond what we log in memory */
			goto err_ranges;
		}
		ranges[n].iova = s;
		ranges[n].length = bits * granule;
		ranges[n].bits = uiommu_calloc((bits + 63) / 64, sizeof(uint64_t));
		if (!ranges[n].bits) {
			rc = -ENOMEM;
			goto err_ranges;
		}
	}
	uiommu_mutex_lock(&core->log_lock);
	core->ranges = ranges;
	core->nr_ranges = n;
	core->log_granule = granule;
	core->logging = true;
	uiommu_mutex_unlock(&core->log_lock);
	rc = dma_engine_write_log_set(core->dev, vfio_pci_log_write, core);
	if (rc) {
		uiommu_mutex_lock(&core->log_lock);
		core->ranges = NULL;
		core->nr_ranges = 0;
		core->logging = false;
		uiommu_mutex_unlock(&core->log_lock);
		goto err_ranges;
	}
	ctl.page_size = granule;
	rc = uiommu_copy_to_user(mm, data, &ctl, sizeof(ctl));
	if (rc)
		vfio_pci_log_stop(core);
	uiommu_free(in);
	return rc;

err_ranges:
	for (unsigned int i = 0; i < n; i++)
		uiommu_free(ranges[i].bits);
	uiommu_free(ranges);
out_free:
	uiommu_free(in);
	return rc;
}

/* Sets bit (page - iova) / pgsize in @bm for each dirty granule in [iova, iova + len). */
static void log_report_collect(struct vfio_pci_core *core, uint64_t iova, uint64_t len,
			       uint64_t pgsize, uint8_t *bm)
{
	uint64_t last = iova + len - 1;

	for (unsigned int r = 0; r < core->nr_ranges; r++) {
		struct vfio_pci_dirty_range *d = &core->ranges[r];
		uint64_t g0, g1;

		if (last < d->iova || iova > d->iova + d->length - 1)
			continue;
		g0 = ((iova > d->iova ? iova : d->iova) - d->iova) / core->log_granule;
		g1 = ((last < d->iova + d->length - 1 ? last : d->iova + d->length - 1) - d->iova) /
		     core->log_granule;
		for (uint64_t g = g0; g <= g1; g++) {
			uint64_t s, e;

			if (!(d->bits[g / 64] & (1ull << (g % 64))))
				continue;
			d->bits[g / 64] &= ~(1ull << (g % 64)); /* read and clear */
			s = d->iova + g * core->log_granule;
			e = s + core->log_granule - 1;
			if (s < iova)
				s = iova;
			if (e > last)
				e = last;
			for (uint64_t b = (s - iova) / pgsize; b <= (e - iova) / pgsize; b++)
				bm[b / 8] |= (uint8_t)(1u << (b % 8));
		}
	}
}

static int vfio_pci_log_report(struct vfio_pci_core *core, struct uiommu_mm *mm, uint32_t flags,
			       uint64_t data, size_t argsz)
{
	struct vfio_log_report rep;
	uint64_t end, nbytes;
	uint8_t *bm;
	int rc;

	rc = feature_check(flags, argsz, FEATURE_GET, sizeof(rep));
	if (rc != 1)
		return rc;
	rc = uiommu_copy_from_user(mm, &rep, data, sizeof(rep));
	if (rc)
		return rc;
	if (rep.page_size < 4096 || (rep.page_size & (rep.page_size - 1)))
		return -EINVAL;
	if (__builtin_add_overflow(rep.iova, rep.length, &end))
		return -EOVERFLOW;
	if (!rep.length)
		return -EINVAL;
	if (!core->logging)
		return -EINVAL;
	nbytes = ((rep.length - 1) / rep.page_size) / 8 + 1;
	if (nbytes > (256ull << 20))
		return -EINVAL;
	bm = uiommu_zalloc(nbytes);
	if (!bm)
		return -ENOMEM;
	/* Bits are only ever set: merge into what the caller has. */
	rc = uiommu_copy_from_user(mm, bm, rep.bitmap, nbytes);
	if (rc)
		goto out_free;
	uiommu_mutex_lock(&core->log_lock);
	log_report_collect(core, rep.iova, rep.length, rep.page_size, bm);
	uiommu_mutex_unlock(&core->log_lock);
	rc = uiommu_copy_to_user(mm, rep.bitmap, bm, nbytes);
out_free:
	uiommu_free(bm);
	return rc;
}

static int vfio_pci_feature(struct vfio_pci_core *core, struct uiommu_mm *mm, uint64_t arg)
{
	const size_t minsz = sizeof(struct vfio_feature);
	struct vfio_feature f;
	uint64_t data = arg + minsz;
	size_t argsz;
	int32_t wake[2];
	int rc;

	rc = uiommu_copy_from_user(mm, &f, arg, minsz);
	if (rc)
		return rc;
	if (f.argsz < minsz)
		return -EINVAL;
	if (f.flags & ~(FEATURE_MASK | FEATURE_GET | FEATURE_SET | FEATURE_PROBE))
		return -EINVAL;
	if (!(f.flags & FEATURE_PROBE) && (f.flags & FEATURE_SET) && (f.flags & FEATURE_GET))
		return -EINVAL;
	argsz = f.argsz - minsz;
	switch (f.flags & FEATURE_MASK) {
	case FEATURE_LOG_START:
		return vfio_pci_log_start(core, mm, f.flags, data, argsz);
	case FEATURE_LOG_STOP:
		rc = feature_check(f.flags, argsz, FEATURE_SET, 0);
		if (rc != 1)
			return rc;
		vfio_pci_log_stop(core);
		return 0;
	case FEATURE_LOG_REPORT:
		return vfio_pci_log_report(core, mm, f.flags, data, argsz);
	case FEATURE_LOW_POWER_ENTRY:
	case FEATURE_LOW_POWER_EXIT:
		/* Runtime PM has nothing to save on an emulated function: accepted, no effect. */
		return feature_check(f.flags, argsz, FEATURE_SET, 0) < 0 ? -EINVAL : 0;
	case FEATURE_LOW_POWER_ENTRY_WAKEUP:
		rc = feature_check(f.flags, argsz, FEATURE_SET, sizeof(wake));
		if (rc != 1)
			return rc;
		rc = uiommu_copy_from_user(mm, wake, data, sizeof(wake));
		if (rc)
			return rc;
		return wake[0] < 0 ? -EINVAL : 0;
	case FEATURE_MIG_PRECOPY_INFOV2:
		return -EINVAL; /* no PRE_COPY migration: refused before any other check */
	default:
		/* PCI_VF_TOKEN (not an SR-IOV PF), migration, BUS_MASTER, DMA_BUF. */
		return -ENOTTY;
	}
}

/* ---- the ioctl ------------------------------------------------------------------------------------- */

int vfio_pci_ioctl(struct vfio_pci_core *core, const struct vfio_pci_caller *caller,
		   struct uiommu_mm *mm, unsigned int cmd, uint64_t arg)
{
	int rc;

	switch (cmd) {
	case VFIO_CMD_HOT_RESET_INFO:
		return vfio_pci_hot_reset_info(core, caller, mm, arg);
	case VFIO_CMD_HOT_RESET:
		return vfio_pci_hot_reset(core, caller, mm, arg);
	case VFIO_CMD_IOEVENTFD:
		return vfio_pci_ioeventfd_ioctl(core, mm, arg); /* its writes take core->lock */
	default:
		break;
	}
	uiommu_mutex_lock(&core->lock);
	switch (cmd) {
	case VFIO_CMD_GET_INFO:
		rc = vfio_pci_get_info(core, mm, arg);
		break;
	case VFIO_CMD_GET_REGION_INFO:
		rc = vfio_pci_get_region_info(core, mm, arg);
		break;
	case VFIO_CMD_GET_IRQ_INFO:
		rc = vfio_pci_get_irq_info(core, mm, arg);
		break;
	case VFIO_CMD_SET_IRQS:
		rc = vfio_pci_set_irqs(core, mm, arg);
		break;
	case VFIO_CMD_RESET:
		rc = core->reset_works ? vfio_pci_function_reset(core) : -EINVAL;
		break;
	case VFIO_CMD_FEATURE:
		rc = vfio_pci_feature(core, mm, arg);
		break;
	default:
		rc = -ENOTTY;
		break;
	}
	uiommu_mutex_unlock(&core->lock);
	return rc;
}

/* ---- read, write, mmap ----------------------------------------------------------------------------- */

static bool in_msix_table(const struct pci_fn_bar_info *bi, uint64_t off, unsigned int w)
{
	return bi->msix_table && off < bi->msix_table_offset + bi->msix_table_size &&
	       off + w > bi->msix_table_offset;
}

static ssize_t vfio_pci_bar_rw(struct vfio_pci_core *core, unsigned int bar, uint8_t *buf,
			       size_t count, uint64_t pos, bool write)
{
	const struct pci_fn_bar_info *bi = &core->bar_info[bar];
	uint64_t size = core->bar_size[bar];
	size_t done = 0;
	int rc;

	if (!size || pos >= size)
		return -EINVAL;
	if (count > size - pos)
		count = size - pos;
	if (!(bi->flags & UIOMMU_PCI_BAR_IO) && !vfio_pci_memory_enabled(core))
		return -EIO;
	while (done < count) {
		size_t left = count - done;
		uint64_t off = pos + done;
		unsigned int w = (left >= 8 && !(off & 7)) ? 8 : (left >= 4 && !(off & 3)) ? 4 :
				 (left >= 2 && !(off & 1)) ? 2 : 1;
		uint64_t v = 0;

		if (in_msix_table(bi, off, w)) {
			/* Never reached: reads are all-ones, writes dropped and counted. */
			if (!write)
				memset(buf + done, 0xff, w);
		} else if (write) {
			memcpy(&v, buf + done, w);
			rc = pci_fn_bar_write(core->fn, bar, off, w, v);
			if (rc)
				return done ? (ssize_t)done : rc;
		} else {
			rc = pci_fn_bar_read(core->fn, bar, off, w, &v);
			if (rc)
				return done ? (ssize_t)done : rc;
			memcpy(buf + done, &v, w);
		}
		done += w;
	}
	return (ssize_t)done;
}

/*
 * A read of the ROM region, as vfio-pci's: EINVAL without a ROM or from past the BAR, clipped
 * at its end; the image's bytes, 0xff past it; EIO while memory decode is off (the ROM is
 * memory space). The bytes come from the function, with the enable bit of its own ROM BAR
 * set around the read as the kernel's pci_map_rom() and pci_unmap_rom() do.
 */
static ssize_t vfio_pci_rom_read(struct vfio_pci_core *core, void *buf, size_t count,
				 uint64_t pos)
{
	uint64_t size = core->bar_size[VFIO_PCI_ROM];
	uint32_t rombar;
	int rc;

	lockdep_assert_held(&core->lock);
	if (!size || pos >= size)
		return -EINVAL;
	if (count > size - pos)
		count = (size_t)(size - pos);
	if (pos < core->rom_len && !vfio_pci_memory_enabled(core))
		return -EIO;
	rc = pci_fn_config_read_reg(core->fn, PCI_CFG_ROM, 4, &rombar);
	if (!rc && !(rombar & PCI_ROM_ENABLE))
		rc = pci_fn_config_write_reg(core->fn, PCI_CFG_ROM, 4, rombar | PCI_ROM_ENABLE);
	if (rc)
		return rc;
	rc = pci_fn_rom_read(core->fn, pos, buf, count);
	/*
	 * The write that enabled the ROM succeeded, so this one fails only when the function was
	 * unrealized in between (ENODEV), and a gone function's ROM BAR is nobody's state.
	 */
	if (!(rombar & PCI_ROM_ENABLE))
		(void)pci_fn_config_write_reg(core->fn, PCI_CFG_ROM, 4, rombar);
	return rc ? rc : (ssize_t)count;
}

ssize_t vfio_pci_rw(struct vfio_pci_core *core, void *buf, size_t count, uint64_t off, bool write)
{
	unsigned int index = (unsigned int)(off >> VFIO_PCI_OFFSET_SHIFT);
	uint64_t pos = off & VFIO_PCI_OFFSET_MASK;
	ssize_t rc;

	if (!count)
		return 0;
	if (index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	uiommu_mutex_lock(&core->lock);
	switch (index) {
	case VFIO_PCI_CONFIG:
		rc = vfio_config_rw(core, buf, count, (unsigned int)(pos > UINT_MAX ? UINT_MAX : pos),
				    write);
		if (!rc)
			rc = (ssize_t)count;
		if (write)
			vfio_pci_maps_update(core); /* Memory or the power state may have moved */
		break;
	case VFIO_PCI_ROM:
		rc = write ? -EINVAL : vfio_pci_rom_read(core, buf, count, pos);
		break;
	case VFIO_PCI_VGA:
		rc = -EINVAL; /* not VGA */
		break;
	default:
		rc = vfio_pci_bar_rw(core, index, buf, count, pos, write);
		break;
	}
	uiommu_mutex_unlock(&core->lock);
	return rc;
}

/*
 * A range of a BAR with shared-memory areas that is more than one area: the kernel lets a
 * driver map a whole memory BAR (with its MSI-X table: MSIX_MAPPABLE), and drivers such as the
 * kernel's VFIO selftests do. The areas are mapped as they are alone; every other page is
 * reserved PROT_NONE, because a register has no memory behind it that a store could reach: a
 * driver touching one through the mapping gets SIGSEGV (it uses pread/pwrite for registers).
 */
static void *vfio_pci_mmap_bar(struct vfio_pci_core *core, const struct pci_fn_bar_info *bi,
			       void *addr, size_t len, int prot, int flags, uint64_t pos,
			       uint64_t end)
{
	uint8_t *base;
	int e;

	base = vfio_pci_maps_mmap(core, addr, len, PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
				  (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)), -1, 0, false);
	if (base == MAP_FAILED)
		return MAP_FAILED;
	for (unsigned int i = 0; i < bi->nr_areas; i++) {
		const struct pci_fn_area *a = &bi->areas[i];
		uint64_t s = pos > a->offset ? pos : a->offset;
		uint64_t t = end < a->offset + a->size ? end : a->offset + a->size;

		if (s >= t)
			continue;
		if (uiommu_should_fail()) {
			errno = ENOMEM;
			goto unmap_reservation;
		}
		if (vfio_pci_maps_mmap(core, base + (s - pos), t - s, prot,
				       (flags & ~(MAP_TYPE | MAP_FIXED_NOREPLACE)) | MAP_SHARED |
					       MAP_FIXED,
				       a->fd, a->fd_offset + (s - a->offset), true) == MAP_FAILED)
			goto unmap_reservation;
	}
	return base;

unmap_reservation:
	e = errno;
	vfio_pci_maps_unmap(base, len); /* and forgets the pieces mapped so far */
	errno = e;
	return MAP_FAILED;
}

void *vfio_pci_mmap(struct vfio_pci_core *core, void *addr, size_t len, int prot, int flags,
		    uint64_t off)
{
	unsigned int index = (unsigned int)(off >> VFIO_PCI_OFFSET_SHIFT);
	uint64_t pos = off & VFIO_PCI_OFFSET_MASK, end, bar_end;
	const struct pci_fn_bar_info *bi;
	void *p;

	if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
		goto einval;
	if (index >= VFIO_PCI_ROM || !len || (pos & (uiommu_page_size - 1)))
		goto einval;
	bi = &core->bar_info[index];
	if (!bi->nr_areas || (bi->flags & UIOMMU_PCI_BAR_IO))
		goto einval;
	end = pos + ((len + uiommu_page_size - 1) & ~(uint64_t)(uiommu_page_size - 1));
	bar_end = (core->bar_size[index] + uiommu_page_size - 1) &
		  ~(uint64_t)(uiommu_page_size - 1);
	if (end < pos || end > bar_end)
		goto einval;
	if (uiommu_should_fail()) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	/* Under the device lock: a Command write cannot zap or restore half of it. */
	uiommu_mutex_lock(&core->lock);
	for (unsigned int i = 0; i < bi->nr_areas; i++) {
		const struct pci_fn_area *a = &bi->areas[i];

		if (pos < a->offset || end > a->offset + a->size)
			continue;
		p = uiommu_should_fail() ? (errno = ENOMEM, MAP_FAILED) :
			vfio_pci_maps_mmap(core, addr, len, prot, flags, a->fd,
					   a->fd_offset + (pos - a->offset), true);
		goto out_unlock;
	}
	p = vfio_pci_mmap_bar(core, bi, addr, len, prot, flags, pos, end);
out_unlock:
	uiommu_mutex_unlock(&core->lock);
	return p;
einval:
	errno = EINVAL;
	return MAP_FAILED;
}
