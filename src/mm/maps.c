// SPDX-License-Identifier: MIT
/*
 * What backs a host address: a snapshot of this process's mappings (/proc/self/maps).
 *
 * The kernel's selftest checks that a page a domain or an access holds is "the same page" as
 * the one under a user address by comparing page frames. uiommu has no frames: a translation
 * goes to a host address, the user address itself for user memory, and the library's own
 * shared mapping of the file for a MAP_FILE area (pages.c). The caller's own mmap of that file
 * lies at another address but shows the same pages. So two host addresses are the same page
 * when they are equal, or when both lie in MAP_SHARED mappings of one file (device and inode)
 * at the same file offset. A private file mapping is compared by address only: once written it
 * holds copies, as the kernel's would after its copy-on-write.
 *
 * The snapshot is read once per check op and only when an address comparison fails, so checks
 * of anonymous memory never read the file. It is a sorted array of the shared file mappings;
 * lookups are binary searches. The mappings may change after the snapshot is taken: a check
 * is a test aid, and the caller is the test that made the mappings.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "lib/fail.h"
#include "lib/sys.h"
#include "mm/mm.h"

struct uiommu_maps_ent {
	uint64_t start, end; /* [start, end) */
	uint64_t offset;     /* file offset of start */
	uint64_t dev, ino;
};

struct uiommu_maps {
	struct uiommu_maps_ent *ent; /* shared file mappings, by start */
	size_t nr, cap;
};

void uiommu_maps_free(struct uiommu_maps *maps)
{
	if (!maps)
		return;
	uiommu_free(maps->ent);
	uiommu_free(maps);
}

/* Keeps a mapping of /proc/self/maps when it is a shared mapping of a file. */
static int uiommu_maps_add(const struct uiommu_vma *v, void *arg)
{
	struct uiommu_maps *maps = arg;

	if (strlen(v->perms) < 4 || v->perms[3] != 's' || !v->ino)
		return 0;
	if (maps->nr == maps->cap) {
		size_t cap = maps->cap ? maps->cap * 2 : 16;
		struct uiommu_maps_ent *ent = uiommu_realloc_array(maps->ent, cap, sizeof(*ent));

		if (!ent)
			return -ENOMEM;
		maps->ent = ent;
		maps->cap = cap;
	}
	maps->ent[maps->nr++] = (struct uiommu_maps_ent){
		.start = v->start, .end = v->end, .offset = v->offset, .dev = v->dev, .ino = v->ino,
	};
	return 0;
}

/**
 * uiommu_maps_walk_fd() - calls @fn for each mapping a maps file shows, from @fd's position on
 * @fn returns 0 to go on, > 0 to stop, < 0 (an errno) to stop with it.
 * Return: 0, @fn's -errno, or -EIO when the file cannot be read.
 */
int uiommu_maps_walk_fd(int fd, int (*fn)(const struct uiommu_vma *v, void *arg), void *arg)
{
	char buf[4096], line[512];
	size_t used = 0;
	ssize_t n;
	int rc = 0;

	/* Lines are split across reads; a line longer than line[] keeps only its head. */
	while (!rc && (n = sys_read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i != n && !rc; i++) {
			unsigned long long start, end, offset, ino;
			unsigned int major, minor;
			struct uiommu_vma v;

			if (buf[i] != '\n') {
				if (used < sizeof(line) - 1)
					line[used++] = buf[i];
				continue;
			}
			line[used] = 0;
			used = 0;
			if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, v.perms,
				   &offset, &major, &minor, &ino) != 7)
				continue;
			v.start = start;
			v.end = end;
			v.offset = offset;
			v.dev = ((uint64_t)major << 32) | minor;
			v.ino = ino;
			rc = fn(&v, arg);
		}
	}
	if (!rc && n < 0)
		rc = -EIO;
	return rc < 0 ? rc : 0;
}

/**
 * uiommu_maps_load() - a snapshot of this process's shared file mappings
 * Return: 0 with *@out set (uiommu_maps_free()), -ENOMEM, or -EIO when /proc/self/maps
 * cannot be read.
 */
int uiommu_maps_load(struct uiommu_maps **out)
{
	struct uiommu_maps *maps;
	int fd, rc;

	maps = uiommu_zalloc(sizeof(*maps));
	if (!maps)
		return -ENOMEM;
	fd = uiommu_should_fail() ? -1 : sys_openat(AT_FDCWD, "/proc/self/maps",
						    O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		rc = -EIO;
		goto err_free;
	}
	rc = uiommu_maps_walk_fd(fd, uiommu_maps_add, maps);
	sys_close(fd);
	if (rc)
		goto err_free;
	*out = maps;
	return 0;

err_free:
	uiommu_maps_free(maps);
	return rc;
}

static const struct uiommu_maps_ent *uiommu_maps_find(const struct uiommu_maps *maps,
						      uint64_t addr)
{
	size_t lo = 0, hi = maps->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct uiommu_maps_ent *e = &maps->ent[mid];

		if (addr < e->start)
			hi = mid;
		else if (addr >= e->end)
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

/**
 * uiommu_maps_same_page() - do host addresses @a and @b show the same memory?
 * True when they are equal, or both lie in shared mappings of one file at one file offset.
 */
bool uiommu_maps_same_page(const struct uiommu_maps *maps, uint64_t a, uint64_t b)
{
	const struct uiommu_maps_ent *ea, *eb;

	if (a == b)
		return true;
	ea = uiommu_maps_find(maps, a);
	eb = uiommu_maps_find(maps, b);
	return ea && eb && ea->dev == eb->dev && ea->ino == eb->ino &&
	       ea->offset + (a - ea->start) == eb->offset + (b - eb->start);
}

/**
 * uiommu_maps_file_of() - the file and file offset that host address @addr shows
 * Return: true with *@dev, *@ino, *@offset set when @addr lies in a shared file mapping.
 */
bool uiommu_maps_file_of(const struct uiommu_maps *maps, uint64_t addr, uint64_t *dev,
			 uint64_t *ino, uint64_t *offset)
{
	const struct uiommu_maps_ent *e = uiommu_maps_find(maps, addr);

	if (!e)
		return false;
	*dev = e->dev;
	*ino = e->ino;
	*offset = e->offset + (addr - e->start);
	return true;
}

uint64_t uiommu_maps_dev(uint64_t st_dev)
{
	return ((uint64_t)major(st_dev) << 32) | minor(st_dev);
}

/**
 * uiommu_maps_host_of() - where this process maps [@offset, @offset + @len) of file (@dev, @ino)
 * shared, as a snapshot of uiommu_maps_load() shows it (another process's shared pages are
 * ours to touch only through a mapping of our own of the same file).
 * Return: true with *@addr set to the host address of @offset.
 */
bool uiommu_maps_host_of(const struct uiommu_maps *maps, uint64_t dev, uint64_t ino,
			 uint64_t offset, uint64_t len, uint64_t *addr)
{
	for (size_t i = 0; i != maps->nr; i++) {
		const struct uiommu_maps_ent *e = &maps->ent[i];

		if (e->dev != dev || e->ino != ino || offset < e->offset ||
		    offset + len > e->offset + (e->end - e->start))
			continue;
		*addr = e->start + (offset - e->offset);
		return true;
	}
	return false;
}
