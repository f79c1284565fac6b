/* SPDX-License-Identifier: MIT */
/*
 * The control interface of the emulated machine (see ctl.c): one command language, spoken by
 * uiommuctl in its own process and by the listener on $UIOMMU_CTL_SOCKET in a running program.
 */
#ifndef UIOMMU_MACHINE_CTL_H
#define UIOMMU_MACHINE_CTL_H

#include <stdio.h>
#include <sys/types.h>

#define CTL_SOCKET_ENV "UIOMMU_CTL_SOCKET"

/* The longest command line the listener accepts (longer ones get "error 7 ..." E2BIG). */
#define CTL_LINE_MAX 512

/**
 * ctl_execute() - run one command line and write its reply lines to @out
 * @line: "show [text|json|dot]", "set-type GROUP TYPE", "bind BDF", "unbind BDF",
 *        "plug BDF", "unplug BDF" (words separated by blanks; a trailing newline is fine)
 *
 * The machine is booted first (sysfs_machine_boot()) if it is not. The caller adds the final
 * "ok" / "error <errno> <message>" line when it speaks the socket protocol.
 *
 * Takes topology, core and sysfs locks in turn: call it with none held.
 *
 * Return: 0, -EINVAL for a malformed command (a usage message goes to @out), or the -errno of
 * the operation.
 */
int ctl_execute(const char *line, FILE *out);

/* Clients served at once; one more is told "error 11 ..." (EAGAIN) and let go. */
#define CTL_CLIENTS_MAX 8

/* A client that sends (or reads) nothing for this long is told "error 110 ..." and let go. */
#define CTL_IDLE_TIMEOUT_MS 30000

/* Changes the idle timeout of clients admitted from now on (tests shorten it). */
void ctl_set_idle_timeout(unsigned int ms);

/* The uid of the process at the other end of the Unix socket @fd (SO_PEERCRED); 0 or -errno. */
int ctl_peer_uid(int fd, uid_t *uid);

/* Number of arguments @cmd takes, or -1 for an unknown command ("show" takes 0 or 1). */
int ctl_command_arity(const char *cmd);

#endif
