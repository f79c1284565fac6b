// SPDX-License-Identifier: MIT
/*
 * The calling process's own address space.
 *
 * User pointers come from the program we serve and may be anything: NULL, unmapped, read-only.
 * The kernel answers EFAULT for those; so must we, cheaply (an ioctl through uiommu should cost
 * less than a real one). Copies therefore run as plain loads and stores under a fault trap, and
 * our SIGSEGV/SIGBUS handler, installed once, takes the faults that are the trap's own. Every
 * other signal goes on as it would without us, so a program's own faults behave exactly as they
 * would.
 *
 * On x86-64 the user copies (and uiommu_host_copy()) are the kernel's kind: an asm routine
 * (uaccess_x86_64.S) whose every access has an entry in an exception table. A kernel-raised
 * fault of a thread inside a trap span whose RIP is one of those entries is ours: the handler
 * moves RIP to the entry's fixup and returns, and the routine returns non-zero
 * (uaccess_extable_handle()). Nothing is armed or saved per copy, and inside a span a copy of
 * this process's memory does not even come here: mm.h's uiommu_copy_from_user()/_to_user()
 * call the routine inline (uiommu_uaccess_inline()), as the span's begin and end are inline
 * while the mask cache holds. Elsewhere, and for the page probes of fault_in and the batch
 * trap of the DMA engine, a thread-local jump buffer is armed around the access and the
 * handler jumps back to it.
 *
 * What makes a fault the jump buffer's own (uaccess_fault_is_ours()): the thread has one
 * armed, the kernel raised the signal for a fault (si_code > 0, not a kill()), and the faulting
 * instruction is in the section "uiommu_uaccess" that holds only the access loops. A signal
 * handler of the program that runs on top of an armed access and faults by itself is therefore
 * not mistaken for a bad user pointer.
 *
 * The trap spans around an access (uiommu_uaccess_begin()/end()): a synchronous SIGSEGV on
 * a thread that blocks it kills the process whatever the handler (the kernel forces the default
 * action), and threads of programs such as QEMU block most signals. So the first span of a
 * thread's nest unblocks SIGSEGV and SIGBUS with one rt_sigprocmask() and blocks again at its
 * end only what was blocked before. ("Span", not "window": the window is window.c's address
 * range for another process's pages.) An ioctl opens one span around its whole run
 * (uiommu_uaccess_begin()), so it pays that one call however many copies it makes.
 *
 * The mask cache: under the preload layer a trap span usually costs no call at all. The layer
 * wraps every libc call that changes a thread's mask for good (sigprocmask(),
 * pthread_sigmask()) and reports the new mask (uiommu_fault_mask_note()); a thread-local flag
 * says "SIGSEGV and SIGBUS are known to be unblocked here", and while it holds, a span makes
 * no system call. It is cleared before each change (a handler in between sees it cleared) and
 * by every call that changes the mask behind libc's wrappers: siglongjmp()/longjmp() to a
 * buffer with a saved mask, setcontext()/swapcontext(), and sigsuspend()/pselect()/ppoll()/
 * epoll_pwait() (handlers run under their temporary mask), and the System V/BSD calls that
 * change it inside libc (sighold(), sigset(), sigblock() ...). A new thread starts with it clear
 * and learns its mask from its first span's call. A signal handler runs with its sa_mask
 * added by the kernel, unseen: a handler whose sa_mask holds SIGSEGV or SIGBUS (seen in
 * uiommu_fault_sigaction(), which the layer calls for every sigaction()) turns the cache off
 * for good. Otherwise a handler's mask only adds to the one it interrupted, so a flag set
 * outside holds inside, and one learnt inside holds outside. Holes, documented: a raw
 * rt_sigprocmask()/rt_sigaction() system call, a handler that edits its ucontext's
 * uc_sigmask, and a handler that itself unblocks SIGSEGV/SIGBUS with pthread_sigmask() and then
 * returns into code that had them blocked (the return restores the mask unseen). Without the
 * preload layer (uiommu_fault_mask_track() never called) every span makes the calls.
 *
 * The jump
 * buffer is saved and restored around each armed access, so a signal handler that calls uiommu
 * while an access of the same thread is armed nests correctly.
 *
 * Chaining (uaccess_chain()): a fault that is not ours gets what the kernel would have done
 * with the disposition found at installation: the program's handler is called with the signal
 * mask the kernel would set (its sa_mask plus the signal unless SA_NODEFER), SA_RESETHAND
 * makes that disposition SIG_DFL from then on; SIG_DFL and SIG_IGN take the default action for
 * a fault (the kernel does not let a fault be ignored): the default disposition is restored and
 * the faulting instruction runs again, now fatal with the same siginfo. A signal sent with
 * kill() is re-raised under the default action, or dropped when the program ignored it.
 *
 * The compiler must not sink or drop the stores to the jump pointer: it is volatile, and a
 * signal fence orders it against the accesses (clang otherwise deletes the store, as the
 * pointer is read only by the handler).
 *
 * Measured (2-CPU VM, see docs/running.md): an armed 16-byte copy costs ~10 ns (sigsetjmp()
 * most of it: the exception table's copy costs its moves), the trap span's
 * rt_sigprocmask() ~100-150 ns (about one null ioctl into the kernel), process_vm_readv() of
 * 16 bytes ~450-700 ns. process_vm_readv() would need no signal handling at all, but would cost
 * each copy several real system calls; the span's two calls (none with the mask cache) are
 * the price taken for exactness.
 *
 * A program that sets its own disposition of SIGSEGV or SIGBUS after the trap is installed
 * does so through the preload layer's sigaction()/signal(), which hand it to
 * uiommu_fault_sigaction(): ours stays in front, the program's becomes the one chained to, and
 * the program reads back its own. A raw rt_sigaction() system call (or a program using the
 * library without the preload layer) still replaces ours: a bad pointer then reaches the
 * program's handler instead of giving EFAULT.
 *
 * ThreadSanitizer builds cannot leave a signal handler by siglongjmp() (its runtime defers and
 * wraps handlers), so there every access goes through process_vm_readv()/process_vm_writev()
 * on our own pid, which answer EFAULT without a signal. Slower, and a write probe rewrites the
 * byte it read, but the semantics are the same.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "mm/mm.h"
#include "mm/window.h"
#include "uiommu/uiommu.h"

/* mm.h says which way this build reaches user memory. */
#ifdef UIOMMU_UACCESS_VIA_SYSCALL
#define UACCESS_VIA_SYSCALL 1
#endif
#ifdef UIOMMU_UACCESS_EXTABLE
/* Copies through the exception table (uaccess_x86_64.S); elsewhere under a jump buffer. */
#define UACCESS_EXTABLE 1
#endif

#ifndef UACCESS_VIA_SYSCALL
/* The armed access's return point; NULL when none. Read by the handler only. */
static _Thread_local sigjmp_buf *volatile uaccess_jmp;
/*
 * Nesting depth of trap spans, and what the outermost one unblocked (to block again; any: the
 * end has something to do, false whenever the depth is 0). The inline halves are in mm.h.
 */
_Thread_local unsigned int uiommu_uaccess_depth;
static _Thread_local sigset_t uaccess_reblock;
_Thread_local bool uiommu_uaccess_reblock_any;

/*
 * The mask cache (see the essay): true when this thread's signal mask is known to let SIGSEGV
 * and SIGBUS through, so a trap span needs no system call. Only ever true while
 * uaccess_mask_tracked and once the trap is installed (uaccess_ready: mm.h's inline span
 * skips the installation); every mask change the preload layer sees rewrites or clears it.
 */
_Thread_local volatile bool uiommu_uaccess_mask_open;
/* The preload layer reports every sigprocmask()-like call (uiommu_fault_mask_track()). */
static atomic_bool uaccess_mask_tracked;
/*
 * Some handler the program installed blocks SIGSEGV or SIGBUS while it runs (its sa_mask):
 * a trap span opened inside it cannot trust a mask seen outside. Sticky.
 */
atomic_bool uiommu_uaccess_mask_untrusted;
/* Our handler is in place (uaccess_install() has run): the mask cache may say open. */
static atomic_bool uaccess_ready;

/*
 * The program's dispositions of SIGSEGV ([0]) and SIGBUS ([1]), which our handler stands in
 * front of: those found at installation, then what the program sets through the preload
 * layer's sigaction()/signal() (uiommu_fault_sigaction()). Writers hold uaccess_prog_lock and
 * make uaccess_prog_seq odd while they write, with every signal blocked so that a handler
 * cannot wait for a writer it interrupted; the handler copies under the sequence.
 */
static struct sigaction uaccess_prog[2];
static atomic_uint uaccess_prog_seq;
/* An SA_RESETHAND disposition fired: it is SIG_DFL until the program sets another. */
static atomic_bool uaccess_prog_reset[2];
static bool uaccess_installed; /* our handler is in place; uaccess_prog_lock */
/* protects uaccess_prog writes and uaccess_installed; a leaf */
UIOMMU_MUTEX_DEFINE(uaccess_prog_lock);
static sigset_t uaccess_fault_set; /* {SIGSEGV, SIGBUS}; constant after installation */
static pthread_once_t uaccess_once = PTHREAD_ONCE_INIT;
/*
 * This thread's own sigaction() calls, which the preload layer must pass to libc. Volatile:
 * glibc declares sigaction() a leaf (it never calls back into this file), so the compiler
 * would drop the store before the call, but it does call back, through the preload layer.
 */
static _Thread_local volatile bool uaccess_self;

/* The access loops, alone in their section: a fault there with a jump armed is ours. */
#define UACCESS_SECTION __attribute__((section("uiommu_uaccess")))
extern const char __start_uiommu_uaccess[], __stop_uiommu_uaccess[];

static bool uaccess_pc_is_ours(const void *ucv)
{
	const ucontext_t *uc = ucv;
	uintptr_t pc;

#if defined(__x86_64__)
	pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	pc = (uintptr_t)uc->uc_mcontext.pc;
#else
	/* No way to read the PC here: every kernel-raised fault under an armed jump is ours. */
	(void)uc;
	return true;
#endif
	return pc >= (uintptr_t)__start_uiommu_uaccess && pc < (uintptr_t)__stop_uiommu_uaccess;
}

static bool uaccess_fault_is_ours(const siginfo_t *info, const void *uc)
{
	return uaccess_jmp && info->si_code > 0 && uaccess_pc_is_ours(uc);
}

#ifdef UACCESS_EXTABLE
/* An entry of the exception table: each address as an offset from the field that holds it. */
struct uaccess_extable_entry {
	int32_t insn;
	int32_t fixup;
};
extern const struct uaccess_extable_entry __start_uiommu_extable[], __stop_uiommu_extable[];

/* Where a fault at @pc resumes, or 0 when @pc is not one of the copy's accesses. */
static uintptr_t uaccess_extable_fixup(uintptr_t pc)
{
	const struct uaccess_extable_entry *e;

	/* A handful of entries: a scan costs less than anything sorted would. */
	for (e = __start_uiommu_extable; e < __stop_uiommu_extable; e++)
		if ((uintptr_t)&e->insn + (intptr_t)e->insn == pc)
			return (uintptr_t)&e->fixup + (intptr_t)e->fixup;
	return 0;
}

/*
 * A kernel-raised fault of this thread inside a trap span, at one of the copy's accesses: resume
 * at its fixup, which returns the bytes left. Return: false when the fault is not the copy's.
 */
static bool uaccess_extable_handle(const siginfo_t *info, void *ucv)
{
	ucontext_t *uc = ucv;
	uintptr_t fixup;

	if (info->si_code <= 0 || !uiommu_uaccess_depth)
		return false;
	fixup = uaccess_extable_fixup((uintptr_t)uc->uc_mcontext.gregs[REG_RIP]);
	if (!fixup)
		return false;
	uc->uc_mcontext.gregs[REG_RIP] = (greg_t)fixup;
	return true;
}
#endif

static void uaccess_default(int sig)
{
	struct sigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	uaccess_self = true;
	sigaction(sig, &dfl, NULL);
	uaccess_self = false;
}

/* A consistent copy of the program's disposition of @sig. */
static void uaccess_prog_read(int sig, struct sigaction *out)
{
	const struct sigaction *src = &uaccess_prog[sig == SIGBUS];
	unsigned int seq;

	do {
		seq = atomic_load_explicit(&uaccess_prog_seq, memory_order_acquire);
		memcpy(out, src, sizeof(*out));
		atomic_thread_fence(memory_order_acquire);
	} while ((seq & 1) || seq != atomic_load_explicit(&uaccess_prog_seq, memory_order_relaxed));
}

/* The program's own signal: what the kernel would have done with the program's disposition. */
static void uaccess_chain(int sig, siginfo_t *info, void *uc)
{
	atomic_bool *reset = &uaccess_prog_reset[sig == SIGBUS];
	bool sent = info->si_code <= 0;
	struct sigaction prog, *old = &prog;
	sigset_t mask;

	uaccess_prog_read(sig, &prog);

	if (atomic_load(reset) || old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
		/* A signal someone sent to a program that ignores it is dropped. */
		if (sent && !atomic_load(reset) && old->sa_handler == SIG_IGN)
			return;
		/* The default action: for a fault, run the instruction again, now fatal. */
		uaccess_default(sig);
		if (sent)
			raise(sig);
		return;
	}
	if (old->sa_flags & SA_RESETHAND)
		atomic_store(reset, true);
	/* Our handler runs with nothing blocked (SA_NODEFER); the return restores the mask. */
	mask = old->sa_mask;
	if (!(old->sa_flags & (SA_NODEFER | SA_RESETHAND)))
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if (old->sa_flags & SA_SIGINFO)
		old->sa_sigaction(sig, info, uc);
	else
		old->sa_handler(sig);
}

static void uaccess_handler(int sig, siginfo_t *info, void *uc)
{
#ifdef UACCESS_EXTABLE
	if (uaccess_extable_handle(info, uc))
		return;
#endif
	if (uaccess_fault_is_ours(info, uc))
		siglongjmp(*uaccess_jmp, 1);
	uaccess_chain(sig, info, uc);
}

static void uaccess_install(void)
{
	struct sigaction sa;

	sigemptyset(&uaccess_fault_set);
	sigaddset(&uaccess_fault_set, SIGSEGV);
	sigaddset(&uaccess_fault_set, SIGBUS);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = uaccess_handler;
	/* SA_NODEFER: leaving by siglongjmp() must not leave the signal blocked. */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	uiommu_mutex_lock(&uaccess_prog_lock);
	uaccess_self = true;
	if (sigaction(SIGSEGV, NULL, &uaccess_prog[0]) || sigaction(SIGBUS, NULL, &uaccess_prog[1]))
		die("sigaction");
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL))
		die("sigaction");
	uaccess_self = false;
	uaccess_installed = true;
	uiommu_mutex_unlock(&uaccess_prog_lock);
	atomic_store_explicit(&uaccess_ready, true, memory_order_release);
}

/*
 * The program's sigaction() of SIGSEGV or SIGBUS once our handler is installed: ours stays,
 * @act becomes the disposition the handler chains to, *@oldact the program's previous one.
 * Return: false when the call is libc's to make (another signal, no trap yet, our own call).
 */
UIOMMU_EXPORT bool uiommu_fault_sigaction(int sig, const struct sigaction *act,
					 struct sigaction *oldact)
{
	struct sigaction *prog = &uaccess_prog[sig == SIGBUS];
	sigset_t all, saved;
	bool ours;

	/*
	 * A handler of another signal that blocks the fault signals while it runs: the kernel
	 * changes the mask on its entry without a call we see. (Those of SIGSEGV and SIGBUS run
	 * behind ours, which blocks nothing, and are chained through pthread_sigmask().)
	 */
	if (sig != SIGSEGV && sig != SIGBUS && act && act->sa_handler != SIG_DFL &&
	    act->sa_handler != SIG_IGN &&
	    (sigismember(&act->sa_mask, SIGSEGV) == 1 || sigismember(&act->sa_mask, SIGBUS) == 1))
		atomic_store_explicit(&uiommu_uaccess_mask_untrusted, true, memory_order_relaxed);
	if ((sig != SIGSEGV && sig != SIGBUS) || uaccess_self)
		return false;
	/*
	 * sigaction() is async-signal-safe: no handler of this thread may run while it holds the
	 * lock, and none may wait for a half-written disposition.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	uiommu_mutex_lock(&uaccess_prog_lock);
	ours = uaccess_installed;
	if (ours && oldact) {
		*oldact = *prog;
		if (atomic_load(&uaccess_prog_reset[sig == SIGBUS])) {
			oldact->sa_handler = SIG_DFL;
			oldact->sa_flags &= ~SA_SIGINFO;
		}
	}
	if (ours && act) {
		atomic_fetch_add_explicit(&uaccess_prog_seq, 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		*prog = *act;
		atomic_store(&uaccess_prog_reset[sig == SIGBUS], false);
		atomic_fetch_add_explicit(&uaccess_prog_seq, 1, memory_order_release);
	}
	uiommu_mutex_unlock(&uaccess_prog_lock);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return ours;
}

UIOMMU_EXPORT void uiommu_fault_mask_track(void)
{
	atomic_store_explicit(&uaccess_mask_tracked, true, memory_order_relaxed);
}

UIOMMU_EXPORT void uiommu_fault_mask_forget(void)
{
	uiommu_uaccess_mask_open = false;
}

UIOMMU_EXPORT void uiommu_fault_mask_note(int how, const sigset_t *set, const sigset_t *old)
{
	bool blocked[2];
	int i, sig;

	for (i = 0; i < 2; i++) {
		sig = i ? SIGBUS : SIGSEGV;
		blocked[i] = sigismember(old, sig) == 1;
		if (!set)
			continue;
		if (how == SIG_BLOCK)
			blocked[i] |= sigismember(set, sig) == 1;
		else if (how == SIG_UNBLOCK)
			blocked[i] &= sigismember(set, sig) != 1;
		else
			blocked[i] = sigismember(set, sig) == 1;
	}
	uiommu_uaccess_mask_open =
		atomic_load_explicit(&uaccess_mask_tracked, memory_order_relaxed) &&
		atomic_load_explicit(&uaccess_ready, memory_order_acquire) && !blocked[0] &&
		!blocked[1];
}

/* The outermost span, when the mask cache does not say open (mm.h, uiommu_uaccess_begin()). */
void uiommu_uaccess_begin_slow(void)
{
	sigset_t old;

	pthread_once(&uaccess_once, uaccess_install);
	pthread_sigmask(SIG_UNBLOCK, &uaccess_fault_set, &old);
	sigemptyset(&uaccess_reblock);
	if (sigismember(&old, SIGSEGV))
		sigaddset(&uaccess_reblock, SIGSEGV);
	if (sigismember(&old, SIGBUS))
		sigaddset(&uaccess_reblock, SIGBUS);
	uiommu_uaccess_reblock_any = sigismember(&old, SIGSEGV) || sigismember(&old, SIGBUS);
	/*
	 * Learnt with the call: the next span is free while nothing changes the mask. (The
	 * pthread_sigmask() above went through the preload layer, which noted it as open.)
	 */
	if (uiommu_uaccess_reblock_any)
		uiommu_uaccess_mask_open = false;
	else
		uiommu_uaccess_mask_open = atomic_load_explicit(&uaccess_mask_tracked,
								memory_order_relaxed);
}

/* The outermost span's end, when its begin unblocked something (mm.h). */
void uiommu_uaccess_end_slow(void)
{
	pthread_sigmask(SIG_BLOCK, &uaccess_reblock, NULL);
	uiommu_uaccess_reblock_any = false;
}

/*
 * The accesses below must be real loads and stores the compiler cannot move out of the armed
 * span, and sanitizers must not vet them: a bad user pointer is an expected input here.
 */
#define UACCESS_NOSAN \
	__attribute__((no_sanitize("address", "thread", "undefined"), noinline, unused)) \
	UACCESS_SECTION

/* Any alignment, no aliasing assumptions: what an unaligned 8-byte user access needs. */
typedef uint64_t __attribute__((may_alias, aligned(1))) uaccess_u64;

UACCESS_NOSAN static void uaccess_copy(volatile unsigned char *dst,
				       const volatile unsigned char *src, size_t len)
{
#if defined(__x86_64__)
	/*
	 * A few words (a DMA engine's completion record, an ioctl's struct) as plain moves:
	 * `rep movsb` costs tens of cycles to start, more than such a copy. Only when @dst does not
	 * start inside @src's range, where word moves give what ascending bytes would.
	 */
	if (len <= 64 && (uintptr_t)dst - (uintptr_t)src >= len) {
		size_t i = 0;

		for (; i + 8 <= len; i += 8)
			*(volatile uaccess_u64 *)(dst + i) =
				*(const volatile uaccess_u64 *)(src + i);
		for (; i < len; i++)
			dst[i] = src[i];
		return;
	}
	/* The faulting instruction stays in this section, at memcpy speed for DMA-sized copies. */
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(len) : : "memory");
#else
	size_t i = 0;

	/* Word at a time: ioctl structs are a few words, and this is the ioctl's hot path. */
	for (; i + 8 <= len; i += 8)
		*(volatile uaccess_u64 *)(dst + i) = *(const volatile uaccess_u64 *)(src + i);
	for (; i < len; i++)
		dst[i] = src[i];
#endif
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

		if (write) {
			/*
			 * A write that changes nothing, even if another thread writes the byte
			 * meanwhile. Not an atomic add of 0: compilers turn that idempotent RMW
			 * into a plain load (clang does, even volatile), and a load does not
			 * fault on a read-only page. A compare-exchange always writes.
			 */
			volatile unsigned char *vp = p;
			unsigned char v = __atomic_load_n(vp, __ATOMIC_RELAXED);

			__atomic_compare_exchange_n(vp, &v, v, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
		} else {
			(void)*(volatile unsigned char *)p;
		}
	}
}

#else /* UACCESS_VIA_SYSCALL: no trap, nothing to unblock, no disposition to stand in for */
UIOMMU_EXPORT bool uiommu_fault_sigaction(int sig, const struct sigaction *act,
					 struct sigaction *oldact)
{
	(void)sig;
	(void)act;
	(void)oldact;
	return false;
}

UIOMMU_EXPORT void uiommu_fault_mask_track(void)
{
}

UIOMMU_EXPORT void uiommu_fault_mask_forget(void)
{
}

UIOMMU_EXPORT void uiommu_fault_mask_note(int how, const sigset_t *set, const sigset_t *old)
{
	(void)how;
	(void)set;
	(void)old;
}
#endif


#ifdef UACCESS_VIA_SYSCALL
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

#ifndef UACCESS_VIA_SYSCALL
/* One armed access: a copy of @len bytes, or a probe of @npages pages from @uaddr. */
struct uaccess_op {
	void *dst;
	const void *src;
	size_t len;
	uint64_t uaddr;
	size_t npages;
	bool touch, write;
};

#ifdef UACCESS_EXTABLE
/* A copy through the exception table: no jump buffer, nothing saved. */
static int uaccess_copy_fast(void *dst, const void *src, size_t len)
{
	size_t left;

	/* Inside an ioctl's trap span (the usual case): nothing to open. */
	if (likely(uiommu_uaccess_depth))
		return uiommu_uaccess_copy_x86(dst, src, len) ? -EFAULT : 0;
	uiommu_uaccess_begin();
	/* The span is open (uiommu_uaccess_depth is read by the handler) before the first access. */
	atomic_signal_fence(memory_order_seq_cst);
	left = uiommu_uaccess_copy_x86(dst, src, len);
	atomic_signal_fence(memory_order_seq_cst);
	uiommu_uaccess_end();
	return left ? -EFAULT : 0;
}
#endif

static int uaccess_run(const struct uaccess_op *op)
{
	sigjmp_buf jmp;
	sigjmp_buf *prev;
	volatile int rc = 0; /* live across sigsetjmp() */

	uiommu_uaccess_begin();
	/* A signal handler that interrupted an armed access of this thread may be calling us. */
	prev = uaccess_jmp;
	if (sigsetjmp(jmp, 0)) {
		rc = -EFAULT;
		goto out_disarm;
	}
	uaccess_jmp = &jmp;
	atomic_signal_fence(memory_order_seq_cst);
	if (op->touch)
		uaccess_touch(op->uaddr, op->npages, op->write);
	else
		uaccess_copy(op->dst, op->src, op->len);
	atomic_signal_fence(memory_order_seq_cst);
out_disarm:
	uaccess_jmp = prev;
	uiommu_uaccess_end();
	return rc;
}
#endif

static int self_copy(void *dst, const void *src, size_t len, uint64_t uaddr)
{
	if (uiommu_uaccess_range_bad(uaddr, len))
		return -EFAULT;
	if (!len)
		return 0;
#ifdef UACCESS_VIA_SYSCALL
	if ((uintptr_t)src == uaddr)
		return uaccess_syscall(dst, uaddr, len, false);
	return uaccess_syscall((void *)src, uaddr, len, true);
#elif defined(UACCESS_EXTABLE)
	(void)uaddr;
	return uaccess_copy_fast(dst, src, len);
#else
	return uaccess_run(&(struct uaccess_op){ .dst = dst, .src = src, .len = len });
#endif
}

int uiommu_host_copy(void *dst, const void *src, size_t len)
{
#ifdef UACCESS_VIA_SYSCALL
	struct iovec local = { .iov_base = dst, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)src, .iov_len = len };

	if (!len)
		return 0;
	if (unlikely(uiommu_window_has(dst) || uiommu_window_has(src)))
		return uiommu_window_copy(dst, src, len);
	/* Both sides are ours: a fault on either one is EFAULT, not a signal. */
	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
#else
	if (!len)
		return 0;
	/* Another process's private page (window.c): never a plain access. */
	if (unlikely(uiommu_window_has(dst) || uiommu_window_has(src)))
		return uiommu_window_copy(dst, src, len);
	if (uiommu_uaccess_range_bad((uintptr_t)dst, len) ||
	    uiommu_uaccess_range_bad((uintptr_t)src, len))
		return -EFAULT;
#ifdef UACCESS_EXTABLE
	return uaccess_copy_fast(dst, src, len);
#else
	return uaccess_run(&(struct uaccess_op){ .dst = dst, .src = src, .len = len });
#endif
#endif
}

/*
 * The batch trap (mm.h): the jump buffer is the caller's; arming puts it where the handler
 * looks, in front of any trap already armed (a signal handler's uaccess may run on top), and
 * opens the trap span for the whole run.
 */
void uiommu_host_trap_arm(struct uiommu_host_trap *t)
{
#ifndef UACCESS_VIA_SYSCALL
	uiommu_uaccess_begin();
	t->prev = (void *)uaccess_jmp;
	uaccess_jmp = &t->jmp;
	atomic_signal_fence(memory_order_seq_cst);
#else
	(void)t;
#endif
}

void uiommu_host_trap_disarm(struct uiommu_host_trap *t)
{
#ifndef UACCESS_VIA_SYSCALL
	atomic_signal_fence(memory_order_seq_cst);
	uaccess_jmp = t->prev;
	uiommu_uaccess_end();
#else
	(void)t;
#endif
}

int uiommu_host_copy_trapped(void *dst, const void *src, size_t len)
{
#ifdef UACCESS_VIA_SYSCALL
	return uiommu_host_copy(dst, src, len);
#else
	if (!len)
		return 0;
	if (unlikely(uiommu_window_has(dst) || uiommu_window_has(src)))
		return uiommu_window_copy(dst, src, len);
	if (uiommu_uaccess_range_bad((uintptr_t)dst, len) ||
	    uiommu_uaccess_range_bad((uintptr_t)src, len))
		return -EFAULT;
	/* The armed trap's jump buffer is in place: a fault here goes back to its setter. */
	uaccess_copy(dst, src, len);
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
	(void)mm;
	if (uiommu_should_fail())
		return -EFAULT;
	if (uiommu_uaccess_range_bad(uaddr, (uint64_t)npages << uiommu_page_shift))
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
#else
	return uaccess_run(&(struct uaccess_op){
		.uaddr = uaddr, .npages = npages, .touch = true, .write = write });
#endif
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

const struct uiommu_mm_ops uiommu_mm_self_ops = {
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
	/* Every pin was uncharged by the iopt_pages that held a reference. */
	WARN_ON(atomic_load(&mm->pinned_vm) || atomic_load(&mm->locked_vm));
	mm_pasid_drop(mm);
	uiommu_mutex_destroy(&mm->pin_lock);
	uiommu_free(mm);
}

/*
 * In a forked child: the copy of the parent's mm is left to the copies of the parent's state
 * that hold it (never used again); the child's first use makes its own.
 */
void uiommu_mm_self_forget(void)
{
	self_mm = NULL;
}

void uiommu_mm_self_vm(uint64_t *pinned_vm, uint64_t *locked_vm)
{
	uiommu_mutex_lock(&self_lock);
	*pinned_vm = self_mm ? atomic_load_explicit(&self_mm->pinned_vm, memory_order_relaxed) : 0;
	*locked_vm = self_mm ? atomic_load_explicit(&self_mm->locked_vm, memory_order_relaxed) : 0;
	uiommu_mutex_unlock(&self_lock);
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
	mm->ops = &uiommu_mm_self_ops;
	atomic_init(&mm->refs, 1);
	mm->pid = getpid();
	uiommu_mutex_init(&mm->pin_lock);
	interval_tree_init(&mm->pinned);
	self_mm = mm;
out_unlock:
	uiommu_mutex_unlock(&self_lock);
	return mm;
}
