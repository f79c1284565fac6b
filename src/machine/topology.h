/* SPDX-License-Identifier: MIT */
/*
 * The emulated machine: IOMMU instances and the PCI functions behind them, described by a JSON
 * topology (docs/topology.md) or by the embedded default, instantiated into the IOMMU core.
 *
 * One topology per process. topology_load() registers the instances (mock driver), allocates a
 * struct device per function, probes the present ones and binds the emulated DMA-API driver
 * where the topology says so; topology_unload() undoes all of it. In between, devices can be
 * unplugged and plugged again (the struct device stays, so pointers from topology_find_device()
 * remain valid until topology_unload()).
 *
 * Lock order: topology_lock -> iommu_probe_device_lock -> group->mutex -> driver locks.
 * Every function here takes topology_lock; none may be called from a topology_for_each_*()
 * callback (which runs with it held) or with any core lock held.
 */
#ifndef UIOMMU_MACHINE_TOPOLOGY_H
#define UIOMMU_MACHINE_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* The environment variable naming a topology file when topology_load() gets NULL. */
#define TOPOLOGY_ENV "UIOMMU_TOPOLOGY"

/* The drivers of the machine's PCI bus, as /sys/bus/pci/drivers/ names them. */
#define TOPOLOGY_DMA_DRIVER "uiommu-dma"
#define TOPOLOGY_VFIO_DRIVER "vfio-pci"
#define TOPOLOGY_DRIVER_NAME_MAX 32

/* What the topology says about a device, and its state now. */
struct topology_device_info {
	struct device *dev;
	const char *bdf;          /* == dev->name */
	const char *iommu;        /* the instance's name */
	bool present;             /* probed (plugged) now */
	bool bound;               /* the emulated DMA-API driver is bound now */
	bool bind_on_plug;        /* the topology's "bound": bind at boot and at every plug */
	bool vfio;                /* vfio-pci is bound now */
	bool vfio_on_plug;        /* the topology gives it to vfio-pci at boot and at every plug */
	int vfio_index;           /* bound to vfio-pci: N of vfioN; else -1 */
	int vfio_group_minor;     /* bound to vfio-pci: its group node's minor; else -1 */
	unsigned int vfio_users;  /* VFIO's open files of it (topology_vfio_get()) */
	char driver_override[TOPOLOGY_DRIVER_NAME_MAX]; /* "" when unset */
};

/**
 * topology_load() - build the emulated machine
 * @json_path: a topology file; NULL: the file named by $UIOMMU_TOPOLOGY if set and not empty,
 *             else the embedded default (topology_default_json())
 *
 * All or nothing: any failure tears down what was built.
 *
 * Return: 0; -EBUSY when a topology is loaded already; -ENOENT (or another errno of open/read)
 * for an unreadable file; -EINVAL for malformed JSON or a schema violation, with a message on
 * stderr naming the field; an errno of the core (a probe or bind that failed), -ENOMEM.
 */
int topology_load(const char *json_path);

/**
 * topology_unload() - unbind, release and free everything topology_load() made
 *
 * Every DMA owner must have released its claims and every domain attached by a user must be
 * detached first (the core warns when the last device of an owned group goes). A no-op when
 * nothing is loaded.
 */
void topology_unload(void);

/** topology_loaded() - is a topology loaded? */
bool topology_loaded(void);

/**
 * topology_source() - where the loaded topology came from: a path, or "(default)"
 * Copies into @buf (truncating); returns -ENOENT when nothing is loaded.
 */
int topology_source(char *buf, size_t len);

/** topology_default_json() - the text of the embedded default topology */
const char *topology_default_json(void);

/**
 * topology_find_device() - the device named @bdf ("0000:00:03.0"), present or not
 * Return: the device (valid until topology_unload()), or NULL if the topology has none.
 */
struct device *topology_find_device(const char *bdf);

/** topology_find_iommu() - the IOMMU instance named @name, or NULL */
struct iommu_device *topology_find_iommu(const char *name);

/** topology_nr_devices(), topology_nr_iommus() - sizes of the loaded topology (0 if none) */
unsigned int topology_nr_devices(void);
unsigned int topology_nr_iommus(void);

/**
 * topology_device_at(), topology_iommu_at() - the @i-th device / instance in file order, or
 * NULL past the end. Valid until topology_unload().
 */
struct device *topology_device_at(unsigned int i);
struct iommu_device *topology_iommu_at(unsigned int i);

/**
 * topology_device_get_info() - the topology's view of @bdf
 * Return: 0, or -ENOENT for an unknown BDF.
 */
int topology_device_get_info(const char *bdf, struct topology_device_info *info);

/**
 * topology_for_each_device() - call @fn for each device in file order, under topology_lock
 *
 * @fn may call the core (its locks come after topology_lock) but no topology_*() function.
 * A non-zero return from @fn stops the walk and is returned.
 */
int topology_for_each_device(int (*fn)(const struct topology_device_info *info, void *arg),
			     void *arg);

/** topology_for_each_iommu() - the same for the IOMMU instances */
int topology_for_each_iommu(int (*fn)(struct iommu_device *iommu, void *arg), void *arg);

/*
 * What other processes of a uiommu-run session hold on a device, as far as a store refuses
 * for it (the virtual sysfs learns it from the session's claims, machine/session.h, and hands
 * it to the *_held() forms below): each counts as the same state in this process would.
 */
#define TOPOLOGY_HELD_OWNED 0x1u /* a user (an iommufd context) owns the device's group */
#define TOPOLOGY_HELD_OPEN 0x2u  /* VFIO has the device open (a cdev file, a device fd) */

/**
 * topology_unplug() - hot-unplug @bdf: unbind its driver if bound, then iommu_release_device()
 *
 * Return: 0; -ENOENT for an unknown BDF; -EBUSY when the device is not present, or when it is
 * the last device of a group a user owns (the kernel's VFIO driver would hold the remove until
 * the user lets go; we refuse instead of waiting).
 */
int topology_unplug(const char *bdf);
int topology_unplug_held(const char *bdf, unsigned int held);

/**
 * topology_plug() - hot-plug @bdf again: iommu_probe_device(), then bind the DMA-API driver if
 * the topology marks it bound. A bind that fails (the group is owned, -EBUSY) leaves the
 * device present without a driver, as a failing driver probe does in the kernel.
 *
 * Return: 0; -ENOENT for an unknown BDF; -EBUSY when already present; the probe's errno.
 */
int topology_plug(const char *bdf);

/**
 * topology_bind(), topology_unbind() - bind or unbind the emulated DMA-API driver of a present
 * device (iommu_device_use_default_domain() / iommu_device_unuse_default_domain()).
 *
 * Return: 0; -ENOENT unknown BDF; -ENODEV not present; bind: -ENODEV when driver_override
 * names another driver, -EBUSY already bound (to it or to vfio-pci) or the core's -EBUSY /
 * -EPROBE_DEFER; unbind: -EINVAL when not bound.
 */
int topology_bind(const char *bdf);
/* The same against @held (TOPOLOGY_HELD_OWNED: -EBUSY once the driver matches). */
int topology_bind_held(const char *bdf, unsigned int held);
/*
 * With $UIOMMU_DRIVER_DMA set (and not "0"), the emulated driver of a bound device runs a DMA
 * engine thread (map, device write, device read, check, unmap; about 1000 a second) until it is
 * unbound, so DMA runs across type switches and hot unplug. Its counters, since load.
 */
int topology_dma_stats(const char *bdf, unsigned long *ops, unsigned long *errors);
int topology_unbind(const char *bdf);

/**
 * topology_vfio_bind(), topology_vfio_unbind() - bind or unbind vfio-pci (the sysfs bind and
 * unbind of /sys/bus/pci/drivers/vfio-pci). vfio-pci claims nothing in the core; it gives the
 * function the lowest free vfioN and its group a node minor.
 *
 * Return: 0; -ENOENT unknown BDF; bind: -ENODEV absent or not matched (vfio-pci matches only a
 * function whose driver_override is "vfio-pci"), -EBUSY bound to a driver already, -EINVAL no
 * IOMMU group; unbind: -ENODEV absent or not bound to vfio-pci, -EBUSY while VFIO has it open
 * (the kernel's unbind waits for the users; we refuse).
 */
int topology_vfio_bind(const char *bdf);
int topology_vfio_unbind(const char *bdf);
/* The same against @held (TOPOLOGY_HELD_OPEN: -EBUSY). */
int topology_vfio_unbind_held(const char *bdf, unsigned int held);

/*
 * topology_vfio_get(), topology_vfio_put() - VFIO holds a function it has open: unbind and
 * unplug answer -EBUSY meanwhile. get: -ENODEV unless present and bound to vfio-pci.
 */
int topology_vfio_get(struct device *dev);
void topology_vfio_put(struct device *dev);

/**
 * topology_set_driver_override() - the function's driver_override ("" clears it). It decides
 * which driver a later bind may match, as the kernel's does (topology_bind(): -ENODEV when it
 * names another driver). Return: 0, -ENOENT unknown BDF, -EINVAL too long.
 */
int topology_set_driver_override(const char *bdf, const char *driver);

#endif
