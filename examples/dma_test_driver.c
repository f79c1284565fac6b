// SPDX-License-Identifier: MIT
/*
 * dma_test_driver: a userspace driver for the dma-test function (docs/dma-test.md), written
 * against the Linux uAPI only.
 *
 * It uses <linux/vfio.h>, the iommufd uAPI (<uiommu/iommufd.h>, our copy of
 * <linux/iommufd.h>) and <uiommu/vfio_compat.h> only for the cdev ioctls an older system
 * <linux/vfio.h> lacks; it never calls into libuiommu. So the same binary drives a real
 * dma-test function on a kernel (a QEMU guest's, say) or an emulated one under
 *
 *     uiommu-run --topology examples/dma-test.json ./dma_test_driver [--cdev|--group] [BDF]
 *
 * What a driver does, in order, each step printed:
 *  1. discovery: the first function under /sys/bus/pci/devices/ with vendor 0x1234 and device
 *     0xd7a0 whose driver is vfio-pci (or the BDF given);
 *  2. the way in: --cdev (default) opens /dev/vfio/devices/vfioN (named by the function's
 *     vfio-dev/ directory), binds it to a /dev/iommu fd (VFIO_DEVICE_BIND_IOMMUFD) and attaches
 *     it to a new IOAS; --group opens the container /dev/vfio/vfio and the group node named by
 *     the function's iommu_group link, sets the container, selects type1v2 and asks the group
 *     for the device fd;
 *  3. the device: GET_INFO, BAR0's region info with its sparse-mmap capability, Memory and Bus
 *     Master on in the config region, BAR0 checked by pread/pwrite (ID, SCRATCH), the doorbell
 *     page mmapped, MSI-X vector 0 bound to an eventfd with SET_IRQS;
 *  4. DMA: a ring, completion records and source and destination buffers mapped (the
 *     destination on its own, so it can be unmapped alone); a COPY rung by pwrite of the TAIL
 *     register, then a FILL and a COMPARE rung by a store to the mmapped doorbell; each waited
 *     for on the eventfd (poll with a timeout) and its completion record and bytes checked;
 *  5. the fault: the destination unmapped, a COPY to it submitted: the queue stops with STATUS
 *     ERROR, ERROR 1 (DMA), ERRNO EFAULT and ERROR_IOVA the first destination IOVA, and the
 *     interrupt still arrives.
 * Anything unexpected prints why and exits 1, so the program is also a test (meson suite
 * 'vfio', both ways in).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <uiommu/iommufd.h>
#include <uiommu/vfio_compat.h>

/* dma-test's identity and BAR0 registers (docs/dma-test.md). */
#define DT_VENDOR	0x1234
#define DT_DEVICE	0xd7a0
#define DT_ID		0x000
#define DT_ID_VALUE	0x54414d44u	/* "DMAT" */
#define DT_SCRATCH	0x010
#define DT_INT_STATUS	0x018
#define DT_Q0		0x100		/* queue 0's registers */
#define DT_Q_RING_BASE	0x00
#define DT_Q_RING_SIZE	0x08
#define DT_Q_CTRL	0x0c
#define DT_Q_HEAD	0x14
#define DT_Q_TAIL	0x18
#define DT_Q_STATUS	0x1c
#define DT_Q_ERROR	0x20
#define DT_Q_ERRNO	0x24
#define DT_Q_ERROR_IOVA	0x28
#define DT_Q_COMPLETED	0x30
#define DT_DOORBELL	0x1000		/* queue q's tail: the u32 at DT_DOORBELL + 8 q */
#define DT_CTRL_ENABLE	(1u << 0)
#define DT_CTRL_IRQ	(1u << 1)
#define DT_STATUS_RUNNING (1u << 0)
#define DT_STATUS_IDLE	(1u << 1)
#define DT_STATUS_ERROR	(1u << 2)
#define DT_ERROR_DMA	1
#define DT_OP_COPY	1
#define DT_OP_FILL	2
#define DT_OP_COMPARE	3
#define DT_DESC_IRQ	(1u << 0)

struct dt_desc {
	uint32_t op, flags;
	uint64_t src, dst, len, pattern, completion, cookie, reserved;
};

struct dt_completion {
	uint32_t status, result;
	uint64_t bytes, cookie, reserved;
};

/*
 * The driver's memory: one anonymous mapping, the device sees it at IOVA_BASE. Page 0 is the
 * ring, page 1 the completion records, then the source and the destination buffers.
 */
#define PAGE		4096u
#define RING_SIZE	16u
#define XFER		(64u * 1024)
#define IOVA_BASE	UINT64_C(0x10000000)
#define SRC_OFF		(2 * PAGE)
#define DST_OFF		(SRC_OFF + XFER)
#define MEM_LEN		(DST_OFF + XFER)
#define BAR0		VFIO_PCI_BAR0_REGION_INDEX
#define WAIT_MS		10000

struct driver {
	bool group_mode;
	char bdf[NAME_MAX + 1];
	int iommufd, container, group, device, efd;
	uint32_t ioas;
	uint64_t bar0_off, cfg_off;	/* the regions' offsets in the device fd */
	uint8_t *mem;
	volatile uint32_t *doorbell;	/* BAR0 + DT_DOORBELL, mmapped */
	size_t doorbell_len;
	unsigned int tail;
};

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void __attribute__((noreturn)) die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	fflush(stdout);
	fprintf(stderr, "dma_test_driver: FAILED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (errno %d: %s)\n", e, strerror(e));
	exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) die(__VA_ARGS__); } while (0)

/* A sysfs attribute as one number ("0x1234\n"): -1 if it cannot be read. */
static long sysfs_number(const char *bdf, const char *attr)
{
	char path[PATH_MAX], buf[32] = "";
	FILE *f;
	long v = -1;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 0);
	fclose(f);
	return v;
}

/* The last component of the link /sys/bus/pci/devices/@bdf/@link into @out. */
static int sysfs_link_name(const char *bdf, const char *link, char *out, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX], *name;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, link);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -1;
	target[n] = 0;
	name = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
	if (strlen(name) >= len)
		return -1;
	memcpy(out, name, strlen(name) + 1);
	return 0;
}

/* 1. The first dma-test function vfio-pci drives (or @want's, checked). */
static void device_find(struct driver *d, const char *want)
{
	struct dirent *de;
	DIR *dir = opendir("/sys/bus/pci/devices");

	CHECK(dir, "opendir /sys/bus/pci/devices");
	d->bdf[0] = 0;
	while ((de = readdir(dir))) {
		char drv[64];

		if (de->d_name[0] == '.' || (want && strcmp(de->d_name, want)))
			continue;
		if (sysfs_number(de->d_name, "vendor") != DT_VENDOR ||
		    sysfs_number(de->d_name, "device") != DT_DEVICE)
			continue;
		if (sysfs_link_name(de->d_name, "driver", drv, sizeof(drv)) || strcmp(drv, "vfio-pci")) {
			say("  %s is a dma-test function, not bound to vfio-pci: skipped", de->d_name);
			continue;
		}
		memcpy(d->bdf, de->d_name, sizeof(d->bdf));
		break;
	}
	closedir(dir);
	CHECK(d->bdf[0], "no dma-test function (%04x:%04x) bound to vfio-pci in /sys/bus/pci/devices",
	      DT_VENDOR, DT_DEVICE);
	say("found dma-test %04x:%04x at %s, class 0x%06lx, driver vfio-pci", DT_VENDOR, DT_DEVICE,
	    d->bdf, sysfs_number(d->bdf, "class"));
}

/* 2a. The cdev: /dev/vfio/devices/vfioN, bound to an iommufd, attached to a new IOAS. */
static void device_open_cdev(struct driver *d)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	char dir[PATH_MAX], node[PATH_MAX] = "";
	struct dirent *de;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/vfio-dev", d->bdf);
	dp = opendir(dir);
	CHECK(dp, "opendir %s", dir);
	while ((de = readdir(dp)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(node, sizeof(node), "/dev/vfio/devices/%s", de->d_name);
	closedir(dp);
	CHECK(node[0], "no vfioN in %s", dir);

	d->device = open(node, O_RDWR | O_CLOEXEC);
	CHECK(d->device >= 0, "open %s", node);
	d->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	CHECK(d->iommufd >= 0, "open /dev/iommu");
	bind.iommufd = d->iommufd;
	CHECK(!ioctl(d->device, VFIO_DEVICE_BIND_IOMMUFD, &bind), "VFIO_DEVICE_BIND_IOMMUFD");
	CHECK(!ioctl(d->iommufd, IOMMU_IOAS_ALLOC, &alloc), "IOMMU_IOAS_ALLOC");
	d->ioas = alloc.out_ioas_id;
	attach.pt_id = d->ioas;
	CHECK(!ioctl(d->device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach),
	      "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	say("cdev: opened %s, bound to /dev/iommu as device %u, attached to IOAS %u (HWPT %u)",
	    node, bind.out_devid, d->ioas, attach.pt_id);
}

/* 2b. The group: the container, the group node, type1v2, the device fd by name. */
static void device_open_group(struct driver *d)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char group[32], node[64];

	CHECK(!sysfs_link_name(d->bdf, "iommu_group", group, sizeof(group)), "iommu_group link");
	d->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(d->container >= 0, "open /dev/vfio/vfio");
	CHECK(ioctl(d->container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "VFIO_GET_API_VERSION");
	CHECK(ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1,
	      "VFIO_CHECK_EXTENSION(TYPE1v2)");
	snprintf(node, sizeof(node), "/dev/vfio/%s", group);
	d->group = open(node, O_RDWR | O_CLOEXEC);
	CHECK(d->group >= 0, "open %s", node);
	CHECK(!ioctl(d->group, VFIO_GROUP_GET_STATUS, &status), "VFIO_GROUP_GET_STATUS");
	CHECK(status.flags & VFIO_GROUP_FLAGS_VIABLE, "group %s is not viable", group);
	CHECK(!ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container), "VFIO_GROUP_SET_CONTAINER");
	CHECK(!ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "VFIO_SET_IOMMU(TYPE1v2)");
	d->device = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
	CHECK(d->device >= 0, "VFIO_GROUP_GET_DEVICE_FD(%s)", d->bdf);
	say("group: container /dev/vfio/vfio (type1v2), group %s viable, device fd for %s", node,
	    d->bdf);
}

/* Makes [@off, @off + @len) of the driver's memory visible to the device, read-write. */
static void dma_map(struct driver *d, uint64_t off, uint64_t len)
{
	if (d->group_mode) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)(d->mem + off), .iova = IOVA_BASE + off, .size = len,
		};

		CHECK(!ioctl(d->container, VFIO_IOMMU_MAP_DMA, &map), "VFIO_IOMMU_MAP_DMA");
	} else {
		struct iommu_ioas_map map = {
			.size = sizeof(map),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
				 IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = d->ioas, .user_va = (uintptr_t)(d->mem + off), .length = len,
			.iova = IOVA_BASE + off,
		};

		CHECK(!ioctl(d->iommufd, IOMMU_IOAS_MAP, &map), "IOMMU_IOAS_MAP");
	}
	say("mapped %" PRIu64 " KiB at IOVA 0x%" PRIx64, len / 1024, IOVA_BASE + off);
}

static void dma_unmap(struct driver *d, uint64_t off, uint64_t len)
{
	if (d->group_mode) {
		struct vfio_iommu_type1_dma_unmap unmap = {
			.argsz = sizeof(unmap), .iova = IOVA_BASE + off, .size = len,
		};

		CHECK(!ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &unmap) && unmap.size == len,
		      "VFIO_IOMMU_UNMAP_DMA");
	} else {
		struct iommu_ioas_unmap unmap = {
			.size = sizeof(unmap), .ioas_id = d->ioas, .iova = IOVA_BASE + off,
			.length = len,
		};

		CHECK(!ioctl(d->iommufd, IOMMU_IOAS_UNMAP, &unmap) && unmap.length == len,
		      "IOMMU_IOAS_UNMAP");
	}
	say("unmapped IOVA 0x%" PRIx64 "-0x%" PRIx64, IOVA_BASE + off, IOVA_BASE + off + len - 1);
}

static uint64_t reg_read(struct driver *d, uint64_t reg, unsigned int width)
{
	uint64_t v = 0;

	CHECK(pread(d->device, &v, width, (off_t)(d->bar0_off + reg)) == (ssize_t)width,
	      "pread BAR0 0x%" PRIx64, reg);
	return v;
}

static void reg_write(struct driver *d, uint64_t reg, unsigned int width, uint64_t v)
{
	CHECK(pwrite(d->device, &v, width, (off_t)(d->bar0_off + reg)) == (ssize_t)width,
	      "pwrite BAR0 0x%" PRIx64, reg);
}

/* The region info of @index, with its capability chain: malloc'd, argsz grown as asked. */
static struct vfio_region_info *region_info(struct driver *d, uint32_t index)
{
	struct vfio_region_info *info = calloc(1, sizeof(*info));

	CHECK(info, "calloc");
	info->argsz = sizeof(*info);
	info->index = index;
	CHECK(!ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, info), "GET_REGION_INFO(%u)", index);
	if (info->argsz > sizeof(*info)) {
		uint32_t argsz = info->argsz;

		free(info);
		info = calloc(1, argsz);
		CHECK(info, "calloc");
		info->argsz = argsz;
		info->index = index;
		CHECK(!ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, info),
		      "GET_REGION_INFO(%u) with its capabilities", index);
	}
	return info;
}

/* 3. Regions, Bus Master, the registers by pread/pwrite, the doorbell page mmapped. */
static void device_setup(struct driver *d)
{
	struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
	struct vfio_region_info *bar0, *cfg;
	struct vfio_info_cap_header *hdr;
	uint16_t cmd;
	bool mappable = false;

	CHECK(!ioctl(d->device, VFIO_DEVICE_GET_INFO, &dinfo), "VFIO_DEVICE_GET_INFO");
	CHECK(dinfo.flags & VFIO_DEVICE_FLAGS_PCI, "not a PCI device");
	say("device: flags 0x%x (PCI%s), %u regions, %u IRQ indexes", dinfo.flags,
	    dinfo.flags & VFIO_DEVICE_FLAGS_RESET ? ", RESET" : "", dinfo.num_regions,
	    dinfo.num_irqs);

	cfg = region_info(d, VFIO_PCI_CONFIG_REGION_INDEX);
	d->cfg_off = cfg->offset;
	free(cfg);
	bar0 = region_info(d, BAR0);
	d->bar0_off = bar0->offset;
	say("BAR0: %llu bytes at offset 0x%" PRIx64 ", flags 0x%x", (unsigned long long)bar0->size,
	    d->bar0_off, bar0->flags);
	/* Only the areas of the sparse-mmap capability may be mapped: find the doorbell's. */
	hdr = bar0->flags & VFIO_REGION_INFO_FLAG_CAPS && bar0->cap_offset ?
	      (void *)((char *)bar0 + bar0->cap_offset) : NULL;
	for (; hdr; hdr = hdr->next ? (void *)((char *)bar0 + hdr->next) : NULL) {
		struct vfio_region_info_cap_sparse_mmap *sp = (void *)hdr;

		if (hdr->id != VFIO_REGION_INFO_CAP_SPARSE_MMAP)
			continue;
		for (uint32_t i = 0; i < sp->nr_areas; i++) {
			say("  sparse mmap area %u: 0x%llx, %llu bytes", i,
			    (unsigned long long)sp->areas[i].offset,
			    (unsigned long long)sp->areas[i].size);
			if (sp->areas[i].offset <= DT_DOORBELL &&
			    sp->areas[i].offset + sp->areas[i].size >= DT_DOORBELL + PAGE)
				mappable = true;
		}
	}
	CHECK(bar0->flags & VFIO_REGION_INFO_FLAG_MMAP && mappable,
	      "BAR0's doorbell page is not mmap-able");
	free(bar0);

	/* Memory decode and Bus Master: the device may not touch memory without the latter. */
	CHECK(pread(d->device, &cmd, 2, (off_t)(d->cfg_off + PCI_COMMAND)) == 2, "pread COMMAND");
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	CHECK(pwrite(d->device, &cmd, 2, (off_t)(d->cfg_off + PCI_COMMAND)) == 2, "pwrite COMMAND");
	say("config: COMMAND = 0x%04x (Memory, Bus Master)", cmd);

	CHECK(reg_read(d, DT_ID, 4) == DT_ID_VALUE, "BAR0 ID reads 0x%" PRIx64, reg_read(d, DT_ID, 4));
	reg_write(d, DT_SCRATCH, 8, UINT64_C(0x0123456789abcdef));
	CHECK(reg_read(d, DT_SCRATCH, 8) == UINT64_C(0x0123456789abcdef) &&
	      reg_read(d, DT_SCRATCH + 4, 4) == 0x01234567, "SCRATCH does not read back");
	say("BAR0 by pread/pwrite: ID \"DMAT\", SCRATCH reads back at 8 and 4 bytes");

	d->doorbell_len = PAGE;
	d->doorbell = mmap(NULL, d->doorbell_len, PROT_READ | PROT_WRITE, MAP_SHARED, d->device,
			   (off_t)(d->bar0_off + DT_DOORBELL));
	CHECK(d->doorbell != MAP_FAILED, "mmap of BAR0's doorbell page");
	say("BAR0 + 0x%x (the doorbell page) mmapped at %p", DT_DOORBELL, (void *)d->doorbell);
}

/* 3. MSI-X vector 0 (queue 0's) signals an eventfd. */
static void irq_setup(struct driver *d)
{
	struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX };
	char buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	struct vfio_irq_set *set = (void *)buf;
	int32_t fd;

	CHECK(!ioctl(d->device, VFIO_DEVICE_GET_IRQ_INFO, &irq), "GET_IRQ_INFO(MSI-X)");
	CHECK(irq.count >= 1 && irq.flags & VFIO_IRQ_INFO_EVENTFD, "no MSI-X vectors");
	d->efd = eventfd(0, EFD_CLOEXEC);
	CHECK(d->efd >= 0, "eventfd");
	fd = d->efd;
	memset(buf, 0, sizeof(buf));
	set->argsz = sizeof(buf);
	set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	set->index = VFIO_PCI_MSIX_IRQ_INDEX;
	set->start = 0;
	set->count = 1;
	memcpy(set->data, &fd, sizeof(fd));
	CHECK(!ioctl(d->device, VFIO_DEVICE_SET_IRQS, set), "SET_IRQS(MSI-X 0, eventfd)");
	say("MSI-X: %u vectors; vector 0 signals eventfd %d", irq.count, d->efd);
}

static void irq_teardown(struct driver *d)
{
	struct vfio_irq_set set = {
		.argsz = sizeof(set), .index = VFIO_PCI_MSIX_IRQ_INDEX,
		.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
	};

	CHECK(!ioctl(d->device, VFIO_DEVICE_SET_IRQS, &set), "SET_IRQS(MSI-X off)");
}

/* Waits for the interrupt; clears the device's INT_STATUS as a driver's handler does. */
static void irq_wait(struct driver *d)
{
	struct pollfd p = { .fd = d->efd, .events = POLLIN };
	uint64_t count = 0;

	CHECK(poll(&p, 1, WAIT_MS) == 1, "no MSI-X interrupt within %d ms", WAIT_MS);
	CHECK(read(d->efd, &count, sizeof(count)) == sizeof(count) && count == 1,
	      "read eventfd: count %" PRIu64 ", not one interrupt", count);
	CHECK(reg_read(d, DT_INT_STATUS, 4) & 1, "INT_STATUS bit 0 clear after the interrupt");
	reg_write(d, DT_INT_STATUS, 4, 1);
	say("  MSI-X interrupt (eventfd count %" PRIu64 ")", count);
}

static struct dt_desc *desc(struct driver *d, unsigned int i)
{
	return (struct dt_desc *)d->mem + i % RING_SIZE;
}

static volatile struct dt_completion *completion(struct driver *d, unsigned int i)
{
	return (volatile struct dt_completion *)(d->mem + PAGE) + i % RING_SIZE;
}

/*
 * Writes the next descriptor (completion record at its index; the IRQ flag with @irq): the
 * caller rings the doorbell. A batch asks for one interrupt, on its last descriptor, so each
 * wait sees exactly one signal.
 */
static void desc_fill(struct driver *d, uint32_t op, uint64_t src, uint64_t dst, uint64_t len,
		      uint64_t pattern, bool irq)
{
	unsigned int i = d->tail;
	struct dt_desc *x = desc(d, i);

	memset(x, 0, sizeof(*x));
	memset((void *)completion(d, i), 0, sizeof(struct dt_completion));
	x->op = op;
	x->flags = irq ? DT_DESC_IRQ : 0;
	x->src = src ? IOVA_BASE + src : 0;
	x->dst = IOVA_BASE + dst;
	x->len = len;
	x->pattern = pattern;
	x->completion = IOVA_BASE + PAGE + i % RING_SIZE * sizeof(struct dt_completion);
	x->cookie = 0xd7a00000u + i;
	d->tail++;
}

/* A system call orders the descriptor's stores before the device sees the TAIL write. */
static void ring_by_pwrite(struct driver *d)
{
	reg_write(d, DT_Q0 + DT_Q_TAIL, 4, d->tail % RING_SIZE);
	say("  doorbell: pwrite TAIL = %u", d->tail % RING_SIZE);
}

/* A release store: the descriptors are visible before the new tail is. */
static void ring_by_mmap(struct driver *d)
{
	__atomic_store_n(&d->doorbell[0], d->tail % RING_SIZE, __ATOMIC_RELEASE);
	say("  doorbell: store %u to the mmapped doorbell page", d->tail % RING_SIZE);
}

static void completion_check(struct driver *d, unsigned int i, uint32_t result, uint64_t bytes)
{
	volatile struct dt_completion *c = completion(d, i);

	/* The status first (acquire): the record's other fields are written before it. */
	CHECK(__atomic_load_n(&c->status, __ATOMIC_ACQUIRE) == 1 && c->result == result &&
	      c->bytes == bytes && c->cookie == 0xd7a00000u + i,
	      "completion %u: status %u result %u bytes %" PRIu64 " cookie 0x%" PRIx64, i,
	      c->status, c->result, (uint64_t)c->bytes, (uint64_t)c->cookie);
	say("  completion %u: done, result %u, %" PRIu64 " bytes", i, c->result, (uint64_t)c->bytes);
}

/* 4. A COPY (pwrite doorbell), then FILL and COMPARE (mmapped doorbell), each checked. */
static void dma_run(struct driver *d)
{
	uint8_t *src = d->mem + SRC_OFF, *dst = d->mem + DST_OFF;

	for (unsigned int i = 0; i < XFER; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	memset(dst, 0, XFER);

	reg_write(d, DT_Q0 + DT_Q_RING_BASE, 8, IOVA_BASE);
	reg_write(d, DT_Q0 + DT_Q_RING_SIZE, 4, RING_SIZE);
	reg_write(d, DT_Q0 + DT_Q_CTRL, 4, DT_CTRL_ENABLE | DT_CTRL_IRQ);
	say("queue 0: ring at IOVA 0x%" PRIx64 ", %u descriptors, enabled with interrupts",
	    IOVA_BASE, RING_SIZE);

	say("COPY %u KiB from IOVA 0x%" PRIx64 " to 0x%" PRIx64, XFER / 1024, IOVA_BASE + SRC_OFF,
	    IOVA_BASE + DST_OFF);
	desc_fill(d, DT_OP_COPY, SRC_OFF, DST_OFF, XFER, 0, true);
	ring_by_pwrite(d);
	irq_wait(d);
	completion_check(d, 0, 0, XFER);
	CHECK(!memcmp(src, dst, XFER), "the destination differs from the source");
	say("  the destination holds the source's bytes");

	say("FILL the destination's second half with 0x5a5a5a5a5a5a5a5a, COMPARE with the source");
	desc_fill(d, DT_OP_FILL, 0, DST_OFF + XFER / 2, XFER / 2, UINT64_C(0x5a5a5a5a5a5a5a5a),
		  false);
	desc_fill(d, DT_OP_COMPARE, SRC_OFF, DST_OFF, XFER, 0, true);
	/*
	 * A store to the mapped page reaches the device with no system call, so unlike a pwrite it
	 * does not order this thread's earlier accesses (the COPY's check, the new descriptors)
	 * before the device's next DMA for a race detector: a register read does (the device
	 * takes the same lock for it and for its work). So, as a driver reads a register before
	 * a posted doorbell, we read STATUS and check that the queue runs and is idle.
	 */
	CHECK((reg_read(d, DT_Q0 + DT_Q_STATUS, 4) & (DT_STATUS_RUNNING | DT_STATUS_IDLE)) ==
	      (DT_STATUS_RUNNING | DT_STATUS_IDLE), "queue 0 is not running and idle");
	ring_by_mmap(d);
	irq_wait(d);
	completion_check(d, 1, 0, XFER / 2);
	for (unsigned int i = XFER / 2; i < XFER; i++)
		CHECK(dst[i] == 0x5a, "FILL: byte %u is 0x%02x", i, dst[i]);
	/* The first differing byte: the fill's start, unless the source has 0x5a there. */
	{
		unsigned int first = XFER / 2;

		while (first < XFER && src[first] == 0x5a)
			first++;
		completion_check(d, 2, 1, first);
	}
	CHECK(reg_read(d, DT_Q0 + DT_Q_COMPLETED, 4) == 3 && reg_read(d, DT_Q0 + DT_Q_HEAD, 4) == 3,
	      "COMPLETED/HEAD are not 3");
	say("  COMPLETED = 3, HEAD = 3");
}

/* 5. The destination unmapped: the next COPY stops the queue at its first destination byte. */
static void fault_run(struct driver *d)
{
	uint32_t status, error, err;
	uint64_t iova;

	dma_unmap(d, DST_OFF, XFER);
	say("COPY to the unmapped destination");
	desc_fill(d, DT_OP_COPY, SRC_OFF, DST_OFF, XFER, 0, true);
	ring_by_pwrite(d);
	irq_wait(d);
	status = (uint32_t)reg_read(d, DT_Q0 + DT_Q_STATUS, 4);
	error = (uint32_t)reg_read(d, DT_Q0 + DT_Q_ERROR, 4);
	err = (uint32_t)reg_read(d, DT_Q0 + DT_Q_ERRNO, 4);
	iova = reg_read(d, DT_Q0 + DT_Q_ERROR_IOVA, 8);
	say("  STATUS 0x%x, ERROR %u, ERRNO %u (%s), ERROR_IOVA 0x%" PRIx64, status, error, err,
	    strerror((int)err), iova);
	CHECK(status & DT_STATUS_ERROR && error == DT_ERROR_DMA && err == EFAULT &&
	      iova == IOVA_BASE + DST_OFF, "the queue did not stop with the IOMMU fault");
	CHECK(reg_read(d, DT_Q0 + DT_Q_HEAD, 4) == 3 && completion(d, 3)->status == 0,
	      "the faulting descriptor completed");
	say("  the queue stopped at descriptor 3, no completion record: the IOMMU refused the DMA");
	reg_write(d, DT_Q0 + DT_Q_CTRL, 4, 0);
	say("queue 0 disabled");
}

static void usage(void)
{
	fprintf(stderr, "usage: dma_test_driver [--cdev|--group] [BDF]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct driver d = { .iommufd = -1, .container = -1, .group = -1, .device = -1, .efd = -1 };
	const char *want = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--group"))
			d.group_mode = true;
		else if (!strcmp(argv[i], "--cdev"))
			d.group_mode = false;
		else if (argv[i][0] == '-' || want)
			usage();
		else
			want = argv[i];
	}

	device_find(&d, want);
	if (d.group_mode)
		device_open_group(&d);
	else
		device_open_cdev(&d);
	device_setup(&d);
	irq_setup(&d);

	d.mem = mmap(NULL, MEM_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(d.mem != MAP_FAILED, "mmap of the driver's memory");
	memset(d.mem, 0, MEM_LEN);
	dma_map(&d, 0, DST_OFF);
	dma_map(&d, DST_OFF, XFER);

	dma_run(&d);
	fault_run(&d);

	irq_teardown(&d);
	dma_unmap(&d, 0, DST_OFF);
	munmap((void *)d.doorbell, d.doorbell_len);
	munmap(d.mem, MEM_LEN);
	close(d.efd);
	close(d.device);
	if (d.group >= 0)
		close(d.group);
	if (d.container >= 0)
		close(d.container);
	if (d.iommufd >= 0)
		close(d.iommufd);
	say("done: dma-test %s driven through %s", d.bdf,
	    d.group_mode ? "its group and a type1v2 container" : "its cdev and iommufd");
	return 0;
}
