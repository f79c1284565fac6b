// SPDX-License-Identifier: MIT
/*
 * libc's own syscall(), for the library's raw system calls (lib/sys.h).
 *
 * Under the preload layer the symbol `syscall` is the layer's: it routes a program's
 * syscall(SYS_close / SYS_dup2 / SYS_dup3 / ...) on the library's fds to the library, and notes
 * the fds a program's fd-creating system calls return (docs/running.md, "Identity"). The
 * library's own calls must not take that road: they are made under the library's locks
 * (fdt_lock around a dup3 of one of its files, for one), and coming back in would deadlock or
 * see half-made state. So the library calls libc's definition itself, looked up once in libc's
 * own object (dlopen with RTLD_NOLOAD finds the copy already mapped; dlsym in that handle skips
 * every interposer). The lookup runs in a constructor, before any signal handler of ours can
 * make a raw call (dlopen is no call for a handler); a library linked statically, or a libc
 * that cannot be found, falls back to whatever `syscall` resolves to.
 */
#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <stdatomic.h>
#include <unistd.h>

#include "lib/sys.h"

static _Atomic(sys_syscall_fn) sys_libc;

static sys_syscall_fn sys_libc_lookup(void)
{
	void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
	sys_syscall_fn fn = NULL;

	if (libc) {
		fn = (sys_syscall_fn)dlsym(libc, "syscall");
		/* libc stays mapped: the process holds it anyway. */
		dlclose(libc);
	}
	return fn ? fn : syscall;
}

__attribute__((constructor)) static void sys_init(void)
{
	atomic_store_explicit(&sys_libc, sys_libc_lookup(), memory_order_relaxed);
}

sys_syscall_fn sys_libc_syscall(void)
{
	sys_syscall_fn fn = atomic_load_explicit(&sys_libc, memory_order_relaxed);

	if (__builtin_expect(!fn, 0)) {
		/* Another constructor ran first: racing lookups all find the same function. */
		fn = sys_libc_lookup();
		atomic_store_explicit(&sys_libc, fn, memory_order_relaxed);
	}
	return fn;
}
