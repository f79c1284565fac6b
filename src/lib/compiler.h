/* SPDX-License-Identifier: MIT */
/* Small helpers every file uses: container_of, overflow checks, die(), WARN_ON. */
#ifndef UIOMMU_LIB_COMPILER_H
#define UIOMMU_LIB_COMPILER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define offsetofend(type, member) \
	(offsetof(type, member) + sizeof(((type *)0)->member))

/* A function some builds do not call (the kernel's __maybe_unused). */
#define __maybe_unused __attribute__((__unused__))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define check_add_overflow(a, b, d) __builtin_add_overflow(a, b, d)
#define check_mul_overflow(a, b, d) __builtin_mul_overflow(a, b, d)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define UIOMMU_EXPORT __attribute__((visibility("default")))

#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define ALIGN_UP(x, a) ALIGN_DOWN((x) + (a) - 1, (a))
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)

/*
 * An unrecoverable failure of the runtime itself (a pthread call that cannot fail in a correct
 * program). Never used for anything a caller can provoke.
 */
#define die(msg)                                                                        \
	do {                                                                            \
		fprintf(stderr, "uiommu: fatal: %s at %s:%d (%s)\n", (msg), __FILE__,   \
			__LINE__, __func__);                                            \
		abort();                                                                \
	} while (0)

/*
 * A broken internal invariant. Debug builds stop right there so the test that found it fails
 * loudly; release builds report and carry on, like the kernel's WARN_ON.
 */
static inline int uiommu_warn(int cond, const char *expr, const char *file, int line)
{
	if (unlikely(cond)) {
		fprintf(stderr, "uiommu: WARN_ON(%s) at %s:%d\n", expr, file, line);
#ifdef UIOMMU_DEBUG
		abort();
#endif
	}
	return cond;
}
#define WARN_ON(cond) uiommu_warn(!!(cond), #cond, __FILE__, __LINE__)

static inline int uiommu_fls64(uint64_t x)
{
	return x ? 64 - __builtin_clzll(x) : 0;
}

static inline uint64_t uiommu_ffs64_bit(uint64_t x)
{
	return x ? (uint64_t)1 << __builtin_ctzll(x) : 0;
}

static inline uint64_t roundup_pow_of_two(uint64_t x)
{
	if (x <= 1)
		return 1;
	if (x > ((uint64_t)1 << 63))
		return 0;
	return (uint64_t)1 << uiommu_fls64(x - 1);
}

#endif
