// SPDX-License-Identifier: MIT
/*
 * Topology devices through the VFIO cdev and iommufd, as a VMM drives them (the library's
 * entry points, no preload): dirty tracking fed by the device's own DMA writes (QEMU's
 * migration path), and the device's reserved IOVA regions enforced in the IOAS it attaches to.
 *
 * The machine (each case is a fresh child; it boots at the first open of a vfio node):
 *   vfio0 = 0000:05:00.0 behind iommu0, which tracks dirty pages, and "dirty": trackable;
 *   vfio1 = 0000:06:00.0 behind iommu0, not trackable;
 *   vfio2 = 0000:07:00.0 behind iommu1, whose "msi_window" is off: no reserved region.
 * iommu0 keeps the mock's default, x86's MSI window 0xfee00000-0xfeefffff (IOMMU_RESV_MSI).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "iommufd_utils.h"
#include "topology_file.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define PG 4096ull /* the bitmap's page_size: the mock's smallest page */
#define NPAGES 16
#define IOVA (1ull << 24)
#define MSI_START 0xfee00000ull
#define MSI_LAST 0xfeefffffull
#define APERTURE_LAST ((1ull << 48) - 1)

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\", \"dirty_tracking\": true },\n"
	"                { \"name\": \"iommu1\", \"msi_window\": false } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:05:00.0\", \"iommu\": \"iommu0\", \"dirty\": true },\n"
	"    { \"bdf\": \"0000:06:00.0\", \"iommu\": \"iommu0\" },\n"
	"    { \"bdf\": \"0000:07:00.0\", \"iommu\": \"iommu1\", \"dirty\": true } ] }\n";

struct machine {
	int fd;           /* the iommufd */
	int v[3];         /* vfio0..2, bound to fd */
	uint32_t devid[3];
	char *buf;        /* NPAGES pages of memory to map */
};

static int machine_boot(struct machine *m)
{
	char path[] = "/tmp/uiommu-dirty-resv-XXXXXX";
	int i;

	if (topology_file_env(path, topology))
		return -1;
	m->fd = uiommu_open(O_RDWR);
	for (i = 0; i < 3; i++) {
		char node[64];
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = m->fd };

		snprintf(node, sizeof(node), "/dev/vfio/devices/vfio%d", i);
		m->v[i] = uiommu_vfio_open(node, O_RDWR);
		if (m->v[i] < 0 || uiommu_ioctl(m->v[i], VFIO_DEVICE_BIND_IOMMUFD, &bind))
			return -1;
		m->devid[i] = bind.out_devid;
	}
	unlink(path);
	m->buf = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		      0);
	if (m->buf == MAP_FAILED || m->fd < 0)
		return -1;
	memset(m->buf, 0, NPAGES * PG);
	return 0;
}

static void machine_shutdown(struct machine *m)
{
	for (int i = 0; i < 3; i++)
		uiommu_close(m->v[i]);
	uiommu_close(m->fd);
	munmap(m->buf, NPAGES * PG);
}

static int hwpt_alloc(struct machine *m, int dev, uint32_t ioas, uint32_t flags, uint32_t *hwpt)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = m->devid[dev], .pt_id = ioas,
	};
	int rc = uiommu_ioctl(m->fd, IOMMU_HWPT_ALLOC, &cmd);

	*hwpt = cmd.out_hwpt_id;
	return rc;
}

/* Attaches (or replaces) vfio@dev to *@pt; *@pt gets the HWPT. */
static int attach(struct machine *m, int dev, uint32_t *pt)
{
	struct vfio_device_attach_iommufd_pt cmd = { .argsz = sizeof(cmd), .pt_id = *pt };
	int rc = uiommu_ioctl(m->v[dev], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);

	*pt = cmd.pt_id;
	return rc;
}

static int detach(struct machine *m, int dev)
{
	struct vfio_device_detach_iommufd_pt cmd = { .argsz = sizeof(cmd) };

	return uiommu_ioctl(m->v[dev], VFIO_DEVICE_DETACH_IOMMUFD_PT, &cmd);
}

static int set_tracking(struct machine *m, uint32_t hwpt, bool on)
{
	struct iommu_hwpt_set_dirty_tracking cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt,
		.flags = on ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
	};

	return uiommu_ioctl(m->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &cmd);
}

/* The dirty bitmap of the NPAGES pages at IOVA, one bit a page, in *@bits. */
static int dirty_bits(struct machine *m, uint32_t hwpt, uint32_t flags, uint64_t *bits)
{
	struct iommu_hwpt_get_dirty_bitmap cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .flags = flags, .iova = IOVA,
		.length = NPAGES * PG, .page_size = PG, .data = (uintptr_t)bits,
	};

	*bits = 0;
	return uiommu_ioctl(m->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &cmd);
}

/* The device writes @len bytes at page @page (+ @off) through its RID: 0 or -errno. */
static int dev_write(struct uiommu_dma_dev *d, unsigned int page, size_t off, size_t len)
{
	char data[PG];

	memset(data, 0x5a, sizeof(data));
	if (uiommu_dma_write(d, 0, IOVA + page * PG + off, data, len,
			     UIOMMU_DMA_NO_PASID | UIOMMU_DMA_NO_PRI) != (ssize_t)len)
		return -errno;
	return 0;
}

static int dev_read(struct uiommu_dma_dev *d, unsigned int page)
{
	char c;

	if (uiommu_dma_read(d, 0, IOVA + page * PG, &c, 1,
			    UIOMMU_DMA_NO_PASID | UIOMMU_DMA_NO_PRI) != 1)
		return -errno;
	return 0;
}

#define BIT(n) (1ull << (n))

/* The IOAS's usable ranges into @r (up to 4); returns how many there are, or -1. */
static int iova_ranges(int fd, uint32_t ioas, struct iommu_iova_range *r)
{
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)r,
	};

	if (uiommu_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd))
		return -1;
	return (int)cmd.num_iovas;
}

/* Is the MSI window a hole between two usable ranges of @ioas, and nothing else reserved? */
static bool has_msi_hole(int fd, uint32_t ioas)
{
	struct iommu_iova_range r[4];

	return iova_ranges(fd, ioas, r) == 2 && r[0].last == MSI_START - 1 &&
	       r[1].start == MSI_LAST + 1;
}

/* Is @ioas one range with no hole from @start to @last? */
static bool is_whole(int fd, uint32_t ioas, uint64_t start, uint64_t last)
{
	struct iommu_iova_range r[4];

	return iova_ranges(fd, ioas, r) == 1 && r[0].start == start && r[0].last == last;
}

/* ---- dirty tracking ------------------------------------------------------------------------ */

TEST(dirty_capability_and_errnos)
{
	struct iommu_hw_info info = { .size = sizeof(info) };
	struct machine m;
	uint32_t ioas, hwpt, plain;
	uint64_t bits;

	ASSERT_EQ(0, machine_boot(&m));
	ioas = ioas_alloc(m.fd);
	/* Only the device whose topology says so reports the capability. */
	info.dev_id = m.devid[0];
	ASSERT_EQ(0, uiommu_ioctl(m.fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ((uint64_t)IOMMU_HW_CAP_DIRTY_TRACKING,
		  info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING);
	for (int i = 1; i < 3; i++) {
		info = (struct iommu_hw_info){ .size = sizeof(info), .dev_id = m.devid[i] };
		ASSERT_EQ(0, uiommu_ioctl(m.fd, IOMMU_GET_HW_INFO, &info));
		ASSERT_EQ(0ull, info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING);
		/* Those refuse the flag, as before (iommu1 cannot track; vfio1 is not "dirty"). */
		ASSERT_ERRNO(EOPNOTSUPP,
			     hwpt_alloc(&m, i, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	}
	ASSERT_EQ(0, hwpt_alloc(&m, 0, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	ASSERT_EQ(0, hwpt_alloc(&m, 0, ioas, 0, &plain));
	/* A HWPT made without the flag has no dirty tracking at all. */
	ASSERT_ERRNO(EOPNOTSUPP, set_tracking(&m, plain, true));
	ASSERT_ERRNO(EOPNOTSUPP, dirty_bits(&m, plain, 0, &bits));
	/* Tracking off: nothing to read. */
	ASSERT_ERRNO(EINVAL, dirty_bits(&m, hwpt, 0, &bits));
	/* A device that cannot be tracked cannot sit in a tracking domain. */
	{
		uint32_t pt = hwpt;

		ASSERT_ERRNO(EINVAL, attach(&m, 1, &pt));
		pt = hwpt;
		ASSERT_EQ(0, attach(&m, 0, &pt));
		ASSERT_EQ(hwpt, pt);
	}
	/* On, on again, off, off again: each answers 0. */
	ASSERT_EQ(0, set_tracking(&m, hwpt, true));
	ASSERT_EQ(0, set_tracking(&m, hwpt, true));
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(0ull, bits);
	ASSERT_EQ(0, set_tracking(&m, hwpt, false));
	ASSERT_EQ(0, set_tracking(&m, hwpt, false));
	ASSERT_ERRNO(EINVAL, dirty_bits(&m, hwpt, 0, &bits));
	machine_shutdown(&m);
}

/* The pages the device wrote, exactly, with and without NO_CLEAR; reads never count. */
TEST(dirty_bitmap_is_what_the_device_wrote)
{
	struct uiommu_dma_dev *d;
	struct machine m;
	uint32_t ioas, hwpt, pt;
	uint64_t bits;

	ASSERT_EQ(0, machine_boot(&m));
	ioas = ioas_alloc(m.fd);
	ASSERT_EQ(0, map_fixed(m.fd, ioas, IOVA, m.buf, NPAGES * PG));
	ASSERT_EQ(0, hwpt_alloc(&m, 0, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	pt = hwpt;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	d = uiommu_dma_dev_open_iommufd(m.fd, m.devid[0]);
	ASSERT_TRUE(d != NULL);

	/* Written before tracking starts: tracking starts clean. */
	ASSERT_EQ(0, dev_write(d, 1, 0, PG));
	ASSERT_EQ(0, dev_write(d, 5, 0, 8));
	ASSERT_EQ(0, set_tracking(&m, hwpt, true));
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(0ull, bits);

	/* Whole pages, a partial one, one write over two pages; reads of others. */
	ASSERT_EQ(0, dev_write(d, 2, 0, PG));
	ASSERT_EQ(0, dev_write(d, 5, 100, 1));
	ASSERT_EQ(0, dev_write(d, 9, PG - 2, 4)); /* pages 9 and 10 */
	ASSERT_EQ(0, dev_read(d, 7));
	ASSERT_EQ(0, dev_read(d, 1));
	ASSERT_EQ(0x5a, m.buf[2 * PG]);
	ASSERT_EQ(0x5a, m.buf[10 * PG + 1]);
	/* NO_CLEAR reports and keeps the bits, as often as asked. */
	ASSERT_EQ(0, dirty_bits(&m, hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, &bits));
	ASSERT_EQ(BIT(2) | BIT(5) | BIT(9) | BIT(10), bits);
	ASSERT_EQ(0, dirty_bits(&m, hwpt, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, &bits));
	ASSERT_EQ(BIT(2) | BIT(5) | BIT(9) | BIT(10), bits);
	/* A clearing read reports the same, then nothing is left. */
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(BIT(2) | BIT(5) | BIT(9) | BIT(10), bits);
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(0ull, bits);

	/*
	 * The IOTLB still held pages 2 and 5 with their bits set until the clearing read's
	 * flush: written again, they must be dirty again. Page 12, outside anything flushed, is
	 * cached by a read, clean: a write through that entry must reach the page table too.
	 */
	ASSERT_EQ(0, dev_read(d, 12));
	ASSERT_EQ(0, dev_write(d, 5, 0, 1));
	ASSERT_EQ(0, dev_write(d, 12, 0, 1));
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(BIT(5) | BIT(12), bits);

	/* Tracking off: writes leave nothing behind, and tracking on again starts clean. */
	ASSERT_EQ(0, set_tracking(&m, hwpt, false));
	ASSERT_EQ(0, dev_write(d, 3, 0, 1));
	ASSERT_EQ(0, dev_write(d, 5, 0, 1));
	ASSERT_EQ(0, set_tracking(&m, hwpt, true));
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(0ull, bits);
	/* And the entries cached while it was off do not hide a write now. */
	ASSERT_EQ(0, dev_write(d, 3, 0, 1));
	ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
	ASSERT_EQ(BIT(3), bits);

	ASSERT_EQ(0, uiommu_dma_dev_close(d));
	ASSERT_EQ(0, detach(&m, 0));
	machine_shutdown(&m);
}

/*
 * Two device threads write every page of a 64-page buffer once per round while this thread
 * reads and clears the bitmap; after the writers' round, a last read. The union of one round's
 * reads must be every page: a write lost to an IOTLB entry that kept its dirty bit across a
 * clear would be missing. Bounded: ROUNDS rounds, no sleeps.
 */
#define STRESS_PAGES 64
#define ROUNDS 20

struct stress {
	struct machine *m;
	struct uiommu_dma_dev *d;
	pthread_barrier_t start, done;
	atomic_int failures;
	int parity;
};

static void *stress_writer(void *arg)
{
	struct stress *st = arg;
	char c = 1;

	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(&st->start);
		for (int p = st->parity; p < STRESS_PAGES; p += 2)
			if (uiommu_dma_write(st->d, 0, IOVA + (uint64_t)p * PG + (uint64_t)r, &c, 1,
					     UIOMMU_DMA_NO_PASID | UIOMMU_DMA_NO_PRI) != 1)
				atomic_fetch_add(&st->failures, 1);
		pthread_barrier_wait(&st->done);
	}
	return NULL;
}

static int stress_bits(struct machine *m, uint32_t hwpt, uint64_t *bits)
{
	struct iommu_hwpt_get_dirty_bitmap cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .iova = IOVA,
		.length = STRESS_PAGES * PG, .page_size = PG, .data = (uintptr_t)bits,
	};

	*bits = 0;
	return uiommu_ioctl(m->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &cmd);
}

TEST(dirty_stress_no_write_lost)
{
	struct stress st[2];
	pthread_t th[2];
	struct machine m;
	uint32_t ioas, hwpt, pt;
	void *mem;

	ASSERT_EQ(0, machine_boot(&m));
	mem = mmap(NULL, STRESS_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	ASSERT_TRUE(mem != MAP_FAILED);
	ioas = ioas_alloc(m.fd);
	ASSERT_EQ(0, map_fixed(m.fd, ioas, IOVA, mem, STRESS_PAGES * PG));
	ASSERT_EQ(0, hwpt_alloc(&m, 0, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	pt = hwpt;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	ASSERT_EQ(0, set_tracking(&m, hwpt, true));
	for (int i = 0; i < 2; i++) {
		st[i].m = &m;
		st[i].parity = i;
		atomic_init(&st[i].failures, 0);
		st[i].d = uiommu_dma_dev_open_iommufd(m.fd, m.devid[0]);
		ASSERT_TRUE(st[i].d != NULL);
		ASSERT_EQ(0, pthread_barrier_init(&st[i].start, NULL, 2));
		ASSERT_EQ(0, pthread_barrier_init(&st[i].done, NULL, 2));
		ASSERT_EQ(0, pthread_create(&th[i], NULL, stress_writer, &st[i]));
	}
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t seen = 0, bits;

		for (int i = 0; i < 2; i++)
			pthread_barrier_wait(&st[i].start);
		/* Reads racing the writers: each bit a write set is reported once. */
		for (int k = 0; k < 8; k++) {
			ASSERT_EQ(0, stress_bits(&m, hwpt, &bits));
			seen |= bits;
		}
		for (int i = 0; i < 2; i++)
			pthread_barrier_wait(&st[i].done);
		ASSERT_EQ(0, stress_bits(&m, hwpt, &bits));
		seen |= bits;
		EXPECT_EQ(UINT64_MAX, seen);
	}
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_join(th[i], NULL));
		EXPECT_EQ(0, atomic_load(&st[i].failures));
		ASSERT_EQ(0, uiommu_dma_dev_close(st[i].d));
		pthread_barrier_destroy(&st[i].start);
		pthread_barrier_destroy(&st[i].done);
	}
	machine_shutdown(&m);
	munmap(mem, STRESS_PAGES * PG);
}

/* ---- reserved regions ---------------------------------------------------------------------- */

TEST(resv_hole_after_attach_gone_after_detach)
{
	struct machine m;
	uint32_t ioas, pt;

	ASSERT_EQ(0, machine_boot(&m));
	ioas = ioas_alloc(m.fd);
	ASSERT_TRUE(is_whole(m.fd, ioas, 0, UINT64_MAX));
	pt = ioas;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, ioas));
	/* Into the hole, or across its edge: refused, as the kernel's EINVAL. */
	ASSERT_ERRNO(EINVAL, map_fixed(m.fd, ioas, MSI_START, m.buf, PG));
	ASSERT_ERRNO(EINVAL, map_fixed(m.fd, ioas, MSI_START - PG, m.buf, 2 * PG));
	ASSERT_ERRNO(EINVAL, map_fixed(m.fd, ioas, MSI_LAST + 1 - PG, m.buf, PG));
	ASSERT_EQ(0, map_fixed(m.fd, ioas, MSI_START - PG, m.buf, PG));
	ASSERT_EQ(0, map_fixed(m.fd, ioas, MSI_LAST + 1, m.buf, PG));
	/* Nor may the user allow IOVA there. */
	{
		struct iommu_iova_range allow = { .start = 0, .last = MSI_START };
		struct iommu_ioas_allow_iovas cmd = { .size = sizeof(cmd), .ioas_id = ioas,
						      .num_iovas = 1,
						      .allowed_iovas = (uintptr_t)&allow };

		ASSERT_ERRNO(EADDRINUSE, uiommu_ioctl(m.fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
		allow.last = MSI_START - 1;
		ASSERT_EQ(0, uiommu_ioctl(m.fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
		cmd.num_iovas = 0;
		ASSERT_EQ(0, uiommu_ioctl(m.fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
	}
	/* A second device of the same IOAS adds its own (same) window; one detach keeps it. */
	pt = ioas;
	ASSERT_EQ(0, attach(&m, 1, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, ioas));
	ASSERT_EQ(0, detach(&m, 0));
	ASSERT_TRUE(has_msi_hole(m.fd, ioas));
	ASSERT_EQ(0, detach(&m, 1));
	ASSERT_TRUE(is_whole(m.fd, ioas, 0, UINT64_MAX));
	ASSERT_EQ(0, map_fixed(m.fd, ioas, MSI_START, m.buf, PG));
	/* An instance without a window reserves nothing; only the aperture limits the IOAS. */
	ASSERT_EQ(0, unmap(m.fd, ioas, MSI_START, PG));
	pt = ioas;
	ASSERT_EQ(0, attach(&m, 2, &pt));
	ASSERT_TRUE(is_whole(m.fd, ioas, 0, APERTURE_LAST));
	ASSERT_EQ(0, map_fixed(m.fd, ioas, MSI_START, m.buf, PG));
	ASSERT_EQ(0, detach(&m, 2));
	machine_shutdown(&m);
}

TEST(resv_attach_refused_over_a_mapping)
{
	struct iommu_iova_range allow = { .start = MSI_START - PG, .last = MSI_START + PG - 1 };
	struct iommu_ioas_allow_iovas cmd = { .size = sizeof(cmd), .num_iovas = 1,
					      .allowed_iovas = (uintptr_t)&allow };
	struct machine m;
	uint32_t ioas, hwpt, pt;

	ASSERT_EQ(0, machine_boot(&m));
	ioas = ioas_alloc(m.fd);
	ASSERT_EQ(0, map_fixed(m.fd, ioas, MSI_START + 16 * PG, m.buf, PG));
	/* Through an automatic HWPT and through a HWPT of the user's: EADDRINUSE, nothing left. */
	pt = ioas;
	ASSERT_ERRNO(EADDRINUSE, attach(&m, 0, &pt));
	ASSERT_EQ(0, hwpt_alloc(&m, 0, ioas, 0, &hwpt));
	pt = hwpt;
	ASSERT_ERRNO(EADDRINUSE, attach(&m, 0, &pt));
	ASSERT_EQ(0, detach(&m, 0)); /* not attached: no error */
	ASSERT_TRUE(is_whole(m.fd, ioas, 0, APERTURE_LAST)); /* the user's HWPT's aperture */
	/* Once the mapping is gone, the same attach works. */
	ASSERT_EQ(0, unmap(m.fd, ioas, MSI_START + 16 * PG, PG));
	pt = hwpt;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, ioas));
	ASSERT_EQ(0, detach(&m, 0));
	/* An allowed range over the window refuses the attach as well. */
	cmd.ioas_id = ioas;
	ASSERT_EQ(0, uiommu_ioctl(m.fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd));
	pt = hwpt;
	ASSERT_ERRNO(EADDRINUSE, attach(&m, 0, &pt));
	machine_shutdown(&m);
}

/* A replace onto another IOAS moves the hole; refused there, it stays where it was. */
TEST(resv_replace_moves_the_hole)
{
	struct machine m;
	uint32_t a, b, pt, hwpt_b;

	ASSERT_EQ(0, machine_boot(&m));
	a = ioas_alloc(m.fd);
	b = ioas_alloc(m.fd);
	ASSERT_EQ(0, map_fixed(m.fd, b, MSI_START, m.buf, PG));
	ASSERT_EQ(0, hwpt_alloc(&m, 0, b, 0, &hwpt_b));
	pt = a;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, a));
	pt = hwpt_b;
	ASSERT_ERRNO(EADDRINUSE, attach(&m, 0, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, a));
	ASSERT_TRUE(is_whole(m.fd, b, 0, APERTURE_LAST));
	ASSERT_EQ(0, unmap(m.fd, b, MSI_START, PG));
	pt = hwpt_b;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, b));
	ASSERT_TRUE(is_whole(m.fd, a, 0, UINT64_MAX));
	/* Back to an IOAS a (a new automatic HWPT there). */
	pt = a;
	ASSERT_EQ(0, attach(&m, 0, &pt));
	ASSERT_TRUE(has_msi_hole(m.fd, a));
	ASSERT_TRUE(is_whole(m.fd, b, 0, APERTURE_LAST));
	ASSERT_EQ(0, detach(&m, 0));
	ASSERT_TRUE(is_whole(m.fd, a, 0, UINT64_MAX));
	machine_shutdown(&m);
}

/* ---- fault injection ----------------------------------------------------------------------- */

enum sweep_op { SWEEP_ATTACH, SWEEP_REPLACE, SWEEP_ALLOC_DIRTY, SWEEP_SET_DIRTY, SWEEP_BITMAP };

/*
 * Each fallible step of @op fails in turn: the call fails, and nothing changed (objects,
 * allocations, the IOAS's ranges, what is attached).
 */
static void sweep(struct __h_test *_metadata, enum sweep_op op)
{
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		return;
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		uint32_t a, b, pt, hwpt = 0;
		struct iommu_iova_range r0[4], r1[4];
		struct machine m;
		uint64_t bits;
		unsigned long left;
		int rc, n0, err;

		ASSERT_EQ(0, machine_boot(&m));
		a = ioas_alloc(m.fd);
		b = ioas_alloc(m.fd);
		ASSERT_EQ(0, map_fixed(m.fd, a, IOVA, m.buf, NPAGES * PG));
		if (op != SWEEP_ATTACH) {
			ASSERT_EQ(0, hwpt_alloc(&m, 0, a, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
			pt = hwpt;
			ASSERT_EQ(0, attach(&m, 0, &pt));
		}
		if (op == SWEEP_BITMAP) {
			struct uiommu_dma_dev *d = uiommu_dma_dev_open_iommufd(m.fd, m.devid[0]);

			ASSERT_TRUE(d != NULL);
			ASSERT_EQ(0, set_tracking(&m, hwpt, true));
			ASSERT_EQ(0, dev_write(d, 4, 0, 1));
			ASSERT_EQ(0, uiommu_dma_dev_close(d));
		}
		n0 = iova_ranges(m.fd, a, r0);
		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		switch (op) {
		case SWEEP_ATTACH:
			pt = a;
			rc = attach(&m, 0, &pt);
			break;
		case SWEEP_REPLACE:
			pt = b;
			rc = attach(&m, 0, &pt);
			break;
		case SWEEP_ALLOC_DIRTY:
			rc = hwpt_alloc(&m, 0, b, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &pt);
			break;
		case SWEEP_SET_DIRTY:
			rc = set_tracking(&m, hwpt, true);
			break;
		default:
			rc = dirty_bits(&m, hwpt, 0, &bits);
			break;
		}
		err = errno;
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			if (op == SWEEP_BITMAP)
				ASSERT_EQ(BIT(4), bits);
			machine_shutdown(&m);
			break;
		}
		ASSERT_NE(0, rc);
		if (op == SWEEP_REPLACE && err == EFAULT && !has_msi_hole(m.fd, a)) {
			/* The reply could not be written back: as the kernel's vfio, the device
			 * ends up detached, its window gone from both IOASes. (An EFAULT reading
			 * the arguments changed nothing: the checks below.) */
			ASSERT_TRUE(is_whole(m.fd, a, 0, APERTURE_LAST));
			ASSERT_TRUE(is_whole(m.fd, b, 0, UINT64_MAX));
			machine_shutdown(&m);
			continue;
		}
		ASSERT_EQ(0, uiommu_stats_get(&after));
		if (getenv("SWEEP_DEBUG"))
			fprintf(stderr, "op %d nth %lu rc %d errno %d objs %ld/%ld allocs %ld/%ld\n",
				op, nth, rc, err, before.objects, after.objects,
				before.allocations, after.allocations);
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		ASSERT_EQ(n0, iova_ranges(m.fd, a, r1));
		ASSERT_EQ(0, memcmp(r0, r1, (size_t)n0 * sizeof(r0[0])));
		ASSERT_TRUE(is_whole(m.fd, b, 0, UINT64_MAX));
		if (op == SWEEP_ATTACH)
			ASSERT_EQ(0, detach(&m, 0)); /* nothing attached: no error either way */
		if (op == SWEEP_BITMAP) {
			/* A failed clearing read may have cleared; never more than was dirty. */
			ASSERT_EQ(0, dirty_bits(&m, hwpt, 0, &bits));
			ASSERT_EQ(0ull, bits & ~BIT(4));
		}
		machine_shutdown(&m);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
}

TEST(fail_nth_attach)
{
	sweep(_metadata, SWEEP_ATTACH);
}

TEST(fail_nth_replace)
{
	sweep(_metadata, SWEEP_REPLACE);
}

TEST(fail_nth_alloc_dirty)
{
	sweep(_metadata, SWEEP_ALLOC_DIRTY);
}

TEST(fail_nth_set_dirty_tracking)
{
	sweep(_metadata, SWEEP_SET_DIRTY);
}

TEST(fail_nth_get_dirty_bitmap)
{
	sweep(_metadata, SWEEP_BITMAP);
}

TEST_HARNESS_MAIN
