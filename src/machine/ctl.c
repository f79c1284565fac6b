// SPDX-License-Identifier: MIT
/*
 * The control interface: show and change the emulated machine from outside the program.
 *
 * One command language serves two transports. uiommuctl runs commands in its own process on a
 * topology it loads (ctl_execute() writing to stdout), or sends them to a running program that
 * listens on a Unix socket. The listener starts only when asked: the preload layer's
 * constructor calls uiommu_ctl_start_env(), which does nothing unless $UIOMMU_CTL_SOCKET is
 * set; a program linking the library may call uiommu_ctl_start(path) itself.
 *
 * The protocol is a line protocol, one command per line, as a human would type it:
 *
 *   -> show json
 *   <- { ... }                 any number of reply lines
 *   <- ok                      or: error <errno> <message>
 *
 * Commands: show [text|json|dot], set-type GROUP TYPE, bind BDF, unbind BDF, plug BDF,
 * unplug BDF. They map one to one to the core and topology API (iommu_group_get_info(),
 * sysfs_type_store(), topology_bind/unbind/plug/unplug()), so the semantics and errnos are
 * the core's. A type set here is the type store with privilege (whoever may talk on the
 * socket, the program's own user or root, is the machine's administrator) and is shared with
 * the other processes of a uiommu-run session like a write to the sysfs `type` file.
 *
 * "show" first builds one snapshot as a json-c object (the --json output), and the text and
 * Graphviz renderings are drawn from that object, so the three never disagree. A snapshot is
 * not atomic across groups: each group is read under its own mutex, as sysfs reads them.
 *
 * Who may talk to it. The socket is 0600, in a directory we make 0700 when it does not exist
 * (an existing one must be ours or root's, and writable by others only if sticky), and every
 * client's credentials are checked (SO_PEERCRED): only this program's user and root get in,
 * others are told "error 1 ..." and let go. Before binding, a path that someone already
 * serves is left alone: quietly (EADDRINUSE) when it is our user's (a parent process of the
 * session), loudly on stderr (EPERM) when it is another user's, who could otherwise squat the
 * path and answer in our stead; a stale socket is replaced only if it is ours. uiommuctl does
 * the same check the other way and refuses a server of another user.
 *
 * The listener is one detached acceptor thread with all signals blocked; each admitted client
 * gets a detached thread of its own (at most CTL_CLIENTS_MAX; more are refused with EAGAIN),
 * with read and write timeouts (CTL_IDLE_TIMEOUT_MS), so an idle, slow or hostile client
 * holds only its own slot and only for so long. A line with a NUL byte, or one longer than
 * CTL_LINE_MAX, ends the conversation with an error line. No thread holds a lock while it
 * waits. ctl_lock protects the listener's state (started, the socket path to unlink and the
 * directory to remove at exit); it is a leaf. ctl_clients (atomic) counts the client threads.
 */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "drivers/intel/vtd.h"
#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "lib/thread.h"
#include "machine/ctl.h"
#include "machine/sysfs.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

/* ---- the snapshot ---------------------------------------------------------------------------- */

static struct json_object *domain_json(unsigned int type, uint32_t id)
{
	struct json_object *o;

	if (type == UINT32_MAX)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string(iommu_domain_type_str(type)));
	json_object_object_add(o, "id", json_object_new_int64(id));
	return o;
}

static int iommu_cb(struct iommu_device *iommu, void *arg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(iommu->name));
	json_object_object_add(o, "driver",
			       json_object_new_string(iommu->ops ? iommu->ops->name : "none"));
	json_object_object_add(o, "max_pasids", json_object_new_int64(iommu->max_pasids));
	json_object_object_add(o, "deferred_flush", json_object_new_boolean(iommu->deferred_flush));
	json_object_object_add(o, "dirty_tracking", json_object_new_boolean(iommu->dirty_tracking));
	if (vtd_iommu_is_instance(iommu)) {
		/* The registers the model reports in GET_HW_INFO: what it implements. */
		uint64_t cap, ecap;
		char buf[24];

		vtd_iommu_regs(iommu, &cap, &ecap);
		snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)cap);
		json_object_object_add(o, "cap_reg", json_object_new_string(buf));
		snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)ecap);
		json_object_object_add(o, "ecap_reg", json_object_new_string(buf));
	}
	json_object_array_add(arg, o);
	return 0;
}

static int device_cb(const struct topology_device_info *info, void *arg)
{
	struct json_object *o = json_object_new_object();
	struct iommu_group *group = info->present ? iommu_group_get(info->dev) : NULL;

	json_object_object_add(o, "bdf", json_object_new_string(info->bdf));
	json_object_object_add(o, "iommu", json_object_new_string(info->iommu));
	json_object_object_add(o, "present", json_object_new_boolean(info->present));
	json_object_object_add(o, "bound", json_object_new_boolean(info->bound));
	/* vfio-pci's functions: their cdev index (vfioN); null for the others. */
	json_object_object_add(o, "vfio",
			       info->vfio ? json_object_new_int(info->vfio_index) : NULL);
	json_object_object_add(o, "group",
			       group ? json_object_new_int(iommu_group_id(group)) : NULL);
	json_object_object_add(o, "untrusted", json_object_new_boolean(info->dev->untrusted));
	json_object_object_add(o, "pasid_bits", json_object_new_int(info->dev->pasid_bits));
	json_object_object_add(o, "pri", json_object_new_boolean(info->dev->pri));
	json_object_object_add(o, "dirty", json_object_new_boolean(info->dev->dirty));
	if (group)
		iommu_group_put(group);
	json_object_array_add(arg, o);
	return 0;
}

struct group_devs {
	struct json_object *bdfs;
	struct json_object *bound;
};

static int group_dev_cb(struct device *dev, void *data)
{
	struct group_devs *g = data;

	json_object_array_add(g->bdfs, json_object_new_string(dev->name));
	if (dev->driver_bound)
		json_object_array_add(g->bound, json_object_new_string(dev->name));
	return 0;
}

static struct json_object *group_json(struct iommu_group *group)
{
	struct json_object *o = json_object_new_object(), *dom;
	struct group_devs g = { json_object_new_array(), json_object_new_array() };
	struct iommu_group_info info;

	iommu_group_get_info(group, &info);
	iommu_group_for_each_dev(group, &g, group_dev_cb);
	json_object_object_add(o, "id", json_object_new_int(info.id));
	json_object_object_add(o, "type", json_object_new_string(
		info.default_type == UINT32_MAX ? "unknown" : iommu_domain_type_str(info.default_type)));
	json_object_object_add(o, "default_domain",
			       domain_json(info.default_type, info.default_domain_id));
	dom = domain_json(info.domain_type, info.domain_id);
	if (dom) {
		json_object_object_add(dom, "is_default",
				       json_object_new_boolean(info.domain_is_default));
		json_object_object_add(dom, "is_blocking",
				       json_object_new_boolean(info.domain_is_blocking));
	}
	json_object_object_add(o, "domain", dom);
	json_object_object_add(o, "owner_cnt", json_object_new_int64(info.owner_cnt));
	json_object_object_add(o, "owned", json_object_new_boolean(info.owned));
	json_object_object_add(o, "devices", g.bdfs);
	json_object_object_add(o, "bound", g.bound);
	return o;
}

/* The whole machine, as --json shows it. */
static int ctl_snapshot(struct json_object **out)
{
	struct json_object *root, *iommus, *groups, *devices;
	char source[256] = "(none)";
	int id;

	if (uiommu_should_fail())
		return -ENOMEM;
	root = json_object_new_object();
	if (!root)
		return -ENOMEM;
	iommus = json_object_new_array();
	groups = json_object_new_array();
	devices = json_object_new_array();
	topology_source(source, sizeof(source));
	/*
	 * The file's path is the one name not checked at load: a control byte in it (a newline
	 * above all) would split the text rendering into lines of the protocol.
	 */
	for (char *c = source; *c; c++)
		if ((unsigned char)*c < ' ' || *c == 0x7f)
			*c = '?';
	topology_for_each_iommu(iommu_cb, iommus);
	topology_for_each_device(device_cb, devices);
	for (id = iommu_group_next_id(-1); id >= 0; id = iommu_group_next_id(id)) {
		struct iommu_group *group = iommu_group_get_by_id(id);

		if (!group)
			continue;
		json_object_array_add(groups, group_json(group));
		iommu_group_put(group);
	}
	json_object_object_add(root, "topology", json_object_new_string(source));
	json_object_object_add(root, "default_domain_type",
			       json_object_new_string(iommu_domain_type_str(iommu_default_domain_type())));
	json_object_object_add(root, "iommus", iommus);
	json_object_object_add(root, "groups", groups);
	json_object_object_add(root, "devices", devices);
	*out = root;
	return 0;
}

/* ---- renderings ------------------------------------------------------------------------------ */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return NULL;
	return json_object_get_string(v);
}

static int64_t jint(struct json_object *o, const char *key, int64_t dflt)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return dflt;
	return json_object_get_int64(v);
}

static bool jbool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && v && json_object_get_boolean(v);
}

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(o, key, &v);
	return v;
}

static void render_domain(FILE *out, const char *what, struct json_object *d)
{
	if (!d) {
		fprintf(out, "%s none", what);
		return;
	}
	fprintf(out, "%s %s #%lld", what, jstr(d, "type"), (long long)jint(d, "id", 0));
}

static void render_text(struct json_object *root, FILE *out)
{
	struct json_object *iommus = jget(root, "iommus"), *groups = jget(root, "groups");
	struct json_object *devices = jget(root, "devices");
	size_t i, j, n;

	fprintf(out, "topology %s, global default %s\n", jstr(root, "topology"),
		jstr(root, "default_domain_type"));
	n = json_object_array_length(iommus);
	for (i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(iommus, i);

		fprintf(out, "iommu %s: driver %s, max_pasids %lld%s%s", jstr(o, "name"),
			jstr(o, "driver"), (long long)jint(o, "max_pasids", 0),
			jbool(o, "deferred_flush") ? ", deferred_flush" : "",
			jbool(o, "dirty_tracking") ? ", dirty_tracking" : "");
		if (jget(o, "cap_reg"))
			fprintf(out, ", cap %s, ecap %s", jstr(o, "cap_reg"), jstr(o, "ecap_reg"));
		fputc('\n', out);
	}
	n = json_object_array_length(groups);
	for (i = 0; i < n; i++) {
		struct json_object *g = json_object_array_get_idx(groups, i);
		struct json_object *dom = jget(g, "domain"), *bdfs = jget(g, "devices");

		fprintf(out, "group %lld: type %s, ", (long long)jint(g, "id", -1), jstr(g, "type"));
		render_domain(out, "default", jget(g, "default_domain"));
		fprintf(out, ", ");
		render_domain(out, "attached", dom);
		if (dom && jbool(dom, "is_blocking"))
			fprintf(out, " (blocking)");
		else if (dom && !jbool(dom, "is_default"))
			fprintf(out, " (owner's)");
		fprintf(out, ", owner_cnt %lld%s\n", (long long)jint(g, "owner_cnt", 0),
			jbool(g, "owned") ? ", DMA owner" : "");
		for (j = 0; j < json_object_array_length(bdfs); j++) {
			const char *bdf = json_object_get_string(json_object_array_get_idx(bdfs, j));
			size_t k;
			bool bound = false;

			for (k = 0; k < json_object_array_length(devices); k++) {
				struct json_object *d = json_object_array_get_idx(devices, k);

				if (!strcmp(jstr(d, "bdf"), bdf))
					bound = jbool(d, "bound");
			}
			fprintf(out, "  %s%s\n", bdf, bound ? " (driver bound)" : "");
		}
	}
	n = json_object_array_length(devices);
	for (i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devices, i);

		fprintf(out, "device %s: iommu %s, ", jstr(d, "bdf"), jstr(d, "iommu"));
		if (!jbool(d, "present"))
			fprintf(out, "unplugged");
		else if (jget(d, "group"))
			fprintf(out, "group %lld", (long long)jint(d, "group", -1));
		else
			fprintf(out, "no group");
		fprintf(out, "%s", jbool(d, "bound") ? ", driver bound" : "");
		if (jget(d, "vfio"))
			fprintf(out, ", vfio-pci (vfio%lld)", (long long)jint(d, "vfio", -1));
		fprintf(out, "%s%s%s\n", jbool(d, "untrusted") ? ", untrusted" : "",
			jbool(d, "pri") ? ", pri" : "", jbool(d, "dirty") ? ", dirty" : "");
	}
}

static void render_dot(struct json_object *root, FILE *out)
{
	struct json_object *iommus = jget(root, "iommus"), *groups = jget(root, "groups");
	struct json_object *devices = jget(root, "devices");
	size_t i, j;

	fprintf(out, "digraph uiommu {\n\trankdir=LR;\n\tnode [shape=box, fontname=\"monospace\"];\n");
	for (i = 0; i < json_object_array_length(iommus); i++) {
		struct json_object *o = json_object_array_get_idx(iommus, i);

		fprintf(out, "\t\"%s\" [shape=ellipse, label=\"%s\\n(%s)\"];\n", jstr(o, "name"),
			jstr(o, "name"), jstr(o, "driver"));
	}
	for (i = 0; i < json_object_array_length(groups); i++) {
		struct json_object *g = json_object_array_get_idx(groups, i);
		struct json_object *dom = jget(g, "domain"), *bdfs = jget(g, "devices");
		long long id = (long long)jint(g, "id", -1);

		fprintf(out, "\tsubgraph cluster_group%lld {\n\t\tlabel=\"group %lld\\ntype %s",
			id, id, jstr(g, "type"));
		if (dom)
			fprintf(out, "\\nattached %s #%lld", jstr(dom, "type"),
				(long long)jint(dom, "id", 0));
		if (jint(g, "owner_cnt", 0))
			fprintf(out, "\\nowner_cnt %lld", (long long)jint(g, "owner_cnt", 0));
		fprintf(out, "\";\n");
		for (j = 0; j < json_object_array_length(bdfs); j++)
			fprintf(out, "\t\t\"%s\";\n",
				json_object_get_string(json_object_array_get_idx(bdfs, j)));
		fprintf(out, "\t}\n");
	}
	for (i = 0; i < json_object_array_length(devices); i++) {
		struct json_object *d = json_object_array_get_idx(devices, i);

		fprintf(out, "\t\"%s\" [label=\"%s%s\"%s];\n", jstr(d, "bdf"), jstr(d, "bdf"),
			jbool(d, "bound") ? "\\ndriver bound" : "",
			jbool(d, "present") ? "" : ", style=dashed");
		fprintf(out, "\t\"%s\" -> \"%s\";\n", jstr(d, "bdf"), jstr(d, "iommu"));
	}
	fprintf(out, "}\n");
}

/* ---- commands -------------------------------------------------------------------------------- */

static int ctl_show(const char *format, FILE *out)
{
	struct json_object *root;
	int rc;

	if (format && strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "dot")) {
		fprintf(out, "show: unknown format \"%s\" (text, json or dot)\n", format);
		return -EINVAL;
	}
	rc = ctl_snapshot(&root);
	if (rc)
		return rc;
	if (format && !strcmp(format, "json"))
		fprintf(out, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								       JSON_C_TO_STRING_SPACED));
	else if (format && !strcmp(format, "dot"))
		render_dot(root, out);
	else
		render_text(root, out);
	json_object_put(root);
	return 0;
}

static int ctl_set_type(const char *group_str, const char *type)
{
	struct iommu_group *group;
	char *end;
	long id;
	ssize_t ret;

	id = strtol(group_str, &end, 10);
	if (*end || end == group_str || id < 0 || id > INT32_MAX)
		return -EINVAL;
	group = iommu_group_get_by_id((int)id);
	if (!group)
		return -ENOENT;
	ret = sysfs_type_store(group, type, strlen(type), true);
	iommu_group_put(group);
	return ret < 0 ? (int)ret : 0;
}

static const struct {
	const char *name;
	int arity;
	int (*bdf_op)(const char *bdf);
} ctl_commands[] = {
	{ "show", 1, NULL },
	{ "set-type", 2, NULL },
	{ "bind", 1, topology_bind },
	{ "unbind", 1, topology_unbind },
	{ "plug", 1, topology_plug },
	{ "unplug", 1, topology_unplug },
};

int ctl_command_arity(const char *cmd)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ctl_commands); i++)
		if (!strcmp(cmd, ctl_commands[i].name))
			return ctl_commands[i].arity;
	return -1;
}

int ctl_execute(const char *line, FILE *out)
{
	char buf[CTL_LINE_MAX], *argv[4], *save = NULL, *tok;
	int argc = 0, arity;
	size_t i;

	if (strlen(line) >= sizeof(buf))
		return -E2BIG;
	strcpy(buf, line);
	for (tok = strtok_r(buf, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (argc == ARRAY_SIZE(argv))
			return -E2BIG;
		argv[argc++] = tok;
	}
	if (!argc) {
		fprintf(out, "empty command\n");
		return -EINVAL;
	}
	arity = ctl_command_arity(argv[0]);
	if (arity < 0 || argc - 1 > arity || (argc - 1 < arity && strcmp(argv[0], "show"))) {
		fprintf(out, "usage: show [text|json|dot] | set-type GROUP TYPE | "
			"bind|unbind|plug|unplug BDF\n");
		return -EINVAL;
	}
	sysfs_machine_boot(); /* a failed boot shows an empty machine */
	if (!strcmp(argv[0], "show"))
		return ctl_show(argc > 1 ? argv[1] : NULL, out);
	if (!strcmp(argv[0], "set-type"))
		return ctl_set_type(argv[1], argv[2]);
	for (i = 0; i < ARRAY_SIZE(ctl_commands); i++)
		if (ctl_commands[i].bdf_op && !strcmp(argv[0], ctl_commands[i].name))
			return ctl_commands[i].bdf_op(argv[1]);
	return -EINVAL;
}

/* ---- the listener ---------------------------------------------------------------------------- */

struct ctl_listener {
	bool started;
	bool made_dir;                      /* we created the socket's directory: remove it too */
	pid_t pid;                          /* the process that bound the path */
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Protects ctl; a leaf. */
UIOMMU_MUTEX_DEFINE(ctl_lock);
static struct ctl_listener ctl;
static atomic_int ctl_clients;                          /* client threads alive */
static atomic_uint ctl_idle_ms = CTL_IDLE_TIMEOUT_MS;   /* read and write timeout per client */

void ctl_set_idle_timeout(unsigned int ms)
{
	atomic_store(&ctl_idle_ms, ms);
}

int ctl_peer_uid(int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
		return -errno;
	if (len != sizeof(cred))
		return -EPROTO;
	*uid = cred.uid;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The last word to a client that is let go: "error <errno> <why>". */
static void __attribute__((format(printf, 3, 4)))
ctl_refuse(int fd, int err, const char *fmt, ...)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg), "error %d ", err);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof(msg) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	write_all(fd, msg, (size_t)n);
}

static const char *ctl_strerror(int err)
{
	/* The kernel-internal errno the core may return for a driver bind. */
	if (err == EPROBE_DEFER)
		return "Probe deferred";
	return strerror(err);
}

/* Runs @line and sends its reply, ending with the status line. */
static int ctl_reply(int fd, const char *line)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;
	int rc, err;

	mem = open_memstream(&buf, &len);
	if (!mem)
		return -ENOMEM;
	rc = ctl_execute(line, mem);
	if (rc)
		fprintf(mem, "error %d %s\n", -rc, ctl_strerror(-rc));
	else
		fprintf(mem, "ok\n");
	fclose(mem);
	err = write_all(fd, buf, len);
	free(buf); /* open_memstream's buffer is libc's */
	return err;
}

/*
 * One client's conversation. A line with a NUL, an overlong line or an idle read ends it with
 * an error line (the NUL would cut the command short where the client did not, so the server
 * would run something else than what was sent).
 */
static void ctl_serve(int fd)
{
	char line[CTL_LINE_MAX + 1];
	size_t used = 0;

	for (;;) {
		char *nl;
		ssize_t n = recv(fd, line + used, sizeof(line) - 1 - used, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ctl_refuse(fd, ETIMEDOUT, "idle for %u ms", atomic_load(&ctl_idle_ms));
			return;
		}
		if (n <= 0)
			return;
		used += (size_t)n;
		line[used] = '\0';
		while ((nl = memchr(line, '\n', used))) {
			size_t len = (size_t)(nl - line);

			if (memchr(line, '\0', len))
				break;
			*nl = '\0';
			if (ctl_reply(fd, line))
				return;
			used -= len + 1;
			memmove(line, nl + 1, used + 1);
		}
		if (memchr(line, '\0', used)) {
			ctl_refuse(fd, EINVAL, "NUL byte in the command line");
			return;
		}
		if (used == sizeof(line) - 1) {
			ctl_refuse(fd, E2BIG, "command line too long");
			return;
		}
	}
}

static void *ctl_client_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;

	ctl_serve(fd);
	close(fd);
	atomic_fetch_sub(&ctl_clients, 1);
	return NULL;
}

/* Lets @fd in if its peer is this program's user (or root) and a client slot is free. */
static int ctl_admit(int fd)
{
	unsigned int ms = atomic_load(&ctl_idle_ms);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	uid_t uid = (uid_t)-1;
	int rc;

	rc = ctl_peer_uid(fd, &uid);
	if (rc)
		return rc;
	if (uid != geteuid() && uid != 0) {
		ctl_refuse(fd, EPERM, "uid %u may not control this program (uid %u)",
			   (unsigned int)uid, (unsigned int)geteuid());
		return -EPERM;
	}
	if (atomic_fetch_add(&ctl_clients, 1) >= CTL_CLIENTS_MAX) {
		atomic_fetch_sub(&ctl_clients, 1);
		ctl_refuse(fd, EAGAIN, "%d clients connected already", CTL_CLIENTS_MAX);
		return -EAGAIN;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
		rc = -errno;
		atomic_fetch_sub(&ctl_clients, 1);
		return rc;
	}
	return 0;
}

/*
 * The acceptor: each admitted client gets a detached thread of its own (they inherit the
 * acceptor's full signal mask), so an idle or slow client holds only its own slot until its
 * timeout.
 */
static void *ctl_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		pthread_t thread;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				continue;
			break;
		}
		if (ctl_admit(fd)) {
			close(fd);
			continue;
		}
		if (uiommu_should_fail() ||
		    uiommu_thread_create(&thread, &attr, ctl_client_thread, (void *)(intptr_t)fd)) {
			ctl_refuse(fd, ENOMEM, "%s", strerror(ENOMEM));
			close(fd);
			atomic_fetch_sub(&ctl_clients, 1);
		}
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

static void ctl_atexit(void)
{
	if (ctl.started && ctl.pid == getpid()) {
		unlink(ctl.path);
		if (ctl.made_dir)
			rmdir(ctl.dir); /* only if empty: nothing but our socket was ever ours */
	}
}

static pthread_once_t ctl_atexit_once = PTHREAD_ONCE_INIT;

static void ctl_register_atexit(void)
{
	atexit(ctl_atexit);
}

/* Refuses to listen, loudly: someone else's file sits where the socket should be. */
static int __attribute__((format(printf, 2, 3)))
ctl_foreign(const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "uiommu: control socket %s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; not listening\n");
	return -EPERM;
}

/*
 * The directory that will hold the socket: made private (0700) if it does not exist, else it
 * must be ours or root's and not open to others' renames (writable by others only if sticky),
 * or another user could swap the socket after we bound it.
 */
static int ctl_dir_prepare(const char *path, char *dir, size_t len, bool *made)
{
	char *slash;
	struct stat st;

	snprintf(dir, len, "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	*made = false;
	if (!mkdir(dir, 0700)) {
		*made = true;
		return 0;
	}
	if (errno != EEXIST)
		return -errno;
	if (stat(dir, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != geteuid() && st.st_uid != 0)
		return ctl_foreign(path, "directory %s belongs to uid %u", dir,
				   (unsigned int)st.st_uid);
	if ((st.st_mode & 0022) && !(st.st_mode & S_ISVTX))
		return ctl_foreign(path, "directory %s is writable by others", dir);
	return 0;
}

/* The socket at @path, if there is one: 0 when it may be replaced, else why not. */
static int ctl_path_check(const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	uid_t uid = (uid_t)-1;
	int fd, rc;

	if (uiommu_should_fail())
		return -ENOMEM;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!connect(fd, (const struct sockaddr *)addr, sizeof(*addr))) {
		rc = ctl_peer_uid(fd, &uid);
		close(fd);
		if (rc)
			return rc;
		/* Our own user serves it (the parent of this process): leave it to them. */
		if (uid == geteuid())
			return -EADDRINUSE;
		return ctl_foreign(path, "served by uid %u, not by this user (uid %u)",
				   (unsigned int)uid, (unsigned int)geteuid());
	}
	close(fd);
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	/* Nobody listens: a stale socket of ours is replaced, anything else stays. */
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	if (st.st_uid != geteuid())
		return ctl_foreign(path, "a socket of uid %u, not of this user (uid %u)",
				   (unsigned int)st.st_uid, (unsigned int)geteuid());
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return 0;
}

static int ctl_listen(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[sizeof(addr.sun_path)];
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t thread;
	bool made_dir;
	int fd, rc;

	lockdep_assert_held(&ctl_lock);
	if (ctl.started && ctl.pid == getpid())
		return -EBUSY;
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	rc = ctl_dir_prepare(path, dir, sizeof(dir), &made_dir);
	if (rc)
		return rc;
	rc = ctl_path_check(path, &addr);
	if (rc)
		goto err_rmdir;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto err_rmdir;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		rc = -errno;
		goto err_close;
	}
	/* Until this chmod others may connect; ctl_admit() turns them away by their uid. */
	if (chmod(path, 0600) || listen(fd, 8)) {
		rc = -errno;
		goto err_unlink;
	}
	/* A forked child starts afresh: the client threads counted were its parent's. */
	atomic_store(&ctl_clients, 0);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* The thread inherits the mask: signals stay with the program's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -uiommu_thread_create(&thread, &attr, ctl_thread, (void *)(intptr_t)fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc)
		goto err_unlink;
	ctl.started = true;
	ctl.made_dir = made_dir;
	ctl.pid = getpid();
	ctl.fd = fd;
	strcpy(ctl.path, path);
	strcpy(ctl.dir, dir);
	pthread_once(&ctl_atexit_once, ctl_register_atexit);
	return 0;

err_unlink:
	unlink(path);
err_close:
	close(fd);
err_rmdir:
	if (made_dir)
		rmdir(dir);
	return rc;
}

UIOMMU_EXPORT int uiommu_ctl_start(const char *path)
{
	int rc;

	if (!path || !*path) {
		errno = EINVAL;
		return -1;
	}
	uiommu_mutex_lock(&ctl_lock);
	rc = ctl_listen(path);
	uiommu_mutex_unlock(&ctl_lock);
	if (rc) {
		errno = -rc;
		return -1;
	}
	return 0;
}

UIOMMU_EXPORT int uiommu_ctl_start_env(void)
{
	const char *path = getenv(CTL_SOCKET_ENV);

	if (!path || !*path)
		return 0;
	if (uiommu_ctl_start(path)) {
		/*
		 * EADDRINUSE: a parent process of the session serves it; say nothing. EPERM: a
		 * foreign socket or directory, said already with the reason.
		 */
		if (errno != EADDRINUSE && errno != EPERM)
			fprintf(stderr, "uiommu: control socket %s: %s; not listening\n", path,
				strerror(errno));
		return -1;
	}
	return 0;
}
