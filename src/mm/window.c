// SPDX-License-Identifier: MIT
/*
 * The window: host addresses for another process's private memory (docs/processes.md).
 *
 * What a domain maps, and what the DMA engine and an access read and write through, is a host
 * address of this process (a "physical address"). A page in another process's private memory
 * has none: it is that process's alone. The kernel maps the pinned page itself; we give such a
 * page a stand-in address instead, in one range of address space reserved at the first need
 * (PROT_NONE, MAP_NORESERVE: no memory behind it, and a guard page either side, so that no
 * mapping of ours ever adjoins it and a run of contiguous host addresses is either all window
 * or none of it). Nothing can be read or written there by a plain access: a stray dereference
 * faults, and under a fault trap (every host copy, the DMA engine's) that is EFAULT, never
 * a wrong byte. The host copies (uiommu_host_copy() and its trapped form, mm_self.c) test
 * each side against the window (uiommu_window_has(): one subtraction and one compare, so the
 * single-process path pays nothing it can measure) and hand window addresses here, where the
 * bytes move with the owner's copy (mm_remote_copyv(): process_vm_readv/writev at its
 * addresses, or its mem fd): coherent with the owner while it lives, as the kernel's pinned
 * page is, and EFAULT once it is gone (its mem fd or pidfd says so), never stale data. A run
 * of window addresses is one such copy as far as it goes through live extents of one owner,
 * however many extents it crosses: the DMA engine hands over a physically contiguous run as
 * one host copy, and each system call with its check of the owner costs ~0.5 us, a third of a
 * 64 KiB memcpy.
 *
 * Data model. An extent is a run of window pages [off, off + len) that stands for the owner
 * mm's run of user pages [uaddr, uaddr + len). The extents are disjoint, kept sorted by off in
 * one array (a QEMU guest's RAM is a handful of runs), and allocated first fit. The owner
 * (mm_remote.c) makes them when it pins private pages (mm_window_cover()), kills them when it
 * learns that the user range no longer holds the pages that were pinned (mm_window_kill(): the
 * owner remapped it, a notice from its library), and frees them when the last pin of those
 * pages goes (mm_window_release()), which the IOMMU's unmap precedes, so a freed window page is
 * mapped by no domain and may be given to another run. A dead extent keeps its window pages
 * (a domain still maps them) but answers EFAULT. Every extent holds no reference on its mm:
 * the mm releases its extents before it is freed (mm_window_release_all()), under the write
 * lock, and a copy holds the read lock while it uses an extent's mm.
 *
 * Locking: window_lock (a rwsem) protects the extent array; copies take it for read, across
 * their system calls; changes take it for write. It is taken under mm_remote's lock and takes
 * nothing under it: a leaf. The window's place (window_base, window_size) is written once,
 * under window_lock, before any extent exists, and read without it (uiommu_window_has()).
 * A fork takes window_lock for write around itself: a child (the exec hand-over's next
 * server, which goes on serving the same clients) inherits the window, its extents and a free
 * lock.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "lib/sys.h"
#include "mm/mm.h"
#include "mm/window.h"

/* 64 GiB of address space, not of memory: the pinned private memory of all clients at once. */
#define WINDOW_SIZE ((uint64_t)1 << 36)

_Atomic uintptr_t uiommu_window_base;
_Atomic uint64_t uiommu_window_size;

struct window_extent {
	uint64_t off, len;     /* window bytes [off, off + len) from uiommu_window_base */
	uint64_t uaddr;        /* the owner's address of off */
	struct uiommu_mm *mm;  /* the owner; no reference (see the essay) */
	bool dead;             /* the owner's range was remapped: EFAULT */
};

UIOMMU_RWSEM_DEFINE(window_lock); /* protects extents, nr, cap; a leaf, under mm_remote's lock */
static struct window_extent *extents;
static size_t nr, cap;

/*
 * A fork (the exec hand-over's next server keeps the window and its extents) waits out the
 * copies and changes in flight, so that the child's lock is not held by a thread it lacks.
 */
static void window_atfork_prepare(void)
{
	uiommu_down_write(&window_lock);
}

static void window_atfork_parent(void)
{
	uiommu_up_write(&window_lock);
}

static void window_atfork_child(void)
{
	uiommu_up_write_in_fork_child(&window_lock);
}

static void window_atfork_register(void)
{
	if (pthread_atfork(window_atfork_prepare, window_atfork_parent, window_atfork_child))
		die("pthread_atfork");
}

/* Reserves the window once; 0 or -ENOMEM. */
static int window_reserve(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	uint64_t guard = uiommu_page_size;
	void *p;

	lockdep_assert_rwsem_held_write(&window_lock);
	if (atomic_load_explicit(&uiommu_window_size, memory_order_relaxed))
		return 0;
	if (uiommu_should_fail())
		return -ENOMEM;
	/* The raw call: a sanitizer's runtime must not give the window shadow memory. */
	p = sys_mmap(NULL, WINDOW_SIZE + 2 * guard, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	pthread_once(&once, window_atfork_register);
	atomic_store_explicit(&uiommu_window_base, (uintptr_t)p + guard, memory_order_relaxed);
	/* Pairs with the acquire in uiommu_window_has(): a size seen means the base is. */
	atomic_store_explicit(&uiommu_window_size, WINDOW_SIZE, memory_order_release);
	return 0;
}

/* Room for @more extents; 0 or -ENOMEM. */
static int window_grow(size_t more)
{
	struct window_extent *e;
	size_t want = cap ? cap : 8;

	lockdep_assert_rwsem_held_write(&window_lock);
	if (nr + more <= cap)
		return 0;
	while (want < nr + more)
		want *= 2;
	e = uiommu_realloc_array(extents, want, sizeof(*e));
	if (!e)
		return -ENOMEM;
	extents = e;
	cap = want;
	return 0;
}

static void window_insert_at(size_t i, const struct window_extent *e)
{
	memmove(&extents[i + 1], &extents[i], (nr - i) * sizeof(*extents));
	extents[i] = *e;
	nr++;
}

static void window_remove_at(size_t i)
{
	memmove(&extents[i], &extents[i + 1], (nr - i - 1) * sizeof(*extents));
	nr--;
}

/* Makes an extent for @mm's [uaddr, uaddr + len), first fit; 0 or -ENOMEM. */
static int window_alloc(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len)
{
	uint64_t off = 0;
	size_t i;
	int rc;

	rc = window_grow(1);
	if (rc)
		return rc;
	for (i = 0; i < nr && extents[i].off - off < len; i++)
		off = extents[i].off + extents[i].len;
	if (WINDOW_SIZE - off < len)
		return -ENOMEM;
	window_insert_at(i, &(struct window_extent){ off, len, uaddr, mm, false });
	return 0;
}

/* The live extent of @mm that holds its @uaddr, or NULL. */
static struct window_extent *window_find_user(struct uiommu_mm *mm, uint64_t uaddr)
{
	for (size_t i = 0; i < nr; i++) {
		struct window_extent *e = &extents[i];

		if (e->mm == mm && !e->dead && uaddr - e->uaddr < e->len)
			return e;
	}
	return NULL;
}

/* The lowest start above @uaddr (below @end) of a live extent of @mm, or @end. */
static uint64_t window_next_user(struct uiommu_mm *mm, uint64_t uaddr, uint64_t end)
{
	for (size_t i = 0; i < nr; i++) {
		struct window_extent *e = &extents[i];

		if (e->mm == mm && !e->dead && e->uaddr > uaddr && e->uaddr < end)
			end = e->uaddr;
	}
	return end;
}

/**
 * mm_window_cover() - give every page of @mm's [uaddr, uaddr + len) a window address
 * Pages that have a live one keep it (the same pinned page, the same address); the rest get
 * new extents. Page-aligned arguments. What was made before a failure stays: the caller frees
 * it with mm_window_release() as for any range whose pins it gives up.
 * Return: 0, or -ENOMEM (the window could not be reserved, or is full).
 */
int mm_window_cover(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len)
{
	uint64_t end = uaddr + len;
	int rc;

	uiommu_down_write(&window_lock);
	rc = window_reserve();
	while (!rc && uaddr < end) {
		struct window_extent *e = window_find_user(mm, uaddr);
		uint64_t next;

		if (e) {
			next = e->uaddr + e->len;
			uaddr = next < end ? next : end;
			continue;
		}
		next = window_next_user(mm, uaddr, end);
		rc = window_alloc(mm, uaddr, next - uaddr);
		uaddr = next;
	}
	uiommu_up_write(&window_lock);
	return rc;
}

/**
 * mm_window_host() - the window address of @mm's @uaddr, if a live extent covers it
 * Return: true and *@host, or false.
 */
bool mm_window_host(struct uiommu_mm *mm, uint64_t uaddr, uint64_t *host)
{
	struct window_extent *e;

	if (!atomic_load_explicit(&uiommu_window_size, memory_order_acquire))
		return false;
	uiommu_down_read(&window_lock);
	e = window_find_user(mm, uaddr);
	if (e)
		*host = atomic_load_explicit(&uiommu_window_base, memory_order_relaxed) + e->off +
			(uaddr - e->uaddr);
	uiommu_up_read(&window_lock);
	return e;
}

/*
 * Applies @dead (kill) or removal (release) to the part of every extent of @mm that stands for
 * [uaddr, end). Splitting an extent needs room for up to two more; when there is none, a kill
 * kills the whole extent (more EFAULT than needed, never less) and a release keeps it whole
 * (its window pages stay taken until the mm goes).
 */
static void window_cut(struct uiommu_mm *mm, uint64_t uaddr, uint64_t end, bool kill)
{
	bool room = !window_grow(2);

	for (size_t i = 0; i < nr; i++) {
		struct window_extent *e = &extents[i], head, tail;
		uint64_t lo, hi;

		if (e->mm != mm || e->uaddr >= end || e->uaddr + e->len <= uaddr ||
		    (kill && e->dead))
			continue;
		lo = e->uaddr > uaddr ? e->uaddr : uaddr;
		hi = e->uaddr + e->len < end ? e->uaddr + e->len : end;
		if (!room && (lo != e->uaddr || hi != e->uaddr + e->len)) {
			if (kill)
				e->dead = true;
			continue;
		}
		head = *e;
		head.len = lo - e->uaddr;
		tail = *e;
		tail.off = e->off + (hi - e->uaddr);
		tail.uaddr = hi;
		tail.len = e->uaddr + e->len - hi;
		/* The middle, [lo, hi), goes (release) or stays dead (kill). */
		e->off += lo - e->uaddr;
		e->uaddr = lo;
		e->len = hi - lo;
		e->dead = true;
		if (tail.len)
			window_insert_at(i + 1, &tail);
		if (head.len) {
			window_insert_at(i, &head);
			i++;
		}
		if (!kill) {
			window_remove_at(i);
			i--;
		}
		room = !window_grow(2);
	}
}

/**
 * mm_window_kill() - @mm's [uaddr, uaddr + len) no longer holds the pages that were pinned
 * (the owner remapped it): their window addresses answer EFAULT from now on, and a new pin of
 * the range gets new ones. Never fails.
 */
void mm_window_kill(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len)
{
	if (!atomic_load_explicit(&uiommu_window_size, memory_order_acquire))
		return;
	uiommu_down_write(&window_lock);
	window_cut(mm, uaddr, uaddr + len, true);
	uiommu_up_write(&window_lock);
}

/**
 * mm_window_release() - nothing pins @mm's [uaddr, uaddr + len) any more: its window pages,
 * live or dead, are free for other runs. Never fails.
 */
void mm_window_release(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len)
{
	if (!atomic_load_explicit(&uiommu_window_size, memory_order_acquire))
		return;
	uiommu_down_write(&window_lock);
	window_cut(mm, uaddr, uaddr + len, false);
	uiommu_up_write(&window_lock);
}

/* mm_window_release() of everything @mm has: it is being freed. */
void mm_window_release_all(struct uiommu_mm *mm)
{
	if (!atomic_load_explicit(&uiommu_window_size, memory_order_acquire))
		return;
	uiommu_down_write(&window_lock);
	for (size_t i = nr; i--;)
		if (extents[i].mm == mm)
			window_remove_at(i);
	uiommu_up_write(&window_lock);
}

/* Does @mm have an extent, live or dead, that meets [uaddr, uaddr + len)? */
bool mm_window_any(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len)
{
	bool any = false;

	if (!atomic_load_explicit(&uiommu_window_size, memory_order_acquire))
		return false;
	uiommu_down_read(&window_lock);
	for (size_t i = 0; i < nr && !any; i++)
		any = extents[i].mm == mm && extents[i].uaddr < uaddr + len &&
		      extents[i].uaddr + extents[i].len > uaddr;
	uiommu_up_read(&window_lock);
	return any;
}

/* The live extent that holds window byte @off, or NULL. */
static struct window_extent *window_find_host(uint64_t off)
{
	size_t lo = 0, hi = nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (off < extents[mid].off)
			hi = mid;
		else if (off - extents[mid].off >= extents[mid].len)
			lo = mid + 1;
		else
			return extents[mid].dead ? NULL : &extents[mid];
	}
	return NULL;
}

/*
 * The most ranges one window copy hands the owner (the kernel's UIO_FASTIOV: an iovec array
 * it keeps on its stack); a run over more extents than that takes more copies.
 */
#define WINDOW_MOVE_RANGES 8

/*
 * Moves up to @len bytes between @local and window address @w (to it when @to_window): as far
 * as the run of live extents of one owner that follow each other in the window from @w goes,
 * in one copy of the owner's (mm_remote_copyv(): one system call, one check that the owner is
 * still there), with one range per run of its addresses. A run of window addresses is what the
 * DMA engine hands over as physically contiguous; its extents (separate pins, or an extent
 * split by a kill) need not be contiguous in the owner. A dead extent ends the run, so what
 * comes before it moves first. Return: the bytes moved (> 0), or -EFAULT. Holds window_lock
 * for read.
 */
static ssize_t window_move(uintptr_t w, void *local, size_t len, bool to_window)
{
	uint64_t off = w - atomic_load_explicit(&uiommu_window_base, memory_order_relaxed);
	struct window_extent *e = window_find_host(off);
	struct iovec remote[WINDOW_MOVE_RANGES];
	struct uiommu_mm *mm;
	unsigned int n = 0;
	size_t moved = 0;
	int rc;

	if (!e)
		return -EFAULT;
	mm = e->mm;
	for (;;) {
		uint64_t uaddr = e->uaddr + (off - e->off);
		size_t chunk = len - moved;

		if (chunk > e->off + e->len - off)
			chunk = e->off + e->len - off;
		if (n && (uintptr_t)remote[n - 1].iov_base + remote[n - 1].iov_len == uaddr)
			remote[n - 1].iov_len += chunk;
		else
			remote[n++] = (struct iovec){ (void *)(uintptr_t)uaddr, chunk };
		moved += chunk;
		off += chunk;
		if (moved == len || ++e == extents + nr || e->off != off || e->mm != mm ||
		    e->dead)
			break;
		if (n == WINDOW_MOVE_RANGES && (uintptr_t)remote[n - 1].iov_base +
							   remote[n - 1].iov_len != e->uaddr)
			break;
	}
	rc = mm_remote_copyv(mm, local, remote, n, moved, to_window);
	return rc ? rc : (ssize_t)moved;
}

/**
 * uiommu_window_copy() - uiommu_host_copy() where a side is in the window
 * Each window side is read or written in its owner's memory, extent by extent; a copy from
 * the window to the window goes through a bounce buffer. A fault part way (a dead extent, a
 * window page no extent holds, the owner gone, a local side unmapped) leaves a prefix copied.
 * Return: 0 or -EFAULT.
 */
int uiommu_window_copy(void *dst, const void *src, size_t len)
{
	bool wdst = uiommu_window_has(dst), wsrc = uiommu_window_has(src);
	size_t done = 0;
	int rc = 0;

	uiommu_down_read(&window_lock);
	while (done < len) {
		char bounce[512];
		size_t chunk = len - done;
		ssize_t n;

		if (wdst && wsrc) {
			chunk = chunk < sizeof(bounce) ? chunk : sizeof(bounce);
			n = window_move((uintptr_t)src + done, bounce, chunk, false);
			if (n > 0)
				n = window_move((uintptr_t)dst + done, bounce, (size_t)n, true);
		} else if (wdst) {
			n = window_move((uintptr_t)dst + done, (char *)src + done, chunk, true);
		} else {
			n = window_move((uintptr_t)src + done, (char *)dst + done, chunk, false);
		}
		if (n < 0) {
			rc = -EFAULT;
			break;
		}
		done += (size_t)n;
	}
	uiommu_up_read(&window_lock);
	return rc;
}
