/* SPDX-License-Identifier: MIT */
/*
 * The library's own fds, for a copy of the process that must keep only those (lib/fdkeep.c).
 *
 * Whoever makes an fd that the library holds beyond the call that made it (a peer, a
 * listening socket, a client's pidfd, a memfd behind a mapping, a duplicate of a caller's
 * eventfd) calls uiommu_fd_keep() on it; sys_close() lets go of the number, and a close made
 * through libc calls uiommu_fd_unkeep() first. fds handed to the program (the fds of our
 * files, received sub-fds) are the program's: they are not kept.
 */
#ifndef UIOMMU_LIB_FDKEEP_H
#define UIOMMU_LIB_FDKEEP_H

/* @fd (>= 0) is the library's until it is closed; a negative @fd is ignored. */
void uiommu_fd_keep(int fd);
/* @fd is about to be closed (or handed on): it is not the library's any more. */
void uiommu_fd_unkeep(int fd);
/*
 * In a single-threaded fork child only: closes every fd the library does not keep, and points
 * 0, 1 and 2 (unless kept) at /dev/null so that nothing the process makes takes their numbers
 * and a stray message goes nowhere. What it cannot tell apart it keeps (lib/fdkeep.c).
 */
void uiommu_fds_close_unkept(void);

#endif
