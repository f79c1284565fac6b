// SPDX-License-Identifier: MIT
/*
 * uiommuctl: show and change an emulated machine (IOMMUs, groups, devices, domains, owners,
 * bound drivers).
 *
 * Two places to act on. Without --socket, the tool loads a topology (--topology FILE, else
 * $UIOMMU_TOPOLOGY, else the embedded default) into its own process and runs the commands
 * there, in order: useful to see what a topology gives and which operations its rules allow
 * ("unbind 0000:00:03.0 set-type 1 identity show"). With --socket PATH, the commands go to a
 * running program started with UIOMMU_CTL_SOCKET=PATH under uiommu-run, whose machine they show
 * and change (see src/machine/ctl.c for the line protocol). A socket served by another user is
 * refused before a word is sent: whoever bound the path first would otherwise answer.
 *
 * The command language and the renderings are the library's (ctl_execute()), so both modes
 * print the same thing. Exit status: 0 success, 1 an operation failed (the errno's message on
 * stderr), 2 a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "machine/ctl.h"
#include "machine/topology.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: uiommuctl [OPTIONS] [COMMAND [ARGS]]...\n"
		"Show and change an emulated uiommu machine.\n"
		"\n"
		"Commands (run in order; the default is show):\n"
		"  show                 IOMMUs, groups, domains, owners, devices, bound drivers\n"
		"  set-type GROUP TYPE  write a group's sysfs type: identity, DMA, DMA-FQ or auto\n"
		"  bind BDF             bind the emulated DMA-API driver to a device\n"
		"  unbind BDF           unbind it\n"
		"  unplug BDF           hot-unplug a device\n"
		"  plug BDF             plug it back\n"
		"\n"
		"Options:\n"
		"  -t, --topology FILE  load FILE (default: $UIOMMU_TOPOLOGY, else the built-in one)\n"
		"  -s, --socket PATH    act on the running program listening on PATH\n"
		"                       (started with UIOMMU_CTL_SOCKET=PATH uiommu-run PROGRAM)\n"
		"  -j, --json           show as JSON\n"
		"  -d, --dot            show as a Graphviz graph\n"
		"  -h, --help           this text\n"
		"\n"
		"Exit status: 0 success, 1 an operation failed, 2 usage error.\n");
}

/* ---- the two transports ---------------------------------------------------------------------- */

struct session {
	int fd;      /* the socket, or -1 for local */
	FILE *in;    /* replies */
};

static int remote_connect(struct session *s, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	uid_t uid = (uid_t)-1;
	int rc;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "uiommuctl: %s: socket path too long\n", path);
		return EXIT_USAGE;
	}
	strcpy(addr.sun_path, path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&addr, sizeof(addr))) {
		fprintf(stderr, "uiommuctl: %s: %s\n", path, strerror(errno));
		return EXIT_FAIL;
	}
	/* Anyone may bind a path first: answers count only from a program of our own user. */
	rc = ctl_peer_uid(s->fd, &uid);
	if (rc) {
		fprintf(stderr, "uiommuctl: %s: whose socket: %s\n", path, strerror(-rc));
		return EXIT_FAIL;
	}
	if (uid != geteuid()) {
		fprintf(stderr, "uiommuctl: %s: served by uid %u, not by you (uid %u); "
			"refusing to talk to it\n", path, (unsigned int)uid,
			(unsigned int)geteuid());
		return EXIT_FAIL;
	}
	s->in = fdopen(s->fd, "r");
	if (!s->in) {
		fprintf(stderr, "uiommuctl: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	return 0;
}

/* Sends @line, copies the reply to stdout; 0 on "ok", else the errno of "error N ...". */
static int remote_run(struct session *s, const char *line, char *msg, size_t msglen)
{
	char buf[4096];
	size_t len = strlen(line);

	if (write(s->fd, line, len) != (ssize_t)len || write(s->fd, "\n", 1) != 1) {
		snprintf(msg, msglen, "%s", strerror(errno));
		return errno;
	}
	while (fgets(buf, sizeof(buf), s->in)) {
		int err, off = 0;

		if (!strcmp(buf, "ok\n"))
			return 0;
		if (sscanf(buf, "error %d %n", &err, &off) == 1 && off) {
			buf[strcspn(buf, "\n")] = '\0';
			snprintf(msg, msglen, "%s", buf + off);
			return err ? err : EIO;
		}
		fputs(buf, stdout);
	}
	snprintf(msg, msglen, "connection closed");
	return EPIPE;
}

static int local_run(const char *line, char *msg, size_t msglen)
{
	int rc = ctl_execute(line, stdout);

	if (rc)
		snprintf(msg, msglen, "%s", rc == -EPROBE_DEFER ? "Probe deferred" : strerror(-rc));
	return -rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "topology", required_argument, NULL, 't' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "dot", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topology = NULL, *socket_path = NULL, *format = "text";
	struct session s = { .fd = -1 };
	bool ran = false;
	int c, i, rc;

	while ((c = getopt_long(argc, argv, "+t:s:jdh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			topology = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			format = "json";
			break;
		case 'd':
			format = "dot";
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (topology && socket_path) {
		fprintf(stderr, "uiommuctl: --topology and --socket exclude each other\n");
		return EXIT_USAGE;
	}
	/* Check the whole command line before doing anything. */
	for (i = optind; i < argc;) {
		int arity = ctl_command_arity(argv[i]);

		if (arity < 0) {
			fprintf(stderr, "uiommuctl: unknown command \"%s\"\n", argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
		if (!strcmp(argv[i], "show"))
			arity = 0; /* the format is an option here */
		if (i + arity >= argc) {
			fprintf(stderr, "uiommuctl: %s needs %d argument%s\n", argv[i], arity,
				arity > 1 ? "s" : "");
			return EXIT_USAGE;
		}
		i += 1 + arity;
	}

	if (socket_path) {
		rc = remote_connect(&s, socket_path);
		if (rc)
			return rc;
	} else {
		rc = topology_load(topology);
		if (rc) {
			fprintf(stderr, "uiommuctl: cannot load the topology %s: %s\n",
				topology ? topology : "(default)", strerror(-rc));
			return EXIT_FAIL;
		}
	}

	for (i = optind; i < argc || !ran;) {
		char line[CTL_LINE_MAX], msg[256] = "";
		int arity = 0, n, err;

		if (i < argc) {
			arity = strcmp(argv[i], "show") ? ctl_command_arity(argv[i]) : 0;
			n = snprintf(line, sizeof(line), "%s", argv[i]);
			for (c = 1; c <= arity; c++)
				n += snprintf(line + n, sizeof(line) - (size_t)n, " %s", argv[i + c]);
			if (!strcmp(argv[i], "show"))
				snprintf(line + n, sizeof(line) - (size_t)n, " %s", format);
		} else {
			snprintf(line, sizeof(line), "show %s", format);
		}
		ran = true;
		err = socket_path ? remote_run(&s, line, msg, sizeof(msg))
				  : local_run(line, msg, sizeof(msg));
		fflush(stdout);
		if (err) {
			fprintf(stderr, "uiommuctl: %s: %s\n", line, msg);
			rc = err == EINVAL && !strncmp(msg, "usage", 5) ? EXIT_USAGE : EXIT_FAIL;
			goto out;
		}
		i += 1 + arity;
	}
	rc = 0;
out:
	if (s.in)
		fclose(s.in);
	else if (!socket_path)
		topology_unload();
	return rc;
}
