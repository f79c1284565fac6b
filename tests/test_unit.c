// SPDX-License-Identifier: MIT
/*
 * White-box unit tests of the engine's data structures, linked against the library's objects:
 * the interval tree and the range B+tree (each against a brute-force model), the object ID
 * table, the pin bookkeeping of iopt_pages and the mm ledger, the automatic IOVA allocator
 * (against a brute-force first-fit), and the short user copies (short_copies_*): every length
 * up to past the word loop, at every distance from an inaccessible page, each way, through
 * each path a copy can take (the exception-table routine called inline inside a span, the
 * mm's ops outside one, the host copy), against a byte-at-a-time reference: EFAULT exactly
 * when a byte of the range is inaccessible, every byte copied otherwise, nothing written
 * outside the range. And one case of the RCU dispatch that needs the fail-point hook: a
 * signal handler's last close inside an ioctl's read-side section.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu_test.h"
#include "iommu/io_pgtable.h"
#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/interval_tree.h"
#include "lib/rangemap.h"
#include "lib/rcu.h"
#include "lib/sys.h"
#include "machine/session.h"
#include "machine/sysfs.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

/* ---- interval tree ------------------------------------------------------------------------ */

#define IT_N 600

struct it_model {
	struct interval_tree_node node[IT_N];
	bool in[IT_N];
};

static uint64_t rnd64(unsigned int *seed, uint64_t max)
{
	uint64_t v = ((uint64_t)rand_r(seed) << 31) ^ (uint64_t)rand_r(seed);

	return max ? v % max : v;
}

static void it_check_queries(struct interval_tree_root *root, struct it_model *m,
			     unsigned int *seed, int *bad)
{
	int q;

	for (q = 0; q < 20; q++) {
		uint64_t s = rnd64(seed, 10000), l = s + rnd64(seed, 500);
		struct interval_tree_node *n;
		uint64_t prev_start = 0;
		int seen = 0, expect = 0, i;

		for (i = 0; i < IT_N; i++)
			if (m->in[i] && m->node[i].start <= l && m->node[i].last >= s)
				expect++;
		interval_tree_for_each(n, root, s, l) {
			if (n->start > l || n->last < s || n->start < prev_start)
				(*bad)++;
			prev_start = n->start;
			seen++;
		}
		if (seen != expect)
			(*bad)++;
	}
}

TEST(interval_tree_matches_model)
{
	struct interval_tree_root root;
	struct it_model *m = calloc(1, sizeof(*m));
	unsigned int seed = 42;
	int step, bad = 0;

	ASSERT_TRUE(m != NULL);
	interval_tree_init(&root);
	for (step = 0; step < 4000; step++) {
		int i = rand_r(&seed) % IT_N;

		if (m->in[i]) {
			interval_tree_remove(&root, &m->node[i]);
			m->in[i] = false;
		} else {
			m->node[i].start = rnd64(&seed, 10000);
			m->node[i].last = m->node[i].start + rnd64(&seed, 300);
			interval_tree_insert(&root, &m->node[i]);
			m->in[i] = true;
		}
		if (step < 1500 || step % 97 == 0) {
			ASSERT_TRUE(interval_tree_verify(&root));
			it_check_queries(&root, m, &seed, &bad);
		}
	}
	ASSERT_TRUE(interval_tree_verify(&root));
	ASSERT_EQ(0, bad);
	free(m);
}

/* ---- rangemap ----------------------------------------------------------------------------- */

/*
 * The model: a bitmap of which of RM_UNITS units are covered, and for each entry (by start)
 * its last. Entries are unit ranges scaled by RM_SCALE so gaps have lengths in bytes, and
 * the top unit ends at U64_MAX so the tail gap and the full range are exercised.
 */
#define RM_UNITS 3000
#define RM_SCALE ((uint64_t)1 << 40)

struct rm_model {
	int last_unit[RM_UNITS]; /* -1: no entry starts here */
	bool covered[RM_UNITS];
	unsigned long count;
};

static uint64_t rm_unit_start(int u)
{
	return (uint64_t)u * (UINT64_MAX / RM_UNITS + 1);
}

static uint64_t rm_unit_last(int u)
{
	return u == RM_UNITS - 1 ? UINT64_MAX : rm_unit_start(u + 1) - 1;
}

static void *rm_value(int u)
{
	return (void *)(uintptr_t)(0x1000 + u);
}

/* Checks iteration over random windows against the model. */
static void rm_check_queries(struct __h_test *_metadata, struct rangemap *map,
			     struct rm_model *m, unsigned int *seed)
{
	int q;

	for (q = 0; q < 8; q++) {
		int a = rand_r(seed) % RM_UNITS, b = a + rand_r(seed) % 40, u = 0;
		uint64_t s = rm_unit_start(a) + rnd64(seed, 1000), l;
		struct rangemap_iter it;
		void *v;

		if (b >= RM_UNITS)
			b = RM_UNITS - 1;
		l = rm_unit_last(b) - rnd64(seed, 1000);
		/* Entries are whole units: those overlapping [s, l] are those meeting [a, b]. */
		rangemap_for_each(v, &it, map, s, l) {
			while (u <= b && (m->last_unit[u] < 0 || m->last_unit[u] < a))
				u++;
			ASSERT_TRUE(u <= b);
			ASSERT_TRUE(v == rm_value(u));
			ASSERT_EQ(rm_unit_start(u), it.start);
			ASSERT_EQ(rm_unit_last(m->last_unit[u]), it.last);
			u++;
		}
		while (u <= b && (m->last_unit[u] < 0 || m->last_unit[u] < a))
			u++;
		ASSERT_TRUE(u > b);
	}
}

struct rm_fit {
	uint64_t min_unit_len; /* in units, of the gap asked for */
	uint64_t got_start, got_last;
	int reject_below; /* fits() rejects gaps starting below this unit */
	int calls;
};

static bool rm_fit_fn(uint64_t start, uint64_t last, void *arg)
{
	struct rm_fit *f = arg;

	f->calls++;
	if (start < rm_unit_start(f->reject_below))
		return false;
	f->got_start = start;
	f->got_last = last;
	return true;
}

/* First fit against the model: the lowest run of free units at least @len long. */
static void rm_check_gap_find(struct __h_test *_metadata, struct rangemap *map,
			      struct rm_model *m, unsigned int *seed)
{
	struct rm_fit f = { 0 };
	int len = 1 + rand_r(seed) % 6, u, run = 0, want = -1, want_end = -1;
	bool found;

	f.reject_below = rand_r(seed) % 4 ? 0 : rand_r(seed) % RM_UNITS;
	for (u = 0; u <= RM_UNITS; u++) {
		if (u < RM_UNITS && !m->covered[u]) {
			run++;
			continue;
		}
		if (run >= len && u - run >= f.reject_below && want < 0) {
			want = u - run;
			want_end = u - 1;
		}
		run = 0;
	}
	found = rangemap_gap_find(map, (uint64_t)len * (UINT64_MAX / RM_UNITS + 1) - 1,
				  rm_fit_fn, &f);
	ASSERT_EQ(want >= 0, found);
	if (found) {
		ASSERT_EQ(rm_unit_start(want), f.got_start);
		ASSERT_EQ(rm_unit_last(want_end), f.got_last);
	}
}

TEST(rangemap_matches_model)
{
	struct rm_model *m = calloc(1, sizeof(*m));
	struct rangemap map;
	unsigned int seed = 11;
	int step, u;

	ASSERT_TRUE(m != NULL);
	for (u = 0; u < RM_UNITS; u++)
		m->last_unit[u] = -1;
	rangemap_init(&map);
	/* Fill up, then churn, then drain: the tree grows and shrinks through several heights. */
	for (step = 0; step < 60000; step++) {
		int phase = step < 20000 ? 0 : step < 45000 ? 1 : 2;
		int a = rand_r(&seed) % RM_UNITS, op = rand_r(&seed) % 10;
		bool grow = phase == 0 ? op < 8 : phase == 1 ? op < 5 : op < 1;

		if (grow && !m->covered[a]) {
			int b = a, max = a + rand_r(&seed) % 3;

			while (b < max && b + 1 < RM_UNITS && !m->covered[b + 1])
				b++;
			ASSERT_EQ(0, rangemap_reserve(&map, 1));
			rangemap_insert(&map, rm_unit_start(a), rm_unit_last(b), rm_value(a));
			m->last_unit[a] = b;
			for (u = a; u <= b; u++)
				m->covered[u] = true;
			m->count++;
		} else if (!grow) {
			/* Remove the entry covering a, or shrink it when it is longer than one unit. */
			for (u = a; u >= 0 && m->last_unit[u] < 0; u--)
				;
			if (u >= 0 && m->last_unit[u] >= a) {
				if (m->last_unit[u] > u && op == 0) {
					m->covered[m->last_unit[u]] = false;
					m->last_unit[u]--;
					rangemap_set_last(&map, rm_unit_start(u),
							  rm_unit_last(m->last_unit[u]));
				} else {
					int v;

					ASSERT_TRUE(rangemap_remove(&map, rm_unit_start(u)) ==
						    rm_value(u));
					for (v = u; v <= m->last_unit[u]; v++)
						m->covered[v] = false;
					m->last_unit[u] = -1;
					m->count--;
				}
			}
		}
		ASSERT_EQ(m->count, map.count);
		if (step % 97 == 0) {
			ASSERT_TRUE(rangemap_verify(&map));
			rm_check_queries(_metadata, &map, m, &seed);
			rm_check_gap_find(_metadata, &map, m, &seed);
		}
	}
	ASSERT_TRUE(rangemap_verify(&map));
	rangemap_destroy(&map);
	free(m);
}

static bool rm_fit_count(uint64_t start, uint64_t last, void *arg)
{
	(void)start;
	(void)last;
	(*(int *)arg)++;
	return false;
}

TEST(rangemap_gaps_edges_and_pruning)
{
	struct rangemap map;
	struct rm_fit f = { 0 };
	int calls = 0, i;

	rangemap_init(&map);
	/* Empty: one gap, all of U64. */
	ASSERT_TRUE(rangemap_gap_find(&map, UINT64_MAX, rm_fit_fn, &f));
	ASSERT_EQ(0, f.got_start);
	ASSERT_EQ(UINT64_MAX, f.got_last);
	/* Entries at both ends: no leading or tail gap. */
	ASSERT_EQ(0, rangemap_reserve(&map, 2));
	rangemap_insert(&map, 0, 9, rm_value(0));
	rangemap_insert(&map, UINT64_MAX - 9, UINT64_MAX, rm_value(1));
	ASSERT_FALSE(rangemap_gap_find(&map, UINT64_MAX, rm_fit_fn, &f));
	ASSERT_TRUE(rangemap_gap_find(&map, UINT64_MAX - 20, rm_fit_fn, &f));
	ASSERT_EQ(10, f.got_start);
	ASSERT_EQ(UINT64_MAX - 10, f.got_last);
	ASSERT_FALSE(rangemap_gap_find(&map, UINT64_MAX - 19, rm_fit_fn, &f));
	rangemap_remove(&map, 0);
	rangemap_remove(&map, UINT64_MAX - 9);
	ASSERT_TRUE(rangemap_empty(&map));
	/* Empty again, it holds no memory (no spares either). */
	ASSERT_EQ(0, rangemap_spare_count(&map));
	ASSERT_EQ(0, map.nodes);
	/* 10,000 entries each followed by a one-byte gap, then a big tail. */
	for (i = 0; i < 10000; i++) {
		ASSERT_EQ(0, rangemap_reserve(&map, 1));
		rangemap_insert(&map, 2 * (uint64_t)i, 2 * (uint64_t)i, rm_value(i));
	}
	ASSERT_TRUE(rangemap_verify(&map));
	/* Appended in order, leaves are three-quarters full, not half: under a node per 5. */
	ASSERT_TRUE(map.nodes * 5 <= 10000);
	/* Every one-byte gap is offered in order (the first is the leading one: none). */
	ASSERT_FALSE(rangemap_gap_find(&map, 0, rm_fit_count, &calls));
	ASSERT_EQ(10000, calls);
	/* A two-byte request meets only the tail: no small gap is offered. */
	calls = 0;
	ASSERT_FALSE(rangemap_gap_find(&map, 1, rm_fit_count, &calls));
	ASSERT_EQ(1, calls);
	rangemap_destroy(&map);
	ASSERT_TRUE(rangemap_verify(&map));
}

/* Reserve is the only fallible step; a failed one leaves the map as it was. */
TEST(rangemap_reserve_fail_nth)
{
	struct rangemap map;
	long base = uiommu_alloc_live();
	unsigned long nth;
	int i;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	rangemap_init(&map);
	for (i = 0; i < 200; i++) {
		ASSERT_EQ(0, rangemap_reserve(&map, 1));
		rangemap_insert(&map, 4 * (uint64_t)i, 4 * (uint64_t)i + 1, rm_value(i));
	}
	rangemap_spare_trim(&map, 0);
	for (nth = 1; nth < 100; nth++) {
		long live = uiommu_alloc_live();
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = rangemap_reserve(&map, 3);
		if (uiommu_fail_nth_disarm())
			break;
		ASSERT_EQ(-ENOMEM, rc);
		ASSERT_TRUE(rangemap_verify(&map));
		ASSERT_EQ(200, map.count);
		rangemap_spare_trim(&map, 0);
		ASSERT_EQ(live, uiommu_alloc_live());
	}
	ASSERT_TRUE(nth > 1 && nth < 100);
	for (i = 0; i < 3; i++)
		rangemap_insert(&map, 4 * (uint64_t)i + 2, 4 * (uint64_t)i + 2, rm_value(i));
	ASSERT_TRUE(rangemap_verify(&map));
	rangemap_destroy(&map);
	ASSERT_EQ(base, uiommu_alloc_live());
}

struct span_rec {
	int n;
	bool hole[64];
	uint64_t s[64], l[64];
};

static int span_cb(void *arg, bool is_hole, uint64_t s, uint64_t l)
{
	struct span_rec *r = arg;

	if (r->n < 64) {
		r->hole[r->n] = is_hole;
		r->s[r->n] = s;
		r->l[r->n] = l;
	}
	r->n++;
	return 0;
}

TEST(interval_tree_spans_cover_exactly)
{
	struct interval_tree_node a = { .start = 10, .last = 20 }, b = { .start = 15, .last = 30 },
				  c = { .start = 31, .last = 40 }, d = { .start = 50, .last = 50 };
	struct interval_tree_root root;
	struct span_rec r = { 0 };

	interval_tree_init(&root);
	interval_tree_insert(&root, &a);
	interval_tree_insert(&root, &b);
	interval_tree_insert(&root, &c);
	interval_tree_insert(&root, &d);
	interval_tree_for_each_span(&root, 0, 60, span_cb, &r);
	/* [0,9] hole, [10,40] used (a, b, c touch), [41,49] hole, [50,50] used, [51,60] hole */
	ASSERT_EQ(5, r.n);
	ASSERT_TRUE(r.hole[0]); ASSERT_EQ(0, r.s[0]); ASSERT_EQ(9, r.l[0]);
	ASSERT_FALSE(r.hole[1]); ASSERT_EQ(10, r.s[1]); ASSERT_EQ(40, r.l[1]);
	ASSERT_TRUE(r.hole[2]); ASSERT_EQ(41, r.s[2]); ASSERT_EQ(49, r.l[2]);
	ASSERT_FALSE(r.hole[3]); ASSERT_EQ(50, r.s[3]); ASSERT_EQ(50, r.l[3]);
	ASSERT_TRUE(r.hole[4]); ASSERT_EQ(51, r.s[4]); ASSERT_EQ(60, r.l[4]);

	/* A window inside one used run, and the full 64-bit range. */
	memset(&r, 0, sizeof(r));
	interval_tree_for_each_span(&root, 12, 35, span_cb, &r);
	ASSERT_EQ(1, r.n);
	ASSERT_FALSE(r.hole[0]); ASSERT_EQ(12, r.s[0]); ASSERT_EQ(35, r.l[0]);
	memset(&r, 0, sizeof(r));
	interval_tree_for_each_span(&root, 0, UINT64_MAX, span_cb, &r);
	ASSERT_EQ(5, r.n);
	ASSERT_EQ(UINT64_MAX, r.l[4]);
}

/* ---- the object ID table -------------------------------------------------------------------- */

static struct uiommu_mm *test_mm(void)
{
	struct uiommu_mm *mm = uiommu_mm_self();

	if (IS_ERR(mm))
		abort();
	return mm;
}

static uint32_t obj_id(struct iommufd_ioas *ioas)
{
	return atomic_load(&ioas->obj.id);
}

TEST(id_table_lowest_free_and_publication)
{
	struct uiommu_mm *mm = test_mm();
	struct iommufd_ctx *ictx = iommufd_ctx_alloc(mm);
	struct iommufd_ioas *a, *b, *c, *d;
	struct iommufd_object *obj;

	ASSERT_FALSE(IS_ERR(ictx));
	a = iommufd_ioas_alloc(ictx);
	b = iommufd_ioas_alloc(ictx);
	c = iommufd_ioas_alloc(ictx);
	ASSERT_EQ(1, obj_id(a));
	ASSERT_EQ(2, obj_id(b));
	ASSERT_EQ(3, obj_id(c));

	/* Reserved but unpublished: invisible to lookups and to destroy. */
	obj = iommufd_get_object(ictx, 2, IOMMUFD_OBJ_ANY);
	ASSERT_EQ(-ENOENT, PTR_ERR(obj));
	ASSERT_EQ(-ENOENT, iommufd_object_remove(ictx, NULL, 2, 0));

	iommufd_object_finalize(ictx, &a->obj);
	iommufd_object_finalize(ictx, &c->obj);
	/* An aborted object gives its ID back, and the lowest free ID is reused. */
	iommufd_object_abort_and_destroy(ictx, &b->obj);
	d = iommufd_ioas_alloc(ictx);
	ASSERT_EQ(2, obj_id(d));
	iommufd_object_finalize(ictx, &d->obj);

	/* Typed lookups: the wrong type is ENOENT. */
	obj = iommufd_get_object(ictx, 1, IOMMUFD_OBJ_HWPT_PAGING);
	ASSERT_EQ(-ENOENT, PTR_ERR(obj));
	obj = iommufd_get_object(ictx, 1, IOMMUFD_OBJ_IOAS);
	ASSERT_FALSE(IS_ERR(obj));
	/* A short-term holder makes destroy EBUSY; after the put it succeeds. */
	ASSERT_EQ(-EBUSY, iommufd_object_remove(ictx, NULL, 1, 0));
	iommufd_put_object(ictx, obj);
	/* So does a long-term reference. */
	iommufd_object_ref_users(&c->obj);
	ASSERT_EQ(-EBUSY, iommufd_object_remove(ictx, NULL, 3, 0));
	iommufd_object_unref_users(&c->obj);

	ASSERT_EQ(0, iommufd_object_remove(ictx, NULL, 1, 0));
	ASSERT_EQ(-ENOENT, iommufd_object_remove(ictx, NULL, 1, 0));
	/* A tombstone keeps its ID until the context goes. */
	ASSERT_EQ(0, iommufd_object_remove(ictx, NULL, 2, REMOVE_OBJ_TOMBSTONE));
	a = iommufd_ioas_alloc(ictx);
	ASSERT_EQ(1, obj_id(a));
	b = iommufd_ioas_alloc(ictx);
	ASSERT_EQ(4, obj_id(b));
	iommufd_object_finalize(ictx, &a->obj);
	iommufd_object_finalize(ictx, &b->obj);
	iommufd_ctx_release(ictx);
	uiommu_mm_put(mm);
}

TEST(id_table_many_ids_grow_and_reuse)
{
	struct uiommu_mm *mm = test_mm();
	struct iommufd_ctx *ictx = iommufd_ctx_alloc(mm);
	uint32_t i;

	for (i = 1; i <= 1000; i++) {
		struct iommufd_ioas *ioas = iommufd_ioas_alloc(ictx);

		ASSERT_FALSE(IS_ERR(ioas));
		ASSERT_EQ(i, obj_id(ioas));
		iommufd_object_finalize(ictx, &ioas->obj);
	}
	for (i = 500; i <= 700; i += 100)
		ASSERT_EQ(0, iommufd_object_remove(ictx, NULL, i, 0));
	for (i = 500; i <= 700; i += 100) {
		struct iommufd_ioas *ioas = iommufd_ioas_alloc(ictx);

		ASSERT_EQ(i, obj_id(ioas));
		iommufd_object_finalize(ictx, &ioas->obj);
	}
	iommufd_ctx_release(ictx);
	uiommu_mm_put(mm);
}

/* ---- pin bookkeeping --------------------------------------------------------------------------- */

static uint64_t page_index(const void *p)
{
	return (uint64_t)(uintptr_t)p >> uiommu_page_shift;
}

TEST(pin_ledger_counts_each_pages_object_once)
{
	size_t ps = uiommu_page_size;
	char *buf = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uiommu_mm *mm = test_mm();
	struct iopt_pages *p1, *p2;
	struct iopt_pages_pin a, b, c;
	uint64_t base = page_index(buf);
	int i;

	ASSERT_TRUE(buf != MAP_FAILED);
	p1 = iopt_alloc_user_pages(mm, (uint64_t)(uintptr_t)buf, 8 * ps, true);
	p2 = iopt_alloc_user_pages(mm, (uint64_t)(uintptr_t)buf, 8 * ps, true);
	ASSERT_FALSE(IS_ERR(p1));
	ASSERT_FALSE(IS_ERR(p2));
	/* Lazy: nothing pinned by naming memory. */
	for (i = 0; i < 8; i++)
		ASSERT_EQ(0, uiommu_mm_pin_count(mm, base + i));

	ASSERT_EQ(0, iopt_pages_pin(p1, &a, 0, 3));
	ASSERT_EQ(0, iopt_pages_pin(p1, &b, 2, 5));
	/* Overlapping pin users of one iopt_pages pin each page once. */
	for (i = 0; i < 8; i++)
		ASSERT_EQ(i <= 5 ? 1u : 0u, uiommu_mm_pin_count(mm, base + i));
	ASSERT_EQ(6, p1->pinned);
	/* A second iopt_pages over the same memory counts again, like a second GUP pin. */
	ASSERT_EQ(0, iopt_pages_pin(p2, &c, 1, 1));
	ASSERT_EQ(2, uiommu_mm_pin_count(mm, base + 1));

	iopt_pages_unpin(p1, &a);
	for (i = 0; i < 8; i++)
		ASSERT_EQ(i == 1 ? 1u : (i >= 2 && i <= 5) ? 1u : 0u,
			  uiommu_mm_pin_count(mm, base + i));
	iopt_pages_unpin(p1, &b);
	iopt_pages_unpin(p2, &c);
	for (i = 0; i < 8; i++)
		ASSERT_EQ(0, uiommu_mm_pin_count(mm, base + i));
	ASSERT_EQ(0, p1->pinned);
	iopt_pages_put(p1);
	iopt_pages_put(p2);
	munmap(buf, 8 * ps);
	uiommu_mm_put(mm);
}

TEST(pin_is_all_or_nothing)
{
	size_t ps = uiommu_page_size;
	char *buf = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uiommu_mm *mm = test_mm();
	struct iopt_pages *p, *ro;
	struct iopt_pages_pin a, b;
	uint64_t base = page_index(buf);
	unsigned long nth;
	int i, rc;

	ASSERT_TRUE(buf != MAP_FAILED);
	/* Page 5 is not accessible: a pin across it fails with EFAULT and pins nothing. */
	ASSERT_EQ(0, mprotect(buf + 5 * ps, ps, PROT_NONE));
	p = iopt_alloc_user_pages(mm, (uint64_t)(uintptr_t)buf, 8 * ps, true);
	ASSERT_EQ(0, iopt_pages_pin(p, &a, 3, 4));
	ASSERT_EQ(-EFAULT, iopt_pages_pin(p, &b, 0, 7));
	for (i = 0; i < 8; i++)
		ASSERT_EQ(i == 3 || i == 4 ? 1u : 0u, uiommu_mm_pin_count(mm, base + i));
	ASSERT_EQ(2, p->pinned);

	/* A writable pin of read-only memory is EFAULT; a read-only one works. */
	ASSERT_EQ(0, mprotect(buf + 6 * ps, 2 * ps, PROT_READ));
	ASSERT_EQ(-EFAULT, iopt_pages_pin(p, &b, 6, 7));
	ro = iopt_alloc_user_pages(mm, (uint64_t)(uintptr_t)buf + 6 * ps, 2 * ps, false);
	ASSERT_EQ(0, iopt_pages_pin(ro, &b, 0, 1));
	ASSERT_EQ(1, uiommu_mm_pin_count(mm, base + 6));
	iopt_pages_unpin(ro, &b);
	iopt_pages_put(ro);

	/* Fail each fallible step of a pin in turn: the ledger never changes. */
	for (nth = 1; uiommu_fail_nth_available() && nth < 50; nth++) {
		uiommu_fail_nth_arm(nth);
		rc = iopt_pages_pin(p, &b, 0, 2);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			iopt_pages_unpin(p, &b);
			break;
		}
		ASSERT_NE(0, rc);
		for (i = 0; i < 8; i++)
			ASSERT_EQ(i == 3 || i == 4 ? 1u : 0u, uiommu_mm_pin_count(mm, base + i));
	}
	ASSERT_TRUE(nth > 1 || !uiommu_fail_nth_available());
	iopt_pages_unpin(p, &a);
	ASSERT_EQ(0, uiommu_mm_pinned_pages(mm));
	iopt_pages_put(p);
	munmap(buf, 8 * ps);
	uiommu_mm_put(mm);
}

/*
 * The window (mm/window.c), through a remote mm of this very process (mm_remote.c: its pidfd,
 * /proc/self/mem and /proc/self/maps, as a client hands them over): a pin of private memory
 * gives each page a window address, contiguous over the run; host copies through it reach the
 * pages (both ways, and window to window), and a plain access would fault; a pin's failure at
 * any step leaves no pin and no window address; the last unpin frees the addresses (EFAULT
 * from then); a page the owner unmapped or replaced by a shared mapping answers EFAULT.
 */
TEST(window_gives_private_pages_of_another_mm_host_addresses)
{
	size_t ps = uiommu_page_size;
	uint8_t *buf = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			    0);
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	int mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	int maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	uint64_t base = page_index(buf), uaddr = (uintptr_t)buf;
	struct uiommu_mm *mm;
	uint8_t *w, byte = 0x22, back[2];
	unsigned long nth;
	int rc, memfd;

	ASSERT_TRUE(buf != MAP_FAILED);
	ASSERT_GE(pidfd, 0);
	ASSERT_GE(mem_fd, 0);
	ASSERT_GE(maps_fd, 0);
	memset(buf, 0x11, 4 * ps);
	mm = uiommu_mm_remote_new(getpid(), pidfd, mem_fd, maps_fd, -1);
	ASSERT_FALSE(IS_ERR(mm));
	/* Not pinned: no host address. */
	ASSERT_EQ(NULL, mm->ops->host_ptr(mm, uaddr));

	/* Each fallible step of the pin (the window's reservation among them) fails cleanly. */
	for (nth = 1; uiommu_fail_nth_available() && nth < 50; nth++) {
		uiommu_fail_nth_arm(nth);
		rc = uiommu_mm_pin(mm, base, 4, true);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_TRUE(rc == -ENOMEM || rc == -EFAULT);
		ASSERT_EQ(0, uiommu_mm_pinned_pages(mm));
		ASSERT_EQ(NULL, mm->ops->host_ptr(mm, uaddr));
	}
	if (!uiommu_fail_nth_available())
		ASSERT_EQ(0, uiommu_mm_pin(mm, base, 4, true));
	ASSERT_TRUE(nth > 2 || !uiommu_fail_nth_available());

	w = mm->ops->host_ptr(mm, uaddr);
	ASSERT_NE(NULL, w);
	ASSERT_TRUE(w != buf && uiommu_host_is_window((uintptr_t)w) &&
		    !uiommu_host_is_window((uintptr_t)buf));
	for (int i = 1; i < 4; i++)
		ASSERT_EQ(w + i * ps, mm->ops->host_ptr(mm, uaddr + i * ps));
	/* A second pin of the same pages: the same addresses. */
	ASSERT_EQ(0, uiommu_mm_pin(mm, base + 1, 1, false));
	ASSERT_EQ(w + ps, mm->ops->host_ptr(mm, uaddr + ps));
	ASSERT_EQ(2, uiommu_mm_pin_count(mm, base + 1));

	/* Host copies through the window are the pages themselves, both ways. */
	ASSERT_EQ(0, uiommu_host_copy(w + 5, &byte, 1));
	ASSERT_EQ(0x22, buf[5]);
	buf[ps + 7] = 0x33;
	ASSERT_EQ(0, uiommu_host_copy(back, w + ps + 6, 2));
	ASSERT_EQ(0x11, back[0]);
	ASSERT_EQ(0x33, back[1]);
	/* Window to window, across pages. */
	ASSERT_EQ(0, uiommu_host_copy(w + 2 * ps, w + ps - 1, ps));
	ASSERT_EQ(0x11, buf[2 * ps]);
	ASSERT_EQ(0x33, buf[2 * ps + 8]);

	/* The last unpin of the first page frees its address; the second is still pinned twice. */
	uiommu_mm_unpin(mm, base, 2);
	ASSERT_EQ(NULL, mm->ops->host_ptr(mm, uaddr));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(w, &byte, 1));
	ASSERT_EQ(w + ps, mm->ops->host_ptr(mm, uaddr + ps));
	ASSERT_EQ(0, uiommu_host_copy(w + ps, &byte, 1));
	ASSERT_EQ(0x22, buf[ps]);

	/* The owner unmaps a page: EFAULT there, never a crash; its neighbour still works. */
	ASSERT_EQ(0, munmap(buf + 3 * ps, ps));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(w + 3 * ps, &byte, 1));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(back, w + 3 * ps - 1, 2));
	ASSERT_EQ(0, uiommu_host_copy(back, w + 3 * ps - 1, 1));

	/* A shared mapping where a pinned private page was: the next look kills its address. */
	memfd = memfd_create("window", MFD_CLOEXEC);
	ASSERT_GE(memfd, 0);
	ASSERT_EQ(0, ftruncate(memfd, (off_t)ps));
	ASSERT_EQ(buf + 2 * ps, mmap(buf + 2 * ps, ps, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_FIXED, memfd, 0));
	ASSERT_EQ(0, mm->ops->fault_in(mm, uaddr + 2 * ps, 1, true));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(w + 2 * ps, &byte, 1));
	ASSERT_EQ(buf + 2 * ps, mm->ops->host_ptr(mm, uaddr + 2 * ps));

	uiommu_mm_unpin(mm, base + 1, 3);
	ASSERT_EQ(0, uiommu_mm_pinned_pages(mm));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(w + ps, &byte, 1));
	uiommu_mm_put(mm);
	close(memfd);
	munmap(buf, 3 * ps);
}

/*
 * A fork of a process whose window exists leaves the child's window lock usable: the child can
 * fork again (the exec hand-over's next server is a fork of a fork) and pin through the window.
 * The fork handler write-locks the lock; unlocking that copy in the child is a reader's unlock
 * to glibc (its writer is the parent's thread id), which left the child's next fork waiting for
 * ever. A child stuck that way dies of its alarm.
 */
TEST(a_fork_child_of_a_window_user_forks_and_pins_again)
{
	size_t ps = uiommu_page_size;
	uint8_t *buf = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	int mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	int maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	struct uiommu_mm *mm;
	pid_t child;

	ASSERT_TRUE(buf != MAP_FAILED);
	ASSERT_GE(pidfd, 0);
	ASSERT_GE(mem_fd, 0);
	ASSERT_GE(maps_fd, 0);
	memset(buf, 0x11, ps);
	mm = uiommu_mm_remote_new(getpid(), pidfd, mem_fd, maps_fd, -1);
	ASSERT_FALSE(IS_ERR(mm));
	ASSERT_EQ(0, uiommu_mm_pin(mm, page_index(buf), 1, true));
	ASSERT_TRUE(uiommu_host_is_window((uintptr_t)mm->ops->host_ptr(mm, (uintptr_t)buf)));

	child = fork();
	ASSERT_GE(child, 0);
	if (!child) {
		pid_t grandchild;

		alarm(10);
		grandchild = fork();
		if (grandchild < 0)
			_exit(2);
		if (!grandchild)
			_exit(0);
		if (test_child_wait(grandchild))
			_exit(3);
		/* The window's lock, taken for write and read, in the child. */
		uiommu_mm_unpin(mm, page_index(buf), 1);
		_exit(uiommu_mm_pin(mm, page_index(buf), 1, true) ? 4 : 0);
	}
	ASSERT_EQ(0, test_child_wait(child));
	uiommu_mm_unpin(mm, page_index(buf), 1);
	uiommu_mm_put(mm);
	munmap(buf, ps);
}

/*
 * A host copy over a run of window addresses that several extents share (mm/window.c: one copy
 * of the owner's for the run, one range per run of its addresses): separate pins of two
 * buffers get extents that follow each other in the window, and a copy over all of them moves
 * every byte, both ways, to the right places; an extent the owner's notice killed in the
 * middle stops the copy there (what came before it moved, nothing after); a hole in the
 * owner's memory that no notice told of stops it with EFAULT too.
 */
/*
 * A remote mm made with a life word's page (mm_remote.c): a word that names a thread of the
 * process makes its copies go on that word alone (uiommu_remote_life_copies() counts them),
 * and once it says OWNER_DIED every copy is EFAULT, with no fallback; a word that names no
 * thread of the process (0, another process's pid, already dead) or a mapping that fails
 * (fail-nth) leaves the copies to the mem fd's check, which still works.
 */
static struct uiommu_mm *life_mm(struct __h_test *_metadata, uint32_t word,
				  _Atomic uint32_t **page)
{
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	int mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	int maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	int life_fd = memfd_create("life", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct uiommu_mm *mm;

	EXPECT_GE(pidfd, 0);
	EXPECT_GE(mem_fd, 0);
	EXPECT_GE(maps_fd, 0);
	EXPECT_GE(life_fd, 0);
	EXPECT_EQ(0, ftruncate(life_fd, 4096));
	/* As the library's own: a page that cannot shrink (else it is not taken). */
	EXPECT_EQ(0, fcntl(life_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW));
	*page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, life_fd, 0);
	EXPECT_TRUE(*page != MAP_FAILED);
	atomic_store(*page, word);
	mm = uiommu_mm_remote_new(getpid(), pidfd, mem_fd, maps_fd, life_fd);
	EXPECT_FALSE(IS_ERR(mm));
	return mm;
}

TEST(remote_mm_copies_checked_by_the_life_word)
{
	uint32_t tid = (uint32_t)syscall(SYS_gettid);
	uint32_t words[3] = { 0, 1, tid | FUTEX_OWNER_DIED };
	_Atomic uint32_t *page;
	uint8_t byte = 0x5a, back = 0;
	struct uiommu_mm *mm;
	unsigned long n;

	/* Our own thread's tid: counted, and the copies land. */
	mm = life_mm(_metadata, tid, &page);
	n = uiommu_remote_life_copies();
	ASSERT_EQ(0, mm->ops->copy_to(mm, (uintptr_t)&back, &byte, 1));
	ASSERT_EQ(0x5a, back);
	ASSERT_EQ(0, mm->ops->copy_from(mm, &byte, (uintptr_t)&back, 1));
	ASSERT_EQ(n + 2, uiommu_remote_life_copies());
	/* Marked dead: EFAULT both ways, nothing moved, no fallback to the mem fd. */
	atomic_store(page, tid | FUTEX_OWNER_DIED);
	byte = 0x66;
	ASSERT_EQ(-EFAULT, mm->ops->copy_to(mm, (uintptr_t)&back, &byte, 1));
	ASSERT_EQ(0x5a, back);
	ASSERT_EQ(-EFAULT, mm->ops->copy_from(mm, &byte, (uintptr_t)&back, 1));
	ASSERT_EQ(n + 2, uiommu_remote_life_copies());
	uiommu_mm_put(mm);
	munmap((void *)page, 4096);

	/* Words that name no thread of ours: the mem fd's check, which works. */
	for (int i = 0; i < 3; i++) {
		mm = life_mm(_metadata, words[i], &page);
		n = uiommu_remote_life_copies();
		byte = (uint8_t)(0x70 + i);
		ASSERT_EQ(0, mm->ops->copy_to(mm, (uintptr_t)&back, &byte, 1));
		ASSERT_EQ(byte, back);
		ASSERT_EQ(n, uiommu_remote_life_copies());
		uiommu_mm_put(mm);
		munmap((void *)page, 4096);
	}

	/*
	 * The word's memfd's check (fail-nth: the step after the mm's allocation) or its mapping
	 * (the next) fails: the same.
	 */
	for (unsigned long nth = 2; nth <= 3 && uiommu_fail_nth_available(); nth++) {
		uiommu_fail_nth_arm(nth);
		mm = life_mm(_metadata, tid, &page);
		ASSERT_EQ(0, uiommu_fail_nth_disarm());
		n = uiommu_remote_life_copies();
		ASSERT_EQ(0, mm->ops->copy_to(mm, (uintptr_t)&back, &byte, 1));
		ASSERT_EQ(n, uiommu_remote_life_copies());
		uiommu_mm_put(mm);
		munmap((void *)page, 4096);
	}

	/* A page that could shrink under the server's mapping (a SIGBUS): not taken, the same. */
	for (int empty = 0; empty < 2; empty++) {
		int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
		int mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		int maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
		int life_fd = memfd_create("life", MFD_CLOEXEC);

		ASSERT_TRUE(pidfd >= 0 && mem_fd >= 0 && maps_fd >= 0 && life_fd >= 0);
		if (!empty) {
			ASSERT_EQ(0, ftruncate(life_fd, 4096));
			ASSERT_EQ((ssize_t)sizeof(tid), pwrite(life_fd, &tid, sizeof(tid), 0));
		}
		mm = uiommu_mm_remote_new(getpid(), pidfd, mem_fd, maps_fd, life_fd);
		ASSERT_FALSE(IS_ERR(mm));
		n = uiommu_remote_life_copies();
		byte = (uint8_t)(0x80 + empty);
		ASSERT_EQ(0, mm->ops->copy_to(mm, (uintptr_t)&back, &byte, 1));
		ASSERT_EQ(byte, back);
		ASSERT_EQ(n, uiommu_remote_life_copies());
		uiommu_mm_put(mm);
	}
}

TEST(window_copy_over_several_extents)
{
	size_t ps = uiommu_page_size;
	uint8_t *a = mmap(NULL, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	int mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	int maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	uint8_t *w, *out = malloc(5 * ps), *in = malloc(5 * ps);
	struct uiommu_mm *mm;

	ASSERT_TRUE(a != MAP_FAILED && b != MAP_FAILED && out && in);
	ASSERT_GE(pidfd, 0);
	ASSERT_GE(mem_fd, 0);
	ASSERT_GE(maps_fd, 0);
	memset(a, 0x11, 3 * ps);
	memset(b, 0x22, 2 * ps);
	mm = uiommu_mm_remote_new(getpid(), pidfd, mem_fd, maps_fd, -1);
	ASSERT_FALSE(IS_ERR(mm));
	/* Three pins: a's first two pages, its third, then b; three extents in a row. */
	ASSERT_EQ(0, uiommu_mm_pin(mm, page_index(a), 2, true));
	ASSERT_EQ(0, uiommu_mm_pin(mm, page_index(a) + 2, 1, true));
	ASSERT_EQ(0, uiommu_mm_pin(mm, page_index(b), 2, true));
	w = mm->ops->host_ptr(mm, (uintptr_t)a);
	ASSERT_TRUE(w && uiommu_host_is_window((uintptr_t)w));
	ASSERT_EQ(w + 2 * ps, mm->ops->host_ptr(mm, (uintptr_t)a + 2 * ps));
	ASSERT_EQ(w + 3 * ps, mm->ops->host_ptr(mm, (uintptr_t)b));

	/* Over all three, from the middle of a's first page to the middle of b's second. */
	for (size_t i = 0; i < 4 * ps; i++)
		out[i] = (uint8_t)(i * 7 + 1);
	ASSERT_EQ(0, uiommu_host_copy(w + ps / 2, out, 4 * ps));
	ASSERT_EQ(0x11, a[ps / 2 - 1]);
	ASSERT_EQ(0, memcmp(a + ps / 2, out, 3 * ps - ps / 2));
	ASSERT_EQ(0, memcmp(b, out + 3 * ps - ps / 2, ps + ps / 2));
	ASSERT_EQ(0x22, b[ps + ps / 2]);
	ASSERT_EQ(0, uiommu_host_copy(in, w, 5 * ps));
	ASSERT_EQ(0, memcmp(in, a, 3 * ps));
	ASSERT_EQ(0, memcmp(in + 3 * ps, b, 2 * ps));
	/* Window to window, the source across two extents, the destination in a third. */
	ASSERT_EQ(0, uiommu_host_copy(w + 3 * ps + 1, w + 2 * ps - 1, ps + 1));
	ASSERT_EQ(0, memcmp(b + 1, in + 2 * ps - 1, ps + 1));
	ASSERT_EQ(in[3 * ps], b[0]);

	/* a's third page killed (the owner's notice): the copy ends there, what came before moved. */
	uiommu_mm_remote_forget(mm, (uintptr_t)a + 2 * ps, ps);
	memcpy(in, a, 3 * ps);
	memset(out, 0x33, 5 * ps);
	ASSERT_EQ(-EFAULT, uiommu_host_copy(w + ps, out, 3 * ps));
	ASSERT_TRUE(a[ps] == 0x33 && a[2 * ps - 1] == 0x33);
	ASSERT_EQ(0, memcmp(a + 2 * ps, in + 2 * ps, ps));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(in, w + ps, 3 * ps));
	/* b's extent alone still works; a hole in b that nobody told of faults. */
	ASSERT_EQ(0, uiommu_host_copy(w + 3 * ps, out, 2 * ps));
	ASSERT_EQ(0x33, b[2 * ps - 1]);
	ASSERT_EQ(0, munmap(b + ps, ps));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(w + 3 * ps, out, 2 * ps));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(in, w + 3 * ps, 2 * ps));

	uiommu_mm_unpin(mm, page_index(a), 2);
	uiommu_mm_unpin(mm, page_index(a) + 2, 1);
	uiommu_mm_unpin(mm, page_index(b), 2);
	ASSERT_EQ(0, uiommu_mm_pinned_pages(mm));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(in, w, ps));
	uiommu_mm_put(mm);
	munmap(a, 3 * ps);
	munmap(b, ps);
	free(out);
	free(in);
}

TEST(pages_alloc_checks)
{
	struct uiommu_mm *mm = test_mm();

	ASSERT_EQ(-EINVAL, PTR_ERR(iopt_alloc_user_pages(mm, 0x1000, 0, true)));
	ASSERT_EQ(-EOVERFLOW, PTR_ERR(iopt_alloc_user_pages(mm, UINT64_MAX - 10, 100, true)));
	ASSERT_EQ(-EINVAL, PTR_ERR(iopt_alloc_user_pages(mm, 0, UINT64_MAX - 1, true)));
	ASSERT_EQ(-EBADF, PTR_ERR(iopt_alloc_file_pages(mm, -1, 0, 4096, true)));
	uiommu_mm_put(mm);
}

/* ---- automatic IOVA against a brute-force first fit ----------------------------------------- */

struct area_rec {
	uint64_t iova, len;
};

/* The lowest IOVA >= ps whose [iova, iova+len) misses every area, with the same alignment. */
static uint64_t brute_first_fit(struct area_rec *a, int n, uint64_t len, uint64_t align)
{
	uint64_t cand = uiommu_page_size;

	for (;;) {
		int i;
		bool clash = false;

		cand = (cand + align - 1) & ~(align - 1);
		for (i = 0; i < n; i++) {
			if (a[i].len && cand < a[i].iova + a[i].len && a[i].iova < cand + len) {
				clash = true;
				cand = a[i].iova + a[i].len;
				break;
			}
		}
		if (!clash)
			return cand;
	}
}

TEST(auto_iova_is_lowest_first_fit)
{
	struct uiommu_mm *mm = test_mm();
	struct io_pagetable iopt;
	struct area_rec recs[200] = { 0 };
	unsigned int seed = 3;
	uint64_t ps = uiommu_page_size;
	int step, live = 0;

	iopt_init_table(&iopt);
	for (step = 0; step < 1500; step++) {
		int i = rand_r(&seed) % 200;

		if (recs[i].len) {
			uint64_t unmapped;

			ASSERT_EQ(0, iopt_unmap_iova(&iopt, recs[i].iova, recs[i].len, &unmapped));
			ASSERT_EQ(recs[i].len, unmapped);
			recs[i].len = 0;
			live--;
		} else {
			uint64_t npages = 1 + rand_r(&seed) % 8;
			uint64_t len = npages * ps, iova = 0;
			uint64_t align = roundup_pow_of_two(len);
			/* A page-aligned fake address with exactly 64 KiB alignment. */
			uint64_t uva = 0x7f0000010000ull;

			if (align > 0x10000)
				align = 0x10000;
			ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, uva, len,
							 IOMMU_READ | IOMMU_WRITE, IOPT_ALLOC_IOVA));
			ASSERT_EQ(brute_first_fit(recs, 200, len, align), iova);
			recs[i].iova = iova;
			recs[i].len = len;
			live++;
		}
		if (step % 101 == 0)
			ASSERT_TRUE(rangemap_verify(&iopt.areas));
	}
	ASSERT_EQ((unsigned long)live, iopt.areas.count);
	iopt_destroy_table(&iopt);
	uiommu_mm_put(mm);
}

struct gap_rec {
	int n;
	uint64_t start[8], last[8];
};

static bool gap_record(uint64_t start, uint64_t last, void *arg)
{
	struct gap_rec *r = arg;

	if (r->n < 8) {
		r->start[r->n] = start;
		r->last[r->n] = last;
	}
	r->n++;
	return false;
}

TEST(holes_track_gaps_between_areas)
{
	struct uiommu_mm *mm = test_mm();
	struct io_pagetable iopt;
	struct gap_rec r = { 0 };
	uint64_t iova, unmapped, ps = uiommu_page_size;

	iopt_init_table(&iopt);
	iova = 4 * ps;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, 0x10000, ps, IOMMU_READ, 0));
	iova = 10 * ps;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, 0x10000, ps, IOMMU_READ, 0));
	/* Gaps: [0, 4ps-1], [5ps, 10ps-1], [11ps, max]. */
	ASSERT_FALSE(rangemap_gap_find(&iopt.areas, 0, gap_record, &r));
	ASSERT_EQ(3, r.n);
	ASSERT_EQ(0, r.start[0]); ASSERT_EQ(4 * ps - 1, r.last[0]);
	ASSERT_EQ(5 * ps, r.start[1]); ASSERT_EQ(10 * ps - 1, r.last[1]);
	ASSERT_EQ(11 * ps, r.start[2]); ASSERT_EQ(UINT64_MAX, r.last[2]);
	/* A gap too small for the request is not offered. */
	r.n = 0;
	ASSERT_FALSE(rangemap_gap_find(&iopt.areas, 5 * ps, gap_record, &r));
	ASSERT_EQ(1, r.n);
	ASSERT_EQ(11 * ps, r.start[0]);
	/* An area at the very top leaves no tail gap; removing everything leaves one. */
	iova = UINT64_MAX - ps + 1;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, 0x10000, ps, IOMMU_READ, 0));
	r.n = 0;
	ASSERT_FALSE(rangemap_gap_find(&iopt.areas, 0, gap_record, &r));
	ASSERT_EQ(3, r.n);
	ASSERT_EQ(UINT64_MAX - ps, r.last[2]);
	ASSERT_EQ(0, iopt_unmap_all(&iopt, &unmapped));
	ASSERT_EQ(3 * ps, unmapped);
	ASSERT_TRUE(rangemap_empty(&iopt.areas));
	r.n = 0;
	ASSERT_FALSE(rangemap_gap_find(&iopt.areas, 0, gap_record, &r));
	ASSERT_EQ(1, r.n);
	ASSERT_EQ(0, r.start[0]); ASSERT_EQ(UINT64_MAX, r.last[0]);
	iopt_destroy_table(&iopt);
	uiommu_mm_put(mm);
}

/*
 * The table's guarantees at a size where the tree has several levels: a MAP that fails at any
 * fallible step (the tree's node reservation among them) leaves the table and the allocations
 * as they were, and UNMAP has no fallible step at all, merges included.
 */
TEST(big_table_map_fail_nth_and_unmap_never_fails)
{
	struct uiommu_mm *mm = test_mm();
	uint64_t ps = uiommu_page_size, iova, unmapped;
	struct io_pagetable iopt;
	unsigned long nth;
	int i;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	iopt_init_table(&iopt);
	for (i = 0; i < 2000; i++) {
		iova = ps * (1 + 2 * (uint64_t)i);
		ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, 0x10000, ps, IOMMU_READ, 0));
	}
	ASSERT_TRUE(iopt.areas.height >= 3);
	for (nth = 1; nth < 50; nth++) {
		long live;
		int rc;

		/* No spare nodes: the reservation must allocate, and can fail. */
		rangemap_spare_trim(&iopt.areas, 0);
		live = uiommu_alloc_live();
		iova = 0;
		uiommu_fail_nth_arm(nth);
		rc = iopt_map_user_pages(&iopt, mm, &iova, 0x10000, 2 * ps, IOMMU_READ,
					 IOPT_ALLOC_IOVA);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_EQ(-ENOMEM, rc);
		ASSERT_EQ(2000, iopt.areas.count);
		ASSERT_TRUE(rangemap_verify(&iopt.areas));
		ASSERT_EQ(live, uiommu_alloc_live());
	}
	ASSERT_TRUE(nth > 2 && nth < 50);
	/* No gap of two pages below the areas: it went after the last one. */
	ASSERT_EQ(ps * 4000, iova);
	ASSERT_EQ(2001, iopt.areas.count);
	/* Unmapping consumes no failure point, however the tree shrinks. */
	for (i = 0; i < 2000; i += 1 + i % 3) {
		uiommu_fail_nth_arm(1);
		ASSERT_EQ(0, iopt_unmap_iova(&iopt, ps * (1 + 2 * (uint64_t)i), ps, &unmapped));
		ASSERT_NE(0, uiommu_fail_nth_disarm());
		ASSERT_EQ(ps, unmapped);
	}
	ASSERT_TRUE(rangemap_verify(&iopt.areas));
	/* The nodes the shrinking tree gave up are freed, not hoarded as spares. */
	ASSERT_TRUE(rangemap_spare_count(&iopt.areas) <= iopt.areas.height + 2);
	uiommu_fail_nth_arm(1);
	ASSERT_EQ(0, iopt_unmap_all(&iopt, &unmapped));
	ASSERT_NE(0, uiommu_fail_nth_disarm());
	ASSERT_TRUE(rangemap_empty(&iopt.areas));
	ASSERT_EQ(0, rangemap_spare_count(&iopt.areas));
	iopt_destroy_table(&iopt);
	uiommu_mm_put(mm);
}

TEST(area_split_keeps_the_mapping)
{
	struct uiommu_mm *mm = test_mm();
	struct io_pagetable iopt;
	uint64_t iova = 0x100000, ps = uiommu_page_size, unmapped;
	uint64_t cuts[2] = { 0x100000 + 2 * ps, 0x100000 + 5 * ps };
	struct rangemap_iter it;
	struct iopt_area *area;

	iopt_init_table(&iopt);
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, 0x7f0000000000ull, 8 * ps,
					 IOMMU_READ, 0));
	ASSERT_EQ(0, iopt_cut_iova(&iopt, cuts, 2));
	ASSERT_EQ(3, iopt.areas.count);
	ASSERT_TRUE(rangemap_verify(&iopt.areas));
	area = rangemap_iter_first(&iopt.areas, &it, 0x100000 + 3 * ps, 0x100000 + 3 * ps);
	ASSERT_TRUE(area != NULL);
	ASSERT_EQ(0x100000 + 2 * ps, area->iova.start);
	ASSERT_EQ(0x100000 + 5 * ps - 1, area->iova.last);
	ASSERT_EQ(area->iova.start, it.start);
	ASSERT_EQ(area->iova.last, it.last);
	/* The middle piece maps the middle of the same pages. */
	ASSERT_EQ(2 * ps, area->pages_byte);
	ASSERT_EQ(0, iopt_unmap_iova(&iopt, 0x100000 + 2 * ps, 3 * ps, &unmapped));
	ASSERT_EQ(3 * ps, unmapped);
	ASSERT_EQ(0, iopt_unmap_all(&iopt, &unmapped));
	ASSERT_EQ(5 * ps, unmapped);
	ASSERT_TRUE(rangemap_verify(&iopt.areas));
	iopt_destroy_table(&iopt);
	uiommu_mm_put(mm);
}

/* ---- domains in the engine ------------------------------------------------------------------ */

/* A paging domain over the 4-level io_pgtable, with an aperture of [1 MiB, 4 GiB - 1]. */
struct test_domain {
	struct iommu_domain domain;
	struct io_pgtable *pgt;
};

static int test_domain_map(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
			   size_t pgsize, size_t pgcount, int prot, size_t *mapped)
{
	struct test_domain *td = container_of(domain, struct test_domain, domain);

	return io_pgtable_map_pages(td->pgt, iova, paddr, pgsize, pgcount, prot, mapped);
}

static size_t test_domain_unmap(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
				size_t pgcount, struct iommu_iotlb_gather *gather)
{
	struct test_domain *td = container_of(domain, struct test_domain, domain);

	(void)gather;
	return io_pgtable_unmap_pages(td->pgt, iova, pgsize, pgcount);
}

static phys_addr_t test_domain_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	return io_pgtable_iova_to_phys(container_of(domain, struct test_domain, domain)->pgt, iova);
}

static const struct iommu_domain_ops test_domain_ops = {
	.map_pages = test_domain_map,
	.unmap_pages = test_domain_unmap,
	.iova_to_phys = test_domain_iova_to_phys,
};

static void test_domain_init(struct test_domain *td)
{
	memset(td, 0, sizeof(*td));
	td->pgt = io_pgtable_alloc(48);
	td->domain.type = IOMMU_DOMAIN_UNMANAGED;
	td->domain.ops = &test_domain_ops;
	td->domain.pgsize_bitmap = IO_PGTABLE_SZ_4K | IO_PGTABLE_SZ_2M;
	td->domain.geometry.aperture_start = 1ull << 20;
	td->domain.geometry.aperture_end = (4ull << 30) - 1;
}

static unsigned int pins_of(struct uiommu_mm *mm, const char *buf, unsigned int npages)
{
	unsigned int i, sum = 0;

	for (i = 0; i < npages; i++)
		sum += uiommu_mm_pin_count(mm, page_index(buf) + i);
	return sum;
}

TEST(domains_pin_map_reserve_and_align)
{
	size_t ps = uiommu_page_size;
	char *buf = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *hole = mmap(NULL, 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t uva = (uint64_t)(uintptr_t)buf, iova, unmapped;
	struct uiommu_mm *mm = test_mm();
	struct iopt_usable_range ranges[4];
	struct test_domain d1, d2;
	struct io_pagetable iopt;
	unsigned int i;

	ASSERT_TRUE(buf != MAP_FAILED && hole != MAP_FAILED);
	test_domain_init(&d1);
	test_domain_init(&d2);
	iopt_init_table(&iopt);

	/* An area outside the aperture, or off the domain's page size, keeps the domain out. */
	iova = 0x1000;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, uva, ps, IOMMU_READ, 0));
	ASSERT_EQ(-EADDRINUSE, iopt_table_add_domain(&iopt, &d1.domain));
	ASSERT_EQ(0, iopt_unmap_all(&iopt, &unmapped));
	iova = 0x200000;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, uva, 100, IOMMU_READ, 0));
	ASSERT_EQ(-EADDRINUSE, iopt_table_add_domain(&iopt, &d1.domain));
	ASSERT_EQ(0, iopt_unmap_all(&iopt, &unmapped));
	ASSERT_EQ(0, iopt.reserved_itree.count);
	ASSERT_EQ(1, iopt.iova_alignment);

	/* Lazy until a domain arrives; then every page is pinned once and mapped. */
	iova = 0x200000;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, uva, 8 * ps,
					 IOMMU_READ | IOMMU_WRITE, 0));
	ASSERT_EQ(0, pins_of(mm, buf, 8));
	ASSERT_EQ(0, iopt_table_add_domain(&iopt, &d1.domain));
	ASSERT_EQ(8, pins_of(mm, buf, 8));
	for (i = 0; i < 8; i++)
		ASSERT_EQ(uva + i * ps, io_pgtable_iova_to_phys(d1.pgt, 0x200000 + i * ps));
	ASSERT_EQ(ps, iopt.iova_alignment);
	uiommu_down_read(&iopt.iova_rwsem);
	ASSERT_EQ(1, iopt_get_usable_ranges(&iopt, ranges, 4));
	uiommu_up_read(&iopt.iova_rwsem);
	ASSERT_EQ(1ull << 20, ranges[0].start);
	ASSERT_EQ((4ull << 30) - 1, ranges[0].last);

	/* A second domain shares the pins. */
	ASSERT_EQ(0, iopt_table_add_domain(&iopt, &d2.domain));
	ASSERT_EQ(8, pins_of(mm, buf, 8));
	ASSERT_EQ(uva + 3 * ps, io_pgtable_iova_to_phys(d2.pgt, 0x200000 + 3 * ps));

	/* Eager MAP: a bad page is EFAULT and leaves nothing; a good one pins at once. */
	iova = 0x400000;
	ASSERT_EQ(-EFAULT, iopt_map_user_pages(&iopt, mm, &iova, (uint64_t)(uintptr_t)hole,
					       2 * ps, IOMMU_READ, IOPT_ALLOC_IOVA));
	ASSERT_EQ(1, iopt.areas.count);
	ASSERT_EQ(0, io_pgtable_iova_to_phys(d1.pgt, 0x400000));
	iova = 0x400000;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, uva, 2 * ps, IOMMU_READ, 0));
	ASSERT_EQ(10, pins_of(mm, buf, 8));
	ASSERT_EQ(uva + ps, io_pgtable_iova_to_phys(d2.pgt, 0x400000 + ps));
	/* Outside the aperture, or misaligned: refused. */
	iova = 0x1000;
	ASSERT_EQ(-EINVAL, iopt_map_user_pages(&iopt, mm, &iova, uva, ps, IOMMU_READ, 0));
	iova = 0x600000;
	ASSERT_EQ(-EINVAL, iopt_map_user_pages(&iopt, mm, &iova, uva, 100, IOMMU_READ, 0));

	/* COPY shares the pages: no new pin. */
	iova = 0x800000;
	ASSERT_EQ(0, iopt_copy_iova(&iopt, &iopt, &iova, 0x200000, 4 * ps, IOMMU_READ, 0));
	ASSERT_EQ(10, pins_of(mm, buf, 8));
	ASSERT_EQ(uva + 2 * ps, io_pgtable_iova_to_phys(d1.pgt, 0x800000 + 2 * ps));

	/* UNMAP empties every domain and unpins. */
	ASSERT_EQ(0, iopt_unmap_iova(&iopt, 0x400000, 2 * ps, &unmapped));
	ASSERT_EQ(8, pins_of(mm, buf, 8));
	ASSERT_EQ(0, io_pgtable_iova_to_phys(d2.pgt, 0x400000));

	/* The last domain out unpins everything and gives back the IOVA space. */
	iopt_table_remove_domain(&iopt, &d1.domain);
	ASSERT_EQ(8, pins_of(mm, buf, 8));
	ASSERT_EQ(0, io_pgtable_iova_to_phys(d1.pgt, 0x200000));
	iopt_table_remove_domain(&iopt, &d2.domain);
	ASSERT_EQ(0, pins_of(mm, buf, 8));
	ASSERT_EQ(0, iopt.reserved_itree.count);
	ASSERT_EQ(1, iopt.iova_alignment);
	ASSERT_EQ(0, io_pgtable_iova_to_phys(d2.pgt, 0x200000));

	/* A page that cannot be pinned keeps the domain out, with nothing left behind. */
	iova = 0x600000;
	ASSERT_EQ(0, iopt_map_user_pages(&iopt, mm, &iova, (uint64_t)(uintptr_t)hole, ps,
					 IOMMU_READ, 0));
	ASSERT_EQ(-EFAULT, iopt_table_add_domain(&iopt, &d1.domain));
	ASSERT_EQ(0, pins_of(mm, buf, 8));
	ASSERT_EQ(0, io_pgtable_iova_to_phys(d1.pgt, 0x200000));
	ASSERT_EQ(0, iopt.reserved_itree.count);
	ASSERT_EQ(0, iopt_unmap_iova(&iopt, 0x600000, ps, &unmapped));

	/* Every fallible step of an attach fails cleanly. */
	for (i = 1; uiommu_fail_nth_available() && i < 200; i++) {
		long live = uiommu_alloc_live();
		int rc;

		uiommu_fail_nth_arm(i);
		rc = iopt_table_add_domain(&iopt, &d1.domain);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_NE(0, rc);
		ASSERT_EQ(0, pins_of(mm, buf, 8));
		ASSERT_EQ(0, io_pgtable_iova_to_phys(d1.pgt, 0x200000));
		ASSERT_EQ(0, iopt.reserved_itree.count);
		ASSERT_EQ(1, iopt.iova_alignment);
		ASSERT_TRUE(uiommu_alloc_live() <= live);
	}
	if (uiommu_fail_nth_available()) {
		ASSERT_EQ(8, pins_of(mm, buf, 8));
		iopt_table_remove_domain(&iopt, &d1.domain);
	}
	ASSERT_EQ(0, iopt_unmap_all(&iopt, &unmapped));
	ASSERT_EQ(0, uiommu_mm_pinned_pages(mm));
	iopt_destroy_table(&iopt);
	io_pgtable_free(d1.pgt);
	io_pgtable_free(d2.pgt);
	munmap(buf, 8 * ps);
	munmap(hole, 2 * ps);
	uiommu_mm_put(mm);
}

/*
 * Objects go to call_rcu() at destroy and are freed after a grace period; the settled count
 * already leaves them out, so a leak check needs no wait. Both agree once the frees ran.
 */
TEST(alloc_live_settled_leaves_out_deferred_frees)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	long base;
	int fd;

	if (!uiommu_fail_nth_available())
		SKIP("allocations are counted only with fault injection");
	/* What the first context makes for the process (its mm...) stays: make it first. */
	ASSERT_EQ(0, uiommu_close(uiommu_open(O_RDWR)));
	rcu_barrier_bp();
	base = uiommu_alloc_live();
	ASSERT_EQ(base, uiommu_alloc_live_settled());
	fd = uiommu_open(O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_LT(base, uiommu_alloc_live_settled());
	ASSERT_EQ(0, uiommu_close(fd));
	/* The context and the IOAS are gone; their frees may still wait for a grace period. */
	ASSERT_EQ(base, uiommu_alloc_live_settled());
	rcu_barrier_bp();
	ASSERT_EQ(base, uiommu_alloc_live());
	ASSERT_EQ(base, uiommu_alloc_live_settled());
}

/*
 * The user copy faults at each of its accesses (on x86-64 each is an exception-table entry:
 * src/mm/uaccess_x86_64.S): 8-, 4-, 2- and 1-byte loads, a `rep movsb` load, and their stores,
 * each across the edge of a page that is PROT_NONE (loads) or read-only (stores). Each gives
 * EFAULT, copies nothing past the edge, leaves the mapped bytes before it as a byte copy would,
 * and the very next copy of the thread succeeds; and a SIGBUS (a page past its file's end).
 */
TEST(user_copy_faults_at_every_access)
{
	static const size_t lens[] = { 1, 3, 7, 8, 13, 24, 64, 65, 300 };
	long page = sysconf(_SC_PAGESIZE);
	struct uiommu_mm *mm = uiommu_mm_self();
	unsigned char buf[512], *two, *edge;
	size_t i, before;
	int fd;

	ASSERT_FALSE(IS_ERR(mm));
	two = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	ASSERT_TRUE(two != MAP_FAILED);
	edge = two + page;
	memset(two, 0x5a, (size_t)page * 2);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		/* Starting 2 bytes before the edge (1 byte: at it), so an access past it faults. */
		before = lens[i] > 2 ? 2 : 0;
		ASSERT_EQ(0, mprotect(edge, (size_t)page, PROT_NONE));
		memset(buf, 0, sizeof(buf));
		ASSERT_EQ(-EFAULT, uiommu_copy_from_user(mm, buf, (uintptr_t)(edge - before),
							 lens[i]));
		ASSERT_EQ(0, buf[before]); /* nothing from past the edge */
		ASSERT_EQ(-EFAULT, uiommu_host_copy(buf, edge - before, lens[i]));
		/* Entirely before the edge: copied. */
		ASSERT_EQ(0, uiommu_copy_from_user(mm, buf, (uintptr_t)(edge - lens[i]), lens[i]));
		ASSERT_EQ(0x5a, buf[0]);
		ASSERT_EQ(0x5a, buf[lens[i] - 1]);

		ASSERT_EQ(0, mprotect(edge, (size_t)page, PROT_READ));
		memset(buf, 0xa5, sizeof(buf));
		ASSERT_EQ(-EFAULT, uiommu_copy_to_user(mm, (uintptr_t)(edge - before), buf,
						       lens[i]));
		ASSERT_EQ(0x5a, edge[0]); /* the read-only page is untouched */
		if (lens[i] == 3)
			ASSERT_EQ(0xa5, edge[-1]); /* 2 bytes, then the 1 that faults */
		ASSERT_EQ(-EFAULT, uiommu_host_copy(edge - before, buf, lens[i]));
		ASSERT_EQ(0, uiommu_copy_to_user(mm, (uintptr_t)(edge - lens[i]), buf, lens[i]));
		ASSERT_EQ(0xa5, edge[-1]);
		ASSERT_EQ(0, mprotect(edge, (size_t)page, PROT_READ | PROT_WRITE));
		memset(two, 0x5a, (size_t)page * 2);
	}
#ifndef __SANITIZE_THREAD__
	/*
	 * An overlapping copy (dst inside src's range) moves as ascending bytes would. (Not under
	 * ThreadSanitizer, where process_vm_readv() copies and overlap is the kernel's business.)
	 */
	for (i = 0; i < 16; i++)
		two[i] = (unsigned char)i;
	ASSERT_EQ(0, uiommu_host_copy(two + 1, two, 15));
	for (i = 1; i < 16; i++)
		ASSERT_EQ(0, two[i]);
#endif
	ASSERT_EQ(0, munmap(two, (size_t)page * 2));

	/* A page past the end of its file raises SIGBUS, not SIGSEGV: EFAULT the same. */
	fd = memfd_create("uiommu-test", MFD_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ftruncate(fd, page));
	two = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_TRUE(two != MAP_FAILED);
	ASSERT_EQ(-EFAULT, uiommu_copy_from_user(mm, buf, (uintptr_t)(two + page), 8));
	ASSERT_EQ(-EFAULT, uiommu_copy_to_user(mm, (uintptr_t)(two + page - 2), buf, 100));
	ASSERT_EQ(0, uiommu_copy_to_user(mm, (uintptr_t)two, buf, 100));
	ASSERT_EQ(0, munmap(two, (size_t)page * 2));
	ASSERT_EQ(0, close(fd));
	uiommu_mm_put(mm);
}

/* The lengths of short_copies_*: every short path, the word loop, and `rep movsb` past it. */
#define SHORT_COPY_MAX 80

enum copy_path { COPY_SPAN, COPY_NO_SPAN, COPY_HOST };

/* One copy of @len bytes through @path; @to_user: @user is the destination. */
static int copy_via(enum copy_path path, struct uiommu_mm *mm, bool to_user, char *user,
		    char *kern, size_t len)
{
	uint64_t u = (uint64_t)(uintptr_t)user;
	int rc;

	switch (path) {
	case COPY_SPAN:
		uiommu_uaccess_begin();
		rc = to_user ? uiommu_copy_to_user(mm, u, kern, len) :
			       uiommu_copy_from_user(mm, kern, u, len);
		uiommu_uaccess_end();
		return rc;
	case COPY_NO_SPAN:
		return to_user ? uiommu_copy_to_user(mm, u, kern, len) :
				 uiommu_copy_from_user(mm, kern, u, len);
	default:
		return to_user ? uiommu_host_copy(user, kern, len) : uiommu_host_copy(kern, user, len);
	}
}

/*
 * Every length from 0 to SHORT_COPY_MAX, ending at every distance from an inaccessible page
 * (so that up to 8 bytes of it, or none, fall on that page), from and to user memory.
 */
static void short_copies(struct __h_test *_metadata, enum copy_path path)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len, back, i;
	char kern[SHORT_COPY_MAX + 16], want[SHORT_COPY_MAX + 16], *map, *edge;
	struct uiommu_mm *mm = uiommu_mm_self();
	int dir;

	ASSERT_FALSE(IS_ERR(mm));
	map = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(map != MAP_FAILED);
	ASSERT_EQ(0, mprotect(map + ps, ps, PROT_NONE));
	edge = map + ps;
	for (i = 0; i != ps; i++)
		map[i] = (char)(i * 7 + 1);
	for (dir = 0; dir != 2; dir++) {
		for (len = 0; len <= SHORT_COPY_MAX; len++) {
			for (back = len + 8; back + 8 >= len && back; back--) {
				char *user = edge - back;
				bool faults = back < len;
				int rc;

				/* Canaries around the kernel side; the user side is a pattern. */
				memset(kern, 0x5a, sizeof(kern));
				for (i = 0; i != len; i++)
					kern[8 + i] = (char)(0x80 ^ i);
				memcpy(want, kern, sizeof(want));
				rc = copy_via(path, mm, dir, user, kern + 8, len);
				ASSERT_EQ(faults ? -EFAULT : 0, rc);
				if (dir) {
					/* A fault may leave a prefix written: any of it. */
					if (!faults)
						ASSERT_EQ(0, memcmp(user, kern + 8, len));
					/* Put the pattern back for the next round. */
					for (i = 0; i != len && i != back; i++)
						user[i] = (char)((user - map + (ptrdiff_t)i) * 7 + 1);
				} else if (!faults) {
					memcpy(want + 8, user, len);
					ASSERT_EQ(0, memcmp(want, kern, sizeof(want)));
				}
			}
		}
	}
	/* The copies to user memory wrote nothing before their ranges. */
	for (i = 0; i != ps; i++)
		ASSERT_EQ((char)(i * 7 + 1), map[i]);
	munmap(map, 2 * ps);
	uiommu_mm_put(mm);
}

TEST(short_copies_in_span)
{
	short_copies(_metadata, COPY_SPAN);
}

TEST(short_copies_outside_span)
{
	short_copies(_metadata, COPY_NO_SPAN);
}

TEST(short_copies_host)
{
	short_copies(_metadata, COPY_HOST);
}

/*
 * Overlapping host copies give what a copy of ascending bytes gives (the DMA engine's rule),
 * whichever side starts first: the short paths load everything before they store, the word
 * loop and `rep movsb` go upwards.
 */
TEST(short_copies_overlap)
{
	unsigned char buf[3 * SHORT_COPY_MAX], want[3 * SHORT_COPY_MAX];
	size_t len, i;
	int shift;

#if defined(__SANITIZE_THREAD__)
	/* process_vm_readv() copies there, with no promise about overlapping ranges. */
	SKIP("ThreadSanitizer builds copy with process_vm_readv()");
#endif
	for (len = 1; len <= SHORT_COPY_MAX; len++) {
		for (shift = -(int)len; shift <= (int)len; shift++) {
			unsigned char *src = buf + SHORT_COPY_MAX, *dst = src + shift;

			for (i = 0; i != sizeof(buf); i++)
				buf[i] = (unsigned char)(i * 13 + 5);
			memcpy(want, buf, sizeof(buf));
			for (i = 0; i != len; i++)
				want[SHORT_COPY_MAX + shift + i] = want[SHORT_COPY_MAX + i];
			ASSERT_EQ(0, uiommu_host_copy(dst, src, len));
			ASSERT_EQ(0, memcmp(want, buf, sizeof(buf)));
		}
	}
}

/*
 * A signal handler that closes the last fd of a context while its thread is inside the
 * read-side section of an ioctl of the RCU dispatch (the signal raised right there by the
 * fail-point hook, at the object lookup's check): the close returns, where the grace period
 * it used to wait for would have waited for this very thread (the watchdog then ends the case
 * after 30 s); the ioctl it interrupted answers from the context, still whole; the
 * context is released once the callbacks have run.
 */
#ifdef UIOMMU_FAULT_INJECT
static int rcu_close_fd = -1, rcu_close_rc = 1;
static volatile sig_atomic_t rcu_close_raised;

static void rcu_close_handler(int sig)
{
	(void)sig;
	rcu_close_rc = uiommu_close(rcu_close_fd);
}

/*
 * The bound on a regression: a close that waits for a grace period blocks every signal of its
 * thread while it waits, the harness's SIGALRM too, so this thread ends the case itself.
 */
static void *rcu_close_watchdog(void *arg)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	while (sem_timedwait(arg, &until))
		if (errno == ETIMEDOUT) {
			printf("#   the close waited for a grace period of its own thread\n");
			fflush(stdout);
			_exit(1);
		}
	return NULL;
}

static void rcu_close_hook(void)
{
	if (!rcu_close_raised && rcu_read_ongoing()) {
		rcu_close_raised = 1;
		raise(SIGUSR1);
	}
}

#endif

TEST(close_in_signal_handler_inside_rcu_section)
{
#ifndef UIOMMU_FAULT_INJECT
	SKIP("no fail-point hook in this build");
#else
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_iova_range r[2];
	struct iommu_ioas_iova_ranges cmd;
	struct sigaction sa = { .sa_handler = rcu_close_handler };
	struct uiommu_stats st;
	pthread_t watchdog;
	sem_t done;
	int i;

	ASSERT_EQ(0, sem_init(&done, 0, 0));
	ASSERT_EQ(0, pthread_create(&watchdog, NULL, rcu_close_watchdog, &done));
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	rcu_close_fd = uiommu_open(O_CLOEXEC);
	ASSERT_GE(rcu_close_fd, 0);
	/*
	 * An object freed first: liburcu makes its call_rcu worker at the process's first
	 * call_rcu(), which must not be the handler's (it allocates).
	 */
	ASSERT_EQ(0, uiommu_ioctl(rcu_close_fd, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_EQ(0, uiommu_ioctl(rcu_close_fd, IOMMU_DESTROY,
				  &(struct iommu_destroy){ .size = 8, .id = alloc.out_ioas_id }));
	ASSERT_EQ(0, uiommu_ioctl(rcu_close_fd, IOMMU_IOAS_ALLOC, &alloc));
	/* The first builds the IOAS's snapshot: the second is answered inside the section. */
	for (i = 0; i != 2; i++) {
		cmd = (struct iommu_ioas_iova_ranges){ .size = sizeof(cmd),
						       .ioas_id = alloc.out_ioas_id,
						       .num_iovas = 2,
						       .allowed_iovas = (uintptr_t)r };
		memset(r, 0x5a, sizeof(r));
		if (i)
			uiommu_fail_point_hook(rcu_close_hook);
		ASSERT_EQ(0, uiommu_ioctl(rcu_close_fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
		uiommu_fail_point_hook(NULL);
		ASSERT_EQ(1, cmd.num_iovas);
		ASSERT_EQ(0, r[0].start);
		ASSERT_EQ(UINT64_MAX, r[0].last);
	}
	ASSERT_EQ(0, sem_post(&done));
	ASSERT_EQ(0, pthread_join(watchdog, NULL));
	ASSERT_TRUE(rcu_close_raised);
	ASSERT_EQ(0, rcu_close_rc);
	ASSERT_ERRNO(EBADF, uiommu_ioctl(rcu_close_fd, IOMMU_IOAS_IOVA_RANGES, &cmd));
	/* Its callbacks run (rcu_barrier()): the context and its IOAS are gone. */
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.contexts);
	ASSERT_EQ(0, st.objects);
#endif
}

/* Above lib/fdkeep.c's bitmap (16384 numbers). */
#define FDKEEP_HIGH 16400

/* Is @fd open? */
static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

/*
 * In a fork child: the program's fds (a pipe; fd 1 made a pipe; a number the library kept and
 * closed, taken by the program) go, the kept pipe stays, 0-2 end on /dev/null, unless the
 * fail-nth countdown @nth (0: none) fails its opening, when they stay as they were. With
 * @high, a kept fd above the bitmap keeps every fd up there. Exit: 0 (the failure happened),
 * 100 (no failure), else the check that failed.
 */
static int fdkeep_child(unsigned long nth, bool high)
{
	int unkept[2], kept[2], out[2], gone;
	struct stat null_st, st, out_st;
	bool failed;

	if (stat("/dev/null", &null_st) || pipe(out) || dup2(out[1], 1) != 1 || fstat(1, &out_st))
		return 1;
	if (pipe(unkept) || pipe(kept))
		return 2;
	uiommu_fd_keep(kept[0]);
	uiommu_fd_keep(kept[1]);
	gone = fcntl(kept[0], F_DUPFD_CLOEXEC, 0);
	uiommu_fd_keep(gone);
	sys_close(gone);
	if (dup2(unkept[0], gone) != gone)
		return 3;
	if (high) {
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl))
			return 4;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			return 4;
		if (dup2(unkept[0], FDKEEP_HIGH) != FDKEEP_HIGH ||
		    dup2(kept[0], FDKEEP_HIGH + 1) != FDKEEP_HIGH + 1)
			return 4;
		uiommu_fd_keep(FDKEEP_HIGH + 1);
	}
	if (nth)
		uiommu_fail_nth_arm(nth);
	uiommu_fds_close_unkept();
	failed = nth && !uiommu_fail_nth_disarm();
	if (fd_open(unkept[0]) || fd_open(unkept[1]) || fd_open(gone) || fd_open(out[0]) ||
	    fd_open(out[1]))
		return 5;
	if (!fd_open(kept[0]) || !fd_open(kept[1]))
		return 6;
	if (high && (!fd_open(FDKEEP_HIGH) || !fd_open(FDKEEP_HIGH + 1)))
		return 7;
	for (int fd = 0; fd < 3; fd++) {
		if (fstat(fd, &st))
			return 8;
		if (!failed && (!S_ISCHR(st.st_mode) || st.st_rdev != null_st.st_rdev))
			return 9;
	}
	if (failed && (fstat(1, &st) || st.st_ino != out_st.st_ino || st.st_dev != out_st.st_dev))
		return 10;
	return failed ? 0 : 100;
}

static int fdkeep_run(unsigned long nth, bool high)
{
	int status;
	pid_t pid = fork();

	if (!pid)
		_exit(fdkeep_child(nth, high));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* The registry of the library's fds: what a next server keeps (docs/processes.md). */
TEST(fd_registry_closes_all_but_the_librarys_fds)
{
	unsigned long nth;

	ASSERT_EQ(100, fdkeep_run(0, false));
	/* Its one fallible step, the opening of /dev/null, failed: 0-2 stay. */
	if (uiommu_fail_nth_available()) {
		for (nth = 1; nth < 10; nth++) {
			int rc = fdkeep_run(nth, false);

			if (rc == 100)
				break;
			ASSERT_EQ(0, rc);
		}
		ASSERT_EQ(2, nth);
	}
}

/* A kept fd above the bitmap: everything up there is kept (an unkept one too). */
TEST(fd_registry_keeps_all_above_its_bitmap_once_one_there_is_kept)
{
	struct rlimit rl;

	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &rl));
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= FDKEEP_HIGH + 1)
		SKIP("RLIMIT_NOFILE's hard limit is too low");
	ASSERT_EQ(100, fdkeep_run(0, true));
}

/*
 * A store's test of a claim nobody ever took (no file yet) keeps it until the drop, as one of
 * an existing file does: a first open or bind of another process (a shared or exclusive take)
 * that comes meanwhile is refused, never let in behind the store's back.
 */
TEST(session_claim_test_of_a_new_name_keeps_out_a_first_claimer)
{
	char dir[] = "/tmp/uiommu-claim-test-XXXXXX";
	struct session_claim test, other;

	ASSERT_NE(NULL, mkdtemp(dir));
	ASSERT_EQ(0, setenv(SYSFS_DIR_ENV, dir, 1));
	ASSERT_EQ(0, session_claim_take("open.0000:01:00.0", true, &test));
	ASSERT_EQ(-EBUSY, session_claim_take("open.0000:01:00.0", false, &other));
	ASSERT_EQ(-EBUSY, session_claim_take("open.0000:01:00.0", true, &other));
	ASSERT_EQ(-1, other.fd);
	/* Another test meanwhile (a second store) sees it held. */
	ASSERT_EQ(-EBUSY, session_claim_take("open.0000:01:00.0", true, &other));
	session_claim_drop(&test);
	ASSERT_EQ(-1, test.fd);
	ASSERT_EQ(0, session_claim_take("open.0000:01:00.0", false, &other));
	ASSERT_LE(0, other.fd);
	/* Held: a store's test now answers EBUSY and holds nothing. */
	ASSERT_EQ(-EBUSY, session_claim_take("open.0000:01:00.0", true, &test));
	ASSERT_EQ(-1, test.fd);
	session_claim_drop(&other);
	ASSERT_EQ(0, session_claim_remove_unheld(dir, "claim.open.0000:01:00.0"));
	ASSERT_EQ(0, unsetenv(SYSFS_DIR_ENV));
	ASSERT_EQ(0, rmdir(dir));
}

TEST_HARNESS_MAIN
