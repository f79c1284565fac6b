// SPDX-License-Identifier: MIT
/*
 * The calling process's own address space.
 *
 * User pointers come from the program we serve and may be anything: NULL, unmapped, read-only.
 * The kernel answers EFAULT for those; so must we, without a system call on the fast path (an
 * ioctl through uiommu must cost less than a real one). Copies therefore run as plain loads and
 * stores under a fault trap: a thread-local jump buffer is armed around the access, and our
 * SIGSEGV/SIGBUS handler, installed once, jumps back to it when the faulting thread has one
 * armed. Any other fault is passed to the handler that was installed before ours (or to the
 * default action), so a program's own crashes still crash as they would.
 *
 * The handler is installed with SA_NODEFER so leaving it by siglongjmp() does not leave the
 * signal blocked, and the jump buffer is taken without saving the signal mask, which keeps the
 * armed path free of system calls.
 *
 * Limitation: a program that installs its own SIGSEGV handler after uiommu starts replaces ours;
 * a bad pointer passed to uiommu then reaches the program's handler instead of giving EFAULT.
 *
 * ThreadSanitizer builds cannot leave a signal handler by siglongjmp() (its runtime defers and
 * wraps handlers), so there every access goes through process_vm_readv()/process_vm_writev()
 * on our own pid, which answer EFAULT without a signal. Slower, and a write probe rewrites the
 * byte it read, but the semantics are the same.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "mm/mm.h"

static _Thread_local sigjmp_buf *uaccess_jmp;
static struct sigaction uaccess_old_segv, uaccess_old_bus;
static pthread_once_t uaccess_once = PTHREAD_ONCE_INIT;

static void uaccess_chain(int sig, siginfo_t *info, void *uc)
{
	struct sigaction *old = sig == SIGSEGV ? &uaccess_old_segv : &uaccess_old_bus;

	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, uc);
		return;
	}
	if (old->sa_handler == SIG_IGN)
		return;
	if (old->sa_handler != SIG_DFL) {
		old->sa_handler(sig);
		return;
	}
	/* Default action: restore it and return; the faulting access runs again and kills us. */
	sigaction(sig, old, NULL);
}

static void uaccess_handler(int sig, siginfo_t *info, void *uc)
{
	sigjmp_buf *jmp = uaccess_jmp;

	if (jmp) {
		uaccess_jmp = NULL;
		siglongjmp(*jmp, 1);
	}
	uaccess_chain(sig, info, uc);
}

static void uaccess_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = uaccess_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &uaccess_old_segv) || sigaction(SIGBUS, &sa, &uaccess_old_bus))
		die("sigaction");
}

/*
 * The accesses below must be real loads and stores the compiler cannot move out of the armed
 * window, and sanitizers must not vet them: a bad user pointer is an expected input here.
 */
#define UACCESS_NOSAN \
	__attribute__((no_sanitize("address", "thread", "undefined"), noinline, unused))

/* Any alignment, no aliasing assumptions: what an unaligned 8-byte user access needs. */
typedef uint64_t __attribute__((may_alias, aligned(1))) uaccess_u64;

UACCESS_NOSAN static void uaccess_copy(volatile unsigned char *dst,
				       const volatile unsigned char *src, size_t len)
{
	size_t i = 0;

	/* Word at a time: ioctl structs are a few words, and this is the ioctl's hot path. */
	for (; i + 8 <= len; i += 8)
		*(volatile uaccess_u64 *)(dst + i) = *(const volatile uaccess_u64 *)(src + i);
	for (; i < len; i++)
		dst[i] = src[i];
}

/*
 * Any byte of a page tells whether the page is mapped (and writable), so the probe of page i
 * reads the cache line (i mod lines per page): probing byte 0 of every page would put every
 * probe in the same cache set, and a run of pages would evict its own probes (a write probe
 * of 256 pages cost 5x more that way).
 */
UACCESS_NOSAN static void uaccess_touch(uint64_t uaddr, size_t npages, bool write)
{
	const uint64_t line = 64, lines = uiommu_page_size / line;
	size_t i;

	for (i = 0; i < npages; i++) {
		uint64_t a = i ? (uaddr & ~(uiommu_page_size - 1)) + i * uiommu_page_size +
					 (i % lines) * line :
				 uaddr;
		unsigned char *p = (unsigned char *)(uintptr_t)a;

		if (write)
			__atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
		else
			(void)*(volatile unsigned char *)p;
	}
}

/* Addresses no process can map: answer at once instead of taking a fault. */
static bool uaccess_range_bad(uint64_t uaddr, uint64_t len)
{
	uint64_t last;

	if (!len)
		return false;
	if (check_add_overflow(uaddr, len - 1, &last))
		return true;
	return uaddr < 4096 || last >= ((uint64_t)1 << 47);
}

#if defined(__SANITIZE_THREAD__)
#define UACCESS_VIA_SYSCALL 1
#include <sys/uio.h>

/* @to_user: copy @len bytes from @kbuf to user @uaddr, else from @uaddr to @kbuf. */
static int uaccess_syscall(void *kbuf, uint64_t uaddr, size_t len, bool to_user)
{
	struct iovec local = { .iov_base = kbuf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)uaddr, .iov_len = len };
	ssize_t n;

	n = to_user ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0) :
		      process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	return n == (ssize_t)len ? 0 : -EFAULT;
}
#endif

static int self_copy(void *dst, const void *src, size_t len, uint64_t uaddr)
{
#ifdef UACCESS_VIA_SYSCALL
	if (uaccess_range_bad(uaddr, len))
		return -EFAULT;
	if (!len)
		return 0;
	if ((uintptr_t)src == uaddr)
		return uaccess_syscall(dst, uaddr, len, false);
	return uaccess_syscall((void *)src, uaddr, len, true);
#else
	sigjmp_buf jmp;

	if (uaccess_range_bad(uaddr, len))
		return -EFAULT;
	if (!len)
		return 0;
	pthread_once(&uaccess_once, uaccess_install);
	if (sigsetjmp(jmp, 0)) {
		uaccess_jmp = NULL;
		return -EFAULT;
	}
	uaccess_jmp = &jmp;
	uaccess_copy(dst, src, len);
	uaccess_jmp = NULL;
	return 0;
#endif
}

/* memcpy(), kept out of line so the armed window holds the whole copy. */
UACCESS_NOSAN static void uaccess_memcpy(void *dst, const void *src, size_t len)
{
	memcpy(dst, src, len);
	__asm__ volatile("" ::: "memory");
}

int uiommu_host_copy(void *dst, const void *src, size_t len)
{
#ifdef UACCESS_VIA_SYSCALL
	struct iovec local = { .iov_base = dst, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)src, .iov_len = len };

	if (!len)
		return 0;
	/* Both sides are ours: a fault on either one is EFAULT, not a signal. */
	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
#else
	sigjmp_buf jmp;

	if (!len)
		return 0;
	if (uaccess_range_bad((uintptr_t)dst, len) || uaccess_range_bad((uintptr_t)src, len))
		return -EFAULT;
	pthread_once(&uaccess_once, uaccess_install);
	if (sigsetjmp(jmp, 0)) {
		uaccess_jmp = NULL;
		return -EFAULT;
	}
	uaccess_jmp = &jmp;
	uaccess_memcpy(dst, src, len);
	uaccess_jmp = NULL;
	return 0;
#endif
}

static int self_copy_from(struct uiommu_mm *mm, void *dst, uint64_t uaddr, size_t len)
{
	(void)mm;
	return self_copy(dst, (const void *)(uintptr_t)uaddr, len, uaddr);
}

static int self_copy_to(struct uiommu_mm *mm, uint64_t uaddr, const void *src, size_t len)
{
	(void)mm;
	return self_copy((void *)(uintptr_t)uaddr, src, len, uaddr);
}

static int self_fault_in(struct uiommu_mm *mm, uint64_t uaddr, size_t npages, bool write)
{
	sigjmp_buf jmp;

	(void)mm;
	if (uiommu_should_fail())
		return -EFAULT;
	if (uaccess_range_bad(uaddr, (uint64_t)npages << uiommu_page_shift))
		return -EFAULT;
#ifdef UACCESS_VIA_SYSCALL
	for (size_t i = 0; i < npages; i++) {
		unsigned char byte;
		uint64_t p = uaddr + i * uiommu_page_size;

		if (uaccess_syscall(&byte, p, 1, false) ||
		    (write && uaccess_syscall(&byte, p, 1, true)))
			return -EFAULT;
	}
	return 0;
#endif
	pthread_once(&uaccess_once, uaccess_install);
	if (sigsetjmp(jmp, 0)) {
		uaccess_jmp = NULL;
		return -EFAULT;
	}
	uaccess_jmp = &jmp;
	uaccess_touch(uaddr, npages, write);
	uaccess_jmp = NULL;
	return 0;
}

static void *self_host_ptr(struct uiommu_mm *mm, uint64_t uaddr)
{
	(void)mm;
	return (void *)(uintptr_t)uaddr;
}

/* The mapping that holds @uaddr, from /proc/self/maps (what the kernel's vma_lookup() sees). */
static int self_vma_prot(struct uiommu_mm *mm, uint64_t uaddr, unsigned int *prot)
{
	char line[512];
	int rc = -EFAULT;
	FILE *f;

	(void)mm;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -EFAULT;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &start, &end, perms) != 3)
			continue;
		if (uaddr < start || uaddr >= end)
			continue;
		*prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
			(perms[2] == 'x' ? PROT_EXEC : 0);
		rc = 0;
		break;
	}
	fclose(f);
	return rc;
}

static void self_release(struct uiommu_mm *mm);

static const struct uiommu_mm_ops self_ops = {
	.copy_from = self_copy_from,
	.copy_to = self_copy_to,
	.fault_in = self_fault_in,
	.host_ptr = self_host_ptr,
	.vma_prot = self_vma_prot,
	.host_linear = true,
	.release = self_release,
};

/*
 * One mm for the process, made at first use and kept until the last reference goes; fork gives
 * the child a copy of it with the parent's ledger, as it gets a copy of every other state.
 */
UIOMMU_MUTEX_DEFINE(self_lock); /* protects self_mm; a leaf */
static struct uiommu_mm *self_mm;

static void self_release(struct uiommu_mm *mm)
{
	uiommu_mutex_lock(&self_lock);
	/* A racing uiommu_mm_self() may have revived it; only free a dead one. */
	if (self_mm == mm && atomic_load(&mm->refs) == 0)
		self_mm = NULL;
	else if (self_mm == mm) {
		uiommu_mutex_unlock(&self_lock);
		return;
	}
	uiommu_mutex_unlock(&self_lock);
	mm_pasid_drop(mm);
	uiommu_mutex_destroy(&mm->pin_lock);
	uiommu_free(mm);
}

struct uiommu_mm *uiommu_mm_self(void)
{
	struct uiommu_mm *mm;

	uiommu_mutex_lock(&self_lock);
	mm = self_mm;
	if (mm) {
		uiommu_mm_get(mm);
		goto out_unlock;
	}
	mm = uiommu_zalloc(sizeof(*mm));
	if (!mm) {
		mm = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	mm->ops = &self_ops;
	atomic_init(&mm->refs, 1);
	mm->pid = getpid();
	uiommu_mutex_init(&mm->pin_lock);
	interval_tree_init(&mm->pinned);
	self_mm = mm;
out_unlock:
	uiommu_mutex_unlock(&self_lock);
	return mm;
}
