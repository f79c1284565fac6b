// SPDX-License-Identifier: MIT
/*
 * The iommufd context: the object table, object lifetimes, and the ioctl dispatch.
 *
 * The object model and lock order are described in iommufd_private.h. This file adds:
 *
 * The ID table is an array of object pointers indexed by ID (struct iommufd_id_table), plus a
 * bitmap of every ID in use (reserved for an object under construction, published, or a
 * tombstone) from which the lowest free ID is allocated, so IDs stay dense and the array is as
 * long as the bitmap. It is the kernel's xarray in miniature: a lookup is one load under RCU
 * (urcu-bp, so that no caller thread has to register), no hashing and no lock; the bitmap, the
 * slots and the growth of both are under objects_lock. Growing copies the slots into an array
 * twice the size and publishes it; readers still in the old one finish there (its slots are
 * only written under the lock, which the grower holds), and it is freed after a grace period.
 * (It was liburcu's rculfhash: its lookup was a fifth of a missing-ID DESTROY.)
 *
 * Publication order matters to lock-free readers: an object enters its slot while its wait_cnt
 * is still 0 (a lookup that finds it then answers ENOENT, exactly like a reserved ID), and the
 * bias is raised by a release store only afterwards; a reader's acquire increment-if-not-zero
 * therefore sees every field the constructor wrote.
 *
 * The RCU dispatch ("RCU dispatch" below, and file.c): a few ioctls (DESTROY of a missing ID,
 * IOVA_RANGES from a snapshot) run inside rcu_read_lock() with no reference on the file and no
 * hold on any object; the last close waits a grace period before iommufd_ctx_release(), so
 * the context, the object array and every object they can reach outlive them. Their handlers
 * take no lock, never sleep, touch no user memory and change nothing.
 *
 * Dispatch follows the kernel's order of checks: numbers outside the table go to VFIO compat
 * (which answers ENOTTY for what it does not know) without reading the argument; then the size
 * word is read (EFAULT), the full command word compared (ENOTTY), the minimum size checked
 * (EINVAL), the struct copied in with trailing bytes required to be zero (E2BIG), and only then
 * does the handler run. Handlers copy replies back with iommufd_ucmd_respond(), which writes
 * min(user size, our size) bytes. The size word and the struct come in one copy when they share
 * a page (iommufd_ucmd_copy_in()).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "lib/capable.h"
#include "lib/fail.h"

static atomic_long objects_live;  /* across all contexts: for uiommu_stats_get() */
static atomic_long contexts_live;

/* ---- the ID table ---------------------------------------------------------------------------- */

/* The object in @id's slot, or NULL. Inside rcu_read_lock() or under objects_lock. */
static struct iommufd_object *iommufd_id_lookup(struct iommufd_ctx *ictx, uint32_t id)
{
	struct iommufd_id_table *table = atomic_load_explicit(&ictx->objects,
							       memory_order_acquire);

	if (!table || id >= table->nr)
		return NULL;
	return atomic_load_explicit(&table->slot[id], memory_order_acquire);
}

/* @id's slot in the current array; the ID is allocated, so it has one. objects_lock held. */
static _Atomic(struct iommufd_object *) *iommufd_id_slot(struct iommufd_ctx *ictx, uint32_t id)
{
	struct iommufd_id_table *table = atomic_load_explicit(&ictx->objects,
							       memory_order_relaxed);

	lockdep_assert_held(&ictx->objects_lock);
	return &table->slot[id];
}

static void iommufd_id_table_free_rcu(struct rcu_head *head)
{
	iommufd_rcu_callback_begin();
	uiommu_free_deferred(container_of(head, struct iommufd_id_table, rcu));
}

/*
 * Room for IDs below @words * 64: a bigger bitmap and a bigger array, both or neither.
 * Caller holds objects_lock. Return: 0 or -ENOMEM.
 */
static int iommufd_ids_grow(struct iommufd_ctx *ictx, uint32_t words)
{
	struct iommufd_id_table *old = atomic_load_explicit(&ictx->objects, memory_order_relaxed);
	struct iommufd_id_table *table;
	uint64_t *ids;
	uint32_t i;

	lockdep_assert_held(&ictx->objects_lock);
	table = uiommu_zalloc(sizeof(*table) + (size_t)words * 64 * sizeof(table->slot[0]));
	if (!table)
		return -ENOMEM;
	ids = uiommu_realloc_array(ictx->ids, words, sizeof(*ids));
	if (!ids) {
		uiommu_free(table);
		return -ENOMEM;
	}
	memset(ids + ictx->ids_words, 0, (words - ictx->ids_words) * sizeof(*ids));
	ictx->ids = ids;
	ictx->ids_words = words;
	table->nr = words * 64;
	for (i = 0; old && i != old->nr; i++)
		atomic_init(&table->slot[i],
			    atomic_load_explicit(&old->slot[i], memory_order_relaxed));
	/* Pairs with iommufd_id_lookup(): a reader of the new array sees its slots filled. */
	atomic_store_explicit(&ictx->objects, table, memory_order_release);
	if (old)
		call_rcu(&old->rcu, iommufd_id_table_free_rcu);
	return 0;
}

/* The lowest free ID, marked used. Caller holds objects_lock. */
static int iommufd_id_alloc(struct iommufd_ctx *ictx, uint32_t *out)
{
	uint32_t w, id;
	int rc;

	lockdep_assert_held(&ictx->objects_lock);
	for (;;) {
		for (w = ictx->id_hint / 64; w < ictx->ids_words; w++) {
			uint64_t free_bits = ~ictx->ids[w];

			if (w == ictx->id_hint / 64)
				free_bits &= ~(((uint64_t)1 << (ictx->id_hint % 64)) - 1);
			if (!free_bits)
				continue;
			id = w * 64 + (uint32_t)__builtin_ctzll(free_bits);
			if (id > IOMMUFD_ID_LIMIT)
				return -ENOSPC;
			ictx->ids[w] |= (uint64_t)1 << (id % 64);
			ictx->id_hint = id + 1;
			*out = id;
			return 0;
		}
		if ((uint64_t)ictx->ids_words * 64 > IOMMUFD_ID_LIMIT)
			return -ENOSPC;
		rc = iommufd_ids_grow(ictx, ictx->ids_words ? ictx->ids_words * 2 : 4);
		if (rc)
			return rc;
	}
}

/* No ID in use at all: no object, none under construction, no tombstone. */
static bool iommufd_ids_empty(struct iommufd_ctx *ictx)
{
	uint32_t w;

	lockdep_assert_held(&ictx->objects_lock);
	for (w = 0; w < ictx->ids_words; w++)
		if (ictx->ids[w])
			return false;
	return true;
}

static void iommufd_id_free(struct iommufd_ctx *ictx, uint32_t id)
{
	lockdep_assert_held(&ictx->objects_lock);
	ictx->ids[id / 64] &= ~((uint64_t)1 << (id % 64));
	/* ID 0 is never used, so the hint never drops below 1. */
	if (id < ictx->id_hint)
		ictx->id_hint = id;
}

/* ---- object lifetime ----------------------------------------------------------------------- */

/**
 * _iommufd_object_alloc() - allocate @size bytes of object and reserve its ID
 * The object is invisible to lookups until iommufd_object_finalize().
 * Return: the object, or ERR_PTR(-ENOMEM / -ENOSPC).
 */
struct iommufd_object *_iommufd_object_alloc(struct iommufd_ctx *ictx, size_t size,
					     enum iommufd_object_type type)
{
	struct iommufd_object *obj;
	uint32_t id;
	int rc;

	obj = uiommu_zalloc(size);
	if (!obj)
		return ERR_PTR(-ENOMEM);
	obj->ictx = ictx;
	obj->type = type;
	atomic_store_explicit(&obj->users, 0, memory_order_relaxed);
	atomic_store_explicit(&obj->wait_cnt, 0, memory_order_relaxed);

	uiommu_mutex_lock(&ictx->objects_lock);
	rc = iommufd_id_alloc(ictx, &id);
	if (!rc)
		ictx->nr_objects++;
	uiommu_mutex_unlock(&ictx->objects_lock);
	if (rc) {
		uiommu_free(obj);
		return ERR_PTR(rc);
	}
	atomic_store_explicit(&obj->id, id, memory_order_release);
	atomic_fetch_add_explicit(&objects_live, 1, memory_order_relaxed);
	return obj;
}

/* Publishes @obj: from now on lookups find it and IOMMU_DESTROY can remove it. */
void iommufd_object_finalize(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	uint32_t id = atomic_load_explicit(&obj->id, memory_order_relaxed);

	uiommu_mutex_lock(&ictx->objects_lock);
	atomic_store_explicit(iommufd_id_slot(ictx, id), obj, memory_order_release);
	/*
	 * An add, not a store: a constructor may already have taken a long-term reference on its
	 * object (an automatic HWPT is attached before it is published, a bound device holds
	 * itself), so a lookup may read users above 0 from before this point. users therefore
	 * cannot be what orders the constructor's stores for a lookup; wait_cnt is: every lookup
	 * takes it first (iommufd_lock_obj(), acquire) and none gets past 0, so this release
	 * store of the bias, the last step of the publication, is what a successful lookup
	 * synchronises with, and every later RMW of wait_cnt continues its release sequence.
	 */
	atomic_fetch_add_explicit(&obj->users, 1, memory_order_relaxed);
	atomic_store_explicit(&obj->wait_cnt, 1, memory_order_release);
	uiommu_mutex_unlock(&ictx->objects_lock);
}

#ifdef __SANITIZE_THREAD__
char uiommu_tsan_rcu_sync;
#endif

static void iommufd_object_free_rcu(struct rcu_head *head)
{
	iommufd_rcu_callback_begin();
	uiommu_free_deferred(container_of(head, struct iommufd_object, rcu));
}

/* Gives back the ID of an object that was never published, and frees it. */
void iommufd_object_abort(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	uiommu_mutex_lock(&ictx->objects_lock);
	iommufd_id_free(ictx, atomic_load_explicit(&obj->id, memory_order_relaxed));
	ictx->nr_objects--;
	uiommu_mutex_unlock(&ictx->objects_lock);
	atomic_fetch_sub_explicit(&objects_live, 1, memory_order_relaxed);
	/* Never published, so no reader can hold it: free at once. */
	uiommu_free(obj);
}

/* Undoes a fully constructed but unpublished object. */
void iommufd_object_abort_and_destroy(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	const struct iommufd_object_ops *ops = &iommufd_object_ops[obj->type];

	if (ops->abort)
		ops->abort(obj);
	else
		ops->destroy(obj);
	iommufd_object_abort(ictx, obj);
}

/* Takes a short-term hold; false once the object is being destroyed or not yet published. */
static void iommufd_object_wait_put(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	if (atomic_fetch_sub_explicit(&obj->wait_cnt, 1, memory_order_acq_rel) == 1) {
		uiommu_mutex_lock(&ictx->wait_lock);
		uiommu_cond_broadcast(&ictx->wait_cond);
		uiommu_mutex_unlock(&ictx->wait_lock);
	}
}

/*
 * wait_cnt first, then users. The kernel takes both under the xarray lock, so an owner's
 * iommufd_object_remove() never sees a lookup's transient users reference; this lookup is
 * lock-free, and once an owner has dropped the wait bias (REMOVE_WAIT) and waited, a late
 * lookup must fail at wait_cnt without touching users, or the owner's "users == 1" check
 * could meet its passing increment and fail with EBUSY.
 */
static bool iommufd_lock_obj(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	int v = atomic_load_explicit(&obj->wait_cnt, memory_order_relaxed);

	do {
		if (!v)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&obj->wait_cnt, &v, v + 1,
							memory_order_acquire,
							memory_order_relaxed));
	/*
	 * The acquire above pairs with the release store of wait_cnt in
	 * iommufd_object_finalize(): the object is complete from here on. users may have been
	 * raised before the publication, so its value orders nothing.
	 */
	v = atomic_load_explicit(&obj->users, memory_order_relaxed);
	do {
		if (!v) {
			iommufd_object_wait_put(ictx, obj);
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(&obj->users, &v, v + 1,
							memory_order_acquire,
							memory_order_relaxed));
	return true;
}

/**
 * iommufd_get_object() - look up a published object by ID for the length of one ioctl
 * @type: the type wanted, or IOMMUFD_OBJ_ANY. Lock-free.
 * Return: the object with a short-term hold (drop it with iommufd_put_object()), or
 * ERR_PTR(-ENOENT) for a missing, unpublished, dying or wrong-type ID.
 */
struct iommufd_object *iommufd_get_object(struct iommufd_ctx *ictx, uint32_t id,
					  enum iommufd_object_type type)
{
	struct iommufd_object *obj;

	if (uiommu_should_fail())
		return ERR_PTR(-ENOENT);
	rcu_read_lock();
	obj = iommufd_id_lookup(ictx, id);
	if (obj && !iommufd_lock_obj(ictx, obj))
		obj = NULL;
	rcu_read_unlock();
	if (!obj)
		return ERR_PTR(-ENOENT);
	if (type != IOMMUFD_OBJ_ANY && obj->type != type) {
		iommufd_put_object(ictx, obj);
		return ERR_PTR(-ENOENT);
	}
	return obj;
}

void iommufd_put_object(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	/* users first: a waiter that sees wait_cnt reach 0 must also see users back down. */
	iommufd_object_unref_users(obj);
	iommufd_object_wait_put(ictx, obj);
}

struct iommufd_object *iommufd_get_object_rcu(struct iommufd_ctx *ictx, uint32_t id,
					      enum iommufd_object_type type)
{
	struct iommufd_object *obj;

	if (uiommu_should_fail())
		return ERR_PTR(-ENOENT);
	obj = iommufd_id_lookup(ictx, id);
	if (!obj)
		return ERR_PTR(-ENOENT);
	/*
	 * What iommufd_lock_obj() asks, without raising anything: published (the acquire pairs
	 * with iommufd_object_finalize()'s release of wait_cnt, so the object is complete) and
	 * not yet being removed. A remove may start right after: the answer is then what a
	 * lookup just before it gave.
	 */
	if (!atomic_load_explicit(&obj->wait_cnt, memory_order_acquire) ||
	    !atomic_load_explicit(&obj->users, memory_order_relaxed))
		return ERR_PTR(-ENOENT);
	if (type != IOMMUFD_OBJ_ANY && obj->type != type)
		return ERR_PTR(-ENOENT);
	return obj;
}

struct iommufd_object *iommufd_object_next_locked(struct iommufd_ctx *ictx, uint32_t *id)
{
	struct iommufd_id_table *table = atomic_load_explicit(&ictx->objects,
							       memory_order_relaxed);
	struct iommufd_object *obj;

	lockdep_assert_held(&ictx->objects_lock);
	for (; table && *id < table->nr; (*id)++) {
		obj = atomic_load_explicit(&table->slot[*id], memory_order_relaxed);
		if (obj)
			return obj;
	}
	return NULL;
}

/* Sleeps until every in-flight holder of @obj is gone. */
static void iommufd_object_wait_shortterm(struct iommufd_ctx *ictx, struct iommufd_object *obj)
{
	uiommu_mutex_lock(&ictx->wait_lock);
	while (atomic_load_explicit(&obj->wait_cnt, memory_order_acquire))
		uiommu_cond_wait(&ictx->wait_cond, &ictx->wait_lock);
	uiommu_mutex_unlock(&ictx->wait_lock);
}

static bool iommufd_users_dec_if_one(struct iommufd_object *obj)
{
	int one = 1;

	return atomic_compare_exchange_strong_explicit(&obj->users, &one, 0, memory_order_acq_rel,
						       memory_order_relaxed);
}

/* Frees @obj after its removal from the table: destroy now, memory after a grace period. */
static void iommufd_object_destroy_removed(struct iommufd_object *obj)
{
	iommufd_object_ops[obj->type].destroy(obj);
	atomic_fetch_sub_explicit(&objects_live, 1, memory_order_relaxed);
	call_rcu(&obj->rcu, iommufd_object_free_rcu);
}

/**
 * iommufd_object_remove() - unpublish and destroy an object nobody else holds
 * @to_destroy: the object, when the caller has it, else NULL. With @to_destroy and @id 0 the ID
 * is read from the object; with both, @id is used and the object is only compared, so a caller
 * that no longer holds @to_destroy (it dropped its last reference) may still ask.
 * @flags: REMOVE_WAIT when the caller itself holds a users reference that it hands over
 * (in-flight ioctls are waited for first; the reference is consumed, on failure too);
 * REMOVE_OBJ_TOMBSTONE to keep the ID used.
 * Return: 0, -ENOENT (no such published object), -EBUSY (someone else holds it).
 */
int iommufd_object_remove(struct iommufd_ctx *ictx, struct iommufd_object *to_destroy,
			  uint32_t id, unsigned int flags)
{
	struct iommufd_object *obj;
	int rc = 0;

	if (to_destroy) {
		if (!id)
			id = atomic_load_explicit(&to_destroy->id, memory_order_relaxed);
		if (flags & REMOVE_WAIT) {
			/* Drop the bias and wait for everyone but the caller to leave. */
			atomic_fetch_sub_explicit(&to_destroy->wait_cnt, 1, memory_order_acq_rel);
			iommufd_object_wait_shortterm(ictx, to_destroy);
		}
	}

	uiommu_mutex_lock(&ictx->objects_lock);
	/*
	 * The caller's users reference goes under objects_lock, as in the kernel: an
	 * IOMMU_DESTROY of the same ID (which decrements users only under this lock) must see it
	 * and answer EBUSY, never find users at one and destroy the object under its owner.
	 */
	if (to_destroy && (flags & REMOVE_WAIT))
		iommufd_object_unref_users(to_destroy);
	obj = iommufd_id_lookup(ictx, id);
	if (!obj || (to_destroy && obj != to_destroy)) {
		rc = -ENOENT;
		goto out_unlock;
	}
	if (!iommufd_users_dec_if_one(obj)) {
		rc = -EBUSY;
		goto out_unlock;
	}
	atomic_store_explicit(iommufd_id_slot(ictx, id), NULL, memory_order_relaxed);
	if (!(flags & REMOVE_OBJ_TOMBSTONE))
		iommufd_id_free(ictx, id);
	ictx->nr_objects--;
	if (ictx->vfio_ioas && &ictx->vfio_ioas->obj == obj)
		ictx->vfio_ioas = NULL;
out_unlock:
	uiommu_mutex_unlock(&ictx->objects_lock);

	if (rc) {
		if (to_destroy && (flags & REMOVE_WAIT))
			atomic_fetch_add_explicit(&to_destroy->wait_cnt, 1, memory_order_relaxed);
		return rc;
	}
	if (!(flags & REMOVE_WAIT)) {
		atomic_fetch_sub_explicit(&obj->wait_cnt, 1, memory_order_acq_rel);
		iommufd_object_wait_shortterm(ictx, obj);
	}
	iommufd_object_destroy_removed(obj);
	return 0;
}

/* ---- the context --------------------------------------------------------------------------- */

static void iommufd_atfork_prepare(void)
{
	call_rcu_before_fork();
	rcu_bp_before_fork();
}

static void iommufd_atfork_parent(void)
{
	rcu_bp_after_fork_parent();
	call_rcu_after_fork_parent();
}

static void iommufd_atfork_child(void)
{
	rcu_bp_after_fork_child();
	call_rcu_after_fork_child();
}

static pthread_once_t iommufd_atfork_once = PTHREAD_ONCE_INIT;

static void iommufd_atfork_register(void)
{
	/* RCU's helper threads do not survive fork(); liburcu re-creates them in the child. */
	if (pthread_atfork(iommufd_atfork_prepare, iommufd_atfork_parent, iommufd_atfork_child))
		die("pthread_atfork");
}

struct iommufd_ctx *iommufd_ctx_alloc(struct uiommu_mm *mm)
{
	struct iommufd_ctx *ictx;

	pthread_once(&iommufd_atfork_once, iommufd_atfork_register);
	ictx = uiommu_zalloc(sizeof(*ictx));
	if (!ictx)
		return ERR_PTR(-ENOMEM);
	/* The object array comes with the first ID (iommufd_ids_grow()). */
	atomic_init(&ictx->objects, NULL);
	uiommu_mutex_init(&ictx->objects_lock);
	uiommu_rwsem_init(&ictx->ioas_creation_rwsem);
	uiommu_mutex_init(&ictx->wait_lock);
	uiommu_cond_init(&ictx->wait_cond);
	ictx->id_hint = 1; /* ID 0 is never handed out */
	ictx->account_mode = IOPT_PAGES_ACCOUNT_USER;
	ictx->mm = uiommu_mm_get(mm);
	atomic_fetch_add_explicit(&contexts_live, 1, memory_order_relaxed);
	return ictx;
}

/*
 * The last close: destroy every object, leaves first. Each pass unpublishes, under the lock,
 * every object nobody else holds, chaining them through next_victim; then, with no lock and
 * outside the RCU read side (a destroy may sleep, and the iteration must not outlive the nodes
 * it walks), destroys them, which releases their holds on their parents for the next pass.
 * Nothing else can reach the context any more, so there are no in-flight ioctls to wait for.
 */
void iommufd_ctx_release(struct iommufd_ctx *ictx)
{
	struct iommufd_object *obj, *victims;
	bool progress;
	uint32_t id;

	do {
		victims = NULL;
		uiommu_mutex_lock(&ictx->objects_lock);
		for (id = 0; (obj = iommufd_object_next_locked(ictx, &id)); id++) {
			if (!iommufd_users_dec_if_one(obj))
				continue;
			atomic_store_explicit(iommufd_id_slot(ictx, id), NULL, memory_order_relaxed);
			ictx->nr_objects--;
			atomic_fetch_sub_explicit(&obj->wait_cnt, 1, memory_order_relaxed);
			obj->next_victim = victims;
			victims = obj;
		}
		uiommu_mutex_unlock(&ictx->objects_lock);
		progress = victims != NULL;
		while (victims) {
			obj = victims;
			victims = obj->next_victim;
			iommufd_object_destroy_removed(obj);
		}
	} while (progress);
	WARN_ON(ictx->nr_objects);

	/* No reader is left: the last close waited a grace period before coming here. */
	uiommu_free(atomic_load_explicit(&ictx->objects, memory_order_relaxed));
	uiommu_mutex_destroy(&ictx->objects_lock);
	uiommu_rwsem_destroy(&ictx->ioas_creation_rwsem);
	uiommu_mutex_destroy(&ictx->wait_lock);
	uiommu_cond_destroy(&ictx->wait_cond);
	uiommu_mm_put(ictx->mm);
	uiommu_free(ictx->ids);
	uiommu_free(ictx);
	atomic_fetch_sub_explicit(&contexts_live, 1, memory_order_relaxed);
}

long iommufd_objects_live(void)
{
	return atomic_load_explicit(&objects_live, memory_order_relaxed);
}

long iommufd_contexts_live(void)
{
	return atomic_load_explicit(&contexts_live, memory_order_relaxed);
}

/* ---- ioctls of the context itself --------------------------------------------------------- */

/*
 * EBUSY may be the doing of another process that is gone, where the kernel's exit (or exec)
 * let go of everything before anyone could see it gone: a mapping of a vIOMMU region, a call
 * still running, a last fd. Those go first (iommufd_remote_settle(): nothing to look at, and no
 * system call, in a process that shares nothing), then the destroy is asked again: also when
 * the settle found nothing left to do, as another thread may have let go since the first ask.
 */
static int iommufd_destroy(struct iommufd_ucmd *ucmd)
{
	struct iommu_destroy *cmd = ucmd->cmd;
	int rc = iommufd_object_remove(ucmd->ictx, NULL, cmd->id, 0);

	if (rc != -EBUSY)
		return rc;
	iommufd_remote_settle();
	return iommufd_object_remove(ucmd->ictx, NULL, cmd->id, 0);
}

/*
 * A missing ID needs neither objects_lock nor a reference: the table's lock-free lookup finding
 * no node is the answer iommufd_object_remove() would give under the lock (reserved IDs and
 * tombstones have no node either). Anything found may be destroyed: the referenced path.
 */
static int iommufd_destroy_rcu(struct iommufd_ucmd_rcu *rcmd)
{
	struct iommu_destroy *cmd = rcmd->ucmd.cmd;

	return iommufd_id_lookup(rcmd->ucmd.ictx, cmd->id) ? IOMMUFD_IOCTL_REF : -ENOENT;
}

/* CAP_SYS_RESOURCE, for RLIMIT_MODE; the query is a fallible step, as it always was here. */
static bool iommufd_capable_sys_resource(void)
{
	if (uiommu_should_fail())
		return false;
	return uiommu_capable(CAP_SYS_RESOURCE);
}

int iommufd_option_rlimit_mode(struct iommu_option *cmd, struct iommufd_ctx *ictx)
{
	int rc = 0;

	if (cmd->object_id)
		return -EOPNOTSUPP;
	if (cmd->op == IOMMU_OPTION_OP_GET) {
		uiommu_mutex_lock(&ictx->objects_lock);
		cmd->val64 = ictx->account_mode == IOPT_PAGES_ACCOUNT_MM;
		uiommu_mutex_unlock(&ictx->objects_lock);
		return 0;
	}
	if (cmd->op != IOMMU_OPTION_OP_SET)
		return -EOPNOTSUPP;
	if (!iommufd_capable_sys_resource())
		return -EPERM;
	uiommu_mutex_lock(&ictx->objects_lock);
	/* The mode is fixed once anything exists that could have pinned under the old one. */
	if (!iommufd_ids_empty(ictx)) {
		rc = -EBUSY;
	} else if (cmd->val64 == 0) {
		ictx->account_mode = IOPT_PAGES_ACCOUNT_USER;
	} else if (cmd->val64 == 1) {
		ictx->account_mode = IOPT_PAGES_ACCOUNT_MM;
	} else {
		rc = -EINVAL;
	}
	uiommu_mutex_unlock(&ictx->objects_lock);
	return rc;
}

static int iommufd_option(struct iommufd_ucmd *ucmd)
{
	struct iommu_option *cmd = ucmd->cmd;
	int rc;

	uint64_t val64_addr = ucmd->ubuffer + offsetof(struct iommu_option, val64);

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	/* val64 is written back after a SET too: make sure it can be before changing anything. */
	rc = uiommu_copy_to_user(ucmd->mm, val64_addr, &cmd->val64, sizeof(cmd->val64));
	if (rc)
		return rc;
	switch (cmd->option_id) {
	case IOMMU_OPTION_RLIMIT_MODE:
		rc = iommufd_option_rlimit_mode(cmd, ucmd->ictx);
		break;
	case IOMMU_OPTION_HUGE_PAGES:
		rc = iommufd_ioas_option(ucmd);
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (rc)
		return rc;
	/* Only val64 is an output. */
	return __uiommu_copy_to_user(ucmd->mm, val64_addr, &cmd->val64, sizeof(cmd->val64));
}

/* ---- dispatch ----------------------------------------------------------------------------- */

union ucmd_buffer {
	struct iommu_destroy destroy;
	struct iommu_fault_alloc fault;
	struct iommu_hw_info info;
	struct iommu_hw_queue_alloc hw_queue;
	struct iommu_hwpt_alloc hwpt;
	struct iommu_hwpt_get_dirty_bitmap get_dirty_bitmap;
	struct iommu_hwpt_invalidate cache;
	struct iommu_hwpt_set_dirty_tracking set_dirty_tracking;
	struct iommu_ioas_alloc alloc;
	struct iommu_ioas_allow_iovas allow_iovas;
	struct iommu_ioas_change_process change_process;
	struct iommu_ioas_copy ioas_copy;
	struct iommu_ioas_iova_ranges iova_ranges;
	struct iommu_ioas_map map;
	struct iommu_ioas_map_file map_file;
	struct iommu_ioas_unmap unmap;
	struct iommu_option option;
	struct iommu_vdevice_alloc vdev;
	struct iommu_veventq_alloc veventq;
	struct iommu_vfio_ioas vfio_ioas;
	struct iommu_viommu_alloc viommu;
	struct iommu_test_cmd test;
};

struct iommufd_ioctl_op {
	unsigned int size;     /* our struct */
	unsigned int min_size; /* the end of the last field the first version had */
	unsigned int ioctl_num;
	int (*execute)(struct iommufd_ucmd *ucmd);
	/* Optional, the RCU dispatch's: under rcu_read_lock(), then the reply after it. */
	int (*execute_rcu)(struct iommufd_ucmd_rcu *rcmd);
	int (*reply_rcu)(struct iommufd_ucmd_rcu *rcmd);
};

#define IOCTL_OP(_ioctl, _fn, _struct, _last)                                               \
	[_IOC_NR(_ioctl) - IOMMUFD_CMD_BASE] = {                                             \
		.size = sizeof(_struct) +                                                    \
			0 * sizeof(char[sizeof(_struct) <= sizeof(union ucmd_buffer) ? 1 : -1]), \
		.min_size = offsetofend(_struct, _last),                                     \
		.ioctl_num = _ioctl,                                                         \
		.execute = _fn,                                                              \
	}

/* An op that may also run under RCU with no reference (iommufd_ioctl_rcu_prepare()). */
#define IOCTL_OP_RCU(_ioctl, _fn, _struct, _last, _fn_rcu, _reply_rcu)                      \
	[_IOC_NR(_ioctl) - IOMMUFD_CMD_BASE] = {                                             \
		.size = sizeof(_struct) +                                                    \
			0 * sizeof(char[sizeof(_struct) <=                                   \
						sizeof(((struct iommufd_ucmd_rcu *)0)->buf) ? 1 : -1]), \
		.min_size = offsetofend(_struct, _last),                                     \
		.ioctl_num = _ioctl,                                                         \
		.execute = _fn,                                                              \
		.execute_rcu = _fn_rcu,                                                      \
		.reply_rcu = _reply_rcu,                                                     \
	}

static const struct iommufd_ioctl_op iommufd_ioctl_ops[] = {
	IOCTL_OP_RCU(IOMMU_DESTROY, iommufd_destroy, struct iommu_destroy, id, iommufd_destroy_rcu,
		     NULL),
	IOCTL_OP(IOMMU_IOAS_ALLOC, iommufd_ioas_alloc_ioctl, struct iommu_ioas_alloc,
		 out_ioas_id),
	IOCTL_OP(IOMMU_IOAS_ALLOW_IOVAS, iommufd_ioas_allow_iovas, struct iommu_ioas_allow_iovas,
		 allowed_iovas),
	IOCTL_OP(IOMMU_IOAS_COPY, iommufd_ioas_copy, struct iommu_ioas_copy, src_iova),
	IOCTL_OP_RCU(IOMMU_IOAS_IOVA_RANGES, iommufd_ioas_iova_ranges,
		     struct iommu_ioas_iova_ranges, out_iova_alignment, iommufd_ioas_iova_ranges_rcu,
		     iommufd_ioas_iova_ranges_rcu_reply),
	IOCTL_OP(IOMMU_IOAS_MAP, iommufd_ioas_map, struct iommu_ioas_map, iova),
	IOCTL_OP(IOMMU_IOAS_UNMAP, iommufd_ioas_unmap, struct iommu_ioas_unmap, length),
	IOCTL_OP(IOMMU_OPTION, iommufd_option, struct iommu_option, val64),
	IOCTL_OP(IOMMU_VFIO_IOAS, iommufd_vfio_ioas, struct iommu_vfio_ioas, __reserved),
	IOCTL_OP(IOMMU_HWPT_ALLOC, iommufd_hwpt_alloc, struct iommu_hwpt_alloc, __reserved),
	IOCTL_OP(IOMMU_GET_HW_INFO, iommufd_get_hw_info, struct iommu_hw_info, __reserved),
	IOCTL_OP(IOMMU_HWPT_SET_DIRTY_TRACKING, iommufd_hwpt_set_dirty_tracking,
		 struct iommu_hwpt_set_dirty_tracking, __reserved),
	IOCTL_OP(IOMMU_HWPT_GET_DIRTY_BITMAP, iommufd_hwpt_get_dirty_bitmap,
		 struct iommu_hwpt_get_dirty_bitmap, data),
	IOCTL_OP(IOMMU_HWPT_INVALIDATE, iommufd_hwpt_invalidate, struct iommu_hwpt_invalidate,
		 __reserved),
	IOCTL_OP(IOMMU_FAULT_QUEUE_ALLOC, iommufd_fault_alloc, struct iommu_fault_alloc,
		 out_fault_fd),
	IOCTL_OP(IOMMU_IOAS_MAP_FILE, iommufd_ioas_map_file, struct iommu_ioas_map_file, iova),
	IOCTL_OP(IOMMU_VIOMMU_ALLOC, iommufd_viommu_alloc_ioctl, struct iommu_viommu_alloc,
		 out_viommu_id),
	IOCTL_OP(IOMMU_VDEVICE_ALLOC, iommufd_vdevice_alloc_ioctl, struct iommu_vdevice_alloc, virt_id),
	IOCTL_OP(IOMMU_IOAS_CHANGE_PROCESS, iommufd_ioas_change_process,
		 struct iommu_ioas_change_process, __reserved),
	IOCTL_OP(IOMMU_VEVENTQ_ALLOC, iommufd_veventq_alloc, struct iommu_veventq_alloc,
		 out_veventq_fd),
	IOCTL_OP(IOMMU_HW_QUEUE_ALLOC, iommufd_hw_queue_alloc_ioctl, struct iommu_hw_queue_alloc,
		 length),
#ifdef UIOMMU_IOMMUFD_TEST
	/* The kernel's CONFIG_IOMMUFD_TEST: without it, ENOTTY. */
	IOCTL_OP(IOMMU_TEST_CMD, iommufd_test, struct iommu_test_cmd, last),
#endif
};

/*
 * copy_struct_from_user(): a shorter user struct reads as zero-extended, a longer one must have
 * nothing but zeros past ours.
 */
static int iommufd_copy_struct_from_user(struct uiommu_mm *mm, void *dst, size_t ksize,
					 uint64_t src, size_t usize)
{
	size_t size = usize < ksize ? usize : ksize;
	int rc;

	if (usize > ksize) {
		unsigned char tail[64];
		uint64_t off = ksize;

		while (off < usize) {
			size_t n = usize - off < sizeof(tail) ? usize - off : sizeof(tail);
			size_t i;

			rc = uiommu_copy_from_user(mm, tail, src + off, n);
			if (rc)
				return rc;
			for (i = 0; i != n; i++)
				if (tail[i])
					return -E2BIG;
			off += n;
		}
	}
	/* The usual caller's struct is ours: no call for nothing to zero. */
	if (size < ksize)
		memset((char *)dst + size, 0, ksize - size);
	return uiommu_copy_from_user(mm, dst, src, size);
}

/*
 * A handler whose work cannot be undone (an unmap, an option change) first proves that its
 * reply can be written, by writing back the argument as it came in; a caller with an unwritable
 * argument then gets EFAULT and nothing changes. The reply itself is written afterwards with
 * iommufd_ucmd_respond_committed().
 */
int iommufd_ucmd_probe_respond(struct iommufd_ucmd *ucmd, size_t cmd_len)
{
	return iommufd_ucmd_respond(ucmd, cmd_len);
}

int iommufd_ucmd_respond_committed(struct iommufd_ucmd *ucmd, size_t cmd_len)
{
	size_t n = ucmd->user_size < cmd_len ? ucmd->user_size : cmd_len;

	return __uiommu_copy_to_user(ucmd->mm, ucmd->ubuffer, ucmd->cmd, n);
}

/*
 * The size word, the command (ENOTTY), the minimum size (EINVAL) and the struct (E2BIG), in
 * the kernel's order, into ucmd->cmd.
 */
static int iommufd_ucmd_copy_in(const struct iommufd_ioctl_op *op, struct iommufd_ucmd *ucmd,
				unsigned int cmd)
{
	/* The smallest page there is: a range inside one such block is inside one page. */
	const uint64_t block = 4096;
	int rc;

	/*
	 * Our whole struct in one copy when it lies in the page of the size word: that page is
	 * readable exactly when the size word is (no access right is finer than a page), so this
	 * faults exactly when the size word's copy would, and the bytes past the caller's size
	 * are read but never used. Half the copies of a small command.
	 */
	if (op->ioctl_num == cmd && (ucmd->ubuffer & (block - 1)) + op->size <= block) {
		rc = uiommu_copy_from_user(ucmd->mm, ucmd->cmd, ucmd->ubuffer, op->size);
		if (rc)
			return rc;
		memcpy(&ucmd->user_size, ucmd->cmd, sizeof(ucmd->user_size));
		if (ucmd->user_size < op->min_size)
			return -EINVAL;
		if (ucmd->user_size > op->size)
			/* Longer than ours: its tail must be zero (the general copy checks). */
			return iommufd_copy_struct_from_user(ucmd->mm, ucmd->cmd, op->size,
							     ucmd->ubuffer, ucmd->user_size);
		/* Shorter: what the caller did not give reads as zero. */
		if (ucmd->user_size < op->size)
			memset((char *)ucmd->cmd + ucmd->user_size, 0,
			       op->size - ucmd->user_size);
		return 0;
	}
	rc = uiommu_copy_from_user(ucmd->mm, &ucmd->user_size, ucmd->ubuffer,
				   sizeof(ucmd->user_size));
	if (rc)
		return rc;
	if (op->ioctl_num != cmd)
		return -ENOTTY;
	if (ucmd->user_size < op->min_size)
		return -EINVAL;
	return iommufd_copy_struct_from_user(ucmd->mm, ucmd->cmd, op->size, ucmd->ubuffer,
					     ucmd->user_size);
}

/**
 * iommufd_ctx_ioctl() - run one ioctl of /dev/iommu
 * @mm: the caller's address space; @arg is an address in it.
 * Return: the ioctl's non-negative result, or -errno.
 */
int iommufd_ctx_ioctl(struct iommufd_ctx *ictx, struct uiommu_mm *mm, unsigned int cmd,
		      uint64_t arg)
{
	const struct iommufd_ioctl_op *op;
	union ucmd_buffer buf;
	struct iommufd_ucmd ucmd = { .ictx = ictx, .mm = mm, .ubuffer = arg, .cmd = &buf };
	unsigned int nr = _IOC_NR(cmd);
	int rc;

	if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= ARRAY_SIZE(iommufd_ioctl_ops))
		return iommufd_vfio_ioctl(ictx, mm, cmd, arg);
	op = &iommufd_ioctl_ops[nr - IOMMUFD_CMD_BASE];
	rc = iommufd_ucmd_copy_in(op, &ucmd, cmd);
	if (rc)
		return rc;
	return op->execute(&ucmd);
}

/*
 * RCU dispatch. The ioctls whose op has execute_rcu run with no reference on the file and no
 * hold on any object: the fd layer finds the file under rcu_read_lock() and runs the handler
 * there, which is what the file's and the objects' counters cost otherwise (four to six
 * lock-prefixed operations, most of such an ioctl). It is safe because nothing they read is
 * freed before a grace period: objects and IOVA snapshots go through call_rcu(), and the last
 * close waits with synchronize_rcu() before it tears the context down (file.c), so a handler
 * that found the file still finds its context whole. The rule for such a handler: it takes no
 * lock, does not sleep, touches no user memory (a fault could block the grace period every
 * close waits for) and changes nothing; the copy-in runs before (prepare), the reply after
 * (finish). What needs more (a DESTROY that found something) answers IOMMUFD_IOCTL_REF and the
 * ordinary handler runs, on the struct already copied in, with the file referenced. A racing
 * DESTROY of the object such a handler reads succeeds where the kernel's could answer EBUSY
 * (it counts an in-flight reader as a user): the reader then ran just before the destroy.
 */
bool iommufd_ioctl_rcu_prepare(struct iommufd_ucmd_rcu *rcmd, struct uiommu_mm *mm,
			       unsigned int cmd, uint64_t arg)
{
	const struct iommufd_ioctl_op *op;
	unsigned int nr = _IOC_NR(cmd);

	if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= ARRAY_SIZE(iommufd_ioctl_ops) || !mm)
		return false;
	op = &iommufd_ioctl_ops[nr - IOMMUFD_CMD_BASE];
	/* Another number with our NR: the full dispatch answers it (ENOTTY). */
	if (!op->execute_rcu || op->ioctl_num != cmd)
		return false;
	rcmd->op = op;
	rcmd->execute_rcu = op->execute_rcu;
	rcmd->reply_rcu = op->reply_rcu;
	rcmd->ucmd.mm = mm;
	rcmd->ucmd.ubuffer = arg;
	rcmd->ucmd.cmd = rcmd->buf;
	rcmd->rc_in = iommufd_ucmd_copy_in(op, &rcmd->ucmd, cmd);
	return true;
}

/* The ordinary handler of a prepared command, the file referenced by the caller. */
int iommufd_ctx_ioctl_ref(struct iommufd_ctx *ictx, struct iommufd_ucmd_rcu *rcmd)
{
	if (rcmd->rc_in)
		return rcmd->rc_in;
	rcmd->ucmd.ictx = ictx;
	return rcmd->op->execute(&rcmd->ucmd);
}

/* ---- object types -------------------------------------------------------------------------- */

const struct iommufd_object_ops iommufd_object_ops[IOMMUFD_OBJ_MAX] = {
	[IOMMUFD_OBJ_DEVICE] = {
		.destroy = iommufd_device_destroy,
	},
	[IOMMUFD_OBJ_HWPT_PAGING] = {
		.destroy = iommufd_hwpt_paging_destroy,
	},
	[IOMMUFD_OBJ_HWPT_NESTED] = {
		.destroy = iommufd_hwpt_nested_destroy,
	},
	[IOMMUFD_OBJ_VIOMMU] = {
		.destroy = iommufd_viommu_destroy,
	},
	[IOMMUFD_OBJ_VDEVICE] = {
		.destroy = iommufd_vdevice_destroy,
	},
	[IOMMUFD_OBJ_VEVENTQ] = {
		.destroy = iommufd_veventq_destroy,
	},
	[IOMMUFD_OBJ_FAULT] = {
		.destroy = iommufd_fault_destroy,
	},
	[IOMMUFD_OBJ_HW_QUEUE] = {
		.destroy = iommufd_hw_queue_destroy,
	},
	[IOMMUFD_OBJ_IOAS] = {
		.destroy = iommufd_ioas_destroy,
	},
	[IOMMUFD_OBJ_ACCESS] = {
		.destroy = iommufd_access_destroy_object,
	},
#ifdef UIOMMU_IOMMUFD_TEST
	[IOMMUFD_OBJ_SELFTEST] = {
		.destroy = iommufd_selftest_destroy,
	},
#endif
};
