// SPDX-License-Identifier: MIT
/*
 * Another process's address space: the mm of a process whose calls on a shared context this
 * process serves (docs/processes.md).
 *
 * The client hands over three fds it opened on itself: a pidfd, /proc/self/mem and
 * /proc/self/maps. A process may always open its own; the last two are bound to its mm_struct
 * rather than to its pid, so they never reach a process that later reuses the pid and need no
 * ptrace permission of ours; once the process is gone they read nothing.
 *
 * Copies (the ioctl's arguments and replies, ACCESS_RW buffers) are process_vm_readv/writev
 * at the client's address: exact, coherent, one system call each, and they check the page
 * permissions as the kernel's copy_to_user() does (a reply to a read-only page is EFAULT).
 * A client that hands over its life word (a robust futex a thread of its own that only waits
 * owns, remote_direct.c) is reached through that thread, by its tid, and the word is loaded
 * before and after each copy: the thread never execs, so a copy reaches the client's original
 * mm or nothing (the essay before remote_life()). A client without one is named by its pid,
 * and a check guards the copies (remote_same_mm()): a read counts only if the client's mm was
 * still alive after it, a write is made only if it is before. Outside the client's own calls
 * the check is a one-byte read through its mem fd, which is bound to its mm_struct: nothing
 * once the client exited (even as a zombie), once its pid went to another process, and after
 * an exec, which keeps the pid but not the memory the old image pinned. Inside its own call
 * (the client waits for the reply) its pidfd is enough and cheaper; an exec by another thread
 * of the client during the call is not seen there. What is left there is an exit or exec
 * completing between the check and the system call, and an exec while another process shares
 * the old mm (clone(CLONE_VM) without CLONE_THREAD keeps it alive: the check then passes, and
 * the pid names the new image). Where the host refuses them (Yama's ptrace scope) the mem fd
 * serves instead, which writes through read-only private pages as the kernel's
 * /proc/<pid>/mem does (FOLL_FORCE).
 *
 * Pins and host addresses. What a domain maps and an access reads through is a host address of
 * this process. A page of the client's that lies in a shared mapping of a file (a memfd, a
 * shared anonymous mapping inherited across fork, which /proc/<pid>/maps shows as the same
 * dev:ino in both) is a host address here when this process maps the same file at the same
 * offset shared: that is the page itself, coherent both ways. fault_in() (every pin) reads the
 * client's maps, checks every page is mapped with the access asked, and records for each
 * shared run the host address it has here (xlate, replacing what it held for those addresses);
 * host_ptr() answers from that record. Every other page (private memory, or a shared file we
 * do not map) has no address of ours; a pin (remote_pin(), this mm's pin op) gives it a window
 * address (window.c): a stand-in that no plain access can use, which the host copies turn
 * into a copy at the client's address, coherent while the client lives and EFAULT once it is
 * gone. A page keeps its window address while anything pins it, and the last unpin frees it
 * (remote_unpin()); both run under mr->lock, so an unpin's check of the ledger never frees an
 * address a pin is between making and counting. A fault_in that finds a shared page of ours
 * where a pinned private page was (the client remapped it) kills the old window address:
 * EFAULT there from then on. A private page replaced by another private page looks the same
 * in the maps and is not seen here (docs/processes.md).
 *
 * Locking: mr->lock protects runs and the maps fd's file position; it nests the mm's pin_lock
 * and the window's lock inside it, and nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/capable.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "mm/mm.h"
#include "mm/window.h"
#include "uiommu/uiommu.h"

#define REMOTE_LIFE_LEN 4096 /* the life word's page (remote_direct.c's DIRECT_PAGE_LEN) */

struct mm_remote_run {
	uint64_t start, end; /* client addresses [start, end) */
	uint64_t host;       /* our address of start */
};

struct mm_remote {
	struct uiommu_mm mm;
	int pidfd;                /* the client; constant */
	int mem_fd, maps_fd;      /* the client's own /proc/self/{mem,maps}; constant */
	/*
	 * The client's life word, read-only, or NULL; set once (a client whose first HELLO came
	 * from a fork handler brings it with a later one, uiommu_mm_remote_life_late()), under
	 * life_lock, after life_tid, with release: a reader that loads it (acquire) sees its tid.
	 */
	_Atomic(const _Atomic uint32_t *) life;
	uint32_t life_tid;        /* what it says while the client lives: its thread */
	struct uiommu_mutex life_lock; /* serializes the late setters of life; a leaf */
	struct uiommu_mutex lock; /* protects runs, nr_runs, the maps fd's position; before
				   * mm.pin_lock and window.c's window_lock */
	struct mm_remote_run *runs;
	size_t nr_runs, cap_runs;
};

static const struct uiommu_mm_ops remote_ops;

static struct mm_remote *to_mm_remote(struct uiommu_mm *mm)
{
	return container_of(mm, struct mm_remote, mm);
}

/* Is the client still the process its pid names? (A live or zombie process keeps its pid.) */
static bool remote_alive(struct mm_remote *mr)
{
	return !sys_pidfd_alive(mr->pidfd);
}

/* The mm whose own call this thread runs for it (uiommu_mm_remote_calling()), or NULL. */
static _Thread_local struct uiommu_mm *remote_caller;

void uiommu_mm_remote_calling(struct uiommu_mm *mm)
{
	remote_caller = mm;
}

/*
 * Is the client's pid still the address space we were handed? Inside the client's own call (it
 * waits for our reply) a live pid is enough: the pidfd, one cheap system call. Anywhere else (a
 * device's DMA through a window address, another process's ACCESS_RW) one byte read through
 * the client's own mem fd, which is bound to that mm_struct: nothing once the process exited
 * (even as a zombie), and nothing after an exec, which keeps the pid (and a pidfd's answer) but
 * gives it a new address space, where the old image's pins must not reach.
 *
 * The byte is at address 0, which the kernel does not map for a process (mmap_min_addr), and
 * the answer is in how the read fails. The mem fd's read takes a user reference on its mm
 * first (mmget_not_zero()) and reads nothing at all, 0, when the mm has no users left: the
 * process exited, or exec'd and dropped it. Only with the mm alive does it look at the
 * address: EIO where nothing is mapped, the byte where something is (a root client that
 * mapped page 0). So 1 or EIO say "the same mm", exactly as a byte at a mapped address would,
 * and every other answer (0, ENOMEM) says "not", failing closed. What it does not close is the
 * gap between the check and the copy's own system call, which names the pid: an exec that
 * completes inside it (the server preempted there for the milliseconds a new image takes to
 * start) lets the write reach the new image. test_processes's exec tests, with
 * UIOMMU_REMOTE_LIFE=0, hit it about once in 12-15 runs on a loaded 2-CPU VM.
 *
 * The life word (docs/processes.md, "The client's life word"). A client that can hands over
 * at its HELLO the page of its process's life word (remote_direct.c's direct_life: a robust
 * futex that a thread of the client which only waits owns, holding that thread's tid). The
 * kernel marks it FUTEX_OWNER_DIED when that thread ends: at the process's exit, in exit_mm(),
 * before the process is a zombie and so before the pid or the tid can be reused; and at any
 * exec, raw system call or not, where de_thread() kills and releases every other thread
 * before exec_mmap() puts the new mm in place (an exec by that thread itself, which never
 * happens, would mark it in exec_mm_release(), also before). Then a copy:
 *   1. loads the word: not the tid it had at the HELLO, -EFAULT (the client exec'd or is
 *      going; no fallback: the old image is gone either way);
 *   2. makes its system call on the word's THREAD, by its tid, not on the client's pid;
 *   3. loads the word again: a read, or the write's report, counts only if it still lives.
 * Step 2 is what makes it sound. process_vm_readv/writev find the task by the id they are
 * given and take its mm (mm_access(), under its exec_update_lock; Linux v7.2's
 * mm/process_vm_access.c, kernel/fork.c, fs/exec.c). That thread never execs, so its mm is
 * the client's original one or, once it is exiting, none (ESRCH: -EFAULT here); after an exec
 * the thread is gone and its tid names no one. The permission check is the same as for the
 * pid (Yama's ptrace scope judges a thread by its group leader). However long we are preempted between 1 and 2,
 * the copy cannot reach the new image: it reaches the old one (harmless: it is being torn
 * down, and the kernel's pins would have kept writing to those pages) or nothing. Step 1 only
 * saves the system call for a client known gone; step 3 makes a copy that raced the end
 * report EFAULT, as the kernel's pinned DMA would still have succeeded but the data is lost
 * with the image. What is left is the tid reused by another process of our user between 1
 * and 2, which takes the kernel's pid allocator wrapping around pid_max in that gap: the same
 * residue as a pidfd's check of a reaped pid (remote_direct.c's, the other way round).
 *
 * Cost: two loads of a page both processes map, where the mem fd's check was a system call
 * (~0.25 us, bench/README.md case f). A client that shares an mm with another process
 * (clone(CLONE_VM) without CLONE_THREAD) and execs is seen too: its life thread is killed,
 * where the mem fd's mm outlived the exec. A hostile client can keep the word saying "alive"
 * (another process of its own mapping the page writes the tid back), but the copy still names
 * that tid: the thread is gone, nothing is reached unless the tid was reused. Nor can it aim
 * the copies elsewhere with a word naming another process's thread: the word is taken only if
 * its tid is a thread of the client's pid at the HELLO (remote_life_map()). Clients without a word (an older wire, its setup failed, fail-nth,
 * UIOMMU_REMOTE_LIFE=0) keep the mem fd's check and its gap.
 */
/* Does the client's life word @life still name its thread @tid (a sequentially consistent load)? */
static bool remote_life(const _Atomic uint32_t *life, uint32_t tid)
{
	return atomic_load(life) == tid;
}

static atomic_ulong remote_life_copies; /* uiommu_remote_life_copies() */

/**
 * uiommu_life_copyv() - copy between our @local (@len bytes) and the ranges @remote (@n, in
 * order) of the process whose life word @word says @tid while it lives, aimed at that thread
 * The one copy into another process at its life word's thread, for both sides of the wire:
 * the serving side into a client (below) and a client's direct path into its server
 * (remote_direct.c). The word is loaded before the call and after it: a write reaches only
 * the process the word named (an exec ends that thread before it swaps the mm, so a call
 * after the load finds no mm at that tid), and a read counts only if it still names it.
 * Return: 0 when every byte moved; -EFAULT when the word no longer names its thread or the
 * copy was short; the host's -errno when it refused the call (-EPERM: Yama's ptrace scope).
 */
int uiommu_life_copyv(const _Atomic uint32_t *word, uint32_t tid, void *local, size_t len,
		      const struct iovec *remote, unsigned long n, bool write)
{
	struct iovec l = { .iov_base = local, .iov_len = len };
	ssize_t got;

	if (atomic_load(word) != tid)
		return -EFAULT;
	got = write ? process_vm_writev((pid_t)tid, &l, 1, remote, n, 0) :
		      process_vm_readv((pid_t)tid, &l, 1, remote, n, 0);
	if (got < 0)
		return errno == EPERM || errno == ENOSYS ? -errno : -EFAULT;
	return got == (ssize_t)len && atomic_load(word) == tid ? 0 : -EFAULT;
}

/**
 * uiommu_remote_life_copies() - how many copies to or from clients' memory this process
 * checked by their life words alone (docs/processes.md, "The client's life word")
 */
UIOMMU_EXPORT unsigned long uiommu_remote_life_copies(void)
{
	return atomic_load_explicit(&remote_life_copies, memory_order_relaxed);
}

/* Without a life word: the pidfd inside the client's own call, else the mem fd's byte. */
static bool remote_same_mm(struct mm_remote *mr)
{
	ssize_t got;
	char byte;

	if (remote_caller == &mr->mm)
		return remote_alive(mr);
	got = sys_pread(mr->mem_fd, &byte, 1, 0);
	return got == 1 || (got < 0 && errno == EIO);
}

/*
 * One copy between our @local and the client's @n ranges @remote (@len bytes in all, taken in
 * order): process_vm_readv/writev, which check the client's page permissions as a user access
 * does; where the host denies them (Yama's ptrace scope) the client's own mem fd, which does
 * not. One call and one check for all the ranges, however many. Whole or -EFAULT.
 *
 * With a life word the call names the word's thread, not the client's pid, and the word is
 * loaded before and after it (the essay's "The life word"); without one the mem fd's check
 * goes before a write and after a read.
 */
static int remote_copyv(struct mm_remote *mr, void *local, const struct iovec *remote,
			unsigned int n, size_t len, bool write)
{
	const _Atomic uint32_t *life = atomic_load_explicit(&mr->life, memory_order_acquire);
	struct iovec l = { .iov_base = local, .iov_len = len };
	char *at = local;
	ssize_t got;
	int rc;

	if (!len)
		return 0;
	if (life) {
		if (!remote_life(life, mr->life_tid))
			return -EFAULT;
		atomic_fetch_add_explicit(&remote_life_copies, 1, memory_order_relaxed);
		rc = uiommu_life_copyv(life, mr->life_tid, local, len, remote, n, write);
		if (rc != -EPERM)
			return rc ? -EFAULT : 0;
	} else {
		/* A write must not reach another mm behind the pid (exec, reuse): check first. */
		if (write && !remote_same_mm(mr))
			return -EFAULT;
		got = write ? process_vm_writev(mr->mm.pid, &l, 1, remote, n, 0) :
			      process_vm_readv(mr->mm.pid, &l, 1, remote, n, 0);
		if (got == (ssize_t)len)
			return write || remote_same_mm(mr) ? 0 : -EFAULT;
		if (got >= 0 || errno != EPERM)
			return -EFAULT;
	}
	for (unsigned int i = 0; i < n; i++) {
		uint64_t uaddr = (uintptr_t)remote[i].iov_base;
		size_t done = 0;

		while (done < remote[i].iov_len) {
			size_t want = remote[i].iov_len - done;

			got = write ? sys_pwrite(mr->mem_fd, at + done, want, (off_t)(uaddr + done)) :
				      sys_pread(mr->mem_fd, at + done, want, (off_t)(uaddr + done));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				return -EFAULT;
			done += (size_t)got;
		}
		at += done;
	}
	return 0;
}

/* remote_copyv() of one range. */
static int remote_copy(struct mm_remote *mr, void *local, uint64_t uaddr, size_t len, bool write)
{
	struct iovec r = { .iov_base = (void *)(uintptr_t)uaddr, .iov_len = len };

	return remote_copyv(mr, local, &r, 1, len, write);
}

/**
 * mm_remote_copyv() - the window's copy (window.c): between our @local and @n ranges of @mm's
 * memory, @len bytes in all, with one system call and one check of the owner
 * Return: 0, or -EFAULT (not another process's mm; the owner gone; a range not mapped or not
 * permitted): some bytes may have moved.
 */
int mm_remote_copyv(struct uiommu_mm *mm, void *local, const struct iovec *remote, unsigned int n,
		    size_t len, bool write)
{
	if (mm->ops != &remote_ops)
		return -EFAULT;
	return remote_copyv(to_mm_remote(mm), local, remote, n, len, write);
}

static int remote_copy_from(struct uiommu_mm *mm, void *dst, uint64_t uaddr, size_t len)
{
	return remote_copy(to_mm_remote(mm), dst, uaddr, len, false);
}

static int remote_copy_to(struct uiommu_mm *mm, uint64_t uaddr, const void *src, size_t len)
{
	return remote_copy(to_mm_remote(mm), (void *)src, uaddr, len, true);
}

/* Calls @fn for each mapping of the client, in address order, until it returns non-zero. */
static int remote_maps_walk(struct mm_remote *mr, int (*fn)(const struct uiommu_vma *, void *),
			    void *arg)
{
	lockdep_assert_held(&mr->lock);
	if (uiommu_should_fail() || lseek(mr->maps_fd, 0, SEEK_SET))
		return -EFAULT;
	return uiommu_maps_walk_fd(mr->maps_fd, fn, arg) == -ENOMEM ? -ENOMEM : 0;
}

struct remote_fault_in {
	struct mm_remote *mr;
	struct uiommu_maps *self; /* our shared file mappings */
	uint64_t next, end;       /* the part of the range not yet seen */
	bool write;
	bool pin;                 /* a pin: private runs get window addresses */
	int rc;
};

/* Records that client [start, end) is our [host, ...); replaces what overlapped it. */
static int remote_runs_set(struct mm_remote *mr, uint64_t start, uint64_t end, uint64_t host)
{
	size_t i, j;

	for (i = 0, j = 0; i != mr->nr_runs; i++) {
		struct mm_remote_run *r = &mr->runs[i];

		if (r->end > start && r->start < end)
			continue;
		mr->runs[j++] = *r;
	}
	mr->nr_runs = j;
	if (!host)
		return 0;
	if (mr->nr_runs == mr->cap_runs) {
		size_t cap = mr->cap_runs ? mr->cap_runs * 2 : 8;
		struct mm_remote_run *runs = uiommu_realloc_array(mr->runs, cap, sizeof(*runs));

		if (!runs)
			return -ENOMEM;
		mr->runs = runs;
		mr->cap_runs = cap;
	}
	mr->runs[mr->nr_runs++] = (struct mm_remote_run){ start, end, host };
	return 0;
}

static int remote_fault_in_vma(const struct uiommu_vma *v, void *arg)
{
	struct remote_fault_in *f = arg;
	uint64_t lo, hi, host = 0;

	if (v->end <= f->next)
		return 0;
	if (v->start > f->next || v->perms[0] != 'r' || (f->write && v->perms[1] != 'w'))
		return -EFAULT; /* a hole, or not the access asked for */
	lo = f->next;
	hi = v->end < f->end ? v->end : f->end;
	/* A shared page of a file we map too is the page itself; else a window address. */
	if (v->perms[3] != 's' || !v->ino ||
	    !uiommu_maps_host_of(f->self, v->dev, v->ino, v->offset + (lo - v->start), hi - lo,
				 &host))
		host = 0;
	f->rc = remote_runs_set(f->mr, lo, hi, host);
	if (f->rc)
		return f->rc;
	/*
	 * A page of ours now where a private page was pinned: the client remapped it, and the
	 * pinned page is gone. A private page keeps the window address it has (we cannot tell
	 * whether it is still the page that was pinned: docs/processes.md) or, for a pin, gets one.
	 */
	if (host)
		mm_window_kill(&f->mr->mm, lo, hi - lo);
	else if (f->pin)
		f->rc = mm_window_cover(&f->mr->mm, lo, hi - lo);
	if (f->rc)
		return f->rc;
	f->next = hi;
	return f->next == f->end ? 1 : 0;
}

/* Checks [uaddr, + npages) against the client's maps and records host addresses (mr->lock). */
static int remote_fault_in_locked(struct mm_remote *mr, struct uiommu_maps *self, uint64_t uaddr,
				  size_t npages, bool write, bool pin)
{
	struct remote_fault_in f = {
		.mr = mr, .self = self, .next = uaddr, .write = write, .pin = pin,
	};
	int rc;

	lockdep_assert_held(&mr->lock);
	f.end = uaddr + npages * uiommu_page_size;
	rc = remote_maps_walk(mr, remote_fault_in_vma, &f);
	if (f.rc)
		return f.rc;
	if (rc)
		return rc;
	return f.next == f.end ? 0 : -EFAULT;
}

static int remote_self_maps(struct uiommu_maps **self)
{
	int rc = uiommu_maps_load(self);

	return rc == -ENOMEM ? -ENOMEM : rc ? -EFAULT : 0;
}

/*
 * Frees the window addresses of the pages of [page_index, + npages) that nothing pins any
 * more (mr->lock, which every pin and unpin of this mm holds: no pin is between its window
 * address and its count).
 */
static void remote_window_trim(struct mm_remote *mr, uint64_t page_index, uint64_t npages)
{
	uint64_t p, run = 0;

	lockdep_assert_held(&mr->lock);
	if (!mm_window_any(&mr->mm, page_index << uiommu_page_shift,
			   npages << uiommu_page_shift))
		return;
	for (p = page_index; p <= page_index + npages; p++) {
		if (p < page_index + npages && !uiommu_mm_pin_count(&mr->mm, p)) {
			run++;
			continue;
		}
		if (run)
			mm_window_release(&mr->mm, (p - run) << uiommu_page_shift,
					  run << uiommu_page_shift);
		run = 0;
	}
}

/*
 * fault_in and pin, which differ only in what a pin adds: the checks of the client's maps
 * (with window addresses for the private runs on a pin), then the ledger, all under mr->lock
 * so that an unpin's trim never frees a window address a pin is about to count.
 */
static int remote_fault_in_pin(struct mm_remote *mr, uint64_t uaddr, size_t npages, bool write,
			       bool pin)
{
	uint64_t page_index = uaddr >> uiommu_page_shift;
	struct uiommu_maps *self;
	int rc;

	rc = remote_self_maps(&self);
	if (rc)
		return rc;
	uiommu_mutex_lock(&mr->lock);
	rc = remote_fault_in_locked(mr, self, uaddr, npages, write, pin);
	if (pin && !rc)
		rc = uiommu_mm_ledger_pin(&mr->mm, page_index, npages);
	if (pin && rc)
		remote_window_trim(mr, page_index, npages);
	uiommu_mutex_unlock(&mr->lock);
	uiommu_maps_free(self);
	return rc;
}

static int remote_fault_in(struct uiommu_mm *mm, uint64_t uaddr, size_t npages, bool write)
{
	return remote_fault_in_pin(to_mm_remote(mm), uaddr, npages, write, false);
}

static int remote_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages, bool write)
{
	return remote_fault_in_pin(to_mm_remote(mm), page_index << uiommu_page_shift, npages,
				   write, true);
}

static void remote_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages)
{
	struct mm_remote *mr = to_mm_remote(mm);

	uiommu_mutex_lock(&mr->lock);
	uiommu_mm_ledger_unpin(mm, page_index, npages);
	remote_window_trim(mr, page_index, npages);
	uiommu_mutex_unlock(&mr->lock);
}

static void *remote_host_ptr(struct uiommu_mm *mm, uint64_t uaddr)
{
	struct mm_remote *mr = to_mm_remote(mm);
	uint64_t host = 0;

	uiommu_mutex_lock(&mr->lock);
	for (size_t i = 0; i != mr->nr_runs; i++) {
		struct mm_remote_run *r = &mr->runs[i];

		if (uaddr >= r->start && uaddr < r->end) {
			host = r->host + (uaddr - r->start);
			break;
		}
	}
	if (!host)
		mm_window_host(mm, uaddr, &host);
	uiommu_mutex_unlock(&mr->lock);
	return (void *)(uintptr_t)host;
}

struct uiommu_vma_prot {
	uint64_t uaddr;
	unsigned int prot;
	bool found;
};

static int remote_vma_prot_fn(const struct uiommu_vma *v, void *arg)
{
	struct uiommu_vma_prot *q = arg;

	if (q->uaddr < v->start || q->uaddr >= v->end)
		return 0;
	q->prot = (v->perms[0] == 'r' ? PROT_READ : 0) | (v->perms[1] == 'w' ? PROT_WRITE : 0) |
		  (v->perms[2] == 'x' ? PROT_EXEC : 0);
	q->found = true;
	return 1;
}

static int remote_vma_prot(struct uiommu_mm *mm, uint64_t uaddr, unsigned int *prot)
{
	struct mm_remote *mr = to_mm_remote(mm);
	struct uiommu_vma_prot q = { .uaddr = uaddr };

	uiommu_mutex_lock(&mr->lock);
	remote_maps_walk(mr, remote_vma_prot_fn, &q);
	uiommu_mutex_unlock(&mr->lock);
	if (!q.found)
		return -EFAULT;
	*prot = q.prot;
	return 0;
}

static void remote_release(struct uiommu_mm *mm)
{
	struct mm_remote *mr = to_mm_remote(mm);
	const _Atomic uint32_t *life = atomic_load_explicit(&mr->life, memory_order_relaxed);

	/* Every pin was uncharged by the iopt_pages that held a reference. */
	WARN_ON(atomic_load(&mm->pinned_vm) || atomic_load(&mm->locked_vm));
	mm_pasid_drop(mm);
	mm_window_release_all(mm);
	sys_close(mr->pidfd);
	sys_close(mr->mem_fd);
	sys_close(mr->maps_fd);
	if (life)
		sys_munmap((void *)life, REMOTE_LIFE_LEN);
	uiommu_mutex_destroy(&mr->lock);
	uiommu_mutex_destroy(&mr->life_lock);
	uiommu_mutex_destroy(&mm->pin_lock);
	uiommu_free(mr->runs);
	uiommu_free(mr);
}

/*
 * What the kernel would read of the client as the task that pins (account.c): its soft
 * RLIMIT_MEMLOCK and its capabilities, read from the process itself by pid, so the client
 * cannot claim more than it has; counted only if the pid still named the client afterwards.
 */
static rlim_t remote_memlock_limit(struct uiommu_mm *mm)
{
	struct rlimit rl;

	if (prlimit(mm->pid, RLIMIT_MEMLOCK, NULL, &rl) || !remote_alive(to_mm_remote(mm)))
		return 0;
	return rl.rlim_cur;
}

static bool remote_capable(struct uiommu_mm *mm, int cap)
{
	return uiommu_capable_pid(mm->pid, cap) && remote_alive(to_mm_remote(mm));
}

static const struct uiommu_mm_ops remote_ops = {
	.copy_from = remote_copy_from,
	.copy_to = remote_copy_to,
	.fault_in = remote_fault_in,
	.pin = remote_pin,
	.unpin = remote_unpin,
	.host_ptr = remote_host_ptr,
	.vma_prot = remote_vma_prot,
	.memlock_limit = remote_memlock_limit,
	.capable = remote_capable,
	.host_linear = false,
	.release = remote_release,
};

/*
 * The client's life word, from @life_fd (its page's memfd; taken): mapped read-only and its
 * value while the client lives noted, or nothing (no fd, a failure, a word that does not name
 * a live thread of the client's, which the copies would be made on), which leaves the copies
 * to the mem fd's check.
 */
bool uiommu_life_word_names(const _Atomic uint32_t *word, int pid, uint32_t tid)
{
	char task[64];
	int dir;

	if (!tid || (tid & (FUTEX_OWNER_DIED | FUTEX_WAITERS)) || atomic_load(word) != tid)
		return false;
	snprintf(task, sizeof(task), "/proc/%d/task/%u", pid, tid);
	dir = sys_openat(AT_FDCWD, task, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (dir < 0)
		return false;
	sys_close(dir);
	return true;
}

bool uiommu_memfd_sealed_len(int fd, uint64_t len)
{
	struct stat st;
	int seals;

	if (uiommu_should_fail() || sys_fstat(fd, &st) || (uint64_t)st.st_size != len)
		return false;
	seals = sys_fcntl(fd, F_GET_SEALS, 0);
	return seals >= 0 && (seals & F_SEAL_SHRINK);
}

/* Sets @mr's life word from @life_fd (taken) unless it has one: see uiommu_life_word_names(). */
static void remote_life_map(struct mm_remote *mr, int life_fd)
{
	const _Atomic uint32_t *word;
	uint32_t val;

	if (life_fd < 0)
		return;
	word = MAP_FAILED;
	/* A client's word is its claim: an empty or shrinkable page would SIGBUS us. */
	if (uiommu_memfd_sealed_len(life_fd, REMOTE_LIFE_LEN) && !uiommu_should_fail())
		word = sys_mmap(NULL, REMOTE_LIFE_LEN, PROT_READ, MAP_SHARED, life_fd, 0);
	sys_close(life_fd);
	if (word == MAP_FAILED)
		return;
	val = atomic_load(word);
	if (uiommu_life_word_names(word, mr->mm.pid, val)) {
		uiommu_mutex_lock(&mr->life_lock);
		if (!atomic_load_explicit(&mr->life, memory_order_relaxed)) {
			mr->life_tid = val;
			atomic_store_explicit(&mr->life, word, memory_order_release);
			word = NULL;
		}
		uiommu_mutex_unlock(&mr->life_lock);
	}
	if (word)
		sys_munmap((void *)word, REMOTE_LIFE_LEN);
}

/**
 * uiommu_mm_remote_life_late() - a later HELLO of @mm's client brought its life word's page
 * (@life_fd, taken): its first one came from a fork handler, which cannot start the word's
 * thread (remote.c). Taken as at the first HELLO, if @mm has none yet. Until then, and when
 * it is refused, the copies keep the mem fd's check: a forked child's memory is reached by
 * none before its own first call, which is what brings the word (remote_conn_revive()).
 */
void uiommu_mm_remote_life_late(struct uiommu_mm *mm, int life_fd)
{
	struct mm_remote *mr = to_mm_remote(mm);

	if (atomic_load_explicit(&mr->life, memory_order_acquire)) {
		sys_close(life_fd);
		return;
	}
	remote_life_map(mr, life_fd);
}

struct uiommu_mm *uiommu_mm_remote_new(int pid, int pidfd, int mem_fd, int maps_fd, int life_fd)
{
	struct mm_remote *mr = uiommu_zalloc(sizeof(*mr));

	if (!mr) {
		sys_close(pidfd);
		sys_close(mem_fd);
		sys_close(maps_fd);
		if (life_fd >= 0)
			sys_close(life_fd);
		return ERR_PTR(-ENOMEM);
	}
	mr->mm.ops = &remote_ops;
	atomic_init(&mr->mm.refs, 1);
	mr->mm.pid = pid;
	uiommu_mutex_init(&mr->mm.pin_lock);
	interval_tree_init(&mr->mm.pinned);
	mr->pidfd = pidfd;
	mr->mem_fd = mem_fd;
	mr->maps_fd = maps_fd;
	uiommu_fd_keep(pidfd);
	uiommu_fd_keep(mem_fd);
	uiommu_fd_keep(maps_fd);
	uiommu_mutex_init(&mr->lock);
	uiommu_mutex_init(&mr->life_lock);
	remote_life_map(mr, life_fd);
	return &mr->mm;
}

int uiommu_mm_remote_pidfd(struct uiommu_mm *mm)
{
	return to_mm_remote(mm)->pidfd;
}

static _Atomic(uiommu_mm_remote_status_fn) remote_status_fn;

void uiommu_mm_remote_status_set(uiommu_mm_remote_status_fn fn)
{
	atomic_store(&remote_status_fn, fn);
}

bool uiommu_mm_remote_status(int pid, uint64_t *pinned_vm, uint64_t *locked_vm)
{
	uiommu_mm_remote_status_fn fn = atomic_load(&remote_status_fn);

	if (pinned_vm)
		*pinned_vm = *locked_vm = 0;
	return fn ? fn(pid, pinned_vm, locked_vm) : false;
}

/**
 * uiommu_mm_remote_getfd() - a copy in this process of the fd @fd of @mm's process
 * (pidfd_getfd(): the kernel checks we may trace it, as it does for process_vm_readv)
 * Return: the new fd (O_CLOEXEC), or -EBADF.
 */
int uiommu_mm_remote_getfd(struct uiommu_mm *mm, int fd)
{
	struct mm_remote *mr = to_mm_remote(mm);
	int local;

	if (mm->ops != &remote_ops || fd < 0)
		return -EBADF;
	local = sys_pidfd_getfd(mr->pidfd, fd, 0);
	return local < 0 ? -EBADF : local;
}

void uiommu_mm_remote_forget(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len)
{
	uint64_t first = uaddr & ~(uiommu_page_size - 1), end;

	if (mm->ops != &remote_ops || !len || check_add_overflow(uaddr, len, &end))
		return;
	mm_window_kill(mm, first, end - first);
}
