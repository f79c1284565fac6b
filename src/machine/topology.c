// SPDX-License-Identifier: MIT
/*
 * The emulated machine: which IOMMU instances exist and which PCI functions sit behind them.
 *
 * A topology is data, not code. It is parsed (json-c) into a plain description first, checked
 * field by field, and only then instantiated, so a malformed file changes nothing and its
 * error names the field ("devices[3].resv_direct[0].length: ..."). The embedded default is a
 * JSON text too, read by the same parser: one schema, one code path, and the example file in
 * examples/topology.json is that same text (a test checks it).
 *
 * Instantiation mirrors a boot: every IOMMU instance is registered with its driver (the mock,
 * or the s390-style driver with its DMA range; "driver" in the file selects it), a struct
 * device is made for every function, each present function is probed into the core (groups,
 * default domains), and the functions marked "bound" get the emulated DMA-API driver
 * (iommu_device_use_default_domain(), the step the kernel's driver core runs before a
 * driver's probe). Any failure unwinds the whole load. The kernel probes device by device and
 * keeps going past a failing one; a test wants all or nothing, and a device meant to fail its
 * probe can be described "present": false and plugged by hand to see the errno.
 *
 * Hot-plug keeps the struct device: unplug unbinds and releases it from the core (the group
 * may die with it), plug probes it again. Pointers handed out stay valid until unload.
 *
 * Locking. topology_lock protects everything in struct topology (the arrays, each device's
 * present/bound state, the source string). It is the outermost lock of the IOMMU side:
 * topology_lock -> iommu_probe_device_lock -> group->mutex -> driver locks, because plug and
 * unplug call into the core with it held so that two of them on one device cannot interleave.
 * Nothing of the core calls back into the topology.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/intel/vtd.h"
#include "drivers/mock/mock.h"
#include "drivers/s390/s390-iommu.h"
#include "drivers/arm-smmu-v3/arm-smmu-v3-iommu.h"
#include "iommu/dma-iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "lib/thread.h"
#include "machine/pci.h"
#include "machine/topology.h"

#define TOPOLOGY_MAX_FILE (4u << 20) /* a topology file is small; refuse anything silly */
#define TOPOLOGY_MAX_PASID_BITS 20u
#define TOPOLOGY_MAX_PASIDS (1u << TOPOLOGY_MAX_PASID_BITS)
#define TOPOLOGY_DEFAULT_CLASS 0xff0000u /* a function without a model: "unassigned class" */

/* ---- the description ------------------------------------------------------------------------ */

struct topo_iommu_desc {
	char name[sizeof(((struct iommu_device *)0)->name)];
	uint32_t max_pasids;
	bool deferred_flush;
	bool dirty_tracking;
	bool msi_window;               /* mock: x86's interrupt window is reserved */
	bool s390;                     /* "driver": "s390" (else the mock) */
	uint64_t start_dma, end_dma;   /* s390: the functions' DMA range */
	bool vtd;                      /* "driver": "vtd" */
	struct vtd_features vtd_features; /* vtd: "features" over vtd_default_features */
	bool smmuv3;                   /* "driver": "smmuv3" */
	struct arm_smmu_features smmu; /* smmuv3: what the instance implements */
};

struct topo_device_desc {
	char bdf[sizeof(((struct device *)0)->name)];
	unsigned int iommu;            /* index in the iommus array */
	char group_key[sizeof(((struct device *)0)->group_key)];
	bool untrusted;
	struct iommu_resv_region resv[ARRAY_SIZE(((struct device *)0)->resv)];
	unsigned int nr_resv;
	uint32_t pasid_bits;
	bool ats;
	bool pri;
	bool dirty;
	int driver_pref;
	bool bound;
	bool vfio;                     /* "driver": "vfio-pci", or unbound and not "none" */
	bool present;
	char model[32];                /* the PCI function's device model; "": generic */
	char backing[PATH_MAX];        /* the model's "backing" file; "": none */
	uint32_t class_code;           /* the generic function's class */
};

struct topo_desc {
	struct topo_iommu_desc *iommus;
	unsigned int nr_iommus;
	struct topo_device_desc *devices;
	unsigned int nr_devices;
	bool has_policy;
	bool passthrough;
	bool strict;
};

/* ---- the live topology ------------------------------------------------------------------------ */

struct topo_device {
	struct device *dev;
	struct uiommu_pci_fn *fn;      /* its PCI function (config space, model), from boot */
	unsigned int iommu;
	bool bind_on_plug;
	bool present;   /* probed into the core now */
	bool bound;     /* use_default_domain() succeeded and is not yet undone */
	/*
	 * vfio-pci: bound now (vfio_index >= 0), the topology's choice at boot and plug, the
	 * users VFIO counts on it (open files: unbind and unplug refuse while there are any),
	 * the group node's minor, and driver_override ("" when unset).
	 */
	bool vfio_on_plug;
	int vfio_index;
	int vfio_group_minor;
	unsigned int vfio_users;
	char driver_override[TOPOLOGY_DRIVER_NAME_MAX];
	/* The emulated driver's DMA engine, while bound and $UIOMMU_DRIVER_DMA is set. */
	bool dma_running;
	atomic_bool dma_stop;
	pthread_t dma_thread;
	atomic_ulong dma_ops;
	atomic_ulong dma_errors;
};

/*
 * The process's machine. topology_lock protects every field; the device and iommu arrays are
 * immutable between load and unload (only present/bound change).
 */
struct topology {
	bool loaded;
	char source[256];
	struct iommu_device *iommus;    /* nr_iommus, registered */
	unsigned int nr_iommus;
	unsigned int nr_registered;     /* how many of them are registered (for unwinding) */
	struct topo_device *devices;
	unsigned int nr_devices;
};

/* Protects the loaded topology; order: after the sysfs locks, before the probe lock. */
UIOMMU_MUTEX_DEFINE(topology_lock);
static struct topology topo;

/* ---- the embedded default ------------------------------------------------------------------- */

/* Identical to examples/topology.json (test_topology checks it). */
static const char topology_default[] =
	"{\n"
	"  \"description\": \"The default machine: two mock IOMMU instances with every kind of device the IOMMU core tells apart, and an SMMUv3 and a VT-d model with a dma-test function each for nested translation.\",\n"
	"  \"iommus\": [\n"
	"    { \"name\": \"iommu0\", \"driver\": \"mock\", \"max_pasids\": 1048576,\n"
	"      \"deferred_flush\": true, \"dirty_tracking\": true },\n"
	"    { \"name\": \"iommu1\", \"driver\": \"mock\", \"max_pasids\": 0,\n"
	"      \"deferred_flush\": false, \"dirty_tracking\": false },\n"
	"    { \"name\": \"smmu0\", \"driver\": \"smmuv3\",\n"
	"      \"features\": { \"nesting\": true, \"httu\": true, \"ssid_bits\": 20 } },\n"
	"    { \"name\": \"dmar0\", \"driver\": \"vtd\",\n"
	"      \"features\": { \"nest\": true, \"prs\": true, \"pasid_bits\": 20 } }\n"
	"  ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:00:02.0\", \"iommu\": \"iommu0\", \"driver\": \"identity\", \"bound\": true,\n"
	"      \"comment\": \"integrated GPU: its driver insists on an identity domain\" },\n"
	"    { \"bdf\": \"0000:00:03.0\", \"iommu\": \"iommu0\", \"bound\": true,\n"
	"      \"comment\": \"NIC alone in its group: the global default (DMA-FQ, deferred flush)\" },\n"
	"    { \"bdf\": \"0000:00:14.0\", \"iommu\": \"iommu0\", \"bound\": true,\n"
	"      \"resv_direct\": [ { \"start\": \"0x7c000000\", \"length\": \"0x200000\" } ],\n"
	"      \"comment\": \"USB controller with an RMRR: a RESV_DIRECT region, never blocked\" },\n"
	"    { \"bdf\": \"0000:01:00.0\", \"iommu\": \"iommu1\", \"group\": \"switch1\", \"bound\": true,\n"
	"      \"comment\": \"three functions behind a switch without ACS: one group\" },\n"
	"    { \"bdf\": \"0000:01:00.1\", \"iommu\": \"iommu1\", \"group\": \"switch1\", \"bound\": true },\n"
	"    { \"bdf\": \"0000:01:00.2\", \"iommu\": \"iommu1\", \"group\": \"switch1\" },\n"
	"    { \"bdf\": \"0000:02:00.0\", \"iommu\": \"iommu1\", \"untrusted\": true, \"bound\": true,\n"
	"      \"comment\": \"behind an external port: untrusted, so DMA and strict\" },\n"
	"    { \"bdf\": \"0000:03:00.0\", \"iommu\": \"iommu0\", \"pasid_bits\": 20, \"pri\": true,\n"
	"      \"driver\": \"dma\",\n"
	"      \"comment\": \"accelerator for SVA: PASID and PRI, its driver wants a DMA domain\" },\n"
	"    { \"bdf\": \"0000:04:00.0\", \"iommu\": \"iommu0\", \"dirty\": true,\n"
	"      \"comment\": \"function to migrate: dirty tracking\" },\n"
	"    { \"bdf\": \"0000:08:00.0\", \"iommu\": \"smmu0\", \"model\": \"dma-test\",\n"
	"      \"pasid_bits\": 20, \"pri\": true,\n"
	"      \"comment\": \"a dma-test for vfio-pci behind the SMMUv3 model: nested translation (docs/smmuv3.md)\" },\n"
	"    { \"bdf\": \"0000:09:00.0\", \"iommu\": \"dmar0\", \"model\": \"dma-test\",\n"
	"      \"pasid_bits\": 20, \"pri\": true,\n"
	"      \"comment\": \"a dma-test for vfio-pci behind the VT-d model: nested translation (docs/vtd.md)\" }\n"
	"  ]\n"
	"}\n";

const char *topology_default_json(void)
{
	return topology_default;
}

/* ---- parsing ---------------------------------------------------------------------------------- */

/* Parse state: where we are, for the error message. */
struct topo_parser {
	const char *source;
	char path[128]; /* the field being read, "devices[3].bdf" */
};

static int __attribute__((format(printf, 2, 3))) parse_error(struct topo_parser *p,
							      const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "uiommu: topology %s: %s%s", p->source, p->path, p->path[0] ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

static void parser_at(struct topo_parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void parser_at(struct topo_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->path, sizeof(p->path), fmt, ap);
	va_end(ap);
}

/* Every key of @obj must be one of @allowed (a typo must not silently mean "default"). */
static int check_keys(struct topo_parser *p, struct json_object *obj,
		      const char *const *allowed, const char *where)
{
	json_object_object_foreach(obj, key, val) {
		const char *const *a;

		(void)val;
		for (a = allowed; *a; a++)
			if (!strcmp(*a, key))
				break;
		if (!*a) {
			parser_at(p, "%s%s%s", where, where[0] ? "." : "", key);
			return parse_error(p, "unknown field");
		}
	}
	return 0;
}

static int get_bool(struct topo_parser *p, struct json_object *obj, const char *where,
		    const char *key, bool def, bool *out)
{
	struct json_object *v;

	*out = def;
	if (!json_object_object_get_ex(obj, key, &v))
		return 0;
	parser_at(p, "%s.%s", where, key);
	if (!json_object_is_type(v, json_type_boolean))
		return parse_error(p, "must be true or false");
	*out = json_object_get_boolean(v);
	return 0;
}

/* A JSON integer, or a string in C notation ("0x7c000000") for values JSON users prefer hex. */
static int get_u64_value(struct topo_parser *p, struct json_object *v, uint64_t *out)
{
	if (json_object_is_type(v, json_type_int)) {
		int64_t x;

		errno = 0;
		x = json_object_get_int64(v);
		if (x < 0 || errno)
			return parse_error(p, "must be a non-negative integer");
		*out = (uint64_t)x;
		return 0;
	}
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		char *end;

		if (!*s || *s == '-' || *s == '+' || *s == ' ')
			return parse_error(p, "must be a non-negative integer");
		errno = 0;
		*out = strtoull(s, &end, 0);
		if (errno || *end)
			return parse_error(p, "\"%s\" is not an integer", s);
		return 0;
	}
	return parse_error(p, "must be an integer (or a string such as \"0x1000\")");
}

static int get_u64(struct topo_parser *p, struct json_object *obj, const char *where,
		   const char *key, bool required, uint64_t def, uint64_t max, uint64_t *out)
{
	struct json_object *v;
	int rc;

	*out = def;
	parser_at(p, "%s.%s", where, key);
	if (!json_object_object_get_ex(obj, key, &v))
		return required ? parse_error(p, "missing") : 0;
	rc = get_u64_value(p, v, out);
	if (rc)
		return rc;
	if (*out > max)
		return parse_error(p, "%llu is more than %llu", (unsigned long long)*out,
				   (unsigned long long)max);
	return 0;
}

/* A string of at most @size - 1 characters; a missing optional one is "". */
static int get_string(struct topo_parser *p, struct json_object *obj, const char *where,
		      const char *key, bool required, char *buf, size_t size)
{
	struct json_object *v;
	const char *s;

	buf[0] = 0;
	parser_at(p, "%s.%s", where, key);
	if (!json_object_object_get_ex(obj, key, &v))
		return required ? parse_error(p, "missing") : 0;
	if (!json_object_is_type(v, json_type_string))
		return parse_error(p, "must be a string");
	s = json_object_get_string(v);
	/* "\u0000" is valid JSON: a name cut short at it would be another name. */
	if (strlen(s) != (size_t)json_object_get_string_len(v))
		return parse_error(p, "holds a NUL character");
	if (strlen(s) >= size)
		return parse_error(p, "longer than %zu characters", size - 1);
	memcpy(buf, s, strlen(s) + 1);
	return 0;
}

/* "DDDD:BB:DD.F", lower-case hex, as Linux names PCI functions: domain, bus, device < 32, fn < 8. */
static bool bdf_valid(const char *s)
{
	static const char shape[] = "hhhh:hh:hh.h";
	unsigned int dev, fn;

	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'h' ? !strchr("0123456789abcdef", s[i]) || !s[i] : s[i] != shape[i])
			return false;
	}
	if (sscanf(s + 8, "%2x.%1x", &dev, &fn) != 2)
		return false;
	return dev < 32 && fn < 8;
}

/*
 * An IOMMU instance's name, as the kernel's device naming allows it: it becomes a directory
 * of /sys/class/iommu and a word of the control protocol and the session journal, so no
 * '/', not "." or "..", and only visible ASCII (no blank, no newline, no control byte, which
 * could forge a line of either protocol). The length is bounded by the field already.
 */
static bool iommu_name_valid(const char *s)
{
	if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++) {
		if (*s <= ' ' || *s > '~' || *s == '/')
			return false;
	}
	return true;
}

/* The s390 driver's DMA range (start_dma, end_dma), refused for any other driver. */
static int parse_iommu_s390(struct topo_parser *p, struct json_object *obj, const char *where,
			    bool s390, struct topo_iommu_desc *io)
{
	int rc;

	io->s390 = s390;
	if (!s390) {
		if (json_object_object_get_ex(obj, "start_dma", NULL) ||
		    json_object_object_get_ex(obj, "end_dma", NULL)) {
			parser_at(p, "%s", where);
			return parse_error(p, "start_dma and end_dma need \"driver\": \"s390\"");
		}
		return 0;
	}
	rc = get_u64(p, obj, where, "start_dma", false, S390_DEFAULT_START_DMA,
		     S390_TABLE_SIZE_RT - 1, &io->start_dma);
	if (!rc)
		rc = get_u64(p, obj, where, "end_dma", false, S390_DEFAULT_END_DMA,
			     S390_TABLE_SIZE_RT - 1, &io->end_dma);
	if (!rc && io->start_dma > io->end_dma)
		rc = parse_error(p, "must not be below start_dma");
	return rc;
}

/*
 * @obj's "features" object for a driver that takes one, its keys checked against @keys:
 * *@feat NULL when there is none (every feature at its default). @fwhere gets its path.
 */
static int get_features(struct topo_parser *p, struct json_object *obj, const char *where,
			const char *const *keys, struct json_object **feat, char *fwhere,
			size_t fwhere_len)
{
	*feat = NULL;
	if (!json_object_object_get_ex(obj, "features", feat))
		return 0;
	snprintf(fwhere, fwhere_len, "%s.features", where);
	parser_at(p, "%s", fwhere);
	if (!json_object_is_type(*feat, json_type_object))
		return parse_error(p, "must be an object");
	return check_keys(p, *feat, keys, fwhere);
}

/*
 * The VT-d model's "features" (what the instance implements, hence its CAP/ECAP; parse_iommu()
 * refuses the object for drivers that take none). PASIDs and dirty tracking are features
 * there, not "max_pasids" and "dirty_tracking".
 */
static int parse_iommu_vtd(struct topo_parser *p, struct json_object *obj, const char *where,
			   bool vtd, struct topo_iommu_desc *io)
{
	static const char *const keys[] = { "five_level", "nest", "fs5lp", "fs1gp", "ssads",
					    "srs", "eafs", "prs", "pasid_bits", NULL };
	struct vtd_features *f = &io->vtd_features;
	struct json_object *feat = NULL;
	char fwhere[48];
	uint64_t bits;
	int rc = 0;

	io->vtd = vtd;
	*f = vtd_default_features;
	parser_at(p, "%s", where);
	if (!vtd)
		return 0;
	if (json_object_object_get_ex(obj, "max_pasids", NULL) ||
	    json_object_object_get_ex(obj, "dirty_tracking", NULL))
		return parse_error(p, "max_pasids and dirty_tracking of \"driver\": \"vtd\" are "
				      "its features pasid_bits and ssads");
	rc = get_features(p, obj, where, keys, &feat, fwhere, sizeof(fwhere));
	if (rc || !feat)
		return rc;
	rc = get_bool(p, feat, fwhere, "five_level", f->five_level, &f->five_level);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "nest", f->nest, &f->nest);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "fs5lp", f->fs5lp, &f->fs5lp);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "fs1gp", f->fs1gp, &f->fs1gp);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "ssads", f->ssads, &f->ssads);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "srs", f->srs, &f->srs);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "eafs", f->eafs, &f->eafs);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "prs", f->prs, &f->prs);
	if (!rc)
		rc = get_u64(p, feat, fwhere, "pasid_bits", false, f->pasid_bits, 20, &bits);
	if (!rc)
		f->pasid_bits = (unsigned int)bits;
	return rc;
}

/*
 * The SMMUv3 model's "features" (what the instance implements, hence its IDRs), in the same
 * shape as VT-d's. The flat keys an earlier schema took are refused by name, so an old file
 * says what to change rather than "unknown field".
 */
static int parse_iommu_smmuv3(struct topo_parser *p, struct json_object *obj, const char *where,
			      bool smmuv3, struct topo_iommu_desc *io)
{
	static const char *const keys[] = { "nesting", "httu", "ssid_bits", NULL };
	const struct arm_smmu_features def = ARM_SMMU_FEATURES_DEFAULT;
	struct json_object *feat = NULL;
	char fwhere[48];
	uint64_t v;
	int rc;

	io->smmuv3 = smmuv3;
	io->smmu = def;
	for (const char *const *k = keys; *k; k++) {
		if (json_object_object_get_ex(obj, *k, NULL)) {
			parser_at(p, "%s.%s", where, *k);
			return parse_error(p, "a feature of \"driver\": \"smmuv3\": put it in its "
					      "\"features\" object");
		}
	}
	if (!smmuv3)
		return 0;
	rc = get_features(p, obj, where, keys, &feat, fwhere, sizeof(fwhere));
	if (rc || !feat)
		return rc;
	rc = get_bool(p, feat, fwhere, "nesting", def.nesting, &io->smmu.nesting);
	if (!rc)
		rc = get_bool(p, feat, fwhere, "httu", def.httu, &io->smmu.httu);
	if (!rc)
		rc = get_u64(p, feat, fwhere, "ssid_bits", false, def.ssid_bits, 20, &v);
	if (!rc)
		io->smmu.ssid_bits = (unsigned int)v;
	return rc;
}

static int parse_iommu(struct topo_parser *p, struct json_object *obj, unsigned int i,
		       struct topo_desc *d)
{
	static const char *const keys[] = { "name", "driver", "max_pasids", "deferred_flush",
					    "dirty_tracking", "msi_window", "start_dma", "end_dma",
					    "features", "nesting", "httu", "ssid_bits", "comment", NULL };
	struct topo_iommu_desc *io = &d->iommus[i];
	char where[32], driver[16];
	uint64_t v;
	int rc;

	snprintf(where, sizeof(where), "iommus[%u]", i);
	parser_at(p, "%s", where);
	if (!json_object_is_type(obj, json_type_object))
		return parse_error(p, "must be an object");
	rc = check_keys(p, obj, keys, where);
	if (!rc)
		rc = get_string(p, obj, where, "name", true, io->name, sizeof(io->name));
	if (!rc && !io->name[0])
		rc = parse_error(p, "must not be empty");
	if (!rc && !iommu_name_valid(io->name))
		rc = parse_error(p, "not a device name: visible ASCII only, no '/', "
				 "not \".\" or \"..\"");
	for (unsigned int j = 0; !rc && j < i; j++)
		if (!strcmp(d->iommus[j].name, io->name))
			rc = parse_error(p, "\"%s\" is also iommus[%u]", io->name, j);
	if (!rc)
		rc = get_string(p, obj, where, "driver", false, driver, sizeof(driver));
	if (!rc && driver[0] && strcmp(driver, "mock") && strcmp(driver, "s390") &&
	    strcmp(driver, "vtd") && strcmp(driver, "smmuv3"))
		rc = parse_error(p, "unknown driver \"%s\" (known: \"mock\", \"s390\", "
				 "\"vtd\", \"smmuv3\")", driver);
	if (!rc && strcmp(driver, "vtd") && strcmp(driver, "smmuv3") &&
	    json_object_object_get_ex(obj, "features", NULL)) {
		parser_at(p, "%s.features", where);
		rc = parse_error(p, "needs \"driver\": \"vtd\" or \"smmuv3\"");
	}
	if (!rc)
		rc = parse_iommu_s390(p, obj, where, !strcmp(driver, "s390"), io);
	if (!rc)
		rc = parse_iommu_vtd(p, obj, where, !strcmp(driver, "vtd"), io);
	if (!rc)
		rc = parse_iommu_smmuv3(p, obj, where, !strcmp(driver, "smmuv3"), io);
	if (!rc)
		rc = get_u64(p, obj, where, "max_pasids", false, 0, TOPOLOGY_MAX_PASIDS, &v);
	if (rc)
		return rc;
	io->max_pasids = (uint32_t)v;
	rc = get_bool(p, obj, where, "deferred_flush", false, &io->deferred_flush);
	if (!rc)
		rc = get_bool(p, obj, where, "dirty_tracking", false, &io->dirty_tracking);
	/* x86 IOMMUs (intel, AMD) reserve the interrupt window for every device; s390 and the
	 * SMMUv3 have none. */
	if (!rc)
		rc = get_bool(p, obj, where, "msi_window", !io->s390 && !io->smmuv3,
			      &io->msi_window);
	if (!rc && (io->s390 || io->smmuv3) && io->msi_window) {
		parser_at(p, "%s.msi_window", where);
		rc = parse_error(p, "the %s driver has no MSI window", io->s390 ? "s390" : "smmuv3");
	}
	/* The SMMUv3's PASIDs and dirty tracking are its SSIDSIZE and HTTU. */
	if (!rc && io->smmuv3 && (io->max_pasids || io->dirty_tracking)) {
		parser_at(p, "%s", where);
		rc = parse_error(p, "smmuv3: max_pasids and dirty_tracking come from its features "
				 "ssid_bits and httu");
	}
	return rc;
}

static int parse_resv(struct topo_parser *p, struct json_object *arr, const char *where,
		      struct topo_device_desc *dd)
{
	static const char *const keys[] = { "start", "length", "comment", NULL };
	size_t n, i;

	parser_at(p, "%s.resv_direct", where);
	if (!json_object_is_type(arr, json_type_array))
		return parse_error(p, "must be an array");
	n = json_object_array_length(arr);
	if (n > ARRAY_SIZE(dd->resv))
		return parse_error(p, "at most %zu regions", ARRAY_SIZE(dd->resv));
	for (i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(arr, i);
		uint64_t start, length, last;
		char rwhere[64];
		int rc;

		snprintf(rwhere, sizeof(rwhere), "%s.resv_direct[%zu]", where, i);
		parser_at(p, "%s", rwhere);
		if (!json_object_is_type(r, json_type_object))
			return parse_error(p, "must be an object with start and length");
		rc = check_keys(p, r, keys, rwhere);
		if (!rc)
			rc = get_u64(p, r, rwhere, "start", true, 0, UINT64_MAX, &start);
		if (!rc && !IS_ALIGNED(start, IO_PGTABLE_SZ_4K))
			rc = parse_error(p, "not aligned to 4 KiB");
		if (!rc)
			rc = get_u64(p, r, rwhere, "length", true, 0, UINT64_MAX, &length);
		if (!rc && (!length || !IS_ALIGNED(length, IO_PGTABLE_SZ_4K)))
			rc = parse_error(p, "must be a non-zero multiple of 4 KiB");
		if (!rc && (check_add_overflow(start, length - 1, &last) || last >> MOCK_IAS))
			rc = parse_error(p, "the region ends beyond the 48-bit IOVA space");
		if (rc)
			return rc;
		dd->resv[i] = (struct iommu_resv_region){
			.start = start,
			.length = length,
			.prot = IOMMU_READ | IOMMU_WRITE,
			.type = IOMMU_RESV_DIRECT,
		};
	}
	dd->nr_resv = (unsigned int)n;
	return 0;
}

/* "model" (a registered or built-in device model) and "class" (the generic function's). */
static int parse_device_model(struct topo_parser *p, struct json_object *obj, const char *where,
			      struct topo_device_desc *dd)
{
	uint64_t class_code = TOPOLOGY_DEFAULT_CLASS;
	int rc;

	rc = get_string(p, obj, where, "model", false, dd->model, sizeof(dd->model));
	if (!rc && dd->model[0] && !pci_model_exists(dd->model))
		rc = parse_error(p, "no device model is named \"%s\"", dd->model);
	if (!rc)
		rc = get_u64(p, obj, where, "class", false, TOPOLOGY_DEFAULT_CLASS, 0xffffff,
			     &class_code);
	if (!rc && dd->model[0] && json_object_object_get_ex(obj, "class", NULL))
		rc = parse_error(p, "a device model has its own class");
	if (!rc)
		rc = get_string(p, obj, where, "backing", false, dd->backing, sizeof(dd->backing));
	if (!rc && dd->backing[0] && !dd->model[0])
		rc = parse_error(p, "\"backing\" is an option of a device model");
	dd->class_code = (uint32_t)class_code;
	return rc;
}

static int parse_device(struct topo_parser *p, struct json_object *obj, unsigned int i,
			struct topo_desc *d)
{
	static const char *const keys[] = { "bdf", "iommu", "group", "untrusted", "resv_direct",
					    "pasid_bits", "ats", "pri", "dirty", "driver", "bound",
					    "present", "model", "class", "backing", "comment", NULL };
	struct topo_device_desc *dd = &d->devices[i];
	char where[32], iommu[sizeof(d->iommus[0].name)];
	struct json_object *v;
	uint64_t bits;
	int rc, vfio;

	snprintf(where, sizeof(where), "devices[%u]", i);
	parser_at(p, "%s", where);
	if (!json_object_is_type(obj, json_type_object))
		return parse_error(p, "must be an object");
	rc = check_keys(p, obj, keys, where);
	if (!rc)
		rc = get_string(p, obj, where, "bdf", true, dd->bdf, sizeof(dd->bdf));
	if (!rc && !bdf_valid(dd->bdf))
		rc = parse_error(p, "\"%s\" is not a PCI address like \"0000:00:03.0\"", dd->bdf);
	for (unsigned int j = 0; !rc && j < i; j++)
		if (!strcmp(d->devices[j].bdf, dd->bdf))
			rc = parse_error(p, "\"%s\" is also devices[%u]", dd->bdf, j);
	if (!rc)
		rc = get_string(p, obj, where, "iommu", true, iommu, sizeof(iommu));
	if (rc)
		return rc;
	for (dd->iommu = 0; dd->iommu < d->nr_iommus; dd->iommu++)
		if (!strcmp(d->iommus[dd->iommu].name, iommu))
			break;
	if (dd->iommu == d->nr_iommus)
		return parse_error(p, "no IOMMU is named \"%s\"", iommu);

	rc = get_string(p, obj, where, "group", false, dd->group_key, sizeof(dd->group_key));
	/* A group is what one IOMMU cannot tell apart: it never spans two instances. */
	for (unsigned int j = 0; !rc && dd->group_key[0] && j < i; j++)
		if (!strcmp(d->devices[j].group_key, dd->group_key) &&
		    d->devices[j].iommu != dd->iommu)
			rc = parse_error(p, "group \"%s\" is behind %s in devices[%u], here %s",
					 dd->group_key, d->iommus[d->devices[j].iommu].name, j,
					 iommu);
	/* SMMUv3 functions are isolated (ACS): one group each. */
	if (!rc && dd->group_key[0] && d->iommus[dd->iommu].smmuv3)
		rc = parse_error(p, "smmuv3 devices have groups of their own");
	if (!rc)
		rc = get_bool(p, obj, where, "untrusted", false, &dd->untrusted);
	if (!rc && json_object_object_get_ex(obj, "resv_direct", &v))
		rc = parse_resv(p, v, where, dd);
	if (!rc)
		rc = get_u64(p, obj, where, "pasid_bits", false, 0, TOPOLOGY_MAX_PASID_BITS, &bits);
	if (rc)
		return rc;
	dd->pasid_bits = (uint32_t)bits;
	rc = get_bool(p, obj, where, "pri", false, &dd->pri);
	/* PRI is an extension of ATS: a device with it has ATS, unless said otherwise. */
	if (!rc)
		rc = get_bool(p, obj, where, "ats", dd->pri, &dd->ats);
	if (!rc && dd->pri && !dd->ats)
		rc = parse_error(p, "\"pri\" needs \"ats\": PRI is an extension of ATS");
	if (!rc)
		rc = get_bool(p, obj, where, "dirty", false, &dd->dirty);
	if (!rc)
		rc = get_bool(p, obj, where, "bound", false, &dd->bound);
	if (!rc)
		rc = get_bool(p, obj, where, "present", true, &dd->present);
	if (!rc)
		rc = parse_device_model(p, obj, where, dd);
	if (rc)
		return rc;

	dd->driver_pref = 0;
	vfio = -1;
	parser_at(p, "%s.driver", where);
	if (json_object_object_get_ex(obj, "driver", &v) && !json_object_is_type(v, json_type_null)) {
		const char *s = json_object_is_type(v, json_type_string) ?
					json_object_get_string(v) : NULL;

		if (s && !strcmp(s, "identity"))
			dd->driver_pref = IOMMU_DOMAIN_IDENTITY;
		else if (s && !strcmp(s, "dma"))
			dd->driver_pref = IOMMU_DOMAIN_DMA;
		else if (s && !strcmp(s, TOPOLOGY_VFIO_DRIVER))
			vfio = 1;
		else if (s && !strcmp(s, "none"))
			vfio = 0;
		else
			return parse_error(p, "must be \"identity\", \"dma\", \"" TOPOLOGY_VFIO_DRIVER
					   "\", \"none\" or null");
	}
	if (vfio == 1 && dd->bound)
		return parse_error(p, "\"" TOPOLOGY_VFIO_DRIVER "\" and \"bound\": one driver only");
	/* vfio-pci takes the functions the emulated DMA-API driver does not (the model default). */
	dd->vfio = vfio == 1 || (vfio < 0 && !dd->bound);
	return 0;
}

static int parse_policy(struct topo_parser *p, struct json_object *obj, struct topo_desc *d)
{
	static const char *const keys[] = { "passthrough", "strict", "comment", NULL };
	int rc;

	parser_at(p, "policy");
	if (!json_object_is_type(obj, json_type_object))
		return parse_error(p, "must be an object");
	rc = check_keys(p, obj, keys, "policy");
	if (!rc)
		rc = get_bool(p, obj, "policy", "passthrough", false, &d->passthrough);
	if (!rc)
		rc = get_bool(p, obj, "policy", "strict", false, &d->strict);
	d->has_policy = true;
	return rc;
}

static void topo_desc_free(struct topo_desc *d)
{
	uiommu_free(d->iommus);
	uiommu_free(d->devices);
	memset(d, 0, sizeof(*d));
}

static int topo_desc_parse(struct topo_parser *p, struct json_object *root, struct topo_desc *d)
{
	static const char *const keys[] = { "iommus", "devices", "policy", "description",
					    "comment", NULL };
	struct json_object *iommus, *devices, *policy;
	size_t n;
	int rc;

	memset(d, 0, sizeof(*d));
	p->path[0] = 0;
	if (!json_object_is_type(root, json_type_object))
		return parse_error(p, "the top level must be an object");
	rc = check_keys(p, root, keys, "");
	if (rc)
		return rc;

	parser_at(p, "iommus");
	if (!json_object_object_get_ex(root, "iommus", &iommus))
		return parse_error(p, "missing");
	if (!json_object_is_type(iommus, json_type_array) || !json_object_array_length(iommus))
		return parse_error(p, "must be a non-empty array");
	parser_at(p, "devices");
	if (!json_object_object_get_ex(root, "devices", &devices))
		return parse_error(p, "missing");
	if (!json_object_is_type(devices, json_type_array))
		return parse_error(p, "must be an array");

	n = json_object_array_length(iommus);
	if (n > 64)
		return parse_error(p, "more than 64 IOMMU instances");
	d->iommus = uiommu_calloc(n, sizeof(*d->iommus));
	if (!d->iommus)
		return -ENOMEM;
	d->nr_iommus = (unsigned int)n;
	n = json_object_array_length(devices);
	if (n > 4096) {
		parser_at(p, "devices");
		rc = parse_error(p, "more than 4096 devices");
		goto err_free_desc;
	}
	/* One more than needed so that an empty "devices" still gets a real allocation. */
	d->devices = uiommu_calloc(n + 1, sizeof(*d->devices));
	if (!d->devices) {
		rc = -ENOMEM;
		goto err_free_desc;
	}
	d->nr_devices = (unsigned int)n;

	for (unsigned int i = 0; i < d->nr_iommus; i++) {
		rc = parse_iommu(p, json_object_array_get_idx(iommus, i), i, d);
		if (rc)
			goto err_free_desc;
	}
	for (unsigned int i = 0; i < d->nr_devices; i++) {
		rc = parse_device(p, json_object_array_get_idx(devices, i), i, d);
		if (rc)
			goto err_free_desc;
	}
	if (json_object_object_get_ex(root, "policy", &policy)) {
		rc = parse_policy(p, policy, d);
		if (rc)
			goto err_free_desc;
	}
	return 0;

err_free_desc:
	topo_desc_free(d);
	return rc;
}

/* Parses @text (of @len bytes) from @source into @d. */
static int topo_desc_parse_text(const char *source, const char *text, size_t len,
				struct topo_desc *d)
{
	struct topo_parser p = { .source = source };
	struct json_tokener *tok;
	struct json_object *root;
	int rc;

	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (!root || json_tokener_get_parse_end(tok) < len) {
		enum json_tokener_error jerr = json_tokener_get_error(tok);
		size_t end = json_tokener_get_parse_end(tok), line = 1;

		/* Trailing blanks after a complete document are fine; text is not. */
		if (root) {
			end += strspn(text + end, " \t\r\n");
			if (end == len)
				goto parsed;
		}
		for (size_t i = 0; i < end && i < len; i++)
			line += text[i] == '\n';
		fprintf(stderr, "uiommu: topology %s: line %zu: not valid JSON (%s)\n", source,
			line, root ? "text after the document" :
			jerr == json_tokener_continue ? "unexpected end of file" :
			json_tokener_error_desc(jerr));
		json_object_put(root);
		json_tokener_free(tok);
		return -EINVAL;
	}
parsed:
	json_tokener_free(tok);
	rc = topo_desc_parse(&p, root, d);
	json_object_put(root);
	return rc;
}

static int topo_read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	char *buf;
	int fd, rc;

	/* Non-blocking: opening a FIFO for reading would wait for a writer, forever. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		fprintf(stderr, "uiommu: topology %s: %s\n", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > TOPOLOGY_MAX_FILE) {
		fprintf(stderr, "uiommu: topology %s: not a regular file of at most %u bytes\n",
			path, TOPOLOGY_MAX_FILE);
		rc = -EINVAL;
		goto out_close;
	}
	buf = uiommu_zalloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	*text = buf;
	*len = got;
	rc = 0;
out_close:
	close(fd);
	return rc;
}

/* ---- instantiation ---------------------------------------------------------------------------- */

static struct topo_device *topo_find(const char *bdf)
{
	lockdep_assert_held(&topology_lock);
	for (unsigned int i = 0; i < topo.nr_devices; i++)
		if (!strcmp(topo.devices[i].dev->name, bdf))
			return &topo.devices[i];
	return NULL;
}

/*
 * The emulated driver's DMA engine: what a NIC's driver does all day, paced to a thousand
 * transfers a second. Each round maps a buffer with the DMA API, lets the device write a
 * pattern through its IOMMU and read it back, checks it, and unmaps. The thread runs only while
 * the driver is bound; unbinding stops and joins it before the driver lets go of the default
 * domain, as a driver's remove() quiesces DMA before returning. It takes no topology lock.
 */
static void *topo_dma_engine(void *arg)
{
	struct topo_device *td = arg;
	static const struct timespec pace = { 0, 1000000 };
	unsigned char *buf = aligned_alloc(4096, 4096);
	unsigned char pattern[64], check[64];
	unsigned long round = 0;

	if (!buf)
		return NULL;
	while (!atomic_load_explicit(&td->dma_stop, memory_order_acquire)) {
		dma_addr_t addr = dma_map_single(td->dev, buf, 4096, DMA_BIDIRECTIONAL);

		if (dma_mapping_error(td->dev, addr)) {
			atomic_fetch_add(&td->dma_errors, 1);
		} else {
			memset(pattern, (int)(round++ & 0xff), sizeof(pattern));
			if (dma_device_write(td->dev, addr, pattern, sizeof(pattern)) ||
			    dma_device_read(td->dev, addr, check, sizeof(check)) ||
			    memcmp(pattern, check, sizeof(check)))
				atomic_fetch_add(&td->dma_errors, 1);
			dma_unmap_single(td->dev, addr, 4096, DMA_BIDIRECTIONAL);
			atomic_fetch_add(&td->dma_ops, 1);
		}
		nanosleep(&pace, NULL);
	}
	free(buf);
	return NULL;
}

static int topo_device_bind(struct topo_device *td)
{
	const char *dma = getenv("UIOMMU_DRIVER_DMA");
	int rc;

	lockdep_assert_held(&topology_lock);
	rc = iommu_device_use_default_domain(td->dev);
	if (rc)
		return rc;
	td->bound = true;
	td->dev->driver_bound = true;
	if (dma && *dma && strcmp(dma, "0")) {
		atomic_store(&td->dma_stop, false);
		/* A driver without its DMA thread is still a bound driver: no error. */
		td->dma_running = !uiommu_should_fail() &&
				  !uiommu_thread_create(&td->dma_thread, NULL, topo_dma_engine, td);
	}
	return 0;
}

static void topo_device_unbind(struct topo_device *td)
{
	lockdep_assert_held(&topology_lock);
	if (td->dma_running) {
		atomic_store_explicit(&td->dma_stop, true, memory_order_release);
		pthread_join(td->dma_thread, NULL);
		td->dma_running = false;
		if (atomic_load(&td->dma_errors))
			fprintf(stderr, "uiommu: %s: the driver's DMA saw %lu errors in %lu transfers\n",
				td->dev->name, atomic_load(&td->dma_errors), atomic_load(&td->dma_ops));
	}
	td->dev->driver_bound = false;
	td->bound = false;
	/* Pairs with topo_device_bind(). */
	iommu_device_unuse_default_domain(td->dev);
}

/*
 * vfio-pci's probe: the lowest free vfioN (one global index, as the kernel's vfio device IDA),
 * and the group node's minor: the one another vfio-pci function of the group has, else the
 * lowest free (the kernel's vfio group minors, a slot per group that has a VFIO device).
 * vfio-pci binds no DMA API: it claims nothing in the core (driver_managed_dma).
 */
static int topo_vfio_bind(struct topo_device *td)
{
	struct iommu_group *group;
	int index = 0, minor = -1, free_minor = 0;
	bool again;

	lockdep_assert_held(&topology_lock);
	group = iommu_group_get(td->dev);
	if (!group)
		return -EINVAL; /* vfio-pci refuses a function without an IOMMU group */
	do {
		again = false;
		for (unsigned int i = 0; i < topo.nr_devices; i++) {
			if (topo.devices[i].vfio_index == index) {
				index++;
				again = true;
			}
		}
	} while (again);
	for (unsigned int i = 0; i < topo.nr_devices && minor < 0; i++) {
		struct topo_device *o = &topo.devices[i];
		struct iommu_group *og;

		if (o->vfio_index < 0 || !o->present)
			continue;
		og = iommu_group_get(o->dev);
		if (og == group)
			minor = o->vfio_group_minor;
		if (og)
			iommu_group_put(og);
	}
	iommu_group_put(group);
	if (minor < 0) {
		do {
			again = false;
			for (unsigned int i = 0; i < topo.nr_devices; i++) {
				if (topo.devices[i].vfio_index >= 0 &&
				    topo.devices[i].vfio_group_minor == free_minor) {
					free_minor++;
					again = true;
				}
			}
		} while (again);
		minor = free_minor;
	}
	td->vfio_index = index;
	td->vfio_group_minor = minor;
	return 0;
}

static void topo_vfio_unbind(struct topo_device *td)
{
	lockdep_assert_held(&topology_lock);
	td->vfio_index = -1;
	td->vfio_group_minor = -1;
}

/* Would the driver core match @td to @driver? driver_override, when set, decides alone. */
static bool topo_driver_matches(const struct topo_device *td, const char *driver)
{
	if (td->driver_override[0])
		return !strcmp(td->driver_override, driver);
	/* vfio-pci's ID table matches only functions whose override asks for it. */
	return strcmp(driver, TOPOLOGY_VFIO_DRIVER) != 0;
}

int topology_dma_stats(const char *bdf, unsigned long *ops, unsigned long *errors)
{
	struct topo_device *td;
	int rc = 0;

	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	if (!td) {
		rc = -ENOENT;
	} else {
		*ops = atomic_load(&td->dma_ops);
		*errors = atomic_load(&td->dma_errors);
	}
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

/* Tears down whatever of the topology exists; every step checks how far the load got. */
static void topo_teardown(void)
{
	lockdep_assert_held(&topology_lock);
	for (unsigned int i = topo.nr_devices; i-- > 0;) {
		struct topo_device *td = &topo.devices[i];

		if (!td->dev)
			continue;
		if (td->bound)
			topo_device_unbind(td);
		if (td->vfio_index >= 0)
			topo_vfio_unbind(td);
		if (td->fn)
			pci_fn_destroy(td->fn);
		td->fn = NULL;
		if (td->present)
			iommu_release_device(td->dev);
		td->present = false;
		mock_device_forget(td->dev);
		s390_device_forget(td->dev);
		/* Pairs with device_alloc(); other holders (the DMA layer) keep theirs. */
		device_put(td->dev);
		td->dev = NULL;
	}
	while (topo.nr_registered) {
		struct iommu_device *iommu = &topo.iommus[--topo.nr_registered];

		if (s390_iommu_is_instance(iommu))
			s390_iommu_unregister(iommu);
		else if (vtd_iommu_is_instance(iommu))
			vtd_iommu_unregister(iommu);
		else if (arm_smmu_iommu_is_instance(iommu))
			arm_smmu_iommu_unregister(iommu);
		else
			mock_iommu_unregister(iommu);
	}
	uiommu_free(topo.devices);
	uiommu_free(topo.iommus);
	memset(&topo, 0, sizeof(topo));
}

static int topo_instantiate(const struct topo_desc *d)
{
	unsigned int i;
	int rc;

	lockdep_assert_held(&topology_lock);
	topo.iommus = uiommu_calloc(d->nr_iommus, sizeof(*topo.iommus));
	topo.devices = uiommu_calloc(d->nr_devices + 1, sizeof(*topo.devices));
	if (!topo.iommus || !topo.devices)
		return -ENOMEM;
	topo.nr_iommus = d->nr_iommus;
	topo.nr_devices = d->nr_devices;

	/* The boot command line comes before any probe. */
	if (d->has_policy)
		iommu_set_default_policy(d->passthrough, d->strict);

	for (i = 0; i < d->nr_iommus; i++) {
		struct iommu_device *iommu = &topo.iommus[i];

		snprintf(iommu->name, sizeof(iommu->name), "%s", d->iommus[i].name);
		iommu->max_pasids = d->iommus[i].max_pasids;
		iommu->deferred_flush = d->iommus[i].deferred_flush;
		iommu->dirty_tracking = d->iommus[i].dirty_tracking;
		iommu->msi_window = d->iommus[i].msi_window;
		if (d->iommus[i].s390)
			rc = s390_iommu_register(iommu, d->iommus[i].start_dma,
						 d->iommus[i].end_dma);
		else if (d->iommus[i].vtd)
			rc = vtd_iommu_register(iommu, &d->iommus[i].vtd_features);
		else if (d->iommus[i].smmuv3)
			rc = arm_smmu_iommu_register(iommu, &d->iommus[i].smmu);
		else
			rc = mock_iommu_register(iommu);
		if (rc)
			return rc;
		topo.nr_registered++;
	}

	for (i = 0; i < d->nr_devices; i++) {
		const struct topo_device_desc *dd = &d->devices[i];
		struct topo_device *td = &topo.devices[i];
		struct device *dev = device_alloc(dd->bdf);

		if (IS_ERR_OR_NULL(dev))
			return dev ? (int)PTR_ERR(dev) : -ENOMEM;
		td->dev = dev;
		td->iommu = dd->iommu;
		td->bind_on_plug = dd->bound;
		td->vfio_on_plug = dd->vfio;
		td->vfio_index = -1;
		td->vfio_group_minor = -1;
		snprintf(dev->group_key, sizeof(dev->group_key), "%s", dd->group_key);
		dev->iommu = &topo.iommus[dd->iommu];
		dev->untrusted = dd->untrusted;
		dev->pasid_bits = dd->pasid_bits;
		dev->ats = dd->ats;
		dev->pri = dd->pri;
		dev->dirty = dd->dirty;
		dev->driver_pref = dd->driver_pref;
		memcpy(dev->resv, dd->resv, sizeof(dev->resv));
		dev->nr_resv = dd->nr_resv;
	}

	/* Boot: probe every present device, then bind drivers, as the driver core would. */
	for (i = 0; i < d->nr_devices; i++) {
		struct topo_device *td = &topo.devices[i];

		if (!d->devices[i].present)
			continue;
		rc = iommu_probe_device(td->dev);
		if (rc) {
			fprintf(stderr, "uiommu: topology: probe of %s failed: %s\n",
				td->dev->name, strerror(-rc));
			return rc;
		}
		td->present = true;
	}
	/* Every function gets its config space (and its model) before any driver binds. */
	for (i = 0; i < d->nr_devices; i++) {
		struct topo_device *td = &topo.devices[i];
		struct uiommu_pci_fn *fn;

		fn = pci_fn_create(td->dev, d->devices[i].model, d->devices[i].class_code,
				   d->devices[i].backing);
		if (IS_ERR(fn)) {
			fprintf(stderr, "uiommu: topology: the PCI function of %s failed: %s\n",
				td->dev->name, strerror((int)-PTR_ERR(fn)));
			return (int)PTR_ERR(fn);
		}
		td->fn = fn;
		if (td->present)
			pci_fn_plug(fn);
	}
	for (i = 0; i < d->nr_devices; i++) {
		struct topo_device *td = &topo.devices[i];

		if (td->present && td->vfio_on_plug) {
			rc = topo_vfio_bind(td);
			if (rc) {
				fprintf(stderr, "uiommu: topology: binding vfio-pci to %s failed: %s\n",
					td->dev->name, strerror(-rc));
				return rc;
			}
		}
		if (!td->present || !td->bind_on_plug)
			continue;
		rc = topo_device_bind(td);
		if (rc) {
			fprintf(stderr, "uiommu: topology: binding the driver of %s failed: %s\n",
				td->dev->name, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int topology_load(const char *json_path)
{
	const char *source, *text;
	char *file_text = NULL;
	struct topo_desc d;
	size_t len = 0;
	int rc;

	if (!json_path) {
		const char *env = getenv(TOPOLOGY_ENV);

		if (env && *env)
			json_path = env;
	}
	if (json_path) {
		rc = topo_read_file(json_path, &file_text, &len);
		if (rc)
			return rc;
		source = json_path;
		text = file_text;
	} else {
		source = "(default)";
		text = topology_default;
		len = sizeof(topology_default) - 1;
	}

	/* Parse before taking the lock: a bad file touches nothing. */
	rc = topo_desc_parse_text(source, text, len, &d);
	uiommu_free(file_text);
	if (rc)
		return rc;

	uiommu_mutex_lock(&topology_lock);
	if (topo.loaded) {
		rc = -EBUSY;
		goto out_unlock;
	}
	rc = topo_instantiate(&d);
	if (rc) {
		topo_teardown();
		goto out_unlock;
	}
	snprintf(topo.source, sizeof(topo.source), "%s", source);
	topo.loaded = true;
out_unlock:
	uiommu_mutex_unlock(&topology_lock);
	topo_desc_free(&d);
	return rc;
}

void topology_unload(void)
{
	uiommu_mutex_lock(&topology_lock);
	if (topo.loaded)
		topo_teardown();
	uiommu_mutex_unlock(&topology_lock);
}

bool topology_loaded(void)
{
	bool loaded;

	uiommu_mutex_lock(&topology_lock);
	loaded = topo.loaded;
	uiommu_mutex_unlock(&topology_lock);
	return loaded;
}

int topology_source(char *buf, size_t len)
{
	int rc = -ENOENT;

	uiommu_mutex_lock(&topology_lock);
	if (topo.loaded) {
		snprintf(buf, len, "%s", topo.source);
		rc = 0;
	}
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

/* ---- lookups and iteration ---------------------------------------------------------------- */

struct device *topology_find_device(const char *bdf)
{
	struct topo_device *td;

	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	uiommu_mutex_unlock(&topology_lock);
	return td ? td->dev : NULL;
}

struct iommu_device *topology_find_iommu(const char *name)
{
	struct iommu_device *found = NULL;

	uiommu_mutex_lock(&topology_lock);
	for (unsigned int i = 0; i < topo.nr_iommus; i++)
		if (!strcmp(topo.iommus[i].name, name))
			found = &topo.iommus[i];
	uiommu_mutex_unlock(&topology_lock);
	return found;
}

unsigned int topology_nr_devices(void)
{
	unsigned int n;

	uiommu_mutex_lock(&topology_lock);
	n = topo.nr_devices;
	uiommu_mutex_unlock(&topology_lock);
	return n;
}

unsigned int topology_nr_iommus(void)
{
	unsigned int n;

	uiommu_mutex_lock(&topology_lock);
	n = topo.nr_iommus;
	uiommu_mutex_unlock(&topology_lock);
	return n;
}

struct device *topology_device_at(unsigned int i)
{
	struct device *dev = NULL;

	uiommu_mutex_lock(&topology_lock);
	if (i < topo.nr_devices)
		dev = topo.devices[i].dev;
	uiommu_mutex_unlock(&topology_lock);
	return dev;
}

struct iommu_device *topology_iommu_at(unsigned int i)
{
	struct iommu_device *iommu = NULL;

	uiommu_mutex_lock(&topology_lock);
	if (i < topo.nr_iommus)
		iommu = &topo.iommus[i];
	uiommu_mutex_unlock(&topology_lock);
	return iommu;
}

static void topo_fill_info(struct topo_device *td, struct topology_device_info *info)
{
	lockdep_assert_held(&topology_lock);
	info->dev = td->dev;
	info->bdf = td->dev->name;
	info->iommu = topo.iommus[td->iommu].name;
	info->present = td->present;
	info->bound = td->bound;
	info->bind_on_plug = td->bind_on_plug;
	info->vfio = td->vfio_index >= 0;
	info->vfio_on_plug = td->vfio_on_plug;
	info->vfio_index = td->vfio_index;
	info->vfio_group_minor = td->vfio_group_minor;
	info->vfio_users = td->vfio_users;
	snprintf(info->driver_override, sizeof(info->driver_override), "%s", td->driver_override);
}

int topology_device_get_info(const char *bdf, struct topology_device_info *info)
{
	struct topo_device *td;
	int rc = -ENOENT;

	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	if (td) {
		topo_fill_info(td, info);
		rc = 0;
	}
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

int topology_for_each_device(int (*fn)(const struct topology_device_info *info, void *arg),
			     void *arg)
{
	struct topology_device_info info;
	int rc = 0;

	uiommu_mutex_lock(&topology_lock);
	for (unsigned int i = 0; !rc && i < topo.nr_devices; i++) {
		topo_fill_info(&topo.devices[i], &info);
		rc = fn(&info, arg);
	}
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

int topology_for_each_iommu(int (*fn)(struct iommu_device *iommu, void *arg), void *arg)
{
	int rc = 0;

	uiommu_mutex_lock(&topology_lock);
	for (unsigned int i = 0; !rc && i < topo.nr_iommus; i++)
		rc = fn(&topo.iommus[i], arg);
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

/* ---- hot-plug and driver binding ------------------------------------------------------------ */

int topology_unplug(const char *bdf)
{
	return topology_unplug_held(bdf, 0);
}

int topology_unplug_held(const char *bdf, unsigned int held)
{
	struct iommu_group_info ginfo;
	struct iommu_group *group;
	struct topo_device *td;
	int rc = 0;

	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	if (!td) {
		rc = -ENOENT;
		goto out_unlock;
	}
	if (!td->present) {
		rc = -EBUSY;
		goto out_unlock;
	}
	/*
	 * The last device of a group a user owns would leave the group owned and empty (the
	 * core warns). Best effort: a claim racing in after this check is the claimer's bug, as
	 * in the kernel, where a user must hold a driver (vfio-pci) on a device it owns.
	 */
	group = iommu_group_get(td->dev);
	if (group) {
		iommu_group_get_info(group, &ginfo);
		iommu_group_put(group);
		if ((ginfo.owned || (held & TOPOLOGY_HELD_OWNED)) && ginfo.nr_devices == 1) {
			rc = -EBUSY;
			goto out_unlock;
		}
	}
	/* VFIO's remove waits for the device's users to close; we refuse instead of waiting. */
	if (td->vfio_users || (held & TOPOLOGY_HELD_OPEN)) {
		rc = -EBUSY;
		goto out_unlock;
	}
	if (td->bound)
		topo_device_unbind(td);
	if (td->vfio_index >= 0)
		topo_vfio_unbind(td);
	/* The function stops its DMA and lets its DMA handle go before it leaves the core. */
	pci_fn_unplug(td->fn);
	iommu_release_device(td->dev);
	td->present = false;
out_unlock:
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

int topology_plug(const char *bdf)
{
	struct topo_device *td;
	int rc;

	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	if (!td) {
		rc = -ENOENT;
		goto out_unlock;
	}
	if (td->present) {
		rc = -EBUSY;
		goto out_unlock;
	}
	rc = iommu_probe_device(td->dev);
	if (rc)
		goto out_unlock;
	td->present = true;
	pci_fn_plug(td->fn);
	/* A driver that cannot bind leaves the device plugged and driverless. */
	if (td->bind_on_plug)
		topo_device_bind(td);
	else if (td->vfio_on_plug)
		topo_vfio_bind(td);
out_unlock:
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

/*
 * Runs @op on the device @bdf under topology_lock, with what other processes hold on it
 * (TOPOLOGY_HELD_*): -ENOENT for an unknown BDF.
 */
static int topo_device_op(const char *bdf, unsigned int held,
			  int (*op)(struct topo_device *td, unsigned int held))
{
	struct topo_device *td;
	int rc;

	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	rc = td ? op(td, held) : -ENOENT;
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

static int topo_bind_op(struct topo_device *td, unsigned int held)
{
	if (!td->present)
		return -ENODEV;
	if (td->bound || td->vfio_index >= 0)
		return -EBUSY;
	if (!topo_driver_matches(td, TOPOLOGY_DMA_DRIVER))
		return -ENODEV;
	/* iommu_device_use_default_domain() against a user in another process. */
	if (held & TOPOLOGY_HELD_OWNED)
		return -EBUSY;
	return topo_device_bind(td);
}

static int topo_unbind_op(struct topo_device *td, unsigned int held)
{
	(void)held;
	if (!td->present)
		return -ENODEV;
	if (!td->bound)
		return -EINVAL;
	topo_device_unbind(td);
	return 0;
}

static int topo_vfio_bind_op(struct topo_device *td, unsigned int held)
{
	(void)held; /* vfio-pci manages DMA itself: nobody's ownership stops its bind */
	if (!td->present || !topo_driver_matches(td, TOPOLOGY_VFIO_DRIVER))
		return -ENODEV;
	if (td->bound || td->vfio_index >= 0)
		return -EBUSY;
	return topo_vfio_bind(td);
}

static int topo_vfio_unbind_op(struct topo_device *td, unsigned int held)
{
	if (!td->present || td->vfio_index < 0)
		return -ENODEV;
	if (td->vfio_users || (held & TOPOLOGY_HELD_OPEN))
		return -EBUSY; /* the kernel waits for the users to close */
	topo_vfio_unbind(td);
	return 0;
}

int topology_bind(const char *bdf)
{
	return topo_device_op(bdf, 0, topo_bind_op);
}

int topology_bind_held(const char *bdf, unsigned int held)
{
	return topo_device_op(bdf, held, topo_bind_op);
}

int topology_unbind(const char *bdf)
{
	return topo_device_op(bdf, 0, topo_unbind_op);
}

int topology_vfio_bind(const char *bdf)
{
	return topo_device_op(bdf, 0, topo_vfio_bind_op);
}

int topology_vfio_unbind(const char *bdf)
{
	return topo_device_op(bdf, 0, topo_vfio_unbind_op);
}

int topology_vfio_unbind_held(const char *bdf, unsigned int held)
{
	return topo_device_op(bdf, held, topo_vfio_unbind_op);
}

int topology_vfio_get(struct device *dev)
{
	int rc = -ENODEV;

	uiommu_mutex_lock(&topology_lock);
	for (unsigned int i = 0; i < topo.nr_devices; i++) {
		struct topo_device *td = &topo.devices[i];

		if (td->dev == dev && td->present && td->vfio_index >= 0) {
			td->vfio_users++;
			rc = 0;
		}
	}
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}

void topology_vfio_put(struct device *dev)
{
	uiommu_mutex_lock(&topology_lock);
	for (unsigned int i = 0; i < topo.nr_devices; i++)
		if (topo.devices[i].dev == dev && !WARN_ON(!topo.devices[i].vfio_users))
			topo.devices[i].vfio_users--;
	uiommu_mutex_unlock(&topology_lock);
}

int topology_set_driver_override(const char *bdf, const char *driver)
{
	struct topo_device *td;
	int rc = 0;

	if (strlen(driver) >= TOPOLOGY_DRIVER_NAME_MAX)
		return -EINVAL;
	uiommu_mutex_lock(&topology_lock);
	td = topo_find(bdf);
	if (!td)
		rc = -ENOENT;
	else
		snprintf(td->driver_override, sizeof(td->driver_override), "%s", driver);
	uiommu_mutex_unlock(&topology_lock);
	return rc;
}
