// SPDX-License-Identifier: MIT
/*
 * White-box tests of the emulated machine (src/machine/topology.c) and of the mock driver under
 * it (src/drivers/mock/mock.c): what the embedded default builds in the core, that
 * examples/topology.json is that default, the $UIOMMU_TOPOLOGY path, a malformed file per
 * schema rule (-EINVAL, and the message names the field), hot-unplug and re-plug cycles with
 * the driver's release counter, driver bind and unbind, and a fault-injection sweep over the
 * whole load. Each case runs in its own process, so each starts with nothing loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/arm-smmu-v3/arm-smmu-v3-iommu.h"
#include "drivers/intel/vtd.h"
#include "drivers/mock/mock.h"
#include "harness.h"
#include "topology_file.h"
#include "iommu/iommu.h"
#include "iommu/iotlb.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

#define BDF_GPU "0000:00:02.0"
#define BDF_NIC "0000:00:03.0"
#define BDF_USB "0000:00:14.0"
#define BDF_SW0 "0000:01:00.0"
#define BDF_SW1 "0000:01:00.1"
#define BDF_SW2 "0000:01:00.2"
#define BDF_TBT "0000:02:00.0"
#define BDF_SVA "0000:03:00.0"
#define BDF_MIG "0000:04:00.0"
#define BDF_SMMU "0000:08:00.0"
#define BDF_VTD "0000:09:00.0"

/* The functions behind the two mock instances; the models' two follow them in the file. */
static const char *const default_bdfs[] = { BDF_GPU, BDF_NIC, BDF_USB, BDF_SW0, BDF_SW1,
					    BDF_SW2, BDF_TBT, BDF_SVA, BDF_MIG };
#define DEFAULT_NR_DEVICES (ARRAY_SIZE(default_bdfs) + 2)

static void group_info(const char *bdf, struct iommu_group_info *info)
{
	struct device *dev = topology_find_device(bdf);
	struct iommu_group *group = dev ? iommu_group_get(dev) : NULL;

	memset(info, 0xff, sizeof(*info));
	if (!group)
		return;
	iommu_group_get_info(group, info);
	iommu_group_put(group);
}

static struct iommu_group *group_of(const char *bdf)
{
	struct device *dev = topology_find_device(bdf);
	struct iommu_group *group = dev ? iommu_group_get(dev) : NULL;

	/* Only the identity is wanted: the devices' own references keep it alive. */
	iommu_group_put(group);
	return group;
}

/* Writes @text to a new temporary file; returns its path (static buffer per slot). */
static const char *write_temp(const char *text, unsigned int slot)
{
	static char paths[4][64];
	char *path = paths[slot % 4];

	snprintf(path, sizeof(paths[0]), "/tmp/uiommu-topo-XXXXXX");
	return topology_file_write(path, text) ? NULL : path;
}

/* Runs topology_load(@path) with stderr captured into @msg. */
static int load_capturing(const char *path, char *msg, size_t len)
{
	char tmpl[] = "/tmp/uiommu-stderr-XXXXXX";
	int saved, fd, rc;
	ssize_t n;

	fflush(stderr);
	saved = dup(2);
	fd = mkstemp(tmpl);
	if (saved < 0 || fd < 0)
		return -1000;
	unlink(tmpl);
	dup2(fd, 2);
	rc = topology_load(path);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, msg, len - 1, 0);
	msg[n > 0 ? n : 0] = 0;
	close(fd);
	return rc;
}

static const char *find_example(void)
{
	static char found[4096];
	const char *candidates[] = { "examples/topology.json", "../examples/topology.json",
				     "../../examples/topology.json", NULL };
	char exe[4096], src[4096];
	ssize_t n;

	for (const char *const *c = candidates; *c; c++)
		if (!access(*c, R_OK))
			return *c;
	/* The build directory is usually inside the source tree: try from the executable. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		for (int up = 1; up <= 3; up++) {
			char *d = dirname(exe);

			snprintf(found, sizeof(found), "%s/examples/topology.json", d);
			if (!access(found, R_OK))
				return found;
		}
	}
	/* Or from the path this file was compiled as, relative to the build directory. */
	snprintf(src, sizeof(src), "%s", __FILE__);
	snprintf(found, sizeof(found), "%s/../examples/topology.json", dirname(src));
	return access(found, R_OK) ? NULL : found;
}

/* ---- the embedded default ------------------------------------------------------------------- */

TEST(default_topology)
{
	struct iommu_group_info gi;
	struct iommu_group *groups[ARRAY_SIZE(default_bdfs)];
	unsigned int nr_groups = 0;
	struct iommu_device *iommu0, *iommu1, *smmu, *dmar;
	struct device *dev;
	char src[64];

	unsetenv(TOPOLOGY_ENV);
	ASSERT_FALSE(topology_loaded());
	ASSERT_EQ(topology_load(NULL), 0);
	ASSERT_TRUE(topology_loaded());
	ASSERT_EQ(topology_source(src, sizeof(src)), 0);
	ASSERT_EQ(strcmp(src, "(default)"), 0);

	/*
	 * Two mock instances, one with deferred flush and PASIDs and dirty tracking, then one of
	 * each model.
	 */
	ASSERT_EQ(topology_nr_iommus(), 4);
	iommu0 = topology_find_iommu("iommu0");
	iommu1 = topology_find_iommu("iommu1");
	smmu = topology_find_iommu("smmu0");
	dmar = topology_find_iommu("dmar0");
	ASSERT_TRUE(iommu0 && iommu1 && smmu && dmar);
	ASSERT_TRUE(topology_iommu_at(0) == iommu0);
	ASSERT_TRUE(topology_iommu_at(2) == smmu);
	ASSERT_TRUE(topology_iommu_at(3) == dmar);
	ASSERT_TRUE(topology_iommu_at(4) == NULL);
	ASSERT_TRUE(arm_smmu_iommu_is_instance(smmu));
	ASSERT_TRUE(vtd_iommu_is_instance(dmar));
	ASSERT_FALSE(arm_smmu_iommu_is_instance(iommu0));
	ASSERT_FALSE(vtd_iommu_is_instance(iommu0));
	ASSERT_TRUE(iommu0->deferred_flush);
	ASSERT_FALSE(iommu1->deferred_flush);
	ASSERT_EQ(iommu0->max_pasids, 1u << 20);
	ASSERT_TRUE(iommu0->ops == &mock_iommu_ops);

	/* Every device present, in file order, each in exactly one group. */
	ASSERT_EQ(topology_nr_devices(), DEFAULT_NR_DEVICES);
	for (unsigned int i = 0; i < ARRAY_SIZE(default_bdfs); i++) {
		struct iommu_group *g;
		unsigned int j;

		dev = topology_find_device(default_bdfs[i]);
		ASSERT_TRUE(dev != NULL);
		ASSERT_TRUE(topology_device_at(i) == dev);
		ASSERT_TRUE(dev->iommu_group != NULL);
		ASSERT_EQ(mock_probe_count(dev), 1);
		ASSERT_EQ(mock_release_count(dev), 0);
		g = group_of(default_bdfs[i]);
		for (j = 0; j < nr_groups && groups[j] != g; j++)
			;
		if (j == nr_groups)
			groups[nr_groups++] = g;
		/* The driver's view of the attachment is the core's. */
		group_info(default_bdfs[i], &gi);
		ASSERT_TRUE(mock_attached_domain(dev) != NULL);
		ASSERT_EQ(mock_attached_domain(dev)->id, gi.domain_id);
		ASSERT_TRUE(gi.domain_is_default);
	}
	ASSERT_TRUE(topology_find_device("0000:00:05.0") == NULL);
	ASSERT_TRUE(topology_device_at(DEFAULT_NR_DEVICES) == NULL);
	/* The models' dma-test functions: each alone in its group, vfio-pci's, PRI-capable. */
	for (unsigned int i = 0; i < 2; i++) {
		const char *bdf = i ? BDF_VTD : BDF_SMMU;
		struct topology_device_info info;

		dev = topology_find_device(bdf);
		ASSERT_TRUE(dev != NULL);
		ASSERT_TRUE(topology_device_at(ARRAY_SIZE(default_bdfs) + i) == dev);
		ASSERT_TRUE(dev->iommu == (i ? dmar : smmu));
		ASSERT_TRUE(dev->pri);
		ASSERT_EQ(dev->pasid_bits, 20);
		ASSERT_EQ(topology_device_get_info(bdf, &info), 0);
		ASSERT_TRUE(info.present);
		ASSERT_FALSE(info.bound);
		ASSERT_EQ(strcmp(info.iommu, i ? "dmar0" : "smmu0"), 0);
		group_info(bdf, &gi);
		ASSERT_EQ(gi.nr_devices, 1);
		ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_DMA);
		for (unsigned int j = 0; j < nr_groups; j++)
			ASSERT_TRUE(groups[j] != group_of(bdf));
	}

	/* The switch's three functions share one group; everyone else is alone. */
	ASSERT_EQ(nr_groups, 7);
	ASSERT_TRUE(group_of(BDF_SW0) == group_of(BDF_SW1));
	ASSERT_TRUE(group_of(BDF_SW0) == group_of(BDF_SW2));
	group_info(BDF_SW0, &gi);
	ASSERT_EQ(gi.nr_devices, 3);
	ASSERT_EQ(gi.owner_cnt, 2); /* two bound drivers */
	ASSERT_FALSE(gi.owned);
	ASSERT_TRUE(group_of(BDF_SW0) != group_of(BDF_TBT));

	/* Default domain types, by the kernel's rules. */
	group_info(BDF_GPU, &gi);
	ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_IDENTITY); /* the driver insists */
	ASSERT_EQ(gi.owner_cnt, 1);
	group_info(BDF_NIC, &gi);
	ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_DMA_FQ); /* global default, deferred flush */
	group_info(BDF_TBT, &gi);
	ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_DMA); /* untrusted */
	group_info(BDF_SVA, &gi);
	ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_DMA); /* the driver wants DMA */
	ASSERT_EQ(gi.owner_cnt, 0); /* not bound */
	group_info(BDF_SW0, &gi);
	ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_DMA); /* iommu1 cannot flush lazily */

	/* Device properties reach the core and the driver. */
	dev = topology_find_device(BDF_TBT);
	ASSERT_TRUE(dev->untrusted);
	dev = topology_find_device(BDF_USB);
	ASSERT_EQ(dev->nr_resv, 1);
	ASSERT_EQ(dev->resv[0].start, 0x7c000000u);
	ASSERT_EQ(dev->resv[0].length, 0x200000u);
	ASSERT_EQ(dev->resv[0].type, IOMMU_RESV_DIRECT);
	ASSERT_TRUE(dev->iommu_data->require_direct);
	/* The driver reports the RMRR, then the mock instance's MSI window (on by default). */
	{
		struct iommu_resv_region r[4];

		ASSERT_EQ(iommu_get_resv_regions(dev, r, 4), 2u);
		ASSERT_EQ(r[0].type, IOMMU_RESV_DIRECT);
		ASSERT_EQ(r[1].start, 0xfee00000u);
		ASSERT_EQ(r[1].length, 0x100000u);
		ASSERT_EQ(r[1].type, IOMMU_RESV_MSI);
		ASSERT_EQ(iommu_get_resv_regions(dev, r, 1), 1u);
	}
	dev = topology_find_device(BDF_SVA);
	ASSERT_EQ(dev->pasid_bits, 20);
	ASSERT_TRUE(dev->pri);
	ASSERT_EQ(dev->iommu_data->max_pasids, 1u << 20);
	ASSERT_EQ(topology_find_device(BDF_TBT)->iommu_data->max_pasids, 0);
	dev = topology_find_device(BDF_MIG);
	ASSERT_TRUE(mock_iommu_ops.capable(dev, IOMMU_CAP_DIRTY_TRACKING));
	ASSERT_FALSE(mock_iommu_ops.capable(topology_find_device(BDF_NIC),
					    IOMMU_CAP_DIRTY_TRACKING));
	/* ATS: the PRI device has it (PRI implies it), the others do not. */
	ASSERT_TRUE(topology_find_device(BDF_SVA)->ats);
	ASSERT_TRUE(mock_iommu_ops.capable(topology_find_device(BDF_SVA),
					   IOMMU_CAP_PCI_ATS_SUPPORTED));
	ASSERT_FALSE(mock_iommu_ops.capable(dev, IOMMU_CAP_PCI_ATS_SUPPORTED));
	ASSERT_TRUE(mock_iommu_ops.capable(dev, IOMMU_CAP_DEFERRED_FLUSH));
	ASSERT_FALSE(mock_iommu_ops.capable(topology_find_device(BDF_TBT),
					    IOMMU_CAP_DEFERRED_FLUSH));
	ASSERT_TRUE(mock_iommu_ops.capable(dev, IOMMU_CAP_CACHE_COHERENCY));

	/* A second load is refused; unload leaves nothing. */
	ASSERT_EQ(topology_load(NULL), -EBUSY);
	topology_unload();
	ASSERT_FALSE(topology_loaded());
	ASSERT_EQ(topology_nr_devices(), 0);
	ASSERT_TRUE(topology_find_device(BDF_NIC) == NULL);
	ASSERT_EQ(topology_source(src, sizeof(src)), -ENOENT);
	topology_unload(); /* idempotent */
}

static int count_device(const struct topology_device_info *info, void *arg)
{
	unsigned int *n = arg;

	if (!info->present || strcmp(info->bdf, info->dev->name))
		return -1;
	n[0]++;
	n[1] += info->bound;
	n[2] += !strcmp(info->iommu, "iommu1");
	return 0;
}

static int count_iommu(struct iommu_device *iommu, void *arg)
{
	(*(unsigned int *)arg)++;
	return strcmp(iommu->name, "iommu1") ? 0 : 42; /* stops at iommu1 */
}

TEST(iteration)
{
	unsigned int n[3] = { 0 }, m = 0;
	struct topology_device_info info;

	ASSERT_EQ(topology_load(NULL), 0);
	ASSERT_EQ(topology_for_each_device(count_device, n), 0);
	ASSERT_EQ(n[0], 11);
	ASSERT_EQ(n[1], 6);
	ASSERT_EQ(n[2], 4);
	ASSERT_EQ(topology_for_each_iommu(count_iommu, &m), 42);
	ASSERT_EQ(m, 2);
	ASSERT_EQ(topology_device_get_info(BDF_SW2, &info), 0);
	ASSERT_TRUE(info.present);
	ASSERT_FALSE(info.bound);
	ASSERT_FALSE(info.bind_on_plug);
	ASSERT_EQ(strcmp(info.iommu, "iommu1"), 0);
	ASSERT_EQ(topology_device_get_info("0000:0a:00.0", &info), -ENOENT);
	topology_unload();
}

/* ---- files ----------------------------------------------------------------------------------- */

TEST(example_is_the_default)
{
	const char *path = find_example();
	char buf[8192], src[4096];
	ssize_t n;
	int fd;

	if (!path)
		SKIP("examples/topology.json not found from here");
	fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ASSERT_GT(n, 0);
	buf[n] = 0;
	ASSERT_EQ(strcmp(buf, topology_default_json()), 0);

	ASSERT_EQ(topology_load(path), 0);
	ASSERT_EQ(topology_source(src, sizeof(src)), 0);
	ASSERT_EQ(strcmp(src, path), 0);
	ASSERT_EQ(topology_nr_devices(), DEFAULT_NR_DEVICES);
	topology_unload();
}

static const char small_topology[] =
	"{ \"iommus\": [ { \"name\": \"x0\", \"max_pasids\": \"0x100\" } ],\n"
	"  \"policy\": { \"passthrough\": false, \"strict\": true },\n"
	"  \"devices\": [ { \"bdf\": \"0001:0a:1f.7\", \"iommu\": \"x0\", \"present\": false,\n"
	"                   \"bound\": true, \"pasid_bits\": 4, \"driver\": null },\n"
	"                 { \"bdf\": \"0001:0a:00.0\", \"iommu\": \"x0\", \"group\": \"g\" },\n"
	"                 { \"bdf\": \"0001:0a:00.1\", \"iommu\": \"x0\", \"group\": \"g\" } ] }\n";

TEST(env_and_file)
{
	const char *path = write_temp(small_topology, 0);
	struct iommu_group_info gi;
	struct topology_device_info info;
	struct device *dev;
	char src[64];

	ASSERT_TRUE(path != NULL);
	ASSERT_EQ(setenv(TOPOLOGY_ENV, path, 1), 0);
	ASSERT_EQ(topology_load(NULL), 0);
	ASSERT_EQ(topology_source(src, sizeof(src)), 0);
	ASSERT_EQ(strcmp(src, path), 0);
	ASSERT_EQ(topology_nr_iommus(), 1);
	ASSERT_EQ(topology_nr_devices(), 3);
	ASSERT_EQ(topology_find_iommu("x0")->max_pasids, 256);
	/* "policy": strict turns the global DMA-FQ into DMA. */
	group_info("0001:0a:00.0", &gi);
	ASSERT_EQ(gi.default_type, IOMMU_DOMAIN_DMA);
	ASSERT_EQ(gi.nr_devices, 2);

	/* Not present at boot: no group until plugged, then bound as the file says. */
	dev = topology_find_device("0001:0a:1f.7");
	ASSERT_TRUE(dev->iommu_group == NULL);
	ASSERT_EQ(topology_plug("0001:0a:1f.7"), 0);
	ASSERT_EQ(dev->iommu_data->max_pasids, 16);
	ASSERT_EQ(topology_device_get_info("0001:0a:1f.7", &info), 0);
	ASSERT_TRUE(info.present && info.bound && dev->driver_bound);
	topology_unload();
	unlink(path);

	/* A file that is not there. */
	ASSERT_EQ(setenv(TOPOLOGY_ENV, "/nonexistent/topology.json", 1), 0);
	char msg[512];

	ASSERT_EQ(load_capturing(NULL, msg, sizeof(msg)), -ENOENT);
	ASSERT_TRUE(strstr(msg, "/nonexistent/topology.json") != NULL);
	/* An empty variable means the default. */
	ASSERT_EQ(setenv(TOPOLOGY_ENV, "", 1), 0);
	ASSERT_EQ(topology_load(NULL), 0);
	ASSERT_EQ(topology_nr_devices(), DEFAULT_NR_DEVICES);
	topology_unload();
	unsetenv(TOPOLOGY_ENV);
}

/* ---- malformed files --------------------------------------------------------------------------- */

#define IO0 "\"iommus\": [ { \"name\": \"i0\" } ]"
#define DEV(extra) "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:01.0\", \"iommu\": \"i0\"" \
		   extra " } ] }"

static const struct {
	const char *text;
	const char *says; /* the field (or complaint) the message must name */
} malformed[] = {
	{ "", "line 1" },
	{ "{", "unexpected end" },
	{ "{ \"iommus\": [ ,] }", "line 1" },
	{ "{ \"iommus\": [] }\n\n  x", "line 3" },
	{ "[]", "top level" },
	{ "{ \"devices\": [] }", "iommus: missing" },
	{ "{ \"iommus\": [], \"devices\": [] }", "iommus: must be a non-empty array" },
	{ "{ " IO0 " }", "devices: missing" },
	{ "{ " IO0 ", \"devices\": {} }", "devices: must be an array" },
	{ "{ " IO0 ", \"devices\": [], \"device\": [] }", "device: unknown field" },
	{ "{ \"iommus\": [ 3 ], \"devices\": [] }", "iommus[0]: must be an object" },
	{ "{ \"iommus\": [ {} ], \"devices\": [] }", "iommus[0].name: missing" },
	{ "{ \"iommus\": [ { \"name\": \"\" } ], \"devices\": [] }", "iommus[0].name: must not" },
	{ "{ \"iommus\": [ { \"name\": 7 } ], \"devices\": [] }", "iommus[0].name: must be a string" },
	{ "{ \"iommus\": [ { \"name\": \"a\" }, { \"name\": \"a\" } ], \"devices\": [] }",
	  "iommus[1].name" },
	{ "{ \"iommus\": [ { \"name\": \"0123456789012345678901234567890123\" } ], "
	  "\"devices\": [] }", "iommus[0].name: longer" },
	{ "{ \"iommus\": [ { \"name\": \"..\" } ], \"devices\": [] }", "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \".\" } ], \"devices\": [] }", "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"../../etc\" } ], \"devices\": [] }",
	  "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"a/b\" } ], \"devices\": [] }", "iommus[0].name: not a dev" },
	/* A newline would forge a line of the control protocol ("ok") or of the journal. */
	{ "{ \"iommus\": [ { \"name\": \"i0\\nok\" } ], \"devices\": [] }",
	  "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"i 0\" } ], \"devices\": [] }", "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"i\\t0\" } ], \"devices\": [] }",
	  "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"i\\u007f\" } ], \"devices\": [] }",
	  "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"\\u00e9t\\u00e9\" } ], \"devices\": [] }",
	  "iommus[0].name: not a dev" },
	{ "{ \"iommus\": [ { \"name\": \"i0\\u0000/..\" } ], \"devices\": [] }",
	  "iommus[0].name: holds a NUL" },
	{ DEV(", \"group\": \"g\\u0000h\""), "devices[0].group: holds a NUL" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"intel\" } ], \"devices\": [] }",
	  "iommus[0].driver" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"max_pasids\": -1 } ], \"devices\": [] }",
	  "iommus[0].max_pasids" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"max_pasids\": 1048577 } ], \"devices\": [] }",
	  "iommus[0].max_pasids" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"max_pasids\": \"0xzz\" } ], \"devices\": [] }",
	  "iommus[0].max_pasids" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"deferred_flush\": 1 } ], \"devices\": [] }",
	  "iommus[0].deferred_flush" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"dirty\": true } ], \"devices\": [] }",
	  "iommus[0].dirty: unknown field" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"msi_window\": 1 } ], \"devices\": [] }",
	  "iommus[0].msi_window" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"s390\", \"msi_window\": true } ], "
	  "\"devices\": [] }", "iommus[0].msi_window: the s390 driver has no MSI window" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"msi_window\": true } ], "
	  "\"devices\": [] }", "iommus[0].msi_window: the smmuv3 driver has no MSI window" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"nesting\": false } ], \"devices\": [] }",
	  "iommus[0].nesting: a feature of \"driver\": \"smmuv3\": put it in its \"features\"" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"nesting\": false } ], "
	  "\"devices\": [] }",
	  "iommus[0].nesting: a feature of \"driver\": \"smmuv3\": put it in its \"features\"" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"httu\": true } ], "
	  "\"devices\": [] }", "iommus[0].httu: a feature of \"driver\": \"smmuv3\"" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"ssid_bits\": 8 } ], "
	  "\"devices\": [] }", "iommus[0].ssid_bits: a feature of \"driver\": \"smmuv3\"" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"features\": { \"nesting\": false } } ], "
	  "\"devices\": [] }", "iommus[0].features: needs \"driver\": \"vtd\" or \"smmuv3\"" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"s390\", \"features\": {} } ], "
	  "\"devices\": [] }", "iommus[0].features: needs \"driver\": \"vtd\" or \"smmuv3\"" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"features\": "
	  "{ \"ssid_bits\": 21 } } ], \"devices\": [] }", "iommus[0].features.ssid_bits" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"features\": "
	  "{ \"httu\": 1 } } ], \"devices\": [] }", "iommus[0].features.httu: must be true or false" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"features\": "
	  "{ \"nest\": true } } ], \"devices\": [] }", "iommus[0].features.nest: unknown field" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"features\": [] } ], "
	  "\"devices\": [] }", "iommus[0].features: must be an object" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\", \"max_pasids\": 4 } ], "
	  "\"devices\": [] }", "iommus[0]: smmuv3: max_pasids and dirty_tracking" },
	{ "{ \"iommus\": [ { \"name\": \"a\", \"driver\": \"smmuv3\" } ], \"devices\": [ "
	  "{ \"bdf\": \"0000:00:01.0\", \"iommu\": \"a\", \"group\": \"g\" } ] }",
	  "smmuv3 devices have groups of their own" },
	{ "{ " IO0 ", \"devices\": [ 1 ] }", "devices[0]: must be an object" },
	{ "{ " IO0 ", \"devices\": [ { \"iommu\": \"i0\" } ] }", "devices[0].bdf: missing" },
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"00:01.0\", \"iommu\": \"i0\" } ] }",
	  "devices[0].bdf" },
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:20.0\", \"iommu\": \"i0\" } ] }",
	  "devices[0].bdf" },
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:01.8\", \"iommu\": \"i0\" } ] }",
	  "devices[0].bdf" },
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:0A.0\", \"iommu\": \"i0\" } ] }",
	  "devices[0].bdf" },
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:01.0\", \"iommu\": \"i0\" }, "
	  "{ \"bdf\": \"0000:00:01.0\", \"iommu\": \"i0\" } ] }", "devices[1].bdf" },
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:01.0\" } ] }", "devices[0].iommu: missing" },
	{ DEV(", \"iommu\": \"i1\""), "devices[0]" }, /* a duplicate key: json-c keeps the last */
	{ "{ " IO0 ", \"devices\": [ { \"bdf\": \"0000:00:01.0\", \"iommu\": \"i9\" } ] }",
	  "devices[0].iommu: no IOMMU" },
	{ "{ \"iommus\": [ { \"name\": \"i0\" }, { \"name\": \"i1\" } ], \"devices\": [ "
	  "{ \"bdf\": \"0000:00:01.0\", \"iommu\": \"i0\", \"group\": \"g\" }, "
	  "{ \"bdf\": \"0000:00:02.0\", \"iommu\": \"i1\", \"group\": \"g\" } ] }",
	  "devices[1].group" },
	{ DEV(", \"group\": 5"), "devices[0].group" },
	{ DEV(", \"untrusted\": \"yes\""), "devices[0].untrusted" },
	{ DEV(", \"resv_direct\": {}"), "devices[0].resv_direct: must be an array" },
	{ DEV(", \"resv_direct\": [ 1 ]"), "devices[0].resv_direct[0]" },
	{ DEV(", \"resv_direct\": [ { \"start\": 4096 } ]"), "devices[0].resv_direct[0].length" },
	{ DEV(", \"resv_direct\": [ { \"length\": 4096 } ]"), "devices[0].resv_direct[0].start" },
	{ DEV(", \"resv_direct\": [ { \"start\": 4095, \"length\": 4096 } ]"),
	  "devices[0].resv_direct[0].start" },
	{ DEV(", \"resv_direct\": [ { \"start\": 4096, \"length\": 0 } ]"),
	  "devices[0].resv_direct[0].length" },
	{ DEV(", \"resv_direct\": [ { \"start\": \"0xfffffffffffff000\", \"length\": 8192 } ]"),
	  "devices[0].resv_direct[0].length" },
	{ DEV(", \"resv_direct\": [ { \"start\": 0, \"length\": 4096, \"prot\": 3 } ]"),
	  "devices[0].resv_direct[0].prot: unknown field" },
	{ DEV(", \"resv_direct\": [ {\"start\":0,\"length\":4096}, {\"start\":0,\"length\":4096}, "
	      "{\"start\":0,\"length\":4096}, {\"start\":0,\"length\":4096}, "
	      "{\"start\":0,\"length\":4096} ]"), "devices[0].resv_direct: at most" },
	{ DEV(", \"pasid_bits\": 21"), "devices[0].pasid_bits" },
	{ DEV(", \"pasid_bits\": 1.5"), "devices[0].pasid_bits" },
	{ DEV(", \"pri\": null"), "devices[0].pri" },
	{ DEV(", \"ats\": 1"), "devices[0].ats" },
	{ DEV(", \"pri\": true, \"ats\": false"), "devices[0].ats: \"pri\" needs \"ats\"" },
	{ DEV(", \"dirty\": 0"), "devices[0].dirty" },
	{ DEV(", \"driver\": \"passthrough\""), "devices[0].driver" },
	{ DEV(", \"driver\": 4"), "devices[0].driver" },
	{ DEV(", \"bound\": \"true\""), "devices[0].bound" },
	{ DEV(", \"present\": 1"), "devices[0].present" },
	{ DEV(", \"untrusted_\": true"), "devices[0].untrusted_: unknown field" },
	{ "{ " IO0 ", \"devices\": [], \"policy\": { \"lazy\": true } }", "policy.lazy" },
	{ "{ " IO0 ", \"devices\": [], \"policy\": { \"strict\": \"no\" } }", "policy.strict" },
};

TEST(malformed_files)
{
	/* Settled: deferred (RCU) frees still queued count as freed. */
	long live0 = uiommu_alloc_live_settled();
	char msg[1024];

	for (unsigned int i = 0; i < ARRAY_SIZE(malformed); i++) {
		const char *path = write_temp(malformed[i].text, i);
		int rc;

		ASSERT_TRUE(path != NULL);
		rc = load_capturing(path, msg, sizeof(msg));
		unlink(path);
		if (rc != -EINVAL || !strstr(msg, malformed[i].says) || !strstr(msg, path)) {
			TH_LOG("case %u: %s", i, malformed[i].text);
			TH_LOG("rc %d, message: %s", rc, msg);
			TH_LOG("wanted -EINVAL and a message naming \"%s\"", malformed[i].says);
			ASSERT_TRUE(false);
		}
		ASSERT_FALSE(topology_loaded());
		ASSERT_EQ(uiommu_alloc_live_settled(), live0);
	}
	/* A directory is not a topology file. */
	ASSERT_EQ(load_capturing("/tmp", msg, sizeof(msg)), -EINVAL);
	ASSERT_TRUE(strstr(msg, "not a regular file") != NULL);
	/* Nor is a FIFO, which must not block the load waiting for a writer. */
	char fifo_dir[] = "/tmp/uiommu-test-fifo.XXXXXX", fifo[64];

	ASSERT_TRUE(mkdtemp(fifo_dir) != NULL);
	snprintf(fifo, sizeof(fifo), "%s/f", fifo_dir);
	ASSERT_EQ(0, mkfifo(fifo, 0600));
	ASSERT_EQ(load_capturing(fifo, msg, sizeof(msg)), -EINVAL);
	ASSERT_TRUE(strstr(msg, "not a regular file") != NULL);
	ASSERT_FALSE(topology_loaded());
	unlink(fifo);
	rmdir(fifo_dir);
	/* The well-formed neighbour of the cases above loads. */
	const char *path = write_temp(DEV(", \"resv_direct\": [ { \"start\": \"0x1000\", "
					  "\"length\": 4096 } ], \"driver\": \"dma\""), 0);

	ASSERT_EQ(topology_load(path), 0);
	unlink(path);
	topology_unload();
	ASSERT_EQ(uiommu_alloc_live_settled(), live0);
}

TEST(failing_probe_unwinds_the_load)
{
	/* An untrusted device whose driver demands identity: the core refuses to probe it. */
	static const char text[] =
		"{ \"iommus\": [ { \"name\": \"i0\" } ], \"devices\": [\n"
		"  { \"bdf\": \"0000:00:01.0\", \"iommu\": \"i0\", \"bound\": true },\n"
		"  { \"bdf\": \"0000:00:02.0\", \"iommu\": \"i0\", \"untrusted\": true,\n"
		"    \"driver\": \"identity\", \"present\": %s } ] }\n";
	long live0 = uiommu_alloc_live_settled();
	char buf[512], msg[512];
	const char *path;

	snprintf(buf, sizeof(buf), text, "true");
	path = write_temp(buf, 0);
	ASSERT_EQ(load_capturing(path, msg, sizeof(msg)), -EINVAL);
	ASSERT_TRUE(strstr(msg, "0000:00:02.0") != NULL);
	ASSERT_FALSE(topology_loaded());
	ASSERT_EQ(uiommu_alloc_live_settled(), live0);
	unlink(path);

	/* Absent at boot, the load works and the plug reports the probe's errno. */
	snprintf(buf, sizeof(buf), text, "false");
	path = write_temp(buf, 0);
	ASSERT_EQ(topology_load(path), 0);
	unlink(path);
	ASSERT_EQ(topology_plug("0000:00:02.0"), -EINVAL);
	ASSERT_TRUE(topology_find_device("0000:00:02.0")->iommu_group == NULL);
	ASSERT_EQ(topology_unplug("0000:00:02.0"), -EBUSY); /* still absent */
	topology_unload();
	ASSERT_EQ(uiommu_alloc_live_settled(), live0);
}

/* ---- hot-plug ---------------------------------------------------------------------------------- */

TEST(plug_unplug_errors)
{
	ASSERT_EQ(topology_plug(BDF_NIC), -ENOENT); /* nothing loaded */
	ASSERT_EQ(topology_load(NULL), 0);
	ASSERT_EQ(topology_plug("0000:00:09.0"), -ENOENT);
	ASSERT_EQ(topology_unplug("0000:00:09.0"), -ENOENT);
	ASSERT_EQ(topology_plug(BDF_NIC), -EBUSY);
	ASSERT_EQ(topology_unplug(BDF_NIC), 0);
	ASSERT_EQ(topology_unplug(BDF_NIC), -EBUSY);
	ASSERT_EQ(topology_bind(BDF_NIC), -ENODEV);
	ASSERT_EQ(topology_unbind(BDF_NIC), -ENODEV);
	ASSERT_EQ(topology_plug(BDF_NIC), 0);
	topology_unload();
}

TEST(plug_unplug_cycles)
{
	struct device *devs[ARRAY_SIZE(default_bdfs)];
	long live0 = uiommu_alloc_live_settled();
	struct iommu_group_info gi;

	ASSERT_EQ(topology_load(NULL), 0);
	for (unsigned int i = 0; i < ARRAY_SIZE(default_bdfs); i++)
		devs[i] = topology_find_device(default_bdfs[i]);

	for (unsigned int cycle = 1; cycle <= 20; cycle++) {
		/* One device at a time ... */
		for (unsigned int i = 0; i < ARRAY_SIZE(default_bdfs); i++) {
			ASSERT_EQ(topology_unplug(default_bdfs[i]), 0);
			ASSERT_TRUE(devs[i]->iommu_group == NULL);
			ASSERT_TRUE(devs[i]->iommu_data == NULL);
			ASSERT_FALSE(devs[i]->driver_bound);
			ASSERT_TRUE(topology_find_device(default_bdfs[i]) == devs[i]);
			ASSERT_EQ(topology_plug(default_bdfs[i]), 0);
			ASSERT_TRUE(devs[i]->iommu_group != NULL);
			group_info(default_bdfs[i], &gi);
			ASSERT_NE(gi.domain_type, UINT32_MAX);
			ASSERT_TRUE(gi.domain_is_default);
			ASSERT_EQ(mock_attached_domain(devs[i])->id, gi.domain_id);
		}
		/* ... then a whole group, which dies and is born again with its three members. */
		ASSERT_EQ(topology_unplug(BDF_SW1), 0);
		ASSERT_EQ(topology_unplug(BDF_SW0), 0);
		group_info(BDF_SW2, &gi);
		ASSERT_EQ(gi.nr_devices, 1);
		ASSERT_EQ(gi.owner_cnt, 0);
		ASSERT_EQ(topology_unplug(BDF_SW2), 0);
		ASSERT_EQ(topology_plug(BDF_SW2), 0);
		ASSERT_EQ(topology_plug(BDF_SW0), 0);
		ASSERT_EQ(topology_plug(BDF_SW1), 0);
		ASSERT_TRUE(group_of(BDF_SW0) == group_of(BDF_SW2));
		ASSERT_TRUE(group_of(BDF_SW1) == group_of(BDF_SW2));
		group_info(BDF_SW0, &gi);
		ASSERT_EQ(gi.nr_devices, 3);
		ASSERT_EQ(gi.owner_cnt, 2); /* the drivers came back */

		/* release_device ran exactly once per unplug. */
		for (unsigned int i = 0; i < ARRAY_SIZE(default_bdfs); i++) {
			unsigned int extra = i >= 3 && i <= 5; /* the switch functions */

			ASSERT_EQ(mock_release_count(devs[i]), cycle * (1 + extra));
			ASSERT_EQ(mock_probe_count(devs[i]), 1 + cycle * (1 + extra));
		}
	}
	topology_unload();
	ASSERT_EQ(uiommu_alloc_live_settled(), live0);
}

TEST(bind_unbind)
{
	struct iommu_group_info gi;

	ASSERT_EQ(topology_load(NULL), 0);
	ASSERT_EQ(topology_bind("0000:00:09.0"), -ENOENT);
	ASSERT_EQ(topology_unbind("0000:00:09.0"), -ENOENT);
	ASSERT_EQ(topology_bind(BDF_SW0), -EBUSY);
	ASSERT_EQ(topology_unbind(BDF_SW2), -EINVAL);
	/* vfio-pci has it (the topology's default for a function not "bound"). */
	ASSERT_EQ(topology_bind(BDF_SW2), -EBUSY);
	ASSERT_EQ(topology_vfio_unbind(BDF_SW2), 0);
	ASSERT_EQ(topology_bind(BDF_SW2), 0);
	group_info(BDF_SW2, &gi);
	ASSERT_EQ(gi.owner_cnt, 3);
	ASSERT_TRUE(topology_find_device(BDF_SW2)->driver_bound);
	ASSERT_EQ(topology_unbind(BDF_SW2), 0);
	ASSERT_EQ(topology_unbind(BDF_SW0), 0);
	group_info(BDF_SW2, &gi);
	ASSERT_EQ(gi.owner_cnt, 1);

	/* An unplug unbinds; the plug binds again only what the file marks bound. */
	ASSERT_EQ(topology_unplug(BDF_SW1), 0);
	group_info(BDF_SW2, &gi);
	ASSERT_EQ(gi.owner_cnt, 0);
	ASSERT_EQ(topology_plug(BDF_SW1), 0);
	group_info(BDF_SW2, &gi);
	ASSERT_EQ(gi.owner_cnt, 1);
	topology_unload();
}

static int owner_cookie;

TEST(owned_groups)
{
	struct device *sva, *sw0;
	struct iommu_group_info gi;
	struct topology_device_info info;

	ASSERT_EQ(topology_load(NULL), 0);
	sva = topology_find_device(BDF_SVA);

	/* The last device of an owned group cannot be unplugged while owned. */
	ASSERT_EQ(iommu_device_claim_dma_owner(sva, &owner_cookie), 0);
	ASSERT_EQ(topology_unplug(BDF_SVA), -EBUSY);
	ASSERT_EQ(topology_bind(BDF_SVA), -EBUSY); /* owned: no DMA-API driver */
	iommu_device_release_dma_owner(sva);
	ASSERT_EQ(topology_unplug(BDF_SVA), 0);
	ASSERT_EQ(topology_plug(BDF_SVA), 0);

	/* A plug into an owned group leaves the device without its driver. */
	ASSERT_EQ(topology_unbind(BDF_SW0), 0);
	ASSERT_EQ(topology_unbind(BDF_SW1), 0);
	ASSERT_EQ(topology_unplug(BDF_SW1), 0);
	sw0 = topology_find_device(BDF_SW0);
	ASSERT_EQ(iommu_device_claim_dma_owner(sw0, &owner_cookie), 0);
	ASSERT_EQ(topology_plug(BDF_SW1), 0);
	ASSERT_EQ(topology_device_get_info(BDF_SW1, &info), 0);
	ASSERT_TRUE(info.present);
	ASSERT_FALSE(info.bound);
	group_info(BDF_SW1, &gi);
	ASSERT_TRUE(gi.owned);
	ASSERT_TRUE(gi.domain_is_blocking);
	/* The new member is on the blocking domain with the others, in the driver's eyes too. */
	ASSERT_EQ(mock_attached_domain(topology_find_device(BDF_SW1))->id, gi.domain_id);
	ASSERT_TRUE(mock_attached_domain(sw0) == mock_iommu_ops.blocked_domain);
	iommu_device_release_dma_owner(sw0);
	topology_unload();
}

/* ---- the mock driver under the core ----------------------------------------------------------- */

static int owner2;

TEST(mock_failed_attach_is_all_or_nothing)
{
	struct iommu_domain *dom, *before[3];
	struct iommu_group *group;
	struct iommu_group_info gi, gi2;
	struct device *d[3];

	ASSERT_EQ(topology_load(NULL), 0);
	d[0] = topology_find_device(BDF_SW0);
	d[1] = topology_find_device(BDF_SW1);
	d[2] = topology_find_device(BDF_SW2);
	ASSERT_EQ(topology_unbind(BDF_SW0), 0);
	ASSERT_EQ(topology_unbind(BDF_SW1), 0);
	group = group_of(BDF_SW0);
	ASSERT_EQ(iommu_group_claim_dma_owner(group, &owner2), 0);
	for (int i = 0; i < 3; i++)
		before[i] = mock_attached_domain(d[i]);

	dom = iommu_paging_domain_alloc(d[0]);
	ASSERT_FALSE(IS_ERR_OR_NULL(dom));
	ASSERT_EQ(dom->pgsize_bitmap, IO_PGTABLE_PGSIZE_BITMAP);
	ASSERT_EQ(dom->geometry.aperture_end, (UINT64_C(1) << 48) - 1);
	iommu_group_get_info(group, &gi);
	/* The second member refuses: nobody moves. */
	mock_fail_attach(d[1], -ENOSPC);
	ASSERT_EQ(iommu_attach_group(dom, group), -ENOSPC);
	iommu_group_get_info(group, &gi2);
	ASSERT_EQ(gi2.domain_id, gi.domain_id);
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(mock_attached_domain(d[i]) == before[i]);
	/* One-shot: the next try goes through. */
	ASSERT_EQ(iommu_attach_group(dom, group), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(mock_attached_domain(d[i]) == dom);

	/* The domain's page table is the mock's. */
	ASSERT_EQ(iommu_map(dom, 0x100000, 0x7000000, 0x3000, IOMMU_READ | IOMMU_WRITE), 0);
	ASSERT_EQ(iommu_iova_to_phys(dom, 0x101234), 0x7001234u);
	struct io_pgtable_leaf leaf;

	ASSERT_EQ(mock_domain_walk(dom, 0x102000, &leaf), 0);
	ASSERT_EQ(leaf.phys, 0x7002000u);
	ASSERT_EQ(mock_domain_walk(mock_iommu_ops.identity_domain, 0, &leaf), -EINVAL);
	ASSERT_EQ(iommu_unmap(dom, 0x100000, 0x3000), 0x3000);

	iommu_detach_group(dom, group);
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(mock_attached_domain(d[i]) == mock_iommu_ops.blocked_domain);
	iommu_domain_free(dom);
	iommu_group_release_dma_owner(group);
	topology_unload();
}

static struct {
	unsigned int calls;
	uint64_t start, last;
	struct iommu_domain *domain;
} flushes;

static void flush_hook(struct iommu_domain *domain, uint64_t start, uint64_t last)
{
	flushes.calls++;
	flushes.domain = domain;
	flushes.start = start;
	flushes.last = last;
}

TEST(mock_invalidation_hook)
{
	struct iommu_iotlb_gather gather;
	struct iommu_domain *dom;

	ASSERT_EQ(topology_load(NULL), 0);
	dom = iommu_paging_domain_alloc(topology_find_device(BDF_SVA));
	ASSERT_FALSE(IS_ERR_OR_NULL(dom));
	ASSERT_EQ(iommu_map(dom, 0x200000, 0x400000, 0x200000, IOMMU_READ), 0);
	ASSERT_EQ(iommu_map(dom, 0x600000, 0x400000, 0x1000, IOMMU_READ), 0);

	/* No hook: nothing happens, and nothing breaks. */
	iommu_flush_iotlb_all(dom);
	mock_iotlb_invalidate_hook = flush_hook;
	iommu_flush_iotlb_all(dom);
	ASSERT_EQ(flushes.calls, 1);
	ASSERT_TRUE(flushes.domain == dom);
	ASSERT_EQ(flushes.start, 0);
	ASSERT_EQ(flushes.last, UINT64_MAX);

	iommu_iotlb_gather_init(&gather);
	ASSERT_EQ(iommu_unmap_fast(dom, 0x200000, 0x200000, &gather), 0x200000);
	ASSERT_EQ(iommu_unmap_fast(dom, 0x600000, 0x1000, &gather), 0x1000);
	ASSERT_EQ(flushes.calls, 1); /* gathered, not yet invalidated */
	iommu_iotlb_sync(dom, &gather);
	ASSERT_EQ(flushes.calls, 2);
	ASSERT_EQ(flushes.start, 0x200000);
	ASSERT_EQ(flushes.last, 0x600fff);
	mock_iotlb_invalidate_hook = NULL;
	iommu_domain_free(dom);
	topology_unload();
}

/* The driver gives the IOTLB model its walk with its first instance; no room, no instance. */
static phys_addr_t other_walk(struct iommu_domain *domain, uint64_t iova, int access, int *prot)
{
	(void)domain;
	(void)iova;
	(void)access;
	*prot = 0;
	return 0;
}

TEST(mock_walker_needs_room)
{
	static const struct iommu_ops others[16];
	struct iommu_device iommu = { .name = "full" };
	unsigned int n = 0;

	while (n < 16 && !iotlb_register_walker(&others[n], other_walk))
		n++;
	ASSERT_TRUE(n > 0 && n < 16); /* the table filled */
	ASSERT_EQ(-ENOSPC, mock_iommu_register(&iommu));
	ASSERT_EQ(-ENOSPC, topology_load(NULL));
}

/* ---- fault injection ---------------------------------------------------------------------- */

TEST(fail_nth_load)
{
	long live0 = uiommu_alloc_live_settled();
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	unsetenv(TOPOLOGY_ENV);
	for (nth = 1; nth < 5000; nth++) {
		char msg[4096];
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = load_capturing(NULL, msg, sizeof(msg));
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(rc, 0);
			break;
		}
		if (!rc) {
			/* Absorbed: the core falls back to DMA when another type fails. */
			ASSERT_TRUE(topology_loaded());
			topology_unload();
		}
		ASSERT_FALSE(topology_loaded());
		ASSERT_EQ(uiommu_alloc_live_settled(), live0);
	}
	ASSERT_TRUE(topology_loaded());
	ASSERT_GT(nth, 20);
	topology_unload();
	ASSERT_EQ(uiommu_alloc_live_settled(), live0);
}

TEST(fail_nth_plug)
{
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(topology_load(NULL), 0);
	for (nth = 1; nth < 1000; nth++) {
		struct device *dev = topology_find_device(BDF_SW2);
		long live;
		int rc;

		ASSERT_EQ(topology_unplug(BDF_SW2), 0);
		live = uiommu_alloc_live_settled();
		uiommu_fail_nth_arm(nth);
		rc = topology_plug(BDF_SW2);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(rc, 0);
			break;
		}
		if (!rc)
			continue; /* absorbed by a fallback; unplugged again above */
		ASSERT_TRUE(dev->iommu_group == NULL);
		ASSERT_EQ(uiommu_alloc_live_settled(), live);
		ASSERT_EQ(mock_probe_count(dev), mock_release_count(dev));
		ASSERT_EQ(topology_plug(BDF_SW2), 0);
	}
	ASSERT_GT(nth, 2);
	topology_unload();
}

/*
 * Waits (up to 20 s: a loaded host may not run the driver's thread for a while) until the
 * emulated driver of @bdf has done more than @after transfers; its count in *@ops.
 */
static int driver_dma_wait_past(const char *bdf, unsigned long after, unsigned long *ops)
{
	static const struct timespec tick = { 0, 1000 * 1000 };
	unsigned long errs;
	int i;

	for (i = 0; i < 20000; i++) {
		if (topology_dma_stats(bdf, ops, &errs))
			return -1;
		if (*ops > after)
			return 0;
		nanosleep(&tick, NULL);
	}
	return -1;
}

/*
 * The emulated driver's DMA engine keeps transferring while its group switches DMA -> DMA-FQ
 * live and while its device is hot-unplugged: unplug quiesces the DMA before the release, and
 * no transfer ever fails.
 */
TEST(driver_dma_runs_across_live_switch_and_unplug)
{
	static const struct timespec t = { 0, 60 * 1000 * 1000 };
	unsigned long ops0, ops1, ops2, errs;
	struct device *dev;
	char type[16];

	setenv("UIOMMU_DRIVER_DMA", "1", 1);
	ASSERT_EQ(0, topology_load(NULL));
	dev = topology_find_device("0000:01:00.0");
	ASSERT_TRUE(dev && dev->driver_bound);
	ASSERT_EQ(0, driver_dma_wait_past("0000:01:00.0", 0, &ops0));
	/* Strict DMA (iommu1 cannot defer) switched live: drivers stay bound and keep going. */
	iommu_group_type_show(dev->iommu_group, type, sizeof(type));
	ASSERT_STREQ("DMA\n", type);
	ASSERT_EQ(6, iommu_group_type_store(dev->iommu_group, "DMA-FQ", 6, true));
	ASSERT_EQ(0, driver_dma_wait_past("0000:01:00.0", ops0, &ops1));
	/* Unplug while the DMA runs: the driver stops its DMA, then the device goes. */
	ASSERT_EQ(0, topology_unplug("0000:01:00.0"));
	ASSERT_FALSE(dev->driver_bound);
	ASSERT_EQ(0, topology_dma_stats("0000:01:00.0", &ops2, &errs));
	nanosleep(&t, NULL);
	ASSERT_EQ(0, topology_dma_stats("0000:01:00.0", &ops1, &errs));
	ASSERT_EQ(ops2, ops1);
	ASSERT_EQ(0, errs);
	ASSERT_EQ(0, topology_plug("0000:01:00.0"));
	ASSERT_EQ(0, topology_dma_stats("0000:03:00.0", &ops0, &errs));
	ASSERT_EQ(0, errs);
	topology_unload();
	unsetenv("UIOMMU_DRIVER_DMA");
}

TEST_HARNESS_MAIN
