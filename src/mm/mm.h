/* SPDX-License-Identifier: MIT */
/*
 * The address-space object: uiommu's stand-in for the kernel's struct mm_struct.
 *
 * Every byte of user memory that uiommu reads or writes, and every page it pins, is reached
 * through a struct uiommu_mm. No other code may dereference a user pointer: user addresses are
 * carried as uint64_t so the compiler refuses a stray dereference. The address spaces are the
 * calling process ("self", mm_self.c) and the processes a context is shared with, whose calls
 * the process that serves the context runs (mm_remote.c, docs/processes.md).
 *
 * The mm also keeps the pin ledger, the counterpart of a struct page's pin count: for every user
 * page it counts how many pin holders (iopt_pages) hold it. Nothing else here stands for
 * physical memory, so tests read the ledger where the kernel selftest reads page refcounts.
 *
 * Locking: pin_lock protects the ledger. It is a leaf lock: nothing is taken under it.
 */
#ifndef UIOMMU_MM_H
#define UIOMMU_MM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include <errno.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/interval_tree.h"
#include "lib/lockdep.h"
#include "mm/window.h"

struct uiommu_mm;

struct uiommu_mm_ops {
	/* Copy @len bytes; 0 or -EFAULT. A fault part way may leave @dst partly written. */
	int (*copy_from)(struct uiommu_mm *mm, void *dst, uint64_t uaddr, size_t len);
	int (*copy_to)(struct uiommu_mm *mm, uint64_t uaddr, const void *src, size_t len);
	/* Make sure each page of [uaddr, uaddr + npages * page size) is present (and writable if
	 * @write); 0 or -EFAULT. Says nothing about later unmaps by the owner. */
	int (*fault_in)(struct uiommu_mm *mm, uint64_t uaddr, size_t npages, bool write);
	/* A host pointer for an address that fault_in accepted, or NULL when the address space is
	 * not directly addressable (another process). */
	void *(*host_ptr)(struct uiommu_mm *mm, uint64_t uaddr);
	/* Optional: the PROT_READ/WRITE/EXEC bits of the mapping that holds @uaddr in *@prot;
	 * -EFAULT when nothing is mapped there (SVA's permission check, the kernel's vma). */
	int (*vma_prot)(struct uiommu_mm *mm, uint64_t uaddr, unsigned int *prot);
	/*
	 * Optional, as a pair: an mm whose host addresses exist only while pinned (another
	 * process's private pages, mm_remote.c) pins and unpins itself, around the ledger
	 * (uiommu_mm_ledger_pin()/unpin()); uiommu_mm_pin()/unpin() call these instead.
	 */
	int (*pin)(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages, bool write);
	void (*unpin)(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages);
	/*
	 * Optional, for an address space of another process: what the kernel reads of the task
	 * that pins (pages->source_task): its soft RLIMIT_MEMLOCK in bytes (RLIM_INFINITY for
	 * none; 0 when it cannot be read: a limit hidden is no room), and whether it holds @cap.
	 * Without them the calling process's own are used (account.c).
	 */
	rlim_t (*memlock_limit)(struct uiommu_mm *mm);
	bool (*capable)(struct uiommu_mm *mm, int cap);
	/* host_ptr(uaddr) is uaddr itself, so a run of user pages is a run of host memory. */
	bool host_linear;
	void (*release)(struct uiommu_mm *mm);
};

struct iommu_mm_data;

struct uiommu_mm {
	const struct uiommu_mm_ops *ops;
	atomic_int refs;          /* uiommu_mm_get()/uiommu_mm_put() */
	int pid;                  /* the owning process */
	struct uiommu_mutex pin_lock; /* protects pinned; leaf lock */
	struct interval_tree_root pinned; /* struct mm_pin_extent by page index; disjoint */
	uint64_t pinned_pages;    /* pages with a non-zero pin count */
	_Atomic uint64_t locked_vm; /* pages charged in the MM mode (account.h); VmLck's share */
	_Atomic uint64_t pinned_vm; /* pages pinned through any mode (account.h); VmPin */
	/*
	 * SVA (iommu/iommu-sva.c): the address space's PASID and SVA domains, made at its first
	 * bind and kept until the mm is freed (mm_pasid_drop()); iommu_sva_lock.
	 */
	struct iommu_mm_data *iommu_mm;
};

/* The mm is being freed: give its PASID back (iommu-sva.c; the kernel's mm_pasid_drop()). */
void mm_pasid_drop(struct uiommu_mm *mm);

/* The calling process's address space; a new reference each call. */
struct uiommu_mm *uiommu_mm_self(void);
/* In a forked child (its atfork handler): the next uiommu_mm_self() makes the child's own. */
void uiommu_mm_self_forget(void);
/* The calling process's mm counters (account.h), 0 while it has no mm; takes no reference. */
void uiommu_mm_self_vm(uint64_t *pinned_vm, uint64_t *locked_vm);
struct uiommu_mm *uiommu_mm_get(struct uiommu_mm *mm);
void uiommu_mm_put(struct uiommu_mm *mm);

/*
 * How this build reaches the calling process's own memory (mm_self.c): ThreadSanitizer builds
 * through process_vm_readv()/writev() (no trap at all); x86-64 through the exception-table
 * copy (uaccess_x86_64.S); elsewhere under a jump buffer.
 */
#if defined(__SANITIZE_THREAD__)
#define UIOMMU_UACCESS_VIA_SYSCALL 1
#elif defined(__x86_64__)
#define UIOMMU_UACCESS_EXTABLE 1
#endif

/*
 * A trap span, in which this thread's user accesses may fault safely (mm_self.c): the outermost
 * one unblocks SIGSEGV/SIGBUS with one system call and blocks again at its end what was blocked.
 * Every access opens one itself; an ioctl opens one around its whole run so that its copies
 * share that one call. Nests; balanced on every path.
 *
 * The usual span is inline and makes no call: this thread's mask is known to let the fault
 * signals through (the mask cache, which implies the handler is installed), and nothing was
 * unblocked that its end must block again. The state is mm_self.c's; only it writes it,
 * except for the depth, which a span counts here. Invariant: uiommu_uaccess_reblock_any is
 * false whenever the depth is 0.
 */
#ifndef UIOMMU_UACCESS_VIA_SYSCALL
#define UIOMMU_UACCESS_HIDDEN __attribute__((visibility("hidden")))
/* Nesting depth of this thread's trap spans (read by the fault handler). */
extern _Thread_local unsigned int uiommu_uaccess_depth UIOMMU_UACCESS_HIDDEN;
/* The mask cache: this thread's mask lets SIGSEGV and SIGBUS through, the trap is installed. */
extern _Thread_local volatile bool uiommu_uaccess_mask_open UIOMMU_UACCESS_HIDDEN;
/* The outermost span unblocked something: its end blocks it again (out of line). */
extern _Thread_local bool uiommu_uaccess_reblock_any UIOMMU_UACCESS_HIDDEN;
/* Some handler of the program blocks SIGSEGV or SIGBUS while it runs: no cache. Sticky. */
extern atomic_bool uiommu_uaccess_mask_untrusted UIOMMU_UACCESS_HIDDEN;
void uiommu_uaccess_begin_slow(void);
void uiommu_uaccess_end_slow(void);

static inline void uiommu_uaccess_begin(void)
{
	if (uiommu_uaccess_depth++)
		return;
	if (likely(uiommu_uaccess_mask_open) &&
	    likely(!atomic_load_explicit(&uiommu_uaccess_mask_untrusted, memory_order_relaxed)))
		return;
	uiommu_uaccess_begin_slow();
}

static inline void uiommu_uaccess_end(void)
{
	if (--uiommu_uaccess_depth)
		return;
	if (unlikely(uiommu_uaccess_reblock_any))
		uiommu_uaccess_end_slow();
}
#else
static inline void uiommu_uaccess_begin(void)
{
}

static inline void uiommu_uaccess_end(void)
{
}
#endif

/* Addresses no process can map: a copy there answers EFAULT at once instead of faulting. */
static inline bool uiommu_uaccess_range_bad(uint64_t uaddr, uint64_t len)
{
	uint64_t last;

	if (!len)
		return false;
	if (__builtin_add_overflow(uaddr, len - 1, &last))
		return true;
	return uaddr < 4096 || last >= ((uint64_t)1 << 47);
}

#ifdef UIOMMU_UACCESS_EXTABLE
/* The calling process's address space's ops (mm_self.c). */
extern const struct uiommu_mm_ops uiommu_mm_self_ops UIOMMU_UACCESS_HIDDEN;
/* uaccess_x86_64.S: 0, or non-zero when a load or a store faulted. */
size_t uiommu_uaccess_copy_x86(void *dst, const void *src, size_t len) UIOMMU_UACCESS_HIDDEN;

/*
 * A copy of the calling process's own memory inside a trap span (an ioctl's, the usual case):
 * the range check and the exception-table copy, with no indirect call and no wrapper. What
 * self_copy() does for the same copy, minus the span it would open. @user is the user side.
 */
static inline bool uiommu_uaccess_inline(const struct uiommu_mm *mm)
{
	return mm->ops == &uiommu_mm_self_ops && uiommu_uaccess_depth;
}

static inline int uiommu_uaccess_inline_copy(void *dst, const void *src, size_t len,
					     uint64_t user)
{
	if (uiommu_uaccess_range_bad(user, len))
		return -EFAULT;
	return uiommu_uaccess_copy_x86(dst, src, len) ? -EFAULT : 0;
}
#endif

/*
 * The same copy, not subject to fault injection: only for writing a reply after an
 * irreversible change, to a place the same ioctl has just written successfully. It fails only
 * if the caller unmapped its own argument meanwhile.
 */
static inline int __uiommu_copy_to_user(struct uiommu_mm *mm, uint64_t uaddr, const void *src,
					size_t len)
{
#ifdef UIOMMU_UACCESS_EXTABLE
	if (likely(uiommu_uaccess_inline(mm)))
		return uiommu_uaccess_inline_copy((void *)(uintptr_t)uaddr, src, len, uaddr);
#endif
	return mm->ops->copy_to(mm, uaddr, src, len);
}

/* Every user access is a fallible step for fault injection (lib/fail.h). */
static inline int uiommu_copy_from_user(struct uiommu_mm *mm, void *dst, uint64_t uaddr,
					size_t len)
{
	if (uiommu_should_fail())
		return -EFAULT;
#ifdef UIOMMU_UACCESS_EXTABLE
	if (likely(uiommu_uaccess_inline(mm)))
		return uiommu_uaccess_inline_copy(dst, (const void *)(uintptr_t)uaddr, len, uaddr);
#endif
	return mm->ops->copy_from(mm, dst, uaddr, len);
}

static inline int uiommu_copy_to_user(struct uiommu_mm *mm, uint64_t uaddr, const void *src,
				      size_t len)
{
	if (uiommu_should_fail())
		return -EFAULT;
	return __uiommu_copy_to_user(mm, uaddr, src, len);
}

/*
 * Pin [page_index, page_index + npages) (user page numbers, uaddr >> PAGE_SHIFT): faults the
 * pages in and adds one to each page's count in the ledger. All or nothing: -EFAULT or -ENOMEM
 * leave the ledger as it was.
 */
int uiommu_mm_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages, bool write);
void uiommu_mm_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages);
/* The ledger alone (no fault_in), for an mm's own pin and unpin ops; as above otherwise. */
int uiommu_mm_ledger_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages);
void uiommu_mm_ledger_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages);
/* The ledger's count for one user page. */
unsigned int uiommu_mm_pin_count(struct uiommu_mm *mm, uint64_t page_index);
uint64_t uiommu_mm_pinned_pages(struct uiommu_mm *mm);

/*
 * A device's DMA in this model: copy @len bytes between two host addresses of this process,
 * either of which may be unmapped or (for @dst) read-only; 0 or -EFAULT, never a crash. A fault
 * part way may leave a prefix of @dst written, so callers that must not write a byte of a
 * read-only page check permissions first (the IOMMU's mapping does that, not this). memcpy
 * speed: no system call on the fast path (ThreadSanitizer builds: process_vm_readv()).
 */
int uiommu_host_copy(void *dst, const void *src, size_t len);

/*
 * Does host address @host stand for another process's private page (a window address,
 * window.c)? Only the host copies reach such a page. Code that loads or stores through a host
 * address itself (a driver's walk of guest page tables through stage 2) must refuse one, as
 * memory it cannot reach: a plain access there faults outside any trap.
 */
static inline bool uiommu_host_is_window(uint64_t host)
{
	return uiommu_window_has((const void *)(uintptr_t)host);
}

/*
 * A batch's fault trap (mm_self.c): one arming for a run of host copies, where
 * uiommu_host_copy() arms per copy (a sigsetjmp and the trap span each; on x86-64 no
 * sigsetjmp, the copy has an exception table, but still a span outside an ioctl). The jump
 * buffer lives in the caller's frame, so the caller sets it itself:
 *
 *	struct uiommu_host_trap t;
 *
 *	if (UIOMMU_HOST_TRAP_SET(&t)) {
 *		... a uiommu_host_copy_trapped() below faulted: no copy is under way any more;
 *		    what the interrupted code kept in locals of this frame is lost ...
 *	}
 *	uiommu_host_trap_arm(&t);
 *	... uiommu_host_copy_trapped() any number of times, through any calls ...
 *	uiommu_host_trap_disarm(&t);
 *
 * A fault in a trapped copy jumps back to UIOMMU_HOST_TRAP_SET, which then returns non-zero
 * with the trap still armed (disarm it on every path; a second fault jumps there again). Only
 * those copies jump: anything else of the thread (uiommu_host_copy(), the user copies) arms
 * its own trap inside, as it nests, or (x86-64) is resumed at its exception-table fixup. The frame that set the trap must stay live while it is
 * armed, and the code between must hold nothing a jump would leak (no lock taken after the
 * set and still held at the copy). ThreadSanitizer builds have no trap (mm_self.c): there
 * UIOMMU_HOST_TRAP_SET is 0 and a trapped copy returns -EFAULT as uiommu_host_copy() does.
 */
#if defined(__SANITIZE_THREAD__)
struct uiommu_host_trap {
	char unused;
};
#define UIOMMU_HOST_TRAP_SET(t) 0
#else
#include <setjmp.h>
struct uiommu_host_trap {
	sigjmp_buf jmp;
	void *prev;                /* the trap it stands in front of */
};
#define UIOMMU_HOST_TRAP_SET(t) sigsetjmp((t)->jmp, 0)
#endif
void uiommu_host_trap_arm(struct uiommu_host_trap *t);
void uiommu_host_trap_disarm(struct uiommu_host_trap *t);
/* uiommu_host_copy() under the armed trap: 0; -EFAULT only for addresses no process can map
 * (and for any fault under ThreadSanitizer); a fault of the copy itself does not return. */
int uiommu_host_copy_trapped(void *dst, const void *src, size_t len);

/*
 * File pages' pins (MAP_FILE): one ledger per file (device and inode, as stat() gives them and
 * /proc/self/maps shows them), indexed by page of the file. Locking: each ledger's lock is a
 * leaf; the list's lock is taken only around lookups, never under a ledger's lock.
 */
struct uiommu_file_pins;
struct uiommu_file_pins *uiommu_file_pins_get(uint64_t dev, uint64_t ino);
void uiommu_file_pins_put(struct uiommu_file_pins *fp);
int uiommu_file_pin(struct uiommu_file_pins *fp, uint64_t page_index, uint64_t npages);
void uiommu_file_unpin(struct uiommu_file_pins *fp, uint64_t page_index, uint64_t npages);
unsigned int uiommu_file_pin_count(uint64_t dev, uint64_t ino, uint64_t page_index);
bool uiommu_file_pins_any(void);

/*
 * What backs a host address (maps.c): a snapshot of this process's shared file mappings, for
 * the selftest's checks that a translation shows the same page as a user address.
 */
struct uiommu_maps;
int uiommu_maps_load(struct uiommu_maps **out);
/* One line of a maps file: [start, end), "rwxs"-style perms, the file and its offset. */
struct uiommu_vma {
	uint64_t start, end, offset, dev, ino;
	char perms[8];
};
int uiommu_maps_walk_fd(int fd, int (*fn)(const struct uiommu_vma *v, void *arg), void *arg);
bool uiommu_maps_same_page(const struct uiommu_maps *maps, uint64_t a, uint64_t b);
bool uiommu_maps_file_of(const struct uiommu_maps *maps, uint64_t addr, uint64_t *dev,
			 uint64_t *ino, uint64_t *offset);
/* A device number as /proc/self/maps shows it (major << 32 | minor), from a stat() st_dev. */
uint64_t uiommu_maps_dev(uint64_t st_dev);
void uiommu_maps_free(struct uiommu_maps *maps);
bool uiommu_maps_host_of(const struct uiommu_maps *maps, uint64_t dev, uint64_t ino,
			 uint64_t offset, uint64_t len, uint64_t *addr);

/*
 * Another process's address space (mm_remote.c), reached through a pidfd of it and its own
 * /proc/<pid>/mem and /proc/<pid>/maps, which it opened and handed over (taken over, closed at
 * the release), and optionally (@life_fd, else -1; taken) the memfd of its life word's page
 * (remote_direct.c): copies then go through that word's thread and check it with a load
 * instead of a read (mm_remote.c). Once the process is gone every access is -EFAULT.
 * Return: the mm with one reference, or ERR_PTR(-ENOMEM); the fds are closed on failure.
 */
struct uiommu_mm *uiommu_mm_remote_new(int pid, int pidfd, int mem_fd, int maps_fd, int life_fd);
void uiommu_mm_remote_life_late(struct uiommu_mm *mm, int life_fd);
/*
 * Does life word @word (a robust futex its thread holds: the kernel marks it at that thread's
 * end) hold @tid, a live thread of process @pid? A copy may then be aimed at that thread.
 */
bool uiommu_life_word_names(const _Atomic uint32_t *word, int pid, uint32_t tid);
/*
 * Is @fd, a memfd another process handed over (a life word's page, the direct path's page),
 * @len bytes that cannot shrink under a mapping of ours? An empty or shrinkable one would
 * kill us by SIGBUS at our first look through it.
 */
bool uiommu_memfd_sealed_len(int fd, uint64_t len);
struct iovec;
int uiommu_life_copyv(const _Atomic uint32_t *word, uint32_t tid, void *local, size_t len,
		      const struct iovec *remote, unsigned long n, bool write);
int uiommu_mm_remote_getfd(struct uiommu_mm *mm, int fd);
/*
 * The pidfd of @mm's process, for a poll() that asks whether it exited (POLLIN from its zombie
 * on): valid while @mm is.
 */
int uiommu_mm_remote_pidfd(struct uiommu_mm *mm);
/*
 * @mm's process is about to unmap or replace its [uaddr, uaddr + len) (its library's notice):
 * the pinned private pages there lose their window addresses (EFAULT from now on), as the
 * kernel's pins keep the old pages, which the new memory must never stand in for.
 */
void uiommu_mm_remote_forget(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len);
/*
 * This thread now runs a call of @mm's own process for it (NULL: no more), which waits for
 * the reply: its copies may check only that the process lives (mm_remote.c).
 */
void uiommu_mm_remote_calling(struct uiommu_mm *mm);

/*
 * The pins other processes hold for this one, or a serving process's own (proc_status.c shows
 * them): the layer that talks to those processes registers how to ask. The hook answers
 * whether @pid is this process or one that serves it, with the counters in pages.
 */
typedef bool (*uiommu_mm_remote_status_fn)(int pid, uint64_t *pinned_vm, uint64_t *locked_vm);
void uiommu_mm_remote_status_set(uiommu_mm_remote_status_fn fn);
bool uiommu_mm_remote_status(int pid, uint64_t *pinned_vm, uint64_t *locked_vm);

/* The host page size (the kernel's PAGE_SIZE), read once. */
extern uint64_t uiommu_page_size;
extern unsigned int uiommu_page_shift;

#endif
