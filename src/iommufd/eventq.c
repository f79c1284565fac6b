// SPDX-License-Identifier: MIT
/*
 * vEVENTQs: IOMMU_VEVENTQ_ALLOC, the queue, and its fd.
 *
 * A vEVENTQ (IOMMUFD_OBJ_VEVENTQ) carries events a vIOMMU's hardware raises about the guest's
 * devices (for the selftest mock, TRIGGER_VEVENT's {virt_id}) to the VMM, which reads them
 * from an fd that VEVENTQ_ALLOC returns beside the object ID. One queue per type per vIOMMU
 * (EEXIST); the queue holds its vIOMMU with a users reference.
 *
 * The queue. Each event is an 8-byte struct iommufd_vevent_header {flags, sequence} followed
 * by the driver's payload. Every event offered gets the next sequence number (0 .. INT_MAX, then
 * 0 again), whether it is queued or not. Once veventq_depth events wait, new ones are dropped and
 * a single header with IOMMU_VEVENTQ_FLAG_LOST_EVENTS and no payload stands at the tail instead,
 * carrying the sequence of the last event dropped; so a reader sees either the flag or a gap.
 *
 * The fd is a real fd of the process: an eventfd we own, non-blocking, whose counter is 1
 * exactly while the queue holds something. poll(), select() and epoll therefore work on it
 * without any interception (POLLIN while events wait). read() and close() are ours (the
 * preload layer forwards them, and uiommu_event_read()/uiommu_close() are the direct calls):
 *  - read returns whole events only, as many as fit; a buffer too small for the next event is
 *    EINVAL, an empty queue reads 0 at once (never blocks), a non-zero offset (pread) ESPIPE;
 *  - close drops the fd's users reference on the object (IOMMU_DESTROY is EBUSY until then)
 *    and its reference on the context, which the fd keeps open like the kernel's file does.
 * The fd -> queue table is a short list: event fds are few.
 *
 * Locking: event_fds_lock (the fd table) -> veventq->lock (the queue and the eventfd counter).
 * viommu->lock (the veventqs list) -> veventq->lock, for reports.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"
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
	int fd;                            /* the eventfd; ours until the user closes it */
	struct uiommu_mutex lock;          /* protects everything below */
	struct iommufd_vevent *head;       /* queued events, oldest first */
	struct iommufd_vevent **tail;
	uint32_t num_events;               /* queued, the lost header not counted */
	uint32_t sequence;                 /* the next event's */
	struct iommufd_vevent lost;        /* the LOST_EVENTS header, queued at most once */
	bool lost_queued;
	struct iommufd_veventq *next;      /* viommu->veventqs; viommu->lock */
};

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_veventq, obj);

struct event_fd {
	int fd;
	struct iommufd_veventq *veventq; /* a users reference */
	struct iommufd_ctx *ictx;        /* a context reference (iommufd_ctx_file_get()) */
	struct event_fd *next;
};

static pthread_mutex_t event_fds_lock = PTHREAD_MUTEX_INITIALIZER; /* protects event_fds */
static struct event_fd *event_fds;
static atomic_int event_fds_nr; /* a lock-free "none at all" for every close() of the process */

/* Sets the eventfd counter to (queue not empty). Caller holds veventq->lock. */
static void iommufd_veventq_signal(struct iommufd_veventq *veventq)
{
	uint64_t v = 1;

	lockdep_assert_held(&veventq->lock);
	if (veventq->fd < 0)
		return; /* the user closed it */
	if (veventq->head) {
		if (syscall(SYS_write, veventq->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			WARN_ON(1);
		/* Keep it at 1: drain the extra, if any, and put one back. */
		if (syscall(SYS_read, veventq->fd, &v, sizeof(v)) == sizeof(v)) {
			v = 1;
			WARN_ON(syscall(SYS_write, veventq->fd, &v, sizeof(v)) != sizeof(v));
		}
	} else {
		syscall(SYS_read, veventq->fd, &v, sizeof(v)); /* EAGAIN when already 0 */
	}
}

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
 * Return: 0 (queued, or counted as lost), -EOPNOTSUPP (no such queue), -ENOMEM.
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
	if (veventq->num_events >= veventq->depth) {
		ev = &veventq->lost;
		if (!veventq->lost_queued) {
			veventq->lost_queued = true;
			ev->next = NULL;
			*veventq->tail = ev;
			veventq->tail = &ev->next;
		}
	} else {
		ev = uiommu_zalloc(sizeof(*ev) + len);
		if (!ev) {
			rc = -ENOMEM;
			goto out_unlock_veventq;
		}
		ev->data_len = len;
		memcpy(ev->data, data, len);
		*veventq->tail = ev;
		veventq->tail = &ev->next;
		veventq->num_events++;
	}
	ev->header.sequence = veventq->sequence;
	veventq->sequence = (veventq->sequence + 1) & VEVENT_SEQ_MASK;
	iommufd_veventq_signal(veventq);
out_unlock_veventq:
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
	struct event_fd *efd;
	int fd, rc;

	if (cmd->flags || cmd->__reserved || cmd->type == IOMMU_VEVENTQ_TYPE_DEFAULT)
		return -EOPNOTSUPP;
	if (!cmd->veventq_depth || cmd->veventq_depth > VEVENTQ_DEPTH_MAX)
		return -EINVAL;
	obj = iommufd_get_object(ucmd->ictx, cmd->viommu_id, IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	viommu = container_of(obj, struct iommufd_viommu, obj);

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

	efd = uiommu_zalloc(sizeof(*efd));
	if (!efd) {
		rc = -ENOMEM;
		goto err_abort;
	}
	fd = uiommu_should_fail() ? -1 : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0) {
		rc = -EMFILE;
		goto err_free_efd;
	}
	veventq->fd = fd;
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

	/* The fd's references, dropped by iommufd_veventq_fd_close(). */
	efd->fd = fd;
	efd->veventq = veventq;
	efd->ictx = ucmd->ictx;
	iommufd_object_ref_users(&veventq->obj);
	iommufd_ctx_file_get(ucmd->ictx);
	pthread_mutex_lock(&event_fds_lock);
	efd->next = event_fds;
	event_fds = efd;
	atomic_fetch_add(&event_fds_nr, 1);
	pthread_mutex_unlock(&event_fds_lock);
	iommufd_object_finalize(ucmd->ictx, &veventq->obj);
	goto out_put_viommu;

err_close_fd:
	syscall(SYS_close, fd);
err_free_efd:
	uiommu_free(efd);
err_abort:
	uiommu_mutex_destroy(&veventq->lock);
	iommufd_object_abort(ucmd->ictx, &veventq->obj);
out_put_viommu:
	iommufd_put_object(ucmd->ictx, &viommu->obj);
	return rc;
}

/* ---- the fd ---------------------------------------------------------------------------------- */

/* The entry of @fd. Caller holds event_fds_lock. */
static struct event_fd **event_fd_find(int fd)
{
	struct event_fd **pos;

	for (pos = &event_fds; *pos; pos = &(*pos)->next)
		if ((*pos)->fd == fd)
			return pos;
	return NULL;
}

UIOMMU_EXPORT bool uiommu_event_is_fd(int fd)
{
	bool found;

	if (!atomic_load_explicit(&event_fds_nr, memory_order_relaxed))
		return false;
	pthread_mutex_lock(&event_fds_lock);
	found = event_fd_find(fd) != NULL;
	pthread_mutex_unlock(&event_fds_lock);
	return found;
}

/* Whole events into [@buf, @buf + @count). Caller holds veventq->lock. */
static ssize_t iommufd_veventq_read(struct iommufd_veventq *veventq, struct uiommu_mm *mm,
				    char *buf, size_t count)
{
	struct iommufd_vevent *ev;
	size_t done = 0;
	int rc = 0;

	lockdep_assert_held(&veventq->lock);
	while ((ev = veventq->head)) {
		size_t len = sizeof(ev->header) + ev->data_len;

		if (len > count - done) {
			if (!done)
				rc = -EINVAL;
			break;
		}
		rc = uiommu_copy_to_user(mm, (uint64_t)(uintptr_t)(buf + done), &ev->header,
					 sizeof(ev->header));
		if (!rc && ev->data_len)
			rc = uiommu_copy_to_user(mm,
						 (uint64_t)(uintptr_t)(buf + done + sizeof(ev->header)),
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

UIOMMU_EXPORT ssize_t uiommu_event_pread(int fd, void *buf, size_t count, off_t offset)
{
	struct event_fd **pos;
	ssize_t rc;

	pthread_mutex_lock(&event_fds_lock);
	pos = event_fd_find(fd);
	if (!pos) {
		rc = -EBADF;
	} else if (offset) {
		rc = -ESPIPE;
	} else {
		struct iommufd_veventq *veventq = (*pos)->veventq;

		uiommu_mutex_lock(&veventq->lock);
		rc = iommufd_veventq_read(veventq, (*pos)->ictx->mm, buf, count);
		uiommu_mutex_unlock(&veventq->lock);
	}
	pthread_mutex_unlock(&event_fds_lock);
	if (rc < 0) {
		errno = (int)-rc;
		return -1;
	}
	return rc;
}

UIOMMU_EXPORT ssize_t uiommu_event_read(int fd, void *buf, size_t count)
{
	return uiommu_event_pread(fd, buf, count, 0);
}

/**
 * iommufd_event_fd_close() - close an event fd of ours: the fd goes, then its references
 * Return: 0, or -EBADF when @fd is not one.
 */
int iommufd_event_fd_close(int fd)
{
	struct event_fd **pos, *efd;

	pthread_mutex_lock(&event_fds_lock);
	pos = event_fd_find(fd);
	if (!pos) {
		pthread_mutex_unlock(&event_fds_lock);
		return -EBADF;
	}
	efd = *pos;
	*pos = efd->next;
	atomic_fetch_sub(&event_fds_nr, 1);
	uiommu_mutex_lock(&efd->veventq->lock);
	efd->veventq->fd = -1; /* reports stop signalling a number that may be reused */
	uiommu_mutex_unlock(&efd->veventq->lock);
	syscall(SYS_close, fd);
	pthread_mutex_unlock(&event_fds_lock);
	/* Pairs with the references taken in iommufd_veventq_alloc(). */
	iommufd_object_unref_users(&efd->veventq->obj);
	iommufd_ctx_file_put(efd->ictx);
	uiommu_free(efd);
	return 0;
}
