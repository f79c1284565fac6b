/* SPDX-License-Identifier: MIT */
/*
 * The iommufd calls the benchmarks that link libuiommu make outside their timed loops and
 * inside them (IOAS_ALLOC, MAP, UNMAP, a mock device, DESTROY), through uiommu_ioctl() so that
 * the figures are the library's alone. Every call either succeeds or ends the program with the
 * errno: a benchmark that silently measured failures would report nonsense.
 */
#ifndef UIOMMU_BENCH_UIOMMU_H
#define UIOMMU_BENCH_UIOMMU_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

/* The program's name in failure messages; each benchmark sets it first thing. */
static const char *bench_prog = "bench";

static inline void bench_fail(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", bench_prog, what, strerror(errno));
	exit(1);
}

static inline uint32_t bench_ioas_alloc(int fd)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	if (uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, &cmd))
		bench_fail("IOMMU_IOAS_ALLOC");
	return cmd.out_ioas_id;
}

/* A read-write MAP of @length bytes at @va; @fixed: at @iova. Returns the IOVA used. */
static inline uint64_t bench_ioas_map(int fd, uint32_t ioas_id, const void *va, uint64_t iova,
				      uint64_t length, int fixed)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
			 (fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
		.ioas_id = ioas_id,
		.user_va = (uintptr_t)va,
		.length = length,
		.iova = iova,
	};

	if (uiommu_ioctl(fd, IOMMU_IOAS_MAP, &cmd))
		bench_fail("IOMMU_IOAS_MAP");
	return cmd.iova;
}

/* UNMAP of exactly [@iova, @iova + @length): anything else unmapped is a failure too. */
static inline void bench_ioas_unmap(int fd, uint32_t ioas_id, uint64_t iova, uint64_t length)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas_id, .iova = iova, .length = length,
	};

	if (uiommu_ioctl(fd, IOMMU_IOAS_UNMAP, &cmd))
		bench_fail("IOMMU_IOAS_UNMAP");
	if (cmd.length != length) {
		errno = EIO;
		bench_fail("IOMMU_IOAS_UNMAP unmapped a different length");
	}
}

/* A selftest mock device bound to @fd and attached to @pt (an IOAS or a HWPT). */
static inline struct iommu_test_cmd bench_mock_domain(int fd, uint32_t pt)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = pt,
	};

	if (uiommu_ioctl(fd, IOMMU_TEST_CMD, &cmd))
		bench_fail("IOMMU_TEST_CMD MOCK_DOMAIN");
	return cmd;
}

static inline void bench_destroy(int fd, uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	if (uiommu_ioctl(fd, IOMMU_DESTROY, &cmd))
		bench_fail("IOMMU_DESTROY");
}

#endif
