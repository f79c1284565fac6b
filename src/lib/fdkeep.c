// SPDX-License-Identifier: MIT
/*
 * Which fds of the process are the library's (lib/fdkeep.h).
 *
 * Why. When a serving process execs, the library hands its serving to a fork copy of the
 * process (iommufd/remote.c, the hand-over). A fork copies every fd: the program's pipes,
 * sockets and files would stay open in that copy for as long as it serves, and a reader
 * waiting for EOF on a pipe the exec'ing program held (a shell pipeline `a | b` whose `a`
 * execs) would wait that long. The copy must keep the library's fds and nothing else. The
 * library cannot tell its fds from the program's by looking at them (a memfd is a memfd), so
 * the code that makes each one says so here, at the place where it is made.
 *
 * Data model. One bit per fd number, set by uiommu_fd_keep() and cleared by
 * uiommu_fd_unkeep() (sys_close() calls it; the few closes made through libc call it first).
 * The bitmap is static, FDKEEP_BITS numbers (2 KiB), so that keeping an fd can never fail. A
 * kept fd at or above FDKEEP_BITS sets fdkeep_high, for good: from then on every fd from
 * FDKEEP_BITS up is kept (the registry cannot tell those apart any more).
 *
 * Invariants. A set bit names an fd the library holds, or one it held and closed without
 * saying (a stale bit: the program's next fd of that number is kept too, which errs on the
 * side the hand-over can live with). A clear bit below FDKEEP_BITS is never an fd the library
 * still uses, provided that it was made by a thread that finished making it before the fork:
 * the hand-over holds the serving side still (serve_gate), and the rest of the library is the
 * documented "exec from a quiet process" limit. The unkeep comes before the close: between a
 * close and its unkeep another thread could get the number and keep it, and the late unkeep
 * would clear that.
 *
 * Concurrency. Each bit is changed with one atomic read-modify-write of its word, no lock:
 * fds are made and closed on many threads, and the fork child reads the words alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"

#define FDKEEP_BITS 16384u
#define FDKEEP_WORDS (FDKEEP_BITS / 64)

static _Atomic uint64_t fdkeep_words[FDKEEP_WORDS];
static atomic_bool fdkeep_high; /* some kept fd was >= FDKEEP_BITS: keep all of those */

void uiommu_fd_keep(int fd)
{
	if (fd < 0)
		return;
	if ((unsigned int)fd >= FDKEEP_BITS) {
		atomic_store_explicit(&fdkeep_high, true, memory_order_relaxed);
		return;
	}
	atomic_fetch_or_explicit(&fdkeep_words[fd / 64], UINT64_C(1) << (fd % 64),
				 memory_order_relaxed);
}

void uiommu_fd_unkeep(int fd)
{
	if (fd < 0 || (unsigned int)fd >= FDKEEP_BITS)
		return;
	/* Most closes are of fds never kept: a load spares the cache line a write. */
	if (!(atomic_load_explicit(&fdkeep_words[fd / 64], memory_order_relaxed) &
	      (UINT64_C(1) << (fd % 64))))
		return;
	atomic_fetch_and_explicit(&fdkeep_words[fd / 64], ~(UINT64_C(1) << (fd % 64)),
				  memory_order_relaxed);
}

static bool fdkeep_kept(unsigned int fd)
{
	return atomic_load_explicit(&fdkeep_words[fd / 64], memory_order_relaxed) &
	       (UINT64_C(1) << (fd % 64));
}

/*
 * Closes [@first, @last]. Without close_range() (Linux before 5.9) one close per number, up
 * to the fd limit: a number above it cannot be open.
 */
static void fdkeep_close_span(unsigned int first, unsigned int last)
{
	struct rlimit rl;

	if (first > last || !sys_close_range(first, last, 0))
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return; /* no bound to walk to: everything stays (the old behaviour) */
	for (uint64_t fd = first; fd <= last && fd < rl.rlim_cur; fd++)
		sys_close((int)fd);
}

/*
 * 0, 1 and 2 onto /dev/null: a copy that closed them would hand their numbers to the next
 * fds it makes, and a library message to stderr would land in a client's connection. Without
 * /dev/null they stay as they were (kept: what it cannot make safe it leaves alone).
 */
static void fdkeep_stdio_to_null(void)
{
	int null = uiommu_should_fail() ? -1 :
		   sys_openat(AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC, 0);

	if (null < 0)
		return;
	for (int fd = 0; fd < 3; fd++)
		if (fd != null && !fdkeep_kept((unsigned int)fd))
			sys_dup3(null, fd, 0);
	/* At 0, 1 or 2 (that number was free) it is the /dev/null that stays there. */
	if (null > 2)
		sys_close(null);
}

void uiommu_fds_close_unkept(void)
{
	unsigned int first = 3; /* the first number of the unkept run being walked */

	fdkeep_stdio_to_null();
	for (unsigned int w = 0; w < FDKEEP_WORDS; w++) {
		uint64_t word = atomic_load_explicit(&fdkeep_words[w], memory_order_relaxed);

		while (word) {
			unsigned int fd = w * 64 + (unsigned int)__builtin_ctzll(word);

			word &= word - 1;
			if (fd < first)
				continue;
			fdkeep_close_span(first, fd - 1);
			first = fd + 1;
		}
	}
	fdkeep_close_span(first, atomic_load(&fdkeep_high) ? FDKEEP_BITS - 1 : ~0u);
}
