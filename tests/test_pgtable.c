// SPDX-License-Identifier: MIT
/*
 * White-box tests of the I/O page-table format (src/iommu/io_pgtable.c): map, unmap and walks
 * for every page size, the errno of each misuse, the large-leaf rules, a randomized run
 * against a list-of-leaves model, two threads racing to build shared tables for disjoint
 * pages, dirty bits, and a fault-injection sweep over map and alloc.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "iommu/io_pgtable.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "uiommu/uiommu.h"

#define SZ_4K IO_PGTABLE_SZ_4K
#define SZ_2M IO_PGTABLE_SZ_2M
#define SZ_1G IO_PGTABLE_SZ_1G
#define RW (IO_PGTABLE_PROT_READ | IO_PGTABLE_PROT_WRITE)

static struct io_pgtable *pgt_new(unsigned int ias)
{
	struct io_pgtable *pgt = io_pgtable_alloc(ias);

	return IS_ERR(pgt) ? NULL : pgt;
}

static int map(struct io_pgtable *pgt, uint64_t iova, uint64_t pa, size_t pgsize, size_t n,
	       int prot)
{
	size_t mapped = 0;
	int rc = io_pgtable_map_pages(pgt, iova, pa, pgsize, n, prot, &mapped);

	if (!rc && mapped != pgsize * n)
		return -1000; /* success must report everything mapped */
	return rc;
}

TEST(alloc_ias)
{
	struct io_pgtable *pgt;

	ASSERT_EQ(PTR_ERR(io_pgtable_alloc(31)), -EINVAL);
	ASSERT_EQ(PTR_ERR(io_pgtable_alloc(49)), -EINVAL);
	for (unsigned int ias = 32; ias <= 48; ias++) {
		pgt = pgt_new(ias);
		ASSERT_TRUE(pgt != NULL);
		ASSERT_EQ(io_pgtable_ias(pgt), ias);
		ASSERT_EQ(io_pgtable_nr_tables(pgt), 1);
		/* The last page of the space maps, the first one beyond does not. */
		ASSERT_EQ(map(pgt, (UINT64_C(1) << ias) - SZ_4K, 0x5000, SZ_4K, 1, RW), 0);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, (UINT64_C(1) << ias) - 1), 0x5fffu);
		ASSERT_EQ(map(pgt, UINT64_C(1) << ias, 0x5000, SZ_4K, 1, RW), -ERANGE);
		ASSERT_EQ(map(pgt, (UINT64_C(1) << ias) - SZ_4K, 0x5000, SZ_4K, 2, RW), -ERANGE);
		io_pgtable_free(pgt);
	}
}

TEST(map_unmap_each_size)
{
	static const uint64_t sizes[] = { SZ_4K, SZ_2M, SZ_1G };
	struct io_pgtable *pgt = pgt_new(48);
	struct io_pgtable_leaf leaf;

	ASSERT_TRUE(pgt != NULL);
	for (unsigned int i = 0; i < 3; i++) {
		uint64_t sz = sizes[i];
		uint64_t iova = (UINT64_C(5) << 39) + 3 * sz; /* not at the start of any table */
		uint64_t pa = UINT64_C(0x7f0000000000) + 7 * sz;

		ASSERT_EQ(map(pgt, iova, pa, sz, 3, IO_PGTABLE_PROT_READ), 0);
		for (uint64_t p = 0; p < 3; p++) {
			ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + p * sz), pa + p * sz);
			ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + p * sz + sz - 1),
				  pa + p * sz + sz - 1);
			ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + p * sz + sz / 2),
				  pa + p * sz + sz / 2);
		}
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova - 1), 0);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + 3 * sz), 0);

		ASSERT_EQ(io_pgtable_walk(pgt, iova + sz + 123, &leaf), 0);
		ASSERT_EQ(leaf.iova, iova + sz);
		ASSERT_EQ(leaf.phys, pa + sz);
		ASSERT_EQ(leaf.size, sz);
		ASSERT_EQ(leaf.prot, IO_PGTABLE_PROT_READ);
		ASSERT_FALSE(leaf.dirty);
		ASSERT_EQ(io_pgtable_walk(pgt, iova + 3 * sz, &leaf), -ENOENT);
		ASSERT_EQ(io_pgtable_walk(pgt, UINT64_C(1) << 48, &leaf), -ERANGE);

		ASSERT_EQ(io_pgtable_unmap_pages(pgt, iova + sz, sz, 1), sz);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + sz), 0);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova), pa);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + 2 * sz), pa + 2 * sz);
		/* Unmapping stops at the first hole. */
		ASSERT_EQ(io_pgtable_unmap_pages(pgt, iova, sz, 3), sz);
		ASSERT_EQ(io_pgtable_unmap_pages(pgt, iova + 2 * sz, sz, 1), sz);
		ASSERT_EQ(io_pgtable_unmap_pages(pgt, iova + 2 * sz, sz, 1), 0);
	}
	io_pgtable_free(pgt);
}

TEST(map_across_tables)
{
	struct io_pgtable *pgt = pgt_new(48);
	/* 1030 small pages starting 4 pages before a 1 GiB boundary: three last-level tables,
	 * two level-2 tables. */
	uint64_t iova = SZ_1G - 4 * SZ_4K, pa = UINT64_C(0x100000000);

	ASSERT_TRUE(pgt != NULL);
	ASSERT_EQ(map(pgt, iova, pa, SZ_4K, 1030, RW), 0);
	for (uint64_t p = 0; p < 1030; p++)
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + p * SZ_4K + 8), pa + p * SZ_4K + 8);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + 1030 * SZ_4K), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, iova, SZ_4K, 1030), 1030 * SZ_4K);
	for (uint64_t p = 0; p < 1030; p++)
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + p * SZ_4K), 0);
	io_pgtable_free(pgt);
}

TEST(bad_arguments)
{
	struct io_pgtable *pgt = pgt_new(48);
	size_t mapped = 1;

	ASSERT_TRUE(pgt != NULL);
	ASSERT_EQ(io_pgtable_map_pages(pgt, 0, 0, 8192, 1, RW, &mapped), -EINVAL);
	ASSERT_EQ(mapped, 0);
	ASSERT_EQ(map(pgt, 0, 0, 512 * SZ_1G, 1, RW), -EINVAL); /* no 512 GiB leaves */
	ASSERT_EQ(map(pgt, 0, 0, 0, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, 0, 0, SZ_4K, 0, RW), -EINVAL);
	ASSERT_EQ(map(pgt, 0x800, 0, SZ_4K, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, 0, 0x800, SZ_4K, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, SZ_4K, 0, SZ_2M, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, 0, SZ_4K, SZ_2M, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, SZ_2M, 0, SZ_1G, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, 0, SZ_2M, SZ_1G, 1, RW), -EINVAL);
	ASSERT_EQ(map(pgt, 0, UINT64_MAX - SZ_4K + 1, SZ_4K, 2, RW), -ERANGE);
	ASSERT_EQ(map(pgt, 0, 0, SZ_4K, SIZE_MAX, RW), -ERANGE);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 0, 8192, 1), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 0x800, SZ_4K, 1), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 0, SZ_4K, 0), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, UINT64_C(1) << 48, SZ_4K, 1), 0);
	/* Nothing was created by any of this. */
	ASSERT_EQ(io_pgtable_nr_tables(pgt), 1);
	io_pgtable_free(pgt);

	/* With 32 bits there is no level 0, and 1 GiB leaves still exist. */
	pgt = pgt_new(32);
	ASSERT_TRUE(pgt != NULL);
	ASSERT_EQ(map(pgt, 3 * SZ_1G, 0, SZ_1G, 1, RW), 0);
	ASSERT_EQ(map(pgt, 3 * SZ_1G, 0, SZ_1G, 2, RW), -ERANGE);
	ASSERT_EQ(io_pgtable_nr_tables(pgt), 1);
	io_pgtable_free(pgt);
}

TEST(eexist)
{
	struct io_pgtable *pgt = pgt_new(48);
	size_t mapped;

	ASSERT_TRUE(pgt != NULL);
	/* A small page inside a large leaf, or a large leaf over a small page. */
	ASSERT_EQ(map(pgt, SZ_1G, 0, SZ_2M, 1, RW), 0);
	ASSERT_EQ(map(pgt, SZ_1G, 0, SZ_2M, 1, RW), -EEXIST);
	ASSERT_EQ(map(pgt, SZ_1G + 5 * SZ_4K, 0, SZ_4K, 1, RW), -EEXIST);
	ASSERT_EQ(map(pgt, SZ_1G, 0, SZ_1G, 1, RW), -EEXIST);
	ASSERT_EQ(map(pgt, 4 * SZ_1G + 511 * SZ_4K, 0, SZ_4K, 1, RW), 0);
	ASSERT_EQ(map(pgt, 4 * SZ_1G, 0, SZ_2M, 1, RW), -EEXIST);
	ASSERT_EQ(map(pgt, 4 * SZ_1G, 0, SZ_1G, 1, RW), -EEXIST);

	/* A run that meets a mapping reports how far it got; the caller undoes that. */
	ASSERT_EQ(io_pgtable_map_pages(pgt, 4 * SZ_1G + 500 * SZ_4K, 0, SZ_4K, 20, RW, &mapped),
		  -EEXIST);
	ASSERT_EQ(mapped, 11 * SZ_4K);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 4 * SZ_1G + 500 * SZ_4K, SZ_4K, 11), 11 * SZ_4K);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 4 * SZ_1G + 511 * SZ_4K), 0);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 4 * SZ_1G + 511 * SZ_4K + 1), 0 + 1);

	/* Once the small page is gone its empty tables give way to a large leaf. */
	long before = io_pgtable_nr_tables(pgt);

	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 4 * SZ_1G + 511 * SZ_4K, SZ_4K, 1), SZ_4K);
	ASSERT_EQ(io_pgtable_nr_tables(pgt), before); /* empty tables stay ... */
	ASSERT_EQ(map(pgt, 4 * SZ_1G, 0x40000000, SZ_1G, 1, RW), 0);
	ASSERT_EQ(io_pgtable_nr_tables(pgt), before - 2); /* ... until a leaf replaces them */
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 4 * SZ_1G + 511 * SZ_4K), 0x40000000 + 511 * SZ_4K);
	io_pgtable_free(pgt);
}

TEST(large_leaf_rules)
{
	struct io_pgtable *pgt = pgt_new(48);

	ASSERT_TRUE(pgt != NULL);
	/* Part of a large leaf is never unmapped: the leaf stays whole. */
	ASSERT_EQ(map(pgt, SZ_2M, 0x200000, SZ_2M, 1, RW), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, SZ_2M, SZ_4K, 1), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, SZ_2M + SZ_4K, SZ_4K, 511), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, SZ_2M, SZ_4K, 512), 0);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, SZ_2M + SZ_4K), 0x200000 + SZ_4K);
	ASSERT_EQ(map(pgt, 2 * SZ_1G, 0, SZ_1G, 1, RW), 0);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 2 * SZ_1G + SZ_2M, SZ_2M, 1), 0);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 2 * SZ_1G + SZ_2M), SZ_2M);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 2 * SZ_1G, SZ_1G, 1), SZ_1G);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, SZ_2M, SZ_2M, 1), SZ_2M);

	/* An unmap at a large size takes whatever small pages lie below, with their tables. */
	long base = io_pgtable_nr_tables(pgt);

	ASSERT_EQ(map(pgt, 8 * SZ_1G + 3 * SZ_4K, 0x3000, SZ_4K, 2, RW), 0);
	ASSERT_EQ(map(pgt, 8 * SZ_1G + SZ_2M, 0x3000, SZ_4K, 1, RW), 0);
	ASSERT_EQ(io_pgtable_nr_tables(pgt), base + 3);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 8 * SZ_1G, SZ_2M, 1), SZ_2M);
	ASSERT_EQ(io_pgtable_nr_tables(pgt), base + 2);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 8 * SZ_1G + 3 * SZ_4K), 0);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 8 * SZ_1G + SZ_2M), 0x3000);
	ASSERT_EQ(io_pgtable_unmap_pages(pgt, 8 * SZ_1G, SZ_1G, 1), SZ_1G);
	ASSERT_EQ(io_pgtable_nr_tables(pgt), base);
	ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 8 * SZ_1G + SZ_2M), 0);
	io_pgtable_free(pgt);
}

static void record_range(void *arg, uint64_t iova, uint64_t length)
{
	uint64_t *log = arg;

	log[1 + 2 * log[0]] = iova;
	log[2 + 2 * log[0]] = length;
	log[0]++;
}

TEST(dirty_bits)
{
	struct io_pgtable *pgt = pgt_new(48);
	struct io_pgtable_leaf leaf;
	uint64_t log[1 + 2 * 16] = { 0 };

	ASSERT_TRUE(pgt != NULL);
	ASSERT_EQ(map(pgt, 0, 0x10000, SZ_4K, 4, RW), 0);
	ASSERT_EQ(map(pgt, SZ_2M, 0, SZ_2M, 1, RW), 0);
	ASSERT_EQ(map(pgt, SZ_1G, 0, SZ_4K, 1, IO_PGTABLE_PROT_READ), 0);
	ASSERT_EQ(io_pgtable_mark_dirty(pgt, SZ_1G), -EPERM);
	ASSERT_EQ(io_pgtable_mark_dirty(pgt, 5 * SZ_4K), -ENOENT);
	ASSERT_EQ(io_pgtable_mark_dirty(pgt, SZ_4K + 7), 0);
	ASSERT_EQ(io_pgtable_mark_dirty(pgt, SZ_4K), 0); /* idempotent */
	ASSERT_EQ(io_pgtable_mark_dirty(pgt, SZ_2M + SZ_1G / 4096), 0);
	ASSERT_EQ(io_pgtable_walk(pgt, SZ_4K, &leaf), 0);
	ASSERT_TRUE(leaf.dirty);
	ASSERT_EQ(io_pgtable_walk(pgt, 0, &leaf), 0);
	ASSERT_FALSE(leaf.dirty);

	/* Without clearing, twice the same report; the large leaf is clipped to the range. */
	ASSERT_EQ(io_pgtable_read_and_clear_dirty(pgt, 0, 3 * SZ_2M, false, record_range, log), 0);
	ASSERT_EQ(log[0], 2);
	ASSERT_EQ(log[1], SZ_4K);
	ASSERT_EQ(log[2], SZ_4K);
	ASSERT_EQ(log[3], SZ_2M);
	ASSERT_EQ(log[4], SZ_2M);
	memset(log, 0, sizeof(log));
	ASSERT_EQ(io_pgtable_read_and_clear_dirty(pgt, SZ_2M + SZ_4K, SZ_4K, true, record_range,
						  log), 0);
	ASSERT_EQ(log[0], 1);
	ASSERT_EQ(log[1], SZ_2M + SZ_4K);
	ASSERT_EQ(log[2], SZ_4K);
	memset(log, 0, sizeof(log));
	ASSERT_EQ(io_pgtable_read_and_clear_dirty(pgt, 0, 4 * SZ_1G, true, record_range, log), 0);
	ASSERT_EQ(log[0], 1); /* the 2M leaf was cleared by the previous call */
	ASSERT_EQ(log[1], SZ_4K);
	memset(log, 0, sizeof(log));
	ASSERT_EQ(io_pgtable_read_and_clear_dirty(pgt, 0, 4 * SZ_1G, true, record_range, log), 0);
	ASSERT_EQ(log[0], 0);
	ASSERT_EQ(io_pgtable_read_and_clear_dirty(pgt, 0, 0, true, record_range, log), -EINVAL);
	io_pgtable_free(pgt);
}

/* ---- randomized, against a model: a list of leaves -------------------------------------- */

#define MODEL_MAX 4096
#define WINDOW_BASE (UINT64_C(510) << 30) /* 1 GiB aligned; crosses a level-0 entry at 512 GiB */
#define WINDOW_SIZE (UINT64_C(4) << 30)

struct model_leaf {
	uint64_t iova, pa, size;
	int prot;
};

struct model {
	struct model_leaf l[MODEL_MAX];
	unsigned int n;
};

static int model_find(struct model *m, uint64_t iova, uint64_t len)
{
	for (unsigned int i = 0; i < m->n; i++)
		if (m->l[i].iova < iova + len && iova < m->l[i].iova + m->l[i].size)
			return (int)i;
	return -1;
}

static void model_del(struct model *m, unsigned int i)
{
	m->l[i] = m->l[--m->n];
}

static uint64_t rnd(unsigned int *seed, uint64_t max)
{
	uint64_t v = ((uint64_t)rand_r(seed) << 31) ^ (uint64_t)rand_r(seed);

	return v % max;
}

static uint64_t model_phys(struct model *m, uint64_t iova)
{
	int i = model_find(m, iova, 1);

	return i < 0 ? 0 : m->l[i].pa + (iova - m->l[i].iova);
}

TEST(random_against_model)
{
	struct io_pgtable *pgt = pgt_new(48);
	struct model *m = calloc(1, sizeof(*m));
	unsigned int seed = 12345;
	int bad = 0;

	ASSERT_TRUE(pgt != NULL);
	ASSERT_TRUE(m != NULL);
	for (int step = 0; step < 6000; step++) {
		unsigned int kind = (unsigned int)rnd(&seed, 100);

		if (kind < 50 && m->n < MODEL_MAX - 16) {
			/* Map a run of a random size somewhere, usually free, sometimes not. */
			uint64_t r = rnd(&seed, 100);
			uint64_t sz = r < 75 ? SZ_4K : r < 97 ? SZ_2M : SZ_1G;
			size_t cnt = 1 + (size_t)rnd(&seed, sz == SZ_1G ? 2 : 8), mapped = 0;
			uint64_t iova = WINDOW_BASE + ALIGN_DOWN(rnd(&seed, WINDOW_SIZE), sz);
			uint64_t pa = ALIGN_DOWN(rnd(&seed, UINT64_C(1) << 46), sz);
			int prot = 1 + (int)rnd(&seed, 3), rc;
			size_t expect = 0;

			if (iova + cnt * sz > WINDOW_BASE + WINDOW_SIZE)
				cnt = 1;
			while (expect < cnt && model_find(m, iova + expect * sz, sz) < 0)
				expect++;
			rc = io_pgtable_map_pages(pgt, iova, pa, sz, cnt, prot, &mapped);
			if (rc != (expect == cnt ? 0 : -EEXIST) || mapped != expect * sz) {
				TH_LOG("step %d: map %#llx x%zu of %#llx: rc %d mapped %#zx, want %zu",
				       step, (unsigned long long)iova, cnt, (unsigned long long)sz,
				       rc, mapped, expect);
				bad++;
			}
			if (rc) {
				/* The caller's duty: undo the partial progress. */
				if (io_pgtable_unmap_pages(pgt, iova, sz, expect) != expect * sz)
					bad++;
			} else {
				for (size_t i = 0; i < cnt; i++)
					m->l[m->n++] = (struct model_leaf){ iova + i * sz,
									    pa + i * sz, sz, prot };
			}
		} else if (kind < 85 && m->n) {
			/* Unmap a run of leaves of one size, starting at a random leaf. */
			unsigned int i = (unsigned int)rnd(&seed, m->n);
			uint64_t iova = m->l[i].iova, sz = m->l[i].size;
			size_t cnt = 1 + (size_t)rnd(&seed, 4), expect = 0;
			int j;

			/*
			 * Each slot of the run holds a leaf of exactly @sz (it goes), smaller leaves
			 * (a table: they all go), a larger leaf (the unmap stops there), or nothing.
			 * Nothing may still be an empty table, which the unmap removes and counts:
			 * the model does not track tables, so the run is cut short there.
			 */
			while (expect < cnt) {
				uint64_t at = iova + expect * sz;

				j = model_find(m, at, sz);
				if (j < 0) {
					cnt = expect;
					break;
				}
				if (m->l[j].size > sz)
					break;
				while ((j = model_find(m, at, sz)) >= 0)
					model_del(m, (unsigned int)j);
				expect++;
			}
			if (cnt && io_pgtable_unmap_pages(pgt, iova, sz, cnt) != expect * sz) {
				TH_LOG("step %d: unmap %#llx x%zu: want %zu pages", step,
				       (unsigned long long)iova, cnt, expect);
				bad++;
			}
		} else if (m->n) {
			/* Try to unmap a small page inside a large leaf: refused, nothing changes. */
			unsigned int i = (unsigned int)rnd(&seed, m->n);

			if (m->l[i].size > SZ_4K) {
				uint64_t sub = m->l[i].size == SZ_1G ? SZ_2M : SZ_4K;
				uint64_t at = m->l[i].iova + ALIGN_DOWN(rnd(&seed, m->l[i].size), sub);

				if (io_pgtable_unmap_pages(pgt, at, sub, 1) != 0)
					bad++;
			}
		}
		/* Spot checks: random addresses and every leaf's edges, now and then. */
		for (int k = 0; k < 32; k++) {
			uint64_t a = WINDOW_BASE + rnd(&seed, WINDOW_SIZE);

			if (io_pgtable_iova_to_phys(pgt, a) != model_phys(m, a))
				bad++;
		}
		if (step % 500 == 0) {
			for (unsigned int i = 0; i < m->n; i++) {
				struct io_pgtable_leaf leaf;
				uint64_t e = m->l[i].iova + m->l[i].size - 1;

				if (io_pgtable_walk(pgt, e, &leaf) || leaf.iova != m->l[i].iova ||
				    leaf.size != m->l[i].size || leaf.phys != m->l[i].pa ||
				    leaf.prot != m->l[i].prot)
					bad++;
			}
		}
		if (bad)
			break;
	}
	EXPECT_EQ(bad, 0);
	/* A final sweep at 4K over the whole window would be 1M walks: take every 2M instead,
	 * plus one random offset in each. */
	for (uint64_t a = WINDOW_BASE; a < WINDOW_BASE + WINDOW_SIZE; a += SZ_2M) {
		uint64_t b = a + rnd(&seed, SZ_2M);

		if (io_pgtable_iova_to_phys(pgt, a) != model_phys(m, a) ||
		    io_pgtable_iova_to_phys(pgt, b) != model_phys(m, b))
			bad++;
	}
	EXPECT_EQ(bad, 0);
	io_pgtable_free(pgt);
	free(m);
}

/* ---- two threads building shared tables for disjoint pages -------------------------------- */

#define RACE_ROUNDS 1500

struct race {
	struct io_pgtable *pgt;
	pthread_barrier_t barrier;
	atomic_int bad;
};

struct race_arg {
	struct race *r;
	unsigned int id;
};

static void *race_thread(void *p)
{
	struct race_arg *a = p;
	struct race *r = a->r;

	for (unsigned int round = 0; round < RACE_ROUNDS; round++) {
		/* A fresh 1 GiB region each round: both threads need the same new level-2 and
		 * level-3 tables (and a new level-1 table every 512 rounds) at the same time. */
		uint64_t iova = ((uint64_t)(round + 1) << 30) + a->id * SZ_4K;
		uint64_t pa = ((uint64_t)round << 20) + a->id * SZ_4K;
		size_t mapped;

		pthread_barrier_wait(&r->barrier);
		if (io_pgtable_map_pages(r->pgt, iova, pa, SZ_4K, 1, RW, &mapped) ||
		    mapped != SZ_4K)
			atomic_fetch_add(&r->bad, 1);
		if (io_pgtable_iova_to_phys(r->pgt, iova) != pa)
			atomic_fetch_add(&r->bad, 1);
		/* Map and unmap a neighbour page of our own while the other thread does too. */
		for (int k = 0; k < 8; k++) {
			uint64_t x = iova + (2 + 2 * (uint64_t)k) * SZ_4K;

			if (io_pgtable_map_pages(r->pgt, x, pa, SZ_4K, 1, RW, &mapped) ||
			    io_pgtable_unmap_pages(r->pgt, x, SZ_4K, 1) != SZ_4K)
				atomic_fetch_add(&r->bad, 1);
		}
		/* The previous round's page goes: disjoint from everything the other does. */
		if (round && io_pgtable_unmap_pages(r->pgt, iova - SZ_1G, SZ_4K, 1) != SZ_4K)
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

TEST(concurrent_disjoint)
{
	struct race r = { .pgt = pgt_new(48) };
	struct race_arg args[2] = { { &r, 0 }, { &r, 1 } };
	pthread_t th[2];
	long tables;

	ASSERT_TRUE(r.pgt != NULL);
	atomic_init(&r.bad, 0);
	pthread_barrier_init(&r.barrier, NULL, 2);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, race_thread, &args[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	EXPECT_EQ(atomic_load(&r.bad), 0);

	/* Exactly one copy of each shared table survived the races: the root, the level-1
	 * tables (one per 512 GiB), and a level-2 and a level-3 table per round. */
	tables = 1 + (RACE_ROUNDS / 512 + 1) + 2 * RACE_ROUNDS;
	EXPECT_EQ(io_pgtable_nr_tables(r.pgt), tables);
	/* Only the last round's two pages are still there. */
	for (unsigned int id = 0; id < 2; id++) {
		uint64_t iova = ((uint64_t)RACE_ROUNDS << 30) + id * SZ_4K;

		EXPECT_EQ(io_pgtable_iova_to_phys(r.pgt, iova),
			  ((uint64_t)(RACE_ROUNDS - 1) << 20) + id * SZ_4K);
		EXPECT_EQ(io_pgtable_iova_to_phys(r.pgt, iova - SZ_1G), 0);
	}
	pthread_barrier_destroy(&r.barrier);
	io_pgtable_free(r.pgt);
}

/* ---- fault injection ------------------------------------------------------------------- */

TEST(fail_nth_map)
{
	/* 1030 pages from 4 pages below a 1 GiB boundary that is also a 512 GiB boundary:
	 * allocations at every level. */
	const uint64_t iova = (UINT64_C(512) << 30) - 4 * SZ_4K, pa = UINT64_C(0x200000000);
	const size_t count = 1030;
	long live0 = uiommu_alloc_live();
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 100; nth++) {
		struct io_pgtable *pgt = pgt_new(48);
		size_t mapped = 0;
		int rc;

		ASSERT_TRUE(pgt != NULL);
		/* Something that must survive every failure untouched. */
		ASSERT_EQ(map(pgt, 0, 0x200000, SZ_2M, 1, RW), 0);
		ASSERT_EQ(map(pgt, iova - SZ_4K, 0x5000, SZ_4K, 1, RW), 0);

		uiommu_fail_nth_arm(nth);
		rc = io_pgtable_map_pages(pgt, iova, pa, SZ_4K, count, RW, &mapped);
		if (uiommu_fail_nth_disarm()) {
			/* Ran past the last fallible point: the map is complete. */
			ASSERT_EQ(rc, 0);
			ASSERT_EQ(mapped, count * SZ_4K);
			io_pgtable_free(pgt);
			break;
		}
		ASSERT_EQ(rc, -ENOMEM);
		ASSERT_EQ(mapped % SZ_4K, 0);
		ASSERT_LT(mapped, count * SZ_4K);
		ASSERT_EQ(io_pgtable_unmap_pages(pgt, iova, SZ_4K, mapped / SZ_4K), mapped);
		/* The translations are those of before the call. */
		for (size_t p = 0; p < count; p++)
			ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova + p * SZ_4K), 0);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, 5), 0x200005);
		ASSERT_EQ(io_pgtable_iova_to_phys(pgt, iova - SZ_4K + 5), 0x5005);
		/* And the map works once the allocator does. */
		ASSERT_EQ(map(pgt, iova, pa, SZ_4K, count, RW), 0);
		io_pgtable_free(pgt);
		ASSERT_EQ(uiommu_alloc_live(), live0);
	}
	/* Level-1, -2 and three level-3 tables on the far side of the boundary at least. */
	ASSERT_GT(nth, 5);
	ASSERT_LT(nth, 100);
	ASSERT_EQ(uiommu_alloc_live(), live0);
}

TEST(fail_nth_alloc)
{
	long live0 = uiommu_alloc_live();
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 10; nth++) {
		struct io_pgtable *pgt;

		uiommu_fail_nth_arm(nth);
		pgt = io_pgtable_alloc(48);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_FALSE(IS_ERR(pgt));
			io_pgtable_free(pgt);
			break;
		}
		ASSERT_EQ(PTR_ERR(pgt), -ENOMEM);
		ASSERT_EQ(uiommu_alloc_live(), live0);
	}
	ASSERT_EQ(nth, 3); /* the object and the root table */
	ASSERT_EQ(uiommu_alloc_live(), live0);
}

TEST_HARNESS_MAIN
