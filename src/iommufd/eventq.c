// SPDX-License-Identifier: MIT
/*
 * Event queues with an fd of their own: vEVENTQs (IOMMU_VEVENTQ_ALLOC) and I/O page fault
 * queues (IOMMU_FAULT_QUEUE_ALLOC), the queues themselves and their fds.
 *
 * vEVENTQs. A vEVENTQ (IOMMUFD_OBJ_VEVENTQ) carries events a vIOMMU's hardware raises about the
 * guest's devices (for the selftest mock, TRIGGER_VEVENT's {virt_id}) to the VMM, which reads
 * them from an fd that VEVENTQ_ALLOC returns beside the object ID. One queue per type per
 * vIOMMU (EEXIST); the queue holds its vIOMMU with a users reference.
 *
 * The vEVENTQ itself. Each event is an 8-byte struct iommufd_vevent_header {flags, sequence}
 * followed by the driver's payload. Every event offered gets the next sequence number
 * (0 .. INT_MAX, then 0 again), whether it is queued or not. Once veventq_depth events wait,
 * new ones are dropped and a single header with IOMMU_VEVENTQ_FLAG_LOST_EVENTS and no payload
 * stands at the tail instead, carrying the sequence of the last event dropped; so a reader sees
 * either the flag or a gap. The lost header only ever stands at the tail: the next event
 * offered, queued or dropped, takes its place there (the reader then sees the gap), so it never
 * separates two queued events. An event we cannot allocate memory for is dropped the same way.
 * A read takes whole events only: a count smaller than a header is EINVAL even on an empty
 * queue, a count the next event does not fit is EINVAL when nothing was read before it, and a
 * failed copy leaves the event (header included) queued: EFAULT, or the bytes read before it.
 *
 * Fault queues. A fault queue (IOMMUFD_OBJ_FAULT) is where the I/O page faults of the HWPTs
 * allocated with IOMMU_HWPT_FAULT_ID_VALID go: such a HWPT holds the queue (users) and its
 * domain's iopf_handler is iommufd_fault_iopf_handler(). The core (io-pgfault.c) hands the
 * handler each complete fault group reported through an attach handle of that domain; the
 * handler appends it to `deliver` and signals the fd. The group stays pending in io-pgfault
 * until it is answered here, once:
 *  - read moves whole groups from the head of `deliver` to the response table, giving each a
 *    cookie (the lowest free index from 1, as an allocating xarray would) and writing one
 *    40-byte struct iommu_hwpt_pgfault per fault, all with that cookie;
 *  - write takes 8-byte {cookie, code} records, takes the group out of the table, answers it
 *    (SUCCESS or INVALID) through iopf_group_response() and frees it;
 *  - iommufd_auto_response_faults() answers INVALID to every group of an attach handle that a
 *    detach or replace retired, queued or read alike (invariant 26), after iopf_drain_dev() so
 *    that no reporter still holds the handle; device.c frees the handle afterwards;
 *  - destroying the queue answers INVALID to everything left in it.
 * A group is therefore in exactly one place at a time: on `deliver`, in the response table, or
 * answered and freed. Groups hold what their records need: the attach handle (and through it
 * the idev, whose ID is dev_id) stays alive until the group is answered.
 *
 * The fds are sub-fds (file.c) whose ops are ours, marked event: like every uiommu fd, one end
 * of a socketpair whose other end the serving process keeps, so they cross processes (fork,
 * SCM_RIGHTS, exec, pidfd_getfd(), or made for another process's ALLOC) and are read and
 * written there through the serving process (docs/processes.md). Readiness is a byte: while
 * the queue holds something, one byte waits in the fd's socket (iommufd_subfd_ready()), so
 * poll(), select() and epoll work on the fd in any process without interception: POLLIN while
 * something waits, and POLLOUT always, the fault fd's contract. A byte no longer meant leaves
 * with the call that emptied the queue: a reader or writer takes it out of its own fd; a
 * detach's auto-response has the serving process take it through an fd of its own or a
 * holder's (file.c, iommufd_file_ready_take()). Only where nobody can be reached does POLLIN
 * show on an empty queue until the next read, which answers 0 at once, as the kernel's does.
 * read(), write() and close() are ours (the preload layer
 * forwards them; uiommu_event_read()/_write() and uiommu_close() are the direct calls):
 *  - vEVENTQ read returns whole events only, as many as fit; a buffer too small for the next
 *    event is EINVAL, so is a count below a header's 8 bytes; an empty queue otherwise reads 0
 *    at once (never blocks), a non-zero offset (pread) ESPIPE; write is EINVAL (the kernel's
 *    file has no write);
 *  - fault read/write: a non-zero offset or a length that is not a multiple of the record is
 *    ESPIPE; see iommufd_fault_read() and iommufd_fault_write();
 *  - the last close anywhere releases the file: the queue forgets it (no more signals) and
 *    the fd's users reference on the object goes (IOMMU_DESTROY is EBUSY until then); the
 *    file's reference on the context goes with it, as the kernel's file keeps it open.
 * A read or write in progress holds the file, as the kernel's fdget(), so a close racing it
 * destroys nothing under it. The fd shows as a socket, not the kernel's
 * "anon_inode:[iommufd-pgfault]".
 *
 * Locking:
 *  - viommu->lock (the veventqs list) -> veventq->lock (the queue and its file's readiness)
 *    -> the file's holders_lock (file.c, a leaf: whom the readiness byte may go through);
 *  - idev->lock (a detach) -> fault->mutex (serialises read, write and auto-response; protects
 *    the response table) -> fault_param->lock (io-pgfault, via iopf_group_response()) ;
 *  - fault->mutex -> fault->lock (deliver, the file and its readiness, which the handler takes
 *    from the reporter's thread with no other lock held) -> the file's holders_lock.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"

#define VEVENTQ_DEPTH_MAX (1u << 19)
#define VEVENT_SEQ_MASK 0x7fffffffu

struct iommufd_vevent {
	struct iommufd_vevent *next;
	struct iommufd_vevent_header header;
	uint32_t data_len;
	unsigned char data[];
};

struct iommufd_veventq {
	struct iommufd_object obj;
	struct iommufd_viommu *viommu;     /* a users reference; constant */
	uint32_t type;                     /* constant */
	uint32_t depth;                    /* constant */
	struct uiommu_mutex lock;          /* protects everything below; then only holders_lock */
	struct iommufd_file *file;         /* the fd's file; NULL once its last close released it */
	struct iommufd_vevent *head;       /* queued events, oldest first */
	struct iommufd_vevent **tail;
	uint32_t num_events;               /* queued, the lost header not counted */
	uint32_t sequence;                 /* the next event's */
	bool lost_queued;                  /* then it is the last event, and ... */
	struct iommufd_vevent **lost_link; /* ... this link (the former tail) points to it */
	struct iommufd_veventq *next;      /* viommu->veventqs; viommu->lock */
	/* The LOST_EVENTS header, queued at most once; last: it ends in an empty flexible array. */
	struct iommufd_vevent lost;
};

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_veventq, obj);

struct iommufd_fault {
	struct iommufd_object obj;
	/* Serialises read, write and auto-response; protects resp, nr_resp. Order: after idev->lock. */
	struct uiommu_mutex mutex;
	struct iopf_group **resp;          /* read, not answered: resp[cookie - 1]; NULL = free */
	uint32_t nr_resp;                  /* slots in resp */
	struct uiommu_mutex lock;          /* protects deliver and file; then only holders_lock */
	struct iopf_group_list deliver;    /* handed over by the handler, not read yet */
	struct iommufd_file *file;         /* the fd's file; NULL once its last close released it */
};

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_fault, obj);

/* The fd is POLLIN exactly while the queue is not empty. Caller holds veventq->lock. */
static void iommufd_veventq_signal(struct iommufd_veventq *veventq)
{
	lockdep_assert_held(&veventq->lock);
	iommufd_subfd_ready(veventq->file, veventq->head != NULL);
}

/*
 * The last close of a queue's fd, anywhere: the queue stops signalling (before the file's
 * socket goes: file.c releases first) and the fd's users reference goes.
 */
static void iommufd_veventq_fops_release(void *priv)
{
	struct iommufd_veventq *veventq = priv;

	uiommu_mutex_lock(&veventq->lock);
	veventq->file = NULL;
	uiommu_mutex_unlock(&veventq->lock);
	/* Pairs with the reference taken before the fd was installed. */
	iommufd_object_unref_users(&veventq->obj);
}

static void iommufd_fault_fops_release(void *priv)
{
	struct iommufd_fault *fault = priv;

	uiommu_mutex_lock(&fault->lock);
	fault->file = NULL;
	uiommu_mutex_unlock(&fault->lock);
	iommufd_object_unref_users(&fault->obj);
}

static ssize_t iommufd_veventq_fops_read(void *priv, struct uiommu_mm *mm, void *buf,
					 size_t count, off_t off);
static ssize_t iommufd_fault_fops_read(void *priv, struct uiommu_mm *mm, void *buf,
				       size_t count, off_t off);
static ssize_t iommufd_fault_fops_write(void *priv, struct uiommu_mm *mm, const void *buf,
					size_t count, off_t off);

/* A vEVENTQ's file has no write: EINVAL, as the kernel's. */
static const struct iommufd_subfd_ops iommufd_veventq_fops = {
	.release = iommufd_veventq_fops_release,
	.read = iommufd_veventq_fops_read,
	.event = true,
	.name = "anon_inode:[iommufd-viommu-event]",
};

static const struct iommufd_subfd_ops iommufd_fault_fops = {
	.release = iommufd_fault_fops_release,
	.read = iommufd_fault_fops_read,
	.write = iommufd_fault_fops_write,
	.event = true,
	.name = "anon_inode:[iommufd-pgfault]",
};

void iommufd_veventq_destroy(struct iommufd_object *obj)
{
	struct iommufd_veventq *veventq = container_of(obj, struct iommufd_veventq, obj);
	struct iommufd_viommu *viommu = veventq->viommu;
	struct iommufd_veventq **pos;
	struct iommufd_vevent *ev;

	uiommu_mutex_lock(&viommu->lock);
	for (pos = &viommu->veventqs; *pos; pos = &(*pos)->next) {
		if (*pos == veventq) {
			*pos = veventq->next;
			break;
		}
	}
	uiommu_mutex_unlock(&viommu->lock);
	while ((ev = veventq->head)) {
		veventq->head = ev->next;
		if (ev != &veventq->lost)
			uiommu_free(ev);
	}
	uiommu_mutex_destroy(&veventq->lock);
	/* Pairs with the reference taken in iommufd_veventq_alloc(). */
	iommufd_object_unref_users(&viommu->obj);
}

static struct iommufd_veventq *iommufd_viommu_find_veventq(struct iommufd_viommu *viommu,
							   uint32_t type)
{
	struct iommufd_veventq *veventq;

	lockdep_assert_held(&viommu->lock);
	for (veventq = viommu->veventqs; veventq; veventq = veventq->next)
		if (veventq->type == type)
			return veventq;
	return NULL;
}

/**
 * iommufd_veventq_report() - a driver's event for @viommu's queue of @type
 * Return: 0 (queued, or counted as lost), -EOPNOTSUPP (no such queue), -ENOMEM (no memory for
 * the event: it counts as lost, as if the queue were full).
 */
int iommufd_veventq_report(struct iommufd_viommu *viommu, uint32_t type, const void *data,
			   uint32_t len)
{
	struct iommufd_veventq *veventq;
	struct iommufd_vevent *ev;
	int rc = 0;

	uiommu_mutex_lock(&viommu->lock);
	veventq = iommufd_viommu_find_veventq(viommu, type);
	if (!veventq) {
		rc = -EOPNOTSUPP;
		goto out_unlock_viommu;
	}
	uiommu_mutex_lock(&veventq->lock);
	ev = NULL;
	if (veventq->num_events < veventq->depth) {
		ev = uiommu_zalloc(sizeof(*ev) + len);
		if (!ev)
			rc = -ENOMEM; /* dropped: the lost header says so, as when full */
	}
	if (ev) {
		ev->data_len = len;
		memcpy(ev->data, data, len);
		veventq->num_events++;
	} else {
		ev = &veventq->lost;
	}
	/* The lost header stands only at the tail: whatever comes next takes its place. */
	if (veventq->lost_queued) {
		*veventq->lost_link = NULL;
		veventq->tail = veventq->lost_link;
		veventq->lost_queued = false;
	}
	if (ev == &veventq->lost) {
		veventq->lost_link = veventq->tail;
		veventq->lost_queued = true;
	}
	ev->next = NULL;
	*veventq->tail = ev;
	veventq->tail = &ev->next;
	ev->header.sequence = veventq->sequence;
	veventq->sequence = (veventq->sequence + 1) & VEVENT_SEQ_MASK;
	iommufd_veventq_signal(veventq);
	uiommu_mutex_unlock(&veventq->lock);
out_unlock_viommu:
	uiommu_mutex_unlock(&viommu->lock);
	return rc;
}

int iommufd_veventq_alloc(struct iommufd_ucmd *ucmd)
{
	struct iommu_veventq_alloc *cmd = ucmd->cmd;
	struct iommufd_veventq *veventq;
	struct iommufd_viommu *viommu;
	struct iommufd_object *obj;
	struct iommufd_file *file;
	int fd, rc;

	if (cmd->flags || cmd->__reserved || cmd->type == IOMMU_VEVENTQ_TYPE_DEFAULT)
		return -EOPNOTSUPP;
	if (!cmd->veventq_depth || cmd->veventq_depth > VEVENTQ_DEPTH_MAX)
		return -EINVAL;
	obj = iommufd_get_object(ucmd->ictx, cmd->viommu_id, IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	viommu = container_of(obj, struct iommufd_viommu, obj);

	/*
	 * A queue of the type already there: EEXIST before anything is made or written back, as
	 * the kernel answers it. Checked again where the queue is published, for a racing alloc.
	 */
	uiommu_mutex_lock(&viommu->lock);
	rc = iommufd_viommu_find_veventq(viommu, cmd->type) ? -EEXIST : 0;
	uiommu_mutex_unlock(&viommu->lock);
	if (rc)
		goto out_put_viommu;

	veventq = iommufd_object_alloc(ucmd->ictx, veventq, IOMMUFD_OBJ_VEVENTQ);
	if (IS_ERR(veventq)) {
		rc = PTR_ERR(veventq);
		goto out_put_viommu;
	}
	veventq->viommu = viommu;
	veventq->type = cmd->type;
	veventq->depth = cmd->veventq_depth;
	veventq->tail = &veventq->head;
	veventq->lost.header.flags = IOMMU_VEVENTQ_FLAG_LOST_EVENTS;
	uiommu_mutex_init(&veventq->lock);

	file = iommufd_subfd_alloc(ucmd->ictx, &iommufd_veventq_fops, veventq, &fd);
	if (IS_ERR(file)) {
		rc = PTR_ERR(file);
		goto err_abort;
	}
	veventq->file = file;
	cmd->out_veventq_id = iommufd_object_id(&veventq->obj);
	cmd->out_veventq_fd = fd;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_close_fd;

	uiommu_mutex_lock(&viommu->lock);
	if (iommufd_viommu_find_veventq(viommu, cmd->type)) {
		uiommu_mutex_unlock(&viommu->lock);
		rc = -EEXIST;
		goto err_close_fd;
	}
	veventq->next = viommu->veventqs;
	viommu->veventqs = veventq;
	/* Pairs with the put in iommufd_veventq_destroy(). */
	iommufd_object_ref_users(&viommu->obj);
	uiommu_mutex_unlock(&viommu->lock);

	/* The fd's; pairs with the put in iommufd_veventq_fops_release(). */
	iommufd_object_ref_users(&veventq->obj);
	iommufd_subfd_install(file, fd);
	iommufd_object_finalize(ucmd->ictx, &veventq->obj);
	goto out_put_viommu;

err_close_fd:
	iommufd_subfd_abort(file, fd);
err_abort:
	uiommu_mutex_destroy(&veventq->lock);
	iommufd_object_abort(ucmd->ictx, &veventq->obj);
out_put_viommu:
	iommufd_put_object(ucmd->ictx, &viommu->obj);
	return rc;
}

/* ---- the fd ---------------------------------------------------------------------------------- */

/* Is @fd a vEVENTQ's or a fault queue's fd, of this process's files or another's? */
UIOMMU_EXPORT bool uiommu_event_is_fd(int fd)
{
	return iommufd_subfd_is_event(fd);
}

/* Whole events into [@buf, @buf + @count). Caller holds veventq->lock. */
static ssize_t iommufd_veventq_read(struct iommufd_veventq *veventq, struct uiommu_mm *mm,
				    char *buf, size_t count)
{
	struct iommufd_vevent *ev;
	size_t done = 0;
	int rc = 0;

	lockdep_assert_held(&veventq->lock);
	/* A header is the least a read can take, whether anything waits or not. */
	if (count < sizeof(ev->header))
		return -EINVAL;
	while ((ev = veventq->head)) {
		size_t len = sizeof(ev->header) + ev->data_len;

		if (len > count - done) {
			if (!done)
				rc = -EINVAL;
			break;
		}
		rc = uiommu_copy_to_user(mm, (uint64_t)(uintptr_t)buf + done, &ev->header,
					 sizeof(ev->header));
		if (!rc && ev->data_len)
			rc = uiommu_copy_to_user(mm,
						 (uint64_t)(uintptr_t)buf + done + sizeof(ev->header),
						 ev->data, ev->data_len);
		if (rc)
			break;
		done += len;
		veventq->head = ev->next;
		if (!veventq->head)
			veventq->tail = &veventq->head;
		if (ev == &veventq->lost) {
			veventq->lost_queued = false;
		} else {
			veventq->num_events--;
			uiommu_free(ev);
		}
	}
	iommufd_veventq_signal(veventq);
	return done ? (ssize_t)done : rc;
}

static ssize_t iommufd_veventq_fops_read(void *priv, struct uiommu_mm *mm, void *buf,
					 size_t count, off_t off)
{
	struct iommufd_veventq *veventq = priv;
	ssize_t rc;

	if (off)
		return -ESPIPE;
	uiommu_mutex_lock(&veventq->lock);
	rc = iommufd_veventq_read(veventq, mm, buf, count);
	uiommu_mutex_unlock(&veventq->lock);
	return rc;
}

/*
 * The direct calls on an event fd: EBADF for any other fd; else what read(2) and write(2) of
 * it do (file.c: the file's ops, here or at the process that serves it).
 */
UIOMMU_EXPORT ssize_t uiommu_event_pread(int fd, void *buf, size_t count, off_t offset)
{
	if (!uiommu_event_is_fd(fd)) {
		errno = EBADF;
		return -1;
	}
	return uiommu_pread(fd, buf, count, offset);
}

UIOMMU_EXPORT ssize_t uiommu_event_read(int fd, void *buf, size_t count)
{
	return uiommu_event_pread(fd, buf, count, 0);
}

UIOMMU_EXPORT ssize_t uiommu_event_pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	if (!uiommu_event_is_fd(fd)) {
		errno = EBADF;
		return -1;
	}
	return uiommu_pwrite(fd, buf, count, offset);
}

UIOMMU_EXPORT ssize_t uiommu_event_write(int fd, const void *buf, size_t count)
{
	return uiommu_event_pwrite(fd, buf, count, 0);
}

/* ---- fault queues ---------------------------------------------------------------------------- */

/* Answers @group with @code and frees it: the end of every group we were handed. */
static void iommufd_fault_group_answer(struct iopf_group *group,
				       enum iommu_page_response_code code)
{
	iopf_group_response(group, code);
	iopf_free_group(group);
}

/*
 * Takes the group of @cookie out of the response table, or NULL when no read group has it.
 * Caller holds fault->mutex.
 */
static struct iopf_group *iommufd_fault_cookie_take(struct iommufd_fault *fault, uint32_t cookie)
{
	struct iopf_group *group;

	lockdep_assert_held(&fault->mutex);
	if (!cookie || cookie > fault->nr_resp)
		return NULL;
	group = fault->resp[cookie - 1];
	fault->resp[cookie - 1] = NULL;
	return group;
}

/*
 * Puts @group in the response table under the lowest free cookie (from 1), growing the table
 * when it is full. Caller holds fault->mutex. Return: 0 with group->cookie set, -ENOMEM.
 */
static int iommufd_fault_cookie_alloc(struct iommufd_fault *fault, struct iopf_group *group)
{
	struct iopf_group **resp;
	uint32_t i, nr;

	lockdep_assert_held(&fault->mutex);
	for (i = 0; i != fault->nr_resp; i++)
		if (!fault->resp[i])
			goto found;
	if (fault->nr_resp >= UINT32_MAX / 2)
		return -ENOMEM; /* the cookie space (u32) is exhausted */
	nr = fault->nr_resp ? fault->nr_resp * 2 : 16;
	resp = uiommu_realloc_array(fault->resp, nr, sizeof(*resp));
	if (!resp)
		return -ENOMEM;
	memset(resp + fault->nr_resp, 0, (nr - fault->nr_resp) * sizeof(*resp));
	fault->resp = resp;
	fault->nr_resp = nr;
found:
	fault->resp[i] = group;
	group->cookie = i + 1;
	return 0;
}

/*
 * A read that failed leaves no trace: a table it grew for nothing goes again when it holds no
 * group. Caller holds fault->mutex.
 */
static void iommufd_fault_resp_trim(struct iommufd_fault *fault)
{
	uint32_t i;

	lockdep_assert_held(&fault->mutex);
	for (i = 0; i != fault->nr_resp; i++)
		if (fault->resp[i])
			return;
	uiommu_free(fault->resp);
	fault->resp = NULL;
	fault->nr_resp = 0;
}

/**
 * iommufd_fault_iopf_handler() - the iopf_handler of a fault-capable HWPT's domain
 *
 * Runs in the reporter's thread with no lock held (io-pgfault.c). The group goes to the tail of
 * its fault queue's deliver list and the fd becomes readable; it stays pending in io-pgfault
 * until read, answered and freed here. The queue outlives the call: the HWPT holds it, and a
 * detach drains reports (iopf_drain_dev()) before the HWPT can go.
 * Return: 0, always: the group is ours now.
 */
int iommufd_fault_iopf_handler(struct iopf_group *group)
{
	struct iommufd_fault *fault = group->attach_handle->domain->fault_data;
	bool was_empty;

	uiommu_mutex_lock(&fault->lock);
	was_empty = TAILQ_EMPTY(&fault->deliver);
	TAILQ_INSERT_TAIL(&fault->deliver, group, node);
	if (was_empty)
		iommufd_subfd_ready(fault->file, true);
	uiommu_mutex_unlock(&fault->lock);
	return 0;
}

/*
 * The retired handle's groups, answered INVALID (invariant 26); see iommufd_private.h. The
 * drain first: a reporter that looked the old handle up before the core retired it may still
 * be on its way to the handler, and its group must be on deliver before we look.
 */
void iommufd_auto_response_faults(struct iommufd_hw_pagetable *hwpt,
				  struct iommufd_attach_handle *handle)
{
	struct iopf_group_list answer = TAILQ_HEAD_INITIALIZER(answer);
	struct iommufd_fault *fault = hwpt->fault;
	struct iopf_group *group, *next;
	uint32_t i;

	if (!fault || !handle)
		return;
	iopf_drain_dev(handle->idev->dev);

	uiommu_mutex_lock(&fault->mutex);
	uiommu_mutex_lock(&fault->lock);
	for (group = TAILQ_FIRST(&fault->deliver); group; group = next) {
		next = TAILQ_NEXT(group, node);
		if (group->attach_handle != &handle->handle)
			continue;
		TAILQ_REMOVE(&fault->deliver, group, node);
		TAILQ_INSERT_TAIL(&answer, group, node);
	}
	iommufd_subfd_ready(fault->file, !TAILQ_EMPTY(&fault->deliver));
	uiommu_mutex_unlock(&fault->lock);

	/* Outside fault->lock: an answer takes io-pgfault's locks and calls the driver. */
	while ((group = TAILQ_FIRST(&answer))) {
		TAILQ_REMOVE(&answer, group, node);
		iommufd_fault_group_answer(group, IOMMU_PAGE_RESP_INVALID);
	}
	for (i = 0; i != fault->nr_resp; i++) {
		group = fault->resp[i];
		if (!group || group->attach_handle != &handle->handle)
			continue;
		fault->resp[i] = NULL; /* the cookie is dead before the answer goes */
		iommufd_fault_group_answer(group, IOMMU_PAGE_RESP_INVALID);
	}
	uiommu_mutex_unlock(&fault->mutex);
}

/*
 * Nothing else holds the queue any more (users went from 1 to 0): no HWPT, no fd, no call in
 * progress. Whatever is left is answered INVALID; normally nothing is, since every detach
 * answered its handle's groups already.
 */
void iommufd_fault_destroy(struct iommufd_object *obj)
{
	struct iommufd_fault *fault = container_of(obj, struct iommufd_fault, obj);
	struct iopf_group *group;
	uint32_t i;

	while ((group = TAILQ_FIRST(&fault->deliver))) {
		TAILQ_REMOVE(&fault->deliver, group, node);
		iommufd_fault_group_answer(group, IOMMU_PAGE_RESP_INVALID);
	}
	for (i = 0; i != fault->nr_resp; i++)
		if (fault->resp[i])
			iommufd_fault_group_answer(fault->resp[i], IOMMU_PAGE_RESP_INVALID);
	uiommu_free(fault->resp);
	uiommu_mutex_destroy(&fault->lock);
	uiommu_mutex_destroy(&fault->mutex);
}

/* IOMMU_FAULT_QUEUE_ALLOC: a fault queue and its fd. */
int iommufd_fault_alloc(struct iommufd_ucmd *ucmd)
{
	struct iommu_fault_alloc *cmd = ucmd->cmd;
	struct iommufd_fault *fault;
	struct iommufd_file *file;
	int fd, rc;

	if (cmd->flags)
		return -EOPNOTSUPP;
	fault = iommufd_object_alloc(ucmd->ictx, fault, IOMMUFD_OBJ_FAULT);
	if (IS_ERR(fault))
		return PTR_ERR(fault);
	uiommu_mutex_init(&fault->mutex);
	uiommu_mutex_init(&fault->lock);
	TAILQ_INIT(&fault->deliver);

	file = iommufd_subfd_alloc(ucmd->ictx, &iommufd_fault_fops, fault, &fd);
	if (IS_ERR(file)) {
		rc = PTR_ERR(file);
		goto err_abort;
	}
	fault->file = file;
	cmd->out_fault_id = iommufd_object_id(&fault->obj);
	cmd->out_fault_fd = fd;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_close_fd;

	/* The fd's; pairs with the put in iommufd_fault_fops_release(). */
	iommufd_object_ref_users(&fault->obj);
	iommufd_subfd_install(file, fd);
	iommufd_object_finalize(ucmd->ictx, &fault->obj);
	return 0;

err_close_fd:
	iommufd_subfd_abort(file, fd);
err_abort:
	uiommu_mutex_destroy(&fault->lock);
	uiommu_mutex_destroy(&fault->mutex);
	iommufd_object_abort(ucmd->ictx, &fault->obj);
	return rc;
}

/**
 * iommufd_hwpt_set_fault() - HWPT_ALLOC's fault_id: @hwpt's faults go to fault queue @fault_id
 *
 * Called before the HWPT is published, so no attach can see it half set. The HWPT holds the
 * queue (users: IOMMU_DESTROY of the queue is EBUSY) until iommufd_hwpt_put_fault().
 * Return: 0, or -ENOENT when @fault_id names no fault queue.
 */
int iommufd_hwpt_set_fault(struct iommufd_ctx *ictx, struct iommufd_hw_pagetable *hwpt,
			   uint32_t fault_id)
{
	struct iommufd_object *obj = iommufd_get_object(ictx, fault_id, IOMMUFD_OBJ_FAULT);
	struct iommufd_fault *fault;

	if (IS_ERR(obj))
		return PTR_ERR(obj);
	fault = container_of(obj, struct iommufd_fault, obj);
	/* Pairs with iommufd_hwpt_put_fault() in the HWPT's destroy. */
	iommufd_object_ref_users(&fault->obj);
	hwpt->fault = fault;
	hwpt->domain->fault_data = fault;
	hwpt->domain->iopf_handler = iommufd_fault_iopf_handler;
	iommufd_put_object(ictx, obj);
	return 0;
}

/* The HWPT's destroy: it stops holding its fault queue (every attachment is gone). */
void iommufd_hwpt_put_fault(struct iommufd_hw_pagetable *hwpt)
{
	if (hwpt->fault)
		iommufd_object_unref_users(&hwpt->fault->obj);
}

/* One group's records (one per fault, all with its cookie) at @uaddr. */
static int iommufd_fault_copy_group(struct uiommu_mm *mm, uint64_t uaddr,
				    struct iopf_group *group)
{
	struct iommufd_device *idev = to_iommufd_handle(group->attach_handle)->idev;
	struct iommu_hwpt_pgfault rec;
	struct iopf_fault *f;
	int rc;

	for (f = group->faults; f; f = f->next) {
		const struct iommu_fault_page_request *prm = &f->fault.prm;

		memset(&rec, 0, sizeof(rec));
		rec.flags = prm->flags;
		rec.dev_id = iommufd_object_id(&idev->obj);
		rec.pasid = prm->pasid;
		rec.grpid = prm->grpid;
		rec.perm = prm->perm;
		rec.addr = prm->addr;
		rec.length = 0; /* no length hint from the requests */
		rec.cookie = group->cookie;
		rc = uiommu_copy_to_user(mm, uaddr, &rec, sizeof(rec));
		if (rc)
			return rc;
		uaddr += sizeof(rec);
	}
	return 0;
}

/*
 * read(2) of a fault fd: whole groups from the head of deliver while they fit in @count, each
 * given a cookie. A group that does not fit, or whose cookie or copy fails, goes back to the
 * head and ends the read; an error (EINVAL for the first group not fitting, even in a count of
 * 0; ENOMEM; EFAULT) is reported only when nothing was read before it. An empty queue reads 0
 * at once.
 */
static ssize_t iommufd_fault_read(struct iommufd_fault *fault, struct uiommu_mm *mm, char *buf,
				  size_t count)
{
	const size_t rec_size = sizeof(struct iommu_hwpt_pgfault);
	struct iopf_group *group;
	size_t done = 0, len;
	int rc = 0;

	if (count % rec_size)
		return -ESPIPE;
	uiommu_mutex_lock(&fault->mutex);
	for (;;) {
		uiommu_mutex_lock(&fault->lock);
		group = TAILQ_FIRST(&fault->deliver);
		if (group)
			TAILQ_REMOVE(&fault->deliver, group, node);
		uiommu_mutex_unlock(&fault->lock);
		if (!group)
			break;
		len = (size_t)group->fault_count * rec_size;
		if (len > count - done) {
			/* Never part of a group; a count that fits not even the first is wrong. */
			if (!done)
				rc = -EINVAL;
			goto restore;
		}
		rc = iommufd_fault_cookie_alloc(fault, group);
		if (rc)
			goto restore;
		rc = iommufd_fault_copy_group(mm, (uint64_t)(uintptr_t)buf + done, group);
		if (rc) {
			/* The records already copied do not count: whole groups only. */
			iommufd_fault_cookie_take(fault, group->cookie);
			goto restore;
		}
		done += len;
		continue;
restore:
		/* Back at the head: the handler only appends, so it is still the oldest. */
		uiommu_mutex_lock(&fault->lock);
		TAILQ_INSERT_HEAD(&fault->deliver, group, node);
		uiommu_mutex_unlock(&fault->lock);
		break;
	}
	if (!done && rc)
		iommufd_fault_resp_trim(fault);
	uiommu_mutex_lock(&fault->lock);
	iommufd_subfd_ready(fault->file, !TAILQ_EMPTY(&fault->deliver));
	uiommu_mutex_unlock(&fault->lock);
	uiommu_mutex_unlock(&fault->mutex);
	return done ? (ssize_t)done : rc;
}

/*
 * write(2) of a fault fd: {cookie, code} records, each answering the read group of that cookie
 * and freeing it. A code other than SUCCESS or INVALID, or a cookie of no read group, is
 * EINVAL and ends the write; the answers before it stand, and their bytes are returned.
 */
static ssize_t iommufd_fault_write(struct iommufd_fault *fault, struct uiommu_mm *mm,
				   const char *buf, size_t count)
{
	const size_t rec_size = sizeof(struct iommu_hwpt_page_response);
	struct iommu_hwpt_page_response resp;
	struct iopf_group *group;
	size_t done = 0;
	int rc = 0;

	_Static_assert((int)IOMMUFD_PAGE_RESP_SUCCESS == (int)IOMMU_PAGE_RESP_SUCCESS &&
			       (int)IOMMUFD_PAGE_RESP_INVALID == (int)IOMMU_PAGE_RESP_INVALID,
		       "the uAPI codes are the core's");
	if (count % rec_size)
		return -ESPIPE;
	uiommu_mutex_lock(&fault->mutex);
	while (done < count) {
		rc = uiommu_copy_from_user(mm, &resp, (uint64_t)(uintptr_t)buf + done, rec_size);
		if (rc)
			break;
		if (resp.code != IOMMUFD_PAGE_RESP_SUCCESS &&
		    resp.code != IOMMUFD_PAGE_RESP_INVALID) {
			rc = -EINVAL;
			break;
		}
		group = iommufd_fault_cookie_take(fault, resp.cookie);
		if (!group) {
			rc = -EINVAL;
			break;
		}
		iommufd_fault_group_answer(group, (enum iommu_page_response_code)resp.code);
		done += rec_size;
	}
	uiommu_mutex_unlock(&fault->mutex);
	return done ? (ssize_t)done : rc;
}

static ssize_t iommufd_fault_fops_read(void *priv, struct uiommu_mm *mm, void *buf,
				       size_t count, off_t off)
{
	if (off || count % sizeof(struct iommu_hwpt_pgfault))
		return -ESPIPE;
	return iommufd_fault_read(priv, mm, buf, count);
}

static ssize_t iommufd_fault_fops_write(void *priv, struct uiommu_mm *mm, const void *buf,
					size_t count, off_t off)
{
	if (off || count % sizeof(struct iommu_hwpt_page_response))
		return -ESPIPE;
	return iommufd_fault_write(priv, mm, buf, count);
}
